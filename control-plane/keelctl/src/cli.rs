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
                  without kubectl, get, apply, describe, delete and logs speak the Kubernetes \
                  API with a kubeconfig, printing what kubectl prints.\n\n\
                  Exit codes: 0 done; 1 failed (apply and describe: any object failed, after \
                  the others were done); 2 the command line is wrong.",
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
    /// Create or update objects from files, as `kubectl apply -f` does (client-side apply).
    ///
    /// Every document of every file is read and checked before anything is sent, so a
    /// malformed file applies nothing. Each object is then created, patched or left
    /// unchanged, and records what was applied in the
    /// kubectl.kubernetes.io/last-applied-configuration annotation, as kubectl does: the two
    /// can take turns. An object the server refuses is reported and the others are still
    /// applied; the command then exits 1.
    #[command(after_help = "Examples:\n  \
                  # Apply the objects of a file\n  \
                  keelctl apply -f web.yaml\n\n  \
                  # Every *.yaml, *.yml and *.json file of a directory, in namespace shop\n  \
                  keelctl apply -f manifests/ -n shop\n\n  \
                  # From standard input\n  \
                  cat web.yaml | keelctl apply -f -\n\n  \
                  # Have the server check the changes without storing them\n  \
                  keelctl apply -f web.yaml --dry-run=server")]
    Apply(ApplyArgs),
    /// Show the details of objects and their events, as `kubectl describe` does.
    ///
    /// Every kind is shown as kubectl shows custom resources: name, namespace, labels and
    /// annotations, then every other field, then the events about the object. With no name,
    /// every object of the kind in the namespace (or those matching -l).
    #[command(after_help = "Examples:\n  \
                  keelctl describe deployment web\n  \
                  keelctl describe pods -l app=web -n shop\n  \
                  keelctl describe node/n1")]
    Describe(DescribeArgs),
    /// Delete objects by name, as `kubectl delete` does.
    #[command(after_help = "Examples:\n  keelctl delete pod web-1 web-2 -n shop")]
    Delete(DeleteArgs),
    /// Print the log of a container of a pod, as `kubectl logs` does.
    #[command(after_help = "Examples:\n  \
                  keelctl logs web-1 -c httpd --tail 20\n  \
                  keelctl logs web-1 --previous\n  \
                  keelctl logs -f web-1")]
    Logs(LogsArgs),
    /// Make bearer tokens for people and scripts (`token create`).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Make a token a new node joins with, and the bootstrap kubeconfig that holds it.
    ///
    /// The token may only ask for the node's client certificate, which the control plane
    /// approves and signs; it expires after --ttl. Revoke it early with
    /// `kubectl -n kube-system delete secret bootstrap-token-<id>`.
    #[command(after_help = "Examples:\n  \
                  # On a control-plane host: a token for one day, and its kubeconfig\n  \
                  keelctl join-token -o bootstrap.kubeconfig\n\n  \
                  # On the new node\n  \
                  node-daemon --bootstrap-kubeconfig bootstrap.kubeconfig \
                  --kubeconfig /var/lib/keel/node.kubeconfig --node-name n4")]
    JoinToken(JoinTokenArgs),
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
    /// The user's groups, one O of the certificate each (e.g. system:nodes): repeat the
    /// flag, or separate them with commas (`--groups dev,ops`).
    #[arg(long, visible_alias = "groups", value_delimiter = ',', value_parser = parse_group)]
    pub group: Vec<String>,
    /// The control plane's data directory, holding pki/ca.crt, pki/ca.key and
    /// admin.kubeconfig.
    #[arg(long, default_value = "default.keel")]
    pub data_dir: PathBuf,
    /// The API server's URL (default: the server of DATA_DIR/admin.kubeconfig).
    #[arg(long, value_parser = parse_server, value_name = "URL")]
    pub server: Option<String>,
    /// The directory of ca.crt and ca.key, when not DATA_DIR/pki (the control plane's
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
mod tests;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token for a user and groups; prints it once (only its hash is stored).
    ///
    /// The token is a Secret `user-token-<id>` in kube-system; delete it to revoke the token.
    #[command(after_help = "Examples:\n  \
                  keelctl token create --user ci-bot --group deployers --ttl 720h\n  \
                  kubectl --token \"$(keelctl token create --user alice)\" get pods")]
    Create(TokenCreateArgs),
}

#[derive(Args, Debug)]
pub struct TokenCreateArgs {
    /// The user the token authenticates as.
    #[arg(long, value_parser = parse_user)]
    pub user: String,
    /// The user's groups: repeat the flag, or separate them with commas (`--groups a,b`).
    #[arg(long, visible_alias = "groups", value_delimiter = ',', value_parser = parse_group)]
    pub group: Vec<String>,
    /// How long the token is valid; 0 never expires.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    /// The kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config, as kubectl).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct JoinTokenArgs {
    /// How long the token is valid; 0 never expires.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    /// What the token is for, kept with it.
    #[arg(long, default_value = "keelctl join-token")]
    pub description: String,
    /// The API server URL new nodes reach (default: the kubeconfig's server).
    #[arg(long, value_parser = parse_server, value_name = "URL")]
    pub server: Option<String>,
    /// Write the bootstrap kubeconfig here (mode 0600) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config, as kubectl).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
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

/// kubectl's `--dry-run` strategies.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DryRun {
    /// Apply.
    #[default]
    None,
    /// Send nothing but reads: print what would be created or changed.
    Client,
    /// Send every change with dryRun=All: the server checks and admits it, and stores nothing.
    Server,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A file, a directory (its *.yaml, *.yml and *.json files, not its subdirectories), or
    /// - for standard input. Files hold YAML documents separated by ---, or JSON.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR|-"
    )]
    pub filenames: Vec<PathBuf>,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Check instead of applying.
    #[arg(long, value_enum, default_value_t, value_name = "STRATEGY")]
    pub dry_run: DryRun,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// The kind, as for `get` (or `KIND/NAME`).
    pub resource: String,
    /// The objects to describe (every object of the kind in the namespace when none).
    pub names: Vec<String>,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Only objects whose labels match this selector (`app=web,tier!=db`), instead of names.
    #[arg(short = 'l', long, value_name = "SELECTOR", conflicts_with = "names")]
    pub selector: Option<String>,
}
