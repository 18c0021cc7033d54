//! The policy file's decoding and validation: kube's field paths and words, strictness, and
//! hostile input.

use std::path::Path;

use crate::audit::policy::{Invalid, Policy, PolicyError, MAX_POLICY_BYTES};

const HEAD: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\n";

/// The text of the error `text` is refused with.
fn refused(text: &str) -> String {
    match Policy::parse(text) {
        Ok(policy) => panic!("accepted: {policy:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn json_reads_as_yaml_does() {
    let json = r#"{"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [{"level": "None", "users": ["system:kube-proxy"], "verbs": ["watch"],
                   "resources": [{"group": "", "resources": ["endpoints", "services"]}]},
                  {"level": "Metadata", "omitStages": ["ResponseStarted"]}]}"#;
    let yaml = format!(
        "{HEAD}omitStages: [RequestReceived]\nrules:\n\
         - level: None\n  users: [system:kube-proxy]\n  verbs: [watch]\n  resources:\n  \
         - group: \"\"\n    resources: [endpoints, services]\n\
         - level: Metadata\n  omitStages: [ResponseStarted]\n"
    );
    assert_eq!(Policy::parse(json).unwrap(), Policy::parse(&yaml).unwrap());
    // A byte-order mark is not content.
    assert!(Policy::parse(&format!("\u{feff}{json}")).is_ok());
}

#[test]
fn field_errors_have_kubes_paths_and_words() {
    let cases: &[(&str, &str)] = &[
        (
            "rules:\n- level: None\n- level: Verbose\n",
            r#"rules[1].level: Unsupported value: "Verbose": supported values: "None", "Metadata", "Request", "RequestResponse""#,
        ),
        ("rules:\n- verbs: [get]\n", "rules[0].level: Required value"),
        (
            "rules:\n- level: None\n- level: None\n  omitStages: [ResponseStarted, Done]\n",
            r#"rules[1].omitStages[1]: Invalid value: "Done": allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic"#,
        ),
        (
            "omitStages: [Received]\nrules:\n- level: None\n",
            r#"omitStages[0]: Invalid value: "Received": allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic"#,
        ),
        (
            "rules:\n- level: None\n  nonResourceURLs: [/healthz]\n  resources: [{group: \"\"}]\n",
            r#"rules[0].nonResourceURLs: Invalid value: []string{"/healthz"}: rules cannot apply to both regular resources and non-resource URLs"#,
        ),
        (
            "rules:\n- level: None\n  nonResourceURLs: [/a, /b]\n  namespaces: [default]\n",
            r#"rules[0].nonResourceURLs: Invalid value: []string{"/a", "/b"}: rules cannot apply to both regular resources and non-resource URLs"#,
        ),
        (
            "rules:\n- level: None\n  nonResourceURLs: [healthz]\n",
            r#"rules[0].nonResourceURLs[0]: Invalid value: "healthz": non-resource URL rules must begin with a '/' character"#,
        ),
        (
            "rules:\n- level: None\n  nonResourceURLs: ['*', '/a*', '/a*/b']\n",
            r#"rules[0].nonResourceURLs[2]: Invalid value: "/a*/b": non-resource URL wildcards '*' must be the final character of the rule"#,
        ),
        (
            "rules:\n- level: None\n  resources: [{group: apps}, {group: Apps/v1}]\n",
            r#"rules[0].resources.group: Invalid value: "Apps/v1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
        ),
        (
            "rules:\n- level: None\n  resources: [{group: \"\", resourceNames: [a]}]\n",
            r#"rules[0].resources.resourceNames: Invalid value: []string{"a"}: using resourceNames requires at least one resource"#,
        ),
    ];
    for (body, want) in cases {
        assert_eq!(refused(&format!("{HEAD}{body}")), *want, "{body}");
    }
    // Several errors are listed together, as kube's aggregate.
    let both = refused(&format!(
        "{HEAD}rules:\n- level: Loud\n  nonResourceURLs: [x]\n"
    ));
    assert!(
        both.starts_with("[rules[0].level: Unsupported value: \"Loud\"")
            && both.contains(", rules[0].nonResourceURLs[0]: Invalid value: \"x\"")
            && both.ends_with(']'),
        "{both}"
    );
    // A value is quoted as Go quotes it: no raw control character reaches a log line.
    let sneaky = refused(&format!("{HEAD}rules:\n- level: \"None\\n\\u001b[31m\"\n"));
    assert!(sneaky.contains(r#""None\n\x1b[31m""#), "{sneaky}");
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    // kube warns and decodes leniently: `verb` would then match every verb.
    let cases: &[(&str, &str)] = &[
        (
            "rules:\n- level: None\n  verb: [get]\n",
            r#"unknown field "rules[0].verb""#,
        ),
        (
            "rule:\n- level: None\nrules:\n- level: None\n",
            r#"unknown field "rule""#,
        ),
        (
            "rules:\n- level: None\n  resources: [{group: \"\", resource: [pods]}]\n",
            r#"unknown field "rules[0].resources[0].resource""#,
        ),
        (
            "rules:\n- level: None\n  1: x\n",
            r#"unknown field "rules[0].1""#,
        ),
    ];
    for (body, want) in cases {
        assert_eq!(refused(&format!("{HEAD}{body}")), *want, "{body}");
    }
    // metadata, omitManagedFields (policy and rule) are kube's fields.
    let text = format!(
        "{HEAD}metadata: {{name: p}}\nomitManagedFields: true\nrules:\n\
         - level: Metadata\n  omitManagedFields: false\n"
    );
    assert!(Policy::parse(&text).is_ok());
}

#[test]
fn type_meta_must_be_audit_v1_policy() {
    let rules = "rules:\n- level: None\n";
    let v1beta1 = refused(&format!(
        "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\n{rules}"
    ));
    assert_eq!(
        v1beta1,
        r#"apiVersion: Unsupported value: "audit.k8s.io/v1beta1": supported values: "audit.k8s.io/v1""#
    );
    let kind = refused(&format!(
        "apiVersion: audit.k8s.io/v1\nkind: Config\n{rules}"
    ));
    assert_eq!(
        kind,
        r#"kind: Unsupported value: "Config": supported values: "Policy""#
    );
    assert_eq!(
        refused(rules),
        "[apiVersion: Required value, kind: Required value]"
    );
    // An empty file has no rules, and no type either.
    assert_eq!(
        refused(""),
        "[apiVersion: Required value, kind: Required value]"
    );
    assert_eq!(refused(HEAD), "loaded illegal policy with 0 rules");
    assert_eq!(
        refused(&format!("{HEAD}rules: []\n")),
        "loaded illegal policy with 0 rules"
    );
}

#[test]
fn wrong_types_are_errors_at_their_field() {
    let cases: &[(&str, &str)] = &[
        (
            "rules: {level: None}\n",
            "rules: Invalid value: {...}: cannot unmarshal object into []v1.PolicyRule",
        ),
        (
            "rules: [none]\n",
            r#"rules[0]: Invalid value: "none": cannot unmarshal string into v1.PolicyRule"#,
        ),
        (
            "rules:\n- level: None\n  verbs: get\n",
            r#"rules[0].verbs: Invalid value: "get": cannot unmarshal string into []string"#,
        ),
        (
            "rules:\n- level: None\n  users: [alice, 7]\n",
            "rules[0].users[1]: Invalid value: 7: cannot unmarshal number into string",
        ),
        (
            "rules:\n- level: 3\n",
            "rules[0].level: Invalid value: 3: cannot unmarshal number into string",
        ),
        (
            "rules:\n- level: None\n  omitManagedFields: \"yes\"\n",
            r#"rules[0].omitManagedFields: Invalid value: "yes": cannot unmarshal string into bool"#,
        ),
        (
            "rules:\n- level: None\n  resources: [pods]\n",
            r#"rules[0].resources[0]: Invalid value: "pods": cannot unmarshal string into v1.GroupResources"#,
        ),
        (
            "metadata: [a]\nrules:\n- level: None\n",
            "metadata: Invalid value: [...]: cannot unmarshal array into v1.ObjectMeta",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(refused(&format!("{HEAD}{body}")), *want, "{body}");
    }
    assert_eq!(
        refused("[1, 2]"),
        "Invalid value: [...]: cannot unmarshal array into v1.Policy"
    );
    // Null is Go's zero value: an absent level, an empty user name.
    assert_eq!(
        refused(&format!("{HEAD}rules:\n- level: null\n")),
        "rules[0].level: Required value"
    );
    let null_user = Policy::parse(&format!("{HEAD}rules:\n- level: None\n  users: [~]\n")).unwrap();
    assert_eq!(null_user.rules()[0].users, [""]);
}

#[test]
fn bad_syntax_names_the_line() {
    let yaml = format!("{HEAD}rules:\n- level: None\n  verbs: [get\n");
    let error = refused(&yaml);
    assert!(error.starts_with("failed decoding: "), "{error}");
    assert!(error.contains("line 5"), "{error}");
    let json = "{\"apiVersion\": \"audit.k8s.io/v1\",\n \"kind\": \"Policy\",\n \"rules\": [}\n";
    let error = refused(json);
    assert!(error.contains("line 3"), "{error}");
    // A repeated key would let the second silently win.
    let twice = refused(&format!("{HEAD}rules:\n- level: None\n  level: Metadata\n"));
    let want = r#"failed decoding: rules[0]: duplicate entry with key "level" at line 4"#;
    assert!(twice.starts_with(want), "{twice}");
    let twice = refused("{\"kind\": \"Policy\", \"kind\": \"Policy\"}");
    assert!(twice.contains("duplicate entry"), "{twice}");
    let documents = refused(&format!("{HEAD}rules: [{{level: None}}]\n---\n{HEAD}"));
    assert!(documents.contains("more than one document"), "{documents}");
}

#[test]
fn hostile_documents_stay_errors() {
    // Exponential aliases ("billion laughs").
    let mut laughs = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (name, previous) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        let list = vec![format!("*{previous}"); 9].join(", ");
        laughs.push_str(&format!("{name}: &{name} [{list}]\n"));
    }
    let started = std::time::Instant::now();
    assert!(refused(&laughs).contains("repetition limit"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Nesting past the parsers' limits.
    let deep_yaml = format!(
        "{HEAD}rules: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(refused(&deep_yaml).contains("recursion limit"));
    let deep_json = format!(
        "{{\"rules\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(refused(&deep_json).contains("recursion limit"));
    // Not text.
    assert_eq!(
        Policy::parse_bytes(b"kind: \xff\xfe"),
        Err(Invalid::NotUtf8)
    );
    // Tags are no type the policy has.
    let tagged = refused(&format!("{HEAD}rules:\n- level: !lvl None\n"));
    let want =
        r#"rules[0].level: Invalid value: !lvl "None": cannot unmarshal tagged value into string"#;
    assert_eq!(tagged, want);
}

#[test]
fn files_are_bounded_and_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let mut text = format!("{HEAD}rules:\n");
    while text.len() <= MAX_POLICY_BYTES {
        text.push_str("- level: Metadata\n  users: [someone-with-a-rather-long-name]\n");
    }
    std::fs::write(&big, &text).unwrap();
    let error = Policy::load(&big).unwrap_err().to_string();
    assert!(
        error.contains("big.yaml") && error.contains("larger than"),
        "{error}"
    );
    // No size to trust: read one byte past the bound, then stop.
    let zero = Policy::load(Path::new("/dev/zero")).unwrap_err();
    assert!(matches!(zero, PolicyError::TooLarge(_)), "{zero}");
    let missing = Policy::load(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(missing.to_string().contains("missing.yaml"), "{missing}");
    // A policy just under the bound loads: thousands of rules.
    let many = dir.path().join("many.yaml");
    let rule = "- level: Metadata\n  users: [someone-with-a-rather-long-name]\n";
    let count = (MAX_POLICY_BYTES - HEAD.len() - 7) / rule.len();
    std::fs::write(&many, format!("{HEAD}rules:\n{}", rule.repeat(count))).unwrap();
    assert_eq!(Policy::load(&many).unwrap().rules().len(), count);
    // The file and the field, both named.
    let bad = dir.path().join("policy.yaml");
    std::fs::write(&bad, format!("{HEAD}rules:\n- level: Verbose\n")).unwrap();
    let text = Policy::load(&bad).unwrap_err().to_string();
    assert!(
        text.contains("policy.yaml") && text.contains("rules[0].level: Unsupported value"),
        "{text}"
    );
}
