//! keel's control plane: a raft-replicated object store with resourceVersion and watch, an HTTP
//! API with authentication, authorization and admission, a scheduler and controllers.
//!
//! Nothing lives here yet: the node daemon runs standalone from manifest files until the
//! control-plane issue lands. The crate exists so the workspace has its final shape.
