//! What the approver and the signer decide about a request, from the request alone.
//!
//! The API server already checked the request's signature; what is read here is its subject,
//! its alternative names and its usages, against what each signer may issue.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const API_SERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
const NODE_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";

/// Whose request a node client request is (kube's two recognizers).
#[derive(Debug, PartialEq, Eq)]
pub enum NodeClientRequest {
    /// Someone else (a join token) asks for a node's certificate: `nodeclient`.
    New,
    /// A node asks for its own (a renewal): `selfnodeclient`.
    Renewal,
}

/// What the signer does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not approved, denied, failed, already issued, or another signer's.
    Skip,
    /// Approved but not a request this signer may issue: a Failed condition.
    Fail {
        reason: &'static str,
        message: String,
    },
    Sign {
        duration: Duration,
    },
}

fn condition_true(request: &CertificateSigningRequest, kind: &str) -> bool {
    request
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// Approved or denied already: the approver has nothing to add.
pub fn is_decided(request: &CertificateSigningRequest) -> bool {
    condition_true(request, "Approved") || condition_true(request, "Denied")
}

/// The subject's values of one attribute (CN, O), in order; an unreadable value is an error.
fn values<'a>(
    of: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Result<Vec<String>, String> {
    of.map(|value| {
        value
            .as_str()
            .map(str::to_owned)
            .map_err(|_| "a subject attribute is not a string".to_owned())
    })
    .collect()
}

/// The parts of a request the signers judge.
struct Parsed {
    common_names: Vec<String>,
    organizations: Vec<String>,
    /// Attribute types that appear more than once besides O (which may): a kubelet's
    /// subject is `CN=system:node:<name>, O=system:nodes` and nothing more.
    repeated_attributes: bool,
    alternative_names: usize,
}

fn parse(request: &CertificateSigningRequest) -> Result<Parsed, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(&request.spec.request.0)
        .map_err(|_| "the request is not PEM".to_owned())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let (_, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("the request does not parse: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let common_names = values(subject.iter_common_name())?;
    let organizations = values(subject.iter_organization())?;
    let mut types = BTreeSet::new();
    let mut repeated_attributes = false;
    for attribute in subject.iter_attributes() {
        let oid = attribute.attr_type().to_id_string();
        if !types.insert(oid.clone()) && oid != "2.5.4.10" {
            repeated_attributes = true;
        }
    }
    let mut alternative_names = 0;
    if let Some(extensions) = csr.requested_extensions() {
        for extension in extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = extension {
                alternative_names += san.general_names.len();
            }
        }
    }
    Ok(Parsed {
        common_names,
        organizations,
        repeated_attributes,
        alternative_names,
    })
}

fn usages(request: &CertificateSigningRequest) -> BTreeSet<&str> {
    request
        .spec
        .usages
        .iter()
        .flatten()
        .map(String::as_str)
        .collect()
}

/// kube's `ValidateKubeletClientCSR`: `O=system:nodes` alone, `CN=system:node:<name>`, no
/// alternative names, and the usages a kubelet asks for (with or without key encipherment,
/// which an ECDSA key cannot do). The node's name on success.
fn kubelet_client(request: &CertificateSigningRequest) -> Result<String, String> {
    let parsed = parse(request)?;
    if parsed.organizations != [NODES_GROUP] {
        return Err(format!("subject organization is not {NODES_GROUP}"));
    }
    if parsed.alternative_names > 0 {
        return Err("DNS, email, IP and URI subjectAltNames are not allowed".into());
    }
    let [common_name] = parsed.common_names.as_slice() else {
        return Err("the subject must have exactly one common name".into());
    };
    let node = common_name
        .strip_prefix(NODE_PREFIX)
        .filter(|node| !node.is_empty())
        .ok_or_else(|| format!("subject common name does not begin with {NODE_PREFIX}"))?;
    if parsed.repeated_attributes {
        return Err("the subject repeats an attribute".into());
    }
    let asked = usages(request);
    let without_rsa = BTreeSet::from(["digital signature", "client auth"]);
    let with_rsa = BTreeSet::from(["digital signature", "key encipherment", "client auth"]);
    if asked != without_rsa && asked != with_rsa {
        return Err(format!(
            "usages did not match [\"digital signature\" \"client auth\"] or {:?}",
            with_rsa
        ));
    }
    Ok(node.to_owned())
}

/// A well-formed kubelet client request, and whose: the approver's first question.
pub fn node_client_request(
    request: &CertificateSigningRequest,
) -> Result<NodeClientRequest, String> {
    if request.spec.signer_name != KUBELET_CLIENT_SIGNER {
        return Err(format!("signer is {:?}", request.spec.signer_name));
    }
    let node = kubelet_client(request)?;
    let requester = request.spec.username.as_deref().unwrap_or("");
    Ok(if requester == format!("{NODE_PREFIX}{node}") {
        NodeClientRequest::Renewal
    } else {
        NodeClientRequest::New
    })
}

/// kube's `kube-apiserver-client` signer: client auth, no CA usages, no `system:masters`
/// among any of the groups. Any number of groups (O values): the issuer copies the
/// request's subject whole. Exactly one common name, since readers disagree on which of
/// several is the user (keel and x509-parser take the first, Go the last).
fn api_server_client(request: &CertificateSigningRequest) -> Result<(), String> {
    let parsed = parse(request)?;
    if parsed.organizations.iter().any(|o| o == "system:masters") {
        return Err("the system:masters group is not issued by this signer".into());
    }
    if parsed.common_names.len() != 1 {
        return Err("the subject must have exactly one common name".into());
    }
    let allowed = BTreeSet::from(["digital signature", "key encipherment", "client auth"]);
    let asked = usages(request);
    if !asked.contains("client auth") || !asked.is_subset(&allowed) {
        return Err(format!(
            "usages must include \"client auth\" and be within {allowed:?}"
        ));
    }
    Ok(())
}

/// The signer's decision: approved, not denied or failed, not issued, a signer keel serves.
pub fn signing(request: &CertificateSigningRequest, longest: Duration) -> Decision {
    let issued = request
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if !condition_true(request, "Approved")
        || condition_true(request, "Denied")
        || condition_true(request, "Failed")
        || issued
    {
        return Decision::Skip;
    }
    let valid = match request.spec.signer_name.as_str() {
        KUBELET_CLIENT_SIGNER => kubelet_client(request).map(|_| ()),
        API_SERVER_CLIENT_SIGNER => api_server_client(request),
        _ => return Decision::Skip,
    };
    if let Err(message) = valid {
        return Decision::Fail {
            reason: "SignerValidationFailure",
            message,
        };
    }
    let asked = request
        .spec
        .expiration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs);
    Decision::Sign {
        duration: asked.map_or(longest, |asked| asked.min(longest)),
    }
}

#[cfg(test)]
mod tests;
