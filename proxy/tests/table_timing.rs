//! How long the daemon's table step takes at 10,000 services × 10 endpoints (the proxy bench's
//! shape): building the service table from every object and diffing it with the last one (what
//! the daemon did before the tracker was incremental), and the tracker's own step for one
//! changed endpoint, at 10,000 and 65,536 services in files of 1,000 (the bench's files).
//! Timing is reported, not asserted: run it on purpose, in release, with
//! `cargo test -p keel-proxy --release --test table_timing -- --ignored --nocapture`.

use std::{net::Ipv4Addr, time::Instant};

use keel_api::{parse_manifests, Object};
use keel_api::{EndpointSlice, Service};
use keel_proxy::tracker::{build_table, ChangeTracker, Ipv4Cidr, SourceId};

fn manifest(services: u32, unready: Option<u32>) -> String {
    manifest_range(0..services, unready)
}

fn manifest_range(services: std::ops::Range<u32>, unready: Option<u32>) -> String {
    let mut text = String::new();
    for i in services {
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

fn objects(text: &str) -> Result<(Vec<Service>, Vec<EndpointSlice>), Box<dyn std::error::Error>> {
    let (mut services, mut slices) = (Vec::new(), Vec::new());
    for object in parse_manifests(text)? {
        match object {
            Object::Service(s) => services.push(s),
            Object::EndpointSlice(s) => slices.push(s),
            Object::Pod(_) => {}
        }
    }
    Ok((services, slices))
}

#[test]
#[ignore = "a measurement: run on purpose, in release"]
fn one_change_through_the_incremental_tracker() -> Result<(), Box<dyn std::error::Error>> {
    const PER_FILE: u32 = 1000;
    let cidr: Ipv4Cidr = "10.96.0.0/12".parse()?;
    for services in [10_000u32, 65_536] {
        let mut tracker = ChangeTracker::new(cidr);
        let files = services.div_ceil(PER_FILE);
        let started = Instant::now();
        for file in 0..files {
            let range = file * PER_FILE..((file + 1) * PER_FILE).min(services);
            let (s, e) = objects(&manifest_range(range, None))?;
            tracker.set_source(SourceId::File(format!("services-{file}.yaml").into()), s, e);
        }
        let first = tracker.update().0.map(|u| u.table.services.len());
        assert_eq!(first, Some(services as usize));
        let loaded = started.elapsed();
        // The changed service's file, ready and with one endpoint unready, in turn.
        let changed = 4321 % services;
        let file = changed / PER_FILE;
        let range = file * PER_FILE..((file + 1) * PER_FILE).min(services);
        let versions = [
            objects(&manifest_range(range.clone(), Some(changed)))?,
            objects(&manifest_range(range, None))?,
        ];
        let mut times = Vec::new();
        for round in 0..40 {
            let (s, e) = versions[round % 2].clone();
            let started = Instant::now();
            tracker.set_source(SourceId::File(format!("services-{file}.yaml").into()), s, e);
            let (update, skipped) = tracker.update();
            let changes = update.map(|u| u.changes);
            times.push(started.elapsed().as_micros());
            assert!(skipped.is_empty());
            assert!(
                matches!(&changes, Some(keel_proxy::service_table::TableChanges::Frontends(f)) if f.len() == 1),
                "{changes:?}"
            );
        }
        times.sort_unstable();
        println!(
            "{services} services: first table {} ms; one change (a file of {PER_FILE} given anew, \
             one service resolved) p50 {} µs, max {} µs",
            loaded.as_millis(),
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    Ok(())
}
