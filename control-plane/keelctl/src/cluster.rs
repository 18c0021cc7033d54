//! `keelctl cluster status`: every member of the member list asked for its status on its own
//! client URL, all at once, each within the command timeout. A member that does not answer
//! is a row with its error, not the end of the command: that row is what the operator came
//! to see.

use serde::Serialize;

use crate::client::{self, ClientError, Target};
use crate::table::{human_bytes, Table};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("listing the members: {0}")]
    MemberList(ClientError),
    #[error("the member list is empty")]
    NoMembers,
}

/// One member as `cluster status` shows it. Figures a member did not give (it did not
/// answer) are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    pub name: String,
    /// Hex, as etcdctl prints ids (a JSON number would lose the low bits of a u64).
    pub id: String,
    pub client_url: Option<String>,
    pub peer_urls: Vec<String>,
    pub is_learner: bool,
    /// This member is the leader, as the members that answered see it.
    pub is_leader: bool,
    /// It answered its status within the timeout.
    pub healthy: bool,
    pub raft_term: Option<u64>,
    pub raft_applied_index: Option<u64>,
    pub db_size: Option<i64>,
    pub version: Option<String>,
    pub error: Option<String>,
}

/// What one member answered.
struct Answer {
    leader: u64,
    raft_term: u64,
    raft_applied_index: u64,
    db_size: i64,
    version: String,
}

/// A member's id as etcdctl writes it: lower-case hex without a prefix.
pub fn format_id(id: u64) -> String {
    format!("{id:x}")
}

async fn ask_status(target: &Target, url: &str) -> Result<Answer, ClientError> {
    let mut client = client::connect(&[url.to_owned()], target.timeout).await?;
    let status = client::ask(url, target.timeout, client.status()).await?;
    Ok(Answer {
        leader: status.leader(),
        raft_term: status.raft_term(),
        raft_applied_index: status.raft_applied_index(),
        db_size: status.db_size(),
        version: status.version().to_owned(),
    })
}

/// The status of every member in the member list (asked of `target`'s endpoints).
pub async fn status(target: &Target) -> Result<Vec<MemberStatus>, ClusterError> {
    let label = target.label();
    let mut client = target.connect().await.map_err(ClusterError::MemberList)?;
    let list = client::ask(&label, target.timeout, client.member_list())
        .await
        .map_err(ClusterError::MemberList)?;
    let members = list.members().to_vec();
    if members.is_empty() {
        return Err(ClusterError::NoMembers);
    }
    let asked = members.iter().map(|m| async move {
        match m.client_urls().first() {
            Some(url) => ask_status(target, url).await,
            // A member added but never started has published no client URL.
            None => Err(ClientError::Request {
                endpoint: format_id(m.id()),
                message: "not started: it has published no client URL yet".into(),
            }),
        }
    });
    let answers = futures::future::join_all(asked).await;
    // The leader as the newest term among the answers names it: a member cut off from the
    // others may still believe in an older leader.
    let leader = answers
        .iter()
        .flatten()
        .filter(|a| a.leader != 0)
        .max_by_key(|a| a.raft_term)
        .map(|a| a.leader);
    Ok(members
        .iter()
        .zip(answers)
        .map(|(m, answer)| {
            let (answer, error) = match answer {
                Ok(a) => (Some(a), None),
                Err(e) => (None, Some(e.to_string())),
            };
            MemberStatus {
                name: m.name().to_owned(),
                id: format_id(m.id()),
                client_url: m.client_urls().first().cloned(),
                peer_urls: m.peer_urls().to_vec(),
                is_learner: m.is_learner(),
                is_leader: leader == Some(m.id()),
                healthy: answer.is_some(),
                raft_term: answer.as_ref().map(|a| a.raft_term),
                raft_applied_index: answer.as_ref().map(|a| a.raft_applied_index),
                db_size: answer.as_ref().map(|a| a.db_size),
                version: answer.map(|a| a.version),
                error,
            }
        })
        .collect())
}

/// The rows as `kubectl get` would print them. The ERROR column is there only when a member
/// failed, so a healthy cluster's table stays narrow.
pub fn render_table(rows: &[MemberStatus]) -> String {
    let with_errors = rows.iter().any(|r| r.error.is_some());
    let mut headers = vec![
        "name",
        "id",
        "client-url",
        "leader",
        "term",
        "applied",
        "db-size",
        "healthy",
    ];
    if with_errors {
        headers.push("error");
    }
    let mut table = Table::new(&headers);
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    for r in rows {
        let name = if r.name.is_empty() {
            "<unstarted>".to_owned()
        } else {
            r.name.clone()
        };
        table.row([
            name,
            r.id.clone(),
            or_dash(r.client_url.clone()),
            r.is_leader.to_string(),
            or_dash(r.raft_term.map(|t| t.to_string())),
            or_dash(r.raft_applied_index.map(|i| i.to_string())),
            or_dash(
                r.db_size
                    .map(|s| human_bytes(u64::try_from(s).unwrap_or(0))),
            ),
            r.healthy.to_string(),
            r.error.clone().unwrap_or_default(),
        ]);
    }
    table.render()
}

/// Whether the command succeeded: at least one member answered.
pub fn any_healthy(rows: &[MemberStatus]) -> bool {
    rows.iter().any(|r| r.healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, healthy: bool) -> MemberStatus {
        MemberStatus {
            name: name.into(),
            id: "8e9e05c52164694d".into(),
            client_url: Some("http://127.0.0.1:2379".into()),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            is_learner: false,
            is_leader: healthy,
            healthy,
            raft_term: healthy.then_some(2),
            raft_applied_index: healthy.then_some(41),
            db_size: healthy.then_some(20_480),
            version: healthy.then(|| "3.4.0+keel.0.1.0".into()),
            error: (!healthy).then(|| "http://127.0.0.1:2379: no answer within 5s".into()),
        }
    }

    #[test]
    fn a_healthy_cluster_has_no_error_column() {
        let text = render_table(&[row("m0", true)]);
        assert_eq!(
            text,
            "NAME   ID                 CLIENT-URL              LEADER   TERM   APPLIED   DB-SIZE   HEALTHY\n\
             m0     8e9e05c52164694d   http://127.0.0.1:2379   true     2      41        20 kB     true\n"
        );
    }

    #[test]
    fn an_unreachable_member_is_a_row_with_its_error() {
        let rows = [row("m0", true), row("m1", false)];
        let text = render_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with("HEALTHY   ERROR"), "{text}");
        assert!(lines[2].starts_with("m1 "), "{text}");
        assert!(lines[2].contains("false"), "{text}");
        assert!(lines[2].ends_with("no answer within 5s"), "{text}");
        assert!(any_healthy(&rows));
        assert!(!any_healthy(&rows[1..]));
        assert!(!any_healthy(&[]));
    }

    #[test]
    fn json_names_ids_in_hex() {
        let json = serde_json::to_value([row("m0", true)]).unwrap_or_default();
        assert_eq!(json[0]["id"], "8e9e05c52164694d");
        assert_eq!(json[0]["healthy"], true);
        assert_eq!(json[0]["raft_term"], 2);
        assert_eq!(format_id(u64::MAX), "ffffffffffffffff");
    }
}
