//! A stable hash for names that must not change between runs or builds: Maglev permutations
//! and netfilter chain names are recomputed by every daemon and must come out the same.
//! (`std`'s `DefaultHasher` makes no such promise.)

/// 64-bit FNV-1a with a seed mixed in first, then the splitmix64 finaliser: FNV alone leaves
/// the hashes of similar names ("10.244.0.1:8080", "10.244.0.2:8080") correlated, which makes
/// Maglev permutations overlap. Different seeds give independent hashes.
pub fn fnv1a(bytes: &[u8], seed: u8) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(&seed).chain(bytes) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// A 16-character name suffix for `name`, as kube-proxy derives `KUBE-SVC-…` chain names.
pub fn suffix(name: &str) -> String {
    format!("{:016X}", fnv1a(name.as_bytes(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_stable_and_seeded() {
        // Fixed values: a change here would rename every chain and reshuffle every table.
        assert_eq!(suffix("default/web:http"), "E35A5AEB63857744");
        assert_eq!(suffix("a"), "16BC26FA3458BFAD");
        assert_eq!(fnv1a(b"x", 0), 0x8772_14bb_d9a2_09d2);
        assert_eq!(fnv1a(b"x", 1), 0x1260_b7ec_5f6c_3006);
    }
}
