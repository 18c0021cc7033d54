//! How long reading 10,000 Services and their EndpointSlices (20,000 documents, the shape of
//! the probes test's `many.yaml`) takes. Timing is reported, not asserted: run it on purpose,
//! in release, with `cargo test -p keel-api --release --test parse_timing -- --ignored
//! --nocapture`.

use std::time::Instant;

#[test]
#[ignore = "a measurement: run on purpose, in release"]
fn parse_ten_thousand_services_and_slices() -> Result<(), keel_api::ManifestError> {
    let mut text = String::new();
    for i in 0..10_000u32 {
        let vip = std::net::Ipv4Addr::from(0x0a64_0000 + i);
        let backend = std::net::Ipv4Addr::from(0x0ac8_0000 + i);
        text.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: default\n\
             spec:\n  clusterIP: {vip}\n  ports:\n  - name: http\n    port: 80\n    \
             targetPort: 8080\n    protocol: TCP\n  - name: dns\n    port: 80\n    \
             targetPort: 8080\n    protocol: UDP\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-{i}-1\n  \
             namespace: default\n  labels:\n    kubernetes.io/service-name: svc-{i}\n\
             addressType: IPv4\nports:\n- name: http\n  port: 8080\n  protocol: TCP\n- name: dns\n  \
             port: 8080\n  protocol: UDP\nendpoints:\n- addresses: [\"{backend}\"]\n  conditions:\n    \
             ready: true\n---\n"
        ));
    }
    let mut best = u128::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let objects = keel_api::parse_manifests(&text)?;
        best = best.min(started.elapsed().as_millis());
        assert_eq!(objects.len(), 20_000);
    }
    println!("20,000 objects: best of 5: {best} ms");
    Ok(())
}
