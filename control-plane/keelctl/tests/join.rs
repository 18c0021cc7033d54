//! Tokens made with keelctl against a real `control-plane` member running the CSR approver and
//! signer: a join token lets a new node get its own client certificate and nothing else, and a
//! user token authenticates its user until it is deleted or expires.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use support::{client, keelctl, runtime, Member};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn status_code(error: kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

/// A key and a PEM request for this subject.
fn request(cn: &str, org: &str) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, cn);
    name.push(rcgen::DnType::OrganizationName, org);
    params.distinguished_name = name;
    let pem = params
        .serialize_request(&key)
        .expect("a request")
        .pem()
        .expect("pem");
    (key, pem)
}

fn csr(pem: &str, signer: &str) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: kube::core::ObjectMeta {
            generate_name: Some("node-csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(pem.as_bytes().to_vec()),
            signer_name: signer.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn whoami(client: &kube::Client) -> (String, Vec<String>) {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("whoami");
    let user = review.status.and_then(|s| s.user_info).expect("a user");
    (
        user.username.unwrap_or_default(),
        user.groups.unwrap_or_default(),
    )
}

const KUBELET_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

#[test]
fn a_join_token_gets_a_node_its_certificate_and_nothing_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("m0");
    let (m0, _api) =
        Member::start_with_api_and("m0", &data_dir, &["--controllers=csrapproving,csrsigning"]);
    let admin = data_dir.join("admin.kubeconfig");
    let admin_arg = admin.to_str().expect("utf-8");
    let boot = dir.path().join("bootstrap.kubeconfig");
    let out = keelctl(&[
        "join-token",
        "--kubeconfig",
        admin_arg,
        "--ttl",
        "1h",
        "-o",
        boot.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "join-token: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        m0.output()
    );
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(
        told.contains("node-daemon --bootstrap-kubeconfig"),
        "{told}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&boot)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "a token is a secret");

    runtime().block_on(async {
        let bootstrap = client(&boot).await;
        let (user, groups) = whoami(&bootstrap).await;
        assert!(user.starts_with("system:bootstrap:"), "{user}");
        assert!(groups.contains(&"system:bootstrappers:keel:default-node-token".to_owned()));
        // A bootstrap token reads nothing.
        let pods: Api<Pod> = Api::all(bootstrap.clone());
        assert_eq!(
            status_code(pods.list(&ListParams::default()).await.unwrap_err()),
            403
        );

        let csrs: Api<CertificateSigningRequest> = Api::all(bootstrap.clone());
        // Asked first, never approved: a node's name with the administrators' group, and a
        // client certificate for an administrator.
        let (_, masters_pem) = request("system:node:n9", "system:masters");
        let masters = csrs
            .create(&PostParams::default(), &csr(&masters_pem, KUBELET_SIGNER))
            .await
            .expect("a request is accepted, not approved");
        let (_, admin_pem) = request("kubernetes-admin", "dev");
        let admin_request = csrs
            .create(
                &PostParams::default(),
                &csr(&admin_pem, "kubernetes.io/kube-apiserver-client"),
            )
            .await
            .expect("accepted");
        // The requester is whoever sent it, whatever the body claims.
        assert_eq!(admin_request.spec.username.as_deref(), Some(user.as_str()));
        // The bootstrap token cannot approve its own request.
        let mut approved = admin_request.clone();
        approved.status = Some(
            serde_json::from_value(serde_json::json!({"conditions": [
            {"type": "Approved", "status": "True", "reason": "Mine"}]}))
            .expect("status"),
        );
        let name = admin_request.metadata.name.clone().expect("named");
        let refused = csrs
            .replace_subresource("approval", &name, &PostParams::default(), &approved)
            .await
            .unwrap_err();
        assert_eq!(status_code(refused), 403);

        // The node's own request.
        let (key, pem) = request("system:node:n9", "system:nodes");
        let created = csrs
            .create(&PostParams::default(), &csr(&pem, KUBELET_SIGNER))
            .await
            .expect("the node's request");
        let name = created.metadata.name.clone().expect("named");
        assert!(name.starts_with("node-csr-"), "{name}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let issued = loop {
            let current = csrs.get(&name).await.expect("the request");
            if let Some(certificate) = current.status.as_ref().and_then(|s| s.certificate.clone()) {
                let conditions = current
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default();
                assert!(
                    conditions
                        .iter()
                        .any(|c| c.type_ == "Approved"
                            && c.reason.as_deref() == Some("AutoApproved")),
                    "{conditions:?}"
                );
                break certificate.0;
            }
            assert!(Instant::now() < deadline, "never issued\n{}", m0.output());
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (_, block) = x509_parser::pem::parse_x509_pem(&issued).expect("PEM");
        let (_, certificate) = x509_parser::parse_x509_certificate(&block.contents).expect("x509");
        assert_eq!(
            certificate.subject().to_string(),
            "CN=system:node:n9, O=system:nodes"
        );
        assert!(!certificate.is_ca());
        assert_eq!(
            certificate.public_key().raw,
            key.public_key_der().as_slice(),
            "the certificate is for the node's own key"
        );

        // The certificate authenticates as the node, which may register itself only.
        let node_config = dir.path().join("n9.kubeconfig");
        let text = std::fs::read_to_string(&boot).expect("bootstrap kubeconfig");
        let text = text.replace(
            &text[text.find("    token: ").expect("token")..],
            &format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(&issued),
                b64(key.serialize_pem().as_bytes())
            ),
        );
        std::fs::write(&node_config, text).expect("written");
        let node = client(&node_config).await;
        assert_eq!(
            whoami(&node).await,
            (
                "system:node:n9".to_owned(),
                vec!["system:nodes".to_owned(), "system:authenticated".to_owned()]
            )
        );
        let nodes: Api<Node> = Api::all(node);
        let own: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n9"}})).expect("node");
        nodes
            .create(&PostParams::default(), &own)
            .await
            .expect("its own Node");
        let other: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n8"}})).expect("node");
        assert_eq!(
            status_code(
                nodes
                    .create(&PostParams::default(), &other)
                    .await
                    .unwrap_err()
            ),
            403
        );

        // The two hostile requests are still undecided and unsigned.
        let admin_client = client(&admin).await;
        let all: Api<CertificateSigningRequest> = Api::all(admin_client);
        for request in [&masters, &admin_request] {
            let current = all
                .get(request.metadata.name.as_deref().expect("named"))
                .await
                .expect("still there");
            let status = current.status.unwrap_or_default();
            assert!(
                status.certificate.is_none(),
                "issued: {:?}",
                current.metadata.name
            );
            assert!(status.conditions.unwrap_or_default().is_empty());
        }
    });

    // A token past its expiry is refused.
    let short = dir.path().join("short.kubeconfig");
    let out = keelctl(&[
        "join-token",
        "--kubeconfig",
        admin_arg,
        "--ttl",
        "1s",
        "-o",
        short.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(1500));
    runtime().block_on(async {
        let expired = client(&short).await;
        let pods: Api<Pod> = Api::all(expired);
        assert_eq!(
            status_code(pods.list(&ListParams::default()).await.unwrap_err()),
            401
        );
    });
}

#[test]
fn a_user_token_authenticates_its_user_until_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("m0");
    let (m0, _api) = Member::start_with_api("m0", &data_dir);
    let admin = data_dir.join("admin.kubeconfig");
    let admin_arg = admin.to_str().expect("utf-8");
    let out = keelctl(&[
        "token",
        "create",
        "--kubeconfig",
        admin_arg,
        "--user",
        "alice",
        "--group",
        "dev",
        "--ttl",
        "10m",
    ]);
    assert!(
        out.status.success(),
        "token create: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        m0.output()
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (id, secret) = token.split_once('.').expect("<id>.<secret>");
    assert_eq!((id.len(), secret.len()), (6, 32));
    let with_token = dir.path().join("alice.kubeconfig");
    let text = std::fs::read_to_string(&admin).expect("admin kubeconfig");
    let cluster_end = text.find("contexts:").expect("contexts");
    std::fs::write(
        &with_token,
        format!(
            "{}contexts:\n- name: a\n  context: {{cluster: keel, user: alice}}\ncurrent-context: a\n\
             users:\n- name: alice\n  user: {{token: {token}}}\n",
            &text[..cluster_end]
        ),
    )
    .expect("written");
    runtime().block_on(async {
        let alice = client(&with_token).await;
        assert_eq!(
            whoami(&alice).await,
            (
                "alice".to_owned(),
                vec!["dev".to_owned(), "system:authenticated".to_owned()]
            )
        );
        // Authenticated is not authorized: alice has no bindings.
        let pods: Api<Pod> = Api::all(alice.clone());
        assert_eq!(
            status_code(pods.list(&ListParams::default()).await.unwrap_err()),
            403
        );

        let secrets: Api<Secret> = Api::namespaced(client(&admin).await, "kube-system");
        let stored = secrets
            .get(&format!("user-token-{id}"))
            .await
            .expect("the token's Secret");
        let text = serde_json::to_string(&stored).expect("json");
        assert!(!text.contains(secret) && !text.contains(&b64(secret.as_bytes())));
        secrets
            .delete(&format!("user-token-{id}"), &Default::default())
            .await
            .expect("revoked");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let review = Api::<SelfSubjectReview>::all(alice.clone())
                .create(&PostParams::default(), &SelfSubjectReview::default())
                .await;
            match review {
                Err(kube::Error::Api(status)) if status.code == 401 => break,
                other => assert!(Instant::now() < deadline, "still accepted: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
