//! Service updates that change a type or node ports, through kube-rs, with the store read
//! directly as the judge: ClusterIP → NodePort gets a port of the range; a requested free one
//! is taken and the old one is free for another Service; another Service's port is a 422 by
//! field; NodePort → ClusterIP frees its ports; ExternalName gives back its address and gets
//! a new one; a dry run reserves nothing; two updates racing for one port, one wins; twenty
//! switched at once get distinct ports — and after each step the reservation keys under
//! `/registry/ranges/` are exactly what the Services hold, each naming its Service.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::api::{ApiServer, Backend};

const NODE_PORTS: &str = "/registry/ranges/servicenodeports/";
const IPS: &str = "/registry/ranges/serviceips/";
const NS: &str = "realloc";

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("a Service")
}

fn http(node_port: Option<u16>) -> Value {
    match node_port {
        Some(p) => json!([{"name": "http", "port": 80, "nodePort": p}]),
        None => json!([{"name": "http", "port": 80}]),
    }
}

fn node_ports(service: &Service) -> Vec<Option<i32>> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|ports| ports.iter().map(|p| p.node_port).collect())
        .unwrap_or_default()
}

fn cluster_ip(service: &Service) -> Option<String> {
    service.spec.as_ref().and_then(|s| s.cluster_ip.clone())
}

/// Reservation keys under `prefix`: what each reserves → the Service key it names.
async fn reservations(etcd: &mut etcd_client::Client, prefix: &str) -> BTreeMap<String, String> {
    let response = etcd
        .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .expect("the store answers");
    response
        .kvs()
        .iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(kv.key());
            (
                key.trim_start_matches(prefix).to_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            )
        })
        .collect()
}

/// What the Services say they hold, as the reservations would name them; no port or address
/// held twice.
async fn holdings(client: &kube::Client) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let all: Api<Service> = Api::all(client.clone());
    let mut ports = BTreeMap::new();
    let mut ips = BTreeMap::new();
    for svc in all
        .list(&ListParams::default())
        .await
        .expect("listed")
        .items
    {
        let owner = format!(
            "/registry/services/specs/{}/{}",
            svc.metadata.namespace.clone().unwrap_or_default(),
            svc.metadata.name.clone().unwrap_or_default()
        );
        let spec = svc.spec.clone().unwrap_or_default();
        let kind = spec.type_.clone().unwrap_or_default();
        if kind == "NodePort" || kind == "LoadBalancer" {
            for port in node_ports(&svc).into_iter().flatten() {
                if let Some(other) = ports.insert(port.to_string(), owner.clone()) {
                    assert_eq!(other, owner, "node port {port} held by two Services");
                }
            }
        }
        match spec.cluster_ip.as_deref() {
            _ if kind == "ExternalName" => {}
            None | Some("" | "None") => {}
            Some(ip) => {
                assert!(
                    ips.insert(ip.to_owned(), owner.clone()).is_none(),
                    "{ip} held twice"
                );
            }
        }
    }
    (ports, ips)
}

/// Every reservation key belongs to exactly the one Service that holds its port or address.
async fn assert_exact(client: &kube::Client, etcd: &mut etcd_client::Client, when: &str) {
    let (ports, ips) = holdings(client).await;
    assert_eq!(
        reservations(etcd, NODE_PORTS).await,
        ports,
        "node ports, {when}"
    );
    assert_eq!(reservations(etcd, IPS).await, ips, "addresses, {when}");
}

/// A 422's message and the fields its causes name.
fn invalid(result: Result<Service, kube::Error>) -> (String, Vec<String>) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            let fields = status
                .details
                .map(|d| d.causes.into_iter().map(|c| c.field).collect())
                .unwrap_or_default();
            (status.message, fields)
        }
        other => panic!("expected a 422, got {other:?}"),
    }
}

/// A node port of the default range no reservation holds.
async fn free_port(etcd: &mut etcd_client::Client, skip: u16) -> u16 {
    let held = reservations(etcd, NODE_PORTS).await;
    (30000 + skip..=32767)
        .find(|p| !held.contains_key(&p.to_string()))
        .expect("a free node port")
}

#[test]
fn type_and_port_changes_reallocate_exactly() {
    let server = ApiServer::start(Backend::Keel, &[]);
    let rt = support::runtime();
    rt.block_on(async {
        let client = server.client().await;
        let mut etcd = etcd_client::Client::connect([server.store_endpoint.as_str()], None)
            .await
            .expect("the store");
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).expect("ns");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
        let services: Api<Service> = Api::namespaced(client.clone(), NS);
        let pp = PatchParams::default();
        let post = PostParams::default();
        let merge = |spec: Value| Patch::Merge(json!({ "spec": spec }));

        // ClusterIP → NodePort: a port of the range.
        services.create(&post, &service("a", json!({"ports": http(None)}))).await.expect("a");
        let a = services.patch("a", &pp, &merge(json!({"type": "NodePort"}))).await.expect("to NodePort");
        let first = node_ports(&a)[0].expect("a node port");
        assert!((30000..=32767).contains(&first), "{first}");
        let ip_a = cluster_ip(&a).expect("an address");
        assert_exact(&client, &mut etcd, "after ClusterIP → NodePort").await;

        // A requested free port: taken; the old one is free for another Service.
        let wanted = free_port(&mut etcd, 0).await;
        let a = services
            .patch("a", &pp, &merge(json!({"ports": http(Some(wanted))})))
            .await
            .expect("moved");
        assert_eq!(node_ports(&a), [Some(i32::from(wanted))]);
        let first = u16::try_from(first).expect("a port");
        let b = services
            .create(&post, &service("b", json!({"type": "NodePort", "ports": http(Some(first))})))
            .await
            .expect("the old port is free");
        assert_eq!(node_ports(&b), [Some(i32::from(first))]);
        assert_exact(&client, &mut etcd, "after a moved node port").await;

        // Another Service's port: refused by field, nothing moved.
        let (message, fields) = invalid(services.patch("a", &pp, &merge(json!({"ports": http(Some(first))}))).await);
        assert!(
            message.contains(&format!("spec.ports[0].nodePort: Invalid value: {first}: provided port is already allocated")),
            "{message}"
        );
        assert_eq!(fields, ["spec.ports[0].nodePort"]);
        assert_eq!(node_ports(&services.get("a").await.expect("a")), [Some(i32::from(wanted))]);

        // A dry run shows the change and reserves or frees nothing.
        let preview = services
            .patch("b", &PatchParams::default().dry_run(), &merge(json!({"type": "ClusterIP"})))
            .await
            .expect("dry run");
        assert_eq!(node_ports(&preview), [None]);
        let moved = free_port(&mut etcd, 1).await;
        let preview = services
            .patch("a", &PatchParams::default().dry_run(), &merge(json!({"ports": http(Some(moved))})))
            .await
            .expect("dry run");
        assert_eq!(node_ports(&preview), [Some(i32::from(moved))]);
        assert_exact(&client, &mut etcd, "after dry runs").await;
        assert!(!reservations(&mut etcd, NODE_PORTS).await.contains_key(&moved.to_string()));

        // NodePort → ClusterIP frees the port for another Service; ClusterIP keeps none.
        let b = services.patch("b", &pp, &merge(json!({"type": "ClusterIP"}))).await.expect("to ClusterIP");
        assert_eq!(node_ports(&b), [None]);
        services
            .create(&post, &service("c", json!({"type": "NodePort", "ports": http(Some(first))})))
            .await
            .expect("b's old port is free");
        let (message, _) = invalid(
            services
                .patch("c", &pp, &merge(json!({"type": "ClusterIP", "ports": http(Some(moved))})))
                .await,
        );
        assert!(
            message.contains("spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
            "{message}"
        );
        assert_exact(&client, &mut etcd, "after NodePort → ClusterIP").await;

        // ExternalName gives back its address and node port; back to ClusterIP, a new address.
        let a = services
            .patch("a", &pp, &merge(json!({"type": "ExternalName", "externalName": "example.com"})))
            .await
            .expect("to ExternalName");
        assert_eq!(cluster_ip(&a), None);
        assert_eq!(node_ports(&a), [None]);
        assert_exact(&client, &mut etcd, "after → ExternalName").await;
        let d = services
            .create(&post, &service("d", json!({"clusterIP": ip_a, "ports": http(None)})))
            .await
            .expect("a's old address is free");
        assert_eq!(cluster_ip(&d).as_deref(), Some(ip_a.as_str()));
        let a = services
            .patch("a", &pp, &merge(json!({"type": "ClusterIP", "externalName": null})))
            .await
            .expect("to ClusterIP");
        let again = cluster_ip(&a).expect("a new address");
        assert!(again.starts_with("10.") && again != ip_a, "{again}");
        assert_eq!(a.spec.as_ref().and_then(|s| s.cluster_ips.clone()), Some(vec![again.clone()]));
        let (message, fields) = invalid(
            services
                .patch("a", &pp, &merge(json!({"type": "ExternalName", "externalName": "example.com",
                    "clusterIP": ip_a, "clusterIPs": [ip_a]})))
                .await,
        );
        assert!(message.contains("may not be set for ExternalName services"), "{message}");
        assert_eq!(fields, ["spec.clusterIPs"]);
        assert_exact(&client, &mut etcd, "after ExternalName → ClusterIP").await;

        // Headless stays headless.
        services
            .create(&post, &service("h", json!({"clusterIP": "None", "ports": http(None)})))
            .await
            .expect("headless");
        let (message, fields) =
            invalid(services.patch("h", &pp, &merge(json!({"clusterIP": "10.96.100.100"}))).await);
        assert!(message.contains("may not change once set"), "{message}");
        assert_eq!(fields, ["spec.clusterIPs[0]"]);

        // Two updates racing for one requested node port: one wins, the other is refused.
        for name in ["r0", "r1"] {
            services.create(&post, &service(name, json!({"ports": http(None)}))).await.expect(name);
        }
        let contested = free_port(&mut etcd, 7).await;
        let to = merge(json!({"type": "NodePort", "ports": http(Some(contested))}));
        let (r0, r1) = tokio::join!(services.patch("r0", &pp, &to), services.patch("r1", &pp, &to));
        let won: Vec<bool> = [r0, r1]
            .into_iter()
            .map(|r| match r {
                Ok(s) => {
                    assert_eq!(node_ports(&s), [Some(i32::from(contested))]);
                    true
                }
                Err(e) => {
                    let (message, _) = invalid(Err(e));
                    assert!(message.contains("provided port is already allocated"), "{message}");
                    false
                }
            })
            .collect();
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        assert_exact(&client, &mut etcd, "after a race for one port").await;

        // Twenty switched at once: all get ports, all distinct.
        let names: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
        for name in &names {
            let spec = json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]});
            services.create(&post, &service(name, spec)).await.expect("created");
        }
        let to_node_port = merge(json!({"type": "NodePort"}));
        let switched =
            futures::future::join_all(names.iter().map(|n| services.patch(n, &pp, &to_node_port)))
                .await;
        let mut ports = BTreeSet::new();
        for result in switched {
            for port in node_ports(&result.expect("switched")) {
                let port = port.expect("a node port");
                assert!((30000..=32767).contains(&port) && ports.insert(port), "{port} twice");
            }
        }
        assert_eq!(ports.len(), 40);
        assert_exact(&client, &mut etcd, "after twenty concurrent switches").await;

        // Deleted, each gives back what it holds now.
        for svc in services.list(&ListParams::default()).await.expect("listed").items {
            let name = svc.metadata.name.unwrap_or_default();
            services.delete(&name, &DeleteParams::default()).await.expect("deleted");
        }
        assert!(reservations(&mut etcd, NODE_PORTS).await.is_empty());
        assert_exact(&client, &mut etcd, "after deleting them all").await;
        assert_eq!(reservations(&mut etcd, IPS).await.len(), 1, "the kubernetes Service's");
    });
}
