//! Finalizer names, as kube-apiserver checks them: `metadata.finalizers` of every object
//! (`ValidateFinalizers`) and a namespace's `spec.finalizers` (`validateFinalizerName`).
//!
//! A finalizer is a contract with whichever controller removes it; a name no controller can
//! match (a newline, a second slash) would hold its object for ever, so it is refused up front.

use serde_json::Value;

use super::Errors;
use keel_api::validation::is_qualified_name;

/// metav1's standard finalizers, plus the namespace controller's `kubernetes`.
const STANDARD: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

fn names(list: Option<&Value>) -> Vec<(usize, &str)> {
    list.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (i, v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.finalizers`: qualified names, and never both orphan and foreground deletion.
pub(super) fn metadata(errors: &mut Errors, object: &Value) {
    let list = object.pointer("/metadata/finalizers");
    let finalizers = names(list);
    for (i, name) in &finalizers {
        for message in is_qualified_name(name) {
            errors.invalid(&format!("metadata.finalizers[{i}]"), name, &message);
        }
    }
    let has = |wanted: &str| finalizers.iter().any(|(_, name)| *name == wanted);
    if has("orphan") && has("foregroundDeletion") {
        errors.invalid(
            "metadata.finalizers",
            &format!(
                "[{}]",
                finalizers
                    .iter()
                    .map(|(_, n)| *n)
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            "finalizer orphan and foregroundDeletion cannot be both set",
        );
    }
}

/// A namespace's `spec.finalizers`: qualified names, and a name without a prefix only if it
/// is a standard one.
pub(super) fn namespace(errors: &mut Errors, object: &Value) {
    for (i, name) in names(object.pointer("/spec/finalizers")) {
        let field = format!("spec.finalizers[{i}]");
        let problems = is_qualified_name(name);
        for message in &problems {
            errors.invalid(&field, name, message);
        }
        if problems.is_empty() && !name.contains('/') && !STANDARD.contains(&name) {
            errors.invalid(
                &field,
                name,
                "name is neither a standard finalizer name nor is it fully qualified",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn causes(resource: &str, object: serde_json::Value) -> Vec<String> {
        super::super::tests::causes("", resource, object)
    }

    #[test]
    fn namespace_finalizers_are_standard_or_qualified() {
        let ok = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes", "example.com/hold"]}});
        assert!(causes("namespaces", ok).is_empty());
        let bad = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["hold", "a/b/c", "x\ny", ""]}});
        let found = causes("namespaces", bad);
        assert!(
            found[0].starts_with("spec.finalizers[0]: Invalid value: \"hold\": name is neither"),
            "{found:?}"
        );
        assert!(
            found.iter().any(|c| c.starts_with("spec.finalizers[1]:")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|c| c.starts_with("spec.finalizers[2]: Invalid value: \"x\\ny\"")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|c| c.starts_with("spec.finalizers[3]:")),
            "{found:?}"
        );
    }

    #[test]
    fn metadata_finalizers_are_qualified_and_not_both_propagations() {
        let ok = json!({"metadata": {"name": "a", "finalizers": ["example.com/hold", "orphan"]}});
        assert!(causes("configmaps", ok).is_empty());
        let long = format!("example.com/{}", "x".repeat(64));
        let bad = json!({"metadata": {"name": "a", "finalizers": ["-j ACCEPT", long, "orphan", "foregroundDeletion"]}});
        let found = causes("configmaps", bad);
        assert!(
            found
                .iter()
                .any(|c| c.starts_with("metadata.finalizers[0]: Invalid value: \"-j ACCEPT\"")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|c| c.starts_with("metadata.finalizers[1]:") && c.contains("63")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|c| c.contains("cannot be both set")),
            "{found:?}"
        );
    }
}
