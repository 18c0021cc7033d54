//! What a container may do: its user (the pod's `runAsUser`, else the image's `User`), its
//! capabilities, `no_new_privs`, the seccomp filter, and whether `/proc` is masked — decided
//! by the daemon from the pod spec, applied by the container's process just before exec.
//!
//! keel's defaults are the hardened ones a cluster gets from containerd with the kubelet's
//! `--seccomp-default`: Docker's capabilities, the `RuntimeDefault` filter, runc's masks,
//! and (stricter than Kubernetes) `no_new_privs` unless `allowPrivilegeEscalation: true`.

use std::path::Path;

use anyhow::Context;
use caps::{CapSet, Capability, CapsHashSet};
use keel_api::pod::EffectiveSecurity;
use serde::{Deserialize, Serialize};

use super::inroot::Root;

/// The capabilities a container keeps by default: Docker's set. Everything else (SYS_ADMIN,
/// NET_ADMIN, SYS_MODULE, …) is dropped from every set, the bounding set included.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// The largest `/etc/passwd` or `/etc/group` of an image keel reads.
const MAX_ACCOUNT_FILE: u64 = 1 << 20;

/// A container's privileges, as the shim applies them (part of its spec file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Security {
    /// `CAP_…` names kept in the bounding, permitted, effective and inheritable sets.
    pub capabilities: Vec<String>,
    pub no_new_privs: bool,
    /// The `RuntimeDefault` seccomp filter; off for `Unconfined` and privileged containers.
    pub seccomp: bool,
    /// runc's masked and read-only paths in `/proc` and `/sys`.
    pub mask_paths: bool,
    pub read_only_root: bool,
    /// A writable `/sys` (and everything above: all capabilities, no filter, no masks).
    pub privileged: bool,
}

/// A spec written without this field (by an older keel) gets the defaults, never less.
impl Default for Security {
    fn default() -> Self {
        let mut capabilities: Vec<String> =
            DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        capabilities.sort();
        Self {
            capabilities,
            no_new_privs: true,
            seccomp: true,
            mask_paths: true,
            read_only_root: false,
            privileged: false,
        }
    }
}

impl Security {
    /// What the container's effective security context asks for.
    pub fn for_container(effective: &EffectiveSecurity) -> Self {
        let capabilities = if effective.privileged {
            caps::all()
        } else {
            capability_set(&effective.add_capabilities, &effective.drop_capabilities)
        };
        let mut names: Vec<String> = capabilities.iter().map(|c| c.to_string()).collect();
        names.sort();
        Self {
            capabilities: names,
            no_new_privs: effective.no_new_privs && !effective.privileged,
            seccomp: !effective.seccomp_unconfined && !effective.privileged,
            mask_paths: !effective.privileged,
            read_only_root: effective.read_only_root_filesystem,
            privileged: effective.privileged,
        }
    }
}

/// Docker's default set with the pod's `drop` taken away and its `add` put in, as
/// containerd computes it (drop first, so `drop: [ALL], add: [NET_BIND_SERVICE]` keeps one).
fn capability_set(add: &[String], drop: &[String]) -> CapsHashSet {
    let parse = |name: &String| -> Option<Capability> {
        let bare = name.strip_prefix("CAP_").unwrap_or(name);
        format!("CAP_{bare}").parse().ok()
    };
    let mut set: CapsHashSet = DEFAULT_CAPABILITIES.into_iter().collect();
    if drop.iter().any(|c| c == "ALL") {
        set.clear();
    } else {
        for cap in drop.iter().filter_map(parse) {
            set.remove(&cap);
        }
    }
    if add.iter().any(|c| c == "ALL") {
        set = caps::all();
    } else {
        set.extend(add.iter().filter_map(parse));
    }
    set
}

/// The user a container runs as: the pod's `runAsUser`/`runAsGroup`, else the image's
/// `User` (`uid`, `uid:gid`, `name` or `name:group`, names looked up in the image's own
/// `/etc/passwd` and `/etc/group`, read inside the image), else root. The group, when
/// neither says, is the user's primary group in the image's `/etc/passwd`, else 0 (as
/// containerd does).
///
/// `runAsNonRoot` refuses a container that would run as uid 0, with the kubelet's words.
/// The kubelet refuses a named image user it cannot verify; keel is also the runtime and
/// reads the image's `/etc/passwd`, so it checks the uid the name stands for.
pub fn resolve_user(
    security: &EffectiveSecurity,
    image_user: Option<&str>,
    image_root: &Path,
    pod: &str,
    container: &str,
) -> Result<(u32, u32), String> {
    if security.run_as_non_root && security.run_as_user == Some(0) {
        return Err(format!(
            "container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})"
        ));
    }
    let image_user = image_user.map(str::trim).filter(|u| !u.is_empty());
    let (user, group) = match image_user {
        Some(spec) => match spec.split_once(':') {
            Some((user, group)) => (Some(user), Some(group)),
            None => (Some(spec), None),
        },
        None => (None, None),
    };
    let accounts = Accounts::read(image_root, user.is_some() || security.run_as_user.is_some())
        .map_err(|e| format!("reading the image's accounts: {e}"))?;
    let uid = match (security.run_as_user, user) {
        (Some(uid), _) => uid,
        (None, Some(user)) => match user.parse::<u32>() {
            Ok(uid) => uid,
            Err(_) => accounts.uid_of(user).ok_or_else(|| {
                format!("unable to find user {user}: no matching entries in passwd file")
            })?,
        },
        (None, None) => 0,
    };
    let image_group = match (security.run_as_user, group) {
        (None, Some(group)) => Some(match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => accounts.gid_of(group).ok_or_else(|| {
                format!("unable to find group {group}: no matching entries in group file")
            })?,
        }),
        _ => None,
    };
    let gid = security
        .run_as_group
        .or(image_group)
        .or_else(|| accounts.primary_gid(uid))
        .unwrap_or(0);
    if security.run_as_non_root && uid == 0 {
        return Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"
        ));
    }
    Ok((uid, gid))
}

/// The image's `/etc/passwd` and `/etc/group`, as (name, id, primary gid) rows.
#[derive(Default)]
struct Accounts {
    users: Vec<(String, u32, u32)>,
    groups: Vec<(String, u32)>,
}

impl Accounts {
    fn read(image_root: &Path, needed: bool) -> Result<Self, super::inroot::InRootError> {
        if !needed {
            return Ok(Self::default());
        }
        let root = Root::open(image_root)?;
        let text = |path: &str| -> Result<String, super::inroot::InRootError> {
            Ok(root
                .read_file(Path::new(path), MAX_ACCOUNT_FILE)?
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default())
        };
        let users = text("/etc/passwd")?
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                Some((
                    (*fields.first()?).to_owned(),
                    fields.get(2)?.parse().ok()?,
                    fields.get(3)?.parse().ok()?,
                ))
            })
            .collect();
        let groups = text("/etc/group")?
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                Some(((*fields.first()?).to_owned(), fields.get(2)?.parse().ok()?))
            })
            .collect();
        Ok(Self { users, groups })
    }

    fn uid_of(&self, name: &str) -> Option<u32> {
        self.users.iter().find(|u| u.0 == name).map(|u| u.1)
    }

    fn primary_gid(&self, uid: u32) -> Option<u32> {
        self.users.iter().find(|u| u.1 == uid).map(|u| u.2)
    }

    fn gid_of(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.0 == name).map(|g| g.1)
    }
}

/// In the container's process, just before exec: capabilities, user, `no_new_privs`, the
/// seccomp filter — in runc's order.
///
/// 1. With `no_new_privs` the filter goes last, so it need not allow what keel itself does.
///    Without it the kernel takes a filter only from a holder of CAP_SYS_ADMIN, so it goes
///    first, while the process is still root; what follows (capset, prctl, setgroups,
///    setgid, setuid) is allowed by the filter.
/// 2. The bounding set is cut down first (that needs CAP_SETPCAP, held until the end), and
///    the inheritable set emptied: a capability left inheritable would return through an
///    executable's file capabilities (moby's CVE-2022-24769).
/// 3. The user and group change while every capability is still held: a pod may drop
///    SETUID and SETGID (`drop: [ALL]`) and still run as its user.
/// 4. The kernel clears the permitted and effective sets of a process that leaves uid 0;
///    for root they are cut to the container's set last.
pub fn lock_down(security: &Security, uid: u32, gid: u32) -> anyhow::Result<()> {
    let filter = if security.seccomp {
        Some(super::seccomp::runtime_default().context("building the seccomp filter")?)
    } else {
        None
    };
    if let (Some(filter), false) = (&filter, security.no_new_privs) {
        super::seccomp::apply(filter).context("installing the seccomp filter")?;
    }
    // Only what this process holds: a set naming a capability the kernel does not know, or
    // one the host's own bounding set took away, is refused by capset(2) as a whole.
    let supported = caps::runtime::thread_all_supported();
    let held = caps::read(None, CapSet::Permitted).context("reading the capabilities held")?;
    let keep: CapsHashSet = security
        .capabilities
        .iter()
        .filter_map(|name| name.parse().ok())
        .filter(|cap| held.contains(cap))
        .collect();
    for cap in supported {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .with_context(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Inheritable).context("clearing the inheritable capabilities")?;
    nix::unistd::setgroups(&[]).context("setgroups")?;
    nix::unistd::setgid(nix::unistd::Gid::from_raw(gid))
        .with_context(|| format!("runAsGroup {gid}"))?;
    nix::unistd::setuid(nix::unistd::Uid::from_raw(uid))
        .with_context(|| format!("runAsUser {uid}"))?;
    if uid == 0 {
        // Effective before permitted: the effective set must stay within the permitted one.
        caps::set(None, CapSet::Effective, &keep).context("setting the effective capabilities")?;
        caps::set(None, CapSet::Permitted, &keep).context("setting the permitted capabilities")?;
    }
    if security.no_new_privs {
        nix::sys::prctl::set_no_new_privs().context("no_new_privs")?;
        if let Some(filter) = &filter {
            super::seccomp::apply(filter).context("installing the seccomp filter")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn image(passwd: &str, group: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("etc")).expect("etc");
        fs::write(dir.path().join("etc/passwd"), passwd).expect("passwd");
        fs::write(dir.path().join("etc/group"), group).expect("group");
        dir
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:34:\nstaff:x:50:\n";

    #[test]
    fn the_image_user_is_honoured_and_the_pod_overrides_it() {
        let dir = image(PASSWD, GROUP);
        let resolve = |security: &EffectiveSecurity, user: Option<&str>| {
            resolve_user(security, user, dir.path(), "web_default(1)", "app")
        };
        let none = EffectiveSecurity::default();
        assert_eq!(resolve(&none, None), Ok((0, 0)));
        assert_eq!(resolve(&none, Some("www")), Ok((33, 34)));
        assert_eq!(resolve(&none, Some("www:staff")), Ok((33, 50)));
        assert_eq!(resolve(&none, Some("1234")), Ok((1234, 0)));
        assert_eq!(resolve(&none, Some("33:7")), Ok((33, 7)));
        let err = resolve(&none, Some("nobody")).expect_err("unknown user");
        assert!(err.contains("unable to find user nobody"), "{err}");

        let pod = EffectiveSecurity {
            run_as_user: Some(1000),
            ..Default::default()
        };
        assert_eq!(resolve(&pod, Some("www:staff")), Ok((1000, 0)));
        let both = EffectiveSecurity {
            run_as_user: Some(33),
            run_as_group: Some(9),
            ..Default::default()
        };
        assert_eq!(resolve(&both, None), Ok((33, 9)));
    }

    #[test]
    fn run_as_non_root_refuses_root_with_the_kubelets_words() {
        let dir = image(PASSWD, GROUP);
        let non_root = EffectiveSecurity {
            run_as_non_root: true,
            ..Default::default()
        };
        let resolve = |security: &EffectiveSecurity, user: Option<&str>| {
            resolve_user(security, user, dir.path(), "web_default(1)", "app")
        };
        let err = resolve(&non_root, None).expect_err("root image");
        assert_eq!(
            err,
            "container has runAsNonRoot and image will run as root (pod: \"web_default(1)\", container: app)"
        );
        assert!(resolve(&non_root, Some("root")).is_err(), "root by name");
        assert_eq!(resolve(&non_root, Some("www")), Ok((33, 34)));
        let zero = EffectiveSecurity {
            run_as_non_root: true,
            run_as_user: Some(0),
            ..Default::default()
        };
        let err = resolve(&zero, Some("www")).expect_err("runAsUser 0");
        assert!(err.contains("runAsUser breaks non-root policy"), "{err}");
    }

    #[test]
    fn account_files_are_read_inside_the_image() {
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").expect("write");
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("etc")).expect("etc");
        // A link to a host file means the image's own path of that name: absent here.
        std::os::unix::fs::symlink(outside.path().join("passwd"), dir.path().join("etc/passwd"))
            .expect("link");
        let err = resolve_user(
            &EffectiveSecurity::default(),
            Some("evil"),
            dir.path(),
            "p",
            "c",
        )
        .expect_err("the host's passwd is not the image's");
        assert!(err.contains("unable to find user evil"), "{err}");
    }

    #[test]
    fn capabilities_are_docker_defaults_with_drops_then_adds() {
        let names = |add: &[&str], drop: &[&str]| {
            let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let mut set: Vec<String> = capability_set(&owned(add), &owned(drop))
                .iter()
                .map(|c| c.to_string())
                .collect();
            set.sort();
            set
        };
        assert_eq!(names(&[], &[]).len(), 14);
        assert_eq!(
            names(&["NET_BIND_SERVICE"], &["ALL"]),
            ["CAP_NET_BIND_SERVICE"]
        );
        assert!(names(&["NET_ADMIN"], &[]).contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(!names(&[], &["CAP_NET_RAW"]).contains(&"CAP_NET_RAW".to_owned()));
        let privileged = Security::for_container(&EffectiveSecurity {
            privileged: true,
            ..Default::default()
        });
        assert!(privileged
            .capabilities
            .contains(&"CAP_SYS_ADMIN".to_owned()));
        assert!(!privileged.seccomp && !privileged.mask_paths && !privileged.no_new_privs);
        let default = Security::for_container(&EffectiveSecurity {
            no_new_privs: true,
            ..Default::default()
        });
        assert_eq!(default, Security::default());
    }
}
