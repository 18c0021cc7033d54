//! Name/label/annotation validation, reproducing Kubernetes' rules and error
//! message texts byte-for-byte so that clients (kubectl, controllers, tests
//! ported from Go) see the same output as from a real kube-apiserver.
//!
//! Source of truth: k8s.io/apimachinery **v0.36.3** (Kubernetes 1.36):
//!   pkg/util/validation/validation.go      (DNS names, port names, env vars)
//!   pkg/api/validate/content/{kube,dns,errors}.go (label keys/values)
//!   pkg/api/validation/{generic,objectmeta}.go
//!   pkg/apis/meta/v1/validation/validation.go (ValidateLabels)
//!   pkg/util/validation/field/errors.go    (field.Error formatting)
//!
//! Version notes (texts changed over time; we follow 1.36):
//! * Since 1.35 label keys/values live in the `content` package whose
//!   MaxLenError says "bytes"; the DNS helpers in util/validation still say
//!   "characters". Both wordings therefore coexist, deliberately.
//! * Before 1.35 a key with 2+ slashes said "a qualified name ..." instead
//!   of "a valid label key ...".
//! * Before 1.32 field.TooLong said "must have at most N bytes".
//!
//! All limits are bytes (Go `len`, Rust `str::len`). Go regexes are hand-
//! translated to byte loops; Go's `$` never matches before a trailing "\n".

use std::collections::BTreeMap;
use std::fmt;

pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
const LABEL_KEY_NAME_MAX_LENGTH: usize = 63;
const PORT_NAME_MAX_LENGTH: usize = 15;
/// ValidateAnnotationsSize: sum of len(key)+len(value) over all annotations.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * (1 << 10);

// Regex sources are only used inside messages, but must match Go exactly.
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const ENV_VAR_NAME_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const ENV_VAR_NAME_ERR: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit";
const RELAXED_ENV_VAR_NAME_ERR: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";

// ---------------------------------------------------------------------------
// Message builders (util/validation and content packages)
// ---------------------------------------------------------------------------

/// util/validation.MaxLenError (DNS names, port names).
fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// content.MaxLenError (label keys, label values, label-key prefixes).
fn content_max_len_error(n: usize) -> String {
    format!("must be no more than {n} bytes")
}

const EMPTY_ERROR: &str = "must be non-empty";

/// RegexError. Go's loop yields "(e.g. 'a',  or 'b', regex used ...)" - comma
/// plus double space before "or". Ugly but real (Go's tests assert it), so
/// do not "fix" it: clients compare these strings.
pub fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{re}')");
    }
    let ex: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{re}')",
        ex.join(" or ")
    )
}

// ---------------------------------------------------------------------------
// Byte-level matchers. They take bytes, not &str, because maskTrailingDash
// slices by byte in Go and may cut a UTF-8 sequence; the result must still be
// judged (and rejected) rather than panic on a char boundary.
// ---------------------------------------------------------------------------

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$` (or `[a-z]` first for DNS-1035).
fn match_dns_label(v: &[u8], first_alpha: bool) -> bool {
    let (Some(&first), Some(&last)) = (v.first(), v.last()) else {
        return false;
    };
    let first_ok = if first_alpha {
        first.is_ascii_lowercase()
    } else {
        is_lower_alnum(first)
    };
    first_ok && is_lower_alnum(last) && v.iter().all(|&b| is_lower_alnum(b) || b == b'-')
}

/// `label(\.label)*` is exactly "every dot-separated piece is a label".
fn match_dns_subdomain(v: &[u8]) -> bool {
    v.split(|&b| b == b'.')
        .all(|part| match_dns_label(part, false))
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$` (label key name part).
fn match_label_key_name(v: &[u8]) -> bool {
    let (Some(first), Some(last)) = (v.first(), v.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

// ---------------------------------------------------------------------------
// String validators: each returns Go's []string (empty = valid), in Go order.
// ---------------------------------------------------------------------------

/// IsDNS1123Label.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    dns1123_label_bytes(value.as_bytes())
}

fn dns1123_label_bytes(v: &[u8]) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !match_dns_label(v, false) {
        // Go gives a friendlier hint when the only problem is dots.
        if match_dns_subdomain(v) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// IsDNS1123Subdomain.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    dns1123_subdomain_bytes(value.as_bytes(), max_len_error)
}

/// `len_err` lets the label-key prefix check use content's "bytes" wording.
fn dns1123_subdomain_bytes(v: &[u8], len_err: fn(usize) -> String) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(len_err(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !match_dns_subdomain(v) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// IsDNS1035Label.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    dns1035_label_bytes(value.as_bytes())
}

fn dns1035_label_bytes(v: &[u8]) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !match_dns_label(v, true) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// IsQualifiedName (= content.IsLabelKey since 1.35): `[prefix/]name`.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {EMPTY_ERROR}"));
            } else {
                let msgs = dns1123_subdomain_bytes(prefix.as_bytes(), content_max_len_error);
                errs.extend(msgs.into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            // Go returns immediately here: no name-part checks are added.
            let re = regex_error(
                LABEL_KEY_ERR,
                LABEL_KEY_FMT,
                &["MyName", "my.name", "123-abc"],
            );
            errs.push(format!(
                "a valid label key {re} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {EMPTY_ERROR}"));
    } else if name.len() > LABEL_KEY_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            content_max_len_error(LABEL_KEY_NAME_MAX_LENGTH)
        ));
    }
    // Not an else: an empty name reports both "non-empty" and the regex.
    if !match_label_key_name(name.as_bytes()) {
        let re = regex_error(
            LABEL_KEY_ERR,
            LABEL_KEY_FMT,
            &["MyName", "my.name", "123-abc"],
        );
        errs.push(format!("name part {re}"));
    }
    errs
}

/// IsValidLabelValue (= content.IsLabelValue). Empty is valid.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(content_max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !match_label_key_name(value.as_bytes()) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// IsConfigMapKey: the keys of ConfigMaps and Secrets, which become file names in volumes.
pub fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    let allowed = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_');
    if value.is_empty() || !value.bytes().all(allowed) {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if value == "." {
        errs.push("must not be '.'".into());
    } else if value == ".." {
        errs.push("must not be '..'".into());
    } else if value.starts_with("..") {
        errs.push("must not start with '..'".into());
    }
    errs
}

/// IsValidPortName (IANA_SVC_NAME, RFC 6335, lowercase only). Go runs every
/// check independently, so one bad name can yield several messages.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let b = port.as_bytes();
    let mut errs = Vec::new();
    if b.len() > PORT_NAME_MAX_LENGTH {
        errs.push(max_len_error(PORT_NAME_MAX_LENGTH));
    }
    if b.is_empty() || !b.iter().all(|&c| is_lower_alnum(c) || c == b'-') {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    // Go's letter regex is unanchored: any a-z anywhere satisfies it.
    if !b.iter().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if b.first() == Some(&b'-') || b.last() == Some(&b'-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Env var name rule as enforced by the API server today: IsRelaxedEnvVarName.
/// The RelaxedEnvironmentVariableValidation gate went alpha 1.30, beta
/// (default on) 1.32 and GA + locked on in 1.34, so pod validation always
/// uses this rule now: any printable ASCII (0x20..=0x7E) except '='.
pub fn is_env_var_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.is_empty() {
        errs.push(format!("environment variable name {EMPTY_ERROR}"));
    }
    if value.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(RELAXED_ENV_VAR_NAME_ERR.to_string());
    }
    errs
}

/// Go's IsEnvVarName: the strict rule pod validation used when the relaxed
/// gate was off (<= 1.33 with the gate disabled). Kept for callers that must
/// reproduce that older behaviour; not used by anything in this module.
pub fn is_env_var_name_legacy(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let ok_rest = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_');
    let ok =
        matches!(b.first(), Some(c) if !c.is_ascii_digit() && ok_rest(c)) && b.iter().all(ok_rest);
    let mut errs = Vec::new();
    if !ok {
        let ex = ["my.env-name", "MY_ENV.NAME", "MyEnvName1"];
        errs.push(regex_error(ENV_VAR_NAME_ERR, ENV_VAR_NAME_FMT, &ex));
    }
    // hasChDirPrefix: such names are path-like and dangerous as file keys.
    match value {
        "." => errs.push("must not be '.'".into()),
        ".." => errs.push("must not be '..'".into()),
        v if v.starts_with("..") => errs.push("must not start with '..'".into()),
        _ => {}
    }
    errs
}

// ---------------------------------------------------------------------------
// Object names (api/validation/generic.go)
// ---------------------------------------------------------------------------

/// Which ValidateNameFunc a resource uses for metadata.name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// NameIsDNSSubdomain: most resources (pods, configmaps, ...).
    Dns1123Subdomain,
    /// NameIsDNSLabel: namespaces and a few others.
    Dns1123Label,
    /// NameIsDNS1035Label: services and other names used as DNS/env prefixes.
    Dns1035Label,
    /// ValidatePathSegmentName: RBAC objects, whose names (`system:node`) only have to be
    /// usable as one URL path segment.
    PathSegment,
}

/// NameIsDNSSubdomain / NameIsDNSLabel / NameIsDNS1035Label. `prefix` is true
/// when validating a generateName, which may end in '-' because random
/// characters will be appended.
pub fn name_is_valid(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let mut v = name.as_bytes();
    if prefix && v.len() > 1 && v.ends_with(b"-") {
        // maskTrailingDash quirk reproduced exactly: Go's
        // `name[:len(name)-2] + "a"` drops the byte *before* the dash too.
        let mut m = v[..v.len() - 2].to_vec();
        m.push(b'a');
        masked = m;
        v = &masked;
    }
    match rule {
        NameRule::Dns1123Subdomain => dns1123_subdomain_bytes(v, max_len_error),
        NameRule::Dns1123Label => dns1123_label_bytes(v),
        NameRule::Dns1035Label => dns1035_label_bytes(v),
        NameRule::PathSegment => path_segment_name(name, prefix),
    }
}

/// IsValidPathSegmentName (and its prefix form for generateName), with apimachinery's words.
fn path_segment_name(name: &str, prefix: bool) -> Vec<String> {
    let mut errors = Vec::new();
    if !prefix && (name == "." || name == "..") {
        errors.push(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            errors.push(format!("may not contain '{bad}'"));
        }
    }
    errors
}

// ---------------------------------------------------------------------------
// field.Error equivalent
// ---------------------------------------------------------------------------

/// Subset of field.ErrorType that these validators can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    TooLong,
}

/// field.Error with a string BadValue. `value` is kept raw for programmatic
/// use; it is only ever rendered through `go_quote`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    pub value: String,
    pub detail: String,
}

impl FieldError {
    fn invalid(field: &str, value: &str, detail: String) -> Self {
        Self {
            kind: ErrorType::Invalid,
            field: field.into(),
            value: value.into(),
            detail,
        }
    }
    fn required(field: &str, detail: &str) -> Self {
        Self {
            kind: ErrorType::Required,
            field: field.into(),
            value: String::new(),
            detail: detail.into(),
        }
    }
}

/// Matches Go's `(*field.Error).Error()`: `<field>: <body>[: <detail>]`.
/// Required/TooLong omit the value; Invalid shows it with %q.
impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorType::Required => write!(f, "{}: Required value", self.field)?,
            ErrorType::TooLong => write!(f, "{}: Too long", self.field)?,
            ErrorType::Invalid => write!(
                f,
                "{}: Invalid value: {}",
                self.field,
                go_quote(&self.value)
            )?,
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldError {}

/// metadata.name check as in ValidateObjectMetaAccessor. `field_path` is the
/// path of the name field itself, e.g. "metadata.name".
pub fn validate_object_name(field_path: &str, name: &str, rule: NameRule) -> Vec<FieldError> {
    if name.is_empty() {
        return vec![FieldError::required(
            field_path,
            "name or generateName is required",
        )];
    }
    let msgs = name_is_valid(rule, name, false);
    msgs.into_iter()
        .map(|m| FieldError::invalid(field_path, name, m))
        .collect()
}

/// metadata.namespace check for namespaced objects (validateObjectMeta...
/// Common): empty is Required with no detail, else ValidateNamespaceName,
/// which is NameIsDNSLabel.
pub fn validate_namespace_name(field_path: &str, namespace: &str) -> Vec<FieldError> {
    if namespace.is_empty() {
        return vec![FieldError::required(field_path, "")];
    }
    let msgs = name_is_valid(NameRule::Dns1123Label, namespace, false);
    msgs.into_iter()
        .map(|m| FieldError::invalid(field_path, namespace, m))
        .collect()
}

/// metav1validation.ValidateLabels. As in Go, every error carries the bare
/// `field_path` (no `[key]` suffix); key errors show the key as the value,
/// value errors show only the label value. Go iterates a map (random order);
/// BTreeMap gives a deterministic, sorted order instead.
pub fn validate_labels(field_path: &str, labels: &BTreeMap<String, String>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        errs.extend(
            is_qualified_name(k)
                .into_iter()
                .map(|m| FieldError::invalid(field_path, k, m)),
        );
        errs.extend(
            is_valid_label_value(v)
                .into_iter()
                .map(|m| FieldError::invalid(field_path, v, m)),
        );
    }
    errs
}

/// apimachinery ValidateAnnotations: keys are qualified names compared
/// case-insensitively (lowercased first, error shows the original key), and
/// keys+values together must fit in 256 KiB.
pub fn validate_annotations(
    field_path: &str,
    annotations: &BTreeMap<String, String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total: usize = 0;
    for (k, v) in annotations {
        let lowered = go_to_lower(k);
        errs.extend(
            is_qualified_name(&lowered)
                .into_iter()
                .map(|m| FieldError::invalid(field_path, k, m)),
        );
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        // field.TooLong: the (huge) value is deliberately never echoed.
        errs.push(FieldError {
            kind: ErrorType::TooLong,
            field: field_path.into(),
            value: "<value omitted>".into(),
            detail: format!("may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT_B} bytes"),
        });
    }
    errs
}

/// Go's strings.ToLower uses *simple* per-rune case mapping; Rust's full
/// mapping differs for U+0130 'İ' ("i\u{307}" vs Go's "i"). That matters:
/// Go accepts annotation key "İ" (→ "i") and "K" (KELVIN SIGN → "k"), so we
/// must too. char::to_lowercase applies no context rules (unlike
/// str::to_lowercase's final-sigma handling), matching Go elsewhere.
fn go_to_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Go %q
// ---------------------------------------------------------------------------

/// strconv.Quote: keeps printable Unicode as-is, escapes everything else, so
/// a hostile value can never inject a newline, ANSI escape or bidi override
/// into a log line or error message.
///
/// Divergence: Go's IsPrint uses full Unicode tables and also escapes
/// *unassigned* code points; without tables we only escape the known
/// non-printable classes (Cc, Cf, Zs/Zl/Zp except ' ', Co, noncharacters).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Approximation of unicode.IsPrint (see go_quote for the gap).
pub fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let u = c as u32;
    let non_print = c.is_control()
        || c.is_whitespace() // Zs/Zl/Zp (and ASCII ws, already handled)
        || matches!(u,
            // Cf (format): soft hyphen, Arabic marks, ZW*, bidi controls, BOM, tags...
            0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
            | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
            | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
            // Co (private use) and Cn noncharacters
            | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF | 0xFDD0..=0xFDEF)
        || (u & 0xFFFE) == 0xFFFE;
    !non_print
}

// ---------------------------------------------------------------------------
// keel's use: the first error as (field path, message), as manifests report them
// ---------------------------------------------------------------------------

/// The first of `errors` as keel's (field path, message) pair; the message is what follows
/// the field in Kubernetes' text (`Invalid value: "x": …`).
pub fn first_error(errors: Vec<FieldError>) -> Result<(), (String, String)> {
    match errors.into_iter().next() {
        None => Ok(()),
        Some(error) => {
            let text = error.to_string();
            let message = text
                .strip_prefix(&format!("{}: ", error.field))
                .unwrap_or(&text)
                .to_owned();
            Err((error.field, message))
        }
    }
}

/// `metadata.name` by `rule`, `metadata.namespace` and `metadata.labels` as the API server
/// checks them.
pub fn check_metadata(
    meta: &crate::meta::ObjectMeta,
    rule: NameRule,
) -> Result<(), (String, String)> {
    let mut errors = validate_object_name("metadata.name", &meta.name, rule);
    if let Some(namespace) = &meta.namespace {
        errors.extend(validate_namespace_name("metadata.namespace", namespace));
    }
    errors.extend(validate_labels("metadata.labels", &meta.labels));
    first_error(errors)
}

/// An RFC 1123 label (pod and container names, hostnames, volume names), reported at `field`
/// with Kubernetes' words.
pub fn check_dns_label(field: &str, value: &str) -> Result<(), (String, String)> {
    check(field, value, is_dns1123_label(value))
}

/// A value checked by one of the `is_*` functions, reported at `field`.
pub fn check(field: &str, value: &str, messages: Vec<String>) -> Result<(), (String, String)> {
    first_error(
        messages
            .into_iter()
            .map(|m| FieldError::invalid(field, value, m))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
