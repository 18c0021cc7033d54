//! TLS bootstrapping (`--bootstrap-kubeconfig`): how a node that holds only a bootstrap
//! token gets its own client certificate, as the kubelet does
//! (`pkg/kubelet/certificate/bootstrap`) and as `kubeadm join` relies on.
//!
//! When `--kubeconfig` holds no usable client certificate ([`credentials::Credential`]),
//! the daemon, before registering its Node:
//! 1. generates an ECDSA P-256 key and a CSR for `CN=system:node:<node>, O=system:nodes`;
//! 2. creates a `certificates.k8s.io/v1` CertificateSigningRequest named `node-csr-…` for the
//!    signer `kubernetes.io/kube-apiserver-client-kubelet`, authenticated by the bootstrap
//!    kubeconfig's token (the group `system:bootstrappers`, which may create and watch CSRs
//!    and whose CSRs the approver approves);
//! 3. watches it until the signer has put a certificate in `status.certificate`, or a
//!    `Denied` or `Failed` condition says it never will, or `--bootstrap-timeout` passes;
//! 4. checks that certificate ([`credentials::check_issued`]) and writes `--kubeconfig`
//!    with it, its key, and the bootstrap kubeconfig's server and CA, atomically and 0600.
//!
//! Nothing is written before the last step, so a daemon stopped meanwhile (a signal drops
//! the future) leaves `--kubeconfig` as it was; the next start asks again with a new key.
//! The token and the key are never logged.

pub mod credentials;
#[cfg(test)]
mod tests;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use base64::Engine as _;
use futures::StreamExt as _;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::Client;

use keel_host::backoff::Backoff;

use self::credentials::{CertProblem, Credential, NodeCsr};
use super::watch_pacing::paced;

/// The signer of kubelet client certificates: its approver and signer accept exactly a node
/// asking for `system:node:<name>` in `system:nodes`, with the usages below.
pub const SIGNER_NAME: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// What kubelets 1.2x ask for with an ECDSA key: signatures, for TLS client authentication.
/// The signer refuses any other set (RSA keys add "key encipherment").
pub const USAGES: [&str; 2] = ["digital signature", "client auth"];
/// The name prefix of bootstrapping nodes' CSRs (`kubectl get csr` shows kubeadm-joined
/// nodes' as `node-csr-…`); the server completes the name, so two attempts never collide.
pub const GENERATE_NAME: &str = "node-csr-";
/// Creating the CSR is retried while the API server is unreachable or overloaded, with the
/// registration's backoff (the kubelet's 1 s doubling to 7 s).
const CREATE_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const CREATE_BACKOFF_MAX: Duration = Duration::from_secs(7);

/// A bootstrap that did not end with a certificate.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The bootstrap kubeconfig cannot be used: which file, which field, why.
    #[error("bootstrap kubeconfig {}: {field}: {problem}", path.display())]
    BootstrapKubeconfig {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the API client of bootstrap kubeconfig {}: {message}", path.display())]
    Client { path: PathBuf, message: String },
    #[error("generating the node's key and CSR: {0}")]
    Key(#[source] rcgen::Error),
    #[error("creating the CertificateSigningRequest: {0}")]
    Create(#[source] kube::Error),
    #[error("CertificateSigningRequest {name} was denied: {reason}: {message}")]
    Denied {
        name: String,
        reason: String,
        message: String,
    },
    #[error("CertificateSigningRequest {name} failed: {reason}: {message}")]
    Failed {
        name: String,
        reason: String,
        message: String,
    },
    #[error("CertificateSigningRequest {0} was deleted before a certificate was issued")]
    Deleted(String),
    #[error("no certificate within {}s (--bootstrap-timeout): {detail}", waited.as_secs())]
    Timeout { waited: Duration, detail: String },
    #[error("the watch on CertificateSigningRequest {0} ended")]
    WatchEnded(String),
    #[error("the certificate issued for CertificateSigningRequest {name} is refused: {problem}")]
    Refused { name: String, problem: CertProblem },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(path: &Path, field: impl Into<String>, problem: impl Into<String>) -> BootstrapError {
    BootstrapError::BootstrapKubeconfig {
        path: path.to_owned(),
        field: field.into(),
        problem: problem.into(),
    }
}

/// A bootstrap kubeconfig that has what bootstrapping needs. Not `Debug`: it holds the
/// token.
pub struct BootstrapKubeconfig {
    path: PathBuf,
    config: Kubeconfig,
    context: String,
    server: String,
    tls_server_name: Option<String>,
    ca_pem: Vec<u8>,
}

/// Reads and checks the bootstrap kubeconfig: its current context's cluster has an
/// `https://` server and a CA (inline or a file), and its user a token (inline or
/// `tokenFile`). The token travels to that server, so the server must be verified against
/// that CA: `insecure-skip-tls-verify` is refused. Each error names the file and the field.
pub fn read_bootstrap_kubeconfig(path: &Path) -> Result<BootstrapKubeconfig, BootstrapError> {
    std::fs::File::open(path).map_err(|source| BootstrapError::Read {
        path: path.to_owned(),
        source,
    })?;
    // `read_from` resolves a relative `certificate-authority` or `tokenFile` against the
    // file's directory, as kubectl does.
    let config = Kubeconfig::read_from(path)
        .map_err(|error| invalid(path, "(file)", format!("not a kubeconfig: {error}")))?;
    let selected = credentials::selected(&config).map_err(|(f, p)| invalid(path, f, p))?;
    let cluster = selected.cluster;
    let field = |name: &str| format!("clusters[{}].cluster.{name}", selected.cluster_name);
    let server = match cluster.server.as_deref().map(str::trim) {
        None | Some("") => return Err(invalid(path, field("server"), "missing")),
        Some(server) if !server.starts_with("https://") => {
            return Err(invalid(
                path,
                field("server"),
                format!("{server:?} is not an https:// URL (the bootstrap token is a secret)"),
            ))
        }
        Some(server) => server.to_string(),
    };
    if cluster.insecure_skip_tls_verify == Some(true) {
        return Err(invalid(
            path,
            field("insecure-skip-tls-verify"),
            "must not be set: the bootstrap token would go to an unverified server",
        ));
    }
    let ca_pem = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| invalid(path, field("certificate-authority-data"), "not base64"))?,
        (None, Some(file)) => std::fs::read(file).map_err(|error| {
            invalid(
                path,
                field("certificate-authority"),
                format!("reading {file}: {error}"),
            )
        })?,
        (None, None) => {
            return Err(invalid(
                path,
                field("certificate-authority-data"),
                "missing (the cluster CA, to verify the server with)",
            ))
        }
    };
    if !rustls_pemfile::certs(&mut &ca_pem[..]).any(|cert| cert.is_ok()) {
        return Err(invalid(
            path,
            field("certificate-authority-data"),
            "holds no PEM certificate",
        ));
    }
    let user = selected.user;
    if user.token.is_none() && user.token_file.is_none() {
        return Err(invalid(
            path,
            format!("users[{}].user.token", selected.user_name),
            "missing (a bootstrap token, e.g. abcdef.0123456789abcdef)",
        ));
    }
    Ok(BootstrapKubeconfig {
        path: path.to_owned(),
        context: selected.context.to_string(),
        server,
        tls_server_name: cluster.tls_server_name.clone(),
        ca_pem,
        config,
    })
}

/// What start-up has to do: bootstrap from this kubeconfig into `kubeconfig`.
pub struct Plan {
    bootstrap: BootstrapKubeconfig,
    kubeconfig: PathBuf,
    /// Set when the current certificate still works (it expires at this Unix time): a failed
    /// renewal then only warns.
    renewing: Option<i64>,
}

impl Plan {
    /// Whether the node's current certificate still works, so that a failed bootstrap need
    /// not stop the daemon.
    pub fn renewing(&self) -> bool {
        self.renewing.is_some()
    }
}

/// Decides, at start-up and before anything is changed on the host, whether `kubeconfig`
/// needs bootstrapping, and if so reads the bootstrap kubeconfig (so that a bad one fails
/// the daemon at once). A valid certificate is kept and the bootstrap kubeconfig not even
/// read, as the kubelet does: kubeadm deletes it after the join.
pub fn plan(kubeconfig: &Path, bootstrap: &Path) -> Result<Option<Plan>, BootstrapError> {
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let credential = credentials::existing_credential(kubeconfig, now).map_err(|source| {
        BootstrapError::Read {
            path: kubeconfig.to_owned(),
            source,
        }
    })?;
    match credential {
        Credential::Valid { not_after } => {
            tracing::info!(kubeconfig = %kubeconfig.display(), expires = %credentials::rfc3339(not_after), "the kubeconfig holds a valid client certificate; no TLS bootstrap");
            Ok(None)
        }
        Credential::ExpiresSoon { not_after } => match read_bootstrap_kubeconfig(bootstrap) {
            Ok(config) => {
                tracing::info!(kubeconfig = %kubeconfig.display(), expires = %credentials::rfc3339(not_after), "the client certificate is in the last tenth of its lifetime; renewing it by TLS bootstrap");
                Ok(Some(Plan {
                    bootstrap: config,
                    kubeconfig: kubeconfig.to_owned(),
                    renewing: Some(not_after),
                }))
            }
            Err(error) => {
                tracing::warn!(kubeconfig = %kubeconfig.display(), expires = %credentials::rfc3339(not_after), "the client certificate expires soon and cannot be renewed: {error}");
                Ok(None)
            }
        },
        Credential::Unusable(why) => {
            let config = read_bootstrap_kubeconfig(bootstrap)?;
            tracing::info!(kubeconfig = %kubeconfig.display(), reason = %why, "no usable client certificate; the node will request one by TLS bootstrap");
            Ok(Some(Plan {
                bootstrap: config,
                kubeconfig: kubeconfig.to_owned(),
                renewing: None,
            }))
        }
    }
}

/// Runs the bootstrap of `plan` for `node_name`: key, CSR, the wait (at most `timeout`),
/// the checks, the kubeconfig. Cancel-safe: dropped before its end, it has written nothing.
pub async fn run(plan: &Plan, node_name: &str, timeout: Duration) -> Result<(), BootstrapError> {
    let bootstrap = &plan.bootstrap;
    let options = KubeConfigOptions {
        context: Some(bootstrap.context.clone()),
        ..KubeConfigOptions::default()
    };
    let client_error = |message: String| BootstrapError::Client {
        path: bootstrap.path.clone(),
        message,
    };
    let config = kube::Config::from_custom_kubeconfig(bootstrap.config.clone(), &options)
        .await
        .map_err(|error| client_error(error.to_string()))?;
    let client = Client::try_from(config).map_err(|error| client_error(error.to_string()))?;
    let api: Api<CertificateSigningRequest> = Api::all(client);

    let csr = credentials::node_csr(node_name).map_err(BootstrapError::Key)?;
    let mut progress = Progress::default();
    let issued = match tokio::time::timeout(
        timeout,
        request_certificate(&api, &csr, &bootstrap.server, &mut progress),
    )
    .await
    {
        Ok(issued) => issued?,
        Err(_) => {
            let mut detail = match &progress.name {
                Some(name) => format!(
                    "CertificateSigningRequest {name} is still pending (not approved, or not signed)"
                ),
                None => "no CertificateSigningRequest could be created".to_string(),
            };
            if let Some(error) = &progress.last_error {
                detail.push_str(&format!("; last error: {error}"));
            }
            return Err(BootstrapError::Timeout {
                waited: timeout,
                detail,
            });
        }
    };
    let name = progress.name.unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let validity =
        credentials::check_issued(&issued, node_name, &csr.spki_der, now).map_err(|problem| {
            BootstrapError::Refused {
                name: name.clone(),
                problem,
            }
        })?;
    let kubeconfig = credentials::kubeconfig_yaml(
        &bootstrap.server,
        bootstrap.tls_server_name.as_deref(),
        &bootstrap.ca_pem,
        &issued,
        &csr.key_pem,
    );
    credentials::write_private_file(&plan.kubeconfig, kubeconfig.as_bytes()).map_err(|source| {
        BootstrapError::Write {
            path: plan.kubeconfig.clone(),
            source,
        }
    })?;
    tracing::info!(
        csr = %name,
        kubeconfig = %plan.kubeconfig.display(),
        expires = %credentials::rfc3339(validity.not_after),
        "TLS bootstrap done: client certificate issued and written"
    );
    Ok(())
}

/// How far a bootstrap got, for the message when it times out.
#[derive(Default)]
struct Progress {
    name: Option<String>,
    last_error: Option<String>,
}

/// Creates the CSR (retrying while the API server is unreachable) and waits for its
/// certificate (PEM).
async fn request_certificate(
    api: &Api<CertificateSigningRequest>,
    csr: &NodeCsr,
    server: &str,
    progress: &mut Progress,
) -> Result<Vec<u8>, BootstrapError> {
    let request = csr_object(&csr.csr_pem);
    let mut backoff = Backoff::new(CREATE_BACKOFF_INITIAL, CREATE_BACKOFF_MAX);
    let created = loop {
        match api.create(&PostParams::default(), &request).await {
            Ok(created) => break created,
            Err(error) if is_transient(&error) => {
                tracing::warn!(%server, %error, "TLS bootstrap: creating the CertificateSigningRequest; retrying");
                progress.last_error = Some(error.to_string());
                tokio::time::sleep(backoff.next_delay()).await;
            }
            // Unauthorized (a wrong or expired token), forbidden, invalid: asking again
            // changes nothing.
            Err(error) => return Err(BootstrapError::Create(error)),
        }
    };
    let name = created.metadata.name.clone().unwrap_or_default();
    progress.name = Some(name.clone());
    tracing::info!(csr = %name, signer = SIGNER_NAME, %server, "TLS bootstrap: CertificateSigningRequest created; waiting for its certificate");
    if let Some(done) = settled(&created) {
        return done;
    }
    wait_for_certificate(api, &name, progress).await
}

/// Whether a failed create may succeed later: no answer, or 429 / 5xx.
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// The CertificateSigningRequest a node sends (see the constants for why each field).
/// `expirationSeconds` is left to the signer's default, as the kubelet leaves it.
pub fn csr_object(csr_pem: &str) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(GENERATE_NAME.to_string()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: SIGNER_NAME.to_string(),
            usages: Some(USAGES.iter().map(|usage| usage.to_string()).collect()),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    }
}

/// Where a CSR stands: `None` while pending (approved or not, no certificate yet), else its
/// certificate (PEM) or why there will be none. A `Denied` or `Failed` condition wins over
/// a certificate, as in client-go's `WaitForCertificate`.
pub fn settled(csr: &CertificateSigningRequest) -> Option<Result<Vec<u8>, BootstrapError>> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let status = csr.status.as_ref()?;
    for condition in status.conditions.iter().flatten() {
        if condition.status != "True" {
            continue;
        }
        let reason = condition.reason.clone().unwrap_or_default();
        let message = condition.message.clone().unwrap_or_default();
        match condition.type_.as_str() {
            "Denied" => {
                return Some(Err(BootstrapError::Denied {
                    name,
                    reason,
                    message,
                }))
            }
            "Failed" => {
                return Some(Err(BootstrapError::Failed {
                    name,
                    reason,
                    message,
                }))
            }
            _ => {}
        }
    }
    match &status.certificate {
        Some(certificate) if !certificate.0.is_empty() => Some(Ok(certificate.0.clone())),
        _ => None,
    }
}

/// Watches the CSR by name (`fieldSelector=metadata.name=…`, which the bootstrapper role
/// may list and watch) until it settles. kube-rs's watcher re-lists after a dropped watch
/// or a 410, and [`paced`] spaces its attempts while the API server is away; errors meanwhile are
/// logged and kept for the timeout's message.
async fn wait_for_certificate(
    api: &Api<CertificateSigningRequest>,
    name: &str,
    progress: &mut Progress,
) -> Result<Vec<u8>, BootstrapError> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = paced(watcher::watcher(api.clone(), config).boxed()).boxed();
    while let Some(event) = events.next().await {
        let csr = match event {
            Ok(watcher::Event::Apply(csr) | watcher::Event::InitApply(csr)) => csr,
            Ok(watcher::Event::Delete(csr)) => {
                if csr.metadata.name.as_deref() == Some(name) {
                    return Err(BootstrapError::Deleted(name.to_string()));
                }
                continue;
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            Err(error) => {
                tracing::warn!(csr = name, %error, "TLS bootstrap: watching the CertificateSigningRequest");
                progress.last_error = Some(error.to_string());
                continue;
            }
        };
        // A server that ignored the field selector shows every CSR.
        if csr.metadata.name.as_deref() != Some(name) {
            continue;
        }
        if let Some(done) = settled(&csr) {
            return done;
        }
    }
    // kube-rs's watcher does not end its stream; this is for completeness.
    Err(BootstrapError::WatchEnded(name.to_string()))
}
