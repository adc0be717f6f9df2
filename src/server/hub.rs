//! The hub: who is online, the world, and the order of everything.
//!
//! Each command runs as one step under one `std::sync::Mutex`: it changes
//! state, appends broadcast events to the [`BroadcastRing`], hands records
//! to the backend and queues the replies, all before the lock is released.
//! That single step is what makes the snapshot-then-events guarantee hold:
//! a `CANVAS` or `JOIN` snapshot and the ring position tagged on it are
//! taken together, so no pixel can fall between them. The lock is never
//! held across an `.await`, never while writing to a socket (writers only
//! copy bytes out of the ring) and never while waiting for the disk (the
//! journal thread publishes durable ring positions), so one slow client or
//! a slow fsync cannot stall the others' commands.
//!
//! Every ordered change to the world goes through one path,
//! [`Hub::commit`]: [`World::apply`], then its broadcast event, the reply
//! to whoever asked, and the record for the backend. Who decides the order
//! is the [`Backend`]: this server ([`local`]), with or without a journal,
//! or Redis ([`remote`]), whose stream is read back through the same
//! `commit`. Reads ([`reads`]) come from the state the changes built.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::time::Instant;

pub(crate) mod bulk;
mod local;
mod presence;
mod reads;
mod recent;
pub(crate) mod remote;
#[cfg(test)]
mod tests;

use super::broadcast::{BroadcastLimits, BroadcastRing};
use super::canvas::{Canvas, History, PixelMeta};
use super::cluster::archiver::Archiver;
use super::cluster::{Cluster, Loaded};
use super::fanout::Fanout;
use super::outbox::{Outbox, Outgoing, SharedSnapshot};
use super::storage::{self, Journal, StorageConfig, format};
use super::world::{Applied, Change, World};
use crate::protocol::{
    Command, ErrorCode, Event, HELP_TEXT, MAX_LISTED_USERS, Mode, Pixel, Reply, Resume, WireError,
    validate_name, validate_token,
};

/// Everything the hub needs to start.
#[derive(Debug, Clone)]
pub(crate) struct HubConfig {
    /// Canvas size asked for (`None`: the stored one, or the default).
    pub size: Option<(u16, u16)>,
    /// Size of a new canvas when none was asked for.
    pub default_size: (u16, u16),
    /// Pixel events kept for `SYNC`.
    pub history: usize,
    /// In memory: placements kept for `ROLLBACK` and `WHOSE x y n`.
    pub memory_history: usize,
    /// Broadcast ring window.
    pub broadcast: BroadcastLimits,
    /// Where the canvas is kept; `None` keeps it in memory only.
    pub storage: Option<StorageConfig>,
    /// Minimum time between two placements by one user (zero: off).
    pub cooldown: Duration,
    /// Whether the cooldown counts by name, by address or both.
    pub limit_by: super::LimitBy,
    /// Needed before anything but `PING`, `HELP`, `QUIT`.
    pub password: Option<String>,
    /// Grants `KICK`, `BAN` and `UNBAN`.
    pub admin_password: Option<String>,
    /// From this many users online, joins and leaves go out in periodic
    /// `PRESENCE` events instead of one event each, and `WELCOME` lists no
    /// names.
    pub presence_threshold: usize,
}

/// Who orders changes, and where they are kept.
#[derive(Debug)]
pub(crate) enum Backend {
    /// This server orders them; nothing is kept.
    Memory,
    /// This server orders them; the journal keeps them.
    Journal(Journal),
    /// Redis orders them and keeps them; this server follows its stream.
    Cluster(Arc<Cluster>),
}

/// A cluster-mode `JOIN` waiting for its `JOINED` event from the stream.
#[derive(Debug)]
struct PendingJoin {
    name: String,
    addr: IpAddr,
    outbox: Arc<Outbox>,
    resume: Option<Resume>,
    done: tokio::sync::oneshot::Sender<Arc<str>>,
}

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Access {
    /// The server has a password and it was not given yet.
    None,
    /// May join, chat and draw.
    User,
    /// May also kick, ban and unban.
    Admin,
}

/// One connection's view of itself, owned by its connection task.
#[derive(Debug)]
pub(crate) struct Session {
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

/// The key a name is listed under in `users` and `roster` (names are
/// unique ignoring case): the name itself when it is lower-case already,
/// so a joined user's name and its two keys are one allocation.
fn key_of(name: &Arc<str>) -> Arc<str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Arc::from(name.to_ascii_lowercase())
    } else {
        name.clone()
    }
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

/// A session of this server that joined.
#[derive(Debug)]
struct User {
    name: Arc<str>,
    outbox: Arc<Outbox>,
    quiet: bool,
    /// Where it connected from, for `BAN <name> addr`.
    addr: IpAddr,
}

#[derive(Debug)]
struct State {
    /// What survives restarts: canvas, authorship, recent chat, bans.
    world: World,
    history: History,
    /// In memory (`--memory`): the recent placements, for `ROLLBACK` and
    /// `WHOSE x y n`; `None` with a journal or a cluster.
    recent: Option<recent::Recent>,
    /// This server's joined sessions, by lower-cased name.
    users: BTreeMap<Arc<str>, User>,
    /// Everyone online (on every server of a cluster), by lower-cased
    /// name: names are unique ignoring case, and the order is the listing
    /// order, so listing the first names is cheap.
    roster: BTreeMap<Arc<str>, Online>,
    /// Cluster mode: JOINs waiting for their event, by nonce.
    joining: HashMap<u64, PendingJoin>,
    /// The last snapshot handed out, reused while the seq is unchanged so a
    /// crowd joining at once shares one copy and one encoding.
    snapshot: Option<Arc<SharedSnapshot>>,
    /// Last placement per lower-cased name, and per address entry (which
    /// has a `/`, unlike names) with `--limit-by addr`, for the cooldown.
    /// Keyed by name or address rather than connection, so reconnecting
    /// does not reset it; on tokio's clock, so tests can run it on paused
    /// time.
    last_placed: HashMap<String, Instant>,
    /// Placements not yet durable, oldest first, with what their cell
    /// held before. While the journal is down, reads are answered from
    /// the durable state: the current one with these undone.
    unsettled: VecDeque<Unsettled>,
    /// A crowd's comings and goings, for the next `PRESENCE` event.
    presence: presence::Batch,
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

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Hub {
    state: Mutex<State>,
    ring: Arc<BroadcastRing>,
    fanout: Arc<Fanout>,
    backend: Backend,
    /// Pixel events kept for `SYNC`.
    history_capacity: usize,
    cooldown: Duration,
    limit_by: super::LimitBy,
    password: Option<String>,
    admin_password: Option<String>,
    presence_threshold: usize,
    /// One reading of the history from disk at a time (`ROLLBACK`,
    /// `WHOSE x y n`): they queue rather than take every core.
    history_reads: tokio::sync::Semaphore,
    /// What `/metrics` counts on the hot path.
    counters: super::metrics::Counters,
    /// Cluster mode with `--archive`: keeps the history archive from the
    /// stream.
    archiver: Option<Arc<Archiver>>,
}

/// A command being handled; see [`Hub::start`].
pub(crate) enum Handling<'a> {
    /// Handled.
    Done(Result<After, WireError>),
    /// Waiting for Redis.
    Later(Pin<Box<dyn Future<Output = Result<After, WireError>> + Send + 'a>>),
}

/// What a command asks of the connection besides its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Keep reading commands.
    Continue,
    /// Close once the reply is written.
    Close,
}

impl Hub {
    /// Recovers the stored canvas (or creates one) and starts the journal,
    /// or keeps the canvas in memory.
    pub fn open(config: &HubConfig) -> anyhow::Result<Self> {
        let ring = Arc::new(BroadcastRing::new(config.broadcast));
        let (backend, world, replayed) = match &config.storage {
            Some(storage_config) => {
                let recovered = storage::open(storage_config, config.size, config.default_size)?;
                let (journal, world, replayed) =
                    Journal::start(recovered, ring.clone(), storage_config);
                (Backend::Journal(journal), world, replayed)
            }
            None => {
                let (w, h) = config.size.unwrap_or(config.default_size);
                let canvas =
                    Canvas::new(rand::random(), w, h).map_err(|e| anyhow::anyhow!(e.message))?;
                (Backend::Memory, World::new(canvas), Vec::new())
            }
        };
        Ok(Self::assemble(config, ring, backend, world, replayed))
    }

    /// A hub whose canvas lives in a Redis cluster, starting from `loaded`.
    /// `archiver` keeps the history archive from the stream (`--archive`).
    pub fn open_clustered(
        config: &HubConfig,
        cluster: Arc<Cluster>,
        loaded: Loaded,
        archiver: Option<Arc<Archiver>>,
    ) -> Self {
        let ring = Arc::new(BroadcastRing::new(config.broadcast));
        let mut hub = Self::assemble(
            config,
            ring,
            Backend::Cluster(cluster),
            loaded.world,
            loaded.recent,
        );
        hub.lock().roster = roster_of(loaded.users);
        hub.archiver = archiver;
        hub
    }

    fn assemble(
        config: &HubConfig,
        ring: Arc<BroadcastRing>,
        backend: Backend,
        world: World,
        replayed: Vec<Pixel>,
    ) -> Self {
        let mut history = History::new(config.history);
        let skip = replayed.len().saturating_sub(config.history);
        for pixel in replayed.into_iter().skip(skip) {
            history.push(pixel);
        }
        let pacers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let recent = (matches!(backend, Backend::Memory) && config.memory_history > 0)
            .then(|| recent::Recent::new(config.memory_history));
        Self {
            backend,
            fanout: Arc::new(Fanout::new(ring.clone(), pacers)),
            state: Mutex::new(State {
                world,
                history,
                recent,
                users: BTreeMap::new(),
                roster: BTreeMap::new(),
                joining: HashMap::new(),
                snapshot: None,
                last_placed: HashMap::new(),
                unsettled: VecDeque::new(),
                presence: presence::Batch::default(),
            }),
            ring,
            history_capacity: config.history,
            cooldown: config.cooldown,
            limit_by: config.limit_by,
            password: config.password.clone(),
            admin_password: config.admin_password.clone(),
            presence_threshold: config.presence_threshold,
            history_reads: tokio::sync::Semaphore::new(1),
            counters: Default::default(),
            archiver: None,
        }
    }

    /// What `/metrics` counts on the hot path.
    pub fn counters(&self) -> &super::metrics::Counters {
        &self.counters
    }

    /// Users online and the canvas's seq, for `/metrics` (takes the hub
    /// lock: at scrape time only).
    pub fn census(&self) -> (usize, u64) {
        let st = self.lock();
        (st.roster.len(), st.world.canvas.seq())
    }

    /// Whether the journal can make changes durable now (`None` without
    /// a journal: in memory or in a cluster).
    pub fn journal_up(&self) -> Option<bool> {
        self.journal()
            .map(|j| j.available().is_ok() && !j.stuck() && !j.died().is_cancelled())
    }

    /// The journal's fsync latency histogram, if there is a journal.
    pub fn fsync_histogram(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        self.journal().map(Journal::fsync_histogram)
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

    /// The cluster, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match &self.backend {
            Backend::Cluster(c) => Some(c),
            _ => None,
        }
    }

    fn journal(&self) -> Option<&Journal> {
        match &self.backend {
            Backend::Journal(j) => Some(j),
            _ => None,
        }
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
    #[cfg(test)]
    pub async fn handle(&self, session: &mut Session, cmd: Command) -> Result<After, WireError> {
        match self.start(session, cmd, std::net::Ipv4Addr::LOCALHOST.into()) {
            Handling::Done(result) => result,
            Handling::Later(later) => later.await,
        }
    }

    /// Like [`Hub::handle`], but a command answered at once needs no
    /// future: standalone, all of them are. In cluster mode the commands
    /// that change shared state go to Redis first; their future is boxed,
    /// so a connection does not keep its state (a JOIN waiting for the
    /// stream, a call to Redis) in its own future while idle.
    ///
    /// `peer` is the client's address (for address bans and limits): an
    /// argument rather than part of the session, which every idle
    /// connection keeps.
    ///
    /// Every command is counted for `/metrics` here, by kind and result;
    /// a command waiting for Redis or the disk is counted in its boxed
    /// future, so the connection's own future keeps nothing more across
    /// the wait.
    pub fn start<'a>(
        &'a self,
        session: &'a mut Session,
        cmd: Command,
        peer: IpAddr,
    ) -> Handling<'a> {
        let kind = super::metrics::kind_of(&cmd);
        if let Err(e) = gate(session, &cmd).and_then(|()| self.gate_address(session, &cmd, peer)) {
            self.counters.command(kind, false);
            return Handling::Done(Err(e));
        }
        let counted = move |result: Result<After, WireError>| {
            self.counters.command(kind, result.is_ok());
            result
        };
        if let (Command::Rollback { name, minutes }, Backend::Memory | Backend::Journal(_)) =
            (&cmd, &self.backend)
        {
            // It reads the history (from disk, or a view of the memory
            // ring) off the lock: its own future, boxed, as a cluster
            // command's is.
            let (name, minutes) = (name.clone(), *minutes);
            return Handling::Later(Box::pin(async move {
                counted(self.rollback(session, name, minutes).await)
            }));
        }
        if let (Command::WhoseLast { x, y, n }, Backend::Memory | Backend::Journal(_), _)
        | (Command::WhoseLast { x, y, n }, Backend::Cluster(_), Some(_)) =
            (&cmd, &self.backend, &self.archiver)
        {
            let (x, y, n) = (*x, *y, *n);
            return Handling::Later(Box::pin(async move {
                counted(self.whose_last(session, x, y, n).await)
            }));
        }
        match &self.backend {
            Backend::Cluster(cluster) => Handling::Later(Box::pin(async move {
                let result = match self.handle_remote(cluster, session, cmd, peer).await {
                    Ok(Ok(after)) => Ok(after),
                    Ok(Err(cmd)) => self.handle_here(session, cmd, peer),
                    Err(e) => Err(e),
                };
                counted(result)
            })),
            Backend::Memory | Backend::Journal(_) => {
                Handling::Done(counted(self.handle_here(session, cmd, peer)))
            }
        }
    }

    /// Commands this server answers itself: all of them standalone; the
    /// reads in a cluster.
    fn handle_here(
        &self,
        session: &mut Session,
        cmd: Command,
        peer: IpAddr,
    ) -> Result<After, WireError> {
        match cmd {
            Command::Hello { version } => self.hello(session, version),
            Command::Auth { password } => self.auth(session, &password),
            Command::Join {
                name,
                resume,
                quiet,
            } => self.join(session, name, resume, quiet, peer),
            Command::Say { text } => self.say(session, text),
            Command::Tell { to, text } => self.tell(session, &to, text),
            Command::Set { x, y, color } => self.set(session, (x, y, color), peer),
            Command::Whose { x, y } => self.whose(session, x, y),
            Command::Canvas => self.canvas(session),
            Command::Sync { seq } => self.sync(session, seq),
            Command::Who => self.who(session, None),
            Command::WhoAfter { after } => self.who(session, Some(&after)),
            Command::Kick { name } => self.moderate(session, &name, Moderation::Kick),
            Command::Ban { name } => self.moderate(session, &name, Moderation::Ban),
            Command::Fill {
                x1,
                y1,
                x2,
                y2,
                color,
            } => self.fill(session, (x1, y1, x2, y2), color),
            // Standalone it is handled in `start`; in a cluster the
            // history is not kept.
            Command::WhoseLast { .. } => Err(WireError::new(
                ErrorCode::Unavailable,
                "WHOSE with a count needs the placement history, which this server of the cluster does not keep (start it with --archive)",
            )),
            // Handled in `start` standalone, in `handle_remote` in a
            // cluster.
            Command::Rollback { .. } => {
                admin(session)?;
                Err(WireError::new(
                    ErrorCode::Unavailable,
                    "ROLLBACK is not available here",
                ))
            }
            Command::Unban { name } => self.unban(session, &name),
            Command::BanAddress { name } => self.ban_address(session, &name),
            Command::Bans { after } => self.bans(session, after.as_deref()),
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

    /// Applies an ordered change to the world and makes it known: its
    /// broadcast event (if it has one) goes into the ring, `reply` is
    /// queued to whoever asked before that event can go out (so a sender
    /// sees its `OK` before its own `PIXEL`), and the backend gets the
    /// record: the journal makes it durable before anything of it is sent.
    /// The one path for every change, whoever ordered it: this server's
    /// commands and the cluster's stream. Call with the hub lock held, so
    /// ring order, journal order and world order are the same.
    ///
    /// `Err` when the change does not follow from the world (a gap in a
    /// stream): nothing changed.
    fn commit(
        &self,
        st: &mut State,
        change: Change,
        reply: Option<(&Outbox, Reply)>,
    ) -> Result<u64, String> {
        let before = match (&self.backend, &change) {
            (Backend::Journal(_), Change::Pixel { x, y, .. }) => Some((
                st.world.canvas.get(*x, *y).unwrap_or_default(),
                st.world.canvas.whose(*x, *y),
            )),
            _ => None,
        };
        let tag = self.ring.end();
        let pixel = match st.world.apply(&change)? {
            Applied::Had => return Ok(tag),
            Applied::Done(pixel) => pixel,
        };
        let end = match (&change, &pixel) {
            (Change::Pixel { .. }, Some(p)) => self.ring.append(&Event::Pixel(p.clone())),
            (Change::Chat(line), _) => self.ring.append(&Event::Msg {
                from: line.from.clone(),
                text: line.text.clone(),
            }),
            // No broadcast event, but a place in the ring all the same: the
            // reply waits for it, so a ban is on disk before its `OK`.
            _ => self.ring.append_silent(),
        };
        if let Some(pixel) = pixel {
            if let Some((color, meta)) = before {
                st.settle(self.ring.visible());
                st.unsettled.push_back(Unsettled {
                    index: end,
                    seq: pixel.seq,
                    x: pixel.x,
                    y: pixel.y,
                    color,
                    meta,
                });
            }
            if let (Some(recent), Change::Pixel { unix_ms, .. }) = (st.recent.as_mut(), &change) {
                recent.push(
                    pixel.seq,
                    pixel.x,
                    pixel.y,
                    pixel.color,
                    &pixel.name,
                    *unix_ms,
                );
            }
            st.history.push(pixel);
        }
        if let Some((outbox, reply)) = reply {
            outbox.push_gated(tag, end, Outgoing::Reply(reply));
        }
        self.persist(end, Some(&change));
        self.maybe_compact(st);
        Ok(end)
    }

    /// Puts a presence event (`JOINED`, `LEFT`, `PRESENCE`) in order with
    /// the changes. Returns the ring index after it.
    fn announce(&self, event: Event) -> u64 {
        let end = self.ring.append(&event);
        self.persist(end, None);
        end
    }

    /// `name` came (`came`) or went, and the roster already says so: tells
    /// everyone, with its own event while the room is small, or through
    /// the next `PRESENCE` for a crowd. Returns the ring index after what
    /// it announced.
    fn presence(&self, st: &mut State, name: Arc<str>, quiet: bool, came: bool) -> u64 {
        if st.roster.len() >= self.presence_threshold {
            st.presence.note(&name, quiet, came);
            return self.ring.end();
        }
        // What was batched goes out first, so the events stay in order; its
        // count is the one before this change, which follows as its own
        // event.
        let before = if came {
            st.roster.len().saturating_sub(1)
        } else {
            st.roster.len() + 1
        };
        if let Some(p) = st.presence.take(before) {
            self.announce(Event::Presence(p));
        }
        match (quiet, came) {
            (true, _) => self.ring.end(),
            (false, true) => self.announce(Event::Joined { name }),
            (false, false) => self.announce(Event::Left { name }),
        }
    }

    /// Sends the crowd's comings and goings since the last time, if any:
    /// called periodically.
    pub fn publish_presence(&self) {
        let mut st = self.lock();
        let online = st.roster.len();
        if let Some(p) = st.presence.take(online) {
            self.announce(Event::Presence(p));
        }
    }

    /// Lets the ring publish up to `end` once `change` is kept: after the
    /// journal wrote it, or at once (in memory, or when Redis already keeps
    /// it).
    fn persist(&self, end: u64, change: Option<&Change>) {
        match &self.backend {
            Backend::Journal(journal) => journal.push(end, |buf| match change {
                Some(change) => {
                    format::put_change(buf, change);
                    1
                }
                None => 0,
            }),
            Backend::Memory | Backend::Cluster(_) => self.ring.publish(end),
        }
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
            .get(key.as_str())
            .is_some_and(|u| Arc::ptr_eq(&u.outbox, &session.outbox))
        {
            st.users.remove(key.as_str());
        }
        self.ring.set_watchers(st.users.len());
        session.outbox.unsubscribe(self.tag());
        match &self.backend {
            // The cluster announces the leave to every server, this one
            // included, through the stream.
            Backend::Cluster(cluster) => {
                let cluster = cluster.clone();
                tokio::spawn(async move { cluster.leave(&name).await });
            }
            Backend::Memory | Backend::Journal(_) => {
                if let Some(gone) = st.roster.remove(key.as_str()) {
                    self.presence(&mut st, name, gone.quiet, false);
                }
            }
        }
    }

    /// Refuses a change that the journal could not make durable now (a
    /// full or failing disk). Called under the hub lock, so nothing is
    /// accepted after the journal went down and took its copy of the state.
    fn writable(&self) -> Result<(), WireError> {
        match self.journal() {
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
        if let Some(journal) = self.journal() {
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
        self.journal().is_some_and(Journal::stuck)
    }

    /// Cancelled if the journal writer dies (never in memory or cluster
    /// mode): the server must not go on accepting what it cannot keep.
    pub fn journal_died(&self) -> Option<tokio_util::sync::CancellationToken> {
        self.journal().map(Journal::died)
    }

    /// Starts a compaction when the journal has grown enough. The state is
    /// copied under the hub lock, so it matches the journal position
    /// exactly.
    fn maybe_compact(&self, st: &State) {
        if let Some(journal) = self.journal()
            && journal.wants_compaction()
        {
            journal.compact(st.world.clone());
        }
    }

    /// Writes everything accepted to disk and stops the journal. Blocks.
    pub fn close(&self) {
        if let Some(journal) = self.journal() {
            journal.close();
        }
        if let Some(archiver) = &self.archiver
            && let Err(e) = archiver.flush(true)
        {
            // The stream still holds them: the next start reads them again.
            tracing::error!(error = %format!("{e:#}"), "writing the last of the history archive failed");
        }
    }
}

/// What an admin does to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moderation {
    /// Disconnect.
    Kick,
    /// Disconnect and refuse the name from now on.
    Ban,
}

impl Moderation {
    fn word(self) -> &'static str {
        match self {
            Moderation::Kick => "kick",
            Moderation::Ban => "ban",
        }
    }

    /// The goodbye a user so treated gets, if any.
    fn bye(self) -> Option<Event> {
        let (code, text) = match self {
            Moderation::Kick => (ErrorCode::Kicked, "an admin disconnected you"),
            Moderation::Ban => (ErrorCode::Banned, "an admin banned you from this server"),
        };
        Some(Event::Bye {
            code,
            text: text.into(),
        })
    }
}

impl State {
    /// How many users are online and the first names in listing order,
    /// after `after` (ignoring case and a trailing `*`) when given.
    fn user_names(&self, after: Option<&str>) -> (u32, Vec<String>) {
        use std::ops::Bound;
        let after = after.map(|a| a.trim_end_matches('*').to_ascii_lowercase());
        let from = match &after {
            Some(a) => Bound::Excluded(a.as_str()),
            None => Bound::Unbounded,
        };
        let names = self
            .roster
            .range::<str, _>((from, Bound::Unbounded))
            .take(MAX_LISTED_USERS)
            .map(|(_, o)| o.listed())
            .collect();
        (self.roster.len() as u32, names)
    }

    fn shared_snapshot(&mut self) -> Arc<SharedSnapshot> {
        if let Some(s) = &self.snapshot
            && s.seq() == self.world.canvas.seq()
        {
            return s.clone();
        }
        let s = Arc::new(SharedSnapshot::frozen(self.world.canvas.frozen()));
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

    /// Tells a user of this server goodbye, if it is here; for an address
    /// ban entry, every user of this server connected from there.
    fn evict(&self, key: &str, tag: u64, bye: Event) {
        if super::address::is_address(key) {
            for user in self.users.values() {
                if super::address::entry(user.addr) == key {
                    user.outbox.evict(tag, bye.clone());
                }
            }
        } else if let Some(user) = self.users.get(key) {
            user.outbox.evict(tag, bye);
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

impl Hub {
    /// A banned address may connect (so that an admin behind it can still
    /// `AUTH` and lift the ban) but reads nothing: the canvas, its history
    /// and the user list are refused before `JOIN`, which refuses it too.
    /// Only sessions that have not joined are checked: a joined session
    /// from an address is kicked when the address is banned.
    fn gate_address(
        &self,
        session: &Session,
        cmd: &Command,
        peer: IpAddr,
    ) -> Result<(), WireError> {
        let reads = matches!(
            cmd,
            Command::Canvas
                | Command::Sync { .. }
                | Command::Who
                | Command::WhoAfter { .. }
                | Command::Whose { .. }
                | Command::WhoseLast { .. }
        );
        if reads
            && session.name.is_none()
            && session.access != Access::Admin
            && self.lock().world.is_address_banned(peer)
        {
            return Err(address_banned());
        }
        Ok(())
    }
}

/// Only an admin may kick, ban, unban or list the bans.
fn admin(session: &Session) -> Result<(), WireError> {
    if session.access != Access::Admin {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            "KICK, BAN, UNBAN, BANS, ROLLBACK and FILL need the admin password (AUTH)",
        ));
    }
    Ok(())
}

/// What `UNBAN <text>` may lift: the name, if it is one, and the address,
/// if it is one (`1.2.3.4` is both).
fn unban_entries(text: &str) -> Result<Vec<String>, WireError> {
    let entries: Vec<String> = validate_name(text)
        .ok()
        .map(|()| text.to_ascii_lowercase())
        .into_iter()
        .chain(super::address::parse_entry(text))
        .collect();
    if entries.is_empty() {
        return Err(WireError::new(
            ErrorCode::NoSuchUser,
            format!("{text} is neither a name nor an address"),
        ));
    }
    Ok(entries)
}

fn not_banned(text: &str) -> WireError {
    WireError::new(ErrorCode::NoSuchUser, format!("{text} is not banned"))
}

/// `BAN <name> addr` needs the user's address, which only its server knows.
fn address_unknown(name: &str) -> WireError {
    WireError::new(
        ErrorCode::NoSuchUser,
        format!(
            "{name} is not online on this server, so its address is unknown; nothing changed (BAN {name} bans the name alone)"
        ),
    )
}

fn roster_of(names: Vec<(String, bool)>) -> BTreeMap<Arc<str>, Online> {
    names
        .into_iter()
        .map(|(n, quiet)| {
            let name: Arc<str> = Arc::from(n);
            (key_of(&name), Online::new(name, quiet))
        })
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

/// The name a `TELL` is for: a name that breaks the rules is nobody.
fn recipient(to: &str) -> Result<String, WireError> {
    validate_name(to).map_err(|_| {
        WireError::new(
            ErrorCode::NoSuchUser,
            format!("nobody called {to} is online"),
        )
    })?;
    Ok(to.to_ascii_lowercase())
}

fn banned(name: &str) -> WireError {
    WireError::new(
        ErrorCode::Banned,
        format!("{name} is banned from this server"),
    )
}

fn address_banned() -> WireError {
    WireError::new(ErrorCode::Banned, "your address is banned from this server")
}

fn unix_ms() -> u64 {
    super::unix_ms()
}
