use super::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::NodeSystemInfo;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

const MEMINFO_SAMPLE: &str = "\
MemTotal:       16318712 kB
MemFree:         1210820 kB
MemAvailable:    9876543 kB
Buffers:          512000 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

fn facts() -> NodeFacts {
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu", "4"),
        ("memory", "16318712Ki"),
        ("pods", "110"),
        ("ephemeral-storage", "102400000Ki"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), Quantity(value.to_string())))
    .collect();
    let mut allocatable = capacity.clone();
    allocatable.insert("memory".to_string(), Quantity("16216312Ki".to_string()));
    NodeFacts {
        name: "node-a".to_string(),
        internal_ip: Some(Ipv4Addr::new(10, 0, 0, 7)),
        hostname: "host-a".to_string(),
        capacity,
        allocatable,
        node_info: NodeSystemInfo {
            architecture: "amd64".to_string(),
            operating_system: "linux".to_string(),
            kubelet_version: "v1.37.0-keel.0.1.0".to_string(),
            ..NodeSystemInfo::default()
        },
        labels: default_labels("node-a", "amd64"),
        daemon_port: Some(10250),
    }
}

fn find<'a>(conditions: &'a [NodeCondition], type_: &str) -> &'a NodeCondition {
    conditions
        .iter()
        .find(|condition| condition.type_ == type_)
        .unwrap()
}

fn healthy() -> Pressure {
    Pressure {
        memory_available_bytes: Some(8 << 30),
        disk_available_fraction: Some(0.5),
    }
}

#[test]
fn meminfo_fields() {
    assert_eq!(
        parse_meminfo_kib(MEMINFO_SAMPLE, "MemTotal"),
        Some(16_318_712)
    );
    assert_eq!(
        parse_meminfo_kib(MEMINFO_SAMPLE, "MemAvailable"),
        Some(9_876_543)
    );
    // A prefix of another field's name is not that field.
    assert_eq!(parse_meminfo_kib(MEMINFO_SAMPLE, "Mem"), None);
    // Counts without a unit are not KiB.
    assert_eq!(parse_meminfo_kib(MEMINFO_SAMPLE, "HugePages_Total"), None);
}

#[test]
fn meminfo_garbage() {
    assert_eq!(parse_meminfo_kib("", "MemTotal"), None);
    assert_eq!(parse_meminfo_kib("garbage\n\0\n:::", "MemTotal"), None);
    assert_eq!(parse_meminfo_kib("MemTotal:", "MemTotal"), None);
    assert_eq!(parse_meminfo_kib("MemTotal: lots kB", "MemTotal"), None);
    assert_eq!(parse_meminfo_kib("MemTotal: -5 kB", "MemTotal"), None);
    assert_eq!(parse_meminfo_kib("MemTotal: 5 MB", "MemTotal"), None);
    assert_eq!(parse_meminfo_kib("MemTotal: 5 kB extra", "MemTotal"), None);
    // Larger than u64.
    assert_eq!(
        parse_meminfo_kib("MemTotal: 99999999999999999999999 kB", "MemTotal"),
        None
    );
    assert_eq!(
        parse_meminfo_kib("MemTotal: 18446744073709551615 kB", "MemTotal"),
        Some(u64::MAX)
    );
    // A malformed line does not hide a good one after it.
    assert_eq!(
        parse_meminfo_kib("MemTotal: x kB\nMemTotal: 42 kB", "MemTotal"),
        Some(42)
    );
}

#[test]
fn os_release_pretty_name() {
    let text = "\
NAME=\"Debian GNU/Linux\"
PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"
ID=debian
";
    assert_eq!(
        parse_os_release(text).as_deref(),
        Some("Debian GNU/Linux 13 (trixie)")
    );
    assert_eq!(
        parse_os_release("PRETTY_NAME='Alpine Linux v3.22'").as_deref(),
        Some("Alpine Linux v3.22")
    );
    assert_eq!(
        parse_os_release("PRETTY_NAME=Plain").as_deref(),
        Some("Plain")
    );
    assert_eq!(
        parse_os_release(r#"PRETTY_NAME="say \"hi\" \\ \$HOME""#).as_deref(),
        Some(r#"say "hi" \ $HOME"#)
    );
    // Later assignments win, as when sourced; comments are not assignments.
    assert_eq!(
        parse_os_release("PRETTY_NAME=first\n# PRETTY_NAME=comment\nPRETTY_NAME=\"second\"")
            .as_deref(),
        Some("second")
    );
}

#[test]
fn os_release_garbage() {
    assert_eq!(parse_os_release(""), None);
    assert_eq!(parse_os_release("garbage\n=\n==\n\0"), None);
    assert_eq!(parse_os_release("NAME=Debian\nID=debian"), None);
    assert_eq!(parse_os_release("PRETTY_NAME="), None);
    assert_eq!(parse_os_release("PRETTY_NAME=\"\""), None);
    // Unterminated quotes.
    assert_eq!(parse_os_release("PRETTY_NAME=\""), None);
    assert_eq!(parse_os_release("PRETTY_NAME=\"Debian"), None);
    assert_eq!(parse_os_release("PRETTY_NAME='Debian"), None);
    // A malformed later line does not erase a good earlier one.
    assert_eq!(
        parse_os_release("PRETTY_NAME=\"Good\"\nPRETTY_NAME=\"bad").as_deref(),
        Some("Good")
    );
}

#[test]
fn architectures_use_go_names() {
    assert_eq!(go_arch("x86_64"), "amd64");
    assert_eq!(go_arch("aarch64"), "arm64");
    assert_eq!(go_arch("x86"), "386");
    assert_eq!(go_arch("riscv64"), "riscv64");
    assert_eq!(go_arch("s390x"), "s390x");
}

#[test]
fn allocatable_memory_subtracts_the_reservation() {
    assert_eq!(allocatable_memory_kib(1000, 0), 1000);
    assert_eq!(allocatable_memory_kib(1000, 100 * 1024), 900);
    // A partial KiB reserved is a whole KiB not offered.
    assert_eq!(allocatable_memory_kib(1000, 1), 999);
    assert_eq!(allocatable_memory_kib(1000, u64::MAX), 0);
    assert_eq!(allocatable_memory_kib(0, 4096), 0);
}

#[test]
fn filesystem_fraction() {
    let usage = FsUsage {
        total_bytes: 1000,
        available_bytes: 50,
    };
    assert_eq!(usage.available_fraction(), Some(0.05));
    let empty = FsUsage {
        total_bytes: 0,
        available_bytes: 0,
    };
    assert_eq!(empty.available_fraction(), None);
}

#[test]
fn default_labels_are_the_kubelets() {
    let labels = default_labels("node-a", "arm64");
    assert_eq!(labels.len(), 5);
    assert_eq!(labels[LABEL_HOSTNAME], "node-a");
    assert_eq!(labels[LABEL_OS], "linux");
    assert_eq!(labels[LABEL_ARCH], "arm64");
    assert_eq!(labels[LABEL_BETA_OS], "linux");
    assert_eq!(labels[LABEL_BETA_ARCH], "arm64");
}

#[test]
fn conditions_when_healthy() {
    let now = at(1_700_000_000);
    let conditions = conditions(now, Ok(()), healthy(), &[]);
    let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(
        types,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    let expected = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
    ];
    for (type_, status, reason) in expected {
        let condition = find(&conditions, type_);
        assert_eq!(condition.status, status, "{type_}");
        assert_eq!(condition.reason.as_deref(), Some(reason), "{type_}");
        assert!(condition.message.is_some());
        assert_eq!(condition.last_heartbeat_time, Some(Time(now)));
        assert_eq!(condition.last_transition_time, Some(Time(now)));
    }
    assert_eq!(
        find(&conditions, "Ready").message.as_deref(),
        Some("keel node daemon is posting ready status")
    );
}

#[test]
fn not_ready_carries_the_message() {
    let conditions = conditions(
        at(1_700_000_000),
        Err("container runtime network not ready".to_string()),
        healthy(),
        &[],
    );
    let ready = find(&conditions, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("container runtime network not ready")
    );
    let empty = conditions_for_message("");
    assert_eq!(
        find(&empty, "Ready").message.as_deref(),
        Some("keel node daemon is not ready")
    );
}

fn conditions_for_message(message: &str) -> Vec<NodeCondition> {
    conditions(at(1_700_000_000), Err(message.to_string()), healthy(), &[])
}

#[test]
fn transition_time_kept_while_unchanged_and_moved_on_change() {
    let first = conditions(at(1_000), Ok(()), healthy(), &[]);
    let second = conditions(at(2_000), Ok(()), healthy(), &first);
    for condition in &second {
        assert_eq!(condition.last_heartbeat_time, Some(Time(at(2_000))));
        assert_eq!(
            condition.last_transition_time,
            Some(Time(at(1_000))),
            "{}",
            condition.type_
        );
    }
    let third = conditions(
        at(3_000),
        Err("runtime down".to_string()),
        healthy(),
        &second,
    );
    let ready = find(&third, "Ready");
    assert_eq!(ready.last_transition_time, Some(Time(at(3_000))));
    // The others did not change.
    assert_eq!(
        find(&third, "MemoryPressure").last_transition_time,
        Some(Time(at(1_000)))
    );
    // Unknown (the node lifecycle controller's) back to True is a transition too.
    let mut unknown = third.clone();
    for condition in &mut unknown {
        condition.status = "Unknown".to_string();
    }
    let fourth = conditions(at(4_000), Ok(()), healthy(), &unknown);
    for condition in &fourth {
        assert_eq!(condition.last_transition_time, Some(Time(at(4_000))));
    }
}

#[test]
fn memory_pressure_under_100mi() {
    let low = Pressure {
        memory_available_bytes: Some(MEMORY_AVAILABLE_THRESHOLD_BYTES - 1),
        disk_available_fraction: Some(0.5),
    };
    let conditions = conditions(at(1_000), Ok(()), low, &[]);
    let memory = find(&conditions, "MemoryPressure");
    assert_eq!(memory.status, "True");
    assert_eq!(
        memory.reason.as_deref(),
        Some("KubeletHasInsufficientMemory")
    );
    // Pressure does not make the node NotReady.
    assert_eq!(find(&conditions, "Ready").status, "True");

    let at_threshold = Pressure {
        memory_available_bytes: Some(MEMORY_AVAILABLE_THRESHOLD_BYTES),
        ..low
    };
    let conditions = super::conditions(at(1_000), Ok(()), at_threshold, &[]);
    assert_eq!(find(&conditions, "MemoryPressure").status, "False");
}

#[test]
fn disk_pressure_under_ten_percent() {
    let low = Pressure {
        memory_available_bytes: None,
        disk_available_fraction: Some(0.05),
    };
    let conditions = conditions(at(1_000), Ok(()), low, &[]);
    let disk = find(&conditions, "DiskPressure");
    assert_eq!(disk.status, "True");
    assert_eq!(disk.reason.as_deref(), Some("KubeletHasDiskPressure"));
    // Unmeasured memory is no pressure.
    assert_eq!(find(&conditions, "MemoryPressure").status, "False");

    let unmeasured = super::conditions(at(1_000), Ok(()), Pressure::default(), &[]);
    assert_eq!(find(&unmeasured, "DiskPressure").status, "False");
    let nan = Pressure {
        memory_available_bytes: None,
        disk_available_fraction: Some(f64::NAN),
    };
    let nan = super::conditions(at(1_000), Ok(()), nan, &[]);
    assert_eq!(find(&nan, "DiskPressure").status, "False");
}

#[test]
fn changes_ignore_heartbeat_times() {
    let first = conditions(at(1_000), Ok(()), healthy(), &[]);
    let later = conditions(at(2_000), Ok(()), healthy(), &first);
    assert!(!conditions_changed(&first, &later));
    let not_ready = conditions(at(2_000), Err("down".to_string()), healthy(), &first);
    assert!(conditions_changed(&first, &not_ready));
    // Nothing stored yet: a change.
    assert!(conditions_changed(&[], &later));
    // Another message under the same status is news too.
    let down = conditions(at(2_000), Err("down".to_string()), healthy(), &first);
    let still_down = conditions(at(3_000), Err("still down".to_string()), healthy(), &down);
    assert!(conditions_changed(&down, &still_down));
}

#[test]
fn merging_keeps_other_writers_conditions() {
    let network = NodeCondition {
        type_: "NetworkUnavailable".to_string(),
        status: "False".to_string(),
        reason: Some("RouteCreated".to_string()),
        ..NodeCondition::default()
    };
    let mut stale_ready = conditions(at(1_000), Err("down".to_string()), healthy(), &[]);
    stale_ready.retain(|condition| condition.type_ == "Ready");
    let stored = vec![network.clone(), stale_ready[0].clone()];
    let ours = conditions(at(2_000), Ok(()), healthy(), &stored);
    let merged = merge_conditions(&stored, ours);
    assert_eq!(merged.len(), 5);
    // In place: the stored order first, new types after.
    assert_eq!(merged[0], network);
    assert_eq!(merged[1].type_, "Ready");
    assert_eq!(merged[1].status, "True");
    let types: Vec<&str> = merged[2..].iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["MemoryPressure", "DiskPressure", "PIDPressure"]);
}

#[test]
fn node_object_carries_the_facts() {
    let facts = facts();
    let node = node_object(&facts, conditions(at(1_000), Ok(()), healthy(), &[]));
    assert_eq!(node.metadata.name.as_deref(), Some("node-a"));
    assert_eq!(node.metadata.labels.as_ref(), Some(&facts.labels));
    assert!(node.spec.is_none());
    let status = node.status.unwrap();

    let conditions = status.conditions.unwrap();
    let mut types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
    types.sort_unstable();
    assert_eq!(
        types,
        ["DiskPressure", "MemoryPressure", "PIDPressure", "Ready"]
    );

    let addresses: Vec<(&str, &str)> = status
        .addresses
        .as_deref()
        .unwrap()
        .iter()
        .map(|a| (a.type_.as_str(), a.address.as_str()))
        .collect();
    assert_eq!(
        addresses,
        [("InternalIP", "10.0.0.7"), ("Hostname", "host-a")]
    );

    let capacity = status.capacity.unwrap();
    for key in ["cpu", "memory", "pods", "ephemeral-storage"] {
        assert!(capacity.contains_key(key), "capacity {key}");
    }
    let allocatable = status.allocatable.unwrap();
    assert_eq!(allocatable["memory"], Quantity("16216312Ki".to_string()));
    assert_eq!(status.node_info.unwrap().architecture, "amd64");
    assert_eq!(
        status
            .daemon_endpoints
            .and_then(|endpoints| endpoints.kubelet_endpoint)
            .map(|endpoint| endpoint.port),
        Some(10250)
    );
}

#[test]
fn node_object_leaves_out_what_it_does_not_know() {
    let mut facts = facts();
    facts.internal_ip = None;
    facts.hostname = String::new();
    facts.daemon_port = None;
    let status = node_object(&facts, Vec::new()).status.unwrap();
    // Absent, not empty: as a merge patch it must not clear stored values.
    assert!(status.conditions.is_none());
    assert!(status.addresses.is_none());
    assert!(status.daemon_endpoints.is_none());
    let patch = serde_json::to_value(&status).unwrap();
    assert!(patch.get("conditions").is_none());
    assert!(patch.get("addresses").is_none());
    assert!(patch.get("daemonEndpoints").is_none());
    assert!(patch.get("capacity").is_some());
}

#[test]
fn lease_object_fields() {
    let now = at(1_700_000_000);
    let lease = lease_object("node-a", Some("uid-1"), now, LEASE_DURATION_SECONDS);
    assert_eq!(lease.metadata.name.as_deref(), Some("node-a"));
    assert_eq!(lease.metadata.namespace.as_deref(), Some("kube-node-lease"));
    let owners = lease.metadata.owner_references.unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].api_version, "v1");
    assert_eq!(owners[0].kind, "Node");
    assert_eq!(owners[0].name, "node-a");
    assert_eq!(owners[0].uid, "uid-1");
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("node-a"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    assert_eq!(spec.renew_time, Some(MicroTime(now)));

    let unowned = lease_object("node-a", None, now, LEASE_DURATION_SECONDS);
    assert!(unowned.metadata.owner_references.is_none());
}

#[test]
fn renewal_moves_renew_time_and_adopts_an_unowned_lease() {
    let mut stored = lease_object("node-a", None, at(1_000), 15);
    stored.metadata.resource_version = Some("7".to_string());
    if let Some(spec) = stored.spec.as_mut() {
        spec.holder_identity = Some("someone-else".to_string());
    }
    let renewed = renewed_lease(stored, "node-a", Some("uid-1"), at(2_000), 40);
    // The resourceVersion stays: the replace is a compare-and-swap.
    assert_eq!(renewed.metadata.resource_version.as_deref(), Some("7"));
    let spec = renewed.spec.as_ref().unwrap();
    assert_eq!(spec.renew_time, Some(MicroTime(at(2_000))));
    assert_eq!(spec.holder_identity.as_deref(), Some("node-a"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let owners = renewed.metadata.owner_references.as_ref().unwrap();
    assert_eq!(owners[0].uid, "uid-1");

    // An owned lease keeps its owner.
    let again = renewed_lease(renewed, "node-a", Some("uid-2"), at(3_000), 40);
    assert_eq!(again.metadata.owner_references.unwrap()[0].uid, "uid-1");
}

#[test]
fn register_error_names_the_call() {
    let error = RegisterError::api(
        "create",
        "node-a",
        kube::Error::Api(Box::new(kube::core::Status::failure(
            "nodes is forbidden",
            "Forbidden",
        ))),
    );
    let text = error.to_string();
    assert!(text.starts_with("create Node node-a: "), "{text}");
    assert!(text.contains("nodes is forbidden"), "{text}");
}
