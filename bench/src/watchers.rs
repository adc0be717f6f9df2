//! The watchers' receiving side: a few threads (by default half the
//! cores), each waiting on many
//! watcher sockets at once (epoll, through mio) and reading every ready
//! socket into one large buffer, where each whole frame is parsed in place;
//! only the tail of a frame cut by the read is kept per watcher.
//!
//! Hand-written rather than a tokio task per watcher, for speed: a task per
//! socket costs a wake-up, a lock and an extra read that finds nothing
//! (EAGAIN) for every few events, which at 1,000 watchers made the bench's
//! receiving side cost more CPU than the server it measured.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tokio::sync::oneshot;

use super::latency::Tally;
use super::shared::{End, Final, Position, Shared, WatcherOutcome};

/// Each thread's read buffer: a whole socket's backlog in one read.
pub const READ_BUFFER: usize = 256 * 1024;
/// How often an idle thread looks at the run's state (stop, writers done).
const POLL_TICK: Duration = Duration::from_millis(10);

/// What one look at a watcher's bytes found.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Bytes of whole frames consumed.
    pub used: usize,
    /// New events counted.
    pub got: u64,
    /// The stream ended (`BYE`, a broken frame).
    pub end: Option<End>,
    /// Bytes to send back (a `PING` for the server's `KEEPALIVE`, so an
    /// idle watcher is not dropped as idle).
    pub reply: Option<&'static [u8]>,
}

/// One target's way of reading a watcher's stream.
pub(crate) trait Watch: Send + 'static {
    /// Counts every whole message at the start of `data` (received at
    /// `now`, epoch nanoseconds) and says how many bytes they took.
    fn on_data(
        &mut self,
        data: &[u8],
        sh: &Shared,
        now: u64,
        hist: &mut Tally,
        out: &mut WatcherOutcome,
    ) -> Batch;
    /// True once it has everything the writers placed.
    fn complete(&self, fin: &Final) -> bool;
    /// How far it got, for the end-of-run tally.
    fn position(&self) -> Position;
}

/// A joined watcher on its way to a pool thread.
struct Arrival<W> {
    stream: std::net::TcpStream,
    /// Bytes read while joining and not parsed yet.
    unparsed: Vec<u8>,
    watch: W,
}

/// Hands joined watchers to the pool's threads; cheap to clone.
pub(crate) struct PoolHandle<W> {
    senders: Arc<Vec<mpsc::Sender<Arrival<W>>>>,
}

impl<W> Clone for PoolHandle<W> {
    fn clone(&self) -> Self {
        Self {
            senders: self.senders.clone(),
        }
    }
}

impl<W: Watch> PoolHandle<W> {
    /// Gives watcher `id`'s joined connection (and what was read but not
    /// parsed while joining) to its thread.
    pub fn add(
        &self,
        id: usize,
        stream: tokio::net::TcpStream,
        unparsed: &[u8],
        watch: W,
    ) -> io::Result<()> {
        let arrival = Arrival {
            stream: stream.into_std()?,
            unparsed: unparsed.to_vec(),
            watch,
        };
        self.senders[id % self.senders.len()]
            .send(arrival)
            .map_err(|_| io::Error::other("the watcher thread has stopped"))
    }
}

/// The pool's threads, to collect their watchers' outcomes at the end.
pub(crate) struct Pool {
    results: Vec<oneshot::Receiver<Vec<WatcherOutcome>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads` threads (at least one) for the watchers of `sh`'s
    /// run. A thread returns once the run stops, or once every watcher it
    /// was given has ended and no more can come.
    pub fn start<W: Watch>(
        sh: &Arc<Shared>,
        threads: usize,
    ) -> anyhow::Result<(Self, PoolHandle<W>)> {
        let mut senders = Vec::new();
        let mut pool = Pool {
            results: Vec::new(),
            threads: Vec::new(),
        };
        for index in 0..threads.max(1) {
            let (tx, rx) = mpsc::channel();
            let (done_tx, done_rx) = oneshot::channel();
            let poll = Poll::new().context("create an epoll instance")?;
            let sh = sh.clone();
            let handle = std::thread::Builder::new()
                .name(format!("watchers-{index}"))
                .spawn(move || {
                    let outcomes = serve(index, &sh, poll, rx);
                    let _ = done_tx.send(outcomes);
                })
                .context("start a watcher thread")?;
            senders.push(tx);
            pool.results.push(done_rx);
            pool.threads.push(handle);
        }
        let handle = PoolHandle {
            senders: Arc::new(senders),
        };
        Ok((pool, handle))
    }

    /// Waits for every thread's outcomes (after the run stopped, or every
    /// handle is gone).
    pub async fn finish(self, within: Duration) -> anyhow::Result<Vec<WatcherOutcome>> {
        let mut all = Vec::new();
        for rx in self.results {
            match tokio::time::timeout(within, rx).await {
                Ok(Ok(outcomes)) => all.extend(outcomes),
                Ok(Err(_)) => bail!("a watcher thread failed"),
                Err(_) => bail!("a watcher thread did not stop"),
            }
        }
        for t in self.threads {
            // Each has sent its outcomes, so it is returning.
            let _ = t.join();
        }
        Ok(all)
    }
}

/// One watcher on a pool thread.
struct Entry<W> {
    stream: TcpStream,
    /// The start of a frame that the last read cut off.
    carry: Vec<u8>,
    watch: W,
    out: WatcherOutcome,
}

impl<W: Watch> Entry<W> {
    /// Parses `data` (the carry and what was just read), keeps the cut-off
    /// tail, and says whether the watcher is done.
    fn feed(&mut self, data: &[u8], now: u64, sh: &Shared, hist: &mut Tally) -> Option<End> {
        let batch = self.watch.on_data(data, sh, now, hist, &mut self.out);
        if batch.got > 0 {
            self.out.received += batch.got;
            if sh.in_window(now) {
                self.out.received_in_window += batch.got;
            }
            sh.counters
                .deliveries
                .fetch_add(batch.got, Ordering::Relaxed);
        }
        self.carry.clear();
        self.carry.extend_from_slice(&data[batch.used..]);
        if let Some(reply) = batch.reply {
            // A few bytes into an idle connection's empty send buffer: the
            // write completes at once or the connection is gone.
            if let Err(e) = self.stream.write_all(reply) {
                return Some(End::Failed(format!("write: {e}")));
            }
        }
        batch.end.or_else(|| self.completion(sh))
    }

    fn completion(&self, sh: &Shared) -> Option<End> {
        sh.fin
            .get()
            .filter(|fin| self.watch.complete(fin))
            .map(|_| End::Complete)
    }

    /// Reads everything the socket holds, one large read at a time.
    fn service(&mut self, buf: &mut Vec<u8>, sh: &Shared, hist: &mut Tally) -> Option<End> {
        loop {
            let carry = self.carry.len();
            if carry * 2 > buf.len() {
                // A frame longer than half the buffer: room to complete it.
                buf.resize(carry * 2, 0);
            }
            buf[..carry].copy_from_slice(&self.carry);
            let want = buf.len() - carry;
            let n = match self.stream.read(&mut buf[carry..]) {
                Ok(0) => return Some(End::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(End::Failed(e.to_string())),
            };
            let now = sh.epoch.now_nanos();
            if let Some(end) = self.feed(&buf[..carry + n], now, sh, hist) {
                return Some(end);
            }
            if n < want {
                // A short read emptied the socket: no read that would only
                // find EAGAIN. Data arriving later raises a new edge.
                return None;
            }
        }
    }

    fn end(mut self, end: End, poll: &Poll, sh: &Shared) -> WatcherOutcome {
        let _ = poll.registry().deregister(&mut self.stream);
        if end == End::Complete {
            sh.counters.watchers_done.fetch_add(1, Ordering::Relaxed);
        }
        sh.finished.fetch_add(1, Ordering::Relaxed);
        self.out.end = end;
        self.out.position = self.watch.position();
        self.out
    }
}

/// One pool thread: takes in watchers, reads whichever are ready, ends
/// each when it has everything, is told `BYE`, or the run stops.
fn serve<W: Watch>(
    index: usize,
    sh: &Shared,
    mut poll: Poll,
    rx: mpsc::Receiver<Arrival<W>>,
) -> Vec<WatcherOutcome> {
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut hist = Tally::default();
    let mut live: Vec<Option<Entry<W>>> = Vec::new();
    let mut live_count = 0usize;
    let mut ended = Vec::new();
    let mut arrivals_open = true;
    let mut fin_seen = false;
    let mut fault = None;
    while !sh.stop.is_cancelled() && (arrivals_open || live_count > 0) {
        if let Err(e) = poll.poll(&mut events, Some(POLL_TICK)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            fault = Some(format!("epoll failed: {e}"));
            break;
        }
        loop {
            let a = match rx.try_recv() {
                Ok(a) => a,
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    arrivals_open = false;
                    break;
                }
            };
            let token = Token(live.len());
            let mut entry = Entry {
                stream: TcpStream::from_std(a.stream),
                carry: Vec::new(),
                watch: a.watch,
                out: WatcherOutcome::default(),
            };
            // Registered before the first read, so nothing that arrives
            // after it goes unnoticed.
            let end = match poll
                .registry()
                .register(&mut entry.stream, token, Interest::READABLE)
            {
                Err(e) => Some(End::Failed(format!("epoll register: {e}"))),
                Ok(()) => {
                    let now = sh.epoch.now_nanos();
                    entry
                        .feed(&a.unparsed, now, sh, &mut hist)
                        .or_else(|| entry.service(&mut buf, sh, &mut hist))
                }
            };
            match end {
                Some(end) => {
                    live.push(None);
                    ended.push(entry.end(end, &poll, sh));
                }
                None => {
                    live.push(Some(entry));
                    live_count += 1;
                }
            }
        }
        for ev in events.iter() {
            let slot = &mut live[ev.token().0];
            let Some(entry) = slot.as_mut() else { continue };
            if let Some(end) = entry.service(&mut buf, sh, &mut hist) {
                let entry = slot.take().expect("checked");
                live_count -= 1;
                ended.push(entry.end(end, &poll, sh));
            }
        }
        if !fin_seen && sh.fin.get().is_some() {
            // The writers are done: watchers that already have everything
            // and hear nothing more end here.
            fin_seen = true;
            for slot in &mut live {
                if slot.as_ref().and_then(|e| e.completion(sh)).is_some() {
                    let entry = slot.take().expect("checked");
                    live_count -= 1;
                    ended.push(entry.end(End::Complete, &poll, sh));
                }
            }
        }
    }
    let last = match fault {
        Some(f) => End::Failed(f),
        None => End::Deadline,
    };
    for entry in live.into_iter().flatten() {
        ended.push(entry.end(last.clone(), &poll, sh));
    }
    // Arrivals that came too late to be served.
    while let Ok(a) = rx.try_recv() {
        sh.finished.fetch_add(1, Ordering::Relaxed);
        ended.push(WatcherOutcome {
            end: End::Deadline,
            position: a.watch.position(),
            ..WatcherOutcome::default()
        });
    }
    let mut shard = sh
        .hist
        .shard(index)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let _ = shard.add(hist.into_histogram());
    ended
}
