//! Path elements as `fieldsV1` spells them (`f:name`, `k:{"name":"web"}`, `v:"x"`), how a list
//! element is spelled, and paths as kube prints them in conflicts
//! (`.spec.containers[name="web"].image`).

use serde_json::{Map, Value};

use crate::schema::element_key;

pub(crate) fn field(name: &str) -> String {
    format!("f:{name}")
}

pub(crate) fn value(value: &Value) -> String {
    format!("v:{value}")
}

/// `k:` and the key fields as a JSON object in name order (structured-merge-diff's order),
/// written out here so the spelling does not depend on serde_json's map features.
pub(crate) fn key(fields: &[(&str, Value)]) -> String {
    let mut out = String::from("k:{");
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String((*name).to_owned()).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

/// One element, read back.
enum Element<'a> {
    Field(&'a str),
    Key(Map<String, Value>),
    Value(Value),
    Other,
}

fn parse(element: &str) -> Element<'_> {
    if let Some(name) = element.strip_prefix("f:") {
        return Element::Field(name);
    }
    if let Some(text) = element.strip_prefix("k:") {
        if let Ok(Value::Object(map)) = serde_json::from_str(text) {
            return Element::Key(map);
        }
    }
    if let Some(text) = element.strip_prefix("v:") {
        if let Ok(value) = serde_json::from_str(text) {
            return Element::Value(value);
        }
    }
    Element::Other
}

/// The key field names of a list's `k:` elements (all elements of one list share them), or
/// None when the elements are values (`v:`).
pub(crate) fn key_names<'a>(elements: impl Iterator<Item = &'a String>) -> Option<Vec<String>> {
    elements
        .filter_map(|element| match parse(element) {
            Element::Key(fields) => Some(fields.keys().cloned().collect()),
            _ => None,
        })
        .next()
}

/// How `item` of a list is spelled as a path element: `k:` on the key fields `names` when the
/// list is associative, else `v:` (None for an element without its key).
pub(crate) fn element_of<S: AsRef<str>>(item: &Value, names: Option<&[S]>) -> Option<String> {
    match names {
        None => Some(value(item)),
        Some(names) => {
            let fields = element_key(item.as_object()?, names).ok()?;
            Some(key(&fields))
        }
    }
}

/// Whether `field` (`f:name`) is one of the key fields of the element `element`
/// (`k:{"name":"a"}`).
pub(crate) fn is_key_field_of(element: &str, field: &str) -> bool {
    match (parse(element), field.strip_prefix("f:")) {
        (Element::Key(fields), Some(name)) => fields.contains_key(name),
        _ => false,
    }
}

/// A path as kube prints it: `.spec.containers[name="web"].image`, `.metadata.finalizers[="a"]`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        match parse(element) {
            Element::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Element::Key(fields) => {
                out.push('[');
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&parts.join(","));
                out.push(']');
            }
            Element::Value(value) => {
                out.push_str(&format!("[={value}]"));
            }
            Element::Other => out.push_str(element),
        }
    }
    out
}
