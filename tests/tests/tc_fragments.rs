//! IP fragments through the tc programs (`BPF_PROG_TEST_RUN`, crafted packets): only a
//! datagram's first fragment carries its ports; the later ones must follow it both ways, with
//! and without source NAT (issue 20).

mod tc_support;

use std::net::{Ipv4Addr, SocketAddrV4};

use keel_common::{PROG_TC_EGRESS, PROG_TC_INGRESS, PROTO_UDP};
use keel_proxy::{ebpf::set_snat, service_table::L4Protocol};
use tc_support::*;

const IP_MF: u16 = 0x2000;

/// One IPv4 fragment (Ethernet + 20-byte IP header, valid IP checksum) carrying `data` at
/// byte `offset` of the datagram `id`.
fn fragment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    offset: usize,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    assert_eq!(offset % 8, 0);
    let mut p = vec![0u8; 14 + 20];
    p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut p[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    let flags = (offset / 8) as u16 | if more { IP_MF } else { 0 };
    ip[6..8].copy_from_slice(&flags.to_be_bytes());
    ip[8] = 64;
    ip[9] = PROTO_UDP;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&[ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(data);
    p
}

/// A UDP datagram of `payload` from `src` to `dst` (checksum over the whole datagram), cut in
/// two fragments: the UDP header and the first 24 bytes, then the rest.
fn udp_fragments(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    id: u16,
    payload: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let mut udp = Vec::new();
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let sum = udp_checksum(*src.ip(), *dst.ip(), &udp);
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    (
        fragment(*src.ip(), *dst.ip(), id, 0, true, &udp[..32]),
        fragment(*src.ip(), *dst.ip(), id, 32, false, &udp[32..]),
    )
}

fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, PROTO_UDP]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    checksum(&[&pseudo, udp])
}

/// The UDP checksum of the datagram the two translated fragments reassemble to verifies
/// against the addresses of the first.
fn reassembled_checksum_ok(first: &[u8], second: &[u8]) -> bool {
    let src = Ipv4Addr::new(first[26], first[27], first[28], first[29]);
    let dst = Ipv4Addr::new(first[30], first[31], first[32], first[33]);
    let mut udp = first[34..].to_vec();
    udp.extend_from_slice(&second[34..]);
    udp_checksum(src, dst, &udp) == 0
}

fn ip_dst(p: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(p[30], p[31], p[32], p[33])
}

fn ip_src(p: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(p[26], p[27], p[28], p[29])
}

/// `out` equals `input` but for the IP checksum and the addresses at `addrs` (26: source,
/// 30: destination), and its IP checksum verifies.
fn only_address_changed(input: &[u8], out: &[u8], addrs: &[usize]) -> bool {
    if input.len() != out.len() {
        return false;
    }
    let mut expected = input.to_vec();
    expected[24..26].copy_from_slice(&out[24..26]);
    for at in addrs {
        expected[*at..*at + 4].copy_from_slice(&out[*at..*at + 4]);
    }
    expected == out && checksum(&[&out[14..34]]) == 0
}

const PAYLOAD: &[u8; 64] = b"a large DNS answer, cut in two by a link MTU; 64 bytes of it....";

/// Issue 20: every fragment of a datagram to a ClusterIP reaches the backend, and every
/// fragment of the reply comes back from the service. Later fragments carry no ports: they
/// follow the first through the fragment map.
#[test]
fn every_fragment_of_a_udp_datagram_is_translated_both_ways() -> Result<(), TestError> {
    let mut dp = Datapath::load()?;
    dp.serve(53, L4Protocol::Udp, &[2, 3])?;
    let client = SocketAddrV4::new(CLIENT, 5353);
    let service = SocketAddrV4::new(VIP, 53);
    let (first, second) = udp_fragments(client, service, 0x1234, PAYLOAD);

    let (verdict, out_first) = dp.run(PROG_TC_INGRESS, &first)?;
    assert_eq!(verdict, TC_ACT_OK);
    let backend = dst(&out_first);
    assert!(
        backend.port() == 8080 && [2, 3].contains(&backend.ip().octets()[3]),
        "first fragment to a backend: {backend}"
    );
    assert_eq!(src(&out_first), client);
    assert_eq!(checksum(&[&out_first[14..34]]), 0, "IP checksum");

    let (verdict, out_second) = dp.run(PROG_TC_INGRESS, &second)?;
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(
        ip_dst(&out_second),
        *backend.ip(),
        "the second fragment follows the first"
    );
    assert!(
        only_address_changed(&second, &out_second, &[30]),
        "second fragment: only the destination and the IP checksum change\n in  {second:?}\n out {out_second:?}"
    );
    assert!(
        reassembled_checksum_ok(&out_first, &out_second),
        "the reassembled datagram's UDP checksum holds for the backend's address"
    );

    // The backend's answer, fragmented too, leaves from the service.
    let (first, second) = udp_fragments(backend, client, 0x4321, PAYLOAD);
    let (verdict, out_first) = dp.run(PROG_TC_EGRESS, &first)?;
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!((src(&out_first), dst(&out_first)), (service, client));
    let (_, out_second) = dp.run(PROG_TC_EGRESS, &second)?;
    assert_eq!(ip_src(&out_second), VIP, "the reply's second fragment");
    assert!(only_address_changed(&second, &out_second, &[26]));
    assert!(reassembled_checksum_ok(&out_first, &out_second));

    // A later fragment whose first never came (or was forgotten) passes untouched.
    let stranger = SocketAddrV4::new(Ipv4Addr::new(10, 245, 0, 77), 5353);
    let (_, lone) = udp_fragments(stranger, service, 0x7777, PAYLOAD);
    let (verdict, out) = dp.run(PROG_TC_INGRESS, &lone)?;
    assert_eq!((verdict, out), (TC_ACT_OK, lone));
    Ok(())
}

/// The same through source NAT (a backend on another node): both fragments leave with the
/// node's address and port, and both fragments of the reply return to the client.
#[test]
fn fragments_of_a_source_nated_flow_are_translated_both_ways() -> Result<(), TestError> {
    const TC_ACT_REDIRECT: u32 = 7;
    let node = Ipv4Addr::new(192, 168, 1, 10);
    let mut dp = Datapath::load()?;
    set_snat(&mut dp.ebpf, node, "10.244.9.0/24".parse()?)?;
    dp.serve(53, L4Protocol::Udp, &[2, 3])?;
    let client = SocketAddrV4::new(CLIENT, 5353);
    let service = SocketAddrV4::new(VIP, 53);
    let (first, second) = udp_fragments(client, service, 0x1234, PAYLOAD);

    let (verdict, out_first) = dp.run(PROG_TC_INGRESS, &first)?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let backend = dst(&out_first);
    let translated = src(&out_first);
    assert_eq!(*translated.ip(), node);
    let (verdict, out_second) = dp.run(PROG_TC_INGRESS, &second)?;
    assert_eq!(
        verdict, TC_ACT_REDIRECT,
        "the second fragment is sent out too"
    );
    assert_eq!(
        (ip_src(&out_second), ip_dst(&out_second)),
        (node, *backend.ip())
    );
    assert!(only_address_changed(&second, &out_second, &[26, 30]));
    assert!(reassembled_checksum_ok(&out_first, &out_second));

    let (first, second) = udp_fragments(backend, translated, 0x4321, PAYLOAD);
    let (verdict, out_first) = dp.run(PROG_TC_INGRESS, &first)?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!((src(&out_first), dst(&out_first)), (service, client));
    let (verdict, out_second) = dp.run(PROG_TC_INGRESS, &second)?;
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!((ip_src(&out_second), ip_dst(&out_second)), (VIP, CLIENT));
    assert!(only_address_changed(&second, &out_second, &[26, 30]));
    assert!(reassembled_checksum_ok(&out_first, &out_second));
    Ok(())
}
