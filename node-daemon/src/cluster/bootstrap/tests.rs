use super::credentials::*;
use super::*;

use std::os::unix::fs::PermissionsExt as _;

use base64::Engine as _;
use clap::Parser as _;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, PublicKeyData,
};
use x509_parser::prelude::FromDer as _;

const NODE: &str = "n1";

/// A cluster CA (certificate and key).
fn ca() -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "kubernetes");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    (params.self_signed(&key).unwrap(), key)
}

/// The validity of the test certificates: 2030 (a year), with Unix seconds for `now`.
fn year_2030() -> (i64, i64) {
    (
        date_time_ymd(2030, 1, 1).unix_timestamp(),
        date_time_ymd(2031, 1, 1).unix_timestamp(),
    )
}

struct Cert<'a> {
    cn: &'a str,
    org: Option<&'a str>,
    usages: Vec<ExtendedKeyUsagePurpose>,
}

impl Default for Cert<'_> {
    fn default() -> Self {
        Cert {
            cn: "system:node:n1",
            org: Some(NODES_GROUP),
            usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

/// `cert` issued by `ca` for `key`, valid through 2030, PEM.
fn issue(ca: &(rcgen::Certificate, KeyPair), key: &impl PublicKeyData, cert: Cert) -> String {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cert.cn);
    if let Some(org) = cert.org {
        name.push(DnType::OrganizationName, org);
    }
    params.distinguished_name = name;
    params.not_before = date_time_ymd(2030, 1, 1);
    params.not_after = date_time_ymd(2031, 1, 1);
    params.extended_key_usages = cert.usages;
    params.signed_by(key, &ca.0, &ca.1).unwrap().pem()
}

/// The node's CSR and its key, as rcgen's key pair (to issue for).
fn node_key() -> (NodeCsr, KeyPair) {
    let csr = node_csr(NODE).unwrap();
    let key = KeyPair::from_pem(&csr.key_pem).unwrap();
    (csr, key)
}

#[test]
fn the_csr_names_the_node_in_the_nodes_group_without_sans() {
    let csr = node_csr(NODE).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr.csr_pem.as_bytes()).unwrap();
    assert_eq!(pem.label, "CERTIFICATE REQUEST");
    let (_, request) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .unwrap();
    let info = &request.certification_request_info;
    let cns: Vec<_> = info
        .subject
        .iter_common_name()
        .map(|cn| cn.as_str().unwrap())
        .collect();
    let orgs: Vec<_> = info
        .subject
        .iter_organization()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(cns, ["system:node:n1"]);
    assert_eq!(orgs, ["system:nodes"]);
    assert!(
        request.requested_extensions().is_none(),
        "no extensions, no SANs"
    );
    assert_eq!(
        request.signature_algorithm.algorithm,
        x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
    );
    assert_eq!(
        info.subject_pki.algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    assert_eq!(info.subject_pki.raw, csr.spki_der.as_slice());
    // Every call makes a new key.
    assert_ne!(node_csr(NODE).unwrap().spki_der, csr.spki_der);
}

#[test]
fn the_csr_object_asks_the_kubelet_client_signer() {
    let object = serde_json::to_value(csr_object("PEM")).unwrap();
    assert_eq!(object["apiVersion"], "certificates.k8s.io/v1");
    assert_eq!(object["kind"], "CertificateSigningRequest");
    assert_eq!(object["metadata"]["generateName"], "node-csr-");
    assert!(object["metadata"].get("name").is_none());
    assert_eq!(object["spec"]["request"], "UEVN"); // base64("PEM")
    assert_eq!(
        object["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert_eq!(
        object["spec"]["usages"],
        serde_json::json!(["digital signature", "client auth"])
    );
    assert!(object["spec"].get("expirationSeconds").is_none());
}

#[test]
fn an_issued_certificate_is_taken_only_for_this_node_and_key_while_valid() {
    let ca = ca();
    let (csr, key) = node_key();
    let (from, to) = year_2030();
    let now = from + 3600;
    let good = issue(&ca, &key, Cert::default());
    assert_eq!(
        check_issued(good.as_bytes(), NODE, &csr.spki_der, now),
        Ok(Validity {
            not_before: from,
            not_after: to
        })
    );
    // With its chain after it.
    let chain = format!("{good}{}", ca.0.pem());
    assert!(check_issued(chain.as_bytes(), NODE, &csr.spki_der, now).is_ok());
    // No extended key usage at all is no restriction.
    let unrestricted = issue(
        &ca,
        &key,
        Cert {
            usages: vec![],
            ..Cert::default()
        },
    );
    assert!(check_issued(unrestricted.as_bytes(), NODE, &csr.spki_der, now).is_ok());

    let other_node = issue(
        &ca,
        &key,
        Cert {
            cn: "system:node:n2",
            ..Cert::default()
        },
    );
    assert_eq!(
        check_issued(other_node.as_bytes(), NODE, &csr.spki_der, now),
        Err(CertProblem::OtherUser {
            expected: "system:node:n1".to_string(),
            found: "system:node:n2".to_string()
        })
    );
    let no_group = issue(
        &ca,
        &key,
        Cert {
            org: None,
            ..Cert::default()
        },
    );
    assert!(matches!(
        check_issued(no_group.as_bytes(), NODE, &csr.spki_der, now),
        Err(CertProblem::NotANode { .. })
    ));
    let other_key = issue(&ca, &KeyPair::generate().unwrap(), Cert::default());
    assert_eq!(
        check_issued(other_key.as_bytes(), NODE, &csr.spki_der, now),
        Err(CertProblem::OtherKey)
    );
    let server_only = issue(
        &ca,
        &key,
        Cert {
            usages: vec![ExtendedKeyUsagePurpose::ServerAuth],
            ..Cert::default()
        },
    );
    assert_eq!(
        check_issued(server_only.as_bytes(), NODE, &csr.spki_der, now),
        Err(CertProblem::NotForClients)
    );
    assert!(matches!(
        check_issued(good.as_bytes(), NODE, &csr.spki_der, to),
        Err(CertProblem::Expired(_))
    ));
    assert!(matches!(
        check_issued(good.as_bytes(), NODE, &csr.spki_der, from - 1),
        Err(CertProblem::NotYetValid(_))
    ));
    assert_eq!(
        check_issued(b"not a certificate", NODE, &csr.spki_der, now),
        Err(CertProblem::NotPem)
    );
    // The CSR itself is PEM, but no certificate.
    assert_eq!(
        check_issued(csr.csr_pem.as_bytes(), NODE, &csr.spki_der, now),
        Err(CertProblem::NotPem)
    );
}

/// A kubeconfig as bootstrap writes it, with a certificate for `key` valid through 2030.
fn node_kubeconfig(ca: &(rcgen::Certificate, KeyPair), csr: &NodeCsr, key: &KeyPair) -> String {
    let cert = issue(ca, key, Cert::default());
    kubeconfig_yaml(
        "https://10.0.0.1:6443",
        None,
        ca.0.pem().as_bytes(),
        cert.as_bytes(),
        &csr.key_pem,
    )
}

#[test]
fn bootstrap_is_needed_without_a_certificate_that_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    let (from, to) = year_2030();
    let unusable = |now| match existing_credential(&path, now).unwrap() {
        Credential::Unusable(why) => why,
        other => panic!("expected unusable, got {other:?}"),
    };
    assert_eq!(unusable(from), "it does not exist");

    std::fs::write(&path, "{not yaml: [").unwrap();
    assert!(unusable(from).starts_with("not a kubeconfig"));

    std::fs::write(&path, BOOTSTRAP_KUBECONFIG).unwrap();
    assert_eq!(unusable(from), "it holds no client certificate");

    let ca = ca();
    let (csr, key) = node_key();
    std::fs::write(&path, node_kubeconfig(&ca, &csr, &key)).unwrap();
    assert_eq!(
        existing_credential(&path, from + 86_400).unwrap(),
        Credential::Valid { not_after: to }
    );
    // The last tenth of a year: 36.5 days.
    assert_eq!(
        existing_credential(&path, to - 30 * 86_400).unwrap(),
        Credential::ExpiresSoon { not_after: to }
    );
    assert!(unusable(to).starts_with("its client certificate expired at 2031-01-01"));

    // Files named relative to the kubeconfig's directory work too.
    let cert = issue(&ca, &key, Cert::default());
    std::fs::write(dir.path().join("node.crt"), cert).unwrap();
    std::fs::write(dir.path().join("node.key"), &csr.key_pem).unwrap();
    let by_path = BOOTSTRAP_KUBECONFIG.replace(
        "token: abcdef.0123456789abcdef",
        "client-certificate: node.crt\n    client-key: node.key",
    );
    std::fs::write(&path, by_path).unwrap();
    assert_eq!(
        existing_credential(&path, from + 86_400).unwrap(),
        Credential::Valid { not_after: to }
    );
    // A certificate without its key authenticates nothing.
    std::fs::remove_file(&path).unwrap();
    let no_key = BOOTSTRAP_KUBECONFIG.replace(
        "token: abcdef.0123456789abcdef",
        "client-certificate: node.crt",
    );
    std::fs::write(&path, no_key).unwrap();
    assert_eq!(unusable(from), "it holds no client key");
}

#[test]
fn the_kubeconfig_is_written_private_and_atomically_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel/node/kubeconfig");
    let ca = ca();
    let (csr, key) = node_key();
    let cert = issue(&ca, &key, Cert::default());
    let text = kubeconfig_yaml(
        "https://10.0.0.1:6443",
        Some("kubernetes"),
        ca.0.pem().as_bytes(),
        cert.as_bytes(),
        &csr.key_pem,
    );
    // A leftover of an interrupted run is replaced, not appended to.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(dir.path().join("keel/node/kubeconfig.tmp"), "stale").unwrap();
    write_private_file(&path, text.as_bytes()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert!(!dir.path().join("keel/node/kubeconfig.tmp").exists());
    // Overwriting keeps the mode (a new file is renamed over the old one).
    write_private_file(&path, text.as_bytes()).unwrap();
    assert_eq!(mode(&path), 0o600);

    let fresh = dir.path().join("fresh/kubeconfig");
    write_private_file(&fresh, b"x").unwrap();
    assert_eq!(mode(&dir.path().join("fresh")), 0o700);

    let config = Kubeconfig::from_yaml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(config.current_context.as_deref(), Some("default-context"));
    let selected = credentials_selected(&config);
    assert_eq!(selected.0, "default-cluster");
    assert_eq!(selected.1, "default-auth");
    let cluster = &config.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:6443"));
    assert_eq!(cluster.tls_server_name.as_deref(), Some("kubernetes"));
    let decode = |data: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        decode(cluster.certificate_authority_data.as_deref().unwrap()),
        ca.0.pem()
    );
    let user = config.auth_infos[0].auth_info.as_ref().unwrap();
    assert_eq!(
        decode(user.client_certificate_data.as_deref().unwrap()),
        cert
    );
    assert!(user.client_key_data.is_some());
    // The key round-trips: the file's key is the one the certificate certifies.
    let text = std::fs::read_to_string(&path).unwrap();
    let key_data = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("client-key-data: "))
        .unwrap();
    let key_in_file = KeyPair::from_pem(&decode(key_data)).unwrap();
    assert_eq!(key_in_file.public_key_der(), csr.spki_der);
}

/// The selected context's cluster and user names.
fn credentials_selected(config: &Kubeconfig) -> (String, String) {
    let selected = credentials::selected(config).unwrap();
    (
        selected.cluster_name.to_string(),
        selected.user_name.to_string(),
    )
}

const BOOTSTRAP_KUBECONFIG: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: keel
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: CA_DATA
contexts:
- name: tls-bootstrap-token-user@keel
  context:
    cluster: keel
    user: tls-bootstrap-token-user
current-context: tls-bootstrap-token-user@keel
users:
- name: tls-bootstrap-token-user
  user:
    token: abcdef.0123456789abcdef
";

#[test]
fn a_bootstrap_kubeconfig_needs_a_server_its_ca_and_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bootstrap.kubeconfig");
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ca().0.pem());
    let good = BOOTSTRAP_KUBECONFIG.replace("CA_DATA", &ca_data);
    let read = |text: &str| {
        std::fs::write(&path, text).unwrap();
        read_bootstrap_kubeconfig(&path)
    };
    let refused = |text: &str| match read(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains("bootstrap.kubeconfig"), "{message}");
            message
        }
    };
    let config = read(&good).unwrap();
    assert_eq!(config.server, "https://10.0.0.1:6443");
    assert_eq!(config.context, "tls-bootstrap-token-user@keel");

    assert!(refused("{not yaml: [").contains("not a kubeconfig"));
    let message = refused(&good.replace("    server: https://10.0.0.1:6443\n", ""));
    assert!(
        message.contains("clusters[keel].cluster.server: missing"),
        "{message}"
    );
    let message = refused(&good.replace("https://10.0.0.1", "http://10.0.0.1"));
    assert!(
        message.contains("clusters[keel].cluster.server"),
        "{message}"
    );
    let message =
        refused(&good.replace(&format!("    certificate-authority-data: {ca_data}\n"), ""));
    assert!(
        message.contains("clusters[keel].cluster.certificate-authority-data: missing"),
        "{message}"
    );
    let message = refused(&BOOTSTRAP_KUBECONFIG.replace("CA_DATA", "bm90IGEgY2VydA=="));
    assert!(message.contains("holds no PEM certificate"), "{message}");
    let message =
        refused(&good.replace("    token: abcdef.0123456789abcdef\n", "    username: x\n"));
    assert!(
        message.contains("users[tls-bootstrap-token-user].user.token: missing"),
        "{message}"
    );
    let message = refused(&good.replace(
        "    server:",
        "    insecure-skip-tls-verify: true\n    server:",
    ));
    assert!(message.contains("insecure-skip-tls-verify"), "{message}");
    let message = refused(&good.replace(
        "current-context: tls-bootstrap-token-user@keel",
        "current-context: other",
    ));
    assert!(message.contains("current-context"), "{message}");
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        read_bootstrap_kubeconfig(&path),
        Err(BootstrapError::Read { .. })
    ));
}

#[test]
fn a_valid_kubeconfig_is_kept_without_reading_the_bootstrap_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let missing_bootstrap = dir.path().join("bootstrap.kubeconfig");
    // A node without credentials needs the bootstrap kubeconfig.
    assert!(matches!(
        plan(&kubeconfig, &missing_bootstrap),
        Err(BootstrapError::Read { .. })
    ));
    // One with a certificate valid for years (rcgen's default validity) does not.
    let ca = ca();
    let (csr, key) = node_key();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "system:node:n1");
    params.distinguished_name = name;
    let cert = params.signed_by(&key, &ca.0, &ca.1).unwrap().pem();
    let text = kubeconfig_yaml(
        "https://10.0.0.1:6443",
        None,
        ca.0.pem().as_bytes(),
        cert.as_bytes(),
        &csr.key_pem,
    );
    write_private_file(&kubeconfig, text.as_bytes()).unwrap();
    assert!(plan(&kubeconfig, &missing_bootstrap).unwrap().is_none());
}

fn csr_with(conditions: &[(&str, &str)], certificate: &[u8]) -> CertificateSigningRequest {
    let mut csr = csr_object("PEM");
    csr.metadata.name = Some("node-csr-abc".to_string());
    csr.status = Some(CertificateSigningRequestStatus {
        certificate: Some(ByteString(certificate.to_vec())),
        conditions: Some(
            conditions
                .iter()
                .map(|(type_, status)| CertificateSigningRequestCondition {
                    type_: type_.to_string(),
                    status: status.to_string(),
                    reason: Some("Because".to_string()),
                    message: Some("so".to_string()),
                    ..CertificateSigningRequestCondition::default()
                })
                .collect(),
        ),
    });
    csr
}

#[test]
fn a_csr_settles_with_its_certificate_or_a_denial_or_failure() {
    assert!(settled(&csr_object("PEM")).is_none());
    assert!(settled(&csr_with(&[], b"")).is_none());
    assert!(settled(&csr_with(&[("Approved", "True")], b"")).is_none());
    assert_eq!(
        settled(&csr_with(&[("Approved", "True")], b"CERT"))
            .unwrap()
            .unwrap(),
        b"CERT"
    );
    let denied = settled(&csr_with(&[("Denied", "True")], b"")).unwrap();
    assert_eq!(
        denied.unwrap_err().to_string(),
        "CertificateSigningRequest node-csr-abc was denied: Because: so"
    );
    let failed = settled(&csr_with(
        &[("Approved", "True"), ("Failed", "True")],
        b"CERT",
    ));
    assert!(matches!(failed, Some(Err(BootstrapError::Failed { .. }))));
    // Only a condition that holds counts.
    assert!(settled(&csr_with(&[("Denied", "False")], b"")).is_none());
}

#[test]
fn bootstrap_kubeconfig_needs_kubeconfig() {
    let parse =
        |args: &[&str]| crate::Args::try_parse_from(["node-daemon"].iter().chain(args).copied());
    let error = parse(&["--manifests", "m", "--bootstrap-kubeconfig", "b"]).unwrap_err();
    assert_eq!(
        error.kind(),
        clap::error::ErrorKind::MissingRequiredArgument
    );
    assert!(error.to_string().contains("--kubeconfig"), "{error}");
    let args = parse(&["--bootstrap-kubeconfig", "b", "--kubeconfig", "k"]).unwrap();
    assert_eq!(args.bootstrap_kubeconfig, Some(PathBuf::from("b")));
    assert_eq!(args.bootstrap_timeout, Duration::from_secs(300));
    let args = parse(&["--kubeconfig", "k", "--bootstrap-timeout", "20s"]).unwrap();
    assert_eq!(args.bootstrap_timeout, Duration::from_secs(20));
}
