//! Unpacking one layer over an image's root: tar entries, whiteouts, opaque directories, hard
//! links and type replacements, every one through descriptors resolved inside the root.

use super::*;

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
pub(super) fn apply_layer(
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
            let opened = root.open_at(parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY, false);
            let Some(dir) = inroot::if_present(opened).map_err(at)? else {
                continue;
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
            let Some((dir, _)) =
                inroot::if_present(root.parent_and_name(&path, false)).map_err(at)?
            else {
                continue;
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
                chown_entry(dir.as_fd(), &name, owner).map_err(errno)?;
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
                chown_entry(dir.as_fd(), &name, owner).map_err(errno)?;
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

/// The owner of an entry that cannot be opened (a link, a FIFO), never following it.
fn chown_entry(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &OsStr,
    owner: (u32, u32),
) -> nix::Result<()> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(owner.0)),
        Some(Gid::from_raw(owner.1)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
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
