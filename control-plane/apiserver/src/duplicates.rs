//! Duplicate keys in a JSON body. `serde_json::Value` keeps the last of two equal keys without
//! a word; kube-apiserver's strict decoding reports them (`fieldValidation=Strict` refuses,
//! `Warn` warns), because a client that sent a field twice meant one of them.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

struct Walk<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let seed = Walk {
                path: format!("{}[{}]", self.path, items.len()),
                found: &mut *self.found,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = child(&self.path, &key);
            if !seen.insert(key.clone()) {
                self.found.push(path);
                // serde_json keeps the last of two equal keys; so does keel.
                let value = map.next_value_seed(Walk {
                    path: String::new(),
                    found: &mut Vec::new(),
                })?;
                object.insert(key, value);
                continue;
            }
            let value = map.next_value_seed(Walk {
                path,
                found: &mut *self.found,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Parses `json` into a value and, in the same pass, the paths of keys that appear twice in
/// one object (the value keeps the last, as serde_json does).
pub fn parse(json: &[u8]) -> Result<(Value, Vec<String>), serde_json::Error> {
    let mut found = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let value = Walk {
        path: String::new(),
        found: &mut found,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok((value, found))
}

/// The paths of keys that appear twice in one object of `json`; empty when it has none or is
/// not JSON (the decoder reports that).
pub fn find(json: &[u8]) -> Vec<String> {
    parse(json).map(|(_, found)| found).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{find, parse};

    #[test]
    fn reports_each_repeated_key_with_its_path() {
        let body = br#"{"metadata":{"name":"a","name":"b"},"spec":{"containers":[{"image":"x","image":"y"}]}}"#;
        assert_eq!(
            find(body),
            vec!["metadata.name", "spec.containers[0].image"]
        );
        assert!(find(br#"{"a":1,"b":{"a":2}}"#).is_empty());
        assert!(find(b"not json").is_empty());
    }

    #[test]
    fn parses_to_the_value_serde_json_gives() {
        for body in [
            &br#"{"a":[1,-2,3.5,true,null,"x"],"b":{"c":{}}}"#[..],
            br#"{"a":1,"a":{"b":2}}"#,
            b"[]",
            b"\"s\"",
        ] {
            let expected: serde_json::Value = serde_json::from_slice(body).expect("json");
            assert_eq!(parse(body).expect("parsed").0, expected);
        }
        assert!(parse(b"{} trailing").is_err());
        assert!(parse(b"{\"a\":").is_err());
    }

    #[test]
    fn deep_nesting_is_refused_by_the_parser_not_the_stack() {
        let deep = "[".repeat(100_000);
        assert!(find(deep.as_bytes()).is_empty());
    }
}
