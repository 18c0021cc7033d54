//! keel's store: the replicated key-value store all cluster state lives in, as Kubernetes keeps
//! it in etcd. Every write goes through raft (openraft) and is on disk on a majority before it
//! is acknowledged; the keyspace is multi-versioned like etcd's, with the raft-applied index as
//! the revision; clients speak etcd's v3 gRPC API to it.
//!
//! Layers, each depending only on those above it:
//! - [`types`]: commands, results and the raft type configuration;
//! - [`keyspace`]: the multi-version keyspace (pure data, no I/O);
//! - [`watch_hub`]: fan-out of applied events to watch streams;
//! - [`log_store`] and [`state_machine`]: openraft's storage on fjall (its journal synced
//!   through [`journal_sync`], outside fjall's lock) and snapshot files (written through
//!   [`writeback`], so that they do not stall the log's syncs);
//! - [`metrics`]: etcd-named Prometheus series, and [`grpc_metrics`], go-grpc-prometheus'
//!   server series that etcd exports too;
//! - [`backup`]: the backup format the Maintenance snapshot streams, and restoring one.
//!
//! Over them, [`member`] runs raft and the member's background work, [`network`] and
//! [`peer_service`] carry raft and forwarded writes ([`forwarding`]) between members, the
//! leader's replication ([`replication_link`]) and forwarded writes on links of their own
//! ([`peer_link`]: [`peer_frames`] on TCP, not gRPC), [`etcd`] serves etcd's v3 gRPC API from it, and [`local_watch`] gives a reader in the same
//! process (the API server's watch cache) what the Watch service gives a remote one.
//! [`server`] puts them on the member's ports: the client port tells gRPC from etcd's HTTP/1
//! endpoints ([`client_port`], by the first bytes, [`first_bytes`]), names the services it does
//! not serve ([`unserved`]), and `/metrics` carries the [`process_metrics`] too.

pub mod backup;
pub mod client_port;
pub mod etcd;
pub mod first_bytes;
pub mod forwarding;
pub mod grpc_metrics;
pub mod history;
pub mod journal_sync;
pub mod keyspace;
pub mod local_watch;
pub mod log_store;
pub mod member;
pub mod metrics;
pub mod network;
pub mod pb;
pub mod peer_frames;
pub mod peer_link;
pub mod peer_service;
pub mod peer_wire;
pub mod process_metrics;
pub mod replication_link;
pub mod server;
pub mod state_machine;
pub mod types;
pub mod unserved;
pub mod watch_hub;
pub mod writeback;
