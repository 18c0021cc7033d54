use std::net::{Ipv4Addr, SocketAddrV4};

use keel_api::{parse_manifests, Object};

use super::*;
use crate::service_table::L4Protocol;

fn objects(text: &str) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for object in parse_manifests(text).expect("test manifests parse") {
        match object {
            Object::Service(s) => services.push(s),
            Object::EndpointSlice(s) => slices.push(s),
            Object::Pod(_) => {}
        }
    }
    (services, slices)
}

const MANIFESTS: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.96.0.10
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-a
  labels: {kubernetes.io/service-name: web}
ports:
- {name: http, port: 8080}
- {name: dns, port: 5353, protocol: UDP}
endpoints:
- addresses: [10.244.0.3]
- addresses: [10.244.0.2]
  conditions: {ready: true}
- addresses: [10.244.0.4]
  conditions: {ready: false}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: other-namespace
  namespace: prod
  labels: {kubernetes.io/service-name: web}
ports:
- {name: http, port: 9999}
endpoints:
- addresses: [10.244.9.9]
";

/// Replaces the objects of one manifest file, then updates.
fn feed<'t>(
    tracker: &'t mut ChangeTracker,
    services: &[Service],
    slices: &[EndpointSlice],
) -> (Option<Update<'t>>, Vec<Skipped>) {
    tracker.set_source(
        SourceId::File("test.yaml".into()),
        services.to_vec(),
        slices.to_vec(),
    );
    tracker.update()
}

fn cidr() -> Ipv4Cidr {
    "10.96.0.0/12".parse().expect("valid CIDR")
}

#[test]
fn resolves_ports_by_name_and_keeps_only_ready_endpoints() {
    let (services, slices) = objects(MANIFESTS);
    let (table, skipped) = build_table(cidr(), &services, &slices);
    assert!(skipped.is_empty(), "{skipped:?}");
    let http = Frontend {
        vip: Ipv4Addr::new(10, 96, 0, 10),
        port: 80,
        protocol: L4Protocol::Tcp,
    };
    let dns = Frontend {
        port: 53,
        protocol: L4Protocol::Udp,
        ..http
    };
    assert_eq!(
        table.services[&http].backends,
        [
            "10.244.0.2:8080".parse().unwrap(),
            "10.244.0.3:8080".parse().unwrap()
        ] as [SocketAddrV4; 2]
    );
    assert_eq!(table.services[&http].name, "default/web:http");
    assert_eq!(table.services[&dns].backends.len(), 2);
    assert!(table.services[&dns]
        .backends
        .iter()
        .all(|b| b.port() == 5353));
}

#[test]
fn reports_only_changes() {
    let (services, slices) = objects(MANIFESTS);
    let mut tracker = ChangeTracker::new(cidr());
    assert!(
        feed(&mut tracker, &services, &slices).0.is_some(),
        "first table is a change"
    );
    assert!(
        feed(&mut tracker, &services, &slices).0.is_none(),
        "same objects: no change"
    );
    let (services, slices) = objects(&MANIFESTS.replace("ready: false", "ready: true"));
    let (update, _) = feed(&mut tracker, &services, &slices);
    let update = update.expect("changed");
    assert_eq!(
        update.table.backend_count(),
        6,
        "3 backends on each of 2 ports"
    );
    assert_eq!(
        update.changes,
        TableChanges::Frontends(update.table.services.keys().copied().collect()),
        "the endpoint that became ready backs both ports"
    );
    tracker.invalidate();
    let (update, _) = feed(&mut tracker, &services, &slices);
    assert_eq!(
        update.expect("after invalidate, reported again").changes,
        TableChanges::All
    );
}

#[test]
fn names_only_the_frontends_that_changed() {
    let (services, slices) = objects(MANIFESTS);
    let mut tracker = ChangeTracker::new(cidr());
    let before = feed(&mut tracker, &services, &slices)
        .0
        .expect("first")
        .table
        .clone();
    // One port's target port moves: only that frontend's backends differ.
    let (services, slices) = objects(&MANIFESTS.replace("port: 5353", "port: 5354"));
    let (update, _) = feed(&mut tracker, &services, &slices);
    let update = update.expect("changed");
    assert_eq!(update.table, &build_table(cidr(), &services, &slices).0);
    let TableChanges::Frontends(changed) = &update.changes else {
        panic!("expected a frontend list, got {:?}", update.changes);
    };
    assert_eq!(changed.len(), 1, "{changed:?}");
    let frontend = changed.first().copied().expect("one");
    assert_ne!(before.services[&frontend], update.table.services[&frontend]);
    for (f, entry) in &update.table.services {
        if *f != frontend {
            assert_eq!(&before.services[f], entry, "{f} did not change");
        }
    }
}

#[test]
fn skips_vips_outside_the_cidr_and_duplicate_frontends() {
    let text = format!(
        "{MANIFESTS}---\n{}---\n{}",
        "apiVersion: v1\nkind: Service\nmetadata: {name: aaa}\nspec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: far}\nspec: {clusterIP: 192.168.1.1, ports: [{port: 80}]}\n",
    );
    let (services, slices) = objects(&text);
    let (table, skipped) = build_table(cidr(), &services, &slices);
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    // `aaa` sorts first and so keeps 10.96.0.10:80; `web` loses that port only.
    assert_eq!(table.services.len(), 2);
    assert!(skipped.iter().any(|s| s.object == "Service default/web"));
    assert!(skipped
        .iter()
        .any(|s| s.reason.contains("outside the service CIDR")));
}

#[test]
fn terminating_endpoints_serve_only_when_nothing_is_ready() {
    let terminating = MANIFESTS
        .replace("  conditions: {ready: true}", "  conditions: {ready: false, serving: true, terminating: true}")
        .replace("- addresses: [10.244.0.3]\n", "- addresses: [10.244.0.3]\n  conditions: {ready: false, serving: false, terminating: true}\n");
    let (services, slices) = objects(&terminating);
    let (table, _) = build_table(cidr(), &services, &slices);
    let http = Frontend {
        vip: Ipv4Addr::new(10, 96, 0, 10),
        port: 80,
        protocol: L4Protocol::Tcp,
    };
    // .2 is terminating but serving; .3 terminating and not serving; .4 not ready.
    assert_eq!(
        table.services[&http].backends,
        ["10.244.0.2:8080".parse::<SocketAddrV4>().unwrap()]
    );

    let (services, slices) = objects(MANIFESTS);
    let (table, _) = build_table(cidr(), &services, &slices);
    assert_eq!(
        table.services[&http].backends.len(),
        2,
        "ready endpoints exist: terminating ones stay out"
    );
}

#[test]
fn node_ports_get_a_wildcard_frontend() {
    let text = MANIFESTS
        .replace("spec:\n  clusterIP", "spec:\n  type: NodePort\n  clusterIP")
        .replace(
            "{name: http, port: 80, targetPort: http}",
            "{name: http, port: 80, targetPort: http, nodePort: 30080}",
        );
    let (services, slices) = objects(&text);
    let (table, skipped) = build_table(cidr(), &services, &slices);
    assert!(skipped.is_empty(), "{skipped:?}");
    let node_port = Frontend {
        vip: Ipv4Addr::UNSPECIFIED,
        port: 30080,
        protocol: L4Protocol::Tcp,
    };
    let cluster_ip = Frontend {
        vip: Ipv4Addr::new(10, 96, 0, 10),
        port: 80,
        protocol: L4Protocol::Tcp,
    };
    assert_eq!(table.services[&node_port], table.services[&cluster_ip]);
    assert_eq!(table.services.len(), 3);
}

#[test]
fn cidr_parsing_rejects_garbage() {
    assert!("10.96.0.0".parse::<Ipv4Cidr>().is_err());
    assert!("10.96.0.0/33".parse::<Ipv4Cidr>().is_err());
    assert!("ten/12".parse::<Ipv4Cidr>().is_err());
    assert!("0.0.0.0/0"
        .parse::<Ipv4Cidr>()
        .expect("all")
        .contains(Ipv4Addr::new(1, 2, 3, 4)));
}

#[test]
fn one_changed_service_among_many_is_the_only_one_resolved() {
    let service = |i: u32, ready: bool| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\nspec: {{clusterIP: 10.96.{}.{}, ports: [{{name: http, port: 80}}]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-a, labels: {{kubernetes.io/service-name: s{i}}}}}\n\
             ports: [{{name: http, port: 8080}}]\nendpoints: [{{addresses: [10.244.0.2], conditions: {{ready: {ready}}}}}, {{addresses: [10.244.0.3]}}]\n---\n",
            i / 200,
            i % 200 + 1
        )
    };
    let text = |unready: Option<u32>| {
        (0..1000)
            .map(|i| service(i, unready != Some(i)))
            .collect::<String>()
    };
    let mut tracker = ChangeTracker::new(cidr());
    let (services, slices) = objects(&text(None));
    let (first, _) = feed(&mut tracker, &services, &slices);
    assert_eq!(first.map(|u| u.table.services.len()), Some(1000));
    assert_eq!(tracker.resolved, 1000);
    assert_eq!(tracker.backend_count(), 2000);

    let (services, slices) = objects(&text(Some(617)));
    let (update, _) = feed(&mut tracker, &services, &slices);
    let changes = update.expect("one endpoint became unready").changes;
    let changed = Frontend {
        vip: Ipv4Addr::new(10, 96, 3, 18),
        port: 80,
        protocol: L4Protocol::Tcp,
    };
    assert_eq!(changes, TableChanges::Frontends([changed].into()));
    assert_eq!(tracker.resolved, 1, "only s617 is resolved again");
    assert_eq!(tracker.backend_count(), 1999);
    assert_eq!(tracker.table(), &build_table(cidr(), &services, &slices).0);

    // The same objects again: nothing to resolve, nothing to report.
    assert!(feed(&mut tracker, &services, &slices).0.is_none());
    assert_eq!(tracker.resolved, 0);
}

#[test]
fn a_manifest_keeps_a_frontend_from_the_api_whatever_arrives_first() {
    let from = |name: &str, port: u16| {
        objects(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{clusterIP: 10.96.0.10, ports: [{{port: {port}}}]}}\n"
        ))
        .0
    };
    let api = || SourceId::Api("Service/default/web".into());
    let file = || SourceId::File("web.yaml".into());
    let mut tracker = ChangeTracker::new(cidr());
    tracker.set_source(api(), from("web", 80), Vec::new());
    let (update, skipped) = tracker.update();
    assert!(update.is_some() && skipped.is_empty());
    // The file's Service of the same name asks for the same frontend: it wins, as a manifest
    // comes before the API's objects, though it arrived second.
    tracker.set_source(file(), from("web", 80), Vec::new());
    tracker.set_source(
        SourceId::Api("Service/default/aaa".into()),
        from("aaa", 80),
        Vec::new(),
    );
    let (update, skipped) = tracker.update();
    let update = update.expect("the owner changed");
    assert_eq!(update.table.services.len(), 1);
    assert_eq!(
        update
            .table
            .services
            .values()
            .next()
            .map(|e| e.name.as_str()),
        Some("default/aaa:")
    );
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    // `aaa` goes: the manifest's `web` (file before API) takes the frontend, and one skip is left.
    tracker.set_source(
        SourceId::Api("Service/default/aaa".into()),
        Vec::new(),
        Vec::new(),
    );
    let (update, skipped) = tracker.update();
    assert!(update.is_some());
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].reason.contains("already served by default/web"),
        "{skipped:?}"
    );
    // The file goes: the API's `web` serves it, with nothing skipped.
    tracker.set_source(file(), Vec::new(), Vec::new());
    let (update, skipped) = tracker.update();
    assert!(skipped.is_empty(), "{skipped:?}");
    // Same entry as before (same name, no backends): the table did not change.
    assert!(update.is_none());
    assert_eq!(tracker.table().services.len(), 1);
    tracker.set_source(api(), Vec::new(), Vec::new());
    let (update, _) = tracker.update();
    assert_eq!(update.map(|u| u.table.services.len()), Some(0));
    assert!(tracker.sources.is_empty() && tracker.inputs.is_empty());
    assert!(tracker.claims.is_empty() && tracker.claimed.is_empty());
    assert_eq!(tracker.backend_count(), 0);
}

/// A small xorshift: the random walk below is the same on every run.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

/// One random object: a Service (ClusterIP or NodePort, maybe outside the CIDR or headless,
/// with ports that may collide with another's) or a slice, over few names, so that sources
/// often define the same service, claim the same frontend and carry each other's slices.
fn random_object(dice: &mut Dice) -> String {
    let namespace = ["default", "prod"][dice.roll(2) as usize];
    let name = ["a", "b", "c", "d"][dice.roll(4) as usize];
    if dice.roll(2) == 0 {
        let vip = match dice.roll(8) {
            0 => "192.168.0.1".to_string(),
            1 => "None".to_string(),
            n => format!("10.96.0.{n}"),
        };
        let node_ports = dice.roll(2) == 0;
        let port = |d: &mut Dice, index: u64| {
            let node_port = if node_ports && d.roll(3) != 0 {
                format!(", nodePort: {}", 30000 + 3 * index + d.roll(3))
            } else {
                String::new()
            };
            let protocol = ["TCP", "UDP"][d.roll(2) as usize];
            format!(
                "{{name: p{index}, port: {}, protocol: {protocol}{node_port}}}",
                80 + 2 * index + d.roll(2)
            )
        };
        let kind = if node_ports { "NodePort" } else { "ClusterIP" };
        let affinity = if dice.roll(4) == 0 {
            ", sessionAffinity: ClientIP"
        } else {
            ""
        };
        let ports = (0..1 + dice.roll(2))
            .map(|index| port(dice, index))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
             spec: {{type: {kind}, clusterIP: {vip}, ports: [{ports}]{affinity}}}\n"
        )
    } else {
        let endpoints = (0..dice.roll(4))
            .map(|_| {
                let ready = ["true", "false"][dice.roll(2) as usize];
                format!(
                    "{{addresses: [10.244.0.{}], conditions: {{ready: {ready}, serving: true, terminating: {}}}}}",
                    dice.roll(5) + 2,
                    !matches!(ready, "true")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: s{}, namespace: {namespace}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             ports: [{{name: p{}, port: {}, protocol: {}}}]\nendpoints: [{endpoints}]\n",
            dice.roll(1000),
            dice.roll(2),
            8080 + dice.roll(2),
            ["TCP", "UDP"][dice.roll(2) as usize],
        )
    }
}

#[test]
fn the_incremental_table_is_always_the_table_built_from_scratch() {
    let ids = [
        SourceId::File("a.yaml".into()),
        SourceId::File("b.yaml".into()),
        SourceId::PodSlices,
        SourceId::Api("Service/default/a".into()),
        SourceId::Api("Service/prod/b".into()),
        SourceId::Api("EndpointSlice/default/x".into()),
    ];
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut tracker = ChangeTracker::new(cidr());
    let mut held: BTreeMap<SourceId, (Vec<Service>, Vec<EndpointSlice>)> = BTreeMap::new();
    let mut last = ServiceTable::default();
    let mut reported = 0;
    for step in 0..2000 {
        // Replace one source (or two, before one update) with 0-5 random objects.
        for _ in 0..1 + dice.roll(2) {
            let id = ids[dice.roll(ids.len() as u64) as usize].clone();
            let text: Vec<String> = (0..dice.roll(6))
                .map(|_| random_object(&mut dice))
                .collect();
            let (services, slices) = objects(&text.join("---\n"));
            tracker.set_source(id.clone(), services.clone(), slices.clone());
            held.insert(id, (services, slices));
        }
        let all_services: Vec<&Service> = held.values().flat_map(|(s, _)| s).collect();
        let all_slices: Vec<&EndpointSlice> = held.values().flat_map(|(_, s)| s).collect();
        let (expected, mut expected_skipped) = build_table(cidr(), all_services, all_slices);
        let (update, mut skipped) = tracker.update();
        expected_skipped.sort();
        skipped.sort();
        assert_eq!(skipped, expected_skipped, "step {step}: skipped");
        match update {
            None => assert_eq!(expected, last, "step {step}: a change went unreported"),
            Some(update) => {
                reported += 1;
                assert_eq!(update.table, &expected, "step {step}");
                let named = match update.changes {
                    TableChanges::All => (step == 0).then(|| expected.changed_since(&last)),
                    TableChanges::Frontends(named) => Some(named),
                };
                assert_eq!(
                    named,
                    Some(expected.changed_since(&last)),
                    "step {step}: changes"
                );
            }
        }
        assert_eq!(
            tracker.backend_count(),
            expected.backend_count(),
            "step {step}"
        );
        last = expected;
    }
    assert!(
        reported > 1000,
        "the walk changed the table {reported} times only"
    );
}
