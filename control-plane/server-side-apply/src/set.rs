//! A set of field paths, as structured-merge-diff's `fieldpath.Set` and as `managedFields`
//! stores it (`fieldsV1`): a tree whose edges are path elements (`f:<name>`, `k:<key JSON>`,
//! `v:<value JSON>`) and whose nodes may themselves be members (`.` when they have children,
//! an empty object when they do not).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::Error;

/// How deep a `fieldsV1` document may nest; objects nest far less.
const MAX_DEPTH: usize = 100;

/// A set of paths into an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// This node's own path is in the set.
    pub(crate) member: bool,
    /// The paths below, by their first element.
    pub(crate) children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    /// No path at all.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    pub(crate) fn child_mut(&mut self, key: String) -> &mut FieldSet {
        self.children.entry(key).or_default()
    }

    /// Drops nodes that hold nothing (a walk may leave them for maps of nulls).
    pub(crate) fn prune(&mut self) {
        for child in self.children.values_mut() {
            child.prune();
        }
        self.children.retain(|_, child| !child.is_empty());
    }

    /// Adds every path of `other`.
    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (key, child) in &other.children {
            self.child_mut(key.clone()).union(child);
        }
    }

    /// Takes out every path of `other`; nodes left with nothing are pruned.
    pub fn subtract(&mut self, other: &FieldSet) {
        if other.member {
            self.member = false;
        }
        for (key, theirs) in &other.children {
            if let Some(mine) = self.children.get_mut(key) {
                mine.subtract(theirs);
                if mine.is_empty() {
                    self.children.remove(key);
                }
            }
        }
    }

    /// The paths in both.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut both = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (key, mine) in &self.children {
            if let Some(theirs) = other.children.get(key) {
                let child = mine.intersection(theirs);
                if !child.is_empty() {
                    both.children.insert(key.clone(), child);
                }
            }
        }
        both
    }

    /// Whether `path` (a list of elements) is a member.
    pub fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((first, rest)) => self
                .children
                .get(first)
                .is_some_and(|child| child.contains(rest)),
        }
    }

    /// Member paths, parents before children, in key order: at most `limit` of them (each is
    /// a copy of its whole path, so a caller says how many it can print).
    pub fn members(&self, limit: usize) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.collect(&mut path, &mut out, limit);
        out
    }

    fn collect(&self, path: &mut Vec<String>, out: &mut Vec<Vec<String>>, limit: usize) {
        if out.len() >= limit {
            return;
        }
        if self.member && !path.is_empty() {
            out.push(path.clone());
        }
        for (key, child) in &self.children {
            path.push(key.clone());
            child.collect(path, out, limit);
            path.pop();
        }
    }

    /// How many paths are members.
    pub fn len(&self) -> usize {
        usize::from(self.member) + self.children.values().map(FieldSet::len).sum::<usize>()
    }

    /// The set as `managedFields[].fieldsV1` holds it.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (key, child) in &self.children {
            map.insert(key.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    /// Reads a `fieldsV1` document; `what` names it in errors.
    pub fn from_fields_v1(value: &Value, what: &str) -> Result<FieldSet, Error> {
        read(value, what, 0)
    }
}

fn read(value: &Value, what: &str, depth: usize) -> Result<FieldSet, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::invalid(what, "nests too deeply"));
    }
    let Value::Object(map) = value else {
        return Err(Error::invalid(what, "must be an object"));
    };
    let mut set = FieldSet {
        // A node without children is a member: `"f:image": {}`.
        member: map.is_empty(),
        children: BTreeMap::new(),
    };
    for (key, child) in map {
        if key == "." {
            set.member = true;
            continue;
        }
        if !(key.starts_with("f:")
            || key.starts_with("k:")
            || key.starts_with("v:")
            || key.starts_with("i:"))
        {
            return Err(Error::invalid(
                what,
                format!("{key:?} is not a path element (f:, k:, v: or i:)"),
            ));
        }
        let child = read(child, what, depth + 1)?;
        set.children.insert(key.clone(), child);
    }
    Ok(set)
}
