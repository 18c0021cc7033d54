use super::*;

type F = fn(&str) -> Vec<String>;
fn check(f: F, good: &[&str], bad: &[&str]) {
    for v in good {
        assert!(f(v).is_empty(), "expected valid: {v:?}: {:?}", f(v));
    }
    for v in bad {
        assert!(!f(v).is_empty(), "expected invalid: {v:?}");
    }
}
const HOSTILE: &[&str] = &[
    "a\"b",
    "a\nb",
    "-j ACCEPT",
    "w\u{435}b",
    "名前",
    "",
    "a\u{202e}b",
];
const LABEL_RE_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_RE_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const NAME_PART_RE_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

#[test]
fn dns1123_label_go_table() {
    let (l63, l64) = ("a".repeat(63), "a".repeat(64));
    let good = [
        "a",
        "ab",
        "abc",
        "a1",
        "a-1",
        "a--1--2--b",
        "0",
        "01",
        "012",
        "1a",
        "1-a",
        "1--a--b--2",
        &l63,
    ];
    let bad = [
        "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a",
        "a_b", "1_", "_1", "1_2", ".", "a.", ".a", "a.b", "1.", ".1", "1.2", " ", "a ", " a",
        "a b", "1 ", " 1", "1 2", &l64, "abc\n",
    ];
    check(is_dns1123_label, &good, &bad);
    check(is_dns1123_label, &[], HOSTILE);
    assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
    assert_eq!(is_dns1123_label("A"), vec![LABEL_RE_MSG]);
    assert_eq!(
        is_dns1123_label(&l64),
        vec!["must be no more than 63 characters"]
    );
    // Too long *and* dotted: length check first, then the dots hint.
    let long_dotted = format!("{}.b", "a".repeat(63));
    assert_eq!(
        is_dns1123_label(&long_dotted),
        vec![
            "must be no more than 63 characters",
            "must not contain dots"
        ]
    );
}

#[test]
fn dns1123_subdomain_go_table() {
    let (s253, s254) = ("a".repeat(253), "a".repeat(254));
    let good = [
        "a",
        "a--1--2--b",
        "0",
        "1a",
        "a.a",
        "a-1.a",
        "a.1",
        "0.a",
        "1-a.a",
        "0.1",
        "1--a--b--2.1",
        "a.b.c.d.e",
        "aa.bb.cc.dd.ee",
        "1.2.3.4.5",
        "11.22.33.44.55",
        &s253,
    ];
    let bad = [
        "",
        "A",
        "aBc",
        "-",
        "a-",
        "-a",
        "_",
        "a_b",
        ".",
        "a.",
        ".a",
        "a..b",
        "1..2",
        " ",
        "a b",
        "A.a",
        "aB.a",
        "ab.A",
        "0.A",
        "A.B.C.D.E",
        "a.B.c.d.e",
        "a@b",
        "a,b",
        "a;b",
        "a:b",
        "a%b",
        "a?b",
        "a$b",
        &s254,
        "a.b\n",
    ];
    check(is_dns1123_subdomain, &good, &bad);
    check(is_dns1123_subdomain, &[], HOSTILE);
    assert_eq!(is_dns1123_subdomain(""), vec![SUBDOMAIN_RE_MSG]);
    assert_eq!(
        is_dns1123_subdomain(&s254),
        vec!["must be no more than 253 characters"]
    );
    assert_eq!(is_dns1123_subdomain(&"x".repeat(300)).len(), 1);
}

#[test]
fn dns1035_label_go_table() {
    let good = ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", &"a".repeat(63)];
    let bad = [
        "0",
        "01",
        "1a",
        "1-a",
        "1--a--b--2",
        "",
        "A",
        "aBc",
        "-",
        "a-",
        "-a",
        "_",
        "a_b",
        ".",
        "a.b",
        " ",
        "a b",
        &"a".repeat(64),
    ];
    check(is_dns1035_label, &good, &bad);
    check(is_dns1035_label, &[], HOSTILE);
    assert_eq!(is_dns1035_label("1a"), vec!["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]);
}

#[test]
fn qualified_name_go_table() {
    let long_ok = format!("{}/{}", "a".repeat(253), "b".repeat(63));
    let long_prefix = format!("{}/abc", "a".repeat(254));
    let good = [
        "simple",
        "now-with-dashes",
        "1-starts-with-num",
        "1234",
        "simple/simple",
        "now-with-dashes/now-with-dashes",
        "now.with.dots/simple",
        "now-with.dashes-and.dots/simple",
        "1-num.2-num/3-num",
        "1234/5678",
        "1.2.3.4/5678",
        "Uppercase_Is_OK_123",
        "example.com/Uppercase_Is_OK_123",
        "requests.storage-foo",
        &"a".repeat(63),
        &long_ok,
    ];
    let bad = [
        "nospecialchars%^=@",
        "cantendwithadash-",
        "-cantstartwithadash-",
        "only/one/slash",
        "Example.com/abc",
        "example_com/abc",
        "example.com/",
        "/simple",
        &"a".repeat(64),
        &long_prefix,
        "",
        "a\n",
    ];
    check(is_qualified_name, &good, &bad);
    check(is_qualified_name, &[], HOSTILE);
    assert_eq!(
        is_qualified_name("example.com/"),
        vec!["name part must be non-empty", NAME_PART_RE_MSG]
    );
    assert_eq!(
        is_qualified_name("/simple"),
        vec!["prefix part must be non-empty"]
    );
    assert_eq!(
        is_qualified_name(&long_prefix),
        vec!["prefix part must be no more than 253 bytes"]
    );
    assert_eq!(
        is_qualified_name(&"a".repeat(64)),
        vec!["name part must be no more than 63 bytes"]
    );
    assert_eq!(
        is_qualified_name("Example.com/abc"),
        vec![format!("prefix part {SUBDOMAIN_RE_MSG}")]
    );
    assert_eq!(is_qualified_name("a/b/c"), vec!["a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]);
}

#[test]
fn label_value_go_table() {
    let good = [
        "simple",
        "now-with-dashes",
        "1-starts-with-num",
        "end-with-num-1",
        "1234",
        &"a".repeat(63),
        "",
    ];
    let bad = [
        "nospecialchars%^=@",
        "Tama-nui-te-rā.is.Māori.sun",
        "\\backslashes\\are\\bad",
        "-starts-with-dash",
        "ends-with-dash-",
        ".starts.with.dot",
        "ends.with.dot.",
        &"a".repeat(64),
    ];
    check(is_valid_label_value, &good, &bad);
    check(is_valid_label_value, &[], &HOSTILE[..5]); // "" is a valid label value
    assert_eq!(
        is_valid_label_value(&"a".repeat(64)),
        vec!["must be no more than 63 bytes"]
    );
    assert_eq!(is_valid_label_value(&"-".repeat(300)).len(), 2);
    assert_eq!(is_valid_label_value("a b"), vec!["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]);
}

#[test]
fn port_name_go_table() {
    let good = [
        "telnet",
        "re-mail-ck",
        "pop3",
        "a",
        "a-1",
        "1-a",
        "a-1-b-2-c",
        "1-a-2-b-3",
    ];
    let bad = [
        "longerthan15characters",
        "",
        &"a".repeat(16),
        "12345",
        "1-2-3-4",
        "-begin",
        "end-",
        "two--hyphens",
        "whois++",
        "HTTP",
        "http\n",
    ];
    check(is_valid_port_name, &good, &bad);
    check(is_valid_port_name, &[], HOSTILE);
    const CHARSET: &str = "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)";
    assert_eq!(
        is_valid_port_name(""),
        vec![CHARSET, "must contain at least one letter (a-z)"]
    );
    assert_eq!(
        is_valid_port_name("12345"),
        vec!["must contain at least one letter (a-z)"]
    );
    assert_eq!(
        is_valid_port_name("longerthan15characters"),
        vec!["must be no more than 15 characters"]
    );
    assert_eq!(
        is_valid_port_name("-a--"),
        vec![
            "must not contain consecutive hyphens",
            "must not begin or end with a hyphen"
        ]
    );
    assert_eq!(is_valid_port_name("whois++"), vec![CHARSET]);
}

#[test]
fn env_var_name_relaxed_go_table() {
    let good = [
        "-",
        ":",
        "_",
        "+a",
        ">a",
        "<a",
        "a.",
        "a..",
        "*a",
        "%a",
        "?a",
        "a:a",
        "a_a",
        "aAz",
        "~a",
        "|a",
        "a0a",
        "a9",
        "/a",
        "a ",
        "#a",
        "0a",
        "0 a",
        "'a",
        "(a",
        "@a",
        "a\"b",
        "-j ACCEPT",
    ];
    let bad = [
        "",
        "=",
        "a=",
        "1=a",
        "a=b",
        "#%=&&",
        "\u{1}abc",
        "\u{82}abc",
        "Ç ç",
        "Ä ä",
        "Ñ ñ",
        "Ø ø",
        "a\nb",
        "w\u{435}b",
        "名前",
        "\u{7f}",
    ];
    check(is_env_var_name, &good, &bad);
    assert_eq!(
        is_env_var_name(""),
        vec!["environment variable name must be non-empty"]
    );
    assert_eq!(is_env_var_name("a=b=c"), vec![RELAXED_ENV_VAR_NAME_ERR]); // reported once
    let good = ["MY_ENV.NAME", "my.env-name", "MyEnvName1", "_a", "-a"];
    let bad = ["1a", "", "a b", "a=b", "-j ACCEPT", ".", "..", "..a"];
    check(is_env_var_name_legacy, &good, &bad);
    assert_eq!(
        is_env_var_name_legacy("..a"),
        vec!["must not start with '..'"]
    );
    assert_eq!(is_env_var_name_legacy(".").len(), 1);
}

#[test]
fn go_quote_matches_strconv() {
    assert_eq!(go_quote(""), "\"\"");
    assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(
        go_quote("\x07\x08\x0c\n\r\t\x0b\x01\x1b[31m\x7f"),
        r#""\a\b\f\n\r\t\v\x01\x1b[31m\x7f""#
    );
    assert_eq!(go_quote("w\u{435}b 名前 😀"), "\"w\u{435}b 名前 😀\""); // printable: kept
    assert_eq!(
        go_quote("\u{80}\u{a0}\u{202e}\u{feff}\u{e000}"),
        r#""\u0080\u00a0\u202e\ufeff\ue000""#
    );
    assert_eq!(go_quote("\u{e0001}\u{10ffff}"), r#""\U000e0001\U0010ffff""#);
    for h in HOSTILE {
        assert!(!go_quote(h).contains('\n'));
    }
}

#[test]
fn object_and_namespace_names() {
    let e = validate_object_name("metadata.name", "", NameRule::Dns1123Subdomain);
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].to_string(),
        "metadata.name: Required value: name or generateName is required"
    );
    assert!(
        validate_object_name("metadata.name", "my.app-1", NameRule::Dns1123Subdomain).is_empty()
    );
    assert_eq!(
        validate_object_name("metadata.name", "my.app", NameRule::Dns1123Label)[0].detail,
        "must not contain dots"
    );
    assert_eq!(
        validate_object_name("metadata.name", "1svc", NameRule::Dns1035Label).len(),
        1
    );
    let e = validate_object_name("metadata.name", "a\nb", NameRule::Dns1123Label);
    assert_eq!(
        e[0].to_string(),
        format!("metadata.name: Invalid value: \"a\\nb\": {LABEL_RE_MSG}")
    );
    assert!(!e[0].to_string().contains('\n'));
    for h in HOSTILE {
        for r in [
            NameRule::Dns1123Subdomain,
            NameRule::Dns1123Label,
            NameRule::Dns1035Label,
        ] {
            assert!(
                !validate_object_name("metadata.name", h, r).is_empty(),
                "{h:?} {r:?}"
            );
        }
    }
    // 2 errors for a 64-char name with uppercase, as Go's namespace test expects.
    assert_eq!(
        validate_namespace_name("metadata.namespace", &format!("A{}", "a".repeat(63))).len(),
        2
    );
    let e = validate_namespace_name("metadata.namespace", "");
    assert_eq!(e[0].to_string(), "metadata.namespace: Required value");
    let e = validate_namespace_name("metadata.namespace", "foo.bar");
    assert_eq!(
        e[0].to_string(),
        "metadata.namespace: Invalid value: \"foo.bar\": must not contain dots"
    );
    assert!(validate_namespace_name("metadata.namespace", "kube-system").is_empty());
}

#[test]
fn generate_name_mask_trailing_dash() {
    assert!(name_is_valid(NameRule::Dns1123Subdomain, "foo-", true).is_empty());
    assert!(!name_is_valid(NameRule::Dns1123Subdomain, "foo-", false).is_empty());
    assert!(!name_is_valid(NameRule::Dns1123Label, "-", true).is_empty()); // len 1: not masked
                                                                           // Go quirk: the byte before the dash is dropped too, so "ab.-" -> "aba".
    assert!(name_is_valid(NameRule::Dns1123Label, "ab.-", true).is_empty());
    // Cutting a UTF-8 sequence must not panic, and must still be rejected.
    assert_eq!(
        name_is_valid(NameRule::Dns1123Label, "\u{e9}-", true),
        vec![LABEL_RE_MSG]
    );
}

#[test]
fn labels() {
    let m: BTreeMap<String, String> = [
        ("app", "web"),
        ("bad key", "ok"),
        ("k", "-x"),
        ("e.com/x", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let e = validate_labels("metadata.labels", &m);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(
        e[0].to_string(),
        format!("metadata.labels: Invalid value: \"bad key\": {NAME_PART_RE_MSG}")
    );
    assert_eq!(
        (e[1].field.as_str(), e[1].value.as_str()),
        ("metadata.labels", "-x")
    );
    let mut m = BTreeMap::new();
    m.insert("\u{212a}".to_string(), "v\n".to_string()); // Kelvin sign key: invalid as label
    assert_eq!(validate_labels("metadata.labels", &m).len(), 2);
}

#[test]
fn annotations() {
    let ok = |k: &str, v: &str| {
        let m = BTreeMap::from([(k.to_string(), v.to_string())]);
        validate_annotations("metadata.annotations", &m)
    };
    for k in [
        "simple",
        "1234/5678",
        "UpperCase123",
        "Example.COM/Foo",
        "\u{212a}",
        "\u{130}",
    ] {
        assert!(ok(k, "bar").is_empty(), "{k:?}"); // Kelvin/İ lowercase to ASCII in Go
    }
    assert!(ok("a", &"b".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B - 1)).is_empty());
    for k in [
        "nospecialchars^=@",
        "cantendwithadash-",
        "only/one/slash",
        "a\"b",
        "a\nb",
        "名前",
        "",
    ] {
        assert_eq!(ok(k, "bar").len().min(1), 1, "{k:?}");
    }
    let e = ok(&"a".repeat(254), "bar");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].detail, "name part must be no more than 63 bytes");
    let e = ok("A\nB", "x");
    assert_eq!(
        e[0].to_string(),
        format!("metadata.annotations: Invalid value: \"A\\nB\": {NAME_PART_RE_MSG}")
    );
    let half = "b".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B / 2);
    let m = BTreeMap::from([("a".to_string(), half.clone()), ("c".to_string(), half)]);
    let e = validate_annotations("metadata.annotations", &m);
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].to_string(),
        "metadata.annotations: Too long: may not be more than 262144 bytes"
    );
}
