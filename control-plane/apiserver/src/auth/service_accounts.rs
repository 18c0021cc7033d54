//! ServiceAccount tokens as kube-apiserver issues and checks them: JWTs signed (ES256) with a
//! key kept in the PKI directory (`sa.key`, made at first start as kubeadm makes it), carrying
//! Kubernetes' claims (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti` and the private
//! `kubernetes.io` claim) so that client-go, kubelet and `jwt.io` read them as they read
//! kube-apiserver's. [`token_request`] answers `POST .../serviceaccounts/<name>/token`
//! (`kubectl create token`, the kubelet's projected tokens); [`TokenSigner::verify`] and
//! [`user_of`] turn a bearer token back into the user it stands for.
//!
//! Verification never says to the client which check failed (the caller answers a bare 401);
//! the [`TokenError`] it returns is for the logs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;

use super::pki::PkiError;
use super::UserInfo;

mod request;
mod signer;
#[cfg(test)]
mod tests;

pub use request::{requested_binding, token_request, token_request_bound};

/// Clock skew tolerated on `exp`, `nbf` and `iat`: go-jose's default, which Kubernetes uses.
pub const LEEWAY_SECONDS: i64 = 60;
/// Longer tokens are refused before anything is decoded.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The file, in the PKI directory, that holds the signing key (PKCS#8 PEM, mode 0600).
pub const KEY_FILE: &str = "sa.key";

/// `spec.expirationSeconds` when a TokenRequest gives none (an hour, as Kubernetes).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 60 * 60;
/// The shortest lifetime a TokenRequest may ask for (ten minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 10 * 60;
/// The longest lifetime a TokenRequest may ask for (2^32 seconds).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// `system:serviceaccount:<namespace>:<name>`, the user name of a ServiceAccount.
pub const USER_PREFIX: &str = "system:serviceaccount:";
/// The group every ServiceAccount is in.
pub const ALL_SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// `system:serviceaccounts:<namespace>`, the group of a namespace's ServiceAccounts.
pub const NAMESPACE_GROUP_PREFIX: &str = "system:serviceaccounts:";

/// The `extra` keys Kubernetes sets on a ServiceAccount user.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
pub const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";

const ALGORITHM: &str = "ES256";
/// An ES256 signature: r and s, 32 bytes each (RFC 7518 §3.4).
const SIGNATURE_BYTES: usize = 64;
/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, a 66-byte BIT
/// STRING); the 65-byte uncompressed point follows it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

const TOKEN_REQUEST_GROUP: &str = "authentication.k8s.io";
const TOKEN_REQUEST_KIND: &str = "TokenRequest";
const TOKEN_REQUEST_API_VERSION: &str = "authentication.k8s.io/v1";
const TOKEN_REQUEST_QUALIFIED: &str = "TokenRequest.authentication.k8s.io";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("the service account issuer: {0}")]
    Config(String),
    #[error("cannot issue the token: {0}")]
    Issue(String),
    #[error("the token is {len} bytes, more than the 16384 accepted")]
    TooLarge { len: usize },
    #[error("the token has {0} dot-separated parts, not 3 (header.payload.signature)")]
    Segments(usize),
    #[error("the token's {0} is not unpadded base64url")]
    Base64(&'static str),
    #[error("the token's {part} is not a JSON object: {message}")]
    Json { part: &'static str, message: String },
    #[error("the token's header: {0}")]
    Header(String),
    #[error("the token is signed with {0:?}; only ES256 is accepted")]
    Algorithm(String),
    #[error("the token names the key {0:?}, not this issuer's key")]
    UnknownKey(String),
    #[error("the token's signature is {0} bytes; an ES256 signature is 64")]
    SignatureLength(usize),
    #[error("the token's signature does not verify with this issuer's key")]
    Signature,
    #[error("the token's {claim:?} claim: {message}")]
    Claim {
        claim: &'static str,
        message: String,
    },
    #[error("the token was issued by {found:?}, not {expected:?}")]
    Issuer { found: String, expected: String },
    #[error("the token's audiences {found:?} include none of {accepted:?}")]
    Audience {
        found: Vec<String>,
        accepted: Vec<String>,
    },
    #[error("the token expired at {exp} (now {now}, 60 s leeway)")]
    Expired { exp: i64, now: i64 },
    #[error("the token is not valid before {nbf} (now {now}, 60 s leeway)")]
    NotYetValid { nbf: i64, now: i64 },
    #[error("the token was issued in the future, at {iat} (now {now}, 60 s leeway)")]
    IssuedInFuture { iat: i64, now: i64 },
}

/// The object a token is bound to: it dies with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundObject {
    /// `Pod`, `Secret` or `Node`.
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// What a ServiceAccount token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Seconds since the epoch, as the `iat`, `nbf` and `exp` claims.
    pub issued_at: i64,
    pub not_before: i64,
    pub expires: i64,
    pub namespace: String,
    pub service_account: String,
    pub service_account_uid: String,
    /// The object the token is bound to (a Pod, Secret or Node), if any: the token dies with it.
    pub bound: Option<BoundObject>,
    /// `jti`, a uuid; empty for none.
    pub token_id: String,
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn username(namespace: &str, name: &str) -> String {
    format!("{USER_PREFIX}{namespace}:{name}")
}

/// Signs and verifies ServiceAccount tokens (JWT, ES256) with a key kept in the PKI directory
/// (`sa.key`, PKCS#8 PEM, 0600), made at first start.
pub struct TokenSigner {
    issuer: String,
    key: EcdsaKeyPair,
    /// The uncompressed P-256 point (65 bytes).
    public_key: Vec<u8>,
    key_id: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("issuer", &self.issuer)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The user a verified token stands for, as Kubernetes makes it:
/// `system:serviceaccount:<ns>:<name>`, uid the ServiceAccount's, groups
/// `system:serviceaccounts` and `system:serviceaccounts:<ns>` (the caller adds
/// `system:authenticated`), extra `authentication.kubernetes.io/credential-id` = `JTI=<jti>`
/// and, for a pod-bound token, `.../pod-name` and `.../pod-uid` (`.../node-name` and
/// `.../node-uid` for a node-bound one).
pub fn user_of(claims: &Claims) -> UserInfo {
    let mut extra = BTreeMap::new();
    if let Some(bound) = &claims.bound {
        match bound.kind.as_str() {
            "Pod" if !bound.name.is_empty() && !bound.uid.is_empty() => {
                extra.insert(POD_NAME_KEY.to_owned(), vec![bound.name.clone()]);
                extra.insert(POD_UID_KEY.to_owned(), vec![bound.uid.clone()]);
            }
            "Node" if !bound.name.is_empty() => {
                extra.insert(NODE_NAME_KEY.to_owned(), vec![bound.name.clone()]);
                if !bound.uid.is_empty() {
                    extra.insert(NODE_UID_KEY.to_owned(), vec![bound.uid.clone()]);
                }
            }
            _ => {}
        }
    }
    if !claims.token_id.is_empty() {
        extra.insert(
            CREDENTIAL_ID_KEY.to_owned(),
            vec![format!("JTI={}", claims.token_id)],
        );
    }
    UserInfo {
        name: username(&claims.namespace, &claims.service_account),
        uid: claims.service_account_uid.clone(),
        groups: vec![
            ALL_SERVICE_ACCOUNTS_GROUP.to_owned(),
            format!("{NAMESPACE_GROUP_PREFIX}{}", claims.namespace),
        ],
        extra,
    }
}
