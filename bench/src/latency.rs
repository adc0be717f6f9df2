//! Send times and latency histograms: one monotonic clock in one process, so
//! a placement's latency is "received at a watcher" minus "sent by a writer"
//! with no clock skew to correct.
//!
//! Each writer numbers its placements k = 0, 1, 2, ... and stores the send
//! time of placement k in a preallocated slot `k % slots`. The placement
//! itself carries k (pixchat: as x, y and colour; Redis: in the payload), so
//! a watcher that receives it looks the slot up without any map or lock. A
//! slot also keeps the high part of k (the *generation*), so a watcher that
//! is so far behind that the slot was reused sees a mismatch instead of a
//! wrong latency.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Bits of a slot that hold the send time (nanoseconds since the epoch): 2^44
/// ns is almost 5 hours, far longer than any run may last.
const TIME_BITS: u32 = 44;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// Bits of the generation kept in a slot.
const GEN_BITS: u32 = 64 - TIME_BITS;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;

/// Highest latency the histograms track, in microseconds (10 minutes); a
/// larger one is recorded as this.
pub const MAX_TRACKED_US: u64 = 600_000_000;
/// Histograms shared by the watchers: a watcher locks its shard once per
/// socket read, and with as many shards as this the lock is rarely contended
/// while memory stays small even with 20,000 watchers (a histogram with three
/// significant digits over this range is about 170 KiB).
pub const SHARDS: usize = 64;

/// The run's common time origin.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(Instant);

impl Epoch {
    /// Starts the clock now.
    pub fn now() -> Self {
        Self(Instant::now())
    }

    /// Nanoseconds from the epoch to `t` (0 if `t` is earlier).
    pub fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.0).as_nanos() as u64
    }

    /// Nanoseconds from the epoch to now.
    pub fn now_nanos(&self) -> u64 {
        self.nanos(Instant::now())
    }

    /// The instant `nanos` after the epoch.
    pub fn at(&self, nanos: u64) -> Instant {
        self.0 + Duration::from_nanos(nanos)
    }
}

/// What a slot lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The send time of the placement, in nanoseconds since the epoch.
    Sent(u64),
    /// The slot was never written or holds another generation.
    Unmatched,
}

/// One writer's send times, indexed by placement number modulo `slots`.
#[derive(Debug)]
pub struct SendTable {
    slots: Box<[AtomicU64]>,
}

impl SendTable {
    /// A table of `slots` empty slots.
    pub fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Number of slots.
    pub fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Never true: a table has at least one slot.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records that placement `k` was sent at `nanos`.
    pub fn store(&self, k: u64, nanos: u64) {
        let n = self.len();
        let generation = (k / n) & GEN_MASK;
        // +1 keeps a stored value non-zero, so an empty slot is never a match.
        let value = (generation << TIME_BITS) | ((nanos + 1) & TIME_MASK);
        // Release pairs with the watcher's Acquire: the socket write that
        // follows is what makes the watcher look, and the kernel orders it.
        self.slots[(k % n) as usize].store(value, Ordering::Release);
    }

    /// The send time of the placement in slot `index` whose generation
    /// agrees with `generation` on the bits selected by `gen_mask`.
    pub fn lookup(&self, index: u64, generation: u64, gen_mask: u64) -> Lookup {
        let Some(slot) = self.slots.get(index as usize) else {
            return Lookup::Unmatched;
        };
        let value = slot.load(Ordering::Acquire);
        if value == 0 || ((value >> TIME_BITS) ^ generation) & gen_mask & GEN_MASK != 0 {
            return Lookup::Unmatched;
        }
        Lookup::Sent((value & TIME_MASK) - 1)
    }

    /// The slot and generation of placement `k`.
    pub fn position(&self, k: u64) -> (u64, u64) {
        (k % self.len(), k / self.len())
    }
}

/// A latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("valid histogram bounds")
}

/// Records one latency, clamped into the tracked range.
pub fn record(h: &mut Histogram<u64>, sent_nanos: u64, received_nanos: u64) {
    let us = (received_nanos.saturating_sub(sent_nanos) / 1_000).clamp(1, MAX_TRACKED_US);
    h.saturating_record(us);
}

/// A histogram that records runs of latencies in one bucket at once. A
/// watcher thread records tens of millions of latencies per second, mostly
/// a read's worth of events received at the same instant and sent close
/// together; counting those as one `record_n` gives the same histogram
/// (same buckets, same min and max) at a fraction of the cost.
#[derive(Debug)]
pub struct Tally {
    hist: Histogram<u64>,
    /// The bucket being counted: its lowest equal value (in microseconds),
    /// the latencies in nanoseconds that fall into it, and how many did.
    run: Option<Run>,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    lowest_us: u64,
    nanos: (u64, u64),
    n: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            hist: new_histogram(),
            run: None,
        }
    }
}

impl Tally {
    /// Records one latency, clamped into the tracked range, as [`record`].
    ///
    /// A latency in the bucket being counted is compared in nanoseconds:
    /// no division on the path nearly every event takes.
    #[inline]
    pub fn record(&mut self, sent_nanos: u64, received_nanos: u64) {
        let nanos = received_nanos.saturating_sub(sent_nanos);
        match &mut self.run {
            Some(run) if (run.nanos.0..=run.nanos.1).contains(&nanos) => run.n += 1,
            _ => self.start_run(nanos),
        }
    }

    #[inline(never)]
    fn start_run(&mut self, nanos: u64) {
        self.flush();
        let us = (nanos / 1_000).clamp(1, MAX_TRACKED_US);
        let (lo, hi) = (
            self.hist.lowest_equivalent(us),
            self.hist.highest_equivalent(us),
        );
        // The nanoseconds whose clamped microseconds fall in [lo, hi].
        let from = if lo <= 1 { 0 } else { lo * 1_000 };
        let to = if hi >= MAX_TRACKED_US {
            u64::MAX
        } else {
            hi * 1_000 + 999
        };
        self.run = Some(Run {
            lowest_us: lo,
            nanos: (from, to),
            n: 1,
        });
    }

    fn flush(&mut self) {
        if let Some(run) = self.run.take() {
            self.hist.saturating_record_n(run.lowest_us, run.n);
        }
    }

    /// Everything recorded.
    pub fn into_histogram(mut self) -> Histogram<u64> {
        self.flush();
        self.hist
    }
}

/// Latency histograms shared by all watchers of a run, in shards.
#[derive(Debug)]
pub struct Recorder {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Recorder {
    /// `shards` empty histograms (at least one).
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        }
    }

    /// The shard for watcher `id`; hold its lock only while parsing what one
    /// read brought, never across an `.await`.
    pub fn shard(&self, id: usize) -> &Mutex<Histogram<u64>> {
        &self.shards[id % self.shards.len()]
    }

    /// All shards merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for s in &self.shards {
            let h = s.lock().unwrap_or_else(|p| p.into_inner());
            all.add(&*h).expect("same bounds");
        }
        all
    }
}

/// Latency percentiles of a run, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Number of latencies recorded.
    pub samples: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Percentiles {
    /// Reads the percentiles off a histogram (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            samples: h.len(),
            p50_us: h.value_at_quantile(0.50) as f64,
            p99_us: h.value_at_quantile(0.99) as f64,
            p999_us: h.value_at_quantile(0.999) as f64,
            max_us: h.max() as f64,
            mean_us: h.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_answers_only_its_own_generation() {
        let t = SendTable::new(8);
        t.store(3, 1_000);
        assert_eq!(t.lookup(3, 0, GEN_MASK), Lookup::Sent(1_000));
        // Placement 11 reuses slot 3 with generation 1.
        t.store(11, 2_000);
        assert_eq!(t.position(11), (3, 1));
        assert_eq!(t.lookup(3, 0, GEN_MASK), Lookup::Unmatched);
        assert_eq!(t.lookup(3, 1, GEN_MASK), Lookup::Sent(2_000));
        // Only the low bits are compared when only they travel (pixchat's
        // colour carries 4 bits of the generation).
        assert_eq!(t.lookup(3, 1 + 16, 0xF), Lookup::Sent(2_000));
        assert_eq!(t.lookup(5, 0, GEN_MASK), Lookup::Unmatched, "never written");
        assert_eq!(t.lookup(99, 0, GEN_MASK), Lookup::Unmatched, "out of range");
    }

    #[test]
    fn a_send_at_time_zero_is_still_found() {
        let t = SendTable::new(4);
        t.store(0, 0);
        assert_eq!(t.lookup(0, 0, GEN_MASK), Lookup::Sent(0));
    }

    #[test]
    fn percentiles_come_from_the_merged_shards() {
        let r = Recorder::new(4);
        for i in 0..1000u64 {
            let mut h = r.shard(i as usize).lock().unwrap();
            record(&mut h, 0, (i + 1) * 1_000);
        }
        let p = Percentiles::of(&r.merged());
        assert_eq!(p.samples, 1000);
        assert!((499.0..=501.0).contains(&p.p50_us), "{p:?}");
        assert!((989.0..=991.0).contains(&p.p99_us), "{p:?}");
        assert!((999.0..=1001.0).contains(&p.max_us), "{p:?}");
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }

    #[test]
    fn a_tally_gives_the_histogram_that_single_records_give() {
        let mut one = new_histogram();
        let mut tally = Tally::default();
        let mut x = 12_345u64;
        for i in 0..100_000u64 {
            // Runs of near values, jumps, and values out of range.
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let sent = if i % 1000 == 0 {
                0
            } else {
                1_000_000_000 - (x >> 40) % 300_000_000
            };
            let now = 1_000_000_000 + i % 7;
            record(&mut one, sent, now);
            tally.record(sent, now);
        }
        let tally = tally.into_histogram();
        assert_eq!(tally.len(), one.len());
        assert_eq!((tally.min(), tally.max()), (one.min(), one.max()));
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(tally.value_at_quantile(q), one.value_at_quantile(q), "{q}");
        }
        assert_eq!(tally.mean(), one.mean());
    }

    #[test]
    fn a_tally_counts_each_latency_in_its_own_bucket_at_the_edges() {
        let mut one = new_histogram();
        let mut tally = Tally::default();
        // Either side of microsecond and bucket edges (2,048 us and up the
        // buckets are wider than a microsecond), and of the clamps.
        let edges = [
            1u64,
            2,
            2_047,
            2_048,
            2_049,
            4_095,
            4_096,
            65_535,
            65_536,
            MAX_TRACKED_US,
        ];
        for us in edges {
            for nanos in [
                us * 1_000 - 1,
                us * 1_000,
                us * 1_000 + 999,
                us * 1_000 + 1_000,
            ] {
                for _ in 0..3 {
                    record(&mut one, 0, nanos);
                    tally.record(0, nanos);
                }
            }
        }
        for nanos in [0, 1, 999, u64::MAX / 2] {
            record(&mut one, 0, nanos);
            tally.record(0, nanos);
        }
        let tally = tally.into_histogram();
        let buckets = |h: &Histogram<u64>| {
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect::<Vec<_>>()
        };
        assert_eq!(buckets(&tally), buckets(&one));
    }

    #[test]
    fn latencies_are_clamped_not_lost() {
        let mut h = new_histogram();
        record(&mut h, 5_000, 1_000); // received "before" sent: clamped to 1 us
        record(&mut h, 0, u64::MAX / 2);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }
}
