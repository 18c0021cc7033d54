//! Destroying connected IPv4 UDP sockets over sock_diag, in the calling thread's network
//! namespace.
//!
//! The eBPF mode rewrites a UDP socket's `connect()` once, to a backend; the socket then sends
//! to that backend for as long as it lives, whatever the service says now. When the backend
//! leaves, the socket is aborted as Cilium does (its socket iterator calls
//! `bpf_sock_destroy`): the kernel sets `ECONNABORTED` on it and disconnects it, so the
//! application's pending or next `recv` fails and it connects again (through the socket LB, to
//! a backend that exists).
//!
//! The mechanism here is the older one, `SOCK_DESTROY` over `NETLINK_SOCK_DIAG`
//! (`CONFIG_INET_DIAG_DESTROY`, Linux 4.5+): it needs no BPF iterator and no kfunc, so it works
//! on every kernel keel runs on (the Debian 6.1 guest has no `bpf_sock_destroy`, which came in
//! 6.5). UDP sockets are listed with one dump (`SOCK_DIAG_BY_FAMILY` + `NLM_F_DUMP`, state
//! `ESTABLISHED`: connected sockets only), matched here by destination, and each match
//! destroyed by its full id (addresses, ports, interface and cookie, so a socket that was
//! closed and its port reused meanwhile is not hit). The messages are
//! `netlink-packet-sock-diag`'s; the socket is `netlink-sys`'s.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddrV4},
    time::Duration,
};

use netlink_packet_core::{DecodeError, NetlinkDeserializable, NetlinkSerializable, NLM_F_DUMP};
use netlink_packet_sock_diag::{
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagDestroy, SockDiagMessage, AF_INET, IPPROTO_UDP,
};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;

use crate::netlink_request::{NetlinkError, RequestSocket};

/// The kernel answers at once; a reply that never comes must not hold the daemon's sync loop.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed sock_diag request (the shared netlink error, named for this protocol).
pub type SockDiagError = NetlinkError;

/// What one sweep of one namespace did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Destroyed {
    /// Connected sockets whose destination matched.
    pub matched: usize,
    /// Of those, the ones the kernel destroyed (the rest were closed meanwhile).
    pub destroyed: usize,
}

/// Destroys the connected UDP sockets of this thread's network namespace whose destination is
/// one of `destinations`.
pub fn destroy_udp_connected_to(
    destinations: &BTreeSet<SocketAddrV4>,
) -> Result<Destroyed, SockDiagError> {
    if destinations.is_empty() {
        return Ok(Destroyed::default());
    }
    let mut socket = DiagSocket::open()?;
    let doomed: Vec<SocketId> = socket
        .dump_connected_udp()?
        .into_iter()
        .filter(|id| destination(id).is_some_and(|d| destinations.contains(&d)))
        .collect();
    let mut done = Destroyed {
        matched: doomed.len(),
        destroyed: 0,
    };
    for id in doomed {
        if socket.destroy(id)? {
            done.destroyed += 1;
        }
    }
    Ok(done)
}

/// The socket's peer, if it is IPv4.
fn destination(id: &SocketId) -> Option<SocketAddrV4> {
    match id.destination_address {
        IpAddr::V4(ip) => Some(SocketAddrV4::new(ip, id.destination_port)),
        IpAddr::V6(_) => None,
    }
}

fn udp_request(socket_id: SocketId) -> InetRequest {
    InetRequest {
        family: AF_INET,
        protocol: IPPROTO_UDP,
        extensions: ExtensionFlags::empty(),
        // A connected UDP socket is in TCP_ESTABLISHED; unconnected ones (TCP_CLOSE) have no
        // peer to go stale.
        states: StateFlags::ESTABLISHED,
        socket_id,
    }
}

struct DiagSocket(RequestSocket);

impl DiagSocket {
    fn open() -> Result<Self, SockDiagError> {
        RequestSocket::open(NETLINK_SOCK_DIAG, "sock_diag", REPLY_TIMEOUT).map(DiagSocket)
    }

    /// Every connected IPv4 UDP socket of this namespace.
    fn dump_connected_udp(&mut self) -> Result<Vec<SocketId>, SockDiagError> {
        let mut ids = Vec::new();
        let request = SockDiagMessage::InetRequest(udp_request(SocketId::new_v4()));
        self.exchange(request, NLM_F_DUMP, "dump of UDP sockets", |message| {
            if let SockDiagMessage::InetResponse(response) = message {
                ids.push(response.header.socket_id);
            }
        })?;
        Ok(ids)
    }

    /// Destroys the socket `id` names; false when the kernel no longer has it.
    fn destroy(&mut self, id: SocketId) -> Result<bool, SockDiagError> {
        let what = format!(
            "destroy of the UDP socket {}:{} -> {}:{}",
            id.source_address, id.source_port, id.destination_address, id.destination_port
        );
        let request = SockDiagDestroy::new(SockDiagMessage::InetRequest(udp_request(id)));
        match self.exchange(request, 0, &what, |_: SockDiagDestroy| {}) {
            Ok(()) => Ok(true),
            Err(SockDiagError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Sends one request and reads the replies to it, handing each message to `each`; a
    /// reply that cannot be decoded fails the exchange.
    fn exchange<M>(
        &mut self,
        request: M,
        flags: u16,
        what: &str,
        mut each: impl FnMut(M),
    ) -> Result<(), SockDiagError>
    where
        M: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
        M::Error: Into<DecodeError>,
    {
        self.0.exchange(request, flags, what, |reply| {
            each(reply?);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};

    use super::*;

    #[test]
    fn nothing_to_destroy_opens_no_socket() {
        assert_eq!(
            destroy_udp_connected_to(&BTreeSet::new()).expect("nothing to do"),
            Destroyed::default()
        );
    }

    /// Real sockets on loopback: the one connected to the doomed address is aborted, the one
    /// connected elsewhere is left alone. Needs root (SOCK_DESTROY requires CAP_NET_ADMIN).
    #[test]
    fn the_socket_connected_to_a_doomed_address_is_aborted_and_no_other() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "SOCK_DESTROY needs CAP_NET_ADMIN: run keel's tests as root (cargo xtask test)"
        );
        let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let other = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let doomed_peer = match server.local_addr().expect("addr") {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(_) => unreachable!("bound to IPv4"),
        };
        let doomed = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        doomed.connect(doomed_peer).expect("connect");
        let kept = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        kept.connect(other.local_addr().expect("addr"))
            .expect("connect");

        let done = destroy_udp_connected_to(&BTreeSet::from([doomed_peer])).expect("sweep");
        assert_eq!(
            done,
            Destroyed {
                matched: 1,
                destroyed: 1
            }
        );
        doomed.set_nonblocking(true).expect("nonblocking");
        let error = doomed.recv(&mut [0; 16]).expect_err("aborted");
        assert_eq!(error.raw_os_error(), Some(libc::ECONNABORTED), "{error}");
        kept.send(b"x").expect("the other socket still sends");
        let mut buf = [0; 4];
        other
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        assert_eq!(other.recv(&mut buf).expect("received"), 1);
    }
}
