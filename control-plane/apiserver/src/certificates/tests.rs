use base64::Engine as _;
use rcgen::KeyPair;
use serde_json::json;

use super::*;
use crate::resources::lookup;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A PEM CSR with this CN and these O values (one RDN each, as `openssl req` makes them).
fn request(cn: &str, orgs: &[&str]) -> String {
    let key = KeyPair::generate().expect("key");
    let orgs: Vec<String> = orgs.iter().map(|o| o.to_string()).collect();
    crate::auth::pki::signing_request(&key, cn, &orgs).expect("csr")
}

fn csr(pem: &str, signer: &str) -> Value {
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "node-csr-1"},
        "spec": {"request": b64(pem.as_bytes()), "signerName": signer,
                 "usages": ["digital signature", "client auth"]},
    })
}

fn info() -> &'static crate::resources::ResourceInfo {
    lookup(GROUP, "v1", "certificatesigningrequests").expect("served")
}

fn refusal(object: &Value) -> String {
    match crate::validation::validate(info(), object) {
        Ok(()) => panic!("accepted: {object}"),
        Err(e) => e.message,
    }
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        uid: "u-1".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    }
}

#[test]
fn the_requester_is_written_by_the_server_whatever_the_body_says() {
    let mut object = csr(&request("system:node:n1", &["system:nodes"]), KUBELET);
    object["spec"]["username"] = json!("kubernetes-admin");
    object["spec"]["groups"] = json!(["system:masters"]);
    object["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
    prepare_create(
        &user("system:bootstrap:abcdef", &["system:bootstrappers"]),
        &mut object,
    );
    assert_eq!(object["spec"]["username"], "system:bootstrap:abcdef");
    assert_eq!(object["spec"]["groups"], json!(["system:bootstrappers"]));
    assert_eq!(object["spec"]["uid"], "u-1");
    assert!(object.get("status").is_none(), "a request starts undecided");
    crate::validation::validate(info(), &object).expect("valid");
}

const KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";

#[test]
fn malformed_requests_are_refused_by_field() {
    let good = request("system:node:n1", &["system:nodes"]);
    let mut not_pem = csr(&good, KUBELET);
    not_pem["spec"]["request"] = json!(b64(b"hello"));
    assert!(refusal(&not_pem).contains("spec.request"));

    // A certificate where a request belongs.
    let mut wrong_block = csr(&good, KUBELET);
    let block = good.replace("CERTIFICATE REQUEST", "CERTIFICATE");
    wrong_block["spec"]["request"] = json!(b64(block.as_bytes()));
    assert!(refusal(&wrong_block).contains("PEM block type must be CERTIFICATE REQUEST"));

    // One flipped byte in the signed body: the signature no longer verifies.
    let (_, block) = x509_parser::pem::parse_x509_pem(good.as_bytes()).expect("pem");
    let mut der = block.contents.clone();
    let middle = der.len() / 3;
    der[middle] ^= 0x01;
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        b64(&der)
    );
    let mut forged = csr(&good, KUBELET);
    forged["spec"]["request"] = json!(b64(tampered.as_bytes()));
    assert!(
        refusal(&forged).contains("spec.request"),
        "{}",
        refusal(&forged)
    );

    for signer in [
        "",
        "no-slash",
        "Bad_Domain/x",
        "example.com/",
        "example.com/x\n",
    ] {
        let object = csr(&good, signer);
        assert!(refusal(&object).contains("spec.signerName"), "{signer:?}");
    }
    let mut usages = csr(&good, KUBELET);
    usages["spec"]["usages"] = json!(["client auth", "client auth", "root of all"]);
    let message = refusal(&usages);
    assert!(
        message.contains("spec.usages[1]: Duplicate value"),
        "{message}"
    );
    assert!(
        message.contains("spec.usages[2]: Unsupported value"),
        "{message}"
    );
    let mut short = csr(&good, KUBELET);
    short["spec"]["expirationSeconds"] = json!(599);
    assert!(refusal(&short).contains("600 seconds"));
    let mut none = csr(&good, KUBELET);
    none["spec"]["usages"] = json!([]);
    assert!(refusal(&none).contains("spec.usages: Required value"));
}

#[test]
fn the_three_strategies_change_only_their_part() {
    let old = json!({
        "metadata": {"name": "c"},
        "spec": {"request": "cmVx", "signerName": KUBELET, "username": "system:bootstrap:a"},
        "status": {"conditions": [{"type": "Approved", "status": "True", "reason": "AutoApproved",
                   "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
    });
    // A plain update: spec and status stay.
    let mut plain = json!({"metadata": {"name": "c", "labels": {"a": "b"}},
        "spec": {"request": "b3RoZXI=", "signerName": "evil.example/x", "username": "root"},
        "status": {"certificate": "Zm9v"}});
    update_scope(&old, &mut plain, None);
    assert_eq!(plain["spec"], old["spec"]);
    assert_eq!(plain["status"], old["status"]);
    assert_eq!(plain["metadata"]["labels"]["a"], "b");

    // /status: the certificate and Failed, never Approved or Denied.
    let mut status = old.clone();
    status["status"] = json!({"certificate": "Zm9v", "conditions": [
        {"type": "Denied", "status": "True"}, {"type": "Failed", "status": "True"}]});
    update_scope(&old, &mut status, Some("status"));
    let kinds: Vec<&str> = status["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(kinds, ["Approved", "Failed"]);
    assert_eq!(status["status"]["certificate"], "Zm9v");
    assert!(status["status"]["conditions"][1]["lastTransitionTime"].is_string());

    // /approval: the conditions, never the certificate.
    let mut approval = old.clone();
    approval["status"] = json!({"certificate": "Zm9v", "conditions": [
        {"type": "Approved", "status": "True", "reason": "AutoApproved"}]});
    update_scope(&old, &mut approval, Some("approval"));
    assert!(approval["status"].get("certificate").is_none());
    assert_eq!(
        approval["status"]["conditions"][0]["lastTransitionTime"], "2026-01-01T00:00:00Z",
        "an unchanged condition keeps its transition time"
    );
}

#[test]
fn decisions_and_certificates_are_not_taken_back() {
    let pem = request("system:node:n1", &["system:nodes"]);
    let mut approved = csr(&pem, KUBELET);
    approved["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
    let mut both = approved.clone();
    both["status"]["conditions"] = json!([{"type": "Approved", "status": "True"},
                                          {"type": "Denied", "status": "True"}]);
    assert!(refusal(&both).contains("mutually exclusive"));
    let mut removed = approved.clone();
    removed["status"] = json!({});
    let error = crate::validation::validate_update(info(), &approved, &removed)
        .expect_err("an approval cannot be withdrawn");
    assert!(error
        .message
        .contains("may not remove a condition of type \"Approved\""));
    let mut unapproved_certificate = csr(&pem, KUBELET);
    unapproved_certificate["status"] = json!({"certificate": b64(b"junk")});
    assert!(refusal(&unapproved_certificate).contains("status.certificate"));
    let mut false_approval = csr(&pem, KUBELET);
    false_approval["status"] = json!({"conditions": [{"type": "Approved", "status": "False"}]});
    assert!(refusal(&false_approval).contains("status.conditions[0].status"));
}

#[test]
fn masters_certificates_are_not_requested_from_the_client_signer() {
    let masters = csr(
        &request("mallory", &["system:masters"]),
        "kubernetes.io/kube-apiserver-client",
    );
    let error =
        subject_restriction(&masters, "kubernetes.io/kube-apiserver-client").expect_err("refused");
    assert_eq!(error.code, 403);
    assert!(error
        .message
        .contains("system:masters group is not allowed"));
    // However many groups come first: every O is read.
    for orgs in [
        &["dev", "system:masters"][..],
        &["dev", "ops", "system:masters", "qa"],
    ] {
        let hidden = csr(
            &request("mallory", orgs),
            "kubernetes.io/kube-apiserver-client",
        );
        let error = subject_restriction(&hidden, "kubernetes.io/kube-apiserver-client")
            .expect_err("refused");
        assert_eq!(error.code, 403, "{orgs:?}");
    }
    let fine = csr(
        &request("alice", &["dev", "ops"]),
        "kubernetes.io/kube-apiserver-client",
    );
    subject_restriction(&fine, "kubernetes.io/kube-apiserver-client").expect("allowed");
    // Other signers decide for themselves what a subject may be.
    subject_restriction(&masters, "example.com/signer").expect("not this plugin's business");
}
