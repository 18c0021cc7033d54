//! keel's model from the `k8s-openapi` wire types: one explicit conversion per kind, field by
//! field. A value the model cannot hold (a port of 0, a clusterIP that is not IPv4, an unknown
//! protocol) is refused with the field's path, in Kubernetes' words; a field the wire type
//! leaves empty gets the model's default here, by name, not by a serde default.
//!
//! What the model does not hold the conversion reads past; it stays on the wire object. Of a
//! Pod, [`pod_fields`] names those fields, for the manifest's warnings.

use std::{collections::BTreeMap, num::NonZeroU16};

use k8s_openapi::apimachinery::pkg::{
    apis::meta::v1::ObjectMeta as WireMeta, util::intstr::IntOrString as WireIntOrString,
};

use crate::{
    meta::ObjectMeta,
    service::{IntOrString, Protocol},
    validation::go_quote,
};

pub mod endpoint_slice;
pub mod pod;
pub mod pod_fields;
pub mod service;
pub mod volume;

/// A wire value keel's model refuses: the field's path (`spec.ports[1].port`) and why, in
/// the words Kubernetes' validation uses after the path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConvertError {
    pub field: String,
    pub message: String,
}

impl ConvertError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConvertError {
            field: field.into(),
            message: message.into(),
        }
    }

    fn required(field: impl Into<String>) -> Self {
        Self::new(field, "Required value")
    }

    fn unsupported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let supported: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        Self::new(
            field,
            format!(
                "Unsupported value: {}: supported values: {}",
                go_quote(value),
                supported.join(", ")
            ),
        )
    }
}

pub type Result<T> = std::result::Result<T, ConvertError>;

/// `metadata`: the name (empty when absent: validation names it required), the namespace
/// and the labels. The rest (annotations, uid, owners…) stays on the wire object.
pub(crate) fn meta(wire: &WireMeta) -> ObjectMeta {
    ObjectMeta {
        name: wire.name.clone().unwrap_or_default(),
        namespace: wire.namespace.clone(),
        labels: wire.labels.clone().unwrap_or_default(),
    }
}

/// A port number: 1..=65535, as Kubernetes' `IsValidPortNum`.
pub(crate) fn port(field: &str, value: i32) -> Result<NonZeroU16> {
    u16::try_from(value)
        .ok()
        .and_then(NonZeroU16::new)
        .ok_or_else(|| {
            ConvertError::new(
                field,
                format!("Invalid value: {value}: must be between 1 and 65535, inclusive"),
            )
        })
}

/// A non-negative `int32` count or duration that keel holds as `u32`.
pub(crate) fn non_negative(field: &str, value: i32) -> Result<u32> {
    u32::try_from(value).map_err(|_| {
        ConvertError::new(
            field,
            format!("Invalid value: {value}: must be greater than or equal to 0"),
        )
    })
}

/// `protocol`: `TCP` when absent or empty, as Kubernetes defaults it.
pub(crate) fn protocol(field: &str, value: Option<&str>) -> Result<Protocol> {
    match value.unwrap_or_default() {
        "" | "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        other => Err(ConvertError::unsupported(
            field,
            other,
            &["SCTP", "TCP", "UDP"],
        )),
    }
}

/// A port by number (1..=65535) or by name.
pub(crate) fn int_or_string(field: &str, value: &WireIntOrString) -> Result<IntOrString> {
    match value {
        WireIntOrString::Int(n) => port(field, *n).map(IntOrString::Int),
        WireIntOrString::String(name) => Ok(IntOrString::String(name.clone())),
    }
}

/// One of `variants` (`(wire spelling, model value)`), or `default` when absent or empty.
pub(crate) fn enumerated<T: Copy>(
    field: &str,
    value: Option<&str>,
    default: T,
    variants: &[(&str, T)],
) -> Result<T> {
    let value = value.unwrap_or_default();
    if value.is_empty() {
        return Ok(default);
    }
    variants
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let mut names: Vec<&str> = variants.iter().map(|(name, _)| *name).collect();
            names.sort_unstable();
            ConvertError::unsupported(field, value, &names)
        })
}

/// An optional map, empty when absent.
pub(crate) fn map(value: &Option<BTreeMap<String, String>>) -> BTreeMap<String, String> {
    value.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests;
