//! pixchat: a real-time chat and collaborative pixel canvas over raw TCP.
//!
//! Module map:
//! - [`protocol`]: the message vocabulary shared by both wire modes, with
//!   [`protocol::text`] (netcat lines) and [`protocol::binary`] (frames).
//! - [`server`]: the accept loop, connections, the hub (users, canvas,
//!   ordering) and the broadcast log.
//! - [`bench`](mod@bench): `pixchat-bench`, the load generator (fan-out against pixchat
//!   and Redis pub/sub, join storms, idle connections).

#![forbid(unsafe_code)]

pub mod bench;
pub mod protocol;
pub mod server;

pub use protocol::{Command, ErrorCode, Event, Reply, ServerMsg, WireError};
pub use server::{Config, run};

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
