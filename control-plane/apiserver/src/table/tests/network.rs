//! Service and EndpointSlice rows, cell for cell as `kubectl get -o wide` shows them.

use serde_json::{json, Value};

use super::{cells, column_names, object};

fn service(spec: Value, status: Value) -> Value {
    object(
        "v1",
        "Service",
        "web",
        600,
        json!({"spec": spec, "status": status}),
    )
}

#[test]
fn cluster_ip_service() {
    assert_eq!(
        column_names("services"),
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector"
        ]
    );
    let web = service(
        json!({
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ],
            "selector": {"app": "web", "tier": "front"},
        }),
        json!({"loadBalancer": {}}),
    );
    assert_eq!(
        cells("services", web),
        json!([
            "web",
            "ClusterIP",
            "10.96.0.10",
            "<none>",
            "80/TCP,53/UDP",
            "10m",
            "app=web,tier=front"
        ])
    );
}

#[test]
fn service_defaults_and_special_types() {
    // Type ClusterIP and protocol TCP are v1 defaults.
    let defaulted = service(
        json!({"clusterIPs": ["None"], "ports": [{"port": 5432}]}),
        json!({}),
    );
    assert_eq!(
        cells("services", defaulted),
        json!([
            "web",
            "ClusterIP",
            "None",
            "<none>",
            "5432/TCP",
            "10m",
            "<none>"
        ])
    );

    let node_port = service(
        json!({"type": "NodePort", "clusterIPs": ["10.96.0.11"], "externalIPs": ["192.0.2.1"],
               "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
        json!({}),
    );
    let row = cells("services", node_port);
    assert_eq!(row[3], "192.0.2.1");
    assert_eq!(row[4], "80:30080/TCP");

    let external_name = service(
        json!({"type": "ExternalName", "externalName": "db.example.com"}),
        json!({}),
    );
    assert_eq!(
        cells("services", external_name),
        json!([
            "web",
            "ExternalName",
            "<none>",
            "db.example.com",
            "<none>",
            "10m",
            "<none>"
        ])
    );
}

#[test]
fn load_balancer_service() {
    let balancer = |external_ips: Value, ingress: Value| {
        cells(
            "services",
            service(
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "externalIPs": external_ips,
                       "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}),
                json!({"loadBalancer": {"ingress": ingress}}),
            ),
        )[3]
            .clone()
    };
    assert_eq!(balancer(json!([]), json!([])), "<pending>");
    let ingress = json!([{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}, {"ip": "198.51.100.1"}, {"ip": "203.0.113.7"}]);
    // Not cut to 16 characters: the server prints the wide form.
    assert_eq!(
        balancer(json!([]), ingress.clone()),
        "198.51.100.1,203.0.113.7,lb.example.com"
    );
    assert_eq!(
        balancer(json!(["192.0.2.1"]), ingress),
        "198.51.100.1,203.0.113.7,lb.example.com,192.0.2.1"
    );
}

#[test]
fn endpoint_slice() {
    assert_eq!(
        column_names("endpointslices"),
        ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    );
    let slice = object(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "web-abc12",
        600,
        json!({
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "metrics", "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.0.5"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": true}},
            ],
        }),
    );
    assert_eq!(
        cells("endpointslices", slice),
        json!([
            "web-abc12",
            "IPv4",
            "80,metrics",
            "10.244.0.5,10.244.0.6",
            "10m"
        ])
    );

    let many = object(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "big",
        600,
        json!({
            "addressType": "IPv4",
            "ports": [{"port": 1}, {"port": 2}, {"port": 3}, {"port": 4}],
            "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3", "10.0.0.4", "10.0.0.5"]}],
        }),
    );
    let row = cells("endpointslices", many);
    assert_eq!(row[2], "1,2,3 + 1 more...");
    assert_eq!(row[3], "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...");

    let empty = object(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "none",
        600,
        json!({"addressType": "IPv6"}),
    );
    assert_eq!(
        cells("endpointslices", empty),
        json!(["none", "IPv6", "<unset>", "<unset>", "10m"])
    );
}
