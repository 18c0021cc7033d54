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
    usage_error(&["token", "create"]);
    usage_error(&["token", "create", "--user", "a", "--groups", "dev,"]);
    assert!(usage_error(&["token", "create", "--user", "a,b"]).contains("','"));
    usage_error(&["token", "create", "--user", "a", "--group", "x\ny"]);
    usage_error(&["token", "create", "--user", "a", "--ttl", "soon"]);
    usage_error(&["join-token", "--server", "http://x:1"]);
    usage_error(&["apply"]);
    usage_error(&["apply", "-n", "shop"]);
    usage_error(&["apply", "-f", ""]);
    usage_error(&["apply", "-f", "web.yaml", "--dry-run", "yes"]);
    usage_error(&["describe"]);
    usage_error(&["describe", "pods", "web", "-l", "app=web"]);
    usage_error(&[]);
}

#[test]
fn apply_takes_repeated_files_and_describe_several_names() {
    let cli = parse(&[
        "apply",
        "-f",
        "a.yaml",
        "--filename",
        "manifests",
        "-f",
        "-",
        "--dry-run=server",
        "-n",
        "shop",
    ])
    .expect("parsed");
    let Command::Apply(args) = cli.command else {
        panic!("not apply");
    };
    assert_eq!(
        args.filenames,
        [
            PathBuf::from("a.yaml"),
            PathBuf::from("manifests"),
            PathBuf::from("-")
        ]
    );
    assert_eq!(args.dry_run, DryRun::Server);
    assert_eq!(args.api.namespace.as_deref(), Some("shop"));
    let cli = parse(&["apply", "-f", "a.yaml"]).expect("parsed");
    assert!(matches!(
        cli.command,
        Command::Apply(ApplyArgs {
            dry_run: DryRun::None,
            ..
        })
    ));

    let cli = parse(&["describe", "deploy", "web", "db"]).expect("parsed");
    let Command::Describe(args) = cli.command else {
        panic!("not describe");
    };
    assert_eq!(args.resource, "deploy");
    assert_eq!(args.names, ["web", "db"]);
    assert_eq!(args.selector, None);
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
fn kubeconfig_groups_repeat_or_split_on_commas() {
    let cli = parse(&[
        "kubeconfig",
        "--user",
        "alice",
        "--group",
        "system:nodes",
        "--groups",
        "dev,ops",
    ])
    .expect("parsed");
    let Command::Kubeconfig(args) = cli.command else {
        panic!("not kubeconfig");
    };
    assert_eq!(args.group, ["system:nodes", "dev", "ops"]);
    assert!(kubeconfig::validate_groups(&args.group).is_ok());
    // Each value is a name: one that is not is a usage error naming it.
    let error = parse(&["kubeconfig", "--user", "alice", "--groups", "dev,b c"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("\"b c\"") && error.contains("whitespace"),
        "{error}"
    );
    assert!(parse(&["kubeconfig", "--user", "alice", "--groups", "dev,,ops"]).is_err());
}

#[test]
fn token_groups_repeat_or_split_on_commas() {
    let cli = parse(&[
        "token", "create", "--user", "ci", "--groups", "dev,ops", "--group", "qa",
    ])
    .expect("parsed");
    let Command::Token(TokenCommand::Create(args)) = cli.command else {
        panic!("not token create");
    };
    assert_eq!(args.group, ["dev", "ops", "qa"]);
}
