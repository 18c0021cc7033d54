//! Deleting IPv4 UDP conntrack entries over ctnetlink, in the calling thread's network
//! namespace.
//!
//! A UDP "connection" that netfilter NATed keeps its translation for as long as the client
//! keeps sending: a resolver that reuses one source port is DNATed to a backend that left until
//! the entry is deleted. The kernel cannot filter a delete by the reply tuple, so the entries
//! are listed (one dump of the IPv4 table, `IPCTNL_MSG_CT_GET` + `NLM_F_DUMP`), matched here,
//! and each match deleted by its original tuple (`IPCTNL_MSG_CT_DELETE`). The messages are
//! `netlink-packet-netfilter`'s; the socket is `netlink-sys`'s.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use netlink_packet_core::{DefaultNla, Nla, NLM_F_DUMP};
use netlink_packet_netfilter::{
    conntrack::{ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple},
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::protocols::NETLINK_NETFILTER;

use crate::netlink_request::{NetlinkError, RequestSocket};

/// `CTA_ZONE`: an entry outside zone 0 is only found again with its zone.
const CTA_ZONE: u16 = 18;

/// The kernel answers a conntrack request at once; a reply that never comes must not hold the
/// daemon's sync loop forever.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed conntrack request (the shared netlink error, named for this protocol).
pub type ConntrackError = NetlinkError;

/// Which UDP entries to delete: those whose original destination is `dst:port` (any address
/// when `dst` is unspecified, as for a NodePort) and, when given, whose reply comes from
/// `reply_src` (the backend the entry was DNATed to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UdpFilter {
    pub dst: Ipv4Addr,
    pub port: u16,
    pub reply_src: Option<SocketAddrV4>,
}

/// One conntrack entry as far as matching and deleting it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    protocol: Option<u8>,
    orig_src: Option<SocketAddrV4>,
    orig_dst: Option<SocketAddrV4>,
    reply_src: Option<SocketAddrV4>,
    zone: Option<DefaultNla>,
}

impl UdpFilter {
    fn matches(&self, entry: &Entry) -> bool {
        let Some(dst) = entry.orig_dst else {
            return false;
        };
        entry.protocol == Some(u8::from(Protocol::Udp))
            && dst.port() == self.port
            && (self.dst.is_unspecified() || *dst.ip() == self.dst)
            && self
                .reply_src
                .is_none_or(|want| entry.reply_src == Some(want))
    }
}

/// Deletes the UDP entries that match any of `filters`; returns how many were deleted. An
/// entry that is gone by the time it is deleted (it expired) is not an error.
pub fn delete_udp(filters: &[UdpFilter]) -> Result<usize, ConntrackError> {
    if filters.is_empty() {
        return Ok(0);
    }
    let mut socket = CtSocket::open()?;
    let doomed: Vec<Entry> = socket
        .dump_ipv4()?
        .into_iter()
        .filter(|entry| filters.iter().any(|f| f.matches(entry)))
        .collect();
    let mut deleted = 0;
    for entry in &doomed {
        if socket.delete(entry)? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

struct CtSocket(RequestSocket);

impl CtSocket {
    fn open() -> Result<Self, ConntrackError> {
        RequestSocket::open(NETLINK_NETFILTER, "conntrack", REPLY_TIMEOUT).map(CtSocket)
    }

    /// Every IPv4 entry of this namespace's table.
    fn dump_ipv4(&mut self) -> Result<Vec<Entry>, ConntrackError> {
        let what = "dump of the IPv4 table";
        let mut entries = Vec::new();
        let mut undecodable = 0usize;
        self.exchange(
            ConntrackMessage::Get(Vec::new()),
            NLM_F_DUMP,
            what,
            |m| match m {
                Some(ConntrackMessage::New(attributes)) => entries.push(entry(attributes)),
                Some(_) => {}
                None => undecodable += 1,
            },
        )?;
        // One entry the message crate cannot read (an attribute newer than it) must not stop
        // every other stale flow from being deleted.
        if undecodable > 0 {
            tracing::warn!(
                undecodable,
                "conntrack entries that could not be decoded were left alone"
            );
        }
        Ok(entries)
    }

    /// Deletes `entry` by its original tuple; false when the kernel no longer has it.
    fn delete(&mut self, entry: &Entry) -> Result<bool, ConntrackError> {
        let (Some(src), Some(dst), Some(protocol)) =
            (entry.orig_src, entry.orig_dst, entry.protocol)
        else {
            return Ok(false); // never matched: filters require the tuple
        };
        let tuple = vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(IpAddr::V4(*src.ip())),
                IPTuple::DestinationAddress(IpAddr::V4(*dst.ip())),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(Protocol::from(protocol)),
                ProtoTuple::SourcePort(src.port()),
                ProtoTuple::DestinationPort(dst.port()),
            ]),
        ];
        let mut attributes = vec![ConntrackAttribute::CtaTupleOrig(tuple)];
        if let Some(zone) = &entry.zone {
            attributes.push(ConntrackAttribute::Other(zone.clone()));
        }
        let what = format!("delete of {src} -> {dst}");
        match self.exchange(ConntrackMessage::Delete(attributes), 0, &what, |_| {}) {
            Ok(()) => Ok(true),
            Err(ConntrackError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Sends one conntrack request and reads the replies to it, handing each conntrack
    /// message to `each`, or `None` for one that could not be decoded.
    fn exchange(
        &mut self,
        request: ConntrackMessage,
        flags: u16,
        what: &str,
        mut each: impl FnMut(Option<ConntrackMessage>),
    ) -> Result<(), ConntrackError> {
        let request = NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
            request,
        );
        self.0.exchange(request, flags, what, |reply| {
            match reply {
                Ok(NetfilterMessage {
                    inner: NetfilterMessageInner::Conntrack(message),
                    ..
                }) => each(Some(message)),
                Ok(_) => {}
                Err(_) => each(None),
            }
            Ok(())
        })
    }
}

/// The fields of a dumped entry that matching and deleting use.
fn entry(attributes: Vec<ConntrackAttribute>) -> Entry {
    let mut entry = Entry {
        protocol: None,
        orig_src: None,
        orig_dst: None,
        reply_src: None,
        zone: None,
    };
    for attribute in attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(tuple) => {
                let (protocol, src, dst) = endpoints(&tuple);
                entry.protocol = protocol;
                entry.orig_src = src;
                entry.orig_dst = dst;
            }
            ConntrackAttribute::CtaTupleReply(tuple) => entry.reply_src = endpoints(&tuple).1,
            ConntrackAttribute::Other(nla) if nla.kind() == CTA_ZONE => entry.zone = Some(nla),
            _ => {}
        }
    }
    entry
}

/// `(protocol, source, destination)` of a tuple; an address is `None` unless IPv4 with a port.
fn endpoints(tuple: &[Tuple]) -> (Option<u8>, Option<SocketAddrV4>, Option<SocketAddrV4>) {
    let (mut protocol, mut src_ip, mut dst_ip, mut src_port, mut dst_port) =
        (None, None, None, None, None);
    for part in tuple {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(IpAddr::V4(a)) => src_ip = Some(*a),
                        IPTuple::DestinationAddress(IpAddr::V4(a)) => dst_ip = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(fields) => {
                for field in fields {
                    match field {
                        ProtoTuple::Protocol(p) => protocol = Some(u8::from(*p)),
                        ProtoTuple::SourcePort(p) => src_port = Some(*p),
                        ProtoTuple::DestinationPort(p) => dst_port = Some(*p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let addr = |ip: Option<Ipv4Addr>, port: Option<u16>| Some(SocketAddrV4::new(ip?, port?));
    (protocol, addr(src_ip, src_port), addr(dst_ip, dst_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_entry(client: &str, vip: &str, backend: &str) -> Entry {
        Entry {
            protocol: Some(17),
            orig_src: Some(client.parse().expect("addr")),
            orig_dst: Some(vip.parse().expect("addr")),
            reply_src: Some(backend.parse().expect("addr")),
            zone: None,
        }
    }

    #[test]
    fn filters_match_destination_port_protocol_and_backend() {
        let entry = udp_entry("10.0.0.1:5000", "10.96.0.10:53", "10.244.0.2:5353");
        let exact = UdpFilter {
            dst: Ipv4Addr::new(10, 96, 0, 10),
            port: 53,
            reply_src: Some("10.244.0.2:5353".parse().expect("addr")),
        };
        assert!(exact.matches(&entry));
        assert!(UdpFilter {
            reply_src: None,
            ..exact
        }
        .matches(&entry));
        assert!(
            UdpFilter {
                dst: Ipv4Addr::UNSPECIFIED,
                ..exact
            }
            .matches(&entry),
            "unspecified: any destination address (NodePort)"
        );
        for miss in [
            UdpFilter { port: 54, ..exact },
            UdpFilter {
                dst: Ipv4Addr::new(10, 96, 0, 11),
                ..exact
            },
            UdpFilter {
                reply_src: Some("10.244.0.3:5353".parse().expect("addr")),
                ..exact
            },
            UdpFilter {
                reply_src: Some("10.244.0.2:5354".parse().expect("addr")),
                ..exact
            },
        ] {
            assert!(!miss.matches(&entry), "{miss:?}");
        }
        let tcp = Entry {
            protocol: Some(6),
            ..entry.clone()
        };
        assert!(!exact.matches(&tcp), "TCP entries are never touched");
        let no_tuple = Entry {
            orig_dst: None,
            ..entry
        };
        assert!(!exact.matches(&no_tuple), "an entry without ports (ICMP)");
    }

    #[test]
    fn no_filters_touch_nothing_and_open_no_socket() {
        assert_eq!(delete_udp(&[]).expect("nothing to do"), 0);
    }
}
