use super::*;
use crate::audit::{AuditLog, Record};

/// The example policy of the Kubernetes documentation ("Auditing", audit-policy.yaml), rule
/// for rule.
const DOCS_EXAMPLE: &str = r#"
apiVersion: audit.k8s.io/v1 # This is required.
kind: Policy
# Don't generate audit events for all requests in RequestReceived stage.
omitStages:
  - "RequestReceived"
rules:
# Log pod changes at RequestResponse level
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods"]
# Log "pods/log", "pods/status" at Metadata level
- level: Metadata
  resources:
  - group: ""
    resources: ["pods/log", "pods/status"]
# Don't log requests to a configmap called "controller-leader"
- level: None
  resources:
  - group: ""
    resources: ["configmaps"]
    resourceNames: ["controller-leader"]
# Don't log watch requests by the "system:kube-proxy" on endpoints or services
- level: None
  users: ["system:kube-proxy"]
  verbs: ["watch"]
  resources:
  - group: "" # core API group
    resources: ["endpoints", "services"]
# Don't log authenticated requests to certain non-resource URL paths.
- level: None
  userGroups: ["system:authenticated"]
  nonResourceURLs:
  - "/api*" # Wildcard matching.
  - "/version"
# Log the request body of configmap changes in kube-system.
- level: Request
  resources:
  - group: "" # core API group
    resources: ["configmaps"]
  namespaces: ["kube-system"]
# Log configmap and secret changes in all other namespaces at the Metadata level.
- level: Metadata
  resources:
  - group: "" # core API group
    resources: ["secrets", "configmaps"]
# Log all other resources in core and extensions at the Request level.
- level: Request
  resources:
  - group: "" # core API group
  - group: "extensions" # Version of group should NOT be included.
# A catch-all rule to log all other requests at the Metadata level.
- level: Metadata
  omitStages:
    - "RequestReceived"
"#;

const HEAD: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\n";

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..UserInfo::default()
    }
}

fn object(group: &str, resource: &str, subresource: &str, ns: &str, name: &str) -> ObjectRef {
    ObjectRef {
        resource: resource.into(),
        namespace: ns.into(),
        name: name.into(),
        api_group: group.into(),
        api_version: "v1".into(),
        subresource: subresource.into(),
    }
}

fn decide(policy: &Policy, who: Option<&UserInfo>, verb: &str, on: Option<&ObjectRef>) -> Level {
    let path = "/api/v1/whatever";
    let request = Attributes {
        user: who,
        verb,
        path,
        object: on,
    };
    policy.evaluate(&request).level
}

fn decide_path(policy: &Policy, who: Option<&UserInfo>, verb: &str, path: &str) -> Decision {
    let request = Attributes {
        user: who,
        verb,
        path,
        object: None,
    };
    policy.evaluate(&request)
}

#[test]
fn the_docs_example_decides_as_kube() {
    let policy = Policy::parse(DOCS_EXAMPLE).unwrap();
    assert_eq!(policy.rules().len(), 9);
    let alice = user("alice", &["dev", "system:authenticated"]);
    let me = Some(&alice);
    let pod = object("", "pods", "", "default", "web");
    assert_eq!(
        decide(&policy, me, "get", Some(&pod)),
        Level::RequestResponse
    );
    // "pods" does not match a subresource; pods/log and pods/status are Metadata; another
    // subresource of the core group falls to the core-group rule.
    let log = object("", "pods", "log", "default", "web");
    assert_eq!(decide(&policy, me, "get", Some(&log)), Level::Metadata);
    let exec = object("", "pods", "exec", "default", "web");
    assert_eq!(decide(&policy, me, "create", Some(&exec)), Level::Request);
    let leader = object("", "configmaps", "", "kube-system", "controller-leader");
    assert_eq!(decide(&policy, me, "update", Some(&leader)), Level::None);
    let other = object("", "configmaps", "", "kube-system", "settings");
    assert_eq!(decide(&policy, me, "update", Some(&other)), Level::Request);
    let elsewhere = object("", "configmaps", "", "default", "settings");
    assert_eq!(
        decide(&policy, me, "update", Some(&elsewhere)),
        Level::Metadata
    );
    let secret = object("", "secrets", "", "default", "token");
    assert_eq!(decide(&policy, me, "get", Some(&secret)), Level::Metadata);
    // kube-proxy's watches of endpoints are dropped; its lists and others' watches are not.
    let proxy = user("system:kube-proxy", &["system:authenticated"]);
    let endpoints = object("", "endpoints", "", "", "");
    assert_eq!(
        decide(&policy, Some(&proxy), "watch", Some(&endpoints)),
        Level::None
    );
    assert_eq!(
        decide(&policy, Some(&proxy), "list", Some(&endpoints)),
        Level::Request
    );
    assert_eq!(
        decide(&policy, me, "watch", Some(&endpoints)),
        Level::Request
    );
    // Other groups reach the catch-all.
    let deployment = object("apps", "deployments", "", "default", "web");
    let decision = policy.evaluate(&Attributes {
        user: me,
        verb: "patch",
        path: "/apis/apps/v1/namespaces/default/deployments/web",
        object: Some(&deployment),
    });
    let omit = Stages::of(&[Stage::RequestReceived]);
    assert_eq!(
        decision,
        Decision {
            level: Level::Metadata,
            omit
        }
    );
    let ingress = object("extensions", "ingresses", "", "default", "web");
    assert_eq!(decide(&policy, me, "get", Some(&ingress)), Level::Request);
    // Non-resource paths: dropped for authenticated users only.
    assert_eq!(
        decide_path(&policy, me, "get", "/apis/apps/v1").level,
        Level::None
    );
    assert_eq!(decide_path(&policy, me, "get", "/api").level, Level::None);
    assert_eq!(
        decide_path(&policy, me, "get", "/version").level,
        Level::None
    );
    assert_eq!(
        decide_path(&policy, me, "get", "/version/x").level,
        Level::Metadata
    );
    assert_eq!(
        decide_path(&policy, me, "get", "/healthz").level,
        Level::Metadata
    );
    assert_eq!(
        decide_path(&policy, None, "get", "/version").level,
        Level::Metadata
    );
    // Request and RequestResponse rules are named at start-up.
    assert_eq!(
        policy.warnings(),
        [
            "rules[0].level: RequestResponse is recorded at Metadata by keel",
            "rules[5].level: Request is recorded at Metadata by keel",
            "rules[7].level: Request is recorded at Metadata by keel",
        ]
    );
}

#[test]
fn resource_patterns_match_as_kubes() {
    let cases = [
        ("*", "pods", "", true),
        ("*", "pods", "log", true),
        ("pods", "pods", "", true),
        ("pods", "pods", "log", false),
        ("pods/log", "pods", "log", true),
        ("pods/log", "pods", "", false),
        ("pods/log", "pods", "exec", false),
        ("*/log", "pods", "log", true),
        ("*/log", "nodes", "log", true),
        ("*/log", "pods", "", false),
        ("pods/*", "pods", "", true),
        ("pods/*", "pods", "exec", true),
        ("pods/*", "podsx", "", false),
        ("*/*", "pods", "log", false),
        // Same length as "pods/log", but not it.
        ("pod/slog", "pods", "log", false),
        ("podsXlog", "pods", "log", false),
        ("", "pods", "", false),
    ];
    for (pattern, resource, subresource, want) in cases {
        assert_eq!(
            resource_matches(pattern, resource, subresource),
            want,
            "{pattern:?} against {resource}/{subresource}"
        );
    }
    let paths = [
        ("*", "/anything", true),
        ("/api*", "/apis/apps/v1", true),
        ("/api*", "/ap", false),
        ("/healthz", "/healthz", true),
        ("/healthz", "/healthz/etcd", false),
        ("/healthz*", "/healthz/etcd", true),
    ];
    for (spec, path, want) in paths {
        assert_eq!(path_matches(path, spec), want, "{spec:?} against {path}");
    }
}

#[test]
fn rules_match_on_every_list_they_set() {
    let text = format!(
        "{HEAD}rules:\n\
         - level: RequestResponse\n  verbs: [update]\n  resources: [{{group: \"*\", resources: [\"*/status\"]}}]\n\
         - level: None\n  namespaces: [\"\"]\n\
         - level: Request\n  userGroups: [humans]\n  resources: [{{group: \"\", resources: [pods], resourceNames: [busybox]}}]\n\
         - level: Metadata\n  users: [tim]\n  nonResourceURLs: [\"/logs*\"]\n"
    );
    let policy = Policy::parse(&text).unwrap();
    let tim = user("tim", &["humans"]);
    let bob = user("bob", &["robots"]);
    // Any group, any resource's status (kube's ClusterRoleUpdate case).
    let status = object(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "status",
        "",
        "x",
    );
    assert_eq!(
        decide(&policy, Some(&tim), "update", Some(&status)),
        Level::RequestResponse
    );
    // `namespaces: [""]` is every cluster-scoped object, and nothing namespaced.
    let role = object("rbac.authorization.k8s.io", "clusterroles", "", "", "edit");
    assert_eq!(decide(&policy, Some(&tim), "get", Some(&role)), Level::None);
    let busybox = object("", "pods", "", "default", "busybox");
    assert_eq!(
        decide(&policy, Some(&tim), "get", Some(&busybox)),
        Level::Request
    );
    assert_eq!(
        decide(&policy, Some(&bob), "get", Some(&busybox)),
        Level::None
    );
    assert_eq!(decide(&policy, None, "get", Some(&busybox)), Level::None);
    let other = object("", "pods", "", "default", "other");
    assert_eq!(
        decide(&policy, Some(&tim), "get", Some(&other)),
        Level::None
    );
    // A non-resource rule never matches a resource request, nor a resource rule a path.
    assert_eq!(
        decide(&policy, Some(&tim), "get", Some(&other)),
        Level::None
    );
    let logs = decide_path(&policy, Some(&tim), "get", "/logs/kubelet.log");
    assert_eq!(logs.level, Level::Metadata);
    assert_eq!(
        decide_path(&policy, Some(&bob), "get", "/logs/x").level,
        Level::None
    );
    assert_eq!(
        decide_path(&policy, None, "get", "/logs/x").level,
        Level::None
    );
}

#[test]
fn omit_stages_are_the_union_of_the_policys_and_the_rules() {
    let text = format!(
        "{HEAD}omitStages: [RequestReceived]\nrules:\n\
         - level: Metadata\n  verbs: [watch]\n  omitStages: [ResponseStarted, RequestReceived]\n\
         - level: None\n  verbs: [get]\n\
         - level: Metadata\n  verbs: [list]\n  omitStages: [Panic]\n"
    );
    let policy = Policy::parse(&text).unwrap();
    let watch = decide_path(&policy, None, "watch", "/x");
    assert_eq!(
        watch.omit,
        Stages::of(&[Stage::RequestReceived, Stage::ResponseStarted])
    );
    assert!(!watch.records(Stage::RequestReceived));
    assert!(!watch.records(Stage::ResponseStarted));
    assert!(watch.records(Stage::ResponseComplete));
    let list = decide_path(&policy, None, "list", "/x");
    assert!(list.records(Stage::ResponseComplete) && !list.records(Stage::RequestReceived));
    // A `None` rule records nothing, whatever it omits; no rule matching is `None` with the
    // policy's stages.
    assert!(!decide_path(&policy, None, "get", "/x").records(Stage::ResponseComplete));
    let unmatched = decide_path(&policy, None, "delete", "/x");
    let omit = Stages::of(&[Stage::RequestReceived]);
    assert_eq!(
        unmatched,
        Decision {
            level: Level::None,
            omit
        }
    );
    // Without a policy: everything, without RequestReceived.
    assert!(Decision::DEFAULT.records(Stage::ResponseStarted));
    assert!(Decision::DEFAULT.records(Stage::ResponseComplete));
    assert!(!Decision::DEFAULT.records(Stage::RequestReceived));
}

fn record(verb: &str, who: Option<UserInfo>, on: Option<ObjectRef>) -> Record {
    Record {
        audit_id: crate::audit::new_audit_id(),
        received: "2024-05-01T12:00:00.5Z".parse().unwrap(),
        request_uri: "/api/v1/namespaces/default/secrets/token?timeout=5s".into(),
        verb: verb.into(),
        user: who,
        impersonated: None,
        source_ip: "10.0.0.7".parse().unwrap(),
        user_agent: None,
        object: on,
        decision: None,
        omit: Stages::NONE,
    }
}

#[tokio::test]
async fn the_log_writes_request_received_and_drops_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let text = format!(
        "{HEAD}rules:\n\
         - level: None\n  resources: [{{group: \"\", resources: [configmaps]}}]\n\
         - level: Metadata\n  resources: [{{group: \"\", resources: [secrets]}}]\n\
         - level: Metadata\n  nonResourceURLs: [/api/v1/namespaces/default/secrets/token]\n  \
           omitStages: [RequestReceived]\n"
    );
    let log = AuditLog::open(&path)
        .await
        .unwrap()
        .with_policy(Policy::parse(&text).unwrap());
    let alice = Some(user("alice", &[]));
    let secret = object("", "secrets", "", "default", "token");
    let mut slot = Some(record("get", alice.clone(), Some(secret)));
    log.request_received(&mut slot);
    let kept = slot.expect("a Metadata request is kept");
    assert_eq!(kept.omit, Stages::NONE);
    let configmap = object("", "configmaps", "", "default", "x");
    let mut slot = Some(record("get", alice.clone(), Some(configmap)));
    log.request_received(&mut slot);
    assert!(slot.is_none(), "a None request is dropped at once");
    // The path rule matches on the path without the query, and omits RequestReceived.
    let mut slot = Some(record("get", alice, None));
    log.request_received(&mut slot);
    let omit = Stages::of(&[Stage::RequestReceived]);
    assert_eq!(slot.expect("kept").omit, omit);
    log.flush().await;
    let written = std::fs::read_to_string(&path).unwrap();
    let events: Vec<serde_json::Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{written}");
    let event = &events[0];
    assert_eq!(event["stage"], "RequestReceived");
    assert_eq!(event["level"], "Metadata");
    assert_eq!(event["objectRef"]["resource"], "secrets");
    assert!(event.get("responseStatus").is_none());
    assert_eq!(event["stageTimestamp"], event["requestReceivedTimestamp"]);
    assert_eq!(event["stageTimestamp"], "2024-05-01T12:00:00.500000Z");
}
