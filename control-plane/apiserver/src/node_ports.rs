//! NodePort allocation, as kube-apiserver's service registry does it: every port of a
//! NodePort or LoadBalancer Service gets a port of `--service-node-port-range`
//! (30000-32767), never one another Service holds. As with ClusterIPs, each port in use is a
//! key of its own (`/registry/ranges/servicenodeports/<port>`), created in the transaction
//! that creates the Service and deleted with it, so two creates racing for one port cannot
//! both win. An update that changes the type or the ports takes and gives back keys in its
//! own transaction (`service_update`).

use std::str::FromStr;

use serde_json::{json, Value};

use crate::resources::ResourceInfo;
use crate::status::{ApiError, Cause};

pub const RESERVATION_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// An inclusive range of node ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePortRange {
    pub first: u16,
    pub last: u16,
}

impl Default for NodePortRange {
    fn default() -> Self {
        Self {
            first: 30000,
            last: 32767,
        }
    }
}

impl FromStr for NodePortRange {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not a port range (first-last)"))?;
        let first: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a port"))?;
        let last: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a port"))?;
        if first == 0 || first > last {
            return Err(format!("{text:?}: the range must run from 1 upwards"));
        }
        Ok(Self { first, last })
    }
}

impl std::fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl NodePortRange {
    pub fn contains(&self, port: i64) -> bool {
        (i64::from(self.first)..=i64::from(self.last)).contains(&port)
    }

    fn size(&self) -> u32 {
        u32::from(self.last - self.first) + 1
    }

    /// A pseudo-random port of the range (the seed varies per attempt).
    pub fn pick(&self, seed: u32) -> u16 {
        // The remainder is below the range's size, which fits in u16 with `first` added.
        self.first + u16::try_from(seed % self.size()).unwrap_or(0)
    }
}

pub fn reservation_key(port: u16) -> String {
    format!("{RESERVATION_PREFIX}{port}")
}

/// Whether a Service of this type gets node ports.
pub fn needs_ports(service: &Value) -> bool {
    matches!(
        service.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}

/// Per port of the Service: the node port it asks for (Some) or leaves to the allocator
/// (None). Empty when the type needs none. Out-of-range and duplicate requests are refused
/// with kube-apiserver's words.
pub fn wanted(
    info: &ResourceInfo,
    service: &Value,
    range: &NodePortRange,
) -> Result<Vec<Option<u16>>, ApiError> {
    if !needs_ports(service) {
        return Ok(Vec::new());
    }
    let ports = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut causes = Vec::new();
    let mut wanted = Vec::new();
    let mut seen: Vec<(i64, String)> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}].nodePort");
        match port.get("nodePort").and_then(Value::as_i64).unwrap_or(0) {
            0 => wanted.push(None),
            n if !range.contains(n) => causes.push(Cause {
                reason: "FieldValueInvalid",
                message: format!("Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {range}"),
                field,
            }),
            n => {
                let protocol = port
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_owned();
                if seen.contains(&(n, protocol.clone())) {
                    causes.push(Cause {
                        reason: "FieldValueDuplicate",
                        message: format!("Duplicate value: {n}"),
                        field,
                    });
                } else {
                    seen.push((n, protocol));
                }
                wanted.push(u16::try_from(n).ok());
            }
        }
    }
    if causes.is_empty() {
        Ok(wanted)
    } else {
        Err(ApiError::invalid(
            info,
            crate::objects::name_of(service),
            causes,
        ))
    }
}

/// Writes the chosen node ports into the Service's ports.
pub fn set(service: &mut Value, chosen: &[u16]) {
    if let Some(ports) = service
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
    {
        for (port, node_port) in ports.iter_mut().zip(chosen) {
            if let Some(p) = port.as_object_mut() {
                p.insert("nodePort".into(), json!(node_port));
            }
        }
    }
}

/// The reservations a stored Service holds. A port used by two protocols (TCP and UDP on the
/// same nodePort, which Kubernetes allows) is one reservation.
pub fn held(service: &Value) -> Vec<String> {
    if !needs_ports(service) {
        return Vec::new();
    }
    let mut keys: Vec<String> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter_map(|p| u16::try_from(p).ok())
        .map(reservation_key)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    #[test]
    fn ranges_parse_and_pick_inside() {
        let range = NodePortRange::default();
        assert_eq!(range.to_string(), "30000-32767");
        assert_eq!("30000-32767".parse::<NodePortRange>(), Ok(range));
        for seed in [0, 1, 2767, 2768, u32::MAX] {
            assert!(range.contains(i64::from(range.pick(seed))), "{seed}");
        }
        for bad in ["", "30000", "0-10", "20-10", "a-b", "1-70000"] {
            assert!(bad.parse::<NodePortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn wanted_reads_ports_and_refuses_foreign_ones() {
        let services = lookup("", "v1", "services").expect("served");
        let range = NodePortRange::default();
        let want = |spec: Value| {
            wanted(
                services,
                &json!({"metadata": {"name": "s"}, "spec": spec}),
                &range,
            )
        };
        assert_eq!(want(json!({"ports": [{"port": 80}]})).ok(), Some(vec![]));
        assert_eq!(
            want(json!({"type": "NodePort", "ports": [{"port": 80}, {"port": 81, "nodePort": 30080}]})).ok(),
            Some(vec![None, Some(30080)])
        );
        let error = want(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}))
            .expect_err("out of range");
        assert!(
            error.to_status().to_string().contains(
                "provided port is not in the valid range. The range of valid ports is 30000-32767"
            ),
            "{}",
            error.to_status()
        );
        assert!(want(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}, {"port": 81, "nodePort": 30001}]})).is_err());
        // TCP and UDP may share one node port.
        assert!(want(json!({"type": "NodePort", "ports": [{"port": 53, "nodePort": 30053, "protocol": "UDP"}, {"port": 53, "nodePort": 30053}]})).is_ok());
    }
}
