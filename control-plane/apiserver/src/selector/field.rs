//! Field selectors: a port of `ParseSelector` in k8s.io/apimachinery/pkg/fields/selector.go,
//! then the check kube-apiserver makes next: every field must be one the resource's field
//! label conversion accepts (`pkg/apis/<group>/<version>/conversion.go`), with that
//! conversion's error text. Matching reads the fields from the object's JSON the way each
//! registry's `ToSelectableFields` fills its field set.

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

use super::{go_quote, scalar_text, SelectorError};

/// Pods' legacy field, which the pod conversion accepts and rewrites to `spec.nodeName` for
/// old v1 clients.
const LEGACY_POD_HOST: &str = "spec.host";
const POD_NODE_NAME: &str = "spec.nodeName";

/// What a resource without a field label conversion of its own accepts: `runtime.
/// DefaultMetaV1FieldSelectorConversion`, the fallback for every built-in kind not listed
/// below, cluster-scoped or not.
const METADATA_ONLY: &[&str] = &["metadata.name", "metadata.namespace"];

/// How a resource's conversion words a refusal; the texts differ between API groups.
#[derive(Clone, Copy, Debug)]
enum Reject {
    /// `field label not supported: <field>` (core/v1, certificates, events, custom resources).
    NotSupported,
    /// `"<field>" is not a known field selector: only "metadata.name", "metadata.namespace"`
    /// (the default conversion).
    NotKnown,
    /// `field label "<field>" not supported for Job` (batch/v1).
    Job,
    /// `field label not supported for resource.k8s.io/v1, Kind=ResourceSlice: <field>`.
    ResourceSlice,
}

impl Reject {
    fn message(self, field: &str) -> String {
        match self {
            Reject::NotSupported => format!("field label not supported: {field}"),
            Reject::NotKnown => format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                go_quote(field)
            ),
            Reject::Job => format!("field label {} not supported for Job", go_quote(field)),
            Reject::ResourceSlice => {
                format!(
                    "field label not supported for resource.k8s.io/v1, Kind=ResourceSlice: {field}"
                )
            }
        }
    }
}

struct ResourceFields {
    /// The plural resource, bare and group-qualified (`jobs`, `jobs.batch`).
    names: &'static [&'static str],
    fields: &'static [&'static str],
    reject: Reject,
}

/// kube-apiserver 1.37's field label conversions (`AddFieldLabelConversionFunc`), resource by
/// resource. Notably absent: everything in `apps` (ReplicaSets and Deployments register no
/// conversion, so `status.replicas` is refused for them; it is ReplicationControllers that
/// accept it). Namespaces, Nodes and the certificate kinds do not accept `metadata.namespace`.
static RESOURCE_FIELDS: &[ResourceFields] = &[
    ResourceFields {
        names: &["pods"],
        fields: &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
            LEGACY_POD_HOST,
        ],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        names: &["certificatesigningrequests"],
        fields: &["metadata.name", "spec.signerName"],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        names: &["nodes"],
        fields: &["metadata.name", "spec.unschedulable"],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        names: &["replicationcontrollers"],
        fields: &["metadata.name", "metadata.namespace", "status.replicas"],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        names: &["events"],
        fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "metadata.namespace",
            "metadata.name",
        ],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        // events.k8s.io/v1 accepts its own spellings, which its field label conversion
        // (`conversion::events::field_label`) maps onto the core Event's field set: the
        // objects are matched in their stored, core/v1, form.
        names: &["events.events.k8s.io"],
        fields: &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "source",
            "type",
            "metadata.namespace",
            "metadata.name",
        ],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        names: &["namespaces"],
        fields: &["status.phase", "metadata.name"],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        names: &["secrets"],
        fields: &["type", "metadata.namespace", "metadata.name"],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        names: &["services"],
        fields: &[
            "metadata.namespace",
            "metadata.name",
            "spec.clusterIP",
            "spec.type",
        ],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        names: &["jobs", "jobs.batch"],
        fields: &["metadata.name", "metadata.namespace", "status.successful"],
        reject: Reject::Job,
    },
    ResourceFields {
        names: &[
            "certificatesigningrequests",
            "certificatesigningrequests.certificates.k8s.io",
        ],
        fields: &["metadata.name", "spec.signerName"],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        names: &[
            "clustertrustbundles",
            "clustertrustbundles.certificates.k8s.io",
        ],
        fields: &["metadata.name", "spec.signerName"],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        names: &[
            "podcertificaterequests",
            "podcertificaterequests.certificates.k8s.io",
        ],
        fields: &[
            "metadata.name",
            "spec.signerName",
            "spec.podName",
            "spec.nodeName",
        ],
        reject: Reject::NotSupported,
    },
    ResourceFields {
        names: &["resourceslices", "resourceslices.resource.k8s.io"],
        fields: &["metadata.name", "spec.nodeName", "spec.driver"],
        reject: Reject::ResourceSlice,
    },
];

fn resource_fields(resource: &str) -> Option<&'static ResourceFields> {
    RESOURCE_FIELDS.iter().find(|r| r.names.contains(&resource))
}

/// The field paths kube-apiserver 1.37 lets a field selector use on `resource` (the plural
/// name, optionally group-qualified: `pods`, `jobs.batch`, `events.events.k8s.io`). A resource
/// with no conversion of its own, custom resources included, gets `metadata.name` and
/// `metadata.namespace`; for a custom resource the caller should instead pass its CRD's
/// `selectableFields` plus `metadata.name` (and `metadata.namespace` when namespaced).
pub fn field_selectors_for(resource: &str) -> &'static [&'static str] {
    resource_fields(resource).map_or(METADATA_ONLY, |r| r.fields)
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    field: String,
    value: String,
    /// `=` or `==` (true), `!=` (false).
    equals: bool,
}

/// A parsed field selector: the AND of its terms, in Go's order (sorted by term text).
/// `Default` is the empty selector, which matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<Term>,
}

impl FieldSelector {
    /// `supported`: the field paths this resource allows (e.g. [`field_selectors_for`]'s);
    /// an unsupported field is an error with kube-apiserver's text
    /// `field label not supported: <field>`.
    pub fn parse(text: &str, supported: &[&str]) -> Result<Self, SelectorError> {
        parse_checked(text, &|field| supported.contains(&field), &|field| {
            Reject::NotSupported.message(field)
        })
    }

    /// Like [`FieldSelector::parse`] with [`field_selectors_for`]`(resource)`, but refusing a
    /// field with the exact text kube-apiserver uses for that resource, which differs between
    /// API groups (e.g. `"spec.x" is not a known field selector: only "metadata.name",
    /// "metadata.namespace"` for a Deployment).
    pub fn parse_for(text: &str, resource: &str) -> Result<Self, SelectorError> {
        let (fields, reject) = match resource_fields(resource) {
            Some(r) => (r.fields, r.reject),
            None => (METADATA_ONLY, Reject::NotKnown),
        };
        parse_checked(text, &|field| fields.contains(&field), &|field| {
            reject.message(field)
        })
    }

    /// Whether `object` (a whole object's JSON) is selected. A missing field reads as "", as
    /// in Kubernetes' field sets; see `field_value` for the fields Kubernetes computes.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms
            .iter()
            .all(|term| (field_value(object, &term.field) == term.value.as_str()) == term.equals)
    }

    /// The selector with every field renamed by `convert` (a field label conversion onto the
    /// field set of the form objects are matched in).
    pub fn map_fields(mut self, convert: fn(&str) -> &str) -> Self {
        for term in &mut self.terms {
            term.field = convert(&term.field).to_owned();
        }
        self
    }

    /// True when the selector restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// If the selector pins `field` to one value with `=` or `==` (e.g. `metadata.name=foo`),
    /// that value: Go's `RequiresExactMatch`, which lets the server narrow a list to one key.
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.equals && t.field == field)
            .map(|t| t.value.as_str())
    }
}

/// Go's `Selector.String`: `field=value` / `field!=value`, values escaped.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, term) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let operator = if term.equals { "=" } else { "!=" };
            write!(f, "{}{operator}{}", term.field, escape_value(&term.value))?;
        }
        Ok(())
    }
}

/// Go's parse, then kube-apiserver's `Transform` through the field label conversion, which
/// checks the terms in order and stops at the first refused one.
fn parse_checked(
    text: &str,
    accepts: &dyn Fn(&str) -> bool,
    reject: &dyn Fn(&str) -> String,
) -> Result<FieldSelector, SelectorError> {
    let mut terms = parse_terms(text)?;
    for term in &mut terms {
        if !accepts(term.field.as_str()) {
            let message = reject(term.field.as_str());
            return Err(SelectorError::UnsupportedField {
                field: term.field.clone(),
                message,
            });
        }
        // Only where `spec.nodeName` is also allowed, i.e. for pods: another resource may
        // well have a field of its own called `spec.host`.
        if term.field == LEGACY_POD_HOST && accepts(POD_NODE_NAME) {
            term.field = POD_NODE_NAME.to_owned();
        }
    }
    Ok(FieldSelector { terms })
}

/// Go's `parseSelector`: split at unescaped commas, sort the terms' texts, split each at its
/// first operator, unescape the value.
fn parse_terms(text: &str) -> Result<Vec<Term>, SelectorError> {
    let mut parts = split_terms(text);
    parts.sort_unstable();
    let mut terms = Vec::with_capacity(parts.len());
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let Some((field, equals, raw_value)) = split_term(part) else {
            return Err(SelectorError::FieldTerm {
                selector: text.to_owned(),
                term: part.to_owned(),
            });
        };
        let value = unescape_value(raw_value)?;
        // Go's parse ends in `Transform`, which drops a term whose field and value are both
        // empty: `=` alone (or `,=,`) selects everything rather than failing.
        if field.is_empty() && value.is_empty() {
            continue;
        }
        terms.push(Term {
            field: field.to_owned(),
            value,
            equals,
        });
    }
    Ok(terms)
}

/// Go's `splitTerms`: the comma-separated terms, a backslash-escaped comma staying inside its
/// term (backslash kept). Empty text has no terms; `a=a,` has an empty last one.
fn split_terms(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in text.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&text[start..i]);
            start = i + 1;
        }
    }
    terms.push(&text[start..]);
    terms
}

/// Go's `splitTerm`: the field, whether the operator is an equality, and the raw value, split
/// at the first `!=`, `==` or `=` (fields cannot escape, so the first one is the operator).
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        if let Some(value) = rest.strip_prefix("!=") {
            return Some((&term[..i], false, value));
        }
        if let Some(value) = rest.strip_prefix("==") {
            return Some((&term[..i], true, value));
        }
        if let Some(value) = rest.strip_prefix('=') {
            return Some((&term[..i], true, value));
        }
    }
    None
}

/// Go's `UnescapeValue`: `\\`, `\,` and `\=` are the only escapes; an unescaped `,` or `=`, any
/// other escape and a trailing lone backslash are errors (so `\!` is refused, as in Go).
fn unescape_value(raw: &str) -> Result<String, SelectorError> {
    if !raw.contains(['\\', ',', '=']) {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut in_slash = false;
    for c in raw.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(SelectorError::FieldEscape(format!("\\{c}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::FieldUnescaped(u32::from(c))),
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::FieldEscape("\\".to_owned()));
    }
    Ok(out)
}

/// Go's `EscapeValue`, the inverse of [`unescape_value`].
fn escape_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', ',', '=']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// `path`'s value in `object`, walking the dotted path through JSON objects.
fn lookup<'v>(object: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .try_fold(object, |value, key| value.as_object()?.get(key))
}

fn text_at<'v>(object: &'v Value, path: &str) -> Cow<'v, str> {
    lookup(object, path).map_or(Cow::Borrowed(""), scalar_text)
}

/// A field's value as Kubernetes' `ToSelectableFields` computes it from the typed object.
/// Mostly that is the JSON at the field's path, but a few fields are derived or defaulted,
/// and since their names are specific enough not to collide across resources they are
/// handled by name:
/// - `spec.hostNetwork` (pods) and `spec.unschedulable` (nodes) are Go bools, omitted from
///   JSON when false, and Kubernetes formats them always: absent is "false";
/// - `status.podIP` is the first of `status.podIPs` (the singular field when there is none);
/// - `status.podIPs` is accepted by the pod conversion but never set in the field set, so it
///   is always "" (`status.podIPs=` selects every pod, any other value none);
/// - `status.successful` (jobs) is `status.succeeded`, "0" when omitted;
/// - `source` (events) is the reporting source's component, else the reporting controller.
fn field_value<'v>(object: &'v Value, field: &str) -> Cow<'v, str> {
    match field {
        "spec.hostNetwork" | "spec.unschedulable" => match lookup(object, field) {
            None | Some(Value::Null) => Cow::Borrowed("false"),
            Some(value) => scalar_text(value),
        },
        "status.podIP" => match object.pointer("/status/podIPs/0/ip") {
            Some(ip) => scalar_text(ip),
            None => text_at(object, "status.podIP"),
        },
        "status.podIPs" => Cow::Borrowed(""),
        "status.successful" => match lookup(object, "status.succeeded") {
            None | Some(Value::Null) => Cow::Borrowed("0"),
            Some(value) => scalar_text(value),
        },
        "source" => event_source(object),
        _ => text_at(object, field),
    }
}

/// Core Events' `source` field: `source.component`, or the reporting controller when that is
/// empty (`reportingComponent` in core/v1 JSON); events.k8s.io/v1 spells them
/// `deprecatedSource.component` and `reportingController`. A plain string `source` (some
/// other resource's own field) is itself.
fn event_source(object: &Value) -> Cow<'_, str> {
    if let Some(Value::String(source)) = object.get("source") {
        return Cow::Borrowed(source);
    }
    for path in [
        "source.component",
        "deprecatedSource.component",
        "reportingComponent",
        "reportingController",
    ] {
        let value = text_at(object, path);
        if !value.is_empty() {
            return value;
        }
    }
    Cow::Borrowed("")
}

#[cfg(test)]
mod tests;
