//! A rate-limited work queue of keys, as client-go's `workqueue.TypedRateLimitingInterface`.
//!
//! The guarantees controllers are written against:
//! - a key waiting in the queue is there once, however often it is added (dedup);
//! - a key being processed is handed to no other worker; added again meanwhile, it is handed
//!   out once more after [`WorkQueue::done`], so no change is lost and no key is reconciled
//!   twice at once;
//! - [`WorkQueue::add_rate_limited`] delays a key by client-go's default controller rate
//!   limiter: per key 5 ms doubling on every failure up to 1000 s (reset by
//!   [`WorkQueue::forget`]), and overall a token bucket of 10 retries a second in bursts of 100.
//!
//! Metrics carry client-go's names and `name` label (`workqueue_depth`,
//! `workqueue_adds_total`, `workqueue_retries_total`, `workqueue_queue_duration_seconds`,
//! `workqueue_work_duration_seconds`), so dashboards written for kube-controller-manager read
//! keel unchanged.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The first delay of a failing key (client-go's `DefaultTypedControllerRateLimiter`).
pub const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest delay of a failing key.
pub const MAX_DELAY: Duration = Duration::from_secs(1000);
/// Retries a second allowed by the overall bucket, across keys.
const BUCKET_QPS: f64 = 10.0;
/// Retries the overall bucket lets through at once.
const BUCKET_BURST: f64 = 100.0;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The queue's name (`replicaset`, …).
    pub name: String,
}

fn duration_buckets() -> Histogram {
    // client-go's buckets for both durations: 10 ns to 1000 s.
    Histogram::new(exponential_buckets(10e-9, 10.0, 12))
}

type Histograms = Family<QueueLabels, Histogram, fn() -> Histogram>;

/// The `workqueue_*` metrics of every queue, one series per queue `name`.
pub struct WorkQueueMetrics {
    depth: Family<QueueLabels, Gauge>,
    adds: Family<QueueLabels, Counter>,
    retries: Family<QueueLabels, Counter>,
    queue_duration: Histograms,
    work_duration: Histograms,
}

impl Default for WorkQueueMetrics {
    fn default() -> WorkQueueMetrics {
        WorkQueueMetrics {
            depth: Family::default(),
            adds: Family::default(),
            retries: Family::default(),
            queue_duration: Family::new_with_constructor(duration_buckets),
            work_duration: Family::new_with_constructor(duration_buckets),
        }
    }
}

impl WorkQueueMetrics {
    /// Registers every metric under the `workqueue_` prefix (counters get `_total`).
    pub fn register(&self, registry: &mut Registry) {
        let workqueue = registry.sub_registry_with_prefix("workqueue");
        workqueue.register("depth", "Current depth of workqueue", self.depth.clone());
        workqueue.register(
            "adds",
            "Total number of adds handled by workqueue",
            self.adds.clone(),
        );
        workqueue.register(
            "retries",
            "Total number of retries handled by workqueue",
            self.retries.clone(),
        );
        workqueue.register(
            "queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            self.queue_duration.clone(),
        );
        workqueue.register(
            "work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            self.work_duration.clone(),
        );
    }

    fn for_queue(&self, name: &str) -> QueueMetrics {
        let labels = QueueLabels {
            name: name.to_string(),
        };
        QueueMetrics {
            depth: self.depth.get_or_create_owned(&labels),
            adds: self.adds.get_or_create_owned(&labels),
            retries: self.retries.get_or_create_owned(&labels),
            queue_duration: self.queue_duration.get_or_create_owned(&labels),
            work_duration: self.work_duration.get_or_create_owned(&labels),
        }
    }
}

/// One queue's series (clones share their values with the family's).
struct QueueMetrics {
    depth: Gauge,
    adds: Counter,
    retries: Counter,
    queue_duration: Histogram,
    work_duration: Histogram,
}

/// golang.org/x/time/rate's limiter as client-go's bucket uses it: tokens refill at
/// [`BUCKET_QPS`] up to [`BUCKET_BURST`]; each retry takes one, and a debt is waited out.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * BUCKET_QPS).min(BUCKET_BURST);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / BUCKET_QPS)
        }
    }
}

/// The per-key delay after `failures` earlier failures: 5 ms × 2^failures, at most 1000 s.
pub fn backoff(failures: u32) -> Duration {
    // Capping the exponent keeps the product in range; 2^100 × 5 ms is far past the maximum.
    let nanos = BASE_DELAY.as_nanos() << failures.min(100);
    if nanos >= MAX_DELAY.as_nanos() {
        return MAX_DELAY;
    }
    u64::try_from(nanos).map_or(MAX_DELAY, Duration::from_nanos)
}

struct State {
    /// Keys ready to be handed out, in order.
    queue: VecDeque<String>,
    /// Keys that need processing: those queued, and those re-added while being processed.
    dirty: HashSet<String>,
    /// Keys handed out and not yet `done`.
    processing: HashSet<String>,
    /// Keys waiting out a delay: the earliest time each is due.
    waiting: HashMap<String, Instant>,
    /// The same, by due time; an entry that no longer matches `waiting` is stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    /// Failures since the last `forget`, per key.
    failures: HashMap<String, u32>,
    bucket: Bucket,
    shutting_down: bool,
    /// When each dirty key was first added (for `workqueue_queue_duration_seconds`).
    added_at: HashMap<String, Instant>,
    /// When each key was handed out (for `workqueue_work_duration_seconds`).
    started_at: HashMap<String, Instant>,
}

/// A rate-limited queue of keys for a controller's workers.
pub struct WorkQueue {
    state: Mutex<State>,
    /// Wakes the workers waiting in [`WorkQueue::get`]: a key became ready, a delay got
    /// shorter, or the queue shuts down.
    wakeup: Notify,
    metrics: QueueMetrics,
}

impl WorkQueue {
    /// A queue whose metrics are not registered anywhere.
    pub fn new(name: &str) -> WorkQueue {
        WorkQueue::with_metrics(name, &WorkQueueMetrics::default())
    }

    /// A queue for a controller's workers, reporting into `metrics` under `name` when the
    /// controller was given metrics.
    pub fn shared(name: &str, metrics: Option<&WorkQueueMetrics>) -> Arc<WorkQueue> {
        Arc::new(match metrics {
            Some(metrics) => WorkQueue::with_metrics(name, metrics),
            None => WorkQueue::new(name),
        })
    }

    /// A queue reporting into `metrics` under `name`.
    pub fn with_metrics(name: &str, metrics: &WorkQueueMetrics) -> WorkQueue {
        WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                waiting: HashMap::new(),
                timers: BinaryHeap::new(),
                failures: HashMap::new(),
                bucket: Bucket {
                    tokens: BUCKET_BURST,
                    last: Instant::now(),
                },
                shutting_down: false,
                added_at: HashMap::new(),
                started_at: HashMap::new(),
            }),
            wakeup: Notify::new(),
            metrics: metrics.for_queue(name),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a panic elsewhere while the
        // lock was held does not make it unusable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `key` as needing processing. Returns whether it was queued (and a worker should
    /// be woken). Called with the lock held.
    fn add_locked(&self, state: &mut State, key: &str, now: Instant) -> bool {
        if state.shutting_down || state.dirty.contains(key) {
            return false;
        }
        self.metrics.adds.inc();
        self.metrics.depth.inc();
        state.added_at.entry(key.to_string()).or_insert(now);
        state.dirty.insert(key.to_string());
        if state.processing.contains(key) {
            // Handed out again by `done`.
            return false;
        }
        state.queue.push_back(key.to_string());
        true
    }

    /// Queues `key` unless it is queued already.
    pub fn add(&self, key: &str) {
        let queued = {
            let mut state = self.lock();
            self.add_locked(&mut state, key, Instant::now())
        };
        if queued {
            self.wakeup.notify_waiters();
        }
    }

    /// Queues `key` after `delay`; a key already waiting keeps the earlier of the two times.
    pub fn add_after(&self, key: &str, delay: Duration) {
        {
            let mut state = self.lock();
            if state.shutting_down {
                return;
            }
            self.metrics.retries.inc();
            let now = Instant::now();
            if delay.is_zero() {
                self.add_locked(&mut state, key, now);
            } else {
                // A delay past the clock's range never comes due.
                let Some(due) = now.checked_add(delay) else {
                    return;
                };
                if state.waiting.get(key).is_none_or(|at| due < *at) {
                    state.waiting.insert(key.to_string(), due);
                    state.timers.push(Reverse((due, key.to_string())));
                }
            }
        }
        // Also when only a timer was set: a worker asleep until a later time must re-arm.
        self.wakeup.notify_waiters();
    }

    /// Queues `key` after its backoff: the longer of its per-key delay and the overall
    /// bucket's.
    pub fn add_rate_limited(&self, key: &str) {
        let delay = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.to_string()).or_insert(0);
            let per_key = backoff(*failures);
            *failures = failures.saturating_add(1);
            let overall = state.bucket.reserve(Instant::now());
            per_key.max(overall)
        };
        self.add_after(key, delay);
    }

    /// Forgets the failures of `key`: its next `add_rate_limited` waits the base delay.
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// How many times `key` failed since it was last forgotten.
    pub fn num_requeues(&self, key: &str) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Keys ready to be handed out.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the keys whose delay ran out into the queue. Called with the lock held.
    fn promote_due(&self, state: &mut State, now: Instant) {
        while let Some(Reverse((at, _))) = state.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, key))) = state.timers.pop() else {
                break;
            };
            if state.waiting.get(&key) == Some(&at) {
                state.waiting.remove(&key);
                self.add_locked(state, &key, now);
            }
        }
    }

    /// Waits for a key to process; `None` once the queue is shut down. The caller must call
    /// [`WorkQueue::done`] with the key when it is finished with it.
    pub async fn get(&self) -> Option<String> {
        loop {
            // Registered before the state is read, so a wakeup between the read and the wait
            // is not lost.
            let mut notified = std::pin::pin!(self.wakeup.notified());
            notified.as_mut().enable();
            let next_due = {
                let mut state = self.lock();
                if state.shutting_down {
                    return None;
                }
                let now = Instant::now();
                self.promote_due(&mut state, now);
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    self.metrics.depth.dec();
                    if let Some(added) = state.added_at.remove(&key) {
                        let waited = now.saturating_duration_since(added);
                        self.metrics.queue_duration.observe(waited.as_secs_f64());
                    }
                    state.started_at.insert(key.clone(), now);
                    return Some(key);
                }
                state.timers.peek().map(|Reverse((at, _))| *at)
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks `key` as processed; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &str) {
        let queued = {
            let mut state = self.lock();
            if let Some(started) = state.started_at.remove(key) {
                let worked = Instant::now().saturating_duration_since(started);
                self.metrics.work_duration.observe(worked.as_secs_f64());
            }
            state.processing.remove(key);
            let again = state.dirty.contains(key) && !state.shutting_down;
            if again {
                state.queue.push_back(key.to_string());
            }
            again
        };
        if queued {
            self.wakeup.notify_waiters();
        }
    }

    /// Hands each key to `reconcile` until the queue shuts down, as a client-go worker does: a
    /// success forgets the key's failures, a failure is logged (`what` says what was being
    /// done) and the key comes back after its backoff.
    pub async fn work<F, Fut, E>(&self, what: &str, mut reconcile: F)
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        while let Some(key) = self.get().await {
            match reconcile(key.clone()).await {
                Ok(()) => self.forget(&key),
                Err(error) => {
                    tracing::warn!(%key, %error, "{what}");
                    self.add_rate_limited(&key);
                }
            }
            self.done(&key);
        }
    }

    /// Stops the queue: every `get`, waiting or to come, returns `None`, and adds are ignored.
    pub fn shut_down(&self) {
        self.lock().shutting_down = true;
        self.wakeup.notify_waiters();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }
}

/// A running controller: its queues and the tasks that feed and drain them. Dropping it stops
/// the controller: the queues shut down (workers leave their loops) and every task is
/// aborted. A reconcile in flight is abandoned; the next start finds the work again.
pub struct ControllerHandle {
    queues: Vec<Arc<WorkQueue>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ControllerHandle {
    pub fn new(queues: Vec<Arc<WorkQueue>>, tasks: Vec<tokio::task::JoinHandle<()>>) -> Self {
        Self { queues, tasks }
    }

    /// Stops the controller (the same as dropping the handle).
    pub fn stop(self) {}
}

impl Drop for ControllerHandle {
    fn drop(&mut self) {
        for queue in &self.queues {
            queue.shut_down();
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// `get`, failing the test if nothing is ready within a (paused, auto-advancing) second.
    async fn next(queue: &WorkQueue) -> String {
        match tokio::time::timeout(Duration::from_secs(1), queue.get()).await {
            Ok(Some(key)) => key,
            other => panic!("expected a key, got {other:?}"),
        }
    }

    /// Whether `get` hands out anything within `within`.
    async fn nothing_within(queue: &WorkQueue, within: Duration) -> bool {
        tokio::time::timeout(within, queue.get()).await.is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_keys_are_deduplicated() {
        let queue = WorkQueue::new("test");
        queue.add("a");
        queue.add("b");
        queue.add("a");
        assert_eq!(queue.len(), 2);
        assert_eq!(next(&queue).await, "a");
        assert_eq!(next(&queue).await, "b");
        assert!(nothing_within(&queue, Duration::from_secs(10)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_in_process_is_not_handed_out_twice() {
        let queue = WorkQueue::new("test");
        queue.add("a");
        assert_eq!(next(&queue).await, "a");
        // Re-added while processing: held back until `done`, then processed again.
        queue.add("a");
        queue.add("a");
        assert!(nothing_within(&queue, Duration::from_secs(1)).await);
        queue.done("a");
        assert_eq!(next(&queue).await, "a");
        queue.done("a");
        assert!(nothing_within(&queue, Duration::from_secs(1)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_until_forgotten() {
        let queue = WorkQueue::new("test");
        for (failure, delay_ms) in [(0, 5), (1, 10), (2, 20), (3, 40)] {
            let start = Instant::now();
            queue.add_rate_limited("a");
            assert_eq!(queue.num_requeues("a"), failure + 1);
            assert_eq!(next(&queue).await, "a");
            assert_eq!(start.elapsed(), Duration::from_millis(delay_ms));
            queue.done("a");
        }
        queue.forget("a");
        assert_eq!(queue.num_requeues("a"), 0);
        let start = Instant::now();
        queue.add_rate_limited("a");
        assert_eq!(next(&queue).await, "a");
        assert_eq!(start.elapsed(), BASE_DELAY);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        assert_eq!(backoff(0), Duration::from_millis(5));
        assert_eq!(backoff(1), Duration::from_millis(10));
        assert_eq!(backoff(10), Duration::from_millis(5 * 1024));
        // 5 ms × 2^18 = 1310.72 s: capped.
        assert_eq!(backoff(18), MAX_DELAY);
        assert_eq!(backoff(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn the_bucket_allows_bursts_of_100_then_10_a_second() {
        let now = Instant::now();
        let mut bucket = Bucket {
            tokens: BUCKET_BURST,
            last: now,
        };
        for _ in 0..100 {
            assert_eq!(bucket.reserve(now), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(now), Duration::from_millis(100));
        assert_eq!(bucket.reserve(now), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_keeps_the_earliest_time() {
        let queue = WorkQueue::new("test");
        let start = Instant::now();
        queue.add_after("a", Duration::from_secs(10));
        queue.add_after("a", Duration::from_secs(2));
        queue.add_after("a", Duration::from_secs(5));
        let key = tokio::time::timeout(Duration::from_secs(3), queue.get()).await;
        assert_eq!(key, Ok(Some("a".to_string())));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        queue.done("a");
        // The stale timers do not bring it back.
        assert!(nothing_within(&queue, Duration::from_secs(20)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_key_added_directly_is_processed_at_once() {
        let queue = WorkQueue::new("test");
        queue.add_after("a", Duration::from_secs(60));
        queue.add("a");
        let start = Instant::now();
        assert_eq!(next(&queue).await, "a");
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_is_woken_by_an_add() {
        let queue = Arc::new(WorkQueue::new("test"));
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.get().await }
        });
        tokio::task::yield_now().await;
        queue.add("a");
        assert_eq!(worker.await.ok().flatten().as_deref(), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_releases_waiting_workers() {
        let queue = Arc::new(WorkQueue::new("test"));
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.get().await }
        });
        tokio::task::yield_now().await;
        queue.shut_down();
        assert_eq!(worker.await.ok().flatten(), None);
        queue.add("a");
        assert_eq!(queue.get().await, None);
        assert!(queue.is_shutting_down());
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_use_client_go_names() {
        let metrics = WorkQueueMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let queue = WorkQueue::with_metrics("replicaset", &metrics);
        queue.add("a");
        queue.add("b");
        assert_eq!(next(&queue).await, "a");
        tokio::time::advance(Duration::from_millis(3)).await;
        queue.done("a");
        queue.add_rate_limited("a");

        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            panic!("encoding the metrics: {error}");
        }
        for line in [
            "workqueue_depth{name=\"replicaset\"} 1",
            "workqueue_adds_total{name=\"replicaset\"} 2",
            "workqueue_retries_total{name=\"replicaset\"} 1",
            "workqueue_queue_duration_seconds_count{name=\"replicaset\"} 1",
            "workqueue_work_duration_seconds_count{name=\"replicaset\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
