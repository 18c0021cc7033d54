//! The policy document, read field by field so that every error names its path: strict
//! decoding (unknown fields, wrong types) and kube's `ValidatePolicy`, in one pass that reports
//! every error it finds.
//!
//! Hostile input stays an error: both parsers stop at 128 levels of nesting, serde_yaml_ng
//! bounds alias expansion and refuses duplicate keys (with their line), and a value shown in an
//! error is elided when it is a list or a map.

use serde_yaml_ng::{Mapping, Value};

use super::{go_quote, FieldError, GroupResources, Invalid, Level, Rule, Stages};
use crate::audit::Stage;

#[cfg(test)]
mod tests;

const API_VERSION: &str = "audit.k8s.io/v1";
const KIND: &str = "Policy";

/// The rules (each `omit` merged with the policy's) and the policy's own `omitStages`.
pub(super) fn decode(text: &str) -> Result<(Vec<Rule>, Stages), Invalid> {
    let root = parse(text)?;
    let mut errors = Vec::new();
    let decoded = policy(&root, &mut errors);
    if errors.is_empty() {
        Ok(decoded)
    } else {
        Err(Invalid::Fields(errors))
    }
}

/// JSON when the text starts with `{` (as Kubernetes' decoders sniff it), YAML otherwise.
fn parse(text: &str) -> Result<Value, Invalid> {
    // A byte-order mark is not content; libyaml skips it, serde_json would not.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let parsed = if text.trim_start().starts_with('{') {
        serde_json::from_str::<Value>(text).map_err(|e| e.to_string())
    } else {
        serde_yaml_ng::from_str::<Value>(text).map_err(|e| e.to_string())
    };
    parsed.map_err(Invalid::Syntax)
}

/// The JSON type name, as Go's decoder says it in "cannot unmarshal TYPE into …".
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "array",
        Value::Mapping(_) => "object",
        Value::Tagged(_) => "tagged value",
    }
}

/// A value as an error shows it: strings quoted, containers elided.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => go_quote(s),
        Value::Sequence(_) => "[...]".into(),
        Value::Mapping(_) => "{...}".into(),
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, render(&tagged.value)),
    }
}

/// A mapping key as a field name (YAML allows non-string keys; none is a field).
fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => render(other),
    }
}

fn type_error(path: &str, value: &Value, go_type: &str) -> FieldError {
    let detail = format!("cannot unmarshal {} into {go_type}", kind(value));
    FieldError::invalid(path.into(), render(value), detail)
}

/// Go's `%#v` of a `[]string`, as kube's `field.Invalid` prints a list.
fn go_strings(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// The fields of one object; absent and null read alike (Go leaves the zero value for both).
struct Fields<'a> {
    path: String,
    map: Option<&'a Mapping>,
}

/// Reads `value` as an object of `known` fields, each other field an error. Null is an empty
/// object; another type is an error (`None`).
fn object<'a>(
    value: &'a Value,
    path: &str,
    go_type: &str,
    known: &[&str],
    errors: &mut Vec<FieldError>,
) -> Option<Fields<'a>> {
    let map = match value {
        Value::Mapping(map) => Some(map),
        Value::Null => None,
        other => {
            errors.push(type_error(path, other, go_type));
            return None;
        }
    };
    for key in map.iter().flat_map(|m| m.keys()) {
        let name = key_name(key);
        if !matches!(key, Value::String(_)) || !known.contains(&name.as_str()) {
            errors.push(FieldError::unknown(child(path, &name)));
        }
    }
    Some(Fields {
        path: path.into(),
        map,
    })
}

fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.into()
    } else {
        format!("{parent}.{name}")
    }
}

impl<'a> Fields<'a> {
    fn at(&self, key: &str) -> String {
        child(&self.path, key)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }

    /// A string field; `None` when absent, or (recorded) of another type.
    fn string(&self, key: &str, errors: &mut Vec<FieldError>) -> Option<&'a str> {
        match self.get(key)? {
            Value::String(s) => Some(s),
            other => {
                errors.push(type_error(&self.at(key), other, "string"));
                None
            }
        }
    }

    fn list(&self, key: &str, go_type: &str, errors: &mut Vec<FieldError>) -> &'a [Value] {
        match self.get(key) {
            None => &[],
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                errors.push(type_error(&self.at(key), other, go_type));
                &[]
            }
        }
    }

    /// A `[]string`; a null item is `""`, as Go decodes it.
    fn strings(&self, key: &str, errors: &mut Vec<FieldError>) -> Vec<String> {
        let items = self.list(key, "[]string", errors);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                Value::Null => out.push(String::new()),
                other => errors.push(type_error(
                    &format!("{}[{i}]", self.at(key)),
                    other,
                    "string",
                )),
            }
        }
        out
    }

    /// A bool (`omitManagedFields`): checked, and without bodies of no use to keel.
    fn check_bool(&self, key: &str, errors: &mut Vec<FieldError>) {
        if let Some(value) = self.get(key) {
            if !matches!(value, Value::Bool(_)) {
                errors.push(type_error(&self.at(key), value, "bool"));
            }
        }
    }

    /// `omitStages`, each a known stage (kube's words: `allowed stages are …`).
    fn stages(&self, key: &str, errors: &mut Vec<FieldError>) -> Stages {
        let path = self.at(key);
        let mut set = Stages::NONE;
        for (i, name) in self.strings(key, errors).iter().enumerate() {
            match Stage::parse(name) {
                Some(stage) => set = set.with(stage),
                None => errors.push(FieldError::invalid(
                    format!("{path}[{i}]"),
                    go_quote(name),
                    "allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic",
                )),
            }
        }
        set
    }
}

fn policy(root: &Value, errors: &mut Vec<FieldError>) -> (Vec<Rule>, Stages) {
    const KNOWN: &[&str] = &[
        "apiVersion",
        "kind",
        "metadata",
        "rules",
        "omitStages",
        "omitManagedFields",
    ];
    let Some(fields) = object(root, "", "v1.Policy", KNOWN, errors) else {
        return (Vec::new(), Stages::NONE);
    };
    for (key, want) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        match fields.string(key, errors) {
            None if fields.get(key).is_none() => errors.push(FieldError::required(key.into())),
            None => {}
            Some(got) if got == want => {}
            Some(got) => errors.push(FieldError::not_supported(
                key.into(),
                got,
                if key == "kind" {
                    &[KIND]
                } else {
                    &[API_VERSION]
                },
            )),
        }
    }
    // ObjectMeta names nothing the policy uses; only its shape is checked.
    if let Some(meta) = fields.get("metadata") {
        if !matches!(meta, Value::Mapping(_)) {
            errors.push(type_error("metadata", meta, "v1.ObjectMeta"));
        }
    }
    let omit = fields.stages("omitStages", errors);
    fields.check_bool("omitManagedFields", errors);
    let items = fields.list("rules", "[]v1.PolicyRule", errors);
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(mut rule) = rule(item, &format!("rules[{i}]"), errors) {
            rule.omit = rule.omit.union(omit);
            rules.push(rule);
        }
    }
    (rules, omit)
}

fn rule(value: &Value, path: &str, errors: &mut Vec<FieldError>) -> Option<Rule> {
    const KNOWN: &[&str] = &[
        "level",
        "users",
        "userGroups",
        "verbs",
        "resources",
        "namespaces",
        "nonResourceURLs",
        "omitStages",
        "omitManagedFields",
    ];
    let fields = object(value, path, "v1.PolicyRule", KNOWN, errors)?;
    let level = match fields.string("level", errors) {
        Some(name) => Level::parse(name).or_else(|| {
            errors.push(FieldError::not_supported(
                fields.at("level"),
                name,
                &Level::NAMES,
            ));
            None
        }),
        None => {
            if fields.get("level").is_none() {
                errors.push(FieldError::required(fields.at("level")));
            }
            None
        }
    };
    let non_resource_urls = fields.strings("nonResourceURLs", errors);
    for (i, url) in non_resource_urls.iter().enumerate() {
        if url == "*" {
            continue;
        }
        let at = format!("{}[{i}]", fields.at("nonResourceURLs"));
        if !url.starts_with('/') {
            let detail = "non-resource URL rules must begin with a '/' character";
            errors.push(FieldError::invalid(at.clone(), go_quote(url), detail));
        }
        // Bytes, as Go slices the string: the last byte may end a multi-byte character.
        if let Some((_, head)) = url.as_bytes().split_last() {
            if head.contains(&b'*') {
                let detail =
                    "non-resource URL wildcards '*' must be the final character of the rule";
                errors.push(FieldError::invalid(at, go_quote(url), detail));
            }
        }
    }
    let resources = group_resources(&fields, errors);
    let omit = fields.stages("omitStages", errors);
    let namespaces = fields.strings("namespaces", errors);
    if !non_resource_urls.is_empty() && (!resources.is_empty() || !namespaces.is_empty()) {
        errors.push(FieldError::invalid(
            fields.at("nonResourceURLs"),
            go_strings(&non_resource_urls),
            "rules cannot apply to both regular resources and non-resource URLs",
        ));
    }
    fields.check_bool("omitManagedFields", errors);
    let users = fields.strings("users", errors);
    let user_groups = fields.strings("userGroups", errors);
    let verbs = fields.strings("verbs", errors);
    Some(Rule {
        level: level?,
        users,
        user_groups,
        verbs,
        resources,
        namespaces,
        non_resource_urls,
        omit,
    })
}

/// `resources`: kube reports their errors at `rules[i].resources.group` (no index), and so
/// does keel.
fn group_resources(fields: &Fields<'_>, errors: &mut Vec<FieldError>) -> Vec<GroupResources> {
    const KNOWN: &[&str] = &["group", "resources", "resourceNames"];
    let path = fields.at("resources");
    let items = fields.list("resources", "[]v1.GroupResources", errors);
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(gr) = object(item, &at, "v1.GroupResources", KNOWN, errors) else {
            continue;
        };
        let group = gr.string("group", errors).unwrap_or_default().to_owned();
        // `""` is the core group and `"*"` any group.
        if !group.is_empty() && group != "*" {
            let messages = keel_api::validation::is_dns1123_subdomain(&group);
            if !messages.is_empty() {
                errors.push(FieldError::invalid(
                    child(&path, "group"),
                    go_quote(&group),
                    messages.join(","),
                ));
            }
        }
        let resources = gr.strings("resources", errors);
        let resource_names = gr.strings("resourceNames", errors);
        if !resource_names.is_empty() && resources.is_empty() {
            errors.push(FieldError::invalid(
                child(&path, "resourceNames"),
                go_strings(&resource_names),
                "using resourceNames requires at least one resource",
            ));
        }
        out.push(GroupResources {
            group,
            resources,
            resource_names,
        });
    }
    out
}
