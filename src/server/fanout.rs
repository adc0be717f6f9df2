//! The fan-out pacers: they write broadcast events to every watcher, many
//! events to a write.
//!
//! On loopback a small write costs a few microseconds to send and as much
//! to receive, while bytes are nearly free, so what limits fan-out is the
//! number of writes. Each watcher is therefore written at most once per
//! *flush interval*. Watchers sit in buckets by a random phase and a pacer
//! sweeps the buckets in turn on a fixed time grid, so writes spread evenly
//! over the interval instead of arriving as one burst, and an event waits at
//! most one interval. After a quiet interval the first events go out at
//! once.
//!
//! The interval adapts: the pacers measure how long their sweeps take, and
//! a controller stretches the interval while fan-out takes more than
//! [`FANOUT_SHARE`] of the cores, and shrinks it again when it takes much
//! less. What a write costs depends on the machine, the number of sockets
//! and the batch size; the share is what stays fixed, so fan-out never
//! crowds out reading commands (or, on one box, the clients).
//!
//! Pacers write with non-blocking writes ([`Outbox::flush`]); no task is
//! woken per watcher. A watcher whose socket is full is left to its own
//! writer task until it drains. The server runs each pacer on a thread of
//! its own (`server::on_own_thread`), not on the connections' workers, so
//! a sweep through a crowd's sockets never makes a command wait for it.
//!
//! Producers are held back when fan-out falls too far behind
//! ([`Fanout::wait_for_room`]): a client placing pixels at full speed slows
//! down to what the watchers can be sent, rather than running the others
//! out of the broadcast window.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::broadcast::BroadcastRing;
use super::outbox::{Census, Flush, Outbox, stall_clock};

/// Buckets a flush interval is divided into.
const BUCKETS: usize = 16;
/// The share of every core that fan-out aims to stay under (measured as
/// the pacers' thread CPU time).
pub const FANOUT_SHARE: f64 = 0.4;
/// Shortest interval, and the most writes per second it may cost, whatever
/// the controller says: with few watchers the interval is this short. A
/// 2-core box moves about 200,000 small TCP segments per second in all; on
/// it, with the load generator beside the server, more writes than that
/// only add queueing (measured with pixchat-bench, see BENCHMARKS.md).
const INTERVAL_MIN: Duration = Duration::from_micros(500);
const WRITES_MAX: u64 = 200_000;
/// Longest interval.
const INTERVAL_MAX: Duration = Duration::from_secs(1);
/// Sweeps whose wall time exceeds their CPU time by this factor were mostly
/// waiting for a core.
const CONTENDED: f64 = 1.5;
/// How far contention may stretch the interval, and never beyond this.
const GIVE_WAY_MAX: f64 = 2.0;
const GIVE_WAY_LIMIT: Duration = Duration::from_millis(20);
/// How often the controller looks at the pacers' busy time.
const CONTROL_EVERY: Duration = Duration::from_millis(50);

/// See the module docs.
#[derive(Debug)]
pub struct Fanout {
    ring: Arc<BroadcastRing>,
    shards: Vec<Shard>,
    next_shard: AtomicUsize,
    /// The flush interval in nanoseconds.
    interval_ns: AtomicU64,
    /// The controller's base interval in seconds (f64 bits), and the
    /// factor contention stretches it by.
    base: AtomicU64,
    give_way: AtomicU64,
    /// Time the pacers spent sweeping, in nanoseconds, since the start.
    busy_ns: AtomicU64,
    wall_ns: AtomicU64,
    /// Notified after every sweep, for producers waiting for room.
    progress: Notify,
    /// Sweeps done since the start, by all pacers.
    sweeps: AtomicU64,
}

#[derive(Debug)]
struct Shard {
    buckets: Vec<Mutex<Vec<Arc<Outbox>>>>,
    /// Watchers added since the pacer last looked. The hub adds joiners
    /// under its lock, and a pacer holds a bucket's lock across the socket
    /// writes of a sweep: handing new watchers over here keeps the hub from
    /// ever waiting for those writes.
    incoming: Mutex<Vec<Arc<Outbox>>>,
    /// The lowest ring index a watcher of this shard that holds producers
    /// back has been sent up to (see [`Census`]).
    frontier: AtomicU64,
}

impl Fanout {
    /// A fan-out over `shards` pacers (one per core keeps both busy).
    pub fn new(ring: Arc<BroadcastRing>, shards: usize) -> Self {
        let start = ring.visible();
        Self {
            ring,
            shards: (0..shards.max(1))
                .map(|_| Shard {
                    buckets: (0..BUCKETS).map(|_| Mutex::new(Vec::new())).collect(),
                    incoming: Mutex::new(Vec::new()),
                    frontier: AtomicU64::new(start),
                })
                .collect(),
            next_shard: AtomicUsize::new(0),
            interval_ns: AtomicU64::new(INTERVAL_MIN.as_nanos() as u64),
            base: AtomicU64::new(INTERVAL_MIN.as_secs_f64().to_bits()),
            give_way: AtomicU64::new(1.0f64.to_bits()),
            busy_ns: AtomicU64::new(0),
            wall_ns: AtomicU64::new(0),
            progress: Notify::new(),
            sweeps: AtomicU64::new(0),
        }
    }

    /// Sweeps done since the start, by all pacers.
    #[cfg(test)]
    pub fn sweeps(&self) -> u64 {
        self.sweeps.load(Ordering::Relaxed)
    }

    /// Number of pacers to run.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The current flush interval.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns.load(Ordering::Relaxed))
    }

    /// Starts broadcasting to a watcher (it has just subscribed). It is
    /// dropped from its bucket once it stops watching.
    pub fn add(&self, outbox: Arc<Outbox>) {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.shards[shard]
            .incoming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(outbox);
    }

    /// Puts the watchers added since the last look into random buckets.
    fn take_incoming(&self, shard: usize) {
        let incoming = std::mem::take(
            &mut *self.shards[shard]
                .incoming
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for outbox in incoming {
            self.bucket(shard, rand::random_range(0..BUCKETS))
                .push(outbox);
        }
    }

    /// A bucket's watchers. A pacer that panicked in the middle of a sweep
    /// leaves the list whole (a sweep only reads it and drops closed
    /// watchers), so the pacer that replaces it carries on with it rather
    /// than freezing the shard on a poisoned lock.
    fn bucket(&self, shard: usize, bucket: usize) -> std::sync::MutexGuard<'_, Vec<Arc<Outbox>>> {
        self.shards[shard].buckets[bucket]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lowest ring index a watcher that holds producers back has been
    /// sent up to.
    fn frontier(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.frontier.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Waits while the ring is more than its hold lag
    /// ([`BroadcastRing::hold_lag`]) ahead of the slowest watcher. A watcher
    /// that stays that far behind for [`super::outbox::STALL_GRACE_MS`] no
    /// longer counts: it is not reading. Producers call it before placing a
    /// pixel or chatting.
    pub async fn wait_for_room(&self) {
        loop {
            let progressed = self.progress.notified();
            tokio::pin!(progressed);
            // Registered before the check, so a sweep in between is not missed.
            progressed.as_mut().enable();
            if self.has_room() {
                return;
            }
            progressed.await;
        }
    }

    /// Whether the ring is at most its hold lag ahead of the slowest
    /// watcher: a producer need not wait.
    pub fn has_room(&self) -> bool {
        self.ring.end().saturating_sub(self.frontier()) <= self.ring.hold_lag()
    }

    /// Writes due events to the watchers of one bucket, drops those that
    /// left, and returns the lowest ring index a watcher in it that holds
    /// producers back has been sent up to (the end of the published ring
    /// if none).
    ///
    /// Counted here, from what the watchers were sent rather than from the
    /// sweep itself: a watcher with a backlog is written by its own task,
    /// and a producer faster than the sockets would otherwise run everyone
    /// out of the broadcast window.
    fn sweep(&self, shard: usize, bucket: usize, now_ms: u32) -> u64 {
        let visible = self.ring.visible();
        let hold_lag = self.ring.hold_lag();
        let mut low = visible;
        self.bucket(shard, bucket).retain(|outbox| {
            match outbox.census(visible, hold_lag, now_ms) {
                Census::Gone => false,
                Census::Watching { due, holds } => {
                    let mut sent_all = false;
                    if due {
                        match outbox.flush(&self.ring) {
                            Flush::Idle => sent_all = true,
                            // A backlog, a full socket or the end: the
                            // connection's own writer carries on.
                            _ => outbox.wake(),
                        }
                    }
                    if let Some(cursor) = holds.filter(|_| !sent_all) {
                        low = low.min(cursor);
                    }
                    true
                }
            }
        });
        low
    }

    /// Sweeps buckets, timing the work and recording progress: `seen` is
    /// the ring index each bucket was last swept at, `low` what it holds
    /// producers back at (see [`Fanout::sweep`]).
    ///
    /// A catch-up over every bucket of a large crowd runs without a break:
    /// the pacer has its thread to itself, and the connections' threads
    /// run beside it.
    fn sweep_buckets(
        &self,
        shard: usize,
        buckets: impl Iterator<Item = usize>,
        seen: &mut [u64; BUCKETS],
        low: &mut [u64; BUCKETS],
    ) {
        self.take_incoming(shard);
        let visible = self.ring.visible();
        let now_ms = stall_clock();
        for bucket in buckets {
            if seen[bucket] < visible || self.holds_back(low[bucket], visible) {
                let started = thread_cpu();
                let wall = std::time::Instant::now();
                low[bucket] = self.sweep(shard, bucket, now_ms);
                seen[bucket] = visible;
                self.busy_ns
                    .fetch_add(thread_cpu().saturating_sub(started), Ordering::Relaxed);
                self.wall_ns
                    .fetch_add(wall.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
        }
        let frontier = low.iter().copied().min().unwrap_or(visible);
        self.shards[shard]
            .frontier
            .store(frontier, Ordering::Release);
        self.sweeps.fetch_add(1, Ordering::Relaxed);
        self.progress.notify_waiters();
    }

    /// Whether a bucket whose watchers were sent up to `low` holds producers
    /// back with the ring published to `visible`.
    fn holds_back(&self, low: u64, visible: u64) -> bool {
        visible.saturating_sub(low) > self.ring.hold_lag()
    }

    /// Adjusts the interval so fan-out stays near its share of the cores,
    /// and gives way when the machine is contended: when sweeps spend much
    /// of their time preempted (wall time well above CPU time), writing
    /// more often would only queue, so fewer, bigger writes are better.
    ///
    /// The two are kept apart: the share sets a base interval, and
    /// contention multiplies it by at most [`GIVE_WAY_MAX`] (and not past
    /// [`GIVE_WAY_LIMIT`]), so a busy machine costs some latency but never
    /// all of it.
    fn control(&self, busy_ns: u64, wall_ns: u64, over: Duration) {
        let cores = self.shards.len() as f64;
        // No more than the cores can give: what exceeds it is a sweep that
        // began before this window.
        let used = (busy_ns as f64 / over.as_nanos().max(1) as f64).min(cores);
        let target = FANOUT_SHARE * cores;
        let base = f64::from_bits(self.base.load(Ordering::Relaxed));
        let base = if used > target {
            // Proportional: the work per interval is about fixed (one write
            // per watcher), so stretching by used/target brings it back.
            base * (used / target).min(2.0)
        } else if used < 0.6 * target {
            base * 0.9
        } else {
            base
        };
        let floor = INTERVAL_MIN
            .max(Duration::from_secs(self.ring.watchers() as u64) / WRITES_MAX as u32)
            .as_secs_f64();
        let base = base.clamp(floor, INTERVAL_MAX.as_secs_f64());
        let contended = used > 0.3 * target && wall_ns as f64 > CONTENDED * busy_ns as f64;
        let give_way = f64::from_bits(self.give_way.load(Ordering::Relaxed));
        let give_way = if contended {
            (give_way * 1.1).min(GIVE_WAY_MAX)
        } else {
            (give_way * 0.95).max(1.0)
        };
        self.base.store(base.to_bits(), Ordering::Relaxed);
        self.give_way.store(give_way.to_bits(), Ordering::Relaxed);
        let before = self.interval().as_secs_f64();
        tracing::trace!(
            used,
            busy_ns,
            over_ms = over.as_secs_f64() * 1e3,
            base,
            give_way,
            "control"
        );
        // Past a few tens of milliseconds the wait for the next write slot
        // is most of an event's latency, so contention may not stretch
        // intervals that long.
        let stretched = (base * give_way).min(GIVE_WAY_LIMIT.as_secs_f64());
        let next = Duration::from_secs_f64(base.max(stretched)).min(INTERVAL_MAX);
        if (next.as_secs_f64() - before).abs() > before * 0.2 {
            tracing::debug!(
                interval_ms = next.as_secs_f64() * 1e3,
                fanout_cores = used,
                give_way,
                "flush interval"
            );
        }
        self.interval_ns
            .store(next.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Runs pacer `shard` until `shutdown`.
    ///
    /// The interval is cut into [`BUCKETS`] slots on a fixed grid, one per
    /// bucket. The pacer wakes when events are published while every bucket
    /// is up to date, or when the next slot begins while one is not, and
    /// sweeps every bucket whose slot has begun since its last visit. A
    /// bucket is thus written at most about once per interval, and at the
    /// start of its slot, so an event waits at most one interval. After a
    /// quiet interval the first event goes to every bucket at once. Pacer 0
    /// also runs the interval controller.
    pub async fn run(self: Arc<Self>, shard: usize, shutdown: CancellationToken) {
        let mut published = self.ring.subscribe();
        let epoch = Instant::now();
        // Ring index each bucket had been sent up to at its last sweep. A
        // pacer restarted after a failure does not know, so it sweeps all.
        let mut seen = [0; BUCKETS];
        // What each bucket holds producers back at: until its first sweep,
        // everything (a restarted pacer does not know).
        let mut low = [0; BUCKETS];
        // Slots that began up to here have been swept. Kept as a time, not
        // a slot number, because the slot length changes with the interval.
        let mut swept_to = epoch;
        let mut last_full = epoch;
        let mut controlled = (epoch, 0u64, 0u64);
        loop {
            let visible = self.ring.visible();
            // A bucket whose watchers hold producers back is swept again in
            // its slot even without new events: their own tasks are
            // writing, and producers wait to hear how far they got.
            let behind = seen.iter().any(|&s| s < visible)
                || low.iter().any(|&l| self.holds_back(l, visible));
            let slot = slot_length(self.interval());
            let next = slot_start(epoch, slot, slot_index(epoch, swept_to, slot) + 1);
            // While behind, the next slot's timer is set and sweeps what
            // was published meanwhile: waking for each publication (one per
            // placement, or per fsync) would find no new slot begun and
            // cost a thread wake-up each.
            tokio::select! {
                r = published.changed(), if !behind => if r.is_err() { return },
                _ = tokio::time::sleep_until(next), if behind => {}
                _ = shutdown.cancelled() => return,
            }
            published.borrow_and_update();
            let now = Instant::now();
            let interval = self.interval();
            if !behind && now.duration_since(last_full) >= interval {
                self.sweep_buckets(shard, 0..BUCKETS, &mut seen, &mut low);
                last_full = now;
            } else {
                let slot = slot_length(interval);
                let to = slot_index(epoch, now, slot);
                let from = (slot_index(epoch, swept_to, slot) + 1)
                    .max(to.saturating_sub(BUCKETS as u64 - 1));
                self.sweep_buckets(
                    shard,
                    (from..=to).map(|k| k as usize % BUCKETS),
                    &mut seen,
                    &mut low,
                );
            }
            swept_to = now;
            // A sweep adds its CPU time when it ends, so a window shorter
            // than an interval would see the pacers' work in lumps (none,
            // then a whole interval's at once) and, reacting to each lump,
            // stretch the interval far past what the average needs.
            if shard == 0 && now.duration_since(controlled.0) >= CONTROL_EVERY.max(interval) {
                let busy = self.busy_ns.load(Ordering::Relaxed);
                let wall = self.wall_ns.load(Ordering::Relaxed);
                self.control(
                    busy - controlled.1,
                    wall - controlled.2,
                    now.duration_since(controlled.0),
                );
                controlled = (now, busy, wall);
            }
        }
    }
}

/// CPU time this thread has used, in nanoseconds. Sweeps are timed in CPU
/// time rather than wall time: on a busy machine a sweep is preempted, and
/// wall time would count the other processes' work as fan-out's.
fn thread_cpu() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

/// One bucket's share of the flush interval.
fn slot_length(interval: Duration) -> Duration {
    (interval / BUCKETS as u32).max(Duration::from_micros(30))
}

/// Number of the slot that `at` falls in. In `u64`: at the shortest slot a
/// `u32` would wrap after about 37 hours, and the pacers would then spin.
fn slot_index(epoch: Instant, at: Instant, slot: Duration) -> u64 {
    (at.duration_since(epoch).as_nanos() / slot.as_nanos()) as u64
}

/// When slot `index` begins.
fn slot_start(epoch: Instant, slot: Duration, index: u64) -> Instant {
    let nanos = (slot.as_nanos() as u64).saturating_mul(index);
    epoch + Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Event;
    use crate::server::broadcast::BroadcastLimits;

    fn fanout(shards: usize) -> (Arc<BroadcastRing>, Arc<Fanout>) {
        let ring = Arc::new(BroadcastRing::new(BroadcastLimits::default()));
        let fanout = Arc::new(Fanout::new(ring.clone(), shards));
        (ring, fanout)
    }

    const WINDOW: Duration = Duration::from_millis(50);

    /// Feeds the controller `cores` of pacer CPU over one window.
    fn busy(f: &Fanout, cores: f64, contended: bool) {
        let busy = (cores * WINDOW.as_nanos() as f64) as u64;
        let wall = if contended { 3 * busy } else { busy };
        f.control(busy, wall, WINDOW);
    }

    #[test]
    fn the_interval_stretches_under_load_and_comes_back() {
        let (_, f) = fanout(2);
        assert_eq!(f.interval(), INTERVAL_MIN);
        // Twice the share: the interval doubles each window, up to the cap.
        busy(&f, 2.0 * FANOUT_SHARE * 2.0, false);
        assert_eq!(f.interval(), 2 * INTERVAL_MIN);
        for _ in 0..20 {
            busy(&f, 2.0 * FANOUT_SHARE * 2.0, false);
        }
        assert_eq!(f.interval(), INTERVAL_MAX);
        // Within the share: it stays.
        busy(&f, 0.8 * FANOUT_SHARE * 2.0, false);
        assert_eq!(f.interval(), INTERVAL_MAX);
        // Idle: it shrinks back to the floor.
        for _ in 0..200 {
            busy(&f, 0.0, false);
        }
        assert_eq!(f.interval(), INTERVAL_MIN);
    }

    #[test]
    fn the_floor_follows_the_watchers() {
        let (ring, f) = fanout(2);
        ring.set_watchers(10_000);
        busy(&f, 0.0, false);
        // 10,000 watchers at most 200,000 writes/s: one write each per 50 ms.
        assert_eq!(f.interval(), Duration::from_millis(50));
    }

    #[test]
    fn contention_stretches_at_most_twice_and_never_past_its_limit() {
        let (_, f) = fanout(2);
        for _ in 0..50 {
            busy(&f, 0.7 * FANOUT_SHARE * 2.0, true);
        }
        assert_eq!(f.interval(), 2 * INTERVAL_MIN);
        let (ring, f) = fanout(2);
        ring.set_watchers(3_000); // a 15 ms floor
        for _ in 0..50 {
            busy(&f, 0.7 * FANOUT_SHARE * 2.0, true);
        }
        assert_eq!(f.interval(), GIVE_WAY_LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_uptime_does_not_make_the_pacers_spin() {
        let (ring, f) = fanout(1);
        let stop = CancellationToken::new();
        let pacer = tokio::spawn(f.clone().run(0, stop.clone()));
        // 40 hours at the shortest interval: the slot number passes
        // u32::MAX after about 37.
        for _ in 0..40 {
            tokio::time::advance(Duration::from_secs(3600)).await;
        }
        // Two events in one slot, then a while in which no slot begins
        // (the clock is paused and only moves when told). The first goes
        // out at once; the second waits for the next slot: a pacer on time
        // sleeps until then instead of sweeping again and again.
        for n in 0..2 {
            let end = ring.append(&Event::Joined {
                name: Arc::from(format!("u{n}")),
            });
            ring.publish(end);
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        let before = f.sweeps();
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
        let swept = f.sweeps() - before;
        assert!(
            swept <= 1,
            "{swept} sweeps within one slot: the pacer spins"
        );
        // And once the next slot begins, the second event goes out. (Timers
        // fire on millisecond ticks; the pacer's and this one share one.)
        tokio::time::sleep(Duration::from_millis(2)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(f.sweeps() > before, "the pacer never swept again");
        stop.cancel();
        pacer.await.unwrap();
    }

    #[test]
    fn slots_are_counted_far_past_u32() {
        let epoch = Instant::now();
        let slot = slot_length(INTERVAL_MIN);
        let at = epoch + Duration::from_secs(400 * 24 * 3600);
        let k = slot_index(epoch, at, slot);
        assert!(k > u64::from(u32::MAX));
        assert!(slot_start(epoch, slot, k + 1) > at);
        assert!(slot_start(epoch, slot, k) <= at);
    }
}
