//! The IPVS proxy mode. IPVS is a kernel load balancer (`CONFIG_IP_VS`) programmed over
//! generic netlink (family `IPVS`). This module holds the two halves that do not need the
//! kernel: telling whether the kernel could run it, and encoding the messages that would
//! program it (checked against byte fixtures). Sending them — resolving the family id,
//! the `keel-ipvs0` interface holding the VIPs, ipset + iptables for masquerade — is left for
//! a session on a kernel with IPVS (the kernel-matrix VM).
//!
//! The kernel exposes `/proc/net/ip_vs` whenever IPVS is built in or its module is loaded.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
};

use thiserror::Error;

use crate::service_table::L4Protocol;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IpvsError {
    #[error("ipvs mode unavailable: kernel has no IP_VS support (no /proc/net/ip_vs); use --proxy-mode ebpf, iptables or nftables")]
    NoKernelSupport,
    #[error("ipvs mode unavailable: keel cannot program IPVS yet (the kernel has it); use --proxy-mode ebpf, iptables or nftables")]
    NotImplemented,
    #[error("IPVS scheduler name {0:?} is empty or longer than 15 bytes")]
    SchedulerName(String),
}

/// Why the IPVS mode cannot start here.
pub fn unavailable() -> IpvsError {
    unavailable_with(Path::new("/proc/net/ip_vs"))
}

fn unavailable_with(proc_file: &Path) -> IpvsError {
    if proc_file.exists() {
        IpvsError::NotImplemented
    } else {
        IpvsError::NoKernelSupport
    }
}

/// From linux/ip_vs.h.
mod abi {
    pub const GENL_VERSION: u8 = 1;
    pub const CMD_NEW_SERVICE: u8 = 1;
    pub const CMD_DEL_SERVICE: u8 = 3;
    pub const CMD_NEW_DEST: u8 = 5;
    pub const CMD_DEL_DEST: u8 = 7;
    pub const CMD_ATTR_SERVICE: u16 = 1;
    pub const CMD_ATTR_DEST: u16 = 2;
    pub const SVC_ATTR_AF: u16 = 1;
    pub const SVC_ATTR_PROTOCOL: u16 = 2;
    pub const SVC_ATTR_ADDR: u16 = 3;
    pub const SVC_ATTR_PORT: u16 = 4;
    pub const SVC_ATTR_SCHED_NAME: u16 = 6;
    pub const SVC_ATTR_FLAGS: u16 = 7;
    pub const SVC_ATTR_TIMEOUT: u16 = 8;
    pub const SVC_ATTR_NETMASK: u16 = 9;
    pub const DEST_ATTR_ADDR: u16 = 1;
    pub const DEST_ATTR_PORT: u16 = 2;
    pub const DEST_ATTR_FWD_METHOD: u16 = 3;
    pub const DEST_ATTR_WEIGHT: u16 = 4;
    pub const DEST_ATTR_U_THRESH: u16 = 5;
    pub const DEST_ATTR_L_THRESH: u16 = 6;
    pub const DEST_ATTR_ADDR_FAMILY: u16 = 11;
    /// `IP_VS_SVC_F_PERSISTENT`: session affinity.
    pub const SVC_F_PERSISTENT: u32 = 0x0001;
    /// `IP_VS_CONN_F_MASQ`: NAT to the real server.
    pub const CONN_F_MASQ: u32 = 0x0000;
    pub const AF_INET: u16 = 2;
    pub const NLA_F_NESTED: u16 = 0x8000;
    pub const IPPROTO_TCP: u16 = 6;
    pub const IPPROTO_UDP: u16 = 17;
}

/// An IPVS virtual service: what kube-proxy's IPVS mode makes of a service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualService {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub protocol: L4Protocol,
    /// `rr`, `wrr`, `lc`, `sh`, `mh`…
    pub scheduler: String,
    /// `sessionAffinity: ClientIP` becomes IPVS persistence with this timeout (seconds).
    pub persistence: Option<u32>,
}

/// The generic-netlink payload (genl header + attributes) of `IPVS_CMD_NEW_SERVICE`.
pub fn new_service(service: &VirtualService) -> Result<Vec<u8>, IpvsError> {
    if service.scheduler.is_empty() || service.scheduler.len() > 15 {
        return Err(IpvsError::SchedulerName(service.scheduler.clone()));
    }
    let mut attrs = service_key(service);
    let mut name = service.scheduler.as_bytes().to_vec();
    name.push(0);
    put(&mut attrs, abi::SVC_ATTR_SCHED_NAME, &name);
    let flags = if service.persistence.is_some() {
        abi::SVC_F_PERSISTENT
    } else {
        0
    };
    let mut flags_mask = flags.to_ne_bytes().to_vec();
    flags_mask.extend_from_slice(&u32::MAX.to_ne_bytes());
    put(&mut attrs, abi::SVC_ATTR_FLAGS, &flags_mask);
    put(
        &mut attrs,
        abi::SVC_ATTR_TIMEOUT,
        &service.persistence.unwrap_or(0).to_ne_bytes(),
    );
    put(&mut attrs, abi::SVC_ATTR_NETMASK, &u32::MAX.to_be_bytes());
    Ok(message(
        abi::CMD_NEW_SERVICE,
        &[(abi::CMD_ATTR_SERVICE, attrs)],
    ))
}

/// `IPVS_CMD_DEL_SERVICE`: the service is named by its key alone.
pub fn del_service(service: &VirtualService) -> Vec<u8> {
    message(
        abi::CMD_DEL_SERVICE,
        &[(abi::CMD_ATTR_SERVICE, service_key(service))],
    )
}

/// `IPVS_CMD_NEW_DEST`: a real server of `service`, reached by NAT, with `weight`.
pub fn new_dest(service: &VirtualService, dest: SocketAddrV4, weight: u32) -> Vec<u8> {
    let mut attrs = dest_key(dest);
    put(
        &mut attrs,
        abi::DEST_ATTR_FWD_METHOD,
        &abi::CONN_F_MASQ.to_ne_bytes(),
    );
    put(&mut attrs, abi::DEST_ATTR_WEIGHT, &weight.to_ne_bytes());
    put(&mut attrs, abi::DEST_ATTR_U_THRESH, &0u32.to_ne_bytes());
    put(&mut attrs, abi::DEST_ATTR_L_THRESH, &0u32.to_ne_bytes());
    message(
        abi::CMD_NEW_DEST,
        &[
            (abi::CMD_ATTR_SERVICE, service_key(service)),
            (abi::CMD_ATTR_DEST, attrs),
        ],
    )
}

/// `IPVS_CMD_DEL_DEST`.
pub fn del_dest(service: &VirtualService, dest: SocketAddrV4) -> Vec<u8> {
    message(
        abi::CMD_DEL_DEST,
        &[
            (abi::CMD_ATTR_SERVICE, service_key(service)),
            (abi::CMD_ATTR_DEST, dest_key(dest)),
        ],
    )
}

/// The attributes that identify a service: family, protocol, address, port.
fn service_key(service: &VirtualService) -> Vec<u8> {
    let protocol = match service.protocol {
        L4Protocol::Tcp => abi::IPPROTO_TCP,
        L4Protocol::Udp => abi::IPPROTO_UDP,
    };
    let mut attrs = Vec::new();
    put(&mut attrs, abi::SVC_ATTR_AF, &abi::AF_INET.to_ne_bytes());
    put(&mut attrs, abi::SVC_ATTR_PROTOCOL, &protocol.to_ne_bytes());
    put(&mut attrs, abi::SVC_ATTR_ADDR, &inet_addr(service.addr));
    put(&mut attrs, abi::SVC_ATTR_PORT, &service.port.to_be_bytes());
    attrs
}

fn dest_key(dest: SocketAddrV4) -> Vec<u8> {
    let mut attrs = Vec::new();
    put(&mut attrs, abi::DEST_ATTR_ADDR, &inet_addr(*dest.ip()));
    put(&mut attrs, abi::DEST_ATTR_PORT, &dest.port().to_be_bytes());
    put(
        &mut attrs,
        abi::DEST_ATTR_ADDR_FAMILY,
        &abi::AF_INET.to_ne_bytes(),
    );
    attrs
}

/// `union nf_inet_addr`: 16 bytes, an IPv4 address in the first four.
fn inet_addr(addr: Ipv4Addr) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&addr.octets());
    bytes
}

/// genl header (cmd, version, reserved) then each nested attribute.
fn message(cmd: u8, nested: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![cmd, abi::GENL_VERSION, 0, 0];
    for (kind, payload) in nested {
        put(&mut out, kind | abi::NLA_F_NESTED, payload);
    }
    out
}

/// One netlink attribute: length (header included, padding not), type, payload, padding to 4.
fn put(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(persistence: Option<u32>) -> VirtualService {
        VirtualService {
            addr: Ipv4Addr::new(10, 96, 0, 10),
            port: 80,
            protocol: L4Protocol::Tcp,
            scheduler: "rr".into(),
            persistence,
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The service key as the kernel's `ip_vs_genl_parse_service` reads it (x86-64, so the
    /// native-endian fields are little-endian): AF_INET, TCP, 10.96.0.10 padded to 16 bytes,
    /// port 80 big-endian.
    const SERVICE_KEY: &str = concat!(
        "0600", "0100", "0200", "0000", "0600", "0200", "0600", "0000", "1400", "0300", "0a60000a",
        "00000000", "00000000", "00000000", "0600", "0400", "0050", "0000",
    );

    #[test]
    fn new_service_matches_the_fixture() {
        let bytes = new_service(&web(Some(10_800))).expect("valid service");
        let expected = [
            "01010000", // NEW_SERVICE, version 1
            "5400",
            "0180", // CMD_ATTR_SERVICE | NLA_F_NESTED, 84 bytes
            SERVICE_KEY,
            "0700",
            "0600",
            "72720000", // SCHED_NAME "rr\0" + pad
            "0c00",
            "0700",
            "01000000",
            "ffffffff", // FLAGS persistent / mask
            "0800",
            "0800",
            "302a0000", // TIMEOUT 10800
            "0800",
            "0900",
            "ffffffff", // NETMASK /32
        ]
        .concat();
        assert_eq!(hex(&bytes), expected);
    }

    #[test]
    fn new_dest_matches_the_fixture() {
        let bytes = new_dest(
            &web(None),
            SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, 2), 8080),
            1,
        );
        let expected = [
            "05010000",
            "3000",
            "0180",
            SERVICE_KEY, // the service, 48 bytes
            "4800",
            "0280", // CMD_ATTR_DEST | NLA_F_NESTED, 72 bytes
            "1400",
            "0100",
            "0af40002",
            "00000000",
            "00000000",
            "00000000", // ADDR
            "0600",
            "0200",
            "1f90",
            "0000", // PORT 8080
            "0600",
            "0b00",
            "0200",
            "0000", // ADDR_FAMILY
            "0800",
            "0300",
            "00000000", // FWD_METHOD masq
            "0800",
            "0400",
            "01000000", // WEIGHT 1
            "0800",
            "0500",
            "00000000", // U_THRESH
            "0800",
            "0600",
            "00000000", // L_THRESH
        ]
        .concat();
        assert_eq!(hex(&bytes), expected);
    }

    #[test]
    fn deletes_carry_only_keys_and_bad_schedulers_are_refused() {
        assert_eq!(
            hex(&del_service(&web(None))),
            ["03010000", "3000", "0180", SERVICE_KEY].concat()
        );
        let del = del_dest(
            &web(None),
            SocketAddrV4::new(Ipv4Addr::new(10, 244, 0, 2), 8080),
        );
        assert!(hex(&del).starts_with("07010000"));
        let mut bad = web(None);
        bad.scheduler = "a-very-long-scheduler".into();
        assert_eq!(
            new_service(&bad),
            Err(IpvsError::SchedulerName(bad.scheduler.clone()))
        );
        bad.scheduler = String::new();
        assert!(new_service(&bad).is_err());
    }

    #[test]
    fn says_why() {
        assert_eq!(
            unavailable_with(Path::new("/nonexistent/ip_vs")),
            IpvsError::NoKernelSupport
        );
        assert_eq!(
            unavailable_with(Path::new("/proc/self")),
            IpvsError::NotImplemented
        );
        assert!(IpvsError::NoKernelSupport
            .to_string()
            .starts_with("ipvs mode unavailable: kernel has no IP_VS support"));
    }
}
