//! kube-apiserver's audit policy (`--audit-policy-file`): an `audit.k8s.io/v1` `Policy`, YAML
//! or JSON, read once at start-up, that decides for each request whether it is audited and at
//! which stages.
//!
//! Matching is kube's (`audit/policy/checker.go`): the first rule whose every non-empty list
//! matches wins (`users`; `userGroups`, any group; `verbs`; `namespaces`, `""` for
//! cluster-scoped objects; `resources` by group, `"*"` any group, with `"*"`, `"pods/*"`,
//! `"*/status"`, `"pods/status"` and `resourceNames`; `nonResourceURLs`, exact, `"*"` or a
//! trailing-`*` prefix); a rule naming resources or namespaces never matches a non-resource
//! request and the reverse. No match is level `None`. The policy's `omitStages` is added to every rule's. Rules see the
//! authenticated user, not an impersonated one, and a request whose authentication failed has
//! no user (kube's audit filter runs before impersonation).
//!
//! Validation is kube's (`apis/audit/validation`), with its field paths and words, plus its
//! reader's refusal of a policy without rules. Where keel differs, and why:
//! - **Unknown and duplicate fields are refused**, each named by its path. kube decodes
//!   strictly, but on such an error falls back to lenient decoding with a warning (for files
//!   written before the check existed): a misspelled `verb:` then silently widens its rule to
//!   every verb, which for an audit log means recording what was meant to be dropped or the
//!   reverse. keel has no old files to keep working.
//! - **Levels `Request` and `RequestResponse` are recorded at `Metadata`**, and the event says
//!   `"level":"Metadata"`, with a start-up warning naming each such rule
//!   (`rules[3].level: Request is recorded at Metadata by keel`). The front does hold a
//!   resource request's body, but kube's `requestObject` is the decoded object (or the patch)
//!   as the REST handlers see it, in JSON whatever the wire format, and `responseObject` the
//!   answer before encoding; neither exists in the front, and an approximation would put
//!   half-right bodies (and secrets' data) in a log consumers trust. An event that claimed
//!   `Request` without a body would mislead whoever filters on the level, so the level written
//!   is the one recorded. `omitManagedFields` is accepted and, without bodies, changes nothing.
//! - Stages: keel writes `RequestReceived` (once the user is known, before impersonation and
//!   authorization, as kube), `ResponseStarted` (watches, failed authentication) and
//!   `ResponseComplete`. `Panic` is accepted in `omitStages` but never written: a panicking
//!   handler ends its connection.
//! - The file may be at most [`MAX_POLICY_BYTES`]; kube reads any size.
//!
//! Without `--audit-policy-file` kube records nothing; keel's `--audit-log-path` alone keeps
//! its documented default, every request at `Metadata` without `RequestReceived`
//! ([`Decision::DEFAULT`]).
//!
//! The rules are compiled once: levels and stages become enums and bit sets, the policy's
//! `omitStages` is merged into each rule, so [`Policy::evaluate`] only compares strings it is
//! given, allocating nothing.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{ObjectRef, Stage};
use crate::auth::UserInfo;

mod decode;
#[cfg(test)]
mod tests;

/// The largest policy file read; policies are a few kilobytes, and a bound keeps a mistaken
/// path (a log, `/dev/zero`) from filling memory.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// How much of a request an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    Metadata,
    /// Accepted; recorded as `Metadata` (see the module documentation).
    Request,
    /// Accepted; recorded as `Metadata`.
    RequestResponse,
}

impl Level {
    pub const NAMES: [&'static str; 4] = ["None", "Metadata", "Request", "RequestResponse"];

    pub fn parse(name: &str) -> Option<Level> {
        Some(match name {
            "None" => Level::None,
            "Metadata" => Level::Metadata,
            "Request" => Level::Request,
            "RequestResponse" => Level::RequestResponse,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Level::NAMES[self as usize]
    }
}

/// A set of stages (`omitStages`), as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stages(u8);

impl Stages {
    pub const NONE: Stages = Stages(0);

    pub fn of(stages: &[Stage]) -> Stages {
        stages.iter().fold(Stages::NONE, |set, s| set.with(*s))
    }

    pub fn with(self, stage: Stage) -> Stages {
        Stages(self.0 | Self::bit(stage))
    }

    pub fn union(self, other: Stages) -> Stages {
        Stages(self.0 | other.0)
    }

    pub fn contains(self, stage: Stage) -> bool {
        self.0 & Self::bit(stage) != 0
    }

    const fn bit(stage: Stage) -> u8 {
        match stage {
            Stage::RequestReceived => 1,
            Stage::ResponseStarted => 2,
            Stage::ResponseComplete => 4,
            Stage::Panic => 8,
        }
    }
}

/// What the policy says of one request: its level and the stages left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    pub omit: Stages,
}

impl Decision {
    /// keel's audit log without a policy file: everything at `Metadata`, without the
    /// `RequestReceived` stage (its documented behaviour before policies existed).
    pub const DEFAULT: Decision = Decision {
        level: Level::Metadata,
        omit: Stages(Stages::bit(Stage::RequestReceived)),
    };

    /// Whether an event is written at `stage`.
    pub fn records(self, stage: Stage) -> bool {
        self.level != Level::None && !self.omit.contains(stage)
    }
}

/// What a rule is matched against: kube's authorizer attributes, borrowed from the audit
/// record.
#[derive(Clone, Copy, Debug)]
pub struct Attributes<'a> {
    /// `None` when authentication failed.
    pub user: Option<&'a UserInfo>,
    /// The Kubernetes verb, or the lower-cased HTTP method of a non-resource request.
    pub verb: &'a str,
    /// The URL path, without the query.
    pub path: &'a str,
    /// `None` for a non-resource request.
    pub object: Option<&'a ObjectRef>,
}

/// `GroupResources`: resources of one API group, optionally only some names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupResources {
    pub group: String,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

/// `PolicyRule`, compiled: its `omit` already includes the policy's `omitStages`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub level: Level,
    pub users: Vec<String>,
    pub user_groups: Vec<String>,
    pub verbs: Vec<String>,
    pub resources: Vec<GroupResources>,
    pub namespaces: Vec<String>,
    pub non_resource_urls: Vec<String>,
    pub omit: Stages,
}

/// A loaded, valid policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
    /// The policy-level `omitStages`, kept for a request no rule matches (kube returns it
    /// with level `None`, so it changes nothing there).
    omit: Stages,
    warnings: Vec<String>,
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading the audit policy file {0:?}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the audit policy file {0:?} is larger than {MAX_POLICY_BYTES} bytes")]
    TooLarge(PathBuf),
    #[error("the audit policy file {0:?}: {1}")]
    Invalid(PathBuf, Invalid),
}

/// Why a policy text was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("not UTF-8 text")]
    NotUtf8,
    /// YAML or JSON that does not parse; the parser's message names the line and column.
    #[error("failed decoding: {0}")]
    Syntax(String),
    /// Every field error found, as kube's aggregate prints them.
    #[error("{}", aggregate(.0))]
    Fields(Vec<FieldError>),
    #[error("loaded illegal policy with 0 rules")]
    NoRules,
}

/// One refused field, in kube's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The path: `rules[2].omitStages[0]`.
    pub field: String,
    kind: FieldErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum FieldErrorKind {
    /// kube's strict decoder: `unknown field "rules[0].verb"`.
    Unknown,
    Required,
    /// `Unsupported value: "x": supported values: "a", "b"`.
    NotSupported(String, &'static [&'static str]),
    /// `Invalid value: <value as Go prints it>: detail`.
    Invalid(String, String),
}

impl FieldError {
    fn unknown(field: String) -> Self {
        let kind = FieldErrorKind::Unknown;
        FieldError { field, kind }
    }

    fn required(field: String) -> Self {
        let kind = FieldErrorKind::Required;
        FieldError { field, kind }
    }

    fn not_supported(field: String, value: &str, supported: &'static [&'static str]) -> Self {
        let kind = FieldErrorKind::NotSupported(go_quote(value), supported);
        FieldError { field, kind }
    }

    /// `value` as Go's `%v`/`%q`/`%#v` would print it (the caller renders it).
    fn invalid(field: String, value: String, detail: impl Into<String>) -> Self {
        let kind = FieldErrorKind::Invalid(value, detail.into());
        FieldError { field, kind }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        if let FieldErrorKind::Unknown = self.kind {
            return write!(f, "unknown field {}", go_quote(field));
        }
        // The document itself has no path.
        if !field.is_empty() {
            write!(f, "{field}: ")?;
        }
        match &self.kind {
            FieldErrorKind::Unknown => Ok(()),
            FieldErrorKind::Required => write!(f, "Required value"),
            FieldErrorKind::NotSupported(value, supported) => {
                let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
                let list = list.join(", ");
                write!(f, "Unsupported value: {value}: supported values: {list}")
            }
            FieldErrorKind::Invalid(value, detail) => {
                write!(f, "Invalid value: {value}: {detail}")
            }
        }
    }
}

/// utilerrors.Aggregate's text: one error alone, several in brackets.
fn aggregate(errors: &[FieldError]) -> String {
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    match texts.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", texts.join(", ")),
    }
}

fn go_quote(s: &str) -> String {
    keel_api::validation::go_quote(s)
}

impl Policy {
    /// Reads and validates the policy file at `path` (at most [`MAX_POLICY_BYTES`]).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let file = std::fs::File::open(path).map_err(|e| PolicyError::Read(path.into(), e))?;
        // Read one byte past the limit rather than trust the size: a FIFO or /dev/zero has
        // none.
        let mut bytes = Vec::new();
        let limit = MAX_POLICY_BYTES as u64 + 1;
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| PolicyError::Read(path.into(), e))?;
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge(path.into()));
        }
        Policy::parse_bytes(&bytes).map_err(|e| PolicyError::Invalid(path.into(), e))
    }

    /// Parses and validates a policy (YAML or JSON).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Policy, Invalid> {
        let text = std::str::from_utf8(bytes).map_err(|_| Invalid::NotUtf8)?;
        Policy::parse(text)
    }

    /// Parses and validates a policy (YAML or JSON).
    pub fn parse(text: &str) -> Result<Policy, Invalid> {
        let (rules, omit) = decode::decode(text)?;
        if rules.is_empty() {
            return Err(Invalid::NoRules);
        }
        let warnings = rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.level > Level::Metadata)
            .map(|(i, rule)| {
                let level = rule.level.as_str();
                format!("rules[{i}].level: {level} is recorded at Metadata by keel")
            })
            .collect();
        Ok(Policy {
            rules,
            omit,
            warnings,
        })
    }

    /// What start-up should warn about: rules whose level keel records at `Metadata`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first matching rule's level and stages; `None` when no rule matches.
    pub fn evaluate(&self, request: &Attributes<'_>) -> Decision {
        for rule in &self.rules {
            if rule.matches(request) {
                return Decision {
                    level: rule.level,
                    omit: rule.omit,
                };
            }
        }
        Decision {
            level: Level::None,
            omit: self.omit,
        }
    }
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|s| s == value)
}

impl Rule {
    /// kube's `ruleMatches`, condition for condition.
    fn matches(&self, request: &Attributes<'_>) -> bool {
        if !self.users.is_empty() {
            match request.user {
                Some(user) if has(&self.users, &user.name) => {}
                _ => return false,
            }
        }
        if !self.user_groups.is_empty() {
            let Some(user) = request.user else {
                return false;
            };
            if !user.groups.iter().any(|g| has(&self.user_groups, g)) {
                return false;
            }
        }
        if !self.verbs.is_empty() && !has(&self.verbs, request.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(request.object);
        }
        if !self.non_resource_urls.is_empty() {
            return request.object.is_none()
                && self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(request.path, spec));
        }
        true
    }

    fn matches_resource(&self, object: Option<&ObjectRef>) -> bool {
        let Some(object) = object else {
            return false;
        };
        if !self.namespaces.is_empty() && !has(&self.namespaces, &object.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        self.resources.iter().any(|gr| {
            (gr.group == object.api_group || gr.group == "*")
                && (gr.resources.is_empty()
                    || ((gr.resource_names.is_empty() || has(&gr.resource_names, &object.name))
                        && gr.resources.iter().any(|pattern| {
                            resource_matches(pattern, &object.resource, &object.subresource)
                        })))
        })
    }
}

/// kube's `pathMatches`: `*`, the path itself, or a prefix ending in `*`.
fn path_matches(path: &str, spec: &str) -> bool {
    if spec == "*" || spec == path {
        return true;
    }
    match spec.strip_suffix('*') {
        // Go's TrimRight removes every trailing `*`; validation allows only one anyway.
        Some(_) => path.starts_with(spec.trim_end_matches('*')),
        None => false,
    }
}

/// One entry of `resources` against a request's resource and subresource: `*`, `resource`
/// (no subresource), `resource/subresource`, `*/subresource`, or `resource/*` (the resource and
/// every subresource of it), compared in place.
fn resource_matches(pattern: &str, resource: &str, subresource: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let combined = if subresource.is_empty() {
        pattern == resource
    } else {
        pattern.len() == resource.len() + 1 + subresource.len()
            && pattern.starts_with(resource)
            && pattern[resource.len()..].starts_with('/')
            && pattern.ends_with(subresource)
    };
    if combined {
        return true;
    }
    if !subresource.is_empty() && pattern.strip_prefix("*/") == Some(subresource) {
        return true;
    }
    pattern.strip_suffix("/*") == Some(resource)
}
