//! Kubernetes' syntax rules for label keys and values (apimachinery's `IsQualifiedName` and
//! `IsValidLabelValue`).
//!
//! The scheduler needs them where kube-scheduler does: a node affinity requirement whose key or
//! values break them matches no node, and a resource is an extended resource only when
//! `requests.<name>` is a qualified name.

/// Longest name part of a qualified name, and longest label value.
const NAME_MAX_LEN: usize = 63;
/// Longest DNS subdomain (the optional prefix of a qualified name).
const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;

/// `[prefix/]name`: the prefix a DNS subdomain, the name 1–63 characters of alphanumerics,
/// `-`, `_` and `.`, starting and ending alphanumeric.
pub fn is_qualified_name(value: &str) -> bool {
    let mut parts = value.split('/');
    let (prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => (None, name),
        (Some(prefix), Some(name), None) => (Some(prefix), name),
        _ => return false,
    };
    prefix.is_none_or(is_dns1123_subdomain) && is_name_part(name)
}

/// Empty, or a name part: at most 63 alphanumerics, `-`, `_` and `.`, starting and ending
/// alphanumeric.
pub fn is_valid_label_value(value: &str) -> bool {
    value.is_empty() || is_name_part(value)
}

fn is_name_part(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= NAME_MAX_LEN
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Lowercase DNS labels joined by dots, at most 253 characters.
fn is_dns1123_subdomain(value: &str) -> bool {
    value.len() <= DNS1123_SUBDOMAIN_MAX_LEN && value.split('.').all(is_dns1123_label_part)
}

fn is_dns1123_label_part(label: &str) -> bool {
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alphanumeric(first)
                && alphanumeric(last)
                && bytes.iter().all(|&b| alphanumeric(b) || b == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        let too_long = "x".repeat(64);
        for good in [
            "foo",
            "GPU",
            "kernel-version",
            "example.com/aaa",
            "node.kubernetes.io/unschedulable",
            "requests.nvidia.com/gpu",
            "a_b.c-d",
        ] {
            assert!(is_qualified_name(good), "{good}");
        }
        for bad in [
            "",
            "/foo",
            "foo/",
            "a/b/c",
            "-foo",
            "foo-",
            "Example.com/aaa",
            "exa_mple.com/aaa",
            "foo bar",
            too_long.as_str(),
        ] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
    }

    #[test]
    fn label_values() {
        let too_long = "x".repeat(64);
        for good in ["", "bar", "NVIDIA-GRID-K1", "0204", "a.b_c-d"] {
            assert!(is_valid_label_value(good), "{good}");
        }
        for bad in [
            "invalid value: ___@#$%^",
            "-a",
            "a-",
            "+5",
            too_long.as_str(),
        ] {
            assert!(!is_valid_label_value(bad), "{bad}");
        }
    }
}
