//! The server: an accept loop over an already bound listener (so tests can
//! bind `127.0.0.1:0`), a connection limit that answers `server_full`
//! instead of queueing, and a clean shutdown on a cancellation token.

pub mod canvas;
pub mod connection;
pub mod hub;
pub mod log;
pub mod outbox;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::protocol::{ErrorCode, Reply, WireError, binary, text};
use hub::{Hub, HubConfig};
use log::{LogLimits, Mode};

/// Server settings; every field has the default the binary uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// Canvas width in pixels.
    pub width: u16,
    /// Canvas height in pixels.
    pub height: u16,
    /// Most connections served at once; more are told `server_full`.
    pub max_clients: usize,
    /// Pixel events kept for `SYNC`.
    pub history: usize,
    /// Broadcast window; a client further behind is disconnected.
    pub log: LogLimits,
    /// Kernel send buffer per connection (`SO_SNDBUF`), which bounds what a
    /// client that stops reading can pin in the kernel; `None` leaves the
    /// kernel's autotuning (up to several MiB per socket).
    pub send_buffer: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            width: crate::DEFAULT_WIDTH,
            height: crate::DEFAULT_HEIGHT,
            max_clients: crate::DEFAULT_MAX_CLIENTS,
            history: crate::DEFAULT_HISTORY,
            log: LogLimits::default(),
            send_buffer: Some(crate::DEFAULT_SEND_BUFFER),
        }
    }
}

/// Rejections answered at once; beyond this an over-limit connection is
/// simply closed, so a flood cannot make the server hold sockets open.
const MAX_PENDING_REJECTS: usize = 64;
/// How long an over-limit connection gets to reveal its mode.
const REJECT_SNIFF: Duration = Duration::from_secs(1);
/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `listener` until `shutdown` is cancelled, then tells every client
/// goodbye and waits (briefly) for their connections to close.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let hub = Arc::new(
        Hub::new(&HubConfig {
            width: config.width,
            height: config.height,
            history: config.history,
            log: config.log,
        })
        .map_err(|e| anyhow::anyhow!("{}", e.message))
        .context("create the canvas")?,
    );
    let addr = listener
        .local_addr()
        .context("read the listening address")?;
    info!(%addr, width = config.width, height = config.height, "listening");

    let slots = Arc::new(Semaphore::new(config.max_clients));
    let rejects = Arc::new(Semaphore::new(MAX_PENDING_REJECTS));
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                if let Some(size) = config.send_buffer {
                    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(size);
                }
                let hub = hub.clone();
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    connection::serve(stream, peer, hub, shutdown).await;
                    drop(permit);
                });
            }
            Err(_) => {
                if let Ok(permit) = rejects.clone().try_acquire_owned() {
                    tracker.spawn(async move {
                        reject_full(stream).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    info!("shutting down");
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("some connections did not close in time");
    }
    Ok(())
}

/// Answers an over-limit connection with `server_full` in its own mode.
async fn reject_full(mut stream: TcpStream) {
    let mut first = [0u8; 1];
    let mode = match tokio::time::timeout(REJECT_SNIFF, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == 0 => Mode::Binary,
        _ => Mode::Text,
    };
    let err = Reply::Error(WireError::new(
        ErrorCode::ServerFull,
        "the server is at its client limit; try again later",
    ));
    let mut out = BytesMut::new();
    match mode {
        Mode::Text => text::encode_reply(&err, &mut out),
        Mode::Binary => binary::encode_reply(&err, &mut out),
    }
    let _ = tokio::time::timeout(REJECT_SNIFF, async {
        stream.write_all(&out).await?;
        stream.shutdown().await?;
        connection::drain(&mut stream).await;
        Ok::<_, std::io::Error>(())
    })
    .await;
}
