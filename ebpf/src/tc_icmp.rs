//! ICMP errors about translated flows, for the tc programs.
//!
//! An ICMP error (destination unreachable — port unreachable, fragmentation needed — or time
//! exceeded) quotes the IP header and first 8 bytes of the packet that caused it. For a
//! translated flow that quote carries the addresses of one side of the translation, which the
//! host receiving the error does not know: a client that sent to the ClusterIP gets an error
//! quoting the backend, and drops it (path MTU discovery then never learns the smaller MTU).
//! Like the flow's own packets, the quote is translated back, and so is the error's own
//! address when it is that of the translated end (the backend, or the ClusterIP):
//!
//! - egress (towards the client): quote `client → backend:port` becomes `client → vip:port`;
//!   an error sent by the backend itself comes from the ClusterIP;
//! - ingress (towards the backend): quote `vip:port → client` becomes `backend:port → client`;
//!   an error sent to the ClusterIP goes to the backend.
//!
//! The ICMP checksum covers the whole message (no pseudo-header), so each rewritten quoted
//! field, and the quoted IP header's checksum, is patched into it. The quoted L4 checksum is
//! left alone: only part of the datagram is quoted, so no receiver checks it (Linux does not).
//! Errors about source-NATed flows are not translated yet.

use aya_ebpf::programs::TcContext;
use keel_common::{CtKey, PROTO_TCP, PROTO_UDP};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IP_CSUM_OFF: usize = ETH_HLEN + 10;
const IP_SRC_OFF: usize = ETH_HLEN + 12;
const IP_DST_OFF: usize = ETH_HLEN + 16;
/// Fragment offset and "more fragments": an error is never fragmented, and only a first
/// fragment's quote holds ports.
const IP_FRAGMENTED: u16 = 0x3fff;
const IP_OFFSET: u16 = 0x1fff;
const PROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
/// The ICMP header: type, code, checksum, and 4 bytes (unused, or the next hop's MTU).
const ICMP_HLEN: usize = 8;

/// Which end of the quoted packet is translated.
pub enum Side {
    /// The quoted source (ingress: the ClusterIP the client's error is about).
    Source,
    /// The quoted destination (egress: the backend the client's packet went to).
    Destination,
}

/// An ICMP error quoting an IPv4 TCP/UDP packet. Addresses and ports in network byte order.
pub struct IcmpError {
    outer_saddr: u32,
    outer_daddr: u32,
    /// Offset of the ICMP checksum.
    icmp_csum: usize,
    /// Offsets of the quoted IP header and of its L4 header.
    inner_ip: usize,
    inner_l4: usize,
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    proto: u8,
}

/// Reads an ICMP error quoting a TCP/UDP packet; `None` for any other packet.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Option<IcmpError> {
    if u16::from_be(ctx.load::<u16>(12).ok()?) != ETH_P_IP {
        return None;
    }
    let version_ihl: u8 = ctx.load(ETH_HLEN).ok()?;
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    let proto: u8 = ctx.load(ETH_HLEN + 9).ok()?;
    let frag = u16::from_be(ctx.load::<u16>(ETH_HLEN + 6).ok()?);
    if proto != PROTO_ICMP || frag & IP_FRAGMENTED != 0 {
        return None;
    }
    let icmp = ETH_HLEN + ihl;
    let kind: u8 = ctx.load(icmp).ok()?;
    if kind != ICMP_DEST_UNREACH && kind != ICMP_TIME_EXCEEDED {
        return None;
    }
    let inner_ip = icmp + ICMP_HLEN;
    let inner_version_ihl: u8 = ctx.load(inner_ip).ok()?;
    let inner_ihl = usize::from(inner_version_ihl & 0x0f) * 4;
    if inner_version_ihl >> 4 != 4 || inner_ihl < 20 {
        return None;
    }
    let inner_proto: u8 = ctx.load(inner_ip + 9).ok()?;
    let inner_frag = u16::from_be(ctx.load::<u16>(inner_ip + 6).ok()?);
    if (inner_proto != PROTO_TCP && inner_proto != PROTO_UDP) || inner_frag & IP_OFFSET != 0 {
        return None;
    }
    let inner_l4 = inner_ip + inner_ihl;
    Some(IcmpError {
        outer_saddr: ctx.load(IP_SRC_OFF).ok()?,
        outer_daddr: ctx.load(IP_DST_OFF).ok()?,
        icmp_csum: icmp + 2,
        inner_ip,
        inner_l4,
        saddr: ctx.load(inner_ip + 12).ok()?,
        daddr: ctx.load(inner_ip + 16).ok()?,
        // A quote shorter than the ports fails here: nothing to translate.
        sport: ctx.load(inner_l4).ok()?,
        dport: ctx.load(inner_l4 + 2).ok()?,
        proto: inner_proto,
    })
}

impl IcmpError {
    /// The conntrack key of the packet answering the quoted one, seen as `direction`: the
    /// quote is a packet the host sent, its flow's entry is keyed by the other way round.
    pub fn answer_key(&self, direction: u8) -> CtKey {
        CtKey {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            direction,
            pad: 0,
        }
    }

    /// Rewrites the quoted `side` to `addr:port`, and the error's own address on the other
    /// side when it is the quoted one (the host at the translated end sent or gets it).
    #[inline(always)]
    pub fn translate(&self, ctx: &TcContext, side: Side, addr: u32, port: u16) -> Option<()> {
        let (addr_off, old_addr, port_off, old_port, outer_off, outer_old) = match side {
            Side::Source => (
                self.inner_ip + 12,
                self.saddr,
                self.inner_l4,
                self.sport,
                IP_DST_OFF,
                self.outer_daddr,
            ),
            Side::Destination => (
                self.inner_ip + 16,
                self.daddr,
                self.inner_l4 + 2,
                self.dport,
                IP_SRC_OFF,
                self.outer_saddr,
            ),
        };
        if old_addr != addr {
            let inner_csum_off = self.inner_ip + 10;
            let old_csum: u16 = ctx.load(inner_csum_off).ok()?;
            let new_csum = csum_replace4(old_csum, old_addr, addr);
            ctx.l4_csum_replace(self.icmp_csum, u64::from(old_addr), u64::from(addr), 4).ok()?;
            ctx.l4_csum_replace(self.icmp_csum, u64::from(old_csum), u64::from(new_csum), 2).ok()?;
            ctx.store(addr_off, &addr, 0).ok()?;
            ctx.store(inner_csum_off, &new_csum, 0).ok()?;
            if outer_old == old_addr {
                // Outside the ICMP message: only the IP header checksum covers it.
                ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(outer_old), u64::from(addr), 4).ok()?;
                ctx.store(outer_off, &addr, 0).ok()?;
            }
        }
        if old_port != port {
            ctx.l4_csum_replace(self.icmp_csum, u64::from(old_port), u64::from(port), 2).ok()?;
            ctx.store(port_off, &port, 0).ok()?;
        }
        Some(())
    }
}

/// The Internet checksum `check` after a 32-bit field of the data it covers changed from
/// `from` to `to` (RFC 1624: HC' = ~(~HC + ~m + m')). Values as loaded from the packet: the
/// one's-complement sum does not depend on byte order, as long as all agree.
#[inline(always)]
fn csum_replace4(check: u16, from: u32, to: u32) -> u16 {
    let mut sum = u32::from(!check);
    sum += u32::from(!(from as u16)) + u32::from(!((from >> 16) as u16));
    sum += (to & 0xffff) + (to >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
