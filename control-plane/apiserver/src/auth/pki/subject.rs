//! The subject of a client certificate: `CN=<user>` then one `O=<group>` per group, as
//! kube-apiserver reads a user and their groups from a certificate.
//!
//! rcgen 0.13's `DistinguishedName` keeps one value per attribute type (rustls/rcgen#81, open;
//! rcgen 0.14 has the same map), so it cannot write a user in two groups. The `Name` is
//! written here instead, with yasna (the DER writer rcgen itself uses, so lengths of any size
//! are encoded by code that is already trusted), and the sibling module `resign` puts it into the
//! certificate rcgen made.
//!
//! The layout is what `openssl req -subj /CN=alice/O=dev/O=ops` makes and what keel always
//! issued for one group: an RDNSequence of single-valued RDNs, CN first, then each O in the
//! order given (Go's `pkix.Name`, which kubeadm uses, puts the O values first; readers do not
//! care, since the user is the CN wherever it is and the groups are the O values in order).
//! Values are UTF8String, as rcgen encodes a `&str`, so any Unicode text round-trips. Commas,
//! `+`, `=` and quotes need no escaping in DER: they only matter in the text forms of a name
//! (RFC 4514), which nothing here parses.

use yasna::models::ObjectIdentifier;

/// The longest user or group name a certificate is issued for (keelctl holds names to the
/// same bound). X.520's upper bound for CN and O is 64, but Kubernetes names are longer
/// (`system:serviceaccount:<namespace>:<name>`) and neither Go, OpenSSL nor rustls
/// enforces it.
pub const MAX_VALUE_BYTES: usize = 1024;

/// The largest subject issued. A client certificate travels in one TLS handshake message,
/// which rustls caps at 64 KiB with the rest of the chain and the other messages; 16 KiB of
/// subject leaves room for the certificate's own fields and keeps handshakes of ordinary
/// size. About a hundred groups of a hundred bytes each fit.
pub const MAX_NAME_BYTES: usize = 16 * 1024;

const COMMON_NAME: [u64; 4] = [2, 5, 4, 3];
const ORGANIZATION: [u64; 4] = [2, 5, 4, 10];

#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    /// A user or group the certificate cannot carry; `field` is `user`, `groups` or
    /// `groups[<index>]`.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: &str, message: String) -> SubjectError {
    SubjectError::Invalid {
        field: field.to_owned(),
        message,
    }
}

/// A user or group name: not empty (the authenticator refuses an empty user, and an empty
/// group is a mistake), at most [`MAX_VALUE_BYTES`], and without control characters, which
/// audit logs and `openssl x509 -subject` would show garbled or not at all.
fn check_value(field: &str, value: &str) -> Result<(), SubjectError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty".into()));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(invalid(
            field,
            format!(
                "is {} bytes long, more than the {MAX_VALUE_BYTES} a certificate is issued for",
                value.len()
            ),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(invalid(
            field,
            format!("contains the control character U+{:04X}", u32::from(c)),
        ));
    }
    Ok(())
}

/// One RDN holding one attribute: `SET { SEQUENCE { type, UTF8String value } }`.
fn attribute(writer: yasna::DERWriter<'_>, oid: &[u64], value: &str) {
    writer.write_set(|set| {
        set.next().write_sequence(|pair| {
            pair.next().write_oid(&ObjectIdentifier::from_slice(oid));
            pair.next().write_utf8_string(value);
        });
    });
}

/// The DER `Name` of a client certificate for `user` in `groups` (in that order; none is
/// fine). Refused, naming the field: an empty, overlong or control-character value, or a
/// subject over [`MAX_NAME_BYTES`].
pub fn client_name(user: &str, groups: &[String]) -> Result<Vec<u8>, SubjectError> {
    check_value("user", user)?;
    for (index, group) in groups.iter().enumerate() {
        check_value(&format!("groups[{index}]"), group)?;
    }
    let name = yasna::construct_der(|writer| {
        writer.write_sequence(|rdns| {
            attribute(rdns.next(), &COMMON_NAME, user);
            for group in groups {
                attribute(rdns.next(), &ORGANIZATION, group);
            }
        });
    });
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid(
            "groups",
            format!(
                "{} groups make a subject of {} bytes, more than the {MAX_NAME_BYTES} a client \
                 certificate may carry (it must fit a TLS handshake); give the user fewer \
                 groups, or grant more through RBAC bindings to the user",
                groups.len(),
                name.len()
            ),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::X509Name;

    fn strings(groups: &[&str]) -> Vec<String> {
        groups.iter().map(|g| g.to_string()).collect()
    }

    /// The name as x509-parser (the authenticator's parser) reads it: CN values, O values,
    /// and the RDNs' attribute counts.
    fn read(der: &[u8]) -> (Vec<String>, Vec<String>, Vec<usize>) {
        let (rest, name) = X509Name::from_der(der).expect("a Name");
        assert!(rest.is_empty(), "{} bytes after the Name", rest.len());
        let cn = name
            .iter_common_name()
            .map(|a| a.as_str().expect("a string").to_owned())
            .collect();
        let o = name
            .iter_organization()
            .map(|a| a.as_str().expect("a string").to_owned())
            .collect();
        let rdns = name.iter().map(|rdn| rdn.iter().count()).collect();
        (cn, o, rdns)
    }

    #[test]
    fn a_user_in_several_groups_reads_back_in_order() {
        let der = client_name("alice", &strings(&["dev", "ops", "system:authenticated"]))
            .expect("encoded");
        let (cn, o, rdns) = read(&der);
        assert_eq!(cn, ["alice"]);
        assert_eq!(o, ["dev", "ops", "system:authenticated"]);
        assert_eq!(rdns, [1, 1, 1, 1], "one attribute per RDN, CN first");
        let (_, name) = X509Name::from_der(&der).expect("a Name");
        assert_eq!(
            name.to_string(),
            "CN=alice, O=dev, O=ops, O=system:authenticated"
        );
    }

    #[test]
    fn one_group_is_encoded_as_rcgen_encodes_it() {
        // Certificates keel issued before carry the same bytes.
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "kubernetes-admin");
        dn.push(rcgen::DnType::OrganizationName, "system:masters");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).expect("x509");
        let ours = client_name("kubernetes-admin", &strings(&["system:masters"])).expect("ok");
        assert_eq!(parsed.subject().as_raw(), ours.as_slice());
    }

    #[test]
    fn characters_special_in_text_names_are_carried_verbatim() {
        let groups = strings(&[
            "a,b",
            "x+y",
            "k=v",
            "\"quoted\"",
            "back\\slash",
            "#hash",
            " space ",
            "dév-ünïcödé",
            "日本語",
            "emoji 🦀",
        ]);
        let der = client_name("o'brien, jr.", &groups).expect("encoded");
        let (cn, o, rdns) = read(&der);
        assert_eq!(cn, ["o'brien, jr."]);
        assert_eq!(o, groups);
        assert_eq!(rdns.len(), 1 + groups.len());
    }

    #[test]
    fn no_groups_and_a_hundred_groups() {
        let (cn, o, _) = read(&client_name("bob", &[]).expect("encoded"));
        assert_eq!((cn.as_slice(), o.len()), (["bob".to_owned()].as_slice(), 0));
        let many: Vec<String> = (0..100).map(|i| format!("group-{i:03}")).collect();
        let (_, o, rdns) = read(&client_name("bob", &many).expect("encoded"));
        assert_eq!(o, many);
        assert_eq!(rdns.len(), 101);
    }

    #[test]
    fn hostile_values_are_refused_naming_the_field() {
        let long_user = "u".repeat(MAX_VALUE_BYTES + 1);
        let cases: Vec<(&str, Vec<String>, &str)> = vec![
            ("", vec![], "user: must not be empty"),
            (
                "alice",
                strings(&["dev", ""]),
                "groups[1]: must not be empty",
            ),
            (
                "al\nice",
                vec![],
                "user: contains the control character U+000A",
            ),
            (
                "alice",
                strings(&["ok", "nul\0"]),
                "groups[1]: contains the control character U+0000",
            ),
            (
                "alice",
                strings(&["\u{85}next-line"]),
                "groups[0]: contains the control character U+0085",
            ),
            (
                "alice",
                vec!["g".repeat(64 * 1024)],
                "groups[0]: is 65536 bytes long",
            ),
            (&long_user, vec![], "user: is 1025 bytes long"),
        ];
        for (user, groups, expected) in cases {
            let error = client_name(user, &groups)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.starts_with(expected), "{expected:?}: {error:?}");
        }
        // At the bound: accepted.
        assert!(client_name(&"u".repeat(MAX_VALUE_BYTES), &[]).is_ok());
        // Many values each within bounds, too many together.
        let big: Vec<String> = (0..20).map(|i| format!("{i:0>1000}x")).collect();
        let error = client_name("alice", &big).err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(
                |e| e.starts_with("groups: 20 groups") && e.contains("more than the 16384")
            ),
            "{error:?}"
        );
    }

    #[test]
    fn long_values_use_long_form_lengths() {
        // Values whose UTF8String, SEQUENCE and SET lengths cross the one- and two-byte
        // length boundaries (127/128, 255/256) read back exactly.
        for len in [
            1, 115, 116, 117, 118, 124, 125, 126, 127, 128, 243, 250, 255, 256, 1024,
        ] {
            let group = "g".repeat(len);
            let der = client_name("alice", std::slice::from_ref(&group)).expect("encoded");
            let (_, o, _) = read(&der);
            assert_eq!(o, [group], "{len}");
        }
        // A whole name over 255 bytes: a two-byte length on the outer SEQUENCE.
        let groups: Vec<String> = (0..30).map(|i| format!("team-{i}")).collect();
        let der = client_name("alice", &groups).expect("encoded");
        assert!(der.len() > 255 && der[1] == 0x82, "{:02x?}", &der[..4]);
        assert_eq!(read(&der).1, groups);
    }
}
