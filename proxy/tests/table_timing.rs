//! How long the daemon's table step takes at 10,000 services × 10 endpoints (the proxy bench's
//! shape): building the service table from every object, and diffing it with the last one.
//! Timing is reported, not asserted: run it on purpose, in release, with
//! `cargo test -p keel-proxy --release --test table_timing -- --ignored --nocapture`.

use std::{net::Ipv4Addr, time::Instant};

use keel_api::{parse_manifests, Object};
use keel_proxy::tracker::{build_table, Ipv4Cidr};

fn manifest(services: u32, unready: Option<u32>) -> String {
    let mut text = String::new();
    for i in 0..services {
        let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + i);
        text.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\nspec:\n  clusterIP: {vip}\n  \
             ports: [{{name: http, port: 80}}]\n---\napiVersion: discovery.k8s.io/v1\n\
             kind: EndpointSlice\nmetadata:\n  name: s{i}-1\n  labels: {{kubernetes.io/service-name: s{i}}}\n\
             ports: [{{name: http, port: 8080}}]\nendpoints:\n"
        ));
        for e in 0..10u8 {
            let ready = !(unready == Some(i) && e == 0);
            text.push_str(&format!(
                "- addresses: [\"10.244.0.{}\"]\n  conditions: {{ready: {ready}}}\n",
                e + 2
            ));
        }
        text.push_str("---\n");
    }
    text
}

#[test]
#[ignore = "a measurement: run on purpose, in release"]
fn build_and_diff_ten_thousand_services() -> Result<(), Box<dyn std::error::Error>> {
    let cidr: Ipv4Cidr = "10.96.0.0/12".parse()?;
    let mut runs = Vec::new();
    for unready in [None, Some(4321)] {
        let (mut services, mut slices) = (Vec::new(), Vec::new());
        for object in parse_manifests(&manifest(10_000, unready))? {
            match object {
                Object::Service(s) => services.push(s),
                Object::EndpointSlice(s) => slices.push(s),
                Object::Pod(_) => {}
            }
        }
        runs.push((services, slices));
    }
    let mut best_build = u128::MAX;
    let mut best_diff = u128::MAX;
    let (old, _) = build_table(cidr, &runs[0].0, &runs[0].1);
    for _ in 0..5 {
        let started = Instant::now();
        let (new, skipped) = build_table(cidr, &runs[1].0, &runs[1].1);
        best_build = best_build.min(started.elapsed().as_micros());
        assert!(skipped.is_empty());
        let started = Instant::now();
        let changed = new.changed_since(&old);
        best_diff = best_diff.min(started.elapsed().as_micros());
        assert_eq!(changed.len(), 1);
    }
    println!("10,000 services: build best of 5: {best_build} µs; diff best of 5: {best_diff} µs");
    Ok(())
}
