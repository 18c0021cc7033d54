//! The configuration document as a tree, read field by field so that every error names its path.
//!
//! Kubernetes decodes a config file strictly: an unknown field, a duplicate key or a value of the
//! wrong type is an error, never silently dropped. serde's derive cannot name the path of an
//! unknown field, so the file is first parsed into a [`Node`] tree (YAML or JSON, duplicate keys
//! refused while the parser still knows the line) and then walked with [`Fields`].
//!
//! Hostile input stays an error: both parsers stop at 128 levels of nesting and serde_yaml_ng
//! bounds alias expansion; integers too large for 128 bits become floats, which no integer field
//! accepts; nothing here recurses deeper than the parsers allowed.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::{number, quote, ConfigError, FieldError};

/// The configuration's group and version (plugin args carry it too).
pub(crate) const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";

/// A parsed YAML or JSON value; a mapping keeps its keys in document order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

/// Parses `text` as JSON when it starts with `{` (as Kubernetes' decoders sniff it), as YAML
/// otherwise.
pub(crate) fn parse(text: &str) -> Result<Node, ConfigError> {
    // A byte-order mark is not content; libyaml skips it, serde_json would not.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // An empty file is an empty document (the YAML parser would call it a premature end).
    if text.trim().is_empty() {
        return Ok(Node::Null);
    }
    if text.trim_start().starts_with('{') {
        serde_json::from_str::<Node>(text).map_err(|error| {
            // serde_json reports line 0 when it has no position.
            let line = Some(error.line()).filter(|line| *line > 0);
            ConfigError::Syntax {
                line,
                column: line.map(|_| error.column()),
                message: error.to_string(),
            }
        })
    } else {
        serde_yaml_ng::from_str::<Node>(text).map_err(|error| {
            let location = error.location();
            ConfigError::Syntax {
                line: location.as_ref().map(|location| location.line()),
                column: location.as_ref().map(|location| location.column()),
                message: error.to_string(),
            }
        })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(value)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Node, E> {
        Ok(Node::Int(i128::from(value)))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Node, E> {
        Ok(Node::Int(value))
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Node, E> {
        // Beyond i128 no field could take it anyway; a float keeps it an error, not a panic.
        Ok(i128::try_from(value).map_or(Node::Float(value as f64), Node::Int))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Node, E> {
        Ok(Node::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Node, E> {
        Ok(Node::Str(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Node, E> {
        Ok(Node::Str(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        let mut seen = BTreeSet::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            // Kubernetes' strict YAML decoder refuses a repeated key (the second would silently
            // win otherwise); the parser adds the line.
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!(
                    "key {} already set in map",
                    quote(&key)
                )));
            }
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key. YAML allows non-string keys; sigs.k8s.io/yaml turns scalar ones into their
/// text, which is what a field name would be compared with.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Key, E> {
        Ok(Key(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Key, E> {
        Ok(Key(value))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Key, E> {
        Ok(Key(value.to_string()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Key, E> {
        Ok(Key(value.to_string()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Key, E> {
        Ok(Key(value.to_string()))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Key, E> {
        Ok(Key(value.to_string()))
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Key, E> {
        Ok(Key(value.to_string()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Key, E> {
        Ok(Key(value.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key("null".to_owned()))
    }
}

impl Node {
    /// The JSON type name, as Go's decoder names it in "cannot unmarshal TYPE into …".
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "bool",
            Node::Int(_) | Node::Float(_) => "number",
            Node::Str(_) => "string",
            Node::Seq(_) => "array",
            Node::Map(_) => "object",
        }
    }

    /// The value as an error shows it: strings quoted, containers elided (a hostile value
    /// could be megabytes).
    pub(crate) fn render(&self) -> String {
        match self {
            Node::Null => "null".to_owned(),
            Node::Bool(value) => value.to_string(),
            Node::Int(value) => number(value),
            Node::Float(value) => number(value),
            Node::Str(value) => quote(value),
            Node::Seq(_) => "[...]".to_owned(),
            Node::Map(_) => "{...}".to_owned(),
        }
    }

    /// Whether the value asks for nothing: null, false, zero, empty. A field kube has and keel
    /// does not is accepted with such a value, which keel's behaviour already matches.
    pub(crate) fn is_inert(&self) -> bool {
        match self {
            Node::Null | Node::Bool(false) | Node::Int(0) => true,
            Node::Float(value) => *value == 0.0,
            Node::Str(value) => value.is_empty(),
            Node::Seq(items) => items.is_empty(),
            Node::Map(entries) => entries.is_empty(),
            Node::Bool(true) | Node::Int(_) => false,
        }
    }

    /// The same value as JSON, for the Kubernetes types serde decodes (`None` for a number JSON
    /// cannot hold: beyond 64 bits, or not finite).
    pub(crate) fn to_json(&self) -> Option<serde_json::Value> {
        Some(match self {
            Node::Null => serde_json::Value::Null,
            Node::Bool(value) => serde_json::Value::Bool(*value),
            Node::Int(value) => {
                if let Ok(value) = i64::try_from(*value) {
                    serde_json::Value::from(value)
                } else {
                    serde_json::Value::from(u64::try_from(*value).ok()?)
                }
            }
            Node::Float(value) => serde_json::Value::Number(serde_json::Number::from_f64(*value)?),
            Node::Str(value) => serde_json::Value::String(value.clone()),
            Node::Seq(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(Node::to_json)
                    .collect::<Option<Vec<_>>>()?,
            ),
            Node::Map(entries) => {
                let mut object = serde_json::Map::new();
                for (key, value) in entries {
                    object.insert(key.clone(), value.to_json()?);
                }
                serde_json::Value::Object(object)
            }
        })
    }
}

/// `parent.name`, or `name` at the top.
pub(crate) fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// "cannot unmarshal string into int32", at the field, with the value.
pub(crate) fn type_error(path: &str, node: &Node, go_type: &str) -> FieldError {
    FieldError::invalid(
        path,
        node.render(),
        format!("cannot unmarshal {} into {go_type}", node.kind()),
    )
}

/// The integer types of the schema, with Go's ranges.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IntType {
    I32,
    I64,
}

impl IntType {
    fn name(self) -> &'static str {
        match self {
            IntType::I32 => "int32",
            IntType::I64 => "int64",
        }
    }

    fn range(self) -> (i128, i128) {
        match self {
            IntType::I32 => (i128::from(i32::MIN), i128::from(i32::MAX)),
            IntType::I64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
        }
    }
}

/// The fields of one object of the schema. Reading a field that is absent or null gives `None`
/// (Go's decoder leaves the field at its zero value for both); a value of the wrong type is
/// recorded as an error and also gives `None`: the caller carries on, so that one pass reports
/// every error, and the phase fails at its end.
pub(crate) struct Fields<'a> {
    path: String,
    entries: &'a [(String, Node)],
}

/// Reads `node` as an object whose fields are `known`, recording each other field as unknown.
/// Null reads as an empty object; another type is an error (`None`).
pub(crate) fn object<'a>(
    node: &'a Node,
    path: &str,
    go_type: &str,
    known: &[&str],
    errors: &mut Vec<FieldError>,
) -> Option<Fields<'a>> {
    let entries: &'a [(String, Node)] = match node {
        Node::Map(entries) => entries,
        Node::Null => &[],
        other => {
            errors.push(type_error(path, other, go_type));
            return None;
        }
    };
    for (key, _) in entries {
        if !known.contains(&key.as_str()) {
            errors.push(FieldError::unknown(child(path, key)));
        }
    }
    Some(Fields {
        path: path.to_owned(),
        entries,
    })
}

impl<'a> Fields<'a> {
    /// The path of field `key`.
    pub(crate) fn at(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// The value of `key` unless absent or null.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
            .filter(|value| **value != Node::Null)
    }

    pub(crate) fn int(&self, key: &str, ty: IntType, errors: &mut Vec<FieldError>) -> Option<i64> {
        let node = self.get(key)?;
        let (min, max) = ty.range();
        match node {
            Node::Int(value) if (min..=max).contains(value) => i64::try_from(*value).ok(),
            other => {
                errors.push(type_error(&self.at(key), other, ty.name()));
                None
            }
        }
    }

    pub(crate) fn float(&self, key: &str, errors: &mut Vec<FieldError>) -> Option<f64> {
        match self.get(key)? {
            Node::Int(value) => Some(*value as f64),
            Node::Float(value) => Some(*value),
            other => {
                errors.push(type_error(&self.at(key), other, "float32"));
                None
            }
        }
    }

    pub(crate) fn string(&self, key: &str, errors: &mut Vec<FieldError>) -> Option<String> {
        match self.get(key)? {
            Node::Str(value) => Some(value.clone()),
            other => {
                errors.push(type_error(&self.at(key), other, "string"));
                None
            }
        }
    }

    pub(crate) fn boolean(&self, key: &str, errors: &mut Vec<FieldError>) -> Option<bool> {
        match self.get(key)? {
            Node::Bool(value) => Some(*value),
            other => {
                errors.push(type_error(&self.at(key), other, "bool"));
                None
            }
        }
    }

    /// The items of list `key`; `go_type` names the list in a type error (`[]Plugin`).
    pub(crate) fn list(
        &self,
        key: &str,
        go_type: &str,
        errors: &mut Vec<FieldError>,
    ) -> Option<&'a [Node]> {
        match self.get(key)? {
            Node::Seq(items) => Some(items),
            other => {
                errors.push(type_error(&self.at(key), other, go_type));
                None
            }
        }
    }

    /// A list of strings (`ignoredResources`), each item checked.
    pub(crate) fn strings(&self, key: &str, errors: &mut Vec<FieldError>) -> Vec<String> {
        let path = self.at(key);
        let Some(items) = self.list(key, "[]string", errors) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Node::Str(value) => out.push(value.clone()),
                other => errors.push(type_error(&index(&path, i), other, "string")),
            }
        }
        out
    }

    /// Refuses a field kube has and keel does not implement, unless its value asks for nothing.
    pub(crate) fn forbid_unless_inert(&self, key: &str, why: &str, errors: &mut Vec<FieldError>) {
        if let Some(node) = self.get(key) {
            if !node.is_inert() {
                errors.push(FieldError::forbidden(self.at(key), why));
            }
        }
    }
}

/// `apiVersion` and `kind` of the document (or of plugin args), each required and exact.
pub(crate) fn type_meta(
    fields: &Fields<'_>,
    api_version: &str,
    kind: &str,
    errors: &mut Vec<FieldError>,
) {
    for (field, want) in [("apiVersion", api_version), ("kind", kind)] {
        match fields.string(field, errors) {
            None if fields.get(field).is_none() => {
                errors.push(FieldError::required(fields.at(field), ""));
            }
            None => {}
            Some(got) if got == want => {}
            Some(got) => errors.push(FieldError::not_supported(fields.at(field), &got, &[want])),
        }
    }
}

/// Like [`type_meta`], but both optional: plugin args may omit them.
pub(crate) fn optional_type_meta(
    fields: &Fields<'_>,
    api_version: &str,
    kind: &str,
    errors: &mut Vec<FieldError>,
) {
    for (field, want) in [("apiVersion", api_version), ("kind", kind)] {
        if let Some(got) = fields.string(field, errors) {
            if got != want {
                errors.push(FieldError::not_supported(fields.at(field), &got, &[want]));
            }
        }
    }
}
