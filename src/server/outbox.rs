//! One client's way out: a short queue of private messages (replies, DMs),
//! a cursor into the shared broadcast [`BroadcastRing`], and the socket they are
//! merged into, in the order the hub decided.
//!
//! Anyone may [`Outbox::flush`]: the connection's reader right after it
//! queued replies, the fan-out pacer when the watcher's write slot comes up,
//! the writer task when the socket drains. A flush gathers what is due and
//! writes it with a non-blocking vectored write, so no task has to be woken
//! to make one. One flush writes at a time (the others find it busy and
//! leave the work to it), and the socket write itself happens outside the
//! outbox lock, so the hub queueing a message for this client never waits
//! for a socket. Only when the kernel buffer is full does the connection's
//! writer task take over, waiting for the socket to drain (or for the
//! client to fall out of the broadcast window).
//!
//! What is gathered but not yet written ([`Pending`]) holds big shared
//! things by reference: a snapshot and whole blocks of `SYNC` history are
//! encoded once and shared by every client that asks, so a client that
//! asks and never reads pins a reference, not a copy.
//!
//! Every queued message carries a *tag*: the ring index that was the end of
//! the ring when the hub queued it. The writer sends log events up to the tag
//! before the message, so a snapshot taken under the hub lock is followed by
//! exactly the events that came after it, never preceded by one of them.
//! It also carries a *gate*: the message waits until the ring is published
//! (durable) up to the gate, so an `OK` for a pixel, or a snapshot that
//! contains it, never goes out before the pixel is on disk.
//!
//! A client that falls behind (out of the broadcast window, or too many DMs
//! queued) is told `BYE slow_consumer` as the last thing it reads: what was
//! queued after the last whole frame the socket accepted is dropped, the
//! goodbye takes its place, and the kernel's send buffer is enlarged to make
//! room for it, since the client is not reading.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use super::sock::Sock;
use bytes::{Buf, Bytes, BytesMut};
use futures::task::AtomicWaker;
use tokio::sync::Notify;

use super::broadcast::BroadcastRing;
use super::canvas::{Frozen, Replay, ReplayPart, encode_pixel};
use super::storage::ChatLine;
use crate::protocol::Mode;
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
/// Most bytes one flush writes before it lets the caller move on, so one
/// client with a big backlog does not hold up the pacer's round.
const FLUSH_BYTES: usize = 256 * 1024;
/// Chunks one vectored write takes at most.
const MAX_IOV: usize = 64;
/// How long a closing connection may take to flush its last bytes.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// Send buffer added beyond the goodbye itself, for the kernel's
/// per-packet bookkeeping.
const GOODBYE_ROOM: usize = 64 * 1024;

/// A snapshot shared by every client that asks at the same seq, with its
/// encodings built at most once each, by the first writer that sends it
/// (outside the hub lock, where the snapshot was only frozen).
#[derive(Debug)]
pub struct SharedSnapshot {
    seq: u64,
    frozen: Option<Frozen>,
    snapshot: OnceLock<Snapshot>,
    text: OnceLock<Bytes>,
    binary: OnceLock<Bytes>,
}

impl SharedSnapshot {
    /// The canvas as frozen at one seq; the copy is made when first sent.
    pub fn frozen(frozen: Frozen) -> Self {
        Self {
            seq: frozen.seq(),
            frozen: Some(frozen),
            snapshot: OnceLock::new(),
            text: OnceLock::new(),
            binary: OnceLock::new(),
        }
    }

    /// A snapshot already made.
    pub fn built(snapshot: Snapshot) -> Self {
        Self {
            seq: snapshot.seq,
            frozen: None,
            snapshot: OnceLock::from(snapshot),
            text: OnceLock::new(),
            binary: OnceLock::new(),
        }
    }

    /// The seq it shows.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn snapshot(&self) -> &Snapshot {
        self.snapshot.get_or_init(|| {
            self.frozen
                .as_ref()
                .expect("a snapshot not built is frozen")
                .snapshot()
        })
    }

    /// The complete encoded `CANVAS` answer in `mode`.
    pub fn encoded(&self, mode: Mode) -> &Bytes {
        match mode {
            Mode::Text => self
                .text
                .get_or_init(|| text::encode_canvas(self.snapshot())),
            Mode::Binary => self
                .binary
                .get_or_init(|| binary::encode_snapshot(self.snapshot())),
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
    /// Bytes sent as they are, in order with the replies: a telnet
    /// negotiation answer. Counts as a reply.
    Raw(Bytes),
    /// A reply still being worked out elsewhere (cluster mode: Redis is
    /// placing the pixel). It holds its place in the order; what follows
    /// waits until it is [`Deferred::set`].
    Deferred(Arc<Deferred>),
    /// Stop broadcast delivery here: the client left. Events up to the tag
    /// are still sent, because replies queued before it may follow them.
    Unsubscribe,
    /// Write what is queued, then close the connection.
    Close,
}

impl Outgoing {
    fn encode(&self, mode: Mode, out: &mut Pending) {
        let reply = |r: &Reply, out: &mut BytesMut| match mode {
            Mode::Text => text::encode_reply(r, out),
            Mode::Binary => binary::encode_reply(r, out),
        };
        let event = |e: &Event, out: &mut BytesMut| match mode {
            Mode::Text => text::encode_event(e, out),
            Mode::Binary => binary::encode_event(e, out),
        };
        match self {
            Outgoing::Reply(r) => reply(r, &mut out.tail),
            Outgoing::Join {
                welcome,
                snapshot,
                replay,
                history,
            } => {
                reply(welcome, &mut out.tail);
                if let Some(s) = snapshot {
                    out.push_shared(s.encoded(mode).clone());
                }
                if let Some(replay) = replay {
                    out.push_replay(mode, replay);
                }
                for line in history {
                    event(
                        &Event::History {
                            unix_ms: line.unix_ms,
                            from: line.from.clone(),
                            text: line.text.clone(),
                        },
                        &mut out.tail,
                    );
                }
            }
            Outgoing::Canvas(s) => out.push_shared(s.encoded(mode).clone()),
            Outgoing::Sync { replay, seq } => {
                out.push_replay(mode, replay);
                reply(&Reply::Sync { seq: *seq }, &mut out.tail);
            }
            Outgoing::Event(e) => event(e, &mut out.tail),
            Outgoing::Raw(bytes) => out.tail.extend_from_slice(bytes),
            Outgoing::Deferred(d) => {
                if let Some(r) = d.take() {
                    reply(&r, &mut out.tail);
                }
            }
            Outgoing::Unsubscribe | Outgoing::Close => {}
        }
    }
}

/// Bytes gathered for the socket and not yet taken by it: small messages
/// copied into `tail`, big shared ones (a snapshot, whole blocks of
/// history) queued by reference. Every chunk holds whole frames, except
/// that the first may start inside a frame the socket took part of: then
/// `head_rest` bytes of it finish that frame.
#[derive(Debug, Default)]
struct Pending {
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    queued: usize,
    tail: BytesMut,
    head_rest: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.tail.is_empty()
    }

    fn len(&self) -> usize {
        self.queued + self.tail.len()
    }

    /// Queues shared bytes after what is gathered.
    fn push_shared(&mut self, bytes: Bytes) {
        self.seal();
        if !bytes.is_empty() {
            self.queued += bytes.len();
            self.chunks.push_back(bytes);
        }
    }

    /// Queues a replay: whole blocks by reference to their shared encoding,
    /// the rest encoded here.
    fn push_replay(&mut self, mode: Mode, replay: &Replay) {
        for part in replay.parts() {
            match part {
                ReplayPart::Whole(block) => self.push_shared(block.encoded(mode).clone()),
                ReplayPart::Some(pixels) => {
                    for p in pixels {
                        encode_pixel(mode, p, &mut self.tail);
                    }
                }
            }
        }
    }

    /// Moves the small bytes gathered so far into the chunks.
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            let bytes = self.tail.split().freeze();
            self.queued += bytes.len();
            self.chunks.push_back(bytes);
        }
    }

    /// The first chunks, for one vectored write.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        self.chunks
            .iter()
            .take(MAX_IOV)
            .map(|c| IoSlice::new(c))
            .collect()
    }

    /// The socket took `n` bytes.
    fn advance(&mut self, mode: Mode, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let first = self
                .chunks
                .front_mut()
                .expect("no more written than queued");
            if n >= first.len() {
                n -= first.len();
                self.chunks.pop_front();
                self.head_rest = 0;
            } else {
                // Only on a partial write, so a full one costs nothing extra.
                self.head_rest = frame_rest(mode, first, self.head_rest, n);
                first.advance(n);
                n = 0;
            }
        }
    }

    /// Keeps only what finishes the frame the socket took part of.
    fn cut_to_whole_frames(&mut self) {
        let head = self
            .chunks
            .pop_front()
            .map(|c| c.slice(..self.head_rest.min(c.len())));
        self.chunks.clear();
        self.tail = BytesMut::new();
        self.queued = 0;
        self.head_rest = 0;
        if let Some(head) = head {
            self.push_shared(head);
        }
    }
}

/// A reply that arrives later; see [`Outgoing::Deferred`].
#[derive(Debug, Default)]
pub struct Deferred(Mutex<Option<Reply>>);

impl Deferred {
    /// Fills in the reply; the outbox must then be woken to send it.
    pub fn set(&self, reply: Reply) {
        *self.0.lock().expect("deferred lock poisoned") = Some(reply);
    }

    fn is_ready(&self) -> bool {
        self.0.lock().expect("deferred lock poisoned").is_some()
    }

    fn take(&self) -> Option<Reply> {
        self.0.lock().expect("deferred lock poisoned").take()
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
    /// Next ring index to send; `None` until the client joins.
    cursor: Option<u64>,
    others: usize,
    /// Gathered but not yet accepted by the socket, when a write took only
    /// part of it; never empty. A flush gathers on its own stack, so an
    /// idle connection holds none of it.
    pending: Option<Box<Pending>>,
    /// A flush is writing `pending` (taken out of the lock meanwhile); the
    /// others leave the work to it.
    writing: bool,
    /// The socket's buffer is full: only the writer task writes, once it
    /// drains.
    blocked: bool,
    /// `Close` was gathered: once `pending` is written, shut down.
    closing: bool,
    /// The connection is over (closed, lagged or failed).
    done: bool,
    /// It is over because the client fell out of the broadcast window.
    lagged: bool,
    /// [`stall_clock`] reading since which the client has been more than
    /// the ring's hold lag behind; 0 while it is not.
    behind_since_ms: u32,
}

/// See the module docs.
///
/// The writer task exists only while it has something to do (a full
/// socket, a backlog, a message from someone else, a reply waiting for the
/// journal, the end of the connection): an idle connection has none.
#[derive(Debug)]
pub struct Outbox {
    mode: Mode,
    state: Mutex<State>,
    sock: Arc<Sock>,
    ring: Arc<BroadcastRing>,
    /// Itself, to start its writer from wherever work is queued.
    this: Weak<Outbox>,
    wake: Notify,
    /// A writer task is running (or starting).
    writing_task: AtomicBool,
    /// Replies the reader may still queue; see [`REPLIES_IN_FLIGHT`].
    reply_slots: AtomicUsize,
    /// Why the connection's task should stop what it waits for; see
    /// [`Outbox::interrupted`].
    ending: AtomicU8,
    /// The connection's task, woken when `ending` changes or the writer
    /// ends. Kept here rather than in a future it awaits, so waiting for
    /// either costs an idle connection nothing.
    task: AtomicWaker,
    /// How the writer ended, once it has.
    end: Mutex<Option<WriterEnd>>,
    /// When the connection was accepted and when its peer was last heard
    /// (binary mode), on [`stall_clock`], and what the silence watch did
    /// about it ([`STARTED`], [`PINGED`], ...): kept here, where the one
    /// watch for all connections reads them ([`Outbox::silence`]), instead
    /// of a timer in every connection.
    connected: u32,
    heard: AtomicU32,
    watch: AtomicU8,
}

/// The connection joined or gave the password: the join timeout is over.
const STARTED: u8 = 1;
/// Asked for a sign of life (a keepalive) since it was last heard.
const PINGED: u8 = 2;
/// Closed for not joining within the join timeout.
const JOIN_TIMED_OUT: u8 = 4;
/// Closed for silence.
const IDLE_TIMED_OUT: u8 = 8;

/// What the silence watch should do about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Silence {
    /// Nothing now.
    Fine,
    /// Half the idle timeout without a word: ask for a sign of life.
    Ping,
    /// The whole idle timeout, although asked.
    Gone,
    /// Neither joined nor authenticated within the join timeout.
    NotStarted,
}

/// End at once: the writer ended, or a cross-protocol request.
pub const KILL: u8 = 1;
/// Stop reading; what is queued is still written (kicked).
pub const STOP: u8 = 2;
/// The server is shutting down.
pub const SHUTDOWN: u8 = 4;

/// Why the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterEnd {
    /// Everything queued was written and the connection closed.
    Closed,
    /// The client fell behind the broadcast ring.
    Lagged,
    /// The socket failed.
    Failed,
}

/// A watcher as a pacer sees it at a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Census {
    /// It no longer watches: left, or the connection is over.
    Gone,
    /// It watches.
    Watching {
        /// A flush could write something now.
        due: bool,
        /// Its place in the ring, while producers should wait for it: it
        /// is within the ring's hold lag of the end, or has been behind
        /// for less than [`STALL_GRACE_MS`].
        holds: Option<u64>,
    },
}

/// How long a watcher may stay more than the hold lag behind and still hold
/// producers back: a client that reads, however slowly, no longer slows
/// everyone after this, but one that reads as fast as it can always
/// catches up within it.
pub const STALL_GRACE_MS: u32 = 2_000;

/// Milliseconds on a clock that starts with the process, as kept in a
/// watcher's state (32 bits, wrapping after 49 days: only differences of a
/// few seconds are taken).
pub fn stall_clock() -> u32 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u32
}

/// What a flush left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing is due now.
    Idle,
    /// The byte budget ran out with more due: flush again.
    More,
    /// The socket is full; the writer task waits for it.
    Blocked,
    /// Everything is written and the connection should shut down.
    Close,
    /// The client fell out of the broadcast window.
    Lagged,
    /// The socket failed or the connection is over.
    Done,
}

impl Outbox {
    /// An outbox writing to `sock` in `mode`, sending events from `ring`.
    /// `connected` is when the connection was accepted, on [`stall_clock`].
    pub fn new(mode: Mode, sock: Arc<Sock>, ring: Arc<BroadcastRing>, connected: u32) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            mode,
            state: Mutex::new(State::default()),
            sock,
            ring,
            this: this.clone(),
            wake: Notify::new(),
            writing_task: AtomicBool::new(false),
            reply_slots: AtomicUsize::new(REPLIES_IN_FLIGHT),
            ending: AtomicU8::new(0),
            task: AtomicWaker::new(),
            end: Mutex::new(None),
            connected,
            heard: AtomicU32::new(stall_clock()),
            watch: AtomicU8::new(0),
        })
    }

    /// The peer sent something: its silence starts over. Binary mode only
    /// (text sessions have no idle timeout).
    pub fn heard(&self) {
        if self.mode != Mode::Binary {
            return;
        }
        self.heard.store(stall_clock(), Ordering::Relaxed);
        // A plain load first: the read path pays a store, not a
        // read-modify-write, for every command.
        if self.watch.load(Ordering::Relaxed) & PINGED != 0 {
            self.watch.fetch_and(!PINGED, Ordering::Relaxed);
        }
    }

    /// The connection joined or gave the password.
    pub fn started(&self) {
        if self.watch.load(Ordering::Relaxed) & STARTED == 0 {
            self.watch.fetch_or(STARTED, Ordering::Relaxed);
        }
    }

    /// What the silence watch should do about this connection at `now`
    /// (on [`stall_clock`]), given the idle and join timeouts in ms (0:
    /// none). Only binary connections have an idle timeout: only their
    /// libraries answer keepalives.
    pub(crate) fn silence(&self, now: u32, idle_ms: u32, join_ms: u32) -> Silence {
        let watch = self.watch.load(Ordering::Relaxed);
        if watch & (JOIN_TIMED_OUT | IDLE_TIMED_OUT) != 0 {
            return Silence::Fine;
        }
        if join_ms > 0 && watch & STARTED == 0 && now.wrapping_sub(self.connected) >= join_ms {
            return Silence::NotStarted;
        }
        if idle_ms == 0 || self.mode != Mode::Binary {
            return Silence::Fine;
        }
        let quiet = now.wrapping_sub(self.heard.load(Ordering::Relaxed));
        if watch & PINGED != 0 {
            if quiet >= idle_ms {
                return Silence::Gone;
            }
        } else if quiet >= idle_ms / 2 {
            return Silence::Ping;
        }
        Silence::Fine
    }

    /// Notes what the silence watch did: asked for a sign of life, or
    /// closed the connection (which the connection then logs).
    pub(crate) fn note_silence(&self, what: Silence) {
        let bit = match what {
            Silence::Fine => return,
            Silence::Ping => PINGED,
            Silence::Gone => IDLE_TIMED_OUT,
            Silence::NotStarted => JOIN_TIMED_OUT,
        };
        self.watch.fetch_or(bit, Ordering::Relaxed);
    }

    /// Whether the silence watch closed the connection, and why.
    pub(crate) fn timed_out(&self) -> Option<Silence> {
        let watch = self.watch.load(Ordering::Relaxed);
        if watch & JOIN_TIMED_OUT != 0 {
            Some(Silence::NotStarted)
        } else if watch & IDLE_TIMED_OUT != 0 {
            Some(Silence::Gone)
        } else {
            None
        }
    }

    /// Ends the connection at once: the writer stops without flushing, the
    /// reader stops reading.
    pub fn kill(&self) {
        self.interrupt(KILL);
        self.wake();
    }

    /// Stops the reader; what is queued is still written.
    fn stop(&self) {
        self.interrupt(STOP);
    }

    /// Tells the connection's task that the server is shutting down.
    pub fn shut_down(&self) {
        self.interrupt(SHUTDOWN);
    }

    fn interrupt(&self, why: u8) {
        self.ending.fetch_or(why, Ordering::SeqCst);
        self.task.wake();
    }

    fn is_killed(&self) -> bool {
        self.ending.load(Ordering::SeqCst) & KILL != 0
    }

    /// Resolves, with all the reasons given so far, once one of those in
    /// `mask` ([`KILL`], [`STOP`], [`SHUTDOWN`]) is. Only the connection's
    /// own task may wait for it.
    pub fn interrupted(&self, mask: u8) -> impl Future<Output = u8> + '_ {
        std::future::poll_fn(move |cx| self.poll_interrupted(cx, mask))
    }

    /// [`Outbox::interrupted`] as a poll function.
    pub fn poll_interrupted(&self, cx: &mut Context<'_>, mask: u8) -> Poll<u8> {
        // Registered before the check, so a change in between is seen.
        self.task.register(cx.waker());
        match self.ending.load(Ordering::SeqCst) {
            why if why & mask != 0 => Poll::Ready(why),
            _ => Poll::Pending,
        }
    }

    /// Resolves with how the writer ended, once it has. Only the
    /// connection's own task may wait for it.
    pub fn finished(&self) -> impl Future<Output = WriterEnd> + '_ {
        std::future::poll_fn(move |cx| {
            self.task.register(cx.waker());
            match *self.end.lock().expect("outbox end lock") {
                Some(end) => Poll::Ready(end),
                None => Poll::Pending,
            }
        })
    }

    /// The connection's wire mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("outbox lock poisoned")
    }

    /// Takes a reply slot if one is free now. Call once per command
    /// before handling it; the writer gives the slot back after writing
    /// the reply.
    pub fn try_reserve_reply(&self) -> bool {
        self.reply_slots
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Polls for a reply slot, taking it when one is free. Only the
    /// connection's own task may poll for it.
    pub fn poll_reply_slot(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before the check, so a slot given back in between
        // wakes the task.
        self.task.register(cx.waker());
        if self.try_reserve_reply() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn give_back_replies(&self, n: usize) {
        // Only a reader that found none free waits for them.
        if self.reply_slots.fetch_add(n, Ordering::SeqCst) == 0 {
            self.task.wake();
        }
    }

    /// Queues this client's own reply (a slot was reserved), after the ring
    /// events before `tag` and once they are published.
    pub fn push_reply(&self, tag: u64, item: Outgoing) {
        self.push_gated(tag, tag, item);
    }

    /// Like [`Outbox::push_reply`], but the reply also waits until the ring
    /// is published up to `gate` (events it depends on, appended after it).
    ///
    /// Replies are queued by the client's own reader, which flushes them
    /// itself ([`Outbox::flush_replies`]); no writer is woken for them.
    pub fn push_gated(&self, tag: u64, gate: u64, item: Outgoing) {
        self.lock().queue.push_back(Entry { tag, gate, item });
    }

    /// Queues a message from someone else. Returns false, and disconnects
    /// the client as a slow consumer, when too many are already waiting.
    pub fn push_other(&self, tag: u64, item: Outgoing) -> bool {
        {
            let mut st = self.lock();
            if st.others >= OTHERS_IN_FLIGHT {
                st.give_up(self.mode);
                drop(st);
                self.wake();
                return false;
            }
            st.others += 1;
            st.queue.push_back(Entry {
                tag,
                gate: tag,
                item,
            });
        }
        self.wake();
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
        self.stop();
        self.wake();
    }

    /// Drops queued messages that wait for ring positions past `visible`:
    /// at shutdown, when the journal can no longer make them durable,
    /// those replies could never be sent and would hold back the goodbye.
    /// Nothing they answer was acknowledged.
    pub fn abandon_unpublished(&self, visible: u64) {
        self.lock().queue.retain(|e| e.gate <= visible);
        self.wake();
    }

    /// Starts broadcast delivery at ring index `cursor` (the client joined).
    pub fn subscribe(&self, cursor: u64) {
        self.lock().cursor = Some(cursor);
    }

    /// Stops broadcast delivery after ring index `tag` (the client left).
    pub fn unsubscribe(&self, tag: u64) {
        self.lock().queue.push_back(Entry {
            tag,
            gate: tag,
            item: Outgoing::Unsubscribe,
        });
    }

    /// Whether a flush could write something now: published events past
    /// the cursor, or a queued message whose gate is open.
    #[cfg(test)]
    pub fn has_due(&self, visible: u64) -> bool {
        self.lock().has_due(visible)
    }

    /// What a pacer needs to know of a watcher at a sweep, in one look:
    /// see [`Census`]. `hold_lag` is [`BroadcastRing::hold_lag`], `now_ms`
    /// [`stall_clock`]'s reading.
    pub fn census(&self, visible: u64, hold_lag: u64, now_ms: u32) -> Census {
        let mut st = self.lock();
        let Some(cursor) = st.cursor.filter(|_| !st.done) else {
            return Census::Gone;
        };
        let due = st.has_due(visible);
        // A watcher far behind holds producers back (see
        // `Fanout::wait_for_room`) only for a while: one that stays behind
        // is not reading, and must not stop everyone from drawing; it is
        // dropped once the broadcast window passes it.
        let holds = if visible.saturating_sub(cursor) <= hold_lag {
            st.behind_since_ms = 0;
            Some(cursor)
        } else {
            if st.behind_since_ms == 0 {
                st.behind_since_ms = now_ms.max(1);
            }
            (now_ms.wrapping_sub(st.behind_since_ms) < STALL_GRACE_MS).then_some(cursor)
        };
        Census::Watching { due, holds }
    }

    /// Gathers what is due and writes it without waiting; see [`Flush`].
    pub fn flush(&self, ring: &BroadcastRing) -> Flush {
        let mut st = self.lock();
        if st.lagged {
            return Flush::Lagged;
        }
        if st.done {
            return Flush::Done;
        }
        if st.blocked {
            return Flush::Blocked;
        }
        if st.writing {
            // The flush that is writing gathers again before it stops, and
            // whoever queued something woke the writer task as well.
            return Flush::Idle;
        }
        st.writing = true;
        let mut written = 0;
        let mut writes = 0;
        let from = st.cursor;
        // Nobody else touches what a flush gathered while `writing`: it is
        // handed back before the lock is given up for good.
        let mut pending = st.pending.take().map_or_else(Pending::default, |p| *p);
        let end = loop {
            if pending.is_empty() {
                if st.closing {
                    break Flush::Close;
                }
                if written >= FLUSH_BYTES {
                    break Flush::More;
                }
                match gather(&mut st, &mut pending, self.mode, ring) {
                    Ok(0) => {}
                    Ok(replies) => self.give_back_replies(replies),
                    Err(Lagged) => {
                        st.writing = false;
                        st.hand_back(pending);
                        st.give_up(self.mode);
                        return Flush::Lagged;
                    }
                }
                if pending.is_empty() {
                    if st.closing {
                        break Flush::Close;
                    }
                    // An idle connection holds no buffer: with tens of
                    // thousands of watchers, a few KiB each is most of the
                    // server's memory.
                    if st.queue.is_empty() {
                        st.queue = VecDeque::new();
                    }
                    break Flush::Idle;
                }
                pending.seal();
            }
            // Written outside the lock: whoever queues a message for this
            // client meanwhile (the hub, under its own lock) does not wait
            // for the socket.
            drop(st);
            let res = self.sock.try_write_vectored(&pending.slices());
            if let Ok(n) = res {
                pending.advance(self.mode, n);
                written += n;
                writes += 1;
            }
            st = self.lock();
            match res {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    st.blocked = true;
                    break Flush::Blocked;
                }
                Err(_) => {
                    st.done = true;
                    break Flush::Done;
                }
            }
            if st.lagged {
                // Given up on while writing (too many DMs queued).
                st.writing = false;
                st.hand_back(pending);
                st.compose_goodbye(self.mode);
                return Flush::Lagged;
            }
        };
        st.hand_back(pending);
        st.writing = false;
        // Once per flush, for `/metrics`: events gathered and bytes written.
        let events = match (from, st.cursor) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        };
        ring.sent().add(events, written as u64, writes);
        if end == Flush::Blocked {
            drop(st);
            self.wake.notify_one();
        }
        end
    }

    /// Replies were queued: write them now, and leave to the writer task
    /// what cannot be written now (a full socket, a reply waiting for the
    /// journal).
    pub fn flush_replies(&self, ring: &BroadcastRing) {
        if self.flush(ring) != Flush::Idle || self.waits_on_log(ring) {
            self.wake();
        }
    }

    /// Asks the writer task to flush (it has work the caller leaves to it),
    /// starting one if none runs.
    pub fn wake(&self) {
        self.wake.notify_one();
        if !self.writing_task.swap(true, Ordering::SeqCst)
            && let Some(this) = self.this.upgrade()
        {
            self.ring.spawn(run_writer(this));
        }
    }

    fn unblock(&self) {
        self.lock().blocked = false;
    }

    fn cursor(&self) -> Option<u64> {
        self.lock().cursor
    }

    /// Whether more of the ring being published could give the writer work:
    /// its next message waits for the journal.
    fn waits_on_log(&self, ring: &BroadcastRing) -> bool {
        let st = self.lock();
        st.queue.front().is_some_and(|e| e.gate > ring.visible())
    }

    /// The writer has nothing to do: it leaves, unless work arrived while
    /// it decided. Returns true when it should end.
    fn park(&self, ring: &BroadcastRing) -> bool {
        // Cleared before looking, so whoever queues work after the look
        // finds the flag clear and starts a writer itself.
        self.writing_task.store(false, Ordering::SeqCst);
        if !self.has_work(ring.visible()) {
            return true;
        }
        // Someone may have started another writer meanwhile: then that one
        // does the work.
        self.writing_task.swap(true, Ordering::SeqCst)
    }

    /// Whether the writer task has something to do: anything but events
    /// from the ring, which the fan-out pacer delivers.
    fn has_work(&self, visible: u64) -> bool {
        if self.is_killed() {
            return true;
        }
        let st = self.lock();
        st.done
            || st.lagged
            || st.blocked
            || st.closing
            || st.pending.is_some()
            || st.queue.front().is_some_and(|e| {
                e.gate > visible || !matches!(&e.item, Outgoing::Deferred(d) if !d.is_ready())
            })
    }

    /// The writer ended: the reader stops, and whoever waits learns why.
    fn ended(&self, end: WriterEnd) {
        self.finish();
        self.shutdown();
        *self.end.lock().expect("outbox end lock") = Some(end);
        self.interrupt(KILL);
    }

    fn finish(&self) {
        let mut st = self.lock();
        st.done = true;
        st.pending = None;
    }

    /// The client fell out of the broadcast window while its socket was
    /// full.
    fn lag(&self) {
        self.lock().give_up(self.mode);
    }

    /// Sends what [`State::give_up`] left: the end of a partly sent frame,
    /// then the goodbye. The client is not reading, so the send buffer is
    /// enlarged first to take it.
    async fn say_goodbye(&self) {
        let last = loop {
            {
                let mut st = self.lock();
                // A flush still writing hands `pending` back first.
                if !st.writing {
                    let mut p = st.pending.take().map_or_else(Pending::default, |p| *p);
                    p.seal();
                    break p.chunks.into_iter().fold(BytesMut::new(), |mut b, c| {
                        b.extend_from_slice(&c);
                        b
                    });
                }
            }
            tokio::task::yield_now().await;
        };
        let sock = self.sock.sock_ref();
        // Linux sets twice the size asked for (the other half is for its
        // bookkeeping, which queued bytes are charged with too), and polls
        // a socket writable only while its free space is at least half of
        // what is queued. The buffer is full, so asking for the size it
        // reports (doubling it), plus the goodbye twice over, makes room
        // both ways. Best effort: the kernel caps it at `wmem_max`.
        if let Ok(size) = sock.send_buffer_size() {
            let _ = sock.set_send_buffer_size(size + 2 * last.len() + GOODBYE_ROOM);
        }
        // Straight to the kernel: tokio skips writes to a socket it last saw
        // full until the kernel reports it writable again.
        let sent = sock
            .send_with_flags(&last, nix::libc::MSG_NOSIGNAL)
            .unwrap_or(0);
        self.write_last(&last[sent..]).await;
    }

    /// Shuts down the sending side, so the peer sees the end of stream.
    fn shutdown(&self) {
        let _ = self.sock.sock_ref().shutdown(std::net::Shutdown::Write);
    }

    /// Writes `bytes` best effort, for a goodbye to a client that is being
    /// dropped.
    async fn write_last(&self, bytes: &[u8]) {
        let attempt = async {
            let mut at = 0;
            while at < bytes.len() {
                self.sock.writable().await?;
                match self.sock.try_write(&bytes[at..]) {
                    Ok(n) => at += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, io::Error>(())
        };
        let _ = tokio::time::timeout(CLOSE_FLUSH, attempt).await;
    }
}

/// Moves what is due into `pending`, up to about one batch. Returns how
/// many replies it took.
fn gather(
    st: &mut State,
    pending: &mut Pending,
    mode: Mode,
    ring: &BroadcastRing,
) -> Result<usize, Lagged> {
    let State {
        queue,
        cursor,
        others,
        closing,
        ..
    } = st;
    let mut replies = 0;
    let visible = ring.visible();
    loop {
        if pending.len() >= BATCH_BYTES {
            break Ok(replies);
        }
        let (target, gate) = match queue.front() {
            Some(e) => (e.tag.min(visible), e.gate),
            None => (visible, 0),
        };
        if let Some(c) = cursor.filter(|&c| c < target) {
            let budget = BATCH_BYTES.saturating_sub(pending.len());
            match ring.copy(mode, c, target, budget, &mut pending.tail) {
                Ok(reached) => {
                    *cursor = Some(reached);
                    if reached < target {
                        break Ok(replies);
                    }
                }
                Err(_) => break Err(Lagged),
            }
        }
        // A gated message waits for the journal; it is flushed again when
        // more of the ring is published.
        if gate > visible {
            break Ok(replies);
        }
        if let Some(Entry {
            item: Outgoing::Deferred(d),
            ..
        }) = queue.front()
            && !d.is_ready()
        {
            break Ok(replies);
        }
        let Some(Entry { item, .. }) = queue.pop_front() else {
            break Ok(replies);
        };
        match item {
            Outgoing::Event(_) => *others = others.saturating_sub(1),
            Outgoing::Unsubscribe => *cursor = None,
            Outgoing::Close => {}
            _ => replies += 1,
        }
        item.encode(mode, pending);
        if matches!(item, Outgoing::Close) {
            *closing = true;
            break Ok(replies);
        }
    }
}

#[derive(Debug)]
struct Lagged;

impl State {
    fn has_due(&self, visible: u64) -> bool {
        !self.blocked
            && !self.done
            && (self.pending.is_some()
                || self.cursor.is_some_and(|c| c < visible)
                || self.queue.front().is_some_and(|e| {
                    e.gate <= visible && !matches!(&e.item, Outgoing::Deferred(d) if !d.is_ready())
                }))
    }

    /// Keeps what a flush gathered and could not write.
    fn hand_back(&mut self, pending: Pending) {
        self.pending = (!pending.is_empty()).then(|| Box::new(pending));
    }

    /// Ends the connection as a slow consumer: keeps only the end of the
    /// frame the socket took part of, so the client never reads half a
    /// message, and puts `BYE slow_consumer` after it, to be sent by the
    /// writer task ([`Outbox::say_goodbye`]).
    fn give_up(&mut self, mode: Mode) {
        if self.done {
            return;
        }
        self.done = true;
        self.lagged = true;
        self.queue.clear();
        if !self.writing {
            self.compose_goodbye(mode);
        }
        // Else the flush that is writing does it when it hands `pending`
        // back.
    }

    /// What a slow consumer is left with: the end of a partly sent frame,
    /// then `BYE slow_consumer`.
    fn compose_goodbye(&mut self, mode: Mode) {
        let mut pending = self.pending.take().map_or_else(Pending::default, |p| *p);
        pending.cut_to_whole_frames();
        Outgoing::Event(Event::Bye {
            code: ErrorCode::SlowConsumer,
            text: "you fell too far behind the event stream; reconnect and SYNC".into(),
        })
        .encode(mode, &mut pending);
        pending.seal();
        self.hand_back(pending);
    }
}

/// After a write took `n` bytes of `pending`, the bytes at the front of
/// what is left that finish the frame the write stopped in (0 on a frame
/// boundary); `rest` is the same for `pending` before the write. Frames are
/// lines in text mode and length-prefixed in binary mode, and `pending`
/// holds whole frames after `rest`.
fn frame_rest(mode: Mode, pending: &[u8], rest: usize, n: usize) -> usize {
    if n <= rest {
        return rest - n;
    }
    match mode {
        Mode::Text if pending[n - 1] == b'\n' => 0,
        Mode::Text => pending[n..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(pending.len() - n, |i| i + 1),
        Mode::Binary => {
            let mut at = rest;
            while at < n {
                let Some(&[a, b, c, d]) = pending.get(at..at + 4) else {
                    return pending.len() - n;
                };
                at += 4 + u32::from_be_bytes([a, b, c, d]) as usize;
            }
            at.min(pending.len()) - n
        }
    }
}

/// Resolves once the ring no longer holds the event at `cursor`.
async fn passed_by(ring: &BroadcastRing, cursor: Option<u64>) {
    let Some(cursor) = cursor else {
        return std::future::pending().await;
    };
    let mut rx = ring.subscribe();
    while ring.first() <= cursor {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The connection's writer task: writes what the others could not (a full
/// socket, a large backlog, replies queued by other connections, replies
/// waiting for the journal), and ends the connection. Started by
/// [`Outbox::wake`] when there is such work, it leaves when there is none,
/// and ends when the outbox is closed, the client lags, the socket fails or
/// the connection is killed.
async fn run_writer(outbox: Arc<Outbox>) {
    let ring = outbox.ring.clone();
    let mut log_rx = ring.subscribe();
    let end = loop {
        if outbox.is_killed() {
            break WriterEnd::Failed;
        }
        log_rx.borrow_and_update();
        match outbox.flush(&ring) {
            Flush::Idle if outbox.waits_on_log(&ring) => {
                tokio::select! {
                    _ = outbox.wake.notified() => {}
                    r = log_rx.changed() => {
                        if r.is_err() {
                            break WriterEnd::Closed;
                        }
                    }
                }
            }
            Flush::Idle => {
                if outbox.park(&ring) {
                    return;
                }
            }
            Flush::More => tokio::task::yield_now().await,
            Flush::Blocked => {
                let cursor = outbox.cursor();
                tokio::select! {
                    r = outbox.sock.writable() => {
                        if r.is_err() {
                            break WriterEnd::Failed;
                        }
                        outbox.unblock();
                    }
                    // A peer that stopped reading may not hold its place in
                    // the ring: once the window passes it, it is dropped.
                    _ = passed_by(&ring, cursor), if cursor.is_some() => outbox.lag(),
                    // Given up on elsewhere (too many DMs), killed, or more
                    // to do.
                    _ = outbox.wake.notified() => {}
                }
            }
            Flush::Close => break WriterEnd::Closed,
            Flush::Lagged => {
                outbox.say_goodbye().await;
                break WriterEnd::Lagged;
            }
            Flush::Done => break WriterEnd::Failed,
        }
    };
    outbox.ended(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::broadcast::BroadcastLimits;
    use tokio::io::AsyncReadExt;

    /// An outbox on one end of a real loopback connection, and the other
    /// end to read what it wrote.
    async fn pair(mode: Mode, ring: &Arc<BroadcastRing>) -> (Arc<Outbox>, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (
            Outbox::new(
                mode,
                Arc::new(Sock::Tcp(server)),
                ring.clone(),
                stall_clock(),
            ),
            client,
        )
    }

    fn joined(ring: &BroadcastRing, n: usize) -> u64 {
        ring.append(&Event::Joined {
            name: Arc::from(format!("u{n}")),
        })
    }

    /// Reads exactly `want.len()` bytes and compares.
    async fn expect(client: &mut tokio::net::TcpStream, want: &str) {
        let mut got = vec![0; want.len()];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
            .await
            .expect("bytes in time")
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want);
    }

    #[tokio::test]
    async fn a_reply_goes_after_the_events_before_its_tag_and_before_the_rest() {
        let ring = Arc::new(BroadcastRing::new(BroadcastLimits::default()));
        let (outbox, mut client) = pair(Mode::Text, &ring).await;
        outbox.subscribe(0);
        for n in 0..2 {
            joined(&ring, n);
        }
        let tag = ring.end();
        joined(&ring, 2);
        ring.publish(ring.end());
        outbox.push_reply(tag, Outgoing::Reply(Reply::Ok));
        assert_eq!(outbox.flush(&ring), Flush::Idle);
        expect(&mut client, "JOINED u0\nJOINED u1\nOK\nJOINED u2\n").await;
    }

    #[tokio::test]
    async fn a_gated_reply_waits_until_its_event_is_published() {
        let ring = Arc::new(BroadcastRing::new(BroadcastLimits::default()));
        let (outbox, mut client) = pair(Mode::Text, &ring).await;
        outbox.subscribe(0);
        let tag = ring.end();
        let end = joined(&ring, 0);
        outbox.push_gated(tag, end, Outgoing::Reply(Reply::Set { seq: 1 }));
        outbox.push_reply(end, Outgoing::Reply(Reply::Pong { token: "t".into() }));
        // Not durable yet: nothing may go out, the later reply neither.
        outbox.flush(&ring);
        assert!(!outbox.has_due(ring.visible()));
        ring.publish(end);
        assert!(outbox.has_due(ring.visible()));
        outbox.flush(&ring);
        expect(&mut client, "OK 1\nJOINED u0\nOK PONG t\n").await;
    }

    #[tokio::test]
    async fn a_deferred_reply_holds_its_place() {
        let ring = Arc::new(BroadcastRing::new(BroadcastLimits::default()));
        let (outbox, mut client) = pair(Mode::Text, &ring).await;
        let later = Arc::new(Deferred::default());
        outbox.push_reply(0, Outgoing::Deferred(later.clone()));
        outbox.push_reply(0, Outgoing::Reply(Reply::Ok));
        outbox.flush(&ring);
        later.set(Reply::Set { seq: 9 });
        outbox.flush(&ring);
        expect(&mut client, "OK 9\nOK\n").await;
    }

    #[test]
    fn pending_advances_across_chunks_and_tracks_the_frame_it_stopped_in() {
        let mut p = Pending::default();
        p.tail.extend_from_slice(b"OK 1\nOK 2\n");
        p.push_shared(Bytes::from_static(b"ROW 0 00\nROW 1 00\n"));
        p.tail.extend_from_slice(b"OK 3\n");
        p.seal();
        assert_eq!((p.chunks.len(), p.len()), (3, 33));
        // Into the second chunk, in the middle of its first line.
        p.advance(Mode::Text, 10 + 3);
        assert_eq!((p.chunks.len(), p.head_rest, p.len()), (2, 6, 20));
        assert_eq!(&p.chunks[0][..], b" 0 00\nROW 1 00\n");
        // To the end of that line, then everything.
        p.advance(Mode::Text, 6);
        assert_eq!(p.head_rest, 0);
        p.advance(Mode::Text, 14);
        assert!(p.is_empty());
    }

    #[test]
    fn shared_answers_are_queued_by_reference() {
        let snapshot = Arc::new(SharedSnapshot::built(Snapshot {
            canvas_id: 1,
            seq: 0,
            width: 64,
            height: 64,
            pixels: vec![3; 64 * 64],
        }));
        let (mut a, mut b) = (Pending::default(), Pending::default());
        for p in [&mut a, &mut b] {
            Outgoing::Canvas(snapshot.clone()).encode(Mode::Binary, p);
        }
        // Two clients, one copy: the same bytes behind both.
        assert_eq!(a.chunks[0].as_ptr(), b.chunks[0].as_ptr());
        assert_eq!(a.len(), snapshot.encoded(Mode::Binary).len());
    }

    #[test]
    fn giving_up_keeps_the_partly_sent_frame_whole_and_ends_with_bye() {
        let mut st = State::default();
        let mut pending = Pending::default();
        pending.push_shared(Bytes::from_static(b"EL 1 2 3 4 a\nPIXEL 2 1 1 1 a\n"));
        pending.push_shared(Bytes::from_static(b"PIXEL 3 1 1 1 a\n"));
        // The socket took "PIX" of the first line already.
        pending.head_rest = 13;
        st.hand_back(pending);
        st.queue.push_back(Entry {
            tag: 0,
            gate: 0,
            item: Outgoing::Reply(Reply::Ok),
        });
        st.give_up(Mode::Text);
        assert!(st.done && st.lagged && st.queue.is_empty());
        let text: String = st
            .pending
            .expect("the goodbye is pending")
            .chunks
            .iter()
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        assert!(
            text.starts_with("EL 1 2 3 4 a\nBYE slow_consumer "),
            "{text}"
        );
        assert!(text.ends_with('\n') && text.lines().count() == 2, "{text}");
    }

    #[test]
    fn frame_rest_finds_the_end_of_a_partly_written_line() {
        let p = b"PIXEL 1 2 3 4 a\nOK 7\nJOINED bob\n";
        // Boundaries.
        assert_eq!(frame_rest(Mode::Text, p, 0, 16), 0);
        assert_eq!(frame_rest(Mode::Text, p, 0, 21), 0);
        // Inside the first, second, last line.
        assert_eq!(frame_rest(Mode::Text, p, 0, 3), 13);
        assert_eq!(frame_rest(Mode::Text, p, 0, 18), 3);
        assert_eq!(frame_rest(Mode::Text, p, 0, 30), 2);
        // Still inside the rest of an earlier partial line.
        assert_eq!(frame_rest(Mode::Text, p, 16, 10), 6);
        assert_eq!(frame_rest(Mode::Text, p, 16, 16), 0);
        // Raw bytes without a line end are finished with the next line.
        assert_eq!(frame_rest(Mode::Text, b"\xff\xfb\x06OK\n", 0, 1), 5);
        assert_eq!(frame_rest(Mode::Text, b"OK\n\xff\xfb\x06", 0, 4), 2);
    }

    #[test]
    fn frame_rest_walks_length_prefixed_frames() {
        let mut pending = Pending::default();
        Outgoing::Reply(Reply::Set { seq: 7 }).encode(Mode::Binary, &mut pending); // 13 bytes
        Outgoing::Event(Event::Keepalive).encode(Mode::Binary, &mut pending); // 5 bytes
        Outgoing::Reply(Reply::Ok).encode(Mode::Binary, &mut pending); // 5 bytes
        let p = pending.tail;
        assert_eq!(p.len(), 23);
        assert_eq!(frame_rest(Mode::Binary, &p, 0, 13), 0);
        assert_eq!(frame_rest(Mode::Binary, &p, 0, 2), 11);
        assert_eq!(frame_rest(Mode::Binary, &p, 0, 14), 4);
        assert_eq!(frame_rest(Mode::Binary, &p, 0, 22), 1);
        // `pending` that starts with the 3 last bytes of an earlier frame.
        let q = [&[0xAA, 0xBB, 0xCC][..], &p[..]].concat();
        assert_eq!(frame_rest(Mode::Binary, &q, 3, 1), 2);
        assert_eq!(frame_rest(Mode::Binary, &q, 3, 3), 0);
        assert_eq!(frame_rest(Mode::Binary, &q, 3, 4), 12);
        assert_eq!(frame_rest(Mode::Binary, &q, 3, 21), 0);
        assert_eq!(frame_rest(Mode::Binary, &q, 3, 22), 4);
    }
}
