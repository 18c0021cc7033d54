//! keel's control plane: a raft-replicated object store with resourceVersion and watch, an HTTP
//! API with authentication, authorization and admission, a scheduler and controllers.
//!
//! The store, the API server and the scheduler are crates of their own; this crate is the
//! `control-plane` binary that runs them in one process, its load generators, and what only
//! the process needs:
//! - [`leader_election`]: of the members running the scheduler (and the controllers), only the
//!   holder of its Lease runs it.
//! - [`controller_manager`]: the controllers that `--controllers` enables, as one elected
//!   component (kube-controller-manager's shape).
//! - [`embedded_storage`]: the API server's reads and writes handed to the store member in the
//!   same process, without the loopback gRPC hop.
//! - [`scrape`]: what the benches read off a component's `/metrics`.

pub mod controller_manager;
pub mod embedded_storage;
pub mod leader_election;
pub mod scrape;
