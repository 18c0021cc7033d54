//! The position of the merge inside the document, for error messages and the depth guard.
//!
//! A path is a chain of borrowed frames on the call stack: descending into a field costs one
//! small struct and no allocation; the text is only built when an error needs it.

use serde_json::{Map, Value};

/// Longest rendering of a value quoted in an error: the input is hostile and may be large.
const SNIPPET_CHARS: usize = 200;

#[derive(Clone, Copy)]
enum Segment<'a> {
    /// A field of a map.
    Key(&'a str),
    /// An element of a merging list, named by its merge key, e.g. `[name=web]`.
    Keyed(&'a str, &'a Value),
    /// An element of a list by position, when it has no usable merge key.
    Index(usize),
}

#[derive(Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Option<Segment<'a>>,
    depth: usize,
}

impl<'a> Path<'a> {
    pub(crate) const fn root() -> Path<'static> {
        Path {
            parent: None,
            segment: None,
            depth: 0,
        }
    }

    pub(crate) fn key<'b>(&'b self, key: &'b str) -> Path<'b> {
        self.child(Segment::Key(key))
    }

    pub(crate) fn keyed<'b>(&'b self, key: &'b str, value: &'b Value) -> Path<'b> {
        self.child(Segment::Keyed(key, value))
    }

    pub(crate) fn index(&self, index: usize) -> Path<'_> {
        self.child(Segment::Index(index))
    }

    fn child<'b>(&'b self, segment: Segment<'b>) -> Path<'b> {
        Path {
            parent: Some(self),
            segment: Some(segment),
            depth: self.depth.saturating_add(1),
        }
    }

    /// How many maps and lists lie between the document root and here.
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// `spec.containers[name=web].ports`, or `<root>` for the document itself.
    pub(crate) fn render(&self) -> String {
        let mut segments = Vec::with_capacity(self.depth);
        let mut frame: Option<&Path<'_>> = Some(self);
        while let Some(current) = frame {
            if let Some(segment) = current.segment {
                segments.push(segment);
            }
            frame = current.parent;
        }
        if segments.is_empty() {
            return "<root>".to_owned();
        }
        let mut out = String::new();
        for segment in segments.iter().rev() {
            match segment {
                Segment::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
                Segment::Keyed(key, value) => {
                    out.push('[');
                    out.push_str(key);
                    out.push('=');
                    match value {
                        Value::String(text) => out.push_str(&truncate(text)),
                        other => out.push_str(&snippet(other)),
                    }
                    out.push(']');
                }
                Segment::Index(index) => {
                    out.push('[');
                    out.push_str(&index.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

/// A value as compact JSON, cut short so that an error never carries a whole hostile payload.
pub(crate) fn snippet(value: &Value) -> String {
    // Serializing a `Value` cannot fail (its keys are strings); the fallback only avoids a panic path.
    truncate(&serde_json::to_string(value).unwrap_or_default())
}

/// [`snippet`] for a map held outside a `Value`, without cloning it.
pub(crate) fn snippet_map(map: &Map<String, Value>) -> String {
    truncate(&serde_json::to_string(map).unwrap_or_default())
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => {
            let mut short = text.get(..cut).unwrap_or_default().to_owned();
            short.push('…');
            short
        }
        None => text.to_owned(),
    }
}

/// The JSON type of a value, in the words the error messages use.
pub(crate) fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}
