//! Bearer tokens kept as Secrets in `kube-system`, so they are made and revoked through the
//! API (`keelctl join-token`, `keelctl token create`, `kubectl delete secret`) and every member
//! sees them at once through its watch cache:
//!
//! - **Bootstrap tokens**, kubeadm's: `<id>.<secret>` (6 and 16 characters of `[a-z0-9]`) in a
//!   Secret `bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`. The user is
//!   `system:bootstrap:<id>` in `system:bootstrappers`, which may only ask for a node's
//!   certificate.
//! - **User tokens**, keel's own (Kubernetes has the static token file, read once at start):
//!   `<id>.<secret>` (6 and 32 characters) in a Secret `user-token-<id>` of type
//!   `keel.dev/user-token` naming the user and groups. Only the secret's SHA-256 is stored, so
//!   whoever may read Secrets cannot use the token. Writing such a Secret in `kube-system`
//!   mints an identity, as writing a bootstrap token does: RBAC should keep `kube-system`'s
//!   Secrets to cluster administrators.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};

use super::{constant_time_eq, UserInfo};
use crate::cache::{Cached, Cacher};

pub const BOOTSTRAP_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const USER_TYPE: &str = "keel.dev/user-token";
pub const NAMESPACE: &str = "kube-system";
const ID_LEN: usize = 6;
const BOOTSTRAP_SECRET_LEN: usize = 16;
/// Longer than a bootstrap token's: a user token carries real permissions and may live long.
const USER_SECRET_LEN: usize = 32;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A token as a client sends it: `<id>.<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

/// Never in logs: Debug shows the id only.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}.<secret>)", self.id)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct RandomError;

fn random_text(len: usize) -> Result<String, RandomError> {
    use ring::rand::SecureRandom as _;
    let random = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut byte = [0u8; 1];
        random.fill(&mut byte).map_err(|_| RandomError)?;
        // 252 = 7 × 36: rejecting the rest keeps every character equally likely.
        if byte[0] < 252 {
            out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    Ok(out)
}

impl Token {
    pub fn new_bootstrap() -> Result<Token, RandomError> {
        Ok(Token {
            id: random_text(ID_LEN)?,
            secret: random_text(BOOTSTRAP_SECRET_LEN)?,
        })
    }

    pub fn new_user() -> Result<Token, RandomError> {
        Ok(Token {
            id: random_text(ID_LEN)?,
            secret: random_text(USER_SECRET_LEN)?,
        })
    }

    /// Splits `<id>.<secret>` when each part has the shape `secret_len` asks.
    fn parse(text: &str, secret_len: usize) -> Option<Token> {
        let (id, secret) = text.split_once('.')?;
        let shaped = |part: &str, len: usize| {
            part.len() == len
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        (shaped(id, ID_LEN) && shaped(secret, secret_len)).then(|| Token {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The Secret of a bootstrap token that may authenticate (not sign), with its expiry and the
/// extra `system:bootstrappers:*` groups.
pub fn bootstrap_secret(
    token: &Token,
    expiration: Option<jiff::Timestamp>,
    description: &str,
    extra_groups: &[&str],
) -> Value {
    let mut data = json!({
        "token-id": b64(&token.id),
        "token-secret": b64(&token.secret),
        "usage-bootstrap-authentication": b64("true"),
        "description": b64(description),
    });
    if let Some(expiration) = expiration {
        data["expiration"] = json!(b64(&expiration.to_string()));
    }
    if !extra_groups.is_empty() {
        data["auth-extra-groups"] = json!(b64(&extra_groups.join(",")));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("bootstrap-token-{}", token.id), "namespace": NAMESPACE},
        "type": BOOTSTRAP_TYPE,
        "data": data,
    })
}

/// The Secret of a user token: the user, groups and expiry, and the secret's hash only.
pub fn user_secret(
    token: &Token,
    user: &str,
    groups: &[String],
    expiration: Option<jiff::Timestamp>,
) -> Value {
    let mut data = json!({
        "token-id": b64(&token.id),
        "token-secret-sha256": b64(&sha256_hex(&token.secret)),
        "user": b64(user),
    });
    if !groups.is_empty() {
        data["groups"] = json!(b64(&groups.join(",")));
    }
    if let Some(expiration) = expiration {
        data["expiration"] = json!(b64(&expiration.to_string()));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("user-token-{}", token.id), "namespace": NAMESPACE,
                     "labels": {"keel.dev/user": label_safe(user)}},
        "type": USER_TYPE,
        "data": data,
    })
}

/// A user name as a label value (for `kubectl get secrets -l keel.dev/user=…`): the
/// characters a label value may hold, at most 63.
fn label_safe(user: &str) -> String {
    let mapped: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// One `data` field of a stored Secret, decoded.
fn field(stored: &Value, name: &str) -> Option<String> {
    let bytes = crate::objects::bytes_of(stored.pointer(&format!("/data/{name}")))?;
    String::from_utf8(bytes).ok()
}

/// A stored token Secret of type `kind` for `id`, not being deleted, not expired at `now`.
fn usable(stored: &Value, id: &str, kind: &str, now: jiff::Timestamp) -> bool {
    let terminating = crate::objects::meta_str(stored, "deletionTimestamp").is_some();
    if stored.get("type").and_then(Value::as_str) != Some(kind)
        || terminating
        || field(stored, "token-id").as_deref() != Some(id)
    {
        return false;
    }
    match field(stored, "expiration") {
        // An expiry that does not parse is no expiry anyone can rely on: refused.
        Some(expiration) => expiration
            .parse::<jiff::Timestamp>()
            .is_ok_and(|expires| now < expires),
        None => true,
    }
}

fn lookup(secrets: &Cacher, prefix: &str, id: &str) -> Option<Arc<Cached>> {
    secrets.get(&secrets.info.key(NAMESPACE, &format!("{prefix}{id}")))
}

/// The user of bootstrap token `token` if `stored` is its live Secret.
fn bootstrap_user(stored: &Value, token: &Token, now: jiff::Timestamp) -> Option<UserInfo> {
    if !usable(stored, &token.id, BOOTSTRAP_TYPE, now)
        || !constant_time_eq(
            field(stored, "token-secret")?.as_bytes(),
            token.secret.as_bytes(),
        )
        || field(stored, "usage-bootstrap-authentication").as_deref() != Some("true")
    {
        return None;
    }
    let mut groups = vec!["system:bootstrappers".to_owned()];
    for group in field(stored, "auth-extra-groups")
        .unwrap_or_default()
        .split(',')
    {
        let group = group.trim();
        // Only bootstrapper groups may be added, as Kubernetes validates them.
        if group.starts_with("system:bootstrappers:") && !groups.iter().any(|g| g == group) {
            groups.push(group.to_owned());
        }
    }
    Some(UserInfo {
        name: format!("system:bootstrap:{}", token.id),
        uid: String::new(),
        groups,
        extra: Default::default(),
    })
}

/// The user of user token `token` if `stored` is its live Secret.
fn token_user(stored: &Value, token: &Token, now: jiff::Timestamp) -> Option<UserInfo> {
    if !usable(stored, &token.id, USER_TYPE, now) {
        return None;
    }
    let stored_hash = field(stored, "token-secret-sha256")?;
    if !constant_time_eq(stored_hash.as_bytes(), sha256_hex(&token.secret).as_bytes()) {
        return None;
    }
    let name = field(stored, "user").filter(|u| !u.is_empty())?;
    let groups = field(stored, "groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    Some(UserInfo {
        name,
        uid: String::new(),
        groups,
        extra: Default::default(),
    })
}

/// kubeadm's bootstrap tokens: the user `system:bootstrap:<id>` in `system:bootstrappers` (and
/// the token's `system:bootstrappers:*` extra groups), which may only ask to join.
pub struct BootstrapTokens {
    pub secrets: Arc<Cacher>,
}

impl std::fmt::Debug for BootstrapTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BootstrapTokens")
    }
}

impl BootstrapTokens {
    pub(super) fn authenticate(&self, text: &str) -> Option<UserInfo> {
        let token = Token::parse(text, BOOTSTRAP_SECRET_LEN)?;
        let stored = lookup(&self.secrets, "bootstrap-token-", &token.id)?;
        bootstrap_user(&stored, &token, jiff::Timestamp::now())
    }
}

/// keel's user tokens: the user and groups their Secret names.
pub struct UserTokens {
    pub secrets: Arc<Cacher>,
}

impl std::fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserTokens")
    }
}

impl UserTokens {
    pub(super) fn authenticate(&self, text: &str) -> Option<UserInfo> {
        let token = Token::parse(text, USER_SECRET_LEN)?;
        let stored = lookup(&self.secrets, "user-token-", &token.id)?;
        token_user(&stored, &token, jiff::Timestamp::now())
    }
}

#[cfg(test)]
mod tests;
