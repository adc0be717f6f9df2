//! One client's way out: a short queue of private messages (replies, DMs),
//! a cursor into the shared broadcast [`EventLog`], and the writer task that
//! merges both into the socket in the order the hub decided.
//!
//! Every queued message carries a *tag*: the log index that was the end of
//! the log when the hub queued it. The writer sends log events up to the tag
//! before the message, so a snapshot taken under the hub lock is followed by
//! exactly the events that came after it, never preceded by one of them.
//! It also carries a *gate*: the message waits until the log is published
//! (durable) up to the gate, so an `OK` for a pixel, or a snapshot that
//! contains it, never goes out before the pixel is on disk.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::canvas::Replay;
use super::log::{EventLog, Mode};
use super::storage::ChatLine;
use crate::protocol::{ErrorCode, Event, Reply, Snapshot, binary, text};

/// Replies a connection may have queued but not yet written; its reader
/// stops reading commands until the writer catches up, so a client that
/// pipelines without reading pushes back on itself, not on server memory.
pub const REPLIES_IN_FLIGHT: usize = 64;
/// Messages from others (DMs) a client may have queued before it is
/// disconnected as a slow consumer.
pub const OTHERS_IN_FLIGHT: usize = 256;
/// Batches are written once they reach this size.
const BATCH_BYTES: usize = 64 * 1024;
/// How long a closing connection may take to flush its last bytes.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// A snapshot shared by every client that asks at the same seq, with its
/// encodings built at most once each.
#[derive(Debug)]
pub struct SharedSnapshot {
    /// The canvas at one seq.
    pub snapshot: Arc<Snapshot>,
    text: OnceLock<Bytes>,
    binary: OnceLock<Bytes>,
}

impl SharedSnapshot {
    /// Wraps a snapshot.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot: Arc::new(snapshot),
            text: OnceLock::new(),
            binary: OnceLock::new(),
        }
    }

    /// The complete encoded `CANVAS` answer in `mode`.
    pub fn encoded(&self, mode: Mode) -> &Bytes {
        match mode {
            Mode::Text => self
                .text
                .get_or_init(|| text::encode_canvas(&self.snapshot)),
            Mode::Binary => self
                .binary
                .get_or_init(|| binary::encode_snapshot(&self.snapshot)),
        }
    }
}

/// A message queued for one client.
#[derive(Debug)]
pub enum Outgoing {
    /// The reply to one command.
    Reply(Reply),
    /// `JOIN` accepted: the welcome, then a snapshot or a replay.
    Join {
        /// The welcome reply.
        welcome: Reply,
        /// Binary mode without resume: the canvas follows the welcome.
        snapshot: Option<Arc<SharedSnapshot>>,
        /// Binary mode resuming: the missed events follow the welcome.
        replay: Option<Replay>,
        /// Recent chat, sent as `HISTORY` events after the rest.
        history: Vec<ChatLine>,
    },
    /// The reply to `CANVAS`.
    Canvas(Arc<SharedSnapshot>),
    /// The reply to `SYNC`: the events, then `OK <seq>`.
    Sync {
        /// Events after the client's seq.
        replay: Replay,
        /// Latest seq.
        seq: u64,
    },
    /// A private event (a DM, a goodbye).
    Event(Event),
    /// Stop broadcast delivery here: the client left. Events up to the tag
    /// are still sent, because replies queued before it may follow them.
    Unsubscribe,
    /// Write what is queued, then close the connection.
    Close,
}

impl Outgoing {
    fn encode(&self, mode: Mode, out: &mut BytesMut) {
        let reply = |r: &Reply, out: &mut BytesMut| match mode {
            Mode::Text => text::encode_reply(r, out),
            Mode::Binary => binary::encode_reply(r, out),
        };
        let event = |e: &Event, out: &mut BytesMut| match mode {
            Mode::Text => text::encode_event(e, out),
            Mode::Binary => binary::encode_event(e, out),
        };
        match self {
            Outgoing::Reply(r) => reply(r, out),
            Outgoing::Join {
                welcome,
                snapshot,
                replay,
                history,
            } => {
                reply(welcome, out);
                if let Some(s) = snapshot {
                    out.extend_from_slice(s.encoded(mode));
                }
                for p in replay.iter().flat_map(Replay::iter) {
                    event(&Event::Pixel(p.clone()), out);
                }
                for line in history {
                    event(
                        &Event::History {
                            unix_ms: line.unix_ms,
                            from: line.from.clone(),
                            text: line.text.clone(),
                        },
                        out,
                    );
                }
            }
            Outgoing::Canvas(s) => out.extend_from_slice(s.encoded(mode)),
            Outgoing::Sync { replay, seq } => {
                for p in replay.iter() {
                    event(&Event::Pixel(p.clone()), out);
                }
                reply(&Reply::Sync { seq: *seq }, out);
            }
            Outgoing::Event(e) => event(e, out),
            Outgoing::Unsubscribe | Outgoing::Close => {}
        }
    }
}

/// A queued message with its place in the order (see the module docs).
#[derive(Debug)]
struct Entry {
    tag: u64,
    gate: u64,
    item: Outgoing,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Entry>,
    /// Next log index to send; `None` until the client joins.
    cursor: Option<u64>,
    others: usize,
}

/// See the module docs.
#[derive(Debug)]
pub struct Outbox {
    mode: Mode,
    state: Mutex<State>,
    wake: Notify,
    reply_slots: Semaphore,
    /// Cancelled when the connection must end at once (lagged, write
    /// failed): the writer stops without flushing.
    pub kill: CancellationToken,
    /// Cancelled when the reader must stop (kicked): what is queued is
    /// still written, then the connection closes.
    pub stop: CancellationToken,
}

/// Why the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterEnd {
    /// Everything queued was written and the connection closed.
    Closed,
    /// The client fell behind the broadcast log.
    Lagged,
    /// The socket failed.
    Failed,
}

impl Outbox {
    /// An outbox for a connection speaking `mode`.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            reply_slots: Semaphore::new(REPLIES_IN_FLIGHT),
            kill: CancellationToken::new(),
            stop: CancellationToken::new(),
        }
    }

    /// The connection's wire mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("outbox lock poisoned")
    }

    /// Waits until another reply may be queued. Call once per command
    /// before handling it; the writer gives the slot back after writing
    /// the reply.
    pub async fn reserve_reply(&self) {
        if let Ok(permit) = self.reply_slots.acquire().await {
            permit.forget();
        }
    }

    /// Queues this client's own reply (a slot was reserved), after the log
    /// events before `tag` and once they are published.
    pub fn push_reply(&self, tag: u64, item: Outgoing) {
        self.push_gated(tag, tag, item);
    }

    /// Like [`Outbox::push_reply`], but the reply also waits until the log
    /// is published up to `gate` (events it depends on, appended after it).
    pub fn push_gated(&self, tag: u64, gate: u64, item: Outgoing) {
        self.lock().queue.push_back(Entry { tag, gate, item });
        self.wake.notify_one();
    }

    /// Queues a message from someone else. Returns false, and disconnects
    /// the client as a slow consumer, when too many are already waiting.
    pub fn push_other(&self, tag: u64, item: Outgoing) -> bool {
        {
            let mut st = self.lock();
            if st.others >= OTHERS_IN_FLIGHT {
                drop(st);
                self.kill.cancel();
                return false;
            }
            st.others += 1;
            st.queue.push_back(Entry {
                tag,
                gate: tag,
                item,
            });
        }
        self.wake.notify_one();
        true
    }

    /// Tells the client why, and ends the connection after what is queued
    /// (an admin kicked it).
    pub fn evict(&self, tag: u64, bye: Event) {
        {
            let mut st = self.lock();
            st.queue.push_back(Entry {
                tag,
                gate: tag,
                item: Outgoing::Event(bye),
            });
            st.queue.push_back(Entry {
                tag,
                gate: tag,
                item: Outgoing::Close,
            });
        }
        self.stop.cancel();
        self.wake.notify_one();
    }

    /// Starts broadcast delivery at log index `cursor` (the client joined).
    pub fn subscribe(&self, cursor: u64) {
        self.lock().cursor = Some(cursor);
        self.wake.notify_one();
    }

    /// Stops broadcast delivery after log index `tag` (the client left).
    pub fn unsubscribe(&self, tag: u64) {
        self.lock().queue.push_back(Entry {
            tag,
            gate: tag,
            item: Outgoing::Unsubscribe,
        });
        self.wake.notify_one();
    }

    /// Moves what is due into `out`, up to about one batch.
    fn gather(&self, log: &EventLog, out: &mut BytesMut) -> Result<Gathered, Lagged> {
        let mut st = self.lock();
        let mut replies = 0;
        let mut done = Gathered::default();
        loop {
            if out.len() >= BATCH_BYTES {
                done.more = true;
                break;
            }
            let visible = log.visible();
            let (target, gate) = match st.queue.front() {
                Some(e) => (e.tag.min(visible), e.gate),
                None => (visible, 0),
            };
            if let Some(cursor) = st.cursor.filter(|&c| c < target) {
                let budget = BATCH_BYTES - out.len();
                let reached = log.copy(self.mode, cursor, target, budget, out)?;
                st.cursor = Some(reached);
                if reached < target {
                    done.more = true;
                    break;
                }
            }
            // A gated message waits for the journal; the writer wakes again
            // when more of the log is published.
            if gate > visible {
                break;
            }
            let Some(Entry { item, .. }) = st.queue.pop_front() else {
                break;
            };
            match item {
                Outgoing::Event(_) => st.others = st.others.saturating_sub(1),
                Outgoing::Unsubscribe => st.cursor = None,
                Outgoing::Close => {}
                _ => replies += 1,
            }
            item.encode(self.mode, out);
            if matches!(item, Outgoing::Close) {
                done.closing = true;
                break;
            }
        }
        drop(st);
        if replies > 0 {
            self.reply_slots.add_permits(replies);
        }
        Ok(done)
    }

    fn cursor(&self) -> Option<u64> {
        self.lock().cursor
    }

    /// Whether more of the log being published could give the writer work:
    /// it is subscribed, or its next message waits for the journal.
    fn waits_on_log(&self, log: &EventLog) -> bool {
        let st = self.lock();
        st.cursor.is_some() || st.queue.front().is_some_and(|e| e.gate > log.visible())
    }
}

#[derive(Debug)]
struct Lagged;

impl From<super::log::Lagged> for Lagged {
    fn from(_: super::log::Lagged) -> Self {
        Lagged
    }
}

/// What one `gather` left behind.
#[derive(Debug, Default)]
struct Gathered {
    /// The queue held `Close`: write and stop.
    closing: bool,
    /// The batch filled up before everything due was taken.
    more: bool,
}

/// Resolves once the log no longer holds the event at `cursor`.
async fn passed_by(log: &EventLog, cursor: Option<u64>) {
    let Some(cursor) = cursor else {
        return std::future::pending().await;
    };
    let mut rx = log.subscribe();
    while log.first() <= cursor {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Runs until the outbox is closed, the client lags, or the socket fails.
pub async fn run_writer(
    mut sock: OwnedWriteHalf,
    outbox: Arc<Outbox>,
    log: Arc<EventLog>,
) -> WriterEnd {
    let mut log_rx = log.subscribe();
    let mut buf = BytesMut::new();
    let end = loop {
        log_rx.borrow_and_update();
        let Gathered { closing, more } = match outbox.gather(&log, &mut buf) {
            Ok(g) => g,
            Err(Lagged) => {
                buf.clear();
                let bye = Outgoing::Event(Event::Bye {
                    code: ErrorCode::SlowConsumer,
                    text: "you fell too far behind the event stream; reconnect and SYNC".into(),
                });
                bye.encode(outbox.mode, &mut buf);
                // The peer is not reading, so this may never get through.
                let _ = tokio::time::timeout(CLOSE_FLUSH, sock.write_all(&buf)).await;
                break WriterEnd::Lagged;
            }
        };
        if !buf.is_empty() {
            let cursor = outbox.cursor();
            let written = tokio::select! {
                r = sock.write_all(&buf) => Ok(r.is_ok()),
                // A killed connection must not wait for a peer that never reads.
                _ = outbox.kill.cancelled(), if !closing => Ok(false),
                // Nor may a peer that stopped reading hold its place in the
                // log: once the window passes it, it is dropped at once.
                _ = passed_by(&log, cursor), if cursor.is_some() => Err(Lagged),
            };
            match written {
                Ok(true) => {}
                Ok(false) => break WriterEnd::Failed,
                Err(Lagged) => break WriterEnd::Lagged,
            }
            buf.clear();
        }
        if closing {
            break WriterEnd::Closed;
        }
        if more {
            continue;
        }
        // An idle connection holds no buffer: with tens of thousands of
        // watchers, a few KiB each is most of the server's memory.
        buf = BytesMut::new();
        let listen = outbox.waits_on_log(&log);
        tokio::select! {
            _ = outbox.wake.notified() => {}
            r = log_rx.changed(), if listen => {
                if r.is_err() {
                    break WriterEnd::Closed;
                }
            }
            _ = outbox.kill.cancelled() => break WriterEnd::Failed,
        }
    };
    let _ = tokio::time::timeout(CLOSE_FLUSH, sock.shutdown()).await;
    outbox.kill.cancel();
    end
}
