//! The printers whose cells are a field or a count read straight off the object: namespaces
//! (`printNamespace`), config maps (`printConfigMap`), secrets (`printSecret`), leases
//! (`printLease`) and certificate signing requests (`printCertificateSigningRequest`).

use jiff::Timestamp;
use serde_json::Value;

use super::columns::{Column, Printer, Row, AGE, NAME};
use super::duration::{age, human_duration};
use super::fields::{int_at, items_at, len_at, name, str_at};

pub(super) const NAMESPACES: Printer = Printer {
    columns: &[
        NAME,
        Column::new("Status", "string", "The status of the namespace"),
        AGE,
    ],
    row: namespace_row,
};

pub(super) const CONFIG_MAPS: Printer = Printer {
    columns: &[
        NAME,
        Column::new(
            "Data",
            "string",
            "Data contains the configuration data. Each key must consist of alphanumeric \
             characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the \
             BinaryData field. The keys stored in Data must not overlap with the keys in the \
             BinaryData field, this is enforced during validation process.",
        ),
        AGE,
    ],
    row: config_map_row,
};

pub(super) const SECRETS: Printer = Printer {
    columns: &[
        NAME,
        Column::new(
            "Type",
            "string",
            "Used to facilitate programmatic handling of secret data. More info: \
             https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
        ),
        Column::new(
            "Data",
            "string",
            "Data contains the secret data. Each key must consist of alphanumeric characters, \
             '-', '_' or '.'. The serialized form of the secret data is a base64 encoded \
             string, representing the arbitrary (possibly non-string) data value here. \
             Described in https://tools.ietf.org/html/rfc4648#section-4",
        ),
        AGE,
    ],
    row: secret_row,
};

pub(super) const LEASES: Printer = Printer {
    columns: &[
        NAME,
        Column::new(
            "Holder",
            "string",
            "holderIdentity contains the identity of the holder of a current lease. If \
             Coordinated Leader Election is used, the holder identity must be equal to the \
             elected LeaseCandidate.metadata.name field.",
        ),
        AGE,
    ],
    row: lease_row,
};

fn namespace_row(namespace: &Value, now: Timestamp) -> Row {
    // v1 defaulting makes a namespace without a phase Active.
    let phase = match str_at(namespace, &["status", "phase"]) {
        "" => "Active",
        phase => phase,
    };
    Row::new(vec![
        name(namespace).into(),
        phase.into(),
        age(namespace, now).into(),
    ])
}

fn config_map_row(config_map: &Value, now: Timestamp) -> Row {
    let entries = len_at(config_map, &["data"]).saturating_add(len_at(config_map, &["binaryData"]));
    Row::new(vec![
        name(config_map).into(),
        entries.into(),
        age(config_map, now).into(),
    ])
}

fn secret_row(secret: &Value, now: Timestamp) -> Row {
    // v1 defaulting makes a secret without a type Opaque.
    let kind = match str_at(secret, &["type"]) {
        "" => "Opaque",
        kind => kind,
    };
    Row::new(vec![
        name(secret).into(),
        kind.into(),
        len_at(secret, &["data"]).into(),
        age(secret, now).into(),
    ])
}

fn lease_row(lease: &Value, now: Timestamp) -> Row {
    Row::new(vec![
        name(lease).into(),
        str_at(lease, &["spec", "holderIdentity"]).into(),
        age(lease, now).into(),
    ])
}

pub(super) const CERTIFICATE_SIGNING_REQUESTS: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        Column::new(
            "SignerName",
            "string",
            "Only the specified signer can sign this request.",
        ),
        Column::new(
            "Requestor",
            "string",
            "Name of the user who requested the certificate.",
        ),
        Column::new(
            "RequestedDuration",
            "string",
            "The requested duration of the certificate.",
        ),
        Column::new("Condition", "string", "The state of the request."),
    ],
    row: certificate_signing_request_row,
};

/// kube's `extractCSRStatus`: Approved or Denied (or Pending), `,Issued` once signed,
/// `,Failed` when the signer gave up.
fn csr_condition(csr: &Value) -> String {
    let holds = |kind: &str| {
        items_at(csr, &["status", "conditions"])
            .iter()
            .any(|c| str_at(c, &["type"]) == kind && str_at(c, &["status"]) == "True")
    };
    let mut state = if holds("Denied") {
        "Denied".to_owned()
    } else if holds("Approved") {
        "Approved".to_owned()
    } else {
        "Pending".to_owned()
    };
    if holds("Failed") {
        state.push_str(",Failed");
    }
    if !str_at(csr, &["status", "certificate"]).is_empty() {
        state.push_str(",Issued");
    }
    state
}

fn certificate_signing_request_row(csr: &Value, now: Timestamp) -> Row {
    let duration = match int_at(csr, &["spec", "expirationSeconds"]) {
        Some(seconds) => human_duration(seconds.saturating_mul(1_000_000_000)),
        None => "<none>".to_owned(),
    };
    Row::new(vec![
        name(csr).into(),
        age(csr, now).into(),
        str_at(csr, &["spec", "signerName"]).into(),
        str_at(csr, &["spec", "username"]).into(),
        duration.into(),
        csr_condition(csr).into(),
    ])
}
