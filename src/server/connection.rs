//! One client connection: sniff the wire mode from the first byte, then read
//! commands, hand them to the hub, and leave a writer task to send what the
//! hub queues.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::hub::{After, Hub, Session};
use super::log::Mode;
use super::outbox::{Outbox, Outgoing, WriterEnd, run_writer};
use crate::protocol::binary::{FrameError, ServerCodec};
use crate::protocol::text::LineCodec;
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
pub async fn sniff(stream: &TcpStream) -> Option<Mode> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
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
    shutdown: CancellationToken,
) {
    let Some(mode) = sniff(&stream).await else {
        debug!(%peer, "closed before saying anything");
        return;
    };
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let outbox = Arc::new(Outbox::new(mode));
    let writer = tokio::spawn(run_writer(wr, outbox.clone(), hub.log().clone()));
    let mut session = Session::new(outbox.clone());
    let mut rd = match mode {
        Mode::Text => {
            let mut frames = FramedRead::with_capacity(rd, LineCodec::new(), READ_BUFFER);
            read_commands(&mut frames, &hub, &mut session, &shutdown, peer).await;
            frames.into_inner()
        }
        Mode::Binary => {
            let mut frames = FramedRead::with_capacity(rd, ServerCodec::default(), READ_BUFFER);
            read_commands(&mut frames, &hub, &mut session, &shutdown, peer).await;
            frames.into_inner()
        }
    };
    hub.leave(&mut session);
    outbox.push_reply(hub.log().end(), Outgoing::Close);
    let mut writer = writer;
    match tokio::time::timeout(WRITER_GRACE, &mut writer).await {
        Ok(Ok(WriterEnd::Closed)) => {
            let _ = tokio::time::timeout(DRAIN_GRACE, drain(&mut rd)).await;
        }
        Ok(Ok(WriterEnd::Lagged)) => warn!(%peer, "disconnected a slow consumer"),
        Ok(_) => {}
        Err(_) => writer.abort(),
    }
    debug!(%peer, "connection closed");
}

/// Reads and drops what the peer still sends until it closes its side.
/// Closing a socket with unread input makes the kernel send a reset, which
/// can destroy our last reply before the peer reads it; the peer has our FIN
/// by now, so well-behaved peers close promptly.
pub async fn drain<R: AsyncRead + Unpin>(rd: &mut R) {
    let mut sink = [0u8; 1024];
    let mut budget = 1 << 20;
    while budget > 0 {
        match rd.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => budget -= n.min(budget),
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

async fn read_commands<R, D>(
    frames: &mut FramedRead<R, D>,
    hub: &Hub,
    session: &mut Session,
    shutdown: &CancellationToken,
    peer: SocketAddr,
) where
    R: AsyncRead + Unpin,
    D: Decoder<Item = Result<Command, WireError>>,
    D::Error: ReadError,
{
    let outbox = session.outbox.clone();
    loop {
        // One reply slot per command, taken before reading it, so a peer
        // that never reads its replies stops being read instead of growing
        // its queue.
        tokio::select! {
            _ = outbox.reserve_reply() => {}
            _ = outbox.kill.cancelled() => return,
            _ = shutdown.cancelled() => return say_goodbye(&outbox),
        }
        let item = tokio::select! {
            item = frames.next() => item,
            _ = outbox.kill.cancelled() => return,
            _ = shutdown.cancelled() => return say_goodbye(&outbox),
        };
        let cmd = match item {
            None => return,
            Some(Err(e)) => {
                if let Some(err) = e.farewell() {
                    debug!(%peer, error = %e, "broken frame");
                    hub.reply(session, Reply::Error(err));
                }
                return;
            }
            Some(Ok(Err(err))) => {
                hub.reply(session, Reply::Error(err));
                continue;
            }
            Some(Ok(Ok(cmd))) => cmd,
        };
        match hub.handle(session, cmd) {
            Ok(After::Continue) => {}
            Ok(After::Close) => return,
            Err(err) => {
                let fatal = outbox.mode() == Mode::Binary
                    && matches!(
                        err.code,
                        ErrorCode::HelloRequired | ErrorCode::UnsupportedVersion
                    );
                hub.reply(session, Reply::Error(err));
                if fatal {
                    return;
                }
            }
        }
    }
}

fn say_goodbye(outbox: &Outbox) {
    outbox.push_other(
        0,
        Outgoing::Event(Event::Bye {
            code: ErrorCode::ShuttingDown,
            text: "the server is shutting down".into(),
        }),
    );
}
