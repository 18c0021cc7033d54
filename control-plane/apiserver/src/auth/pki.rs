//! The cluster's certificates, made at first start as kubeadm makes them: a CA kept in the
//! data directory, a serving certificate signed by it (re-issued at every start, so a new
//! listen address or `--tls-san` is covered), client certificates whose subject carries the
//! identity (CN = user, O = groups), and an `admin.kubeconfig` that kubectl uses as is.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

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
        self.issue(params, "the serving certificate")
    }

    /// A client certificate: CN is the user, O the group, as kube-apiserver reads them.
    /// kube-apiserver reads every O of a certificate (and so does keel), but rcgen's
    /// DistinguishedName holds one value per attribute type (rustls/rcgen#81), so the
    /// certificates keel issues carry at most one group; give users more through RBAC
    /// bindings to the user, or through a token.
    pub fn client(&self, user: &str, groups: &[String]) -> Result<Issued, PkiError> {
        if groups.len() > 1 {
            return Err(PkiError::Invalid {
                path: PathBuf::from("<client certificate>"),
                message: format!(
                    "{} groups asked for {user:?}: the certificates keel issues carry one group (O)",
                    groups.len()
                ),
            });
        }
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, user);
        if let Some(group) = groups.first() {
            name.push(DnType::OrganizationName, group.as_str());
        }
        params.distinguished_name = name;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.issue(params, "a client certificate")
    }

    /// Issues a certificate for a PKCS#10 request (PEM, as a CertificateSigningRequest holds
    /// it; its signature is verified again here), as kube-controller-manager's
    /// signer does: the subject and subject alternative names come from the request, and
    /// nothing else does — validity (backdated five minutes for skewed clocks, never past the
    /// CA's own end), key usages, a random serial and "not a CA" are the signer's, so a
    /// request cannot ask for a CA certificate or extensions of its own.
    pub fn sign_request(
        &self,
        request_pem: &[u8],
        usages: &[String],
        lifetime: std::time::Duration,
    ) -> Result<String, PkiError> {
        let what = "the requested certificate";
        let text = std::str::from_utf8(request_pem).map_err(|_| PkiError::Invalid {
            path: PathBuf::from("<certificate signing request>"),
            message: "the request is not PEM text".into(),
        })?;
        let request =
            rcgen::CertificateSigningRequestParams::from_pem(text).map_err(cert_error(what))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = request.params.distinguished_name;
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
        Ok(signed.pem())
    }

    fn issue(&self, mut params: CertificateParams, what: &str) -> Result<Issued, PkiError> {
        validity(&mut params, LEAF_DAYS);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(cert_error(what))?;
        let cert = params
            .signed_by(&key, &self.signer, &self.key)
            .map_err(cert_error(what))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
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
mod tests {
    use super::*;

    #[test]
    fn a_ca_is_made_once_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Ca::load_or_create(dir.path()).expect("made");
        let again = Ca::load_or_create(dir.path()).expect("reloaded");
        assert_eq!(first.cert_pem, again.cert_pem);
        // A leaf signed by the reloaded CA names the CA on disk as its issuer.
        let leaf = again.client("alice", &["dev".into()]).expect("issued");
        assert!(again.client("bob", &["a".into(), "b".into()]).is_err());
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
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
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
}
