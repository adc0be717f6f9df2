//! The async client library for pixchat servers, and the scripting
//! subcommands built on it.
//!
//! - [`net`]: the reusable client: one [`Connection`] for scripts, and a
//!   [`Client`] that keeps a session alive (reconnect, resume, keepalive) for
//!   interactive programs.
//! - [`script`]: the `set`, `say`, `watch` and `canvas` subcommands.

pub mod net;
pub mod script;

pub use net::{
    Backoff, Client, ClientConfig, ClientError, ClientEvent, Connection, Joined, Login,
    RequestError, SendError,
};
