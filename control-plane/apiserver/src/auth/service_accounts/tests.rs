use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use serde_json::json;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::*;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// 2023-11-14T22:13:20Z.
const NOW: i64 = 1_700_000_000;

fn signer() -> (tempfile::TempDir, TokenSigner) {
    let dir = tempfile::tempdir().unwrap();
    let signer = TokenSigner::load_or_create(dir.path(), ISSUER).unwrap();
    (dir, signer)
}

fn api() -> Vec<String> {
    vec![ISSUER.to_owned()]
}

fn claims() -> Claims {
    Claims {
        issuer: ISSUER.into(),
        audiences: api(),
        issued_at: NOW,
        not_before: NOW,
        expires: NOW + 3600,
        namespace: "default".into(),
        service_account: "builder".into(),
        service_account_uid: "0b9c3b0e-5d7e-4f0a-9a55-0d1f6c1c2e11".into(),
        bound: None,
        token_id: "7d3c1d4e-2a43-4a0c-8f0e-4a3c9c1b5e22".into(),
    }
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn decode(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// The payload `issue` writes for `claims()`, to sign altered copies of it.
fn payload() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "system:serviceaccount:default:builder",
        "aud": [ISSUER],
        "exp": NOW + 3600,
        "iat": NOW,
        "nbf": NOW,
        "jti": "7d3c1d4e-2a43-4a0c-8f0e-4a3c9c1b5e22",
        "kubernetes.io": {
            "namespace": "default",
            "serviceaccount": {"name": "builder", "uid": "0b9c3b0e-5d7e-4f0a-9a55-0d1f6c1c2e11"},
        },
    })
}

fn header(signer: &TokenSigner) -> Value {
    json!({"alg": "ES256", "kid": signer.key_id(), "typ": "JWT"})
}

#[test]
fn issue_and_verify_round_trip() {
    let (_dir, signer) = signer();
    let token = signer.issue(&claims()).unwrap();
    assert_eq!(signer.verify(&token, &api(), NOW).unwrap(), claims());

    // The JSON is Kubernetes': real tools read it.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(decode(parts[0]), header(&signer));
    assert_eq!(decode(parts[1]), payload());
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
    // kid: base64url SHA-256 (32 bytes) of the SubjectPublicKeyInfo.
    assert_eq!(URL_SAFE_NO_PAD.decode(signer.key_id()).unwrap().len(), 32);

    // Another of the accepted audiences does as well.
    let accepted = vec!["vault".to_owned(), ISSUER.to_owned()];
    assert!(signer.verify(&token, &accepted, NOW).is_ok());
}

#[test]
fn a_bound_token_round_trips() {
    let (_dir, signer) = signer();
    for kind in ["Pod", "Secret", "Node"] {
        let mut bound = claims();
        bound.bound = Some(BoundObject {
            kind: kind.into(),
            name: "web-0".into(),
            uid: "pod-uid".into(),
        });
        let token = signer.issue(&bound).unwrap();
        assert_eq!(signer.verify(&token, &api(), NOW).unwrap(), bound);
        let payload = decode(token.split('.').nth(1).unwrap());
        let key = kind.to_lowercase();
        assert_eq!(
            payload["kubernetes.io"][key.as_str()],
            json!({"name": "web-0", "uid": "pod-uid"})
        );
    }
    let mut other = claims();
    other.bound = Some(BoundObject {
        kind: "Deployment".into(),
        name: "web".into(),
        uid: "u".into(),
    });
    assert!(matches!(signer.issue(&other), Err(TokenError::Issue(_))));
}

#[test]
fn issue_refuses_claims_it_could_not_verify() {
    let (_dir, signer) = signer();
    let mut other_issuer = claims();
    other_issuer.issuer = "https://elsewhere".into();
    assert!(matches!(
        signer.issue(&other_issuer),
        Err(TokenError::Issue(_))
    ));
    let mut no_audience = claims();
    no_audience.audiences.clear();
    assert!(matches!(
        signer.issue(&no_audience),
        Err(TokenError::Issue(_))
    ));
    let mut no_uid = claims();
    no_uid.service_account_uid.clear();
    assert!(matches!(signer.issue(&no_uid), Err(TokenError::Issue(_))));
}

#[test]
fn expiry_has_a_minute_of_leeway() {
    let (_dir, signer) = signer();
    let token = signer.issue(&claims()).unwrap();
    let exp = NOW + 3600;
    assert!(signer.verify(&token, &api(), exp + LEEWAY_SECONDS).is_ok());
    let err = signer
        .verify(&token, &api(), exp + LEEWAY_SECONDS + 1)
        .unwrap_err();
    assert!(matches!(err, TokenError::Expired { .. }), "{err}");
}

#[test]
fn a_token_not_yet_valid_is_refused() {
    let (_dir, signer) = signer();
    let mut later = claims();
    later.not_before = NOW + 600;
    let token = signer.issue(&later).unwrap();
    let err = signer.verify(&token, &api(), NOW).unwrap_err();
    assert!(matches!(err, TokenError::NotYetValid { .. }), "{err}");
    assert!(signer.verify(&token, &api(), NOW + 540).is_ok());

    let mut future = claims();
    future.issued_at = NOW + 600;
    let token = signer.issue(&future).unwrap();
    let err = signer.verify(&token, &api(), NOW).unwrap_err();
    assert!(matches!(err, TokenError::IssuedInFuture { .. }), "{err}");
}

#[test]
fn a_wrong_audience_is_refused() {
    let (_dir, signer) = signer();
    let token = signer.issue(&claims()).unwrap();
    let err = signer
        .verify(&token, &["vault".to_owned()], NOW)
        .unwrap_err();
    assert!(matches!(err, TokenError::Audience { .. }), "{err}");
    // No accepted audience accepts nothing.
    let err = signer.verify(&token, &[], NOW).unwrap_err();
    assert!(matches!(err, TokenError::Audience { .. }), "{err}");
}

#[test]
fn a_wrong_issuer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ours = TokenSigner::load_or_create(dir.path(), ISSUER).unwrap();
    // The same key under another issuer name.
    let theirs = TokenSigner::load_or_create(dir.path(), "https://elsewhere").unwrap();
    let token = ours.issue(&claims()).unwrap();
    let err = theirs
        .verify(
            &token,
            &["https://elsewhere".to_owned(), ISSUER.to_owned()],
            NOW,
        )
        .unwrap_err();
    assert!(matches!(err, TokenError::Issuer { .. }), "{err}");
}

#[test]
fn a_tampered_token_is_refused() {
    let (_dir, signer) = signer();
    let token = signer.issue(&claims()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();

    // One bit of the claims flipped.
    let mut bytes = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(&bytes),
        parts[2]
    );
    let err = signer.verify(&forged, &api(), NOW).unwrap_err();
    assert!(matches!(err, TokenError::Signature), "{err}");

    // A claim rewritten to another, well-formed, one.
    let mut elevated = payload();
    elevated["kubernetes.io"]["namespace"] = json!("kube-system");
    elevated["sub"] = json!("system:serviceaccount:kube-system:builder");
    let forged = format!("{}.{}.{}", parts[0], encode(&elevated), parts[2]);
    let err = signer.verify(&forged, &api(), NOW).unwrap_err();
    assert!(matches!(err, TokenError::Signature), "{err}");

    // One bit of the signature flipped.
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 0x80;
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(&signature)
    );
    let err = signer.verify(&forged, &api(), NOW).unwrap_err();
    assert!(matches!(err, TokenError::Signature), "{err}");
}

#[test]
fn a_token_from_another_key_is_refused() {
    let (_a, ours) = signer();
    let (_b, theirs) = signer();
    assert_ne!(ours.key_id(), theirs.key_id());
    let token = theirs.issue(&claims()).unwrap();
    let err = ours.verify(&token, &api(), NOW).unwrap_err();
    assert!(matches!(err, TokenError::UnknownKey(_)), "{err}");

    // Without a kid, or with ours, the signature still gives it away.
    for header in [json!({"alg": "ES256"}), header(&ours)] {
        let token = theirs.sign_parts(&header, &payload()).unwrap();
        let err = ours.verify(&token, &api(), NOW).unwrap_err();
        assert!(matches!(err, TokenError::Signature), "{err}");
    }
}

#[test]
fn alg_none_is_refused() {
    let (_dir, signer) = signer();
    let unsigned = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "typ": "JWT"})),
        encode(&payload())
    );
    let err = signer.verify(&unsigned, &api(), NOW).unwrap_err();
    assert!(
        matches!(&err, TokenError::Algorithm(alg) if alg == "none"),
        "{err}"
    );

    // ES256 named, but no signature.
    let unsigned = format!("{}.{}.", encode(&header(&signer)), encode(&payload()));
    let err = signer.verify(&unsigned, &api(), NOW).unwrap_err();
    assert!(matches!(err, TokenError::SignatureLength(0)), "{err}");
}

#[test]
fn other_algorithms_are_refused() {
    let (_dir, signer) = signer();
    for alg in ["HS256", "RS256", "ES384", "es256", ""] {
        let token = format!(
            "{}.{}.{}",
            encode(&json!({"alg": alg, "typ": "JWT"})),
            encode(&payload()),
            URL_SAFE_NO_PAD.encode([7u8; 32])
        );
        let err = signer.verify(&token, &api(), NOW).unwrap_err();
        assert!(matches!(err, TokenError::Algorithm(_)), "{alg}: {err}");
    }
}

#[test]
fn garbage_is_refused_without_a_panic() {
    let (_dir, signer) = signer();
    let payload_b64 = encode(&payload());
    let sig_b64 = URL_SAFE_NO_PAD.encode([1u8; 64]);
    let es256 = encode(&header(&signer));
    let huge = "a".repeat(20 * 1024);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "segments"),
        (".".into(), "segments"),
        ("a.b".into(), "segments"),
        ("..".into(), "json"),
        ("a.b.c.d".into(), "segments"),
        (huge.clone(), "too large"),
        (format!("{huge}.{huge}.{huge}"), "too large"),
        ("a.b.c".into(), "base64"),
        ("e30=.e30.e30".into(), "base64"),
        ("e3+.e30.e30".into(), "base64"),
        ("bm90IGpzb24.e30.e30".into(), "json"),
        ("W10.e30.e30".into(), "json"),
        ("e30.e30.e30".into(), "header"),
        (
            format!(
                "{}.{payload_b64}.{sig_b64}",
                encode(&json!({"alg": {"nested": [1]}}))
            ),
            "header",
        ),
        (
            format!(
                "{}.{payload_b64}.{sig_b64}",
                encode(&json!({"alg": "ES256", "crit": ["exp"]}))
            ),
            "header",
        ),
        (
            format!(
                "{}.{payload_b64}.{sig_b64}",
                encode(&json!({"alg": "ES256", "kid": 7}))
            ),
            "header",
        ),
        (
            format!(
                "{es256}.{payload_b64}.{}",
                URL_SAFE_NO_PAD.encode([1u8; 10])
            ),
            "signature length",
        ),
        (
            format!(
                "{es256}.{payload_b64}.{}",
                URL_SAFE_NO_PAD.encode([1u8; 512])
            ),
            "signature length",
        ),
        (format!("{es256}.{payload_b64}.{sig_b64}"), "signature"),
        (format!("{es256}.!!!.{sig_b64}"), "signature"),
    ];
    for (token, what) in cases {
        let err = signer.verify(&token, &api(), NOW).unwrap_err();
        let ok = match what {
            "segments" => matches!(err, TokenError::Segments(_)),
            "too large" => matches!(err, TokenError::TooLarge { .. }),
            "base64" => matches!(err, TokenError::Base64(_)),
            "json" => matches!(err, TokenError::Json { .. }),
            "header" => matches!(err, TokenError::Header(_)),
            "signature length" => matches!(err, TokenError::SignatureLength(_)),
            "signature" => matches!(err, TokenError::Signature),
            _ => unreachable!(),
        };
        let shown = err.to_string();
        assert!(ok, "{what}: {shown}");
        assert!(shown.len() < 400, "a long message: {shown}");
    }
}

#[test]
fn signed_but_malformed_claims_are_refused() {
    let (_dir, signer) = signer();
    fn altered(edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut payload = payload();
        edit(payload.as_object_mut().unwrap());
        payload
    }
    fn kubernetes(edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
        altered(|p| edit(p["kubernetes.io"].as_object_mut().unwrap()))
    }
    let cases: Vec<(Value, &str)> = vec![
        (altered(|p| drop(p.remove("exp"))), "exp"),
        (
            altered(|p| drop(p.insert("exp".into(), json!({"nested": [NOW + 3600]})))),
            "exp",
        ),
        (
            altered(|p| drop(p.insert("exp".into(), json!([NOW + 3600])))),
            "exp",
        ),
        (
            altered(|p| drop(p.insert("exp".into(), json!("1700003600")))),
            "exp",
        ),
        (
            altered(|p| drop(p.insert("exp".into(), json!(1e300)))),
            "exp",
        ),
        (
            altered(|p| drop(p.insert("exp".into(), json!(u64::MAX)))),
            "exp",
        ),
        (
            altered(|p| drop(p.insert("iat".into(), Value::Null))),
            "iat",
        ),
        (
            altered(|p| drop(p.insert("nbf".into(), json!(true)))),
            "nbf",
        ),
        (altered(|p| drop(p.remove("iss"))), "iss"),
        (
            altered(|p| drop(p.insert("iss".into(), json!({"a": "b"})))),
            "iss",
        ),
        (altered(|p| drop(p.remove("aud"))), "aud"),
        (altered(|p| drop(p.insert("aud".into(), json!(5)))), "aud"),
        (
            altered(|p| drop(p.insert("aud".into(), json!([ISSUER, 5])))),
            "aud",
        ),
        (altered(|p| drop(p.insert("jti".into(), json!(5)))), "jti"),
        (
            altered(|p| {
                drop(p.insert(
                    "sub".into(),
                    json!("system:serviceaccount:kube-system:admin"),
                ))
            }),
            "sub",
        ),
        (
            altered(|p| drop(p.remove("kubernetes.io"))),
            "kubernetes.io",
        ),
        (
            altered(|p| drop(p.insert("kubernetes.io".into(), json!("default")))),
            "kubernetes.io",
        ),
        (
            kubernetes(|k| drop(k.insert("namespace".into(), json!("")))),
            "kubernetes.io.namespace",
        ),
        (
            kubernetes(|k| drop(k.insert("serviceaccount".into(), json!(["builder"])))),
            "kubernetes.io.serviceaccount",
        ),
        (
            kubernetes(|k| {
                drop(k.insert(
                    "serviceaccount".into(),
                    json!({"name": "builder", "uid": ""}),
                ))
            }),
            "kubernetes.io.serviceaccount",
        ),
        (
            kubernetes(|k| drop(k.insert("pod".into(), json!("web-0")))),
            "kubernetes.io.pod",
        ),
        (
            kubernetes(|k| drop(k.insert("pod".into(), json!({"uid": "u"})))),
            "kubernetes.io.pod",
        ),
    ];
    for (payload, claim) in cases {
        let token = signer.sign_parts(&header(&signer), &payload).unwrap();
        let err = signer.verify(&token, &api(), NOW).unwrap_err();
        assert!(
            matches!(&err, TokenError::Claim { claim: c, .. } if *c == claim),
            "{claim}: {err}"
        );
    }

    // A JSON array where the claims object belongs.
    let token = signer.sign_parts(&header(&signer), &json!([1, 2])).unwrap();
    let err = signer.verify(&token, &api(), NOW).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::Json {
                part: "payload",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn lenient_where_jwt_allows() {
    let (_dir, signer) = signer();
    let mut p = payload();
    // aud as one string, fractional times (go-jose drops the fraction), no jti.
    p["aud"] = json!(ISSUER);
    p["exp"] = json!((NOW + 3600) as f64 + 0.75);
    p.as_object_mut().unwrap().remove("jti");
    let token = signer.sign_parts(&header(&signer), &p).unwrap();
    let verified = signer.verify(&token, &api(), NOW).unwrap();
    assert_eq!(verified.audiences, api());
    assert_eq!(verified.expires, NOW + 3600);
    assert_eq!(verified.token_id, "");
    assert!(!user_of(&verified).extra.contains_key(CREDENTIAL_ID_KEY));

    // A pod-bound token that also names the pod's node is bound to the pod.
    let mut p = payload();
    p["kubernetes.io"]["pod"] = json!({"name": "web-0", "uid": "pod-uid"});
    p["kubernetes.io"]["node"] = json!({"name": "node-1", "uid": "node-uid"});
    let token = signer.sign_parts(&header(&signer), &p).unwrap();
    let verified = signer.verify(&token, &api(), NOW).unwrap();
    assert_eq!(verified.bound.unwrap().kind, "Pod");
}

#[test]
fn the_key_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = TokenSigner::load_or_create(dir.path(), ISSUER).unwrap();
    let token = first.issue(&claims()).unwrap();
    let key_id = first.key_id().to_owned();
    drop(first);
    let second = TokenSigner::load_or_create(dir.path(), ISSUER).unwrap();
    assert_eq!(second.key_id(), key_id);
    assert_eq!(second.verify(&token, &api(), NOW).unwrap(), claims());
}

#[test]
fn the_key_file_is_private_pkcs8() {
    let (dir, signer) = signer();
    let path = dir.path().join(KEY_FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let jwks = signer.jwks();
    assert_eq!(jwks["keys"][0]["kid"], json!(signer.key_id()));
    assert_eq!(jwks["keys"][0]["crv"], json!("P-256"));
}

#[test]
fn a_bad_key_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
    let err = TokenSigner::load_or_create(dir.path(), ISSUER).unwrap_err();
    assert!(matches!(err, TokenError::Key { .. }), "{err}");
    assert!(matches!(
        TokenSigner::load_or_create(dir.path(), ""),
        Err(TokenError::Config(_))
    ));
}

#[test]
fn user_of_a_plain_token() {
    let user = user_of(&claims());
    assert_eq!(user.name, "system:serviceaccount:default:builder");
    assert_eq!(user.uid, "0b9c3b0e-5d7e-4f0a-9a55-0d1f6c1c2e11");
    assert_eq!(
        user.groups,
        vec!["system:serviceaccounts", "system:serviceaccounts:default"]
    );
    assert_eq!(
        user.extra,
        BTreeMap::from([(
            "authentication.kubernetes.io/credential-id".to_owned(),
            vec!["JTI=7d3c1d4e-2a43-4a0c-8f0e-4a3c9c1b5e22".to_owned()]
        )])
    );
}

#[test]
fn user_of_bound_tokens() {
    let mut node = claims();
    node.bound = Some(BoundObject {
        kind: "Node".into(),
        name: "node-1".into(),
        uid: "node-uid".into(),
    });
    let user = user_of(&node);
    assert_eq!(user.extra[NODE_NAME_KEY], vec!["node-1"]);
    assert_eq!(user.extra[NODE_UID_KEY], vec!["node-uid"]);
    assert!(!user.extra.contains_key(POD_NAME_KEY));

    let mut secret = claims();
    secret.bound = Some(BoundObject {
        kind: "Secret".into(),
        name: "s".into(),
        uid: "secret-uid".into(),
    });
    assert_eq!(user_of(&secret).extra.len(), 1);

    // A pod without a uid sets no pod extras (Kubernetes needs both).
    let mut pod = claims();
    pod.bound = Some(BoundObject {
        kind: "Pod".into(),
        name: "web-0".into(),
        uid: String::new(),
    });
    assert!(!user_of(&pod).extra.contains_key(POD_NAME_KEY));
}

// --- TokenRequest ---------------------------------------------------------------------------

fn service_account() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "builder", "namespace": "default", "uid": "sa-uid"},
    })
}

fn request(spec: Value) -> Value {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
}

fn token_of(answer: &Value) -> &str {
    answer["status"]["token"].as_str().unwrap()
}

#[test]
fn token_request_defaults() {
    let (_dir, signer) = signer();
    let answer = token_request(&signer, &service_account(), &request(json!({})), NOW).unwrap();
    assert_eq!(answer["kind"], "TokenRequest");
    assert_eq!(answer["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(
        answer["metadata"],
        json!({
            "name": "builder",
            "namespace": "default",
            "uid": "sa-uid",
            "creationTimestamp": "2023-11-14T22:13:20Z",
        })
    );
    assert_eq!(
        answer["spec"],
        json!({"audiences": [ISSUER], "expirationSeconds": 3600, "boundObjectRef": null})
    );
    assert_eq!(
        answer["status"]["expirationTimestamp"],
        "2023-11-14T23:13:20Z"
    );

    let claims = signer.verify(token_of(&answer), &api(), NOW).unwrap();
    assert_eq!(claims.audiences, api());
    assert_eq!(claims.issued_at, NOW);
    assert_eq!(claims.not_before, NOW);
    assert_eq!(claims.expires, NOW + 3600);
    assert_eq!(claims.namespace, "default");
    assert_eq!(claims.service_account, "builder");
    assert_eq!(claims.service_account_uid, "sa-uid");
    assert_eq!(claims.bound, None);
    assert!(uuid::Uuid::parse_str(&claims.token_id).is_ok());

    // No spec at all, and a null one, are the same.
    for body in [
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"}),
        json!({"spec": null, "metadata": null}),
    ] {
        let answer = token_request(&signer, &service_account(), &body, NOW).unwrap();
        assert_eq!(answer["spec"]["expirationSeconds"], 3600);
    }
}

#[test]
fn token_request_with_audiences_and_expiry() {
    let (_dir, signer) = signer();
    let body = request(json!({"audiences": ["vault"], "expirationSeconds": 600}));
    let answer = token_request(&signer, &service_account(), &body, NOW).unwrap();
    assert_eq!(answer["spec"]["audiences"], json!(["vault"]));
    let token = token_of(&answer);
    assert!(matches!(
        signer.verify(token, &api(), NOW),
        Err(TokenError::Audience { .. })
    ));
    let claims = signer.verify(token, &["vault".to_owned()], NOW).unwrap();
    assert_eq!(claims.expires, NOW + 600);

    // The longest lifetime allowed.
    let body = request(json!({"expirationSeconds": MAX_EXPIRATION_SECONDS}));
    let answer = token_request(&signer, &service_account(), &body, NOW).unwrap();
    let claims = signer.verify(token_of(&answer), &api(), NOW).unwrap();
    assert_eq!(claims.expires, NOW + (1 << 32));

    // An empty list of audiences is none.
    let body = request(json!({"audiences": []}));
    let answer = token_request(&signer, &service_account(), &body, NOW).unwrap();
    assert_eq!(answer["spec"]["audiences"], json!([ISSUER]));
}

#[test]
fn token_request_refuses_a_short_expiry() {
    let (_dir, signer) = signer();
    let body = request(json!({"expirationSeconds": 300}));
    let err = token_request(&signer, &service_account(), &body, NOW).unwrap_err();
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
    assert_eq!(
        err.message,
        "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid \
         value: 300: may not specify a duration less than 10 minutes"
    );
    let details = err.details.unwrap();
    assert_eq!(details["group"], "authentication.k8s.io");
    assert_eq!(details["kind"], "TokenRequest");
    assert_eq!(
        details["causes"],
        json!([{
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 300: may not specify a duration less than 10 minutes",
            "field": "spec.expirationSeconds",
        }])
    );

    for seconds in [0, -1, 599] {
        let body = request(json!({"expirationSeconds": seconds}));
        let err = token_request(&signer, &service_account(), &body, NOW).unwrap_err();
        assert_eq!(err.code, 422, "{seconds}");
    }
}

#[test]
fn token_request_refuses_a_longer_expiry_than_two_to_the_32() {
    let (_dir, signer) = signer();
    let body = request(json!({"expirationSeconds": MAX_EXPIRATION_SECONDS + 1}));
    let err = token_request(&signer, &service_account(), &body, NOW).unwrap_err();
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .ends_with("spec.expirationSeconds: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds"),
        "{}",
        err.message
    );
}

#[test]
fn token_request_refuses_undecodable_fields() {
    let (_dir, signer) = signer();
    for spec in [
        json!({"expirationSeconds": "3600"}),
        json!({"expirationSeconds": 3600.5}),
        json!({"expirationSeconds": {"seconds": 3600}}),
        json!({"audiences": "vault"}),
        json!({"audiences": [1]}),
        json!({"boundObjectRef": "web-0"}),
        json!({"boundObjectRef": {"kind": "Pod", "name": 5}}),
    ] {
        let err =
            token_request(&signer, &service_account(), &request(spec.clone()), NOW).unwrap_err();
        assert_eq!(err.code, 400, "{spec}: {}", err.message);
    }
    for body in [
        json!([]),
        json!("x"),
        json!({"spec": []}),
        json!({"metadata": 1}),
    ] {
        let err = token_request(&signer, &service_account(), &body, NOW).unwrap_err();
        assert_eq!(err.code, 400, "{body}: {}", err.message);
    }
}

#[test]
fn token_request_metadata_must_be_the_service_accounts() {
    let (_dir, signer) = signer();
    let mut body = request(json!({}));
    body["metadata"] = json!({"name": "other"});
    let err = token_request(&signer, &service_account(), &body, NOW).unwrap_err();
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "TokenRequest.authentication.k8s.io \"builder\" is invalid: metadata.name: Invalid \
         value: \"other\": must match the service account name if specified"
    );

    body["metadata"] = json!({"name": "builder", "namespace": "kube-system"});
    let err = token_request(&signer, &service_account(), &body, NOW).unwrap_err();
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("metadata.namespace"),
        "{}",
        err.message
    );

    body["metadata"] = json!({"uid": "stale-uid"});
    let err = token_request(&signer, &service_account(), &body, NOW).unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");

    // The request's own metadata is kept (and completed).
    body["metadata"] = json!({"name": "builder", "labels": {"a": "b"}});
    let answer = token_request(&signer, &service_account(), &body, NOW).unwrap();
    assert_eq!(answer["metadata"]["labels"], json!({"a": "b"}));
    assert_eq!(answer["metadata"]["namespace"], "default");
}

#[test]
fn token_request_bound_to_a_pod() {
    let (_dir, signer) = signer();
    let reference = json!({"kind": "Pod", "apiVersion": "v1", "name": "web-0", "uid": "pod-uid"});
    let body = request(json!({"boundObjectRef": reference}));
    let answer = token_request(&signer, &service_account(), &body, NOW).unwrap();
    assert_eq!(answer["spec"]["boundObjectRef"], reference);
    let token = token_of(&answer);
    let claims = signer.verify(token, &api(), NOW).unwrap();
    assert_eq!(
        claims.bound,
        Some(BoundObject {
            kind: "Pod".into(),
            name: "web-0".into(),
            uid: "pod-uid".into(),
        })
    );
    let payload = decode(token.split('.').nth(1).unwrap());
    assert_eq!(
        payload["kubernetes.io"]["pod"],
        json!({"name": "web-0", "uid": "pod-uid"})
    );

    let user = user_of(&claims);
    assert_eq!(user.name, "system:serviceaccount:default:builder");
    assert_eq!(user.extra[POD_NAME_KEY], vec!["web-0"]);
    assert_eq!(user.extra[POD_UID_KEY], vec!["pod-uid"]);
    assert_eq!(
        user.extra[CREDENTIAL_ID_KEY],
        vec![format!("JTI={}", claims.token_id)]
    );
}

#[test]
fn token_request_bound_objects_kubernetes_refuses() {
    let (_dir, signer) = signer();
    let cases = [
        (
            json!({"kind": "Deployment", "apiVersion": "v1", "name": "web"}),
            "cannot bind token to object of type /v1, Kind=Deployment",
        ),
        (
            json!({"kind": "Pod", "apiVersion": "apps/v1", "name": "web-0"}),
            "cannot bind token to object of type apps/v1, Kind=Pod",
        ),
        (
            json!({"apiVersion": "v1", "name": "web-0"}),
            "cannot bind token to object of type /v1, Kind=",
        ),
        (
            json!({"kind": "Pod", "apiVersion": "v1"}),
            "Name parameter required.",
        ),
    ];
    for (reference, message) in cases {
        let body = request(json!({"boundObjectRef": reference}));
        let err = token_request(&signer, &service_account(), &body, NOW).unwrap_err();
        assert_eq!(err.code, 400, "{}", err.message);
        assert_eq!(err.message, message);
        let err = requested_binding(&service_account(), &body).unwrap_err();
        assert_eq!(err.message, message);
    }
    // Secret and Node are bindable; the apiVersion may be left out.
    for kind in ["Secret", "Node"] {
        let body = request(json!({"boundObjectRef": {"kind": kind, "name": "x", "uid": "u"}}));
        let answer = token_request(&signer, &service_account(), &body, NOW).unwrap();
        let claims = signer.verify(token_of(&answer), &api(), NOW).unwrap();
        assert_eq!(claims.bound.unwrap().kind, kind);
    }
}

#[test]
fn token_request_checked_against_the_stored_object() {
    let (_dir, signer) = signer();
    let sa = service_account();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "uid": "stored-uid"},
        "spec": {"serviceAccountName": "builder"},
    });

    // No uid in the request: the stored one is used.
    let body =
        request(json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0"}}));
    assert_eq!(
        requested_binding(&sa, &body).unwrap(),
        Some(BoundObject {
            kind: "Pod".into(),
            name: "web-0".into(),
            uid: String::new(),
        })
    );
    let answer = token_request_bound(&signer, &sa, &body, Some(&pod), NOW).unwrap();
    let claims = signer.verify(token_of(&answer), &api(), NOW).unwrap();
    assert_eq!(claims.bound.unwrap().uid, "stored-uid");

    // A uid that is not the stored one: the pod was replaced.
    let body =
        request(json!({"boundObjectRef": {"kind": "Pod", "name": "web-0", "uid": "old-uid"}}));
    let err = token_request_bound(&signer, &sa, &body, Some(&pod), NOW).unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on Pod \"web-0\": the UID in the bound object reference \
         (old-uid) does not match the UID in record. The object might have been deleted and \
         then recreated"
    );

    // A pod that runs as another ServiceAccount.
    let mut other = pod.clone();
    other["spec"]["serviceAccountName"] = json!("deployer");
    let body = request(json!({"boundObjectRef": {"kind": "Pod", "name": "web-0"}}));
    let err = token_request_bound(&signer, &sa, &body, Some(&other), NOW).unwrap_err();
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "cannot bind token for serviceaccount \"builder\" to pod running with different \
         serviceaccount name."
    );

    // The object must have been looked up when the request binds to one...
    let err = token_request_bound(&signer, &sa, &body, None, NOW).unwrap_err();
    assert_eq!(err.code, 500);
    // ...and is ignored when it binds to nothing.
    let answer = token_request_bound(&signer, &sa, &request(json!({})), Some(&pod), NOW).unwrap();
    let claims = signer.verify(token_of(&answer), &api(), NOW).unwrap();
    assert_eq!(claims.bound, None);
    assert_eq!(requested_binding(&sa, &request(json!({}))).unwrap(), None);
}

#[test]
fn token_request_needs_a_whole_service_account() {
    let (_dir, signer) = signer();
    let sa = json!({"metadata": {"name": "builder", "namespace": "default"}});
    let err = token_request(&signer, &sa, &request(json!({})), NOW).unwrap_err();
    assert_eq!(err.code, 500);
}
