//! One client connection: sniff the wire mode from the first byte, then read
//! commands, apply the per-connection limits, hand commands to the hub, and
//! leave a writer task to send what the hub queues.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::connections::{Connections, Registered};
use super::hub::{After, Handling, Hub, Session};
use super::outbox::{KILL, Outbox, Outgoing, SHUTDOWN, STOP, Silence, WriterEnd, stall_clock};
use super::sock::Sock;
use super::{Limits, MAX_AUTH_DELAY};
use crate::protocol::Mode;
use crate::protocol::binary::{FrameError, ServerCodec};
use crate::protocol::telnet::{TextCodec, TextInput};
use crate::protocol::{Command, ErrorCode, Event, Reply, WireError};

/// A connection that sends nothing at all for this long is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer a connection starts with; it grows only as a peer needs.
const READ_BUFFER: usize = 512;
/// How long the writer gets to flush after the reader is done.
const WRITER_GRACE: Duration = Duration::from_secs(3);
/// How long a closed connection keeps reading what the peer still sends.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Looks at the first byte without consuming it: 0x00 is the high byte of a
/// binary frame length, anything else is text.
pub async fn sniff(stream: &TcpStream, timeout: Duration) -> Option<Mode> {
    super::sock::first_byte(stream, timeout).await.map(mode_of)
}

/// The wire mode a connection's first byte chooses.
pub fn mode_of(first: u8) -> Mode {
    if first == 0 { Mode::Binary } else { Mode::Text }
}

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub hub: Arc<Hub>,
    pub limits: Arc<Limits>,
    pub connections: Arc<Connections>,
    /// Connections that may only watch (the web page without
    /// `--http-play`): see [`watch_only`]. Kept here rather than per
    /// connection, so a watcher's state does not grow by it.
    pub read_only: bool,
}

/// Whether a read-only connection may send `cmd`: everything that only
/// reads or watches, and a quiet `JOIN` (a watcher that nobody is told
/// about); not a loud `JOIN`, placements, chat or moderation.
pub(crate) fn watch_only(cmd: &Command) -> bool {
    match cmd {
        Command::Join { quiet, .. } => *quiet,
        Command::Say { .. } | Command::Tell { .. } | Command::Set { .. } => false,
        cmd => !cmd.is_admin(),
    }
}

/// Serves one accepted connection until it closes or the server shuts down;
/// it stays `listed` until then.
///
/// Its future is what an idle connection costs beyond the socket, so what
/// happens once (the sniffing, the goodbye) is boxed rather than kept in
/// it, and what it waits on while idle keeps its wakers elsewhere: in the
/// socket's registration and in the outbox. (An `async` block rather than
/// an `async fn`, whose arguments would be kept twice; and the socket comes
/// in its `Arc` already, because a future keeps what it captured for its
/// whole life: a `Sock` moved out of it would still take its 40 bytes.)
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice in every connection's future"
)]
pub fn serve(
    stream: Arc<Sock>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    listed: Registered,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let Shared {
            hub,
            limits,
            connections,
            ..
        } = &*shared;
        let connected = stall_clock();
        conn_span(&peer, None).in_scope(|| info!("connected"));
        let Some(first) = Box::pin(stream.peek_first(limits.handshake_timeout)).await else {
            conn_span(&peer, None)
                .in_scope(|| debug!("closed: nothing sent within the handshake timeout"));
            return;
        };
        let mode = mode_of(first);
        hub.counters().opened(mode);
        // Telnet may send its data mark as urgent data after Ctrl-C; out of
        // line, the kernel would take that one byte out of the stream and
        // leave its IAC to swallow the next byte typed. Dead peers of
        // long-lived text sessions (which have no idle timeout) are found by
        // the kernel's keepalive probes.
        stream.set_tcp_options(mode == Mode::Text);
        let rd = stream.clone();
        // No writer task yet: the outbox starts one when it has work the
        // reader and the pacers leave to it.
        let outbox = Outbox::new(mode, stream, hub.ring().clone(), connected);
        listed.attach(&outbox);
        let mut session = hub.session(outbox.clone());
        let mut reader = Reader {
            hub,
            limits,
            connections,
            peer: &peer,
            bucket: Bucket::new(limits.rate_limit, limits.rate_burst)
                .filter(|_| limits.limit_by.by_name())
                .map(Box::new),
            auth_failures: 0,
            slot: false,
            // Read from `shared` here, not kept in a binding across the
            // awaits above: the connection's future stays the same size.
            read_only: shared.read_only,
        };
        let (rd, stop) = match mode {
            Mode::Text => {
                let mut frames = Frames::new(rd, TextCodec::new());
                let stop = reader.read(&mut frames, &mut session).await;
                (frames.rd, stop)
            }
            Mode::Binary => {
                let mut frames = Frames::new(rd, ServerCodec::default());
                let stop = reader.read(&mut frames, &mut session).await;
                (frames.rd, stop)
            }
        };
        reader.finish(stop, &session);
        if let Some(name) = session.name.as_deref() {
            conn_span(&peer, Some(name)).in_scope(|| info!("left"));
        }
        hub.leave(&mut session);
        Box::pin(close(rd, &outbox, hub, peer)).await;
        // The mode from the outbox, which the future keeps anyway.
        hub.counters().closed(outbox.mode());
        conn_span(&peer, None).in_scope(|| debug!("connection closed"));
    }
}

/// Watches every connection's silence, as Redis's `clientsCron` does: one
/// task for all of them, reading when each was accepted and last heard
/// from its outbox, rather than a timer in each connection (which cost
/// about 0.25 KiB per idle connection). A binary connection silent for half
/// `--idle-timeout` is asked for a sign of life (a keepalive), and closed
/// with `BYE idle_timeout` after the whole of it; one that neither joins
/// nor gives the password within `--join-timeout` is closed with
/// `BYE join_timeout`. It checks several times per timeout, so a deadline
/// is kept to within a quarter of the shorter timeout (at most a second).
pub(crate) async fn watch_silence(shared: Arc<Shared>, shutdown: CancellationToken) {
    let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    let idle_ms = ms(shared.limits.idle_timeout);
    let join_ms = ms(shared.limits.join_timeout);
    let Some(shortest) = [idle_ms / 2, join_ms].into_iter().filter(|&t| t > 0).min() else {
        // No timeouts: nothing to watch.
        return shutdown.cancelled().await;
    };
    let every = Duration::from_millis(u64::from(shortest / 4))
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let hub = &shared.hub;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = stall_clock();
        for (outbox, what) in shared.connections.silent(now, idle_ms, join_ms) {
            outbox.note_silence(what);
            match what {
                Silence::Fine => {}
                Silence::Ping => {
                    outbox.push_other(hub.tag(), Outgoing::Event(Event::Keepalive));
                }
                Silence::Gone => outbox.evict(
                    hub.tag(),
                    Event::Bye {
                        code: ErrorCode::IdleTimeout,
                        text: "nothing heard from you for too long".into(),
                    },
                ),
                Silence::NotStarted => outbox.evict(
                    hub.tag(),
                    Event::Bye {
                        code: ErrorCode::JoinTimeout,
                        text: format!(
                            "JOIN (or AUTH) within {} s of connecting; closing the connection",
                            shared.limits.join_timeout.as_secs()
                        ),
                    },
                ),
            }
        }
    }
}

/// The span of a connection's log lines, the hub's included: its peer, and
/// its name once it joined (`user`, not `name`: JSON logs put the span's
/// own name there).
///
/// Made for each line, and around the commands that log (see
/// [`Reader::start`]), rather than kept for the connection's life: a live
/// span costs about 0.8 KiB per connection in tracing-subscriber's registry
/// (measured with 19,900 idle connections), 40% of what an idle connection
/// costs otherwise.
fn conn_span(peer: &SocketAddr, user: Option<&str>) -> tracing::Span {
    match user {
        Some(user) => tracing::info_span!("conn", %peer, %user),
        None => tracing::info_span!("conn", %peer),
    }
}

/// Commands whose handling may log at `info` (joins, passwords,
/// moderation, bulk changes): they run in the connection's span. The
/// others (placements, chat, reads) are the hot path and log nothing there.
fn logs(cmd: &Command) -> bool {
    matches!(cmd, Command::Join { .. } | Command::Auth { .. }) || cmd.is_admin()
}

/// Lets the writer send what is queued and close, then reads what the peer
/// still sends, so the close is not a reset.
async fn close(rd: Arc<Sock>, outbox: &Outbox, hub: &Hub, peer: SocketAddr) {
    outbox.push_reply(hub.tag(), Outgoing::Close);
    outbox.wake();
    match tokio::time::timeout(WRITER_GRACE, outbox.finished()).await {
        Ok(WriterEnd::Closed) => {
            let _ = tokio::time::timeout(DRAIN_GRACE, rd.drain()).await;
        }
        Ok(WriterEnd::Lagged) => {
            hub.counters().slow_consumer();
            warn!(%peer, "disconnected a slow consumer");
            // Its goodbye may still sit in the send buffer, which the kernel
            // keeps sending after the close, unless unread input turns the
            // close into a reset.
            let _ = tokio::time::timeout(DRAIN_GRACE, rd.drain()).await;
        }
        Ok(_) => {}
        Err(_) => outbox.kill(),
    }
}

/// A connection's incoming frames, decoded by `D`. The read buffer exists
/// only while there is input to decode: an idle connection waits for its
/// socket to be readable without one, which with tens of thousands of
/// watchers is most of the memory a connection would hold.
pub(crate) struct Frames<D> {
    rd: Arc<Sock>,
    codec: D,
    buf: BytesMut,
    eof: bool,
}

impl<D: Decoder> Frames<D>
where
    D::Error: From<std::io::Error>,
{
    fn new(rd: Arc<Sock>, codec: D) -> Self {
        Self {
            rd,
            codec,
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// Polls for the next frame; `None` at the end of the stream. Bytes
    /// read are kept in `self` until a frame is whole. `before_wait` runs
    /// whenever everything received so far is decoded and more must be
    /// waited for: the moment to write the replies to it.
    ///
    /// A poll function rather than a future: the socket's registration
    /// keeps the waker, so waiting costs the connection nothing.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        before_wait: impl Fn(),
    ) -> Poll<Option<Result<D::Item, D::Error>>> {
        loop {
            if !self.buf.is_empty() || self.eof {
                let decoded = if self.eof {
                    self.codec.decode_eof(&mut self.buf)
                } else {
                    self.codec.decode(&mut self.buf)
                };
                match decoded {
                    Ok(Some(item)) => return Poll::Ready(Some(Ok(item))),
                    Ok(None) if self.eof => return Poll::Ready(None),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
            }
            if self.buf.is_empty() {
                // Nothing half-read: give the buffer back while waiting.
                self.buf = BytesMut::new();
            }
            before_wait();
            if let Err(e) = ready!(self.rd.poll_read_ready(cx)) {
                return Poll::Ready(Some(Err(e.into())));
            }
            if self.buf.capacity() - self.buf.len() < READ_BUFFER / 2 {
                self.buf.reserve(READ_BUFFER.max(self.buf.len()));
            }
            match self.rd.try_read_buf(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
        }
    }
}

/// Reads and drops what the peer still sends until it closes its side.
/// Closing a socket with unread input makes the kernel send a reset, which
/// can destroy our last reply before the peer reads it; the peer has our FIN
/// by now, so well-behaved peers close promptly.
pub async fn drain<R: AsyncRead + Unpin>(rd: &mut R) {
    // On the heap: held across an await, an array here would be part of
    // every connection's future, the whole time it lives.
    let mut sink = vec![0u8; 1024];
    let mut budget = 1 << 20;
    while budget > 0 {
        match rd.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => budget -= n.min(budget),
        }
    }
}

/// One item read from a client, in either mode.
enum Input {
    /// A command, or why the input was not one.
    Command(Result<Command, WireError>),
    /// Text mode: bytes to send back in order with the replies (a telnet
    /// negotiation answer).
    Answer(bytes::Bytes),
}

impl From<Result<Command, WireError>> for Input {
    fn from(command: Result<Command, WireError>) -> Self {
        Input::Command(command)
    }
}

impl From<TextInput> for Input {
    fn from(input: TextInput) -> Self {
        match input {
            TextInput::Command(command) => Input::Command(command),
            TextInput::Answer(bytes) => Input::Answer(bytes),
        }
    }
}

/// Error types of both decoders, as far as the reader needs them.
trait ReadError: Display {
    /// The reply to send before closing, if the peer deserves one.
    fn farewell(&self) -> Option<WireError>;
}

impl ReadError for std::io::Error {
    fn farewell(&self) -> Option<WireError> {
        None
    }
}

impl ReadError for FrameError {
    fn farewell(&self) -> Option<WireError> {
        match self {
            FrameError::Io(_) => None,
            other => Some(WireError::new(
                other.code(),
                format!("{other}; closing the connection"),
            )),
        }
    }
}

/// A token bucket: `rate` commands per second, up to `burst` at once.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket; `None` without a rate.
    pub fn new(rate: u32, burst: u32) -> Option<Self> {
        (rate > 0).then(|| {
            let burst = f64::from(burst.max(1));
            Self {
                rate: f64::from(rate),
                burst,
                tokens: burst,
                last: Instant::now(),
            }
        })
    }

    /// Whether it has refilled completely (and so is as good as new).
    pub fn is_full(&self) -> bool {
        self.tokens + self.last.elapsed().as_secs_f64() * self.rate >= self.burst
    }

    /// Takes a token if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why the reader stopped reading.
enum Stop {
    /// The peer closed, quit, broke the protocol, or was told to go.
    Done,
    /// The server is shutting down.
    Shutdown,
}

struct Reader<'a> {
    hub: &'a Hub,
    limits: &'a Limits,
    /// What is counted per address.
    connections: &'a Connections,
    peer: &'a SocketAddr,
    /// With a rate limit per connection only.
    bucket: Option<Box<Bucket>>,
    /// Failed `AUTH`s so far (a byte: the connection closes long before
    /// it could count further, and it shares its word with `slot`).
    auth_failures: u8,
    /// A reply slot is taken for the next command.
    slot: bool,
    /// See [`Shared::read_only`].
    read_only: bool,
}

impl Stop {
    /// Why the outbox interrupted the reader.
    fn from(why: u8) -> Self {
        if why & (KILL | STOP) != 0 {
            Stop::Done
        } else {
            Stop::Shutdown
        }
    }
}

/// A binary client's silence: after half the idle timeout it is sent a
/// `KEEPALIVE`, after the whole of it, it is disconnected.
/// What reading brought.
enum Read {
    /// A command to hand to the hub.
    Command(Command),
    /// Something handled already (a refusal, a telnet answer).
    Handled,
    /// Stop reading.
    Stop(Stop),
}

impl Reader<'_> {
    /// What the client is told when the server shuts down while it is
    /// connected.
    fn finish(&self, stop: Stop, session: &Session) {
        match session.outbox.timed_out() {
            Some(Silence::NotStarted) => conn_span(self.peer, None).in_scope(|| {
                info!("closed: neither joined nor authenticated within the join timeout")
            }),
            Some(_) => conn_span(self.peer, session.name.as_deref())
                .in_scope(|| debug!("closed: nothing heard within the idle timeout")),
            None => {}
        }
        if let Stop::Shutdown = stop {
            if self.hub.journal_stuck() {
                session
                    .outbox
                    .abandon_unpublished(self.hub.ring().visible());
            }
            session.outbox.push_other(
                self.hub.tag(),
                Outgoing::Event(Event::Bye {
                    code: ErrorCode::ShuttingDown,
                    text: "the server is shutting down".into(),
                }),
            );
        }
    }

    /// Reads and handles commands until the connection should stop.
    ///
    /// This future is most of what an idle connection costs, so it awaits
    /// little: one poll function for everything an idle connection waits
    /// for, whose wakers live elsewhere (the socket's registration, the
    /// outbox, the timer), and the rare waits boxed.
    async fn read<D>(&mut self, frames: &mut Frames<D>, session: &mut Session) -> Stop
    where
        D: Decoder,
        D::Item: Into<Input>,
        D::Error: ReadError + From<std::io::Error>,
    {
        let outbox = session.outbox.clone();
        loop {
            let cmd = match std::future::poll_fn(|cx| self.poll_next(cx, frames, session)).await {
                Read::Command(cmd) => cmd,
                Read::Handled => continue,
                Read::Stop(stop) => return stop,
            };
            if matches!(cmd, Command::Set { .. } | Command::Say { .. })
                && !self.hub.fanout().has_room()
            {
                tokio::select! {
                    _ = Box::pin(self.hub.fanout().wait_for_room()) => {}
                    why = outbox.interrupted(KILL | SHUTDOWN) => return Stop::from(why),
                }
            }
            let auth = matches!(cmd, Command::Auth { .. });
            let joined = session.name.is_some();
            // A kick (`STOP`) does not interrupt a command: it may be this
            // client kicking itself, whose `OK` comes first.
            let handled = match self.start(session, cmd) {
                Handling::Done(result) => result,
                Handling::Later(later) => tokio::select! {
                    r = later => r,
                    why = outbox.interrupted(KILL | SHUTDOWN) => return Stop::from(why),
                },
            };
            if !joined && let Some(name) = &session.name {
                conn_span(self.peer, Some(name))
                    .in_scope(|| info!(quiet = session.quiet, "joined"));
            }
            if session.name.is_some() || (auth && handled.is_ok()) {
                outbox.started();
            }
            match handled {
                Ok(After::Continue) => {}
                Ok(After::Close) => return Stop::Done,
                Err(err) if auth && err.code == ErrorCode::Forbidden => {
                    // Boxed: rare, and kept out of every connection's future.
                    if let Some(stop) = Box::pin(self.auth_failed(session, err)).await {
                        return stop;
                    }
                }
                Err(err) => {
                    let fatal = outbox.mode() == Mode::Binary
                        && matches!(
                            err.code,
                            ErrorCode::HelloRequired | ErrorCode::UnsupportedVersion
                        );
                    self.hub.reply(session, Reply::Error(err));
                    if fatal {
                        return Stop::Done;
                    }
                }
            }
        }
    }

    /// Hands `cmd` to the hub; a command that may log runs in the
    /// connection's span (a command that waits carries it in its boxed
    /// future), so its lines name the peer. Nothing of the span is kept
    /// across the wait in the connection's own future.
    fn start<'s>(&'s self, session: &'s mut Session, cmd: Command) -> Handling<'s> {
        let ip = self.peer.ip();
        if !logs(&cmd) {
            return self.hub.start(session, cmd, ip);
        }
        let span = conn_span(self.peer, session.name.as_deref());
        match span.in_scope(|| self.hub.start(session, cmd, ip)) {
            Handling::Later(later) => Handling::Later(Box::pin(later.instrument(span))),
            done => done,
        }
    }

    /// A wrong password: its reply is held back, longer for each failure
    /// of this connection or of its address, so guessing is slow however
    /// many connections guess; after too many the connection is closed.
    /// `Some` when the connection stops.
    async fn auth_failed(&mut self, session: &Session, err: WireError) -> Option<Stop> {
        self.auth_failures = self.auth_failures.saturating_add(1);
        let from_address = self.connections.auth_failed(self.peer.ip());
        let doublings = u32::from(self.auth_failures)
            .max(from_address)
            .saturating_sub(1)
            .min(16);
        let delay = (self.limits.auth_delay * (1 << doublings)).min(MAX_AUTH_DELAY);
        let limit = self.limits.max_auth_failures;
        let closing = limit > 0 && u32::from(self.auth_failures) >= limit;
        conn_span(self.peer, session.name.as_deref()).in_scope(|| {
            info!(
                failures = self.auth_failures,
                from_address,
                delay_ms = delay.as_millis() as u64,
                closing,
                "failed AUTH"
            )
        });
        // The replies before it go out now; the next command is not read
        // before this reply is sent.
        let outbox = &session.outbox;
        outbox.flush_replies(self.hub.ring());
        tokio::select! {
            _ = Box::pin(tokio::time::sleep(delay)) => {}
            why = outbox.interrupted(KILL | SHUTDOWN) => return Some(Stop::from(why)),
        }
        self.hub.reply(session, Reply::Error(err));
        if !closing {
            return None;
        }
        outbox.push_other(
            self.hub.tag(),
            Outgoing::Event(Event::Bye {
                code: ErrorCode::TooManyFailures,
                text: format!("{limit} wrong passwords; closing the connection"),
            }),
        );
        Some(Stop::Done)
    }

    /// Polls for the next command: a reply slot for it first (a peer that
    /// never reads its replies stops being read instead of growing its
    /// queue), then input, an interruption or the silence timer. Replies
    /// are written by this task when it has read all there is (see
    /// `before_wait`) or runs out of slots, rather than by waking a writer
    /// for each.
    fn poll_next<D>(
        &mut self,
        cx: &mut Context<'_>,
        frames: &mut Frames<D>,
        session: &mut Session,
    ) -> Poll<Read>
    where
        D: Decoder,
        D::Item: Into<Input>,
        D::Error: ReadError + From<std::io::Error>,
    {
        let outbox = &session.outbox;
        if let Poll::Ready(why) = outbox.poll_interrupted(cx, KILL | STOP | SHUTDOWN) {
            return Poll::Ready(Read::Stop(Stop::from(why)));
        }
        if !self.slot {
            if !outbox.try_reserve_reply() {
                outbox.flush_replies(self.hub.ring());
                ready!(outbox.poll_reply_slot(cx));
            }
            self.slot = true;
        }
        let item = ready!(frames.poll_next(cx, || outbox.flush_replies(self.hub.ring())));
        self.slot = false;
        outbox.heard();
        Poll::Ready(self.take(item, session))
    }

    /// Takes a command from the connection's rate, and its address's under
    /// `--limit-by addr`.
    fn within_rate(&mut self) -> bool {
        let limits = self.limits;
        let own = self.bucket.as_mut().is_none_or(|b| b.take());
        let address = limits.rate_limit == 0
            || !limits.limit_by.by_addr()
            || self
                .connections
                .take_token(self.peer.ip(), limits.rate_limit, limits.rate_burst);
        own && address
    }

    /// What to do with what was read: a command for the hub, or a refusal
    /// answered here.
    fn take<I, E>(&mut self, item: Option<Result<I, E>>, session: &mut Session) -> Read
    where
        I: Into<Input>,
        E: ReadError,
    {
        let outbox = &session.outbox;
        let result = match item.map(|r| r.map(Into::into)) {
            None => return Read::Stop(Stop::Done),
            Some(Err(e)) => {
                if let Some(err) = e.farewell() {
                    debug!(error = %e, "broken frame");
                    self.hub.reply(session, Reply::Error(err));
                }
                return Read::Stop(Stop::Done);
            }
            // Not a command: no rate limit, but it takes its place (and its
            // reply slot) among the replies.
            Some(Ok(Input::Answer(bytes))) => {
                outbox.push_reply(self.hub.tag(), Outgoing::Raw(bytes));
                return Read::Handled;
            }
            Some(Ok(Input::Command(result))) => result,
        };
        match result {
            Err(err) if err.code == ErrorCode::CrossProtocol => {
                warn!(
                    "possible cross-protocol attack (HTTP request on the pixchat port); connection closed"
                );
                outbox.kill();
                Read::Stop(Stop::Done)
            }
            result if !self.within_rate() => {
                drop(result);
                self.hub.reply(
                    session,
                    Reply::Error(WireError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "at most {} commands per second; this one was dropped",
                            self.limits.rate_limit
                        ),
                    )),
                );
                Read::Handled
            }
            Err(err) => {
                self.hub.reply(session, Reply::Error(err));
                Read::Handled
            }
            Ok(cmd) if self.read_only && !watch_only(&cmd) => {
                self.hub.reply(
                    session,
                    Reply::Error(WireError::new(
                        ErrorCode::Forbidden,
                        "this page only watches: the server runs without --http-play (a watcher joins quietly)",
                    )),
                );
                Read::Handled
            }
            Ok(cmd) => Read::Command(cmd),
        }
    }
}

/// Why a bridged client was not let in.
#[derive(Debug)]
pub(crate) enum NotAdmitted {
    /// Over `--max-clients` or `--max-conns-per-ip`, as for a TCP client.
    Refused(super::connections::Refused),
    /// No socket pair could be made (usually out of file descriptors).
    Io(std::io::Error),
}

/// The way in for clients that do not come straight from the listener: a
/// bridge (TLS, a WebSocket) is handed one end of a Unix socket pair and
/// feeds it, while the server serves the other end like any TCP client,
/// under the same limits, bans and guarantees, with the peer's real address.
#[derive(Debug, Clone)]
pub(crate) struct Entrance {
    pub shared: Arc<Shared>,
    pub tracker: tokio_util::task::TaskTracker,
}

impl Entrance {
    /// The same entrance, for clients that may only watch (see
    /// [`watch_only`]).
    pub fn read_only(&self) -> Self {
        let Shared {
            hub,
            limits,
            connections,
            ..
        } = &*self.shared;
        Self {
            shared: Arc::new(Shared {
                hub: hub.clone(),
                limits: limits.clone(),
                connections: connections.clone(),
                read_only: true,
            }),
            tracker: self.tracker.clone(),
        }
    }

    /// Admits a client from `peer` and returns the bridge's end of its
    /// connection; the server's end is served on the server's tracker, so
    /// shutdown waits for it as for any connection.
    pub fn admit(&self, peer: SocketAddr) -> Result<tokio::net::UnixStream, NotAdmitted> {
        let listed = self
            .shared
            .connections
            .admit(peer.ip())
            .map_err(NotAdmitted::Refused)?;
        let (ours, theirs) = tokio::net::UnixStream::pair().map_err(NotAdmitted::Io)?;
        self.tracker.spawn(serve(
            Arc::new(Sock::Unix(ours)),
            peer,
            self.shared.clone(),
            listed,
        ));
        Ok(theirs)
    }
}

#[cfg(test)]
mod tests {
    /// An idle connection's biggest cost is its task, and tokio keeps the
    /// future in a cell aligned to 128 bytes, with 112 bytes around it (a
    /// 32-byte header, 32 of the task's and the tracker's bookkeeping, a
    /// 48-byte trailer; `-Zprint-type-sizes`): a future of up to 528 bytes
    /// takes 640, and one byte more takes 768, 128 bytes more for each of
    /// 19,900 idle connections (BENCHMARKS.md, session L).
    #[test]
    fn a_connection_s_future_fits_a_640_byte_task_cell() {
        fn returned<A, B, C, D, R>(_: fn(A, B, C, D) -> R) -> usize {
            std::mem::size_of::<R>()
        }
        let size = returned(super::serve);
        assert!(
            size <= 528,
            "a connection's future is {size} bytes: its task no longer fits 640 bytes"
        );
    }
}
