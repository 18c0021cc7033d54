use super::*;

fn set(cluster: &str, mask: u8) -> CidrSet {
    match parse_cidr(cluster).and_then(|cluster| CidrSet::new(cluster, mask)) {
        Ok(set) => set,
        Err(error) => panic!("{cluster}/{mask}: {error}"),
    }
}

#[test]
fn subnets_are_handed_out_in_order() {
    let mut cidrs = set("10.244.0.0/16", 24);
    assert_eq!(cidrs.len(), 256);
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.244.0.0/24"));
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.244.1.0/24"));
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.244.2.0/24"));
}

#[test]
fn the_cluster_address_is_masked() {
    // kube's TestCIDRSetFullyAllocated style: a host address names its network.
    let mut cidrs = set("127.123.234.7/30", 30);
    assert_eq!(cidrs.allocate_next().as_deref(), Some("127.123.234.4/30"));
    assert_eq!(cidrs.allocate_next(), None);
}

#[test]
fn a_full_range_allocates_nothing_until_a_release() {
    // kube's TestCIDRSetFullyAllocated: a /30 cut into /30s has one subnet.
    let mut cidrs = set("127.123.234.0/30", 30);
    assert_eq!(cidrs.allocate_next().as_deref(), Some("127.123.234.0/30"));
    assert_eq!(cidrs.allocate_next(), None);
    assert_eq!(cidrs.release("127.123.234.0/30"), Ok(()));
    assert_eq!(cidrs.allocate_next().as_deref(), Some("127.123.234.0/30"));
    assert_eq!(cidrs.allocate_next(), None);
}

#[test]
fn released_subnets_are_reused_after_the_search_wraps() {
    let mut cidrs = set("10.0.0.0/22", 24);
    for _ in 0..4 {
        assert!(cidrs.allocate_next().is_some());
    }
    assert_eq!(cidrs.release("10.0.1.0/24"), Ok(()));
    assert_eq!(cidrs.used(), 3);
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.0.1.0/24"));
    assert_eq!(cidrs.allocate_next(), None);
}

#[test]
fn the_search_starts_after_the_last_subnet_handed_out() {
    // kube's nextCandidate: a subnet freed behind the cursor waits for the wrap.
    let mut cidrs = set("10.0.0.0/22", 24);
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.0.0.0/24"));
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.0.1.0/24"));
    assert_eq!(cidrs.release("10.0.0.0/24"), Ok(()));
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.0.2.0/24"));
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.0.3.0/24"));
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.0.0.0/24"));
}

#[test]
fn occupied_ranges_are_skipped() {
    let mut cidrs = set("10.244.0.0/16", 24);
    assert_eq!(cidrs.occupy("10.244.0.0/24"), Ok(()));
    // A wider CIDR occupies every subnet it covers (kube's TestOccupy).
    assert_eq!(cidrs.occupy("10.244.2.0/23"), Ok(()));
    assert_eq!(cidrs.used(), 3);
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.244.1.0/24"));
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.244.4.0/24"));
}

#[test]
fn malformed_and_foreign_cidrs_are_refused() {
    let mut cidrs = set("10.244.0.0/16", 24);
    for cidr in ["", "10.244.1.0", "10.244.1.0/33", "10.244.300.0/24", "x/24"] {
        assert_eq!(
            cidrs.occupy(cidr),
            Err(IpamError::Malformed(cidr.to_string()))
        );
    }
    for cidr in ["10.245.0.0/24", "10.0.0.0/8"] {
        assert_eq!(
            cidrs.occupy(cidr),
            Err(IpamError::OutOfRange(cidr.to_string()))
        );
    }
    assert_eq!(cidrs.used(), 0);
    assert_eq!(cidrs.allocate_next().as_deref(), Some("10.244.0.0/24"));
}

#[test]
fn invalid_options_are_refused() {
    let cluster = (Ipv4Addr::new(10, 0, 0, 0), 8);
    assert_eq!(
        CidrSet::new(cluster, 4).err(),
        Some(IpamError::MaskSize {
            mask: 4,
            cluster: 8
        })
    );
    assert_eq!(
        CidrSet::new(cluster, 25).err(),
        Some(IpamError::TooManySubnets {
            mask: 25,
            cluster: 8
        })
    );
    assert!(CidrSet::new(cluster, 24).is_ok());
}

fn node(name: &str, cidr: Option<&str>) -> Node {
    let mut node = Node::default();
    node.metadata.name = Some(name.to_string());
    if let Some(cidr) = cidr {
        node.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            pod_cidr: Some(cidr.to_string()),
            ..Default::default()
        });
    }
    node
}

#[test]
fn existing_nodes_occupy_and_deleted_nodes_release() {
    let mut allocator = Allocator {
        cidrs: set("10.244.0.0/16", 24),
        assigned: HashMap::new(),
    };
    allocator.occupy_node(&node("a", Some("10.244.0.0/24")));
    allocator.occupy_node(&node("bad", Some("not-a-cidr")));
    allocator.occupy_node(&node("none", None));
    assert_eq!(allocator.cidrs.used(), 1);
    assert_eq!(
        allocator.cidrs.allocate_next().as_deref(),
        Some("10.244.1.0/24")
    );
    allocator.release_node(&node("a", Some("10.244.0.0/24")));
    assert_eq!(allocator.cidrs.used(), 1);
}

#[test]
fn allocation_failures_are_kubes_node_status_changes() {
    let full = failure_note(&AllocateError::Full, "n1");
    assert_eq!(full.type_, keel_events::EventType::Normal);
    assert_eq!(full.reason, "CIDRNotAvailable");
    assert_eq!(full.message, "Node n1 status is now: CIDRNotAvailable");
    let refused = crate::api_errors::refused(500, "InternalError", "etcd timed out");
    let patch = failure_note(&AllocateError::Patch(refused), "n1");
    assert_eq!(patch.reason, "CIDRAssignmentFailed");
    assert_eq!(patch.message, "Node n1 status is now: CIDRAssignmentFailed");
}
