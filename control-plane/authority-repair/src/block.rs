//! The HPACK side: finding a literal `:authority` field in a header block and rewriting its
//! value, without a dynamic table of its own.
//!
//! A header block is a run of field representations (RFC 7541 §6). Each one's length can be
//! read from its own bytes, so the block can be walked and copied representation by
//! representation; only the representation that carries a malformed `:authority` value is
//! re-written, with the repaired value as a plain (not Huffman-coded) string and the same
//! first byte and name index.
//!
//! **Why the decoder's dynamic table stays in step with the client's encoder.** A literal
//! "with incremental indexing" adds its field to both sides' tables. Repaired, the server's
//! entry is shorter than the one the client's encoder counted (the repaired value is a strict
//! part of the original). Entries are addressed newest-first and evicted oldest-first, so a
//! smaller entry only makes the server evict later than the client: every index the client
//! can still send names the same entry on both sides, and the server merely keeps some old
//! entries the client will never name again. When the client later sends the field by index
//! (as grpc-go does from the second request on), the server finds the repaired value.
//!
//! The name of a literal is recognised when it is the static table's `:authority` (index 1,
//! which is what grpc-go's encoder uses) or a literal name; a name taken from the dynamic
//! table is not resolved (that would need the table), and such a block is left as it is.

use loona_hpack::huffman::HuffmanDecoder;

/// The static table's index of `:authority` (RFC 7541 Appendix A).
const STATIC_AUTHORITY: usize = 1;
const AUTHORITY: &[u8] = b":authority";

/// A HPACK integer with an `prefix_bits`-bit prefix (RFC 7541 §5.1), starting at `at`: the
/// value and the offset after it. `None` when the block ends inside it or it overflows what a
/// field length can be (every length this module reads is bounded by the block's size).
fn integer(block: &[u8], at: usize, prefix_bits: u32) -> Option<(usize, usize)> {
    let max_prefix = (1usize << prefix_bits) - 1;
    let first = *block.get(at)? as usize & max_prefix;
    if first < max_prefix {
        return Some((first, at + 1));
    }
    let mut value = max_prefix;
    let mut shift = 0u32;
    let mut at = at + 1;
    loop {
        let byte = *block.get(at)?;
        at += 1;
        // Four continuation bytes reach 2^28: past any header block this wrapper buffers.
        if shift > 21 {
            return None;
        }
        value += ((byte & 0x7f) as usize) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
    }
}

/// A string literal (RFC 7541 §5.2) at `at`: whether it is Huffman-coded, its bytes as sent,
/// and the offset after it.
fn string(block: &[u8], at: usize) -> Option<(bool, &[u8], usize)> {
    let huffman = *block.get(at)? & 0x80 != 0;
    let (len, start) = integer(block, at, 7)?;
    let end = start.checked_add(len)?;
    Some((huffman, block.get(start..end)?, end))
}

fn decoded(huffman: bool, bytes: &[u8]) -> Option<Vec<u8>> {
    if huffman {
        HuffmanDecoder::new().decode(bytes).ok()
    } else {
        Some(bytes.to_vec())
    }
}

/// What a malformed authority becomes: the scheme and anything from the path on cut away
/// (`http://127.0.0.1:2379` → `127.0.0.1:2379`), if that leaves an authority `http` accepts —
/// the same parser h2 applies to `:authority`. `None` for a value that is valid already or
/// cannot be repaired (h2 will refuse that request as it would have).
pub(crate) fn repaired_authority(value: &[u8]) -> Option<Vec<u8>> {
    if http::uri::Authority::try_from(value).is_ok() {
        return None;
    }
    let after_scheme = match value.windows(3).position(|w| w == b"://") {
        Some(i) => &value[i + 3..],
        None => value,
    };
    let end = after_scheme
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(after_scheme.len());
    let candidate = &after_scheme[..end];
    if candidate.is_empty() || http::uri::Authority::try_from(candidate).is_err() {
        return None;
    }
    Some(candidate.to_vec())
}

/// Appends a plain string literal (H = 0) to `out`.
fn push_plain_string(out: &mut Vec<u8>, value: &[u8]) {
    let start = out.len();
    push_integer(out, value.len(), 7);
    // The H bit of the first byte is already 0: `push_integer` leaves the bits above the
    // prefix clear.
    debug_assert_eq!(out[start] & 0x80, 0);
    out.extend_from_slice(value);
}

/// Appends a HPACK integer whose first byte has `prefix_bits` free bits (the others zero).
fn push_integer(out: &mut Vec<u8>, mut value: usize, prefix_bits: u32) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        out.push(value as u8);
        return;
    }
    out.push(max_prefix as u8);
    value -= max_prefix;
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The block with every malformed literal `:authority` repaired, or `None` when there is
/// nothing to repair — including a block that does not walk (a truncated integer, a string
/// past the end): such a block goes to h2 as it came, for h2 to refuse.
pub fn repair(block: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    // Bytes of `block` before this offset are in `out` (once it exists).
    let mut copied = 0;
    let mut at = 0;
    while at < block.len() {
        let first = block[at];
        if first & 0x80 != 0 {
            // Indexed field: the index only.
            at = integer(block, at, 7)?.1;
            continue;
        }
        if first & 0xe0 == 0x20 {
            // Dynamic table size update.
            at = integer(block, at, 5)?.1;
            continue;
        }
        // A literal: with incremental indexing (01), without indexing (0000) or never
        // indexed (0001); the name index has a 6- or 4-bit prefix.
        let prefix_bits = if first & 0xc0 == 0x40 { 6 } else { 4 };
        let (name_index, after_index) = integer(block, at, prefix_bits)?;
        let (is_authority, value_at) = if name_index == 0 {
            let (huffman, name, after_name) = string(block, after_index)?;
            let is_authority = name.len() <= AUTHORITY.len() * 2
                && decoded(huffman, name).is_some_and(|n| n == AUTHORITY);
            (is_authority, after_name)
        } else {
            (name_index == STATIC_AUTHORITY, after_index)
        };
        let (huffman, value, after_value) = string(block, value_at)?;
        at = after_value;
        if !is_authority {
            continue;
        }
        let Some(repaired) = decoded(huffman, value).and_then(|v| repaired_authority(&v)) else {
            continue;
        };
        let out = out.get_or_insert_with(|| Vec::with_capacity(block.len()));
        out.extend_from_slice(&block[copied..value_at]);
        push_plain_string(out, &repaired);
        copied = after_value;
    }
    let mut out = out?;
    out.extend_from_slice(&block[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal with incremental indexing of the static `:authority` name, plain value.
    fn authority_literal(value: &[u8]) -> Vec<u8> {
        let mut b = vec![0x40 | STATIC_AUTHORITY as u8];
        push_plain_string(&mut b, value);
        b
    }

    #[test]
    fn integers_round_trip_at_every_prefix() {
        for prefix in [4u32, 5, 6, 7] {
            for value in [
                0usize,
                1,
                14,
                15,
                16,
                30,
                31,
                62,
                63,
                64,
                126,
                127,
                128,
                300,
                16_384,
                1 << 20,
            ] {
                let mut b = Vec::new();
                push_integer(&mut b, value, prefix);
                assert_eq!(
                    integer(&b, 0, prefix),
                    Some((value, b.len())),
                    "{value}/{prefix}"
                );
            }
        }
    }

    #[test]
    fn integers_that_end_early_or_overflow_do_not_walk() {
        assert_eq!(integer(&[0x7f], 0, 7), None);
        assert_eq!(integer(&[0x7f, 0x80, 0x80], 0, 7), None);
        assert_eq!(
            integer(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 0, 7),
            None
        );
        assert_eq!(integer(&[], 0, 7), None);
    }

    #[test]
    fn a_scheme_and_path_are_cut_from_the_authority() {
        assert_eq!(
            repaired_authority(b"http://127.0.0.1:2379").as_deref(),
            Some(&b"127.0.0.1:2379"[..])
        );
        assert_eq!(
            repaired_authority(b"https://etcd.example:2379/some/path?q#f").as_deref(),
            Some(&b"etcd.example:2379"[..])
        );
        assert_eq!(
            repaired_authority(b"http://[::1]:2379").as_deref(),
            Some(&b"[::1]:2379"[..])
        );
        // Valid already: left alone.
        assert_eq!(repaired_authority(b"127.0.0.1:2379"), None);
        assert_eq!(repaired_authority(b"localhost"), None);
        // Nothing valid to keep: left for h2 to refuse.
        assert_eq!(repaired_authority(b"http://"), None);
        assert_eq!(repaired_authority(b"http:///x"), None);
        assert_eq!(repaired_authority(b"unix:///run/etcd.sock"), None);
        assert_eq!(repaired_authority(b"has space:1"), None);
    }

    #[test]
    fn the_static_authority_literal_is_repaired_and_the_rest_kept() {
        // :method GET (indexed 2), the literal, then a never-indexed custom field.
        let mut block = vec![0x82];
        block.extend(authority_literal(b"http://127.0.0.1:2379"));
        block.extend([0x10, 0x01, b'x', 0x01, b'y']);
        let repaired = repair(&block).expect("repaired");
        let mut want = vec![0x82];
        want.extend(authority_literal(b"127.0.0.1:2379"));
        want.extend([0x10, 0x01, b'x', 0x01, b'y']);
        assert_eq!(repaired, want);
        // loona-hpack's decoder, standing in for h2's, reads the repaired block.
        let fields = loona_hpack::Decoder::new()
            .decode(&repaired)
            .expect("decodes");
        assert_eq!(
            fields[1],
            (b":authority".to_vec(), b"127.0.0.1:2379".to_vec())
        );
        assert_eq!(fields[2], (b"x".to_vec(), b"y".to_vec()));
    }

    #[test]
    fn every_literal_form_and_a_literal_name_are_recognised() {
        for first in [0x01u8, 0x11] {
            // Without indexing / never indexed, static name index 1.
            let mut block = vec![first];
            push_plain_string(&mut block, b"http://h:1");
            let mut want = vec![first];
            push_plain_string(&mut want, b"h:1");
            assert_eq!(repair(&block), Some(want));
        }
        let mut block = vec![0x40];
        push_plain_string(&mut block, b":authority");
        push_plain_string(&mut block, b"http://h:1/");
        let mut want = vec![0x40];
        push_plain_string(&mut want, b":authority");
        push_plain_string(&mut want, b"h:1");
        assert_eq!(repair(&block), Some(want));
    }

    #[test]
    fn huffman_coded_values_are_decoded() {
        // "www.example.com" Huffman-coded, RFC 7541 C.4.1: valid, left alone.
        let huffman = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        let mut block = vec![0x41, 0x80 | huffman.len() as u8];
        block.extend(huffman);
        assert_eq!(repair(&block), None);
        // "http://a:1" Huffman-coded (codes of RFC 7541 Appendix B), as grpc-go sends it.
        let huffman = [0x9d, 0x29, 0xae, 0xe3, 0x0c, 0x0e, 0xe0, 0x7f];
        let mut block = vec![0x41, 0x80 | huffman.len() as u8];
        block.extend(huffman);
        assert_eq!(repair(&block), Some(vec![0x41, 0x03, b'a', b':', b'1']));
    }

    #[test]
    fn blocks_without_a_malformed_authority_are_left_alone() {
        assert_eq!(repair(&[]), None);
        assert_eq!(repair(&[0x82, 0x86, 0x84]), None);
        assert_eq!(repair(&authority_literal(b"127.0.0.1:2379")), None);
        // A malformed value under another name is not this wrapper's business.
        let mut block = vec![0x04];
        push_plain_string(&mut block, b"http://x/");
        assert_eq!(repair(&block), None);
        // A size update, then an indexed field.
        assert_eq!(repair(&[0x3f, 0xe1, 0x1f, 0x82]), None);
    }

    #[test]
    fn blocks_that_do_not_walk_are_left_to_h2() {
        let mut block = authority_literal(b"http://127.0.0.1:2379");
        block.truncate(block.len() - 3);
        assert_eq!(repair(&block), None);
        // A string length past the end.
        assert_eq!(repair(&[0x41, 0x7f, 0x80, 0x01, b'a']), None);
        // A name literal that ends early.
        assert_eq!(repair(&[0x40, 0x05, b'a']), None);
        // Bad Huffman (EOS padding longer than 7 bits) for the value: not decodable, kept.
        let mut block = vec![0x41, 0x82, 0xff, 0xff];
        block.extend([0x82]);
        assert_eq!(repair(&block), None);
    }

    #[test]
    fn a_huffman_value_may_come_back_longer_as_a_plain_string() {
        // "http://" and twenty 'a' Huffman-coded are 18 bytes ('a' takes 5 bits); the repaired
        // twenty 'a' are 20 as a plain string. The decoded value, which is what the dynamic
        // table counts, still shrinks from 27 bytes to 20.
        let mut bits = String::new();
        for (code, len) in [
            (0x27u32, 6),
            (0x9, 5),
            (0x9, 5),
            (0x2b, 6),
            (0x5c, 7),
            (0x18, 6),
            (0x18, 6),
        ]
        .into_iter()
        .chain(std::iter::repeat_n((0x3, 5), 20))
        {
            bits.push_str(&format!("{code:0len$b}"));
        }
        while !bits.len().is_multiple_of(8) {
            bits.push('1');
        }
        let huffman: Vec<u8> = (0..bits.len() / 8)
            .map(|i| u8::from_str_radix(&bits[i * 8..i * 8 + 8], 2).expect("bits"))
            .collect();
        assert_eq!(huffman.len(), 18);
        let mut block = vec![0x41, 0x80 | huffman.len() as u8];
        block.extend(&huffman);
        let repaired = repair(&block).expect("repaired");
        assert!(repaired.len() > block.len());
        let fields = loona_hpack::Decoder::new()
            .decode(&repaired)
            .expect("decodes");
        assert_eq!(fields, [(b":authority".to_vec(), b"a".repeat(20))]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_repairs_are_final() {
        // A deterministic xorshift stream: the walker sees every byte pattern at every offset.
        let mut next = crate::tests::xorshift(0x2545_f491_4f6c_dd1d);
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut block: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 {
                block.splice(0..0, authority_literal(b"http://a:1"));
            }
            if let Some(out) = repair(&block) {
                assert_eq!(repair(&out), None, "{block:?}");
            }
        }
    }
}
