//! The configuration's errors, worded as Kubernetes words them: `field.Error`'s
//! `<path>: <Type>: <value>: <detail>`, the strict decoder's `unknown field "<path>"`, and
//! `utilerrors.Aggregate`'s `[first, second]` when there are several.

use std::fmt;

use keel_api::validation::go_quote;

/// What is wrong with a field (apimachinery's `field.ErrorType`, plus the strict decoder's
/// unknown field and a plugin's own refusal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `Required value`: the field must be set.
    Required,
    /// `Invalid value`: the value breaks a rule (or is of the wrong type).
    Invalid,
    /// `Unsupported value`: the value is not one of a closed set.
    NotSupported,
    /// `Duplicate value`: the value already appeared where it must be unique.
    Duplicate,
    /// `Forbidden`: the field may not be set (here mostly: kube has it, keel does not).
    Forbidden,
    /// The strict decoder's `unknown field "<path>"`: no such field in the schema.
    Unknown,
    /// A plugin refused its arguments: `<path>: <the plugin's message>`.
    Plugin,
}

/// One error, at the field path Kubernetes would name
/// (`profiles[0].plugins.score.enabled[2].name`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub kind: ErrorKind,
    /// The offending value as Go's `field.Error` prints it (strings quoted, numbers bare);
    /// empty for the kinds that print none.
    pub value: String,
    pub detail: String,
}

impl FieldError {
    pub(crate) fn new(
        kind: ErrorKind,
        field: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> FieldError {
        FieldError {
            field: field.into(),
            kind,
            value: value.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn required(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError::new(ErrorKind::Required, field, "", detail)
    }

    /// `value` is already rendered (see [`quote`] and [`number`]).
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> FieldError {
        FieldError::new(ErrorKind::Invalid, field, value, detail)
    }

    /// `field.NotSupported`: the detail lists the supported values, each quoted.
    pub(crate) fn not_supported<S: AsRef<str>>(
        field: impl Into<String>,
        value: &str,
        supported: &[S],
    ) -> FieldError {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s.as_ref())).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError::new(ErrorKind::NotSupported, field, go_quote(value), detail)
    }

    pub(crate) fn duplicate(field: impl Into<String>, value: &str) -> FieldError {
        FieldError::new(ErrorKind::Duplicate, field, go_quote(value), "")
    }

    pub(crate) fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError::new(ErrorKind::Forbidden, field, "", detail)
    }

    pub(crate) fn unknown(field: impl Into<String>) -> FieldError {
        FieldError::new(ErrorKind::Unknown, field, "", "")
    }

    pub(crate) fn plugin(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError::new(ErrorKind::Plugin, field, "", detail)
    }
}

/// A string value as `field.Error` prints it (`%q`).
pub(crate) fn quote(value: &str) -> String {
    go_quote(value)
}

/// An integer value as `field.Error` prints it (`%v`).
pub(crate) fn number(value: impl fmt::Display) -> String {
    value.to_string()
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        match self.kind {
            ErrorKind::Required => write!(f, "{field}: Required value")?,
            ErrorKind::Invalid => write!(f, "{field}: Invalid value: {}", self.value)?,
            ErrorKind::NotSupported => write!(f, "{field}: Unsupported value: {}", self.value)?,
            ErrorKind::Duplicate => write!(f, "{field}: Duplicate value: {}", self.value)?,
            ErrorKind::Forbidden => write!(f, "{field}: Forbidden")?,
            // The strict decoder's own words; it has no detail.
            ErrorKind::Unknown => return write!(f, "unknown field {}", go_quote(field)),
            ErrorKind::Plugin => return write!(f, "{field}: {}", self.detail),
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldError {}

/// Every error found in one pass, as `utilerrors.Aggregate` prints them: one alone, several
/// bracketed and comma-separated, each distinct message once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut messages: Vec<String> = Vec::with_capacity(self.0.len());
        for error in &self.0 {
            let message = error.to_string();
            if !messages.contains(&message) {
                messages.push(message);
            }
        }
        match messages.as_slice() {
            [one] => f.write_str(one),
            many => write!(f, "[{}]", many.join(", ")),
        }
    }
}

/// Why a scheduler configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file is not UTF-8 (YAML and JSON both must be).
    #[error("the scheduler configuration is not UTF-8: invalid byte at offset {valid_up_to}")]
    NotUtf8 { valid_up_to: usize },
    /// The text is not YAML or JSON; `line` and `column` are 1-based, when the parser knows them
    /// (the message then ends with them too).
    #[error("malformed scheduler configuration: {message}")]
    Syntax {
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// The document is YAML or JSON but not an object (empty, a list, a scalar).
    #[error(
        "the scheduler configuration must be a KubeSchedulerConfiguration object, not {found}"
    )]
    NotAnObject { found: &'static str },
    /// Fields that do not decode or do not validate, each at its path.
    #[error("{0}")]
    Invalid(FieldErrors),
}

impl ConfigError {
    /// The field errors, empty for the errors that precede decoding.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Invalid(errors) => &errors.0,
            _ => &[],
        }
    }
}

/// The errors of a phase, refused as a whole when any.
pub(crate) fn check(errors: Vec<FieldError>) -> Result<(), ConfigError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(FieldErrors(errors)))
    }
}
