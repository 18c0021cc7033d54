use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use super::*;
use crate::auth::pki::groups_tests::{webpki_verifies, RSA_KEY};
use crate::auth::pki::subject::client_name;

fn groups(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// A CA for `key` and a client leaf it signed, as rcgen makes them: (CA DER, leaf DER).
fn ca_and_leaf(key: &KeyPair) -> (Vec<u8>, Vec<u8>) {
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(key).expect("CA");
    let mut leaf_params = CertificateParams::default();
    let mut placeholder = DistinguishedName::new();
    placeholder.push(DnType::CommonName, "placeholder");
    leaf_params.distinguished_name = placeholder;
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = leaf_params.signed_by(&leaf_key, &ca, key).expect("leaf");
    (ca.der().to_vec(), leaf.der().to_vec())
}

/// Checks `new` is `old` with `subject` (same other fields) and verifies under `ca`, with
/// x509-parser and with rustls.
fn check_certificate(ca: &[u8], old: &[u8], new: &[u8], subject: &[u8]) {
    let (rest, cert) = x509_parser::parse_x509_certificate(new).expect("X.509");
    assert!(rest.is_empty());
    let (_, before) = x509_parser::parse_x509_certificate(old).expect("X.509");
    assert_eq!(cert.subject().as_raw(), subject);
    assert_eq!(cert.raw_serial(), before.raw_serial());
    assert_eq!(cert.issuer().as_raw(), before.issuer().as_raw());
    assert_eq!(cert.validity(), before.validity());
    assert_eq!(cert.public_key().raw, before.public_key().raw);
    assert_eq!(cert.extensions(), before.extensions());
    assert_eq!(cert.signature_algorithm, before.signature_algorithm);
    let (_, issuer) = x509_parser::parse_x509_certificate(ca).expect("CA");
    cert.verify_signature(Some(issuer.public_key()))
        .expect("x509-parser verifies it");
    // webpki reads DER elements of at most 65 535 bytes, so a larger certificate is refused
    // by the API server however well it is encoded (why `client_name` caps subjects).
    if new.len() <= 65_535 {
        webpki_verifies(ca, new).expect("rustls verifies it");
    } else {
        assert!(webpki_verifies(ca, new).is_err(), "{} bytes", new.len());
    }
}

#[test]
fn every_key_algorithm_keel_can_hold_re_signs() {
    let subject = client_name("alice", &groups(&["dev", "ops"])).expect("name");
    let keys = [
        (
            "P-256",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        ),
        (
            "P-384",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        ),
        ("Ed25519", KeyPair::generate_for(&rcgen::PKCS_ED25519)),
        ("RSA", KeyPair::from_pem(RSA_KEY)),
    ];
    for (name, key) in keys {
        let key = key.unwrap_or_else(|e| panic!("{name}: {e}"));
        let (ca, leaf) = ca_and_leaf(&key);
        let new = replace_subject(&leaf, Signed::Certificate, &subject, &key)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        check_certificate(&ca, &leaf, &new, &subject);
    }
}

#[test]
fn certificates_across_every_length_boundary_verify() {
    // One key and CA, subjects from 20 to about 70 000 bytes: the Name, the TBSCertificate
    // and the certificate cross the 127/128, 255/256 and 65 535/65 536 byte boundaries of
    // DER's length forms (one byte, 0x81 + one, 0x82 + two, 0x83 + three).
    let key = KeyPair::generate().expect("key");
    let (ca, leaf) = ca_and_leaf(&key);
    let mut lengths: Vec<usize> = (1..=300).collect();
    lengths.extend([65_000, 65_400, 65_535, 65_536, 70_000]);
    let mut seen = std::collections::BTreeSet::new();
    for len in lengths {
        // Written directly: client_name would refuse the largest.
        let subject = yasna::construct_der(|w| {
            w.write_sequence(|rdns| {
                rdns.next().write_set(|set| {
                    set.next().write_sequence(|pair| {
                        pair.next()
                            .write_oid(&yasna::models::ObjectIdentifier::from_slice(&[
                                2, 5, 4, 10,
                            ]));
                        pair.next().write_utf8_string(&"o".repeat(len));
                    })
                })
            })
        });
        let new = replace_subject(&leaf, Signed::Certificate, &subject, &key)
            .unwrap_or_else(|e| panic!("{len}: {e}"));
        check_certificate(&ca, &leaf, &new, &subject);
        seen.insert((subject[1], new[1]));
    }
    // Every length form was used by the Name; the certificate, never under 256 bytes, used
    // two and three length bytes (the requests below cover the smaller forms).
    let forms = |pick: fn(&(u8, u8)) -> u8| seen.iter().map(pick).collect::<Vec<_>>();
    for form in [0x81, 0x82, 0x83] {
        assert!(forms(|(s, _)| *s).contains(&form), "Name {form:#x}");
    }
    for form in [0x82, 0x83] {
        assert!(forms(|(_, c)| *c).contains(&form), "certificate {form:#x}");
    }
    assert!(seen.iter().any(|(s, _)| *s < 0x80), "a short-form Name");
}

#[test]
fn requests_across_the_length_boundaries_verify() {
    // A request's signed part is small (~110 bytes with a short subject), so it crosses
    // 127/128 and 255/256 as its subject grows.
    let key = KeyPair::generate().expect("key");
    let placeholder = CertificateParams::default()
        .serialize_request(&key)
        .expect("request");
    let mut seen = std::collections::BTreeSet::new();
    for len in 1..=200 {
        let groups = vec!["g".repeat(len)];
        let subject = client_name("alice", &groups).expect("name");
        let new = replace_subject(placeholder.der(), Signed::Request, &subject, &key)
            .unwrap_or_else(|e| panic!("{len}: {e}"));
        let (rest, request) = X509CertificationRequest::from_der(&new).expect("PKCS#10");
        assert!(rest.is_empty());
        request
            .verify_signature()
            .unwrap_or_else(|e| panic!("{len}: {e}"));
        assert_eq!(request.certification_request_info.subject.as_raw(), subject);
        let (info, _) = split(&new, "request").expect("parts");
        // 0: the short form.
        let form = if info[1] < 0x80 { 0 } else { info[1] };
        seen.insert((form, new[1]));
        // rcgen, which the signer uses, accepts it too.
        let der = rustls::pki_types::CertificateSigningRequestDer::from(new.as_slice());
        rcgen::CertificateSigningRequestParams::from_der(&der)
            .unwrap_or_else(|e| panic!("{len}: rcgen: {e}"));
    }
    // The signed part in each of its forms (short, one and two length bytes), and the whole.
    let info: std::collections::BTreeSet<u8> = seen.iter().map(|(i, _)| *i).collect();
    let whole: std::collections::BTreeSet<u8> = seen.iter().map(|(_, w)| *w).collect();
    assert_eq!(info.into_iter().collect::<Vec<_>>(), [0, 0x81, 0x82]);
    assert_eq!(whole.into_iter().collect::<Vec<_>>(), [0x81, 0x82]);
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let key = KeyPair::generate().expect("key");
    let (_, leaf) = ca_and_leaf(&key);
    let subject = client_name("alice", &[]).expect("name");
    let bad_subjects: [&[u8]; 5] = [
        b"",
        b"\x31\x00",         // a SET, not a SEQUENCE
        b"\x30\x05\x31\x00", // shorter than its length says
        b"\x30\x00\x00",     // something after it
        b"\x30\x81\x00",     // a long form where the short one is due (not DER)
    ];
    for bad in bad_subjects {
        assert!(
            matches!(
                replace_subject(&leaf, Signed::Certificate, bad, &key),
                Err(ResignError::Subject)
            ),
            "{bad:02x?}"
        );
    }
    let mut truncated = leaf.clone();
    truncated.truncate(leaf.len() - 1);
    let mut trailing = leaf.clone();
    trailing.push(0);
    let bad_certificates: [&[u8]; 4] = [b"", b"\x30\x00", &truncated, &trailing];
    for bad in bad_certificates {
        let error = replace_subject(bad, Signed::Certificate, &subject, &key)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("does not parse as DER"), "{error}");
    }
    // A request's layout is not a certificate's: the element where a certificate's subject
    // sits is missing.
    let request = CertificateParams::default()
        .serialize_request(&key)
        .expect("request");
    let error = replace_subject(request.der(), Signed::Certificate, &subject, &key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("is not a Name"), "{error}");
}
