//! The IPVS proxy mode, as kube-proxy's: IPVS (`CONFIG_IP_VS`) is a kernel load balancer
//! programmed over generic netlink (family `IPVS`). Every service port is an IPVS virtual
//! service with NAT ("masquerade") real servers, round robin, and persistence for
//! `sessionAffinity: ClientIP`; every ClusterIP is a /32 address of the service interface
//! (`keel-svc0`), because IPVS only handles packets addressed to the node itself; NodePorts
//! are virtual services on each node address.
//!
//! - here: telling whether the kernel has IPVS, the message encoders (checked against byte
//!   fixtures), and [`IpvsProxy`], which diffs the kernel's services against the table;
//! - [`genl`]: the generic-netlink socket;
//! - [`vips`]: the ClusterIP addresses on the service interface.
//!
//! The kernel exposes `/proc/net/ip_vs` whenever IPVS is built in or its module is loaded.
//! This project's host kernel has no IPVS; `cargo xtask vm test` runs the mode for real in a
//! Debian kernel.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
};

use thiserror::Error;

use crate::service_table::L4Protocol;

pub mod genl;
pub mod masquerade;
pub mod vips;

#[derive(Debug, Error)]
pub enum IpvsError {
    #[error("ipvs mode unavailable: kernel has no IP_VS support (no /proc/net/ip_vs); use --proxy-mode ebpf, iptables or nftables")]
    NoKernelSupport,
    #[error("IPVS scheduler name {0:?} is empty or longer than 15 bytes")]
    SchedulerName(String),
    #[error(transparent)]
    Netlink(#[from] genl::GenlError),
    #[error("service addresses on {interface}: {message}")]
    Vips { interface: String, message: String },
    #[error("masquerade for IPVS: {0}")]
    Masquerade(String),
}

/// `Err` with the reason when the kernel cannot run the IPVS mode.
pub fn check_available() -> Result<(), IpvsError> {
    check_available_with(Path::new("/proc/net/ip_vs"))
}

fn check_available_with(proc_file: &Path) -> Result<(), IpvsError> {
    if proc_file.exists() {
        Ok(())
    } else {
        Err(IpvsError::NoKernelSupport)
    }
}

/// From linux/ip_vs.h.
mod abi {
    pub const GENL_VERSION: u8 = 1;
    pub const CMD_NEW_SERVICE: u8 = 1;
    pub const CMD_SET_SERVICE: u8 = 2;
    pub const CMD_GET_SERVICE: u8 = 4;
    pub const CMD_GET_DEST: u8 = 8;
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

/// `IPVS_CMD_SET_SERVICE`: the same attributes as a new service, for one that exists with
/// other settings (scheduler, persistence).
pub fn set_service(service: &VirtualService) -> Result<Vec<u8>, IpvsError> {
    let mut message = new_service(service)?;
    message[0] = abi::CMD_SET_SERVICE;
    Ok(message)
}

/// A service as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceKey {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub protocol: L4Protocol,
}

/// What a listed service is set to (compared with what it should be).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSettings {
    pub scheduler: String,
    pub persistence: Option<u32>,
}

/// Parses one reply of a `GET_SERVICE` dump (IPv4 TCP/UDP services only; others are not
/// keel's and are left alone).
fn parse_service(reply: &[u8]) -> Option<(ServiceKey, ServiceSettings)> {
    let attrs = genl::nested(reply, abi::CMD_ATTR_SERVICE)?;
    let get = |kind: u16| attrs.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v);
    let af = u16::from_ne_bytes(get(abi::SVC_ATTR_AF)?.get(..2)?.try_into().ok()?);
    let protocol = match u16::from_ne_bytes(get(abi::SVC_ATTR_PROTOCOL)?.get(..2)?.try_into().ok()?)
    {
        abi::IPPROTO_TCP => L4Protocol::Tcp,
        abi::IPPROTO_UDP => L4Protocol::Udp,
        _ => return None,
    };
    if af != abi::AF_INET {
        return None;
    }
    let addr = ipv4_attr(get(abi::SVC_ATTR_ADDR)?)?;
    let port = port_attr(get(abi::SVC_ATTR_PORT)?)?;
    let scheduler = get(abi::SVC_ATTR_SCHED_NAME)
        .map(|s| String::from_utf8_lossy(s).trim_end_matches('\0').to_owned())
        .unwrap_or_default();
    let flags = get(abi::SVC_ATTR_FLAGS)
        .and_then(|f| Some(u32::from_ne_bytes(f.get(..4)?.try_into().ok()?)))
        .unwrap_or(0);
    let timeout = get(abi::SVC_ATTR_TIMEOUT)
        .and_then(|t| Some(u32::from_ne_bytes(t.get(..4)?.try_into().ok()?)))
        .unwrap_or(0);
    let persistence = (flags & abi::SVC_F_PERSISTENT != 0).then_some(timeout);
    Some((
        ServiceKey {
            addr,
            port,
            protocol,
        },
        ServiceSettings {
            scheduler,
            persistence,
        },
    ))
}

/// An IPv4 address in a `union nf_inet_addr` attribute (its first four bytes).
fn ipv4_attr(value: &[u8]) -> Option<Ipv4Addr> {
    let octets: [u8; 4] = value.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

/// A port attribute (network byte order).
fn port_attr(value: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(value.get(..2)?.try_into().ok()?))
}

/// Parses one reply of a `GET_DEST` dump.
fn parse_dest(reply: &[u8]) -> Option<SocketAddrV4> {
    let attrs = genl::nested(reply, abi::CMD_ATTR_DEST)?;
    let get = |kind: u16| attrs.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v);
    let addr = ipv4_attr(get(abi::DEST_ATTR_ADDR)?)?;
    let port = port_attr(get(abi::DEST_ATTR_PORT)?)?;
    Some(SocketAddrV4::new(addr, port))
}

/// The IPVS proxy mode: the table as IPVS virtual services, each ClusterIP bound to the
/// service interface.
pub struct IpvsProxy {
    socket: genl::GenlSocket,
    /// The service CIDR: services and addresses in it are keel's (others are left alone).
    service_cidr: crate::tracker::Ipv4Cidr,
    /// Where NodePorts answer.
    node_ips: Vec<Ipv4Addr>,
    iptables: crate::iptables::Binaries,
    sysctls_set: bool,
    /// The backend addresses `KEEL-IPVS-MASQ` has hairpin rules for, as last written.
    masquerade_backends: Option<std::collections::BTreeSet<Ipv4Addr>>,
    /// What the kernel holds after the last successful sync, so that a change costs the
    /// changed services only. `None` at start and after a failure: the next sync reads the
    /// kernel's services and real servers again (a full resync).
    applied: Option<Applied>,
}

/// keel's IPVS state as last written.
#[derive(Debug, Default)]
struct Applied {
    services: std::collections::BTreeMap<
        ServiceKey,
        (ServiceSettings, std::collections::BTreeSet<SocketAddrV4>),
    >,
    vips: std::collections::BTreeSet<Ipv4Addr>,
}

/// kube-proxy's default scheduler.
const SCHEDULER: &str = "rr";

impl IpvsProxy {
    pub fn new(
        service_cidr: crate::tracker::Ipv4Cidr,
        node_ips: Vec<Ipv4Addr>,
    ) -> Result<Self, IpvsError> {
        check_available()?;
        Ok(Self {
            socket: genl::GenlSocket::open("IPVS")?,
            service_cidr,
            node_ips,
            iptables: crate::iptables::Binaries::detect(),
            sysctls_set: false,
            masquerade_backends: None,
            applied: None,
        })
    }

    /// What the table asks of IPVS: virtual services with their real servers.
    fn desired(
        &self,
        table: &crate::service_table::ServiceTable,
    ) -> std::collections::BTreeMap<ServiceKey, (VirtualService, Vec<SocketAddrV4>)> {
        let mut desired = std::collections::BTreeMap::new();
        for (frontend, entry) in &table.services {
            // A NodePort (wildcard frontend) is a service on every node address.
            let addrs = if frontend.vip.is_unspecified() {
                self.node_ips.clone()
            } else {
                vec![frontend.vip]
            };
            for addr in addrs {
                let service = VirtualService {
                    addr,
                    port: frontend.port,
                    protocol: frontend.protocol,
                    scheduler: SCHEDULER.into(),
                    persistence: entry.affinity_timeout,
                };
                let key = ServiceKey {
                    addr,
                    port: frontend.port,
                    protocol: frontend.protocol,
                };
                desired.insert(key, (service, entry.backends.clone()));
            }
        }
        desired
    }

    /// Whether a listed service is keel's to manage.
    fn owned(&self, key: &ServiceKey) -> bool {
        self.service_cidr.contains(key.addr) || self.node_ips.contains(&key.addr)
    }

    fn services(&mut self) -> Result<Vec<(ServiceKey, ServiceSettings)>, IpvsError> {
        let request = vec![abi::CMD_GET_SERVICE, abi::GENL_VERSION, 0, 0];
        let replies = self.socket.dump(&request, "listing IPVS services")?;
        Ok(replies.iter().filter_map(|r| parse_service(r)).collect())
    }

    fn dests(&mut self, service: &VirtualService) -> Result<Vec<SocketAddrV4>, IpvsError> {
        let request = message(
            abi::CMD_GET_DEST,
            &[(abi::CMD_ATTR_SERVICE, service_key(service))],
        );
        let replies = self.socket.dump(&request, "listing IPVS real servers")?;
        Ok(replies.iter().filter_map(|r| parse_dest(r)).collect())
    }
}

impl crate::ServiceProxy for IpvsProxy {
    fn name(&self) -> &'static str {
        "ipvs"
    }

    fn sync(
        &mut self,
        table: &crate::service_table::ServiceTable,
    ) -> Result<crate::SyncStats, crate::ProxyError> {
        Ok(self.sync_table(table)?)
    }
}

impl IpvsProxy {
    /// Make-before-break per service: new real servers are added before old ones leave, and
    /// a service's address is bound before its virtual service exists.
    fn sync_table(
        &mut self,
        table: &crate::service_table::ServiceTable,
    ) -> Result<crate::SyncStats, IpvsError> {
        let applied = self.applied.take();
        self.apply(table, applied)
    }

    /// Deletes a listed service (its real servers go with it); only its key matters.
    fn delete_service(&mut self, key: &ServiceKey) -> Result<(), IpvsError> {
        let service = VirtualService {
            addr: key.addr,
            port: key.port,
            protocol: key.protocol,
            scheduler: SCHEDULER.into(),
            persistence: None,
        };
        self.socket.request(
            &del_service(&service),
            &format!("removing IPVS service {key:?}"),
        )?;
        Ok(())
    }

    /// The kernel's services and real servers, read back (for a full resync).
    fn read_kernel(&mut self) -> Result<Applied, IpvsError> {
        let mut services = std::collections::BTreeMap::new();
        let listed: Vec<(ServiceKey, ServiceSettings)> = self
            .services()?
            .into_iter()
            .filter(|(k, _)| self.owned(k))
            .collect();
        for (key, settings) in listed {
            let service = VirtualService {
                addr: key.addr,
                port: key.port,
                protocol: key.protocol,
                scheduler: settings.scheduler.clone(),
                persistence: settings.persistence,
            };
            let dests = self.dests(&service)?.into_iter().collect();
            services.insert(key, (settings, dests));
        }
        Ok(Applied {
            services,
            vips: Default::default(),
        })
    }

    /// Writes the difference between `table` and `applied` (the kernel read back when
    /// there is no record); on success records the new state.
    fn apply(
        &mut self,
        table: &crate::service_table::ServiceTable,
        applied: Option<Applied>,
    ) -> Result<crate::SyncStats, IpvsError> {
        let resync = applied.is_none();
        let current = match applied {
            Some(applied) => applied,
            None => self.read_kernel()?,
        };
        if !self.sysctls_set {
            masquerade::ensure_sysctls()?;
            self.sysctls_set = true;
        }
        let desired = self.desired(table);
        // Before any real server is added: a pod must not reach itself unmasqueraded.
        let backend_ips: std::collections::BTreeSet<Ipv4Addr> = desired
            .values()
            .flat_map(|(_, backends)| backends.iter().map(|b| *b.ip()))
            .collect();
        if resync || self.masquerade_backends.as_ref() != Some(&backend_ips) {
            self.masquerade_backends = None;
            masquerade::write(&self.iptables, self.service_cidr, &backend_ips)?;
            self.masquerade_backends = Some(backend_ips);
        }
        let mut written = 0;
        let mut removed = 0;
        let cluster_ips: std::collections::BTreeSet<Ipv4Addr> = desired
            .keys()
            .map(|k| k.addr)
            .filter(|a| self.service_cidr.contains(*a))
            .collect();
        if resync || cluster_ips != current.vips {
            vips::bind(&cluster_ips, self.service_cidr)?;
        }
        for (key, (service, backends)) in &desired {
            let wanted = ServiceSettings {
                scheduler: service.scheduler.clone(),
                persistence: service.persistence,
            };
            match current.services.get(key).map(|(settings, _)| settings) {
                None => {
                    self.socket.request(
                        &new_service(service)?,
                        &format!("adding IPVS service {key:?}"),
                    )?;
                    written += 1;
                }
                Some(settings) if *settings != wanted => {
                    self.socket.request(
                        &set_service(service)?,
                        &format!("updating IPVS service {key:?}"),
                    )?;
                    written += 1;
                }
                Some(_) => {}
            }
            let present = current
                .services
                .get(key)
                .map(|(_, dests)| dests.clone())
                .unwrap_or_default();
            for backend in backends.iter().filter(|b| !present.contains(b)) {
                self.socket.request(
                    &new_dest(service, *backend, 1),
                    &format!("adding real server {backend} to {key:?}"),
                )?;
                written += 1;
            }
            for stale in present.iter().filter(|p| !backends.contains(p)) {
                self.socket.request(
                    &del_dest(service, *stale),
                    &format!("removing real server {stale} from {key:?}"),
                )?;
                removed += 1;
            }
        }
        for key in current.services.keys().filter(|k| !desired.contains_key(k)) {
            self.delete_service(key)?;
            removed += 1;
        }
        // Addresses go last: a removed service stops answering only once its address does.
        if resync || cluster_ips != current.vips {
            vips::unbind_except(&cluster_ips, self.service_cidr)?;
        }
        self.applied = Some(Applied {
            services: desired
                .into_iter()
                .map(|(key, (service, backends))| {
                    let settings = ServiceSettings {
                        scheduler: service.scheduler,
                        persistence: service.persistence,
                    };
                    (key, (settings, backends.into_iter().collect()))
                })
                .collect(),
            vips: cluster_ips,
        });
        Ok(crate::SyncStats { written, removed })
    }
}

/// Removes every IPVS service keel made (those in `service_cidr`) and their addresses.
/// A kernel without IPVS has none: not an error.
pub fn cleanup(service_cidr: crate::tracker::Ipv4Cidr) -> Result<usize, IpvsError> {
    if check_available().is_err() {
        return Ok(0);
    }
    let mut proxy = IpvsProxy::new(service_cidr, Vec::new())?;
    let ours: Vec<ServiceKey> = proxy
        .services()?
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| service_cidr.contains(k.addr))
        .collect();
    for key in &ours {
        proxy.delete_service(key)?;
    }
    vips::unbind_except(&Default::default(), service_cidr)?;
    masquerade::remove(&proxy.iptables)?;
    Ok(ours.len())
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
pub(crate) fn put(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests;
