//! `keel-lab-agent`: the lab's test server and client.
//!
//! - `serve --name N --port P`: answers every TCP connection with a minimal HTTP response
//!   whose body is `N`, so both curl and the `connect` client can tell backends apart.
//! - `connect --to IP:PORT --count K`: opens K connections one after the other and prints one
//!   line per attempt, `<ms since start> ok <name>` or `<ms> err <errno name>`, then a JSON
//!   summary line. `--for-ms T` keeps going until T ms have passed.

use std::{
    collections::BTreeMap,
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Parser, Subcommand};

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
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Serve { name, port } => serve(&name, port),
        Cmd::Connect {
            to,
            count,
            for_ms,
            timeout_ms,
        } => connect(
            to,
            count,
            for_ms.map(Duration::from_millis),
            Duration::from_millis(timeout_ms),
        ),
    }
}

fn serve(name: &str, port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .with_context(|| format!("binding port {port}"))?;
    println!("listening on {}", listener.local_addr()?);
    let body = format!("{name}\n");
    for stream in listener.incoming().flatten() {
        let body = body.clone();
        thread::spawn(move || answer(stream, &body));
    }
    Ok(())
}

/// Reads the request (if any arrives quickly) before answering, so that closing the socket
/// does not reset a client that is still sending.
fn answer(mut stream: TcpStream, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut request = [0u8; 1024];
    let _ = stream.read(&mut request);
    let response = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn connect(
    to: SocketAddrV4,
    count: u64,
    for_ms: Option<Duration>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut summary: BTreeMap<String, u64> = BTreeMap::new();
    let mut attempt = 0;
    loop {
        let done = match for_ms {
            Some(limit) => start.elapsed() >= limit,
            None => attempt >= count,
        };
        if done {
            break;
        }
        attempt += 1;
        let result = request(SocketAddr::V4(to), timeout);
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
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// One connection: the name the backend answered, or the error's errno name.
fn request(to: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&to, timeout).map_err(|e| errno_name(&e))?;
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

fn errno_name(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => "ECONNREFUSED".into(),
        Some(libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::ENETUNREACH) => "ENETUNREACH".into(),
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH".into(),
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::ECONNRESET) => "ECONNRESET".into(),
        Some(code) => format!("errno{code}"),
        None if err.kind() == ErrorKind::TimedOut || err.kind() == ErrorKind::WouldBlock => {
            "ETIMEDOUT".into()
        }
        None => err.kind().to_string().replace(' ', "_"),
    }
}
