//! Label maps and label selectors written the way apimachinery writes them, for the SELECTOR
//! columns: `labels.FormatLabels` and `metav1.LabelSelectorAsSelector(...).String()`.

use serde_json::{Map, Value};

use super::fields::{items_at, str_at};

/// `labels.FormatLabels`: `key=value` pairs sorted as whole strings and comma-joined; `<none>`
/// when there are none.
pub(super) fn format_labels(labels: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// `metav1.FormatLabelSelector`: the selector; `<none>` when it selects nothing or everything,
/// `<error>` when it is invalid.
pub(super) fn format_label_selector(selector: Option<&Value>) -> String {
    match selector_string(selector) {
        Ok(text) if text.is_empty() => "<none>".to_string(),
        Ok(text) => text,
        Err(InvalidSelector) => "<error>".to_string(),
    }
}

/// A selector `LabelSelectorAsSelector` rejects.
#[derive(Debug)]
pub(crate) struct InvalidSelector;

/// `LabelSelectorAsSelector(selector).String()`: the requirements sorted by key and
/// comma-joined. Empty both for an absent selector (`labels.Nothing`) and for an empty one
/// (`labels.Everything`), which Go also writes as "".
pub(crate) fn selector_string(selector: Option<&Value>) -> Result<String, InvalidSelector> {
    let selector = match selector {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::Object(selector)) => selector,
        Some(_) => return Err(InvalidSelector),
    };
    let mut requirements = Vec::new();
    match selector.get("matchLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (key, value) in labels {
                let value = value.as_str().ok_or(InvalidSelector)?;
                requirements.push(Requirement::new(
                    key,
                    Operator::Equals,
                    vec![value.to_string()],
                )?);
            }
        }
        Some(_) => return Err(InvalidSelector),
    }
    let expressions: &[Value] = match selector.get("matchExpressions") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(expressions)) => expressions.as_slice(),
        Some(_) => return Err(InvalidSelector),
    };
    for expression in expressions {
        let operator = match str_at(expression, &["operator"]) {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            _ => return Err(InvalidSelector),
        };
        let values = items_at(expression, &["values"])
            .iter()
            .map(|value| value.as_str().map(str::to_string).ok_or(InvalidSelector))
            .collect::<Result<Vec<_>, _>>()?;
        requirements.push(Requirement::new(
            str_at(expression, &["key"]),
            operator,
            values,
        )?);
    }
    // `internalSelector.Add` orders the requirements by key.
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
    let rendered: Vec<String> = requirements.iter().map(Requirement::render).collect();
    Ok(rendered.join(","))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Equals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// `labels.NewRequirement`: the key must be a qualified name, every value a label value, and
    /// the number of values must fit the operator.
    fn new(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, InvalidSelector> {
        let count_fits = match operator {
            Operator::Equals => values.len() == 1,
            Operator::In | Operator::NotIn => !values.is_empty(),
            Operator::Exists | Operator::DoesNotExist => values.is_empty(),
        };
        if !count_fits || !is_qualified_name(key) || !values.iter().all(|v| is_label_value(v)) {
            return Err(InvalidSelector);
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// `Requirement.String`; values are written sorted.
    fn render(&self) -> String {
        let mut values = self.values.clone();
        values.sort();
        let values = values.join(",");
        let key = &self.key;
        match self.operator {
            Operator::Equals => format!("{key}={values}"),
            Operator::In => format!("{key} in ({values})"),
            Operator::NotIn => format!("{key} notin ({values})"),
            Operator::Exists => key.clone(),
            Operator::DoesNotExist => format!("!{key}"),
        }
    }
}

/// `validation.IsQualifiedName`: an optional DNS subdomain and `/`, then a name of at most 63
/// characters.
fn is_qualified_name(key: &str) -> bool {
    let mut parts = key.split('/');
    let (prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => (None, name),
        (Some(prefix), Some(name), None) => (Some(prefix), name),
        _ => return false,
    };
    prefix.is_none_or(is_dns1123_subdomain) && name.len() <= 63 && is_name_segment(name)
}

/// `validation.IsValidLabelValue`: empty, or a name segment of at most 63 characters.
fn is_label_value(value: &str) -> bool {
    value.is_empty() || (value.len() <= 63 && is_name_segment(value))
}

/// Alphanumerics, `-`, `_` and `.`, starting and ending with an alphanumeric.
fn is_name_segment(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `validation.IsDNS1123Subdomain`: dot-separated labels of lowercase alphanumerics and `-`,
/// each starting and ending alphanumeric, at most 253 characters in all.
fn is_dns1123_subdomain(text: &str) -> bool {
    let lower_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    text.len() <= 253
        && text.split('.').all(|label| {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(&first), Some(&last)) => {
                    lower_alnum(first)
                        && lower_alnum(last)
                        && bytes.iter().all(|&b| lower_alnum(b) || b == b'-')
                }
                _ => false,
            }
        })
}
