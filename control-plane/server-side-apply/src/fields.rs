//! The set of fields an object sets: every leaf (a scalar, an atomic list or map, an empty
//! map), every element of an associative list or set, under the object's schema. The same
//! walk can index every path it passes to the value there, so that comparing two objects
//! field by field costs a look-up per field rather than a search.

use std::collections::HashMap;

use serde_json::{Map, Value};
use strategic_merge_patch::{Field, Schema};

use crate::path;
use crate::schema::{atomic_map, element_key, list_type, schema_of, ListType};
use crate::set::FieldSet;
use crate::{Error, Scope};

/// Metadata the server owns or that names the object: never anybody's field.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// How deep an object may nest before it is refused (the API server refuses far less deep
/// bodies before they get here).
const MAX_DEPTH: usize = 100;

/// Every path of an object (members and the maps and lists leading to them) to its value.
pub(crate) type Index<'a> = HashMap<Vec<String>, &'a Value>;

/// Whether a top-level field belongs to what a manager of `scope` can set.
pub(crate) fn tracked(scope: Scope, name: &str) -> bool {
    match (scope, name) {
        (_, "apiVersion" | "kind") => false,
        (Scope::Object { status_apart }, "status") => !status_apart,
        (Scope::Object { .. }, _) => true,
        (Scope::Status, name) => name == "status",
    }
}

/// The fields `object` sets within `scope`. `strict` (an apply configuration) refuses an
/// associative list element without its key or twice the same key; otherwise (a stored object)
/// such elements are left out or merged, as nothing can be done about them there.
pub(crate) fn fields_of(
    object: &Value,
    schema: &'static Schema,
    scope: Scope,
    strict: bool,
) -> Result<FieldSet, Error> {
    Ok(walk(object, schema, scope, strict, false)?.0)
}

/// The fields of a stored `object` and the index of its paths.
pub(crate) fn indexed<'a>(
    object: &'a Value,
    schema: &'static Schema,
    scope: Scope,
) -> Result<(FieldSet, Index<'a>), Error> {
    walk(object, schema, scope, false, true)
}

fn walk<'a>(
    object: &'a Value,
    schema: &'static Schema,
    scope: Scope,
    strict: bool,
    index: bool,
) -> Result<(FieldSet, Index<'a>), Error> {
    let mut set = FieldSet::default();
    let mut walk = Walk {
        strict,
        path: Vec::new(),
        index: index.then(HashMap::new),
    };
    if let Some(map) = object.as_object() {
        for (name, value) in map {
            if !tracked(scope, name) || value.is_null() {
                continue;
            }
            let field = schema.field(name);
            let key = path::field(name);
            if name == "metadata" {
                if let Value::Object(meta) = value {
                    walk.enter(key.clone(), value);
                    let result = walk.object(
                        meta,
                        schema_of(field),
                        set.child_mut(key),
                        1,
                        SERVER_METADATA,
                    );
                    walk.path.pop();
                    result?;
                }
                continue;
            }
            walk.field(name, value, field, &mut set, 1)?;
        }
    }
    // Maps of nothing but nulls (or server metadata) leave empty nodes behind.
    set.prune();
    Ok((set, walk.index.unwrap_or_default()))
}

struct Walk<'a> {
    strict: bool,
    /// Where the walk is.
    path: Vec<String>,
    index: Option<Index<'a>>,
}

impl<'a> Walk<'a> {
    /// Steps down to `element`, whose value is `value`.
    fn enter(&mut self, element: String, value: &'a Value) {
        self.path.push(element);
        if let Some(index) = &mut self.index {
            // First wins: of two stored elements with one key, the first is the one compared.
            index.entry(self.path.clone()).or_insert(value);
        }
    }

    fn object(
        &mut self,
        map: &'a Map<String, Value>,
        schema: Option<&'static Schema>,
        set: &mut FieldSet,
        depth: usize,
        skip: &[&str],
    ) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid(
                path::display(&self.path),
                "nests too deeply",
            ));
        }
        for (name, value) in map {
            if value.is_null() || skip.contains(&name.as_str()) {
                continue;
            }
            let field = schema.and_then(|s| s.field(name));
            self.field(name, value, field, set, depth)?;
        }
        Ok(())
    }

    fn field(
        &mut self,
        name: &str,
        value: &'a Value,
        field: Option<&Field>,
        set: &mut FieldSet,
        depth: usize,
    ) -> Result<(), Error> {
        let key = path::field(name);
        self.enter(key.clone(), value);
        let result = match value {
            // A map of nothing but nulls is applied as the empty map it becomes.
            Value::Object(map) if map.values().any(|v| !v.is_null()) && !atomic_map(name) => {
                self.object(map, schema_of(field), set.child_mut(key), depth + 1, &[])
            }
            Value::Array(items) if !items.is_empty() => {
                self.list(name, items, field, set.child_mut(key), depth + 1)
            }
            _ => {
                set.child_mut(key).member = true;
                Ok(())
            }
        };
        self.path.pop();
        result
    }

    fn list(
        &mut self,
        name: &str,
        items: &'a [Value],
        field: Option<&Field>,
        set: &mut FieldSet,
        depth: usize,
    ) -> Result<(), Error> {
        match list_type(name, field) {
            ListType::Set
                if items
                    .iter()
                    .all(|item| !item.is_object() && !item.is_array()) =>
            {
                for item in items {
                    let element = path::value(item);
                    let node = set.child_mut(element.clone());
                    if node.member && self.strict {
                        return Err(Error::invalid(
                            path::display(&self.path),
                            format!("duplicate entries for the value {item}"),
                        ));
                    }
                    node.member = true;
                    self.enter(element, item);
                    self.path.pop();
                }
            }
            ListType::Map(keys) => {
                for (position, item) in items.iter().enumerate() {
                    let Value::Object(element) = item else {
                        if self.strict {
                            return Err(Error::invalid(
                                format!("{}[{position}]", path::display(&self.path)),
                                "an element of an associative list must be an object",
                            ));
                        }
                        continue;
                    };
                    let fields = match element_key(element, &keys) {
                        Ok(fields) => fields,
                        Err(missing) if self.strict => {
                            return Err(Error::invalid(
                                format!("{}[{position}]", path::display(&self.path)),
                                format!("the element lacks its key field {missing:?}"),
                            ))
                        }
                        Err(_) => continue,
                    };
                    let key = path::key(&fields);
                    let node = set.child_mut(key.clone());
                    if node.member && self.strict {
                        return Err(Error::invalid(
                            path::display(&self.path),
                            format!("duplicate entries for the key {}", path::display(&[key])),
                        ));
                    }
                    node.member = true;
                    self.enter(key, item);
                    let result = self.object(element, schema_of(field), node, depth + 1, &[]);
                    self.path.pop();
                    result?;
                }
            }
            // Atomic, or a "set" holding objects: owned whole.
            _ => set.member = true,
        }
        Ok(())
    }
}
