//! What pixchat's and Redis's sides of a fan-out run share: the run's
//! state ([`Shared`]), how a watcher ends and what it counted, the writers'
//! window of unacknowledged placements, the pacing and the send loop.
//!
//! Latency: writer w's k-th placement goes to pixel `k % slots` of the
//! canvas (x = s % width, y = s / width) with colour `(k / slots) % 16`, and
//! its send time goes into slot `k % slots` of writer w's [`SendTable`]. A
//! watcher that receives `PIXEL(name = w<id>, x, y, colour)` finds the slot
//! from x and y, checks the generation against the colour, and records
//! "now - sent". Loss: pixchat numbers every event (seq) and promises no gaps
//! per connection, so a watcher counts gaps, repeats, and at the end the
//! seqs it never got up to the last acknowledged placement.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Workload;
use super::latency::{Epoch, Recorder, SendTable};
use super::progress::Counters;

/// Read buffer a watcher joins (or subscribes) with, and a writer reads its
/// acknowledgements with: small enough for 20,000 watchers (the watchers'
/// events are then read by [`super::watchers`]).
pub const WATCHER_BUFFER: usize = 16 * 1024;

/// A paced placement that goes out later than this after its scheduled time
/// has its latency counted from the schedule (plus this slack) instead of
/// from when it was sent, so a target that makes writers wait cannot hide
/// the wait (coordinated omission). The slack absorbs the timer's
/// millisecond granularity, which is not the target's fault.
pub const SCHEDULE_SLACK: Duration = Duration::from_millis(2);

/// What every task of one run shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub epoch: Epoch,
    pub workload: Workload,
    /// The servers, in order: watcher i and writer i connect to
    /// `addrs[i % len]`.
    pub addrs: Vec<SocketAddr>,
    /// One send-time table per writer.
    pub tables: Vec<SendTable>,
    /// Canvas width (pixchat), to turn x and y back into a slot.
    pub width: u64,
    /// Slots per table.
    pub slots: u64,
    pub hist: Recorder,
    pub counters: Arc<Counters>,
    /// End of the measurement window, in epoch nanoseconds (u64::MAX until
    /// the writers start).
    pub window_end_ns: AtomicU64,
    /// Makes this run's names unique: four hex digits.
    pub tag: String,
    /// Cancelled when the run ends (or is abandoned): every task returns.
    pub stop: CancellationToken,
    /// Watchers that have returned, for any reason.
    pub finished: AtomicU64,
    /// Set once the writers are done.
    pub fin: OnceLock<Final>,
}

impl Shared {
    /// The server that watcher `id`, or writer `id`, connects to.
    pub fn addr_for(&self, id: usize) -> SocketAddr {
        self.addrs[id % self.addrs.len()]
    }

    pub fn watcher_name(&self, id: usize) -> String {
        format!("v{}-{id}", self.tag)
    }

    pub fn writer_name(&self, id: usize) -> String {
        format!("w{}-{id}", self.tag)
    }

    /// The writer id in a name like `w1a2b-3`, if it is one of ours.
    pub fn writer_of(&self, name: &[u8]) -> Option<usize> {
        // Fixed-size comparisons: this runs for every event a watcher gets.
        let tag: &[u8; 4] = self.tag.as_bytes().try_into().ok()?;
        let ([b'w', t0, t1, t2, t3, b'-'], digits) = name.split_first_chunk::<6>()? else {
            return None;
        };
        if [*t0, *t1, *t2, *t3] != *tag || digits.is_empty() || digits.len() > 6 {
            return None;
        }
        let mut id = 0usize;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            id = id * 10 + usize::from(d - b'0');
        }
        (id < self.tables.len()).then_some(id)
    }

    pub fn in_window(&self, nanos: u64) -> bool {
        nanos <= self.window_end_ns.load(Ordering::Relaxed)
    }
}

/// What every watcher must have received once the writers are done.
#[derive(Debug, Clone, Default)]
pub(crate) struct Final {
    /// pixchat: the highest acknowledged seq.
    pub seq: u64,
    /// Redis: placements acknowledged per writer.
    pub acked: Vec<u64>,
}

/// How a watcher ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum End {
    /// It received everything.
    Complete,
    /// The run ended first (drain deadline, or abandoned).
    #[default]
    Deadline,
    /// The server said `BYE` with this code.
    Bye(String),
    /// The server closed the connection.
    Closed,
    /// A read failed or the stream was broken.
    Failed(String),
}

/// How far a watcher got: what the end-of-run tally compares with what
/// the server accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Position {
    /// Never joined.
    #[default]
    None,
    /// pixchat: the last seq received (or the welcome's, if none).
    Seq(u64),
    /// Redis: the next placement number expected from each writer.
    Next(Vec<u64>),
}

/// One watcher's counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct WatcherOutcome {
    pub received: u64,
    pub received_in_window: u64,
    /// Events skipped over (gaps); events never received at the end are
    /// added by [`tail_losses`].
    pub lost: u64,
    pub out_of_order: u64,
    pub unmatched: u64,
    pub position: Position,
    pub end: End,
}

/// Events that watchers never received at the end of the run. What the
/// server accepted is the larger of what the writers saw acknowledged and
/// what any watcher received: a writer whose connection was dropped (it is
/// a joined client too, and can be a slow consumer) never sees its last
/// acknowledgements, but the events went out to the others.
pub(crate) fn tail_losses(outcomes: &[WatcherOutcome], fin: Option<&Final>) -> u64 {
    let mut top_seq = fin.map_or(0, |f| f.seq);
    let mut top_next: Vec<u64> = fin.map(|f| f.acked.clone()).unwrap_or_default();
    for o in outcomes {
        match &o.position {
            Position::Seq(s) => top_seq = top_seq.max(*s),
            Position::Next(next) => {
                if top_next.len() < next.len() {
                    top_next.resize(next.len(), 0);
                }
                for (t, n) in top_next.iter_mut().zip(next) {
                    *t = (*t).max(*n);
                }
            }
            Position::None => {}
        }
    }
    outcomes
        .iter()
        .map(|o| match &o.position {
            Position::Seq(s) => top_seq - s,
            Position::Next(next) => top_next
                .iter()
                .enumerate()
                .map(|(w, t)| t - next.get(w).copied().unwrap_or(0))
                .sum(),
            Position::None => 0,
        })
        .sum()
}

/// One writer's acknowledgements, shared by its sending and receiving
/// halves.
#[derive(Debug)]
pub(crate) struct WriterState {
    /// Free places in the window of unacknowledged placements.
    pub window: Semaphore,
    /// Placements answered (accepted or refused).
    pub answered: AtomicU64,
    pub acked_in_window: AtomicU64,
    pub rejected: AtomicU64,
    pub max_seq: AtomicU64,
    /// Why the connection ended early, if it did.
    pub fault: Mutex<Option<String>>,
}

impl WriterState {
    pub fn new(window: usize) -> Self {
        Self {
            window: Semaphore::new(window),
            answered: AtomicU64::new(0),
            acked_in_window: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            max_seq: AtomicU64::new(0),
            fault: Mutex::new(None),
        }
    }

    /// Records `answered` replies, of which `accepted_in_window` accepted a
    /// placement within the measurement window, and gives their places in
    /// the window back.
    pub fn answered(&self, sh: &Shared, answered: u64, accepted_in_window: u64) {
        if answered == 0 {
            return;
        }
        self.answered.fetch_add(answered, Ordering::Relaxed);
        self.acked_in_window
            .fetch_add(accepted_in_window, Ordering::Relaxed);
        sh.counters.acked.fetch_add(answered, Ordering::Relaxed);
        // Released after the counts, so whoever gets the whole window back
        // sees every count.
        self.window.add_permits(answered as usize);
    }

    /// Placements accepted so far.
    pub fn accepted(&self) -> u64 {
        (self.answered.load(Ordering::Relaxed))
            .saturating_sub(self.rejected.load(Ordering::Relaxed))
    }

    /// The connection is gone: remember why and wake the sender.
    pub fn fail(&self, why: String) {
        let mut f = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(why);
        self.window.close();
    }
}

/// What a writer's sending half did.
#[derive(Debug, Clone, Default)]
pub(crate) struct SendOutcome {
    pub sent: u64,
    /// Placements due by the end but never sent (fixed rate only).
    pub behind: u64,
    /// Every sent placement was acknowledged before the drain deadline.
    pub drained: bool,
    pub error: Option<String>,
}

/// A writer after its sending phase.
#[derive(Debug)]
pub(crate) struct WriterRun {
    pub send: SendOutcome,
    pub state: Arc<WriterState>,
    pub receiver: Option<JoinHandle<()>>,
}

/// The schedule of one writer at a fixed rate: the global stream of
/// placements is evenly spaced at 1/R, and writer `id` of W takes every
/// W-th one, starting with the `id`-th.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacer {
    interval_ns: f64,
    phase_ns: f64,
}

impl Pacer {
    /// The schedule of writer `id` of `writers` when all together offer
    /// `rate` placements per second; `None` for max rate (`rate` = 0).
    pub fn new(rate: f64, writers: usize, id: usize) -> Option<Self> {
        (rate > 0.0).then(|| Self {
            interval_ns: 1e9 * writers as f64 / rate,
            phase_ns: 1e9 * id as f64 / rate,
        })
    }

    /// When placement `k` is due, in nanoseconds after the start.
    pub fn due_at(&self, k: u64) -> u64 {
        (self.phase_ns + k as f64 * self.interval_ns) as u64
    }

    /// How many placements are due by `elapsed_ns` after the start.
    pub fn due_by(&self, elapsed_ns: u64) -> u64 {
        let t = elapsed_ns as f64;
        if t < self.phase_ns {
            0
        } else {
            ((t - self.phase_ns) / self.interval_ns).floor() as u64 + 1
        }
    }
}

/// Sends placements until the window ends, then waits (until the drain
/// deadline) for all of them to be acknowledged. `encode` appends placement
/// k to the buffer; all placements ready at once go out in one write.
pub(crate) async fn send_loop<W: AsyncWrite + Unpin>(
    out: &mut W,
    id: usize,
    sh: &Shared,
    state: &WriterState,
    start: Instant,
    mut encode: impl FnMut(u64, &mut BytesMut),
) -> SendOutcome {
    let w = &sh.workload;
    let end = start + w.duration;
    let drain_deadline = end + w.drain;
    let pacer = Pacer::new(w.rate, w.writers, id);
    let table = &sh.tables[id];
    let slack = SCHEDULE_SLACK.as_nanos() as u64;
    let start_ns = sh.epoch.nanos(start);
    let mut buf = BytesMut::with_capacity(w.window.min(4096) * 48);
    let mut res = SendOutcome::default();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let want = match pacer {
            None => w.window as u64,
            Some(p) => {
                let due = p.due_by(sh.epoch.nanos(now) - start_ns);
                if due <= res.sent {
                    let next = sh.epoch.at(start_ns + p.due_at(res.sent));
                    tokio::select! {
                        _ = tokio::time::sleep_until(next.min(end).into()) => {}
                        _ = sh.stop.cancelled() => break,
                    }
                    continue;
                }
                due - res.sent
            }
        };
        // Wait for one free place in the window, then take what else is free.
        let first = tokio::select! {
            p = state.window.acquire() => p,
            _ = tokio::time::sleep_until(end.into()) => break,
            _ = sh.stop.cancelled() => break,
        };
        match first {
            Ok(p) => p.forget(),
            Err(_) => {
                // The reading half closed the window: it knows why.
                let why = state
                    .fault
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                res.error = Some(why.unwrap_or_else(|| "connection closed".into()));
                break;
            }
        }
        let mut n = 1;
        while n < want {
            match state.window.try_acquire() {
                Ok(p) => {
                    p.forget();
                    n += 1;
                }
                Err(_) => break,
            }
        }
        buf.clear();
        let now_ns = sh.epoch.now_nanos();
        for k in res.sent..res.sent + n {
            let stamp = match pacer {
                None => now_ns,
                Some(p) => now_ns.min(start_ns + p.due_at(k) + slack),
            };
            table.store(k, stamp);
            encode(k, &mut buf);
        }
        match tokio::time::timeout_at(drain_deadline.into(), out.write_all(&buf)).await {
            Ok(Ok(())) => res.sent += n,
            Ok(Err(e)) => {
                res.error = Some(format!("write failed: {e}"));
                break;
            }
            Err(_) => {
                res.error = Some("write timed out".into());
                break;
            }
        }
    }
    if let Some(p) = pacer {
        // Due strictly before the end: one due at the very end was not late.
        let window_ns = (w.duration.as_nanos() as u64).saturating_sub(1);
        res.behind = p.due_by(window_ns).saturating_sub(res.sent);
    }
    // Every place back in the window means every placement was answered.
    let all = u32::try_from(w.window).unwrap_or(u32::MAX);
    res.drained = matches!(
        tokio::time::timeout_at(drain_deadline.into(), state.window.acquire_many(all)).await,
        Ok(Ok(_))
    );
    if res.error.is_none() {
        res.error = state
            .fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
    }
    res
}

/// Unwraps a connection's setup (connect, join or subscribe, under a
/// timeout); when it failed, tells the coordinator why and returns the
/// reason.
async fn setup_or_report<T>(
    role: &str,
    id: usize,
    what: &str,
    setup: Result<anyhow::Result<T>, tokio::time::error::Elapsed>,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<T, String> {
    let why = match setup {
        Ok(Ok(t)) => return Ok(t),
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => format!("{what} timed out"),
    };
    let _ = ready.send(Err(format!("{role} {id}: {why}"))).await;
    Err(why)
}

/// Reports a watcher's setup to the coordinator: ready, or why not.
/// Returns what the setup gave, or `None` with `out` marked failed.
pub(crate) async fn watcher_ready<T>(
    sh: &Shared,
    id: usize,
    setup: Result<anyhow::Result<T>, tokio::time::error::Elapsed>,
    what: &str,
    ready: mpsc::Sender<Result<(), String>>,
    out: &mut WatcherOutcome,
) -> Option<T> {
    match setup_or_report("watcher", id, what, setup, &ready).await {
        Ok(t) => {
            sh.counters.watchers_ready.fetch_add(1, Ordering::Relaxed);
            let _ = ready.send(Ok(())).await;
            Some(t)
        }
        Err(why) => {
            out.end = End::Failed(why);
            None
        }
    }
}

/// Unwraps a writer's setup, reporting a failure to the coordinator.
pub(crate) async fn writer_setup<T>(
    id: usize,
    what: &str,
    setup: Result<anyhow::Result<T>, tokio::time::error::Elapsed>,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Option<T> {
    setup_or_report("writer", id, what, setup, ready).await.ok()
}

/// The rest of a writer once it is connected and its reading half runs:
/// reports ready, waits for the start, sends what `encode` makes on the
/// schedule, and keeps the connection open until the run ends (closing it
/// would make a server drop the writer while its last events are still
/// going out).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_writer(
    id: usize,
    sh: &Arc<Shared>,
    ready: mpsc::Sender<Result<(), String>>,
    mut start: watch::Receiver<Option<Instant>>,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<WriterState>,
    receiver: JoinHandle<()>,
    encode: impl FnMut(u64, &mut BytesMut),
) -> Option<WriterRun> {
    sh.counters.writers_ready.fetch_add(1, Ordering::Relaxed);
    let _ = ready.send(Ok(())).await;
    drop(ready);
    let t0 = tokio::select! {
        t = start.wait_for(Option::is_some) => match t {
            Ok(t) => t.expect("checked"),
            Err(_) => return None,
        },
        _ = sh.stop.cancelled() => return None,
    };
    let send = send_loop(&mut wr, id, sh, &state, t0, encode).await;
    let keep_open = sh.stop.clone();
    tokio::spawn(async move {
        keep_open.cancelled().await;
        drop(wr);
    });
    Some(WriterRun {
        send,
        state,
        receiver: Some(receiver),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pacer_spreads_writers_evenly_over_the_second() {
        // 4 writers at 2000/s in all: each every 2 ms, offset by 0.5 ms.
        let p0 = Pacer::new(2000.0, 4, 0).unwrap();
        let p3 = Pacer::new(2000.0, 4, 3).unwrap();
        assert_eq!(p0.due_at(0), 0);
        assert_eq!(p0.due_at(1), 2_000_000);
        assert_eq!(p3.due_at(0), 1_500_000);
        assert_eq!(p0.due_by(0), 1);
        assert_eq!(p0.due_by(1_999_999), 1);
        assert_eq!(p0.due_by(2_000_000), 2);
        assert_eq!(p3.due_by(1_000_000), 0);
        assert_eq!(p3.due_by(1_500_000), 1);
        // Over one second the four offer 2000 together.
        let total: u64 = (0..4)
            .map(|id| Pacer::new(2000.0, 4, id).unwrap().due_by(999_999_999))
            .sum();
        assert_eq!(total, 2000);
        assert_eq!(Pacer::new(0.0, 4, 0), None);
    }

    #[test]
    fn tail_losses_count_up_to_what_anyone_saw() {
        let w = |position| WatcherOutcome {
            position,
            ..WatcherOutcome::default()
        };
        let fin = Final {
            seq: 10,
            acked: vec![5, 5],
        };
        // pixchat: one watcher complete, one stopped at 7, one saw 12 (the
        // writers missed acknowledgements for 11 and 12).
        let seqs = [
            w(Position::Seq(10)),
            w(Position::Seq(7)),
            w(Position::Seq(12)),
        ];
        assert_eq!(tail_losses(&seqs, Some(&fin)), 2 + 5);
        assert_eq!(tail_losses(&seqs, None), 2 + 5);
        // Redis: per writer.
        let next = [
            w(Position::Next(vec![5, 5])),
            w(Position::Next(vec![5, 2])),
            w(Position::Next(vec![6, 5])),
            w(Position::None),
        ];
        assert_eq!(tail_losses(&next, Some(&fin)), 1 + (1 + 3));
    }

    #[test]
    fn writer_names_round_trip_and_strangers_are_ignored() {
        let sh = Shared {
            epoch: Epoch::now(),
            workload: Workload::default(),
            addrs: vec!["127.0.0.1:1".parse().unwrap()],
            tables: (0..12).map(|_| SendTable::new(4)).collect(),
            width: 2,
            slots: 4,
            hist: Recorder::new(1),
            counters: Arc::default(),
            window_end_ns: AtomicU64::new(u64::MAX),
            tag: "0a1b".into(),
            stop: CancellationToken::new(),
            finished: AtomicU64::new(0),
            fin: OnceLock::new(),
        };
        assert_eq!(sh.writer_of(sh.writer_name(11).as_bytes()), Some(11));
        assert_eq!(sh.writer_of(b"w0a1b-12"), None, "no such writer");
        assert_eq!(sh.writer_of(b"w0a1c-1"), None, "another run");
        assert_eq!(sh.writer_of(b"v0a1b-1"), None, "a watcher");
        assert_eq!(sh.writer_of(b"w0a1b-"), None);
        assert_eq!(sh.writer_of(b"w0a1b-1x"), None);
        assert_eq!(sh.writer_of(b"alice"), None);
    }
}
