//! Replacing the subject of a certificate (or a certification request) that rcgen made, and
//! signing it again.
//!
//! rcgen builds and signs everything else — serial, validity, key identifiers, extensions —
//! and only the subject, which it cannot write with several values of one attribute (see
//! [`super::subject`]), is swapped. A certificate and a PKCS#10 request have the same outer
//! shape, `SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }`, so both go through
//! here: the `tbs` is read as its list of DER elements, the subject element is replaced, the
//! new `tbs` is signed with the same key (rcgen 0.13 does not expose signing of arbitrary
//! bytes, so with ring from the key's PKCS#8, rcgen's own backend) and the three parts are
//! written again. Every length is written by yasna, never by hand.

use rcgen::KeyPair;
use ring::rand::SystemRandom;
use ring::signature;

/// What is re-signed: where its subject sits in the signed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signed {
    /// TBSCertificate: `[0] version` (optional), serial, signature, issuer, validity,
    /// subject, … (RFC 5280 4.1).
    Certificate,
    /// CertificationRequestInfo: version, subject, … (RFC 2986 4.1).
    Request,
}

#[derive(Debug, thiserror::Error)]
pub enum ResignError {
    #[error("the {what} rcgen made does not parse as DER: {message}")]
    Der { what: &'static str, message: String },
    #[error("the new subject is not one DER SEQUENCE (a Name)")]
    Subject,
    #[error("the key's algorithm ({algorithm}) is not one keel signs certificates with")]
    Algorithm { algorithm: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

impl Signed {
    fn what(self) -> &'static str {
        match self {
            Signed::Certificate => "certificate",
            Signed::Request => "certification request",
        }
    }

    /// The index of the subject among the elements of the signed part.
    fn subject_index(self, elements: &[Vec<u8>]) -> usize {
        match self {
            // The version is `[0] EXPLICIT` (tag 0xa0) and absent only for v1.
            Signed::Certificate if elements.first().and_then(|e| e.first()) == Some(&0xa0) => 5,
            Signed::Certificate => 4,
            Signed::Request => 1,
        }
    }
}

const SEQUENCE: u8 = 0x30;

/// `SEQUENCE { tbs, algorithm, BIT STRING }`: the signed part and the algorithm, whole.
fn split(der: &[u8], what: &'static str) -> Result<(Vec<u8>, Vec<u8>), ResignError> {
    yasna::parse_der(der, |reader| {
        reader.read_sequence(|parts| {
            let tbs = parts.next().read_der()?;
            let algorithm = parts.next().read_der()?;
            parts.next().read_bitvec_bytes()?;
            Ok((tbs, algorithm))
        })
    })
    .map_err(|e| ResignError::Der {
        what,
        message: e.to_string(),
    })
}

/// The elements of a SEQUENCE, each as its whole DER encoding.
fn elements(der: &[u8], what: &'static str) -> Result<Vec<Vec<u8>>, ResignError> {
    yasna::parse_der(der, |reader| {
        reader.read_sequence(|sequence| {
            let mut all = Vec::new();
            while let Some(element) = sequence.read_optional(|r| r.read_der())? {
                all.push(element);
            }
            Ok(all)
        })
    })
    .map_err(|e| ResignError::Der {
        what,
        message: e.to_string(),
    })
}

/// Signs `message` as rcgen signs with this key: ECDSA (P-256, P-384) with an ASN.1
/// signature, Ed25519, or RSA PKCS#1 v1.5 (kubeadm's CAs are RSA).
fn sign(key: &KeyPair, message: &[u8]) -> Result<Vec<u8>, ResignError> {
    let rng = SystemRandom::new();
    let pkcs8 = key.serialized_der();
    let failed = |e: &dyn std::fmt::Display| ResignError::Sign(e.to_string());
    let algorithm = key.algorithm();
    let ecdsa = |alg: &'static signature::EcdsaSigningAlgorithm| {
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8, &rng).map_err(|e| failed(&e))?;
        let signed = pair.sign(&rng, message).map_err(|e| failed(&e))?;
        Ok(signed.as_ref().to_vec())
    };
    let rsa = |padding: &'static dyn signature::RsaEncoding| {
        let pair = signature::RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| failed(&e))?;
        let mut signed = vec![0; pair.public().modulus_len()];
        pair.sign(padding, &rng, message, &mut signed)
            .map_err(|e| failed(&e))?;
        Ok(signed)
    };
    if algorithm == &rcgen::PKCS_ECDSA_P256_SHA256 {
        ecdsa(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)
    } else if algorithm == &rcgen::PKCS_ECDSA_P384_SHA384 {
        ecdsa(&signature::ECDSA_P384_SHA384_ASN1_SIGNING)
    } else if algorithm == &rcgen::PKCS_ED25519 {
        let pair =
            signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|e| failed(&e))?;
        Ok(pair.sign(message).as_ref().to_vec())
    } else if algorithm == &rcgen::PKCS_RSA_SHA256 {
        rsa(&signature::RSA_PKCS1_SHA256)
    } else if algorithm == &rcgen::PKCS_RSA_SHA384 {
        rsa(&signature::RSA_PKCS1_SHA384)
    } else if algorithm == &rcgen::PKCS_RSA_SHA512 {
        rsa(&signature::RSA_PKCS1_SHA512)
    } else {
        Err(ResignError::Algorithm {
            algorithm: format!("{algorithm:?}"),
        })
    }
}

/// `der` (signed by `key`, as rcgen made it) with `subject` as its subject, signed again by
/// `key`. Everything but the subject and the signature is kept byte for byte.
pub fn replace_subject(
    der: &[u8],
    kind: Signed,
    subject: &[u8],
    key: &KeyPair,
) -> Result<Vec<u8>, ResignError> {
    let what = kind.what();
    let whole_subject = yasna::parse_der(subject, |r| r.read_der()).ok();
    if subject.first() != Some(&SEQUENCE) || whole_subject.as_deref() != Some(subject) {
        return Err(ResignError::Subject);
    }
    let (tbs, algorithm) = split(der, what)?;
    let parts = elements(&tbs, what)?;
    let index = kind.subject_index(&parts);
    if parts.get(index).and_then(|p| p.first()) != Some(&SEQUENCE) {
        return Err(ResignError::Der {
            what,
            message: format!("element {index} of the signed part is not a Name"),
        });
    }
    let tbs = yasna::construct_der(|writer| {
        writer.write_sequence(|sequence| {
            for (at, part) in parts.iter().enumerate() {
                let part = if at == index { subject } else { part };
                sequence.next().write_der(part);
            }
        });
    });
    let signature = sign(key, &tbs)?;
    Ok(yasna::construct_der(|writer| {
        writer.write_sequence(|sequence| {
            sequence.next().write_der(&tbs);
            sequence.next().write_der(&algorithm);
            sequence
                .next()
                .write_bitvec_bytes(&signature, signature.len() * 8);
        });
    }))
}

#[cfg(test)]
mod tests;
