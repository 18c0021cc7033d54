//! The flow hash of the per-packet path, the same on every node with the same seed.

/// The seed of [`flow_hash`] unless the daemon is given another (`--maglev-hash-seed`). Any
/// value works; what matters is that every node of a cluster uses the same one.
pub const DEFAULT_MAGLEV_HASH_SEED: u32 = 0x6b65_656c; // "keel"

/// The tc programs' global holding the seed of [`flow_hash`], which the loader sets.
pub const MAGLEV_HASH_SEED_GLOBAL: &str = "MAGLEV_HASH_SEED";

/// `JHASH_INITVAL` of Linux's jhash.h (Bob Jenkins' lookup3): an arbitrary start.
const JHASH_INITVAL: u32 = 0xdead_beef;

/// The hash of a flow's 5-tuple that picks its Maglev entry on the per-packet path. It depends
/// only on the tuple and `seed`, so every node with the same seed sends a flow to the same
/// backend (the point of Maglev) — unlike the kernel's skb hash, which is seeded per boot or
/// is the NIC's RSS hash. Addresses and ports as the packet carries them (network byte order,
/// loaded as native integers, as in [`CtKey`](crate::ct::CtKey)), so the programs and user space agree.
///
/// lookup3's mixing (the kernel's `jhash2` over four words): one full mix of the first three
/// words, then the final avalanche with the fourth. Straight-line code, no loop, no memory:
/// cheap for the verifier.
#[inline(always)]
pub fn flow_hash(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8, seed: u32) -> u32 {
    // The length term of jhash2: four words of four bytes.
    let init = JHASH_INITVAL.wrapping_add(16).wrapping_add(seed);
    let mut a = init.wrapping_add(saddr);
    let mut b = init.wrapping_add(daddr);
    let mut c = init.wrapping_add((u32::from(sport) << 16) | u32::from(dport));
    jhash_mix(&mut a, &mut b, &mut c);
    a = a.wrapping_add(u32::from(proto));
    jhash_final(&mut a, &mut b, &mut c);
    c
}

/// lookup3's `mix()`: every bit of a, b, c affects the others, reversibly. Two rounds of
/// three steps, written out: no loop for the verifier to bound.
#[inline(always)]
fn jhash_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    jhash_mix_half(a, b, c, 4, 6, 8);
    jhash_mix_half(a, b, c, 16, 19, 4);
}

#[inline(always)]
fn jhash_mix_half(a: &mut u32, b: &mut u32, c: &mut u32, rot_a: u32, rot_b: u32, rot_c: u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(rot_a);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(rot_b);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(rot_c);
    *b = b.wrapping_add(*a);
}

/// lookup3's `final()`: the last avalanche into c.
#[inline(always)]
fn jhash_final(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}
