//! The Watch service's gRPC glue, written out instead of generated so that its responses can
//! be [`WatchReply`]s, whose events may be encoded once for many streams (`watch_wire`).
//!
//! It is what tonic generates for a bidirectional streaming method: the route, the decoding
//! limit, `Unimplemented` for any other path.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

use super::watch::WatchResponses;
use super::watch_wire::{WatchCodec, WatchReply};
use super::Api;
use crate::pb::etcdserverpb as pb;

const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";

/// etcd's Watch service, as tonic's generated server would route it.
#[derive(Clone)]
pub struct WatchService {
    api: Api,
    max_decoding_message_size: usize,
}

impl WatchService {
    pub fn new(api: Api, max_decoding_message_size: usize) -> Self {
        Self {
            api,
            max_decoding_message_size,
        }
    }
}

impl NamedService for WatchService {
    const NAME: &'static str = "etcdserverpb.Watch";
}

struct WatchMethod(Api);

impl StreamingService<pb::WatchRequest> for WatchMethod {
    type Response = WatchReply;
    type ResponseStream = WatchResponses;
    type Future = BoxFuture<Response<WatchResponses>, Status>;

    fn call(&mut self, request: Request<Streaming<pb::WatchRequest>>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move { Ok(api.watch(request)) })
    }
}

impl<B> tower_service::Service<http::Request<B>> for WatchService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != WATCH_PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let method = WatchMethod(self.api.clone());
        let limit = self.max_decoding_message_size;
        Box::pin(async move {
            let mut grpc = Grpc::new(WatchCodec).apply_max_message_size_config(Some(limit), None);
            Ok(grpc.streaming(method, request).await)
        })
    }
}
