//! The signing key and the JWT itself: issuing, and verifying every byte an attacker sent.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use rustls::pki_types::PrivateKeyDer;
use serde_json::{json, Map, Value};

use super::*;
use crate::auth::pki::write_private;

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
        let bad_key = |message: String| TokenError::Key {
            path: path.clone(),
            message,
        };
        let pkcs8: Vec<u8> = match std::fs::read_to_string(&path) {
            Ok(pem) => pkcs8_from_pem(&pem).map_err(bad_key)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = rcgen::KeyPair::generate()
                    .map_err(|e| bad_key(format!("generating the key: {e}")))?;
                write_private(&path, key.serialize_pem().as_bytes())?;
                key.serialize_der()
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| bad_key(format!("not an ECDSA P-256 PKCS#8 key: {e}")))?;
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

    /// The OpenID provider configuration kube-apiserver serves at
    /// `/.well-known/openid-configuration`: enough for a relying party (a cloud's workload
    /// identity, a vault) to find the keys and verify the tokens.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer.trim_end_matches('/')),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
        })
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
    pub(super) fn sign_parts(&self, header: &Value, payload: &Value) -> Result<String, TokenError> {
        let header = serde_json::to_vec(header).map_err(|e| TokenError::Issue(e.to_string()))?;
        let payload = serde_json::to_vec(payload).map_err(|e| TokenError::Issue(e.to_string()))?;
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
                found: claims
                    .audiences
                    .iter()
                    .take(8)
                    .map(String::as_str)
                    .map(shorten)
                    .collect(),
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

/// The PKCS#8 DER of the private key in a PEM file.
fn pkcs8_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    match rustls_pemfile::private_key(&mut pem.as_bytes()) {
        Ok(Some(PrivateKeyDer::Pkcs8(key))) => Ok(key.secret_pkcs8_der().to_vec()),
        Ok(Some(_)) => Err(
            "the key is not in PKCS#8 form (\"BEGIN PRIVATE KEY\"); convert it with \
             `openssl pkcs8 -topk8 -nocrypt`"
                .into(),
        ),
        Ok(None) => Err("no private key in it".into()),
        Err(e) => Err(format!("not a PEM private key: {e}")),
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
pub(super) fn bound_claim_key(kind: &str) -> Option<&'static str> {
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

pub(super) fn json_type(value: &Value) -> &'static str {
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
        Some(Value::String(s)) => Ok(Some(s.as_str())),
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
    let value = map
        .get(claim)
        .ok_or_else(|| claim_error(claim, "missing"))?;
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
        _ => Err(claim_error(
            claim,
            format!("{} is out of range", shorten(&number.to_string())),
        )),
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
