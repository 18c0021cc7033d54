//! A directory tree as data: what a test compares before and after, to show that a host
//! directory a hostile image or container aimed at is exactly as it was.

use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// One entry of a [`snapshot`]: what it holds (a file's bytes, a link's target, nothing for a
/// directory) and its link count (a new hard link to a file leaves its bytes alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub content: Vec<u8>,
    pub links: u64,
}

/// Every entry below `dir`, links not followed.
pub fn snapshot(dir: &Path) -> io::Result<BTreeMap<PathBuf, Entry>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next)? {
            let path = entry?.path();
            let meta = fs::symlink_metadata(&path)?;
            let (kind, content) = if meta.is_dir() {
                pending.push(path.clone());
                ("directory", Vec::new())
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&path)?;
                ("link", target.into_os_string().into_encoded_bytes())
            } else {
                ("file", fs::read(&path)?)
            };
            let links = meta.nlink();
            found.insert(
                path,
                Entry {
                    kind,
                    content,
                    links,
                },
            );
        }
    }
    Ok(found)
}
