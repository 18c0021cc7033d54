//! Apply and update semantics on the served kinds' schemas, with cases taken from kube's
//! documented behaviour (server-side apply docs, structured-merge-diff's tests) as facts.

use serde_json::{json, Value};
use strategic_merge_patch::kubernetes::schema_for;

use crate::{apply, track_update, Conflict, Error, FieldSet, Manager, Scope};

const OBJECT: Scope = Scope::Object { status_apart: true };

fn manager(name: &'static str) -> Manager<'static> {
    Manager {
        name,
        api_version: "apps/v1",
        subresource: None,
        time: "2026-12-03T22:00:00Z",
    }
}

fn deployment(env: Value, ports: Value, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx", "env": env, "ports": ports}]}
            }
        }
    })
}

fn apply_as(
    live: Option<&Value>,
    config: &Value,
    who: &'static str,
    force: bool,
) -> Result<Value, Error> {
    let schema = schema_for("apps", "Deployment").expect("a schema");
    apply(live, config, schema, &manager(who), OBJECT, force)
}

fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("").to_owned(),
                        e["operation"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_first_apply_creates_with_the_configurations_fields() {
    let config = deployment(
        json!([{"name": "A", "value": "1"}]),
        json!([{"containerPort": 80}]),
        2,
    );
    let created = apply_as(None, &config, "ci", false).expect("applied");
    assert_eq!(created["spec"]["replicas"], 2);
    assert_eq!(managers(&created), vec![("ci".into(), "Apply".into())]);
    let fields = &created["metadata"]["managedFields"][0]["fieldsV1"];
    // Name and kind are nobody's; labels are granular; the selector is atomic; containers by
    // name, ports by number and protocol (defaulted), env by name.
    assert_eq!(fields["f:metadata"], json!({"f:labels": {"f:app": {}}}));
    assert_eq!(fields["f:spec"]["f:selector"], json!({}));
    let container =
        &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert_eq!(container["."], json!({}));
    assert_eq!(
        container["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
        json!({".": {}, "f:containerPort": {}})
    );
    assert_eq!(
        container["f:env"]["k:{\"name\":\"A\"}"],
        json!({".": {}, "f:name": {}, "f:value": {}})
    );
    assert!(fields.get("f:apiVersion").is_none() && fields.get("f:kind").is_none());
}

#[test]
fn reapplying_without_an_env_var_and_a_port_removes_them() {
    let first = deployment(
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
        json!([{"containerPort": 80}, {"containerPort": 443}]),
        2,
    );
    let live = apply_as(None, &first, "ci", false).expect("applied");
    let second = deployment(
        json!([{"name": "A", "value": "1"}]),
        json!([{"containerPort": 80}]),
        2,
    );
    let next = apply_as(Some(&live), &second, "ci", false).expect("applied");
    let container = &next["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["env"], json!([{"name": "A", "value": "1"}]));
    assert_eq!(container["ports"], json!([{"containerPort": 80}]));
}

#[test]
fn another_managers_field_conflicts_unless_forced_and_force_moves_it() {
    let live = apply_as(None, &deployment(json!([]), json!([]), 2), "ci", false).expect("applied");
    let scaler = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let error = apply_as(Some(&live), &scaler, "scaler", false).expect_err("a conflict");
    assert_eq!(
        error,
        Error::Conflicts(vec![Conflict {
            manager: "\"ci\"".into(),
            field: ".spec.replicas".into()
        }])
    );
    assert_eq!(
        error.to_string(),
        "Apply failed with 1 conflict: conflict with \"ci\": .spec.replicas"
    );
    let forced = apply_as(Some(&live), &scaler, "scaler", true).expect("forced");
    assert_eq!(forced["spec"]["replicas"], 5);
    // ci no longer owns replicas: its next apply without them leaves the scaler's value.
    let mut without = deployment(json!([]), json!([]), 0);
    without["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("replicas");
    let after = apply_as(Some(&forced), &without, "ci", false).expect("applied");
    assert_eq!(after["spec"]["replicas"], 5);
}

#[test]
fn the_same_value_is_shared_and_kept_while_anyone_still_applies_it() {
    let config = deployment(json!([]), json!([]), 3);
    let live = apply_as(None, &config, "a", false).expect("applied");
    let both = apply_as(Some(&live), &config, "b", false).expect("no conflict for the same value");
    assert_eq!(managers(&both).len(), 2);
    let mut without = config.clone();
    without["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("replicas");
    let after = apply_as(Some(&both), &without, "a", false).expect("applied");
    assert_eq!(after["spec"]["replicas"], 3, "b still applies it");
    let gone = apply_as(Some(&after), &without, "b", false).expect("applied");
    assert!(gone["spec"].get("replicas").is_none(), "{gone}");
}

#[test]
fn multiple_conflicts_are_listed_per_manager_as_kube_does() {
    let live = apply_as(None, &deployment(json!([]), json!([]), 2), "ci", false).expect("applied");
    let mut other = deployment(json!([]), json!([]), 4);
    other["spec"]["template"]["spec"]["containers"][0]["image"] = json!("httpd");
    let error = apply_as(Some(&live), &other, "other", false).expect_err("conflicts");
    assert_eq!(
        error.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"ci\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"
    );
}

#[test]
fn an_update_takes_the_fields_it_changes_and_a_later_apply_conflicts_with_it() {
    let schema = schema_for("apps", "Deployment").expect("a schema");
    let live = apply_as(None, &deployment(json!([]), json!([]), 2), "ci", false).expect("applied");
    let mut edited = live.clone();
    edited["spec"]["replicas"] = json!(7);
    edited["metadata"]["labels"]["team"] = json!("blue");
    let mut edit = manager("kubectl-edit");
    edit.time = "2026-12-03T22:05:00Z";
    track_update(&live, &mut edited, schema, &edit, OBJECT).expect("tracked");
    assert_eq!(
        managers(&edited),
        vec![
            ("ci".into(), "Apply".into()),
            ("kubectl-edit".into(), "Update".into())
        ]
    );
    assert_eq!(
        edited["metadata"]["managedFields"][1]["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:team": {}}}, "f:spec": {"f:replicas": {}}})
    );
    let error = apply_as(
        Some(&edited),
        &deployment(json!([]), json!([]), 2),
        "ci",
        false,
    )
    .expect_err("a conflict");
    assert_eq!(
        error.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn objects_never_applied_stay_without_managed_fields_and_first_apply_names_before_first_apply() {
    let schema = schema_for("apps", "Deployment").expect("a schema");
    let old = deployment(json!([]), json!([]), 1);
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(2);
    track_update(&old, &mut new, schema, &manager("kubectl"), OBJECT).expect("tracked");
    assert!(new["metadata"].get("managedFields").is_none());
    let error = apply_as(
        Some(&new),
        &deployment(json!([]), json!([]), 3),
        "ci",
        false,
    )
    .expect_err("a conflict");
    assert_eq!(
        error.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let same = apply_as(
        Some(&new),
        &deployment(json!([]), json!([]), 2),
        "ci",
        false,
    )
    .expect("applied");
    // kube's order: appliers first.
    assert_eq!(
        managers(&same),
        vec![
            ("ci".into(), "Apply".into()),
            ("before-first-apply".into(), "Update".into())
        ]
    );
}

#[test]
fn managed_fields_reset_with_an_empty_entry() {
    let schema = schema_for("apps", "Deployment").expect("a schema");
    let live = apply_as(None, &deployment(json!([]), json!([]), 2), "ci", false).expect("applied");
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    track_update(&live, &mut reset, schema, &manager("x"), OBJECT).expect("tracked");
    assert!(reset["metadata"].get("managedFields").is_none());
}

#[test]
fn status_is_its_own_scope() {
    let schema = schema_for("apps", "Deployment").expect("a schema");
    let mut config = deployment(json!([]), json!([]), 2);
    config["status"] = json!({"replicas": 9});
    let live = apply_as(None, &config, "ci", false).expect("applied");
    assert!(live["metadata"]["managedFields"][0]["fieldsV1"]
        .get("f:status")
        .is_none());
    let status = Manager {
        subresource: Some("status"),
        ..manager("controller")
    };
    let status_config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "status": {"readyReplicas": 2}});
    let applied = apply(
        Some(&live),
        &status_config,
        schema,
        &status,
        Scope::Status,
        false,
    )
    .expect("applied");
    assert_eq!(applied["status"]["readyReplicas"], 2);
    assert_eq!(applied["spec"]["replicas"], 2);
    assert_eq!(
        applied["metadata"]["managedFields"][1]["subresource"],
        "status"
    );
}

#[test]
fn sets_and_atomic_lists() {
    let schema = schema_for("", "Pod").expect("a schema");
    let who = manager("ci");
    let pod = |finalizers: Value, args: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": finalizers},
               "spec": {"containers": [{"name": "c", "image": "busybox", "args": args}]}})
    };
    let live = apply(
        None,
        &pod(json!(["a/x", "b/y"]), json!(["1", "2"])),
        schema,
        &who,
        OBJECT,
        false,
    )
    .expect("applied");
    let fields = &live["metadata"]["managedFields"][0]["fieldsV1"];
    assert_eq!(
        fields["f:metadata"]["f:finalizers"],
        json!({"v:\"a/x\"": {}, "v:\"b/y\"": {}})
    );
    assert_eq!(
        fields["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:args"],
        json!({})
    );
    let next = apply(
        Some(&live),
        &pod(json!(["b/y"]), json!(["3"])),
        schema,
        &who,
        OBJECT,
        false,
    )
    .expect("applied");
    assert_eq!(next["metadata"]["finalizers"], json!(["b/y"]));
    assert_eq!(next["spec"]["containers"][0]["args"], json!(["3"]));
}

#[test]
fn hostile_configurations_are_refused_naming_the_field() {
    let schema = schema_for("", "Pod").expect("a schema");
    let who = manager("ci");
    let no_key = json!({"spec": {"containers": [{"image": "busybox"}]}});
    assert_eq!(
        apply(None, &no_key, schema, &who, OBJECT, false)
            .expect_err("refused")
            .to_string(),
        ".spec.containers[0]: the element lacks its key field \"name\""
    );
    let twice = json!({"spec": {"containers": [{"name": "c"}, {"name": "c"}]}});
    assert_eq!(
        apply(None, &twice, schema, &who, OBJECT, false)
            .expect_err("refused")
            .to_string(),
        ".spec.containers: duplicate entries for the key [name=\"c\"]"
    );
    let not_object = json!({"spec": {"containers": ["c"]}});
    assert!(apply(None, &not_object, schema, &who, OBJECT, false).is_err());
    assert!(apply(None, &json!([1]), schema, &who, OBJECT, false).is_err());
    let mut deep = json!("leaf");
    for _ in 0..200 {
        deep = json!({ "x": deep });
    }
    let deep = json!({"metadata": {"annotations": {}}, "spec": deep});
    assert!(apply(None, &deep, schema, &who, OBJECT, false).is_err());
    // A stored object with malformed managedFields is refused, not trusted or dropped.
    let bad = json!({"metadata": {"name": "p", "managedFields": [{"manager": "m", "fieldsType": "FieldsV1", "fieldsV1": {"bogus": {}}}]}});
    assert!(matches!(
        apply(
            Some(&bad),
            &json!({"metadata": {"name": "p"}}),
            schema,
            &who,
            OBJECT,
            false
        ),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn fields_v1_round_trips() {
    let document = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}}}}});
    let set = FieldSet::from_fields_v1(&document, "fieldsV1").expect("read");
    assert_eq!(set.to_fields_v1(), document);
    assert!(set.contains(&["f:metadata".into(), "f:labels".into()]));
    assert!(!set.contains(&["f:metadata".into()]));
    assert_eq!(set.len(), 4);
    assert!(FieldSet::from_fields_v1(&json!([]), "fieldsV1").is_err());
}

#[test]
fn nulls_set_nothing_and_leave_no_empty_record() {
    let schema = schema_for("", "ConfigMap").expect("a schema");
    let who = manager("ci");
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": null}}, "data": {"k": "v", "gone": null}});
    let created = apply(None, &config, schema, &who, OBJECT, false).expect("applied");
    assert_eq!(created["data"], json!({"k": "v"}));
    assert_eq!(created["metadata"]["labels"], json!({}));
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {}}})
    );
}

#[test]
fn a_field_inside_a_kept_element_goes_while_the_element_stays() {
    let live = apply_as(
        None,
        &deployment(
            json!([{"name": "A", "value": "1"}]),
            json!([{"containerPort": 80, "name": "http"}]),
            1,
        ),
        "ci",
        false,
    )
    .expect("applied");
    let next = apply_as(
        Some(&live),
        &deployment(
            json!([{"name": "A", "value": "1"}]),
            json!([{"containerPort": 80}]),
            1,
        ),
        "ci",
        false,
    )
    .expect("applied");
    assert_eq!(
        next["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80}])
    );
}

#[test]
fn an_element_the_applier_drops_goes_even_when_another_manager_set_a_field_inside_it() {
    let schema = schema_for("apps", "Deployment").expect("a schema");
    let live = apply_as(
        None,
        &deployment(
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
            json!([]),
            1,
        ),
        "ci",
        false,
    )
    .expect("applied");
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = json!("3");
    track_update(&live, &mut edited, schema, &manager("kubectl-edit"), OBJECT).expect("tracked");
    let next = apply_as(
        Some(&edited),
        &deployment(json!([{"name": "A", "value": "1"}]), json!([]), 1),
        "ci",
        false,
    )
    .expect("applied");
    // structured-merge-diff's "remove one with dangling subitem": the element was the
    // applier's alone, so it goes with what another manager set inside it.
    let env = &next["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(*env, json!([{"name": "A", "value": "1"}]));
}

#[test]
fn ports_of_one_number_and_two_protocols_are_two_elements() {
    let schema = schema_for("", "Service").expect("a schema");
    let who = manager("ci");
    let service = |ports: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"}, "spec": {"ports": ports}});
    let live = apply(
        None,
        &service(json!([{"port": 53, "protocol": "UDP", "name": "u"}, {"port": 53, "name": "t"}])),
        schema,
        &who,
        OBJECT,
        false,
    )
    .expect("two elements, not a duplicate");
    let next = apply(
        Some(&live),
        &service(json!([{"port": 53, "name": "t"}])),
        schema,
        &who,
        OBJECT,
        false,
    )
    .expect("applied");
    assert_eq!(next["spec"]["ports"], json!([{"port": 53, "name": "t"}]));
}

#[test]
fn a_stored_list_with_a_repeated_key_is_compared_on_its_first_element() {
    let schema = schema_for("apps", "Deployment").expect("a schema");
    let mut live = apply_as(
        None,
        &deployment(json!([{"name": "A", "value": "1"}]), json!([]), 1),
        "ci",
        false,
    )
    .expect("applied");
    live["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "A", "value": "1"}, {"name": "A", "value": "9"}]);
    let mut new = live.clone();
    new["spec"]["replicas"] = json!(2);
    track_update(&live, &mut new, schema, &manager("m"), OBJECT)
        .expect("a stored duplicate is not an error");
    assert_eq!(
        new["metadata"]["managedFields"][1]["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
}

#[test]
fn long_lists_merge_and_compare_in_one_pass() {
    // 20,000 env vars (about what a 3 MiB body holds): found by key, not searched for, so this
    // finishes at once; a quadratic merge would take minutes here in a debug build.
    let env: Vec<Value> = (0..20_000)
        .map(|i| json!({"name": format!("V{i}"), "value": "x"}))
        .collect();
    let live = apply_as(None, &deployment(json!(env), json!([]), 1), "ci", false).expect("applied");
    let fewer: Vec<Value> = (0..20_000)
        .filter(|i| i % 2 == 0)
        .map(|i| json!({"name": format!("V{i}"), "value": "y"}))
        .collect();
    let next = apply_as(
        Some(&live),
        &deployment(json!(fewer), json!([]), 1),
        "ci",
        false,
    )
    .expect("applied");
    let env = next["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    assert_eq!(env.len(), 10_000);
    assert!(env.iter().all(|e| e["value"] == "y"));
}

#[test]
fn reapplying_the_same_configuration_changes_nothing_not_even_the_times() {
    let config = deployment(json!([{"name": "A", "value": "1"}]), json!([]), 2);
    let live = apply_as(None, &config, "ci", false).expect("applied");
    let schema = schema_for("apps", "Deployment").expect("a schema");
    let later = Manager {
        time: "2026-12-03T23:59:59Z",
        ..manager("ci")
    };
    let again = apply(Some(&live), &config, schema, &later, OBJECT, false).expect("applied");
    assert_eq!(
        again, live,
        "a controller applying every pass must not write every pass"
    );
}

#[test]
fn upgrading_from_client_side_apply_takes_its_fields_without_a_conflict() {
    let mut live = deployment(json!([]), json!([]), 2);
    let last = deployment(json!([]), json!([]), 2).to_string();
    live["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": last});
    // The file now says 3: the client-side manager's field is the applier's to change.
    let applied = apply_as(
        Some(&live),
        &deployment(json!([]), json!([]), 3),
        "kubectl",
        false,
    )
    .expect("no conflict with what client-side apply set");
    assert_eq!(applied["spec"]["replicas"], 3);
    // A field client-side apply never set (a label added by hand) still conflicts.
    let mut by_hand = live.clone();
    by_hand["metadata"]["labels"]["team"] = json!("blue");
    let mut config = deployment(json!([]), json!([]), 2);
    config["metadata"]["labels"]["team"] = json!("red");
    assert!(matches!(
        apply_as(Some(&by_hand), &config, "kubectl", false),
        Err(Error::Conflicts(_))
    ));
}

#[test]
fn a_map_emptied_by_the_removal_goes_with_it() {
    let schema = schema_for("", "ConfigMap").expect("a schema");
    let who = manager("ci");
    let with = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {"a": "1"}}, "data": {"k": "v"}});
    let live = apply(None, &with, schema, &who, OBJECT, false).expect("applied");
    let without = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
    let next = apply(Some(&live), &without, schema, &who, OBJECT, false).expect("applied");
    assert!(next["metadata"].get("annotations").is_none(), "{next}");
}

#[test]
fn an_empty_list_resets_the_record_and_a_status_writer_is_named_with_its_subresource() {
    let schema = schema_for("apps", "Deployment").expect("a schema");
    let live = apply_as(None, &deployment(json!([]), json!([]), 2), "ci", false).expect("applied");
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([]);
    track_update(&live, &mut reset, schema, &manager("x"), OBJECT).expect("tracked");
    assert!(reset["metadata"].get("managedFields").is_none());

    let status = Manager {
        subresource: Some("status"),
        ..manager("kubelet")
    };
    let mut written = live.clone();
    written["status"] = json!({"replicas": 1});
    track_update(&live, &mut written, schema, &status, Scope::Status).expect("tracked");
    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "status": {"replicas": 4}});
    let other = Manager {
        subresource: Some("status"),
        ..manager("ctl")
    };
    let error = apply(
        Some(&written),
        &config,
        schema,
        &other,
        Scope::Status,
        false,
    )
    .expect_err("a conflict");
    assert_eq!(
        error.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubelet\" using apps/v1 with subresource \"status\": .status.replicas"
    );
}

#[test]
fn an_update_that_adds_a_map_records_the_map_itself() {
    let schema = schema_for("apps", "Deployment").expect("a schema");
    let live = apply_as(None, &deployment(json!([]), json!([]), 2), "ci", false).expect("applied");
    let mut new = live.clone();
    new["metadata"]["annotations"] = json!({"note": "x"});
    track_update(
        &live,
        &mut new,
        schema,
        &manager("kubectl-annotate"),
        OBJECT,
    )
    .expect("tracked");
    assert_eq!(
        new["metadata"]["managedFields"][1]["fieldsV1"],
        json!({"f:metadata": {"f:annotations": {".": {}, "f:note": {}}}})
    );
}

#[test]
fn a_million_conflicts_are_counted_not_listed() {
    let schema = schema_for("", "ConfigMap").expect("a schema");
    let data: serde_json::Map<String, Value> =
        (0..5_000).map(|i| (format!("k{i}"), json!("a"))).collect();
    let config = |value: &str| {
        let data: serde_json::Map<String, Value> =
            data.keys().map(|k| (k.clone(), json!(value))).collect();
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
    };
    let live = apply(None, &config("a"), schema, &manager("one"), OBJECT, false).expect("applied");
    let Err(Error::Conflicts(conflicts)) = apply(
        Some(&live),
        &config("b"),
        schema,
        &manager("two"),
        OBJECT,
        false,
    ) else {
        panic!("conflicts expected");
    };
    assert_eq!(conflicts.len(), 1_000);
    assert!(
        conflicts[999].field.ends_with("(and 4000 more conflicts)"),
        "{}",
        conflicts[999].field
    );
}

fn env_names(object: &Value) -> Vec<String> {
    object["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| e["name"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn env(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| json!({"name": n, "value": format!("$({n})")}))
            .collect(),
    )
}

#[test]
fn a_new_element_lands_where_the_configuration_puts_it() {
    // Env order is meaning: `$(VAR)` expands only variables defined before it.
    let live = apply_as(
        None,
        &deployment(env(&["A", "C"]), json!([]), 1),
        "ci",
        false,
    )
    .expect("applied");
    let next = apply_as(
        Some(&live),
        &deployment(env(&["A", "B", "C"]), json!([]), 1),
        "ci",
        false,
    )
    .expect("applied");
    assert_eq!(env_names(&next), ["A", "B", "C"]);
    // First in the configuration, first in the object.
    let first = apply_as(
        Some(&next),
        &deployment(env(&["Z", "A", "B", "C"]), json!([]), 1),
        "ci",
        false,
    )
    .expect("applied");
    assert_eq!(env_names(&first), ["Z", "A", "B", "C"]);
}

#[test]
fn the_configuration_orders_shared_elements_and_others_keep_their_place() {
    let schema = schema_for("apps", "Deployment").expect("a schema");
    let live = apply_as(
        None,
        &deployment(env(&["A", "B"]), json!([]), 1),
        "ci",
        false,
    )
    .expect("applied");
    // Another manager adds X between A and B.
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["env"] = env(&["A", "X", "B"]);
    track_update(&live, &mut edited, schema, &manager("kubectl-edit"), OBJECT).expect("tracked");
    // structured-merge-diff's walk: B and A in the configuration's order, X (only live) where
    // the walk over the live list meets it, which is before B.
    let swapped = apply_as(
        Some(&edited),
        &deployment(env(&["B", "A"]), json!([]), 1),
        "ci",
        false,
    )
    .expect("applied");
    assert_eq!(env_names(&swapped), ["X", "B", "A"]);
    // A new element between shared ones, and X still kept.
    let grown = apply_as(
        Some(&swapped),
        &deployment(env(&["B", "N", "A"]), json!([]), 1),
        "ci",
        false,
    )
    .expect("applied");
    assert_eq!(env_names(&grown), ["X", "B", "N", "A"]);
    // Fields inside a moved element still merge: X is kubectl-edit's, the values are ci's.
    let env = &grown["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env[3], json!({"name": "A", "value": "$(A)"}));
}

#[test]
fn a_set_follows_the_configurations_order_too() {
    let schema = schema_for("", "Pod").expect("a schema");
    let who = manager("ci");
    let pod = |finalizers: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "finalizers": finalizers},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    };
    let live = apply(
        None,
        &pod(json!(["a/x", "c/z"])),
        schema,
        &who,
        OBJECT,
        false,
    )
    .expect("applied");
    let next = apply(
        Some(&live),
        &pod(json!(["a/x", "b/y", "c/z"])),
        schema,
        &who,
        OBJECT,
        false,
    )
    .expect("applied");
    assert_eq!(next["metadata"]["finalizers"], json!(["a/x", "b/y", "c/z"]));
}

#[test]
fn past_ten_updaters_the_oldest_fold_into_ancient_changes() {
    let schema = schema_for("apps", "Deployment").expect("a schema");
    let mut live =
        apply_as(None, &deployment(json!([]), json!([]), 1), "ci", false).expect("applied");
    const NAMES: [&str; 12] = [
        "u00", "u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11",
    ];
    const TIMES: [&str; 12] = [
        "2026-12-04T00:00:00Z",
        "2026-12-04T00:00:01Z",
        "2026-12-04T00:00:02Z",
        "2026-12-04T00:00:03Z",
        "2026-12-04T00:00:04Z",
        "2026-12-04T00:00:05Z",
        "2026-12-04T00:00:06Z",
        "2026-12-04T00:00:07Z",
        "2026-12-04T00:00:08Z",
        "2026-12-04T00:00:09Z",
        "2026-12-04T00:00:10Z",
        "2026-12-04T00:00:11Z",
    ];
    for (name, time) in NAMES.iter().zip(TIMES) {
        let mut next = live.clone();
        next["metadata"]["labels"][*name] = json!("x");
        let who = Manager {
            name,
            api_version: "apps/v1",
            subresource: None,
            time,
        };
        track_update(&live, &mut next, schema, &who, OBJECT).expect("tracked");
        live = next;
    }
    let names: Vec<String> = managers(&live).into_iter().map(|(m, _)| m).collect();
    // The applier, then ten updaters: the three oldest folded into one.
    assert_eq!(names.len(), 11, "{names:?}");
    assert_eq!(names[0], "ci");
    assert!(names.contains(&"ancient-changes".to_owned()), "{names:?}");
    for gone in ["u00", "u01", "u02"] {
        assert!(!names.contains(&gone.to_owned()), "{gone} in {names:?}");
    }
    let entries = live["metadata"]["managedFields"]
        .as_array()
        .expect("a list");
    let ancient = entries
        .iter()
        .find(|e| e["manager"] == "ancient-changes")
        .expect("the folded entry");
    assert_eq!(ancient["operation"], "Update");
    assert_eq!(ancient["time"], "2026-12-04T00:00:02Z");
    assert_eq!(
        ancient["fieldsV1"]["f:metadata"]["f:labels"],
        json!({"f:u00": {}, "f:u01": {}, "f:u02": {}})
    );
    // A thirteenth folds into the same entry: still ten updaters.
    let mut next = live.clone();
    next["metadata"]["labels"]["u12"] = json!("x");
    let who = Manager {
        name: "u12",
        api_version: "apps/v1",
        subresource: None,
        time: "2026-12-04T00:00:12Z",
    };
    track_update(&live, &mut next, schema, &who, OBJECT).expect("tracked");
    let names: Vec<String> = managers(&next).into_iter().map(|(m, _)| m).collect();
    assert_eq!(names.len(), 11, "{names:?}");
    assert!(!names.contains(&"u03".to_owned()), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| *n == "ancient-changes").count(),
        1,
        "{names:?}"
    );
}
