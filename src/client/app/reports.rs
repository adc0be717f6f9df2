//! How the network client's reports change the state: joins and refusals,
//! events from the server, and the replies to the commands in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::canvas::{Applied, Canvas};
use super::chat::ChatLine;
use super::login::Field;
use super::session::{Link, Sent};
use super::status::format_ago;
use super::{App, Screen};
use crate::client::net::{ClientEvent, LoginError, RequestError};
use crate::protocol::{Command, ErrorCode, Event, Placement, Reply, Snapshot, Welcome, WireError};

impl App {
    pub(super) fn on_net(&mut self, event: ClientEvent, now: Instant) {
        match event {
            ClientEvent::Connecting { attempt } => {
                self.session.link = Link::Connecting { attempt };
            }
            // With several servers, the status bar names the one in use.
            ClientEvent::Server(server) => self.session.server = server,
            ClientEvent::Joined { welcome, snapshot } => self.on_joined(welcome, snapshot, now),
            ClientEvent::LoginRejected(e) => self.login_rejected(e),
            ClientEvent::Evicted { code, text } => self.evicted(code, text),
            ClientEvent::Event(event) => self.on_event(event, now),
            ClientEvent::Reply { tag, result } => self.on_reply(tag, result, now),
            ClientEvent::Rtt(rtt) => self.session.rtt = Some(rtt),
            ClientEvent::Disconnected { reason, retry_in } => {
                if self.session.online() {
                    self.chat
                        .push(ChatLine::Error(format!("connection lost: {reason}")));
                }
                self.users.clear();
                self.session.rtt = None;
                self.session.link = Link::Retrying {
                    at: now + retry_in,
                    reason,
                };
            }
            ClientEvent::Stopped { reason } => {
                self.chat
                    .push(ChatLine::Error(format!("gave up: {reason}")));
                self.session.link = Link::Offline { reason };
            }
        }
    }

    /// The server refused the login sent last: back to the form, at the
    /// field to fix.
    fn login_rejected(&mut self, e: LoginError) {
        let name = self
            .session
            .login
            .as_ref()
            .map_or(String::new(), |l| l.name.clone());
        match e {
            LoginError::PasswordRequired(_) => {
                self.session.password = None;
                self.show_login(name, Field::Password, "this server needs a password".into());
            }
            LoginError::WrongPassword(_) => {
                self.session.password = None;
                self.show_login(name, Field::Password, "wrong password".into());
            }
            LoginError::Name(e) => self.show_login(name, Field::Name, e.message),
        }
    }

    /// An admin sent us away: offline until the user presses `r`.
    fn evicted(&mut self, code: ErrorCode, text: String) {
        let (reason, line) = match code {
            ErrorCode::Banned => (
                "banned from this server".to_string(),
                format!("banned: {text}"),
            ),
            _ => (
                "kicked by an admin · r reconnects".to_string(),
                format!("kicked: {text}; press r to reconnect"),
            ),
        };
        self.chat.push(ChatLine::Error(line));
        self.users.clear();
        self.session.rtt = None;
        self.session.link = Link::Evicted { reason };
    }

    fn on_joined(&mut self, welcome: Welcome, snapshot: Option<Arc<Snapshot>>, now: Instant) {
        self.screen = Screen::Main;
        self.session.link = Link::Online;
        self.users.set(welcome.users, welcome.online);
        self.palette.replace(welcome.palette);
        let verb = if self.session.joined_before {
            "reconnected"
        } else {
            "joined"
        };
        match snapshot {
            Some(s) => {
                let replaced = self
                    .canvas
                    .pixels
                    .as_ref()
                    .is_some_and(|c| c.id != s.canvas_id);
                self.canvas.replace(Canvas::from_snapshot(&s));
                self.chat.push(ChatLine::Info(format!(
                    "{verb} as {} (canvas {}x{}, seq {})",
                    welcome.name, s.width, s.height, s.seq
                )));
                if replaced {
                    self.chat.push(ChatLine::Info(
                        "the server has a new canvas (it restarted without its data)".into(),
                    ));
                }
            }
            None => self.chat.push(ChatLine::Info(format!(
                "{verb} as {} (resumed up to seq {})",
                welcome.name, welcome.seq
            ))),
        }
        self.recount_template();
        self.chat.me = Some(welcome.name.clone());
        self.users.me = Some(welcome.name);
        self.session.joined_before = true;
        self.session.resyncing = false;
        self.flush_queue(now);
    }

    /// Sends the pixels placed while offline.
    fn flush_queue(&mut self, now: Instant) {
        let mut sent = 0;
        for i in 0..self.canvas.pending.len() {
            if self.canvas.pending[i].tag.is_none() {
                let pixel = self.canvas.pending[i];
                self.canvas.pending[i].tag = Some(self.send_pixel(&pixel));
                sent += 1;
            }
        }
        if sent > 0 {
            self.status
                .notify(now, format!("sending {sent} queued pixel(s)"));
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Pixel(p) => {
                let Some(canvas) = &mut self.canvas.pixels else {
                    return;
                };
                let old = canvas.get(p.x, p.y);
                let applied = canvas.apply(&p);
                if let (Some(t), Some(old), Applied::Next | Applied::Gap) =
                    (&mut self.template, old, applied)
                {
                    t.changed(p.x, p.y, old, p.color);
                }
                if applied == Applied::Gap && !self.session.resyncing {
                    // The server promises no gaps; if one shows, the canvas
                    // is wrong, and a fresh snapshot is the cure.
                    self.session.resyncing = true;
                    self.session
                        .send(Command::Canvas, Sent::Canvas, &mut self.intents);
                }
            }
            Event::Joined { name } => {
                self.users.joined(&name);
                self.chat.push(ChatLine::Joined(name.to_string()));
            }
            Event::Left { name } => {
                self.users.left(&name);
                self.chat.push(ChatLine::Left(name.to_string()));
            }
            Event::Msg { from, text } => self.chat.push(ChatLine::Msg {
                from: from.to_string(),
                text: text.to_string(),
            }),
            Event::Dm { from, text } => self.chat.push(ChatLine::DmIn {
                from: from.to_string(),
                text: text.to_string(),
            }),
            Event::History {
                unix_ms,
                from,
                text,
            } => {
                // Every (re)join replays the latest chat; after a reconnect
                // most of it is already on screen.
                let seen = self.chat.lines.iter().any(|l| {
                    matches!(l, ChatLine::Msg { from: f, text: t } | ChatLine::History { from: f, text: t }
                        if **f == *from && **t == *text)
                });
                if !seen {
                    if !matches!(self.chat.lines.back(), Some(ChatLine::History { .. })) {
                        // Said apart, so old chat never reads as live.
                        self.chat
                            .push(ChatLine::Rule("chat from before you joined".into()));
                    }
                    self.chat.push_at(
                        ChatLine::History {
                            from: from.to_string(),
                            text: text.to_string(),
                        },
                        unix_ms,
                    );
                }
            }
            // The client pings every 15 s, which is what keeps the server's
            // idle timer happy; nothing else to do.
            Event::Keepalive => {}
            // A crowd's comings and goings: the users pane and the count,
            // not the chat, which a crowd would flood.
            Event::Presence(p) => self.users.presence(&p),
            // An admin's kick or ban: `Evicted` follows and says it.
            Event::Bye {
                code: ErrorCode::Kicked | ErrorCode::Banned,
                ..
            } => {}
            Event::Bye { code, text } => {
                self.status.notify(now, format!("server: {text} ({code})"));
            }
        }
    }

    fn on_reply(&mut self, tag: u64, result: Result<Reply, RequestError>, now: Instant) {
        self.apply_reply(tag, result, now);
        if self.canvas.stroke_tag == Some(tag) {
            // A stroke's pixel was answered: the next may go.
            self.canvas.stroke_tag = None;
            self.paint_next(now);
        }
    }

    fn apply_reply(&mut self, tag: u64, result: Result<Reply, RequestError>, now: Instant) {
        let Some(sent) = self.session.answered(tag) else {
            return;
        };
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => return self.unanswered(tag, sent, e, now),
        };
        match (sent, reply) {
            (Sent::Pixel, Reply::Error(e)) => self.pixel_refused(tag, e, now),
            (Sent::Pixel, _) => self.canvas.pending.retain(|p| p.tag != Some(tag)),
            (Sent::Say { .. }, Reply::Ok) => {}
            (Sent::Tell { to, text, .. }, Reply::Ok) => {
                self.chat.push(ChatLine::DmOut { to, text });
            }
            (Sent::Who, Reply::Who { online, users }) => {
                let more = match online.saturating_sub(users.len() as u32) {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                self.chat.push(ChatLine::Info(format!(
                    "online ({online}): {}{more}",
                    users.join(", ")
                )));
                self.users.set(users, online);
            }
            (Sent::Whose { x, y }, Reply::Whose(placement)) => {
                self.show_whose(x, y, placement, now);
            }
            (Sent::Kick { name }, Reply::Ok) => {
                self.chat.push(ChatLine::Info(format!("kicked {name}")));
            }
            (Sent::Ban { name }, Reply::Ok) => {
                self.chat.push(ChatLine::Info(format!(
                    "banned {name} (until the server restarts)"
                )));
            }
            (Sent::Bulk { what }, Reply::Bulk { placed, seq, more }) => {
                let more = match more {
                    0 => String::new(),
                    n => format!("; {n} more: run it again"),
                };
                self.chat.push(ChatLine::Info(format!(
                    "{what}: {placed} pixels placed, up to seq {seq}{more}"
                )));
            }
            (Sent::Canvas, Reply::Canvas(s)) => {
                self.session.resyncing = false;
                if self
                    .canvas
                    .pixels
                    .as_ref()
                    .is_none_or(|c| c.id == s.canvas_id)
                {
                    self.canvas.pixels = Some(Canvas::from_snapshot(&s));
                    self.recount_template();
                }
            }
            (sent, Reply::Error(e)) => {
                let recall = match sent {
                    Sent::Canvas => {
                        self.session.resyncing = false;
                        ""
                    }
                    // Not put back into the input, where whatever the user
                    // types next would be glued to it: `↑` brings it back.
                    Sent::Say { .. } | Sent::Tell { .. } => " (↑ brings the line back)",
                    Sent::Pixel
                    | Sent::Who
                    | Sent::Whose { .. }
                    | Sent::Kick { .. }
                    | Sent::Ban { .. }
                    | Sent::Bulk { .. } => "",
                };
                self.chat.push(ChatLine::Error(format!("{e}{recall}")));
                self.status.notify(now, e.to_string());
            }
            (_, other) => tracing::debug!(?other, "unexpected reply"),
        }
    }

    /// The server refused the pixel sent with `tag`: it is shown as not
    /// placed, and a cooldown is counted down in the status bar.
    fn pixel_refused(&mut self, tag: u64, e: WireError, now: Instant) {
        let Some(i) = self.canvas.pending.iter().position(|p| p.tag == Some(tag)) else {
            return;
        };
        let p = self.canvas.pending.remove(i);
        match cooldown_ms(&e) {
            // The status bar counts it down; the notice says which pixel
            // it cost.
            Some(ms) => {
                self.status.cool_down(now + Duration::from_millis(ms));
                self.status
                    .notify(now, format!("pixel ({},{}) not placed", p.x, p.y));
            }
            None => self
                .status
                .notify(now, format!("pixel ({},{}) not placed: {e}", p.x, p.y)),
        }
    }

    /// A command that got no answer: pixels wait for the next connection,
    /// chat goes back into the input so nothing typed is lost.
    fn unanswered(&mut self, tag: u64, sent: Sent, why: RequestError, now: Instant) {
        match sent {
            Sent::Pixel => {
                for p in self
                    .canvas
                    .pending
                    .iter_mut()
                    .filter(|p| p.tag == Some(tag))
                {
                    p.tag = None;
                }
                if self.session.online() {
                    // Lost although we think we are online: the drop report
                    // is on its way; the next join sends it.
                    self.status
                        .notify(now, "pixel queued: the connection dropped");
                }
            }
            Sent::Say { line } | Sent::Tell { line, .. } => {
                self.chat.restore(line);
                self.status.notify(
                    now,
                    format!("not sent ({why}): the text is back in the input"),
                );
            }
            Sent::Canvas => self.session.resyncing = false,
            Sent::Whose { .. } | Sent::Kick { .. } | Sent::Ban { .. } | Sent::Bulk { .. } => {
                self.status.notify(now, format!("no answer: {why}"));
            }
            Sent::Who => {}
        }
    }

    /// Says who placed `(x, y)` and how long ago, in the chat and the
    /// status bar.
    fn show_whose(&mut self, x: u16, y: u16, placement: Option<Placement>, now: Instant) {
        let text = match placement {
            Some(p) => {
                let ago = self.session.wall.unix_ms(now).saturating_sub(p.unix_ms);
                format!(
                    "({x},{y}) placed by {} {}, seq {}",
                    p.name,
                    format_ago(ago),
                    p.seq
                )
            }
            None => format!("({x},{y}) nobody has placed this pixel"),
        };
        self.chat.push(ChatLine::Info(text.clone()));
        self.status.inform(now, text);
    }
}

/// The milliseconds a `cooldown` error says are left.
fn cooldown_ms(e: &WireError) -> Option<u64> {
    (e.code == ErrorCode::Cooldown)
        .then(|| e.message.trim().parse().ok())
        .flatten()
}
