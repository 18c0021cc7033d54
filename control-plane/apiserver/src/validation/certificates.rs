//! CertificateSigningRequest validation, as kube-apiserver's `ValidateCertificateSigningRequest*`
//! refuses: a request that is not a signed PKCS#10 "CERTIFICATE REQUEST", a signer name that
//! is not `domain/path`, unknown or repeated usages, a duration under ten minutes, approval and
//! denial together, and (on update) an issued certificate changed or a decisive condition taken
//! back. The signature is checked here, once, so an approver and a signer never read a request
//! whose subject the requester could not have signed.

use std::collections::HashSet;

use serde_json::Value;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use super::{text, Errors};
use crate::objects::bytes_of;

/// The key usages a request may ask for (`certificates.KeyUsage`).
pub const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The conditions that decide a request; none may be removed once set, and each is `True`.
const DECISIVE: [&str; 3] = ["Approved", "Denied", "Failed"];
const MIN_EXPIRATION_SECONDS: i64 = 600;

/// Reads a PEM "CERTIFICATE REQUEST" and checks its signature.
fn check_request(pem: &[u8]) -> Result<(), String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|_| "PEM block type must be CERTIFICATE REQUEST".to_owned())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let (_, request) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("not a certificate request: {e}"))?;
    request
        .verify_signature()
        .map_err(|_| "the request's signature does not verify with its own public key".to_owned())
}

/// Every PEM block of an issued certificate chain, each a parseable "CERTIFICATE".
fn check_certificates(pem: &[u8]) -> Result<(), String> {
    let mut rest = pem;
    let mut count = 0;
    while rest.iter().any(|b| !b.is_ascii_whitespace()) {
        let (after, block) = x509_parser::pem::parse_x509_pem(rest)
            .map_err(|e| format!("not PEM after {count} certificate(s): {e}"))?;
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                block.label
            ));
        }
        x509_parser::parse_x509_certificate(&block.contents)
            .map_err(|e| format!("certificate {count} does not parse: {e}"))?;
        count += 1;
        rest = after;
    }
    if count == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

fn signer_path_ok(path: &str) -> bool {
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    alphanumeric(path.chars().next())
        && alphanumeric(path.chars().last())
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn conditions(object: &Value) -> Vec<&Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

fn condition_true(object: &Value, kind: &str) -> bool {
    conditions(object)
        .iter()
        .any(|c| text(c.get("type")) == kind && text(c.get("status")) == "True")
}

pub(super) fn validate(errors: &mut Errors, object: &Value) {
    let spec = object.get("spec");
    match bytes_of(spec.and_then(|s| s.get("request"))) {
        None => errors.required("spec.request"),
        Some(pem) => {
            if let Err(detail) = check_request(&pem) {
                errors.invalid("spec.request", "<request>", &detail);
            }
        }
    }
    let signer = text(spec.and_then(|s| s.get("signerName")));
    if signer.is_empty() {
        errors.required("spec.signerName");
    } else {
        // kube's ValidateSignerName: `domain/path`, the domain a DNS subdomain, the path
        // made of a qualified name's characters (and slashes).
        let shape = signer.split_once('/').filter(|(domain, path)| {
            keel_api::validation::is_dns1123_subdomain(domain).is_empty() && signer_path_ok(path)
        });
        if shape.is_none() || signer.len() > 571 {
            errors.invalid(
                "spec.signerName",
                &signer,
                "must be a fully qualified domain and path of the form 'example.com/signer-name'",
            );
        }
    }
    if let Some(seconds) = spec.and_then(|s| s.get("expirationSeconds")) {
        if seconds.as_i64().is_some_and(|s| s < MIN_EXPIRATION_SECONDS) {
            errors.invalid(
                "spec.expirationSeconds",
                &seconds.to_string(),
                "may not specify a duration less than 600 seconds (10 minutes)",
            );
        }
    }
    let usages = spec
        .and_then(|s| s.get("usages"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if usages.is_empty() {
        errors.required("spec.usages");
    }
    let mut seen = HashSet::new();
    for (i, usage) in usages.iter().enumerate() {
        let usage = text(Some(usage));
        let field = format!("spec.usages[{i}]");
        if !USAGES.contains(&usage.as_str()) {
            errors.unsupported(&field, &usage, USAGES);
        } else if !seen.insert(usage.clone()) {
            errors.duplicate(&field, &usage);
        }
    }
    let mut types = HashSet::new();
    for (i, condition) in conditions(object).iter().enumerate() {
        let kind = text(condition.get("type"));
        let field = format!("status.conditions[{i}]");
        if kind.is_empty() {
            errors.required(&format!("{field}.type"));
            continue;
        }
        let status = text(condition.get("status"));
        if DECISIVE.contains(&kind.as_str()) {
            if !types.insert(kind.clone()) {
                errors.duplicate(&format!("{field}.type"), &kind);
            }
            if status != "True" {
                errors.unsupported(&format!("{field}.status"), &status, &["True"]);
            }
        } else if !["True", "False", "Unknown"].contains(&status.as_str()) {
            errors.unsupported(
                &format!("{field}.status"),
                &status,
                &["True", "False", "Unknown"],
            );
        }
    }
    if condition_true(object, "Approved") && condition_true(object, "Denied") {
        errors.invalid(
            "status.conditions",
            "Approved, Denied",
            "Approved and Denied conditions are mutually exclusive",
        );
    }
    if let Some(certificate) = object.pointer("/status/certificate") {
        match bytes_of(Some(certificate)) {
            Some(pem) if pem.is_empty() => {}
            Some(pem) => {
                if let Err(detail) = check_certificates(&pem) {
                    errors.invalid("status.certificate", "<certificate data>", &detail);
                } else if !condition_true(object, "Approved") || condition_true(object, "Denied") {
                    errors.invalid(
                        "status.certificate",
                        "<certificate data>",
                        "certificate can only be set if the request is approved",
                    );
                }
            }
            None => errors.invalid("status.certificate", "<certificate data>", "must be base64"),
        }
    }
}

/// What an update may not undo: a decisive condition, an issued certificate.
pub(super) fn validate_update(errors: &mut Errors, old: &Value, new: &Value) {
    for kind in DECISIVE {
        if condition_true(old, kind) && !condition_true(new, kind) {
            errors.0.push(crate::status::Cause {
                reason: "FieldValueForbidden",
                message: format!("Forbidden: updates may not remove a condition of type {kind:?}"),
                field: "status.conditions".into(),
            });
        }
    }
    let issued = |object: &Value| {
        object
            .pointer("/status/certificate")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
    };
    if let Some(before) = issued(old) {
        if issued(new).as_deref() != Some(before.as_str()) {
            errors.0.push(crate::status::Cause {
                reason: "FieldValueForbidden",
                message: "Forbidden: updates may not modify a certificate value".into(),
                field: "status.certificate".into(),
            });
        }
    }
}
