//! The set of fields an object sets: every leaf (a scalar, an atomic list or map, an empty
//! map), every element of an associative list or set, under the object's schema. The same
//! walk can build a [`Tree`] of the values it passes, shaped like the field set, so that
//! comparing two objects field by field walks both trees side by side: no search per field,
//! and no path copied per field (a deep, wide body would make those copies quadratic).

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

/// The values of an object along its field paths: each node holds the value at its path and
/// its children by path element, as the object's [`FieldSet`] is shaped.
#[derive(Debug)]
pub(crate) struct Tree<'a> {
    pub value: &'a Value,
    pub children: HashMap<String, Tree<'a>>,
}

impl<'a> Tree<'a> {
    fn new(value: &'a Value) -> Self {
        Tree {
            value,
            children: HashMap::new(),
        }
    }
}

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

/// The fields of a stored `object` and the tree of its values.
pub(crate) fn indexed<'a>(
    object: &'a Value,
    schema: &'static Schema,
    scope: Scope,
) -> Result<(FieldSet, Tree<'a>), Error> {
    let (set, tree) = walk(object, schema, scope, false, true)?;
    Ok((set, tree.unwrap_or_else(|| Tree::new(object))))
}

fn walk<'a>(
    object: &'a Value,
    schema: &'static Schema,
    scope: Scope,
    strict: bool,
    index: bool,
) -> Result<(FieldSet, Option<Tree<'a>>), Error> {
    let mut set = FieldSet::default();
    let mut walk = Walk {
        strict,
        path: Vec::new(),
    };
    let mut tree = index.then(|| Tree::new(object));
    if let Some(map) = object.as_object() {
        for (name, value) in map {
            if !tracked(scope, name) || value.is_null() {
                continue;
            }
            let field = schema.field(name);
            let key = path::field(name);
            if name == "metadata" {
                if let Value::Object(meta) = value {
                    walk.path.push(key.clone());
                    let mut child = tree.as_ref().map(|_| Tree::new(value));
                    let result = walk.object(
                        meta,
                        schema_of(field),
                        set.child_mut(key.clone()),
                        child.as_mut(),
                        1,
                        SERVER_METADATA,
                    );
                    walk.path.pop();
                    result?;
                    attach(tree.as_mut(), key, child);
                }
                continue;
            }
            walk.field(name, value, field, &mut set, tree.as_mut(), 1)?;
        }
    }
    // Maps of nothing but nulls (or server metadata) leave empty nodes behind.
    set.prune();
    Ok((set, tree))
}

struct Walk {
    strict: bool,
    /// Where the walk is, for errors.
    path: Vec<String>,
}

/// Adds `child` under `element` to `tree`; of two stored elements with one key, the first is
/// the one compared.
fn attach<'a>(tree: Option<&mut Tree<'a>>, element: String, child: Option<Tree<'a>>) {
    if let (Some(tree), Some(child)) = (tree, child) {
        tree.children.entry(element).or_insert(child);
    }
}

impl Walk {
    fn object<'a>(
        &mut self,
        map: &'a Map<String, Value>,
        schema: Option<&'static Schema>,
        set: &mut FieldSet,
        mut tree: Option<&mut Tree<'a>>,
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
            self.field(name, value, field, set, tree.as_deref_mut(), depth)?;
        }
        Ok(())
    }

    fn field<'a>(
        &mut self,
        name: &str,
        value: &'a Value,
        field: Option<&Field>,
        set: &mut FieldSet,
        tree: Option<&mut Tree<'a>>,
        depth: usize,
    ) -> Result<(), Error> {
        let key = path::field(name);
        self.path.push(key.clone());
        let mut child = tree.as_ref().map(|_| Tree::new(value));
        let result = match value {
            // A map of nothing but nulls is applied as the empty map it becomes.
            Value::Object(map) if map.values().any(|v| !v.is_null()) && !atomic_map(name) => self
                .object(
                    map,
                    schema_of(field),
                    set.child_mut(key.clone()),
                    child.as_mut(),
                    depth + 1,
                    &[],
                ),
            Value::Array(items) if !items.is_empty() => self.list(
                name,
                items,
                field,
                set.child_mut(key.clone()),
                child.as_mut(),
                depth + 1,
            ),
            _ => {
                set.child_mut(key.clone()).member = true;
                Ok(())
            }
        };
        self.path.pop();
        attach(tree, key, child);
        result
    }

    fn list<'a>(
        &mut self,
        name: &str,
        items: &'a [Value],
        field: Option<&Field>,
        set: &mut FieldSet,
        mut tree: Option<&mut Tree<'a>>,
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
                    let child = tree.as_ref().map(|_| Tree::new(item));
                    attach(tree.as_deref_mut(), element, child);
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
                    self.path.push(key.clone());
                    let mut child = tree.as_ref().map(|_| Tree::new(item));
                    let result = self.object(
                        element,
                        schema_of(field),
                        node,
                        child.as_mut(),
                        depth + 1,
                        &[],
                    );
                    self.path.pop();
                    result?;
                    attach(tree.as_deref_mut(), key, child);
                }
            }
            // Atomic, or a "set" holding objects: owned whole.
            _ => set.member = true,
        }
        Ok(())
    }
}
