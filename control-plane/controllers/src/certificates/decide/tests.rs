use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use super::*;

/// A PEM request with this CN, these O values and DNS names.
fn pem(cn: &str, orgs: &[&str], dns: &[&str]) -> Vec<u8> {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    for org in orgs {
        name.push(DnType::OrganizationName, *org);
    }
    params.distinguished_name = name;
    for d in dns {
        params
            .subject_alt_names
            .push(SanType::DnsName((*d).try_into().expect("dns")));
    }
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
        .into_bytes()
}

fn request(
    pem: Vec<u8>,
    signer: &str,
    usages: &[&str],
    requester: &str,
) -> CertificateSigningRequest {
    CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(pem),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            username: Some(requester.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn node_request(requester: &str) -> CertificateSigningRequest {
    request(
        pem("system:node:n1", &["system:nodes"], &[]),
        KUBELET_CLIENT_SIGNER,
        &["digital signature", "client auth"],
        requester,
    )
}

fn with_condition(mut request: CertificateSigningRequest, kind: &str) -> CertificateSigningRequest {
    let status = request
        .status
        .get_or_insert_with(CertificateSigningRequestStatus::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: kind.into(),
            status: "True".into(),
            ..Default::default()
        });
    request
}

#[test]
fn a_join_token_asks_for_a_new_node_and_a_node_renews_its_own() {
    assert_eq!(
        node_client_request(&node_request("system:bootstrap:abcdef")),
        Ok(NodeClientRequest::New)
    );
    assert_eq!(
        node_client_request(&node_request("system:node:n1")),
        Ok(NodeClientRequest::Renewal)
    );
    // Another node asking for n1's certificate is not a renewal: it needs `nodeclient`.
    assert_eq!(
        node_client_request(&node_request("system:node:n2")),
        Ok(NodeClientRequest::New)
    );
    let rsa = request(
        pem("system:node:n1", &["system:nodes"], &[]),
        KUBELET_CLIENT_SIGNER,
        &["digital signature", "key encipherment", "client auth"],
        "system:bootstrap:abcdef",
    );
    assert!(node_client_request(&rsa).is_ok());
}

#[test]
fn anything_but_a_kubelets_request_is_left_for_a_person() {
    let cases = [
        (
            pem("system:node:n1", &["system:masters"], &[]),
            "organization",
        ),
        (pem("system:node:n1", &[], &[]), "organization"),
        (pem("admin", &["system:nodes"], &[]), "common name"),
        (pem("system:node:", &["system:nodes"], &[]), "common name"),
        (
            pem("system:node:n1", &["system:nodes"], &["evil.example"]),
            "subjectAltNames",
        ),
    ];
    for (pem, words) in cases {
        let request = request(
            pem,
            KUBELET_CLIENT_SIGNER,
            &["digital signature", "client auth"],
            "system:bootstrap:abcdef",
        );
        let error = node_client_request(&request).expect_err(words);
        assert!(error.contains(words), "{words}: {error}");
    }
    let server_auth = request(
        pem("system:node:n1", &["system:nodes"], &[]),
        KUBELET_CLIENT_SIGNER,
        &["digital signature", "client auth", "server auth"],
        "system:bootstrap:abcdef",
    );
    assert!(node_client_request(&server_auth)
        .unwrap_err()
        .contains("usages"));
    let other_signer = request(
        pem("system:node:n1", &["system:nodes"], &[]),
        "example.com/signer",
        &["digital signature", "client auth"],
        "system:bootstrap:abcdef",
    );
    assert!(node_client_request(&other_signer).is_err());
    let mut garbage = node_request("system:bootstrap:abcdef");
    garbage.spec.request = k8s_openapi::ByteString(b"-----BEGIN NOTHING-----\n".to_vec());
    assert!(node_client_request(&garbage).is_err());
    assert!(!is_decided(&node_request("x")));
    assert!(is_decided(&with_condition(node_request("x"), "Denied")));
}

#[test]
fn the_signer_issues_approved_requests_of_its_signers_only() {
    let year = Duration::from_secs(365 * 24 * 3600);
    assert_eq!(
        signing(&node_request("x"), year),
        Decision::Skip,
        "not approved"
    );
    let approved = with_condition(node_request("x"), "Approved");
    assert_eq!(signing(&approved, year), Decision::Sign { duration: year });
    let mut short = approved.clone();
    short.spec.expiration_seconds = Some(3600);
    assert_eq!(
        signing(&short, year),
        Decision::Sign {
            duration: Duration::from_secs(3600)
        }
    );
    let mut long = approved.clone();
    long.spec.expiration_seconds = Some(i32::MAX);
    assert_eq!(
        signing(&long, year),
        Decision::Sign { duration: year },
        "capped"
    );
    assert_eq!(
        signing(&with_condition(approved.clone(), "Failed"), year),
        Decision::Skip
    );
    let mut issued = approved.clone();
    if let Some(status) = issued.status.as_mut() {
        status.certificate = Some(k8s_openapi::ByteString(b"cert".to_vec()));
    }
    assert_eq!(signing(&issued, year), Decision::Skip);
    let mut other = approved.clone();
    other.spec.signer_name = "example.com/signer".into();
    assert_eq!(signing(&other, year), Decision::Skip, "another signer's");

    // Approved by hand, but not a kubelet's request: Failed, never issued.
    let mut masquerade = with_condition(
        request(
            pem("admin", &["system:nodes"], &[]),
            KUBELET_CLIENT_SIGNER,
            &["digital signature", "client auth"],
            "system:bootstrap:abcdef",
        ),
        "Approved",
    );
    assert!(matches!(
        signing(&masquerade, year),
        Decision::Fail {
            reason: "SignerValidationFailure",
            ..
        }
    ));
    masquerade.spec.signer_name = API_SERVER_CLIENT_SIGNER.into();
    assert!(
        matches!(signing(&masquerade, year), Decision::Sign { .. }),
        "a client certificate for admin"
    );
    let masters = with_condition(
        request(
            pem("mallory", &["system:masters"], &[]),
            API_SERVER_CLIENT_SIGNER,
            &["client auth"],
            "mallory",
        ),
        "Approved",
    );
    assert!(matches!(signing(&masters, year), Decision::Fail { .. }));
    let server = with_condition(
        request(
            pem("alice", &["dev"], &[]),
            API_SERVER_CLIENT_SIGNER,
            &["client auth", "server auth"],
            "alice",
        ),
        "Approved",
    );
    assert!(matches!(signing(&server, year), Decision::Fail { .. }));
}
