//! Authentication: who sent a request, in kube-apiserver's order — a verified client
//! certificate first (CN = user, O = groups), then a bearer token (the static token file, then
//! a ServiceAccount token, checked against the ServiceAccount and the object it is bound to on
//! every request), then anonymous where anonymous is allowed. Every authenticated user is also in
//! `system:authenticated`, as Kubernetes adds it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::service_accounts::{self, Claims, TokenSigner};
use super::{constant_time_eq, UserInfo};
use crate::cache::Cacher;

pub const AUTHENTICATED: &str = "system:authenticated";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";

/// How a connection arrived, attached to each of its requests.
#[derive(Clone, Debug)]
pub enum Connection {
    /// TLS; `client` is the identity in a client certificate the CA verified.
    Tls { client: Option<UserInfo> },
    /// The loopback-only plain HTTP listener of `--insecure-listen-api`.
    Insecure,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenFileError {
    #[error("{path} line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

/// kube-apiserver's `--token-auth-file`: CSV lines `token,user,uid[,"group1,group2"]`.
#[derive(Debug, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

/// Splits one CSV record; quoted fields may hold commas and `""` for a quote.
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, c) if was_quoted => {
                return Err(format!("{c:?} after a closing quote"));
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(field);
    Ok(fields)
}

impl TokenFile {
    pub fn parse(path: &str, text: &str) -> Result<Self, TokenFileError> {
        let mut tokens = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let error = |message: String| TokenFileError::Line {
                path: path.to_owned(),
                line,
                message,
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let fields = csv_fields(trimmed).map_err(error)?;
            if fields.len() < 3 || fields.len() > 4 {
                return Err(error(format!(
                    "{} fields; a line is token,user,uid[,\"group1,group2\"]",
                    fields.len()
                )));
            }
            let token = fields[0].trim();
            let user = fields[1].trim();
            if token.is_empty() {
                return Err(error("the token is empty".into()));
            }
            if user.is_empty() {
                return Err(error("the user name is empty".into()));
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(error("the token contains whitespace".into()));
            }
            let groups: Vec<String> = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let info = UserInfo {
                name: user.to_owned(),
                uid: fields[2].trim().to_owned(),
                groups,
                extra: Default::default(),
            };
            if tokens.insert(token.to_owned(), info).is_some() {
                return Err(error("this token is listed twice".into()));
            }
        }
        Ok(Self { tokens })
    }

    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenFileError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn lookup(&self, token: &str) -> Option<&UserInfo> {
        // Tokens are secrets: compare without an early exit on the first differing byte.
        self.tokens
            .iter()
            .find(|(known, _)| constant_time_eq(known.as_bytes(), token.as_bytes()))
            .map(|(_, info)| info)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// The identity in a client certificate the TLS layer verified against the cluster CA.
pub fn identity_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_owned();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_owned)
        .collect();
    Some(UserInfo {
        name,
        uid: String::new(),
        groups,
        extra: Default::default(),
    })
}

/// ServiceAccount tokens: the key that signs them, the audiences the API accepts, and the
/// watch caches that say whether the account (and the object a token is bound to) still
/// exists with the uid the token names.
pub struct ServiceAccountTokens {
    pub signer: Arc<TokenSigner>,
    pub audiences: Vec<String>,
    pub accounts: Arc<Cacher>,
    pub pods: Arc<Cacher>,
    pub secrets: Arc<Cacher>,
    pub nodes: Arc<Cacher>,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceAccountTokens({:?})", self.signer)
    }
}

fn uid_of(object: &serde_json::Value) -> Option<&str> {
    crate::objects::meta_str(object, "uid")
}

fn terminating(object: &serde_json::Value) -> bool {
    crate::objects::meta_str(object, "deletionTimestamp").is_some()
}

impl ServiceAccountTokens {
    /// The user of a valid, live ServiceAccount token.
    fn authenticate(&self, token: &str) -> Option<UserInfo> {
        let now = jiff::Timestamp::now().as_second();
        let claims: Claims = match self.signer.verify(token, &self.audiences, now) {
            Ok(claims) => claims,
            Err(e) => {
                tracing::debug!(error = %e, "a bearer token is not a valid ServiceAccount token");
                return None;
            }
        };
        let account = self.accounts.get(
            &self
                .accounts
                .info
                .key(&claims.namespace, &claims.service_account),
        )?;
        if uid_of(&account) != Some(claims.service_account_uid.as_str()) || terminating(&account) {
            tracing::debug!(namespace = %claims.namespace, account = %claims.service_account,
                "a ServiceAccount token outlived its ServiceAccount");
            return None;
        }
        if let Some(bound) = &claims.bound {
            let (cache, namespace) = match bound.kind.as_str() {
                "Pod" => (&self.pods, claims.namespace.as_str()),
                "Secret" => (&self.secrets, claims.namespace.as_str()),
                "Node" => (&self.nodes, ""),
                _ => return None,
            };
            let object = cache.get(&cache.info.key(namespace, &bound.name))?;
            if uid_of(&object) != Some(bound.uid.as_str()) || terminating(&object) {
                return None;
            }
        }
        Some(service_accounts::user_of(&claims))
    }
}

pub use super::tokens::{BootstrapTokens, UserTokens};

/// What the operator chose about authentication.
#[derive(Debug, Default)]
pub struct AuthnConfig {
    pub token_file: TokenFile,
    /// None: ServiceAccount tokens are not accepted.
    pub service_accounts: Option<ServiceAccountTokens>,
    /// None: bootstrap tokens are not accepted.
    pub bootstrap: Option<BootstrapTokens>,
    /// None: keel's user tokens (`keelctl token create`) are not accepted.
    pub user_tokens: Option<UserTokens>,
    /// `--anonymous-auth`: requests without credentials are `system:anonymous` everywhere.
    /// Off, they are anonymous only on the health endpoints (/livez, /readyz, /healthz), as
    /// kube-apiserver's AnonymousAuthConfigurableEndpoints allows, so probes need no secret.
    pub anonymous: bool,
}

pub enum Outcome {
    User(UserInfo),
    /// Credentials were sent and are wrong, or none were sent where they are required: 401.
    Unauthorized,
}

fn anonymous() -> UserInfo {
    UserInfo {
        name: ANONYMOUS.into(),
        uid: String::new(),
        groups: vec![UNAUTHENTICATED.into()],
        extra: Default::default(),
    }
}

/// Adds `system:authenticated` to a user that proved who it is.
fn authenticated(mut user: UserInfo) -> UserInfo {
    if !user.groups.iter().any(|g| g == AUTHENTICATED) {
        user.groups.push(AUTHENTICATED.into());
    }
    user
}

/// The user of the loopback plain-HTTP listener without credentials: a member of
/// `system:masters`, as kube-apiserver's old insecure port was. The listener refuses to bind
/// anything but loopback.
fn unsecured() -> UserInfo {
    UserInfo {
        name: "system:unsecured".into(),
        uid: String::new(),
        groups: vec!["system:masters".into(), AUTHENTICATED.into()],
        extra: Default::default(),
    }
}

impl AuthnConfig {
    /// Authenticates one request. `authorization` is its `Authorization` header; `health`
    /// says the path is a health endpoint.
    pub fn authenticate(
        &self,
        connection: &Connection,
        authorization: Option<&str>,
        health: bool,
    ) -> Outcome {
        if let Connection::Tls { client: Some(user) } = connection {
            return Outcome::User(authenticated(user.clone()));
        }
        if let Some(header) = authorization {
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .map(str::trim);
            let Some(token) = token else {
                return Outcome::Unauthorized;
            };
            if let Some(user) = self.token_file.lookup(token) {
                return Outcome::User(authenticated(user.clone()));
            }
            let user = self
                .service_accounts
                .as_ref()
                .and_then(|accounts| accounts.authenticate(token))
                .or_else(|| {
                    self.bootstrap
                        .as_ref()
                        .and_then(|bootstrap| bootstrap.authenticate(token))
                })
                .or_else(|| {
                    self.user_tokens
                        .as_ref()
                        .and_then(|tokens| tokens.authenticate(token))
                });
            return match user {
                Some(user) => Outcome::User(authenticated(user)),
                None => Outcome::Unauthorized,
            };
        }
        match connection {
            Connection::Insecure => Outcome::User(unsecured()),
            Connection::Tls { .. } if self.anonymous || health => Outcome::User(anonymous()),
            Connection::Tls { .. } => Outcome::Unauthorized,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_reads_kube_apiservers_format() {
        let file = TokenFile::parse(
            "tokens.csv",
            "# comment\nabc123,alice,1001\n\ndef456,bob,1002,\"dev,ops\"\nghi789, carol ,1003,viewers\n",
        )
        .expect("parses");
        assert_eq!(file.len(), 3);
        let bob = file.lookup("def456").expect("bob");
        assert_eq!(bob.name, "bob");
        assert_eq!(bob.uid, "1002");
        assert_eq!(bob.groups, vec!["dev", "ops"]);
        assert_eq!(
            file.lookup("ghi789").map(|u| u.name.as_str()),
            Some("carol")
        );
        assert!(file.lookup("abc12").is_none());
        assert!(file.lookup("").is_none());
    }

    #[test]
    fn token_file_errors_name_the_line() {
        for (text, line, words) in [
            ("a,b\n", 1, "2 fields"),
            ("ok,u,1\n,u,2\n", 2, "token is empty"),
            ("t,,1\n", 1, "user name is empty"),
            ("t,u,1,\"dev\n", 1, "not closed"),
            ("t,u,1\nt,v,2\n", 2, "twice"),
            ("t,u,1,a,b\n", 1, "5 fields"),
            ("t x,u,1\n", 1, "whitespace"),
            ("t,u\"x,1\n", 1, "quote"),
        ] {
            let error = TokenFile::parse("f.csv", text).expect_err(text);
            let message = error.to_string();
            assert!(
                message.contains(&format!("f.csv line {line}")) && message.contains(words),
                "{text:?}: {message}"
            );
        }
    }

    #[test]
    fn order_and_outcomes() {
        let config = AuthnConfig {
            token_file: TokenFile::parse("t", "good,alice,1,dev\n").expect("parses"),
            service_accounts: None,
            bootstrap: None,
            user_tokens: None,
            anonymous: false,
        };
        let tls = Connection::Tls { client: None };
        let name = |o: Outcome| match o {
            Outcome::User(u) => Some((u.name, u.groups)),
            Outcome::Unauthorized => None,
        };
        assert_eq!(
            name(config.authenticate(&tls, Some("Bearer good"), false)),
            Some(("alice".into(), vec!["dev".into(), AUTHENTICATED.into()]))
        );
        assert_eq!(
            name(config.authenticate(&tls, Some("Bearer bad"), false)),
            None
        );
        assert_eq!(
            name(config.authenticate(&tls, Some("Basic x"), false)),
            None
        );
        assert_eq!(name(config.authenticate(&tls, None, false)), None);
        assert_eq!(
            name(config.authenticate(&tls, None, true)).map(|u| u.0),
            Some(ANONYMOUS.into())
        );
        // A verified certificate wins over a token, as kube-apiserver's union tries x509 first.
        let cert = Connection::Tls {
            client: Some(UserInfo {
                name: "admin".into(),
                uid: String::new(),
                groups: vec!["system:masters".into()],
                extra: Default::default(),
            }),
        };
        assert_eq!(
            name(config.authenticate(&cert, Some("Bearer bad"), false)).map(|u| u.0),
            Some("admin".into())
        );
        // A wrong token on the insecure listener is still refused, not promoted to admin.
        assert_eq!(
            name(config.authenticate(&Connection::Insecure, Some("Bearer bad"), false)),
            None
        );
    }
}
