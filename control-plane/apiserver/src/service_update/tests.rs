//! The old → new computation of a Service update: what is kept, dropped, refused, and which
//! reservation keys the write takes and gives back.

use super::*;
use crate::node_ports::reservation_key as port_key;
use crate::resources::lookup;
use crate::service_ips::reservation_key as ip_key;

fn info() -> &'static ResourceInfo {
    lookup("", "v1", "services").expect("services are served")
}

fn ips() -> ServiceIpRange {
    "10.96.0.0/12".parse().expect("a range")
}

/// A Service as the store holds it: defaulted, with an address (unless headless or
/// ExternalName) and its family fields.
fn stored(spec: Value) -> Value {
    let mut service = json!({"metadata": {"name": "s", "namespace": "d"}, "spec": spec});
    crate::defaults::apply("Service", &mut service);
    if needs_cluster_ip(&service) && cluster_ip(&service).is_empty() {
        service_ips::set(&mut service, Some("10.96.0.9".parse().expect("ip")));
    } else if is_headless(&service) || cluster_ip(&service) == "None" {
        service_ips::set(&mut service, None);
    }
    service
}

/// The update pipeline: prepare, default, validate, allocate with predictable draws (seeds
/// 0, 1, 2…: node ports from the range's start).
fn update_in(old: &Value, new: Value, ports: NodePortRange) -> Result<Allocation, ApiError> {
    let mut new = new;
    if new.get("metadata").is_none() {
        new["metadata"] = old["metadata"].clone();
    }
    prepare(info(), old, &mut new)?;
    crate::defaults::apply("Service", &mut new);
    crate::validation::validate(info(), &new)?;
    let mut next = 0u32;
    let mut seed = move || {
        next += 1;
        next - 1
    };
    allocate(
        info(),
        old,
        &new,
        &ips(),
        &ports,
        Draw {
            ip_start: 41,
            attempt: 0,
            seed: &mut seed,
        },
    )
}

fn update(old: &Value, new: Value) -> Result<Allocation, ApiError> {
    update_in(old, new, NodePortRange::default())
}

/// `old` with `change` merged into its spec (a merge patch of the spec).
fn patched(old: &Value, change: Value) -> Value {
    let mut new = old.clone();
    if let (Some(spec), Some(change)) = (spec_mut(&mut new), change.as_object()) {
        for (k, v) in change {
            if v.is_null() {
                spec.remove(k);
            } else {
                spec.insert(k.clone(), v.clone());
            }
        }
    }
    new
}

fn node_ports_of(service: &Value) -> Vec<i64> {
    ports(service).iter().map(node_port).collect()
}

fn keys(list: &[u16]) -> Vec<String> {
    list.iter().map(|p| port_key(*p)).collect()
}

/// The refusal's causes as `field: message`.
fn refused(result: Result<Allocation, ApiError>) -> Vec<String> {
    let error = result.expect_err("refused");
    assert_eq!(error.code, 422, "{}", error.message);
    error.details.expect("details")["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}: {}",
                c["field"].as_str().unwrap_or(""),
                c["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn web() -> Value {
    json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}])
}

#[test]
fn cluster_ip_to_node_port_takes_a_port_for_each_port() {
    let old = stored(json!({"ports": web()}));
    let done = update(&old, patched(&old, json!({"type": "NodePort"}))).expect("updated");
    assert_eq!(node_ports_of(&done.service), [30000, 30001]);
    assert_eq!(done.acquire, keys(&[30000, 30001]));
    assert!(done.release.is_empty());
    assert_eq!(done.picked, keys(&[30000, 30001]).into_iter().collect());
    assert_eq!(cluster_ip(&done.service), "10.96.0.9", "the address stays");
    // A requested port is taken as asked, and is the client's (refused, not redrawn, when
    // another Service holds it).
    let asked = patched(
        &old,
        json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 80},
            {"name": "https", "port": 443, "nodePort": 30443}]}),
    );
    let done = update(&old, asked).expect("updated");
    assert_eq!(node_ports_of(&done.service), [30000, 30443]);
    assert_eq!(done.acquire, keys(&[30000, 30443]));
    assert_eq!(done.picked, keys(&[30000]).into_iter().collect());
    let error = taken(info(), &done.service, &port_key(30443));
    assert_eq!(error.code, 422);
    assert_eq!(
        error.message,
        "Service \"s\" is invalid: spec.ports[1].nodePort: Invalid value: 30443: provided port is already allocated"
    );
}

#[test]
fn node_port_to_cluster_ip_gives_back_every_port() {
    let old = stored(
        json!({"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [
        {"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "nodePort": 30443}]}),
    );
    // A patch of the type alone: the node ports the client left as they were are dropped.
    let done = update(&old, patched(&old, json!({"type": "ClusterIP"}))).expect("updated");
    assert_eq!(node_ports_of(&done.service), [0, 0]);
    assert!(ports(&done.service)
        .iter()
        .all(|p| p.get("nodePort").is_none()));
    assert_eq!(done.service["spec"].get("externalTrafficPolicy"), None);
    assert!(done.acquire.is_empty());
    assert_eq!(done.release, keys(&[30080, 30443]));
    // A manifest without them: the same.
    let fresh = json!({"metadata": old["metadata"], "spec": {"ports": web()}});
    let done = update(&old, fresh).expect("updated");
    assert_eq!(done.release, keys(&[30080, 30443]));
    assert_eq!(cluster_ip(&done.service), "10.96.0.9");
    // Fewer ports, one removed: still only what it held before.
    let fewer = patched(
        &old,
        json!({"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    assert_eq!(
        update(&old, fewer).expect("updated").release,
        keys(&[30080, 30443])
    );
    // A node port the client changed is the client's: ClusterIP Services have none.
    let moved = patched(
        &old,
        json!({"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "nodePort": 30081}]}),
    );
    assert_eq!(
        refused(update(&old, moved)),
        ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    );
}

#[test]
fn a_load_balancer_leaves_its_fields_and_status_behind() {
    let mut old = stored(
        json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": true,
        "loadBalancerClass": "example.com/lb", "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    old["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}});
    let done = update(&old, patched(&old, json!({"type": "NodePort"}))).expect("updated");
    assert_eq!(node_ports_of(&done.service), [30080], "NodePort keeps them");
    assert!(done.acquire.is_empty() && done.release.is_empty());
    assert_eq!(
        done.service["spec"].get("allocateLoadBalancerNodePorts"),
        None
    );
    assert_eq!(done.service["spec"].get("loadBalancerClass"), None);
    assert_eq!(done.service["status"]["loadBalancer"], json!({}));
    // A value the client changed along with the type stays, for validation to judge.
    let changed = patched(
        &old,
        json!({"type": "NodePort", "loadBalancerClass": "example.com/other"}),
    );
    let mut new = changed;
    prepare(info(), &old, &mut new).expect("prepared");
    assert_eq!(new["spec"]["loadBalancerClass"], "example.com/other");
}

#[test]
fn ports_added_removed_renamed_and_moved() {
    let old = stored(json!({"type": "NodePort", "ports": [
        {"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "nodePort": 30443}]}));
    let spec = |ports: Value| json!({"metadata": old["metadata"], "spec": {"type": "NodePort", "ports": ports}});
    // Resubmitted without node ports: each named port keeps its own, a new one gets one.
    let added = spec(
        json!([{"name": "http", "port": 80}, {"name": "https", "port": 443},
        {"name": "metrics", "port": 9090}]),
    );
    let done = update(&old, added).expect("updated");
    assert_eq!(node_ports_of(&done.service), [30080, 30443, 30000]);
    assert_eq!(done.acquire, keys(&[30000]));
    assert!(done.release.is_empty());
    // Removed: its node port goes back.
    let done = update(&old, spec(json!([{"name": "http", "port": 80}]))).expect("updated");
    assert_eq!(node_ports_of(&done.service), [30080]);
    assert_eq!(done.release, keys(&[30443]));
    assert!(done.acquire.is_empty());
    // Renamed without its node port: a new port (kube matches by name), the old one back.
    let done = update(
        &old,
        spec(json!([{"name": "web", "port": 80}, {"name": "https", "port": 443}])),
    )
    .expect("updated");
    assert_eq!(node_ports_of(&done.service), [30000, 30443]);
    assert_eq!(
        (done.acquire, done.release),
        (keys(&[30000]), keys(&[30080]))
    );
    // Renamed with it: nothing changes hands.
    let done = update(
        &old,
        spec(json!([{"name": "web", "port": 80, "nodePort": 30080},
        {"name": "https", "port": 443}])),
    )
    .expect("updated");
    assert!(done.acquire.is_empty() && done.release.is_empty());
    // One port takes the other's node port: that one is not patched back, it gets a new one.
    let done = update(
        &old,
        spec(json!([{"name": "http", "port": 80, "nodePort": 30443},
        {"name": "https", "port": 443}])),
    )
    .expect("updated");
    assert_eq!(node_ports_of(&done.service), [30443, 30000]);
    assert_eq!(
        (done.acquire, done.release),
        (keys(&[30000]), keys(&[30080]))
    );
    // Swapped: nothing changes hands.
    let done = update(
        &old,
        spec(json!([{"name": "http", "port": 80, "nodePort": 30443},
        {"name": "https", "port": 443, "nodePort": 30080}])),
    )
    .expect("updated");
    assert!(done.acquire.is_empty() && done.release.is_empty() && done.picked.is_empty());
    // Changed: the new one requested, the old one back.
    let done = update(
        &old,
        spec(json!([{"name": "http", "port": 80, "nodePort": 30090},
        {"name": "https", "port": 443}])),
    )
    .expect("updated");
    assert_eq!(node_ports_of(&done.service), [30090, 30443]);
    assert_eq!(
        (done.acquire.clone(), done.release),
        (keys(&[30090]), keys(&[30080]))
    );
    assert!(done.picked.is_empty(), "a requested port is never redrawn");
    // The same update again changes nothing.
    let same = update(&old, old.clone()).expect("updated");
    assert_eq!(same.service, old);
    assert!(same.acquire.is_empty() && same.release.is_empty());
}

#[test]
fn tcp_and_udp_share_one_node_port_and_one_key() {
    let dns = json!([{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053}]);
    let old = stored(json!({"type": "NodePort", "ports": dns}));
    assert_eq!(
        held(&old),
        [ip_key("10.96.0.9".parse().expect("ip")), port_key(30053)]
            .into_iter()
            .collect()
    );
    let done = update(&old, patched(&old, json!({"type": "ClusterIP"}))).expect("updated");
    assert_eq!(done.release, keys(&[30053]));
    let plain = stored(
        json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}),
    );
    // Both asked for: one key.
    let done = update(
        &plain,
        patched(&plain, json!({"type": "NodePort", "ports": dns})),
    )
    .expect("updated");
    assert_eq!(done.acquire, keys(&[30053]));
    // Neither: each its own, as kube-apiserver's update allocates.
    let done = update(&plain, patched(&plain, json!({"type": "NodePort"}))).expect("updated");
    assert_eq!(node_ports_of(&done.service), [30000, 30001]);
    assert_eq!(done.acquire, keys(&[30000, 30001]));
    // The same protocol twice on one node port is a duplicate.
    let twice = patched(
        &plain,
        json!({"type": "NodePort", "ports": [
        {"name": "a", "port": 53, "nodePort": 30053}, {"name": "b", "port": 54, "nodePort": 30053}]}),
    );
    assert_eq!(
        refused(update(&plain, twice)),
        ["spec.ports[1].nodePort: Duplicate value: 30053"]
    );
}

#[test]
fn hostile_node_ports_are_refused_by_field() {
    let old = stored(json!({"ports": [{"name": "http", "port": 80}]}));
    let asking = |n: Value| {
        patched(
            &old,
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": n}]}),
        )
    };
    // 0 is unset: the allocator's.
    assert_eq!(
        node_ports_of(&update(&old, asking(json!(0))).expect("updated").service),
        [30000]
    );
    assert_eq!(
        refused(update(&old, asking(json!(80)))),
        ["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"]
    );
    for bad in [json!(-1), json!(70000), json!(i64::MAX)] {
        let causes = refused(update(&old, asking(bad.clone())));
        assert_eq!(causes.len(), 1, "{bad}: {causes:?}");
        assert!(
            causes[0].starts_with("spec.ports[0].nodePort: Invalid value:"),
            "{causes:?}"
        );
    }
    // Straight to allocate (validation skipped): the range still refuses them.
    for bad in [-1, 70000, 29999, 32768] {
        let new = stored(
            json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": bad}]}),
        );
        let result = allocate(
            info(),
            &old,
            &new,
            &ips(),
            &NodePortRange::default(),
            Draw {
                ip_start: 0,
                attempt: 0,
                seed: &mut || 0,
            },
        );
        assert_eq!(refused(result).len(), 1, "{bad}");
    }
    // A node port held already stays, even outside a range that shrank since.
    let held_before = stored(
        json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 32000}]}),
    );
    let small: NodePortRange = "30000-30009".parse().expect("a range");
    let more = patched(
        &held_before,
        json!({"ports": [{"name": "http", "port": 80},
        {"name": "b", "port": 81}, {"name": "c", "port": 82, "nodePort": 31000}]}),
    );
    assert_eq!(
        refused(update_in(&held_before, more, small)),
        ["spec.ports[2].nodePort: Invalid value: 31000: provided port is not in the valid range. The range of valid ports is 30000-30009"]
    );
    let one_more = patched(
        &held_before,
        json!({"ports": [{"name": "http", "port": 80}, {"name": "b", "port": 81}]}),
    );
    let done = update_in(&held_before, one_more, small).expect("updated");
    assert_eq!(node_ports_of(&done.service), [32000, 30000]);
}

#[test]
fn a_full_range_is_an_internal_error() {
    let old = stored(json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}));
    let tiny: NodePortRange = "30000-30000".parse().expect("a range");
    let error =
        update_in(&old, patched(&old, json!({"type": "NodePort"})), tiny).expect_err("full");
    assert_eq!(error.code, 500);
    assert!(
        error
            .message
            .contains("failed to allocate a nodePort: range 30000-30000 is full"),
        "{}",
        error.message
    );
}

#[test]
fn external_name_gives_back_its_address_and_gets_one_again() {
    let old = stored(
        json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    let external = patched(
        &old,
        json!({"type": "ExternalName", "externalName": "example.com"}),
    );
    let done = update(&old, external).expect("updated");
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        assert_eq!(done.service["spec"].get(field), None, "{field}");
    }
    assert_eq!(node_ports_of(&done.service), [0]);
    assert_eq!(
        done.release,
        [ip_key("10.96.0.9".parse().expect("ip")), port_key(30080)]
    );
    assert!(held(&done.service).is_empty());
    // A new address with the change is the client's, and ExternalName has none.
    let readdressed = patched(
        &old,
        json!({"type": "ExternalName", "externalName": "example.com",
        "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]}),
    );
    assert_eq!(
        refused(update(&old, readdressed)),
        ["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]
    );
    // A fresh manifest leaves them out.
    let fresh = json!({"metadata": old["metadata"], "spec": {"type": "ExternalName", "externalName": "example.com"}});
    assert_eq!(update(&old, fresh).expect("updated").release.len(), 2);

    // Back: an address from the range, chosen (so chosen again when taken).
    let name = stored(
        json!({"type": "ExternalName", "externalName": "example.com", "ports": [{"name": "http", "port": 80}]}),
    );
    assert!(held(&name).is_empty());
    let done = update(
        &name,
        patched(&name, json!({"type": "ClusterIP", "externalName": null})),
    )
    .expect("updated");
    let ip = cluster_ip(&done.service).to_owned();
    assert_eq!(ip, ips().candidate(41, 0).to_string());
    assert_eq!(done.service["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(done.service["spec"]["ipFamilies"], json!(["IPv4"]));
    assert_eq!(done.acquire, [ip_key(ip.parse().expect("ip"))]);
    assert_eq!(done.picked, done.acquire.iter().cloned().collect());
    // Asked for: the client's.
    let asked = patched(
        &name,
        json!({"type": "NodePort", "clusterIP": "10.96.0.20"}),
    );
    let done = update(&name, asked).expect("updated");
    assert_eq!(done.service["spec"]["clusterIPs"], json!(["10.96.0.20"]));
    assert_eq!(
        done.acquire,
        [ip_key("10.96.0.20".parse().expect("ip")), port_key(30000)]
    );
    assert_eq!(done.picked, [port_key(30000)].into_iter().collect());
    assert_eq!(
        taken(info(), &done.service, &done.acquire[0]).message,
        "Service \"s\" is invalid: spec.clusterIPs: Invalid value: [\"10.96.0.20\"]: failed to allocate IP 10.96.0.20: provided IP is already allocated"
    );
    let foreign = patched(&name, json!({"type": "ClusterIP", "clusterIP": "1.2.3.4"}));
    assert_eq!(refused(update(&name, foreign)).len(), 1);
    // Headless: nothing to take.
    let headless = patched(&name, json!({"type": "ClusterIP", "clusterIP": "None"}));
    let done = update(&name, headless).expect("updated");
    assert_eq!(done.service["spec"]["clusterIPs"], json!(["None"]));
    assert!(done.acquire.is_empty());
}

#[test]
fn the_address_and_headlessness_stay() {
    let old = stored(json!({"ports": [{"port": 80}]}));
    let moved = patched(
        &old,
        json!({"clusterIP": "10.96.0.8", "clusterIPs": ["10.96.0.8"]}),
    );
    assert_eq!(
        refused(update(&old, moved)),
        ["spec.clusterIPs[0]: Invalid value: [\"10.96.0.8\"]: may not change once set"]
    );
    // The singular alone: the plural follows it, and is refused with it.
    let singular = patched(&old, json!({"clusterIP": "10.96.0.8"}));
    assert_eq!(refused(update(&old, singular)).len(), 1);
    let mismatched = patched(&old, json!({"clusterIPs": ["10.96.0.8"]}));
    assert!(refused(update(&old, mismatched))[0].ends_with("first value must match `clusterIP`"));
    let dual = patched(&old, json!({"clusterIPs": ["10.96.0.9", "fd00::9"]}));
    assert!(refused(update(&old, dual))[0].ends_with("keel serves single-stack IPv4 Services only"));
    // Left out: kept.
    let fresh = json!({"metadata": old["metadata"], "spec": {"ports": [{"port": 80}]}});
    let done = update(&old, fresh).expect("updated");
    assert_eq!(done.service["spec"]["clusterIPs"], json!(["10.96.0.9"]));
    assert_eq!(done.service["spec"]["ipFamilyPolicy"], "SingleStack");

    let headless = stored(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
    assert!(held(&headless).is_empty());
    let addressed = patched(
        &headless,
        json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"]}),
    );
    assert_eq!(
        refused(update(&headless, addressed)),
        ["spec.clusterIPs[0]: Invalid value: [\"10.96.0.5\"]: may not change once set"]
    );
    let done = update(
        &headless,
        json!({"metadata": headless["metadata"], "spec": {"ports": [{"port": 80}]}}),
    )
    .expect("updated");
    assert_eq!(done.service["spec"]["clusterIP"], "None");
    let unheaded = patched(&old, json!({"clusterIP": "None", "clusterIPs": ["None"]}));
    assert_eq!(refused(update(&old, unheaded)).len(), 1);
    // Headless to ExternalName gives back nothing.
    let done = update(
        &headless,
        patched(
            &headless,
            json!({"type": "ExternalName", "externalName": "a.b"}),
        ),
    )
    .expect("updated");
    assert!(done.release.is_empty() && done.acquire.is_empty());
}

#[test]
fn a_write_of_status_alone_allocates_nothing() {
    // A port without a node port on a NodePort Service (as an older keel could store one).
    let old = stored(json!({"type": "NodePort", "ports": [{"port": 80}]}));
    let mut new = old.clone();
    new["status"] = json!({"loadBalancer": {}});
    let done = allocate(
        info(),
        &old,
        &new,
        &ips(),
        &NodePortRange::default(),
        Draw {
            ip_start: 0,
            attempt: 0,
            seed: &mut || 0,
        },
    )
    .expect("allocated");
    assert_eq!(done.service, new);
    assert!(done.acquire.is_empty() && done.release.is_empty() && done.picked.is_empty());
}

#[test]
fn held_counts_what_the_type_holds() {
    let mut external = stored(json!({"type": "ExternalName", "externalName": "a.b"}));
    external["spec"]["clusterIP"] = json!("10.96.0.9");
    assert!(
        held(&external).is_empty(),
        "an ExternalName Service holds no address"
    );
    let plain = stored(json!({"ports": [{"port": 80, "nodePort": 30080}]}));
    assert_eq!(
        held(&plain),
        [ip_key("10.96.0.9".parse().expect("ip"))]
            .into_iter()
            .collect()
    );
    let weird = stored(
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 70000}, {"port": 81, "nodePort": "x"}]}),
    );
    assert_eq!(held(&weird).len(), 1, "only the address: neither is a port");
}
