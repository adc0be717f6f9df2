//! The hub: who is online, the canvas, and the order of everything.
//!
//! Each command runs as one step under one `std::sync::Mutex`: it changes
//! state, appends broadcast events to the [`EventLog`] and queues the replies,
//! all before the lock is released. That single step is what makes the
//! snapshot-then-events guarantee hold: a `CANVAS` or `JOIN` snapshot and the
//! log position tagged on it are taken together, so no pixel can fall between
//! them. The lock is never held across an `.await` and never while writing to
//! a socket (writers only copy bytes out of the log), so one slow client
//! cannot stall the others.
//!
//! This is also the seam for a clustered backend: [`Hub::commit_pixel`] and
//! the broadcast helpers take already-ordered events, so a backend that gets
//! its order elsewhere (a Redis stream) can feed the same fan-out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::canvas::{Canvas, History};
use super::log::{EventLog, LogLimits, Mode};
use super::outbox::{Outbox, Outgoing, SharedSnapshot};
use crate::protocol::{
    Command, ErrorCode, Event, HELP_TEXT, HelloInfo, PALETTE, PROTOCOL_VERSION, Pixel, Reply,
    Resume, Welcome, WireError, validate_name, validate_text,
};

/// Hub sizing.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Canvas width.
    pub width: u16,
    /// Canvas height.
    pub height: u16,
    /// Pixel events kept for `SYNC`.
    pub history: usize,
    /// Broadcast log window.
    pub log: LogLimits,
}

/// One connection's view of itself, owned by its connection task.
#[derive(Debug)]
pub struct Session {
    /// Where this client's messages go.
    pub outbox: Arc<Outbox>,
    /// Set once `JOIN` succeeds.
    pub name: Option<Arc<str>>,
    /// Binary mode: set once `HELLO` succeeds.
    pub hello: bool,
}

impl Session {
    /// A fresh, unjoined session.
    pub fn new(outbox: Arc<Outbox>) -> Self {
        Self {
            outbox,
            name: None,
            hello: false,
        }
    }
}

#[derive(Debug)]
struct User {
    name: Arc<str>,
    outbox: Arc<Outbox>,
}

#[derive(Debug)]
struct State {
    canvas: Canvas,
    history: History,
    /// Keyed by lower-cased name: names are unique ignoring case.
    users: HashMap<String, User>,
    /// The last snapshot handed out, reused while the seq is unchanged so a
    /// crowd joining at once shares one copy and one encoding.
    snapshot: Option<Arc<SharedSnapshot>>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    log: Arc<EventLog>,
}

/// What a command asks of the connection besides its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Keep reading commands.
    Continue,
    /// Close once the reply is written.
    Close,
}

impl Hub {
    /// A hub with a blank canvas of a fresh random id.
    pub fn new(config: &HubConfig) -> Result<Self, WireError> {
        let canvas = Canvas::new(rand::random(), config.width, config.height)?;
        Ok(Self {
            state: Mutex::new(State {
                canvas,
                history: History::new(config.history),
                users: HashMap::new(),
                snapshot: None,
            }),
            log: Arc::new(EventLog::new(config.log)),
        })
    }

    /// The broadcast log the writers read from.
    pub fn log(&self) -> &Arc<EventLog> {
        &self.log
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("hub lock poisoned")
    }

    /// Runs one command for `session`, queueing its reply. Errors come back
    /// to the caller, which queues them as the reply.
    pub fn handle(&self, session: &mut Session, cmd: Command) -> Result<After, WireError> {
        let binary = session.outbox.mode() == Mode::Binary;
        if binary && !session.hello && !matches!(cmd, Command::Hello { .. }) {
            return Err(WireError::new(
                ErrorCode::HelloRequired,
                "the first binary frame must be HELLO",
            ));
        }
        match cmd {
            Command::Hello { version } => self.hello(session, version),
            Command::Join { name, resume } => self.join(session, name, resume),
            Command::Say { text } => self.say(session, text),
            Command::Tell { to, text } => self.tell(session, &to, text),
            Command::Set { x, y, color } => self.set(session, x, y, color),
            Command::Canvas => self.canvas(session),
            Command::Sync { seq } => self.sync(session, seq),
            Command::Who => {
                let users = self.lock().user_names();
                Ok(self.reply(session, Reply::Who { users }))
            }
            Command::Ping { token } => Ok(self.reply(session, Reply::Pong { token })),
            Command::Help => Ok(self.reply(
                session,
                Reply::Help {
                    text: HELP_TEXT.to_string(),
                },
            )),
            Command::Quit => {
                self.reply(session, Reply::Bye);
                Ok(After::Close)
            }
        }
    }

    fn hello(&self, session: &mut Session, version: u16) -> Result<After, WireError> {
        if session.outbox.mode() != Mode::Binary || session.hello {
            return Err(WireError::new(ErrorCode::BadArgs, "HELLO was already said"));
        }
        if version != PROTOCOL_VERSION {
            return Err(WireError::new(
                ErrorCode::UnsupportedVersion,
                format!("this server speaks protocol version {PROTOCOL_VERSION}"),
            ));
        }
        session.hello = true;
        let st = self.lock();
        let info = HelloInfo {
            version: PROTOCOL_VERSION,
            canvas_id: st.canvas.id(),
            width: st.canvas.width(),
            height: st.canvas.height(),
            seq: st.canvas.seq(),
        };
        drop(st);
        Ok(self.reply(session, Reply::Hello(info)))
    }

    fn join(
        &self,
        session: &mut Session,
        name: String,
        resume: Option<Resume>,
    ) -> Result<After, WireError> {
        if session.name.is_some() {
            return Err(WireError::new(
                ErrorCode::AlreadyJoined,
                "you have joined already",
            ));
        }
        validate_name(&name)?;
        let key = name.to_ascii_lowercase();
        let mut st = self.lock();
        if st.users.contains_key(&key) {
            return Err(WireError::new(
                ErrorCode::NameTaken,
                format!("{name} is already online"),
            ));
        }
        let name: Arc<str> = Arc::from(name);
        let cursor = self.log.append(&Event::Joined { name: name.clone() });
        st.users.insert(
            key,
            User {
                name: name.clone(),
                outbox: session.outbox.clone(),
            },
        );
        session.outbox.subscribe(cursor);
        session.name = Some(name.clone());

        let latest = st.canvas.seq();
        let replay = resume
            .filter(|r| r.canvas_id == st.canvas.id())
            .and_then(|r| st.history.since(r.seq, latest).ok());
        let binary = session.outbox.mode() == Mode::Binary;
        let snapshot = (binary && replay.is_none()).then(|| st.shared_snapshot());
        let welcome = Reply::Welcome(Welcome {
            name: name.to_string(),
            canvas_id: st.canvas.id(),
            width: st.canvas.width(),
            height: st.canvas.height(),
            seq: latest,
            palette: PALETTE
                .iter()
                .map(|c| (c.rgb, c.name.to_string()))
                .collect(),
            users: st.user_names(),
            resumed: replay.is_some(),
        });
        session.outbox.push_reply(
            cursor,
            Outgoing::Join {
                welcome,
                snapshot,
                replay,
            },
        );
        Ok(After::Continue)
    }

    fn say(&self, session: &Session, text: String) -> Result<After, WireError> {
        let from = joined(session)?;
        validate_text(&text)?;
        let _st = self.lock();
        let tag = self.log.end();
        session.outbox.push_reply(tag, Outgoing::Reply(Reply::Ok));
        self.log.append(&Event::Msg {
            from,
            text: Arc::from(text),
        });
        Ok(After::Continue)
    }

    fn tell(&self, session: &Session, to: &str, text: String) -> Result<After, WireError> {
        let from = joined(session)?;
        validate_text(&text)?;
        let st = self.lock();
        let Some(target) = st.users.get(&to.to_ascii_lowercase()) else {
            return Err(WireError::new(
                ErrorCode::NoSuchUser,
                format!("nobody called {to} is online"),
            ));
        };
        let tag = self.log.end();
        target.outbox.push_other(
            tag,
            Outgoing::Event(Event::Dm {
                from,
                text: Arc::from(text),
            }),
        );
        session.outbox.push_reply(tag, Outgoing::Reply(Reply::Ok));
        Ok(After::Continue)
    }

    fn set(&self, session: &Session, x: u32, y: u32, color: u32) -> Result<After, WireError> {
        let name = joined(session)?;
        let mut st = self.lock();
        let (x, y, color) = st.canvas.check(x, y, color)?;
        let tag = self.log.end();
        let seq = self.commit_pixel(&mut st, x, y, color, name);
        session
            .outbox
            .push_reply(tag, Outgoing::Reply(Reply::Set { seq }));
        Ok(After::Continue)
    }

    /// Applies an ordered, checked pixel and broadcasts it. Returns its seq.
    fn commit_pixel(&self, st: &mut State, x: u16, y: u16, color: u8, name: Arc<str>) -> u64 {
        let seq = st.canvas.apply(x, y, color);
        let pixel = Pixel {
            seq,
            x,
            y,
            color,
            name,
        };
        self.log.append(&Event::Pixel(pixel.clone()));
        st.history.push(pixel);
        seq
    }

    fn canvas(&self, session: &Session) -> Result<After, WireError> {
        let mut st = self.lock();
        let snapshot = st.shared_snapshot();
        session
            .outbox
            .push_reply(self.log.end(), Outgoing::Canvas(snapshot));
        Ok(After::Continue)
    }

    fn sync(&self, session: &Session, seq: u64) -> Result<After, WireError> {
        let st = self.lock();
        let latest = st.canvas.seq();
        let replay = st.history.since(seq, latest)?;
        session.outbox.push_reply(
            self.log.end(),
            Outgoing::Sync {
                replay,
                seq: latest,
            },
        );
        Ok(After::Continue)
    }

    /// Queues a reply that needs no hub state. It is tagged with the
    /// current end of the log, so it follows every event that happened
    /// before it, as a script reading the output would expect.
    pub fn reply(&self, session: &Session, reply: Reply) -> After {
        session
            .outbox
            .push_reply(self.log.end(), Outgoing::Reply(reply));
        After::Continue
    }

    /// Removes a joined session and tells everyone else. Safe to call for
    /// sessions that never joined.
    pub fn leave(&self, session: &mut Session) {
        let Some(name) = session.name.take() else {
            return;
        };
        let mut st = self.lock();
        st.users.remove(&name.to_ascii_lowercase());
        session.outbox.unsubscribe(self.log.end());
        self.log.append(&Event::Left { name });
    }

    /// Number of users joined.
    pub fn user_count(&self) -> usize {
        self.lock().users.len()
    }
}

impl State {
    fn user_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.users.values().map(|u| u.name.to_string()).collect();
        names.sort_by_key(|n| n.to_ascii_lowercase());
        names
    }

    fn shared_snapshot(&mut self) -> Arc<SharedSnapshot> {
        if let Some(s) = &self.snapshot
            && s.snapshot.seq == self.canvas.seq()
        {
            return s.clone();
        }
        let s = Arc::new(SharedSnapshot::new(self.canvas.snapshot()));
        self.snapshot = Some(s.clone());
        s
    }
}

fn joined(session: &Session) -> Result<Arc<str>, WireError> {
    session
        .name
        .clone()
        .ok_or_else(|| WireError::new(ErrorCode::NotJoined, "JOIN first"))
}
