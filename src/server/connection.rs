//! One client connection: sniff the wire mode from the first byte, then read
//! commands, apply the per-connection limits, hand commands to the hub, and
//! leave a writer task to send what the hub queues.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Limits;
use super::hub::{After, Hub, Session};
use super::outbox::{Outbox, Outgoing, WriterEnd, run_writer};
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
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == 0 => Some(Mode::Binary),
        Ok(Ok(1)) => Some(Mode::Text),
        _ => None,
    }
}

/// Serves one accepted connection until it closes or the server shuts down.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    hub: Arc<Hub>,
    limits: Arc<Limits>,
    shutdown: CancellationToken,
) {
    let Some(mode) = sniff(&stream, limits.handshake_timeout).await else {
        debug!(%peer, "closed: nothing sent within the handshake timeout");
        return;
    };
    let _ = stream.set_nodelay(true);
    // Dead peers of long-lived text sessions (which have no idle timeout)
    // are found by the kernel's keepalive probes.
    let _ = socket2::SockRef::from(&stream).set_keepalive(true);
    if mode == Mode::Text {
        // Telnet may send its data mark as urgent data after Ctrl-C; out of
        // line, the kernel would take that one byte out of the stream and
        // leave its IAC to swallow the next byte typed.
        let _ = socket2::SockRef::from(&stream).set_out_of_band_inline(true);
    }
    let (rd, wr) = stream.into_split();
    let outbox = Arc::new(Outbox::new(mode, wr));
    let writer = tokio::spawn(run_writer(outbox.clone(), hub.ring().clone()));
    let mut session = hub.session(outbox.clone());
    let mut reader = Reader {
        hub: &hub,
        limits: &limits,
        shutdown: &shutdown,
        peer,
        bucket: Bucket::new(limits.rate_limit, limits.rate_burst),
    };
    let mut rd = match mode {
        Mode::Text => {
            let mut frames = Frames::new(rd, TextCodec::new());
            reader.run(&mut frames, &mut session).await;
            frames.rd
        }
        Mode::Binary => {
            let mut frames = Frames::new(rd, ServerCodec::default());
            reader.run(&mut frames, &mut session).await;
            frames.rd
        }
    };
    hub.leave(&mut session);
    outbox.push_reply(hub.tag(), Outgoing::Close);
    let mut writer = writer;
    match tokio::time::timeout(WRITER_GRACE, &mut writer).await {
        Ok(Ok(WriterEnd::Closed)) => {
            let _ = tokio::time::timeout(DRAIN_GRACE, drain(&mut rd)).await;
        }
        Ok(Ok(WriterEnd::Lagged)) => {
            warn!(%peer, "disconnected a slow consumer");
            // Its goodbye may still sit in the send buffer, which the kernel
            // keeps sending after the close, unless unread input turns the
            // close into a reset.
            let _ = tokio::time::timeout(DRAIN_GRACE, drain(&mut rd)).await;
        }
        Ok(_) => {}
        Err(_) => writer.abort(),
    }
    debug!(%peer, "connection closed");
}

/// A connection's incoming frames, decoded by `D`. The read buffer exists
/// only while there is input to decode: an idle connection waits for its
/// socket to be readable without one, which with tens of thousands of
/// watchers is most of the memory a connection would hold.
pub(crate) struct Frames<D> {
    rd: OwnedReadHalf,
    codec: D,
    buf: BytesMut,
    eof: bool,
}

impl<D: Decoder> Frames<D>
where
    D::Error: From<std::io::Error>,
{
    fn new(rd: OwnedReadHalf, codec: D) -> Self {
        Self {
            rd,
            codec,
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// Whether a partly received frame waits for more bytes.
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next frame; `None` at the end of the stream. Cancel-safe: bytes
    /// read are kept in `self` until a frame is whole.
    async fn next(&mut self) -> Option<Result<D::Item, D::Error>> {
        loop {
            if !self.buf.is_empty() || self.eof {
                let decoded = if self.eof {
                    self.codec.decode_eof(&mut self.buf)
                } else {
                    self.codec.decode(&mut self.buf)
                };
                match decoded {
                    Ok(Some(item)) => return Some(Ok(item)),
                    Ok(None) if self.eof => return None,
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            if self.buf.is_empty() {
                // Nothing half-read: give the buffer back while waiting.
                self.buf = BytesMut::new();
            }
            if let Err(e) = self.rd.readable().await {
                return Some(Err(e.into()));
            }
            if self.buf.capacity() - self.buf.len() < READ_BUFFER / 2 {
                self.buf.reserve(READ_BUFFER.max(self.buf.len()));
            }
            match self.rd.try_read_buf(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(Err(e.into())),
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
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Option<Self> {
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

    fn take(&mut self) -> bool {
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
    shutdown: &'a CancellationToken,
    peer: SocketAddr,
    bucket: Option<Bucket>,
}

impl Reader<'_> {
    async fn run<D>(&mut self, frames: &mut Frames<D>, session: &mut Session)
    where
        D: Decoder,
        D::Item: Into<Input>,
        D::Error: ReadError + From<std::io::Error>,
    {
        if let Stop::Shutdown = self.read(frames, session).await {
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

    async fn read<D>(&mut self, frames: &mut Frames<D>, session: &mut Session) -> Stop
    where
        D: Decoder,
        D::Item: Into<Input>,
        D::Error: ReadError + From<std::io::Error>,
    {
        let outbox = session.outbox.clone();
        // Only binary clients have a library that answers keepalives; text
        // sessions (netcat watchers) may sit silent for hours.
        let idle = (outbox.mode() == Mode::Binary && !self.limits.idle_timeout.is_zero())
            .then_some(self.limits.idle_timeout);
        let mut heard = Instant::now();
        let mut pinged = false;
        loop {
            // Everything the peer sent so far is handled: write the replies
            // now, from this task, rather than waking the writer for them.
            // (A partly received command leaves that to the writer task.)
            if frames.is_empty() {
                outbox.flush_replies(self.hub.ring());
            }
            // One reply slot per command, taken before reading it, so a peer
            // that never reads its replies stops being read instead of
            // growing its queue.
            tokio::select! {
                _ = outbox.reserve_reply() => {}
                _ = outbox.kill.cancelled() => return Stop::Done,
                _ = outbox.stop.cancelled() => return Stop::Done,
                _ = self.shutdown.cancelled() => return Stop::Shutdown,
            }
            let item = loop {
                let deadline = match idle {
                    Some(t) if pinged => heard + t,
                    Some(t) => heard + t / 2,
                    None => Instant::now() + Duration::from_secs(86_400),
                };
                tokio::select! {
                    item = frames.next() => break item,
                    _ = outbox.kill.cancelled() => return Stop::Done,
                    _ = outbox.stop.cancelled() => return Stop::Done,
                    _ = self.shutdown.cancelled() => return Stop::Shutdown,
                    _ = tokio::time::sleep_until(deadline), if idle.is_some() => {
                        if pinged {
                            debug!(peer = %self.peer, "idle timeout");
                            outbox.push_other(self.hub.tag(), Outgoing::Event(Event::Bye {
                                code: ErrorCode::IdleTimeout,
                                text: "nothing heard from you for too long".into(),
                            }));
                            return Stop::Done;
                        }
                        pinged = true;
                        outbox.push_other(self.hub.tag(), Outgoing::Event(Event::Keepalive));
                    }
                }
            };
            heard = Instant::now();
            pinged = false;
            let result = match item.map(|r| r.map(Into::into)) {
                None => return Stop::Done,
                Some(Err(e)) => {
                    if let Some(err) = e.farewell() {
                        debug!(peer = %self.peer, error = %e, "broken frame");
                        self.hub.reply(session, Reply::Error(err));
                    }
                    return Stop::Done;
                }
                // Not a command: no rate limit, but it takes its place (and
                // its reply slot) among the replies.
                Some(Ok(Input::Answer(bytes))) => {
                    outbox.push_reply(self.hub.tag(), Outgoing::Raw(bytes));
                    continue;
                }
                Some(Ok(Input::Command(result))) => result,
            };
            let cmd = match result {
                Err(err) if err.code == ErrorCode::CrossProtocol => {
                    warn!(peer = %self.peer, "possible cross-protocol attack (HTTP request on the pixchat port); connection closed");
                    outbox.kill.cancel();
                    return Stop::Done;
                }
                result if !self.bucket.as_mut().is_none_or(Bucket::take) => {
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
                    continue;
                }
                Err(err) => {
                    self.hub.reply(session, Reply::Error(err));
                    continue;
                }
                Ok(cmd) => cmd,
            };
            if matches!(cmd, Command::Set { .. } | Command::Say { .. }) {
                tokio::select! {
                    _ = self.hub.fanout().wait_for_room() => {}
                    _ = outbox.kill.cancelled() => return Stop::Done,
                    _ = self.shutdown.cancelled() => return Stop::Shutdown,
                }
            }
            let handled = tokio::select! {
                r = self.hub.handle(session, cmd) => r,
                _ = outbox.kill.cancelled() => return Stop::Done,
                _ = self.shutdown.cancelled() => return Stop::Shutdown,
            };
            match handled {
                Ok(After::Continue) => {}
                Ok(After::Close) => return Stop::Done,
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
}
