//! `keelctl member list|add|remove|promote`: the Cluster service of etcd's API, with the
//! names and flags of `etcdctl member`. A member is named by its hex id or by its name.

use serde::Serialize;

use crate::client::{self, ClientError, Target};
use crate::cluster::format_id;
use crate::table::Table;

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("invalid member name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid peer URL {url:?}: {reason}")]
    InvalidPeerUrl { url: String, reason: &'static str },
    #[error("a keel member has exactly one peer URL (its id is derived from it); {count} given")]
    PeerUrlCount { count: usize },
    #[error("no member has the id or name {0:?}")]
    NotFound(String),
    #[error("{count} members are named {name:?}: name one by its id ({ids})")]
    Ambiguous {
        name: String,
        count: usize,
        ids: String,
    },
    #[error("the member was added, but the member list does not show it yet")]
    MissingMember,
}

/// Checks a member name: it is written into `--initial-cluster NAME=URL,...`, so it cannot
/// hold `=`, `,` or whitespace, and control characters have no place in a name.
pub fn parse_name(name: &str) -> Result<String, MemberError> {
    let invalid = |reason| MemberError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("it contains a control character"));
    }
    if name.chars().any(char::is_whitespace) || name.contains(['=', ',']) {
        return Err(invalid(
            "it contains whitespace, '=' or ',' (it goes into --initial-cluster NAME=URL,...)",
        ));
    }
    Ok(name.to_owned())
}

/// Checks a peer URL: `http(s)://host:port`, nothing a shell or a flag list would split.
pub fn parse_peer_url(url: &str) -> Result<String, MemberError> {
    let invalid = |reason| MemberError::InvalidPeerUrl {
        url: url.to_owned(),
        reason,
    };
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("it contains whitespace or a control character"));
    }
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(invalid("it must be http(s)://host:port"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(invalid("it names no port"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid("it must be http(s)://host:port"));
    }
    if url.contains([',', '=']) {
        return Err(invalid("it contains ',' or '='"));
    }
    Ok(url.to_owned())
}

/// How the command line names a member: `text` is tried as a hex id (when it is one), then
/// as a name, so a member named `abc` is still found by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    pub text: String,
    pub id: Option<u64>,
}

/// Parses a member reference: a hex id (`8e9e05c52164694d`, `0x` allowed) or a name.
pub fn parse_member_ref(text: &str) -> Result<MemberRef, MemberError> {
    if text.is_empty() {
        return Err(MemberError::InvalidName {
            name: String::new(),
            reason: "it is empty (give a member's hex id or name)",
        });
    }
    if text.chars().any(char::is_control) {
        return Err(MemberError::InvalidName {
            name: text.to_owned(),
            reason: "it contains a control character",
        });
    }
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let id =
        if digits.is_empty() || digits.len() > 16 || !digits.chars().all(|c| c.is_ascii_hexdigit())
        {
            None
        } else {
            u64::from_str_radix(digits, 16).ok().filter(|id| *id != 0)
        };
    Ok(MemberRef {
        text: text.to_owned(),
        id,
    })
}

/// One member as `member list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    /// Hex, as etcdctl prints it.
    pub id: String,
    #[serde(skip)]
    pub raw_id: u64,
    pub name: String,
    /// `started` once the member published its name and client URLs, `unstarted` before.
    pub status: &'static str,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl From<&etcd_client::Member> for MemberInfo {
    fn from(m: &etcd_client::Member) -> Self {
        Self {
            id: format_id(m.id()),
            raw_id: m.id(),
            name: m.name().to_owned(),
            status: if m.client_urls().is_empty() {
                "unstarted"
            } else {
                "started"
            },
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            is_learner: m.is_learner(),
        }
    }
}

pub async fn list(target: &Target) -> Result<Vec<MemberInfo>, MemberError> {
    let mut client = target.connect().await?;
    let response = client::ask(&target.label(), target.timeout, client.member_list()).await?;
    Ok(response.members().iter().map(MemberInfo::from).collect())
}

pub fn render_list(members: &[MemberInfo]) -> String {
    let mut table = Table::new(&[
        "id",
        "status",
        "name",
        "peer-urls",
        "client-urls",
        "is-learner",
    ]);
    for m in members {
        table.row([
            m.id.clone(),
            m.status.to_owned(),
            m.name.clone(),
            m.peer_urls.join(","),
            m.client_urls.join(","),
            m.is_learner.to_string(),
        ]);
    }
    table.render()
}

/// The member `reference` names in `members`: by id first, then by a unique name.
pub fn resolve(members: &[MemberInfo], reference: &MemberRef) -> Result<u64, MemberError> {
    if let Some(id) = reference.id {
        if members.iter().any(|m| m.raw_id == id) {
            return Ok(id);
        }
    }
    let named: Vec<&MemberInfo> = members
        .iter()
        .filter(|m| !m.name.is_empty() && m.name == reference.text)
        .collect();
    match named.as_slice() {
        [] => Err(MemberError::NotFound(reference.text.clone())),
        [one] => Ok(one.raw_id),
        many => Err(MemberError::Ambiguous {
            name: reference.text.clone(),
            count: many.len(),
            ids: many
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// What `member add` did, and what the new member must be started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub id: u64,
    pub cluster_id: u64,
    pub name: String,
    pub peer_url: String,
    pub learner: bool,
    /// `name=url` of every member, the new one included, for `--initial-cluster`.
    pub initial_cluster: String,
}

/// `--initial-cluster` as etcdctl prints it after an add: every member's peer URLs under its
/// name, the new member (which has no name yet) under `new_name`. A member that never
/// started has no name either; its hex id stands in, so the list still parses.
pub fn initial_cluster(members: &[MemberInfo], new_id: u64, new_name: &str) -> String {
    let mut entries = Vec::new();
    for m in members {
        let name = if m.raw_id == new_id {
            new_name.to_owned()
        } else if m.name.is_empty() {
            m.id.clone()
        } else {
            m.name.clone()
        };
        for url in &m.peer_urls {
            entries.push(format!("{name}={url}"));
        }
    }
    entries.join(",")
}

pub async fn add(
    target: &Target,
    name: &str,
    peer_urls: &[String],
    learner: bool,
) -> Result<Added, MemberError> {
    let name = parse_name(name)?;
    let [peer_url] = peer_urls else {
        return Err(MemberError::PeerUrlCount {
            count: peer_urls.len(),
        });
    };
    let peer_url = parse_peer_url(peer_url)?;
    let mut client = target.connect().await?;
    let options = learner.then(|| etcd_client::MemberAddOptions::new().with_is_learner());
    let response = client::ask(
        &target.label(),
        target.timeout,
        client.member_add([peer_url.as_str()], options),
    )
    .await?;
    let cluster_id = response.header().map_or(0, |h| h.cluster_id());
    let mut members: Vec<MemberInfo> = response
        .member_list()
        .iter()
        .map(MemberInfo::from)
        .collect();
    let new_member = |members: &[MemberInfo]| {
        members
            .iter()
            .find(|m| m.peer_urls.contains(&peer_url))
            .map(|m| m.raw_id)
    };
    // keel answers with the membership raft last published, which can trail the change it
    // just committed by a few milliseconds: ask again until the new member shows.
    let deadline = tokio::time::Instant::now() + target.timeout;
    let id = loop {
        if let Some(id) = new_member(&members) {
            break id;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(MemberError::MissingMember);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        members = list(target).await?;
    };
    Ok(Added {
        id,
        cluster_id,
        initial_cluster: initial_cluster(&members, id, &name),
        name,
        peer_url,
        learner,
    })
}

/// What to tell the operator after an add (etcdctl prints the new member's environment).
pub fn render_added(added: &Added) -> String {
    format!(
        "Member {id} added to cluster {cluster}{learner}\n\n\
         Start the new member with these flags (its id is derived from its peer URL, so it \
         must advertise exactly this one):\n\
         \x20 --name={name}\n\
         \x20 --advertise-peer-url={url}\n\
         \x20 --initial-cluster={initial}\n\
         \x20 --initial-cluster-state=existing\n",
        id = format_id(added.id),
        cluster = format_id(added.cluster_id),
        learner = if added.learner { " as a learner" } else { "" },
        name = added.name,
        url = added.peer_url,
        initial = added.initial_cluster,
    )
}

/// Removes the member `reference` names; answers its id and the cluster id.
pub async fn remove(target: &Target, reference: &MemberRef) -> Result<(u64, u64), MemberError> {
    let members = list(target).await?;
    let id = resolve(&members, reference)?;
    let mut client = target.connect().await?;
    let response = client::ask(&target.label(), target.timeout, client.member_remove(id)).await?;
    Ok((id, response.header().map_or(0, |h| h.cluster_id())))
}

/// Promotes the learner `reference` names to a voter.
pub async fn promote(target: &Target, reference: &MemberRef) -> Result<(u64, u64), MemberError> {
    let members = list(target).await?;
    let id = resolve(&members, reference)?;
    let mut client = target.connect().await?;
    let response = client::ask(&target.label(), target.timeout, client.member_promote(id)).await?;
    Ok((id, response.header().map_or(0, |h| h.cluster_id())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str) -> MemberInfo {
        MemberInfo {
            id: format_id(id),
            raw_id: id,
            name: name.into(),
            status: if name.is_empty() {
                "unstarted"
            } else {
                "started"
            },
            peer_urls: vec![format!("http://10.0.0.{id}:2380")],
            client_urls: Vec::new(),
            is_learner: false,
        }
    }

    #[test]
    fn names_that_would_break_initial_cluster_are_refused() {
        assert_eq!(parse_name("m3").ok().as_deref(), Some("m3"));
        for bad in [
            "",
            "a=b",
            "a,b",
            "a b",
            "tab\t",
            "nl\n",
            "esc\u{1b}[0m",
            "\u{0}",
        ] {
            assert!(parse_name(bad).is_err(), "{bad:?} was accepted");
        }
        let error = parse_name("").err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("empty")));
    }

    #[test]
    fn peer_urls_need_a_scheme_a_host_and_a_port() {
        assert!(parse_peer_url("http://10.0.0.3:2380").is_ok());
        assert!(parse_peer_url("https://[::1]:2380").is_ok());
        for bad in [
            "",
            "10.0.0.3:2380",
            "http://10.0.0.3",
            "http://:2380",
            "http://h:99999",
            "http://h:port",
            "http://h:2380 x",
            "http://h:2380\n",
            "http://h:2380,http://i:2380",
        ] {
            assert!(parse_peer_url(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn member_references_are_hex_ids_or_names() {
        let r = parse_member_ref("8e9e05c52164694d").ok();
        assert_eq!(r.and_then(|r| r.id), Some(0x8e9e05c52164694d));
        assert_eq!(parse_member_ref("0x1F").ok().and_then(|r| r.id), Some(0x1f));
        // Not hex, too long, zero, a sign: names, not ids.
        for name in ["m0", "zz12", "12345678901234567", "0", "-1", "+1", "0x"] {
            assert_eq!(
                parse_member_ref(name).ok().map(|r| r.id),
                Some(None),
                "{name:?}"
            );
        }
        assert!(parse_member_ref("").is_err());
        assert!(parse_member_ref("m\n0").is_err());
    }

    #[test]
    fn a_reference_resolves_by_id_then_by_unique_name() {
        let members = [member(0xab, "m0"), member(0xcd, "ab"), member(0xef, "")];
        let by = |text: &str| {
            parse_member_ref(text)
                .and_then(|r| resolve(&members, &r))
                .map_err(|e| e.to_string())
        };
        assert_eq!(by("ab"), Ok(0xab), "an id wins over a name");
        assert_eq!(by("m0"), Ok(0xab));
        assert_eq!(by("ef"), Ok(0xef));
        assert!(by("zz").is_err_and(|e| e.contains("no member")));
        // An unstarted member has no name to match.
        assert!(by("").is_err());
        let twins = [member(1, "dup"), member(2, "dup")];
        let twin = parse_member_ref("dup").and_then(|r| resolve(&twins, &r));
        assert!(
            matches!(&twin, Err(MemberError::Ambiguous { count: 2, ids, .. }) if ids == "1, 2"),
            "{twin:?}"
        );
    }

    #[test]
    fn initial_cluster_names_the_new_member_and_unnamed_ones_by_id() {
        let members = [member(1, "m0"), member(2, ""), member(3, "")];
        assert_eq!(
            initial_cluster(&members, 3, "m3"),
            "m0=http://10.0.0.1:2380,2=http://10.0.0.2:2380,m3=http://10.0.0.3:2380"
        );
    }

    #[test]
    fn the_add_message_lists_the_flags_to_start_with() {
        let added = Added {
            id: 0x3,
            cluster_id: 0xc1,
            name: "m3".into(),
            peer_url: "http://10.0.0.3:2380".into(),
            learner: true,
            initial_cluster: "m0=http://10.0.0.1:2380,m3=http://10.0.0.3:2380".into(),
        };
        let text = render_added(&added);
        assert!(
            text.starts_with("Member 3 added to cluster c1 as a learner\n"),
            "{text}"
        );
        assert!(
            text.contains("  --initial-cluster=m0=http://10.0.0.1:2380,m3=http://10.0.0.3:2380\n"),
            "{text}"
        );
        assert!(
            text.contains("  --initial-cluster-state=existing\n"),
            "{text}"
        );
        assert!(
            text.contains("  --advertise-peer-url=http://10.0.0.3:2380\n"),
            "{text}"
        );
    }

    #[test]
    fn the_list_table_reads_like_etcdctl() {
        let mut m = member(0x8e9e05c52164694d, "m0");
        m.client_urls = vec!["http://127.0.0.1:2379".into()];
        m.peer_urls = vec!["http://127.0.0.1:2380".into()];
        assert_eq!(
            render_list(&[m]),
            "ID                 STATUS    NAME   PEER-URLS               CLIENT-URLS             IS-LEARNER\n\
             8e9e05c52164694d   started   m0     http://127.0.0.1:2380   http://127.0.0.1:2379   false\n"
        );
    }
}
