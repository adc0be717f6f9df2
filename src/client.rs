//! The terminal client, and the async client library it is built on.
//!
//! - [`net`]: the reusable client: one [`Connection`] for scripts, and a
//!   [`Client`] that keeps a session alive (reconnect, resume, keepalive) for
//!   interactive programs.
//! - [`script`]: the `set`, `say`, `watch` and `canvas` subcommands.
//! - The terminal UI, split as ratatui apps are: [`app`] (the state as
//!   components, one per pane, and how every input changes it; no I/O, no
//!   drawing), [`event`] (everything the loop handles), [`keys`] (the one
//!   key table for handler and help), [`color`] (how colours reach the
//!   terminal), [`image`] (template images read from PNG files), [`ui`] (drawing, a pure function of the state: one widget
//!   per pane) and [`tui`] (the loop that joins the terminal, the network
//!   and the state).

#[cfg(feature = "tui")]
pub mod app;
#[cfg(feature = "tui")]
pub mod color;
#[cfg(feature = "tui")]
pub mod event;
#[cfg(feature = "tui")]
pub mod image;
#[cfg(feature = "tui")]
pub mod keys;
pub mod net;
#[cfg(feature = "cli")]
pub mod script;
pub mod transport;
#[cfg(feature = "tui")]
pub mod tui;
#[cfg(feature = "tui")]
pub mod ui;

#[cfg(all(test, feature = "tui"))]
mod testing;

pub use net::{
    Backoff, Client, ClientConfig, ClientError, ClientEvent, Connection, Joined, Login, LoginError,
    RequestError, SendError,
};
pub use transport::Transport;
