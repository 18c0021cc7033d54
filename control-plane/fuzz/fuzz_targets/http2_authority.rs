//! The bytes a client sends the store's client listener, through the `:authority` repair:
//! after the HTTP/2 preface, anything at all. The pass must never panic; a stream it repaired
//! nothing in must reach the server byte for byte; and how the bytes are split between reads
//! must not change what the server reads.
//!
//! Input: the first byte picks where the stream is split in two; the rest follows the preface.
//! The rest is also walked as a lone HPACK block, and checked against loona-hpack's decoder.

#![no_main]

use authority_repair::frames::{FrameRepair, PREFACE};
use authority_repair::repair_header_block;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut stream = PREFACE.to_vec();
    stream.extend_from_slice(rest);
    let whole = FrameRepair::repair_reads(&[&stream]);
    let cut = (PREFACE.len() + split as usize).min(stream.len());
    let (a, b) = stream.split_at(cut);
    assert_eq!(
        FrameRepair::repair_reads(&[a, b]),
        whole,
        "the split changed what the server reads"
    );
    if whole.1 == 0 {
        assert_eq!(whole.0, stream, "nothing was repaired, yet bytes changed");
    }
    if let Some(repaired) = repair_header_block(rest) {
        // Huffman-coded values may come back longer as plain strings, so the block can grow;
        // what must hold is that nothing is left to repair, and that a block a full HPACK
        // decoder reads decodes to the same fields with an authority no longer than before
        // (the dynamic table's sizes are counted on decoded fields).
        assert_eq!(repair_header_block(&repaired), None, "a repair left work");
        if let Ok(before) = loona_hpack::Decoder::new().decode(rest) {
            let after = loona_hpack::Decoder::new()
                .decode(&repaired)
                .expect("a repaired block decodes");
            assert_eq!(before.len(), after.len());
            for ((name, value), (name_after, value_after)) in before.iter().zip(&after) {
                assert_eq!(name, name_after);
                if value != value_after {
                    assert_eq!(name, b":authority");
                    assert!(value_after.len() < value.len());
                }
            }
        }
    }
});
