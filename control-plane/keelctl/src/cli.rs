//! The command line, as clap derives it. Values are checked by the library's parsers at
//! parse time, so a bad name or URL is a usage error (exit code 2) with clap's message.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{client, kubeconfig, member};

/// The default client URL: `control-plane --listen-client`'s default.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";

#[derive(Parser, Debug)]
#[command(
    name = "keelctl",
    version,
    about = "keelctl controls a keel control plane: its members, snapshots and credentials.",
    long_about = "keelctl controls a keel control plane: its members, snapshots and credentials.\n\n\
                  It speaks etcd's v3 API to the members' client URLs (--endpoints), and reads the \
                  cluster CA from a member's data directory to issue kubeconfigs. For hosts \
                  without kubectl, get, delete and logs speak the Kubernetes API with a \
                  kubeconfig, printing what kubectl prints.",
    after_help = "Examples:\n  \
                  # Show every member, its leader and health\n  \
                  keelctl cluster status\n\n  \
                  # Back up the store and restore it into a new one-member cluster\n  \
                  keelctl snapshot save backup.snap\n  \
                  keelctl snapshot restore backup.snap --data-dir /var/lib/keel/m0\n\n  \
                  # Credentials for the node daemon of node n1\n  \
                  keelctl kubeconfig --user system:node:n1 --group system:nodes -o n1.kubeconfig"
)]
pub struct Cli {
    /// Client URLs of the control plane's members, comma-separated.
    #[arg(
        long,
        global = true,
        env = "KEELCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = DEFAULT_ENDPOINT,
        value_parser = parse_endpoint,
        value_name = "URLS"
    )]
    pub endpoints: Vec<String>,

    /// How long to wait for each answer from a member (e.g. 5s, 500ms, 1m).
    #[arg(
        long,
        global = true,
        default_value = "5s",
        value_parser = parse_timeout,
        value_name = "DURATION"
    )]
    pub command_timeout: Duration,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the health and raft state of the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// List, add, remove and promote members.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Save the store to a file, or make a new data directory from one.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Issue a client certificate from the cluster CA and print a kubeconfig with it.
    #[command(after_help = "Examples:\n  \
                  # Credentials for the node daemon of node n1, written with mode 0600\n  \
                  keelctl kubeconfig --user system:node:n1 --group system:nodes \
                  --data-dir /var/lib/keel/m0 -o n1.kubeconfig\n\n  \
                  # An administrator on another host\n  \
                  keelctl kubeconfig --user alice --group system:masters --server https://10.0.0.1:6443")]
    Kubeconfig(KubeconfigArgs),
    /// Display one or many objects, as `kubectl get` does (the server's own columns).
    #[command(after_help = "Examples:\n  \
                  keelctl get pods -o wide\n  \
                  keelctl get deploy web -n shop -o yaml\n  \
                  keelctl get nodes -l kubernetes.io/hostname=n1 -o name")]
    Get(GetArgs),
    /// Delete objects by name, as `kubectl delete` does.
    #[command(after_help = "Examples:\n  keelctl delete pod web-1 web-2 -n shop")]
    Delete(DeleteArgs),
    /// Print the log of a container of a pod, as `kubectl logs` does.
    #[command(after_help = "Examples:\n  \
                  keelctl logs web-1 -c httpd --tail 20\n  \
                  keelctl logs web-1 --previous\n  \
                  keelctl logs -f web-1")]
    Logs(LogsArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
                  # bash, for this shell\n  \
                  source <(keelctl completion bash)\n\n  \
                  # zsh, installed\n  \
                  keelctl completion zsh > \"${fpath[1]}/_keelctl\"")]
    Completion {
        /// The shell to write the script for.
        shell: clap_complete::Shell,
    },
}

/// How lists are printed.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Columns, as `kubectl get` prints them.
    #[default]
    Table,
    /// A JSON array, one object per member.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Ask every member for its status: leader, raft term and applied index, database size.
    ///
    /// A member that does not answer within --command-timeout is listed with its error. The
    /// command fails (exit code 1) only when no member answers.
    Status {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// List the members: id, name, peer and client URLs, learner or voter.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Add a member; prints the flags it must then be started with.
    Add {
        /// The new member's name (its --name).
        #[arg(value_parser = parse_member_name)]
        name: String,
        /// The URL the new member's raft listener is reached at. keel members have one.
        #[arg(long, required = true, value_delimiter = ',', value_parser = parse_peer_url, value_name = "URL")]
        peer_urls: Vec<String>,
        /// Add it as a learner: it replicates but does not vote until promoted.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a member, named by its hex id or its name.
    Remove {
        /// The member's hex id (as `member list` shows it) or name.
        #[arg(value_parser = parse_member_ref, value_name = "ID|NAME")]
        member: member::MemberRef,
    },
    /// Promote a learner to a voting member.
    Promote {
        /// The learner's hex id or name.
        #[arg(value_parser = parse_member_ref, value_name = "ID|NAME")]
        member: member::MemberRef,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Stream a snapshot of the store from one member (--endpoints) to FILE.
    ///
    /// The snapshot is written to FILE.part, verified and synced, then renamed to FILE. It is
    /// keel's own format, which `snapshot restore` reads (not an etcd bbolt file).
    Save {
        /// Where to write the snapshot.
        file: PathBuf,
    },
    /// Make a new data directory from a snapshot, for a new one-member cluster.
    ///
    /// The member started on it holds the snapshot's keys at their revisions; its id and
    /// membership are new. Add more members to it with `member add`.
    Restore {
        /// The snapshot, as written by `snapshot save`.
        file: PathBuf,
        /// The new member's data directory; it must not exist or be empty.
        #[arg(long)]
        data_dir: PathBuf,
        /// The new member's name.
        #[arg(long, default_value = "default", value_parser = parse_member_name)]
        name: String,
        /// The peer URL the new member will advertise (its id is derived from it).
        #[arg(long, default_value = "http://127.0.0.1:2380", value_parser = parse_peer_url, value_name = "URL")]
        initial_advertise_peer_urls: String,
    },
}

#[derive(Args, Debug)]
pub struct KubeconfigArgs {
    /// The user: the certificate's common name (e.g. system:node:n1).
    #[arg(long, value_parser = parse_user)]
    pub user: String,
    /// The user's group: the certificate's organization (e.g. system:nodes). One at most.
    #[arg(long, value_parser = parse_group)]
    pub group: Vec<String>,
    /// The control plane's data directory, holding pki/ca.crt, pki/ca.key and
    /// admin.kubeconfig.
    #[arg(long, default_value = "default.keel")]
    pub data_dir: PathBuf,
    /// The API server's URL (default: the server of <data-dir>/admin.kubeconfig).
    #[arg(long, value_parser = parse_server, value_name = "URL")]
    pub server: Option<String>,
    /// The directory of ca.crt and ca.key, when not <data-dir>/pki (the control plane's
    /// --pki-dir).
    #[arg(long, value_name = "DIR")]
    pub pki_dir: Option<PathBuf>,
    /// Write the kubeconfig to this file (mode 0600) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

// clap value parsers: the library's checks, their errors as clap shows them.

fn parse_endpoint(text: &str) -> Result<String, String> {
    client::parse_endpoint(text).map_err(|e| e.to_string())
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("a zero timeout would fail every request".into());
    }
    Ok(duration)
}

fn parse_member_name(text: &str) -> Result<String, String> {
    member::parse_name(text).map_err(|e| e.to_string())
}

fn parse_peer_url(text: &str) -> Result<String, String> {
    member::parse_peer_url(text).map_err(|e| e.to_string())
}

fn parse_member_ref(text: &str) -> Result<member::MemberRef, String> {
    member::parse_member_ref(text).map_err(|e| e.to_string())
}

fn parse_user(text: &str) -> Result<String, String> {
    kubeconfig::validate_name("user", text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_group(text: &str) -> Result<String, String> {
    kubeconfig::validate_name("group", text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_server(text: &str) -> Result<String, String> {
    kubeconfig::validate_server(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("keelctl").chain(args.iter().copied()))
    }

    fn usage_error(args: &[&str]) -> String {
        match parse(args) {
            Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
                e.to_string()
            }
        }
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_control_plane() {
        let cli = parse(&["cluster", "status"]).expect("parsed");
        // KEELCTL_ENDPOINTS could be set where the tests run; only the default is checked.
        if std::env::var_os("KEELCTL_ENDPOINTS").is_none() {
            assert_eq!(cli.endpoints, [DEFAULT_ENDPOINT]);
        }
        assert_eq!(cli.command_timeout, Duration::from_secs(5));
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCommand::Status {
                output: Output::Table
            })
        ));
    }

    #[test]
    fn global_flags_go_anywhere_and_endpoints_split_on_commas() {
        let cli = parse(&[
            "member",
            "list",
            "-o",
            "json",
            "--endpoints",
            "http://a:1,http://b:2",
            "--command-timeout",
            "250ms",
        ])
        .expect("parsed");
        assert_eq!(cli.endpoints, ["http://a:1", "http://b:2"]);
        assert_eq!(cli.command_timeout, Duration::from_millis(250));
        assert!(matches!(
            cli.command,
            Command::Member(MemberCommand::List {
                output: Output::Json
            })
        ));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(usage_error(&["member", "add", "", "--peer-urls", "http://h:1"]).contains("empty"));
        usage_error(&["member", "add", "a\u{1b}b", "--peer-urls", "http://h:1"]);
        usage_error(&["member", "add", "m3", "--peer-urls", "h:1"]);
        usage_error(&["member", "add", "m3"]);
        usage_error(&["member", "remove", ""]);
        usage_error(&["member", "remove", "m\n0"]);
        usage_error(&["cluster", "status", "-o", "yaml"]);
        usage_error(&["cluster", "status", "--endpoints", "https://x:1"]);
        usage_error(&["cluster", "status", "--command-timeout", "0s"]);
        usage_error(&["cluster", "status", "--command-timeout", "soon"]);
        assert!(usage_error(&["kubeconfig", "--user", ""]).contains("empty"));
        assert!(usage_error(&["kubeconfig", "--user", "a\tb"]).contains("U+0009"));
        usage_error(&["kubeconfig", "--user", "u", "--server", "http://x:1"]);
        usage_error(&["kubeconfig"]);
        usage_error(&["snapshot", "restore", "f"]);
        usage_error(&["completion", "tcsh"]);
        usage_error(&[]);
    }

    #[test]
    fn a_hex_id_or_a_name_is_accepted_for_remove() {
        let cli = parse(&["member", "remove", "8e9e05c52164694d"]).expect("parsed");
        let Command::Member(MemberCommand::Remove { member }) = cli.command else {
            panic!("not remove");
        };
        assert_eq!(member.id, Some(0x8e9e05c52164694d));
        let cli = parse(&["member", "remove", "m0"]).expect("parsed");
        assert!(matches!(
            cli.command,
            Command::Member(MemberCommand::Remove { member }) if member.id.is_none()
        ));
    }

    #[test]
    fn kubeconfig_takes_repeated_groups_for_the_library_to_refuse() {
        let cli = parse(&[
            "kubeconfig",
            "--user",
            "system:node:n1",
            "--group",
            "system:nodes",
            "--group",
            "x",
        ])
        .expect("parsed");
        let Command::Kubeconfig(args) = cli.command else {
            panic!("not kubeconfig");
        };
        assert_eq!(args.group, ["system:nodes", "x"]);
        assert!(kubeconfig::validate_groups(&args.group).is_err());
    }
}

/// Where the Kubernetes API is, and in which namespace.
#[derive(Args, Debug)]
pub struct ApiArgs {
    /// The kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config, as kubectl).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The namespace (default: the kubeconfig context's, else `default`).
    #[arg(short, long, value_name = "NAME")]
    pub namespace: Option<String>,
}

/// How `get` prints.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetOutput {
    /// The server's columns, with those of priority above 0.
    Wide,
    /// `kind.group/name`, one per line.
    Name,
    Json,
    Yaml,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// The kind: plural, singular, short name or Kind, optionally `.group`-qualified (or
    /// `KIND/NAME`).
    pub resource: String,
    /// Objects to show (all when none).
    pub names: Vec<String>,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Across every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Only objects whose labels match this selector (`app=web,tier!=db`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Output format (default: the server's table).
    #[arg(short, long, value_enum)]
    pub output: Option<GetOutput>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The kind, as for `get` (or `KIND/NAME`).
    pub resource: String,
    /// The objects to delete.
    pub names: Vec<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The pod.
    pub pod: String,
    #[command(flatten)]
    pub api: ApiArgs,
    /// The container (needed when the pod has several).
    #[arg(short, long)]
    pub container: Option<String>,
    /// The log of the container's previous run.
    #[arg(short, long)]
    pub previous: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<i64>,
    /// Keep printing as the container writes.
    #[arg(short, long)]
    pub follow: bool,
}
