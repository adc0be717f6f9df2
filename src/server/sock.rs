//! A connection's socket: a TCP stream from the listener, or one end of a
//! Unix socket pair whose other end a bridge feeds (TLS, a WebSocket), so
//! that every kind of client is served by the same reader, outbox and hub
//! code, and gets the same limits and guarantees.
//!
//! Reader and writer share it through an `Arc`, as tokio's owned halves do;
//! the kind is matched on each call, which is cheaper than boxing a trait
//! object and keeps every connection's future the same size.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

/// See the module docs.
#[derive(Debug)]
pub enum Sock {
    /// A client's own TCP connection.
    Tcp(TcpStream),
    /// The server's end of a pair; a bridge owns the other end.
    Unix(UnixStream),
}

impl From<TcpStream> for Sock {
    fn from(s: TcpStream) -> Self {
        Sock::Tcp(s)
    }
}

impl From<UnixStream> for Sock {
    fn from(s: UnixStream) -> Self {
        Sock::Unix(s)
    }
}

impl AsFd for Sock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Sock::Tcp(s) => s.as_fd(),
            Sock::Unix(s) => s.as_fd(),
        }
    }
}

impl Sock {
    /// The first byte the peer sent, left unread, or `None` if nothing
    /// came within `timeout` (or the peer closed).
    pub async fn peek_first(&self, timeout: Duration) -> Option<u8> {
        let peek = async {
            loop {
                match self {
                    Sock::Tcp(s) => return peek_tcp(s).await,
                    Sock::Unix(s) => {
                        // tokio's UnixStream has no `peek`.
                        s.readable().await.ok()?;
                        let mut first = [0u8; 1];
                        let got = s.try_io(Interest::READABLE, || {
                            nix::sys::socket::recv(
                                s.as_raw_fd(),
                                &mut first,
                                nix::sys::socket::MsgFlags::MSG_PEEK,
                            )
                            .map_err(io::Error::from)
                        });
                        match got {
                            Ok(1) => return Some(first[0]),
                            Ok(_) => return None,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            Err(_) => return None,
                        }
                    }
                }
            }
        };
        tokio::time::timeout(timeout, peek).await.ok().flatten()
    }

    /// Polls until the socket may have input.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Sock::Tcp(s) => s.poll_read_ready(cx),
            Sock::Unix(s) => s.poll_read_ready(cx),
        }
    }

    /// Reads what is there without waiting.
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.try_read_buf(buf),
            Sock::Unix(s) => s.try_read_buf(buf),
        }
    }

    /// Waits until the socket may take more output.
    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.writable().await,
            Sock::Unix(s) => s.writable().await,
        }
    }

    /// Writes what the socket takes without waiting.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.try_write(bytes),
            Sock::Unix(s) => s.try_write(bytes),
        }
    }

    /// Writes what the socket takes of `bufs` without waiting.
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.try_write_vectored(bufs),
            Sock::Unix(s) => s.try_write_vectored(bufs),
        }
    }

    /// The socket for options and `shutdown`.
    pub fn sock_ref(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(self)
    }

    /// TCP only: no Nagle delay, and keepalive probes that find dead peers
    /// of long-lived sessions. A bridged socket's peer is the bridge.
    pub fn set_tcp_options(&self, inline_urgent: bool) {
        if let Sock::Tcp(s) = self {
            let _ = s.set_nodelay(true);
            let sock = socket2::SockRef::from(s);
            let _ = sock.set_keepalive(true);
            if inline_urgent {
                let _ = sock.set_out_of_band_inline(true);
            }
        }
    }

    /// Reads and drops up to 1 MiB of what the peer still sends, until it
    /// closes its side (see `connection::drain`).
    pub async fn drain(&self) {
        let mut sink = BytesMut::new();
        let mut budget = 1usize << 20;
        while budget > 0 {
            if std::future::poll_fn(|cx| self.poll_read_ready(cx))
                .await
                .is_err()
            {
                return;
            }
            sink.clear();
            sink.reserve(1024);
            match self.try_read_buf(&mut sink) {
                Ok(0) => return,
                Ok(n) => budget -= n.min(budget),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

/// A TCP client's first byte, left unread, or `None` if nothing came within
/// `timeout` (or the peer closed): what chooses TLS or plaintext, and the
/// wire mode.
pub async fn first_byte(stream: &TcpStream, timeout: Duration) -> Option<u8> {
    tokio::time::timeout(timeout, peek_tcp(stream))
        .await
        .ok()
        .flatten()
}

async fn peek_tcp(stream: &TcpStream) -> Option<u8> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) => Some(first[0]),
        _ => None,
    }
}
