//! What keel's node crates share about the host: stable hashing, IPv4 prefixes, network
//! interfaces by name, the cgroup2 mount and keel's cgroup, and backoff. The service proxy and
//! the pod runtime both depend on this crate and never on each other.

pub mod backoff;
pub mod cgroup;
pub mod cidr;
pub mod hash;
pub mod link;
