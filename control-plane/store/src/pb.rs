//! Code generated at build time from `proto/`: etcd's v3 API (keel's wire-compatible subset)
//! and keel's member-to-member protocol.

#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod peer {
    tonic::include_proto!("keel.raft");
}
