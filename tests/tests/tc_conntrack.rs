//! The per-packet path's connection tracking, run by the kernel on crafted packets
//! (`BPF_PROG_TEST_RUN`): TCP state and last-seen times, expiry by the daemon's GC on the real
//! maps, SYN floods that must not evict established flows, and reply-key collisions between
//! two services sharing a backend, or a service and a direct connection to its backend
//! (refused while the old flow lives, taken over by a SYN once it is closing).

mod tc_support;

use std::net::{Ipv4Addr, SocketAddrV4};

use aya::maps::HashMap;
use keel_common::{
    CtKey, CtValue, CT_FORWARD, CT_MAP, CT_STATE_CLOSING, CT_STATE_ESTABLISHED, CT_STATE_NONE,
    CT_STATE_SYN, CT_SYN_MAP, PROG_TC_EGRESS, PROG_TC_INGRESS, PROTO_TCP, PROTO_UDP,
};
use keel_proxy::{
    ebpf::conntrack_gc::{monotonic_seconds, sweep},
    service_table::{Frontend, L4Protocol, ServicePortEntry, ServiceTable},
};
use tc_support::*;

const FIN: u8 = 0x01;

/// A service port `name` with `backends` (as `serve` numbers them).
fn entry(name: &str, backends: &[u8]) -> ServicePortEntry {
    ServicePortEntry {
        name: name.into(),
        backends: backend_addrs(backends),
        affinity_timeout: None,
    }
}

/// The forward entry of `client`'s flow in map `name`.
fn forward_entry(
    dp: &mut Datapath,
    name: &str,
    client: SocketAddrV4,
) -> Result<Option<CtValue>, TestError> {
    Ok(dp
        .ct_entries(name)?
        .into_iter()
        .find(|(k, _)| {
            k.direction == CT_FORWARD
                && k.saddr == u32::from(*client.ip()).to_be()
                && k.sport == client.port().to_be()
        })
        .map(|(_, v)| v))
}

#[test]
fn tcp_state_follows_the_handshake_and_the_flow_moves_out_of_the_syn_map() -> Result<(), TestError>
{
    let mut dp = Datapath::load()?;
    dp.serve(80, L4Protocol::Tcp, &[2])?;
    let client = SocketAddrV4::new(CLIENT, 41_000);
    let service = SocketAddrV4::new(VIP, 80);
    let now = monotonic_seconds()?;

    dp.run(
        PROG_TC_INGRESS,
        &packet(client, service, PROTO_TCP, SYN, true),
    )?;
    let syn = forward_entry(&mut dp, CT_SYN_MAP, client)?.ok_or("no SYN-map entry after a SYN")?;
    assert_eq!(syn.state, CT_STATE_SYN);
    assert!(
        syn.last_seen.abs_diff(now) <= 1,
        "last seen {} vs now {now}",
        syn.last_seen
    );
    assert_eq!(
        forward_entry(&mut dp, CT_MAP, client)?,
        None,
        "not in the main map yet"
    );
    assert_eq!(
        dp.ct_entries(CT_SYN_MAP)?.len(),
        2,
        "both directions in the SYN map"
    );

    dp.run(
        PROG_TC_INGRESS,
        &packet(client, service, PROTO_TCP, ACK, true),
    )?;
    let established = forward_entry(&mut dp, CT_MAP, client)?.ok_or("no main entry after ACK")?;
    assert_eq!(established.state, CT_STATE_ESTABLISHED);
    assert_eq!(
        dp.ct_entries(CT_SYN_MAP)?.len(),
        0,
        "the SYN map let the flow go"
    );
    assert_eq!(
        dp.ct_entries(CT_MAP)?.len(),
        2,
        "both directions in the main map"
    );

    dp.run(
        PROG_TC_INGRESS,
        &packet(client, service, PROTO_TCP, FIN | ACK, true),
    )?;
    let closing = forward_entry(&mut dp, CT_MAP, client)?.ok_or("no entry after FIN")?;
    assert_eq!(closing.state, CT_STATE_CLOSING);

    // UDP has no state.
    dp.serve(53, L4Protocol::Udp, &[2])?;
    let udp_client = SocketAddrV4::new(CLIENT, 41_001);
    dp.run(
        PROG_TC_INGRESS,
        &packet(udp_client, SocketAddrV4::new(VIP, 53), PROTO_UDP, 0, true),
    )?;
    let udp = forward_entry(&mut dp, CT_MAP, udp_client)?.ok_or("no UDP entry")?;
    assert_eq!(udp.state, CT_STATE_NONE);
    Ok(())
}

/// The GC on the kernel's maps: each flow goes when its state's lifetime has passed since its
/// last packet, in both directions, and not before.
#[test]
fn gc_deletes_expired_flows_in_both_directions_and_keeps_live_ones() -> Result<(), TestError> {
    let mut dp = Datapath::load()?;
    let mut table = ServiceTable::default();
    for (port, protocol) in [(80, L4Protocol::Tcp), (53, L4Protocol::Udp)] {
        let frontend = Frontend {
            vip: VIP,
            port,
            protocol,
        };
        table
            .services
            .insert(frontend, entry("default/web:x", &[2]));
    }
    dp.writer.sync(&table)?;
    let web = SocketAddrV4::new(VIP, 80);
    let dns = SocketAddrV4::new(VIP, 53);
    let established = SocketAddrV4::new(CLIENT, 42_000);
    let closing = SocketAddrV4::new(CLIENT, 42_001);
    let half_open = SocketAddrV4::new(CLIENT, 42_002);
    let udp = SocketAddrV4::new(CLIENT, 42_003);
    for (client, flags) in [(established, ACK), (closing, ACK), (closing, FIN | ACK)] {
        dp.run(PROG_TC_INGRESS, &packet(client, web, PROTO_TCP, SYN, true))?;
        dp.run(
            PROG_TC_INGRESS,
            &packet(client, web, PROTO_TCP, flags, true),
        )?;
    }
    dp.run(
        PROG_TC_INGRESS,
        &packet(half_open, web, PROTO_TCP, SYN, true),
    )?;
    dp.run(PROG_TC_INGRESS, &packet(udp, dns, PROTO_UDP, 0, true))?;
    let now = monotonic_seconds()?;

    let mut main: HashMap<_, CtKey, CtValue> =
        HashMap::try_from(dp.ebpf.take_map(CT_MAP).ok_or("no ct map")?)?;
    let mut syn: HashMap<_, CtKey, CtValue> =
        HashMap::try_from(dp.ebpf.take_map(CT_SYN_MAP).ok_or("no syn map")?)?;
    let clients = |main: &HashMap<_, CtKey, CtValue>, syn: &HashMap<_, CtKey, CtValue>| {
        let mut ports: Vec<u16> = main
            .iter()
            .chain(syn.iter())
            .filter_map(Result::ok)
            .filter(|(k, _)| k.direction == CT_FORWARD)
            .map(|(k, _)| u16::from_be(k.sport))
            .collect();
        ports.sort();
        ports
    };
    let entries = |main: &HashMap<_, CtKey, CtValue>, syn: &HashMap<_, CtKey, CtValue>| {
        main.keys().count() + syn.keys().count()
    };
    assert_eq!(entries(&main, &syn), 8, "four flows, two entries each");

    let swept = sweep(&mut main, &mut syn, now + 5)?;
    assert_eq!(swept.deleted, 0, "nothing expires in 5 s: {swept:?}");

    // Past the 10 s of a closing TCP flow.
    let swept = sweep(&mut main, &mut syn, now + 30)?;
    assert_eq!(swept.deleted, 2, "{swept:?}");
    assert_eq!(clients(&main, &syn), vec![42_000, 42_002, 42_003]);

    // Past the 60 s of a SYN-only flow and of UDP; an established flow has 6 h.
    let swept = sweep(&mut main, &mut syn, now + 120)?;
    assert_eq!(swept.deleted, 4, "{swept:?}");
    assert_eq!(clients(&main, &syn), vec![42_000]);
    assert_eq!(
        entries(&main, &syn),
        2,
        "the established flow, both directions"
    );
    assert_eq!(swept.live, [0, 0, 2, 0], "{swept:?}");

    let swept = sweep(&mut main, &mut syn, now + 21_600 + 60)?;
    assert_eq!(swept.deleted, 2, "{swept:?}");
    assert_eq!(entries(&main, &syn), 0);
    Ok(())
}

/// A flood of new connections churns the SYN map only: an established flow keeps its
/// backend and its replies are still translated.
#[test]
fn a_syn_flood_does_not_evict_an_established_flow() -> Result<(), TestError> {
    const MAP: u32 = 64;
    let mut dp = Datapath::load_sized(&[(CT_MAP, MAP), (CT_SYN_MAP, MAP)])?;
    dp.serve(80, L4Protocol::Tcp, &[2, 3])?;
    let service = SocketAddrV4::new(VIP, 80);
    let client = SocketAddrV4::new(CLIENT, 43_000);
    let (_, out) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, service, PROTO_TCP, SYN, true),
    )?;
    let backend = dst(&out);
    dp.run(
        PROG_TC_INGRESS,
        &packet(client, service, PROTO_TCP, ACK, true),
    )?;

    let flooder = Ipv4Addr::new(10, 245, 0, 66);
    // Each flood SYN is answered by its backend and retransmitted, as a real one is: both
    // look its entries up again, so the kernel's LRU counts them as in use (an entry that is
    // never looked up again is evicted before one that was, flood or not).
    for port in 0..(16 * MAP as u16) {
        let from = SocketAddrV4::new(flooder, 20_000 + port);
        let syn = packet(from, service, PROTO_TCP, SYN, true);
        let (verdict, out) = dp.run(PROG_TC_INGRESS, &syn)?;
        assert_eq!(verdict, TC_ACT_OK);
        let to = dst(&out);
        assert_ne!(to, service, "a flood SYN is still balanced");
        let (_, out) = dp.run(
            PROG_TC_EGRESS,
            &packet(to, from, PROTO_TCP, SYN | ACK, true),
        )?;
        assert_eq!(src(&out), service, "a flood SYN-ACK is translated");
        dp.run(PROG_TC_INGRESS, &syn)?;
    }

    // The reply comes first: its entry must have survived.
    let (_, out) = dp.run(
        PROG_TC_EGRESS,
        &packet(backend, client, PROTO_TCP, ACK, true),
    )?;
    assert_eq!(
        src(&out),
        service,
        "the established flow's reply is still translated"
    );
    // A re-choice would land elsewhere: the backends are all new now.
    let other = if backend.ip().octets()[3] == 2 { 3 } else { 2 };
    dp.serve(80, L4Protocol::Tcp, &[other, 9])?;
    let (_, out) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, service, PROTO_TCP, ACK, true),
    )?;
    assert_eq!(dst(&out), backend, "the established flow keeps its backend");
    assert!(checksums_ok(&out));
    Ok(())
}

/// A datapath with two TCP services (VIP:80 and 10.96.0.11:80) whose one backend is the same
/// pod: a client port used for both has one reply key. Returns the two frontends and the
/// backend.
fn two_services_one_backend() -> Result<(Datapath, [SocketAddrV4; 2], SocketAddrV4), TestError> {
    let mut dp = Datapath::load()?;
    let other_vip = Ipv4Addr::new(10, 96, 0, 11);
    let mut table = ServiceTable::default();
    for (vip, name) in [(VIP, "default/a:x"), (other_vip, "default/b:x")] {
        table.services.insert(
            Frontend {
                vip,
                port: 80,
                protocol: L4Protocol::Tcp,
            },
            entry(name, &[2]),
        );
    }
    dp.writer.sync(&table)?;
    let frontends = [SocketAddrV4::new(VIP, 80), SocketAddrV4::new(other_vip, 80)];
    Ok((dp, frontends, backend_addrs(&[2])[0]))
}

/// A TCP conversation's packets as (from the client?, flags): the handshake, then a close from
/// both sides.
const OPEN_AND_CLOSE: &[(bool, u8)] = &[
    (true, SYN),
    (false, SYN | ACK),
    (true, ACK),
    (true, FIN | ACK),
    (false, FIN | ACK),
];

/// Runs `steps` between `client` and `service` (whose replies come from `backend`): the
/// client's packets through ingress, the backend's through egress.
fn converse(
    dp: &mut Datapath,
    client: SocketAddrV4,
    service: SocketAddrV4,
    backend: SocketAddrV4,
    steps: &[(bool, u8)],
) -> Result<(), TestError> {
    for &(from_client, flags) in steps {
        let (way, from, to) = if from_client {
            (PROG_TC_INGRESS, client, service)
        } else {
            (PROG_TC_EGRESS, backend, client)
        };
        dp.run(way, &packet(from, to, PROTO_TCP, flags, true))?;
    }
    Ok(())
}

/// A connection from `client` to `service`, opened and closed from both sides: its flow is
/// left closing.
fn open_and_close(
    dp: &mut Datapath,
    client: SocketAddrV4,
    service: SocketAddrV4,
    backend: SocketAddrV4,
) -> Result<(), TestError> {
    converse(dp, client, service, backend, OPEN_AND_CLOSE)?;
    let closing = forward_entry(dp, CT_MAP, client)?.ok_or("no entry after the FINs")?;
    assert_eq!(closing.state, CT_STATE_CLOSING);
    Ok(())
}

/// Two services sharing one backend: one client port to both has one reply key. The second
/// flow is refused while the first lives, and takes the key once the first has expired.
#[test]
fn a_second_service_with_the_same_reply_key_is_refused_while_the_first_lives(
) -> Result<(), TestError> {
    let (mut dp, [first, second], backend) = two_services_one_backend()?;
    let client = SocketAddrV4::new(CLIENT, 44_000);

    let (verdict, _) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, first, PROTO_TCP, SYN, true),
    )?;
    assert_eq!(verdict, TC_ACT_OK);
    let (verdict, _) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, second, PROTO_TCP, SYN, true),
    )?;
    assert_eq!(
        verdict, TC_ACT_SHOT,
        "the second service would steal the first's replies"
    );
    let (_, out) = dp.run(
        PROG_TC_EGRESS,
        &packet(backend, client, PROTO_TCP, SYN | ACK, true),
    )?;
    assert_eq!(
        src(&out),
        first,
        "the reply still belongs to the first flow"
    );

    // The first flow's own retransmitted SYN is no collision.
    let (verdict, out) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, first, PROTO_TCP, SYN, true),
    )?;
    assert_eq!((verdict, dst(&out)), (TC_ACT_OK, backend));

    // Silent past its SYN lifetime (60 s): the second flow may have the key.
    dp.age_conntrack(120)?;
    let (verdict, out) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, second, PROTO_TCP, SYN, true),
    )?;
    assert_eq!((verdict, dst(&out)), (TC_ACT_OK, backend));
    let (_, out) = dp.run(
        PROG_TC_EGRESS,
        &packet(backend, client, PROTO_TCP, SYN | ACK, true),
    )?;
    assert_eq!(
        src(&out),
        second,
        "the reply now belongs to the second flow"
    );
    Ok(())
}

/// A client that closed its connection to one service and at once reuses its port towards
/// another service with the same backend (the packet bench's ClusterIP-then-NodePort run did):
/// the new SYN takes the closing flow's reply key, as netfilter takes over a TIME_WAIT entry,
/// instead of being refused for the closing flow's 10 s.
#[test]
fn a_syn_takes_over_the_reply_key_of_a_closing_flow_of_another_service() -> Result<(), TestError> {
    let (mut dp, [first, second], backend) = two_services_one_backend()?;
    let client = SocketAddrV4::new(CLIENT, 45_000);

    // The first connection, opened and closed from both sides.
    open_and_close(&mut dp, client, first, backend)?;

    // A mid-connection packet to the second service is no reason to take the key.
    let (verdict, _) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, second, PROTO_TCP, ACK, true),
    )?;
    assert_eq!(
        verdict, TC_ACT_SHOT,
        "a non-SYN packet must not take a closing flow's key"
    );

    // A SYN does, at once.
    let (verdict, out) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, second, PROTO_TCP, SYN, true),
    )?;
    assert_eq!((verdict, dst(&out)), (TC_ACT_OK, backend));
    let (_, out) = dp.run(
        PROG_TC_EGRESS,
        &packet(backend, client, PROTO_TCP, SYN | ACK, true),
    )?;
    assert_eq!(
        src(&out),
        second,
        "the reply now belongs to the second flow"
    );

    // The closed flow's forward entry went with its key: its straggler finds no flow of its
    // own, and cannot take the key back from the live one.
    let forwards_to_first = dp
        .ct_entries(CT_MAP)?
        .into_iter()
        .chain(dp.ct_entries(CT_SYN_MAP)?)
        .filter(|(k, _)| k.direction == CT_FORWARD && k.daddr == u32::from(*first.ip()).to_be())
        .count();
    assert_eq!(
        forwards_to_first, 0,
        "the closed flow's forward entry is gone"
    );
    let (verdict, _) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, first, PROTO_TCP, ACK, true),
    )?;
    assert_eq!(
        verdict, TC_ACT_SHOT,
        "a straggler of the closed flow is dropped"
    );
    let (_, out) = dp.run(
        PROG_TC_EGRESS,
        &packet(backend, client, PROTO_TCP, ACK, true),
    )?;
    assert_eq!(
        src(&out),
        second,
        "the reply still belongs to the second flow"
    );

    // A live (established) flow of the second service keeps its key against a SYN to the
    // first: only closing flows are taken over.
    dp.run(
        PROG_TC_INGRESS,
        &packet(client, second, PROTO_TCP, ACK, true),
    )?;
    let (verdict, _) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, first, PROTO_TCP, SYN, true),
    )?;
    assert_eq!(verdict, TC_ACT_SHOT, "an established flow keeps its key");
    Ok(())
}

/// A client that closed its connection to a service and at once reuses its port to dial the
/// backend itself (issue 20's lost SYNs): nothing translates the new flow, but its SYN-ACK
/// leaves on the closed flow's reply key and was translated as that flow's, so the client got
/// it from the ClusterIP and reset it. The direct SYN now takes the closing flow's key, and is
/// dropped while a live flow holds it.
#[test]
fn a_direct_syn_to_a_backend_takes_over_the_reply_key_of_a_closing_service_flow(
) -> Result<(), TestError> {
    let (mut dp, [service, _], backend) = two_services_one_backend()?;
    let client = SocketAddrV4::new(CLIENT, 46_000);

    open_and_close(&mut dp, client, service, backend)?;

    // The direct connection: its SYN passes as it is, and its SYN-ACK keeps the backend's
    // address.
    let (verdict, out) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, backend, PROTO_TCP, SYN, true),
    )?;
    assert_eq!((verdict, dst(&out)), (TC_ACT_OK, backend));
    let (_, out) = dp.run(
        PROG_TC_EGRESS,
        &packet(backend, client, PROTO_TCP, SYN | ACK, true),
    )?;
    assert_eq!(
        src(&out),
        backend,
        "the direct connection's SYN-ACK was translated as the closed service flow's"
    );
    assert!(checksums_ok(&out));
    assert_eq!(
        forward_entry(&mut dp, CT_MAP, client)?,
        None,
        "the closed flow's forward entry went with its key"
    );

    // A live flow keeps its key: a direct SYN on its four-tuple is dropped, and the live
    // flow's replies are still translated.
    let client = SocketAddrV4::new(CLIENT, 46_001);
    converse(&mut dp, client, service, backend, &OPEN_AND_CLOSE[..3])?;
    let (verdict, _) = dp.run(
        PROG_TC_INGRESS,
        &packet(client, backend, PROTO_TCP, SYN, true),
    )?;
    assert_eq!(verdict, TC_ACT_SHOT, "a live service flow keeps its key");
    let (_, out) = dp.run(
        PROG_TC_EGRESS,
        &packet(backend, client, PROTO_TCP, ACK, true),
    )?;
    assert_eq!(
        src(&out),
        service,
        "the live flow's replies are still its own"
    );

    // Direct traffic with no service flow on its four-tuple is left alone, SYN or not.
    let other = SocketAddrV4::new(CLIENT, 46_002);
    for flags in [SYN, ACK] {
        let (verdict, out) = dp.run(
            PROG_TC_INGRESS,
            &packet(other, backend, PROTO_TCP, flags, true),
        )?;
        assert_eq!((verdict, dst(&out)), (TC_ACT_OK, backend));
    }
    Ok(())
}
