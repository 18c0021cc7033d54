//! The frame pass on hand-built byte streams: what is repaired, what passes untouched, and
//! that the way the bytes are split between reads never changes the result.

use crate::frames::{FrameRepair, MAX_BLOCK, PREFACE};

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const DATA: u8 = 0x0;
const SETTINGS: u8 = 0x4;

/// A deterministic xorshift stream: random-looking inputs that a failure names by its seed.
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `:method POST`, `:scheme http`, `:path /p`, then `:authority` as a plain literal with
/// incremental indexing.
fn block_with_authority(authority: &[u8]) -> Vec<u8> {
    let mut b = vec![
        0x83,
        0x86,
        0x44,
        0x02,
        b'/',
        b'p',
        0x41,
        authority.len() as u8,
    ];
    b.extend_from_slice(authority);
    b
}

/// The same stream fed whole, and one byte per read.
fn run_both_ways(stream: &[u8]) -> (Vec<u8>, u64) {
    let whole = FrameRepair::repair_reads(&[stream]);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(
        FrameRepair::repair_reads(&bytes),
        whole,
        "splitting the reads changed the result"
    );
    whole
}

fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut c = PREFACE.to_vec();
    c.extend(frame(SETTINGS, 0, 0, &[]));
    for f in frames {
        c.extend_from_slice(f);
    }
    c
}

#[test]
fn a_scheme_in_the_authority_is_removed_and_every_other_byte_kept() {
    let data = frame(DATA, 0x1, 1, b"\x00\x00\x00\x00\x02hi");
    let input = connection(&[
        frame(
            HEADERS,
            0x4,
            1,
            &block_with_authority(b"http://127.0.0.1:2379"),
        ),
        data.clone(),
    ]);
    let (out, repaired) = run_both_ways(&input);
    assert_eq!(repaired, 1);
    let want = connection(&[
        frame(HEADERS, 0x4, 1, &block_with_authority(b"127.0.0.1:2379")),
        data,
    ]);
    assert_eq!(out, want);
}

#[test]
fn a_block_split_over_continuation_frames_is_repaired_into_one_frame() {
    let block = block_with_authority(b"http://h:1");
    let (a, b) = block.split_at(5);
    let input = connection(&[
        frame(HEADERS, 0x1, 3, a),
        frame(CONTINUATION, 0x0, 3, &b[..2]),
        frame(CONTINUATION, 0x4, 3, &b[2..]),
    ]);
    let (out, repaired) = run_both_ways(&input);
    assert_eq!(repaired, 1);
    // END_STREAM kept, END_HEADERS set.
    assert_eq!(
        out,
        connection(&[frame(HEADERS, 0x5, 3, &block_with_authority(b"h:1"))])
    );
}

#[test]
fn padding_is_dropped_and_priority_kept() {
    let block = block_with_authority(b"https://h:1/x");
    let mut payload = vec![3u8];
    payload.extend([0x80, 0, 0, 1, 16]);
    payload.extend(&block);
    payload.extend([0, 0, 0]);
    let input = connection(&[frame(HEADERS, 0x8 | 0x20 | 0x4, 5, &payload)]);
    let (out, _) = run_both_ways(&input);
    let mut want_payload = vec![0x80, 0, 0, 1, 16];
    want_payload.extend(block_with_authority(b"h:1"));
    assert_eq!(
        out,
        connection(&[frame(HEADERS, 0x20 | 0x4, 5, &want_payload)])
    );
}

#[test]
fn valid_authorities_and_other_frames_pass_byte_for_byte() {
    // A DATA payload that looks like a HEADERS frame is payload, not a frame.
    let lookalike = frame(HEADERS, 0x4, 1, &block_with_authority(b"http://h:1"));
    let input = connection(&[
        frame(HEADERS, 0x4, 1, &block_with_authority(b"127.0.0.1:2379")),
        frame(DATA, 0x0, 1, &lookalike),
        frame(0x8, 0, 0, &[0, 0, 0x10, 0]),
        frame(0x6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]),
    ]);
    assert_eq!(run_both_ways(&input), (input.clone(), 0));
}

#[test]
fn what_is_not_http2_passes_untouched() {
    let http1 = b"GET /health HTTP/1.1\r\nHost: http://bad\r\n\r\n".to_vec();
    assert_eq!(run_both_ways(&http1), (http1.clone(), 0));
    // A preface that stops agreeing half way.
    let mut almost = PREFACE[..10].to_vec();
    almost.extend(frame(HEADERS, 0x4, 1, &block_with_authority(b"http://h:1")));
    assert_eq!(run_both_ways(&almost), (almost.clone(), 0));
}

#[test]
fn broken_framing_is_handed_on_for_h2_to_refuse() {
    let block = block_with_authority(b"http://h:1");
    // A CONTINUATION for another stream interleaved: the held frames go on as they came.
    let interleaved = connection(&[
        frame(HEADERS, 0x0, 1, &block[..4]),
        frame(CONTINUATION, 0x4, 3, &block[4..]),
    ]);
    assert_eq!(run_both_ways(&interleaved), (interleaved.clone(), 0));
    // Padding longer than the payload.
    let bad_padding = connection(&[frame(HEADERS, 0x8 | 0x4, 1, &[9, 0x82])]);
    assert_eq!(run_both_ways(&bad_padding), (bad_padding.clone(), 0));
    // Priority flag without its five bytes.
    let short_priority = connection(&[frame(HEADERS, 0x20 | 0x4, 1, &[0, 0])]);
    assert_eq!(run_both_ways(&short_priority), (short_priority.clone(), 0));
    // A connection that ends mid-block and mid-frame: everything read reaches h2.
    let mut truncated = connection(&[frame(HEADERS, 0x0, 1, &block[..4])]);
    truncated.extend(&frame(CONTINUATION, 0x4, 1, &block[4..])[..6]);
    assert_eq!(run_both_ways(&truncated), (truncated.clone(), 0));
}

#[test]
fn blocks_over_the_bound_pass_unexamined() {
    let mut block = block_with_authority(b"http://h:1");
    // A never-indexed literal filling the block past the bound.
    block.extend([0x10, 0x01, b'x', 0x7f]);
    let mut len = Vec::new();
    let mut v = MAX_BLOCK - 127;
    while v >= 0x80 {
        len.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    len.push(v as u8);
    block.extend(len);
    block.extend(vec![b'y'; MAX_BLOCK]);
    let input = connection(&[frame(HEADERS, 0x4, 1, &block)]);
    assert_eq!(FrameRepair::repair_reads(&[&input]), (input.clone(), 0));
    // Split into continuations that together pass the bound: handed on as they came.
    let (a, b) = block.split_at(MAX_BLOCK / 2);
    let split = connection(&[frame(HEADERS, 0x0, 1, a), frame(CONTINUATION, 0x4, 1, b)]);
    assert_eq!(FrameRepair::repair_reads(&[&split]), (split.clone(), 0));
}

#[test]
fn a_repaired_block_larger_than_a_safe_frame_is_split() {
    // Many fields, then the authority: a block of ~40 KiB arriving in three frames.
    let mut block = Vec::new();
    for i in 0..400 {
        let value = format!("{i:0>90}");
        block.extend([0x10, 0x01, b'x', value.len() as u8]);
        block.extend(value.as_bytes());
    }
    block.extend(block_with_authority(b"http://h:1"));
    let (a, rest) = block.split_at(16_000);
    let (b, c) = rest.split_at(16_000);
    let input = connection(&[
        frame(HEADERS, 0x0, 1, a),
        frame(CONTINUATION, 0x0, 1, b),
        frame(CONTINUATION, 0x4, 1, c),
    ]);
    let (out, repaired) = FrameRepair::repair_reads(&[&input]);
    assert_eq!(repaired, 1);
    // Re-read the frames: no frame over 16 KiB, END_HEADERS only on the last, and the block
    // decodes to the same fields with the repaired authority.
    let mut at = PREFACE.len() + 9;
    let mut joined = Vec::new();
    let mut kinds = Vec::new();
    while at < out.len() {
        let len = u32::from_be_bytes([0, out[at], out[at + 1], out[at + 2]]) as usize;
        assert!(len <= 16_384);
        kinds.push((out[at + 3], out[at + 4]));
        joined.extend(&out[at + 9..at + 9 + len]);
        at += 9 + len;
    }
    assert_eq!(
        kinds,
        [(HEADERS, 0), (CONTINUATION, 0), (CONTINUATION, 0x4)]
    );
    let fields = loona_hpack::Decoder::new()
        .decode(&joined)
        .expect("decodes");
    assert_eq!(fields.len(), 404);
    assert_eq!(fields[403], (b":authority".to_vec(), b"h:1".to_vec()));
}

#[test]
fn arbitrary_frames_never_panic_and_pass_unchanged_unless_repaired() {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3_000 {
        let mut input = PREFACE.to_vec();
        for _ in 0..(next() % 6) {
            let kind = [HEADERS, CONTINUATION, DATA, SETTINGS][(next() % 4) as usize];
            let payload: Vec<u8> = (0..next() % 40).map(|_| next() as u8).collect();
            input.extend(frame(kind, next() as u8, (next() % 4) as u32, &payload));
        }
        // Sometimes cut the stream anywhere.
        if next().is_multiple_of(3) {
            let cut = (next() as usize) % input.len();
            input.truncate(cut);
        }
        let (out, repaired) = FrameRepair::repair_reads(&[&input]);
        if repaired == 0 {
            assert_eq!(out, input);
        }
    }
}
