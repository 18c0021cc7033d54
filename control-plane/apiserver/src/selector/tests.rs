//! Tests of the Go-compatible texts shared by label and field selectors (`%q` quoting, label
//! key and value validation), and helpers the label and field tests share.

use super::*;

pub(super) const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
pub(super) const NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

pub(super) fn label_error(text: &str) -> String {
    match LabelSelector::parse(text) {
        Ok(parsed) => panic!("{text:?} should fail, parsed as {parsed:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn label_key_and_value_validation_texts() {
    let long = "a".repeat(254);
    let prefix_re = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    let int_msg = "for 'Gt', 'Lt' operators, the value must be an integer";
    let cases = [
        (long.clone(), format!("<nil>: Invalid value: \"{long}\": name part must be no more than 63 bytes")),
        (format!("{long}/b"), format!("<nil>: Invalid value: \"{long}/b\": prefix part must be no more than 253 bytes")),
        ("a/b/c".to_owned(), format!("<nil>: Invalid value: \"a/b/c\": a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')", &NAME_MSG["name part ".len()..])),
        ("/a".to_owned(), "<nil>: Invalid value: \"/a\": prefix part must be non-empty".to_owned()),
        ("Example.com/a".to_owned(), format!("<nil>: Invalid value: \"Example.com/a\": prefix part {prefix_re}")),
        ("a/".to_owned(), format!("<nil>: Invalid value: \"a/\": name part must be non-empty; {NAME_MSG}")),
        ("-a".to_owned(), format!("<nil>: Invalid value: \"-a\": {NAME_MSG}")),
        ("x in (b_,a_)".to_owned(), format!("[values[0][x]: Invalid value: \"a_\": {VALUE_MSG}, values[1][x]: Invalid value: \"b_\": {VALUE_MSG}]")),
        ("x>".to_owned(), format!("values[0]: Invalid value: \"\": {int_msg}")),
        ("x>-1".to_owned(), format!("values[0][x]: Invalid value: \"-1\": {VALUE_MSG}")),
        ("x>99999999999999999999".to_owned(), format!("values[0]: Invalid value: \"99999999999999999999\": {int_msg}")),
        (format!("x={}", "a".repeat(64)), format!("values[0][x]: Invalid value: \"{}\": must be no more than 63 bytes", "a".repeat(64))),
        ("x>a_".to_owned(), format!("[values[0]: Invalid value: \"a_\": {int_msg}, values[0][x]: Invalid value: \"a_\": {VALUE_MSG}]")),
    ];
    for (text, want) in cases {
        assert_eq!(
            label_error(&text),
            format!("unable to parse requirement: {want}"),
            "{text:?}"
        );
    }
    // Valid keys and values at the limits.
    let name63 = "a".repeat(63);
    assert!(LabelSelector::parse(&format!("{}/{name63}={name63}", "a".repeat(253))).is_ok());
    assert!(LabelSelector::parse("example.com/My_Name.1 in (A-1,b_2,3.c)").is_ok());
}

#[test]
fn go_quote_escapes_like_strconv_quote() {
    let cases = [
        ("plain", "\"plain\""),
        ("\"\\", "\"\\\"\\\\\""),
        ("\t\n\r\u{7}\u{8}\u{b}\u{c}", "\"\\t\\n\\r\\a\\b\\v\\f\""),
        ("\u{0}\u{1f}\u{7f}", "\"\\x00\\x1f\\x7f\""),
        (
            "\u{80}\u{a0}\u{200b}\u{2028}\u{feff}",
            "\"\\u0080\\u00a0\\u200b\\u2028\\ufeff\"",
        ),
        ("日本語é😀", "\"日本語é😀\""),
        ("\u{e0001}\u{10fffd}", "\"\\U000e0001\\U0010fffd\""),
    ];
    for (input, want) in cases {
        assert_eq!(go_quote(input), want, "{input:?}");
    }
}
