//! Where a field is in a document's text: the line and column of `spec.ports[1].port`.
//!
//! keel's model is converted from the wire object, which has no positions; when the
//! conversion refuses a value, its path is looked up here, in the text the object was read
//! from, so the error still points at the line. The walk reads only the branch the path
//! names (every other value is skipped unparsed) and stops at the field: the parser's
//! position at that moment is the answer.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The 1-based line and column of the value at `path` (Kubernetes' notation) in the YAML
/// `text`, or `None` if the text has no such field.
pub(super) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let segments = segments(path)?;
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    match (Seek { path: &segments }).deserialize(deserializer) {
        Ok(()) => None,
        Err(err) if err.to_string().contains(FOUND) => {
            err.location().map(|at| (at.line(), at.column()))
        }
        Err(_) => None,
    }
}

/// The marker error that stops the walk at the field.
const FOUND: &str = "keel: field found";

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `spec.ports[1].port` → `spec`, `ports`, 1, `port`. Keys with dots (label names) are not
/// paths keel's conversion reports, so a plain split is enough.
fn segments(path: &str) -> Option<Vec<Segment<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some((index, after)) = rest.split_once(']') {
            out.push(Segment::Index(index.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(out)
}

struct Seek<'p, 'a> {
    path: &'p [Segment<'a>],
}

impl<'de> DeserializeSeed<'de> for Seek<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.path.first() {
            None => deserializer.deserialize_any(Found),
            Some(Segment::Key(_)) => deserializer.deserialize_map(self),
            Some(Segment::Index(_)) => deserializer.deserialize_seq(self),
        }
    }
}

impl<'de> Visitor<'de> for Seek<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map or a list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(Segment::Key(wanted)) = self.path.first() else {
            return Ok(());
        };
        while let Some(key) = map.next_key::<serde_yaml_ng::Value>()? {
            if key.as_str() == Some(wanted) {
                return map.next_value_seed(Seek {
                    path: &self.path[1..],
                });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(Segment::Index(wanted)) = self.path.first() else {
            return Ok(());
        };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Seek {
            path: &self.path[1..],
        })
        .map(|_| ())
    }
}

/// Fails on whatever value it is shown, so that the parser reports its own position.
struct Found;

impl Found {
    fn stop<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
}

impl<'de> Visitor<'de> for Found {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.stop()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.stop()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.stop()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.stop()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.stop()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.stop()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.stop()
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.stop()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.stop()
    }
}
