//! ICMP errors about flows the tc programs translate (`BPF_PROG_TEST_RUN`, crafted packets):
//! the quoted packet is translated back, so the host the error reaches recognises its own flow
//! (port unreachable, fragmentation needed for path MTU discovery).

mod tc_support;

use std::net::{Ipv4Addr, SocketAddrV4};

use keel_common::{PROG_TC_EGRESS, PROG_TC_INGRESS, PROTO_UDP};
use keel_proxy::service_table::L4Protocol;
use tc_support::*;

const ICMP_DEST_UNREACH: u8 = 3;
const CODE_PORT_UNREACH: u8 = 3;
const CODE_FRAG_NEEDED: u8 = 4;
/// Where the quoted IP header starts: Ethernet, outer IP, ICMP header.
const QUOTE: usize = 14 + 20 + 8;

/// An ICMP destination-unreachable error from `from` to `to` quoting a UDP packet
/// `quoted_src → quoted_dst` (its IP header and 8 bytes of UDP header, as Linux sends at
/// least), every checksum valid.
fn icmp_error(
    from: Ipv4Addr,
    to: Ipv4Addr,
    code: u8,
    quoted_src: SocketAddrV4,
    quoted_dst: SocketAddrV4,
) -> Vec<u8> {
    let mut quote = vec![0u8; 28];
    quote[0] = 0x45;
    quote[2..4].copy_from_slice(&(20u16 + 8 + 4).to_be_bytes());
    quote[8] = 63;
    quote[9] = PROTO_UDP;
    quote[12..16].copy_from_slice(&quoted_src.ip().octets());
    quote[16..20].copy_from_slice(&quoted_dst.ip().octets());
    let sum = checksum(&[&quote[..20]]);
    quote[10..12].copy_from_slice(&sum.to_be_bytes());
    quote[20..22].copy_from_slice(&quoted_src.port().to_be_bytes());
    quote[22..24].copy_from_slice(&quoted_dst.port().to_be_bytes());
    quote[24..26].copy_from_slice(&12u16.to_be_bytes());
    quote[26..28].copy_from_slice(&0x1234u16.to_be_bytes());

    let mut icmp = vec![ICMP_DEST_UNREACH, code, 0, 0, 0, 0];
    // Fragmentation needed carries the next hop's MTU.
    icmp.extend_from_slice(&if code == CODE_FRAG_NEEDED { 1400u16 } else { 0 }.to_be_bytes());
    icmp.extend_from_slice(&quote);
    let sum = checksum(&[&icmp]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut p = vec![0u8; 14 + 20];
    p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut p[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 1;
    ip[12..16].copy_from_slice(&from.octets());
    ip[16..20].copy_from_slice(&to.octets());
    let sum = checksum(&[ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&icmp);
    p
}

fn addr_at(p: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3])
}

fn quoted_src(p: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        addr_at(p, QUOTE + 12),
        u16::from_be_bytes([p[QUOTE + 20], p[QUOTE + 21]]),
    )
}

fn quoted_dst(p: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        addr_at(p, QUOTE + 16),
        u16::from_be_bytes([p[QUOTE + 22], p[QUOTE + 23]]),
    )
}

/// The outer IP header, the ICMP message and the quoted IP header all verify.
fn icmp_checksums_ok(p: &[u8]) -> bool {
    checksum(&[&p[14..34]]) == 0
        && checksum(&[&p[34..]]) == 0
        && checksum(&[&p[QUOTE..QUOTE + 20]]) == 0
}

#[test]
fn icmp_errors_about_a_translated_flow_are_translated_back() -> Result<(), TestError> {
    let mut dp = Datapath::load()?;
    dp.serve(53, L4Protocol::Udp, &[2, 3])?;
    let client = SocketAddrV4::new(CLIENT, 5353);
    let service = SocketAddrV4::new(VIP, 53);
    let (_, out) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, service, PROTO_UDP, 0, true),
    )?;
    let backend = dst(&out);

    // The backend has no socket on the port: its error reaches the client from the service,
    // about the packet the client sent to the service.
    let error = icmp_error(*backend.ip(), CLIENT, CODE_PORT_UNREACH, client, backend);
    let (verdict, out) = dp.run(PROG_TC_EGRESS, &error)?;
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(
        (addr_at(&out, 26), addr_at(&out, 30)),
        (VIP, CLIENT),
        "the error comes from the service"
    );
    assert_eq!((quoted_src(&out), quoted_dst(&out)), (client, service));
    assert!(icmp_checksums_ok(&out), "checksums: {out:?}");

    // A router on the way to the backend needs a smaller MTU: its address stays, the quote
    // is translated.
    let router = Ipv4Addr::new(10, 244, 0, 254);
    let error = icmp_error(router, CLIENT, CODE_FRAG_NEEDED, client, backend);
    let (_, out) = dp.run(PROG_TC_EGRESS, &error)?;
    assert_eq!(addr_at(&out, 26), router);
    assert_eq!((quoted_src(&out), quoted_dst(&out)), (client, service));
    assert_eq!(&out[40..42], &1400u16.to_be_bytes(), "the MTU is untouched");
    assert!(icmp_checksums_ok(&out));

    // The client refuses the reply (its socket closed): its error, sent to the service about
    // the reply it got from the service, goes to the backend about the backend's reply.
    let error = icmp_error(CLIENT, VIP, CODE_PORT_UNREACH, service, client);
    let (verdict, out) = dp.run(PROG_TC_INGRESS, &error)?;
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(
        (addr_at(&out, 26), addr_at(&out, 30)),
        (CLIENT, *backend.ip())
    );
    assert_eq!((quoted_src(&out), quoted_dst(&out)), (backend, client));
    assert!(icmp_checksums_ok(&out));

    // An error about no translated flow passes untouched.
    let stranger = SocketAddrV4::new(Ipv4Addr::new(10, 245, 0, 77), 5353);
    let error = icmp_error(
        *backend.ip(),
        *stranger.ip(),
        CODE_PORT_UNREACH,
        stranger,
        backend,
    );
    let (verdict, out) = dp.run(PROG_TC_EGRESS, &error)?;
    assert_eq!((verdict, out), (TC_ACT_OK, error));
    Ok(())
}
