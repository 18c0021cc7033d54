use super::*;

#[test]
fn a_ca_is_made_once_and_reloaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Ca::load_or_create(dir.path()).expect("made");
    let again = Ca::load_or_create(dir.path()).expect("reloaded");
    assert_eq!(first.cert_pem, again.cert_pem);
    // A leaf signed by the reloaded CA names the CA on disk as its issuer.
    let leaf = again.client("alice", &["dev".into()]).expect("issued");
    let (_, parsed) = x509_parser::pem::parse_x509_pem(leaf.cert_pem.as_bytes()).expect("pem");
    let cert = parsed.parse_x509().expect("x509");
    assert_eq!(cert.issuer().to_string(), "CN=keel-ca");
    assert!(cert.subject().to_string().contains("CN=alice"));
}

#[test]
fn a_request_is_issued_with_its_subject_and_the_signers_terms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::load_or_create(dir.path()).expect("made");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "system:node:n1");
    name.push(DnType::OrganizationName, "system:nodes");
    params.distinguished_name = name;
    // Asked for, never granted: a server certificate.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let request = params.serialize_request(&key).expect("csr");
    let usages = ["digital signature".to_owned(), "client auth".to_owned()];
    let pem = ca
        .sign_request(
            request.pem().expect("pem").as_bytes(),
            &usages,
            std::time::Duration::from_secs(3600),
        )
        .expect("issued");
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
    let cert = parsed.parse_x509().expect("x509");
    assert_eq!(
        cert.subject().to_string(),
        "CN=system:node:n1, O=system:nodes"
    );
    assert_eq!(cert.issuer().to_string(), "CN=keel-ca");
    assert!(!cert.is_ca());
    let eku = cert
        .extended_key_usage()
        .expect("parses")
        .expect("present")
        .value;
    assert!(
        eku.client_auth && !eku.server_auth,
        "the signer's usages, not the request's"
    );
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(lifetime, 3600 + 300, "an hour, backdated five minutes");
    assert!(ca
        .sign_request(
            b"not a request",
            &usages,
            std::time::Duration::from_secs(60)
        )
        .is_err());
    let odd = ["digital signature".to_owned(), "code signing".to_owned()];
    let pem_request = request.pem().expect("pem");
    assert!(ca
        .sign_request(
            pem_request.as_bytes(),
            &odd,
            std::time::Duration::from_secs(60)
        )
        .is_err());
    assert!(
        ca.sign_request(request.der(), &usages, std::time::Duration::from_secs(60))
            .is_err(),
        "DER is not PEM"
    );
}

#[test]
fn half_a_ca_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    Ca::load_or_create(dir.path()).expect("made");
    std::fs::remove_file(dir.path().join("ca.key")).expect("removed");
    let error = Ca::load_or_create(dir.path())
        .err()
        .expect("half a CA is refused");
    assert!(error.to_string().contains("both"), "{error}");
    std::fs::write(dir.path().join("ca.key"), "garbage").expect("written");
    let error = Ca::load_or_create(dir.path())
        .err()
        .expect("a garbage key is refused");
    assert!(error.to_string().contains("ca.key"), "{error}");
}

#[test]
fn keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    Ca::load_or_create(dir.path()).expect("made");
    let mode = std::fs::metadata(dir.path().join("ca.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "ca.key is {mode:o}");
}
