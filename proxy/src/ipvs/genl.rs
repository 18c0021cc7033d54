//! A small generic-netlink client for the `IPVS` family: resolving the family id through
//! `nlctrl`, sending a request and reading its acknowledgement, and dumps. The messages
//! themselves are encoded in the parent module.

use std::io;

use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

/// `GENL_ID_CTRL`: the controller family, which names the others.
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
const HEADER: usize = 16;

/// A netlink error: the request and the kernel's errno.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct GenlError {
    pub what: String,
    #[source]
    pub source: io::Error,
}

impl GenlError {
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

fn failed(what: &str) -> impl FnOnce(io::Error) -> GenlError + '_ {
    move |source| GenlError {
        what: what.to_owned(),
        source,
    }
}

/// A socket talking to one generic-netlink family.
pub struct GenlSocket {
    socket: Socket,
    family: u16,
    seq: u32,
}

impl GenlSocket {
    /// Opens a socket and resolves `name` (e.g. `IPVS`) to its family id.
    pub fn open(name: &str) -> Result<Self, GenlError> {
        let mut socket =
            Socket::new(NETLINK_GENERIC).map_err(failed("opening a generic netlink socket"))?;
        socket
            .bind_auto()
            .map_err(failed("binding the netlink socket"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(failed("connecting to the kernel"))?;
        let mut this = Self {
            socket,
            family: GENL_ID_CTRL,
            seq: 0,
        };
        let mut payload = vec![CTRL_CMD_GETFAMILY, 1, 0, 0];
        let mut family_name = name.as_bytes().to_vec();
        family_name.push(0);
        super::put(&mut payload, CTRL_ATTR_FAMILY_NAME, &family_name);
        let replies = this.exchange(
            &payload,
            NLM_F_REQUEST,
            &format!("resolving the {name} netlink family"),
        )?;
        let id = replies
            .iter()
            .find_map(|reply| {
                attributes(reply.get(4..)?)
                    .into_iter()
                    .find(|(kind, _)| *kind == CTRL_ATTR_FAMILY_ID)
            })
            .and_then(|(_, value)| Some(u16::from_ne_bytes(value.get(..2)?.try_into().ok()?)))
            .ok_or_else(|| GenlError {
                what: format!("resolving the {name} netlink family"),
                source: io::Error::other("the reply has no family id"),
            })?;
        this.family = id;
        Ok(this)
    }

    /// Sends one request (genl header + attributes) and waits for its acknowledgement.
    pub fn request(&mut self, payload: &[u8], what: &str) -> Result<(), GenlError> {
        self.exchange(payload, NLM_F_REQUEST | NLM_F_ACK, what)
            .map(drop)
    }

    /// Sends a dump request; returns the genl payload of every reply.
    pub fn dump(&mut self, payload: &[u8], what: &str) -> Result<Vec<Vec<u8>>, GenlError> {
        self.exchange(payload, NLM_F_REQUEST | NLM_F_DUMP, what)
    }

    fn exchange(
        &mut self,
        payload: &[u8],
        flags: u16,
        what: &str,
    ) -> Result<Vec<Vec<u8>>, GenlError> {
        self.seq = self.seq.wrapping_add(1);
        let mut message = Vec::with_capacity(HEADER + payload.len());
        message.extend_from_slice(&((HEADER + payload.len()) as u32).to_ne_bytes());
        message.extend_from_slice(&self.family.to_ne_bytes());
        message.extend_from_slice(&flags.to_ne_bytes());
        message.extend_from_slice(&self.seq.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(payload);
        self.socket.send(&message, 0).map_err(failed(what))?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        loop {
            let (buffer, _) = self.socket.recv_from_full().map_err(failed(what))?;
            let mut rest = buffer.as_slice();
            while rest.len() >= HEADER {
                let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
                let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap_or_default());
                let seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap_or_default());
                if len < HEADER || len > rest.len() {
                    return Err(GenlError {
                        what: what.to_owned(),
                        source: io::Error::other("truncated netlink message"),
                    });
                }
                let body = &rest[HEADER..len];
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
                if seq != self.seq {
                    continue; // a stale reply to an earlier request
                }
                match kind {
                    NLMSG_ERROR => {
                        let errno = i32::from_ne_bytes(
                            body.get(..4)
                                .and_then(|b| b.try_into().ok())
                                .unwrap_or_default(),
                        );
                        if errno != 0 {
                            return Err(GenlError {
                                what: what.to_owned(),
                                source: io::Error::from_raw_os_error(-errno),
                            });
                        }
                        return Ok(replies); // the acknowledgement
                    }
                    NLMSG_DONE => return Ok(replies),
                    _ => {
                        replies.push(body.to_vec());
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(replies);
                        }
                    }
                }
            }
        }
    }
}

/// The attributes inside the nested attribute `kind` of a genl payload (after its header).
pub fn nested(payload: &[u8], kind: u16) -> Option<Vec<(u16, &[u8])>> {
    let outer = attributes(payload.get(4..)?);
    let (_, value) = outer.into_iter().find(|(k, _)| *k == kind)?;
    Some(attributes(value))
}

/// The attributes of a genl payload after its 4-byte genl header, or of a nested attribute:
/// `(type without flags, value)`.
pub fn attributes(mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut attrs = Vec::new();
    while bytes.len() >= 4 {
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        if len < 4 || len > bytes.len() {
            break;
        }
        attrs.push((kind, &bytes[4..len]));
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
    }
    attrs
}
