//! `keelctl kubeconfig`: a client certificate issued by the cluster CA (in the control
//! plane's data directory, `<data-dir>/pki/ca.{crt,key}`) wrapped in a kubeconfig, as
//! `kubeadm kubeconfig user` makes one. This is how node daemons get their credentials:
//! `keelctl kubeconfig --user system:node:n1 --group system:nodes`.
//!
//! The identity is the certificate's subject (CN = user, one O per group); the kubeconfig names
//! its user and context after it, in YAML written without quotes
//! (`keel_apiserver::auth::pki::kubeconfig`). So user and group names are held to
//! characters that stay one plain YAML string, and the result is read back before it is
//! handed out.

use std::path::{Path, PathBuf};

use keel_apiserver::auth::pki::{self, PkiError};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid --server {value:?}: {reason}")]
    InvalidServer { value: String, reason: &'static str },
    #[error(
        "no cluster CA in {dir} (ca.crt and ca.key): --data-dir must be the control plane's \
         data directory, on the host that runs it"
    )]
    NoCa { dir: PathBuf },
    #[error("{path}: {message} (pass --server)")]
    AdminKubeconfig { path: PathBuf, message: String },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("the kubeconfig made for {user:?} does not read back as written: {message}")]
    RoundTrip { user: String, message: String },
}

/// Where the control plane keeps the CA, relative to its data directory
/// (`control-plane`'s `start_api`).
pub const PKI_DIR: &str = "pki";
/// The admin credential the control plane writes at start; its `server:` is the default.
pub const ADMIN_KUBECONFIG: &str = "admin.kubeconfig";

/// Plain YAML scalars that YAML 1.1 (kubectl's parser) reads as something other than a
/// string.
const YAML_WORDS: [&str; 13] = [
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf", "infinity", "~",
];

/// Checks a user or group name. Allowed: ASCII letters, digits and `-._:@`, starting and
/// ending with a letter or digit (so `system:node:n1`, `alice@example.com` and
/// `system:serviceaccount:ns:sa` pass), and not a word or number YAML would read otherwise.
pub fn validate_name(what: &'static str, value: &str) -> Result<(), KubeconfigError> {
    let invalid = |reason: String| KubeconfigError::InvalidName {
        what,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(invalid(format!(
            "it contains the control character U+{:04X}",
            u32::from(c)
        )));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(invalid("it contains whitespace".into()));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._:@".contains(*c)))
    {
        return Err(invalid(format!(
            "{c:?} is not allowed (letters, digits and - . _ : @ are)"
        )));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(value.chars().next()) || !edge_ok(value.chars().last()) {
        return Err(invalid(
            "it must start and end with a letter or digit".into(),
        ));
    }
    let lower = value.to_ascii_lowercase();
    let numeric = !value.chars().any(|c| c.is_ascii_alphabetic())
        || value.parse::<f64>().is_ok()
        || (lower.starts_with("0x") && lower[2..].chars().all(|c| c.is_ascii_hexdigit()));
    if numeric || YAML_WORDS.contains(&lower.as_str()) {
        return Err(invalid(
            "a kubeconfig would read it as a number or a boolean, not a name".into(),
        ));
    }
    if value.len() > 1024 {
        return Err(invalid("it is longer than 1024 bytes".into()));
    }
    Ok(())
}

/// Each group is a name as [`validate_name`] has it; the certificate carries them all, in
/// order (how many fit is `Ca::client`'s to say).
pub fn validate_groups(groups: &[String]) -> Result<(), KubeconfigError> {
    groups.iter().try_for_each(|g| validate_name("group", g))
}

/// Checks `--server`: an `https://` URL with a host, nothing that would break the YAML.
pub fn validate_server(value: &str) -> Result<(), KubeconfigError> {
    let invalid = |reason| KubeconfigError::InvalidServer {
        value: value.to_owned(),
        reason,
    };
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("it contains whitespace or a control character"));
    }
    let Some(rest) = value.strip_prefix("https://") else {
        return Err(invalid(
            "the API is served over TLS: it must be https://host:port",
        ));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(invalid("it names no host"));
    }
    if value.contains([
        '#', '\'', '"', '{', '}', ',', '&', '*', '!', '|', '>', '%', '`',
    ]) {
        return Err(invalid(
            "it contains a character a URL of a server does not",
        ));
    }
    Ok(())
}

/// What is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub user: String,
    pub groups: Vec<String>,
    /// The control plane's data directory.
    pub data_dir: PathBuf,
    /// The API server's URL; `None`: the `server:` of `<data-dir>/admin.kubeconfig`.
    pub server: Option<String>,
    /// Where the CA is, when not `<data-dir>/pki` (the control plane's `--pki-dir`).
    pub pki_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
struct KubeconfigFile {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(rename = "current-context", default)]
    current_context: String,
}

#[derive(Deserialize)]
struct NamedCluster {
    cluster: ClusterEntry,
}

#[derive(Deserialize)]
struct ClusterEntry {
    server: String,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
}

/// The `server:` of the first cluster in a kubeconfig (the control plane's has one).
pub fn read_server(path: &Path) -> Result<String, KubeconfigError> {
    let fail = |message: String| KubeconfigError::AdminKubeconfig {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let file: KubeconfigFile =
        serde_yaml_ng::from_str(&text).map_err(|e| fail(format!("not a kubeconfig: {e}")))?;
    let server = file
        .clusters
        .into_iter()
        .next()
        .map(|c| c.cluster.server)
        .ok_or_else(|| fail("it names no cluster".into()))?;
    validate_server(&server).map_err(|e| fail(e.to_string()))?;
    Ok(server)
}

/// Issues the certificate and makes the kubeconfig. Refuses to create a CA: one that is
/// missing means the wrong directory, and a new CA would be trusted by nobody.
pub fn generate(request: &Request) -> Result<String, KubeconfigError> {
    validate_name("user", &request.user)?;
    validate_groups(&request.groups)?;
    let server = match &request.server {
        Some(server) => {
            validate_server(server)?;
            server.clone()
        }
        None => read_server(&request.data_dir.join(ADMIN_KUBECONFIG))?,
    };
    let pki_dir = request
        .pki_dir
        .clone()
        .unwrap_or_else(|| request.data_dir.join(PKI_DIR));
    if !pki_dir.join("ca.crt").is_file() || !pki_dir.join("ca.key").is_file() {
        return Err(KubeconfigError::NoCa { dir: pki_dir });
    }
    let ca = pki::Ca::load_or_create(&pki_dir)?;
    let issued = ca.client(&request.user, &request.groups)?;
    let text = pki::kubeconfig(&server, &ca.cert_pem, &request.user, &issued);
    check_round_trip(&text, &request.user, &server)?;
    Ok(text)
}

/// The validation above should make this impossible; it is the last guard against a name
/// that turns the YAML into something else.
fn check_round_trip(text: &str, user: &str, server: &str) -> Result<(), KubeconfigError> {
    let fail = |message: String| KubeconfigError::RoundTrip {
        user: user.to_owned(),
        message,
    };
    let file: KubeconfigFile = serde_yaml_ng::from_str(text).map_err(|e| fail(e.to_string()))?;
    let servers: Vec<&str> = file
        .clusters
        .iter()
        .map(|c| c.cluster.server.as_str())
        .collect();
    let users: Vec<&str> = file.users.iter().map(|u| u.name.as_str()).collect();
    if servers != [server] || users != [user] || file.current_context != format!("{user}@keel") {
        return Err(fail(format!(
            "servers {servers:?}, users {users:?}, context {:?}",
            file.current_context
        )));
    }
    Ok(())
}

/// Writes a kubeconfig only its owner may read (it holds a private key).
pub fn write(path: &Path, text: &str) -> Result<(), KubeconfigError> {
    Ok(pki::write_private(path, text.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn kubernetes_identities_pass() {
        for ok in [
            "system:node:n1",
            "system:nodes",
            "alice@example.com",
            "system:serviceaccount:kube-system:default",
            "kubernetes-admin",
            "n1.example.com",
            "x1",
        ] {
            assert!(validate_name("user", ok).is_ok(), "{ok:?} was refused");
        }
    }

    #[test]
    fn hostile_names_are_refused_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("al\nice", "U+000A"),
            ("al\u{1b}[31mice", "U+001B"),
            ("al ice", "whitespace"),
            ("alice: admin", "whitespace"),
            ("a'b", "not allowed"),
            ("a#b", "not allowed"),
            ("{a}", "not allowed"),
            ("-alice", "start and end"),
            ("alice:", "start and end"),
            ("true", "number or a boolean"),
            ("NO", "number or a boolean"),
            ("123", "number or a boolean"),
            ("1e5", "number or a boolean"),
            ("0x1f", "number or a boolean"),
            ("2024-01-01", "number or a boolean"),
            ("ünïcode", "not allowed"),
        ];
        for (value, reason) in cases {
            let error = validate_name("user", value).err().map(|e| e.to_string());
            assert!(
                error.as_deref().is_some_and(|e| e.contains(reason)),
                "{value:?}: {error:?}"
            );
        }
        assert!(validate_name("user", &"a".repeat(1025)).is_err());
    }

    #[test]
    fn any_number_of_groups_each_a_valid_name() {
        assert!(validate_groups(&[]).is_ok());
        assert!(validate_groups(&["system:nodes".into()]).is_ok());
        assert!(validate_groups(&["dev".into(), "ops".into(), "qa".into()]).is_ok());
        let error = validate_groups(&["dev".into(), "bad group".into()])
            .err()
            .map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("\"bad group\"") && e.contains("whitespace")),
            "{error:?}"
        );
    }

    #[test]
    fn servers_are_https_urls() {
        assert!(validate_server("https://127.0.0.1:6443").is_ok());
        assert!(validate_server("https://[::1]:6443").is_ok());
        assert!(validate_server("https://api.example.com").is_ok());
        for bad in [
            "",
            "http://127.0.0.1:6443",
            "https://",
            "https://h:1 #x",
            "https://h:1\nusers: []",
            "https://h'",
        ] {
            assert!(validate_server(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// A data directory as the control plane leaves it: a CA and an admin.kubeconfig.
    fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = pki::Ca::load_or_create(&dir.path().join(PKI_DIR)).expect("a CA");
        let admin = ca
            .client("kubernetes-admin", &["system:masters".to_owned()])
            .expect("admin");
        let text = pki::kubeconfig(
            "https://127.0.0.1:6443",
            &ca.cert_pem,
            "kubernetes-admin",
            &admin,
        );
        pki::write_private(&dir.path().join(ADMIN_KUBECONFIG), text.as_bytes()).expect("written");
        dir
    }

    fn request(dir: &Path, groups: &[&str]) -> Request {
        Request {
            user: "system:node:n1".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            data_dir: dir.to_owned(),
            server: None,
            pki_dir: None,
        }
    }

    #[derive(Deserialize)]
    struct Full {
        clusters: Vec<FullCluster>,
        users: Vec<FullUser>,
    }
    #[derive(Deserialize)]
    struct FullCluster {
        cluster: FullClusterEntry,
    }
    #[derive(Deserialize)]
    struct FullClusterEntry {
        server: String,
        #[serde(rename = "certificate-authority-data")]
        ca: String,
    }
    #[derive(Deserialize)]
    struct FullUser {
        name: String,
        user: FullCredential,
    }
    #[derive(Deserialize)]
    struct FullCredential {
        #[serde(rename = "client-certificate-data")]
        cert: String,
        #[serde(rename = "client-key-data")]
        key: String,
    }

    fn decode(b64: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64")
    }

    #[test]
    fn a_node_kubeconfig_round_trips_with_the_identity_in_the_certificate() {
        let dir = data_dir();
        let text = generate(&request(dir.path(), &["system:nodes"])).expect("generated");
        let parsed: Full = serde_yaml_ng::from_str(&text).expect("YAML");
        assert_eq!(parsed.clusters[0].cluster.server, "https://127.0.0.1:6443");
        assert_eq!(parsed.users[0].name, "system:node:n1");
        let ca = std::fs::read(dir.path().join("pki/ca.crt")).expect("ca.crt");
        assert_eq!(decode(&parsed.clusters[0].cluster.ca), ca);
        assert!(String::from_utf8_lossy(&decode(&parsed.users[0].user.key)).contains("PRIVATE KEY"));
        let pem = decode(&parsed.users[0].user.cert);
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM");
        let cert = pem.parse_x509().expect("X.509");
        let cn: Vec<&str> = cert
            .subject()
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .collect();
        let o: Vec<&str> = cert
            .subject()
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .collect();
        assert_eq!(cn, ["system:node:n1"]);
        assert_eq!(o, ["system:nodes"]);
        assert_eq!(cert.issuer().to_string(), "CN=keel-ca");
    }

    #[test]
    fn a_user_in_several_groups_gets_them_all_in_order() {
        let dir = data_dir();
        let mut req = request(dir.path(), &["dev", "ops", "system:authenticated"]);
        req.user = "alice".into();
        let text = generate(&req).expect("generated");
        let parsed: Full = serde_yaml_ng::from_str(&text).expect("YAML");
        let pem = decode(&parsed.users[0].user.cert);
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM");
        let cert = pem.parse_x509().expect("X.509");
        assert_eq!(
            cert.subject().to_string(),
            "CN=alice, O=dev, O=ops, O=system:authenticated"
        );
    }

    #[test]
    fn the_server_flag_wins_and_no_group_is_fine() {
        let dir = data_dir();
        let mut req = request(dir.path(), &[]);
        req.server = Some("https://10.0.0.1:6443".into());
        let text = generate(&req).expect("generated");
        let parsed: Full = serde_yaml_ng::from_str(&text).expect("YAML");
        assert_eq!(parsed.clusters[0].cluster.server, "https://10.0.0.1:6443");
    }

    #[test]
    fn a_directory_without_a_ca_is_refused_and_none_is_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut req = request(dir.path(), &[]);
        let error = generate(&req).err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("admin.kubeconfig")));
        req.server = Some("https://127.0.0.1:6443".into());
        let error = generate(&req).err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("no cluster CA")));
        assert!(!dir.path().join(PKI_DIR).exists(), "a CA was created");
    }

    #[test]
    fn written_kubeconfigs_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = data_dir();
        let text = generate(&request(dir.path(), &["system:nodes"])).expect("generated");
        let path = dir.path().join("n1.kubeconfig");
        write(&path, &text).expect("written");
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some(text.as_str())
        );
    }

    #[test]
    fn hostile_requests_fail_before_a_certificate_is_issued() {
        let dir = data_dir();
        let mut req = request(dir.path(), &["a", "b c"]);
        assert!(matches!(
            generate(&req),
            Err(KubeconfigError::InvalidName { what: "group", .. })
        ));
        // More groups than a certificate may carry: the CA's error, naming the field.
        req.groups = (0..40)
            .map(|i| format!("g{i}-{}", "x".repeat(500)))
            .collect();
        let error = generate(&req).err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("groups: 40 groups")),
            "{error:?}"
        );
        req.groups.clear();
        req.user = String::new();
        assert!(matches!(
            generate(&req),
            Err(KubeconfigError::InvalidName { .. })
        ));
        req.user = "n1\u{7}".into();
        assert!(matches!(
            generate(&req),
            Err(KubeconfigError::InvalidName { .. })
        ));
    }
}
