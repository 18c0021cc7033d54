//! Cases ported as data from Kubernetes' rbac_test.go (TestAuthorizer, TestRuleMatches),
//! rule_test.go (TestDefaultRuleResolver, TestAppliesTo) and policy_comparator_test.go
//! (TestCovers*, TestNonResourceURLCovers), then keel's own.

use super::*;
use k8s_openapi::api::rbac::v1::AggregationRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta};

/// A comma list; in these tables `core` stands for the core API group, "".
fn list(csv: &str) -> Vec<String> {
    let item = |s: &str| {
        if s == "core" {
            String::new()
        } else {
            s.to_string()
        }
    };
    csv.split(',').map(item).collect()
}

/// A rule written "apiGroups verbs resources [resourceNames]", each a comma list.
fn r(spec: &str) -> PolicyRule {
    let fields: Vec<&str> = spec.split(' ').collect();
    PolicyRule {
        api_groups: Some(list(fields[0])),
        verbs: list(fields[1]),
        resources: Some(list(fields[2])),
        resource_names: fields.get(3).map(|names| list(names)),
        non_resource_urls: None,
    }
}

/// A rule written "verbs nonResourceURLs".
fn u(spec: &str) -> PolicyRule {
    let (verbs, urls) = spec.split_once(' ').expect("verbs urls");
    PolicyRule {
        verbs: list(verbs),
        non_resource_urls: Some(list(urls)),
        ..Default::default()
    }
}

/// `newRule` of rbac_test.go: every field a comma list, so "" is the list [""].
fn new_rule(verbs: &str, groups: &str, resources: &str, urls: &str) -> PolicyRule {
    let split = |csv: &str| csv.split(',').map(str::to_string).collect::<Vec<_>>();
    PolicyRule {
        verbs: split(verbs),
        api_groups: Some(split(groups)),
        resources: Some(split(resources)),
        non_resource_urls: Some(split(urls)),
        resource_names: None,
    }
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    let namespace = (!namespace.is_empty()).then(|| namespace.to_string());
    ObjectMeta {
        name: Some(name.to_string()),
        namespace,
        ..Default::default()
    }
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta("", name),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// A subject written "Kind:name", as the Kubernetes tests write them.
fn subject(spec: &str) -> Subject {
    let (kind, name) = spec.split_once(':').expect("Kind:name");
    let api_group = (kind != "ServiceAccount").then(|| GROUP_NAME.to_string());
    Subject {
        kind: kind.to_string(),
        name: name.to_string(),
        api_group,
        namespace: None,
    }
}

fn subjects(specs: &[&str]) -> Vec<Subject> {
    specs.iter().map(|spec| subject(spec)).collect()
}

fn sa(namespace: &str, name: &str) -> Subject {
    let namespace = (!namespace.is_empty()).then(|| namespace.to_string());
    Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace,
        api_group: None,
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some(GROUP_NAME.into()),
        kind: kind.into(),
        name: name.into(),
    }
}

fn cluster_binding(role: &str, specs: &[&str]) -> ClusterRoleBinding {
    let role_ref = role_ref("ClusterRole", role);
    let subjects = Some(subjects(specs));
    ClusterRoleBinding {
        metadata: meta("", role),
        role_ref,
        subjects,
    }
}

fn binding(namespace: &str, kind: &str, role: &str, subjects: Vec<Subject>) -> RoleBinding {
    let role_ref = role_ref(kind, role);
    RoleBinding {
        metadata: meta(namespace, role),
        role_ref,
        subjects: Some(subjects),
    }
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    let groups = groups.iter().map(|g| g.to_string()).collect();
    UserInfo {
        name: name.to_string(),
        groups,
        ..Default::default()
    }
}

/// A resource request; set the other fields with struct update syntax.
fn request<'a>(
    user: &'a UserInfo,
    verb: &'a str,
    namespace: &'a str,
    api_group: &'a str,
    resource: &'a str,
) -> Attributes<'a> {
    let (resource_request, subresource, name, path) = (true, "", "", "");
    Attributes {
        user,
        verb,
        resource_request,
        namespace,
        api_group,
        resource,
        subresource,
        name,
        path,
    }
}

fn url_request<'a>(user: &'a UserInfo, verb: &'a str, path: &'a str) -> Attributes<'a> {
    Attributes {
        resource_request: false,
        path,
        ..request(user, verb, "", "", "")
    }
}

fn allowed(policy: &Policy, attrs: Attributes<'_>) -> bool {
    policy.authorize(&attrs) == Decision::Allow
}

/// TestAuthorizer's `defaultAttributes`: user, comma-separated groups, verb, resource,
/// subresource, namespace, apiGroup; then whether it is allowed.
type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    bool,
);

fn check_rows(policy: &Policy, rows: &[Row<'_>]) {
    for &(name, groups, verb, resource, subresource, namespace, group, want) in rows {
        let groups: Vec<&str> = groups.split(',').collect();
        let u = user(name, &groups);
        let attrs = Attributes {
            subresource,
            ..request(&u, verb, namespace, group, resource)
        };
        assert_eq!(allowed(policy, attrs), want, "{attrs:?}");
    }
}

#[test]
#[rustfmt::skip]
fn authorizer_cases_from_kubernetes() {
    let admin_in_ns1 = |rules: Vec<PolicyRule>| Policy {
        cluster_roles: vec![cluster_role("admin", rules)],
        role_bindings: vec![
            binding("ns1", "ClusterRole", "admin", subjects(&["User:admin", "Group:admins"])),
        ],
        ..Default::default()
    };
    check_rows(&admin_in_ns1(vec![new_rule("*", "*", "*", "*")]), &[
        ("admin", "", "get", "Pods", "", "ns1", "", true),
        ("admin", "", "watch", "Pods", "", "ns1", "", true),
        ("admin", "group1", "watch", "Foobar", "", "ns1", "", true),
        ("joe", "admins", "watch", "Foobar", "", "ns1", "", true),
        ("joe", "group1,admins", "watch", "Foobar", "", "ns1", "", true),
        ("admin", "", "GET", "Pods", "", "ns2", "", false),
        ("admin", "", "GET", "Nodes", "", "", "", false),
        ("admin", "admins", "GET", "Pods", "", "ns2", "", false),
        ("admin", "admins", "GET", "Nodes", "", "", "", false),
    ]);
    // Subresource resolution: "pods" is not "pods/status"; "*/scale" is any resource's.
    check_rows(&admin_in_ns1(vec![new_rule("*", "*", "pods", "*")]), &[
        ("admin", "", "get", "pods", "", "ns1", "", true),
        ("admin", "", "get", "pods", "status", "ns1", "", false),
    ]);
    let status_and_scale =
        vec![new_rule("*", "*", "pods/status", "*"), new_rule("*", "*", "*/scale", "*")];
    check_rows(&admin_in_ns1(status_and_scale), &[
        ("admin", "", "get", "pods", "status", "ns1", "", true),
        ("admin", "", "get", "pods", "scale", "ns1", "", true),
        ("admin", "", "get", "deployments", "scale", "ns1", "", true),
        ("admin", "", "get", "anything", "scale", "ns1", "", true),
        ("admin", "", "get", "pods", "", "ns1", "", false),
    ]);
}

#[test]
#[rustfmt::skip]
fn non_resource_url_cases_from_kubernetes() {
    let policy = Policy {
        cluster_roles: vec![
            cluster_role("non-resource-url-getter", vec![new_rule("get", "", "", "/apis")]),
            cluster_role("non-resource-url", vec![new_rule("*", "", "", "/apis")]),
            cluster_role("non-resource-url-prefix", vec![new_rule("get", "", "", "/apis/*")]),
        ],
        cluster_role_bindings: vec![
            cluster_binding("non-resource-url-getter", &["User:foo", "Group:bar"]),
            cluster_binding("non-resource-url", &["User:admin", "Group:admin"]),
            cluster_binding("non-resource-url-prefix", &["User:prefixed", "Group:prefixed"]),
        ],
        ..Default::default()
    };
    // (user, group, verb, path, allowed), each tried as the user and as a group member.
    let rows = [
        ("foo", "bar", "get", "/apis", true),
        ("admin", "admin", "get", "/apis", true),
        ("admin", "admin", "watch", "/apis", true),
        ("prefixed", "prefixed", "get", "/apis/v1", true),
        ("prefixed", "prefixed", "get", "/apis/v1/foobar", true),
        ("foo", "bar", "watch", "/apis", false),
        ("foo", "bar", "get", "/api/v1", false),
        ("admin", "admin", "get", "/api/v1", false),
        ("prefixed", "prefixed", "get", "/api/v1", false),
    ];
    for (name, group, verb, path, want) in rows {
        for who in [user(name, &[]), user("", &[group])] {
            let attrs = url_request(&who, verb, path);
            assert_eq!(allowed(&policy, attrs), want, "{who:?} {verb} {path}");
        }
    }
}

#[test]
#[rustfmt::skip]
fn rule_matches_cases_from_kubernetes() {
    let nobody = UserInfo::default();
    let check = |rule: &PolicyRule, attrs: Attributes<'_>, want: char| {
        assert_eq!(rule_allows(&attrs, rule), want == '+', "{rule:?} {attrs:?}");
    };
    // Expectations in request order: verb1 then verb2, each over these (group, resource).
    let requests = [
        ("group1", "resource1"), ("group2", "resource1"),
        ("group1", "resource2"), ("group2", "resource2"),
    ];
    let cases = [
        (r("group1 * resource1"), "+---+---"),
        (r("* verb1 resource1"), "++------"),
        (r("group1 verb1 *"), "+-+-----"),
        (r("group1,group2 verb1,verb2 resource1,resource2"), "++++++++"),
    ];
    for (rule, expected) in &cases {
        let mut expected = expected.chars();
        for verb in ["verb1", "verb2"] {
            for (group, resource) in requests {
                let attrs = request(&nobody, verb, "", group, resource);
                check(rule, attrs, expected.next().unwrap());
            }
        }
    }
    let subresource_rule = r("* * resource1/subresource1");
    let with_subresources = [
        ("group1", "resource1", "subresource1", '+'),
        ("group2", "resource1", "subresource2", '-'),
        ("group1", "resource2", "subresource1", '-'),
        ("group2", "resource2", "subresource1", '-'),
    ];
    for verb in ["verb1", "verb2"] {
        for (group, resource, subresource, want) in with_subresources {
            let attrs =
                Attributes { subresource, ..request(&nobody, verb, "", group, resource) };
            check(&subresource_rule, attrs, want);
        }
    }
    let urls = ["/foo", "/foo/bar", "/foo/baz", "/foo/bar/one", "/foo/baz/one"];
    let url_cases = [(u("verb1 *"), "+++++-----"), (u("* /foo,/foo/bar/one"), "+--+-+--+-")];
    for (rule, expected) in &url_cases {
        let mut expected = expected.chars();
        for verb in ["verb1", "verb2"] {
            for path in urls {
                check(rule, url_request(&nobody, verb, path), expected.next().unwrap());
            }
        }
    }
    let subpath = u("verb1 /foo/*");
    for (i, path) in urls.iter().enumerate() {
        check(&subpath, url_request(&nobody, "verb1", path), if i == 0 { '-' } else { '+' });
        let not_foo = format!("/not{}", &path[1..]);
        check(&subpath, url_request(&nobody, "verb1", &not_foo), '-');
    }
}

#[test]
fn rules_for_cases_from_kubernetes() {
    let (read_pods, read_services) = (r("v1 GET,WATCH pods"), r("v1 GET,WATCH services"));
    let admin = r("* * *");
    let readthings = Role {
        metadata: meta("namespace1", "readthings"),
        rules: Some(vec![read_pods.clone(), read_services.clone()]),
    };
    let foobar = subjects(&["User:foobar", "Group:group1"]);
    let policy = Policy {
        roles: vec![readthings],
        cluster_roles: vec![
            cluster_role("cluster-admin", vec![admin.clone()]),
            cluster_role("write-nodes", vec![r("v1 PUT,CREATE,UPDATE nodes")]),
        ],
        role_bindings: vec![binding("namespace1", "Role", "readthings", foobar)],
        cluster_role_bindings: vec![cluster_binding(
            "cluster-admin",
            &["User:admin", "Group:admin"],
        )],
    };
    let cases = [
        (
            user("foobar", &[]),
            "namespace1",
            vec![read_pods, read_services],
        ),
        (user("foobar", &[]), "namespace2", vec![]),
        // Without a namespace only cluster rules apply.
        (user("foobar", &["admin"]), "", vec![admin]),
        (UserInfo::default(), "", vec![]),
    ];
    for (who, namespace, want) in cases {
        let got = policy.rules_for(&who, namespace);
        assert_eq!(got, (want, vec![]), "{who:?} in {namespace:?}");
    }
}

#[test]
#[rustfmt::skip]
fn applies_to_cases_from_kubernetes() {
    let everyone = ["Group:system:authenticated", "Group:system:unauthenticated"];
    let cases: [(&[&str], UserInfo, &str, bool); 8] = [
        (&["User:foobar"], user("foobar", &[]), "", true),
        (&["User:barfoo", "User:foobar"], user("foobar", &[]), "", true),
        (&["User:barfoo", "User:foobar"], user("zimzam", &[]), "", false),
        (&["User:barfoo", "Group:foobar"], user("zimzam", &["foobar"]), "", true),
        (&["User:barfoo", "Group:foobar"], user("zimzam", &["foobar"]), "namespace1", true),
        // "*" is a name, not a wildcard.
        (&["User:*"], user("foobar", &[]), "default", false),
        (&everyone, user("foobar", &["system:authenticated"]), "default", true),
        (&everyone, user("system:anonymous", &["system:unauthenticated"]), "default", true),
    ];
    for (specs, who, namespace, want) in cases {
        assert_eq!(applies_to(&who, &subjects(specs), namespace), want, "{specs:?} {who:?}");
    }
    let sa_user = user("system:serviceaccount:kube-system:default", &[]);
    let listed =
        [subject("User:barfoo"), subject("Group:foobar"), sa("kube-system", "default")];
    assert!(applies_to(&sa_user, &listed, "default"));
    // Without a namespace the subject means the role binding's; a cluster binding has none.
    assert!(applies_to(&sa_user, &[sa("", "default")], "kube-system"));
    assert!(!applies_to(&sa_user, &[sa("", "default")], "default"));
    assert!(!applies_to(&sa_user, &[sa("", "default")], ""));
    // Namespace and name compare whole, not as prefixes; unknown kinds match nobody.
    for name in ["kube-system:default2", "kube-systemx:default", "kube-system"] {
        let who = user(&format!("system:serviceaccount:{name}"), &[]);
        assert!(!applies_to(&who, &[sa("kube-system", "default")], ""), "{name}");
    }
    let robot = subject("Robot:system:serviceaccount:kube-system:default");
    assert!(!applies_to(&sa_user, &[robot], ""));
}

#[test]
#[rustfmt::skip]
fn role_bindings_grant_only_in_their_namespace() {
    let rules = Some(vec![r("core get configmaps")]);
    let reader = Role { metadata: meta("team", "reader"), rules };
    let policy = Policy {
        roles: vec![reader],
        cluster_roles: vec![cluster_role("pod-reader", vec![r("core get,list pods")])],
        role_bindings: vec![
            binding("team", "ClusterRole", "pod-reader", subjects(&["User:alice"])),
            binding("team", "Role", "reader", vec![sa("", "builder")]),
            // A Role is looked up in the binding's namespace, and "other" has no "reader".
            binding("other", "Role", "reader", subjects(&["User:alice"])),
        ],
        ..Default::default()
    };
    check_rows(&policy, &[
        ("alice", "", "list", "pods", "", "team", "", true),
        ("alice", "", "list", "pods", "", "other", "", false),
        // Across all namespaces is beyond any role binding, even one to a ClusterRole.
        ("alice", "", "list", "pods", "", "", "", false),
        ("alice", "", "get", "configmaps", "", "team", "", false),
        ("system:serviceaccount:team:builder", "", "get", "configmaps", "", "team", "", true),
        ("system:serviceaccount:other:builder", "", "get", "configmaps", "", "team", "", false),
    ]);
    let alice = user("alice", &[]);
    let decision = policy.authorize(&request(&alice, "get", "other", "", "configmaps"));
    let missing = "RBAC: role.rbac.authorization.k8s.io \"reader\" not found";
    assert_eq!(decision, Decision::Deny(missing.into()));
}

#[test]
fn unresolvable_bindings_are_errors_beside_the_rules_that_resolve() {
    let robot = RoleBinding {
        role_ref: role_ref("Robot", "x"),
        ..binding("team", "Role", "x", subjects(&["Group:devs"]))
    };
    let policy = Policy {
        cluster_roles: vec![cluster_role("viewer", vec![r("core get pods")])],
        cluster_role_bindings: vec![
            cluster_binding("gone", &["Group:devs"]),
            cluster_binding("viewer", &["Group:devs"]),
        ],
        role_bindings: vec![robot],
        ..Default::default()
    };
    let dev = user("dana", &["devs"]);
    let (rules, errors) = policy.rules_for(&dev, "team");
    assert_eq!(rules, vec![r("core get pods")]);
    let gone = "clusterrole.rbac.authorization.k8s.io \"gone\" not found";
    assert_eq!(errors, [gone, "unsupported role reference kind: \"Robot\""]);
    // A rule that allows wins over errors; without one the errors are the reason.
    assert!(allowed(&policy, request(&dev, "get", "team", "", "pods")));
    let denied = policy.authorize(&request(&dev, "delete", "team", "", "pods"));
    let reason = format!("RBAC: [{}, {}]", errors[0], errors[1]);
    assert_eq!(denied, Decision::Deny(reason));
    // With nothing unresolved, the reason says what was asked.
    let nobody = user("nobody", &["g1", "g2"]);
    let attrs = Attributes {
        subresource: "status",
        name: "web",
        ..request(&nobody, "get", "team", "apps", "deployments")
    };
    let reason = "RBAC: no rules authorize user \"nobody\" with groups [\"g1\" \"g2\"] to \
                  \"get\" resource \"deployments.apps/status\" named \"web\" \
                  in namespace \"team\"";
    assert_eq!(policy.authorize(&attrs), Decision::Deny(reason.into()));
}

#[test]
fn resource_names_never_match_requests_without_a_name() {
    let limited = r("core get,list,update configmaps app-config");
    let who = user("u", &[]);
    let ask = |verb, name| Attributes {
        name,
        ..request(&who, verb, "ns", "", "configmaps")
    };
    assert!(rule_allows(&ask("get", "app-config"), &limited));
    assert!(rule_allows(&ask("update", "app-config"), &limited));
    assert!(!rule_allows(&ask("get", "other"), &limited));
    // A list has no name, so a rule limited to names never allows it.
    assert!(!rule_allows(&ask("list", ""), &limited));
}

#[test]
#[rustfmt::skip]
fn url_patterns_match_and_cover_alike() {
    let health = u("get /healthz,/healthz/*");
    let who = user("u", &[]);
    let paths = [
        ("/healthz", true), ("/healthz/etcd", true), ("/healthz/log/x", true),
        ("/healthzz", false), ("/livez", false),
    ];
    for (path, want) in paths {
        assert_eq!(rule_allows(&url_request(&who, "get", path), &health), want, "{path}");
    }
    assert!(!rule_allows(&url_request(&who, "post", "/healthz"), &health));
    // A rule of URLs never allows a resource request, nor a rule of resources a URL.
    assert!(!rule_allows(&request(&who, "get", "", "", "healthz"), &health));
    assert!(!rule_allows(&url_request(&who, "get", "/healthz"), &r("* * *")));
    // TestNonResourceURLCovers.
    let cases = [
        ("*", "/api", true), ("/api", "/api", true), ("/apis", "/api", false),
        ("/api/v1", "/api", false), ("/api/v1", "/api/v1", true), ("/api/*", "/api/v1", true),
        ("/api/*", "/api", false), ("/api/*/*", "/api/v1", false),
        ("/*/v1/*", "/api/v1", false),
    ];
    for (pattern, path, want) in cases {
        assert_eq!(url_matches(pattern, path), want, "{pattern} {path}");
    }
}

#[test]
#[rustfmt::skip]
fn covers_cases_from_kubernetes() {
    let rs = |specs: &[&str]| specs.iter().map(|spec| r(spec)).collect::<Vec<_>>();
    let us = |specs: &[&str]| specs.iter().map(|spec| u(spec)).collect::<Vec<_>>();
    let split = [
        "group1 delete deployments", "group1 delete builds", "group1 update builds,deployments",
        "group2 delete deployments", "group2 delete builds", "group2 update builds,deployments",
    ];
    let joined = ["group1,group2 delete,update builds,deployments"];
    let builds_and_apis =
        PolicyRule { non_resource_urls: Some(list("/apis")), ..r("v1 get builds") };
    // (owner rules, requested rules, the atoms left uncovered). Kubernetes' "empty
    // resourceNames" owner is written here without resourceNames, which means the same.
    let cases = vec![
        (rs(&["v1 get builds"]), rs(&["v1 get builds"]), vec![]),
        (rs(&["v1 delete deployments", "v1 delete builds", "v1 update builds,deployments"]),
            rs(&["v1 delete,update builds,deployments"]), vec![]),
        (rs(&split), rs(&joined), vec![]),
        (rs(&joined), rs(&split), vec![]),
        (rs(&["v1 delete,update builds,deployments", "v1 delete pods"]),
            rs(&["v1 delete,update builds,deployments,pods"]), rs(&["v1 update pods"])),
        (rs(&["* get roles"]), rs(&["group1,group2 get roles"]), vec![]),
        (rs(&["dummy-group get roles"]), rs(&["* get roles"]), rs(&["* get roles"])),
        (rs(&["* get roles"]), rs(&["* get roles"]), vec![]),
        (rs(&["v1 * roles"]), rs(&["v1 watch,list roles"]), vec![]),
        (rs(&["v1 get,list,watch,create,update,delete,exec roles"]), rs(&["v1 * roles"]),
            rs(&["v1 * roles"])),
        (rs(&["v1 * roles"]), rs(&["v1 * roles"]), vec![]),
        (rs(&["v1 get *"]), rs(&["v1 get resourcegroup:deployments"]), vec![]),
        (rs(&["v1 get roles,resourcegroup:deployments"]), rs(&["v1 get *"]), rs(&["v1 get *"])),
        (rs(&["v1 get *"]), rs(&["v1 get *"]), vec![]),
        (rs(&["v1 get pods"]), rs(&["v1 get pods foo,bar"]), vec![]),
        (rs(&["v1 get pods foo,bar"]), rs(&["v1 get pods"]), rs(&["v1 get pods"])),
        (us(&["* /apis"]), us(&["* /apis"]), vec![]),
        (us(&["* *"]), us(&["* /apis,/apis/v1,/"]), vec![]),
        (us(&["* /apis/*"]), us(&["get /apis,/apis/v1"]), us(&["get /apis"])),
        (us(&["* /apis/*"]), us(&["get /apis/v1/foo,/apis/v1"]), vec![]),
        (vec![builds_and_apis.clone()], vec![builds_and_apis.clone()], vec![]),
        (rs(&["v1 get builds"]), vec![builds_and_apis], us(&["get /apis"])),
        (rs(&["v1 get */scale"]), rs(&["v1 get foo/scale"]), vec![]),
    ];
    for (i, (owner, requested, uncovered)) in cases.iter().enumerate() {
        assert_eq!(&uncovered_rules(owner, requested), uncovered, "case {i}");
        assert_eq!(covers(owner, requested), uncovered.is_empty(), "case {i}");
    }
}

fn labelled(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    let mut role = cluster_role(name, rules);
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    role.metadata.labels = Some(labels.collect());
    role
}

fn aggregating(name: &str, labels: &[(&str, &str)], selector: LabelSelector) -> ClusterRole {
    let rule = AggregationRule {
        cluster_role_selectors: Some(vec![selector]),
    };
    let role = labelled(name, labels, vec![]);
    ClusterRole {
        rules: None,
        aggregation_rule: Some(rule),
        ..role
    }
}

fn match_true(key: &str) -> LabelSelector {
    let labels = [(key.to_string(), "true".to_string())].into();
    LabelSelector {
        match_labels: Some(labels),
        match_expressions: None,
    }
}

fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
    let values = Some(values.iter().map(|v| v.to_string()).collect());
    LabelSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values,
    }
}

fn expressions(requirements: Vec<LabelSelectorRequirement>) -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(requirements),
    }
}

#[test]
fn aggregation_unions_selected_roles_through_nested_aggregates() {
    let (admin, edit, view) = ("example/to-admin", "example/to-edit", "example/to-view");
    let (get_pods, create_pods) = (r("core get pods"), r("core create pods"));
    let bind = r("rbac.authorization.k8s.io create rolebindings");
    let roles = vec![
        aggregating("x-admin", &[], match_true(admin)),
        aggregating("x-edit", &[(admin, "true")], match_true(edit)),
        aggregating("x-view", &[(edit, "true")], match_true(view)),
        labelled("leaf-admin", &[(admin, "true")], vec![bind.clone()]),
        labelled("leaf-edit", &[(edit, "true")], vec![create_pods.clone()]),
        labelled("leaf-view", &[(view, "true")], vec![get_pods.clone()]),
        // The same rule twice is taken once; another value of the label is not selected.
        labelled("leaf-view-2", &[(view, "true")], vec![get_pods.clone()]),
        labelled("not-view", &[(view, "false")], vec![r("* delete *")]),
    ];
    let updated = aggregate(&roles);
    let rules_of = |name: &str| {
        let role = updated
            .iter()
            .find(|role| role.metadata.name.as_deref() == Some(name));
        role.and_then(|role| role.rules.clone())
    };
    assert_eq!(updated.len(), 3);
    assert_eq!(rules_of("x-view"), Some(vec![get_pods.clone()]));
    // Selected roles in name order: leaf-edit before x-view, leaf-admin before x-edit.
    assert_eq!(
        rules_of("x-edit"),
        Some(vec![create_pods.clone(), get_pods.clone()])
    );
    assert_eq!(rules_of("x-admin"), Some(vec![bind, create_pods, get_pods]));
    // Written back, there is nothing left to do.
    let written = |role: &ClusterRole| {
        let update = updated
            .iter()
            .find(|u| u.metadata.name == role.metadata.name);
        update.unwrap_or(role).clone()
    };
    let settled: Vec<ClusterRole> = roles.iter().map(written).collect();
    assert!(aggregate(&settled).is_empty());
}

#[test]
fn aggregation_skips_itself_and_honours_expressions() {
    let tier_a_or_b = expression("tier", "In", &["a", "b"]);
    let selector = expressions(vec![tier_a_or_b, expression("legacy", "DoesNotExist", &[])]);
    let mut me = aggregating("me", &[("tier", "a")], selector);
    me.rules = Some(vec![r("* * *")]); // stale: must go
    let roles = vec![
        me,
        labelled("a", &[("tier", "a")], vec![r("core get pods")]),
        labelled(
            "b",
            &[("tier", "b"), ("legacy", "")],
            vec![r("core get secrets")],
        ),
        labelled("c", &[("tier", "c")], vec![r("core get nodes")]),
    ];
    let updated = aggregate(&roles);
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].rules, Some(vec![r("core get pods")]));
    // An invalid selector leaves the role alone.
    let broken = aggregating(
        "broken",
        &[],
        expressions(vec![expression("tier", "Near", &[])]),
    );
    assert!(aggregate(&[broken, labelled("a", &[("tier", "a")], vec![])]).is_empty());
}

#[test]
fn label_selectors_as_kubernetes_reads_them() {
    let labels: BTreeMap<String, String> = [("tier".to_string(), "web".to_string())].into();
    let on = |operator: &str, values: &[&str]| {
        let selector = expressions(vec![expression("tier", operator, values)]);
        selector_matches(&selector, Some(&labels))
    };
    assert_eq!(selector_matches(&LabelSelector::default(), None), Ok(true));
    assert_eq!(on("In", &["web", "db"]), Ok(true));
    assert_eq!(on("In", &["db"]), Ok(false));
    assert_eq!(on("NotIn", &["db"]), Ok(true));
    assert_eq!(on("NotIn", &["web"]), Ok(false));
    assert_eq!(on("Exists", &[]), Ok(true));
    assert_eq!(on("DoesNotExist", &[]), Ok(false));
    let absent = expressions(vec![expression("tier", "NotIn", &["db"])]);
    assert_eq!(selector_matches(&absent, None), Ok(true));
    assert_eq!(
        selector_matches(&match_true("tier"), Some(&labels)),
        Ok(false)
    );
    let invalid: [(&str, &[&str]); 4] = [
        ("In", &[]),
        ("NotIn", &[]),
        ("Exists", &["web"]),
        ("in", &["web"]),
    ];
    for (operator, values) in invalid {
        assert!(on(operator, values).is_err(), "{operator} {values:?}");
    }
}
