//! `keel-lab-agent`: the lab's test server and clients.
//!
//! - `serve --name N --port P`: answers every TCP connection with a minimal HTTP response
//!   whose body is `N`, so both curl and the `connect` client can tell backends apart, and
//!   every UDP datagram on the same port with `N`. `--echo-peer` makes the TCP body
//!   `N <client address>`, so a test can see which source address a service left the client.
//! - `connect --to IP:PORT --count K`: opens K connections one after the other and prints one
//!   line per attempt, `<ms since start> ok <name>` or `<ms> err <errno name>`, then a JSON
//!   summary line. `--for-ms T` keeps going until T ms have passed. `--check-peer` also fails
//!   an attempt whose `getpeername` is not the address dialled.
//! - `udp --to IP:PORT --count K [--connected] [--source-port P]`: K request/reply exchanges,
//!   each on a fresh socket; an exchange fails unless the reply comes from exactly IP:PORT, as
//!   a resolver would insist. With `--source-port`, every socket is bound to port P, so all
//!   exchanges are one conntrack flow, as a resolver's long-lived socket is. With
//!   `--connected --keep`, one connected socket serves every exchange until one fails; the
//!   next exchange then connects a new socket, as a resolver does when its socket errors.
//!   `--for-ms T` and `--interval-ms I` as for `connect`.
//! - `balance --listen IP:PORT --backend IP:PORT...`: a TCP passthrough load balancer that
//!   sends each connection to the first live backend ([`balance`]).

use std::{
    collections::BTreeMap,
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Parser, Subcommand};

mod balance;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Serve {
        #[arg(long)]
        name: String,
        #[arg(long)]
        port: u16,
        /// Append the connection's source address to the TCP answer.
        #[arg(long)]
        echo_peer: bool,
    },
    Connect {
        #[arg(long)]
        to: SocketAddrV4,
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Keep connecting until this many milliseconds have passed (overrides --count).
        #[arg(long)]
        for_ms: Option<u64>,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        #[arg(long)]
        check_peer: bool,
        /// Spread connections at random over this many consecutive addresses from --to's
        /// (N services on consecutive ClusterIPs).
        #[arg(long, default_value_t = 1)]
        spread: u32,
        /// Start attempts at most this often (0: back to back), like a client with a steady
        /// request rate rather than a load generator.
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
    },
    Balance {
        #[arg(long)]
        listen: SocketAddr,
        /// A backend, in order of preference; repeat for each.
        #[arg(long = "backend", required = true)]
        backends: Vec<SocketAddr>,
    },
    Udp {
        #[arg(long)]
        to: SocketAddrV4,
        #[arg(long, default_value_t = 1)]
        count: u64,
        #[arg(long)]
        connected: bool,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Bind every exchange's socket to this port (0: a new one each time).
        #[arg(long, default_value_t = 0)]
        source_port: u16,
        /// With --connected: keep the socket between exchanges (a new one after a failure).
        #[arg(long, requires = "connected")]
        keep: bool,
        #[arg(long)]
        for_ms: Option<u64>,
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Serve {
            name,
            port,
            echo_peer,
        } => serve(&name, port, echo_peer),
        Cmd::Balance { listen, backends } => balance::run(listen, backends),
        Cmd::Connect {
            to,
            count,
            for_ms,
            timeout_ms,
            check_peer,
            spread,
            interval_ms,
        } => {
            let timeout = Duration::from_millis(timeout_ms);
            let run = Run {
                count,
                for_ms: for_ms.map(Duration::from_millis),
                interval: Duration::from_millis(interval_ms),
            };
            let mut random = XorShift::seeded();
            run.each(|| {
                let offset = random.below(spread.max(1));
                let target =
                    SocketAddrV4::new(Ipv4Addr::from(u32::from(*to.ip()) + offset), to.port());
                tcp_request(SocketAddr::V4(target), timeout, check_peer)
            })
        }
        Cmd::Udp {
            to,
            count,
            connected,
            timeout_ms,
            source_port,
            keep,
            for_ms,
            interval_ms,
        } => {
            let timeout = Duration::from_millis(timeout_ms);
            let run = Run {
                count,
                for_ms: for_ms.map(Duration::from_millis),
                interval: Duration::from_millis(interval_ms),
            };
            if keep {
                let mut kept: Option<UdpSocket> = None;
                run.each(|| kept_udp_request(&mut kept, to, timeout, source_port))
            } else {
                run.each(|| udp_request(to, timeout, connected, source_port))
            }
        }
    }
}

fn serve(name: &str, port: u16, echo_peer: bool) -> anyhow::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .with_context(|| format!("binding TCP port {port}"))?;
    let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
        .with_context(|| format!("binding UDP port {port}"))?;
    let udp_name = name.to_owned();
    thread::spawn(move || echo_name(&udp, &udp_name));
    println!("listening on {} (TCP and UDP)", listener.local_addr()?);
    let body = format!("{name}\n");
    for stream in listener.incoming().flatten() {
        let body = match stream.peer_addr() {
            Ok(peer) if echo_peer => format!("{name} {}\n", peer.ip()),
            _ => body.clone(),
        };
        thread::spawn(move || answer(stream, &body));
    }
    Ok(())
}

/// Answers each request on the connection: HTTP/1.1 requests keep it open (for keep-alive load
/// such as wrk's), anything else gets one answer and a close. The request is read before the
/// answer, so that closing does not reset a client still sending; a client that sends nothing
/// within 200 ms is answered anyway.
fn answer(mut stream: TcpStream, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let head_end = loop {
            if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break Some(at + 4);
            }
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(_) if pending.is_empty() => break None, // silent client: answer anyway
                Err(_) => return,
            }
        };
        let head = head_end
            .map(|end| String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase())
            .unwrap_or_default();
        let keep_alive = head.contains("http/1.1") && !head.contains("connection: close");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
            body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        if stream.write_all(response.as_bytes()).is_err() || !keep_alive {
            return;
        }
        pending.drain(..head_end.unwrap_or(0));
        // Between requests of a kept-alive connection, wait as a server would.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    }
}

/// A tiny PRNG for picking targets: statistical quality is all that matters here.
struct XorShift(u64);

impl XorShift {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(nanos | 1)
    }

    fn below(&mut self, bound: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(bound)) as u32
    }
}

/// Answers every datagram with the server's name.
fn echo_name(socket: &UdpSocket, name: &str) {
    let mut buf = [0u8; 1500];
    while let Ok((_, from)) = socket.recv_from(&mut buf) {
        let _ = socket.send_to(name.as_bytes(), from);
    }
}

/// How many attempts a client makes.
struct Run {
    count: u64,
    for_ms: Option<Duration>,
    interval: Duration,
}

impl Run {
    /// Runs `attempt` until done, printing one line per attempt and a JSON summary: counts
    /// per outcome, and latency percentiles of the successful attempts in microseconds.
    fn each(&self, mut attempt: impl FnMut() -> Result<String, String>) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut summary: BTreeMap<String, u64> = BTreeMap::new();
        let mut latencies: Vec<u64> = Vec::new();
        let mut made = 0;
        loop {
            let done = match self.for_ms {
                Some(limit) => start.elapsed() >= limit,
                None => made >= self.count,
            };
            if done {
                break;
            }
            if made > 0 && !self.interval.is_zero() {
                let next = start + self.interval * made as u32;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            made += 1;
            let began = Instant::now();
            let result = attempt();
            if result.is_ok() {
                latencies.push(began.elapsed().as_micros() as u64);
            }
            let ms = start.elapsed().as_millis();
            let key = match result {
                Ok(name) => {
                    println!("{ms} ok {name}");
                    name
                }
                Err(kind) => {
                    println!("{ms} err {kind}");
                    format!("err:{kind}")
                }
            };
            *summary.entry(key).or_default() += 1;
        }
        latencies.sort_unstable();
        let percentile = |p: f64| -> u64 {
            if latencies.is_empty() {
                return 0;
            }
            latencies[((latencies.len() - 1) as f64 * p).round() as usize]
        };
        let report = serde_json::json!({
            "counts": summary,
            "p50_us": percentile(0.50),
            "p90_us": percentile(0.90),
            "p99_us": percentile(0.99),
        });
        println!("{report}");
        Ok(())
    }
}

/// One connection: the name the backend answered, or the error's errno name.
fn tcp_request(to: SocketAddr, timeout: Duration, check_peer: bool) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&to, timeout).map_err(|e| errno_name(&e))?;
    if check_peer {
        let peer = stream.peer_addr().map_err(|e| errno_name(&e))?;
        if peer != to {
            return Err(format!("PEER:{peer}"));
        }
    }
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| errno_name(&e))?;
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| errno_name(&e))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| errno_name(&e))?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if body.is_empty() {
        return Err("EMPTY".into());
    }
    Ok(body.to_owned())
}

/// One datagram exchange on a fresh socket: from a new source port when `source_port` is 0
/// (as a resolver that randomizes ports would), else from that one.
fn udp_request(
    to: SocketAddrV4,
    timeout: Duration,
    connected: bool,
    source_port: u16,
) -> Result<String, String> {
    let socket =
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, source_port)).map_err(|e| errno_name(&e))?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| errno_name(&e))?;
    let mut buf = [0u8; 1500];
    let (len, from) = if connected {
        socket.connect(to).map_err(|e| errno_name(&e))?;
        socket.send(b"hello").map_err(|e| errno_name(&e))?;
        let len = socket.recv(&mut buf).map_err(|e| errno_name(&e))?;
        (len, socket.peer_addr().map_err(|e| errno_name(&e))?)
    } else {
        socket.send_to(b"hello", to).map_err(|e| errno_name(&e))?;
        socket.recv_from(&mut buf).map_err(|e| errno_name(&e))?
    };
    if from != SocketAddr::V4(to) {
        return Err(format!("FROM:{from}"));
    }
    Ok(String::from_utf8_lossy(&buf[..len]).trim().to_owned())
}

/// One exchange on the kept connected socket (connected now if there is none). A failure
/// drops the socket, so the next exchange connects again and the socket LB chooses anew.
fn kept_udp_request(
    kept: &mut Option<UdpSocket>,
    to: SocketAddrV4,
    timeout: Duration,
    source_port: u16,
) -> Result<String, String> {
    let result = (|| {
        let socket = match kept.take() {
            Some(socket) => socket,
            None => {
                let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, source_port))
                    .map_err(|e| errno_name(&e))?;
                socket
                    .set_read_timeout(Some(timeout))
                    .map_err(|e| errno_name(&e))?;
                socket.connect(to).map_err(|e| errno_name(&e))?;
                socket
            }
        };
        socket.send(b"hello").map_err(|e| errno_name(&e))?;
        let mut buf = [0u8; 1500];
        let len = socket.recv(&mut buf).map_err(|e| errno_name(&e))?;
        let answer = String::from_utf8_lossy(&buf[..len]).trim().to_owned();
        Ok((socket, answer))
    })();
    match result {
        Ok((socket, answer)) => {
            *kept = Some(socket);
            Ok(answer)
        }
        Err(error) => Err(error),
    }
}

fn errno_name(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => "ECONNREFUSED".into(),
        Some(libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        Some(libc::EAGAIN) => "ETIMEDOUT".into(), // a read timeout
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::ENETUNREACH) => "ENETUNREACH".into(),
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH".into(),
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::ECONNRESET) => "ECONNRESET".into(),
        Some(libc::ECONNABORTED) => "ECONNABORTED".into(),
        Some(libc::EDESTADDRREQ) => "EDESTADDRREQ".into(),
        Some(code) => format!("errno{code}"),
        None if err.kind() == ErrorKind::TimedOut || err.kind() == ErrorKind::WouldBlock => {
            "ETIMEDOUT".into()
        }
        None => err.kind().to_string().replace(' ', "_"),
    }
}
