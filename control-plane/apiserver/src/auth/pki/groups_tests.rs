//! Certificates with several groups: issued directly and from requests, they read back with
//! every group in order, verify with rustls's client verifier (the API server's), survive a
//! real TLS handshake against the server's configuration with the identity intact, and
//! verify with OpenSSL when it is installed.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::*;
use crate::auth::authn::identity_from_certificate;
use crate::auth::UserInfo;

/// Made with `openssl req -new -newkey ec -subj /CN=alice/O=dev/O=ops`: two RDNs of O.
const OPENSSL_ALICE_DEV_OPS: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHnMIGOAgEAMCwxDjAMBgNVBAMMBWFsaWNlMQwwCgYDVQQKDANkZXYxDDAKBgNV
BAoMA29wczBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABKd4VN3sdPaqjBDoxvX/
rl1LDA3bQdYfGoVELBi4zvwc06kLNO7SMOwiGfoApcQuDImSxpSpaKS7YHPWCgOq
dNSgADAKBggqhkjOPQQDAgNIADBFAiBMpVm0x0Dq6XblUh/1tXHwxYVn7tTG6A9V
LeSgmBVoXAIhAJhYc8pmS122zXUyYwnYgaoPNc5Wn9WloBvZqwCJhpRe
-----END CERTIFICATE REQUEST-----
";

/// A throwaway RSA-2048 key (`openssl genpkey -algorithm RSA`), for CAs as kubeadm makes
/// them: ring cannot generate RSA keys.
pub(super) const RSA_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDef6FNFlPHOvfR
IWSPMuhXMDttzAp3ZsPuZ5NJ7/Kd5RS0cFDBRH5wBVWTQKgZzzlsh5vJ89OfcfoB
pk6lYTWcl1ZvkmWH0EaLZVmB6HNbHeFIFI9ymg68jmz6XVUSDbOAWRD9Z0dXk9If
2WUtRdU489qLTla9D+BQhzVArfVT/cXr7U2dalxCSENJBmNnLRHLCFeoIDuQ7+cy
r+KMYoPRiTLyolbTjl7OvqL3tTbwJpuIzXM4GWo8RvTY3NHTwtN9K2bxv3mazQ6E
h6Yu9cusurnLNhSSiDJqZTuksUxX/9uZxJDljSB+FBSNTlibhmBi5hdLUtE2g9sh
PvnQ+76tAgMBAAECggEACyDDgr094e5BVDiRFLdlVuz+3+ovUNL3NC6Cd5V0YzDA
pRij9VKVZ0lhAw0eCzJpyxOKN2LGQAh9ikUU1GElAwivpkNiaBVC3fhq7lwfntxC
9u2uUftCBuyxpyDxXwaH5oCt4JqgfxER1o1zKb0/IYrSsJpxrKGFZMmqYGqC5Vkp
PNWnDJ4eOIhskz1JxsUBY15SVyhRSzv2g2P6AHJfCJVShmVrcrPWsPfHLw+QIPeM
x0/XOyep5JW89XivsKQj9TOrYmktPMLK0D8570UP/iuFJQVZJAMMIUWKWZxduXF5
zfkiftkkXNk2EnzcS+0XIfSaofaWNSJRKiWfUFHnOQKBgQD6qv2h2nnBIz/6vodb
MQOdDNIPUlzisFgqGuMFZpOw6xVtF7dQZJlNVbdAuQqdsJvkBj9bjN8qkB4ZSRng
hTuatPIXcxeoZ8kQ1+s4iiHwMqeifgSJJueK+5PUpWicc/4fejbPp1IakpA7vkkt
u0NsR18G5r0aO6HxFwc8nf5aBQKBgQDjOz5KP8X+g6Lq5yzi/cUBC1JdEqQrKfMo
W8UF4lFfmutC0kXF0E8b6h+aabh3bXO8TfacDX0Pwb6ikczjVwP7iuxQe/nLJrZP
87ha8EtQW8AVK4gvwjp3LgTNv6IWjTMsfzvd8nDltBh7XPn6BSd5+Kzq0gc0JC1b
d4TjQlHqiQKBgFk4yaR1nkbHpDs82/LyhEW/TXmUqGkruYXrIglHFKSxWGQHQAGG
fSaQrvSDqKquNR65to2Am+KLf5sicOqAodGUPGNqXO5dWqz7Hcd3K1NSxGZLEpQ6
28mVeG4FHjIp+zb7Ck1pUgkRR/Nr7KIxeHMvCDztnjubJC4rMzE5T1J9AoGAdd1j
AAx4XP5W4VWsOMm9CD+hJ1nmAeWulP6VAepUnyyyX2TGgEb+4dHdNrEj1/7UC5a9
FlEAz82FXroV9s5J6I406cKE3VVlN6+JrtH5nuMYjWKZL3yl6u/Z2gdOwjfXlXsh
yIxa9yslj8e4enF1+pR8zQjIZ8lkJY+nRGJAL1ECgYEA3wBWydLFVSDhB8YlzQPn
5oklvmD0UWCraziMalLjMIeFtDRYQLOr33rpSqn4gTP2/Aa0qGu6cHzl8SXY8JXz
nPc5sDJziOff0tRjQksiqRrY+a0+YrRbkkO7givZGilD2gAelE6ASfgMbisWVMdK
duE1fe/AtNwDI6F+mQb/mEo=
-----END PRIVATE KEY-----
";

pub(super) fn der_of(pem: &str) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    block.contents
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// The subject's CN and O values as the authenticator's parser reads them.
fn names(cert_pem: &str) -> (Vec<String>, Vec<String>) {
    let der = der_of(cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("X.509");
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .map(|a| a.as_str().expect("a string").to_owned())
        .collect();
    let o = subject
        .iter_organization()
        .map(|a| a.as_str().expect("a string").to_owned())
        .collect();
    (cn, o)
}

/// What the API server's client-certificate verifier (built as `server_tls` builds it) says
/// of `leaf`, issued by the CA `ca`.
pub(super) fn webpki_verifies(ca: &[u8], leaf: &[u8]) -> Result<(), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec()))?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    verifier
        .verify_client_cert(&CertificateDer::from(leaf.to_vec()), &[], UnixTime::now())
        .map(|_| ())
}

fn transfer(from: &mut rustls::Connection, to: &mut rustls::Connection) -> Result<(), String> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).map_err(|e| e.to_string())?;
    }
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        to.read_tls(&mut rest).map_err(|e| e.to_string())?;
        to.process_new_packets().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A TLS handshake in memory between a client presenting `credential` and the API server's
/// own TLS configuration; the identity the server then reads from the client's certificate.
fn handshake(ca: &Ca, credential: &Issued) -> Result<Option<UserInfo>, String> {
    let serving = ca
        .serving(&["localhost".to_owned()], &[])
        .map_err(|e| e.to_string())?;
    let server_config = crate::auth::server_tls(&serving.cert_pem, &serving.key_pem, &ca.cert_pem)
        .map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(der_of(&ca.cert_pem)))
        .map_err(|e| e.to_string())?;
    let key = rustls_pemfile::private_key(&mut credential.key_pem.as_bytes())
        .ok()
        .flatten()
        .ok_or("no key")?;
    let chain = vec![CertificateDer::from(der_of(&credential.cert_pem))];
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut client = rustls::Connection::from(
        rustls::ClientConnection::new(Arc::new(client_config), name).map_err(|e| e.to_string())?,
    );
    let mut server = rustls::Connection::from(
        rustls::ServerConnection::new(server_config).map_err(|e| e.to_string())?,
    );
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
        transfer(&mut client, &mut server)?;
        transfer(&mut server, &mut client)?;
    }
    if server.is_handshaking() {
        return Err("the handshake did not finish".into());
    }
    Ok(server
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| identity_from_certificate(leaf)))
}

/// `openssl ARGS` in `dir`, or None when OpenSSL is not installed.
fn openssl(dir: &Path, args: &[&str]) -> Option<(bool, String)> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success(), text))
}

#[test]
fn a_user_in_several_groups_has_every_group_in_one_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::load_or_create(dir.path()).expect("a CA");
    let groups = strings(&["dev", "ops", "system:authenticated"]);
    let alice = ca.client("alice", &groups).expect("issued");
    assert_eq!(
        names(&alice.cert_pem),
        (strings(&["alice"]), groups.clone())
    );
    let der = der_of(&alice.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("X.509");
    assert_eq!(cert.issuer().to_string(), "CN=keel-ca");
    let eku = cert.extended_key_usage().expect("parses").expect("present");
    assert!(eku.value.client_auth && !eku.value.server_auth);
    // rcgen's own fields survive the new subject: the key identifier names the CA's.
    assert!(cert.extensions().iter().any(|e| matches!(
        e.parsed_extension(),
        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(_)
    )));
    webpki_verifies(&der_of(&ca.cert_pem), &der).expect("rustls verifies it");
    let user = handshake(&ca, &alice)
        .expect("the handshake")
        .expect("an identity");
    assert_eq!(user.name, "alice");
    assert_eq!(user.groups, groups, "every group, in order");
    // Not signed by this CA: refused by the same verifier.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Ca::load_or_create(other_dir.path()).expect("another CA");
    assert!(webpki_verifies(&der_of(&other.cert_pem), &der).is_err());
    let forged = Issued {
        cert_pem: other.client("alice", &groups).expect("issued").cert_pem,
        key_pem: alice.key_pem.clone(),
    };
    assert!(handshake(&ca, &forged).is_err(), "another CA's certificate");
}

#[test]
fn no_group_and_a_hundred_groups_authenticate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::load_or_create(dir.path()).expect("a CA");
    let bob = ca.client("bob", &[]).expect("issued");
    assert_eq!(names(&bob.cert_pem), (strings(&["bob"]), vec![]));
    let user = handshake(&ca, &bob).expect("handshake").expect("identity");
    assert!(user.groups.is_empty());
    let many: Vec<String> = (0..100).map(|i| format!("team-{i}")).collect();
    let crowd = ca.client("crowd", &many).expect("issued");
    let user = handshake(&ca, &crowd)
        .expect("handshake")
        .expect("identity");
    assert_eq!(user.groups, many);
}

#[test]
fn hostile_group_names_are_carried_exactly_or_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::load_or_create(dir.path()).expect("a CA");
    let odd = strings(&["a,b", "x+y", "k=v", "\"q\"", "dév", "日本", "#1", " pad "]);
    let carol = ca.client("carol, jr.", &odd).expect("issued");
    let user = handshake(&ca, &carol)
        .expect("handshake")
        .expect("identity");
    assert_eq!((user.name.as_str(), user.groups), ("carol, jr.", odd));
    let refused = [
        (
            vec!["g".repeat(64 * 1024)],
            "groups[0]: is 65536 bytes long",
        ),
        (strings(&["dev", ""]), "groups[1]: must not be empty"),
        (
            strings(&["dev\nops"]),
            "groups[0]: contains the control character U+000A",
        ),
    ];
    for (groups, expected) in refused {
        let error = ca
            .client("alice", &groups)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with(&format!("a client certificate for \"alice\": {expected}")),
            "{expected}: {error}"
        );
    }
    let error = ca
        .client(&"m".repeat(5000), &[])
        .err()
        .map(|e| e.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("…") && e.len() < 300),
        "a huge user is not echoed whole: {error:?}"
    );
}

#[test]
fn subjects_across_the_der_length_boundaries_verify() {
    // Group lengths that take the subject (and the TBSCertificate and certificate around it)
    // across the 127/128 and 255/256 byte boundaries of DER lengths.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::load_or_create(dir.path()).expect("a CA");
    let ca_der = der_of(&ca.cert_pem);
    for len in (80..=300).step_by(3).chain([1, 127, 128, 255, 256, 1024]) {
        let groups = vec!["g".repeat(len), "ops".to_owned()];
        let issued = ca.client("alice", &groups).expect("issued");
        let der = der_of(&issued.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("X.509");
        let subject = cert.subject().as_raw().len();
        assert_eq!(names(&issued.cert_pem).1, groups, "{len} ({subject} bytes)");
        webpki_verifies(&ca_der, &der).unwrap_or_else(|e| panic!("{len}: {e}"));
    }
}

#[test]
fn a_request_with_several_groups_is_issued_with_all_of_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::load_or_create(dir.path()).expect("a CA");
    let usages = strings(&["digital signature", "client auth"]);
    let hour = std::time::Duration::from_secs(3600);
    // One made by OpenSSL, one by keel: both keep each O, in order.
    let key = KeyPair::generate().expect("key");
    let ours = signing_request(&key, "alice", &strings(&["dev", "ops"])).expect("request");
    for request in [OPENSSL_ALICE_DEV_OPS, ours.as_str()] {
        let cert_pem = ca
            .sign_request(request.as_bytes(), &usages, hour)
            .expect("issued");
        assert_eq!(
            names(&cert_pem),
            (strings(&["alice"]), strings(&["dev", "ops"]))
        );
        webpki_verifies(&der_of(&ca.cert_pem), &der_of(&cert_pem)).expect("verifies");
    }
    // The credential made from keel's request authenticates with both groups.
    let cert_pem = ca
        .sign_request(ours.as_bytes(), &usages, hour)
        .expect("issued");
    let credential = Issued {
        cert_pem,
        key_pem: key.serialize_pem(),
    };
    let user = handshake(&ca, &credential)
        .expect("handshake")
        .expect("identity");
    assert_eq!(user.groups, ["dev", "ops"]);
}

#[test]
fn requests_that_are_not_one_signed_csr_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::load_or_create(dir.path()).expect("a CA");
    let usages = strings(&["client auth"]);
    let hour = std::time::Duration::from_secs(3600);
    let error = |pem: &str| {
        ca.sign_request(pem.as_bytes(), &usages, hour)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(error(&ca.cert_pem).contains("not CERTIFICATE REQUEST"));
    // Another subject spliced in without signing again: rcgen's signature check refuses it.
    let tampered = OPENSSL_ALICE_DEV_OPS.replace("BAoMA29wczBZ", "BAoMA29wcjBZ");
    assert!(
        !error(&tampered).is_empty(),
        "a tampered request was signed"
    );
    assert!(error("").contains("not PEM"));
    let key = KeyPair::generate().expect("key");
    for (user, groups, expected) in [
        ("", vec![], "user: must not be empty"),
        (
            "alice",
            strings(&["ok", "a\u{7}"]),
            "groups[1]: contains the control",
        ),
    ] {
        let error = signing_request(&key, user, &groups)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains(expected), "{expected}: {error}");
    }
}

#[test]
fn an_rsa_ca_as_kubeadm_makes_issues_several_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = KeyPair::from_pem(RSA_KEY).expect("RSA key");
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "kubernetes");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = params.self_signed(&key).expect("CA");
    std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).expect("written");
    std::fs::write(dir.path().join("ca.key"), key.serialize_pem()).expect("written");
    let ca = Ca::load_or_create(dir.path()).expect("loaded");
    let alice = ca
        .client("alice", &strings(&["dev", "ops"]))
        .expect("issued");
    webpki_verifies(&der_of(&ca.cert_pem), &der_of(&alice.cert_pem)).expect("verifies");
    let user = handshake(&ca, &alice)
        .expect("handshake")
        .expect("identity");
    assert_eq!(user.groups, ["dev", "ops"]);
}

#[test]
fn openssl_reads_and_verifies_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::load_or_create(dir.path()).expect("a CA");
    let groups = strings(&["dev", "ops", "a,b", "x+y", "dév"]);
    let alice = ca.client("alice", &groups).expect("issued");
    std::fs::write(dir.path().join("alice.crt"), &alice.cert_pem).expect("written");
    let Some((ok, subject)) = openssl(
        dir.path(),
        &["x509", "-noout", "-subject", "-in", "alice.crt"],
    ) else {
        eprintln!("openssl is not installed: skipped");
        return;
    };
    assert!(ok, "{subject}");
    assert!(
        subject.starts_with("subject=CN = alice, O = dev, O = ops, O = "),
        "{subject}"
    );
    let (ok, rfc2253) = openssl(
        dir.path(),
        &[
            "x509",
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253,-esc_msb",
            "-in",
            "alice.crt",
        ],
    )
    .expect("ran");
    assert!(ok, "{rfc2253}");
    // RFC 2253 lists the RDNs last first, escaping what is special in text.
    assert_eq!(
        rfc2253.trim(),
        r"subject=O=dév,O=x\+y,O=a\,b,O=ops,O=dev,CN=alice"
    );
    let (ok, verified) =
        openssl(dir.path(), &["verify", "-CAfile", "ca.crt", "alice.crt"]).expect("ran");
    assert!(ok && verified.contains("alice.crt: OK"), "{verified}");
}
