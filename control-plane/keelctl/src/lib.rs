//! keelctl: the administration tool of keel's control plane, as etcdctl and `kubeadm
//! kubeconfig` are for etcd and Kubernetes.
//!
//! # Layout
//! - [`cli`]: the command line (clap), its values checked by the modules below.
//! - [`client`]: etcd v3 clients on the members' client URLs, every request under a deadline.
//! - [`cluster`]: `cluster status`, every member asked on its own URL.
//! - [`member`]: `member list|add|remove|promote`.
//! - [`snapshot`]: `snapshot save|restore`, over keel's backup format (`keel_store::backup`).
//! - [`kubeconfig`]: client certificates from the cluster CA, as kubeconfigs.
//! - [`resources`]: kinds as a user or a manifest names them, resolved through the API's
//!   discovery.
//! - [`objects`]: `get`, `delete`, `logs` — kubectl's verbs over kube-rs, with the server's
//!   own tables.
//! - [`manifest`]: the files `apply -f` reads, parsed and checked before anything is sent.
//! - [`apply`]: `apply -f`, kubectl's client-side apply (the last-applied annotation), with
//!   the three-way merge patch of [`merge_patch`].
//! - [`describe`]: `describe`, kubectl's generic describer for every kind, and the object's
//!   events.
//! - [`table`]: `kubectl get`-style tables.
//! - [`tokens`]: `token create` and `join-token`, bearer tokens kept as Secrets.
//!
//! Each module answers data and renders it separately, so `main` only chooses and prints,
//! and the tests read what a command would show without a terminal. `apply` and `describe`,
//! which go object by object, write each object's lines as it is done to the writers `main`
//! gives them (standard output and standard error).

pub mod apply;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod describe;
pub mod kubeconfig;
pub mod manifest;
pub mod member;
pub mod merge_patch;
pub mod objects;
pub mod resources;
pub mod snapshot;
pub mod table;
pub mod tokens;
