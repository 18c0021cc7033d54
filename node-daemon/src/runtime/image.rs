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
    fs::{self, File},
    io::{self, Read, Seek},
    path::{Component, Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::state::{self, StateError};

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
            let config_bytes = fs::read(&manifest.config).map_err(io_error(&manifest.config))?;
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
        for layer in &manifest.layers {
            apply_layer(layer, &rootfs)?;
        }
        state::write_json(&scratch.join("config.json"), &blob.config)?;
        let _ = fs::remove_dir_all(&target);
        fs::rename(&scratch, &target).map_err(io_error(&target))
    }
}

/// One image of an archive: its names, its config blob and its layers in order.
struct Manifest {
    names: Vec<String>,
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
    let path = dir.join("blobs/sha256").join(hex_digest);
    let mut file = File::open(&path).map_err(io_error(&path))?;
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

fn read_json_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ImageError> {
    let text = fs::read(path).map_err(io_error(path))?;
    serde_json::from_slice(&text).map_err(|e| malformed(path, e.to_string()))
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
    let index: Index = read_json_file(&dir.join("index.json"))?;
    let mut manifests = Vec::new();
    for descriptor in index.manifests {
        if descriptor.media_type.ends_with("image.index.v1+json") {
            return Err(malformed(
                &dir.join("index.json"),
                "multi-platform indexes are not supported: export one platform",
            ));
        }
        let manifest: OciManifest = read_json_file(&oci_blob(dir, &descriptor.digest)?)?;
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
    let entries: Vec<Entry> = read_json_file(&path)?;
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
        Ok(dir.join(relative))
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

/// Unpacks one layer (tar, or gzip-compressed tar) over `rootfs`, applying its whiteouts:
/// `.wh.NAME` deletes NAME from the layers below, `.wh..wh..opq` empties its directory of
/// what the layers below put there.
fn apply_layer(layer: &Path, rootfs: &Path) -> Result<(), ImageError> {
    let mut file = File::open(layer).map_err(io_error(layer))?;
    let mut magic = [0u8; 2];
    let gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    file.rewind().map_err(io_error(layer))?;
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let broken = |e: io::Error| malformed(layer, format!("layer: {e}"));
    let mut this_layer = BTreeSet::new();
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let path = clean_path(&entry.path().map_err(broken)?)
            .ok_or_else(|| malformed(layer, "an entry points outside the root file system"))?;
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue; // the root itself
        };
        let parent = path.parent().unwrap_or(Path::new(""));
        if file_name == ".wh..wh..opq" {
            empty_dir_below(&rootfs.join(parent), parent, &this_layer)?;
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(".wh.") {
            remove_any(&rootfs.join(parent).join(hidden))?;
            continue;
        }
        replace_type(&rootfs.join(&path), entry.header().entry_type().is_dir())?;
        if !entry.unpack_in(rootfs).map_err(broken)? {
            return Err(malformed(
                layer,
                format!("{} points outside the root file system", path.display()),
            ));
        }
        this_layer.insert(path);
    }
    Ok(())
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

/// A file replaced by a directory, or the reverse, must go first.
fn replace_type(target: &Path, is_dir: bool) -> Result<(), ImageError> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() && !is_dir => remove_any(target),
        Ok(meta) if !meta.is_dir() && is_dir => remove_any(target),
        _ => Ok(()),
    }
}

fn remove_any(path: &Path) -> Result<(), ImageError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    };
    result.map_err(io_error(path))
}

/// Removes what lower layers put in `dir`, keeping what this layer already unpacked there.
fn empty_dir_below(
    dir: &Path,
    relative: &Path,
    this_layer: &BTreeSet<PathBuf>,
) -> Result<(), ImageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ImageError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        let child = relative.join(entry.file_name());
        if !this_layer.iter().any(|p| p.starts_with(&child)) {
            remove_any(&entry.path())?;
        }
    }
    Ok(())
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
}
