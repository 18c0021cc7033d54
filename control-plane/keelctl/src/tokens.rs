//! `keelctl token create` and `keelctl join-token`: bearer tokens made through the API, as
//! Secrets in `kube-system` that every member's API server reads from its watch cache
//! (`keel_apiserver::auth::tokens` says what each holds).
//!
//! - `token create --user U --group G` gives a person or a script an identity without a
//!   certificate; only the token's hash is stored, so the token is shown once.
//! - `join-token` is kubeadm's `token create` for nodes: a bootstrap token that may only ask
//!   for a node's client certificate, and a bootstrap kubeconfig holding it with the server and
//!   CA a new node needs (`node-daemon --bootstrap-kubeconfig`).
//!
//! Both expire (24 hours by default, as kubeadm's tokens); `--ttl 0` makes one that does not.
//! `kubectl -n kube-system delete secret user-token-<id>` (or `bootstrap-token-<id>`) revokes.

use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use keel_apiserver::auth::bootstrap_policy::NODE_TOKEN_GROUP;
use keel_apiserver::auth::tokens::{self, Token};
use kube::api::{Api, PostParams};

use crate::kubeconfig::validate_name;
use crate::objects::{ObjectsError, Session};

/// kubeadm's default token lifetime.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

fn expiry(ttl: Duration) -> Result<Option<jiff::Timestamp>, ObjectsError> {
    if ttl.is_zero() {
        return Ok(None);
    }
    let span = jiff::SignedDuration::try_from(ttl)
        .map_err(|e| ObjectsError::Usage(format!("--ttl {ttl:?}: {e}")))?;
    jiff::Timestamp::now()
        .checked_add(span)
        .map(Some)
        .map_err(|e| ObjectsError::Usage(format!("--ttl {ttl:?} is too long: {e}")))
}

async fn store(session: &Session, secret: serde_json::Value) -> Result<(), ObjectsError> {
    let secret: Secret =
        serde_json::from_value(secret).map_err(|e| ObjectsError::Client(e.to_string()))?;
    let api: Api<Secret> = Api::namespaced(session.client.clone(), tokens::NAMESPACE);
    api.create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// Checks a user or group as kubeconfig subjects are checked, which also refuses the comma
/// that separates a token's groups.
fn validate_subject(what: &'static str, value: &str) -> Result<(), ObjectsError> {
    validate_name(what, value).map_err(|e| ObjectsError::Usage(e.to_string()))
}

/// A user token: the token to hand over, and when it expires.
pub async fn create_user_token(
    session: &Session,
    user: &str,
    groups: &[String],
    ttl: Duration,
) -> Result<(Token, Option<jiff::Timestamp>), ObjectsError> {
    validate_subject("user", user)?;
    for group in groups {
        validate_subject("group", group)?;
    }
    let expires = expiry(ttl)?;
    let token = Token::new_user().map_err(|e| ObjectsError::Client(e.to_string()))?;
    store(session, tokens::user_secret(&token, user, groups, expires)).await?;
    Ok((token, expires))
}

/// A join token and the bootstrap kubeconfig a node joins with.
pub struct JoinToken {
    pub token: Token,
    pub expires: Option<jiff::Timestamp>,
    pub kubeconfig: String,
}

pub async fn create_join_token(
    session: &Session,
    ttl: Duration,
    description: &str,
    server: Option<&str>,
) -> Result<JoinToken, ObjectsError> {
    if let Some(c) = description.chars().find(|c| c.is_control()) {
        return Err(ObjectsError::Usage(format!(
            "--description contains the control character U+{:04X}",
            u32::from(c)
        )));
    }
    let ca_pem = session.ca_pem().ok_or_else(|| {
        ObjectsError::Usage(
            "the kubeconfig names no certificate authority: a joining node could not tell the \
             API server from an impostor"
                .into(),
        )
    })?;
    let server = server.map_or_else(|| session.server(), str::to_owned);
    let expires = expiry(ttl)?;
    let token = Token::new_bootstrap().map_err(|e| ObjectsError::Client(e.to_string()))?;
    store(
        session,
        tokens::bootstrap_secret(&token, expires, description, &[NODE_TOKEN_GROUP]),
    )
    .await?;
    let kubeconfig = bootstrap_kubeconfig(&server, &ca_pem, &token);
    Ok(JoinToken {
        token,
        expires,
        kubeconfig,
    })
}

/// The kubelet's bootstrap kubeconfig: the cluster (server, CA) and a user with the token.
pub fn bootstrap_kubeconfig(server: &str, ca_pem: &str, token: &Token) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: keel\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\ncontexts:\n- name: tls-bootstrap@keel\n  context:\n    \
         cluster: keel\n    user: tls-bootstrap\ncurrent-context: tls-bootstrap@keel\nusers:\n- name: \
         tls-bootstrap\n  user:\n    token: {token}\n"
    )
}

/// When a token expires, as the commands print it.
pub fn render_expiry(expires: Option<jiff::Timestamp>) -> String {
    expires.map_or_else(|| "never".to_owned(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_kubeconfig_reads_back_with_the_token_and_ca() {
        let token = Token::new_bootstrap().expect("random");
        let text = bootstrap_kubeconfig(
            "https://10.0.0.1:6443",
            "-----BEGIN CERTIFICATE-----\n",
            &token,
        );
        let parsed = kube::config::Kubeconfig::from_yaml(&text).expect("a kubeconfig");
        let user = parsed.auth_infos[0].auth_info.as_ref().expect("user");
        assert!(user.token.is_some());
        assert!(text.contains(&format!("token: {token}\n")));
        let cluster = parsed.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:6443"));
        assert!(cluster.certificate_authority_data.is_some());
        assert_eq!(
            parsed.current_context.as_deref(),
            Some("tls-bootstrap@keel")
        );
    }

    #[test]
    fn ttls_and_subjects_are_checked() {
        assert_eq!(expiry(Duration::ZERO).expect("never"), None);
        let later = expiry(Duration::from_secs(60))
            .expect("fine")
            .expect("expires");
        assert!(later > jiff::Timestamp::now());
        assert!(expiry(Duration::from_secs(u64::MAX)).is_err());
        for bad in ["", "a,b", "a b", "a\nb", "-a", "dev\u{1b}[31m"] {
            assert!(validate_subject("group", bad).is_err(), "{bad:?}");
        }
        validate_subject("user", "alice@example.com").expect("fine");
        validate_subject("group", "system:masters").expect("an admin's choice");
    }
}
