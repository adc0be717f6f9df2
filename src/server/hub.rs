//! The hub: who is online, the canvas, and the order of everything.
//!
//! Each command runs as one step under one `std::sync::Mutex`: it changes
//! state, appends broadcast events to the [`BroadcastRing`], hands records to the
//! [`Journal`] and queues the replies, all before the lock is released. That
//! single step is what makes the snapshot-then-events guarantee hold: a
//! `CANVAS` or `JOIN` snapshot and the ring position tagged on it are taken
//! together, so no pixel can fall between them. The lock is never held across
//! an `.await`, never while writing to a socket (writers only copy bytes out
//! of the ring) and never while waiting for the disk (the journal thread
//! publishes durable ring positions), so one slow client or a slow fsync
//! cannot stall the others' commands.
//!
//! One private step, `commit`, puts an ordered event into the broadcast ring
//! (and its record into the journal). In cluster mode ([`remote`]) the
//! order comes from Redis instead: changes are sent there, and the events
//! read back from its stream go through the same `commit`, so the fan-out,
//! snapshots and `SYNC` work the same way.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

pub mod remote;

use super::broadcast::{BroadcastLimits, BroadcastRing};
use super::canvas::{Canvas, History, PixelMeta};
use super::cluster::{Cluster, Loaded};
use super::fanout::Fanout;
use super::outbox::{Outbox, Outgoing, SharedSnapshot};
use super::storage::{self, ChatLine, Journal, StorageConfig, World, format};
use super::unix_ms;
use super::world::Change;
use crate::protocol::Mode;
use crate::protocol::{
    Command, ErrorCode, Event, HELP_TEXT, HelloInfo, MAX_LISTED_USERS, PALETTE, PROTOCOL_VERSION,
    Pixel, Placement, Reply, Resume, Welcome, WireError, validate_name, validate_text,
    validate_token,
};

/// Everything the hub needs to start.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Canvas size asked for (`None`: the stored one, or the default).
    pub size: Option<(u16, u16)>,
    /// Size of a new canvas when none was asked for.
    pub default_size: (u16, u16),
    /// Pixel events kept for `SYNC`.
    pub history: usize,
    /// Broadcast ring window.
    pub broadcast: BroadcastLimits,
    /// Where the canvas is kept; `None` keeps it in memory only.
    pub storage: Option<StorageConfig>,
    /// Minimum time between two placements by one user (zero: off).
    pub cooldown: Duration,
    /// Needed before anything but `PING`, `HELP`, `QUIT`.
    pub password: Option<String>,
    /// Grants `KICK` and `BAN`.
    pub admin_password: Option<String>,
}

/// A cluster-mode `JOIN` waiting for its `JOINED` event from the stream.
#[derive(Debug)]
struct PendingJoin {
    name: String,
    outbox: Arc<Outbox>,
    resume: Option<Resume>,
    done: tokio::sync::oneshot::Sender<Arc<str>>,
}

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// The server has a password and it was not given yet.
    None,
    /// May join, chat and draw.
    User,
    /// May also kick and ban.
    Admin,
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
    /// Joined quietly: its join and leave are not announced.
    pub quiet: bool,
    /// Rights earned so far.
    pub access: Access,
}

/// Someone online, as listed.
#[derive(Debug, Clone)]
pub(crate) struct Online {
    name: Arc<str>,
    /// Joined quietly (a script): listed with a trailing `*`, its join and
    /// leave not announced.
    quiet: bool,
}

impl Online {
    pub(crate) fn new(name: Arc<str>, quiet: bool) -> Self {
        Self { name, quiet }
    }

    /// The name as `WHO` lists it.
    fn listed(&self) -> String {
        if self.quiet {
            format!("{}*", self.name)
        } else {
            self.name.to_string()
        }
    }
}

#[derive(Debug)]
struct User {
    name: Arc<str>,
    outbox: Arc<Outbox>,
    quiet: bool,
}

#[derive(Debug)]
struct State {
    /// What survives restarts: canvas, authorship, recent chat.
    world: World,
    history: History,
    /// This server's joined sessions, by lower-cased name.
    users: BTreeMap<String, User>,
    /// Everyone online (on every server of a cluster), by lower-cased
    /// name: names are unique ignoring case, and the order is the listing
    /// order, so listing the first names is cheap.
    roster: BTreeMap<String, Online>,
    /// Cluster mode: JOINs waiting for their event, by nonce.
    joining: HashMap<u64, PendingJoin>,
    /// The last snapshot handed out, reused while the seq is unchanged so a
    /// crowd joining at once shares one copy and one encoding.
    snapshot: Option<Arc<SharedSnapshot>>,
    /// Last placement per lower-cased name, for the cooldown. Keyed by name
    /// rather than connection, so reconnecting does not reset it.
    last_placed: HashMap<String, Instant>,
    /// Lower-cased names banned until the server stops.
    banned: HashSet<String>,
    /// Placements not yet durable, oldest first, with what their cell
    /// held before. While the journal is down, reads are answered from
    /// the durable state: the current one with these undone.
    unsettled: VecDeque<Unsettled>,
}

/// A placement whose event is not yet published, and the cell it changed.
#[derive(Debug)]
struct Unsettled {
    /// Broadcast ring index right after its event.
    index: u64,
    seq: u64,
    x: u16,
    y: u16,
    /// The cell before it.
    color: u8,
    meta: Option<PixelMeta>,
}

/// The state every published event adds up to: the current state minus
/// the unsettled placements after `visible`.
struct Durable<'a> {
    visible: u64,
    seq: u64,
    undo: Vec<&'a Unsettled>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    ring: Arc<BroadcastRing>,
    fanout: Arc<Fanout>,
    /// Cluster mode: Redis orders every change.
    cluster: Option<Arc<Cluster>>,
    journal: Option<Journal>,
    /// Pixel events kept for `SYNC`.
    history_capacity: usize,
    cooldown: Duration,
    password: Option<String>,
    admin_password: Option<String>,
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
    /// Recovers the stored canvas (or creates one) and starts the journal.
    pub fn open(config: &HubConfig) -> anyhow::Result<Self> {
        let ring = Arc::new(BroadcastRing::new(config.broadcast));
        let (journal, world, replayed) = match &config.storage {
            Some(storage_config) => {
                let recovered = storage::open(storage_config, config.size, config.default_size)?;
                let (journal, world, replayed) =
                    Journal::start(recovered, ring.clone(), storage_config);
                (Some(journal), world, replayed)
            }
            None => {
                let (w, h) = config.size.unwrap_or(config.default_size);
                let canvas =
                    Canvas::new(rand::random(), w, h).map_err(|e| anyhow::anyhow!(e.message))?;
                (None, World::new(canvas), Vec::new())
            }
        };
        Ok(Self::assemble(config, ring, journal, world, replayed, None))
    }

    /// A hub whose canvas lives in a Redis cluster, starting from `loaded`.
    pub fn open_clustered(config: &HubConfig, cluster: Arc<Cluster>, loaded: Loaded) -> Self {
        let ring = Arc::new(BroadcastRing::new(config.broadcast));
        let hub = Self::assemble(
            config,
            ring,
            None,
            loaded.world,
            loaded.recent,
            Some(cluster),
        );
        hub.lock().roster = roster_of(loaded.users);
        hub
    }

    fn assemble(
        config: &HubConfig,
        ring: Arc<BroadcastRing>,
        journal: Option<Journal>,
        world: World,
        replayed: Vec<Pixel>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        let mut history = History::new(config.history);
        let skip = replayed.len().saturating_sub(config.history);
        for pixel in replayed.into_iter().skip(skip) {
            history.push(pixel);
        }
        let pacers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            cluster,
            fanout: Arc::new(Fanout::new(ring.clone(), pacers)),
            state: Mutex::new(State {
                world,
                history,
                users: BTreeMap::new(),
                roster: BTreeMap::new(),
                joining: HashMap::new(),
                snapshot: None,
                last_placed: HashMap::new(),
                banned: HashSet::new(),
                unsettled: VecDeque::new(),
            }),
            ring,
            journal,
            history_capacity: config.history,
            cooldown: config.cooldown,
            password: config.password.clone(),
            admin_password: config.admin_password.clone(),
        }
    }

    /// A fresh session with the access a connection starts with.
    pub fn session(&self, outbox: Arc<Outbox>) -> Session {
        Session {
            outbox,
            name: None,
            hello: false,
            quiet: false,
            access: if self.password.is_some() {
                Access::None
            } else {
                Access::User
            },
        }
    }

    /// The pacers that write broadcast events to the watchers.
    pub fn fanout(&self) -> &Arc<Fanout> {
        &self.fanout
    }

    /// The broadcast ring the writers read from.
    pub fn ring(&self) -> &Arc<BroadcastRing> {
        &self.ring
    }

    /// Canvas width and height.
    pub fn size(&self) -> (u16, u16) {
        let st = self.lock();
        (st.world.canvas.width(), st.world.canvas.height())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("hub lock poisoned")
    }

    /// Runs one command for `session`, queueing its reply. Errors come back
    /// to the caller, which queues them as the reply.
    pub fn handle(&self, session: &mut Session, cmd: Command) -> Result<After, WireError> {
        gate(session, &cmd)?;
        match cmd {
            Command::Hello { version } => self.hello(session, version),
            Command::Auth { password } => self.auth(session, &password),
            Command::Join {
                name,
                resume,
                quiet,
            } => self.join(session, name, resume, quiet),
            Command::Say { text } => self.say(session, text),
            Command::Tell { to, text } => self.tell(session, &to, text),
            Command::Set { x, y, color } => self.set(session, x, y, color),
            Command::Whose { x, y } => self.whose(session, x, y),
            Command::Canvas => self.canvas(session),
            Command::Sync { seq } => self.sync(session, seq),
            Command::Who => {
                let (online, users) = self.lock().user_names();
                Ok(self.reply(session, Reply::Who { online, users }))
            }
            Command::Kick { name } => self.kick(session, &name, false),
            Command::Ban { name } => self.kick(session, &name, true),
            Command::Ping { token } => {
                validate_token(&token)?;
                Ok(self.reply(session, Reply::Pong { token }))
            }
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
        let durable = self.durable(&st);
        let info = HelloInfo {
            version: PROTOCOL_VERSION,
            canvas_id: st.world.canvas.id(),
            width: st.world.canvas.width(),
            height: st.world.canvas.height(),
            seq: durable.as_ref().map_or(st.world.canvas.seq(), |d| d.seq),
        };
        drop(st);
        Ok(self.reply(session, Reply::Hello(info)))
    }

    fn auth(&self, session: &mut Session, password: &str) -> Result<After, WireError> {
        let matches = |want: &Option<String>| {
            want.as_ref()
                .is_some_and(|w| bool::from(w.as_bytes().ct_eq(password.as_bytes())))
        };
        if matches(&self.admin_password) {
            session.access = Access::Admin;
        } else if matches(&self.password) {
            session.access = session.access.max(Access::User);
        } else if self.password.is_none() && self.admin_password.is_none() {
            return Err(WireError::new(
                ErrorCode::BadArgs,
                "this server has no password",
            ));
        } else {
            return Err(WireError::new(ErrorCode::Forbidden, "wrong password"));
        }
        Ok(self.reply(session, Reply::Ok))
    }

    fn join(
        &self,
        session: &mut Session,
        name: String,
        resume: Option<Resume>,
        quiet: bool,
    ) -> Result<After, WireError> {
        let key = joinable(session, &name)?;
        let mut st = self.lock();
        if let Some(journal) = &self.journal
            && journal.stuck()
        {
            // The newcomer's JOINED event could not go out before the
            // records the journal is still trying to write.
            return Err(WireError::new(
                ErrorCode::Unavailable,
                format!(
                    "{}; try again shortly",
                    journal.available().err().unwrap_or_default()
                ),
            ));
        }
        if st.banned.contains(&key) {
            return Err(WireError::new(
                ErrorCode::Banned,
                format!("{name} is banned from this server"),
            ));
        }
        if st.users.contains_key(&key) {
            return Err(WireError::new(
                ErrorCode::NameTaken,
                format!("{name} is already online"),
            ));
        }
        let name: Arc<str> = Arc::from(name);
        st.roster.insert(key, Online::new(name.clone(), quiet));
        self.admit(&mut st, &session.outbox, name.clone(), resume, quiet);
        session.name = Some(name);
        session.quiet = quiet;
        Ok(After::Continue)
    }

    /// Announces a joined user and lets its session in: the `JOINED` event
    /// goes to everyone already subscribed, then the session subscribes
    /// right after it (so it does not get its own), and is sent the welcome
    /// and the canvas (or the pixels since `resume`) and recent chat, all
    /// tagged at the same ring position.
    fn admit(
        &self,
        st: &mut State,
        outbox: &Arc<Outbox>,
        name: Arc<str>,
        resume: Option<Resume>,
        quiet: bool,
    ) {
        let cursor = if quiet {
            self.ring.end()
        } else {
            self.commit(Event::Joined { name: name.clone() }, |_| 0)
        };
        st.users.insert(
            name.to_ascii_lowercase(),
            User {
                name: name.clone(),
                outbox: outbox.clone(),
                quiet,
            },
        );
        self.ring.set_watchers(st.users.len());
        outbox.subscribe(cursor);
        self.fanout.add(outbox.clone());
        let (online, users) = st.user_names();
        let canvas = &st.world.canvas;
        let latest = canvas.seq();
        let replay = resume
            .filter(|r| r.canvas_id == canvas.id())
            .and_then(|r| st.history.since(r.seq, latest).ok());
        let welcome = Reply::Welcome(Welcome {
            name: name.to_string(),
            canvas_id: canvas.id(),
            width: canvas.width(),
            height: canvas.height(),
            seq: latest,
            palette: PALETTE
                .iter()
                .map(|c| (c.rgb, c.name.to_string()))
                .collect(),
            online,
            users,
            resumed: replay.is_some(),
        });
        let binary = outbox.mode() == Mode::Binary;
        let snapshot = (binary && replay.is_none()).then(|| st.shared_snapshot());
        let history = st.world.chat.iter().cloned().collect();
        outbox.push_reply(
            cursor,
            Outgoing::Join {
                welcome,
                snapshot,
                replay,
                history,
            },
        );
    }

    fn say(&self, session: &Session, text: String) -> Result<After, WireError> {
        let from = joined(session)?;
        validate_text(&text)?;
        let mut st = self.lock();
        self.writable()?;
        let line = ChatLine {
            chat_seq: st.world.chat_seq + 1,
            unix_ms: unix_ms(),
            from: from.clone(),
            text: Arc::from(text),
        };
        self.commit_replying(
            Event::Msg {
                from,
                text: line.text.clone(),
            },
            |buf| {
                format::put_chat(buf, &line);
                1
            },
            &session.outbox,
            Reply::Ok,
        );
        st.world
            .apply(&Change::Chat(line))
            .expect("the next chat seq follows");
        self.maybe_compact(&st);
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
        let tag = self.tag();
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
        let (x, y, color) = st.world.canvas.check(x, y, color)?;
        self.writable()?;
        let key = name.to_ascii_lowercase();
        let now = Instant::now();
        if !self.cooldown.is_zero()
            && let Some(last) = st.last_placed.get(&key)
        {
            let ready = *last + self.cooldown;
            if ready > now {
                let left = (ready - now).as_millis().max(1);
                return Err(WireError::new(ErrorCode::Cooldown, left.to_string()));
            }
        }
        let unix_ms = unix_ms();
        let before = self.journal.is_some().then(|| {
            (
                st.world.canvas.get(x, y).unwrap_or_default(),
                st.world.canvas.whose(x, y),
            )
        });
        let seq = st.world.canvas.apply(x, y, color, &name, unix_ms);
        let pixel = Pixel {
            seq,
            x,
            y,
            color,
            name,
        };
        let end = self.commit_replying(
            Event::Pixel(pixel.clone()),
            |buf| {
                format::put_pixel(buf, seq, (x, y, color), unix_ms, &pixel.name);
                1
            },
            &session.outbox,
            Reply::Set { seq },
        );
        st.history.push(pixel);
        if let Some((color, meta)) = before {
            st.settle(self.ring.visible());
            st.unsettled.push_back(Unsettled {
                index: end,
                seq,
                x,
                y,
                color,
                meta,
            });
        }
        if !self.cooldown.is_zero() {
            st.remember_placement(key, now, self.cooldown);
        }
        self.maybe_compact(&st);
        Ok(After::Continue)
    }

    fn whose(&self, session: &Session, x: u32, y: u32) -> Result<After, WireError> {
        let st = self.lock();
        let (x, y) = st.world.canvas.check_xy(x, y)?;
        let mut meta = st.world.canvas.whose(x, y);
        if let Some(d) = self.durable(&st)
            && let Some(u) = d.undo.iter().find(|u| (u.x, u.y) == (x, y))
        {
            meta = u.meta.clone();
        }
        let placement = meta.map(|m| Placement {
            name: m.name.to_string(),
            unix_ms: m.unix_ms,
            seq: m.seq,
        });
        drop(st);
        Ok(self.reply(session, Reply::Whose(placement)))
    }

    fn canvas(&self, session: &Session) -> Result<After, WireError> {
        let mut st = self.lock();
        if let Some(d) = self.durable(&st) {
            let mut snapshot = st.world.canvas.snapshot();
            for u in d.undo.iter().rev() {
                let i = usize::from(u.y) * usize::from(snapshot.width) + usize::from(u.x);
                snapshot.pixels[i] = u.color;
            }
            snapshot.seq = d.seq;
            session.outbox.push_reply(
                d.visible,
                Outgoing::Canvas(Arc::new(SharedSnapshot::new(snapshot))),
            );
            return Ok(After::Continue);
        }
        let snapshot = st.shared_snapshot();
        session
            .outbox
            .push_reply(self.ring.end(), Outgoing::Canvas(snapshot));
        Ok(After::Continue)
    }

    fn sync(&self, session: &Session, seq: u64) -> Result<After, WireError> {
        let st = self.lock();
        let (tag, latest) = match self.durable(&st) {
            Some(d) => (d.visible, d.seq),
            None => (self.ring.end(), st.world.canvas.seq()),
        };
        let replay = st.history.since(seq, latest)?;
        session.outbox.push_reply(
            tag,
            Outgoing::Sync {
                replay,
                seq: latest,
            },
        );
        Ok(After::Continue)
    }

    fn kick(&self, session: &Session, name: &str, ban: bool) -> Result<After, WireError> {
        if session.access != Access::Admin {
            return Err(WireError::new(
                ErrorCode::Forbidden,
                "KICK and BAN need the admin password (AUTH)",
            ));
        }
        validate_name(name)?;
        let key = name.to_ascii_lowercase();
        let mut st = self.lock();
        let target = st.users.get(&key).map(|u| u.outbox.clone());
        if ban {
            st.banned.insert(key);
        } else if target.is_none() {
            return Err(WireError::new(
                ErrorCode::NoSuchUser,
                format!("nobody called {name} is online"),
            ));
        }
        tracing::info!(
            admin = session.name.as_deref().unwrap_or("-"),
            target = name,
            action = if ban { "ban" } else { "kick" },
            online = target.is_some(),
            "moderation"
        );
        // The reply first: an admin kicking itself gets its `OK` before
        // the `BYE`, since nothing is sent after that.
        self.reply(session, Reply::Ok);
        if let Some(outbox) = target {
            let (code, text) = if ban {
                (ErrorCode::Banned, "an admin banned you from this server")
            } else {
                (ErrorCode::Kicked, "an admin disconnected you")
            };
            outbox.evict(
                self.tag(),
                Event::Bye {
                    code,
                    text: text.into(),
                },
            );
        }
        drop(st);
        Ok(After::Continue)
    }

    /// Queues a reply that needs no hub state. It is tagged with the
    /// current end of the ring, so it follows every event that happened
    /// before it, as a script reading the output would expect.
    pub fn reply(&self, session: &Session, reply: Reply) -> After {
        session
            .outbox
            .push_reply(self.tag(), Outgoing::Reply(reply));
        After::Continue
    }

    /// Where a private message (a reply, a DM, a goodbye) is queued: at the
    /// end of the ring, so it follows every event accepted before it; while
    /// the journal is down, at the published point instead, because the
    /// events past it may wait for the disk for long.
    pub fn tag(&self) -> u64 {
        match self.writable() {
            Ok(()) => self.ring.end(),
            Err(_) => self.ring.visible(),
        }
    }

    /// While the journal is down: the durable state's position (reads are
    /// answered from it, so nothing a crash could take back is shown).
    /// `None` while it is up: reads see everything and wait for it.
    fn durable<'a>(&self, st: &'a State) -> Option<Durable<'a>> {
        self.writable().err()?;
        let visible = self.ring.visible();
        let undo: Vec<&Unsettled> = st.unsettled.iter().filter(|u| u.index > visible).collect();
        let seq = undo.first().map_or(st.world.canvas.seq(), |u| u.seq - 1);
        Some(Durable { visible, seq, undo })
    }

    /// Removes a joined session and tells everyone else. Safe to call for
    /// sessions that never joined.
    pub fn leave(&self, session: &mut Session) {
        let Some(name) = session.name.take() else {
            return;
        };
        let mut st = self.lock();
        let key = name.to_ascii_lowercase();
        // Only if the entry is still this session's: a resync or a kick may
        // have replaced it.
        if st
            .users
            .get(&key)
            .is_some_and(|u| Arc::ptr_eq(&u.outbox, &session.outbox))
        {
            st.users.remove(&key);
        }
        self.ring.set_watchers(st.users.len());
        session.outbox.unsubscribe(self.tag());
        match &self.cluster {
            // The cluster announces the leave to every server, this one
            // included, through the stream.
            Some(cluster) => {
                let cluster = cluster.clone();
                tokio::spawn(async move { cluster.leave(&name).await });
            }
            None => {
                st.roster.remove(&key);
                if !session.quiet {
                    self.commit(Event::Left { name }, |_| 0);
                }
            }
        }
    }

    /// Appends an ordered event to the broadcast ring and its records (if
    /// any) to the journal; the event is sent once they are durable.
    /// Returns the ring index after it. Call with the hub lock held, so ring
    /// order and journal order are the same.
    fn commit(&self, event: Event, records: impl FnOnce(&mut Vec<u8>) -> u64) -> u64 {
        let end = self.ring.append(&event);
        self.make_visible(end, records);
        end
    }

    /// [`Hub::commit`] for an event caused by the command `reply` answers.
    /// The reply is queued (after the events before this one, gated on this
    /// one being durable) before the event can become visible: once it is,
    /// a pacer may flush the sender's outbox at once, and without its reply
    /// queued the sender would get the event first.
    fn commit_replying(
        &self,
        event: Event,
        records: impl FnOnce(&mut Vec<u8>) -> u64,
        outbox: &Outbox,
        reply: Reply,
    ) -> u64 {
        let tag = self.ring.end();
        let end = self.ring.append(&event);
        outbox.push_gated(tag, end, Outgoing::Reply(reply));
        self.make_visible(end, records);
        end
    }

    /// Has the ring published up to `end` once the records are durable (at
    /// once without a journal).
    fn make_visible(&self, end: u64, records: impl FnOnce(&mut Vec<u8>) -> u64) {
        match &self.journal {
            Some(journal) => journal.push(end, records),
            None => self.ring.publish(end),
        }
    }

    /// Refuses a change that the journal could not make durable now (a
    /// full or failing disk). Called under the hub lock, so nothing is
    /// accepted after the journal went down and took its copy of the state.
    fn writable(&self) -> Result<(), WireError> {
        match &self.journal {
            Some(journal) => journal.available().map_err(|why| {
                WireError::new(
                    ErrorCode::Unavailable,
                    format!("{why}; nothing was changed, try again shortly"),
                )
            }),
            None => Ok(()),
        }
    }

    /// Lets the journal rebuild its files from this hub's state after a
    /// write error. Call once, right after the hub is shared.
    pub fn attach_journal(self: &Arc<Self>) {
        if let Some(journal) = &self.journal {
            let hub = Arc::downgrade(self);
            journal.set_source(Box::new(move || {
                let hub = hub.upgrade()?;
                let st = hub.lock();
                Some((st.world.clone(), hub.ring.end()))
            }));
        }
    }

    /// True while the journal holds records it could not write (a failing
    /// disk); see [`Journal::stuck`].
    pub fn journal_stuck(&self) -> bool {
        self.journal.as_ref().is_some_and(Journal::stuck)
    }

    /// Cancelled if the journal writer dies (never in memory or cluster
    /// mode): the server must not go on accepting what it cannot keep.
    pub fn journal_died(&self) -> Option<tokio_util::sync::CancellationToken> {
        self.journal.as_ref().map(Journal::died)
    }

    /// Starts a compaction when the journal has grown enough. The state is
    /// copied under the hub lock, so it matches the journal position
    /// exactly.
    fn maybe_compact(&self, st: &State) {
        if let Some(journal) = &self.journal
            && journal.wants_compaction()
        {
            journal.compact(st.world.clone());
        }
    }

    /// Number of users joined.
    pub fn user_count(&self) -> usize {
        self.lock().users.len()
    }

    /// Writes everything accepted to disk and stops the journal. Blocks.
    pub fn close(&self) {
        if let Some(journal) = &self.journal {
            journal.close();
        }
    }
}

impl State {
    /// How many users are online and the first names in order.
    fn user_names(&self) -> (u32, Vec<String>) {
        let names = self
            .roster
            .values()
            .take(MAX_LISTED_USERS)
            .map(Online::listed)
            .collect();
        (self.roster.len() as u32, names)
    }

    fn shared_snapshot(&mut self) -> Arc<SharedSnapshot> {
        if let Some(s) = &self.snapshot
            && s.snapshot.seq == self.world.canvas.seq()
        {
            return s.clone();
        }
        let s = Arc::new(SharedSnapshot::new(self.world.canvas.snapshot()));
        self.snapshot = Some(s.clone());
        s
    }

    /// Forgets unsettled placements that are published by now. Cheap
    /// enough per placement: the list holds what one fsync covers.
    fn settle(&mut self, visible: u64) {
        while self.unsettled.front().is_some_and(|u| u.index <= visible) {
            self.unsettled.pop_front();
        }
    }

    /// Records a placement for the cooldown and forgets entries whose
    /// cooldown is over, so the map stays as small as the active users.
    fn remember_placement(&mut self, key: String, now: Instant, cooldown: Duration) {
        self.last_placed.insert(key, now);
        if self.last_placed.len() > 2 * self.users.len() + 64 {
            self.last_placed
                .retain(|_, t| now.duration_since(*t) < cooldown);
        }
    }
}

/// Refuses a command the session may not send yet: anything before a
/// binary `HELLO`, anything but a few before `AUTH` on a password server.
fn gate(session: &Session, cmd: &Command) -> Result<(), WireError> {
    let binary = session.outbox.mode() == Mode::Binary;
    if binary && !session.hello && !matches!(cmd, Command::Hello { .. }) {
        return Err(WireError::new(
            ErrorCode::HelloRequired,
            "the first binary frame must be HELLO",
        ));
    }
    let open = matches!(
        cmd,
        Command::Hello { .. }
            | Command::Auth { .. }
            | Command::Ping { .. }
            | Command::Help
            | Command::Quit
    );
    if session.access == Access::None && !open {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            "this server needs a password: AUTH <password> first",
        ));
    }
    Ok(())
}

fn roster_of(names: Vec<(String, bool)>) -> BTreeMap<String, Online> {
    names
        .into_iter()
        .map(|(n, quiet)| (n.to_ascii_lowercase(), Online::new(Arc::from(n), quiet)))
        .collect()
}

fn joined(session: &Session) -> Result<Arc<str>, WireError> {
    session
        .name
        .clone()
        .ok_or_else(|| WireError::new(ErrorCode::NotJoined, "JOIN first"))
}

/// The checks every `JOIN` passes first, standalone or clustered: the
/// session has not joined and the name is valid. Returns the name's key
/// (names are unique ignoring case).
fn joinable(session: &Session, name: &str) -> Result<String, WireError> {
    if session.name.is_some() {
        return Err(WireError::new(
            ErrorCode::AlreadyJoined,
            "you have joined already",
        ));
    }
    validate_name(name)?;
    Ok(name.to_ascii_lowercase())
}
