//! The workspace's module graph, for the rule of ARCHITECTURE.md: no module uses a module that
//! uses it, except a module and its own submodules (one unit). A test walks every crate, so
//! a cycle fails `cargo xtask test` the day it is written.
//!
//! "Uses" is read off the source, without compiling: `crate::a::b`, `super::x`, `self::y`
//! paths (in `use` declarations or inline), the names inside `use crate::{…}` groups, `use
//! super::*` (the parent), and a child module named in its parent (`child::item`). Test
//! modules (`tests.rs`, inline `mod tests`) are left out: they use their parent and nothing
//! uses them.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// A module: its path inside its crate (`["worker", "start"]`); the crate root is `[]`.
type ModPath = Vec<String>;

/// The crates checked, by their source directories.
const CRATES: &[&str] = &[
    "api/src",
    "host/src",
    "bpf/src",
    "proxy/src",
    "runtime/src",
    "node-daemon/src",
    "control-plane/src",
    "control-plane/store/src",
    "control-plane/apiserver/src",
    "control-plane/strategic-merge-patch/src",
    "control-plane/scheduler/src",
    "control-plane/controllers/src",
    "control-plane/keelctl/src",
    "lab/src",
    "tests/src",
    "xtask/src",
];

fn mod_path(src: &Path, file: &Path) -> ModPath {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: ModPath = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifiers after `prefix` at every place it occurs: `crate::a::b` → `[a, b]`.
fn paths_after<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = Vec<&'a str>> + 'a {
    text.match_indices(prefix).filter_map(move |(at, _)| {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return None; // `mycrate::`, not `crate::`
        }
        let mut segments = Vec::new();
        let mut rest = &text[at + prefix.len()..];
        loop {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            segments.push(&rest[..end]);
            match rest[end..].strip_prefix("::") {
                Some(next) => rest = next,
                None => break,
            }
        }
        Some(segments)
    })
}

/// The modules each module of one crate uses.
fn crate_graph(src: &Path) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<ModPath, PathBuf> = files
        .iter()
        .map(|f| (mod_path(src, f), f.clone()))
        .collect();
    // The longest prefix of `path` that is a module of this crate.
    let resolve = |path: &[String]| -> Option<ModPath> {
        (1..=path.len())
            .rev()
            .map(|k| path[..k].to_vec())
            .find(|p| modules.contains_key(p))
    };
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        if module.last().is_some_and(|m| m == "tests") {
            continue;
        }
        let mut text = fs::read_to_string(file).unwrap_or_default();
        if let Some(at) = text.find("#[cfg(test)]\nmod tests {") {
            text.truncate(at);
        }
        let parent: ModPath = module[..module.len().saturating_sub(1)].to_vec();
        let mut uses = BTreeSet::new();
        for (prefix, base) in [
            ("crate::", ModPath::new()),
            ("super::", parent.clone()),
            ("self::", module.clone()),
        ] {
            for segments in paths_after(&text, prefix) {
                let mut full = base.clone();
                full.extend(segments.iter().map(|s| (*s).to_owned()));
                if let Some(target) = resolve(&full) {
                    uses.insert(target);
                }
            }
            // `use crate::{a, b::c}`: the group's first names.
            for (at, _) in text.match_indices(&format!("use {prefix}{{")) {
                let group = &text[at..];
                let group = &group[..group.find("};").unwrap_or(group.len())];
                for name in group
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .filter(|n| !n.is_empty())
                {
                    let mut full = base.clone();
                    full.push(name.to_owned());
                    if modules.contains_key(&full) {
                        uses.insert(full);
                    }
                }
            }
        }
        if text.contains("use super::*") && !module.is_empty() {
            uses.insert(parent.clone());
        }
        for child in modules.keys().filter(|c| {
            c.len() == module.len() + 1
                && c.starts_with(module)
                && c.last() != Some(&"tests".into())
        }) {
            if let Some(name) = child.last() {
                if text.contains(&format!("{name}::")) {
                    uses.insert(child.clone());
                }
            }
        }
        uses.remove(module);
        graph.insert(module.clone(), uses);
    }
    graph
}

/// Pairs of modules that use each other, neither inside the other.
pub fn mutual_uses(workspace: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for src in CRATES {
        let graph = crate_graph(&workspace.join(src));
        for (a, uses) in &graph {
            for b in uses {
                let related = a.starts_with(b) || b.starts_with(a);
                if a < b && !related && graph.get(b).is_some_and(|u| u.contains(a)) {
                    found.push(format!("{src}: {} <-> {}", a.join("::"), b.join("::")));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_module_uses_a_module_that_uses_it() {
        let workspace = crate::workspace_root();
        let graph = crate_graph(&workspace.join("runtime/src"));
        // The checker sees real edges (else it would pass on anything).
        let rootfs = vec!["rootfs".to_owned()];
        assert!(
            graph
                .get(&rootfs)
                .is_some_and(|u| u.contains(&vec!["spec".to_owned()])),
            "the graph misses rootfs -> spec: {:?}",
            graph.get(&rootfs)
        );
        let cycles = mutual_uses(&workspace);
        assert!(
            cycles.is_empty(),
            "modules that use each other: {cycles:#?}"
        );
    }

    #[test]
    fn a_cycle_between_siblings_is_found() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let src = dir.path().join("api/src");
        fs::create_dir_all(&src)?;
        fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n")?;
        fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n")?;
        fs::write(src.join("b.rs"), "use super::{a::A};\npub struct B;\n")?;
        assert_eq!(mutual_uses(dir.path()), ["api/src: a <-> b"]);
        Ok(())
    }
}
