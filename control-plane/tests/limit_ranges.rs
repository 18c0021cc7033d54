//! LimitRanges with the real `kubectl`: created from YAML and listed by their short name, an
//! invalid one refused at its field, and the LimitRanger at work on pods — a pod that states
//! nothing gets the namespace's defaults and the annotation saying so, a pod over a bound is
//! refused with Kubernetes' words, and a ResourceQuota on `requests.cpu` counts the requests
//! the LimitRange gave (so pods that state no request are admitted until the quota is full).

mod support;

use support::api::{ApiServer, Backend};

const LIMITS: &str = "\
apiVersion: v1
kind: LimitRange
metadata: {name: compute, namespace: team}
spec:
  limits:
  - type: Container
    max: {cpu: \"1\", memory: 512Mi}
    min: {cpu: 50m}
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 250m, memory: 128Mi}
    maxLimitRequestRatio: {cpu: \"4\"}
  - type: Pod
    max: {cpu: \"2\"}
";

const INVALID: &str = "\
apiVersion: v1
kind: LimitRange
metadata: {name: backwards, namespace: team}
spec:
  limits:
  - type: Container
    min: {cpu: \"2\"}
    max: {cpu: \"1\", memory: 1x}
  - type: Node
";

/// A pod of `containers` busybox containers named c0, c1, …, each with `resources` (YAML).
fn pod(name: &str, containers: usize, resources: &str) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: team}}\nspec:\n  containers:\n"
    );
    for i in 0..containers {
        yaml.push_str(&format!(
            "  - {{name: c{i}, image: \"busybox:1.36\", resources: {resources}}}\n"
        ));
    }
    yaml
}

struct Session<'a> {
    server: &'a ApiServer,
}

impl Session<'_> {
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.server.dir.path().join(name);
        std::fs::write(&path, text).expect("manifest written");
        path.to_str().expect("utf-8 path").to_owned()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.server.kubectl_ok(args);
        println!("$ kubectl {}\n{out}", args.join(" "));
        out
    }

    /// kubectl that must fail; what it printed on stderr.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.server.kubectl(args);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        println!("$ kubectl {}\n{text}", args.join(" "));
        assert!(
            !out.status.success(),
            "kubectl {} should fail: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        text
    }

    fn create_pod(&self, name: &str, containers: usize, resources: &str) -> Result<(), String> {
        let path = self.file(&format!("{name}.yaml"), &pod(name, containers, resources));
        let out = self.server.kubectl(&["create", "-f", &path]);
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        println!("$ kubectl create -f {name}.yaml\n{text}");
        if out.status.success() {
            Ok(())
        } else {
            Err(text)
        }
    }

    fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let mut all = args.to_vec();
        let template = format!("jsonpath={path}");
        all.extend(["-n", "team", "-o", &template]);
        self.ok(&all)
    }
}

#[test]
fn limit_ranges_default_and_bound_pods_and_quota_counts_the_defaults() {
    let server = ApiServer::start(Backend::Keel, &[]);
    let s = Session { server: &server };
    s.ok(&["create", "namespace", "team"]);

    let limits = s.file("limits.yaml", LIMITS);
    let out = s.ok(&["create", "-f", &limits]);
    assert!(out.contains("limitrange/compute created"), "{out}");
    // The short name, and the server's table (NAME, CREATED AT).
    let out = s.ok(&["get", "limits", "-n", "team"]);
    let header = out.lines().next().unwrap_or("");
    assert!(
        header.starts_with("NAME") && header.contains("CREATED AT"),
        "{out}"
    );
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("compute ")),
        "{out}"
    );
    let out = s.ok(&["describe", "limitrange", "compute", "-n", "team"]);
    assert!(
        out.contains("Max Limit/Request Ratio") && out.contains("Container"),
        "{out}"
    );
    // Applying a change: a strategic merge patch replaces the list.
    let changed = s.file(
        "limits2.yaml",
        &LIMITS.replace("memory: 512Mi}", "memory: 1Gi}"),
    );
    let out = s.ok(&["apply", "-f", &changed]);
    assert!(out.contains("limitrange/compute configured"), "{out}");
    assert_eq!(
        s.jsonpath(
            &["get", "limits", "compute"],
            "{.spec.limits[0].max.memory}"
        ),
        "1Gi"
    );

    // An invalid LimitRange: every cause, at its field, in kube's words.
    let invalid = s.file("invalid.yaml", INVALID);
    let text = s.refused(&["create", "-f", &invalid]);
    for cause in [
        "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1",
        "spec.limits[0].max[memory]: Invalid value: \"1x\": quantities must match the regular expression",
        "spec.limits[1].type: Invalid value: \"Node\": must be a standard limit type or fully qualified",
    ] {
        assert!(text.contains(cause), "{cause:?} not in {text}");
    }

    s.ok(&[
        "create",
        "quota",
        "compute",
        "-n",
        "team",
        "--hard=requests.cpu=1",
    ]);

    // A pod that states nothing gets the defaults, and the annotation says what was set.
    s.create_pod("bare", 1, "{}").expect("admitted");
    assert_eq!(
        s.jsonpath(
            &["get", "pod", "bare"],
            "{.spec.containers[0].resources.requests.cpu} {.spec.containers[0].resources.requests.memory} \
             {.spec.containers[0].resources.limits.cpu} {.spec.containers[0].resources.limits.memory}"
        ),
        "250m 128Mi 500m 256Mi"
    );
    assert_eq!(
        s.jsonpath(
            &["get", "pod", "bare"],
            "{.metadata.annotations.kubernetes\\.io/limit-ranger}"
        ),
        "LimitRanger plugin set: cpu, memory request for container c0; cpu, memory limit for container c0"
    );
    // A stated limit is the request too (the pod's own defaults come first).
    s.create_pod("stated", 1, "{limits: {cpu: 400m}}")
        .expect("admitted");
    assert_eq!(
        s.jsonpath(
            &["get", "pod", "stated"],
            "{.spec.containers[0].resources.requests.cpu} {.spec.containers[0].resources.limits.memory}"
        ),
        "400m 256Mi"
    );

    // Over a bound: refused, 403, with the bound and the amount.
    let text = s
        .create_pod("big", 1, "{limits: {cpu: \"2\"}}")
        .expect_err("over max");
    assert!(
        text.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{text}"
    );
    let text = s
        .create_pod("bursty", 1, "{requests: {cpu: 100m}, limits: {cpu: \"1\"}}")
        .expect_err("over the ratio");
    assert!(
        text.contains("pods \"bursty\" is forbidden: cpu max limit to request ratio per Container is 4, but provided ratio is 10.000000"),
        "{text}"
    );
    // Five containers defaulted to 500m each: the pod's 2500m is over the Pod bound.
    let text = s.create_pod("wide", 5, "{}").expect_err("over the pod max");
    assert!(
        text.contains(
            "pods \"wide\" is forbidden: maximum cpu usage per Pod is 2, but limit is 2500m"
        ),
        "{text}"
    );
    s.refused(&["get", "pod", "big", "-n", "team"]);

    // The quota counted the defaulted requests: 250m + 400m so far; one more bare pod fits
    // (900m), the next (1150m) does not.
    assert_eq!(
        s.jsonpath(
            &["get", "quota", "compute"],
            "{.status.used.requests\\.cpu}"
        ),
        "650m"
    );
    s.create_pod("third", 1, "{}").expect("admitted");
    let text = s.create_pod("fourth", 1, "{}").expect_err("over quota");
    assert!(
        text.contains("exceeded quota: compute, requested: requests.cpu=250m, used: requests.cpu=900m, limited: requests.cpu=1"),
        "{text}"
    );

    // Without the LimitRange, a pod stating nothing has no request for the quota to count.
    s.ok(&["delete", "limitrange", "compute", "-n", "team"]);
    let empty = s.ok(&["get", "limits", "-n", "team", "-o", "name"]);
    assert_eq!(empty.trim(), "", "{empty}");
    let text = s
        .create_pod("plain", 1, "{}")
        .expect_err("nothing to count");
    assert!(text.contains("must specify requests.cpu"), "{text}");
}
