//! The manifest directory: every `*.yaml`, `*.yml` file in it, read as Kubernetes objects.
//!
//! A file that fails to parse keeps contributing the objects of its last good version: an
//! operator's typo must never withdraw a service from the datapath. A file that disappears
//! withdraws its objects.

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
};

use keel_api::{parse_manifests_with_warnings, EndpointSlice, ManifestError, Object, Pod, Service};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read manifest directory {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
}

/// A file that was rejected, and why.
#[derive(Debug, Error)]
pub enum FileError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: io::Error },
    #[error("{file}: {source}")]
    Parse {
        file: PathBuf,
        source: ManifestError,
    },
}

/// The objects of every file, as last read successfully.
#[derive(Debug, Default)]
pub struct ManifestDir {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileObjects>,
    /// The current error of each rejected file, so that a file is reported once per new
    /// problem rather than on every reload.
    rejected: BTreeMap<PathBuf, String>,
    /// A hash of each file's text as last read: an unchanged file is not parsed again, so a
    /// change to one file of many costs one parse. (Content, not mtime: two writes within one
    /// timestamp tick must not be missed.)
    hashes: BTreeMap<PathBuf, u64>,
}

/// The objects of one file as last read successfully.
#[derive(Debug)]
struct FileObjects {
    objects: Vec<Object>,
    /// Where its Services with a selector are: the node resolves those against its pods on
    /// every pass, and should not walk every Service of every file to find them.
    selector_services: Vec<usize>,
}

impl FileObjects {
    fn new(objects: Vec<Object>) -> Self {
        let selector_services = objects
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o, Object::Service(s) if !s.spec.selector.is_empty()))
            .map(|(i, _)| i)
            .collect();
        Self {
            objects,
            selector_services,
        }
    }
}

/// The outcome of a reload.
#[derive(Debug, Default)]
pub struct Reload {
    /// Files rejected for a reason not reported before.
    pub new_errors: Vec<FileError>,
    /// Files whose last good version is in effect because the current one is invalid.
    pub rejected_files: usize,
    /// Fields ignored in the files read this time (each file's are reported when it changes).
    pub warnings: Vec<(PathBuf, keel_api::Warning)>,
    /// Files whose objects may have changed: read anew, or gone. The change tracker is given
    /// these alone, so one edited file of many costs one file.
    pub changed_files: Vec<PathBuf>,
}

impl FileError {
    fn file(&self) -> &Path {
        match self {
            FileError::Read { file, .. } | FileError::Parse { file, .. } => file,
        }
    }
}

impl ManifestDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            files: BTreeMap::new(),
            rejected: BTreeMap::new(),
            hashes: BTreeMap::new(),
        }
    }

    /// Re-reads the directory. Rejected files keep their previous objects in effect.
    pub fn reload(&mut self) -> Result<Reload, LoadError> {
        let listing = fs::read_dir(&self.dir).map_err(|source| LoadError::Dir {
            dir: self.dir.clone(),
            source,
        })?;
        let mut present = Vec::new();
        for entry in listing.flatten() {
            let path = entry.path();
            if is_manifest(&path) {
                present.push(path);
            }
        }
        let present: std::collections::BTreeSet<PathBuf> = present.into_iter().collect();
        let mut reload = Reload::default();
        self.files.retain(|file, _| {
            let kept = present.contains(file);
            if !kept {
                reload.changed_files.push(file.clone());
            }
            kept
        });
        self.rejected.retain(|file, _| present.contains(file));
        self.hashes.retain(|file, _| present.contains(file));

        for file in present {
            let text = match fs::read_to_string(&file) {
                Ok(text) => text,
                Err(source) => {
                    self.hashes.remove(&file);
                    let err = FileError::Read {
                        file: file.clone(),
                        source,
                    };
                    if self.rejected.get(&file) != Some(&err.to_string()) {
                        self.rejected.insert(file, err.to_string());
                        reload.new_errors.push(err);
                    }
                    continue;
                }
            };
            let hash = keel_host::hash::fnv1a(text.as_bytes(), 0);
            if self.hashes.get(&file) == Some(&hash) {
                continue; // unchanged: its objects (or its rejection) stand
            }
            self.hashes.insert(file.clone(), hash);
            match parse_manifests_with_warnings(&text).map_err(|source| FileError::Parse {
                file: file.clone(),
                source,
            }) {
                Ok((objects, warnings)) => {
                    reload
                        .warnings
                        .extend(warnings.into_iter().map(|w| (file.clone(), w)));
                    self.rejected.remove(&file);
                    reload.changed_files.push(file.clone());
                    self.files.insert(file, FileObjects::new(objects));
                }
                Err(err) => {
                    let message = err.to_string();
                    if self.rejected.get(err.file()) != Some(&message) {
                        self.rejected.insert(err.file().to_owned(), message);
                        reload.new_errors.push(err);
                    }
                }
            }
        }
        reload.rejected_files = self.rejected.len();
        Ok(reload)
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.objects().filter_map(|o| match o {
            Object::Service(s) => Some(s),
            _ => None,
        })
    }

    /// The Services with a selector, in file order.
    pub fn selector_services(&self) -> impl Iterator<Item = &Service> {
        self.files.values().flat_map(|file| {
            file.selector_services
                .iter()
                .filter_map(|i| match file.objects.get(*i) {
                    Some(Object::Service(s)) => Some(s),
                    _ => None,
                })
        })
    }

    /// The Services and EndpointSlices of one file (none for a file that is gone).
    pub fn file_services_and_slices(&self, file: &Path) -> (Vec<Service>, Vec<EndpointSlice>) {
        let (mut services, mut slices) = (Vec::new(), Vec::new());
        for object in self.files.get(file).into_iter().flat_map(|f| &f.objects) {
            match object {
                Object::Service(service) => services.push(service.clone()),
                Object::EndpointSlice(slice) => slices.push(slice.clone()),
                Object::Pod(_) => {}
            }
        }
        (services, slices)
    }

    /// Every pod, with the file it came from.
    pub fn pods(&self) -> impl Iterator<Item = (&Path, &Pod)> {
        self.files.iter().flat_map(|(file, objects)| {
            objects.objects.iter().filter_map(move |o| match o {
                Object::Pod(pod) => Some((file.as_path(), pod.as_ref())),
                _ => None,
            })
        })
    }

    fn objects(&self) -> impl Iterator<Item = &Object> {
        self.files.values().flat_map(|f| &f.objects)
    }
}

/// Editors' swap and backup files (`.x.yaml.swp`, `x.yaml~`) and hidden files are not manifests.
fn is_manifest(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml")) && path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n";

    #[test]
    fn a_broken_file_keeps_its_last_good_objects() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("web.yaml");
        fs::write(&file, SERVICE)?;
        fs::write(dir.path().join(".web.yaml.swp"), "garbage: [")?;
        let mut manifests = ManifestDir::new(dir.path());
        let first = manifests.reload()?;
        assert!(first.new_errors.is_empty());
        assert_eq!(first.changed_files, std::slice::from_ref(&file));
        assert_eq!(manifests.services().count(), 1);
        assert_eq!(manifests.selector_services().count(), 0);
        assert_eq!(manifests.file_services_and_slices(&file).0.len(), 1);
        assert!(
            manifests.reload()?.changed_files.is_empty(),
            "an unchanged file is not read anew"
        );

        let broken = SERVICE.replace("ports: [{port: 80}]", "ports: [{port: http}]");
        fs::write(&file, broken)?;
        let reload = manifests.reload()?;
        assert_eq!((reload.new_errors.len(), reload.rejected_files), (1, 1));
        assert!(
            reload.changed_files.is_empty(),
            "a rejected file's objects stand"
        );
        let message = reload.new_errors[0].to_string();
        assert!(
            message.contains("web.yaml") && message.contains("line 6"),
            "{message}"
        );
        assert!(message.contains("spec.ports[0].port"), "{message}");
        assert_eq!(manifests.services().count(), 1, "last good state kept");
        let again = manifests.reload()?;
        assert_eq!(
            (again.new_errors.len(), again.rejected_files),
            (0, 1),
            "reported once"
        );

        fs::remove_file(&file)?;
        let reload = manifests.reload()?;
        assert_eq!((reload.new_errors.len(), reload.rejected_files), (0, 0));
        assert_eq!(
            reload.changed_files,
            std::slice::from_ref(&file),
            "a removed file changed"
        );
        assert_eq!(manifests.file_services_and_slices(&file).0.len(), 0);
        assert_eq!(
            manifests.services().count(),
            0,
            "a removed file withdraws its objects"
        );
        Ok(())
    }

    #[test]
    fn selector_services_follow_their_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let selected = SERVICE.replace("spec:\n", "spec:\n  selector: {app: web}\n");
        let api = selected.replace("name: web", "name: api");
        fs::write(
            dir.path().join("a.yaml"),
            format!("{SERVICE}---\n{selected}"),
        )?;
        fs::write(dir.path().join("b.yaml"), &api)?;
        let mut manifests = ManifestDir::new(dir.path());
        manifests.reload()?;
        let names = |m: &ManifestDir| -> Vec<String> {
            m.selector_services()
                .map(|s| s.metadata.name.clone())
                .collect()
        };
        // `a.yaml` holds `web` twice; only the second has a selector. File order, then position.
        assert_eq!(names(&manifests), ["web", "api"]);
        assert_eq!(manifests.services().count(), 3);
        fs::write(dir.path().join("a.yaml"), SERVICE)?;
        manifests.reload()?;
        assert_eq!(names(&manifests), ["api"]);
        fs::remove_file(dir.path().join("b.yaml"))?;
        manifests.reload()?;
        assert!(names(&manifests).is_empty());
        Ok(())
    }

    #[test]
    fn a_rewrite_of_the_same_size_in_the_same_instant_is_seen(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("web.yaml");
        let mut manifests = ManifestDir::new(dir.path());
        for port in [81, 82, 83] {
            fs::write(&file, SERVICE.replace("port: 80", &format!("port: {port}")))?;
            manifests.reload()?;
            let ports: Vec<u16> = manifests
                .services()
                .map(|s| s.spec.ports[0].port.get())
                .collect();
            assert_eq!(ports, [port]);
        }
        Ok(())
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let mut manifests = ManifestDir::new("/nonexistent/keel/manifests");
        assert!(matches!(manifests.reload(), Err(LoadError::Dir { .. })));
    }
}
