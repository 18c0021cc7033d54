//! Pod Security admission (k8s.io/pod-security-admission): the Pod Security Standards
//! `privileged`, `baseline` and `restricted`, chosen per namespace by the
//! `pod-security.kubernetes.io/{enforce,warn,audit}` labels.
//!
//! keel serves v1.37, so every level is evaluated as Kubernetes evaluates `<level>:latest` on a
//! v1.37 server: the checks (in `baseline.rs` and `restricted.rs`) are the newest version of each
//! Kubernetes check, ordered as
//! Kubernetes orders them (baseline check ids sorted, then restricted ids sorted), with the
//! reasons and details worded as Kubernetes words them so that `kubectl` users and tests that
//! match on messages see the same text. `…-version` labels are validated but the newest
//! policy is always applied.
//!
//! Pods and pod templates are read as JSON; a field of the wrong JSON type (a string where an
//! object belongs, an array that is not one) counts as unset, and array entries of the wrong
//! type are skipped, so hostile input never panics.

use std::collections::BTreeMap;
use std::fmt;

use keel_api::validation::go_quote;
use serde_json::{Map, Value};

mod baseline;
mod restricted;
#[cfg(test)]
mod tests;

/// The label naming the level pods are refused at.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// The policy version of [`ENFORCE_LABEL`] (validated, then ignored: keel applies `latest`).
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
/// The label naming the level violations are recorded in the audit log at.
pub const AUDIT_LABEL: &str = "pod-security.kubernetes.io/audit";
/// The policy version of [`AUDIT_LABEL`].
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
/// The label naming the level clients are warned at.
pub const WARN_LABEL: &str = "pod-security.kubernetes.io/warn";
/// The policy version of [`WARN_LABEL`].
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// A Pod Security Standard, from least to most restrictive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// The level as labels spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    /// A label value as a level; Kubernetes matches exactly (no case folding, no trimming).
    pub fn parse(value: &str) -> Option<Level> {
        match value {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A namespace's policy: the level pods are refused at, warned at and audited at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub enforce: Level,
    pub warn: Level,
    pub audit: Level,
}

impl Policy {
    /// The same level for all three modes.
    pub fn uniform(level: Level) -> Policy {
        Policy {
            enforce: level,
            warn: level,
            audit: level,
        }
    }

    /// Nothing to check: Kubernetes admits without evaluating when all three are privileged.
    pub fn fully_privileged(&self) -> bool {
        self.enforce == Level::Privileged
            && self.warn == Level::Privileged
            && self.audit == Level::Privileged
    }
}

/// The namespace's policy from its labels, for validating a namespace: Kubernetes refuses to
/// create a namespace with a malformed level or version label, or to update one to a new
/// malformed value. The error is Kubernetes' field error, naming the label, e.g.
/// `metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "x": must be one of
/// privileged, baseline, restricted`; several are bracketed and joined by ", " as Kubernetes
/// aggregates them.
pub fn policy_of(
    namespace_labels: &BTreeMap<String, String>,
    default: Level,
) -> Result<Policy, String> {
    let (policy, mut errors) = policy_to_evaluate(namespace_labels, default);
    match errors.len() {
        0 => Ok(policy),
        1 => Err(errors.remove(0)),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

/// The policy Kubernetes applies to a pod whose namespace carries these labels, with the
/// errors of the malformed ones. Kubernetes still evaluates pods in a namespace whose labels
/// are malformed (it predates the admission, or the labels were set while it was off): a
/// malformed `enforce` level counts as `restricted` (fail closed), a malformed `warn` or
/// `audit` level as `privileged` (fail open), and a malformed version as `latest`. Absent
/// labels take `default`; when `enforce` is given (and valid) but `warn` is not, `warn` is
/// raised to `enforce` if that is stricter, so clients are warned of what would be refused.
pub fn policy_to_evaluate(
    namespace_labels: &BTreeMap<String, String>,
    default: Level,
) -> (Policy, Vec<String>) {
    let mut policy = Policy::uniform(default);
    let mut errors = Vec::new();
    let mut has_enforce = false;
    let mut has_warn = false;
    if let Some(value) = namespace_labels.get(ENFORCE_LABEL) {
        match Level::parse(value) {
            Some(level) => {
                policy.enforce = level;
                has_enforce = true;
            }
            None => {
                policy.enforce = Level::Restricted;
                errors.push(invalid_label(ENFORCE_LABEL, value, LEVEL_DETAIL));
            }
        }
    }
    check_version(namespace_labels, ENFORCE_VERSION_LABEL, &mut errors);
    if let Some(value) = namespace_labels.get(AUDIT_LABEL) {
        policy.audit = Level::parse(value).unwrap_or_else(|| {
            errors.push(invalid_label(AUDIT_LABEL, value, LEVEL_DETAIL));
            Level::Privileged
        });
    }
    check_version(namespace_labels, AUDIT_VERSION_LABEL, &mut errors);
    if let Some(value) = namespace_labels.get(WARN_LABEL) {
        has_warn = true;
        policy.warn = Level::parse(value).unwrap_or_else(|| {
            errors.push(invalid_label(WARN_LABEL, value, LEVEL_DETAIL));
            Level::Privileged
        });
    }
    check_version(namespace_labels, WARN_VERSION_LABEL, &mut errors);
    if !has_warn && has_enforce && policy.enforce > policy.warn {
        policy.warn = policy.enforce;
    }
    (policy, errors)
}

const LEVEL_DETAIL: &str = "must be one of privileged, baseline, restricted";
const VERSION_DETAIL: &str = r#"must be "latest" or "v1.x""#;

fn check_version(labels: &BTreeMap<String, String>, label: &str, errors: &mut Vec<String>) {
    if let Some(value) = labels.get(label) {
        if !valid_version(value) {
            errors.push(invalid_label(label, value, VERSION_DETAIL));
        }
    }
}

/// `latest` or `v1.<minor>`, the minor without leading zeros (Kubernetes'
/// `^v1\.([0-9]|[1-9][0-9]*)$`, and it must fit an int).
fn valid_version(value: &str) -> bool {
    if value == "latest" {
        return true;
    }
    let Some(minor) = value.strip_prefix("v1.") else {
        return false;
    };
    !minor.is_empty()
        && minor.bytes().all(|b| b.is_ascii_digit())
        && (minor.len() == 1 || !minor.starts_with('0'))
        && minor.parse::<i64>().is_ok()
}

fn invalid_label(label: &str, value: &str, detail: &str) -> String {
    format!(
        "metadata.labels[{label}]: Invalid value: {}: {detail}",
        go_quote(value)
    )
}

/// A check a pod fails: Kubernetes' check id, its forbidden reason and its detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub check: &'static str,
    pub reason: String,
    pub detail: String,
}

/// The checks `pod_spec` (with `pod_metadata`, whose annotations some checks read) fails at
/// `level`, which includes every level below it, in Kubernetes' order. Empty at privileged.
pub fn evaluate(level: Level, pod_spec: &Value, pod_metadata: &Value) -> Vec<Violation> {
    let checks: Vec<&(&'static str, CheckFn)> = match level {
        Level::Privileged => return Vec::new(),
        Level::Baseline => baseline::CHECKS.iter().collect(),
        Level::Restricted => baseline::CHECKS
            .iter()
            .filter(|check| !restricted::OVERRIDES.contains(&check.0))
            .chain(restricted::CHECKS.iter())
            .collect(),
    };
    let pod = Pod::new(pod_spec, pod_metadata);
    checks
        .into_iter()
        .filter_map(|&(check, run)| {
            run(&pod).map(|(reason, detail)| Violation {
                check,
                reason,
                detail,
            })
        })
        .collect()
}

/// The violations as Kubernetes lists them: `reason (detail)` (or `reason` alone when there is
/// no detail), joined by ", ".
pub fn forbidden_detail(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| {
            let reason = if v.reason.is_empty() {
                "unknown forbidden reason"
            } else {
                v.reason.as_str()
            };
            if v.detail.is_empty() {
                reason.to_owned()
            } else {
                format!("{reason} ({})", v.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kubernetes' message for a pod refused at `level` (the text after `pods "x" is forbidden: `):
/// `violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), …`.
pub fn message(level: Level, violations: &[Violation]) -> String {
    format!(
        "violates PodSecurity \"{level}:latest\": {}",
        forbidden_detail(violations)
    )
}

/// Kubernetes' warning (and `pod-security.kubernetes.io/audit-violations` annotation) for a pod
/// that fails the warn (or audit) level: `would violate PodSecurity "restricted:latest": …`.
pub fn warning(level: Level, violations: &[Violation]) -> String {
    format!(
        "would violate PodSecurity \"{level}:latest\": {}",
        forbidden_detail(violations)
    )
}

static NULL: Value = Value::Null;

/// The pod spec and pod metadata Kubernetes evaluates in an object of `resource` (pods,
/// podtemplates, replicationcontrollers, replicasets, deployments, statefulsets, daemonsets,
/// jobs, cronjobs); `None` for other resources or an object without a pod template. Kubernetes
/// refuses only pods; for the others it warns and audits.
pub fn pod_template_of<'a>(resource: &str, object: &'a Value) -> Option<(&'a Value, &'a Value)> {
    let template = match resource {
        "pods" => object,
        "podtemplates" => object.get("template")?,
        "replicationcontrollers"
        | "replicasets"
        | "deployments"
        | "statefulsets"
        | "daemonsets"
        | "jobs" => object.get("spec")?.get("template")?,
        "cronjobs" => object
            .get("spec")?
            .get("jobTemplate")?
            .get("spec")?
            .get("template")?,
        _ => return None,
    };
    Some((
        template.get("spec").unwrap_or(&NULL),
        template.get("metadata").unwrap_or(&NULL),
    ))
}

/// Whether a pod update needs evaluating: Kubernetes lets through updates that change no
/// container image and add no container (label and annotation edits of a pod admitted before
/// its namespace was tightened), and evaluates the rest.
pub fn is_significant_pod_update(new_spec: &Value, old_spec: &Value) -> bool {
    for key in ["containers", "initContainers"] {
        let (new, old) = (images(new_spec, key), images(old_spec, key));
        if new.len() != old.len() || new.iter().zip(&old).any(|(n, o)| n.1 != o.1) {
            return true;
        }
    }
    let old = images(old_spec, "ephemeralContainers");
    images(new_spec, "ephemeralContainers")
        .iter()
        .any(|(name, image)| match old.iter().find(|(n, _)| n == name) {
            None => true,
            Some((_, old_image)) => old_image != image,
        })
}

fn images<'a>(spec: &'a Value, key: &str) -> Vec<(&'a str, &'a str)> {
    list(Some(spec), key)
        .iter()
        .map(|c| {
            (
                text(Some(c), "name").unwrap_or(""),
                text(Some(c), "image").unwrap_or(""),
            )
        })
        .collect()
}

// ---- reading the pod ----------------------------------------------------------------------

/// The pod as the checks read it.
struct Pod<'a> {
    /// The spec, if an object.
    spec: Option<&'a Value>,
    /// `spec.securityContext`, if an object.
    security_context: Option<&'a Value>,
    annotations: Option<&'a Map<String, Value>>,
    /// initContainers, containers, ephemeralContainers, in that order (Kubernetes' order).
    containers: Vec<Container<'a>>,
    /// `hostUsers: false`: the pod runs in a user namespace, which relaxes some checks.
    user_namespace: bool,
    /// `os.name: windows`, which exempts it from the Linux-only restricted checks.
    windows: bool,
}

struct Container<'a> {
    name: &'a str,
    value: &'a Value,
    /// `securityContext`, if an object.
    security_context: Option<&'a Value>,
}

impl<'a> Pod<'a> {
    fn new(spec: &'a Value, metadata: &'a Value) -> Pod<'a> {
        let spec = object(Some(spec));
        let mut containers = Vec::new();
        for key in ["initContainers", "containers", "ephemeralContainers"] {
            for value in list(spec, key) {
                if value.is_object() {
                    containers.push(Container {
                        name: text(Some(value), "name").unwrap_or(""),
                        value,
                        security_context: child(Some(value), "securityContext"),
                    });
                }
            }
        }
        Pod {
            spec,
            security_context: child(spec, "securityContext"),
            annotations: metadata.get("annotations").and_then(Value::as_object),
            containers,
            user_namespace: flag(spec, "hostUsers") == Some(false),
            windows: text(child(spec, "os"), "name") == Some("windows"),
        }
    }
}

fn object(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| v.is_object())
}

/// `value[key]` if that is an object.
fn child<'a>(value: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    object(value?.get(key))
}

fn text<'a>(value: Option<&'a Value>, key: &str) -> Option<&'a str> {
    value?.get(key)?.as_str()
}

fn flag(value: Option<&Value>, key: &str) -> Option<bool> {
    value?.get(key)?.as_bool()
}

fn list<'a>(value: Option<&'a Value>, key: &str) -> &'a [Value] {
    value
        .and_then(|v| v.get(key))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Strings in `value[key]`, skipping entries that are not strings.
fn strings<'a>(value: Option<&'a Value>, key: &str) -> impl Iterator<Item = &'a str> {
    list(value, key).iter().filter_map(Value::as_str)
}

fn volume_name(volume: &Value) -> &str {
    text(Some(volume), "name").unwrap_or("")
}

// ---- wording ------------------------------------------------------------------------------

fn plural(singular: &'static str, plural: &'static str, count: usize) -> &'static str {
    if count == 1 {
        singular
    } else {
        plural
    }
}

/// `"a", "b"`.
fn join_quote<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    items
        .into_iter()
        .map(|item| format!("\"{}\"", item.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[&str]) -> String {
    format!(
        "{} {}",
        plural("container", "containers", names.len()),
        join_quote(names)
    )
}

// ---- the checks ---------------------------------------------------------------------------

/// A failed check's forbidden reason and detail.
type Failure = (String, String);
type CheckFn = for<'p, 'a> fn(&'p Pod<'a>) -> Option<Failure>;

fn fail(reason: &str, detail: String) -> Option<Failure> {
    Some((reason.to_owned(), detail))
}
