//! The per-packet datapath, end to end: a client on a host beyond the node (its own namespace,
//! reaching the node through the uplink, outside keel's cgroup) uses a ClusterIP and a
//! NodePort; tc on the uplink translates the packets both ways, IP fragments and ICMP errors
//! included.

use std::{net::SocketAddrV4, time::Duration};

use keel_lab::{lab::REMOTE_IP, lab::UPLINK, lab::UPLINK_NODE_IP, Cgroup, Lab, NodePlacement};
use keel_tests::{
    finish_client, require_root, slice_yaml, start_client_at, write_manifest, Client, Daemon, Run,
    TestResult, BACKEND_PORT, SERVICE_PORT, VIP,
};

const NODE_PORT: u16 = 30_080;

fn node_port_service() -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  clusterIP: {VIP}\n  ports:\n  - name: http\n    port: {SERVICE_PORT}\n    targetPort: {BACKEND_PORT}\n    nodePort: {NODE_PORT}\n  - name: dns\n    port: {SERVICE_PORT}\n    targetPort: {BACKEND_PORT}\n    protocol: UDP\n"
    )
}

#[test]
fn a_remote_client_reaches_cluster_ip_and_node_port_through_tc() -> TestResult {
    require_root();
    let mut lab = Lab::new(NodePlacement::OwnNetns)?;
    let mut backends = Vec::new();
    for name in ["a", "b"] {
        let pod = lab.add_pod(name)?;
        pod.serve(BACKEND_PORT)?;
        backends.push((pod.addr(), true));
    }
    let remote = lab.add_remote("remote")?;
    assert_eq!(remote.addr(), REMOTE_IP);
    let remote_netns = remote.netns().path().to_owned();
    let remote_at = remote.placement();

    let cgroup = Cgroup::create(&format!("keel-test-tc-{}", keel_lab::unique_id()))?;
    let manifests = tempfile::tempdir()?;
    write_manifest(manifests.path(), "web.yaml", &node_port_service())?;
    write_manifest(
        manifests.path(),
        "web-endpoints.yaml",
        &slice_yaml("web", BACKEND_PORT, &backends),
    )?;
    let daemon = Daemon::start_with(
        &lab,
        manifests.path(),
        cgroup.path(),
        &["--tc-interface", UPLINK],
    )?;

    // ClusterIP over TCP: every connection answered, both backends used, and the client's
    // socket sees the ClusterIP as its peer (the replies were reverse-translated).
    let vip = SocketAddrV4::new(VIP, SERVICE_PORT);
    let run = finish_client(start_client_at(
        &remote_at,
        vip,
        Client::Tcp { check_peer: true },
        Run::Count(200),
    )?)?;
    let counts = run.counts();
    assert_eq!(
        counts.get("a").unwrap_or(&0) + counts.get("b").unwrap_or(&0),
        200,
        "{counts:?}"
    );
    assert_eq!(
        counts.len(),
        2,
        "Maglev spreads flows over both backends: {counts:?}"
    );

    // The same service on the NodePort of the node's uplink address.
    let node_port = SocketAddrV4::new(UPLINK_NODE_IP, NODE_PORT);
    let run = finish_client(start_client_at(
        &remote_at,
        node_port,
        Client::Tcp { check_peer: true },
        Run::Count(100),
    )?)?;
    let counts = run.counts();
    assert_eq!(
        counts.get("a").unwrap_or(&0) + counts.get("b").unwrap_or(&0),
        100,
        "{counts:?}"
    );

    // UDP, unconnected: replies must come from the ClusterIP or the client drops them.
    let run = finish_client(start_client_at(
        &remote_at,
        vip,
        Client::Udp { connected: false },
        Run::Count(50),
    )?)?;
    let counts = run.counts();
    assert_eq!(
        counts.get("a").unwrap_or(&0) + counts.get("b").unwrap_or(&0),
        50,
        "{counts:?}"
    );

    // The per-packet counters saw it all: at least a SYN, an ACK and a request per connection.
    let output = std::process::Command::new(keel_lab::bin("node-daemon"))
        .args(["services", "-o", "json", "--bpf-dir"])
        .arg(daemon.bpf_dir())
        .output()?;
    let dump: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let tcp = dump["services"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|s| s["protocol"] == "TCP" && s["port"] == SERVICE_PORT)
        })
        .ok_or("no TCP ClusterIP service in the dump")?;
    assert!(tcp["packets"].as_u64().unwrap_or(0) >= 600, "{tcp}");
    assert!(
        tcp["bytes"].as_u64().unwrap_or(0) > tcp["packets"].as_u64().unwrap_or(0) * 54,
        "{tcp}"
    );
    assert_eq!(tcp["connections"], 200, "{tcp}");
    let metrics = daemon.metrics()?;
    assert!(
        metrics.contains("keel_service_packets_total{service=\"default/web:http\""),
        "{metrics}"
    );

    // An endpoint turning unready gets no new flows from the packet path either.
    write_manifest(
        manifests.path(),
        "web-endpoints.yaml",
        &slice_yaml(
            "web",
            BACKEND_PORT,
            &[(backends[0].0, true), (backends[1].0, false)],
        ),
    )?;
    daemon.wait_for_log(&["synced", "backends=3"], Duration::from_secs(2))?;
    let run = finish_client(start_client_at(
        &remote_at,
        vip,
        Client::Tcp { check_peer: false },
        Run::Count(50),
    )?)?;
    assert_eq!(run.counts().get("a"), Some(&50), "{:?}", run.counts());

    // One client port, reused at once from the ClusterIP to the NodePort: both flows reach
    // backend a with the same four-tuple, so the second SYN meets the first flow's closing
    // conntrack entry (and the backend's TIME_WAIT). It must be answered, not refused.
    let handle = in_netns(remote_netns, move || {
        let mut answers = Vec::new();
        for port in [47_001, 47_002, 47_003] {
            for target in [vip, node_port] {
                answers.push((port, target, ask_from_port(port, target)));
            }
        }
        Ok(answers)
    });
    let answers = handle
        .join()
        .map_err(|_| "the port-reuse client panicked")??;
    for (port, target, answer) in answers {
        assert_eq!(
            answer.as_deref().map_err(ToString::to_string),
            Ok("a"),
            "from port {port} to {target}"
        );
    }
    Ok(())
}

/// Connects from `port` (reused at once: SO_REUSEADDR) to `target`, sends a request and reads
/// the answer's body to the server's close, within 5 s.
fn ask_from_port(port: u16, target: SocketAddrV4) -> std::io::Result<String> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::io::{Read, Write};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(REMOTE_IP, port)))?;
    socket.connect_timeout(&SockAddr::from(target), Duration::from_secs(5))?;
    let mut stream = std::net::TcpStream::from(socket);
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok(body.trim_end().to_owned())
}

/// Runs `f` on a thread of its own that has entered the network namespace at `netns` (only
/// that thread moves: setns(CLONE_NEWNET) is per thread).
fn in_netns<T: Send + 'static>(
    netns: std::path::PathBuf,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<std::io::Result<T>> {
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&netns)?;
        // SAFETY: a valid namespace fd; only this thread's network namespace changes.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        f()
    })
}

/// Issue 20: a UDP datagram larger than the links' MTU reaches a ClusterIP's backend as IP
/// fragments, and its answer comes back the same way. Only the first fragment carries the
/// ports; the others must follow it through tc on the node's uplink, both ways, or the
/// datagram never reassembles (large DNS answers).
#[test]
fn a_3000_byte_udp_datagram_crosses_a_cluster_ip_over_1500_byte_links() -> TestResult {
    use std::net::{Ipv4Addr, UdpSocket};
    const SIZE: usize = 3000;
    require_root();
    let mut lab = Lab::new(NodePlacement::OwnNetns)?;
    let pod = lab.add_pod("echo")?;
    let backend = pod.addr();
    pod.netns().ip(&["link", "set", "eth0", "mtu", "1500"])?;
    // A UDP echo on the backend: the same bytes back to the sender.
    let server_netns = pod.netns().path();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server_stop = stop.clone();
    let server = in_netns(server_netns, move || -> std::io::Result<()> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, BACKEND_PORT))?;
        // Wakes up now and then to see whether the test is over.
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let _ = ready_tx.send(());
        let mut buf = vec![0u8; 65_536];
        while !server_stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                socket.send_to(&buf[..n], from)?;
            }
        }
        Ok(())
    });
    // Stops the echo (and lets its namespace go) however the test ends.
    struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _stop_server = StopOnDrop(stop.clone());
    ready_rx.recv_timeout(Duration::from_secs(5))?;
    let remote = lab.add_remote("remote")?;
    remote.netns().ip(&["link", "set", "eth0", "mtu", "1500"])?;
    let remote_netns = remote.netns().path();
    lab.node_ip(&["link", "set", UPLINK, "mtu", "1500"])?;

    let cgroup = Cgroup::create(&format!("keel-test-frag-{}", keel_lab::unique_id()))?;
    let manifests = tempfile::tempdir()?;
    write_manifest(
        manifests.path(),
        "web.yaml",
        &keel_tests::service_yaml("web", VIP, SERVICE_PORT, BACKEND_PORT),
    )?;
    write_manifest(
        manifests.path(),
        "web-endpoints.yaml",
        &slice_yaml("web", BACKEND_PORT, &[(backend, true)]),
    )?;
    let _daemon = Daemon::start_with(
        &lab,
        manifests.path(),
        cgroup.path(),
        &["--tc-interface", UPLINK],
    )?;

    let sent: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();
    let expected = sent.clone();
    let vip = SocketAddrV4::new(VIP, SERVICE_PORT);
    let answer = in_netns(remote_netns, move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = vec![0u8; 65_536];
        // UDP may lose a datagram to the lab's load: three tries, each its own datagram.
        let mut last = None;
        for _ in 0..3 {
            socket.send_to(&sent, vip)?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => return Ok(Some((buf[..n].to_vec(), from))),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::ErrorKind::TimedOut.into()))
    })
    .join()
    .map_err(|_| "the client thread panicked")?;
    let (received, from) = answer
        .map_err(|e| format!("no answer to a {SIZE}-byte datagram through {vip}: {e}"))?
        .ok_or("no answer")?;
    assert_eq!(
        from,
        std::net::SocketAddr::V4(vip),
        "the answer comes from the ClusterIP"
    );
    assert_eq!(received.len(), SIZE);
    assert!(
        received == expected,
        "the answer's bytes are the datagram's"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server
        .join()
        .map_err(|_| "the echo thread panicked")?
        .map_err(|e| format!("the echo server failed: {e}"))?;
    Ok(())
}

/// Path MTU discovery through a ClusterIP: the node cannot forward a 1400-byte packet that
/// must not be fragmented onto the 1000-byte pod network and says so (ICMP fragmentation
/// needed). Its error quotes the packet as translated, to the backend; tc's egress
/// translates the quote back to the ClusterIP, so the client's kernel lowers the path MTU of
/// the route it uses, the ClusterIP's (without it, the error names a destination the client
/// never used and the client keeps sending packets that die at the node).
#[test]
fn path_mtu_discovery_works_through_a_cluster_ip() -> TestResult {
    use std::{
        net::{Ipv4Addr, UdpSocket},
        os::fd::AsRawFd,
    };
    require_root();
    let mut lab = Lab::new(NodePlacement::OwnNetns)?;
    let pod = lab.add_pod("small")?;
    let backend = pod.addr();
    pod.netns().ip(&["link", "set", "eth0", "mtu", "1000"])?;
    let remote = lab.add_remote("remote")?;
    let remote_netns = remote.netns().path();
    // The node's side of the pod network: packets to pods leave through the bridge (the lab
    // names it kbr0 in a node namespace of its own).
    lab.node_ip(&["link", "set", "kbr0", "mtu", "1000"])?;

    let cgroup = Cgroup::create(&format!("keel-test-pmtu-{}", keel_lab::unique_id()))?;
    let manifests = tempfile::tempdir()?;
    write_manifest(
        manifests.path(),
        "web.yaml",
        &keel_tests::service_yaml("web", VIP, SERVICE_PORT, BACKEND_PORT),
    )?;
    write_manifest(
        manifests.path(),
        "web-endpoints.yaml",
        &slice_yaml("web", BACKEND_PORT, &[(backend, true)]),
    )?;
    let _daemon = Daemon::start_with(
        &lab,
        manifests.path(),
        cgroup.path(),
        &["--tc-interface", UPLINK],
    )?;

    let vip = SocketAddrV4::new(VIP, SERVICE_PORT);
    let learnt = in_netns(remote_netns, move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        let fd = socket.as_raw_fd();
        let int_size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let dont_fragment: libc::c_int = libc::IP_PMTUDISC_DO;
        // SAFETY: a valid socket and a c_int option of the right size.
        let set = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                std::ptr::addr_of!(dont_fragment).cast(),
                int_size,
            )
        };
        if set != 0 {
            return Err(std::io::Error::last_os_error());
        }
        socket.connect(vip)?;
        let mtu = || -> std::io::Result<libc::c_int> {
            let mut value: libc::c_int = 0;
            let mut len = int_size;
            // SAFETY: a connected socket and a c_int buffer of the size passed.
            let got = unsafe {
                libc::getsockopt(
                    fd,
                    libc::IPPROTO_IP,
                    libc::IP_MTU,
                    std::ptr::addr_of_mut!(value).cast(),
                    &mut len,
                )
            };
            if got != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(value)
        };
        let before = mtu()?;
        // The error comes back asynchronously; a send may also report it (EMSGSIZE).
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            let _ = socket.send(&[0x55; 1400]);
            let now = mtu()?;
            if now < before {
                return Ok((before, now));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok((before, mtu()?))
    })
    .join()
    .map_err(|_| "the client thread panicked")??;
    assert_eq!(
        learnt,
        (1500, 1000),
        "the client's path MTU to {vip} (before, after the node's error)"
    );
    Ok(())
}
