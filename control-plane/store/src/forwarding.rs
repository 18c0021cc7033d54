//! A follower's client writes, forwarded to the leader over one long link per leader
//! ([`crate::peer_link`]'s forwarding lane): whatever proposals are waiting when the link is
//! free leave in one frame, and the leader's answers come back many to a frame as their
//! commands apply.
//!
//! A unary call per forwarded write cost an HTTP/2 stream each (headers encoded and decoded,
//! a task on either side): in a 3-member cluster two writes in three take that path, and with
//! 16 to 256 clients spread over the members it held the cluster to about 60% of the writes
//! per second it made when every client spoke to the leader. etcd's followers likewise put
//! forwarded proposals on their raft streams (`MsgProp`) rather than one request each. A gRPC
//! stream still cost every forwarded write two task hand-offs more on each member than a link.
//!
//! What a caller learns keeps the unary call's meaning: a proposal that never left this member
//! fails `Unavailable` (the leader never saw it; retrying is safe), one sent on a link that
//! then broke fails with another status (it may or may not have committed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use futures::stream::{self, FuturesUnordered, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::peer_frames;
use crate::peer_link::{self, Lane, Refusal, WRITE_BATCH};
use crate::peer_wire::ForwardError;
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

/// How long opening a link to the leader may take.
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

/// What the leader sends the follower.
#[derive(Serialize, Deserialize)]
enum FromLeader {
    Answered(Vec<Answered>),
    /// The leader stopped reading: the last frame did not decode or was too large. Its last
    /// frame, after the answers owed for the proposals before it.
    Refused(String),
}

type Reply = oneshot::Sender<Result<Answer, Status>>;

/// A follower's forwarding to one peer; the link opens on the first proposal and again after
/// it breaks.
pub struct Forwarder {
    /// The peer port's `host:port`.
    addr: String,
    queue: Mutex<Option<mpsc::Sender<(Command, Reply)>>>,
}

impl Forwarder {
    pub fn new(addr: String) -> Self {
        Self {
            addr,
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
                tokio::spawn(run_stream(self.addr.clone(), receiver));
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

/// One link's life: open it, then send what is queued and match the answers, until either
/// side ends it. Every proposal taken is answered on the way out.
async fn run_stream(addr: String, mut queue: mpsc::Receiver<(Command, Reply)>) {
    let opened = tokio::time::timeout(OPEN_TIMEOUT, peer_link::open(&addr, Lane::Forwarding)).await;
    let socket = match opened {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => return refuse_queued(queue, &Status::unavailable(e.to_string())),
        Err(_) => {
            return refuse_queued(
                queue,
                &Status::unavailable("opening the forwarding link timed out"),
            )
        }
    };
    let (read, write) = socket.into_split();
    let mut answers = peer_link::frames::<FromLeader>(read);
    let mut waiting: HashMap<u64, Reply> = HashMap::new();
    let mut next_id = 0u64;
    let mut taken = Vec::with_capacity(BATCH);
    // Frames not yet taken by the socket. They are written from this loop, without waiting
    // on the socket: the loop must never wait to send while answers arrive. A follower stuck
    // sending stops reading answers; the leader's answers then fill the socket's buffers, the
    // leader (which reads proposals only as it sends answers) stops reading, and neither side
    // moves again. (A writer task would do as well, at one more hand-off per write.)
    let mut unsent: Vec<u8> = Vec::new();
    let ended = loop {
        let takes = BATCH.min(IN_FLIGHT.saturating_sub(waiting.len()));
        tokio::select! {
            writable = write.writable(), if !unsent.is_empty() => {
                if let Err(e) = writable.and_then(|()| write_some(&write, &mut unsent)) {
                    break Status::unknown(format!("the forwarding link broke while sending: {e}"));
                }
            }
            // (`takes` is 0 at the cap, where this branch is off: `recv_many` with a limit of
            // 0 would read as a closed queue.)
            count = queue.recv_many(&mut taken, takes), if unsent.len() < WRITE_BATCH && takes > 0 => {
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
                peer_frames::put(&mut unsent, &batch);
                if let Err(e) = write_some(&write, &mut unsent) {
                    break Status::unknown(format!("the forwarding link broke while sending: {e}"));
                }
            }
            message = answers.next() => match message {
                Some(Ok(FromLeader::Answered(answered))) => {
                    for Answered { id, answer } in answered {
                        if let Some(reply) = waiting.remove(&id) {
                            let _ = reply.send(Ok(answer));
                        }
                    }
                }
                Some(Ok(FromLeader::Refused(why))) => {
                    break Status::invalid_argument(format!("the leader refused the forwarding link: {why}"))
                }
                Some(Err(e)) if e.is_refusal() => break Status::invalid_argument(e.to_string()),
                Some(Err(e)) => break Status::unavailable(e.to_string()),
                None => break Status::unknown("the leader ended the forwarding link"),
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

/// Writes as much of `unsent` as the socket takes now, without waiting, and drops it from
/// the front.
fn write_some(socket: &OwnedWriteHalf, unsent: &mut Vec<u8>) -> std::io::Result<()> {
    while !unsent.is_empty() {
        match socket.try_write(unsent) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                unsent.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The leader's end of a forwarding link [`peer_link::classify`] found: echoes the preamble,
/// proposes what arrives ([`answer`]) and writes the answers back as they come. A frame that
/// does not decode, or is too large, ends the link with a refusal frame naming why,
/// sent once every proposal before it is answered.
pub async fn serve_link<P, Fut>(mut socket: TcpStream, propose: P)
where
    P: Fn(Command) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    if !peer_link::accept(&mut socket, Lane::Forwarding).await {
        return;
    }
    let (read, write) = socket.into_split();
    let refusal = Refusal::default();
    let proposals = peer_link::requests::<Vec<Proposal>>(read, Lane::Forwarding, refusal.clone());
    let answers = answer(proposals, propose).map(FromLeader::Answered);
    peer_link::answer(answers, || refusal.take().map(FromLeader::Refused), write).await;
}

/// The leader's side of one link: each proposal is proposed as the leader's own, and the
/// answers go out as they come, as many to a batch as are ready.
///
/// One stream does it all, polled by the task that sends the answers: it reads what arrived,
/// starts those proposals, and yields the answers that are ready. A task per proposal and a
/// reader task of its own cost two more wake-ups on every forwarded write, on the member that
/// is busiest; here a proposal's answer wakes the sender directly.
pub fn answer<S, P, Fut>(incoming: S, propose: P) -> impl Stream<Item = Vec<Answered>>
where
    S: Stream<Item = Vec<Proposal>> + Unpin,
    P: Fn(Command) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let mut messages = Some(incoming);
    let mut pending = FuturesUnordered::new();
    stream::poll_fn(move |cx| {
        // Start whatever arrived. The end of the reading (the follower closed, the link broke
        // or was refused) leaves what was started to be answered. At the cap the link is not
        // read; an answer leaving wakes this again.
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
            return Poll::Ready(Some(batch));
        }
        if messages.is_none() && pending.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
}

#[cfg(test)]
#[path = "forwarding_tests.rs"]
mod tests;
