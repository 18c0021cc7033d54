//! The change tracker: turns Service and EndpointSlice objects into one [`ServiceTable`], and
//! says whether it changed. It never touches the kernel; proxy backends never read objects.
//!
//! Resolution follows kube-proxy: a service port's backends are the ready addresses of the
//! slices labelled with the service's name, at the slice port whose name and protocol equal the
//! service port's (the endpoints controller has already resolved `targetPort` into it).

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
};

use keel_api::{EndpointConditions, EndpointSlice, Protocol, Service, ServiceType};

use crate::service_table::{Frontend, L4Protocol, ServicePortEntry, ServiceTable, TableChanges};

pub use keel_host::cidr::Ipv4Cidr;

/// Something in the objects that keel skipped, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub object: String,
    pub reason: String,
}

/// Computes the table, remembers the last one, and reports only real changes, with the
/// frontends they touch.
pub struct ChangeTracker {
    service_cidr: Ipv4Cidr,
    current: Option<ServiceTable>,
}

/// A table that differs from the last one, and how.
#[derive(Debug)]
pub struct Update<'a> {
    pub table: &'a ServiceTable,
    pub changes: TableChanges,
}

impl ChangeTracker {
    pub fn new(service_cidr: Ipv4Cidr) -> Self {
        Self {
            service_cidr,
            current: None,
        }
    }

    /// Feeds the full current set of objects. Returns the new table when it differs from the
    /// previous one (always on the first call, and then with [`TableChanges::All`]), and what
    /// was skipped.
    pub fn update<'a>(
        &mut self,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> (Option<Update<'_>>, Vec<Skipped>) {
        let (table, skipped) = build_table(self.service_cidr, services, slices);
        let changes = match &self.current {
            None => TableChanges::All,
            Some(current) => {
                let changed = table.changed_since(current);
                if changed.is_empty() {
                    return (None, skipped);
                }
                TableChanges::Frontends(changed)
            }
        };
        let table = self.current.insert(table);
        (Some(Update { table, changes }), skipped)
    }

    /// Forgets the last table, so the next update is reported even if equal, as
    /// [`TableChanges::All`] (full resync).
    pub fn invalidate(&mut self) {
        self.current = None;
    }
}

/// Builds the table from scratch. Services are visited in namespace/name order, so when two
/// services claim the same frontend the outcome does not depend on file order.
pub fn build_table<'a>(
    service_cidr: Ipv4Cidr,
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> (ServiceTable, Vec<Skipped>) {
    let mut slices_by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        if let Some(service) = slice.service_name() {
            slices_by_service
                .entry((slice.metadata.namespace(), service))
                .or_default()
                .push(slice);
        }
    }
    let mut services: Vec<&Service> = services.into_iter().collect();
    // Stable: two Services of one namespace and name (a manifest's and the API's) keep the
    // order they came in, so the first always wins a frontend they share, whatever else
    // the set holds.
    services.sort_by(|a, b| {
        (a.metadata.namespace(), &a.metadata.name).cmp(&(b.metadata.namespace(), &b.metadata.name))
    });

    let mut table = ServiceTable::default();
    let mut skipped = Vec::new();
    for service in services {
        let (namespace, name) = (service.metadata.namespace(), service.metadata.name.as_str());
        let Some(vip) = service.spec.cluster_ip else {
            continue; // headless: nothing to translate
        };
        if !service_cidr.contains(vip) {
            skipped.push(Skipped {
                object: format!("Service {namespace}/{name}"),
                reason: format!("clusterIP {vip} is outside the service CIDR {service_cidr}"),
            });
            continue;
        }
        let slices = slices_by_service
            .get(&(namespace, name))
            .map_or(&[][..], Vec::as_slice);
        for port in &service.spec.ports {
            let protocol = match port.protocol {
                Protocol::Tcp => L4Protocol::Tcp,
                Protocol::Udp => L4Protocol::Udp,
                Protocol::Sctp => continue, // rejected by the manifest parser already
            };
            let entry = ServicePortEntry {
                name: format!("{namespace}/{name}:{}", port.name),
                backends: ready_backends(slices, &port.name, port.protocol),
                affinity_timeout: service.spec.affinity_timeout(),
            };
            let cluster_ip = Frontend {
                vip,
                port: port.port.get(),
                protocol,
            };
            // A NodePort answers on every node address: its frontend has the wildcard address,
            // which the datapath matches for destinations that are the node's own.
            let node_port = port
                .node_port
                .filter(|_| service.spec.service_type != ServiceType::ClusterIP)
                .map(|p| Frontend {
                    vip: Ipv4Addr::UNSPECIFIED,
                    port: p.get(),
                    protocol,
                });
            let mut claim =
                |frontend: Frontend, entry: ServicePortEntry| match table.services.get(&frontend) {
                    Some(owner) => skipped.push(Skipped {
                        object: format!("Service {namespace}/{name}"),
                        reason: format!("{frontend} is already served by {}", owner.name),
                    }),
                    None => {
                        table.services.insert(frontend, entry);
                    }
                };
            match node_port {
                Some(node_port) => {
                    claim(cluster_ip, entry.clone());
                    claim(node_port, entry);
                }
                None => claim(cluster_ip, entry),
            }
        }
    }
    (table, skipped)
}

/// Ready addresses of `slices` at the slice port named `port_name` with `protocol`.
fn ready_backends(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
) -> Vec<SocketAddrV4> {
    let ready = backends_where(slices, port_name, protocol, |c| c.is_ready());
    if !ready.is_empty() {
        return ready;
    }
    // Like kube-proxy (KEP-1669): with no ready endpoint left, endpoints that are shutting down
    // but still serving take new connections, rather than refusing them during a rollout.
    backends_where(slices, port_name, protocol, |c| {
        c.is_serving() && c.is_terminating()
    })
}

/// Addresses of `slices` at the slice port named `port_name` with `protocol`, for endpoints
/// whose conditions pass `wanted`, sorted and without duplicates.
fn backends_where(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
    wanted: impl Fn(&EndpointConditions) -> bool,
) -> Vec<SocketAddrV4> {
    let mut backends = Vec::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .find(|p| p.name == port_name && p.protocol == protocol)
        else {
            continue;
        };
        for endpoint in slice.endpoints.iter().filter(|e| wanted(&e.conditions)) {
            for addr in &endpoint.addresses {
                backends.push(SocketAddrV4::new(*addr, port.port.get()));
            }
        }
    }
    backends.sort_unstable();
    backends.dedup();
    backends
}

#[cfg(test)]
mod tests {
    use keel_api::{parse_manifests, Object};

    use super::*;

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
            tracker.update(&services, &slices).0.is_some(),
            "first table is a change"
        );
        assert!(
            tracker.update(&services, &slices).0.is_none(),
            "same objects: no change"
        );
        let (services, slices) = objects(&MANIFESTS.replace("ready: false", "ready: true"));
        let (update, _) = tracker.update(&services, &slices);
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
        let (update, _) = tracker.update(&services, &slices);
        assert_eq!(
            update.expect("after invalidate, reported again").changes,
            TableChanges::All
        );
    }

    #[test]
    fn names_only_the_frontends_that_changed() {
        let (services, slices) = objects(MANIFESTS);
        let mut tracker = ChangeTracker::new(cidr());
        let before = tracker
            .update(&services, &slices)
            .0
            .expect("first")
            .table
            .clone();
        // One port's target port moves: only that frontend's backends differ.
        let (services, slices) = objects(&MANIFESTS.replace("port: 5353", "port: 5354"));
        let (update, _) = tracker.update(&services, &slices);
        let update = update.expect("changed");
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
}
