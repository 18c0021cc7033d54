//! The node's image store. There is no registry: images are imported from an OCI image
//! layout or a `docker save` archive (`node-daemon image import`), their layers unpacked
//! once, in order and with whiteouts applied, into a read-only root file system that every
//! container of the image gets as the lower layer of its overlay.
//!
//! ```text
//! images/refs.json            name:tag → image id
//! images/<id>/rootfs/         the unpacked layers
//! images/<id>/config.json     entrypoint, cmd, env, workingDir, user
//! ```
//! The id is the hex sha256 of the image's config blob, as Docker's image ids are.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsStr,
    fs::{self, File},
    io::{self, Read, Seek},
    os::{fd::AsFd, unix::ffi::OsStrExt},
    path::{Component, Path, PathBuf},
};

use nix::{
    fcntl::{openat, AtFlags, OFlag},
    sys::stat::{fchmod, mkdirat, mknodat, Mode, SFlag},
    unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{
    inroot::{self, InRootError, Root},
    state::{self, StateError},
};

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{path}: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("{path}: neither an OCI image layout (no index.json) nor a docker save archive (no manifest.json)")]
    UnknownFormat { path: PathBuf },
    #[error("blob {digest}: content does not match its digest (sha256 {actual})")]
    DigestMismatch { digest: String, actual: String },
    #[error("{path}: the archive names no image; give one with --name")]
    Unnamed { path: PathBuf },
    #[error("image {name:?} is not in the node's image store ({store}); import it with `node-daemon image import`")]
    NotFound { name: String, store: PathBuf },
    #[error(transparent)]
    InRoot(#[from] InRootError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

fn malformed(path: &Path, message: impl Into<String>) -> ImageError {
    ImageError::Malformed {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// What the image says to run, from its config blob (`config` in OCI and Docker alike).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// An image in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub id: String,
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

#[derive(Debug)]
pub struct ImageStore {
    dir: PathBuf,
}

/// `busybox` → `busybox:latest`; a name with a tag or digest is kept.
pub fn normalize_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// `docker.io/library/busybox:latest` and `busybox:latest` are one image.
fn short_name(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
}

impl ImageStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn refs_path(&self) -> PathBuf {
        self.dir.join("refs.json")
    }

    /// Every name in the store and its image id.
    pub fn refs(&self) -> Result<BTreeMap<String, String>, ImageError> {
        Ok(state::read_json(&self.refs_path())?.unwrap_or_default())
    }

    /// The image called `name` (`busybox`, `busybox:latest`, `docker.io/library/busybox`).
    pub fn get(&self, name: &str) -> Result<Image, ImageError> {
        let wanted = normalize_name(name);
        let refs = self.refs()?;
        let found = refs
            .iter()
            .find(|(stored, _)| short_name(stored) == short_name(&wanted));
        let Some((stored, id)) = found else {
            return Err(ImageError::NotFound {
                name: name.to_owned(),
                store: self.dir.clone(),
            });
        };
        let dir = self.dir.join(id);
        let config = state::read_json(&dir.join("config.json"))?.unwrap_or_default();
        Ok(Image {
            name: stored.clone(),
            id: id.clone(),
            rootfs: dir.join("rootfs"),
            config,
        })
    }

    /// Imports every image of an OCI layout or docker save archive (a tar file or its
    /// unpacked directory). `name` names the image when the archive does not. Returns the
    /// names imported.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<Vec<String>, ImageError> {
        fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let metadata = fs::metadata(path).map_err(io_error(path))?;
        if metadata.is_dir() {
            return self.import_dir(path, name);
        }
        // A tar of the layout: unpacked to a scratch directory first (blobs are addressed by
        // path, so they must be reachable at random).
        let scratch = self.dir.join(format!(".import-{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(&scratch).map_err(io_error(&scratch))?;
        let result = File::open(path)
            .map_err(io_error(path))
            .and_then(|file| {
                tar::Archive::new(file)
                    .unpack(&scratch)
                    .map_err(|e| malformed(path, format!("not a readable tar archive: {e}")))
            })
            .and_then(|()| self.import_dir(&scratch, name));
        let _ = fs::remove_dir_all(&scratch);
        result
    }

    fn import_dir(&self, dir: &Path, name: Option<&str>) -> Result<Vec<String>, ImageError> {
        let manifests = if dir.join("index.json").exists() {
            oci_manifests(dir, name)?
        } else if dir.join("manifest.json").exists() {
            docker_manifests(dir, name)?
        } else {
            return Err(ImageError::UnknownFormat {
                path: dir.to_owned(),
            });
        };
        let mut refs = self.refs()?;
        let mut names = Vec::new();
        for manifest in manifests {
            let mut config_bytes = Vec::new();
            open_inside(&manifest.dir, &manifest.config)?
                .take(MAX_CONFIG_BYTES + 1)
                .read_to_end(&mut config_bytes)
                .map_err(io_error(&manifest.config))?;
            if config_bytes.len() as u64 > MAX_CONFIG_BYTES {
                return Err(malformed(
                    &manifest.config,
                    "image config larger than 4 MiB",
                ));
            }
            let id = hex(&Sha256::digest(&config_bytes));
            self.unpack(&id, &config_bytes, &manifest)?;
            for name in manifest.names {
                refs.insert(name.clone(), id.clone());
                names.push(name);
            }
        }
        state::write_json(&self.refs_path(), &refs)?;
        Ok(names)
    }

    /// Unpacks an image's layers unless the store already has it.
    fn unpack(&self, id: &str, config_bytes: &[u8], manifest: &Manifest) -> Result<(), ImageError> {
        let target = self.dir.join(id);
        if target.join("rootfs").is_dir() && target.join("config.json").exists() {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct ConfigBlob {
            #[serde(default)]
            config: ImageConfig,
        }
        let blob: ConfigBlob = serde_json::from_slice(config_bytes)
            .map_err(|e| malformed(&manifest.config, format!("image config: {e}")))?;
        let scratch = self.dir.join(format!(".unpack-{id}"));
        let _ = fs::remove_dir_all(&scratch);
        let rootfs = scratch.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(io_error(&rootfs))?;
        let root = Root::open(&rootfs)?;
        let mut skipped = Skipped::default();
        for layer in &manifest.layers {
            if let Err(error) = apply_layer(&manifest.dir, layer, &root, &mut skipped) {
                let _ = fs::remove_dir_all(&scratch);
                return Err(error);
            }
        }
        if skipped.devices > 0 {
            tracing::warn!(
                image = %manifest.names.join(", "),
                devices = skipped.devices,
                "device nodes in the image's layers were not created"
            );
        }
        state::write_json(&scratch.join("config.json"), &blob.config)?;
        let _ = fs::remove_dir_all(&target);
        fs::rename(&scratch, &target).map_err(io_error(&target))
    }
}

/// The largest image config (or index, or manifest) keel reads: they are small JSON files.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// One image of an archive: its names, its config blob and its layers in order, as paths
/// inside `dir` (opened with [`open_inside`]).
struct Manifest {
    names: Vec<String>,
    dir: PathBuf,
    config: PathBuf,
    layers: Vec<PathBuf>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The blob a descriptor points at, checked against its digest.
fn oci_blob(dir: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let Some(hex_digest) = digest.strip_prefix("sha256:") else {
        return Err(malformed(dir, format!("digest {digest:?} is not sha256")));
    };
    if hex_digest.len() != 64 || !hex_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(dir, format!("digest {digest:?} is not sha256")));
    }
    let path = Path::new("blobs/sha256").join(hex_digest);
    let mut file = open_inside(dir, &path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(io_error(&path))?;
    let actual = hex(&hasher.finalize());
    if actual != hex_digest {
        return Err(ImageError::DigestMismatch {
            digest: digest.to_owned(),
            actual,
        });
    }
    Ok(path)
}

/// Opens a file of an archive or layout by its path inside it: a link in the archive
/// (`layer.tar -> /etc/shadow`) resolves inside it too, so an import never reads the host.
fn open_inside(dir: &Path, relative: &Path) -> Result<File, ImageError> {
    let root = Root::open(dir)?;
    let fd = root.open_at(relative, OFlag::O_RDONLY, false)?;
    let file = File::from(fd);
    let is_file = file.metadata().map_err(io_error(relative))?.is_file();
    if !is_file {
        return Err(malformed(
            dir,
            format!("{} is not a file", relative.display()),
        ));
    }
    Ok(file)
}

fn read_json_file<T: serde::de::DeserializeOwned>(
    dir: &Path,
    path: &Path,
) -> Result<T, ImageError> {
    let mut text = Vec::new();
    open_inside(dir, path)?
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(io_error(path))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(malformed(path, "larger than 4 MiB"));
    }
    serde_json::from_slice(&text).map_err(|e| malformed(&dir.join(path), e.to_string()))
}

fn oci_manifests(dir: &Path, name: Option<&str>) -> Result<Vec<Manifest>, ImageError> {
    #[derive(Deserialize)]
    struct Index {
        manifests: Vec<Descriptor>,
    }
    #[derive(Deserialize)]
    struct OciManifest {
        config: Descriptor,
        layers: Vec<Descriptor>,
    }
    let index: Index = read_json_file(dir, Path::new("index.json"))?;
    let mut manifests = Vec::new();
    for descriptor in index.manifests {
        if descriptor.media_type.ends_with("image.index.v1+json") {
            return Err(malformed(
                &dir.join("index.json"),
                "multi-platform indexes are not supported: export one platform",
            ));
        }
        let manifest: OciManifest = read_json_file(dir, &oci_blob(dir, &descriptor.digest)?)?;
        let annotated = descriptor
            .annotations
            .get(CONTAINERD_NAME)
            .or_else(|| descriptor.annotations.get(REF_NAME))
            .cloned();
        let image_name = match (name, annotated) {
            (Some(name), _) => normalize_name(name),
            // A bare tag ("latest") does not name an image.
            (None, Some(full)) if full.contains(':') || full.contains('/') => normalize_name(&full),
            _ => {
                return Err(ImageError::Unnamed {
                    path: dir.to_owned(),
                })
            }
        };
        let layers = manifest
            .layers
            .iter()
            .map(|layer| oci_blob(dir, &layer.digest))
            .collect::<Result<_, _>>()?;
        manifests.push(Manifest {
            names: vec![image_name],
            dir: dir.to_owned(),
            config: oci_blob(dir, &manifest.config.digest)?,
            layers,
        });
    }
    if manifests.is_empty() {
        return Err(malformed(&dir.join("index.json"), "lists no image"));
    }
    Ok(manifests)
}

fn docker_manifests(dir: &Path, name: Option<&str>) -> Result<Vec<Manifest>, ImageError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<String>,
    }
    let path = dir.join("manifest.json");
    let entries: Vec<Entry> = read_json_file(dir, Path::new("manifest.json"))?;
    let inside = |relative: &str| -> Result<PathBuf, ImageError> {
        let relative = Path::new(relative);
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(malformed(
                &path,
                format!("{} points outside the archive", relative.display()),
            ));
        }
        Ok(relative.to_owned())
    };
    let mut manifests = Vec::new();
    for entry in entries {
        let names = match (name, entry.repo_tags) {
            (Some(name), _) => vec![normalize_name(name)],
            (None, Some(tags)) if !tags.is_empty() => {
                tags.iter().map(|t| normalize_name(t)).collect()
            }
            _ => {
                return Err(ImageError::Unnamed {
                    path: dir.to_owned(),
                })
            }
        };
        manifests.push(Manifest {
            names,
            dir: dir.to_owned(),
            config: inside(&entry.config)?,
            layers: entry
                .layers
                .iter()
                .map(|l| inside(l))
                .collect::<Result<_, _>>()?,
        });
    }
    if manifests.is_empty() {
        return Err(malformed(&path, "lists no image"));
    }
    Ok(manifests)
}

/// What unpacking a layer left out, for the import's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Character and block devices: a container gets its devices from the runtime, and a
    /// device node in an image is a way to the host's disks.
    pub devices: usize,
}

/// Unpacks one layer (tar, or gzip-compressed tar) over `rootfs`, applying its whiteouts:
/// `.wh.NAME` deletes NAME from the layers below, `.wh..wh..opq` empties its directory of
/// what the layers below put there.
///
/// Every entry is created through descriptors of directories resolved inside the root (see
/// [`super::inroot`]): a link an earlier layer (or an earlier entry of this one) laid down is
/// followed inside the image, never out of it, whether it is whited out, emptied, replaced,
/// written through or named by a hard link.
fn apply_layer(
    dir: &Path,
    layer: &Path,
    root: &Root,
    skipped: &mut Skipped,
) -> Result<(), ImageError> {
    let mut file = open_inside(dir, layer)?;
    let mut magic = [0u8; 2];
    let gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    file.rewind().map_err(io_error(layer))?;
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    let broken = |e: io::Error| malformed(layer, format!("layer: {e}"));
    let mut this_layer = BTreeSet::new();
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let path = clean_path(&entry.path().map_err(broken)?).ok_or_else(|| {
            malformed(
                layer,
                "an entry's name climbs out of the root file system with `..`",
            )
        })?;
        let Some(file_name) = path.file_name().map(OsStr::to_owned) else {
            continue; // the root itself
        };
        let parent = path.parent().unwrap_or(Path::new(""));
        let at = |e: InRootError| malformed(layer, format!("{}: {e}", path.display()));
        let errno = |e: nix::errno::Errno| malformed(layer, format!("{}: {e}", path.display()));
        if file_name == ".wh..wh..opq" {
            let dir = match root.open_at(parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY, false) {
                Ok(dir) => dir,
                Err(InRootError::Io { source, .. })
                    if source.raw_os_error() == Some(libc::ENOENT) =>
                {
                    continue
                }
                Err(other) => return Err(at(other)),
            };
            let mut keep = |name: &OsStr| {
                this_layer
                    .iter()
                    .any(|p: &PathBuf| p.starts_with(parent.join(name)))
            };
            inroot::empty_dir(dir, &mut keep).map_err(errno)?;
            continue;
        }
        if let Some(hidden) = file_name.as_bytes().strip_prefix(b".wh.") {
            // `.wh..` and `.wh...` would name the directory itself or its parent.
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(malformed(
                    layer,
                    format!("{}: a whiteout of no file", path.display()),
                ));
            }
            let (dir, _) = match root.parent_and_name(&path, false) {
                Ok(found) => found,
                Err(InRootError::Io { source, .. })
                    if source.raw_os_error() == Some(libc::ENOENT) =>
                {
                    continue
                }
                Err(other) => return Err(at(other)),
            };
            inroot::remove_all_at(dir.as_fd(), OsStr::from_bytes(hidden)).map_err(errno)?;
            continue;
        }
        let header = entry.header();
        let kind = header.entry_type();
        let mode = Mode::from_bits_truncate(header.mode().map_err(broken)? & 0o7777);
        let owner = (
            header.uid().map_err(broken)? as u32,
            header.gid().map_err(broken)? as u32,
        );
        let (dir, name) = root.parent_and_name(&path, true).map_err(at)?;
        let existing = inroot::kind_at(dir.as_fd(), &name).map_err(errno)?;
        if kind.is_dir() {
            if existing != Some(SFlag::S_IFDIR) {
                inroot::remove_all_at(dir.as_fd(), &name).map_err(errno)?;
                mkdirat(
                    dir.as_fd(),
                    name.as_os_str(),
                    Mode::from_bits_truncate(0o700),
                )
                .map_err(errno)?;
            }
            let fd = openat(
                dir.as_fd(),
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno)?;
            set_owner_and_mode(&fd, owner, mode).map_err(errno)?;
        } else if existing == Some(SFlag::S_IFDIR) && !kind.is_dir() {
            // A directory replaced by anything else goes first, with what it held.
            inroot::remove_all_at(dir.as_fd(), &name).map_err(errno)?;
        } else if existing.is_some() {
            unlinkat(dir.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir).map_err(errno)?;
        }
        match kind {
            _ if kind.is_dir() => {}
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let fd = openat(
                    dir.as_fd(),
                    name.as_os_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(errno)?;
                let mut out = File::from(fd);
                io::copy(&mut entry, &mut out).map_err(broken)?;
                set_owner_and_mode(&out, owner, mode).map_err(errno)?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(broken)?.ok_or_else(|| {
                    malformed(layer, format!("{}: a link to nothing", path.display()))
                })?;
                // Stored as written: a link is only ever followed inside the root.
                symlinkat(target.as_ref(), dir.as_fd(), name.as_os_str()).map_err(errno)?;
                fchownat(
                    dir.as_fd(),
                    name.as_os_str(),
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(errno)?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name().map_err(broken)?;
                let target = target.as_deref().and_then(clean_path).ok_or_else(|| {
                    malformed(
                        layer,
                        format!(
                            "{}: a hard link out of the root file system",
                            path.display()
                        ),
                    )
                })?;
                // The target's directories resolve inside the root and its last component is
                // not followed: a hard link can only name a file of this image.
                let source = root
                    .open_at(&target, OFlag::O_PATH | OFlag::O_NOFOLLOW, false)
                    .map_err(at)?;
                linkat(
                    source.as_fd(),
                    "",
                    dir.as_fd(),
                    name.as_os_str(),
                    AtFlags::AT_EMPTY_PATH,
                )
                .map_err(errno)?;
            }
            tar::EntryType::Fifo => {
                mknodat(dir.as_fd(), name.as_os_str(), SFlag::S_IFIFO, mode, 0).map_err(errno)?;
                fchownat(
                    dir.as_fd(),
                    name.as_os_str(),
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(errno)?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                skipped.devices += 1;
                continue;
            }
            // PAX and GNU extension headers are folded into the entries by the tar crate;
            // anything else is no file.
            _ => continue,
        }
        this_layer.insert(path);
    }
    Ok(())
}

/// Ownership first: chown clears the set-user-ID and set-group-ID bits that the mode then
/// sets again (they are harmless in a container: keel runs every process with
/// `no_new_privs` unless the pod is privileged).
fn set_owner_and_mode(fd: &impl AsFd, owner: (u32, u32), mode: Mode) -> nix::Result<()> {
    fchown(
        fd.as_fd(),
        Some(Uid::from_raw(owner.0)),
        Some(Gid::from_raw(owner.1)),
    )?;
    fchmod(fd.as_fd(), mode)
}

/// The entry's path relative to the root, or `None` if it climbs out with `..`.
fn clean_path(path: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(clean)
}

#[cfg(test)]
mod tests {
    use keel_lab::oci;

    use super::*;

    fn layer(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = oci::LayerBuilder::new();
        for (path, content) in files {
            if let Some(dir) = path.strip_suffix('/') {
                builder.dir(dir, 0o755).expect("dir");
            } else {
                builder.file(path, content.as_bytes(), 0o644).expect("file");
            }
        }
        builder.finish().expect("layer")
    }

    fn config() -> serde_json::Value {
        serde_json::json!({"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}})
    }

    #[test]
    fn layers_apply_in_order_with_whiteouts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = dir.path().join("layout");
        let layers = vec![
            layer(&[
                ("etc/", ""),
                ("etc/keep", "1"),
                ("etc/gone", "1"),
                ("data/", ""),
                ("data/old", "1"),
            ]),
            layer(&[
                ("etc/.wh.gone", ""),
                ("data/", ""),
                ("data/new", "2"),
                ("data/.wh..wh..opq", ""),
            ]),
        ];
        oci::write_layout(&layout, "example.com/test:1", &layers, &config()).expect("layout");
        let store = ImageStore::new(dir.path().join("store"));
        let names = store.import(&layout, None).expect("import");
        assert_eq!(names, ["example.com/test:1"]);
        let image = store.get("example.com/test:1").expect("stored");
        assert!(image.rootfs.join("etc/keep").exists());
        assert!(!image.rootfs.join("etc/gone").exists(), "whiteout applied");
        assert!(
            !image.rootfs.join("data/old").exists(),
            "opaque directory emptied"
        );
        assert!(
            image.rootfs.join("data/new").exists(),
            "this layer's file kept"
        );
        assert_eq!(image.config.cmd, Some(vec!["sh".to_owned()]));
    }

    #[test]
    fn docker_save_archives_import_by_repo_tag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("saved.tar");
        oci::write_docker_archive(&archive, "busybox", &[layer(&[("hello", "hi")])], &config())
            .expect("archive");
        let store = ImageStore::new(dir.path().join("store"));
        assert_eq!(
            store.import(&archive, None).expect("import"),
            ["busybox:latest"]
        );
        let image = store.get("docker.io/library/busybox").expect("same image");
        assert_eq!(
            fs::read_to_string(image.rootfs.join("hello")).expect("file"),
            "hi"
        );
    }

    #[test]
    fn malformed_archives_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::new(dir.path().join("store"));
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).expect("dir");
        let err = store.import(&empty, None).expect_err("no format");
        assert!(err.to_string().contains("index.json"), "{err}");

        let layout = dir.path().join("layout");
        oci::write_layout(&layout, "x:1", &[layer(&[("a", "1")])], &config()).expect("layout");
        // Corrupt the layer blob: the digest check must catch it.
        let blobs = layout.join("blobs/sha256");
        let largest = fs::read_dir(&blobs)
            .expect("blobs")
            .flatten()
            .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .expect("a blob");
        fs::write(largest.path(), b"garbage").expect("corrupt");
        let err = store.import(&layout, None).expect_err("corrupt blob");
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");

        let not_tar = dir.path().join("not.tar");
        fs::write(&not_tar, b"hello").expect("write");
        assert!(store.import(&not_tar, None).is_err());
        let err = store.get("nothing").expect_err("missing");
        assert!(
            err.to_string().contains("node-daemon image import"),
            "{err}"
        );
    }

    /// Every file under `dir` with its content (links as their targets), to show the host
    /// unchanged after an import.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut found = BTreeMap::new();
        let mut pending = vec![dir.to_owned()];
        while let Some(next) = pending.pop() {
            for entry in fs::read_dir(&next).expect("readable").flatten() {
                let path = entry.path();
                let meta = fs::symlink_metadata(&path).expect("metadata");
                let content = if meta.is_dir() {
                    pending.push(path.clone());
                    b"<dir>".to_vec()
                } else if meta.file_type().is_symlink() {
                    fs::read_link(&path)
                        .expect("link")
                        .into_os_string()
                        .into_encoded_bytes()
                } else {
                    fs::read(&path).expect("file")
                };
                found.insert(path, content);
            }
        }
        found
    }

    /// A host directory each hostile image aims at, with what it must still hold after.
    struct Sentinel {
        dir: tempfile::TempDir,
        before: BTreeMap<PathBuf, Vec<u8>>,
    }

    impl Sentinel {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            fs::write(dir.path().join("important"), "host data").expect("write");
            fs::create_dir(dir.path().join("sub")).expect("dir");
            fs::write(dir.path().join("sub/file"), "more host data").expect("write");
            let before = snapshot(dir.path());
            Self { dir, before }
        }

        fn path(&self) -> String {
            self.dir.path().display().to_string()
        }

        fn assert_unchanged(&self, case: &str) {
            assert_eq!(
                snapshot(self.dir.path()),
                self.before,
                "{case}: the host changed"
            );
        }
    }

    fn import_layers(layers: Vec<Vec<u8>>) -> (tempfile::TempDir, Result<Image, ImageError>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = dir.path().join("layout");
        oci::write_layout(&layout, "example.com/hostile:1", &layers, &config()).expect("layout");
        let store = ImageStore::new(dir.path().join("store"));
        let result = store
            .import(&layout, None)
            .and_then(|_| store.get("example.com/hostile:1"));
        (dir, result)
    }

    fn build(steps: impl FnOnce(&mut oci::LayerBuilder) -> std::io::Result<()>) -> Vec<u8> {
        let mut builder = oci::LayerBuilder::new();
        steps(&mut builder).expect("layer");
        builder.finish().expect("layer")
    }

    #[test]
    fn hostile_layers_never_touch_the_host() {
        let sentinel = Sentinel::new();
        let target = sentinel.path();
        let host_passwd = fs::read("/etc/passwd").expect("host passwd");

        // A link out of the root, then whiteouts and an opaque directory through it.
        let (_dir, result) = import_layers(vec![
            build(|b| b.symlink("x", &target).map(drop)),
            build(|b| {
                b.file("x/.wh.important", b"", 0o644)?;
                b.file("x/sub/.wh..wh..opq", b"", 0o644).map(drop)
            }),
        ]);
        sentinel.assert_unchanged("whiteouts through a link");
        // Inside the image the link leads nowhere: nothing to delete, the import succeeds.
        let image = result.expect("whiteouts of nothing are no error");
        assert!(fs::symlink_metadata(image.rootfs.join("x")).is_ok_and(|m| m.is_symlink()));

        // A relative link that climbs, then an opaque directory through it.
        let (_dir, result) = import_layers(vec![
            build(|b| b.symlink("up", "../../../../../../../../..").map(drop)),
            build(|b| {
                b.file(&format!("up{target}/.wh..wh..opq"), b"", 0o644)
                    .map(drop)
            }),
        ]);
        sentinel.assert_unchanged("an opaque directory through a climbing link");
        drop(result);

        // Writing through an absolute link lands in the image's directory of that name.
        let (_dir, result) = import_layers(vec![
            build(|b| {
                b.dir("etc", 0o755)?;
                b.symlink("abs", "/etc").map(drop)
            }),
            build(|b| {
                b.file("abs/passwd", b"evil::0:0::/:/bin/sh\n", 0o644)
                    .map(drop)
            }),
        ]);
        let image = result.expect("writes inside the image");
        assert_eq!(
            fs::read(image.rootfs.join("etc/passwd")).expect("inside"),
            b"evil::0:0::/:/bin/sh\n"
        );
        assert_eq!(fs::read("/etc/passwd").expect("host passwd"), host_passwd);

        // A directory replaced by a link to the host, then written through.
        let (_dir, result) = import_layers(vec![
            build(|b| {
                b.dir("d", 0o755)?;
                b.file("d/kept", b"1", 0o644).map(drop)
            }),
            build(|b| {
                b.symlink("d", &target)?;
                b.file("d/evil", b"x", 0o644).map(drop)
            }),
        ]);
        sentinel.assert_unchanged("a directory replaced by a link");
        let err = result.expect_err("a write through a link to nowhere is refused");
        assert!(
            err.to_string()
                .contains("symbolic link to a missing directory"),
            "{err}"
        );

        // Hard links to host files: absolute (means the image's path) and climbing.
        let (_dir, result) = import_layers(vec![build(|b| {
            b.hard_link("h", &format!("{target}/important")).map(drop)
        })]);
        sentinel.assert_unchanged("an absolute hard link");
        let err = result.expect_err("the image has no such file to link to");
        assert!(err.to_string().contains("No such file"), "{err}");
        // Contents alike would not show a link: the host file must have no second name.
        let links = std::os::unix::fs::MetadataExt::nlink(
            &fs::metadata(sentinel.dir.path().join("important")).expect("sentinel"),
        );
        assert_eq!(links, 1, "a hard link to the host's file was made");
        let (_dir, result) = import_layers(vec![build(|b| {
            b.raw(
                tar::EntryType::Link,
                "h",
                Some("../../../../etc/passwd"),
                b"",
            )
            .map(drop)
        })]);
        let err = result.expect_err("a climbing hard link");
        assert!(
            err.to_string().contains("hard link out of the root"),
            "{err}"
        );

        // Names that climb.
        let (_dir, result) = import_layers(vec![build(|b| {
            b.raw(
                tar::EntryType::Regular,
                "../../../../../../../../../../../../tmp/keel-escaped",
                None,
                b"x",
            )
            .map(drop)
        })]);
        let err = result.expect_err("a climbing name");
        assert!(err.to_string().contains("climbs out"), "{err}");
        assert!(!Path::new("/tmp/keel-escaped").exists());

        // Whiteouts of the directory itself or of its parent.
        for name in ["sub/.wh..", "sub/.wh..."] {
            let (_dir, result) = import_layers(vec![
                build(|b| b.file("sub/kept", b"1", 0o644).map(drop)),
                build(|b| b.file(name, b"", 0o644).map(drop)),
            ]);
            let err = result.expect_err(name);
            assert!(
                err.to_string().contains("a whiteout of no file"),
                "{name}: {err}"
            );
        }

        // Device nodes are not created.
        let (_dir, result) = import_layers(vec![build(|b| {
            b.raw(tar::EntryType::Char, "dev-mem", None, b"")?;
            b.raw(tar::EntryType::Block, "disk", None, b"")?;
            b.file("ok", b"1", 0o644).map(drop)
        })]);
        let image = result.expect("devices are skipped");
        assert!(!image.rootfs.join("dev-mem").exists());
        assert!(!image.rootfs.join("disk").exists());
        assert!(image.rootfs.join("ok").exists());
        sentinel.assert_unchanged("all cases");
    }

    #[test]
    fn links_and_types_replace_each_other_inside_the_image() {
        let (_dir, result) = import_layers(vec![
            build(|b| {
                b.dir("a", 0o755)?;
                b.file("a/f", b"1", 0o4755)?;
                b.file("b", b"2", 0o644)?;
                b.hard_link("c", "b").map(drop)
            }),
            build(|b| {
                b.file("a", b"now a file", 0o644)?;
                b.dir("b", 0o700).map(drop)
            }),
        ]);
        let image = result.expect("import");
        assert_eq!(
            fs::read(image.rootfs.join("a")).expect("file"),
            b"now a file"
        );
        assert!(image.rootfs.join("b").is_dir());
        assert_eq!(
            fs::read(image.rootfs.join("c")).expect("hard link kept"),
            b"2"
        );
    }
}
