//! CertificateSigningRequests driven by the real kubectl, as the Kubernetes documentation's
//! "issue a certificate for a user" does it: a user's request (in two groups) is created,
//! shows `Pending`, `kubectl certificate approve` (a protobuf body) approves it, the signer
//! issues it with both groups, and the certificate authenticates the user in both. A denied
//! request stays unsigned, a decision is not taken back, and nobody gets a `system:masters`
//! certificate from the client signer, even as a second group.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use support::api::{ApiServer, Backend};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A key and a JSON CertificateSigningRequest named `name` for `cn` in the groups `orgs` (one
/// O each, as `openssl req -subj /CN=cn/O=a/O=b` makes them).
fn request(name: &str, cn: &str, orgs: &[&str]) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let orgs: Vec<String> = orgs.iter().map(|o| o.to_string()).collect();
    let pem = keel_apiserver::auth::pki::signing_request(&key, cn, &orgs).expect("a request");
    let object = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": b64(pem.as_bytes()),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "expirationSeconds": 86400,
            "usages": ["client auth"],
        },
    });
    (key, object.to_string())
}

fn ok(server: &ApiServer, args: &[&str]) -> String {
    server.kubectl_ok(args)
}

fn fails(server: &ApiServer, args: &[&str]) -> String {
    let out = server.kubectl(args);
    assert!(!out.status.success(), "kubectl {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn kubectl_approves_a_users_certificate_and_the_signer_issues_it() {
    // The signer without the approver: every decision here is the administrator's.
    let server = ApiServer::start_with_components(
        Backend::Keel,
        &["--disable-scheduler", "--controllers=namespace,csrsigning"],
    );
    let dir = server.dir.path();
    let (key, alice) = request("alice", "alice", &["dev", "ops"]);
    let file = dir.join("alice.json");
    std::fs::write(&file, alice).expect("written");
    let file = file.to_str().expect("utf-8");
    ok(&server, &["create", "-f", file]);
    let table = ok(&server, &["get", "csr"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]
    );
    let row = table.lines().nth(1).unwrap_or("");
    assert!(
        row.contains("kubernetes.io/kube-apiserver-client")
            && row.contains("kubernetes-admin")
            && row.contains("24h")
            && row.ends_with("Pending"),
        "{table}"
    );
    // The requester recorded is the sender, not what the body claimed.
    assert_eq!(
        ok(
            &server,
            &["get", "csr", "alice", "-o", "jsonpath={.spec.username}"]
        ),
        "kubernetes-admin"
    );
    // The spec does not change after creation.
    ok(
        &server,
        &[
            "patch",
            "csr",
            "alice",
            "--type=merge",
            "-p",
            r#"{"spec":{"signerName":"example.com/other"}}"#,
        ],
    );
    assert_eq!(
        ok(
            &server,
            &["get", "csr", "alice", "-o", "jsonpath={.spec.signerName}"]
        ),
        "kubernetes.io/kube-apiserver-client"
    );

    let approved = ok(&server, &["certificate", "approve", "alice"]);
    assert!(approved.contains("approved"), "{approved}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let certificate = loop {
        let issued = ok(
            &server,
            &[
                "get",
                "csr",
                "alice",
                "-o",
                "jsonpath={.status.certificate}",
            ],
        );
        if !issued.is_empty() {
            break base64::engine::general_purpose::STANDARD
                .decode(issued.trim())
                .expect("base64");
        }
        assert!(
            Instant::now() < deadline,
            "never issued\n{}",
            server.output().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(ok(&server, &["get", "csr", "alice"]).contains("Approved,Issued"));
    let (_, block) = x509_parser::pem::parse_x509_pem(&certificate).expect("PEM");
    let (_, parsed) = x509_parser::parse_x509_certificate(&block.contents).expect("x509");
    assert_eq!(parsed.subject().to_string(), "CN=alice, O=dev, O=ops");
    let lifetime =
        parsed.validity().not_after.timestamp() - parsed.validity().not_before.timestamp();
    assert!(
        (86_400..=86_400 + 600).contains(&lifetime),
        "asked a day: {lifetime} s"
    );

    // The certificate is alice's credential.
    let kubeconfig = server.kubeconfig_with_user(
        "alice",
        &format!(
            "{{client-certificate-data: {}, client-key-data: {}}}",
            b64(&certificate),
            b64(key.serialize_pem().as_bytes())
        ),
    );
    let out = server.kubectl_using(
        &kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"alice ["dev","ops","system:authenticated"]"#
    );

    // Denied: never issued, and the decision stands.
    let (_, bob) = request("bob", "bob", &["dev"]);
    let file = dir.join("bob.json");
    std::fs::write(&file, bob).expect("written");
    ok(&server, &["create", "-f", file.to_str().expect("utf-8")]);
    ok(&server, &["certificate", "deny", "bob"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(ok(&server, &["get", "csr", "bob"]).contains("Denied"));
    assert_eq!(
        ok(
            &server,
            &["get", "csr", "bob", "-o", "jsonpath={.status.certificate}"]
        ),
        ""
    );
    let error = fails(&server, &["certificate", "approve", "bob"]);
    assert!(
        error.contains("mutually exclusive") || error.contains("already"),
        "{error}"
    );

    // No administrator certificates from the client signer, whoever approves.
    // However it is hidden among other groups.
    let (_, mallory) = request("mallory", "mallory", &["dev", "system:masters"]);
    let file = dir.join("mallory.json");
    std::fs::write(&file, mallory).expect("written");
    let error = fails(&server, &["create", "-f", file.to_str().expect("utf-8")]);
    assert!(
        error.contains("system:masters group is not allowed"),
        "{error}"
    );

    // A request that is not a request, refused by field.
    let garbage = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "garbage"},
        "spec": {"request": b64(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
                 "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]},
    });
    let file = dir.join("garbage.json");
    std::fs::write(&file, garbage.to_string()).expect("written");
    let error = fails(&server, &["create", "-f", file.to_str().expect("utf-8")]);
    assert!(error.contains("spec.request"), "{error}");
}
