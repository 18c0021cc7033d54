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
//! - [`resources`]: kinds as a user names them, resolved through the API's discovery.
//! - [`objects`]: `get`, `delete`, `logs` — kubectl's verbs over kube-rs, with the server's
//!   own tables.
//! - [`table`]: `kubectl get`-style tables.
//!
//! Each module answers data and renders it separately, so `main` only chooses and prints,
//! and the tests read what a command would show without a terminal.

pub mod cli;
pub mod client;
pub mod cluster;
pub mod kubeconfig;
pub mod member;
pub mod objects;
pub mod resources;
pub mod snapshot;
pub mod table;
