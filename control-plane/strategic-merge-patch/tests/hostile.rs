//! Hostile input: every malformed patch is refused with an error naming the field, deep
//! nesting is refused, and random patches neither panic nor leak directives.

use serde_json::{json, Map, Value};
use strategic_merge_patch::{apply, kubernetes, Error, Schema, MAX_DEPTH};

fn pod() -> &'static Schema {
    kubernetes::schema_for("", "Pod").expect("Pod is served")
}

fn merged(original: Value, patch: Value, schema: &Schema) -> Value {
    apply(&original, &patch, schema).unwrap_or_else(|error| panic!("patch refused: {error}"))
}

fn refused(original: Value, patch: Value, schema: &Schema) -> Error {
    match apply(&original, &patch, schema) {
        Ok(result) => panic!("patch accepted: {result}"),
        Err(error) => error,
    }
}

/// Whether any map key in `value` starts with `$`.
fn has_directive(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(key, value)| key.starts_with('$') || has_directive(value)),
        Value::Array(items) => items.iter().any(has_directive),
        _ => false,
    }
}

fn nested_maps(depth: usize, leaf: Value) -> Value {
    let mut value = leaf;
    for _ in 0..depth {
        let mut map = Map::new();
        map.insert("a".to_owned(), value);
        value = Value::Object(map);
    }
    value
}

// --- refusals ------------------------------------------------------------------------------

#[test]
fn documents_that_are_not_objects_are_refused() {
    for patch in [json!([1]), json!("x"), json!(3), json!(true)] {
        let error = refused(json!({}), patch, Schema::empty());
        assert!(
            matches!(
                error,
                Error::NotAnObject {
                    document: "patch",
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(error.path(), None);
    }
    let error = refused(json!([{"a": 1}]), json!({}), Schema::empty());
    assert!(
        matches!(
            error,
            Error::NotAnObject {
                document: "original",
                found: "list"
            }
        ),
        "{error}"
    );
}

#[test]
fn deep_nesting_is_refused() {
    let error = refused(
        nested_maps(150, json!(1)),
        nested_maps(150, json!(2)),
        Schema::empty(),
    );
    assert!(
        matches!(
            error,
            Error::TooDeep {
                limit: MAX_DEPTH,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().starts_with("a.a.a."), "{error}");

    let mut lists = json!(1);
    for _ in 0..150 {
        lists = Value::Array(vec![lists]);
    }
    let error = refused(json!({}), json!({"a": lists}), Schema::empty());
    assert!(matches!(error, Error::TooDeep { .. }), "{error}");
}

#[test]
fn moderate_nesting_is_accepted() {
    let result = merged(
        nested_maps(60, json!(1)),
        nested_maps(60, json!(2)),
        Schema::empty(),
    );
    assert_eq!(result, nested_maps(60, json!(2)));
}

#[test]
fn unknown_patch_values_are_refused() {
    let original = json!({"spec": {"containers": [{"name": "web"}], "x": {}}});
    for (patch, path) in [
        (json!({"spec": {"x": {"$patch": "bogus"}}}), "spec.x"),
        (json!({"spec": {"x": {"$patch": 5}}}), "spec.x"),
        (json!({"spec": {"$patch": "merge"}}), "spec"),
        (
            json!({"spec": {"containers": [{"name": "web", "$patch": "bogus"}]}}),
            "spec.containers[0]",
        ),
        (
            json!({"spec": {"fresh": {"deeper": {"$patch": "sideways"}}}}),
            "spec.fresh.deeper",
        ),
    ] {
        let error = refused(original.clone(), patch, pod());
        assert!(matches!(error, Error::UnknownPatchType { .. }), "{error}");
        assert_eq!(error.path(), Some(path));
        assert!(error.to_string().contains("unknown patch type"), "{error}");
    }
}

#[test]
fn merge_directive_in_a_list_is_refused_as_go_does() {
    let error = refused(
        json!({"spec": {"containers": [{"name": "web"}]}}),
        json!({"spec": {"containers": [{"name": "web", "$patch": "merge"}]}}),
        pod(),
    );
    assert_eq!(
        error,
        Error::MergeDirectiveInList {
            path: "spec.containers".to_owned()
        }
    );
}

#[test]
fn retain_keys_must_be_a_list_of_names_covering_the_patch() {
    let original = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
    for bad in [json!("name"), json!([1]), json!(null)] {
        let error = refused(
            original.clone(),
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": bad}]}}),
            pod(),
        );
        assert_eq!(
            error,
            Error::RetainKeysNotAList {
                path: "spec.volumes[name=v]".to_owned()
            }
        );
    }
    let error = refused(
        original,
        json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name"], "hostPath": {"path": "/"}}]}}),
        pod(),
    );
    assert_eq!(
        error,
        Error::RetainKeysMismatch {
            path: "spec.volumes[name=v]".to_owned(),
            field: "hostPath".to_owned()
        }
    );
}

#[test]
fn malformed_list_directives_are_refused() {
    let original =
        json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}});
    let cases = [
        (
            json!({"spec": {"$setElementOrder/containers": "a"}}),
            "spec",
        ),
        (json!({"spec": {"$setElementOrder": []}}), "spec"),
        (json!({"$deleteFromPrimitiveList/": ["a"]}), "<root>"),
        (
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            "metadata",
        ),
        (
            json!({"spec": {"$deleteFromPrimitiveList/containers": [{"name": "a"}]}}),
            "spec",
        ),
    ];
    for (patch, path) in cases {
        let error = refused(original.clone(), patch, pod());
        assert_eq!(error.path(), Some(path), "{error}");
        assert!(
            error.to_string().contains("invalid patch format"),
            "{error}"
        );
    }
}

#[test]
fn missing_merge_key_names_the_element() {
    let original = json!({"spec": {"containers": [{"name": "web", "env": [{"name": "A"}]}]}});
    let error = refused(
        original.clone(),
        json!({"spec": {"containers": [{"name": "web"}, {"image": "x"}]}}),
        pod(),
    );
    assert_eq!(error.path(), Some("spec.containers[1]"));
    assert!(
        error
            .to_string()
            .contains("does not contain declared merge key: name"),
        "{error}"
    );

    let error = refused(
        original.clone(),
        json!({"spec": {"containers": [{"name": "web", "env": [{"value": "x"}]}]}}),
        pod(),
    );
    assert_eq!(error.path(), Some("spec.containers[name=web].env[0]"));

    let error = refused(
        original.clone(),
        json!({"spec": {"containers": [{"name": null}]}}),
        pod(),
    );
    assert!(matches!(error, Error::MissingMergeKey { .. }), "{error}");

    let error = refused(
        original,
        json!({"spec": {"containers": [{"$patch": "delete"}]}}),
        pod(),
    );
    assert!(matches!(error, Error::MissingMergeKey { .. }), "{error}");
}

#[test]
fn wrong_types_name_the_field() {
    let original =
        json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}});
    let error = refused(
        original.clone(),
        json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": {"name": "a"}}}),
        pod(),
    );
    assert_eq!(
        error,
        Error::WrongType {
            path: "spec.containers".to_owned(),
            expected: "list",
            found: "map"
        }
    );
    let error = refused(
        original.clone(),
        json!({"spec": {"containers": ["a"]}}),
        pod(),
    );
    assert_eq!(
        error,
        Error::MixedElementTypes {
            path: "spec.containers".to_owned()
        }
    );
    let error = refused(
        original.clone(),
        json!({"metadata": {"finalizers": [["b"]]}}),
        pod(),
    );
    assert_eq!(
        error,
        Error::ListOfLists {
            path: "metadata.finalizers".to_owned()
        }
    );
    let error = refused(
        original,
        json!({"spec": {"$setElementOrder/containers": ["a"]}}),
        pod(),
    );
    assert!(matches!(error, Error::WrongType { .. }), "{error}");
}

#[test]
fn set_element_order_must_agree_with_the_patch_list() {
    let error = refused(
        json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "y"}],
        }}),
        pod(),
    );
    assert_eq!(
        error,
        Error::SetElementOrderMismatch {
            path: "spec.containers".to_owned()
        }
    );
    assert!(error.to_string().contains("doesn't match"));
}

#[test]
fn maps_in_a_list_without_merge_key_cannot_be_ordered() {
    let error = refused(
        json!({"spec": {"tolerations": [{"key": "a"}]}}),
        json!({"spec": {"$setElementOrder/tolerations": [{"key": "a"}]}}),
        pod(),
    );
    assert_eq!(
        error,
        Error::NoMergeKey {
            path: "spec.tolerations".to_owned()
        }
    );
}

// --- hostile input at random ---------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        // xorshift64: deterministic, good enough to shake the merge.
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }

    fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices
            .get(self.below(choices.len() as u64) as usize)
            .copied()
            .unwrap_or("")
    }
}

const DATA_KEYS: &[&str] = &[
    "spec",
    "metadata",
    "containers",
    "name",
    "env",
    "ports",
    "containerPort",
    "finalizers",
    "volumes",
    "tolerations",
    "value",
];
const PATCH_KEYS: &[&str] = &[
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/env",
    "$setElementOrder/finalizers",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/containers",
];
const WORDS: &[&str] = &["web", "delete", "replace", "merge", "name", "a", ""];

fn random_value(rng: &mut Rng, depth: u32, directives: bool) -> Value {
    let choice = if depth > 5 {
        rng.below(4)
    } else {
        rng.below(8)
    };
    match choice {
        0 => Value::Null,
        1 => json!(rng.below(3)),
        2 | 3 => json!(rng.pick(WORDS)),
        4 | 5 => {
            let mut map = Map::new();
            for _ in 0..rng.below(5) {
                let key = if directives && rng.below(3) == 0 {
                    rng.pick(PATCH_KEYS)
                } else {
                    rng.pick(DATA_KEYS)
                };
                map.insert(key.to_owned(), random_value(rng, depth + 1, directives));
            }
            Value::Object(map)
        }
        _ => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1, directives))
                .collect(),
        ),
    }
}

#[test]
fn random_patches_never_panic_nor_leak_directives() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for _ in 0..4_000 {
        let original = json!({"spec": random_value(&mut rng, 1, false), "metadata": random_value(&mut rng, 1, false)});
        let patch = json!({"spec": random_value(&mut rng, 1, true), "metadata": random_value(&mut rng, 1, true)});
        for schema in [pod(), Schema::empty()] {
            if let Ok(result) = apply(&original, &patch, schema) {
                accepted += 1;
                assert!(
                    !has_directive(&result),
                    "directive leaked:\n{original}\n{patch}\n{result}"
                );
            }
        }
    }
    assert!(accepted > 0);
}
