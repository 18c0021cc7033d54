//! Label and field selectors for list and watch (`?labelSelector=` and `?fieldSelector=`),
//! with kube-apiserver's grammar, semantics and error texts: a client gets the same matches and
//! the same 400 messages from keel as from Kubernetes.
//!
//! - [`LabelSelector`] ports `Parse` of k8s.io/apimachinery/pkg/labels (`=`, `==`, `!=`, `in`,
//!   `notin`, exists, `!key`, `>`/`<`) and is matched against an object's `metadata.labels`.
//! - [`FieldSelector`] ports `ParseSelector` of k8s.io/apimachinery/pkg/fields (`=`, `==`, `!=`,
//!   backslash escapes), is checked against the fields a resource allows
//!   ([`field_selectors_for`]), as kube-apiserver's field label conversion does, and is matched
//!   against the object's JSON.
//!
//! Neither parser recurses or looks further back than one token, and both take time linear in
//! the text (plus a sort), so hostile input (megabytes, ten thousand requirements, unbalanced
//! parentheses) costs time in proportion to its size and ends in an error, never a panic. No
//! length limit is imposed beyond what the HTTP layer already imposes on a query string:
//! Kubernetes has none either.

mod field;
mod label;

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::Value;

pub use field::{field_selectors_for, FieldSelector};
pub use label::LabelSelector;

/// Why a selector was refused. `Display` is the text Kubernetes gives for the same input, so
/// the API server can put it verbatim into the message of a 400 `Status`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SelectorError {
    /// A label requirement is malformed: an invalid key or value, a missing operator, a
    /// malformed value set, a non-integer for `>`/`<`. Go wraps all of these the same way.
    #[error("unable to parse requirement: {0}")]
    LabelRequirement(String),
    /// The label selector's tokens are out of place between requirements
    /// (e.g. `found ',', expected: identifier after ','`).
    #[error("{0}")]
    LabelSyntax(String),
    /// A field selector term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm { selector: String, term: String },
    /// A backslash in a field selector value escapes something other than `\`, `,` or `=`,
    /// or ends the value.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    FieldEscape(String),
    /// An unescaped `,` or `=` in a field selector value. Go prints the rune with `%v`, which
    /// is its code point in decimal (61 for `=`), and so does this.
    #[error("invalid field selector: unescaped character in value: {0}")]
    FieldUnescaped(u32),
    /// The resource does not allow selecting on `field`; `message` is kube-apiserver's text
    /// for that resource (most say `field label not supported: <field>`).
    #[error("{message}")]
    UnsupportedField { field: String, message: String },
}

/// Go's `strconv.Quote`, which `%q` uses: Kubernetes' validation errors quote the offending
/// key or value with it (one implementation, keel-api's, for every message).
pub(crate) use keel_api::validation::go_quote;

/// The string a JSON value compares as. Kubernetes' label and field sets hold strings:
/// a bool is `strconv.FormatBool`'s "true"/"false", a number its decimal text, and null, an
/// array or an object (never a selectable field) reads as empty, as an unset field does.
fn scalar_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => Cow::Borrowed(""),
    }
}

// Kubernetes' label key and value validation (k8s.io/apimachinery/pkg/api/validate/content)
// and the field error texts around it, by hand: linear, no regex dependency.

const LABEL_NAME_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_KEY_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_EXAMPLES: &[&str] = &["MyValue", "my_value", "12345"];
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// Go's `field.Invalid(path, value, detail).Error()`.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {}: {detail}", go_quote(value))
}

/// Go's aggregate error text: duplicates dropped, one error as itself, several in brackets.
fn aggregate(errors: Vec<String>) -> Option<String> {
    let mut seen = HashSet::new();
    let unique: Vec<&String> = errors.iter().filter(|e| seen.insert(e.as_str())).collect();
    match unique.as_slice() {
        [] => None,
        [one] => Some((*one).clone()),
        many => Some(format!(
            "[{}]",
            many.iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Go's `content.RegexError`, examples and all (its double spaces included).
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    let mut out = format!("{message} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{example}', "));
    }
    out.push_str(&format!("regex used for validation is '{format}')"));
    out
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, by hand (linear, no regex dependency).
fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`: dot-separated,
/// non-empty lowercase DNS labels.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|part| {
        let bytes = part.as_bytes();
        let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                edge(first) && edge(last) && bytes.iter().all(|b| edge(b) || *b == b'-')
            }
            _ => false,
        }
    })
}

/// Go's `content.IsLabelKey`: an optional DNS-1123 subdomain prefix and `/`, then a name.
fn label_key_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut parts = key.splitn(3, '/');
    let first = parts.next().unwrap_or("");
    let name = match (parts.next(), parts.next()) {
        (None, _) => first,
        (Some(name), None) => {
            if first.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                if first.len() > DNS1123_SUBDOMAIN_MAX {
                    errors.push(format!(
                        "prefix part must be no more than {DNS1123_SUBDOMAIN_MAX} bytes"
                    ));
                }
                if !is_dns1123_subdomain(first) {
                    let detail = regex_error(
                        DNS1123_SUBDOMAIN_MSG,
                        DNS1123_SUBDOMAIN_FMT,
                        &["example.com"],
                    );
                    errors.push(format!("prefix part {detail}"));
                }
            }
            name
        }
        (Some(_), Some(_)) => {
            let detail = regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, LABEL_KEY_EXAMPLES);
            errors.push(format!(
                "a valid label key {detail} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > LABEL_NAME_MAX {
        errors.push(format!(
            "name part must be no more than {LABEL_NAME_MAX} bytes"
        ));
    }
    if !is_label_name(name) {
        errors.push(format!(
            "name part {}",
            regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, LABEL_KEY_EXAMPLES)
        ));
    }
    errors
}

/// Go's `content.IsLabelValue`: empty, or a label name of at most 63 bytes.
fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_NAME_MAX {
        errors.push(format!("must be no more than {LABEL_NAME_MAX} bytes"));
    }
    if !value.is_empty() && !is_label_name(value) {
        errors.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            LABEL_VALUE_EXAMPLES,
        ));
    }
    errors
}

#[cfg(test)]
mod tests;
