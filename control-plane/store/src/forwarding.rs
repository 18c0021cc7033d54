//! A follower's client writes, forwarded to the leader over one long gRPC stream per leader:
//! whatever proposals are waiting when the stream is free leave in one message, and the
//! leader's answers come back many to a message as their commands apply.
//!
//! A unary call per forwarded write cost an HTTP/2 stream each (headers encoded and decoded,
//! a task on either side): in a 3-member cluster two writes in three take that path, and with
//! 16 to 256 clients spread over the members it held the cluster to about 60% of the writes
//! per second it made when every client spoke to the leader. etcd's followers likewise put
//! forwarded proposals on their raft streams (`MsgProp`) rather than one request each.
//!
//! What a caller learns keeps the unary call's meaning: a proposal that never left this member
//! fails `Unavailable` (the leader never saw it; retrying is safe), one sent on a stream that
//! then broke fails with another status (it may or may not have committed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use futures::stream::{self, BoxStream, FuturesUnordered, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Status;

use crate::pb::peer::peer_client::PeerClient;
use crate::pb::peer::Blob;
use crate::peer_wire::{decode, decoded, encode, ForwardError, Refusal};
use crate::types::{Command, CommandResult};

/// The leader's answer to one forwarded proposal.
pub type Answer = Result<CommandResult, ForwardError>;

/// Most proposals (or answers) one message carries.
const BATCH: usize = 256;

/// Proposals queued on a follower for a stream that is busy or not yet open.
const QUEUED: usize = 4096;

/// Proposals a follower has sent on one stream and not yet seen answered. Beyond it the
/// follower takes no more from its queue (then its callers wait): a follower whose clients
/// outrun the cluster holds their writes itself rather than in the leader's memory, and the
/// leader never needs to stop reading the stream, which would also hold up the follower's
/// other calls on the same HTTP/2 connection (read indexes, lease keep-alives) behind a full
/// window.
const IN_FLIGHT: usize = QUEUED;

/// Proposals of one stream the leader has in raft at once before it stops reading the stream:
/// only a follower that ignores [`IN_FLIGHT`] ever reaches it.
const IN_RAFT: usize = 2 * IN_FLIGHT;

/// How long opening a stream to the leader may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(1);

/// One proposal on the wire, numbered by its stream.
#[derive(Serialize, Deserialize)]
pub struct Proposal {
    pub id: u64,
    pub command: Command,
}

/// One answer on the wire, for the proposal of the same number.
#[derive(Serialize, Deserialize)]
pub struct Answered {
    pub id: u64,
    pub answer: Answer,
}

type Reply = oneshot::Sender<Result<Answer, Status>>;

/// A follower's forwarding to one peer; the stream opens on the first proposal and again after
/// it breaks.
pub struct Forwarder {
    client: PeerClient<Channel>,
    queue: Mutex<Option<mpsc::Sender<(Command, Reply)>>>,
}

impl Forwarder {
    pub fn new(client: PeerClient<Channel>) -> Self {
        Self {
            client,
            queue: Mutex::new(None),
        }
    }

    /// The queue of the stream that is open, or of a new one.
    fn queue(&self) -> mpsc::Sender<(Command, Reply)> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        match &*queue {
            Some(open) if !open.is_closed() => open.clone(),
            _ => {
                let (sender, receiver) = mpsc::channel(QUEUED);
                tokio::spawn(run_stream(self.client.clone(), receiver));
                *queue = Some(sender.clone());
                sender
            }
        }
    }

    /// Forwards `command` and waits at most `timeout` for the leader's answer.
    pub async fn propose(&self, command: Command, timeout: Duration) -> Result<Answer, Status> {
        let (reply, answer) = oneshot::channel();
        let queued = tokio::time::timeout(timeout, self.queue().send((command, reply))).await;
        match queued {
            Err(_) => return Err(Status::unavailable("the forwarding queue stayed full")),
            Ok(Err(_)) => return Err(Status::unavailable("the forwarding stream closed")),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(Status::deadline_exceeded(
                "the leader did not answer in time",
            )),
            // The stream's task answers every proposal it took before it ends; a dropped reply
            // means it ended without knowing, so the proposal may have reached the leader.
            Ok(Err(_)) => Err(Status::unknown("the forwarding stream ended")),
            Ok(Ok(answer)) => answer,
        }
    }
}

/// One stream's life: open it, then send what is queued and match the answers, until either
/// side ends it. Every proposal taken is answered on the way out.
async fn run_stream(mut client: PeerClient<Channel>, mut queue: mpsc::Receiver<(Command, Reply)>) {
    let (outgoing, requests) = mpsc::channel::<Blob>(16);
    let opened = tokio::time::timeout(
        OPEN_TIMEOUT,
        client.propose_stream(ReceiverStream::new(requests)),
    )
    .await;
    let mut answers = match opened {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return refuse_queued(queue, &status),
        Err(_) => {
            return refuse_queued(
                queue,
                &Status::unavailable("opening the forwarding stream timed out"),
            )
        }
    };
    let mut waiting: HashMap<u64, Reply> = HashMap::new();
    let mut next_id = 0u64;
    let mut taken = Vec::with_capacity(BATCH);
    // Room in the outgoing channel, reserved before proposals are taken from the queue: the
    // loop must never wait to send while answers arrive. A follower stuck sending stops reading
    // answers; the leader's answers then fill the stream's window, the leader (which reads
    // proposals only as it sends answers) stops reading, and neither side moves again.
    let mut room: Option<mpsc::OwnedPermit<Blob>> = None;
    let ended = loop {
        let takes = BATCH.min(IN_FLIGHT.saturating_sub(waiting.len()));
        tokio::select! {
            reserved = outgoing.clone().reserve_owned(), if room.is_none() => match reserved {
                Ok(permit) => room = Some(permit),
                Err(_) => break Status::unknown("the forwarding stream closed while sending"),
            },
            // (`takes` is 0 at the cap, where this branch is off: `recv_many` with a limit of
            // 0 would read as a closed queue.)
            count = queue.recv_many(&mut taken, takes), if room.is_some() && takes > 0 => {
                if count == 0 {
                    // The forwarder is gone; answers still owed are dropped with it.
                    break Status::cancelled("the forwarder closed");
                }
                let mut batch = Vec::with_capacity(count);
                for (command, reply) in taken.drain(..) {
                    waiting.insert(next_id, reply);
                    batch.push(Proposal { id: next_id, command });
                    next_id += 1;
                }
                if let Some(permit) = room.take() {
                    permit.send(encode(&batch));
                }
            }
            message = answers.message() => match message {
                Ok(Some(blob)) => match decode::<Vec<Answered>>(&blob) {
                    Ok(answered) => {
                        for Answered { id, answer } in answered {
                            if let Some(reply) = waiting.remove(&id) {
                                let _ = reply.send(Ok(answer));
                            }
                        }
                    }
                    Err(status) => break status,
                },
                Ok(None) => break Status::unknown("the leader ended the forwarding stream"),
                Err(status) => break status,
            },
        }
    };
    // Sent but unanswered: the leader may have them. Taken by nobody: it never saw them.
    for (_, reply) in waiting {
        let _ = reply.send(Err(Status::new(
            if ended.code() == tonic::Code::Unavailable {
                tonic::Code::Unknown
            } else {
                ended.code()
            },
            ended.message().to_owned(),
        )));
    }
    refuse_queued(queue, &Status::unavailable(ended.message().to_owned()));
}

/// Answers every proposal still queued (never sent) with `Unavailable`, closing the queue so
/// no more arrive.
fn refuse_queued(mut queue: mpsc::Receiver<(Command, Reply)>, why: &Status) {
    queue.close();
    while let Ok((_, reply)) = queue.try_recv() {
        let _ = reply.send(Err(Status::unavailable(why.message().to_owned())));
    }
}

/// The leader's side of one stream: each proposal is proposed as the leader's own, and the
/// answers go back as they come, as many to a message as are ready. A message that does not
/// decode ends the stream with a refusal, sent once every proposal before it is answered.
///
/// One stream does it all, polled by the task that sends the answers: it reads what arrived,
/// starts those proposals, and yields the answers that are ready. A task per proposal and a
/// reader task of its own cost two more wake-ups on every forwarded write, on the member that
/// is busiest; here a proposal's answer wakes the sender directly.
pub fn serve<S, P, Fut>(incoming: S, propose: P) -> BoxStream<'static, Result<Blob, Status>>
where
    S: Stream<Item = Result<Blob, Status>> + Send + Unpin + 'static,
    P: Fn(Command) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    let refusal = Refusal::default();
    let mut messages = Some(decoded::<Vec<Proposal>, _>(incoming, refusal.clone()));
    let mut pending = FuturesUnordered::new();
    let answers = stream::poll_fn(move |cx| {
        // Start whatever arrived. A transport error ends the reading; the follower fails what
        // it sent, and what was started is still answered if the stream lives. At the cap the
        // stream is not read; an answer leaving wakes this again.
        while pending.len() < IN_RAFT {
            let Some(reading) = messages.as_mut() else {
                break;
            };
            match reading.poll_next_unpin(cx) {
                Poll::Ready(Some(batch)) => {
                    for Proposal { id, command } in batch {
                        let answer = propose(command);
                        pending.push(async move {
                            Answered {
                                id,
                                answer: answer.await,
                            }
                        });
                    }
                }
                Poll::Ready(None) => messages = None,
                Poll::Pending => break,
            }
        }
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            match pending.poll_next_unpin(cx) {
                Poll::Ready(Some(answered)) => batch.push(answered),
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if !batch.is_empty() {
            return Poll::Ready(Some(Ok(encode(&batch))));
        }
        if messages.is_none() && pending.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Pending
    });
    refusal.after(answers.boxed())
}

#[cfg(test)]
#[path = "forwarding_tests.rs"]
mod tests;
