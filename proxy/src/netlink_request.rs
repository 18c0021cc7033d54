//! One netlink request at a time, and its replies: what the conntrack flush (ctnetlink) and
//! the UDP socket sweep (sock_diag) both do. A request carries a sequence number; replies to
//! an earlier request that timed out are skipped; the exchange ends at the kernel's
//! acknowledgement (or error), or at the end of a dump.
//!
//! The socket is `netlink-sys`'s and the framing `netlink-packet-core`'s; the messages are
//! the caller's.

use std::{io, os::fd::AsRawFd, time::Duration};

use netlink_packet_core::{
    DecodeError, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_sys::{Socket, SocketAddr};

/// Netlink message types below this are the protocol's own (`NLMSG_ERROR`, `NLMSG_DONE`…).
const NLMSG_MIN_TYPE: u16 = 0x10;

/// A failed netlink request, in the words of the protocol (`conntrack`, `sock_diag`) and
/// of the request.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("{protocol} netlink socket: {what}: {source}")]
    Socket {
        protocol: &'static str,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{protocol} {what}: the kernel said: {source}")]
    Kernel {
        protocol: &'static str,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{protocol} {what}: malformed netlink reply: {source}")]
    Decode {
        protocol: &'static str,
        what: String,
        #[source]
        source: DecodeError,
    },
}

/// Why an exchange failed, before it is named (see [`ExchangeError::named`]).
#[derive(Debug)]
enum ExchangeError {
    /// The socket itself failed (`what`: opening, sending, receiving…).
    Socket {
        what: &'static str,
        source: io::Error,
    },
    /// The kernel answered the request with an error.
    Kernel(io::Error),
    /// A reply could not be read.
    Decode(DecodeError),
}

impl ExchangeError {
    fn named(self, protocol: &'static str, what: &str) -> NetlinkError {
        match self {
            ExchangeError::Socket { what, source } => NetlinkError::Socket {
                protocol,
                what,
                source,
            },
            ExchangeError::Kernel(source) => NetlinkError::Kernel {
                protocol,
                what: what.to_owned(),
                source,
            },
            ExchangeError::Decode(source) => NetlinkError::Decode {
                protocol,
                what: what.to_owned(),
                source,
            },
        }
    }
}

pub(crate) struct RequestSocket {
    socket: Socket,
    seq: u32,
    /// The protocol's name in errors.
    name: &'static str,
}

impl RequestSocket {
    /// A socket of netlink `protocol` (called `name` in errors) connected to the kernel, whose
    /// reads give up after `reply_timeout` (the kernel answers at once; a reply that never
    /// comes must not hold the daemon's sync loop).
    pub(crate) fn open(
        protocol: isize,
        name: &'static str,
        reply_timeout: Duration,
    ) -> Result<Self, NetlinkError> {
        let failed = |what| {
            move |source| NetlinkError::Socket {
                protocol: name,
                what,
                source,
            }
        };
        let mut socket = Socket::new(protocol).map_err(failed("opening"))?;
        socket.bind_auto().map_err(failed("binding"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(failed("connecting to the kernel"))?;
        set_receive_timeout(&socket, reply_timeout).map_err(failed("setting a receive timeout"))?;
        Ok(Self {
            socket,
            seq: 0,
            name,
        })
    }

    /// Sends `request` (with `NLM_F_REQUEST | NLM_F_ACK | flags`) and reads the replies to it
    /// up to its acknowledgement or the end of a dump, handing each message of the protocol
    /// to `each`: decoded, or the reason it could not be (a netlink control message that
    /// cannot be decoded is an error of the exchange). An error `each` returns ends the
    /// exchange. `what` names the request in the error.
    pub(crate) fn exchange<M>(
        &mut self,
        request: M,
        flags: u16,
        what: &str,
        each: impl FnMut(Result<M, DecodeError>) -> Result<(), DecodeError>,
    ) -> Result<(), NetlinkError>
    where
        M: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
        M::Error: Into<DecodeError>,
    {
        let name = self.name;
        self.send_and_read(request, flags, each)
            .map_err(|error| error.named(name, what))
    }

    fn send_and_read<M>(
        &mut self,
        request: M,
        flags: u16,
        mut each: impl FnMut(Result<M, DecodeError>) -> Result<(), DecodeError>,
    ) -> Result<(), ExchangeError>
    where
        M: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
        M::Error: Into<DecodeError>,
    {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
        message.finalize();
        let mut buffer = vec![0; message.buffer_len()];
        message.serialize(&mut buffer);
        self.socket
            .send(&buffer, 0)
            .map_err(|source| ExchangeError::Socket {
                what: "sending",
                source,
            })?;
        loop {
            let (received, _) =
                self.socket
                    .recv_from_full()
                    .map_err(|source| ExchangeError::Socket {
                        what: "receiving",
                        source,
                    })?;
            let mut rest = received.as_slice();
            while !rest.is_empty() {
                // Checks that the length field is at least a header and within `rest`.
                let header = NetlinkBuffer::new_checked(rest).map_err(ExchangeError::Decode)?;
                let len = header.length() as usize;
                let (seq, is_control) = (
                    header.sequence_number(),
                    header.message_type() < NLMSG_MIN_TYPE,
                );
                let bytes = &rest[..len];
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
                if seq != self.seq {
                    continue; // a late reply to an earlier request
                }
                let reply = match NetlinkMessage::<M>::deserialize(bytes) {
                    Ok(reply) => reply,
                    Err(error) if is_control => return Err(ExchangeError::Decode(error)),
                    Err(error) => {
                        each(Err(error)).map_err(ExchangeError::Decode)?;
                        continue;
                    }
                };
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(()), // the acknowledgement
                            Some(_) => Err(ExchangeError::Kernel(error.to_io())),
                        };
                    }
                    NetlinkPayload::InnerMessage(message) => {
                        each(Ok(message)).map_err(ExchangeError::Decode)?
                    }
                    _ => {}
                }
            }
        }
    }
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    let value = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    // SAFETY: the fd is the open socket `socket` owns; `value` is a valid timeval that lives
    // across the call, and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&value as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
