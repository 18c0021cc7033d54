//! Ported from k8s.io/apimachinery pkg/labels/selector_test.go (its parse, lexer, matching and
//! exact-match tables), plus the error texts those tables only check for existence and hostile
//! input.

use serde_json::{json, Map, Value};

use super::super::tests::{label_error, NAME_MSG, VALUE_MSG};
use super::*;

const OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

fn set(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect()
}

fn label(text: &str) -> LabelSelector {
    LabelSelector::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

// ---- labels: TestSelectorParse, TestDeterministicParse ----

#[test]
fn label_good_strings_restring_without_spaces() {
    for text in [
        "x=a,y=b,z=c",
        "",
        "x!=a,y=b",
        "x=",
        "x= ",
        "x=,z= ",
        "x= ,z= ",
        "!x",
        "x>1",
        "x>1,z<5",
    ] {
        assert_eq!(label(text).to_string(), text.replace(' ', ""), "{text:?}");
    }
}

#[test]
fn label_bad_strings_with_go_texts() {
    let cases = [
        ("x=a||y=b", format!("unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {VALUE_MSG}")),
        ("x==a==b", "found '==', expected: ',' or 'end of string'".to_owned()),
        ("!x=a", "found '=', expected: ',' or 'end of string'".to_owned()),
        (
            "x<a",
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"
                .to_owned(),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(label_error(text), want, "{text:?}");
    }
}

#[test]
fn label_parse_is_deterministic() {
    assert_eq!(label("x=a,a=x").to_string(), label("a=x,x=a").to_string());
    assert_eq!(label("x=a,a=x"), label("a=x,x=a"));
}

// ---- labels: TestSelectorMatches, TestEverything, TestRequirementSelectorMatching ----

#[test]
fn label_matches_go_table() {
    let labelset = set(&[("foo", "bar"), ("baz", "blah")]);
    let cases: Vec<(&str, Map<String, Value>, bool)> = vec![
        ("", set(&[("x", "y")]), true),
        ("x=y", set(&[("x", "y")]), true),
        ("x=y,z=w", set(&[("x", "y"), ("z", "w")]), true),
        ("x!=y,z!=w", set(&[("x", "z"), ("z", "a")]), true),
        ("notin=in", set(&[("notin", "in")]), true),
        ("x", set(&[("x", "z")]), true),
        ("!x", set(&[("y", "z")]), true),
        ("x>1", set(&[("x", "2")]), true),
        ("x<1", set(&[("x", "0")]), true),
        ("x=z", set(&[]), false),
        ("x=y", set(&[("x", "z")]), false),
        ("x=y,z=w", set(&[("x", "w"), ("z", "w")]), false),
        ("x!=y,z!=w", set(&[("x", "z"), ("z", "w")]), false),
        ("x", set(&[("y", "z")]), false),
        ("!x", set(&[("x", "z")]), false),
        ("x>1", set(&[("x", "0")]), false),
        ("x<1", set(&[("x", "2")]), false),
        ("foo=bar", labelset.clone(), true),
        ("baz=blah", labelset.clone(), true),
        ("foo=bar,baz=blah", labelset.clone(), true),
        ("foo=blah", labelset.clone(), false),
        ("baz=bar", labelset.clone(), false),
        ("foo=bar,foobar=bar,baz=blah", labelset, false),
        // TestRequirementSelectorMatching, written as selectors.
        (
            "x in (foo),y notin (alpha)",
            set(&[("x", "foo"), ("y", "baz")]),
            true,
        ),
        (
            "x in (foo),y in (alpha)",
            set(&[("x", "foo"), ("y", "baz")]),
            false,
        ),
        ("x notin (),y", set(&[("y", "")]), true),
        ("!x,y", set(&[("y", "")]), true),
        ("x notin (),!y", set(&[("y", "")]), false),
        ("x in ()", set(&[("y", "baz")]), false),
        ("z>1", set(&[("z", "2")]), true),
        ("z>1", set(&[("z", "v2")]), false),
    ];
    for (text, labels, want) in cases {
        assert_eq!(
            label(text).matches(Some(&labels)),
            want,
            "{text:?} against {labels:?}"
        );
    }
}

#[test]
fn label_empty_selector_matches_everything() {
    let everything = LabelSelector::default();
    assert!(everything.is_empty() && label("").is_empty() && label(" \t\r\n").is_empty());
    assert!(everything.matches(None) && everything.matches(Some(&set(&[("x", "y")]))));
    assert!(!label("x").is_empty());
}

#[test]
fn label_absent_labels_and_non_string_values() {
    assert!(label("!x").matches(None));
    assert!(label("x notin (a),y!=b").matches(None));
    assert!(
        !label("x").matches(None)
            && !label("x in (a)").matches(None)
            && !label("x>0").matches(None)
    );
    let odd: Map<String, Value> = [("n".to_owned(), json!(5)), ("b".to_owned(), json!(true))]
        .into_iter()
        .collect();
    assert!(label("n=5,n>4,b=true").matches(Some(&odd)));
    // An empty value set is the set holding "" (Go's `x in ()`).
    assert!(label("x in ()").matches(Some(&set(&[("x", "")]))));
    assert!(label("x notin ()").matches(Some(&set(&[("x", "a")]))));
    assert!(!label("x notin ()").matches(Some(&set(&[("x", "")]))));
}

// ---- labels: TestSetSelectorParser (canonical text as the expected selector) ----

#[test]
fn label_set_selector_parser_go_table() {
    let cases: &[(&str, Option<&str>)] = &[
        ("", Some("")),
        ("\rx", Some("x")),
        (
            "this-is-a-dns.domain.com/key-with-dash",
            Some("this-is-a-dns.domain.com/key-with-dash"),
        ),
        (
            "this-is-another-dns.domain.com/key-with-dash in (so,what)",
            Some("this-is-another-dns.domain.com/key-with-dash in (so,what)"),
        ),
        (
            "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
            Some("0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)"),
        ),
        ("foo  in\t (abc)", Some("foo in (abc)")),
        ("x notin\n (abc)", Some("x notin (abc)")),
        ("x  notin\t\t(abc,def)", Some("x notin (abc,def)")),
        ("x in (abc,def)", Some("x in (abc,def)")),
        ("x in (abc,)", Some("x in (,abc)")),
        ("x in (abc,abc)", Some("x in (abc)")),
        ("x in ()", Some("x in ()")),
        ("x in (a,,)", Some("x in (,a)")),
        ("x in (a,,,)", Some("x in (,a)")),
        ("x in (a,,,,,,)", Some("x in (,a)")),
        ("x in (a,,a,,a,,a,,)", Some("x in (,a)")),
        (
            "x notin (abc,,def),bar,z in (),w",
            Some("bar,w,x notin (,abc,def),z in ()"),
        ),
        ("x,y in (a)", Some("x,y in (a)")),
        ("x=a", Some("x=a")),
        ("x>1", Some("x>1")),
        ("x<7", Some("x<7")),
        ("x=a,y!=b", Some("x=a,y!=b")),
        ("x=a,y!=b,z in (h,i,j)", Some("x=a,y!=b,z in (h,i,j)")),
        ("x=a||y=b", None),
        ("x,,y", None),
        (",x,y", None),
        ("x nott in (y)", None),
        ("x notin ( )", Some("x notin ()")),
        ("x notin (, a)", Some("x notin (,a)")),
        ("a in (xyz),", None),
        ("a in (xyz)b notin ()", None),
        ("a ", Some("a")),
        ("a in (x,y,notin, z,in)", Some("a in (in,notin,x,y,z)")),
        ("a in (xyz abc)", None),
        ("a notin(", None),
        ("a (", None),
        ("(", None),
    ];
    for (text, want) in cases {
        let got = LabelSelector::parse(text).map(|s| s.to_string()).ok();
        assert_eq!(got.as_deref(), *want, "{text:?}");
    }
}

#[test]
fn label_syntax_error_texts() {
    let cases = [
        (
            "x,,y",
            "found ',', expected: identifier after ','".to_owned(),
        ),
        (
            ",x,y",
            "found ',', expected: !, identifier, or 'end of string'".to_owned(),
        ),
        (
            "x nott in (y)",
            format!("unable to parse requirement: found 'nott', expected: {OPERATORS}"),
        ),
        (
            "a in (xyz),",
            "found '', expected: identifier after ','".to_owned(),
        ),
        (
            "a in (xyz)b notin ()",
            "found 'b', expected: ',' or 'end of string'".to_owned(),
        ),
        (
            "a in (xyz abc)",
            "unable to parse requirement: found 'abc', expected: ',' or ')'".to_owned(),
        ),
        (
            "a notin(",
            "unable to parse requirement: found '', expected: ',', ')' or identifier".to_owned(),
        ),
        (
            "a (",
            format!("unable to parse requirement: found '(', expected: {OPERATORS}"),
        ),
        (
            "(",
            "found '(', expected: !, identifier, or 'end of string'".to_owned(),
        ),
        // TestParseOperator's refusals, reached through a key.
        (
            "x !",
            format!("unable to parse requirement: found '!', expected: {OPERATORS}"),
        ),
        (
            "x exists",
            format!("unable to parse requirement: found 'exists', expected: {OPERATORS}"),
        ),
        (
            "!",
            "unable to parse requirement: found '', expected: identifier".to_owned(),
        ),
        (
            "!!x",
            "unable to parse requirement: found '!', expected: identifier".to_owned(),
        ),
        (
            "x in a",
            "unable to parse requirement: found 'a' expected: '('".to_owned(),
        ),
        (
            "x=(",
            "unable to parse requirement: found '(', expected: identifier".to_owned(),
        ),
        (
            "x in (a",
            "unable to parse requirement: found '', expected: ',' or ')'".to_owned(),
        ),
        (
            "x in (a,=)",
            "unable to parse requirement: found '=', expected: ',', or identifier".to_owned(),
        ),
        (
            "x=a b",
            "found 'b', expected: ',' or 'end of string'".to_owned(),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(label_error(text), want, "{text:?}");
    }
}

// ---- labels: RequiresExactMatch ----

#[test]
fn label_exact() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("x=a", "x", Some("a")),
        ("x==a", "x", Some("a")),
        ("x in (a)", "x", Some("a")),
        ("x=", "x", Some("")),
        ("x in (a,b)", "x", None),
        ("x!=a", "x", None),
        ("x notin (a)", "x", None),
        ("x", "x", None),
        ("y=b", "x", None),
        ("", "x", None),
        ("y=b,x=a", "x", Some("a")),
    ];
    for (text, key, want) in cases {
        assert_eq!(label(text).exact(key), *want, "{text:?} {key:?}");
    }
}

// ---- labels: TestLexer, TestLexerSequence ----

#[test]
fn lexer_single_tokens() {
    let cases = [
        ("", Token::EndOfString),
        (",", Token::Comma),
        ("notin", Token::NotIn),
        ("in", Token::In),
        ("=", Token::Equals),
        ("==", Token::DoubleEquals),
        (">", Token::GreaterThan),
        ("<", Token::LessThan),
        ("!", Token::DoesNotExist),
        ("!=", Token::NotEquals),
        ("(", Token::OpenPar),
        (")", Token::ClosedPar),
        ("~", Token::Identifier),
        ("||", Token::Identifier),
    ];
    for (text, want) in cases {
        assert_eq!(Lexer::new(text).next_token(), (want, text), "{text:?}");
    }
}

#[test]
fn lexer_sequences() {
    use Token::*;
    let cases: &[(&str, &[Token])] = &[
        (
            "key in ( value )",
            &[Identifier, In, OpenPar, Identifier, ClosedPar],
        ),
        (
            "key notin ( value )",
            &[Identifier, NotIn, OpenPar, Identifier, ClosedPar],
        ),
        (
            "key in ( value1, value2 )",
            &[
                Identifier, In, OpenPar, Identifier, Comma, Identifier, ClosedPar,
            ],
        ),
        ("key", &[Identifier]),
        ("!key", &[DoesNotExist, Identifier]),
        ("()", &[OpenPar, ClosedPar]),
        (
            "x in (),y",
            &[Identifier, In, OpenPar, ClosedPar, Comma, Identifier],
        ),
        (
            "== != (), = notin",
            &[
                DoubleEquals,
                NotEquals,
                OpenPar,
                ClosedPar,
                Comma,
                Equals,
                NotIn,
            ],
        ),
        ("key>2", &[Identifier, GreaterThan, Identifier]),
        ("key<1", &[Identifier, LessThan, Identifier]),
        ("===!!=", &[DoubleEquals, Equals, DoesNotExist, NotEquals]),
        // A NUL where a token could start ends the input; after a token it is dropped.
        ("a\0b", &[Identifier, Identifier]),
        ("a \0b", &[Identifier]),
    ];
    for (text, want) in cases {
        let mut lexer = Lexer::new(text);
        let mut got = Vec::new();
        loop {
            match lexer.next_token() {
                (EndOfString, _) => break,
                (token, _) => got.push(token),
            }
        }
        assert_eq!(got, *want, "{text:?}");
        assert_eq!(
            lexer.next_token().0,
            EndOfString,
            "the end is sticky: {text:?}"
        );
    }
}

// ---- labels: hostile input ----

#[test]
fn label_hostile_input() {
    // Ten thousand requirements.
    let text = (0..10_000)
        .map(|i| format!("k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let selector = label(&text);
    let mut labels: Map<String, Value> = (0..10_000)
        .map(|i| (format!("k{i}"), json!(format!("v{i}"))))
        .collect();
    assert!(selector.matches(Some(&labels)));
    labels.remove("k5000");
    assert!(!selector.matches(Some(&labels)));
    // A hundred thousand values in one set.
    let text = format!(
        "x in ({})",
        (0..100_000)
            .map(|i| format!("v{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(label(&text).matches(Some(&set(&[("x", "v99999")]))));
    assert!(!label(&text).matches(Some(&set(&[("x", "v100000")]))));
    // A megabyte key fails on its length, quoted whole as Go does.
    let error = label_error(&"a".repeat(1 << 20));
    assert!(
        error.starts_with("unable to parse requirement: <nil>: Invalid value: \"aaaa"),
        "{}",
        &error[..80]
    );
    assert!(error.ends_with("\": name part must be no more than 63 bytes"));
    // Unbalanced and stray parentheses, operator soup.
    for text in [
        "x in ((a)",
        "x in (a))",
        ")))",
        "(((((",
        "x in (a",
        "!!!!",
        "x in )",
        "x notin (a,(b))",
        "=====",
        ",",
        "x=>1",
    ] {
        assert!(LabelSelector::parse(text).is_err(), "{text:?}");
    }
    assert_eq!(
        label_error("x in ((a)"),
        "unable to parse requirement: found '(', expected: ',', ')' or identifier"
    );
    assert_eq!(
        label_error("x in (a))"),
        "found ')', expected: ',' or 'end of string'"
    );
    assert_eq!(
        label_error(&"(".repeat(100_000)),
        "found '(', expected: !, identifier, or 'end of string'"
    );
    // Unicode and control characters: rejected by validation and quoted with Go's escapes.
    assert_eq!(
        label_error("ключ"),
        format!("unable to parse requirement: <nil>: Invalid value: \"ключ\": {NAME_MSG}")
    );
    assert_eq!(
        label_error("a\u{1}b"),
        format!("unable to parse requirement: <nil>: Invalid value: \"a\\x01b\": {NAME_MSG}")
    );
    assert_eq!(
        label_error("x=é"),
        format!("unable to parse requirement: values[0][x]: Invalid value: \"é\": {VALUE_MSG}")
    );
    // A NUL ends the selector where a token could start (Go's lexer reads NUL as the end).
    assert_eq!(label("x=a \0garbage"), label("x=a"));
    assert!(label("\0x=a").is_empty());
    assert_eq!(
        label_error("x=a\0garbage"),
        "found 'garbage', expected: ',' or 'end of string'"
    );
}
