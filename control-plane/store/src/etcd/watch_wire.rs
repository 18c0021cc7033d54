//! The Watch stream's responses on the wire: a reply is either a whole message or a header and
//! watch id with a shared [`Selection`] of events, whose encoding the first stream makes and
//! every other stream copies.
//!
//! When an event fans out to a thousand watchers, a thousand responses carry the same events (a
//! key, a 256-byte value, revisions), differing only in their header and watch id. Protobuf
//! fields may come in any order and a message's encoding is the concatenation of its fields',
//! so the header and id encoded as a `WatchResponse` followed by the events' field (number 11)
//! is the message a client decodes; as prost writes fields in number order, it is even the same
//! bytes prost would write for the whole message (tested).

use std::sync::Arc;

use bytes::BufMut;
use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::ProstDecoder;

use super::convert;
use crate::pb::etcdserverpb as pb;
use crate::watch_hub::Selection;

/// One response on a Watch stream.
#[derive(Debug)]
pub enum WatchReply {
    /// Created, cancelled, progress, or a replay batch: encoded as it is.
    Message(pb::WatchResponse),
    /// One revision's live events for one watch, shared with every alike watch.
    Events {
        header: pb::ResponseHeader,
        watch_id: i64,
        selection: Arc<Selection>,
    },
}

/// `events` as the `events` field of a `WatchResponse`, ready to follow its other fields.
pub fn encoded_events(selection: &Selection) -> &[u8] {
    selection.encoded(|events| {
        let events = events.iter().cloned().map(convert::event).collect();
        pb::WatchResponse {
            events,
            ..Default::default()
        }
        .encode_to_vec()
        .into()
    })
}

#[derive(Default)]
pub struct WatchEncoder;

impl Encoder for WatchEncoder {
    type Item = WatchReply;
    type Error = Status;

    fn encode(&mut self, item: WatchReply, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let encoded = match item {
            WatchReply::Message(message) => message.encode(dst),
            WatchReply::Events {
                header,
                watch_id,
                selection,
            } => {
                let head = pb::WatchResponse {
                    header: Some(header),
                    watch_id,
                    ..Default::default()
                };
                head.encode(&mut *dst)
                    .map(|()| dst.put_slice(encoded_events(&selection)))
            }
        };
        // Only a buffer too small fails, and tonic's grows.
        encoded.map_err(|e| Status::internal(e.to_string()))
    }
}

#[derive(Default)]
pub struct WatchCodec;

impl Codec for WatchCodec {
    type Encode = WatchReply;
    type Decode = pb::WatchRequest;
    type Encoder = WatchEncoder;
    type Decoder = ProstDecoder<pb::WatchRequest>;

    fn encoder(&mut self) -> WatchEncoder {
        WatchEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Event, EventKind, KeyValue};

    fn event(key: &str, revision: i64, value: &[u8]) -> Event {
        let kv = KeyValue {
            key: key.as_bytes().to_vec(),
            value: bytes::Bytes::copy_from_slice(value),
            create_revision: 2,
            mod_revision: revision,
            version: 3,
            lease: 0,
        };
        Event {
            kind: EventKind::Put,
            prev: Some(KeyValue {
                mod_revision: 2,
                ..kv.clone()
            }),
            kv,
        }
    }

    /// The messages `replies` make through tonic's server encoding with [`WatchEncoder`].
    async fn encoded(replies: Vec<WatchReply>) -> Vec<Vec<u8>> {
        use http_body_util::BodyExt;
        use tonic::codec::{EncodeBody, SingleMessageCompressionOverride};
        let source = futures::stream::iter(replies.into_iter().map(Ok));
        let body = EncodeBody::new_server(
            WatchEncoder,
            source,
            None,
            SingleMessageCompressionOverride::default(),
            None,
        );
        let bytes = body.collect().await.expect("encoded").to_bytes();
        // gRPC's framing: a compression flag, a big-endian length, the message.
        let mut messages = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            assert_eq!(rest[0], 0, "not compressed");
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            messages.push(rest[5..5 + len].to_vec());
            rest = &rest[5 + len..];
        }
        messages
    }

    #[tokio::test]
    async fn a_shared_response_is_the_bytes_prost_writes_for_the_whole_message() {
        let header = pb::ResponseHeader {
            cluster_id: 7,
            member_id: 9,
            revision: 41,
            raft_term: 3,
        };
        let events = vec![event("/a", 41, &[0xff; 300]), event("/b", 41, b"")];
        let selection = Arc::new(Selection::new(events.clone()));
        let ids = [0, 1, 1 << 40];
        let mut replies: Vec<WatchReply> = ids
            .iter()
            .map(|&watch_id| WatchReply::Events {
                header,
                watch_id,
                selection: selection.clone(),
            })
            .collect();
        let created = pb::WatchResponse {
            header: Some(header),
            watch_id: 5,
            created: true,
            ..Default::default()
        };
        replies.push(WatchReply::Message(created.clone()));
        let messages = encoded(replies).await;
        assert_eq!(messages.len(), ids.len() + 1);
        for (watch_id, message) in ids.iter().zip(&messages) {
            let whole = pb::WatchResponse {
                header: Some(header),
                watch_id: *watch_id,
                events: events.iter().cloned().map(convert::event).collect(),
                ..Default::default()
            };
            assert_eq!(*message, whole.encode_to_vec(), "watch id {watch_id}");
            assert_eq!(
                pb::WatchResponse::decode(&message[..]).expect("decodes"),
                whole
            );
        }
        assert_eq!(messages[ids.len()], created.encode_to_vec());
    }

    #[test]
    fn a_selection_is_encoded_once() {
        let selection = Selection::new(vec![event("/a", 5, b"v")]);
        let first = encoded_events(&selection).as_ptr();
        assert_eq!(encoded_events(&selection).as_ptr(), first);
    }
}
