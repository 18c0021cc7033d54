//! The cluster's certificates, made at first start as kubeadm makes them: a CA kept in the
//! data directory, a serving certificate signed by it (re-issued at every start, so a new
//! listen address or `--tls-san` is covered), client certificates whose subject carries the
//! identity (CN = user, O = groups), and an `admin.kubeconfig` that kubectl uses as is.
//!
//! rcgen makes every certificate; a subject with several groups (one O per group, which
//! rcgen 0.13 cannot write) is written by [`subject`] and put in by [`resign`], which signs
//! the certificate again with the same key. A CSR's subject is carried over byte for byte the
//! same way, so what the approver, admission and the authenticator read (all with
//! x509-parser) is exactly what the requester signed.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub mod resign;
pub mod subject;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use x509_parser::prelude::FromDer;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Certificate { what: String, source: rcgen::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{what}: {source}")]
    Subject {
        what: String,
        source: subject::SubjectError,
    },
    #[error("{what}: {source}")]
    Resign {
        what: String,
        source: resign::ResignError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

fn cert_error(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Certificate {
        what: what.to_owned(),
        source,
    }
}

/// Writes a file only its owner may read (keys, kubeconfigs), replacing it atomically so a
/// crash never leaves half a key.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(contents).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// How long certificates made here are valid: the CA ten years, leaves one (kubeadm's
/// figures).
const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 365;

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks of other hosts that run behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// The cluster CA: its certificate (PEM, as clients are given it) and what signs with it.
pub struct Ca {
    pub cert_pem: String,
    signer: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// Loads `<dir>/ca.crt` and `<dir>/ca.key`, or makes them if neither exists. One without
    /// the other is an error: silently replacing a CA would lock every client out.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
                let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
                let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Invalid {
                    path: key_path.clone(),
                    message: format!("not a private key: {e}"),
                })?;
                let params = CertificateParams::from_ca_cert_pem(&cert_pem).map_err(|e| {
                    PkiError::Invalid {
                        path: cert_path.clone(),
                        message: format!("not a CA certificate: {e}"),
                    }
                })?;
                // Re-signing the parameters gives an issuer with the same name and key, which
                // is all that signing a leaf needs; clients keep the certificate on disk.
                let signer = params
                    .self_signed(&key)
                    .map_err(cert_error("the CA on disk"))?;
                Ok(Self {
                    cert_pem,
                    signer,
                    key,
                })
            }
            (false, false) => {
                let key = KeyPair::generate().map_err(cert_error("the CA key"))?;
                let mut params = CertificateParams::default();
                let mut name = DistinguishedName::new();
                name.push(DnType::CommonName, "keel-ca");
                params.distinguished_name = name;
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                validity(&mut params, CA_DAYS);
                let signer = params.self_signed(&key).map_err(cert_error("the CA"))?;
                let cert_pem = signer.pem();
                write_private(&key_path, key.serialize_pem().as_bytes())?;
                std::fs::write(&cert_path, &cert_pem).map_err(io(&cert_path))?;
                Ok(Self {
                    cert_pem,
                    signer,
                    key,
                })
            }
            (true, false) | (false, true) => Err(PkiError::Invalid {
                path: dir.to_owned(),
                message: "ca.crt and ca.key must both exist or both be absent (refusing to \
                          replace half a CA: every client trusts the old one)"
                    .into(),
            }),
        }
    }

    /// A serving certificate for these names and addresses.
    pub fn serving(&self, dns: &[String], ips: &[IpAddr]) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "kube-apiserver");
        params.distinguished_name = name;
        for d in dns {
            let name = d
                .clone()
                .try_into()
                .map_err(cert_error(&format!("the DNS name {d:?}")))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let (cert, key) = self.issue(params, "the serving certificate")?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A client certificate: CN is the user, one O per group (in the order given), as
    /// kube-apiserver reads them. Refused, naming the field: an empty, overlong or
    /// control-character user or group, or more groups than fit a TLS handshake
    /// ([`subject::client_name`]).
    pub fn client(&self, user: &str, groups: &[String]) -> Result<Issued, PkiError> {
        let what = "a client certificate";
        let name = subject::client_name(user, groups).map_err(|source| PkiError::Subject {
            what: format!("{what} for {:?}", abbreviated(user)),
            source,
        })?;
        let mut params = CertificateParams::default();
        // rcgen's subject is replaced below; CN alone is what it can write.
        let mut placeholder = DistinguishedName::new();
        placeholder.push(DnType::CommonName, user);
        params.distinguished_name = placeholder;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let (cert, key) = self.issue(params, what)?;
        let der = self.with_subject(cert.der(), &name, what)?;
        Ok(Issued {
            cert_pem: pem("CERTIFICATE", &der),
            key_pem: key.serialize_pem(),
        })
    }

    /// `der` (a certificate this CA signed) with `name` as its subject, signed again, and
    /// checked: it parses, its subject is `name`, and its signature verifies with the CA's key.
    fn with_subject(&self, der: &[u8], name: &[u8], what: &str) -> Result<Vec<u8>, PkiError> {
        let der = resign::replace_subject(der, resign::Signed::Certificate, name, &self.key)
            .map_err(|source| PkiError::Resign {
                what: what.to_owned(),
                source,
            })?;
        let broken = |message: String| PkiError::Invalid {
            path: PathBuf::from(format!("<{what}>")),
            message,
        };
        let (rest, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| broken(format!("the re-signed certificate does not parse: {e}")))?;
        let (_, ca) = x509_parser::parse_x509_certificate(self.signer.der())
            .map_err(|e| broken(format!("the CA certificate does not parse: {e}")))?;
        if !rest.is_empty() || cert.subject().as_raw() != name {
            return Err(broken("the re-signed certificate lost its subject".into()));
        }
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|e| broken(format!("the re-signed certificate does not verify: {e}")))?;
        Ok(der)
    }

    /// Issues a certificate for a PKCS#10 request (PEM, as a CertificateSigningRequest holds
    /// it; its signature is verified again here), as kube-controller-manager's
    /// signer does: the subject and subject alternative names come from the request, and
    /// nothing else does — validity (backdated five minutes for skewed clocks, never past the
    /// CA's own end), key usages, a random serial and "not a CA" are the signer's, so a
    /// request cannot ask for a CA certificate or extensions of its own.
    ///
    /// The subject is the request's, byte for byte: every O (group) in order, which rcgen's
    /// reading of the request would collapse to one.
    pub fn sign_request(
        &self,
        request_pem: &[u8],
        usages: &[String],
        lifetime: std::time::Duration,
    ) -> Result<String, PkiError> {
        let what = "the requested certificate";
        let refused = |message: String| PkiError::Invalid {
            path: PathBuf::from("<certificate signing request>"),
            message,
        };
        let (_, block) = x509_parser::pem::parse_x509_pem(request_pem)
            .map_err(|_| refused("the request is not PEM".into()))?;
        if block.label != "CERTIFICATE REQUEST" {
            return Err(refused(format!(
                "the PEM block is {:?}, not CERTIFICATE REQUEST",
                block.label
            )));
        }
        // rcgen checks the signature and reads the key and alternative names; x509-parser
        // reads the subject from the same bytes.
        let der = rustls::pki_types::CertificateSigningRequestDer::from(block.contents.as_slice());
        let request =
            rcgen::CertificateSigningRequestParams::from_der(&der).map_err(cert_error(what))?;
        let (rest, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
                .map_err(|e| refused(format!("the request does not parse: {e}")))?;
        if !rest.is_empty() {
            return Err(refused("bytes follow the request".into()));
        }
        let subject = parsed.certification_request_info.subject.as_raw().to_vec();
        let mut params = CertificateParams::default();
        params.subject_alt_names = request.params.subject_alt_names;
        params.is_ca = IsCa::ExplicitNoCa;
        for usage in usages {
            match usage.as_str() {
                "digital signature" => params.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "client auth" => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ServerAuth),
                other => {
                    return Err(PkiError::Invalid {
                        path: PathBuf::from("<certificate signing request>"),
                        message: format!("the usage {other:?} is not one keel's signer issues"),
                    })
                }
            }
        }
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        let lifetime =
            time::Duration::try_from(lifetime).unwrap_or(time::Duration::days(LEAF_DAYS));
        params.not_after = (now + lifetime).min(self.signer.params().not_after);
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial).map_err(
            |_| PkiError::Invalid {
                path: PathBuf::from("<certificate signing request>"),
                message: "the system's random number generator failed".into(),
            },
        )?;
        // A positive INTEGER of at most 20 octets (RFC 5280 4.1.2.2).
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        let signed = rcgen::CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        }
        .signed_by(&self.signer, &self.key)
        .map_err(cert_error(what))?;
        let der = self.with_subject(signed.der(), &subject, what)?;
        Ok(pem("CERTIFICATE", &der))
    }

    /// A leaf for a new key, valid for a year.
    fn issue(
        &self,
        mut params: CertificateParams,
        what: &str,
    ) -> Result<(rcgen::Certificate, KeyPair), PkiError> {
        validity(&mut params, LEAF_DAYS);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(cert_error(what))?;
        let cert = params
            .signed_by(&key, &self.signer, &self.key)
            .map_err(cert_error(what))?;
        Ok((cert, key))
    }
}

/// A PKCS#10 request (PEM) for `user` in `groups`, signed by `key`: how a client asks the
/// `kubernetes.io/kube-apiserver-client` signer for a certificate with several groups, which
/// rcgen alone cannot write. Refused as [`Ca::client`] refuses a user or group.
pub fn signing_request(key: &KeyPair, user: &str, groups: &[String]) -> Result<String, PkiError> {
    let what = "a certificate signing request";
    let name = subject::client_name(user, groups).map_err(|source| PkiError::Subject {
        what: format!("{what} for {:?}", abbreviated(user)),
        source,
    })?;
    let params = CertificateParams::default();
    let request = params.serialize_request(key).map_err(cert_error(what))?;
    let der = resign::replace_subject(request.der(), resign::Signed::Request, &name, key).map_err(
        |source| PkiError::Resign {
            what: what.to_owned(),
            source,
        },
    )?;
    let broken = |message: String| PkiError::Invalid {
        path: PathBuf::from(format!("<{what}>")),
        message,
    };
    let (_, parsed) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| broken(format!("the re-signed request does not parse: {e}")))?;
    parsed
        .verify_signature()
        .map_err(|e| broken(format!("the re-signed request does not verify: {e}")))?;
    Ok(pem("CERTIFICATE REQUEST", &der))
}

/// PEM as rcgen writes it: 64 columns, LF line ends.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // Base64 is ASCII, so every 64-byte chunk is whole characters.
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A user name as an error shows it: a megabyte of name is not repeated back whole.
fn abbreviated(user: &str) -> String {
    match user.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &user[..end]),
        None => user.to_owned(),
    }
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

/// A kubeconfig with one cluster, one user authenticated by a client certificate and one
/// context, everything inline so the file is all a client needs.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, credential: &Issued) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: keel\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\ncontexts:\n- name: {user}@keel\n  context:\n    cluster: keel\n    \
         user: {user}\n    namespace: default\ncurrent-context: {user}@keel\nusers:\n- name: {user}\n  user:\n    \
         client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(ca_pem),
        cert = b64(&credential.cert_pem),
        key = b64(&credential.key_pem),
    )
}

#[cfg(test)]
mod groups_tests;
#[cfg(test)]
mod tests;
