//! Serving a member: etcd's API on the client listener (with etcd's `/version`, `/health` and
//! `/metrics` over HTTP/1.1 on the same port, [`crate::client_port`]), the peer protocol on the
//! peer listener, and `/metrics` + `/health` on the metrics listener. Listeners are bound before
//! raft starts, so a port conflict fails the start with its address instead of leaving a
//! half-started member.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use authority_repair::AuthorityRepair;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use warp::Filter;
use write_coalescing::WriteCoalescing;

use crate::client_port::{self, ClientProtocol};
use crate::etcd::cluster::VERSION;
use crate::etcd::watch_service::WatchService;
use crate::etcd::{Api, MAX_GRPC_MESSAGE};
use crate::forwarding;
use crate::member::{Member, MemberConfig};
use crate::network::MAX_PEER_MESSAGE;
use crate::pb::etcdserverpb::cluster_server::ClusterServer;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::pb::etcdserverpb::lease_server::LeaseServer;
use crate::pb::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::pb::peer::peer_server::PeerServer;
use crate::peer_link::{self, Lane, Protocol};
use crate::peer_service::PeerService;
use crate::replication_link;

pub struct Listeners {
    pub client: TcpListener,
    pub peer: TcpListener,
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(
        client: SocketAddr,
        peer: SocketAddr,
        metrics: Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for {what} on {addr}"))
        };
        Ok(Self {
            client: bind(client, "clients").await?,
            peer: bind(peer, "peers").await?,
            metrics: match metrics {
                Some(addr) => Some(bind(addr, "metrics").await?),
                None => None,
            },
        })
    }
}

/// A running member and its servers; dropping it does not stop them, [`Running::stop`] does.
pub struct Running {
    pub member: Arc<Member>,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.member.shutdown().await;
    }
}

/// The peer port carries two protocols: links (a leader's replication, a follower's forwarded
/// writes), which open with their preamble and are served here, and gRPC for everything else,
/// whose connections come out of the returned stream for the gRPC server. The task accepts;
/// aborting it drops the links it serves and the listener ([`accept_each`]).
fn peer_connections(
    listener: TcpListener,
    member: Arc<Member>,
) -> (
    impl futures::Stream<Item = std::io::Result<WriteCoalescing<TcpStream>>>,
    JoinHandle<()>,
) {
    let (grpc, incoming) = tokio::sync::mpsc::channel(64);
    let accepting = accept_each(listener, "peer", move |socket| {
        let grpc = grpc.clone();
        let member = member.clone();
        async move {
            match peer_link::classify(&socket, peer_link::CLASSIFY_TIMEOUT).await {
                Protocol::Link(Lane::Replication) => {
                    replication_link::serve(socket, |requests| member.raft.stream_append(requests))
                        .await
                }
                Protocol::Link(Lane::Forwarding) => {
                    forwarding::serve_link(socket, move |command| {
                        let member = member.clone();
                        async move { member.propose_as_leader(command).await }
                    })
                    .await
                }
                Protocol::Other => {
                    if let Err(e) = socket.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY on an accepted connection");
                    }
                    let _ = grpc.send(Ok(WriteCoalescing::new(socket))).await;
                }
            }
        }
    });
    (
        tokio_stream::wrappers::ReceiverStream::new(incoming),
        accepting,
    )
}

/// Accepts connections on `listener` and runs `serve` on each in a task of its own, until the
/// returned task is aborted, which drops the listener and every connection's task.
fn accept_each<Serve, Served>(
    listener: TcpListener,
    what: &'static str,
    serve: Serve,
) -> JoinHandle<()>
where
    Serve: Fn(TcpStream) -> Served + Send + 'static,
    Served: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            match accepted {
                Ok((socket, _)) => {
                    connections.spawn(serve(socket));
                }
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a {what} connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    })
}

/// The client port's connections: HTTP/1.1 requests are served here by `http` (etcd's
/// `/version`, `/health`, `/metrics`), and gRPC's connections come out of the returned stream
/// for the gRPC server, with Nagle's algorithm off (tonic's own `tcp_nodelay` applies only to
/// listeners it binds itself; without it a small response waited for the peer's delayed ACK,
/// about 40 ms per linearizable read, measured), `:authority` repaired
/// ([`AuthorityRepair`]) and writes gathered ([`WriteCoalescing`]: tonic writes after every
/// stream's message, so a put fanning out to a thousand watches over sixteen connections cost
/// a thousand `writev`; gathered, it is a few per connection). Aborting the returned task
/// drops the listener and the HTTP/1 connections it serves.
fn client_connections<F>(
    listener: TcpListener,
    http: F,
) -> (
    impl futures::Stream<Item = std::io::Result<WriteCoalescing<AuthorityRepair<TcpStream>>>>,
    JoinHandle<()>,
)
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let (grpc, incoming) = tokio::sync::mpsc::channel(64);
    let accepting = accept_each(listener, "client", move |socket| {
        let grpc = grpc.clone();
        let http = http.clone();
        async move {
            if let Err(e) = socket.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY on an accepted connection");
            }
            match client_port::classify(&socket, client_port::SNIFF_TIMEOUT).await {
                ClientProtocol::Grpc => {
                    let _ = grpc
                        .send(Ok(WriteCoalescing::new(AuthorityRepair::new(socket))))
                        .await;
                }
                ClientProtocol::Http1 => serve_http1(socket, http).await,
            }
        }
    });
    (
        tokio_stream::wrappers::ReceiverStream::new(incoming),
        accepting,
    )
}

/// One HTTP/1.1 connection on the client port, served by `routes`.
async fn serve_http1<F>(socket: TcpStream, routes: F)
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    use tower_service::Service;
    let service = warp::service(routes);
    // A client that trickles its request head holds a task, not the port: it gets 10 s.
    let served = warp::hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .serve_connection(
            hyper_util::rt::TokioIo::new(socket),
            warp::hyper::service::service_fn(move |request| service.clone().call(request)),
        )
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "an HTTP/1 connection on the client port");
    }
}

pub async fn start(config: MemberConfig, listeners: Listeners) -> anyhow::Result<Running> {
    start_with_metrics(config, listeners, |_| {}).await
}

/// [`start`], with more metrics on the member's `/metrics`: the components that share this
/// process (the scheduler, the controllers) register theirs there, so one scrape target
/// covers the member.
pub async fn start_with_metrics(
    config: MemberConfig,
    listeners: Listeners,
    register: impl FnOnce(&mut Registry) + Send + 'static,
) -> anyhow::Result<Running> {
    let client_addr = listeners.client.local_addr()?;
    let peer_addr = listeners.peer.local_addr()?;
    let metrics_addr = match &listeners.metrics {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let member = Member::start(config).await?;
    let mut tasks = Vec::new();

    let peer = PeerServer::new(PeerService::new(member.clone()))
        .max_decoding_message_size(MAX_PEER_MESSAGE)
        .max_encoding_message_size(MAX_PEER_MESSAGE);
    let (incoming, links) = peer_connections(listeners.peer, member.clone());
    tasks.push(links);
    tasks.push(tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(crate::network::PEER_KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(crate::network::PEER_KEEPALIVE_TIMEOUT))
            .add_service(peer)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "the peer server stopped");
        }
    }));

    let api = Api::new(member.clone());
    let grpc_metrics = member.metrics.grpc.layer();
    let routes = http_routes(member.clone(), register);
    // etcd 3.4 clients (Debian's etcdctl) dialing `http://host:port` for `endpoint status`
    // and the other per-endpoint calls send that URL as `:authority`, which h2 refuses.
    let (incoming, accepting) = client_connections(listeners.client, routes.clone());
    tasks.push(accepting);
    tasks.push(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .layer(grpc_metrics)
            .layer(crate::unserved::UnservedLayer)
            .add_service(KvServer::new(api.clone()).max_decoding_message_size(MAX_GRPC_MESSAGE))
            .add_service(WatchService::new(api.clone(), MAX_GRPC_MESSAGE))
            .add_service(LeaseServer::new(api.clone()).max_decoding_message_size(MAX_GRPC_MESSAGE))
            .add_service(
                ClusterServer::new(api.clone()).max_decoding_message_size(MAX_GRPC_MESSAGE),
            )
            .add_service(
                MaintenanceServer::new(api.clone()).max_decoding_message_size(MAX_GRPC_MESSAGE),
            )
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the client server stopped");
        }
    }));

    if let Some(listener) = listeners.metrics {
        tasks.push(tokio::spawn(warp::serve(routes).incoming(listener).run()));
    }
    Ok(Running {
        member,
        client_addr,
        peer_addr,
        metrics_addr,
        tasks,
    })
}

/// etcd's HTTP endpoints, served on the metrics listener and on the client port: `/metrics`
/// (the member's registry, the `process_*` series, and what `register` adds), `/health`
/// (healthy when a leader is known) and `/version`.
fn http_routes(
    member: Arc<Member>,
    register: impl FnOnce(&mut Registry),
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone + Send + Sync + 'static
{
    let registry = {
        let mut registry = Registry::default();
        member.metrics.register(&mut registry);
        registry.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        register(&mut registry);
        Arc::new(registry)
    };
    let health_member = member.clone();
    let metrics = warp::path("metrics").and(warp::path::end()).map(move || {
        member.refresh_metrics();
        let mut body = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &registry) {
            body = format!("# encoding failed: {e}\n");
        }
        warp::reply::with_header(
            body,
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    });
    let health = warp::path("health").and(warp::path::end()).map(move || {
        let ok = health_member.raft_metrics().current_leader.is_some();
        let body = format!("{{\"health\":\"{ok}\"}}");
        let status = if ok {
            warp::http::StatusCode::OK
        } else {
            warp::http::StatusCode::SERVICE_UNAVAILABLE
        };
        warp::reply::with_status(body, status)
    });
    // etcd's answer: the server's version and the cluster's (the API level it speaks).
    let version = warp::path("version").and(warp::path::end()).map(|| {
        warp::reply::json(&serde_json::json!({
            "etcdserver": VERSION,
            "etcdcluster": "3.4.0",
        }))
    });
    warp::get().and(metrics.or(health).or(version))
}
