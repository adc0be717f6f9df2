//! The world: everything that survives a restart (the canvas with who
//! placed each pixel, the recent chat, the bans) and the one way to change
//! it: [`World::apply`] an ordered [`Change`]. Local sequencing in the hub,
//! the Redis stream in a cluster and journal replay at start-up all go
//! through it, so the three cannot drift apart.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::canvas::Canvas;
use crate::protocol::Pixel;

/// Chat messages kept for newcomers and across restarts.
pub const CHAT_HISTORY: usize = 100;

/// One chat message as kept for history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Position in the chat sequence (1, 2, ...).
    pub chat_seq: u64,
    /// When it was said.
    pub unix_ms: u64,
    /// Sender.
    pub from: Arc<str>,
    /// Message.
    pub text: Arc<str>,
}

/// An ordered change to the world, as sequenced by this server or by Redis,
/// and as kept in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A pixel was placed.
    Pixel {
        /// Its seq: the canvas's seq + 1.
        seq: u64,
        /// Column.
        x: u16,
        /// Row.
        y: u16,
        /// Palette index.
        color: u8,
        /// Unix ms when accepted.
        unix_ms: u64,
        /// Author.
        name: Arc<str>,
    },
    /// A chat message.
    Chat(ChatLine),
    /// A name was banned (lower-cased).
    Ban(String),
    /// A ban was lifted (lower-cased name).
    Unban(String),
}

/// What [`World::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The change is now part of the world; a pixel comes back as its event.
    Done(Option<Pixel>),
    /// The world had it already (a replay of what a snapshot holds).
    Had,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct World {
    /// Pixels, seq, authorship.
    pub canvas: Canvas,
    /// The latest chat messages, oldest first.
    pub chat: VecDeque<ChatLine>,
    /// Seq of the latest chat message.
    pub chat_seq: u64,
    /// Banned names, lower-cased.
    pub bans: BTreeSet<String>,
}

impl World {
    /// A fresh world around a blank canvas.
    pub fn new(canvas: Canvas) -> Self {
        Self {
            canvas,
            chat: VecDeque::new(),
            chat_seq: 0,
            bans: BTreeSet::new(),
        }
    }

    /// Whether `name` (any case) is banned.
    pub fn is_banned(&self, name: &str) -> bool {
        self.bans.contains(&name.to_ascii_lowercase())
    }

    /// Whether the address `ip` is banned (IPv6 by its /64).
    pub fn is_address_banned(&self, ip: std::net::IpAddr) -> bool {
        !self.bans.is_empty() && self.bans.contains(&super::address::entry(ip))
    }

    /// Applies an ordered change. A pixel or chat line must be the next in
    /// its sequence (or one the world already has); `Err` says why it does
    /// not follow, and the world is unchanged. Bans are set operations, so
    /// replaying them again in order is harmless.
    pub fn apply(&mut self, change: &Change) -> Result<Applied, String> {
        match change {
            Change::Pixel {
                seq,
                x,
                y,
                color,
                unix_ms,
                name,
            } => {
                let have = self.canvas.seq();
                if *seq <= have {
                    return Ok(Applied::Had);
                }
                if *seq != have + 1 {
                    return Err(format!("pixel seq {seq} does not follow seq {have}"));
                }
                let (x, y, color) = self
                    .canvas
                    .check((*x).into(), (*y).into(), (*color).into())
                    .map_err(|e| format!("pixel seq {seq}: {}", e.message))?;
                self.canvas.apply(x, y, color, name, *unix_ms);
                Ok(Applied::Done(Some(Pixel {
                    seq: *seq,
                    x,
                    y,
                    color,
                    name: name.clone(),
                })))
            }
            Change::Chat(line) => {
                if line.chat_seq <= self.chat_seq {
                    return Ok(Applied::Had);
                }
                if line.chat_seq != self.chat_seq + 1 {
                    return Err(format!(
                        "chat seq {} does not follow chat seq {}",
                        line.chat_seq, self.chat_seq
                    ));
                }
                self.chat_seq = line.chat_seq;
                self.chat.push_back(line.clone());
                while self.chat.len() > CHAT_HISTORY {
                    self.chat.pop_front();
                }
                Ok(Applied::Done(None))
            }
            Change::Ban(name) => {
                self.bans.insert(name.to_ascii_lowercase());
                Ok(Applied::Done(None))
            }
            Change::Unban(name) => {
                self.bans.remove(&name.to_ascii_lowercase());
                Ok(Applied::Done(None))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(seq: u64) -> Change {
        Change::Pixel {
            seq,
            x: 1,
            y: 1,
            color: 3,
            unix_ms: 9,
            name: Arc::from("al"),
        }
    }

    fn chat(chat_seq: u64) -> Change {
        Change::Chat(ChatLine {
            chat_seq,
            unix_ms: 1,
            from: Arc::from("al"),
            text: Arc::from("hi"),
        })
    }

    #[test]
    fn pixels_and_chat_follow_their_sequences() {
        let mut w = World::new(Canvas::new(1, 4, 4).unwrap());
        assert!(matches!(w.apply(&pixel(1)), Ok(Applied::Done(Some(_)))));
        assert_eq!(w.apply(&pixel(1)), Ok(Applied::Had));
        assert!(w.apply(&pixel(3)).is_err());
        assert_eq!(w.canvas.seq(), 1);
        assert_eq!(w.apply(&chat(1)), Ok(Applied::Done(None)));
        assert!(w.apply(&chat(3)).is_err());
        assert_eq!(w.chat_seq, 1);
        let outside = Change::Pixel {
            seq: 2,
            x: 4,
            y: 0,
            color: 1,
            unix_ms: 1,
            name: Arc::from("al"),
        };
        assert!(w.apply(&outside).is_err());
        assert_eq!(w.canvas.seq(), 1, "a refused change leaves the world alone");
    }

    #[test]
    fn chat_history_is_bounded() {
        let mut w = World::new(Canvas::new(1, 1, 1).unwrap());
        for n in 1..=CHAT_HISTORY as u64 + 5 {
            w.apply(&chat(n)).unwrap();
        }
        assert_eq!(w.chat.len(), CHAT_HISTORY);
        assert_eq!(w.chat.front().unwrap().chat_seq, 6);
    }

    #[test]
    fn bans_ignore_case_and_replay_harmlessly() {
        let mut w = World::new(Canvas::new(1, 1, 1).unwrap());
        w.apply(&Change::Ban("Bob".into())).unwrap();
        assert!(w.is_banned("BOB"));
        w.apply(&Change::Ban("bob".into())).unwrap();
        w.apply(&Change::Unban("bOb".into())).unwrap();
        assert!(!w.is_banned("bob"));
    }
}
