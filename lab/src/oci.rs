//! Writing container images: an OCI image layout, a `docker save` archive, and the small
//! busybox image keel's tests and demo run (built from Debian's busybox-static, so no
//! registry is ever contacted).

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::Command,
};

use sha2::{Digest, Sha256};

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// The name the busybox image is imported under.
pub const BUSYBOX_IMAGE: &str = "keel.local/busybox:latest";

/// Builds one uncompressed layer tar in memory.
pub struct LayerBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<&mut Self> {
        let mut header = Self::header(tar::EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut header, format!("{path}/"), io::empty())?;
        Ok(self)
    }

    pub fn file(&mut self, path: &str, content: &[u8], mode: u32) -> io::Result<&mut Self> {
        let mut header = Self::header(tar::EntryType::Regular, mode, content.len() as u64);
        self.builder.append_data(&mut header, path, content)?;
        Ok(self)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<&mut Self> {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut header, path, target)?;
        Ok(self)
    }

    pub fn hard_link(&mut self, path: &str, target: &str) -> io::Result<&mut Self> {
        let mut header = Self::header(tar::EntryType::Link, 0o644, 0);
        self.builder.append_link(&mut header, path, target)?;
        Ok(self)
    }

    /// An entry written as hostile archives write it: the name (and link target) stored
    /// byte for byte, `..` included, which the tar crate's checked setters refuse.
    pub fn raw(
        &mut self,
        kind: tar::EntryType,
        name: &str,
        link: Option<&str>,
        content: &[u8],
    ) -> io::Result<&mut Self> {
        let mut header = Self::header(kind, 0o644, content.len() as u64);
        let gnu = header
            .as_gnu_mut()
            .ok_or_else(|| io::Error::other("not a GNU header"))?;
        if name.len() >= gnu.name.len() {
            return Err(io::Error::other("raw names must fit the header"));
        }
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            gnu.linkname = [0; 100];
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        self.builder.append(&header, content)?;
        Ok(self)
    }

    pub fn finish(self) -> io::Result<Vec<u8>> {
        self.builder.into_inner()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The config blob: the given `config` section plus the layers' diff ids.
fn config_blob(layers: &[Vec<u8>], config: &serde_json::Value) -> io::Result<Vec<u8>> {
    let mut blob = config.clone();
    blob["architecture"] = "amd64".into();
    blob["os"] = "linux".into();
    blob["rootfs"] = serde_json::json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|l| format!("sha256:{}", sha256_hex(l))).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&blob).map_err(io::Error::other)
}

/// Writes an OCI image layout directory holding one image named `name`. `config` is the
/// config blob's JSON (with a `config` object: `Cmd`, `Env`, …).
pub fn write_layout(
    dir: &Path,
    name: &str,
    layers: &[Vec<u8>],
    config: &serde_json::Value,
) -> io::Result<()> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let put = |bytes: &[u8]| -> io::Result<(String, usize)> {
        let digest = sha256_hex(bytes);
        fs::write(blobs.join(&digest), bytes)?;
        Ok((format!("sha256:{digest}"), bytes.len()))
    };
    let (config_digest, config_size) = put(&config_blob(layers, config)?)?;
    let mut layer_descriptors = Vec::new();
    for layer in layers {
        let (digest, size) = put(layer)?;
        layer_descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest,
            "size": size,
        }));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": layer_descriptors,
    });
    let (manifest_digest, manifest_size) =
        put(&serde_json::to_vec(&manifest).map_err(io::Error::other)?)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": name},
        }],
    });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).map_err(io::Error::other)?,
    )?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(())
}

/// Writes a `docker save` archive (a tar with manifest.json) holding one image tagged `name`.
pub fn write_docker_archive(
    path: &Path,
    name: &str,
    layers: &[Vec<u8>],
    config: &serde_json::Value,
) -> io::Result<()> {
    let mut archive = LayerBuilder::new();
    let config = config_blob(layers, config)?;
    let config_name = format!("{}.json", sha256_hex(&config));
    archive.file(&config_name, &config, 0o644)?;
    let mut layer_names = Vec::new();
    for layer in layers {
        let dir = sha256_hex(layer);
        archive.dir(&dir, 0o755)?;
        let name = format!("{dir}/layer.tar");
        archive.file(&name, layer, 0o644)?;
        layer_names.push(name);
    }
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [name],
        "Layers": layer_names,
    }]);
    archive.file(
        "manifest.json",
        &serde_json::to_vec(&manifest).map_err(io::Error::other)?,
        0o644,
    )?;
    fs::write(path, archive.finish()?)
}

/// The busybox layer: the static binary, a link per applet, and the few files a shell
/// expects (/etc/passwd, /etc/group, /tmp).
pub fn busybox_layer() -> io::Result<Vec<u8>> {
    let binary = fs::read(BUSYBOX).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{BUSYBOX}: {e} (install busybox-static: cargo xtask setup)"),
        )
    })?;
    let list = Command::new(BUSYBOX).arg("--list").output()?;
    if !list.status.success() {
        return Err(io::Error::other("busybox --list failed"));
    }
    let mut layer = LayerBuilder::new();
    for dir in ["bin", "etc", "root", "var", "usr", "usr/bin"] {
        layer.dir(dir, 0o755)?;
    }
    layer.dir("tmp", 0o1777)?;
    layer.file("bin/busybox", &binary, 0o755)?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            layer.symlink(&format!("bin/{applet}"), "busybox")?;
        }
    }
    layer.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    )?;
    layer.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)?;
    layer.finish()
}

/// Writes the busybox image as an OCI layout at `dir` (replacing what was there).
pub fn write_busybox_layout(dir: &Path) -> io::Result<PathBuf> {
    let _ = fs::remove_dir_all(dir);
    let config = serde_json::json!({
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    });
    write_layout(dir, BUSYBOX_IMAGE, &[busybox_layer()?], &config)?;
    Ok(dir.to_owned())
}
