//! The conversation with the server as the state sees it: the connection
//! state, the login to (re)join with, and the commands in flight, by tag,
//! so each reply can be made sense of.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Intent;
use super::status::WallClock;
use crate::client::net::Login;
use crate::protocol::Command;

/// The connection as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// No connection wanted yet (no name).
    Idle,
    /// Connecting and joining.
    Connecting {
        /// Attempts since the last success.
        attempt: u32,
    },
    /// Joined and live.
    Online,
    /// Lost or refused; the next attempt is at `at`.
    Retrying {
        /// When the next attempt starts.
        at: Instant,
        /// What went wrong.
        reason: String,
    },
    /// Sent away by an admin (kicked or banned): no reconnecting until the
    /// user asks ([`keys::DRAWING`](crate::client::keys::DRAWING)'s `r`).
    Evicted {
        /// What happened, for the status bar.
        reason: String,
    },
    /// Given up.
    Offline {
        /// Why.
        reason: String,
    },
}

/// What a tag was sent for, to make sense of its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// `SET`: the pending pixel with this tag.
    Pixel,
    /// `SAY`, typed as `line`.
    Say {
        /// The input line, to put back if it does not go through.
        line: String,
    },
    /// `TELL`, typed as `line`.
    Tell {
        /// Recipient.
        to: String,
        /// Message.
        text: String,
        /// The input line, to put back if it does not go through.
        line: String,
    },
    /// `WHO`.
    Who,
    /// `CANVAS`, to repair a seq gap.
    Canvas,
    /// `WHOSE` of this pixel.
    Whose {
        /// Column.
        x: u16,
        /// Row.
        y: u16,
    },
    /// `KICK`.
    Kick {
        /// Who.
        name: String,
    },
    /// `BAN`.
    Ban {
        /// Who.
        name: String,
    },
    /// `ROLLBACK` or `FILL`, as typed.
    Bulk {
        /// The command line, for the answer.
        what: String,
    },
}

/// The session's state.
#[derive(Debug)]
pub struct Session {
    /// Server address, for the status bar.
    pub server: String,
    /// Connection state.
    pub link: Link,
    /// Last keepalive round trip.
    pub rtt: Option<Duration>,
    /// Maps `now` to Unix time, for how long ago a pixel was placed.
    pub wall: WallClock,
    /// A `CANVAS` to repair a seq gap is on its way.
    pub(super) resyncing: bool,
    /// Joined at least once (later joins are reconnects).
    pub(super) joined_before: bool,
    /// The name to join with at start, from `--name`.
    pub(super) initial_name: Option<String>,
    /// The password to join with: `--password`, or the one typed last.
    pub(super) password: Option<String>,
    /// The login sent last, to fill the form when it is refused and to
    /// reconnect with.
    pub(super) login: Option<Login>,
    in_flight: HashMap<u64, Sent>,
    next_tag: u64,
}

impl Session {
    /// A session with `server`, to join as `name` at start if given.
    pub fn new(server: String, name: Option<String>) -> Self {
        Self {
            server,
            link: Link::Idle,
            rtt: None,
            wall: WallClock::now(),
            resyncing: false,
            joined_before: false,
            initial_name: name,
            password: None,
            login: None,
            in_flight: HashMap::new(),
            next_tag: 1,
        }
    }

    /// True while joined and live.
    pub fn online(&self) -> bool {
        self.link == Link::Online
    }

    /// Sends `cmd` through `intents`, remembering why; returns its tag.
    pub(super) fn send(&mut self, cmd: Command, sent: Sent, intents: &mut Vec<Intent>) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.in_flight.insert(tag, sent);
        intents.push(Intent::Send { tag, cmd });
        tag
    }

    /// Why `tag` was sent, once: its reply arrived.
    pub(super) fn answered(&mut self, tag: u64) -> Option<Sent> {
        self.in_flight.remove(&tag)
    }
}
