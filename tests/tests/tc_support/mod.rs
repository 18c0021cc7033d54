//! What the tc program tests share: the programs loaded on their own maps, crafted packets,
//! checksums. Each test binary uses a part of it.
#![allow(dead_code)] // each test file that includes this module uses only some of it

use std::net::{Ipv4Addr, SocketAddrV4};

use aya::{
    maps::{HashMap, MapData},
    programs::{SchedClassifier, TestRun, TestRunOptions},
    Ebpf, EbpfLoader,
};
use keel_common::{
    CtKey, CtValue, CT_MAP, CT_SYN_MAP, MAGLEV_HASH_SEED_GLOBAL, PROG_TC_EGRESS, PROG_TC_INGRESS,
    PROTO_TCP, PROTO_UDP,
};
use keel_proxy::{
    ebpf::{maglev, programs, KernelMaps, Limits, MapWriter},
    service_table::{Frontend, L4Protocol, ServicePortEntry, ServiceTable},
};
use keel_tests::require_root;

pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 245, 0, 2);
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

pub type TestError = Box<dyn std::error::Error>;

/// The programs and maps of one test, and the writer that fills the maps.
pub struct Datapath {
    pub ebpf: Ebpf,
    pub writer: MapWriter<KernelMaps>,
}

impl Datapath {
    pub fn load() -> Result<Self, TestError> {
        Self::load_with_seed(None)
    }

    /// The programs with the flow hash seed the daemon would set, or their default.
    pub fn load_with_seed(seed: Option<u32>) -> Result<Self, TestError> {
        Self::load_with(seed, &[])
    }

    /// The programs with some maps sized otherwise (`(name, max_entries)`).
    pub fn load_sized(sizes: &[(&str, u32)]) -> Result<Self, TestError> {
        Self::load_with(None, sizes)
    }

    fn load_with(seed: Option<u32>, sizes: &[(&str, u32)]) -> Result<Self, TestError> {
        require_root();
        let mut loader = EbpfLoader::new();
        if let Some(seed) = &seed {
            loader.override_global(MAGLEV_HASH_SEED_GLOBAL, seed, true);
        }
        for (name, entries) in sizes {
            loader.map_max_entries(name, *entries);
        }
        let mut ebpf = loader.load(programs())?;
        for name in [PROG_TC_INGRESS, PROG_TC_EGRESS] {
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or("missing program")?
                .try_into()?;
            program.load()?;
        }
        let maps = KernelMaps::take(&mut ebpf)?;
        let writer = MapWriter::new(
            maps,
            Limits {
                max_services: 16,
                max_backends: 64,
            },
        )
        .with_maglev(maglev::SIZES[0]);
        Ok(Self { ebpf, writer })
    }

    /// One service, VIP:`port`/`protocol` → `backends` on port 8080.
    pub fn serve(
        &mut self,
        port: u16,
        protocol: L4Protocol,
        backends: &[u8],
    ) -> Result<(), TestError> {
        let mut table = ServiceTable::default();
        let backends = backends
            .iter()
            .map(|b| SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, *b), 8080))
            .collect();
        let entry = ServicePortEntry {
            name: "default/web:x".into(),
            backends,
            affinity_timeout: None,
        };
        table.services.insert(
            Frontend {
                vip: VIP,
                port,
                protocol,
            },
            entry,
        );
        self.writer.sync(&table)?;
        Ok(())
    }

    pub fn run(&self, program: &str, packet: &[u8]) -> Result<(u32, Vec<u8>), TestError> {
        let program: &SchedClassifier = self
            .ebpf
            .program(program)
            .ok_or("missing program")?
            .try_into()?;
        let mut out = vec![0u8; packet.len() + 64];
        let result = program.test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ..Default::default()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// A conntrack map (`CT_MAP` or `CT_SYN_MAP`).
    pub fn ct_map(
        &mut self,
        name: &str,
    ) -> Result<HashMap<&mut MapData, CtKey, CtValue>, TestError> {
        Ok(HashMap::try_from(
            self.ebpf.map_mut(name).ok_or("no ct map")?,
        )?)
    }

    /// Every entry of a conntrack map.
    pub fn ct_entries(&mut self, name: &str) -> Result<Vec<(CtKey, CtValue)>, TestError> {
        Ok(self.ct_map(name)?.iter().collect::<Result<_, _>>()?)
    }

    /// Deletes the conntrack entries of one direction (`CT_FORWARD` or `CT_REPLY`) in both
    /// maps, as the LRU may evict one direction of a flow apart from the other. Returns how
    /// many.
    pub fn evict_conntrack(&mut self, direction: u8) -> Result<usize, TestError> {
        let mut count = 0;
        for name in [CT_MAP, CT_SYN_MAP] {
            let mut ct = self.ct_map(name)?;
            let keys: Vec<CtKey> = ct
                .keys()
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|k| k.direction == direction)
                .collect();
            for key in &keys {
                ct.remove(key)?;
            }
            count += keys.len();
        }
        Ok(count)
    }

    pub fn clear_conntrack(&mut self) -> Result<(), TestError> {
        for name in [CT_MAP, CT_SYN_MAP] {
            let mut ct = self.ct_map(name)?;
            let keys: Vec<CtKey> = ct.keys().collect::<Result<_, _>>()?;
            for key in keys {
                ct.remove(&key)?;
            }
        }
        Ok(())
    }

    /// Moves the last-seen time of every entry of both maps `seconds` into the past, as if
    /// the flows had been silent that long.
    pub fn age_conntrack(&mut self, seconds: u32) -> Result<(), TestError> {
        for name in [CT_MAP, CT_SYN_MAP] {
            let mut ct = self.ct_map(name)?;
            let entries: Vec<(CtKey, CtValue)> = ct.iter().collect::<Result<_, _>>()?;
            for (key, mut value) in entries {
                value.last_seen = value.last_seen.wrapping_sub(seconds);
                ct.insert(key, value, 0)?;
            }
        }
        Ok(())
    }
}

/// Ethernet + IPv4 + TCP/UDP with correct checksums (UDP: `udp_csum` false sends 0, "none").
pub fn packet(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    proto: u8,
    tcp_flags: u8,
    udp_csum: bool,
) -> Vec<u8> {
    let payload = b"keel";
    let l4_len = if proto == PROTO_TCP { 20 } else { 8 } + payload.len();
    let mut p = vec![0u8; 14 + 20 + l4_len];
    p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut p[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let sum = checksum(&[ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let l4 = &mut p[34..];
    l4[0..2].copy_from_slice(&src.port().to_be_bytes());
    l4[2..4].copy_from_slice(&dst.port().to_be_bytes());
    if proto == PROTO_TCP {
        l4[12] = 5 << 4;
        l4[13] = tcp_flags;
        l4[14..16].copy_from_slice(&1024u16.to_be_bytes());
        l4[20..].copy_from_slice(payload);
    } else {
        l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        l4[8..].copy_from_slice(payload);
    }
    if proto == PROTO_TCP || udp_csum {
        let sum = l4_checksum(&p);
        let off = 34 + if proto == PROTO_TCP { 16 } else { 6 };
        p[off..off + 2].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// One's-complement sum over `parts`, folded and inverted.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The L4 checksum of `p` computed with its checksum field zeroed.
pub fn l4_checksum(p: &[u8]) -> u16 {
    let proto = p[23];
    let mut l4 = p[34..].to_vec();
    let off = if proto == PROTO_TCP { 16 } else { 6 };
    l4[off] = 0;
    l4[off + 1] = 0;
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&p[26..34]);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    checksum(&[&pseudo, &l4])
}

/// Both checksums of `p` verify (a zero UDP checksum means none).
pub fn checksums_ok(p: &[u8]) -> bool {
    let ip_ok = checksum(&[&p[14..34]]) == 0;
    let proto = p[23];
    let off = 34 + if proto == PROTO_TCP { 16 } else { 6 };
    let stored = u16::from_be_bytes([p[off], p[off + 1]]);
    let l4_ok = (proto == PROTO_UDP && stored == 0) || stored == l4_checksum(p);
    ip_ok && l4_ok
}

pub fn src(p: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(p[26], p[27], p[28], p[29]),
        u16::from_be_bytes([p[34], p[35]]),
    )
}

pub fn dst(p: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(p[30], p[31], p[32], p[33]),
        u16::from_be_bytes([p[36], p[37]]),
    )
}

/// The backend addresses `serve` gives the backends `octets`, in its order.
pub fn backend_addrs(octets: &[u8]) -> Vec<SocketAddrV4> {
    octets
        .iter()
        .map(|b| SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, *b), 8080))
        .collect()
}
