//! pixchat: a real-time chat and collaborative pixel canvas over raw TCP.
//!
//! Module map:
//! - [`protocol`]: the message vocabulary shared by both wire modes, with
//!   [`protocol::text`] (netcat lines) and [`protocol::binary`] (frames).
//! - [`server`]: the accept loop, connections, the hub (users, canvas,
//!   ordering) and the broadcast log.
//! - [`client`]: the async client library (connect, join, resume, reconnect)
//!   and the `pixchat` terminal client built on it.
//!
//! Features: `client` (the protocol and the async client only), `server`,
//! `tui` and `cli` (what the binaries need); all but `client` are on by
//! default. The load generator is the workspace's `pixchat-bench` crate.

#![forbid(unsafe_code)]

#[cfg(feature = "client")]
pub mod client;
#[cfg(any(feature = "server", feature = "tui"))]
pub mod image;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;

pub use protocol::{Command, ErrorCode, Event, Reply, ServerMsg, WireError};
#[cfg(feature = "server")]
pub use server::{Config, LimitBy, PresenceConfig, bind, run, run_with};

/// Address the server listens on when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// Canvas width when none is given (Pixorama's 64x64).
pub const DEFAULT_WIDTH: u16 = 64;
/// Canvas height when none is given.
pub const DEFAULT_HEIGHT: u16 = 64;
/// Connections served at once when no limit is given.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// Kernel send buffer per connection (Linux doubles it for bookkeeping).
pub const DEFAULT_SEND_BUFFER: usize = 256 * 1024;
/// Pixel events kept for `SYNC` when no size is given.
pub const DEFAULT_HISTORY: usize = 100_000;
/// Placements a `--memory` server keeps for `ROLLBACK` and `WHOSE x y n`
/// when no count is given (17 bytes each, allocated as they happen).
pub const DEFAULT_MEMORY_HISTORY: usize = 1_000_000;
/// Where `pixchat-server` keeps the canvas when no `--data-dir` is given.
pub const DEFAULT_DATA_DIR: &str = "./pixchat-data";
/// Journal records that trigger a compaction into a new snapshot.
pub const DEFAULT_COMPACT_AFTER: u64 = 100_000;
/// Prefix of the Redis keys of a cluster when none is given.
pub const DEFAULT_REDIS_PREFIX: &str = "pixchat:";
/// Events the cluster's Redis stream keeps (about), for servers catching up
/// after an outage and for `SYNC` on a server that starts late.
pub const DEFAULT_STREAM_LEN: u64 = 100_000;
/// Milliseconds a cluster server's lease on its users' names lasts without
/// renewal (it renews five times per lease): a server dead or paused this
/// long loses its users, who are shown as left.
pub const DEFAULT_LEASE_MS: u64 = 5000;
/// Users online from which joins and leaves are told in periodic
/// `PRESENCE` events instead of one `JOINED` or `LEFT` each.
pub const DEFAULT_PRESENCE_THRESHOLD: usize = 1000;
/// Milliseconds between two `PRESENCE` events.
pub const DEFAULT_PRESENCE_INTERVAL_MS: u64 = 2000;
/// Seconds a binary connection may stay silent (a `KEEPALIVE` goes out at
/// half of it).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Seconds a connection may take to join (or give the password) before it
/// is closed, like PostgreSQL's `authentication_timeout`.
pub const DEFAULT_JOIN_TIMEOUT_SECS: u64 = 60;
/// Milliseconds the reply to a first failed `AUTH` is held back (doubling
/// with each further failure).
pub const DEFAULT_AUTH_DELAY_MS: u64 = 250;
/// Failed `AUTH`s after which a connection is closed.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 5;
