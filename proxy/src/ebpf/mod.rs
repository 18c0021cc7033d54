//! The eBPF proxy: socket-level translation by keel's own kernel programs.
//!
//! Loads the embedded object with its maps pinned under the BPF directory (adopting the maps a
//! previous daemon pinned there), attaches the socket programs to keel's cgroup through pinned
//! links, and keeps the maps equal to the table through a [`MapWriter`].
//!
//! # Surviving restarts
//! Maps and links live in bpffs, so the datapath keeps working while no daemon runs. A new
//! daemon reuses the pinned maps as they are, attaches its own programs next to the old ones
//! (both translate identically from the same maps), then unpins the old links: at no moment is
//! a connect left untranslated.

pub mod conntrack_gc;
pub mod counters;
pub mod ct_sizing;
mod debug_log;
mod kernel_maps;
pub mod maglev;
pub mod memory;
pub mod monitor;
pub mod pins;
pub mod sizing;
pub mod stale_sockets;
pub mod tc_attach;
mod writer;

use std::{
    fs::File,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::{
    maps::HashMap,
    programs::{links::FdLink, CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType},
    Ebpf, EbpfLoader,
};
use keel_common::{
    monitor::{MONITOR_CONTROL_MAP, MONITOR_EVENTS_MAP},
    SnatConfig, AFFINITY_MAP, AFFINITY_MATCH_MAP, BACKEND_MAP, CT_MAP, CT_SYN_MAP,
    DEBUG_LOG_GLOBAL, MAGLEV_HASH_SEED_GLOBAL, MAGLEV_MAP, NODE_IP_MAP, PROG_TC_EGRESS,
    PROG_TC_INGRESS, REVERSE_MAP, SERVICE_MAP, SNAT_CONFIG_MAP, SOCKET_PROGRAMS, STATS_MAP,
};
pub use kernel_maps::{read_services, KernelMaps, ServiceDump};
use thiserror::Error;
pub use writer::{Limits, MapContents, MapWriter, ServiceMaps};

use crate::{
    service_table::{ServiceTable, TableChanges},
    ProxyError, ServiceProxy, SyncStats,
};

/// The kernel programs, built from ebpf/ by the keel-bpf crate.
static PROGRAMS: &[u8] = keel_bpf::PROXY;

/// The embedded eBPF object, for tests that load its programs on their own (with fresh,
/// unpinned maps) and run them on crafted packets.
pub fn programs() -> &'static [u8] {
    PROGRAMS
}

/// Where and how big.
#[derive(Clone, Debug)]
pub struct EbpfConfig {
    /// The cgroup (v2) the socket programs attach to.
    pub cgroup: PathBuf,
    /// The bpffs directory holding keel's pins.
    pub bpf_dir: PathBuf,
    pub limits: Limits,
    /// Interfaces whose traffic gets per-packet translation (tc ingress DNAT, egress reverse
    /// NAT): the node's uplinks. Empty: socket-level translation only.
    pub tc_interfaces: Vec<String>,
    /// The node's own addresses, where NodePorts answer.
    pub node_ips: Vec<Ipv4Addr>,
    /// Entries per Maglev table (one of [`maglev::SIZES`]).
    pub maglev_size: u32,
    /// Attach the tc programs through tcx where the kernel has it (else, or when false,
    /// through classic tc filters).
    pub enable_tcx: bool,
    /// The seed of the per-packet path's flow hash ([`keel_common::flow_hash`]): the same on
    /// every node, or nodes send one flow to different backends.
    pub maglev_hash_seed: u32,
    /// Services that can have a Maglev table; `None`: see [`sizing::maglev_tables`].
    pub max_maglev_services: Option<u32>,
    /// The conntrack map's size ([`ct_sizing::conntrack_size`]); `None`: the object's
    /// default, or the pinned map's size.
    pub conntrack: Option<ct_sizing::ConntrackSize>,
    /// The programs' `aya-log` debug records, forwarded to `tracing` (the `debug_log` module).
    pub debug_log: bool,
}

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
    #[error(
        "pinned map {name} holds {pinned} entries but {wanted} were asked for; \
         run `node-daemon --cleanup` to drop the old datapath (this interrupts service traffic)"
    )]
    PinnedSize {
        name: &'static str,
        pinned: u32,
        wanted: u32,
    },
    #[error("program {name} on interface {interface}: {source}")]
    Interface {
        name: &'static str,
        interface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot open cgroup {path}: {source}")]
    Cgroup {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("program debug log (--bpf-debug-log): {0}")]
    DebugLog(String),
    #[error(transparent)]
    Pins(#[from] pins::PinError),
    #[error(transparent)]
    Limits(#[from] sizing::LimitsError),
    #[error("adopting the pinned maps: {0}")]
    Adopt(#[from] ProxyError),
}

pub struct EbpfProxy {
    writer: MapWriter<KernelMaps>,
    /// Owns the loaded programs. Their links are pinned, so dropping this does not detach.
    ebpf: Ebpf,
}

impl EbpfProxy {
    pub fn load(config: &EbpfConfig) -> Result<Self, LoadError> {
        let tables = sizing::maglev_tables(
            config.limits,
            config.max_maglev_services,
            config.maglev_size,
        )?;
        let wanted = sizing::maglev_map_entries(tables, config.maglev_size);
        let maglev_entries = match (config.max_maglev_services, pinned_size(config, MAGLEV_MAP)) {
            // Not asked for explicitly: a map a previous daemon pinned (an older default, or
            // another table size) is kept rather than refusing to start; the writer counts
            // with its real size.
            (None, Some(pinned)) if pinned != wanted => {
                tracing::warn!(
                    map = MAGLEV_MAP,
                    pinned,
                    wanted,
                    tables = pinned / sizing::chunks_per_table(config.maglev_size),
                    "keeping the pinned Maglev map's size; `node-daemon --cleanup` resizes it"
                );
                pinned
            }
            _ => wanted,
        };
        let ct_entries = match (config.conntrack, pinned_size(config, CT_MAP)) {
            (None, _) => None,
            // Not asked for explicitly (sized from the node's memory): a pinned map of another
            // size is kept, as the Maglev map is, rather than dropping every tracked flow.
            (Some(size), Some(pinned)) if !size.explicit && pinned != size.entries => {
                tracing::warn!(
                    map = CT_MAP,
                    pinned,
                    wanted = size.entries,
                    "keeping the pinned conntrack map's size; `node-daemon --cleanup` resizes it"
                );
                Some(pinned)
            }
            (Some(size), _) => Some(size.entries),
        };
        pins::prepare_dir(&config.bpf_dir)?;
        let service_entries = config.limits.max_services + config.limits.max_backends;
        let stats_entries = config.limits.max_services + 1;
        let pin = |name: &str| config.bpf_dir.join(name);
        let mut loader = EbpfLoader::new();
        if let Some(entries) = ct_entries {
            loader.map_max_entries(CT_MAP, entries);
        }
        let mut ebpf = loader
            .map_pin_path(SERVICE_MAP, pin(SERVICE_MAP))
            .map_pin_path(BACKEND_MAP, pin(BACKEND_MAP))
            .map_pin_path(STATS_MAP, pin(STATS_MAP))
            .map_pin_path(REVERSE_MAP, pin(REVERSE_MAP))
            .map_pin_path(AFFINITY_MAP, pin(AFFINITY_MAP))
            .map_pin_path(AFFINITY_MATCH_MAP, pin(AFFINITY_MATCH_MAP))
            .map_pin_path(CT_MAP, pin(CT_MAP))
            .map_pin_path(CT_SYN_MAP, pin(CT_SYN_MAP))
            .map_pin_path(MAGLEV_MAP, pin(MAGLEV_MAP))
            .map_pin_path(NODE_IP_MAP, pin(NODE_IP_MAP))
            .map_pin_path(SNAT_CONFIG_MAP, pin(SNAT_CONFIG_MAP))
            // The monitor's maps: `node-daemon monitor` finds them here.
            .map_pin_path(MONITOR_EVENTS_MAP, pin(MONITOR_EVENTS_MAP))
            .map_pin_path(MONITOR_CONTROL_MAP, pin(MONITOR_CONTROL_MAP))
            .map_max_entries(AFFINITY_MATCH_MAP, config.limits.max_backends)
            .map_max_entries(SERVICE_MAP, service_entries)
            .map_max_entries(BACKEND_MAP, config.limits.max_backends)
            .map_max_entries(STATS_MAP, stats_entries)
            .override_global(MAGLEV_HASH_SEED_GLOBAL, &config.maglev_hash_seed, true)
            .override_global(DEBUG_LOG_GLOBAL, &u8::from(config.debug_log), true)
            // Sized whether or not a tc program reads it, so that adding --tc-interface to a
            // running node does not change a pinned map's size.
            .map_max_entries(MAGLEV_MAP, maglev_entries)
            .load(PROGRAMS)?;
        keel_bpf::release_resident_pages(PROGRAMS);
        // A pinned map keeps the size it was created with, whatever is asked now.
        check_size(&ebpf, SERVICE_MAP, service_entries)?;
        check_size(&ebpf, BACKEND_MAP, config.limits.max_backends)?;
        check_size(&ebpf, STATS_MAP, stats_entries)?;
        check_size(&ebpf, AFFINITY_MATCH_MAP, config.limits.max_backends)?;
        check_size(&ebpf, MAGLEV_MAP, maglev_entries)?;
        if let Some(entries) = ct_entries {
            check_size(&ebpf, CT_MAP, entries)?;
        }

        let cgroup = File::open(&config.cgroup).map_err(|source| LoadError::Cgroup {
            path: config.cgroup.display().to_string(),
            source,
        })?;
        for name in SOCKET_PROGRAMS {
            attach_pinned(&mut ebpf, name, &cgroup, &config.bpf_dir)?;
        }
        set_node_ips(&mut ebpf, &config.node_ips)?;
        for interface in &config.tc_interfaces {
            let kind = attach_tc(
                &mut ebpf,
                PROG_TC_INGRESS,
                TcAttachType::Ingress,
                interface,
                config,
            )?;
            attach_tc(
                &mut ebpf,
                PROG_TC_EGRESS,
                TcAttachType::Egress,
                interface,
                config,
            )?;
            tracing::info!(interface, ?kind, "per-packet programs attached");
        }
        if config.debug_log {
            debug_log::start(&mut ebpf)?;
            tracing::info!("program debug log on (--bpf-debug-log)");
        }
        let maps = KernelMaps::take(&mut ebpf)?;
        let mut writer = MapWriter::adopt(maps, config.limits)?;
        if !config.tc_interfaces.is_empty() {
            writer = writer
                .with_maglev(config.maglev_size)
                .with_maglev_capacity(maglev_entries);
        }
        Ok(Self { writer, ebpf })
    }
}

/// Sets the tc programs' source NAT: flows to backends outside `pod_cidr` leave with
/// `node_ip` as their source. An unspecified `node_ip` turns it off.
pub fn set_snat(
    ebpf: &mut Ebpf,
    node_ip: Ipv4Addr,
    pod_cidr: keel_host::cidr::Ipv4Cidr,
) -> Result<(), ProxyError> {
    let failed = |operation, source| ProxyError::Map {
        map: SNAT_CONFIG_MAP,
        operation,
        source,
    };
    let map = ebpf.map_mut(SNAT_CONFIG_MAP).ok_or(ProxyError::Map {
        map: SNAT_CONFIG_MAP,
        operation: "open",
        source: aya::maps::MapError::InvalidName {
            name: SNAT_CONFIG_MAP.into(),
        },
    })?;
    let mut array: aya::maps::Array<_, SnatConfig> =
        aya::maps::Array::try_from(map).map_err(|e| failed("open", e))?;
    let mask = match pod_cidr.prefix_len {
        0 => 0,
        bits => u32::MAX << (32 - u32::from(bits.min(32))),
    };
    let config = SnatConfig {
        node_ip: u32::from(node_ip).to_be(),
        local_net: (u32::from(pod_cidr.addr) & mask).to_be(),
        local_mask: mask.to_be(),
    };
    array.set(0, config, 0).map_err(|e| failed("set", e))
}

/// The `max_entries` of the map pinned as `name`, if there is one.
fn pinned_size(config: &EbpfConfig, name: &str) -> Option<u32> {
    let map = aya::maps::MapData::from_pin(config.bpf_dir.join(name)).ok()?;
    map.info().ok().map(|info| info.max_entries())
}

fn check_size(ebpf: &Ebpf, name: &'static str, wanted: u32) -> Result<(), LoadError> {
    let map = ebpf
        .map(name)
        .ok_or(LoadError::Missing { kind: "map", name })?;
    let info = map_data(map)
        .info()
        .map_err(|source| LoadError::Map { name, source })?;
    if info.max_entries() != wanted {
        return Err(LoadError::PinnedSize {
            name,
            pinned: info.max_entries(),
            wanted,
        });
    }
    Ok(())
}

fn map_data(map: &aya::maps::Map) -> &aya::maps::MapData {
    use aya::maps::Map;
    match map {
        Map::HashMap(m) | Map::LruHashMap(m) | Map::PerCpuArray(m) | Map::Array(m) => m,
        Map::PerCpuHashMap(m) | Map::PerCpuLruHashMap(m) => m,
        other => unreachable_map(other),
    }
}

#[cold]
fn unreachable_map(map: &aya::maps::Map) -> ! {
    // keel's object declares only the map types above; a different one is a build bug.
    panic!("unexpected map type in keel's object: {map:?}")
}

/// The program `name` of the object, as its type.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, LoadError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(LoadError::Missing {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|source| LoadError::Program { name, source })
}

/// Pins a program's new link as `pin_name`, replacing the previous daemon's.
fn pin_link<L>(link: L, name: &'static str, pin_name: &str, bpf_dir: &Path) -> Result<(), LoadError>
where
    FdLink: TryFrom<L, Error = aya::programs::links::LinkError>,
{
    let link = FdLink::try_from(link).map_err(|e| pins::PinError::Link {
        name: name.to_owned(),
        message: pins::error_chain(&e),
    })?;
    pins::swap_link(bpf_dir, pin_name, link)?;
    Ok(())
}

/// Loads `name`, attaches it to `cgroup` through a new link, pins the link, and only then
/// unpins the link of the previous daemon (make-before-break).
fn attach_pinned(
    ebpf: &mut Ebpf,
    name: &'static str,
    cgroup: &File,
    bpf_dir: &Path,
) -> Result<(), LoadError> {
    let program: &mut CgroupSockAddr = program(ebpf, name)?;
    program
        .load()
        .map_err(|source| LoadError::Program { name, source })?;
    log_verified(name, program.info());
    // Links (Linux 5.7+, which keel needs anyway for bpf_set_retval) always coexist with other
    // programs on the cgroup, and the kernel rejects attach flags on them: no mode is asked for.
    let link_id = program
        .attach(cgroup, CgroupAttachMode::Single)
        .map_err(|source| LoadError::Program { name, source })?;
    let link = program
        .take_link(link_id)
        .map_err(|source| LoadError::Program { name, source })?;
    pin_link(link, name, name, bpf_dir)
}

/// What the verifier made of a program: how many instructions it processed (its cost against
/// the verifier's limits) and the size it kept (dead branches removed).
fn log_verified(name: &str, info: Result<aya::programs::ProgramInfo, aya::programs::ProgramError>) {
    match info {
        Ok(info) => tracing::info!(
            program = %name,
            verified_insns = info.verified_instruction_count().unwrap_or(0),
            xlated_bytes = info.size_translated().unwrap_or(0),
            "program loaded"
        ),
        Err(error) => tracing::debug!(program = name, "program loaded (no info: {error})"),
    }
}

/// Loads a tc program once and attaches it to `interface`, replacing the previous daemon's
/// (see [`tc_attach`]).
fn attach_tc(
    ebpf: &mut Ebpf,
    name: &'static str,
    attach_type: TcAttachType,
    interface: &str,
    config: &EbpfConfig,
) -> Result<tc_attach::TcKind, LoadError> {
    let program: &mut SchedClassifier = program(ebpf, name)?;
    if program.fd().is_err() {
        program
            .load()
            .map_err(|source| LoadError::Program { name, source })?;
        log_verified(name, program.info());
    }
    tc_attach::attach(
        program,
        name,
        attach_type,
        interface,
        &config.bpf_dir,
        config.enable_tcx,
    )
}

/// Makes the node-address map hold exactly `ips`: new ones first, so NodePorts never stop
/// answering on an address that stays.
fn set_node_ips(ebpf: &mut Ebpf, ips: &[Ipv4Addr]) -> Result<(), LoadError> {
    let map = ebpf.map_mut(NODE_IP_MAP).ok_or(LoadError::Missing {
        kind: "map",
        name: NODE_IP_MAP,
    })?;
    let mut map: HashMap<_, u32, u32> =
        HashMap::try_from(map).map_err(|source| LoadError::Map {
            name: NODE_IP_MAP,
            source,
        })?;
    let wanted: Vec<u32> = ips.iter().map(|ip| u32::from(*ip).to_be()).collect();
    for ip in &wanted {
        map.insert(ip, 1, 0).map_err(|source| LoadError::Map {
            name: NODE_IP_MAP,
            source,
        })?;
    }
    let stale: Vec<u32> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|ip| !wanted.contains(ip))
        .collect();
    for ip in stale {
        map.remove(&ip).map_err(|source| LoadError::Map {
            name: NODE_IP_MAP,
            source,
        })?;
    }
    Ok(())
}

impl ServiceProxy for EbpfProxy {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn sync(&mut self, table: &ServiceTable) -> Result<SyncStats, ProxyError> {
        self.writer.sync(table)
    }

    fn sync_changes(
        &mut self,
        table: &ServiceTable,
        changes: &TableChanges,
    ) -> Result<SyncStats, ProxyError> {
        self.writer.sync_changes(table, changes)
    }

    fn unprogrammed(&self) -> &[crate::Unprogrammed] {
        self.writer.unprogrammed()
    }

    fn join_cluster(
        &mut self,
        node_ip: Ipv4Addr,
        pod_cidr: keel_host::cidr::Ipv4Cidr,
    ) -> Result<(), ProxyError> {
        set_snat(&mut self.ebpf, node_ip, pod_cidr)
    }
}
