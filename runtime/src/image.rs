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

mod layer;

use layer::{apply_layer, Skipped};

#[cfg(test)]
mod tests;
