//! ClusterIP allocation, as kube-apiserver's service registry does it: every ClusterIP Service
//! gets an address of `--service-cluster-ip-range`, never one another Service holds. Each
//! address in use is a key of its own in the store (`/registry/ranges/serviceips/<ip>`),
//! created in the same transaction as the Service (or the update that turns an ExternalName
//! Service into another type, `service_update`) and deleted with it, so two writes racing for
//! one address cannot both win, on one API server or several.

use std::net::Ipv4Addr;
use std::str::FromStr;

use serde_json::{json, Value};

use crate::resources::ResourceInfo;
use crate::status::{ApiError, Cause};

pub const RESERVATION_PREFIX: &str = "/registry/ranges/serviceips/";

/// An IPv4 range of service addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceIpRange {
    network: u32,
    prefix_len: u8,
}

impl FromStr for ServiceIpRange {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR (a.b.c.d/len)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let prefix_len: u8 = len
            .parse()
            .map_err(|_| format!("{len:?} is not a prefix length"))?;
        // Kubernetes refuses ranges with fewer than 8 addresses; /30 and longer have no room.
        if !(8..=29).contains(&prefix_len) {
            return Err(format!(
                "a service range needs a prefix length from 8 to 29, not {prefix_len}"
            ));
        }
        let mask = u32::MAX << (32 - u32::from(prefix_len));
        Ok(Self {
            network: u32::from(addr) & mask,
            prefix_len,
        })
    }
}

impl std::fmt::Display for ServiceIpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix_len)
    }
}

impl ServiceIpRange {
    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix_len))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let offset = u32::from(ip).wrapping_sub(self.network);
        // The network and broadcast addresses are never handed out.
        offset > 0 && offset < self.size() - 1 && u32::from(ip) >= self.network
    }

    /// The `attempt`-th candidate: a pseudo-random start (so API servers do not all race for
    /// the lowest free address), then consecutive addresses.
    pub fn candidate(&self, seed: u32, attempt: u32) -> Ipv4Addr {
        let usable = self.size() - 2;
        let offset = 1 + ((seed % usable) + attempt % usable) % usable;
        Ipv4Addr::from(self.network + offset)
    }

    pub fn usable(&self) -> u32 {
        self.size() - 2
    }

    /// The range's first usable address: the `kubernetes` Service's ClusterIP, which the
    /// serving certificate names so in-cluster clients can verify it.
    pub fn first_address(&self) -> std::net::IpAddr {
        Ipv4Addr::from(self.network + 1).into()
    }
}

pub fn reservation_key(ip: Ipv4Addr) -> String {
    format!("{RESERVATION_PREFIX}{ip}")
}

/// What a Service create asks of the allocator.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// Headless (`None`) or ExternalName: no address.
    Nothing,
    /// Any free address.
    Any,
    /// This address, which must be free and in range.
    Exactly(Ipv4Addr),
}

fn invalid(info: &ResourceInfo, name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    ApiError::invalid(
        info,
        name,
        vec![Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value:?}: {detail}"),
            field: field.into(),
        }],
    )
}

/// Reads what the new Service asks for; refuses addresses outside the range and dual-stack
/// requests keel cannot serve.
pub fn wanted(
    info: &ResourceInfo,
    service: &Value,
    range: &ServiceIpRange,
) -> Result<Wanted, ApiError> {
    let name = crate::objects::name_of(service);
    let spec = service.get("spec");
    if spec.and_then(|s| s.get("type")).and_then(Value::as_str) == Some("ExternalName") {
        return Ok(Wanted::Nothing);
    }
    let ips: Vec<&str> = spec
        .and_then(|s| s.get("clusterIPs"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let single = spec
        .and_then(|s| s.get("clusterIP"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if ips.len() > 1 {
        return Err(invalid(
            info,
            name,
            "spec.clusterIPs",
            &ips.join(","),
            "keel serves single-stack IPv4 Services only",
        ));
    }
    let first = ips.first().copied().unwrap_or("");
    if !first.is_empty() && !single.is_empty() && first != single {
        return Err(invalid(
            info,
            name,
            "spec.clusterIPs[0]",
            first,
            "must match spec.clusterIP",
        ));
    }
    let ip = if single.is_empty() { first } else { single };
    match ip {
        "" => Ok(Wanted::Any),
        "None" => Ok(Wanted::Nothing),
        text => {
            let parsed: Ipv4Addr = text.parse().map_err(|_| {
                invalid(
                    info,
                    name,
                    "spec.clusterIPs[0]",
                    text,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )
            })?;
            if !range.contains(parsed) {
                return Err(invalid(
                    info,
                    name,
                    "spec.clusterIPs[0]",
                    text,
                    &format!("failed to allocate IP {text}: the provided IP ({text}) is not in the valid range. The range of valid IPs is {range}"),
                ));
            }
            Ok(Wanted::Exactly(parsed))
        }
    }
}

/// Writes the allocated address (or headlessness) into the Service, as kube-apiserver does.
pub fn set(service: &mut Value, ip: Option<Ipv4Addr>) {
    let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        return;
    }
    let text = ip.map_or_else(|| "None".to_owned(), |ip| ip.to_string());
    spec.insert("clusterIP".into(), json!(text));
    spec.insert("clusterIPs".into(), json!([text]));
    spec.insert("ipFamilies".into(), json!(["IPv4"]));
    spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
}

/// The reservation a stored Service holds, if any. An ExternalName Service holds none, even
/// with an address written in it.
pub fn held(service: &Value) -> Option<String> {
    if service.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
        return None;
    }
    let ip: Ipv4Addr = service.pointer("/spec/clusterIP")?.as_str()?.parse().ok()?;
    Some(reservation_key(ip))
}

/// The keys deleting `object` of `info`'s kind releases with it: a Service's address and
/// node port reservations; nothing for other kinds.
pub fn released_by(info: &ResourceInfo, object: &Value) -> Vec<String> {
    if info.kind == "Service" {
        let mut keys: Vec<String> = held(object).into_iter().collect();
        keys.extend(crate::node_ports::held(object));
        keys
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    #[test]
    fn ranges_parse_and_hand_out_only_inner_addresses() {
        let range: ServiceIpRange = "10.96.0.0/12".parse().expect("a range");
        assert_eq!(range.to_string(), "10.96.0.0/12");
        assert!(range.contains("10.96.0.1".parse().expect("ip")));
        assert!(range.contains("10.111.255.254".parse().expect("ip")));
        assert!(!range.contains("10.96.0.0".parse().expect("ip")));
        assert!(!range.contains("10.111.255.255".parse().expect("ip")));
        assert!(!range.contains("10.112.0.1".parse().expect("ip")));
        assert!(!range.contains("9.0.0.1".parse().expect("ip")));
        let small: ServiceIpRange = "192.168.0.0/29".parse().expect("a range");
        let all: std::collections::BTreeSet<Ipv4Addr> =
            (0..6).map(|a| small.candidate(u32::MAX, a)).collect();
        assert_eq!(all.len(), 6);
        assert!(all.iter().all(|ip| small.contains(*ip)));
        for bad in [
            "10.96.0.0",
            "10.96.0.0/33",
            "10.96.0.0/30",
            "x/12",
            "10.96.0.0/7",
        ] {
            assert!(bad.parse::<ServiceIpRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn wanted_reads_the_spec_and_refuses_foreign_addresses() {
        let services = lookup("", "v1", "services").expect("served");
        let range: ServiceIpRange = "10.96.0.0/12".parse().expect("a range");
        let want = |spec: Value| {
            wanted(
                services,
                &json!({"metadata": {"name": "s"}, "spec": spec}),
                &range,
            )
        };
        assert_eq!(want(json!({})).ok(), Some(Wanted::Any));
        assert_eq!(
            want(json!({"clusterIP": "None"})).ok(),
            Some(Wanted::Nothing)
        );
        assert_eq!(
            want(json!({"type": "ExternalName"})).ok(),
            Some(Wanted::Nothing)
        );
        assert_eq!(
            want(json!({"clusterIPs": ["10.96.0.10"]})).ok(),
            Some(Wanted::Exactly("10.96.0.10".parse().expect("ip")))
        );
        for bad in [
            json!({"clusterIP": "1.2.3.4"}),
            json!({"clusterIP": "banana"}),
            json!({"clusterIPs": ["10.96.0.1", "10.96.0.2"]}),
        ] {
            let error = want(bad.clone()).expect_err("refused");
            assert_eq!(error.code, 422, "{bad}");
        }
    }
}
