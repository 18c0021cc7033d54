//! The real maps: writes for the [`MapWriter`](super::writer::MapWriter), reads for adoption and introspection.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
};

use aya::{
    maps::{HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues},
    Ebpf,
};
use keel_common::{
    AffinityMatchKey, Backend, MaglevChunk, MaglevKey, ServiceKey, ServiceStats, ServiceValue,
    AFFINITY_MATCH_MAP, BACKEND_MAP, MAGLEV_MAP, PROTO_TCP, PROTO_UDP, SERVICE_MAP, STATS_MAP,
};

use super::{writer::MapContents, LoadError, ServiceMaps};
use crate::ProxyError;

pub struct KernelMaps {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: HashMap<MapData, u32, Backend>,
    stats: PerCpuArray<MapData, ServiceStats>,
    affinity_matches: HashMap<MapData, AffinityMatchKey, u32>,
    maglev: HashMap<MapData, MaglevKey, MaglevChunk>,
}

impl KernelMaps {
    /// Takes the maps out of a loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, LoadError> {
        Ok(Self {
            services: take(ebpf, SERVICE_MAP)?,
            backends: take(ebpf, BACKEND_MAP)?,
            stats: take(ebpf, STATS_MAP)?,
            affinity_matches: take(ebpf, AFFINITY_MATCH_MAP)?,
            maglev: take(ebpf, MAGLEV_MAP)?,
        })
    }

    /// Opens the maps pinned in `bpf_dir` (for reading them without loading anything).
    pub fn open_pinned(bpf_dir: &Path) -> Result<Self, ProxyError> {
        Ok(Self {
            services: open(bpf_dir, SERVICE_MAP, Map::HashMap)?,
            backends: open(bpf_dir, BACKEND_MAP, Map::HashMap)?,
            stats: open(bpf_dir, STATS_MAP, Map::PerCpuArray)?,
            affinity_matches: open(bpf_dir, AFFINITY_MATCH_MAP, Map::HashMap)?,
            maglev: open(bpf_dir, MAGLEV_MAP, Map::HashMap)?,
        })
    }

    /// The counters of a service id, summed over CPUs.
    pub fn stats(&self, service_id: u32) -> Result<ServiceStats, ProxyError> {
        let values = self
            .stats
            .get(&service_id, 0)
            .map_err(map_error(STATS_MAP, "lookup"))?;
        Ok(values
            .iter()
            .fold(ServiceStats::default(), |sum, cpu| ServiceStats {
                connections: sum.connections + cpu.connections,
                refused: sum.refused + cpu.refused,
                packets: sum.packets + cpu.packets,
                bytes: sum.bytes + cpu.bytes,
            }))
    }
}

fn take<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, LoadError>
where
    M: TryFrom<Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(LoadError::Missing { kind: "map", name })?;
    M::try_from(map).map_err(|source| LoadError::Map { name, source })
}

/// Opens a pinned map as the map type `kind` (which the pin does not record for aya).
fn open<M>(dir: &Path, name: &'static str, kind: fn(MapData) -> Map) -> Result<M, ProxyError>
where
    M: TryFrom<Map, Error = MapError>,
{
    let data = MapData::from_pin(dir.join(name)).map_err(map_error(name, "open pinned"))?;
    M::try_from(kind(data)).map_err(map_error(name, "open pinned"))
}

fn map_error(map: &'static str, operation: &'static str) -> impl FnOnce(MapError) -> ProxyError {
    move |source| ProxyError::Map {
        map,
        operation,
        source,
    }
}

/// Deleting what is already gone is success: it keeps every write idempotent.
fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(err)) if err.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(())
        }
        other => other,
    }
}

impl ServiceMaps for KernelMaps {
    fn read_all(&self) -> Result<MapContents, ProxyError> {
        let services = self
            .services
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(SERVICE_MAP, "iterate"))?;
        let backends = self
            .backends
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(BACKEND_MAP, "iterate"))?;
        let affinity_matches = self
            .affinity_matches
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(AFFINITY_MATCH_MAP, "iterate"))?;
        let maglev_chunks = self
            .maglev
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(MAGLEV_MAP, "iterate"))?;
        Ok(MapContents {
            services,
            backends,
            affinity_matches,
            maglev_chunks,
        })
    }

    fn reset_stats(&mut self, service_id: u32) -> Result<(), ProxyError> {
        let cpus = aya::util::nr_cpus().map_err(|(path, source)| ProxyError::Map {
            map: STATS_MAP,
            operation: "count CPUs",
            source: MapError::SyscallError(aya::sys::SyscallError {
                call: path,
                io_error: source,
            }),
        })?;
        let zeros =
            PerCpuValues::try_from(vec![ServiceStats::default(); cpus]).map_err(|source| {
                ProxyError::Map {
                    map: STATS_MAP,
                    operation: "reset",
                    source: MapError::SyscallError(aya::sys::SyscallError {
                        call: "reset",
                        io_error: source,
                    }),
                }
            })?;
        self.stats
            .set(service_id, zeros, 0)
            .map_err(map_error(STATS_MAP, "reset"))
    }

    fn set_maglev_chunk(&mut self, key: &MaglevKey, chunk: &MaglevChunk) -> Result<(), ProxyError> {
        self.maglev
            .insert(key, chunk, 0)
            .map_err(map_error(MAGLEV_MAP, "insert"))
    }

    fn remove_maglev_chunk(&mut self, key: &MaglevKey) -> Result<(), ProxyError> {
        ignore_missing(self.maglev.remove(key)).map_err(map_error(MAGLEV_MAP, "remove"))
    }

    fn set_affinity_match(&mut self, key: &AffinityMatchKey) -> Result<(), ProxyError> {
        self.affinity_matches
            .insert(key, 1, 0)
            .map_err(map_error(AFFINITY_MATCH_MAP, "insert"))
    }

    fn remove_affinity_match(&mut self, key: &AffinityMatchKey) -> Result<(), ProxyError> {
        ignore_missing(self.affinity_matches.remove(key))
            .map_err(map_error(AFFINITY_MATCH_MAP, "remove"))
    }

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

/// One service port as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServiceDump {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: &'static str,
    pub service_id: u32,
    /// Backends in slot order. A slot whose entry or backend is missing shows as `None`.
    pub backends: Vec<Option<SocketAddrV4>>,
    pub connections: u64,
    pub refused: u64,
    /// Packets and bytes the per-packet path translated (client → service).
    pub packets: u64,
    pub bytes: u64,
}

/// Reads every service port from the maps pinned in `bpf_dir`, sorted by frontend.
pub fn read_services(bpf_dir: &Path) -> Result<Vec<ServiceDump>, ProxyError> {
    let maps = KernelMaps::open_pinned(bpf_dir)?;
    let contents = maps.read_all()?;
    let entries: std::collections::BTreeMap<ServiceKey, ServiceValue> =
        contents.services.into_iter().collect();
    let backends: std::collections::HashMap<u32, Backend> = contents.backends.into_iter().collect();
    let mut dumps = Vec::new();
    for (key, head) in entries.iter().filter(|(k, _)| k.slot == 0) {
        let slots = (1..=head.count)
            .map(|slot| {
                let slot = u16::try_from(slot).ok()?;
                let entry = entries.get(&ServiceKey { slot, ..*key })?;
                let backend = backends.get(&entry.backend_id)?;
                Some(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(backend.addr)),
                    u16::from_be(backend.port),
                ))
            })
            .collect();
        let stats = maps.stats(head.service_id).unwrap_or_default();
        dumps.push(ServiceDump {
            vip: Ipv4Addr::from(u32::from_be(key.vip)),
            port: u16::from_be(key.port),
            protocol: match key.proto {
                PROTO_TCP => "TCP",
                PROTO_UDP => "UDP",
                _ => "?",
            },
            service_id: head.service_id,
            backends: slots,
            connections: stats.connections,
            refused: stats.refused,
            packets: stats.packets,
            bytes: stats.bytes,
        });
    }
    dumps.sort_by_key(|d| (d.vip, d.port, d.protocol));
    Ok(dumps)
}
