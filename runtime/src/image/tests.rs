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

/// A host directory each hostile image aims at, with what it must still hold after.
struct Sentinel {
    dir: tempfile::TempDir,
    before: BTreeMap<PathBuf, keel_lab::tree::Entry>,
}

impl Sentinel {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("important"), "host data").expect("write");
        fs::create_dir(dir.path().join("sub")).expect("dir");
        fs::write(dir.path().join("sub/file"), "more host data").expect("write");
        let before = keel_lab::tree::snapshot(dir.path()).expect("sentinel");
        Self { dir, before }
    }

    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn assert_unchanged(&self, case: &str) {
        assert_eq!(
            keel_lab::tree::snapshot(self.dir.path()).expect("sentinel"),
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
