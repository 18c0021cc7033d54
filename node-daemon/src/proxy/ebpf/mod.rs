//! The eBPF proxy: socket-level translation by keel's own kernel programs.
//!
//! Loads the embedded object, attaches `cgroup/connect4` to keel's cgroup, and keeps the
//! service and backend maps equal to the table through a [`MapWriter`].

mod writer;

use std::{fs::File, path::Path};

use aya::{
    maps::{HashMap, MapData},
    programs::{CgroupAttachMode, CgroupSockAddr},
    Ebpf,
};
use keel_common::{Backend, ServiceKey, ServiceValue, BACKEND_MAP, PROG_CONNECT4, SERVICE_MAP};
use thiserror::Error;
pub use writer::{MapWriter, ServiceMaps};

use crate::{
    proxy::{ProxyError, ServiceProxy, SyncStats},
    service_table::ServiceTable,
};

/// The kernel programs, built by node-daemon/build.rs from ebpf/.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/keel.bpf.o"));

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("loading the eBPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("the eBPF object has no {kind} named {name}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot open cgroup {path}: {source}")]
    Cgroup {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct EbpfProxy {
    writer: MapWriter<KernelMaps>,
    /// Owns the loaded programs and their links: dropping it detaches them.
    _ebpf: Ebpf,
}

impl EbpfProxy {
    /// Loads the programs and attaches them to the cgroup at `cgroup`.
    pub fn load(cgroup: &Path) -> Result<Self, LoadError> {
        let mut ebpf = Ebpf::load(PROGRAMS)?;
        let cgroup_file = File::open(cgroup).map_err(|source| LoadError::Cgroup {
            path: cgroup.display().to_string(),
            source,
        })?;
        let program: &mut CgroupSockAddr = ebpf
            .program_mut(PROG_CONNECT4)
            .ok_or(LoadError::Missing {
                kind: "program",
                name: PROG_CONNECT4,
            })?
            .try_into()
            .map_err(|source| LoadError::Program {
                name: PROG_CONNECT4,
                source,
            })?;
        program.load().map_err(|source| LoadError::Program {
            name: PROG_CONNECT4,
            source,
        })?;
        // On kernels with BPF links (5.7+, which keel needs anyway for bpf_set_retval) aya
        // attaches through a link, and links always coexist with other programs on the cgroup;
        // the kernel rejects any attach flag on them, so no mode is asked for.
        program
            .attach(&cgroup_file, CgroupAttachMode::Single)
            .map_err(|source| LoadError::Program {
                name: PROG_CONNECT4,
                source,
            })?;
        let maps = KernelMaps {
            services: take_map(&mut ebpf, SERVICE_MAP)?,
            backends: take_map(&mut ebpf, BACKEND_MAP)?,
        };
        Ok(Self {
            writer: MapWriter::new(maps),
            _ebpf: ebpf,
        })
    }
}

fn take_map<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, LoadError> {
    let map = ebpf
        .take_map(name)
        .ok_or(LoadError::Missing { kind: "map", name })?;
    HashMap::try_from(map).map_err(|source| LoadError::Map { name, source })
}

impl ServiceProxy for EbpfProxy {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn sync(&mut self, table: &ServiceTable) -> Result<SyncStats, ProxyError> {
        self.writer.sync(table)
    }
}

/// The real maps.
struct KernelMaps {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: HashMap<MapData, u32, Backend>,
}

fn map_error(
    map: &'static str,
    operation: &'static str,
) -> impl FnOnce(aya::maps::MapError) -> ProxyError {
    move |source| ProxyError::Map {
        map,
        operation,
        source,
    }
}

/// Deleting what is already gone is success: it keeps every write idempotent.
fn ignore_missing(result: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(err))
            if err.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

impl ServiceMaps for KernelMaps {
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), ProxyError> {
        self.backends
            .insert(id, backend, 0)
            .map_err(map_error(BACKEND_MAP, "insert"))
    }

    fn remove_backend(&mut self, id: u32) -> Result<(), ProxyError> {
        ignore_missing(self.backends.remove(&id)).map_err(map_error(BACKEND_MAP, "remove"))
    }

    fn set_service(&mut self, key: &ServiceKey, value: &ServiceValue) -> Result<(), ProxyError> {
        self.services
            .insert(key, value, 0)
            .map_err(map_error(SERVICE_MAP, "insert"))
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), ProxyError> {
        ignore_missing(self.services.remove(key)).map_err(map_error(SERVICE_MAP, "remove"))
    }
}
