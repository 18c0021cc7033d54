//! A Service update, as kube-apiserver's service registry handles it: the values the client
//! left out that the server allocated are kept (`patchAllocatedValues`), the fields the new
//! type has no use for are dropped when the client did not change them
//! (`dropTypeDependentFields`), the address stays what it was unless the type changes to or
//! from ExternalName, and then (`allocateUpdate`) node ports are taken for the ports that
//! need one and given back for those that no longer do, an address is taken when an
//! ExternalName Service gets another type and given back when one becomes ExternalName.
//!
//! [`prepare`] is the first part, before validation; [`allocate`] the second, at write time:
//! it fills what the allocator owes the Service and says which reservation keys the write
//! takes and which it gives back, the difference between what the stored Service holds and
//! what the new one will (`rest/service_write.rs` writes them in the object's transaction).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::node_ports::{self, NodePortRange};
use crate::resources::ResourceInfo;
use crate::service_ips::{self, ServiceIpRange, Wanted};
use crate::status::{ApiError, Cause};

fn type_of(service: &Value) -> &str {
    service
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// Every type but ExternalName has an address (or is headless, "None").
fn needs_cluster_ip(service: &Value) -> bool {
    type_of(service) != "ExternalName"
}

fn cluster_ip(service: &Value) -> &str {
    service
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn cluster_ips(service: &Value) -> Vec<&str> {
    service
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn is_headless(service: &Value) -> bool {
    cluster_ips(service) == ["None"]
}

fn spec_mut(service: &mut Value) -> Option<&mut Map<String, Value>> {
    service.get_mut("spec").and_then(Value::as_object_mut)
}

fn ports(service: &Value) -> &[Value] {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn node_port(port: &Value) -> i64 {
    port.get("nodePort").and_then(Value::as_i64).unwrap_or(0)
}

/// The node ports a Service's ports name, whatever its type.
fn named_node_ports(service: &Value) -> BTreeSet<i64> {
    ports(service)
        .iter()
        .map(node_port)
        .filter(|p| *p != 0)
        .collect()
}

/// The node ports a Service holds: those of its ports, when its type has node ports.
fn held_node_ports(service: &Value) -> BTreeSet<i64> {
    if node_ports::needs_ports(service) {
        named_node_ports(service)
    } else {
        BTreeSet::new()
    }
}

/// The client's update, before validation: allocated values it left out are kept, fields the
/// new type does not use are dropped if the client did not change them, and the address may
/// change only to or from ExternalName.
pub fn prepare(info: &ResourceInfo, old: &Value, new: &mut Value) -> Result<(), ApiError> {
    patch_allocated(old, new);
    normalize_cluster_ips(old, new);
    drop_type_dependent(old, new);
    check_cluster_ips(info, old, new)
}

/// kube's `patchAllocatedValues`: a client that resubmits what it created (without the
/// address and node ports the server chose) keeps them. Node ports are matched by port name;
/// one the client gave to another port is not patched back in.
fn patch_allocated(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(spec) = spec_mut(new) {
            if spec
                .get("clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                if let Some(ip) = old_spec.get("clusterIP") {
                    spec.insert("clusterIP".into(), ip.clone());
                }
            }
            // The family fields, which kube's initIPFamilyFields takes from the stored
            // Service when the client leaves them out, come along with the addresses.
            for field in ["clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                let missing = match spec.get(field) {
                    None | Some(Value::Null) => true,
                    Some(Value::Array(a)) => a.is_empty(),
                    Some(_) => false,
                };
                if let (true, Some(value)) = (missing, old_spec.get(field)) {
                    spec.insert(field.into(), value.clone());
                }
            }
        }
    }
    if node_ports::needs_ports(old) && node_ports::needs_ports(new) {
        let used: BTreeSet<i64> = named_node_ports(old)
            .intersection(&named_node_ports(new))
            .copied()
            .collect();
        let by_name: Vec<(String, i64)> = ports(old)
            .iter()
            .map(|p| (port_name(p).to_owned(), node_port(p)))
            .collect();
        let Some(list) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
            return;
        };
        for port in list.iter_mut() {
            if node_port(port) != 0 {
                continue;
            }
            let name = port_name(port).to_owned();
            let before = by_name
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, p)| *p);
            if before != 0 && !used.contains(&before) {
                if let Some(p) = port.as_object_mut() {
                    p.insert("nodePort".into(), json!(before));
                }
            }
        }
    }
}

fn port_name(port: &Value) -> &str {
    port.get("name").and_then(Value::as_str).unwrap_or("")
}

/// kube's `normalizeClusterIPs` on update: `clusterIP` and `clusterIPs` kept in step for a
/// client that knows only the first.
fn normalize_cluster_ips(old: &Value, new: &mut Value) {
    let old_ip = cluster_ip(old).to_owned();
    let old_ips: Vec<String> = cluster_ips(old).iter().map(|s| s.to_string()).collect();
    let new_ip = cluster_ip(new).to_owned();
    let Some(spec) = spec_mut(new) else { return };
    let plural = |spec: &Map<String, Value>| -> Vec<String> {
        spec.get("clusterIPs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    if !old_ips.is_empty() && plural(spec).is_empty() && old_ip == new_ip {
        spec.insert("clusterIPs".into(), json!(old_ips));
    }
    if old_ip != new_ip {
        let same_plural = plural(spec) == old_ips;
        if !old_ip.is_empty() && new_ip.is_empty() {
            if same_plural {
                spec.remove("clusterIPs");
            }
        } else if same_plural {
            spec.insert("clusterIPs".into(), json!([new_ip]));
        }
    }
}

/// kube's `dropTypeDependentFields`: a change of type clears what the new type does not use,
/// when the client left it as it was (a changed value is the client's, and validation judges
/// it). Whatever was allocated for it is given back by [`allocate`].
fn drop_type_dependent(old: &Value, new: &mut Value) {
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    // Absent and null are the same unset value.
    let same = |new: &Value, field: &str| {
        old_spec.get(field).filter(|v| !v.is_null())
            == new
                .pointer(&format!("/spec/{field}"))
                .filter(|v| !v.is_null())
    };
    let old_type = type_of(old).to_owned();
    let new_type = type_of(new).to_owned();
    let mut dropped: Vec<&str> = Vec::new();
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if cluster_ip(old) == cluster_ip(new) && cluster_ips(old) == cluster_ips(new) {
            dropped.extend(["clusterIP", "clusterIPs"]);
        }
        for field in ["ipFamilies", "ipFamilyPolicy"] {
            if same(new, field) {
                dropped.push(field);
            }
        }
    }
    let externally = |t: &str| t == "NodePort" || t == "LoadBalancer";
    if externally(&old_type) && !externally(&new_type) {
        if same(new, "externalTrafficPolicy") {
            dropped.push("externalTrafficPolicy");
        }
        // Users may change or remove ports, as long as they add no node port.
        if named_node_ports(old).is_superset(&named_node_ports(new)) {
            if let Some(list) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for port in list.iter_mut().filter_map(Value::as_object_mut) {
                    port.remove("nodePort");
                }
            }
        }
    }
    let local = |s: &Value| {
        type_of(s) == "LoadBalancer"
            && s.pointer("/spec/externalTrafficPolicy")
                .and_then(Value::as_str)
                == Some("Local")
    };
    if local(old) && !local(new) && same(new, "healthCheckNodePort") {
        dropped.push("healthCheckNodePort");
    }
    if old_type == "LoadBalancer" && new_type != "LoadBalancer" {
        for field in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            if same(new, field) {
                dropped.push(field);
            }
        }
    }
    if let Some(spec) = spec_mut(new) {
        for field in dropped {
            spec.remove(field);
        }
    }
    // A load balancer's status goes with the type (its deprovisioning is asynchronous, but
    // the client need not see that).
    if new_type != "LoadBalancer" {
        if let Some(balancer) = new
            .pointer_mut("/status/loadBalancer")
            .filter(|b| b.as_object().is_some_and(|m| !m.is_empty()))
        {
            *balancer = json!({});
        }
    }
}

fn invalid(info: &ResourceInfo, service: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(info, crate::objects::name_of(service), causes)
}

fn cause(field: String, message: String) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message,
        field,
    }
}

/// kube's `validateUpgradeDowngradeClusterIPs`, single-stack: the address may not change,
/// except to or from ExternalName; a headless Service stays headless.
fn check_cluster_ips(info: &ResourceInfo, old: &Value, new: &Value) -> Result<(), ApiError> {
    if !needs_cluster_ip(old) || !needs_cluster_ip(new) {
        return Ok(());
    }
    let before = cluster_ips(old);
    let after = cluster_ips(new);
    let shown = json!(after).to_string();
    let single = cluster_ip(new);
    if !single.is_empty() && after.first().is_some_and(|first| *first != single) {
        return Err(invalid(
            info,
            new,
            vec![cause(
                "spec.clusterIPs".into(),
                format!("Invalid value: {shown}: first value must match `clusterIP`"),
            )],
        ));
    }
    if after.len() > 1 {
        return Err(invalid(
            info,
            new,
            vec![cause(
                "spec.clusterIPs".into(),
                format!("Invalid value: {shown}: keel serves single-stack IPv4 Services only"),
            )],
        ));
    }
    if is_headless(old) && is_headless(new) {
        return Ok(());
    }
    let mut causes = Vec::new();
    if after.is_empty() && !before.is_empty() {
        causes.push(cause(
            "spec.clusterIPs[0]".into(),
            format!("Invalid value: {shown}: primary clusterIP can not be unset"),
        ));
    }
    for (i, (was, is)) in before.iter().zip(&after).enumerate() {
        if was != is {
            causes.push(cause(
                format!("spec.clusterIPs[{i}]"),
                format!("Invalid value: {shown}: may not change once set"),
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(info, new, causes))
    }
}

/// The reservation keys a Service holds: its address's and its node ports'.
pub fn held(service: &Value) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = service_ips::held(service).into_iter().collect();
    keys.extend(node_ports::held(service));
    keys
}

/// A Service to write and the reservations its write takes and gives back.
#[derive(Debug)]
pub struct Allocation {
    pub service: Value,
    /// Keys the write creates: held by the new Service, not by the stored one.
    pub acquire: Vec<String>,
    /// Keys the write deletes: held by the stored Service, not by the new one.
    pub release: Vec<String>,
    /// Those of `acquire` the allocator chose (chosen again when one is taken), as opposed to
    /// those the client asked for (refused when taken).
    pub picked: BTreeSet<String>,
}

/// How the allocator draws: `ip_start` and `attempt` walk the address range from a random
/// start (consecutive addresses on consecutive attempts); `seed` starts each node port search.
pub struct Draw<'a> {
    pub ip_start: u32,
    pub attempt: u32,
    pub seed: &'a mut dyn FnMut() -> u32,
}

/// Fills what the allocator owes the prepared and validated update `new` of `old` — an
/// address when it stops being ExternalName, a node port for each port of a NodePort or
/// LoadBalancer Service without one — and says which keys its write takes and gives back.
/// A requested node port new to the Service must be in `ports`; one it held already stays
/// even if the range changed since.
pub fn allocate(
    info: &ResourceInfo,
    old: &Value,
    new: &Value,
    ips: &ServiceIpRange,
    ports: &NodePortRange,
    draw: Draw<'_>,
) -> Result<Allocation, ApiError> {
    let mut service = new.clone();
    let mut picked = BTreeSet::new();
    // A write of status or metadata alone allocates nothing (kube's status strategy has no
    // allocator).
    if old.get("spec") != new.get("spec") {
        if needs_cluster_ip(&service) && (!needs_cluster_ip(old) || cluster_ip(&service).is_empty())
        {
            match service_ips::wanted(info, &service, ips)? {
                Wanted::Nothing => service_ips::set(&mut service, None),
                Wanted::Exactly(ip) => service_ips::set(&mut service, Some(ip)),
                Wanted::Any => {
                    let ip = ips.candidate(draw.ip_start, draw.attempt);
                    service_ips::set(&mut service, Some(ip));
                    picked.insert(service_ips::reservation_key(ip));
                }
            }
        }
        if node_ports::needs_ports(&service) {
            picked.extend(fill_node_ports(info, old, &mut service, ports, draw.seed)?);
        }
    }
    let before = held(old);
    let after = held(&service);
    Ok(Allocation {
        acquire: after.difference(&before).cloned().collect(),
        release: before.difference(&after).cloned().collect(),
        picked,
        service,
    })
}

/// kube's `updateNodePorts`: a requested node port the Service did not hold must be in the
/// range; each port without one gets a port no other port of the Service uses. The keys of
/// the ports chosen.
fn fill_node_ports(
    info: &ResourceInfo,
    old: &Value,
    service: &mut Value,
    range: &NodePortRange,
    seed: &mut dyn FnMut() -> u32,
) -> Result<BTreeSet<String>, ApiError> {
    let kept = held_node_ports(old);
    let causes: Vec<Cause> = ports(service)
        .iter()
        .enumerate()
        .map(|(i, p)| (i, node_port(p)))
        .filter(|(_, n)| *n != 0 && !kept.contains(n) && !range.contains(*n))
        .map(|(i, n)| {
            cause(
                format!("spec.ports[{i}].nodePort"),
                format!("Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {range}"),
            )
        })
        .collect();
    if !causes.is_empty() {
        return Err(invalid(info, service, causes));
    }
    // Never one this Service names or gives back in this write (kube's allocator still
    // counts those as allocated).
    let mut used: BTreeSet<i64> = named_node_ports(service);
    used.extend(&kept);
    let size = u32::from(range.last - range.first) + 1;
    let mut picked = BTreeSet::new();
    let Some(list) = service
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
    else {
        return Ok(picked);
    };
    for port in list.iter_mut().filter(|p| node_port(p) == 0) {
        let start = seed() % size;
        let free = (0..size)
            .filter_map(|offset| u16::try_from((start + offset) % size).ok())
            .map(|offset| range.first + offset)
            .find(|p| !used.contains(&i64::from(*p)))
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "failed to allocate a nodePort: range {range} is full"
                ))
            })?;
        used.insert(i64::from(free));
        picked.insert(node_ports::reservation_key(free));
        if let Some(p) = port.as_object_mut() {
            p.insert("nodePort".into(), json!(free));
        }
    }
    Ok(picked)
}

/// The 422 for a reservation `key` the client asked for that another Service holds, naming
/// the field that asked, as kube-apiserver words it.
pub fn taken(info: &ResourceInfo, service: &Value, key: &str) -> ApiError {
    if let Some(port) = key
        .strip_prefix(node_ports::RESERVATION_PREFIX)
        .and_then(|p| p.parse::<i64>().ok())
    {
        let i = ports(service)
            .iter()
            .position(|p| node_port(p) == port)
            .unwrap_or(0);
        return invalid(
            info,
            service,
            vec![cause(
                format!("spec.ports[{i}].nodePort"),
                format!("Invalid value: {port}: provided port is already allocated"),
            )],
        );
    }
    let ip = key
        .strip_prefix(service_ips::RESERVATION_PREFIX)
        .unwrap_or(key);
    invalid(
        info,
        service,
        vec![cause(
            "spec.clusterIPs".into(),
            format!("Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: provided IP is already allocated"),
        )],
    )
}

#[cfg(test)]
mod tests;
