use super::*;

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000).expect("time")
}

fn later(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000 + seconds).expect("time")
}

#[test]
fn generated_tokens_have_the_shapes_the_authenticators_read() {
    let bootstrap = Token::new_bootstrap().expect("random");
    let text = bootstrap.to_string();
    assert_eq!(
        Token::parse(&text, BOOTSTRAP_SECRET_LEN),
        Some(bootstrap.clone())
    );
    let user = Token::new_user().expect("random");
    assert_eq!(
        Token::parse(&user.to_string(), USER_SECRET_LEN),
        Some(user.clone())
    );
    assert_ne!(
        user,
        Token::new_user().expect("random"),
        "tokens are random"
    );
    // The secret never reaches a log through Debug.
    assert!(!format!("{user:?}").contains(&user.secret));
    for bad in [
        "",
        "abcdef",
        "abcdef.",
        "ABCDEF.0123456789abcdef",
        "abcde.0123456789abcdef",
        "abcdef.0123456789abcde-",
        "abcdef.0123456789abcdef.x",
        "abcdef\n.0123456789abcdef",
    ] {
        assert_eq!(Token::parse(bad, BOOTSTRAP_SECRET_LEN), None, "{bad:?}");
    }
}

#[test]
fn a_bootstrap_token_authenticates_as_a_bootstrapper_until_it_expires() {
    let token = Token::new_bootstrap().expect("random");
    let stored = bootstrap_secret(
        &token,
        Some(later(60)),
        "join",
        &[
            "system:bootstrappers:keel:default-node-token",
            "system:masters",
        ],
    );
    let user = bootstrap_user(&stored, &token, now()).expect("valid");
    assert_eq!(user.name, format!("system:bootstrap:{}", token.id));
    // A token may add bootstrapper groups only: system:masters is dropped.
    assert_eq!(
        user.groups,
        [
            "system:bootstrappers",
            "system:bootstrappers:keel:default-node-token"
        ]
    );
    assert!(
        bootstrap_user(&stored, &token, later(60)).is_none(),
        "expired"
    );
    let wrong = Token {
        secret: "0000000000000000".into(),
        ..token.clone()
    };
    assert!(bootstrap_user(&stored, &wrong, now()).is_none());
    let mut deleting = stored.clone();
    deleting["metadata"]["deletionTimestamp"] = serde_json::json!("2026-01-01T00:00:00Z");
    assert!(bootstrap_user(&deleting, &token, now()).is_none());
    let mut garbled = stored.clone();
    garbled["data"]["expiration"] = serde_json::json!(b64("soon"));
    assert!(
        bootstrap_user(&garbled, &token, now()).is_none(),
        "an unreadable expiry refuses"
    );
    // A user token's Secret is not a bootstrap token, even with the same id.
    let user_secret = user_secret(&token, "alice", &[], None);
    assert!(bootstrap_user(&user_secret, &token, now()).is_none());
}

#[test]
fn a_user_token_stores_only_a_hash_and_authenticates_its_user() {
    let token = Token::new_user().expect("random");
    let groups = vec!["dev".to_owned(), "ops".to_owned()];
    let stored = user_secret(&token, "alice@example.com", &groups, Some(later(3600)));
    let text = stored.to_string();
    assert!(
        !text.contains(&token.secret) && !text.contains(&b64(&token.secret)),
        "{text}"
    );
    assert_eq!(
        stored["metadata"]["labels"]["keel.dev/user"],
        "alice_example.com"
    );
    let user = token_user(&stored, &token, now()).expect("valid");
    assert_eq!(user.name, "alice@example.com");
    assert_eq!(user.groups, groups);
    assert!(
        token_user(&stored, &token, later(3600)).is_none(),
        "expired"
    );
    let mut other = token.clone();
    other.secret = "a".repeat(USER_SECRET_LEN);
    assert!(token_user(&stored, &other, now()).is_none());
    let mut bootstrap_typed = stored.clone();
    bootstrap_typed["type"] = serde_json::json!(BOOTSTRAP_TYPE);
    assert!(token_user(&bootstrap_typed, &token, now()).is_none());
    let mut nobody = stored.clone();
    nobody["data"]["user"] = serde_json::json!(b64(""));
    assert!(
        token_user(&nobody, &token, now()).is_none(),
        "a token for no user"
    );
}
