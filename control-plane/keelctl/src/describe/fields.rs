//! An object's fields as kubectl's generic describer prints them (`printLabelsMultiline`,
//! `printAnnotationsMultiline`, `printUnstructuredContent`, `smartLabelFor` in
//! `k8s.io/kubectl/pkg/describe`): the describer kubectl uses for every kind it has no
//! describer of its own for, used here for every kind.
//!
//! The shape, kept as kubectl prints it:
//! - fields in byte order of their names, each name turned into words (`creationTimestamp`
//!   → `Creation Timestamp`, `apiVersion` → `API Version`); a name with anything but letters
//!   and `-` (a label key such as `app.kubernetes.io/name`) is printed as it is;
//! - a map as its name and a colon, its fields indented two spaces below;
//! - a list as its name and a colon, then each item two spaces in: a map item's fields, a
//!   scalar item on its own line. As in kubectl, nothing marks where one map item ends and
//!   the next begins;
//! - a scalar as `Name:` and its value as Go's `%v` prints it (`<nil>` for null).

use serde_json::{Map, Value};

use super::tabwriter::TabWriter;
use crate::apply::LAST_APPLIED;
use crate::table::printable;

/// The fields the header prints (and managed fields, which kubectl leaves out as noise).
const SKIP: &[&str] = &[
    ".metadata.managedFields",
    ".metadata.name",
    ".metadata.namespace",
    ".metadata.labels",
    ".metadata.annotations",
];

/// kubectl's `smartLabelFor` upper-cases exactly these words. Others keep their case as
/// split (`podIP` → `Pod IP`, but `ip` → `Ip`), as kubectl prints them.
const ACRONYMS: &[&str] = &["API", "URL", "UID", "OSB", "GUID"];

/// Annotations longer than this (key, colon, space and value) go on lines of their own.
const MAX_ANNOTATION_LEN: usize = 140;

/// Deeper than anything serde_json parses (128), so only a value built in memory reaches it;
/// past it the rest of the branch is left out rather than recursed into.
const MAX_LEVEL: usize = 160;

/// A field name as kubectl shows it: camel-case words split, each capitalised (the acronyms
/// above upper-cased); names with characters other than letters and `-` unchanged.
pub(super) fn smart_label(field: &str) -> String {
    if field.chars().any(|c| !c.is_alphabetic() && c != '-') {
        return field.to_owned();
    }
    camel_case_words(field)
        .into_iter()
        .map(|word| {
            let upper = word.to_uppercase();
            if ACRONYMS.contains(&upper.as_str()) {
                upper
            } else {
                capitalised(&word)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `github.com/fatih/camelcase.Split`: runs of lower-case letters, upper-case letters and
/// other characters, then the last capital of a run given to the lower-case run after it
/// (`APIVersion` → `API`, `Version`).
fn camel_case_words(text: &str) -> Vec<String> {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Lower,
        Upper,
        Digit,
        Other,
    }
    let class = |c: char| {
        if c.is_lowercase() {
            Class::Lower
        } else if c.is_uppercase() {
            Class::Upper
        } else if c.is_numeric() {
            Class::Digit
        } else {
            Class::Other
        }
    };
    let mut runs: Vec<Vec<char>> = Vec::new();
    let mut last = None;
    for c in text.chars() {
        let this = class(c);
        match runs.last_mut() {
            Some(run) if last == Some(this) => run.push(c),
            _ => runs.push(vec![c]),
        }
        last = Some(this);
    }
    for i in 1..runs.len() {
        let (before, after) = runs.split_at_mut(i);
        if let (Some(previous), Some(next)) = (before.last_mut(), after.first_mut()) {
            let upper_then_lower = previous.first().is_some_and(|c| c.is_uppercase())
                && next.first().is_some_and(|c| c.is_lowercase());
            if upper_then_lower {
                if let Some(capital) = previous.pop() {
                    next.insert(0, capital);
                }
            }
        }
    }
    runs.into_iter()
        .filter(|run| !run.is_empty())
        .map(|run| run.into_iter().collect())
        .collect()
}

/// `Labels:` one `key=value` per line, sorted, or `<none>`.
pub(super) fn labels(w: &mut TabWriter, labels: Option<&Value>) {
    let entries = sorted_entries(labels, &[]);
    if entries.is_empty() {
        w.line(0, "Labels:\t<none>");
        return;
    }
    for (index, (key, value)) in entries.into_iter().enumerate() {
        let title = if index == 0 { "Labels:" } else { "" };
        w.line(
            0,
            &format!(
                "{title}\t{}={}",
                printable(key),
                printable(&go_value(value))
            ),
        );
    }
}

/// `Annotations:` one `key: value` per line, sorted, or `<none>`; long or multi-line values
/// below their key, each line cut at kubectl's length. The last-applied configuration is left
/// out, as kubectl leaves it out.
pub(super) fn annotations(w: &mut TabWriter, annotations: Option<&Value>) {
    let entries = sorted_entries(annotations, &[LAST_APPLIED]);
    if entries.is_empty() {
        w.line(0, "Annotations:\t<none>");
        return;
    }
    for (index, (key, value)) in entries.into_iter().enumerate() {
        let title = if index == 0 { "Annotations:" } else { "" };
        let text = go_value(value);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let key = printable(key);
        if text.len() + key.len() + 2 > MAX_ANNOTATION_LEN || text.contains('\n') {
            w.line(0, &format!("{title}\t{key}:"));
            for part in text.split('\n') {
                let part = shorten(part, MAX_ANNOTATION_LEN - 2);
                w.line(0, &format!("\t  {}", printable(&part)));
            }
        } else {
            w.line(0, &format!("{title}\t{key}: {}", printable(text)));
        }
    }
}

fn sorted_entries<'a>(map: Option<&'a Value>, skip: &[&str]) -> Vec<(&'a String, &'a Value)> {
    let mut entries: Vec<(&String, &Value)> = map
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(key, _)| !skip.contains(&key.as_str()))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// kubectl's `shorten`: at most `max` bytes (cut at a character boundary), then `...`.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// `printUnstructuredContent`: every field of `map` at `level`, but those under `path` that
/// the header printed.
pub(super) fn content(w: &mut TabWriter, level: usize, map: &Map<String, Value>, path: &str) {
    if level > MAX_LEVEL {
        w.line(level, "...");
        return;
    }
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let Some(value) = map.get(key) else {
            continue;
        };
        let field_path = format!("{path}.{key}");
        if SKIP.contains(&field_path.as_str()) {
            continue;
        }
        let label = printable(&smart_label(key));
        match value {
            Value::Object(inner) => {
                w.line(level, &format!("{label}:"));
                content(w, level + 1, inner, &field_path);
            }
            Value::Array(items) => {
                w.line(level, &format!("{label}:"));
                for item in items {
                    match item {
                        Value::Object(inner) => content(w, level + 1, inner, &field_path),
                        other => w.line(level + 1, &printable(&go_value(other))),
                    }
                }
            }
            scalar => w.line(
                level,
                &format!("{label}:\t{}", printable(&go_value(scalar))),
            ),
        }
    }
}

/// A value as Go's `%v` prints what `encoding/json` decoded: strings bare, `<nil>`, lists as
/// `[a b]`, maps as `map[k:v]`.
pub(super) fn go_value(value: &Value) -> String {
    let mut out = String::new();
    write_go_value(&mut out, value, 0);
    out
}

fn write_go_value(out: &mut String, value: &Value, depth: usize) {
    if depth > MAX_LEVEL {
        out.push_str("...");
        return;
    }
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => out.push_str(s),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (None, Some(u), _) => out.push_str(&u.to_string()),
            (None, None, Some(f)) => out.push_str(&go_float(f)),
            (None, None, None) => out.push_str(&n.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(' ');
                }
                write_go_value(out, item, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("map[");
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(' ');
                }
                out.push_str(key);
                out.push(':');
                if let Some(item) = map.get(key) {
                    write_go_value(out, item, depth + 1);
                }
            }
            out.push(']');
        }
    }
}

/// A float as Go's `%v` prints it (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest
/// digits that read back the same (Rust's `{:e}` finds the same ones), in exponent form
/// when the exponent is below -4 or at least 6 (`1e+06`, `1.5e-05`), plainly otherwise.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        let infinity = if f > 0.0 { "+Inf" } else { "-Inf" };
        return infinity.into();
    }
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if mantissa.starts_with('-') { "-" } else { "" };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..6).contains(&exponent) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let point = if rest.is_empty() { "" } else { "." };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{point}{rest}e{exponent_sign}{:02}",
            exponent.unsigned_abs()
        );
    }
    // Plain: the decimal point `exponent + 1` digits in.
    let point = exponent + 1;
    let plain = if point <= 0 {
        let zeros = "0".repeat(point.unsigned_abs() as usize);
        format!("0.{zeros}{digits}")
    } else {
        let point = point as usize;
        if point >= digits.len() {
            format!("{digits}{}", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{plain}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_names_read_as_kubectl_prints_them() {
        for (field, label) in [
            ("creationTimestamp", "Creation Timestamp"),
            ("apiVersion", "API Version"),
            ("uid", "UID"),
            ("selfLink", "Self Link"),
            ("matchLabels", "Match Labels"),
            ("app", "App"),
            ("podIP", "Pod IP"),
            ("clusterIPs", "Cluster I Ps"),
            ("APIVersion", "API Version"),
            ("ownerReferences", "Owner References"),
            ("url", "URL"),
            ("ip", "Ip"),
            ("x-y", "X - Y"),
            ("", ""),
            // Anything but letters and `-`: as it is.
            ("app.kubernetes.io/name", "app.kubernetes.io/name"),
            ("k8s", "k8s"),
            ("under_score", "under_score"),
        ] {
            assert_eq!(smart_label(field), label, "{field}");
        }
    }

    fn rendered(f: impl FnOnce(&mut TabWriter)) -> String {
        let mut w = TabWriter::default();
        f(&mut w);
        w.finish()
    }

    #[test]
    fn labels_and_annotations_one_per_line_or_none() {
        let text = rendered(|w| {
            labels(w, Some(&json!({"tier": "fe", "app": "web"})));
            annotations(w, Some(&json!({LAST_APPLIED: "{}", "b": "2", "a": "1"})));
        });
        assert_eq!(
            text,
            "Labels:       app=web\n              tier=fe\nAnnotations:  a: 1\n              b: 2\n"
        );
        let text = rendered(|w| {
            labels(w, None);
            annotations(w, Some(&json!({LAST_APPLIED: "{}"})));
        });
        assert_eq!(text, "Labels:       <none>\nAnnotations:  <none>\n");
    }

    #[test]
    fn long_and_multi_line_annotations_go_below_their_key() {
        let long = "x".repeat(200);
        let text = rendered(|w| {
            annotations(w, Some(&json!({"a": long, "b": "one\ntwo\n"})));
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Annotations:  a:");
        assert_eq!(lines[1], format!("                {}...", "x".repeat(138)));
        assert_eq!(lines[2], "              b:");
        assert_eq!(lines[3], "                one");
        assert_eq!(lines[4], "                two");
        assert_eq!(lines.len(), 5, "{text}");
    }

    #[test]
    fn nested_maps_lists_and_scalars_take_kubectls_shape() {
        let object = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1",
                         "labels": {"app": "web"}, "annotations": {"a": "b"},
                         "managedFields": [{"manager": "kubectl"}], "generation": 1},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx", "args": ["-g", "daemon off;"]},
                    {"name": "log", "image": "busybox"},
                ]}},
                "paused": false,
                "empty": {},
                "none": [],
                "nothing": null,
                "ratio": 0.5,
            },
        });
        let text = rendered(|w| {
            content(w, 0, object.as_object().expect("an object"), "");
        });
        let expected = [
            "API Version:  apps/v1",
            "Kind:         Deployment",
            "Metadata:",
            "  Generation:  1",
            "  UID:         u-1",
            "Spec:",
            "  Empty:",
            "  None:",
            "  Nothing:   <nil>",
            "  Paused:    false",
            "  Ratio:     0.5",
            "  Replicas:  3",
            "  Selector:",
            "    Match Labels:",
            "      App:  web",
            "  Template:",
            "    Spec:",
            "      Containers:",
            "        Args:",
            "          -g",
            "          daemon off;",
            "        Image:  nginx",
            "        Name:   web",
            "        Image:  busybox",
            "        Name:   log",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
    }

    #[test]
    fn server_text_cannot_forge_lines_or_columns() {
        let object = json!({"spec": {"evil\u{1b}[2J": "a\tb\nForged:\tyes", "list": ["x\ny"]}});
        let text = rendered(|w| {
            labels(w, Some(&json!({"k": "v\u{7}"})));
            content(w, 0, object.as_object().expect("an object"), "");
        });
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(!text.contains('\t'), "{text:?}");
        assert!(text.contains("a\\tb\\nForged:\\tyes"), "{text}");
        assert!(text.contains("x\\ny"), "{text}");
        assert_eq!(text.lines().count(), 5, "{text}");
    }

    #[test]
    fn values_print_as_gos_percent_v() {
        for (value, text) in [
            (json!(null), "<nil>"),
            (json!(true), "true"),
            (json!(-7), "-7"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(0.5), "0.5"),
            (json!(3.0), "3"),
            (json!(123456.5), "123456.5"),
            (json!(1000000.0), "1e+06"),
            (json!(1234567.5), "1.2345675e+06"),
            (json!(0.0001), "0.0001"),
            (json!(0.00001), "1e-05"),
            (json!(-2.5e-7), "-2.5e-07"),
            (json!(1e21), "1e+21"),
            (json!([1, "a", [true]]), "[1 a [true]]"),
            (json!({"b": 1, "a": {"c": null}}), "map[a:map[c:<nil>] b:1]"),
        ] {
            assert_eq!(go_value(&value), text, "{value}");
        }
    }
}
