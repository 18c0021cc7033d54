use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequestCondition, CertificateSigningRequestSpec,
    CertificateSigningRequestStatus,
};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

use super::*;

// Requests with several O values, as users make them (rcgen writes one value per attribute).
/// `openssl req -new -newkey ec -subj /CN=alice/O=dev/O=ops`.
const ALICE_DEV_OPS: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHnMIGOAgEAMCwxDjAMBgNVBAMMBWFsaWNlMQwwCgYDVQQKDANkZXYxDDAKBgNV
BAoMA29wczBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABKd4VN3sdPaqjBDoxvX/
rl1LDA3bQdYfGoVELBi4zvwc06kLNO7SMOwiGfoApcQuDImSxpSpaKS7YHPWCgOq
dNSgADAKBggqhkjOPQQDAgNIADBFAiBMpVm0x0Dq6XblUh/1tXHwxYVn7tTG6A9V
LeSgmBVoXAIhAJhYc8pmS122zXUyYwnYgaoPNc5Wn9WloBvZqwCJhpRe
-----END CERTIFICATE REQUEST-----
";

/// `openssl req -new -newkey ec -subj /CN=mallory/O=dev/O=system:masters`.
const MALLORY_DEV_MASTERS: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIH0MIGbAgEAMDkxEDAOBgNVBAMMB21hbGxvcnkxDDAKBgNVBAoMA2RldjEXMBUG
A1UECgwOc3lzdGVtOm1hc3RlcnMwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATk
i2060/E3dhLPvkptc2mJMfuyrra0NnpphGs1ICHzXkKAkQ8h/KgR/hHAaAHmcF0Z
i6W5t3lv5vWDdqawYjwYoAAwCgYIKoZIzj0EAwIDSAAwRQIhAKyhL6L4EBZqfqXD
r0MLwe4HqgfPyhH1qcwVyUPf3stfAiB+/E0jHjVDzuy7q+9Kf2XcLqKGGeQ8rXJ9
qPu+7KT3Nw==
-----END CERTIFICATE REQUEST-----
";

/// `openssl req -new -newkey ec -subj /CN=system:node:n1/O=system:nodes/O=dev`.
const NODE_AND_DEV: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIH4MIGgAgEAMD4xFzAVBgNVBAMMDnN5c3RlbTpub2RlOm4xMRUwEwYDVQQKDAxz
eXN0ZW06bm9kZXMxDDAKBgNVBAoMA2RldjBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABOgBKj35PAqcNQvuIXa5lOerBILyyg5Z0wubSC9iummEteULtcKTEC3QrOXP
9wIauLG8KhY05K+0/7rKDflyTbagADAKBggqhkjOPQQDAgNHADBEAiAcMWcDMu/g
P+ZhFNFLd9S8dD8ez2gM/VEie8KLFbGFBwIgIjAc81affTyCF7yRiTrf8UYnA9II
NKHn97dQGdLiuhI=
-----END CERTIFICATE REQUEST-----
";

/// `openssl req -new -newkey ec -subj /CN=alice/CN=bob/O=dev`.
const ALICE_AND_BOB: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHmMIGOAgEAMCwxDjAMBgNVBAMMBWFsaWNlMQwwCgYDVQQDDANib2IxDDAKBgNV
BAoMA2RldjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABME4U7fyengMDmn4M6nd
loPyB4kWsbPYYAAZI85Z7aJDLUBqfpdMJJdMAnJgVznIgBPIK8tI3Vuh8fZEbMmG
geigADAKBggqhkjOPQQDAgNHADBEAiB/YGNsbbzhCj0hmhb1JWP57v698R81dJk9
ij6UoCEZNwIgF238ch9AN/tazs3v5MI/CVq2OUrvvoGsQ+J6Vv6spoQ=
-----END CERTIFICATE REQUEST-----
";

/// `openssl req -new -newkey ec -subj /CN=alice/OU=eng/O=dev/O=ops/OU=sre`.
const ALICE_OUS_AND_OS: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIIBAjCBqgIBADBIMQ4wDAYDVQQDDAVhbGljZTEMMAoGA1UECwwDZW5nMQwwCgYD
VQQKDANkZXYxDDAKBgNVBAoMA29wczEMMAoGA1UECwwDc3JlMFkwEwYHKoZIzj0C
AQYIKoZIzj0DAQcDQgAELbnA2QQ79nOTk57QGwZ05/amIl/MKGXzeYlcK0HXd4jb
T3xF3OEFvgbiC80gfS0KKFRZjPhQFpkJPlYD8KTo7aAAMAoGCCqGSM49BAMCA0cA
MEQCIFBXiNS6kH+gn2euhSzoIaZbaeTmIIaRFwkGSG6dVu1VAiBqn/pT6orNY/bI
ZObIIGhsaQksuQc9tgctOdDrFmdmmA==
-----END CERTIFICATE REQUEST-----
";

/// A PEM request with this CN, these O values (rcgen keeps the last one only: several come
/// from the OpenSSL requests above) and DNS names.
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

#[test]
fn every_group_of_a_request_counts() {
    let year = Duration::from_secs(365 * 24 * 3600);
    let client = |pem: &str| {
        with_condition(
            request(
                pem.as_bytes().to_vec(),
                API_SERVER_CLIENT_SIGNER,
                &["digital signature", "client auth"],
                "alice",
            ),
            "Approved",
        )
    };
    // Several groups, and other attributes repeated around them: issued, subject whole.
    for pem in [ALICE_DEV_OPS, ALICE_OUS_AND_OS] {
        assert_eq!(
            signing(&client(pem), year),
            Decision::Sign { duration: year }
        );
    }
    // system:masters as the second group is still system:masters.
    match signing(&client(MALLORY_DEV_MASTERS), year) {
        Decision::Fail { message, .. } => assert!(message.contains("system:masters"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Two common names: which is the user depends on the reader.
    match signing(&client(ALICE_AND_BOB), year) {
        Decision::Fail { message, .. } => assert!(message.contains("common name"), "{message}"),
        other => panic!("{other:?}"),
    }
    // A kubelet is in system:nodes and nothing else.
    let node = request(
        NODE_AND_DEV.as_bytes().to_vec(),
        KUBELET_CLIENT_SIGNER,
        &["digital signature", "client auth"],
        "system:bootstrap:abcdef",
    );
    let error = node_client_request(&node).expect_err("refused");
    assert!(error.contains("organization"), "{error}");
    assert!(matches!(
        signing(&with_condition(node, "Approved"), year),
        Decision::Fail { .. }
    ));
}
