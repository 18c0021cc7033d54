//! `balance`: the TCP load balancer in front of a lab's control-plane members, as an HA
//! cluster puts one (haproxy, kube-vip) in front of its API servers.
//!
//! Passthrough, so TLS stays end to end: each connection goes to the backend that last
//! accepted one, or, when that one refuses or does not answer within the connect timeout, to
//! the next in the list. That is a health check at connect time, which is all a client of a
//! killed member needs: its connections break, it reconnects, and it lands on a live member.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use anyhow::Context;

/// How long a backend may take to accept before the next is tried: the lab is one bridge,
/// so a live member answers in microseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

pub fn run(listen: SocketAddr, backends: Vec<SocketAddr>) -> anyhow::Result<()> {
    if backends.is_empty() {
        anyhow::bail!("--backend: at least one is needed");
    }
    let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let shown: Vec<String> = backends.iter().map(ToString::to_string).collect();
    println!("balancing {listen} over {}", shown.join(", "));
    let backends = Arc::new(backends);
    let current = Arc::new(AtomicUsize::new(0));
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let backends = backends.clone();
        let current = current.clone();
        thread::spawn(move || {
            if let Err(e) = forward(client, &backends, &current) {
                eprintln!("balance: {e:#}");
            }
        });
    }
    Ok(())
}

/// Connects to the first live backend, starting at `current`, and copies both ways.
fn forward(
    client: TcpStream,
    backends: &[SocketAddr],
    current: &AtomicUsize,
) -> anyhow::Result<()> {
    let start = current.load(Ordering::Relaxed);
    let mut errors = Vec::new();
    for offset in 0..backends.len() {
        let index = (start + offset) % backends.len();
        match TcpStream::connect_timeout(&backends[index], CONNECT_TIMEOUT) {
            Ok(backend) => {
                if index != start {
                    current.store(index, Ordering::Relaxed);
                    println!("balance: now forwarding to {}", backends[index]);
                }
                return splice(client, backend);
            }
            Err(e) => errors.push(format!("{}: {e}", backends[index])),
        }
    }
    anyhow::bail!("no backend accepted: {}", errors.join("; "))
}

fn splice(client: TcpStream, backend: TcpStream) -> anyhow::Result<()> {
    client.set_nodelay(true)?;
    backend.set_nodelay(true)?;
    let (client_read, backend_write) = (client.try_clone()?, backend.try_clone()?);
    let upstream = thread::spawn(move || copy(client_read, backend_write));
    copy(backend, client);
    let _ = upstream.join();
    Ok(())
}

/// Copies until `from` ends. An end passes on as a half close (a client may finish sending
/// before it reads the answer); an error, or a peer gone, ends both directions, so that a
/// member that dies takes its clients' connections with it and they reconnect elsewhere.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) if to.write_all(&buffer[..n]).is_ok() => {}
            _ => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
