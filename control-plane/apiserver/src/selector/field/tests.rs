//! Ported from k8s.io/apimachinery pkg/fields/selector_test.go (its split, escape, parse,
//! matching and exact-match tables), plus kube-apiserver's per-resource field rules and
//! hostile input.

use serde_json::{json, Value};

use super::*;

fn field(text: &str, supported: &[&str]) -> FieldSelector {
    FieldSelector::parse(text, supported).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn field_error(text: &str, supported: &[&str]) -> String {
    match FieldSelector::parse(text, supported) {
        Ok(parsed) => panic!("{text:?} should fail, parsed as {parsed:?}"),
        Err(e) => e.to_string(),
    }
}

// ---- fields: TestSplitTerms, TestSplitTerm, TestEscapeValue ----

#[test]
fn field_split_terms_go_table() {
    let cases: &[(&str, &[&str])] = &[
        ("a", &["a"]),
        ("a=avalue", &["a=avalue"]),
        ("a=avalue,b=bvalue", &["a=avalue", "b=bvalue"]),
        (
            "a=avalue,b==bvalue,c!=cvalue",
            &["a=avalue", "b==bvalue", "c!=cvalue"],
        ),
        ("", &[]),
        ("a=a,", &["a=a", ""]),
        (",a=a", &["", "a=a"]),
        (r"k=\,,k2=v2", &[r"k=\,", "k2=v2"]),
        (r"k=\\,k2=v2", &[r"k=\\", "k2=v2"]),
        (r"k=\\\,,k2=v2", &[r"k=\\\,", "k2=v2"]),
        (r"k=\a\b\", &[r"k=\a\b\"]),
        (r"k=\", &[r"k=\"]),
        ("함=수,목=록", &["함=수", "목=록"]),
    ];
    for (text, want) in cases {
        assert_eq!(split_terms(text), *want, "{text:?}");
    }
}

#[test]
fn field_split_term_go_table() {
    #[allow(clippy::type_complexity)]
    let cases: &[(&str, Option<(&str, bool, &str)>)] = &[
        ("a=value", Some(("a", true, "value"))),
        ("b==value", Some(("b", true, "value"))),
        ("c!=value", Some(("c", false, "value"))),
        ("", None),
        ("a", None),
        (r"k=\,", Some(("k", true, r"\,"))),
        (r"k=\=", Some(("k", true, r"\="))),
        (r"k=\\\a\b\=\,\", Some(("k", true, r"\\\a\b\=\,\"))),
        ("함=수", Some(("함", true, "수"))),
        ("a!b=c", Some(("a!b", true, "c"))),
    ];
    for (term, want) in cases {
        assert_eq!(split_term(term), *want, "{term:?}");
    }
}

#[test]
fn field_escape_and_unescape_go_table() {
    let cases = [
        ("", ""),
        ("a", "a"),
        ("=", r"\="),
        (",", r"\,"),
        (r"\", r"\\"),
        (r"\=\,\", r"\\\=\\\,\\"),
    ];
    for (plain, escaped) in cases {
        assert_eq!(escape_value(plain), escaped, "{plain:?}");
        assert_eq!(unescape_value(escaped).as_deref(), Ok(plain), "{escaped:?}");
    }
    for (invalid, sequence) in [
        (r"\", r"\"),
        (r"\\\", r"\"),
        (r"\a", r"\a"),
        (r"a\!", r"\!"),
    ] {
        assert_eq!(
            unescape_value(invalid),
            Err(SelectorError::FieldEscape(sequence.to_owned())),
            "{invalid:?}"
        );
    }
    assert_eq!(
        unescape_value("a=b"),
        Err(SelectorError::FieldUnescaped(61))
    );
}

// ---- fields: TestSelectorParse, TestDeterministicParse, TestSelectorMatches ----

const XYZ: &[&str] = &["x", "y", "z"];

#[test]
fn field_good_strings_restring() {
    for text in ["x=a,y=b,z=c", "", "x!=a,y=b", r"x=a||y\=b", r"x=a\=\=b"] {
        assert_eq!(field(text, XYZ).to_string(), text, "{text:?}");
    }
    assert_eq!(
        field("x=a,a=x", &["a", "x"]).to_string(),
        field("a=x,x=a", &["a", "x"]).to_string()
    );
}

#[test]
fn field_bad_strings_with_go_texts() {
    let cases = [
        (
            "x=a||y=b",
            "invalid field selector: unescaped character in value: 61",
        ),
        (
            "x==a==b",
            "invalid field selector: unescaped character in value: 61",
        ),
        ("x=a,b", "invalid selector: 'x=a,b'; can't understand 'b'"),
        (
            "x in (a)",
            "invalid selector: 'x in (a)'; can't understand 'x in (a)'",
        ),
        (
            "x in (a,b,c)",
            "invalid selector: 'x in (a,b,c)'; can't understand 'b'",
        ),
        ("x", "invalid selector: 'x'; can't understand 'x'"),
        (
            r"x=a\!",
            r"invalid field selector: invalid escape sequence: \!",
        ),
        (
            r"x=a\",
            r"invalid field selector: invalid escape sequence: \",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(field_error(text, XYZ), want, "{text:?}");
    }
}

#[test]
fn field_matches_go_table() {
    let supported = &["x", "z", "notin", "foo", "baz", "complex", "foobar"];
    let fieldset = json!({"foo": "bar", "baz": "blah", "complex": "=value\\,\\"});
    let cases = [
        ("", json!({"x": "y"}), true),
        ("x=y", json!({"x": "y"}), true),
        ("x=y,z=w", json!({"x": "y", "z": "w"}), true),
        ("x!=y,z!=w", json!({"x": "z", "z": "a"}), true),
        ("notin=in", json!({"notin": "in"}), true),
        ("x=y", json!({"x": "z"}), false),
        ("x=y,z=w", json!({"x": "w", "z": "w"}), false),
        ("x!=y,z!=w", json!({"x": "z", "z": "w"}), false),
        ("foo=bar", fieldset.clone(), true),
        ("baz=blah", fieldset.clone(), true),
        ("foo=bar,baz=blah", fieldset.clone(), true),
        (
            r"foo=bar,baz=blah,complex=\=value\\\,\\",
            fieldset.clone(),
            true,
        ),
        ("foo=blah", fieldset.clone(), false),
        ("baz=bar", fieldset.clone(), false),
        ("foo=bar,foobar=bar,baz=blah", fieldset, false),
        // A missing field reads as "".
        ("x=", json!({}), true),
        ("x!=", json!({"y": "a"}), false),
    ];
    for (text, object, want) in cases {
        assert_eq!(
            field(text, supported).matches(&object),
            want,
            "{text:?} against {object}"
        );
    }
    let everything = FieldSelector::default();
    assert!(everything.is_empty() && everything.matches(&Value::Null) && field("", XYZ).is_empty());
}

#[test]
fn field_exact_go_table() {
    let supported = &["test", "a"];
    let cases: &[(&str, Option<&str>)] = &[
        ("", None),
        ("a=b", None),
        ("test=b", Some("b")),
        ("test==b", Some("b")),
        ("test=", Some("")),
        ("test!=b", None),
        ("test!=", None),
        ("a=c,test=b", Some("b")),
        ("test!=a,test=b", Some("b")),
    ];
    for (text, want) in cases {
        assert_eq!(field(text, supported).exact("test"), *want, "{text:?}");
    }
}

// ---- fields: kube-apiserver's per-resource rules ----

#[test]
fn field_unsupported_fields_use_kube_texts() {
    let pods = field_selectors_for("pods");
    assert_eq!(
        field_error("spec.foo=x", pods),
        "field label not supported: spec.foo"
    );
    // Terms are checked in Go's order, which is sorted by term text.
    assert_eq!(
        field_error("b.x=1,a.y=2", pods),
        "field label not supported: a.y"
    );
    // `=` alone is dropped by Go's parse; `=x` names the empty field.
    assert!(field("=", pods).is_empty() && field(",=,", pods).is_empty());
    assert_eq!(field_error("=x", pods), "field label not supported: ");
    let refusal = FieldSelector::parse("status.replicas=1", field_selectors_for("replicasets"));
    assert_eq!(
        refusal,
        Err(SelectorError::UnsupportedField {
            field: "status.replicas".to_owned(),
            message: "field label not supported: status.replicas".to_owned(),
        })
    );
    let parse_for = |text: &str, resource: &str| {
        FieldSelector::parse_for(text, resource)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        parse_for("status.replicas=1", "replicasets"),
        "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
    assert_eq!(
        parse_for("spec.x=1", "jobs.batch"),
        "field label \"spec.x\" not supported for Job"
    );
    assert_eq!(
        parse_for("metadata.namespace=a", "nodes"),
        "field label not supported: metadata.namespace"
    );
    assert_eq!(
        parse_for("metadata.namespace=a", "namespaces"),
        "field label not supported: metadata.namespace"
    );
    assert_eq!(
        parse_for("spec.pool=a", "resourceslices"),
        "field label not supported for resource.k8s.io/v1, Kind=ResourceSlice: spec.pool"
    );
    assert!(FieldSelector::parse_for("metadata.namespace=a", "persistentvolumes").is_ok());
    assert!(FieldSelector::parse_for("status.replicas=2", "replicationcontrollers").is_ok());
    assert!(FieldSelector::parse_for("status.successful=1", "jobs").is_ok());
}

#[test]
fn field_selectors_for_resources() {
    let pods = field_selectors_for("pods");
    for f in [
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
    ] {
        assert!(pods.contains(&f), "{f}");
    }
    for f in [
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
    ] {
        assert!(pods.contains(&f), "{f}");
    }
    assert!(pods.contains(&"status.nominatedNodeName"));
    assert_eq!(
        field_selectors_for("nodes"),
        &["metadata.name", "spec.unschedulable"]
    );
    assert_eq!(
        field_selectors_for("namespaces"),
        &["status.phase", "metadata.name"]
    );
    assert!(field_selectors_for("secrets").contains(&"type"));
    assert_eq!(field_selectors_for("events").len(), 13);
    assert_eq!(
        field_selectors_for("configmaps"),
        &["metadata.name", "metadata.namespace"]
    );
    assert_eq!(
        field_selectors_for("replicasets"),
        &["metadata.name", "metadata.namespace"]
    );
    assert_eq!(
        field_selectors_for(""),
        &["metadata.name", "metadata.namespace"]
    );
}

#[test]
fn field_matches_computed_fields_like_kube() {
    let pods = field_selectors_for("pods");
    let pod = json!({
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]},
    });
    let check = |text: &str, object: &Value| field(text, pods).matches(object);
    assert!(check("spec.hostNetwork=false", &pod) && !check("spec.hostNetwork=true", &pod));
    assert!(check(
        "spec.hostNetwork=true",
        &json!({"spec": {"hostNetwork": true}})
    ));
    assert!(check("status.podIP=10.0.0.1", &pod));
    assert!(check(
        "status.podIP=10.0.0.2",
        &json!({"status": {"podIP": "10.0.0.2"}})
    ));
    assert!(check("status.podIPs=", &pod) && !check("status.podIPs=10.0.0.1", &pod));
    assert!(check(
        "metadata.name=p,metadata.namespace=ns,status.phase=Running",
        &pod
    ));
    assert!(!check("status.phase!=Running", &pod));
    // The legacy `spec.host` is pods' `spec.nodeName`.
    let legacy = field("spec.host=n1", pods);
    assert!(legacy.matches(&pod) && legacy.exact("spec.nodeName") == Some("n1"));
    assert_eq!(
        field("metadata.name=p", pods).exact("metadata.name"),
        Some("p")
    );
    let nodes = field_selectors_for("nodes");
    assert!(field("spec.unschedulable=false", nodes).matches(&json!({"spec": {}})));
    assert!(
        field("spec.unschedulable=true", nodes).matches(&json!({"spec": {"unschedulable": true}}))
    );
    let rcs = field_selectors_for("replicationcontrollers");
    assert!(field("status.replicas=3", rcs).matches(&json!({"status": {"replicas": 3}})));
    let jobs = field_selectors_for("jobs");
    assert!(field("status.successful=0", jobs).matches(&json!({"status": {}})));
    assert!(field("status.successful=2", jobs).matches(&json!({"status": {"succeeded": 2}})));
    let events = field_selectors_for("events");
    let event = json!({"source": {"component": "kubelet"}, "reportingComponent": "ctrl", "involvedObject": {"kind": "Pod"}});
    assert!(field("source=kubelet,involvedObject.kind=Pod", events).matches(&event));
    assert!(
        field("source=ctrl", events).matches(&json!({"source": {}, "reportingComponent": "ctrl"}))
    );
    // A cluster-scoped object has no namespace: it reads as "".
    assert!(field("metadata.namespace=", &["metadata.namespace"])
        .matches(&json!({"metadata": {"name": "n"}})));
}

// ---- fields: hostile input ----

#[test]
fn field_hostile_input() {
    // Ten thousand terms (all on one field, so the support check is not what is measured).
    let text = (0..10_000)
        .map(|i| format!("f!=v{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let selector = field(&text, &["f"]);
    assert!(selector.matches(&json!({"f": "other"})));
    assert!(!selector.matches(&json!({"f": "v5000"})));
    let text = (0..10_000)
        .map(|i| format!("f{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(field_error(&text, &["f"]), "field label not supported: f0");
    // A megabyte value, unicode fields and values, escapes at the edges.
    let long = "v".repeat(1 << 20);
    assert!(field(&format!("x={long}"), XYZ).matches(&json!({"x": long})));
    assert!(field("ключ=значение,x=日本", &["ключ", "x"])
        .matches(&json!({"ключ": "значение", "x": "日本"})));
    assert_eq!(field(r"x=\\\,\=", XYZ).exact("x"), Some(r"\,="));
    assert!(field(",,,,", XYZ).is_empty());
    assert_eq!(field("x=a,,y=b", XYZ).to_string(), "x=a,y=b");
    assert_eq!(
        field_error(" ", XYZ),
        "invalid selector: ' '; can't understand ' '"
    );
    assert_eq!(
        field_error("x=a, y=b", XYZ),
        "field label not supported:  y"
    );
    assert_eq!(
        field_error(&"=".repeat(100_000), XYZ),
        "invalid field selector: unescaped character in value: 61"
    );
}
