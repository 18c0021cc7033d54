//! The parts of TLS bootstrapping that need no API server: the node's key and CSR, the
//! checks on the certificate the signer sends back, whether an existing kubeconfig still
//! holds a usable client certificate, and the kubeconfig written at the end.

use std::{
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use base64::Engine as _;
use kube::config::{AuthInfo, Cluster, Kubeconfig};

/// The user name prefix and the group of node credentials: what the Node authorizer and
/// the `kube-apiserver-client-kubelet` signer recognise a node by.
pub const NODE_USER_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";

/// The names the kubelet gives the parts of the kubeconfig it writes after bootstrapping.
const CLUSTER_NAME: &str = "default-cluster";
const USER_NAME: &str = "default-auth";
const CONTEXT_NAME: &str = "default-context";

/// A fresh private key and the CSR for it. Deliberately not `Debug`: the key must never
/// reach a log line.
pub struct NodeCsr {
    /// The PKCS#10 request, PEM (`CERTIFICATE REQUEST`).
    pub csr_pem: String,
    /// The private key, PKCS#8 PEM; written only together with its certificate.
    pub(in crate::cluster::bootstrap) key_pem: String,
    /// The key's SubjectPublicKeyInfo (DER): what the issued certificate must certify.
    pub(in crate::cluster::bootstrap) spki_der: Vec<u8>,
}

/// Generates the node's key and its CSR: subject `CN=system:node:<node>, O=system:nodes`,
/// no extensions (no SANs: a client certificate names a user, not a host; the signer
/// refuses requests with SANs), signed with the key itself.
///
/// ECDSA P-256, as the kubelet: small keys, cheap handshakes, and every signer takes it
/// (Go's crypto/x509 as much as keel's). It is also why the CSR's usages carry no
/// "key encipherment": that is RSA key transport, meaningless for an ECDSA key.
pub fn node_csr(node_name: &str) -> Result<NodeCsr, rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(
        rcgen::DnType::CommonName,
        format!("{NODE_USER_PREFIX}{node_name}"),
    );
    subject.push(rcgen::DnType::OrganizationName, NODES_GROUP);
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = subject;
    let request = params.serialize_request(&key)?;
    Ok(NodeCsr {
        csr_pem: request.pem()?,
        key_pem: key.serialize_pem(),
        spki_der: key.public_key_der(),
    })
}

/// Why an issued certificate is not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    #[error("it holds no PEM certificate")]
    NotPem,
    #[error("it cannot be parsed: {0}")]
    Unparseable(String),
    #[error("its subject is CN={found}, not {expected}")]
    OtherUser { expected: String, found: String },
    #[error("its subject's organizations ({found}) do not include system:nodes")]
    NotANode { found: String },
    #[error("it certifies another public key than the one this node generated")]
    OtherKey,
    #[error("it is not valid before {0}")]
    NotYetValid(String),
    #[error("it expired at {0}")]
    Expired(String),
    #[error("its extended key usages do not include client auth")]
    NotForClients,
}

/// The validity of a certificate taken, in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

/// Checks the certificate a signer issued (`status.certificate`: PEM, the leaf first, maybe
/// followed by its chain) before the node trusts it with its key: it names this node
/// (`CN=system:node:<node>`, `O=system:nodes`), certifies the key this node generated (the
/// same SubjectPublicKeyInfo), is valid at `now` (Unix seconds), and is usable for client
/// auth. A signer that answers with another node's certificate, or one for another key,
/// would otherwise leave the node with credentials that fail (or, worse, impersonate) at
/// the first request, far from the cause.
pub fn check_issued(
    pem: &[u8],
    node_name: &str,
    spki_der: &[u8],
    now: i64,
) -> Result<Validity, CertProblem> {
    let der = first_certificate(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|error| CertProblem::Unparseable(error.to_string()))?;
    let subject = cert.subject();
    let names: Vec<&str> = subject
        .iter_common_name()
        .map(|cn| cn.as_str().unwrap_or("?"))
        .collect();
    let expected = format!("{NODE_USER_PREFIX}{node_name}");
    if names != [expected.as_str()] {
        return Err(CertProblem::OtherUser {
            expected,
            found: if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(",")
            },
        });
    }
    let groups: Vec<&str> = subject
        .iter_organization()
        .map(|o| o.as_str().unwrap_or("?"))
        .collect();
    if !groups.contains(&NODES_GROUP) {
        return Err(CertProblem::NotANode {
            found: groups.join(","),
        });
    }
    if cert.public_key().raw != spki_der {
        return Err(CertProblem::OtherKey);
    }
    let validity = Validity {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    };
    if now < validity.not_before {
        return Err(CertProblem::NotYetValid(rfc3339(validity.not_before)));
    }
    if now >= validity.not_after {
        return Err(CertProblem::Expired(rfc3339(validity.not_after)));
    }
    // No extension means no restriction (RFC 5280); one that leaves client auth out makes
    // the API server refuse the certificate.
    match cert.extended_key_usage() {
        Ok(Some(usage)) if !usage.value.client_auth && !usage.value.any => {
            return Err(CertProblem::NotForClients)
        }
        Ok(_) => {}
        Err(error) => return Err(CertProblem::Unparseable(error.to_string())),
    }
    Ok(validity)
}

/// The first certificate of a PEM bundle, DER.
fn first_certificate(pem: &[u8]) -> Result<Vec<u8>, CertProblem> {
    match rustls_pemfile::certs(&mut &pem[..]).next() {
        Some(Ok(der)) => Ok(der.to_vec()),
        _ => Err(CertProblem::NotPem),
    }
}

/// What the node's kubeconfig holds, as far as bootstrapping is concerned.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential {
    /// A client certificate with more than a tenth of its lifetime left.
    Valid { not_after: i64 },
    /// A client certificate in the last tenth of its lifetime. keel does not rotate a
    /// running node's certificate (the kubelet's certificate manager does, at 70–90% of its
    /// lifetime), so start-up is the chance to renew; a tenth leaves a year-long
    /// certificate over a month, and does not churn CSRs on every restart.
    ExpiresSoon { not_after: i64 },
    /// Nothing a client could authenticate with, and why: the kubelet's
    /// `isClientConfigStillValid` answers no for a missing file, one that is not a
    /// kubeconfig, one without a certificate, and an expired certificate.
    Unusable(String),
}

/// Whether the kubeconfig at `path` holds a usable client certificate at `now` (Unix
/// seconds). Only an error reading the file (other than its absence) is an error: a file
/// that is there but cannot be read is not the daemon's to overwrite.
pub fn existing_credential(path: &Path, now: i64) -> std::io::Result<Credential> {
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Credential::Unusable("it does not exist".to_string()))
        }
        Err(error) => return Err(error),
    }
    std::fs::File::open(path)?;
    // `read_from` makes relative certificate and key paths relative to the file's directory,
    // as clients do.
    let config = match Kubeconfig::read_from(path) {
        Ok(config) => config,
        Err(error) => return Ok(Credential::Unusable(format!("not a kubeconfig: {error}"))),
    };
    let user = match selected(&config) {
        Ok(selected) => selected.user,
        Err((field, problem)) => return Ok(Credential::Unusable(format!("{field}: {problem}"))),
    };
    let cert_pem = match (&user.client_certificate_data, &user.client_certificate) {
        (Some(data), _) => match base64::engine::general_purpose::STANDARD.decode(data.trim()) {
            Ok(pem) => pem,
            Err(_) => {
                return Ok(Credential::Unusable(
                    "client-certificate-data is not base64".to_string(),
                ))
            }
        },
        (None, Some(file)) => match std::fs::read(file) {
            Ok(pem) => pem,
            Err(error) => {
                return Ok(Credential::Unusable(format!(
                    "client-certificate {file}: {error}"
                )))
            }
        },
        (None, None) => {
            return Ok(Credential::Unusable(
                "it holds no client certificate".to_string(),
            ))
        }
    };
    if user.client_key_data.is_none() && user.client_key.is_none() {
        return Ok(Credential::Unusable("it holds no client key".to_string()));
    }
    let der = match first_certificate(&cert_pem) {
        Ok(der) => der,
        Err(problem) => {
            return Ok(Credential::Unusable(format!(
                "client certificate: {problem}"
            )))
        }
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return Ok(Credential::Unusable(
            "its client certificate cannot be parsed".to_string(),
        ));
    };
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if now >= not_after {
        return Ok(Credential::Unusable(format!(
            "its client certificate expired at {}",
            rfc3339(not_after)
        )));
    }
    // Not-yet-valid is not checked: signers backdate by minutes for clock skew, and a
    // clock behind by more than that is better reported by the API server than worked
    // around by asking for a certificate that would be just as early.
    let lifetime = not_after.saturating_sub(not_before).max(0);
    if not_after - now < lifetime / 10 {
        return Ok(Credential::ExpiresSoon { not_after });
    }
    Ok(Credential::Valid { not_after })
}

/// A kubeconfig's selection: its current context (or its only one), with that context's
/// cluster and user.
pub(in crate::cluster::bootstrap) struct Selected<'a> {
    pub context: &'a str,
    pub cluster_name: &'a str,
    pub cluster: &'a Cluster,
    pub user_name: &'a str,
    pub user: &'a AuthInfo,
}

/// What `kubectl` would use from `config`, or which field stops it: `(field, problem)`.
pub(in crate::cluster::bootstrap) fn selected(
    config: &Kubeconfig,
) -> Result<Selected<'_>, (String, String)> {
    let missing = |field: String| (field, "missing".to_string());
    let context_name = match (&config.current_context, config.contexts.as_slice()) {
        (Some(name), _) if !name.is_empty() => name.as_str(),
        (_, [only]) => only.name.as_str(),
        _ => return Err(missing("current-context".to_string())),
    };
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .ok_or_else(|| {
            (
                "current-context".to_string(),
                format!("no context named {context_name:?}"),
            )
        })?
        .context
        .as_ref()
        .ok_or_else(|| missing(format!("contexts[{context_name}].context")))?;
    let cluster_name = context.cluster.as_str();
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| missing(format!("clusters[{cluster_name}].cluster")))?;
    let user_name = context
        .user
        .as_deref()
        .ok_or_else(|| missing(format!("contexts[{context_name}].context.user")))?;
    let user = config
        .auth_infos
        .iter()
        .find(|u| u.name == user_name)
        .and_then(|u| u.auth_info.as_ref())
        .ok_or_else(|| missing(format!("users[{user_name}].user")))?;
    Ok(Selected {
        context: context_name,
        cluster_name,
        cluster,
        user_name,
        user,
    })
}

/// The node's kubeconfig after bootstrapping, laid out as the kubelet writes it: the
/// bootstrap kubeconfig's server and CA, the issued certificate and the key embedded (one
/// file to move, no paths to go stale).
pub fn kubeconfig_yaml(
    server: &str,
    tls_server_name: Option<&str>,
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &str,
) -> String {
    let base64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    // JSON strings are YAML scalars: quoting a URL this way cannot go wrong.
    let quoted = |text: &str| serde_json::Value::from(text).to_string();
    let mut lines = vec![
        "apiVersion: v1".to_string(),
        "kind: Config".to_string(),
        "clusters:".to_string(),
        "- cluster:".to_string(),
        format!("    certificate-authority-data: {}", base64(ca_pem)),
        format!("    server: {}", quoted(server)),
    ];
    if let Some(name) = tls_server_name {
        lines.push(format!("    tls-server-name: {}", quoted(name)));
    }
    lines.extend([
        format!("  name: {CLUSTER_NAME}"),
        "contexts:".to_string(),
        "- context:".to_string(),
        format!("    cluster: {CLUSTER_NAME}"),
        "    namespace: default".to_string(),
        format!("    user: {USER_NAME}"),
        format!("  name: {CONTEXT_NAME}"),
        format!("current-context: {CONTEXT_NAME}"),
        "users:".to_string(),
        format!("- name: {USER_NAME}"),
        "  user:".to_string(),
        format!("    client-certificate-data: {}", base64(cert_pem)),
        format!("    client-key-data: {}", base64(key_pem.as_bytes())),
        String::new(),
    ]);
    lines.join("\n")
}

/// Writes a file only its owner may read, atomically: `FILE.tmp` created with mode 0600
/// (never world-readable, not even between a create and a chmod), synced, renamed over
/// `FILE`, and the directory synced. A crash leaves the old file or the new one, never a
/// half-written key; a daemon restarted after a power cut finds what it was told it had
/// written. The directory is created (0700) if missing.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A leftover of an interrupted run; `create_new` below then also refuses to follow a
    // link someone put in its place.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(error) = written {
        // Not left behind: it holds a private key.
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Unix seconds as RFC 3339, for messages.
pub fn rfc3339(seconds: i64) -> String {
    match k8s_openapi::jiff::Timestamp::from_second(seconds) {
        Ok(time) => time.to_string(),
        Err(_) => format!("{seconds} (Unix time)"),
    }
}
