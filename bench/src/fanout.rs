//! The fan-out workload: C watchers join and receive everything, W writers
//! place pixels at a fixed total rate or as fast as a bounded window of
//! unacknowledged placements allows, for D seconds; then the bench waits for
//! the events still under way and counts what each watcher got.
//!
//! This file holds the run itself (setup, start, window, drain, report),
//! what both targets share (pacing, the writer's send loop, the counts) and
//! pixchat's watchers and writers; [`super::redis`] has Redis's.
//!
//! Latency: writer w's k-th placement goes to pixel `k % slots` of the
//! canvas (x = s % width, y = s / width) with colour `(k / slots) % 16`, and
//! its send time goes into slot `k % slots` of writer w's [`SendTable`]. A
//! watcher that receives `PIXEL(name = w<id>, x, y, colour)` finds the slot
//! from x and y, checks the generation against the colour, and records
//! "now - sent". Loss: pixchat numbers every event (seq) and promises no gaps
//! per connection, so a watcher counts gaps, repeats, and at the end the
//! seqs it never got up to the last acknowledged placement.
//!
//! Several servers: watchers and writers are dealt round-robin over pixchat
//! servers that share one canvas through Redis (cluster mode). Seqs are
//! global there, and every server delivers every event in seq order, so the
//! same counts hold: a watcher on any server must see every writer's
//! placements without a gap, up to the highest seq acknowledged to any
//! writer on any server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::latency::{Epoch, Lookup, Percentiles, Recorder, SHARDS, SendTable, record};
use super::procstat::{self, CpuUse};
use super::progress::{Counters, Progress};
use super::report::{RunReport, ServerUse};
use super::wire::{Frame, FrameReader, Keep, PixelRef};
use super::{
    CONNECT_TIMEOUT, JOIN_TIMEOUT, SETUP_CONCURRENCY, Servers, Target, Workload, check_fd_budget,
    run_tag, share,
};
use pixchat::protocol::binary::{encode_command, reply_type};
use pixchat::protocol::{Command, PROTOCOL_VERSION};

/// Read buffer per watcher: a few hundred events per read, small enough
/// for 20,000 watchers.
pub const WATCHER_BUFFER: usize = 16 * 1024;
/// A paced placement that goes out later than this after its scheduled time
/// has its latency counted from the schedule (plus this slack) instead of
/// from when it was sent, so a target that makes writers wait cannot hide
/// the wait (coordinated omission). The slack absorbs the timer's
/// millisecond granularity, which is not the target's fault.
pub const SCHEDULE_SLACK: Duration = Duration::from_millis(2);
/// Most send-time slots per writer (32 MiB of table each).
pub const MAX_SLOTS: u64 = 1 << 22;
/// The generation bits a pixchat placement carries (its colour).
const PIXCHAT_GEN_MASK: u64 = 0xF;

/// How a run is shown and what extra it measures.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Prefix of the progress line.
    pub label: String,
    /// Print the progress line on stderr.
    pub progress: bool,
    /// Idle workload: wait this long after the watchers joined, then read
    /// the server's memory before the writers join.
    pub idle_settle: Option<Duration>,
    /// How long connecting and joining everyone may take in all.
    pub setup_timeout: Option<Duration>,
}

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
    /// Makes this run's names unique.
    pub tag: String,
    /// Cancelled when the run ends (or is abandoned): every task returns.
    pub stop: CancellationToken,
    /// Watchers that have returned, for any reason.
    pub finished: AtomicU64,
    /// Set once the writers are done.
    pub fin: OnceLock<Final>,
    /// Cancelled once `fin` is set, to wake idle watchers. A token rather
    /// than a watch channel because a watcher pins its `cancelled()` future
    /// once, instead of registering a new waiter on every read.
    pub finalized: CancellationToken,
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
        let rest = name.strip_prefix(b"w")?.strip_prefix(self.tag.as_bytes())?;
        let digits = rest.strip_prefix(b"-")?;
        if digits.is_empty() || digits.len() > 6 {
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

/// A joined pixchat connection.
pub(crate) struct Joined {
    pub stream: TcpStream,
    pub reader: FrameReader,
    /// The seq the snapshot is at: events after it follow.
    pub seq: u64,
    /// Canvas size from the welcome.
    pub width: u16,
    /// Canvas height.
    pub height: u16,
    /// The packed snapshot, when `keep` kept it.
    pub packed: Option<Vec<u8>>,
    /// Bytes received until the snapshot was complete.
    pub bytes: u64,
    /// Bytes sent to join (HELLO and JOIN).
    pub sent: u64,
}

/// Connects in binary mode, says hello and joins as `name`; returns once
/// the welcome and the whole snapshot are in.
pub(crate) async fn join_pixchat(
    addr: SocketAddr,
    id: usize,
    name: &str,
    keep: Keep,
    buffer: usize,
) -> anyhow::Result<Joined> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, super::connect(addr, id))
        .await
        .context("connect timed out")?
        .context("connect")?;
    stream.set_nodelay(true)?;
    let mut hello = BytesMut::new();
    encode_command(
        &Command::Hello {
            version: PROTOCOL_VERSION,
        },
        &mut hello,
    );
    encode_command(
        &Command::Join {
            name: name.to_string(),
            resume: None,
            quiet: false,
        },
        &mut hello,
    );
    stream.write_all(&hello).await.context("send HELLO, JOIN")?;
    let sent = hello.len() as u64;
    let mut reader = FrameReader::new(buffer, keep);
    let mut welcome = None;
    let mut bytes = 0u64;
    loop {
        let n = stream.read(reader.spare()).await.context("read")?;
        if n == 0 {
            bail!("the server closed the connection while {name} joined");
        }
        bytes += n as u64;
        reader.advance(n);
        while let Some(frame) = reader.next_frame()? {
            match frame {
                Frame::Welcome {
                    seq, width, height, ..
                } => welcome = Some((seq, width, height)),
                Frame::Snapshot { packed, .. } => {
                    let Some((seq, width, height)) = welcome else {
                        bail!("a snapshot before the welcome");
                    };
                    let packed = Some(packed.to_vec());
                    return Ok(Joined {
                        stream,
                        reader,
                        seq,
                        width,
                        height,
                        packed,
                        bytes,
                        sent,
                    });
                }
                Frame::Skipped {
                    kind: reply_type::SNAPSHOT,
                    ..
                } => {
                    let Some((seq, width, height)) = welcome else {
                        bail!("a snapshot before the welcome");
                    };
                    return Ok(Joined {
                        stream,
                        reader,
                        seq,
                        width,
                        height,
                        packed: None,
                        bytes,
                        sent,
                    });
                }
                Frame::Error { code } => {
                    bail!("the server answered {}", String::from_utf8_lossy(code))
                }
                Frame::Bye { code } => {
                    bail!("the server said BYE {}", String::from_utf8_lossy(code))
                }
                _ => {}
            }
        }
    }
}

/// What a pixchat server says about its canvas before anyone joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CanvasInfo {
    pub id: u64,
    pub width: u16,
    pub height: u16,
}

/// Asks a pixchat server for its canvas (HELLO only, then closes).
pub(crate) async fn probe_canvas(addr: SocketAddr) -> anyhow::Result<CanvasInfo> {
    let probe = async {
        let mut stream = TcpStream::connect(addr).await.context("connect")?;
        let mut hello = BytesMut::new();
        encode_command(
            &Command::Hello {
                version: PROTOCOL_VERSION,
            },
            &mut hello,
        );
        stream.write_all(&hello).await?;
        let mut reader = FrameReader::new(4096, Keep::Everything);
        loop {
            let n = stream.read(reader.spare()).await?;
            if n == 0 {
                bail!("closed before HELLO_OK");
            }
            reader.advance(n);
            if let Some(frame) = reader.next_frame()? {
                return match frame {
                    Frame::HelloOk {
                        canvas_id,
                        width,
                        height,
                        ..
                    } => Ok(CanvasInfo {
                        id: canvas_id,
                        width,
                        height,
                    }),
                    Frame::Error { code } => {
                        bail!("HELLO answered {}", String::from_utf8_lossy(code))
                    }
                    other => bail!("HELLO answered {other:?}"),
                };
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, probe)
        .await
        .context("no HELLO_OK in time")?
        .with_context(|| format!("is a pixchat server listening on {addr}?"))
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

/// A pixchat watcher: joins, reports ready, then counts every event until
/// it has everything the writers placed, the server ends it, or the run
/// stops.
async fn pixchat_watcher(
    id: usize,
    sh: Arc<Shared>,
    gate: Arc<Semaphore>,
    ready: mpsc::Sender<Result<(), String>>,
) -> WatcherOutcome {
    let mut out = WatcherOutcome::default();
    let joined = tokio::select! {
        _ = sh.stop.cancelled() => return out,
        j = async {
            let _permit = gate.acquire().await;
            tokio::time::timeout(
                JOIN_TIMEOUT,
                join_pixchat(sh.addr_for(id), id, &sh.watcher_name(id), Keep::SkipBigSnapshots, WATCHER_BUFFER),
            )
            .await
        } => j,
    };
    let Some(Joined {
        mut stream,
        mut reader,
        seq: mut last,
        ..
    }) = watcher_ready(&sh, id, joined, "join", ready, &mut out).await
    else {
        return out;
    };
    let stop = sh.stop.cancelled();
    let finalized = sh.finalized.cancelled();
    tokio::pin!(stop, finalized);
    let mut now = sh.epoch.now_nanos();
    out.end = loop {
        let (mut got, mut bye, mut fault) = (0u64, None, None);
        {
            // Held only while parsing what is buffered: no await inside.
            let mut h = sh.hist.shard(id).lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match reader.next_frame() {
                    Ok(Some(Frame::Pixel(p))) => {
                        got += on_pixel(&sh, &mut out, &mut last, &p, now, &mut h);
                    }
                    Ok(Some(Frame::Bye { code })) => {
                        bye = Some(String::from_utf8_lossy(code).into_owned());
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        fault = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        if got > 0 {
            out.received += got;
            if sh.in_window(now) {
                out.received_in_window += got;
            }
            sh.counters.deliveries.fetch_add(got, Ordering::Relaxed);
        }
        if let Some(code) = bye {
            break End::Bye(code);
        }
        if let Some(f) = fault {
            break End::Failed(f);
        }
        // Read once: the writers may finish between this check and the
        // select, and then `finalized` must still wake this watcher.
        let fin = sh.fin.get();
        if fin.is_some_and(|f| last >= f.seq) {
            sh.counters.watchers_done.fetch_add(1, Ordering::Relaxed);
            break End::Complete;
        }
        tokio::select! {
            biased;
            _ = &mut stop => break End::Deadline,
            _ = &mut finalized, if fin.is_none() => {}
            r = stream.read(reader.spare()) => match r {
                Ok(0) => break End::Closed,
                Ok(n) => {
                    reader.advance(n);
                    now = sh.epoch.now_nanos();
                }
                Err(e) => break End::Failed(e.to_string()),
            },
        }
    };
    out.position = Position::Seq(last);
    out
}

/// Counts one pixel event and records its latency; returns 1 if it was a
/// new event, 0 for a repeat or one out of order.
fn on_pixel(
    sh: &Shared,
    out: &mut WatcherOutcome,
    last: &mut u64,
    p: &PixelRef<'_>,
    now: u64,
    h: &mut Histogram<u64>,
) -> u64 {
    if p.seq <= *last {
        out.out_of_order += 1;
        return 0;
    }
    out.lost += p.seq - *last - 1;
    *last = p.seq;
    if let Some(w) = sh.writer_of(p.name) {
        let slot = u64::from(p.y) * sh.width + u64::from(p.x);
        match sh.tables[w].lookup(slot, u64::from(p.color), PIXCHAT_GEN_MASK) {
            Lookup::Sent(sent) => record(h, sent, now),
            Lookup::Unmatched => out.unmatched += 1,
        }
    }
    1
}

/// A pixchat writer: joins, waits for the start, places pixels, and keeps
/// reading (acknowledgements, and the events it receives like everyone)
/// until the run stops.
async fn pixchat_writer(
    id: usize,
    sh: Arc<Shared>,
    ready: mpsc::Sender<Result<(), String>>,
    start: watch::Receiver<Option<Instant>>,
) -> Option<WriterRun> {
    let joined = tokio::time::timeout(
        JOIN_TIMEOUT,
        join_pixchat(
            sh.addr_for(id),
            // Writers after the watchers, for the source address.
            sh.workload.clients + id,
            &sh.writer_name(id),
            Keep::SkipBigSnapshots,
            WATCHER_BUFFER,
        ),
    )
    .await;
    let joined = writer_setup(id, "join", joined, &ready).await?;
    let (rd, wr) = joined.stream.into_split();
    let state = Arc::new(WriterState::new(sh.workload.window));
    let receiver = tokio::spawn(pixchat_writer_acks(
        rd,
        joined.reader,
        sh.clone(),
        state.clone(),
    ));
    let (slots, width) = (sh.slots, sh.width);
    run_writer(id, &sh, ready, start, wr, state, receiver, |k, buf| {
        let s = k % slots;
        let set = Command::Set {
            x: (s % width) as u32,
            y: (s / width) as u32,
            color: ((k / slots) % 16) as u32,
        };
        encode_command(&set, buf);
    })
    .await
}

/// A pixchat writer's reading half: counts `SET_OK` and `ERROR` replies and
/// gives their places back to the window; reads past everything else.
async fn pixchat_writer_acks(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut reader: FrameReader,
    sh: Arc<Shared>,
    state: Arc<WriterState>,
) {
    let mut now = sh.epoch.now_nanos();
    loop {
        let (mut acks, mut rejected, mut max_seq) = (0u64, 0u64, 0u64);
        let mut end = None;
        loop {
            match reader.next_frame() {
                Ok(Some(Frame::SetOk { seq })) => {
                    acks += 1;
                    max_seq = max_seq.max(seq);
                }
                Ok(Some(Frame::Error { .. })) => rejected += 1,
                Ok(Some(Frame::Bye { code })) => {
                    end = Some(format!("BYE {}", String::from_utf8_lossy(code)));
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    end = Some(e.to_string());
                    break;
                }
            }
        }
        state.max_seq.fetch_max(max_seq, Ordering::Relaxed);
        state.rejected.fetch_add(rejected, Ordering::Relaxed);
        let in_window = if sh.in_window(now) { acks } else { 0 };
        state.answered(&sh, acks + rejected, in_window);
        if let Some(why) = end {
            state.fail(why);
            return;
        }
        tokio::select! {
            _ = sh.stop.cancelled() => return,
            r = rd.read(reader.spare()) => match r {
                Ok(0) => return state.fail("the server closed the writer's connection".into()),
                Ok(n) => {
                    reader.advance(n);
                    now = sh.epoch.now_nanos();
                }
                Err(e) => return state.fail(format!("read failed: {e}")),
            },
        }
    }
}

/// Checks that several pixchat servers share one canvas (the same id and
/// size from each), as servers in cluster mode on one Redis and prefix do;
/// returns it. Servers that do not share one would each number their own
/// events, and every watcher would seem to lose the others'.
pub(crate) async fn probe_shared_canvas(servers: &Servers) -> anyhow::Result<CanvasInfo> {
    let first = probe_canvas(servers.first()).await?;
    for ep in &servers.endpoints[1..] {
        let other = probe_canvas(ep.addr).await?;
        if other != first {
            bail!(
                "the servers on {} and {} do not share one canvas (canvas {:#x} {}x{} vs {:#x} {}x{}); \
                 start them with the same --redis URL and --redis-prefix",
                servers.first(),
                ep.addr,
                first.id,
                first.width,
                first.height,
                other.id,
                other.width,
                other.height
            );
        }
    }
    Ok(first)
}

/// Runs the fan-out workload once against `servers` and reports what it
/// saw.
pub async fn run(
    target: Target,
    servers: &Servers,
    w: &Workload,
    opts: &RunOptions,
) -> anyhow::Result<RunReport> {
    w.check()?;
    check_fd_budget(w.clients + w.writers)?;
    if servers.endpoints.is_empty() {
        bail!("no server to load");
    }
    let (width, slots) = match target {
        Target::Pixchat => {
            let canvas = probe_shared_canvas(servers).await?;
            let pixels = u64::from(canvas.width) * u64::from(canvas.height);
            (u64::from(canvas.width), pixels.min(MAX_SLOTS))
        }
        // Separate Redis servers share nothing: a message published on one
        // never reaches the subscribers of another.
        Target::Redis if servers.endpoints.len() > 1 => {
            bail!("Redis pub/sub is loaded on one server only")
        }
        Target::Redis => (0, 1 << 20),
    };
    let mut notes = Vec::new();
    if slots < 4 * w.window as u64 || slots < 4096 {
        notes.push(format!(
            "the canvas has only {slots} pixels: latency slots are reused quickly; use a canvas of at least 1024x1024"
        ));
    }
    let counters = Arc::new(Counters::default());
    let sh = Arc::new(Shared {
        epoch: Epoch::now(),
        workload: w.clone(),
        addrs: servers.endpoints.iter().map(|e| e.addr).collect(),
        tables: (0..w.writers)
            .map(|_| SendTable::new(slots as usize))
            .collect(),
        width,
        slots,
        hist: Recorder::new(SHARDS.min(w.clients)),
        counters: counters.clone(),
        window_end_ns: AtomicU64::new(u64::MAX),
        tag: run_tag(),
        stop: CancellationToken::new(),
        finished: AtomicU64::new(0),
        fin: OnceLock::new(),
        finalized: CancellationToken::new(),
    });
    // Whatever happens (an error, Ctrl-C dropping this future), every task
    // of the run stops with it.
    let _stop_all = sh.stop.clone().drop_guard();
    let progress = Progress::start(
        opts.label.clone(),
        counters.clone(),
        w.clients,
        w.writers,
        w.duration,
        opts.progress,
    );
    let pids = servers.pids();
    let rss_before = procstat::sum(&procstat::sample_all(&pids));

    // Watchers join, a bounded number at a time.
    let setup_start = Instant::now();
    let setup_deadline = setup_start
        + opts
            .setup_timeout
            .unwrap_or(Duration::from_secs(60 + w.clients as u64 / 100));
    let (ready_tx, mut ready_rx) = mpsc::channel(1024);
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut watchers = Vec::with_capacity(w.clients);
    for id in 0..w.clients {
        let (sh, gate, ready) = (sh.clone(), gate.clone(), ready_tx.clone());
        let done = sh.clone();
        watchers.push(tokio::spawn(async move {
            let out = match target {
                Target::Pixchat => pixchat_watcher(id, sh, gate, ready).await,
                Target::Redis => super::redis::watcher(id, sh, gate, ready).await,
            };
            done.finished.fetch_add(1, Ordering::Relaxed);
            out
        }));
    }
    wait_ready(&mut ready_rx, w.clients, setup_deadline, "watchers").await?;

    let mut rss_joined = None;
    if let Some(settle) = opts.idle_settle {
        tokio::time::sleep(settle).await;
        rss_joined = procstat::sum(&procstat::sample_all(&pids));
    }

    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let mut writers = Vec::with_capacity(w.writers);
    for id in 0..w.writers {
        let (sh, ready, start) = (sh.clone(), ready_tx.clone(), start_rx.clone());
        writers.push(tokio::spawn(async move {
            match target {
                Target::Pixchat => pixchat_writer(id, sh, ready, start).await,
                Target::Redis => super::redis::writer(id, sh, ready, start).await,
            }
        }));
    }
    drop(ready_tx);
    wait_ready(&mut ready_rx, w.writers, setup_deadline, "writers").await?;
    let setup_s = setup_start.elapsed().as_secs_f64();

    // The measurement window.
    let t0 = Instant::now();
    let end = t0 + w.duration;
    sh.window_end_ns
        .store(sh.epoch.nanos(end), Ordering::Relaxed);
    let before = procstat::Snapshot::take(&pids, servers.redis_pid);
    let _ = counters.started.set(t0);
    let _ = start_tx.send(Some(t0));
    tokio::time::sleep_until(end.into()).await;
    let after = procstat::Snapshot::take(&pids, servers.redis_pid);
    let _ = counters.stopped.set(Instant::now());

    // Writers stop sending at the end and wait for their acknowledgements.
    let mut runs = Vec::with_capacity(w.writers);
    for h in writers {
        match tokio::time::timeout_at((end + w.drain + Duration::from_secs(5)).into(), h).await {
            Ok(Ok(Some(run))) => runs.push(run),
            Ok(Ok(None)) => bail!("a writer stopped before the run started"),
            Ok(Err(e)) => bail!("a writer task failed: {e}"),
            Err(_) => bail!("a writer did not finish in time"),
        }
    }
    let fin = Final {
        seq: runs
            .iter()
            .map(|r| r.state.max_seq.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0),
        acked: runs.iter().map(|r| r.state.accepted()).collect(),
    };
    let _ = sh.fin.set(fin);
    sh.finalized.cancel();

    // Drain: until every watcher has everything, or the deadline.
    let drain_deadline = end + w.drain;
    while sh.finished.load(Ordering::Relaxed) < w.clients as u64 && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_s = Instant::now().duration_since(end).as_secs_f64();
    sh.stop.cancel();
    let mut outcomes = Vec::with_capacity(w.clients);
    for h in watchers {
        match tokio::time::timeout(Duration::from_secs(10), h).await {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => bail!("a watcher task failed: {e}"),
            Err(_) => bail!("a watcher did not stop"),
        }
    }
    for r in &mut runs {
        if let Some(h) = r.receiver.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }
    progress.finish().await;

    let cpu = CpuUse::between(&before, &after);
    let mut report = build_report(target, w, &sh, &outcomes, &runs, &cpu, &after);
    report.per_server = per_server(servers, w, &cpu, &after);
    report.redis_pid = servers.redis_pid;
    report.setup_s = setup_s;
    report.drain_s = drain_s;
    if let Some(before) = rss_before {
        report.rss_before_kib = Some(before.rss_kib);
    }
    if let (Some(b), Some(j)) = (rss_before, rss_joined) {
        report.rss_joined_kib = Some(j.rss_kib);
        report.rss_per_connection_bytes =
            Some((j.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / w.clients as f64);
    }
    if opts.idle_settle.is_none() {
        report.rss_before_kib = None;
    } else {
        report.workload = "idle";
    }
    report.notes.extend(notes);
    Ok(report)
}

/// Waits for `n` ready messages; the first failure, or the deadline, ends
/// the run.
async fn wait_ready(
    rx: &mut mpsc::Receiver<Result<(), String>>,
    n: usize,
    deadline: Instant,
    what: &str,
) -> anyhow::Result<()> {
    for got in 0..n {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => bail!("{e} ({got} of {n} {what} had joined)"),
            Ok(None) => bail!("setup ended early ({got} of {n} {what} joined)"),
            Err(_) => bail!("setup timed out: {got} of {n} {what} joined"),
        }
    }
    Ok(())
}

fn build_report(
    target: Target,
    w: &Workload,
    sh: &Shared,
    outcomes: &[WatcherOutcome],
    runs: &[WriterRun],
    cpu: &CpuUse,
    after: &procstat::Snapshot,
) -> RunReport {
    let secs = w.duration.as_secs_f64();
    let sum = |f: fn(&WatcherOutcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    let state_sum = |f: fn(&WriterState) -> u64| runs.iter().map(|r| f(&r.state)).sum::<u64>();
    let lat = Percentiles::of(&sh.hist.merged());
    let mut notes = Vec::new();
    let mut by_end: std::collections::BTreeMap<String, u64> = Default::default();
    for o in outcomes {
        let key = match &o.end {
            End::Complete => continue,
            End::Deadline => "still behind at the drain deadline".to_string(),
            End::Bye(code) => format!("told BYE {code}"),
            End::Closed => "closed by the server".to_string(),
            End::Failed(e) => format!("failed: {e}"),
        };
        *by_end.entry(key).or_default() += 1;
    }
    for (why, n) in &by_end {
        notes.push(format!("{n} watchers {why}"));
    }
    for (id, r) in runs.iter().enumerate() {
        if let Some(e) = &r.send.error {
            notes.push(format!("writer {id}: {e}"));
        }
        if !r.send.drained {
            notes.push(format!(
                "writer {id}: placements still unanswered at the drain deadline"
            ));
        }
    }
    let unmatched = sum(|o| o.unmatched);
    if unmatched > 0 {
        notes.push(format!(
            "{unmatched} events had no matching send time (watchers far behind)"
        ));
    }
    let behind: u64 = runs.iter().map(|r| r.send.behind).sum();
    let sent: u64 = runs.iter().map(|r| r.send.sent).sum();
    let server_rss = after.server.map(|s| s.rss_kib);
    let per_s = |secs: f64| cpu.cores(secs);
    // Without CONFIG_IRQ_TIME_ACCOUNTING (the usual case) softirq time is
    // charged to the process it interrupted, so the server's and the
    // bench's times already hold their share and softirq is not subtracted.
    let servers_s = cpu.server_s.unwrap_or(0.0) + cpu.redis_s.unwrap_or(0.0);
    let other = match (cpu.machine_cores, cpu.bench_s) {
        (Some(m), Some(b)) => Some((m - per_s(servers_s) - per_s(b)).max(0.0)),
        _ => None,
    };
    RunReport {
        target,
        workload: "fanout",
        clients: w.clients,
        writers: w.writers,
        rate: w.rate,
        window: w.window,
        duration_s: secs,
        placements_per_s: state_sum(|s| s.acked_in_window.load(Ordering::Relaxed)) as f64 / secs,
        offered_per_s: (w.rate > 0.0).then_some(w.rate),
        sent_per_s: sent as f64 / secs,
        deliveries_per_s: sum(|o| o.received_in_window) as f64 / secs,
        placements: state_sum(WriterState::accepted),
        rejected: state_sum(|s| s.rejected.load(Ordering::Relaxed)),
        behind,
        deliveries: sum(|o| o.received),
        p50_us: lat.p50_us,
        p99_us: lat.p99_us,
        p999_us: lat.p999_us,
        max_us: lat.max_us,
        mean_us: lat.mean_us,
        latency_samples: lat.samples,
        unmatched,
        lost: sum(|o| o.lost) + tail_losses(outcomes, sh.fin.get()),
        out_of_order: sum(|o| o.out_of_order),
        watchers_incomplete: outcomes.iter().filter(|o| o.end != End::Complete).count() as u64,
        slow_consumers: outcomes
            .iter()
            .filter(|o| matches!(&o.end, End::Bye(c) if c == "slow_consumer"))
            .count() as u64,
        server_cpu_s: cpu.server_s,
        server_cpu_cores: cpu.server_s.map(|s| s / cpu.wall_s.max(1e-9)),
        server_rss_kib: server_rss,
        server_peak_rss_kib: after.server.map(|s| s.peak_kib),
        servers: sh.addrs.len(),
        per_server: Vec::new(),
        redis_pid: None,
        redis_cpu_s: cpu.redis_s,
        redis_cpu_cores: cpu.redis_s.map(per_s),
        redis_rss_kib: after.redis.map(|s| s.rss_kib),
        total_server_cpu_cores: cpu.server_s.map(|s| per_s(s + cpu.redis_s.unwrap_or(0.0))),
        tcp_segments_per_s: cpu.tcp_segments.map(|n| n as f64 / cpu.wall_s.max(1e-9)),
        deliveries_per_segment: cpu
            .tcp_segments
            .filter(|&n| n > 0)
            .map(|n| sum(|o| o.received_in_window) as f64 / n as f64),
        bench_cpu_s: cpu.bench_s,
        bench_cpu_cores: cpu.bench_s.map(|s| s / cpu.wall_s.max(1e-9)),
        machine_cpu_cores: cpu.machine_cores,
        softirq_cpu_cores: cpu.softirq_cores,
        other_cpu_cores: other,
        machine_cores: procstat::online_cores(),
        setup_s: 0.0,
        drain_s: 0.0,
        rss_before_kib: None,
        rss_joined_kib: None,
        rss_per_connection_bytes: None,
        notes,
    }
}

/// Each server's clients, CPU and memory.
pub(crate) fn per_server(
    servers: &Servers,
    w: &Workload,
    cpu: &CpuUse,
    after: &procstat::Snapshot,
) -> Vec<ServerUse> {
    let n = servers.endpoints.len();
    servers
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, ep)| {
            let cpu_s = cpu.servers_s.get(i).copied().flatten();
            let sample = after.servers.get(i).copied().flatten();
            ServerUse {
                addr: ep.addr.to_string(),
                pid: ep.pid,
                watchers: share(w.clients, n, i),
                writers: share(w.writers, n, i),
                cpu_s,
                cpu_cores: cpu_s.map(|s| cpu.cores(s)),
                rss_kib: sample.map(|s| s.rss_kib),
                peak_rss_kib: sample.map(|s| s.peak_kib),
            }
        })
        .collect()
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
            finalized: CancellationToken::new(),
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
