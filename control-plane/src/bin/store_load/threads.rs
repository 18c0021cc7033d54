//! The generator's load threads: one per CPU, each with a single-threaded runtime and
//! connections of its own (as `wrk` does), so that a request, its connection's task and its
//! answer stay on one thread. On tokio's work-stealing runtime they were woken across threads,
//! each wake an inter-processor interrupt the vCPUs it shares with the members pay for (at one
//! client, ~125 µs of the generator's CPU a put).
//!
//! Every thread prepares first (connects, opens its streams) and the threads meet the caller
//! at a barrier, so the clock starts when all are ready, and a thread that failed to prepare
//! still reaches the barrier the others wait at.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;

use anyhow::Context;
use tokio::runtime::Runtime;

/// How a workload's items (clients, watchers) and its connections to each endpoint are shared
/// out among the threads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Share {
    pub(crate) threads: usize,
    items: usize,
    connections: usize,
}

impl Share {
    /// `items` over at most `connections` to each endpoint (never more than one per item). A
    /// connection lives on one thread's runtime, so there are no more threads than
    /// connections: `--connections 1` (as the API server holds to its store) stays one.
    pub(crate) fn new(items: usize, connections: usize) -> Self {
        let connections = connections.min(items).max(1);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(connections);
        Self {
            threads,
            items,
            connections,
        }
    }

    /// Thread `thread`'s items: every `threads`-th from its own index.
    pub(crate) fn items(&self, thread: usize) -> Vec<usize> {
        (thread..self.items).step_by(self.threads).collect()
    }

    /// Thread `thread`'s connections to each endpoint: the first threads take one more.
    pub(crate) fn connections(&self, thread: usize) -> usize {
        self.connections / self.threads + usize::from(thread < self.connections % self.threads)
    }
}

/// The threads of one run; each ends with what its `run` returned.
pub(crate) struct LoadThreads<T> {
    handles: Vec<JoinHandle<anyhow::Result<T>>>,
    ready: Arc<Barrier>,
    failed: Arc<AtomicBool>,
}

impl<T: Send + 'static> LoadThreads<T> {
    /// Starts `share.threads` threads named `name-N`: each builds its runtime, runs `prepare`
    /// on it, waits at the barrier for the others and for [`LoadThreads::start`], then runs
    /// `run` on what it prepared.
    pub(crate) fn spawn<P, Prepare, Run>(
        name: &str,
        share: Share,
        prepare: Prepare,
        run: Run,
    ) -> anyhow::Result<Self>
    where
        Prepare: FnOnce(usize, &Runtime) -> anyhow::Result<P> + Clone + Send + 'static,
        Run: FnOnce(usize, Runtime, P) -> anyhow::Result<T> + Clone + Send + 'static,
    {
        let ready = Arc::new(Barrier::new(share.threads + 1));
        let failed = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::with_capacity(share.threads);
        for thread in 0..share.threads {
            let (prepare, run) = (prepare.clone(), run.clone());
            let (ready, failed) = (ready.clone(), failed.clone());
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{thread}"))
                .spawn(move || -> anyhow::Result<T> {
                    // A panic too must reach the barrier: the others wait for this thread.
                    let prepared = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        let runtime = single_thread_runtime()?;
                        let prepared = prepare(thread, &runtime)?;
                        Ok((runtime, prepared))
                    }))
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a load thread panicked")));
                    failed.fetch_or(prepared.is_err(), Ordering::SeqCst);
                    ready.wait();
                    let (runtime, prepared) = prepared?;
                    run(thread, runtime, prepared)
                })
                .context("starting a load thread")?;
            handles.push(handle);
        }
        Ok(Self {
            handles,
            ready,
            failed,
        })
    }

    /// Waits until every thread has prepared and lets them all run: false when one failed to
    /// (its error comes out of [`LoadThreads::join`]).
    pub(crate) fn start(&self) -> bool {
        self.ready.wait();
        !self.failed.load(Ordering::SeqCst)
    }

    /// Each thread's outcome, in thread order; the first failure ends it.
    pub(crate) fn join(self) -> anyhow::Result<Vec<T>> {
        let mut outcomes = Vec::with_capacity(self.handles.len());
        for handle in self.handles {
            outcomes.push(
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("a load thread panicked"))??,
            );
        }
        Ok(outcomes)
    }
}

pub(crate) fn single_thread_runtime() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a load thread's runtime")
}
