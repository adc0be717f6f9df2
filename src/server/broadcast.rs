//! The broadcast ring: every event that goes to all joined clients, encoded
//! once per wire mode and kept as contiguous bytes for a bounded window.
//!
//! Each joined client's writer holds a cursor (an event index) into this log
//! and copies everything from its cursor to the end in one go, so a client
//! that is behind catches up with one write instead of one per event. The ring
//! never waits for anyone: when it is full the oldest events go, and a writer
//! whose cursor points before the oldest event has lagged (it is then
//! disconnected as a slow consumer).

use std::collections::VecDeque;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use tokio::sync::watch;

use crate::protocol::{Event, Mode, binary, text};

/// How much of the past the ring keeps.
#[derive(Debug, Clone, Copy)]
pub struct BroadcastLimits {
    /// Most events kept.
    pub max_events: usize,
    /// Most bytes kept per mode.
    pub max_bytes: usize,
}

impl Default for BroadcastLimits {
    fn default() -> Self {
        Self {
            max_events: 1 << 18,
            max_bytes: 16 << 20,
        }
    }
}

/// The reader's cursor points before the oldest event kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged;

/// One mode's encoded events.
#[derive(Debug, Default)]
struct Encoded {
    bytes: VecDeque<u8>,
    /// Absolute byte offset of `bytes[0]`.
    base: u64,
    /// Absolute byte offset where each kept event starts.
    starts: VecDeque<u64>,
}

impl Encoded {
    fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    fn push(&mut self, encoded: &[u8]) {
        self.starts.push_back(self.end());
        self.bytes.extend(encoded);
    }

    fn pop_front(&mut self) {
        self.starts.pop_front();
        let new_base = self.starts.front().copied().unwrap_or_else(|| self.end());
        let n = (new_base - self.base) as usize;
        self.bytes.drain(..n);
        self.base = new_base;
    }

    /// Byte offset where event `index` starts (or the end, past the last).
    fn offset(&self, first: u64, index: u64) -> u64 {
        self.starts
            .get((index - first) as usize)
            .copied()
            .unwrap_or_else(|| self.end())
    }

    fn copy(&self, from: u64, to: u64, out: &mut BytesMut) {
        let a = (from - self.base) as usize;
        let b = (to - self.base) as usize;
        let (head, tail) = self.bytes.as_slices();
        if a < head.len() {
            out.extend_from_slice(&head[a..b.min(head.len())]);
        }
        if b > head.len() {
            out.extend_from_slice(&tail[a.saturating_sub(head.len())..b - head.len()]);
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// Index of the oldest kept event.
    first: u64,
    /// Index the next event gets.
    end: u64,
    /// Events before this index may be sent: everything they depend on is
    /// durable. Writers never read past it.
    visible: u64,
    text: Encoded,
    binary: Encoded,
    scratch: BytesMut,
    limits: BroadcastLimits,
}

/// See the module docs.
#[derive(Debug)]
pub struct BroadcastRing {
    inner: RwLock<Inner>,
    end_tx: watch::Sender<u64>,
    /// Joined clients.
    watchers: AtomicUsize,
    /// See [`BroadcastRing::hold_lag`].
    hold_lag: u64,
    /// What the fan-out sent from the ring, for `/metrics`.
    sent: super::metrics::SendCounters,
    /// The runtime the connections run on, where a watcher's writer task
    /// is started even when a pacer (on a thread of its own) starts it.
    runtime: Option<tokio::runtime::Handle>,
}

/// The most events producers may run ahead of a watcher that keeps up.
const HOLD_LAG_MAX: u64 = 16_384;

impl BroadcastRing {
    /// An empty ring.
    pub fn new(limits: BroadcastLimits) -> Self {
        Self {
            inner: RwLock::new(Inner {
                first: 0,
                end: 0,
                visible: 0,
                text: Encoded::default(),
                binary: Encoded::default(),
                scratch: BytesMut::new(),
                limits,
            }),
            end_tx: watch::channel(0).0,
            watchers: AtomicUsize::new(0),
            hold_lag: HOLD_LAG_MAX.min(limits.max_events as u64 / 4).max(1),
            sent: Default::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Starts `task` on the connections' runtime (the one the ring was made
    /// on), wherever it is called from.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// What the fan-out sent from the ring.
    pub fn sent(&self) -> &super::metrics::SendCounters {
        &self.sent
    }

    /// Events held in the window, and the most it holds.
    pub fn window(&self) -> (u64, usize) {
        let inner = self.inner.read().expect("ring lock poisoned");
        (inner.end - inner.first, inner.limits.max_events)
    }

    /// How far producers may run ahead of the slowest watcher before they
    /// wait for the fan-out (see `Fanout::wait_for_room`): far inside the
    /// window, so a watcher that keeps reading is never dropped because
    /// someone drew faster than it could be sent.
    pub fn hold_lag(&self) -> u64 {
        self.hold_lag
    }

    /// Encodes `event` in both modes and appends it; it is not sent until
    /// [`BroadcastRing::publish`] reaches it. Returns the new end index.
    pub fn append(&self, event: &Event) -> u64 {
        {
            let mut g = self.inner.write().expect("ring lock poisoned");
            let inner = &mut *g;
            inner.scratch.clear();
            text::encode_event(event, &mut inner.scratch);
            inner.text.push(&inner.scratch);
            inner.scratch.clear();
            binary::encode_event(event, &mut inner.scratch);
            inner.binary.push(&inner.scratch);
            inner.end += 1;
            while (inner.end - inner.first) as usize > inner.limits.max_events
                || inner.text.bytes.len() > inner.limits.max_bytes
                || inner.binary.bytes.len() > inner.limits.max_bytes
            {
                inner.text.pop_front();
                inner.binary.pop_front();
                inner.first += 1;
            }
            inner.end
        }
    }

    /// Takes a place in the order without sending anything: for a change
    /// that has no broadcast event (a ban), so whatever answers it can
    /// wait until it is durable, like any event. Returns the new end.
    pub fn append_silent(&self) -> u64 {
        let mut g = self.inner.write().expect("ring lock poisoned");
        let inner = &mut *g;
        inner.text.push(&[]);
        inner.binary.push(&[]);
        inner.end += 1;
        while (inner.end - inner.first) as usize > inner.limits.max_events {
            inner.text.pop_front();
            inner.binary.pop_front();
            inner.first += 1;
        }
        inner.end
    }

    /// Makes events before `upto` sendable and wakes the writers.
    pub fn publish(&self, upto: u64) {
        let visible = {
            let mut inner = self.inner.write().expect("ring lock poisoned");
            inner.visible = inner.visible.max(upto.min(inner.end));
            inner.visible
        };
        self.end_tx.send_if_modified(|v| {
            let changed = *v != visible;
            *v = visible;
            changed
        });
    }

    /// Index the next event will get: a cursor here has seen everything.
    pub fn end(&self) -> u64 {
        self.inner.read().expect("ring lock poisoned").end
    }

    /// Events before this index may be sent.
    pub fn visible(&self) -> u64 {
        self.inner.read().expect("ring lock poisoned").visible
    }

    /// Copies the `mode` encoding of events from index `from` towards `to`
    /// into `out`: whole events, at least one, and no more than `max_bytes`
    /// beyond that first one. Returns the index it reached.
    pub fn copy(
        &self,
        mode: Mode,
        from: u64,
        to: u64,
        max_bytes: usize,
        out: &mut BytesMut,
    ) -> Result<u64, Lagged> {
        let inner = self.inner.read().expect("ring lock poisoned");
        if from < inner.first {
            return Err(Lagged);
        }
        let to = to.min(inner.visible);
        if from >= to {
            return Ok(from);
        }
        let enc = match mode {
            Mode::Text => &inner.text,
            Mode::Binary => &inner.binary,
        };
        let start = enc.offset(inner.first, from);
        let mut reach = to;
        if enc.offset(inner.first, to) - start > max_bytes as u64 {
            // Starts are sorted, so the last event that still fits is found
            // by bisection.
            let limit = start + max_bytes as u64;
            // Events before index `j - 1` end at or before the limit.
            let lo = (from - inner.first) as usize;
            let hi = (to - inner.first) as usize;
            let j = enc.starts.partition_point(|&s| s <= limit);
            reach = inner.first + (j.saturating_sub(1)).clamp(lo + 1, hi) as u64;
        }
        enc.copy(start, enc.offset(inner.first, reach), out);
        Ok(reach)
    }

    /// Index of the oldest event still kept: a cursor below it has lagged.
    pub fn first(&self) -> u64 {
        self.inner.read().expect("ring lock poisoned").first
    }

    /// Records how many clients receive broadcasts.
    pub fn set_watchers(&self, n: usize) {
        self.watchers.store(n, Ordering::Relaxed);
    }

    /// Clients that receive broadcasts.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    /// A receiver that changes whenever more events become sendable.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.end_tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn joined(n: usize) -> Event {
        Event::Joined {
            name: Arc::from(format!("user{n}")),
        }
    }

    fn text_of(log: &BroadcastRing, from: u64, to: u64) -> Result<String, Lagged> {
        let mut out = BytesMut::new();
        log.copy(Mode::Text, from, to, usize::MAX, &mut out)?;
        Ok(String::from_utf8(out.to_vec()).unwrap())
    }

    #[test]
    fn copies_ranges_in_each_mode() {
        let log = BroadcastRing::new(BroadcastLimits::default());
        for n in 0..3 {
            let e = log.append(&joined(n));
            log.publish(e);
        }
        assert_eq!(log.end(), 3);
        assert_eq!(text_of(&log, 1, 3).unwrap(), "JOINED user1\nJOINED user2\n");
        let mut bin = BytesMut::new();
        log.copy(Mode::Binary, 0, 1, usize::MAX, &mut bin).unwrap();
        assert_eq!(
            &bin[..],
            &[0, 0, 0, 7, 0x41, 5, b'u', b's', b'e', b'r', b'0']
        );
    }

    #[test]
    fn old_events_fall_off_and_slow_cursors_lag() {
        let log = BroadcastRing::new(BroadcastLimits {
            max_events: 4,
            max_bytes: 1 << 20,
        });
        for n in 0..10 {
            let e = log.append(&joined(n));
            log.publish(e);
        }
        assert_eq!(text_of(&log, 5, 6), Err(Lagged));
        assert_eq!(text_of(&log, 6, 10).unwrap().lines().count(), 4);
    }

    #[test]
    fn byte_limit_bounds_memory_across_ring_wraparound() {
        let log = BroadcastRing::new(BroadcastLimits {
            max_events: 1 << 20,
            max_bytes: 100,
        });
        for n in 0..1000 {
            let e = log.append(&joined(n));
            log.publish(e);
            let got = text_of(&log, log.end() - 1, log.end()).unwrap();
            assert_eq!(got, format!("JOINED user{n}\n"));
        }
        assert!(log.inner.read().unwrap().text.bytes.len() <= 100);
    }

    #[test]
    fn nothing_past_the_published_index_is_copied() {
        let log = BroadcastRing::new(BroadcastLimits::default());
        log.append(&joined(0));
        let e = log.append(&joined(1));
        assert_eq!(text_of(&log, 0, e).unwrap(), "");
        log.publish(1);
        assert_eq!(text_of(&log, 0, e).unwrap(), "JOINED user0\n");
        log.publish(99);
        assert_eq!(log.visible(), 2);
    }

    #[test]
    fn copies_stop_at_the_byte_budget_on_event_boundaries() {
        let log = BroadcastRing::new(BroadcastLimits::default());
        for n in 0..10 {
            let e = log.append(&joined(n));
            log.publish(e); // "JOINED userN\n" is 13 bytes
        }
        let mut out = BytesMut::new();
        assert_eq!(log.copy(Mode::Text, 2, 10, 30, &mut out), Ok(4));
        assert_eq!(&out[..], b"JOINED user2\nJOINED user3\n");
        out.clear();
        // A budget smaller than one event still moves one event.
        assert_eq!(log.copy(Mode::Text, 4, 10, 1, &mut out), Ok(5));
        assert_eq!(&out[..], b"JOINED user4\n");
        out.clear();
        assert_eq!(log.copy(Mode::Text, 9, 10, 1, &mut out), Ok(10));
        assert_eq!(log.copy(Mode::Text, 10, 10, 1, &mut out), Ok(10));
    }
}
