//! The HTTP/2 side: a sans-I/O pass over the bytes a client sends, which hands every frame on
//! as it came except a header block whose `:authority` `block` repaired; that one is
//! re-framed around the new block.
//!
//! Only HEADERS frames (and the CONTINUATION frames of their block) are held until complete;
//! every other frame's payload streams through as it arrives. Header blocks over
//! [`MAX_BLOCK`] and frames that break the framing rules are handed on untouched, for h2 to
//! judge: the wrapper never refuses anything itself, and it holds at most one block.

use crate::block;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 endpoint accepts (SETTINGS_MAX_FRAME_SIZE's initial value):
/// a re-framed block never uses larger frames, whatever the server advertised.
const SAFE_FRAME: usize = 16_384;
/// Header blocks larger than this pass unexamined: an `:authority` repair is for requests
/// with ordinary headers, and the bound is what the wrapper may hold per connection.
pub const MAX_BLOCK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Comparing the first bytes with the preface; `matched` of them agreed so far.
    Preface { matched: usize },
    /// HTTP/2 frames.
    Frames,
    /// Not HTTP/2: every byte passes untouched.
    Passthrough,
}

/// A header block whose HEADERS frame came without END_HEADERS: its CONTINUATION frames are
/// awaited.
struct Collecting {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
    /// The frames as received, handed on unchanged if nothing is repaired.
    original: Vec<u8>,
}

/// The frame pass without I/O: [`crate::AuthorityRepair`] runs one per connection over the
/// bytes it reads; a fuzzer or another transport can drive it directly.
pub struct FrameRepair {
    phase: Phase,
    /// Payload bytes of a frame that streams through, still to come.
    payload_left: usize,
    collecting: Option<Collecting>,
    /// Header blocks repaired on this connection.
    repaired: u64,
}

impl Default for FrameRepair {
    fn default() -> Self {
        Self {
            phase: Phase::Preface { matched: 0 },
            payload_left: 0,
            collecting: None,
            repaired: 0,
        }
    }
}

/// The header block fragment of a HEADERS frame's payload, and its priority fields; `None`
/// when the padding does not fit (h2 answers that with PROTOCOL_ERROR).
fn header_fragment(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = *rest.first()? as usize;
        rest = &rest[1..];
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let fields: [u8; 5] = rest.get(..5)?.try_into().ok()?;
        priority = Some(fields);
        rest = &rest[5..];
    }
    let end = rest.len().checked_sub(pad)?;
    Some((priority, &rest[..end]))
}

fn push_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// A HEADERS frame (and CONTINUATION frames as needed) carrying `block`, without padding:
/// END_STREAM and the priority fields kept from the original.
fn push_headers(
    out: &mut Vec<u8>,
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: &[u8],
) {
    let priority_len = if priority.is_some() { 5 } else { 0 };
    let first_len = block.len().min(SAFE_FRAME - priority_len);
    let (first, mut rest) = block.split_at(first_len);
    let mut first_flags = flags & (END_STREAM | PRIORITY);
    if rest.is_empty() {
        first_flags |= END_HEADERS;
    }
    push_frame_header(
        out,
        priority_len + first.len(),
        HEADERS,
        first_flags,
        stream,
    );
    if let Some(fields) = priority {
        out.extend_from_slice(&fields);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(SAFE_FRAME));
        let flags = if after.is_empty() { END_HEADERS } else { 0 };
        push_frame_header(out, chunk.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
        rest = after;
    }
}

impl FrameRepair {
    /// Header blocks repaired so far.
    pub fn repaired(&self) -> u64 {
        self.repaired
    }

    /// Whether every byte from now on passes untouched (the connection is not HTTP/2).
    pub fn is_passthrough(&self) -> bool {
        self.phase == Phase::Passthrough
    }

    /// Takes what it can of `input` (a prefix: the returned count) and appends what the
    /// server should read to `out`. Bytes not taken are an incomplete frame header or held
    /// frame; offer them again with more after them.
    pub fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut at = 0;
        loop {
            match self.phase {
                Phase::Passthrough => {
                    out.extend_from_slice(&input[at..]);
                    return input.len();
                }
                Phase::Preface { matched } => {
                    let take = (PREFACE.len() - matched).min(input.len() - at);
                    if take == 0 {
                        return at;
                    }
                    let chunk = &input[at..at + take];
                    out.extend_from_slice(chunk);
                    at += take;
                    self.phase = if PREFACE[matched..matched + take] != *chunk {
                        Phase::Passthrough
                    } else if matched + take == PREFACE.len() {
                        Phase::Frames
                    } else {
                        Phase::Preface {
                            matched: matched + take,
                        }
                    };
                }
                Phase::Frames => {
                    if self.payload_left > 0 {
                        let n = self.payload_left.min(input.len() - at);
                        if n == 0 {
                            return at;
                        }
                        out.extend_from_slice(&input[at..at + n]);
                        at += n;
                        self.payload_left -= n;
                        continue;
                    }
                    let rest = &input[at..];
                    if rest.len() < FRAME_HEADER {
                        return at;
                    }
                    let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
                    let (kind, flags) = (rest[3], rest[4]);
                    let stream =
                        u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
                    if let Some(held) = &mut self.collecting {
                        let fits = held.block.len() + len <= MAX_BLOCK;
                        if kind == CONTINUATION && held.stream == stream && fits {
                            let Some(frame) = rest.get(..FRAME_HEADER + len) else {
                                return at;
                            };
                            held.original.extend_from_slice(frame);
                            held.block.extend_from_slice(&frame[FRAME_HEADER..]);
                            at += frame.len();
                            if flags & END_HEADERS != 0 {
                                if let Some(held) = self.collecting.take() {
                                    self.finish(held, out);
                                }
                            }
                            continue;
                        }
                        // Not the CONTINUATION h2 requires next, or a block too large to
                        // examine: what was held goes on as it came, then this frame.
                        out.extend_from_slice(&held.original);
                        self.collecting = None;
                        self.pass_frame_header(rest, len, out, &mut at);
                        continue;
                    }
                    if kind == HEADERS && len <= MAX_BLOCK {
                        let Some(frame) = rest.get(..FRAME_HEADER + len) else {
                            return at;
                        };
                        at += frame.len();
                        let Some((priority, fragment)) =
                            header_fragment(flags, &frame[FRAME_HEADER..])
                        else {
                            out.extend_from_slice(frame);
                            continue;
                        };
                        if flags & END_HEADERS != 0 {
                            self.emit(out, stream, flags, priority, fragment, frame);
                        } else {
                            self.collecting = Some(Collecting {
                                stream,
                                flags,
                                priority,
                                block: fragment.to_vec(),
                                original: frame.to_vec(),
                            });
                        }
                        continue;
                    }
                    self.pass_frame_header(rest, len, out, &mut at);
                }
            }
        }
    }

    /// A frame that streams through: its header now, its payload as it arrives.
    fn pass_frame_header(&mut self, rest: &[u8], len: usize, out: &mut Vec<u8>, at: &mut usize) {
        out.extend_from_slice(&rest[..FRAME_HEADER]);
        *at += FRAME_HEADER;
        self.payload_left = len;
    }

    fn finish(&mut self, held: Collecting, out: &mut Vec<u8>) {
        self.emit(
            out,
            held.stream,
            held.flags,
            held.priority,
            &held.block,
            &held.original,
        );
    }

    /// A complete header block: re-framed around its repair, or its frames as received.
    fn emit(
        &mut self,
        out: &mut Vec<u8>,
        stream: u32,
        flags: u8,
        priority: Option<[u8; 5]>,
        block: &[u8],
        original: &[u8],
    ) {
        match block::repair(block) {
            None => out.extend_from_slice(original),
            Some(repaired) => {
                self.repaired += 1;
                push_headers(out, stream, flags, priority, &repaired);
            }
        }
    }

    /// The client closed its side: whatever is held (a block still missing frames, the
    /// unfinished bytes in `input`) goes on as it came, for h2 to see the truncation.
    pub fn end(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if let Some(held) = self.collecting.take() {
            out.extend_from_slice(&held.original);
        }
        out.extend_from_slice(input);
        self.phase = Phase::Passthrough;
    }

    /// One connection's whole pass over bytes that arrive in these reads, then end: what the
    /// server reads, and how many header blocks were repaired. The wrapper drives the same
    /// `process`/`end` from a socket; tests and the fuzz target drive it from slices.
    pub fn repair_reads(reads: &[&[u8]]) -> (Vec<u8>, u64) {
        let mut pass = FrameRepair::default();
        let mut held = Vec::new();
        let mut out = Vec::new();
        for read in reads {
            held.extend_from_slice(read);
            let taken = pass.process(&held, &mut out);
            held.drain(..taken);
        }
        pass.end(&held, &mut out);
        (out, pass.repaired())
    }
}
