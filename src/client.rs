//! The async client library for pixchat servers.
//!
//! - [`net`]: the reusable client: one [`Connection`] for scripts, and a
//!   [`Client`] that keeps a session alive (reconnect, resume, keepalive) for
//!   interactive programs.

pub mod net;

pub use net::{
    Backoff, Client, ClientConfig, ClientError, ClientEvent, Connection, Joined, Login,
    RequestError, SendError,
};
