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
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use rustls::pki_types::PrivateKeyDer;
use serde_json::{json, Map, Value};

use super::pki::{write_private, PkiError};
use super::UserInfo;
use crate::status::ApiError;

#[cfg(test)]
mod tests;

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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TokenError + '_ {
    move |source| TokenError::Io {
        path: path.to_owned(),
        source,
    }
}

impl TokenSigner {
    /// Loads `<pki_dir>/sa.key`, or makes it (an ECDSA P-256 key, PKCS#8 PEM, mode 0600) if
    /// it does not exist. Tokens signed before a restart stay valid after it.
    pub fn load_or_create(pki_dir: &Path, issuer: &str) -> Result<Self, TokenError> {
        if issuer.is_empty() {
            return Err(TokenError::Config("it may not be empty".into()));
        }
        std::fs::create_dir_all(pki_dir).map_err(io(pki_dir))?;
        let path = pki_dir.join(KEY_FILE);
        let invalid = |message: String| TokenError::Key {
            path: path.clone(),
            message,
        };
        let pkcs8: Vec<u8> = match std::fs::read_to_string(&path) {
            Ok(pem) => match rustls_pemfile::private_key(&mut pem.as_bytes()) {
                Ok(Some(PrivateKeyDer::Pkcs8(key))) => key.secret_pkcs8_der().to_vec(),
                Ok(Some(_)) => {
                    return Err(invalid(
                        "the key is not in PKCS#8 form (\"BEGIN PRIVATE KEY\"); convert it with \
                         `openssl pkcs8 -topk8 -nocrypt`"
                            .into(),
                    ))
                }
                Ok(None) => return Err(invalid("no private key in it".into())),
                Err(e) => return Err(invalid(format!("not a PEM private key: {e}"))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = rcgen::KeyPair::generate()
                    .map_err(|e| invalid(format!("generating the key: {e}")))?;
                write_private(&path, key.serialize_pem().as_bytes())?;
                key.serialize_der()
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| invalid(format!("not an ECDSA P-256 PKCS#8 key: {e}")))?;
        let public_key = key.public_key().as_ref().to_vec();
        let key_id = key_id(&public_key);
        Ok(Self {
            issuer: issuer.to_owned(),
            key,
            public_key,
            key_id,
            rng,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `kid` of the tokens signed here: base64url SHA-256 of the public key's DER
    /// SubjectPublicKeyInfo, as kube-apiserver computes it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as a JSON Web Key Set, as `/openid/v1/jwks` serves it.
    pub fn jwks(&self) -> Value {
        let (x, y) = (&self.public_key[1..33], &self.public_key[33..65]);
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.key_id,
            "crv": "P-256",
            "alg": ALGORITHM,
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        }]})
    }

    /// Issues a token for these claims. The issuer must be this signer's.
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        if claims.issuer != self.issuer {
            return Err(TokenError::Issue(format!(
                "the claims name the issuer {:?}, not {:?}",
                claims.issuer, self.issuer
            )));
        }
        for (what, value) in [
            ("namespace", &claims.namespace),
            ("service account name", &claims.service_account),
            ("service account uid", &claims.service_account_uid),
        ] {
            if value.is_empty() {
                return Err(TokenError::Issue(format!("the {what} is empty")));
            }
        }
        if claims.audiences.is_empty() {
            return Err(TokenError::Issue("no audience".into()));
        }
        let mut kubernetes = json!({
            "namespace": claims.namespace,
            "serviceaccount": {"name": claims.service_account, "uid": claims.service_account_uid},
        });
        if let Some(bound) = &claims.bound {
            let key = bound_claim_key(&bound.kind).ok_or_else(|| {
                TokenError::Issue(format!("cannot bind a token to a {}", bound.kind))
            })?;
            if bound.name.is_empty() {
                return Err(TokenError::Issue(format!(
                    "the bound {} has no name",
                    bound.kind
                )));
            }
            let mut reference = json!({"name": bound.name});
            if !bound.uid.is_empty() {
                reference["uid"] = json!(bound.uid);
            }
            kubernetes[key] = reference;
        }
        let mut payload = json!({
            "iss": claims.issuer,
            "sub": username(&claims.namespace, &claims.service_account),
            "aud": claims.audiences,
            "exp": claims.expires,
            "iat": claims.issued_at,
            "nbf": claims.not_before,
            "kubernetes.io": kubernetes,
        });
        if !claims.token_id.is_empty() {
            payload["jti"] = json!(claims.token_id);
        }
        let header = json!({"alg": ALGORITHM, "kid": self.key_id, "typ": "JWT"});
        let token = self.sign_parts(&header, &payload)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Issue(format!(
                "it would be {} bytes, more than the {MAX_TOKEN_BYTES} a token may have",
                token.len()
            )));
        }
        Ok(token)
    }

    /// Encodes and signs a header and payload as given (the tests sign hostile payloads too).
    fn sign_parts(&self, header: &Value, payload: &Value) -> Result<String, TokenError> {
        let header = serde_json::to_vec(header).map_err(|e| TokenError::Issue(e.to_string()))?;
        let payload =
            serde_json::to_vec(payload).map_err(|e| TokenError::Issue(e.to_string()))?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let signature = self
            .key
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| TokenError::Issue("the ECDSA signature failed".into()))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(token)
    }

    /// Checks a token: its size and shape, the algorithm (only ES256: `none`, HS256, RS256...
    /// are refused), the signature, the issuer, `exp`, `nbf` and `iat` (60 s leeway, as
    /// Kubernetes), and the audience (the token's `aud` must contain one of `audiences`; an
    /// empty `audiences` accepts no token). Kubernetes' default API audience is the issuer.
    ///
    /// The caller still checks, as Kubernetes' validator does, that the ServiceAccount exists
    /// with `service_account_uid` (and is not being deleted), and that a bound object exists
    /// with the bound uid: a token dies with its ServiceAccount and its bound object.
    pub fn verify(
        &self,
        token: &str,
        audiences: &[String],
        now_unix: i64,
    ) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge { len: token.len() });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Segments(token.split('.').count()));
        };

        let header = json_object(&decode_segment(header_b64, "header")?, "header")?;
        self.check_header(&header)?;

        let signature = decode_segment(signature_b64, "signature")?;
        if signature.len() != SIGNATURE_BYTES {
            return Err(TokenError::SignatureLength(signature.len()));
        }
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public_key)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| TokenError::Signature)?;

        // Only a payload this key signed is parsed.
        let payload = json_object(&decode_segment(payload_b64, "payload")?, "payload")?;
        let claims = parse_claims(&payload)?;

        if claims.issuer != self.issuer {
            return Err(TokenError::Issuer {
                found: shorten(&claims.issuer),
                expected: self.issuer.clone(),
            });
        }
        if now_unix.saturating_sub(LEEWAY_SECONDS) > claims.expires {
            return Err(TokenError::Expired {
                exp: claims.expires,
                now: now_unix,
            });
        }
        if now_unix.saturating_add(LEEWAY_SECONDS) < claims.not_before {
            return Err(TokenError::NotYetValid {
                nbf: claims.not_before,
                now: now_unix,
            });
        }
        if now_unix.saturating_add(LEEWAY_SECONDS) < claims.issued_at {
            return Err(TokenError::IssuedInFuture {
                iat: claims.issued_at,
                now: now_unix,
            });
        }
        if !claims.audiences.iter().any(|aud| audiences.contains(aud)) {
            return Err(TokenError::Audience {
                found: claims.audiences.iter().take(8).map(|a| shorten(a)).collect(),
                accepted: audiences.to_vec(),
            });
        }
        Ok(claims)
    }

    fn check_header(&self, header: &Map<String, Value>) -> Result<(), TokenError> {
        match header.get("alg") {
            Some(Value::String(alg)) if alg == ALGORITHM => {}
            Some(Value::String(alg)) => return Err(TokenError::Algorithm(shorten(alg))),
            Some(other) => {
                return Err(TokenError::Header(format!(
                    "\"alg\" is a JSON {}, not a string",
                    json_type(other)
                )))
            }
            None => return Err(TokenError::Header("no \"alg\"".into())),
        }
        if header.contains_key("crit") {
            return Err(TokenError::Header(
                "critical extensions (\"crit\") are not supported".into(),
            ));
        }
        match header.get("kid") {
            None => Ok(()),
            Some(Value::String(kid)) if *kid == self.key_id => Ok(()),
            Some(Value::String(kid)) => Err(TokenError::UnknownKey(shorten(kid))),
            Some(other) => Err(TokenError::Header(format!(
                "\"kid\" is a JSON {}, not a string",
                json_type(other)
            ))),
        }
    }
}

/// base64url (unpadded) SHA-256 of the DER SubjectPublicKeyInfo of a P-256 point.
fn key_id(point: &[u8]) -> String {
    let mut spki = Vec::with_capacity(P256_SPKI_PREFIX.len() + point.len());
    spki.extend_from_slice(&P256_SPKI_PREFIX);
    spki.extend_from_slice(point);
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref())
}

/// The key, inside the `kubernetes.io` claim, of a bound object of this kind.
fn bound_claim_key(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("pod"),
        "Secret" => Some("secret"),
        "Node" => Some("node"),
        _ => None,
    }
}

/// At most 64 characters of a string an attacker chose, for the logs.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn decode_segment(segment: &str, part: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Base64(part))
}

fn json_object(bytes: &[u8], part: &'static str) -> Result<Map<String, Value>, TokenError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(TokenError::Json {
            part,
            message: format!("a JSON {}", json_type(&other)),
        }),
        Err(e) => Err(TokenError::Json {
            part,
            message: e.to_string(),
        }),
    }
}

fn claim_error(claim: &'static str, message: impl Into<String>) -> TokenError {
    TokenError::Claim {
        claim,
        message: message.into(),
    }
}

/// A string claim; `None` when absent.
fn optional_string<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    claim: &'static str,
) -> Result<Option<&'a str>, TokenError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(claim_error(
            claim,
            format!("a JSON {} where a string belongs", json_type(other)),
        )),
    }
}

/// A string claim that must be present and not empty.
fn required_string<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    claim: &'static str,
) -> Result<&'a str, TokenError> {
    match optional_string(map, key, claim)? {
        None => Err(claim_error(claim, "missing")),
        Some("") => Err(claim_error(claim, "empty")),
        Some(s) => Ok(s),
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch; fractions are dropped, as go-jose
/// drops them.
fn numeric_date(map: &Map<String, Value>, claim: &'static str) -> Result<i64, TokenError> {
    let value = map.get(claim).ok_or_else(|| claim_error(claim, "missing"))?;
    let Value::Number(number) = value else {
        return Err(claim_error(
            claim,
            format!(
                "a JSON {} where a number (seconds since the epoch) belongs",
                json_type(value)
            ),
        ));
    };
    if let Some(seconds) = number.as_i64() {
        return Ok(seconds);
    }
    match number.as_f64() {
        // Within ±2^53, where a float still counts whole seconds exactly.
        Some(f) if f.is_finite() && f.abs() < 9.0e15 => Ok(f.trunc() as i64),
        _ => Err(claim_error(claim, format!("{} is out of range", shorten(&number.to_string())))),
    }
}

/// `{"name": .., "uid": ..}` under the `kubernetes.io` claim; `None` when absent or null.
fn object_reference(
    map: &Map<String, Value>,
    key: &str,
    claim: &'static str,
) -> Result<Option<(String, String)>, TokenError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(reference)) => {
            let name = required_string(reference, "name", claim)?;
            let uid = optional_string(reference, "uid", claim)?.unwrap_or("");
            Ok(Some((name.to_owned(), uid.to_owned())))
        }
        Some(other) => Err(claim_error(
            claim,
            format!("a JSON {} where an object belongs", json_type(other)),
        )),
    }
}

fn parse_claims(payload: &Map<String, Value>) -> Result<Claims, TokenError> {
    let issuer = required_string(payload, "iss", "iss")?;
    let subject = required_string(payload, "sub", "sub")?;
    let audiences = match payload.get("aud") {
        None => return Err(claim_error("aud", "missing")),
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(aud) => Ok(aud.clone()),
                other => Err(claim_error(
                    "aud",
                    format!("a JSON {} in the list of audiences", json_type(other)),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(claim_error(
                "aud",
                format!(
                    "a JSON {} where a string or a list of strings belongs",
                    json_type(other)
                ),
            ))
        }
    };
    let expires = numeric_date(payload, "exp")?;
    let issued_at = numeric_date(payload, "iat")?;
    let not_before = numeric_date(payload, "nbf")?;
    let token_id = optional_string(payload, "jti", "jti")?
        .unwrap_or("")
        .to_owned();

    let kubernetes = match payload.get("kubernetes.io") {
        Some(Value::Object(kubernetes)) => kubernetes,
        Some(other) => {
            return Err(claim_error(
                "kubernetes.io",
                format!("a JSON {} where an object belongs", json_type(other)),
            ))
        }
        None => return Err(claim_error("kubernetes.io", "missing")),
    };
    let namespace = required_string(kubernetes, "namespace", "kubernetes.io.namespace")?;
    let service_account = match kubernetes.get("serviceaccount") {
        Some(Value::Object(sa)) => sa,
        Some(other) => {
            return Err(claim_error(
                "kubernetes.io.serviceaccount",
                format!("a JSON {} where an object belongs", json_type(other)),
            ))
        }
        None => return Err(claim_error("kubernetes.io.serviceaccount", "missing")),
    };
    let sa_name = required_string(service_account, "name", "kubernetes.io.serviceaccount")?;
    let sa_uid = required_string(service_account, "uid", "kubernetes.io.serviceaccount")?;
    if subject != username(namespace, sa_name) {
        return Err(claim_error(
            "sub",
            format!(
                "{:?} does not name the service account {namespace}/{sa_name}",
                shorten(subject)
            ),
        ));
    }
    // A pod-bound token may also name the pod's node (newer kube-apiservers add it); the pod
    // is what the token is bound to.
    let mut bound = None;
    for (key, kind, claim) in [
        ("pod", "Pod", "kubernetes.io.pod"),
        ("secret", "Secret", "kubernetes.io.secret"),
        ("node", "Node", "kubernetes.io.node"),
    ] {
        if let Some((name, uid)) = object_reference(kubernetes, key, claim)? {
            if bound.is_none() {
                bound = Some(BoundObject {
                    kind: kind.to_owned(),
                    name,
                    uid,
                });
            }
        }
    }
    Ok(Claims {
        issuer: issuer.to_owned(),
        audiences,
        issued_at,
        not_before,
        expires,
        namespace: namespace.to_owned(),
        service_account: sa_name.to_owned(),
        service_account_uid: sa_uid.to_owned(),
        bound,
        token_id,
    })
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

// ---------------------------------------------------------------------------------------------
// TokenRequest

/// `"name"` as Go's `%q` prints it (for the names and values in Kubernetes' messages).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// 422 Invalid with one `FieldValueInvalid` cause, as `errors.NewInvalid` for a TokenRequest.
fn invalid(name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    let cause = format!("Invalid value: {value}: {detail}");
    let mut details = json!({
        "group": TOKEN_REQUEST_GROUP,
        "kind": TOKEN_REQUEST_KIND,
        "causes": [{"reason": "FieldValueInvalid", "message": cause, "field": field}],
    });
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!(
            "{TOKEN_REQUEST_QUALIFIED} {} is invalid: {field}: {cause}",
            quoted(name)
        ),
        details: Some(details),
        retry_after: None,
    }
}

/// 409 Conflict, as `errors.NewConflict(GroupResource{group, resource}, name, why)`.
fn conflict(group: &str, resource: &str, name: &str, why: &str) -> ApiError {
    let qualified = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    ApiError {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Operation cannot be fulfilled on {qualified} {}: {why}",
            quoted(name)
        ),
        details: Some(json!({"name": name, "group": group, "kind": resource})),
        retry_after: None,
    }
}

/// 400 for a field of the wrong JSON type, in the words of Kubernetes' decoder.
fn undecodable(found: &Value, field: &str, go_type: &str) -> ApiError {
    let found = match found {
        Value::Bool(_) => "bool".to_owned(),
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => "string".to_owned(),
        Value::Array(_) => "array".to_owned(),
        Value::Object(_) => "object".to_owned(),
        Value::Null => "null".to_owned(),
    };
    ApiError::bad_request(format!(
        "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: json: cannot \
         unmarshal {found} into Go struct field {field} of type {go_type}"
    ))
}

/// An optional string field of a request object; absent and null are "".
fn request_string<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'a str, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(undecodable(other, field, "string")),
    }
}

/// An optional object field of a request object; absent and null are `None`.
fn request_object<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &str,
    go_type: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(other) => Err(undecodable(other, field, go_type)),
    }
}

/// The ServiceAccount's namespace, name and uid.
fn service_account_identity(service_account: &Value) -> Result<(String, String, String), ApiError> {
    let field = |key: &str| {
        service_account
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ApiError::internal(format!("the stored ServiceAccount has no metadata.{key}")))
    };
    Ok((field("namespace")?, field("name")?, field("uid")?))
}

/// `spec.boundObjectRef` of a TokenRequest.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BoundReference {
    kind: String,
    name: String,
    uid: String,
}

/// A TokenRequest checked as kube-apiserver checks it before it looks the bound object up.
struct Prepared {
    namespace: String,
    sa_name: String,
    sa_uid: String,
    metadata: Map<String, Value>,
    spec: Map<String, Value>,
    /// `None` when the request names none (then the API audiences).
    audiences: Option<Vec<String>>,
    expiration_seconds: i64,
    bound: Option<BoundReference>,
}

/// `schema.FromAPIVersionAndKind(apiVersion, kind)`: the group and version.
fn group_version(api_version: &str) -> (&str, &str) {
    if api_version.is_empty() || api_version == "/" {
        return ("", "");
    }
    match api_version.matches('/').count() {
        0 => ("", api_version),
        1 => api_version.split_once('/').unwrap_or(("", api_version)),
        _ => ("", ""),
    }
}

fn prepare(service_account: &Value, request: &Value) -> Result<Prepared, ApiError> {
    let (namespace, sa_name, sa_uid) = service_account_identity(service_account)?;
    let Value::Object(body) = request else {
        return Err(ApiError::bad_request(format!(
            "the TokenRequest is a JSON {}, not an object",
            json_type(request)
        )));
    };
    let metadata = request_object(body, "metadata", "TokenRequest.metadata", "v1.ObjectMeta")?
        .cloned()
        .unwrap_or_default();
    let spec = request_object(body, "spec", "TokenRequest.spec", "v1.TokenRequestSpec")?
        .cloned()
        .unwrap_or_default();

    // The name and namespace in the body, if any, must be the URL's.
    let name = request_string(&metadata, "name", "TokenRequest.metadata.name")?;
    if !name.is_empty() && name != sa_name {
        return Err(invalid(
            &sa_name,
            "metadata.name",
            &quoted(name),
            "must match the service account name if specified",
        ));
    }
    let request_namespace =
        request_string(&metadata, "namespace", "TokenRequest.metadata.namespace")?;
    if !request_namespace.is_empty() && request_namespace != namespace {
        return Err(invalid(
            &sa_name,
            "metadata.namespace",
            &quoted(request_namespace),
            "must match the service account namespace if specified",
        ));
    }
    let uid = request_string(&metadata, "uid", "TokenRequest.metadata.uid")?;
    if !uid.is_empty() && uid != sa_uid {
        return Err(conflict(
            TOKEN_REQUEST_GROUP,
            TOKEN_REQUEST_KIND,
            &sa_name,
            &format!(
                "the UID in the token request ({uid}) does not match the UID of the service \
                 account ({sa_uid})"
            ),
        ));
    }

    let audiences = match spec.get("audiences") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let audiences = items
                .iter()
                .map(|item| match item {
                    Value::String(aud) => Ok(aud.clone()),
                    other => Err(undecodable(
                        other,
                        "TokenRequestSpec.spec.audiences",
                        "string",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            (!audiences.is_empty()).then_some(audiences)
        }
        Some(other) => {
            return Err(undecodable(
                other,
                "TokenRequestSpec.spec.audiences",
                "[]string",
            ))
        }
    };

    let expiration_seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            undecodable(
                &Value::Number(n.clone()),
                "TokenRequestSpec.spec.expirationSeconds",
                "int64",
            )
        })?,
        Some(other) => {
            return Err(undecodable(
                other,
                "TokenRequestSpec.spec.expirationSeconds",
                "int64",
            ))
        }
    };
    // ValidateTokenRequest; Kubernetes reports it for the name "".
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration_seconds.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration_seconds.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }

    let bound = match request_object(
        &spec,
        "boundObjectRef",
        "TokenRequestSpec.spec.boundObjectRef",
        "v1.BoundObjectReference",
    )? {
        None => None,
        Some(reference) => {
            let field = |key: &str| {
                request_string(
                    reference,
                    key,
                    &format!("BoundObjectReference.spec.boundObjectRef.{key}"),
                )
            };
            let kind = field("kind")?;
            let api_version = field("apiVersion")?;
            let (group, version) = group_version(api_version);
            if !group.is_empty() || bound_claim_key(kind).is_none() {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {group}/{version}, Kind={kind}"
                )));
            }
            let name = field("name")?;
            if name.is_empty() {
                return Err(ApiError::bad_request("Name parameter required."));
            }
            Some(BoundReference {
                kind: kind.to_owned(),
                name: name.to_owned(),
                uid: field("uid")?.to_owned(),
            })
        }
    };

    Ok(Prepared {
        namespace,
        sa_name,
        sa_uid,
        metadata,
        spec,
        audiences,
        expiration_seconds,
        bound,
    })
}

/// Checks a TokenRequest as kube-apiserver does before it looks its bound object up, and
/// returns the object it asks its token be bound to (`spec.boundObjectRef`: kind `Pod`,
/// `Secret` or `Node`, with its name and the uid the request gives, "" for none).
///
/// The caller looks that object up (a Pod or Secret in the ServiceAccount's namespace; a Node
/// has none), answers 404 if it is absent, and passes it to [`token_request_bound`].
pub fn requested_binding(
    service_account: &Value,
    request: &Value,
) -> Result<Option<BoundObject>, ApiError> {
    Ok(prepare(service_account, request)?
        .bound
        .map(|reference| BoundObject {
            kind: reference.kind,
            name: reference.name,
            uid: reference.uid,
        }))
}

/// How the bound object's uid is known.
enum Binding<'a> {
    /// From the request, unchecked.
    Requested,
    /// From the object as stored, which the caller looked up.
    Stored(Option<&'a Value>),
}

/// Answers `POST .../serviceaccounts/<name>/token`: `service_account` is the stored
/// ServiceAccount (JSON), `request` the TokenRequest body (`authentication.k8s.io/v1`).
/// Checks the request as Kubernetes does (`metadata.name`/`namespace`/`uid`, if given, must
/// be the ServiceAccount's; `spec.expirationSeconds`, 3600 by default, between 600 and 2^32;
/// `spec.audiences` default to the issuer; `spec.boundObjectRef` of kind Pod, Secret or Node
/// with a name), issues the token, and returns the TokenRequest with its `metadata`
/// (`creationTimestamp` set) and `status: {token, expirationTimestamp}`.
///
/// The bound object's uid is taken from the request as given, unchecked; to check it against
/// the store as kube-apiserver does (and that a pod runs as this ServiceAccount), look the
/// object up and use [`token_request_bound`].
pub fn token_request(
    signer: &TokenSigner,
    service_account: &serde_json::Value,
    request: &serde_json::Value,
    now_unix: i64,
) -> Result<serde_json::Value, ApiError> {
    answer(signer, service_account, request, Binding::Requested, now_unix)
}

/// [`token_request`] for a request whose bound object (see [`requested_binding`]) the caller
/// looked up: `bound_object` is that object as stored. The token is bound to its uid; a uid
/// in the request that differs is a 409 Conflict, and a pod that runs as another
/// ServiceAccount a 400, as in Kubernetes. `bound_object` is ignored when the request binds
/// to nothing, and required when it does.
pub fn token_request_bound(
    signer: &TokenSigner,
    service_account: &Value,
    request: &Value,
    bound_object: Option<&Value>,
    now_unix: i64,
) -> Result<Value, ApiError> {
    answer(
        signer,
        service_account,
        request,
        Binding::Stored(bound_object),
        now_unix,
    )
}

/// The bound object a token gets, from the request and, when the caller looked it up, the
/// stored object.
fn resolve_binding(
    prepared: &Prepared,
    binding: Binding<'_>,
) -> Result<Option<BoundObject>, ApiError> {
    let Some(reference) = &prepared.bound else {
        return Ok(None);
    };
    let object = match binding {
        Binding::Requested => {
            return Ok(Some(BoundObject {
                kind: reference.kind.clone(),
                name: reference.name.clone(),
                uid: reference.uid.clone(),
            }))
        }
        Binding::Stored(None) => {
            return Err(ApiError::internal(format!(
                "the {} {:?} the token is to be bound to was not looked up",
                reference.kind, reference.name
            )))
        }
        Binding::Stored(Some(object)) => object,
    };
    let stored_name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if stored_name != reference.name {
        return Err(ApiError::internal(format!(
            "the {} looked up is {:?}, not {:?}",
            reference.kind, stored_name, reference.name
        )));
    }
    if reference.kind == "Pod" {
        let spec = object.get("spec");
        let pod_account = spec
            .and_then(|s| s.get("serviceAccountName"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| {
                spec.and_then(|s| s.get("serviceAccount"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or("default");
        if pod_account != prepared.sa_name {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount {} to pod running with different \
                 serviceaccount name.",
                quoted(&prepared.sa_name)
            )));
        }
    }
    let uid = object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|uid| !uid.is_empty())
        .ok_or_else(|| {
            ApiError::internal(format!(
                "the stored {} {:?} has no metadata.uid",
                reference.kind, reference.name
            ))
        })?;
    if !reference.uid.is_empty() && reference.uid != uid {
        return Err(conflict(
            "",
            &reference.kind,
            &reference.name,
            &format!(
                "the UID in the bound object reference ({}) does not match the UID in record. \
                 The object might have been deleted and then recreated",
                reference.uid
            ),
        ));
    }
    Ok(Some(BoundObject {
        kind: reference.kind.clone(),
        name: reference.name.clone(),
        uid: uid.to_owned(),
    }))
}

fn rfc3339(seconds: i64) -> Result<String, ApiError> {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .map_err(|e| ApiError::internal(format!("the time {seconds}: {e}")))
}

fn set_if_empty(map: &mut Map<String, Value>, key: &str, value: &str) {
    let empty = match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if empty {
        map.insert(key.to_owned(), json!(value));
    }
}

fn answer(
    signer: &TokenSigner,
    service_account: &Value,
    request: &Value,
    binding: Binding<'_>,
    now_unix: i64,
) -> Result<Value, ApiError> {
    let prepared = prepare(service_account, request)?;
    let bound = resolve_binding(&prepared, binding)?;
    let audiences = prepared
        .audiences
        .clone()
        .unwrap_or_else(|| vec![signer.issuer().to_owned()]);
    let expires = now_unix.saturating_add(prepared.expiration_seconds);
    let claims = Claims {
        issuer: signer.issuer().to_owned(),
        audiences: audiences.clone(),
        issued_at: now_unix,
        not_before: now_unix,
        expires,
        namespace: prepared.namespace.clone(),
        service_account: prepared.sa_name.clone(),
        service_account_uid: prepared.sa_uid.clone(),
        bound,
        token_id: uuid::Uuid::new_v4().to_string(),
    };
    let token = signer
        .issue(&claims)
        .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))?;

    let mut metadata = prepared.metadata;
    set_if_empty(&mut metadata, "name", &prepared.sa_name);
    set_if_empty(&mut metadata, "namespace", &prepared.namespace);
    set_if_empty(&mut metadata, "uid", &prepared.sa_uid);
    metadata.insert("creationTimestamp".into(), json!(rfc3339(now_unix)?));
    let mut spec = prepared.spec;
    spec.insert("audiences".into(), json!(audiences));
    spec.insert(
        "expirationSeconds".into(),
        json!(prepared.expiration_seconds),
    );
    spec.entry("boundObjectRef").or_insert(Value::Null);
    Ok(json!({
        "kind": TOKEN_REQUEST_KIND,
        "apiVersion": TOKEN_REQUEST_API_VERSION,
        "metadata": metadata,
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": rfc3339(expires)?},
    }))
}
