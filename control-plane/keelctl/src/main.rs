//! `keelctl`: parses the command line, runs one command, prints its answer. Exit codes:
//! 0 done, 1 failed (for `apply` and `describe`, any object failed, the others done),
//! 2 usage error (clap's).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use keel_keelctl::cli::{
    ApplyArgs, Cli, ClusterCommand, Command, DescribeArgs, DryRun, GetArgs, GetOutput,
    KubeconfigArgs, MemberCommand, Output, SnapshotCommand, TokenCommand,
};
use keel_keelctl::client::Target;
use keel_keelctl::cluster::format_id;
use keel_keelctl::objects::{self, Session};
use keel_keelctl::{apply, cluster, describe, kubeconfig, manifest, member, snapshot, tokens};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread is plenty for a tool that waits on a few members.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<AlreadyReported>() => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// Failures a command printed itself, one line per object as kubectl prints them: exit 1
/// with nothing more to say.
#[derive(Debug)]
struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("some objects failed")
    }
}

impl std::error::Error for AlreadyReported {}

/// Exit 1 when `failed` objects were reported.
fn reported(failed: usize) -> anyhow::Result<()> {
    if failed > 0 {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// The error and its causes, each said once: the library's errors already include their
/// source's text, which `{:#}` would print a second time.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        keel_keelctl::client::append_cause(&mut text, &cause.to_string());
    }
    text
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to standard output")
}

fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let target = || Target::new(cli.endpoints.clone(), cli.command_timeout);
    match cli.command {
        Command::Cluster(ClusterCommand::Status { output }) => {
            let rows = cluster::status(&target()?).await?;
            print(&match output {
                Output::Table => cluster::render_table(&rows),
                Output::Json => json(&rows)?,
            })?;
            if !cluster::any_healthy(&rows) {
                anyhow::bail!("no member answered");
            }
        }
        Command::Member(command) => run_member(&target()?, command).await?,
        Command::Snapshot(SnapshotCommand::Save { file }) => {
            let saved = snapshot::save(&target()?, &file).await?;
            print(&snapshot::render_saved(&saved))?;
        }
        Command::Snapshot(SnapshotCommand::Restore {
            file,
            data_dir,
            name,
            initial_advertise_peer_urls,
        }) => {
            let request = snapshot::RestoreRequest {
                file,
                data_dir,
                name,
                peer_url: initial_advertise_peer_urls,
            };
            let restored = snapshot::restore(&request)?;
            print(&snapshot::render_restored(&request, &restored))?;
        }
        Command::Kubeconfig(args) => run_kubeconfig(args)?,
        Command::Get(args) => run_get(args).await?,
        Command::Apply(args) => run_apply(args).await?,
        Command::Describe(args) => run_describe(args).await?,
        Command::Delete(args) => {
            let session = Session::connect(args.api.kubeconfig.as_deref()).await?;
            let namespace = session.namespace(args.api.namespace.as_deref());
            let (kind, names) = objects::split_kind_name(&args.resource, &args.names);
            print(&objects::delete(&session, &kind, &names, &namespace).await?)?;
        }
        Command::Logs(args) => {
            let session = Session::connect(args.api.kubeconfig.as_deref()).await?;
            let namespace = session.namespace(args.api.namespace.as_deref());
            let request = objects::LogsRequest {
                pod: &args.pod,
                namespace: &namespace,
                container: args.container.as_deref(),
                previous: args.previous,
                tail: args.tail,
                follow: args.follow,
            };
            objects::logs(&session, &request, &mut std::io::stdout()).await?;
        }
        Command::Token(TokenCommand::Create(args)) => {
            let session = Session::connect(args.kubeconfig.as_deref()).await?;
            let (token, expires) =
                tokens::create_user_token(&session, &args.user, &args.group, args.ttl).await?;
            // The token alone on stdout, for `$(keelctl token create …)`; the rest on stderr.
            print(&format!("{token}\n"))?;
            eprintln!(
                "token user-token-{} for {} expires {}; it is shown only now",
                token.id,
                args.user,
                tokens::render_expiry(expires)
            );
        }
        Command::JoinToken(args) => {
            let session = Session::connect(args.kubeconfig.as_deref()).await?;
            let join = tokens::create_join_token(
                &session,
                args.ttl,
                &args.description,
                args.server.as_deref(),
            )
            .await?;
            match &args.output {
                Some(path) => {
                    kubeconfig::write(path, &join.kubeconfig)?;
                    eprintln!(
                        "bootstrap token {} (expires {}) written to {} (mode 0600)\n\
                         on the new node: node-daemon --bootstrap-kubeconfig {} \
                         --kubeconfig /var/lib/keel/node.kubeconfig --node-name NAME",
                        join.token.id,
                        tokens::render_expiry(join.expires),
                        path.display(),
                        path.display()
                    );
                }
                None => print(&join.kubeconfig)?,
            }
        }
        Command::Completion { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "keelctl", &mut out);
            print(&String::from_utf8_lossy(&out))?;
        }
    }
    Ok(())
}

async fn run_member(target: &Target, command: MemberCommand) -> anyhow::Result<()> {
    match command {
        MemberCommand::List { output } => {
            let members = member::list(target).await?;
            print(&match output {
                Output::Table => member::render_list(&members),
                Output::Json => json(&members)?,
            })
        }
        MemberCommand::Add {
            name,
            peer_urls,
            learner,
        } => {
            let added = member::add(target, &name, &peer_urls, learner).await?;
            print(&member::render_added(&added))
        }
        MemberCommand::Remove { member } => {
            let (id, cluster) = member::remove(target, &member).await?;
            print(&format!(
                "Member {} removed from cluster {}\n",
                format_id(id),
                format_id(cluster)
            ))
        }
        MemberCommand::Promote { member } => {
            let (id, cluster) = member::promote(target, &member).await?;
            print(&format!(
                "Member {} promoted in cluster {}\n",
                format_id(id),
                format_id(cluster)
            ))
        }
    }
}

async fn run_get(args: GetArgs) -> anyhow::Result<()> {
    let session = Session::connect(args.api.kubeconfig.as_deref()).await?;
    let namespace = match (&args.api.namespace, args.all_namespaces) {
        (_, true) => None,
        (Some(namespace), false) => Some(namespace.clone()),
        (None, false) => Some(session.default_namespace.clone()),
    };
    let (kind, names) = objects::split_kind_name(&args.resource, &args.names);
    let request = objects::GetRequest {
        resource: &kind,
        names: &names,
        namespace: namespace.as_deref(),
        selector: args.selector.as_deref(),
        format: match args.output {
            None => objects::Format::Table,
            Some(GetOutput::Wide) => objects::Format::Wide,
            Some(GetOutput::Name) => objects::Format::Name,
            Some(GetOutput::Json) => objects::Format::Json,
            Some(GetOutput::Yaml) => objects::Format::Yaml,
        },
    };
    let (text, nothing) = objects::get(&session, &request).await?;
    print(&text)?;
    if let Some(line) = nothing {
        eprintln!("{line}");
    }
    Ok(())
}

async fn run_apply(args: ApplyArgs) -> anyhow::Result<()> {
    // Every input is read and checked before the API is even asked: a malformed file
    // fails the command without a single object applied.
    let manifests = manifest::read(&args.filenames, &mut std::io::stdin().lock())?;
    manifest::check_namespaces(&manifests, args.api.namespace.as_deref())?;
    let session = Session::connect(args.api.kubeconfig.as_deref()).await?;
    let namespace = session.namespace(args.api.namespace.as_deref());
    let options = apply::ApplyOptions {
        namespace: &namespace,
        dry_run: match args.dry_run {
            DryRun::None => apply::DryRun::None,
            DryRun::Client => apply::DryRun::Client,
            DryRun::Server => apply::DryRun::Server,
        },
    };
    let failed = apply::apply(
        &session,
        manifests,
        &options,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await?;
    reported(failed)
}

async fn run_describe(args: DescribeArgs) -> anyhow::Result<()> {
    let session = Session::connect(args.api.kubeconfig.as_deref()).await?;
    let namespace = session.namespace(args.api.namespace.as_deref());
    let (kind, names) = objects::split_kind_name(&args.resource, &args.names);
    let request = describe::DescribeRequest {
        resource: &kind,
        names: &names,
        namespace: &namespace,
        selector: args.selector.as_deref(),
    };
    let failed = describe::describe(
        &session,
        &request,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await?;
    reported(failed)
}

fn run_kubeconfig(args: KubeconfigArgs) -> anyhow::Result<()> {
    let request = kubeconfig::Request {
        user: args.user,
        groups: args.group,
        data_dir: args.data_dir,
        server: args.server,
        pki_dir: args.pki_dir,
    };
    let text = kubeconfig::generate(&request)?;
    match args.output {
        Some(path) => {
            kubeconfig::write(&path, &text)?;
            eprintln!(
                "kubeconfig for {} written to {} (mode 0600)",
                request.user,
                path.display()
            );
            Ok(())
        }
        None => print(&text),
    }
}
