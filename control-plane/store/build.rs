//! Generates the etcd-compatible gRPC code from keel's own protos with Debian's `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // A stored value is shared (`bytes::Bytes`) from the keyspace to every watcher's
        // response: the encoder reads it in place instead of each response copying it.
        .bytes(".mvccpb.KeyValue.value")
        .compile_protos(&["proto/rpc.proto", "proto/raft.proto"], &["proto"])?;
    Ok(())
}
