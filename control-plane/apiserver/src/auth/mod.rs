//! The security chain every request passes before it reaches a handler, in Kubernetes'
//! order: authentication ([`authn`]: who), impersonation, authorization ([`authz`] with
//! [`rbac`]: may they), and the objects it rests on ([`pki`]: the cluster CA and
//! certificates; [`bootstrap_policy`]: the default roles). [`reviews`] answers the
//! questions clients ask about it (`kubectl auth can-i`, `kubectl auth whoami`).

pub mod attributes;
pub mod authn;
pub mod authz;
pub mod bootstrap_policy;
pub mod escalation;
pub mod node;
pub mod pki;
pub mod rbac;
pub mod reviews;
pub mod service_accounts;
pub mod tokens;

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;

/// A user as Kubernetes' `user.Info`: what authentication established and authorization
/// reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Authentication settings and the authorizer, shared by every connection.
pub struct Security {
    pub authn: authn::AuthnConfig,
    pub authorizer: Arc<authz::Authorizer>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the {what} PEM: {message}")]
    Pem { what: &'static str, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the client CA: {0}")]
    Verifier(String),
}

fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_bytes()).collect();
    let certs = certs.map_err(|e| TlsError::Pem {
        what,
        message: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            message: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

/// The server's TLS configuration: its certificate, client certificates optional but, when
/// sent, verified against `client_ca_pem`; HTTP/2 offered first (kubectl and client-go use
/// it over TLS), HTTP/1.1 for the rest.
pub fn server_tls(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(cert_pem, "serving certificate")?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| TlsError::Pem {
            what: "serving key",
            message: e.to_string(),
        })?
        .ok_or(TlsError::Pem {
            what: "serving key",
            message: "no private key in it".into(),
        })?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates(client_ca_pem, "client CA")? {
        roots.add(ca)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Compares secrets in time that does not depend on where they differ, so a token cannot
/// be guessed a byte at a time by timing the refusals.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
