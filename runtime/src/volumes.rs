//! Pod volumes on the node: where each volume's files live on the host, made ready before a
//! container starts, and released with the pod. The mounts themselves are made by the
//! container's own process, inside its mount namespace ([`super::rootfs`]); the host sees only
//! an emptyDir's directory, or its tmpfs for `medium: Memory`, and the tmpfs of each volume
//! whose files come from the API server ([`api_files`]).

pub mod api_files;

pub use api_files::{VolumeContents, VolumeFile};

use std::{
    fs, io,
    os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use keel_api::{
    volume::{HostPathType, StorageMedium, Volume, VolumeSource},
    Container,
};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use thiserror::Error;

use super::{inroot::Root, spec::BindMount, state::PodDir};

#[derive(Debug, Error)]
pub enum VolumeError {
    #[error("volume {volume:?}: {message}")]
    Invalid { volume: String, message: String },
    #[error("volume {volume:?}: {}: {source}", path.display())]
    Io {
        volume: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// Makes every volume of the pod ready. An emptyDir is a directory of the pod's state, open to
/// every user as in Kubernetes (`0777`), with a tmpfs mounted on it for `medium: Memory`; a
/// hostPath is checked, or created, as its type says; an API-backed volume gets the files
/// `contents` holds for the pod (`pod_uid`). Idempotent: it runs before every container start,
/// as the kubelet checks hostPath types at each start.
pub fn prepare(
    dir: &PodDir,
    volumes: &[Volume],
    contents: Option<&dyn VolumeContents>,
    pod_uid: &str,
) -> Result<(), VolumeError> {
    for volume in volumes {
        match volume.source() {
            Some(VolumeSource::EmptyDir(empty_dir)) => {
                let path = dir.volume(&volume.name);
                let io_error = |source| VolumeError::Io {
                    volume: volume.name.clone(),
                    path: path.clone(),
                    source,
                };
                fs::create_dir_all(&path).map_err(io_error)?;
                if empty_dir.medium == StorageMedium::Memory && !is_mount_point(&path) {
                    let mut options = "mode=0777".to_owned();
                    if let Some(limit) = &empty_dir.size_limit {
                        let bytes = limit.bytes().map_err(|message| VolumeError::Invalid {
                            volume: volume.name.clone(),
                            message,
                        })?;
                        options.push_str(&format!(",size={bytes}"));
                    }
                    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                    mount(
                        Some("tmpfs"),
                        &path,
                        Some("tmpfs"),
                        flags,
                        Some(options.as_str()),
                    )
                    .map_err(|errno| io_error(errno.into()))?;
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).map_err(io_error)?;
            }
            Some(VolumeSource::HostPath(host_path)) => {
                check_host_path(Path::new(&host_path.path), host_path.kind).map_err(|message| {
                    VolumeError::Invalid {
                        volume: volume.name.clone(),
                        message: format!("hostPath type check failed: {message}"),
                    }
                })?;
            }
            Some(VolumeSource::Api(_)) => {
                let files = api_contents(contents, pod_uid, volume)?;
                api_files::write(&volume.name, &dir.volume(&volume.name), &files)?;
            }
            None => {
                return Err(VolumeError::Invalid {
                    volume: volume.name.clone(),
                    message: "no volume source".into(),
                })
            }
        }
    }
    Ok(())
}

/// The files of an API-backed volume, ready or not.
fn api_contents(
    contents: Option<&dyn VolumeContents>,
    pod_uid: &str,
    volume: &Volume,
) -> Result<Vec<VolumeFile>, VolumeError> {
    let invalid = |message: String| VolumeError::Invalid {
        volume: volume.name.clone(),
        message,
    };
    let Some(contents) = contents else {
        return Err(invalid(format!(
            "{} volumes need an API server, and this node has none",
            volume.type_name()
        )));
    };
    match contents.files(pod_uid, &volume.name) {
        Some(Ok(files)) => Ok(files),
        Some(Err(message)) => Err(invalid(message)),
        None => Err(invalid("its contents are still being fetched".into())),
    }
}

/// Writes the current contents of the pod's API-backed volumes that are in use (prepared for
/// a container already): a refreshed token, a changed Secret or ConfigMap reach running
/// containers this way. Errors are logged; the files in effect stay.
pub fn refresh(dir: &PodDir, volumes: &[Volume], contents: &dyn VolumeContents, pod_uid: &str) {
    for volume in volumes {
        if volume.api_volume().is_none() || !is_mount_point(&dir.volume(&volume.name)) {
            continue;
        }
        match contents.files(pod_uid, &volume.name) {
            Some(Ok(files)) => {
                match api_files::write(&volume.name, &dir.volume(&volume.name), &files) {
                    Ok(true) => tracing::debug!(pod_uid, volume = volume.name, "volume updated"),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(pod_uid, "updating a volume: {error}"),
                }
            }
            Some(Err(message)) => {
                tracing::warn!(
                    pod_uid,
                    volume = volume.name,
                    "volume not updated: {message}"
                )
            }
            None => {}
        }
    }
}

/// The bind mounts of one container: each `volumeMount` resolved to its host source. A
/// `subPath` is resolved inside its volume, links included ([`super::inroot`]):
/// an emptyDir is written by the pod's containers, and a link one of them left there
/// (`sub -> /`) must not make the next container's mount the host's root (Kubernetes'
/// CVE-2017-1002101). A subPath of an emptyDir is created (the kubelet does too); a missing
/// one of a hostPath is an error, never a directory made on the host.
pub fn mounts(
    dir: &PodDir,
    volumes: &[Volume],
    container: &Container,
) -> Result<Vec<BindMount>, VolumeError> {
    let mut mounts = Vec::new();
    for mount in &container.volume_mounts {
        let invalid = |message: String| VolumeError::Invalid {
            volume: mount.name.clone(),
            message,
        };
        let volume = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| invalid("not in spec.volumes".into()))?;
        let (root, owned) = match volume.source() {
            Some(VolumeSource::EmptyDir(_)) => (dir.volume(&volume.name), true),
            Some(VolumeSource::HostPath(host_path)) => (PathBuf::from(&host_path.path), false),
            Some(VolumeSource::Api(_)) => (dir.volume(&volume.name), false),
            None => return Err(invalid("no volume source".into())),
        };
        // Files from the API server are read-only in every container, as the kubelet mounts
        // them: a container must not rewrite the token or Secret another one reads.
        let read_only = mount.read_only || volume.api_volume().is_some();
        if let Some(sub_path) = &mount.sub_path {
            // Checked (and for an emptyDir created) here for a clear error; the shim
            // resolves it again, inside the volume, and mounts what it opened.
            let volume_root = Root::open(&root)
                .map_err(|error| invalid(format!("subPath {sub_path:?}: {error}")))?;
            let found = if owned {
                volume_root.create_dir_all(Path::new(sub_path), false)
            } else {
                volume_root.resolve(Path::new(sub_path))
            };
            found.map_err(|error| invalid(format!("subPath {sub_path:?}: {error}")))?;
        }
        mounts.push(BindMount {
            source: root,
            sub_path: mount.sub_path.clone(),
            target: mount.mount_path.clone(),
            read_only,
        });
    }
    Ok(mounts)
}

/// Unmounts the pod's tmpfs emptyDirs, so that removing the pod's directory removes
/// everything and leaves no mount behind on the host.
pub fn release(dir: &PodDir) {
    let Ok(entries) = fs::read_dir(dir.volumes()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if is_mount_point(&path) {
            if let Err(errno) = umount2(&path, MntFlags::MNT_DETACH) {
                tracing::warn!(path = %path.display(), "unmounting an emptyDir: {errno}");
            }
        }
    }
}

/// Whether something is mounted on `path`: it is on another device than its parent. (Its
/// file system type would not do: the state directory may itself be on a tmpfs.)
fn is_mount_point(path: &Path) -> bool {
    let device = |p: &Path| fs::metadata(p).map(|m| m.dev());
    match (device(path), path.parent().map(device)) {
        (Ok(own), Some(Ok(parent))) => own != parent,
        _ => false,
    }
}

/// Kubernetes' hostPath type semantics.
fn check_host_path(path: &Path, kind: HostPathType) -> Result<(), String> {
    let shown = path.display();
    let metadata = fs::metadata(path);
    let is =
        |test: fn(&fs::FileType) -> bool| metadata.as_ref().is_ok_and(|m| test(&m.file_type()));
    match kind {
        HostPathType::Unset => Ok(()),
        HostPathType::DirectoryOrCreate if metadata.is_err() => fs::create_dir_all(path)
            .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o755)))
            .map_err(|err| format!("creating {shown}: {err}")),
        HostPathType::FileOrCreate if metadata.is_err() => fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|file| file.set_permissions(fs::Permissions::from_mode(0o644)))
            .map_err(|err| format!("creating {shown}: {err}")),
        HostPathType::DirectoryOrCreate | HostPathType::Directory if is(fs::FileType::is_dir) => {
            Ok(())
        }
        HostPathType::FileOrCreate | HostPathType::File if is(fs::FileType::is_file) => Ok(()),
        HostPathType::Socket if is(FileTypeExt::is_socket) => Ok(()),
        HostPathType::CharDevice if is(FileTypeExt::is_char_device) => Ok(()),
        HostPathType::BlockDevice if is(FileTypeExt::is_block_device) => Ok(()),
        other => Err(match metadata {
            Err(err) => format!("{shown}: {err}"),
            Ok(_) => format!("{shown} is not a {}", type_name(other)),
        }),
    }
}

fn type_name(kind: HostPathType) -> &'static str {
    match kind {
        HostPathType::Unset => "path",
        HostPathType::DirectoryOrCreate | HostPathType::Directory => "directory",
        HostPathType::FileOrCreate | HostPathType::File => "file",
        HostPathType::Socket => "socket",
        HostPathType::CharDevice => "character device",
        HostPathType::BlockDevice => "block device",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_types_are_checked_and_created_as_kubernetes_does() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("file");
        fs::write(&file, "x").expect("a file");
        assert_eq!(check_host_path(dir.path(), HostPathType::Directory), Ok(()));
        assert_eq!(check_host_path(&file, HostPathType::File), Ok(()));
        let not_dir = check_host_path(&file, HostPathType::Directory).expect_err("a file");
        assert!(not_dir.ends_with("is not a directory"), "{not_dir}");
        let missing =
            check_host_path(&dir.path().join("gone"), HostPathType::File).expect_err("missing");
        assert!(missing.contains("No such file"), "{missing}");
        assert!(check_host_path(&file, HostPathType::Socket).is_err());
        assert_eq!(
            check_host_path(&dir.path().join("gone"), HostPathType::Unset),
            Ok(())
        );

        let made = dir.path().join("made/deeper");
        assert_eq!(
            check_host_path(&made, HostPathType::DirectoryOrCreate),
            Ok(())
        );
        assert!(made.is_dir());
        let touched = dir.path().join("touched");
        assert_eq!(
            check_host_path(&touched, HostPathType::FileOrCreate),
            Ok(())
        );
        assert!(touched.is_file());
        // FileOrCreate makes the file, not its directories (Kubernetes' rule).
        let orphan = dir.path().join("no/such/dir/file");
        assert!(check_host_path(&orphan, HostPathType::FileOrCreate).is_err());
        assert!(!dir.path().join("no").exists());
    }

    #[test]
    fn a_sub_path_never_leaves_its_volume_through_a_link() -> Result<(), Box<dyn std::error::Error>>
    {
        let state = tempfile::tempdir()?;
        let dir = PodDir {
            dir: state.path().to_owned(),
        };
        let volumes: Vec<Volume> = serde_yaml_ng::from_str("[{name: data, emptyDir: {}}]")?;
        prepare(&dir, &volumes, None, "uid")?;
        // What a container could leave in a shared emptyDir for the next one.
        std::os::unix::fs::symlink("/", dir.volume("data").join("escape"))?;
        let container: Container = serde_yaml_ng::from_str(
            "{name: app, image: busybox, volumeMounts: [{name: data, mountPath: /x, subPath: escape/etc}]}",
        )?;
        let mounts = mounts(&dir, &volumes, &container)?;
        assert_eq!(mounts[0].source, dir.volume("data"));
        assert_eq!(mounts[0].sub_path.as_deref(), Some("escape/etc"));
        assert!(
            dir.volume("data").join("etc").is_dir(),
            "created inside the volume"
        );
        // What the shim mounts: the subPath opened inside the volume.
        let root = Root::open(&mounts[0].source)?;
        let opened = root.resolve(Path::new("escape/etc"))?;
        let target = std::fs::read_link(crate::inroot::fd_path(&opened))?;
        assert_eq!(target, dir.volume("data").join("etc"));
        Ok(())
    }
}
