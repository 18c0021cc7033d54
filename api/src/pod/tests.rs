use crate::{parse_manifests, parse_manifests_with_warnings, Object};

use super::*;

const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 5
  containers:
  - name: server
    image: busybox
    command: [httpd, -f]
    env:
    - {name: MODE, value: fast}
    ports:
    - containerPort: 8080
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {cpu: 1, memory: 64Mi}
";

fn pod(text: &str) -> Pod {
    match parse_manifests(text).expect("valid pod").remove(0) {
        Object::Pod(pod) => *pod,
        other => panic!("not a pod: {other:?}"),
    }
}

#[test]
fn reads_the_fields_keel_honours() {
    let pod = pod(POD);
    assert_eq!(pod.spec.restart_policy, RestartPolicy::OnFailure);
    assert_eq!(pod.spec.grace_period_seconds(), 5);
    let container = &pod.spec.containers[0];
    assert_eq!(
        container
            .resources
            .limits
            .cpu
            .as_ref()
            .map(|q| q.millicores()),
        Some(Ok(1000))
    );
    assert_eq!(
        container
            .resources
            .limits
            .memory
            .as_ref()
            .map(|q| q.bytes()),
        Some(Ok(64 << 20))
    );
    assert_eq!(container.run_as(&pod.spec), (None, None));
    let defaults = self::pod(&POD.replace("  restartPolicy: OnFailure\n", ""));
    assert_eq!(defaults.spec.restart_policy, RestartPolicy::Always);
}

#[test]
fn security_contexts_merge_and_are_checked_by_field() {
    let with = |pod_level: &str, container_level: &str| {
        POD.replace(
            "  containers:\n",
            &format!("  securityContext: {pod_level}\n  containers:\n"),
        )
        .replace(
            "    image: busybox\n",
            &format!("    image: busybox\n    securityContext: {container_level}\n"),
        )
    };
    let pod = pod(&with(
        "{runAsUser: 1000, runAsNonRoot: true, seccompProfile: {type: Unconfined}}",
        "{runAsGroup: 7, readOnlyRootFilesystem: true, capabilities: {add: [NET_ADMIN], drop: [ALL]}}",
    ));
    let security = pod.spec.containers[0].effective_security(&pod.spec);
    assert_eq!(
        (security.run_as_user, security.run_as_group),
        (Some(1000), Some(7))
    );
    assert!(security.run_as_non_root && security.seccomp_unconfined);
    assert!(security.no_new_privs && security.read_only_root_filesystem);
    assert!(!security.privileged);
    assert_eq!(security.add_capabilities, ["NET_ADMIN"]);
    assert_eq!(security.drop_capabilities, ["ALL"]);

    let defaults = self::pod(POD);
    let security = defaults.spec.containers[0].effective_security(&defaults.spec);
    assert!(security.no_new_privs && !security.seccomp_unconfined && !security.privileged);

    for (pod_level, container_level, field) in [
        (
            "{}",
            "{capabilities: {add: [\"NET_ADMIN\\n-j ACCEPT\"]}}",
            "spec.containers[0].securityContext.capabilities.add[0]",
        ),
        (
            "{}",
            "{capabilities: {drop: [EVERYTHING]}}",
            "spec.containers[0].securityContext.capabilities.drop[0]",
        ),
        (
            "{}",
            "{privileged: true, allowPrivilegeEscalation: false}",
            "spec.containers[0].securityContext.allowPrivilegeEscalation",
        ),
        (
            "{}",
            "{seccompProfile: {type: Localhost, localhostProfile: x.json}}",
            "spec.containers[0].securityContext.seccompProfile.type",
        ),
        (
            "{seccompProfile: {type: Unconfined, localhostProfile: x}}",
            "{}",
            "spec.securityContext.seccompProfile.localhostProfile",
        ),
    ] {
        let err = parse_manifests(&with(pod_level, container_level)).expect_err(field);
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let err = parse_manifests(&with("{}", "{privileged: yes}")).expect_err("not a bool");
    assert!(err.to_string().contains("privileged"), "{err}");
}

#[test]
fn unknown_fields_are_warned_about_with_their_path() {
    let text = POD.replace(
        "    image: busybox\n",
        "    image: busybox\n    lifecycle: {preStop: {exec: {command: [sleep, '1']}}}\n",
    );
    let (_, warnings) = parse_manifests_with_warnings(&text).expect("still valid");
    let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(fields, ["spec.containers[0].lifecycle"]);
    assert!(
        warnings[0].to_string().contains("Pod/web"),
        "{}",
        warnings[0]
    );
}

#[test]
fn invalid_fields_are_named() {
    let cases = [
        ("name: server", "name: Server_1", "spec.containers[0].name"),
        ("image: busybox", "image: ''", "spec.containers[0].image"),
        (
            "memory: 64Mi",
            "memory: 64MB",
            "spec.containers[0].resources.limits.memory",
        ),
        (
            "cpu: 100m",
            "cpu: 2",
            "spec.containers[0].resources.requests.cpu",
        ),
        (
            "restartPolicy: OnFailure",
            "restartPolicy: Sometimes",
            "spec.restartPolicy",
        ),
        (
            "containerPort: 8080",
            "containerPort: 0",
            "spec.containers[0].ports[0].containerPort",
        ),
        (
            "terminationGracePeriodSeconds: 5",
            "terminationGracePeriodSeconds: -1",
            "spec.terminationGracePeriodSeconds",
        ),
        ("name: MODE", "name: ''", "spec.containers[0].env[0].name"),
        ("name: web\n", "name: ''\n", "metadata.name"),
    ];
    for (from, to, field) in cases {
        let text = POD.replacen(from, to, 1);
        assert_ne!(text, POD, "{from} not in the fixture");
        let err = parse_manifests(&text).expect_err(to);
        assert!(err.to_string().contains(field), "{to}: {err}");
    }
    let duplicate = format!("{POD}  - name: server\n    image: busybox\n");
    let err = parse_manifests(&duplicate).expect_err("duplicate");
    assert!(err.to_string().contains("spec.containers[1].name"), "{err}");
    let none = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n";
    assert!(parse_manifests(none)
        .expect_err("empty")
        .to_string()
        .contains("spec.containers"));
}

fn with_probe(kind: &str, probe: &str) -> String {
    POD.replace(
        "    ports:\n",
        &format!("    {kind}: {probe}\n    ports:\n"),
    )
    .replace(
        "- containerPort: 8080",
        "- {containerPort: 8080, name: http}",
    )
}

#[test]
fn probes_default_like_kubernetes() {
    let pod = pod(&with_probe(
        "readinessProbe",
        "{httpGet: {port: http, path: /ready}}",
    ));
    let probe = pod.spec.containers[0]
        .readiness_probe
        .clone()
        .expect("probe");
    let defaults = (
        probe.initial_delay(),
        probe.period(),
        probe.timeout(),
        probe.success_threshold(),
        probe.failure_threshold(),
    );
    assert_eq!(defaults, (0, 10, 1, 1, 3));
    let port = &probe.http_get.as_ref().expect("httpGet").port;
    assert_eq!(pod.spec.containers[0].resolve_port(port), Some(8080));
}

#[test]
fn invalid_probes_are_named() {
    let cases = [
        (
            "livenessProbe",
            "{tcpSocket: {port: 8080}, successThreshold: 2}",
            "livenessProbe.successThreshold",
        ),
        (
            "startupProbe",
            "{exec: {command: [true]}, successThreshold: 3}",
            "startupProbe.successThreshold",
        ),
        ("readinessProbe", "{periodSeconds: 5}", "readinessProbe"),
        (
            "readinessProbe",
            "{exec: {command: [true]}, tcpSocket: {port: 1}}",
            "readinessProbe",
        ),
        (
            "readinessProbe",
            "{tcpSocket: {port: metrics}}",
            "readinessProbe.tcpSocket.port",
        ),
        (
            "livenessProbe",
            "{exec: {command: []}}",
            "livenessProbe.exec.command",
        ),
        (
            "livenessProbe",
            "{httpGet: {port: 8080, path: health}}",
            "livenessProbe.httpGet.path",
        ),
        (
            "livenessProbe",
            "{exec: {command: [true]}, periodSeconds: 0}",
            "livenessProbe.periodSeconds",
        ),
        (
            "livenessProbe",
            "{httpGet: {port: 8080, scheme: FTP}}",
            "scheme",
        ),
        (
            "livenessProbe",
            "{httpGet: {port: 8080, scheme: https}}",
            "scheme",
        ),
    ];
    for (kind, probe, field) in cases {
        let err = parse_manifests(&with_probe(kind, probe)).expect_err(probe);
        assert!(err.to_string().contains(field), "{probe}: {err}");
    }
    // Readiness may ask for several successes.
    parse_manifests(&with_probe(
        "readinessProbe",
        "{tcpSocket: {port: 8080}, successThreshold: 2}",
    ))
    .expect("valid");
}
