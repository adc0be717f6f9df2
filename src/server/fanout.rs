//! The fan-out pacer: writes broadcast events to every watcher, many events
//! to a write.
//!
//! On loopback a small write costs a few microseconds to send and as much
//! to receive, while bytes are nearly free, so what limits fan-out is the
//! number of writes. Each watcher is written at most once per flush
//! interval ([`EventLog::flush_interval`], which grows with the number of
//! watchers so the whole server stays near [`super::log::FLUSH_BUDGET`]
//! writes per second). Watchers sit in buckets by a random phase and the
//! pacer visits the buckets in turn, so writes spread evenly over the
//! interval instead of arriving as one burst, and an event waits at most one
//! interval. After a quiet spell the first events go out at once.
//!
//! The pacer writes with non-blocking writes ([`Outbox::flush`]); no task is
//! woken per watcher. A watcher whose socket is full is left to its own
//! writer task until it drains.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::log::EventLog;
use super::outbox::{Flush, Outbox};

/// Buckets a flush interval is divided into.
const BUCKETS: usize = 16;

/// See the module docs.
#[derive(Debug)]
pub struct Fanout {
    log: Arc<EventLog>,
    shards: Vec<Shard>,
    next_shard: AtomicUsize,
}

#[derive(Debug)]
struct Shard {
    buckets: Vec<Mutex<Vec<Arc<Outbox>>>>,
}

impl Fanout {
    /// A fan-out over `shards` pacers (one per core keeps both busy).
    pub fn new(log: Arc<EventLog>, shards: usize) -> Self {
        Self {
            log,
            shards: (0..shards.max(1))
                .map(|_| Shard {
                    buckets: (0..BUCKETS).map(|_| Mutex::new(Vec::new())).collect(),
                })
                .collect(),
            next_shard: AtomicUsize::new(0),
        }
    }

    /// Number of pacers to run.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Starts broadcasting to a watcher (it has just subscribed). It is
    /// dropped from its bucket once it stops watching.
    pub fn add(&self, outbox: Arc<Outbox>) {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let bucket = rand::random_range(0..BUCKETS);
        self.shards[shard].buckets[bucket]
            .lock()
            .expect("bucket lock poisoned")
            .push(outbox);
    }

    /// Writes due events to the watchers of one bucket; true if any was due.
    fn sweep(&self, shard: usize, bucket: usize) -> bool {
        let visible = self.log.visible();
        let mut watchers = self.shards[shard].buckets[bucket]
            .lock()
            .expect("bucket lock poisoned");
        watchers.retain(|o| o.is_watching());
        let mut wrote = false;
        for outbox in watchers.iter() {
            if !outbox.has_due(visible) {
                continue;
            }
            wrote = true;
            if outbox.flush(&self.log) != Flush::Idle {
                // A backlog, a full socket or the end: the connection's
                // own writer carries on.
                outbox.wake();
            }
        }
        wrote
    }

    /// Runs pacer `shard` until `shutdown`.
    ///
    /// The interval is cut into [`BUCKETS`] slots on a fixed grid, one per
    /// bucket. The pacer wakes when events are published or when the next
    /// slot begins while a bucket has events it has not been sent, and
    /// sweeps every bucket whose slot has begun since its last visit. A
    /// bucket is thus written at most about once per interval, and at the
    /// start of its slot, so an event waits at most one interval. After a
    /// quiet interval the first event goes to every bucket at once.
    pub async fn run(self: Arc<Self>, shard: usize, shutdown: CancellationToken) {
        let mut published = self.log.subscribe();
        let epoch = tokio::time::Instant::now();
        // Log index each bucket had been sent up to at its last sweep.
        let mut seen = [self.log.visible(); BUCKETS];
        // Slots that began up to here have been swept. Kept as a time, not
        // a slot number, because the slot length changes with the number
        // of watchers.
        let mut swept_to = epoch;
        let mut last_full = epoch;
        loop {
            let visible = self.log.visible();
            let behind = seen.iter().any(|&s| s < visible);
            let slot = slot_length(self.log.flush_interval());
            let next = epoch + slot * (slot_index(epoch, swept_to, slot) + 1);
            tokio::select! {
                r = published.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(next), if behind => {}
                _ = shutdown.cancelled() => return,
            }
            published.borrow_and_update();
            let now = tokio::time::Instant::now();
            let visible = self.log.visible();
            let interval = self.log.flush_interval();
            if !behind && now.duration_since(last_full) >= interval {
                for (bucket, seen) in seen.iter_mut().enumerate() {
                    self.sweep(shard, bucket);
                    *seen = visible;
                }
                last_full = now;
            } else {
                let slot = slot_length(interval);
                let to = slot_index(epoch, now, slot);
                let from = (slot_index(epoch, swept_to, slot) + 1)
                    .max(to.saturating_sub(BUCKETS as u32 - 1));
                for k in from..=to {
                    let bucket = k as usize % BUCKETS;
                    if seen[bucket] < visible {
                        self.sweep(shard, bucket);
                        seen[bucket] = visible;
                    }
                }
            }
            swept_to = now;
        }
    }
}

/// One bucket's share of the flush interval.
fn slot_length(interval: Duration) -> Duration {
    (interval / BUCKETS as u32).max(Duration::from_micros(50))
}

/// Number of the slot that `at` falls in.
fn slot_index(epoch: tokio::time::Instant, at: tokio::time::Instant, slot: Duration) -> u32 {
    (at.duration_since(epoch).as_nanos() / slot.as_nanos()) as u32
}
