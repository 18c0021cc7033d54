//! The objects `apply -f` reads: files, directories and standard input, each holding YAML or
//! JSON documents, checked before anything is sent.
//!
//! Every document of every input is parsed and checked first, and one malformed document
//! fails the whole command, naming its file and document (and the line, where the parser
//! knows it): a half-read input must not become a half-applied one. Documents are
//! numbered from 1 in their file, empty ones included, so the number can be found by
//! counting `---` separators. A `List` document (`kind: List`, or any `…List` with `items`, as
//! `get -o yaml` writes them) stands for its items.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::resources;
use crate::table::printable;

/// The name kubectl gives standard input in its messages.
pub const STDIN: &str = "STDIN";

/// One object to apply and where it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The file as messages name it: the path as given (or found in a directory), or `STDIN`.
    pub file: String,
    /// The object's document in its file, from 1.
    pub document: usize,
    /// A JSON object with a string `apiVersion` (well formed), `kind` and `metadata.name`.
    pub object: Value,
}

impl Manifest {
    fn text(&self, pointer: &str) -> &str {
        self.object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn api_version(&self) -> &str {
        self.text("/apiVersion")
    }

    pub fn kind(&self) -> &str {
        self.text("/kind")
    }

    pub fn name(&self) -> &str {
        self.text("/metadata/name")
    }

    /// `metadata.namespace`, when set and not empty.
    pub fn namespace(&self) -> Option<&str> {
        Some(self.text("/metadata/namespace")).filter(|ns| !ns.is_empty())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("error reading \"{}\": {error}", printable(file))]
    Read { file: String, error: String },
    #[error(
        "error parsing \"{}\": document {document}: {}",
        printable(file),
        printable(message)
    )]
    Parse {
        file: String,
        document: usize,
        message: String,
    },
    /// kubectl's shape: `error validating "f.yaml": error validating data: [kind not set]`.
    #[error(
        "error validating \"{}\": document {document}{}: error validating data: [{}]",
        printable(file),
        item.map(|i| format!(", item {i}")).unwrap_or_default(),
        printable(&problems.join(", "))
    )]
    Invalid {
        file: String,
        document: usize,
        /// The item of a `List` document, from 1.
        item: Option<usize>,
        problems: Vec<String>,
    },
    #[error(
        "the namespace from the provided object \"{0}\" does not match the namespace \"{1}\". \
         You must pass '--namespace={0}' to perform this operation.",
        printable(object),
        printable(flag)
    )]
    NamespaceMismatch { object: String, flag: String },
    #[error("no objects passed to apply")]
    NoObjects,
}

/// Every object of the `-f` arguments, in order: a file, a directory (its `*.yaml`, `*.yml`
/// and `*.json` files in name order, not descending into subdirectories), or `-` for
/// `stdin`. Fails on the first input that cannot be read or parsed, or when there is no
/// object at all.
pub fn read(inputs: &[PathBuf], stdin: &mut dyn Read) -> Result<Vec<Manifest>, ManifestError> {
    let mut manifests = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            let mut bytes = Vec::new();
            stdin
                .read_to_end(&mut bytes)
                .map_err(|e| read_error(STDIN, &e))?;
            manifests.extend(parse(STDIN, &decode(STDIN, bytes)?)?);
        } else if input.is_dir() {
            for file in manifest_files(input)? {
                manifests.extend(read_file(&file)?);
            }
        } else {
            manifests.extend(read_file(input)?);
        }
    }
    if manifests.is_empty() {
        return Err(ManifestError::NoObjects);
    }
    Ok(manifests)
}

fn read_error(file: &str, error: &dyn std::fmt::Display) -> ManifestError {
    ManifestError::Read {
        file: file.to_owned(),
        error: error.to_string(),
    }
}

fn read_file(path: &Path) -> Result<Vec<Manifest>, ManifestError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| read_error(&file, &e))?;
    parse(&file, &decode(&file, bytes)?)
}

fn decode(file: &str, bytes: Vec<u8>) -> Result<String, ManifestError> {
    String::from_utf8(bytes).map_err(|e| read_error(file, &e))
}

/// A directory's manifests, as kubectl picks them: by extension, sorted by name.
fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let failed = |e: std::io::Error| read_error(&dir.display().to_string(), &e);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let path = entry.map_err(failed)?.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The objects of one file's text. JSON when it starts with `{` (a stream of objects, as
/// kubectl's decoder reads it), YAML documents otherwise.
pub fn parse(file: &str, text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let documents = if text.trim_start().starts_with('{') {
        json_documents(file, text)?
    } else {
        yaml_documents(file, text)?
    };
    let mut manifests = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        // An empty document (`---` twice, a file of comments) holds nothing to apply.
        if !document.is_null() {
            expand(file, index + 1, document, &mut manifests)?;
        }
    }
    Ok(manifests)
}

fn parse_error(file: &str, document: usize, message: String) -> ManifestError {
    ManifestError::Parse {
        file: file.to_owned(),
        document,
        message,
    }
}

fn yaml_documents(file: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    let mut documents = Vec::new();
    // The first error ends the loop: a stream that failed to parse has nothing reliable after.
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let failed = |e: &dyn std::fmt::Display| parse_error(file, index + 1, e.to_string());
        // Through serde_yaml_ng's own Value, which refuses duplicate keys (a typo that
        // would otherwise drop one of the two silently) and knows `<<` merge keys; its
        // errors carry the line, counted from the top of the file.
        let mut value = serde_yaml_ng::Value::deserialize(document).map_err(|e| failed(&e))?;
        value.apply_merge().map_err(|e| failed(&e))?;
        documents.push(serde_json::to_value(value).map_err(|e| failed(&e))?);
    }
    Ok(documents)
}

fn json_documents(file: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    let mut documents = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for (index, document) in stream.enumerate() {
        documents.push(document.map_err(|e| parse_error(file, index + 1, e.to_string()))?);
    }
    Ok(documents)
}

/// Adds a document's objects to `out`: itself, or a list's items (lists within lists
/// flattened, without recursion).
fn expand(
    file: &str,
    document: usize,
    value: Value,
    out: &mut Vec<Manifest>,
) -> Result<(), ManifestError> {
    let mut pending = vec![(value, None)];
    while let Some((value, item)) = pending.pop() {
        match list_items(value) {
            Ok(items) => {
                // Reversed onto the stack, so they come off in their order.
                for (index, value) in items.into_iter().enumerate().rev() {
                    pending.push((value, Some(index + 1)));
                }
            }
            Err(value) => out.push(validate(file, document, item, value)?),
        }
    }
    Ok(())
}

/// A list's items, or the value back when it is not a list.
fn list_items(value: Value) -> Result<Vec<Value>, Value> {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array);
    match value {
        Value::Object(mut map) if is_list => match map.remove("items") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(Value::Object(map)),
        },
        other => Err(other),
    }
}

/// The object as a [`Manifest`], or every reason it cannot be applied.
fn validate(
    file: &str,
    document: usize,
    item: Option<usize>,
    object: Value,
) -> Result<Manifest, ManifestError> {
    let invalid = |problems: Vec<String>| ManifestError::Invalid {
        file: file.to_owned(),
        document,
        item,
        problems,
    };
    let Some(map) = object.as_object() else {
        return Err(invalid(vec!["the document is not an object".into()]));
    };
    let mut problems = Vec::new();
    match required_text(map, "apiVersion", "apiVersion") {
        Ok(api_version) if resources::split_api_version(api_version).is_none() => {
            problems.push(format!(
                "apiVersion {api_version:?} is not GROUP/VERSION or VERSION"
            ));
        }
        Ok(_) => {}
        Err(problem) => problems.push(problem),
    }
    if let Err(problem) = required_text(map, "kind", "kind") {
        problems.push(problem);
    }
    match map.get("metadata") {
        None | Some(Value::Null) => problems.push("metadata.name not set".into()),
        Some(Value::Object(metadata)) => {
            if let Err(problem) = required_text(metadata, "name", "metadata.name") {
                problems.push(problem);
            }
            if !matches!(
                metadata.get("namespace"),
                None | Some(Value::Null | Value::String(_))
            ) {
                problems.push("metadata.namespace must be a string".into());
            }
            for field in ["labels", "annotations"] {
                let strings = match metadata.get(field) {
                    None | Some(Value::Null) => true,
                    Some(Value::Object(entries)) => entries.values().all(Value::is_string),
                    Some(_) => false,
                };
                if !strings {
                    problems.push(format!("metadata.{field} must be a map of strings"));
                }
            }
        }
        Some(_) => problems.push("metadata must be an object".into()),
    }
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    Ok(Manifest {
        file: file.to_owned(),
        document,
        object,
    })
}

/// A non-empty string field, or kubectl's words for what is wrong with it.
fn required_text<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    name: &str,
) -> Result<&'a str, String> {
    match map.get(key) {
        None | Some(Value::Null) => Err(format!("{name} not set")),
        Some(Value::String(text)) if text.is_empty() => Err(format!("{name} not set")),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// kubectl's check when `--namespace` is given: an object that names another namespace is
/// refused rather than applied in either. Checked before anything is sent; a cluster-scoped
/// object that names a namespace is refused too, though its namespace would be ignored.
pub fn check_namespaces(manifests: &[Manifest], flag: Option<&str>) -> Result<(), ManifestError> {
    let Some(flag) = flag else {
        return Ok(());
    };
    match manifests
        .iter()
        .filter_map(Manifest::namespace)
        .find(|ns| *ns != flag)
    {
        Some(other) => Err(ManifestError::NamespaceMismatch {
            object: other.to_owned(),
            flag: flag.to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(manifests: &[Manifest]) -> Vec<(&str, usize, &str)> {
        manifests
            .iter()
            .map(|m| (m.kind(), m.document, m.name()))
            .collect()
    }

    const TWO: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm1
data:
  k: v
---
# a comment only: an empty document
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
---
";

    #[test]
    fn documents_are_split_numbered_and_empty_ones_skipped() {
        let manifests = parse("f.yaml", TWO).expect("parsed");
        assert_eq!(
            names(&manifests),
            [("ConfigMap", 1, "cm1"), ("Deployment", 3, "web")]
        );
        assert_eq!(manifests[0].object["data"]["k"], "v");
        assert_eq!(manifests[0].file, "f.yaml");
        assert_eq!(manifests[0].namespace(), None);
        assert_eq!(manifests[1].namespace(), Some("shop"));
        assert_eq!(manifests[1].api_version(), "apps/v1");
        assert!(parse("empty.yaml", "").expect("parsed").is_empty());
        assert!(parse("empty.yaml", "---\n---\n")
            .expect("parsed")
            .is_empty());
    }

    #[test]
    fn json_files_may_hold_several_objects() {
        let text = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}"#;
        let manifests = parse("f.json", text).expect("parsed");
        assert_eq!(
            names(&manifests),
            [("ConfigMap", 1, "a"), ("ConfigMap", 2, "b")]
        );
        let error =
            parse("f.json", "{\"kind\": \"ConfigMap\"}\n{\"kind\": ").expect_err("malformed");
        assert!(
            matches!(&error, ManifestError::Parse { document: 2, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_malformed_document_names_its_file_document_and_line() {
        let text = format!("{TWO}apiVersion: v1\nkind: [unclosed\n");
        let error = parse("app.yaml", &text).expect_err("malformed");
        let ManifestError::Parse { document, .. } = &error else {
            panic!("not a parse error: {error:?}");
        };
        // Three `---` in TWO: the appended text is the fourth document.
        assert_eq!(*document, 4, "{error}");
        let message = error.to_string();
        assert!(
            message.starts_with("error parsing \"app.yaml\": document 4: "),
            "{message}"
        );
        // Lines count from the top of the file: the broken one is its 17th.
        let line: usize = message
            .split("line ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0);
        assert!(line >= 17, "{message}");

        // Duplicate keys are refused, not resolved silently.
        let error = parse("d.yaml", "apiVersion: v1\nkind: A\nkind: B\n").expect_err("duplicate");
        assert!(error.to_string().contains("duplicate"), "{error}");
        // Control characters from the file are escaped in the message.
        let error = parse("x.yaml", "a: \"\u{1b}[2J\n").expect_err("malformed");
        assert!(!error.to_string().contains('\u{1b}'), "{error}");
    }

    #[test]
    fn objects_without_api_version_kind_or_name_are_refused_with_every_problem() {
        let error = parse("f.yaml", "metadata: {}\ndata: {}\n").expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "error validating \"f.yaml\": document 1: error validating data: \
             [apiVersion not set, kind not set, metadata.name not set]"
        );
        let error = parse(
            "f.yaml",
            "apiVersion: a/b/c\nkind: 3\nmetadata:\n  name: x\n  labels: {a: 1}\n",
        )
        .expect_err("invalid");
        let ManifestError::Invalid { problems, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(
            problems,
            &[
                "apiVersion \"a/b/c\" is not GROUP/VERSION or VERSION",
                "kind must be a string",
                "metadata.labels must be a map of strings",
            ]
        );
        let error = parse("f.yaml", "- a\n- b\n").expect_err("a list");
        assert!(error.to_string().contains("not an object"), "{error}");
    }

    #[test]
    fn lists_stand_for_their_items() {
        let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a}
- apiVersion: v1
  kind: ConfigMapList
  items:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: d}
"#;
        let manifests = parse("list.yaml", text).expect("parsed");
        assert_eq!(
            manifests.iter().map(Manifest::name).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert!(manifests.iter().all(|m| m.document == 1));
        let error = parse(
            "list.yaml",
            "kind: List\napiVersion: v1\nitems:\n- {kind: ConfigMap, metadata: {name: a}}\n",
        )
        .expect_err("an item without apiVersion");
        assert_eq!(
            error.to_string(),
            "error validating \"list.yaml\": document 1, item 1: error validating data: \
             [apiVersion not set]"
        );
        // A kind ending in List without items is an object like any other.
        let manifests = parse(
            "f.yaml",
            "apiVersion: example.com/v1\nkind: ShoppingList\nmetadata: {name: s}\n",
        )
        .expect("parsed");
        assert_eq!(names(&manifests), [("ShoppingList", 1, "s")]);
    }

    #[test]
    fn namespaces_must_agree_with_the_flag() {
        let manifests = parse("f.yaml", TWO).expect("parsed");
        assert_eq!(check_namespaces(&manifests, None), Ok(()));
        assert_eq!(check_namespaces(&manifests, Some("shop")), Ok(()));
        let error = check_namespaces(&manifests, Some("other")).expect_err("mismatch");
        assert_eq!(
            error.to_string(),
            "the namespace from the provided object \"shop\" does not match the namespace \
             \"other\". You must pass '--namespace=shop' to perform this operation."
        );
    }

    #[test]
    fn inputs_are_files_directories_and_stdin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("written");
        };
        write(
            "b.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
        );
        write(
            "a.json",
            r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}"#,
        );
        write(
            "c.yml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        );
        write("notes.txt", "not a manifest");
        std::fs::create_dir(dir.path().join("sub.yaml")).expect("a directory");
        let mut stdin = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n".as_bytes();
        let manifests =
            read(&[dir.path().to_owned(), PathBuf::from("-")], &mut stdin).expect("read");
        assert_eq!(
            manifests.iter().map(Manifest::name).collect::<Vec<_>>(),
            ["a", "b", "c", "s"]
        );
        assert_eq!(manifests[3].file, STDIN);
        assert!(manifests[0].file.ends_with("a.json"));

        let missing = dir.path().join("missing.yaml");
        let error = read(&[missing], &mut "".as_bytes()).expect_err("missing");
        assert!(
            matches!(&error, ManifestError::Read { file, .. } if file.ends_with("missing.yaml")),
            "{error:?}"
        );
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            read(&[empty.path().to_owned()], &mut "".as_bytes()),
            Err(ManifestError::NoObjects)
        );
        std::fs::write(dir.path().join("latin1.yaml"), b"a\xe9\n").expect("written");
        let error =
            read(&[dir.path().join("latin1.yaml")], &mut "".as_bytes()).expect_err("not UTF-8");
        assert!(error.to_string().contains("latin1.yaml"), "{error}");
    }
}
