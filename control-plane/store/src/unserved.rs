//! Calls for parts of etcd's v3 API keel does not serve get an answer that says so.
//!
//! tonic answers an unknown path `Unimplemented` with an empty message, which `etcdctl user
//! list` prints as `Error: rpc error: code = Unimplemented desc = `. A user who meets it
//! should learn what is missing and why: keel's store has no users, roles or authentication
//! (etcd's Auth service), since its one client is the API server, which keeps all
//! authentication and authorization itself; nor etcd's server-side Lock and Election services
//! (etcdctl's `lock` and `elect` build on KV, Lease and Watch and work).

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

/// What a call to an unserved method is told.
pub fn refusal(path: &str) -> tonic::Status {
    let method = path.trim_start_matches('/');
    let service = method.split('/').next().unwrap_or_default();
    let why = match service {
        "etcdserverpb.Auth" => {
            "keel's store has no users, roles or authentication: its client is the API server, \
             which authenticates and authorizes every request itself"
        }
        _ => {
            "keel serves etcd's KV, Watch, Lease, Cluster and Maintenance services \
             (etcdctl's lock and elect work through them)"
        }
    };
    // The method name is the client's own bytes: bounded, and only printable ASCII kept.
    let shown: String = method
        .chars()
        .take(120)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    tonic::Status::unimplemented(format!("etcdserver: {shown} is not served: {why}"))
}

/// See [`Unserved`].
#[derive(Clone, Copy, Debug, Default)]
pub struct UnservedLayer;

impl<S> Layer<S> for UnservedLayer {
    type Service = Unserved<S>;

    fn layer(&self, inner: S) -> Unserved<S> {
        Unserved { inner }
    }
}

/// Answers calls to methods keel does not serve with [`refusal`]; passes the rest on.
#[derive(Clone, Debug)]
pub struct Unserved<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Unserved<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = futures::future::Either<
        std::future::Ready<Result<http::Response<ResBody>, S::Error>>,
        S::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        if crate::grpc_metrics::serves(path) {
            futures::future::Either::Right(self.inner.call(request))
        } else {
            futures::future::Either::Left(std::future::ready(Ok(refusal(path).into_http())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_calls_are_told_there_is_no_authentication() {
        let status = refusal("/etcdserverpb.Auth/UserList");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(
            status
                .message()
                .starts_with("etcdserver: etcdserverpb.Auth/UserList is not served")
                && status
                    .message()
                    .contains("no users, roles or authentication"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn other_unknown_paths_are_named_and_bounded() {
        let status = refusal("/v3lockpb.Lock/Lock");
        assert!(status
            .message()
            .contains("v3lockpb.Lock/Lock is not served"));
        assert!(status
            .message()
            .contains("KV, Watch, Lease, Cluster and Maintenance"));
        let hostile = format!("/{}\u{1b}[2J\n/x", "A".repeat(10_000));
        let status = refusal(&hostile);
        assert!(status.message().len() < 400, "{}", status.message().len());
        assert!(!status.message().contains('\u{1b}') && !status.message().contains('\n'));
    }

    #[test]
    fn served_methods_are_known_by_their_paths() {
        assert!(crate::grpc_metrics::serves("/etcdserverpb.KV/Range"));
        assert!(crate::grpc_metrics::serves("/etcdserverpb.Watch/Watch"));
        assert!(!crate::grpc_metrics::serves("/etcdserverpb.KV/Rang"));
        assert!(!crate::grpc_metrics::serves("etcdserverpb.KV/Range/"));
        assert!(!crate::grpc_metrics::serves("/etcdserverpb.Auth/UserList"));
        assert!(!crate::grpc_metrics::serves(""));
    }
}
