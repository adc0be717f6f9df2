//! The reusable async client over the binary protocol.
//!
//! Two layers, so scripts and interactive programs each get the shape they
//! need:
//! - [`Connection`]: one TCP session. Connect and say hello, join (with an
//!   optional resume point), send a command and await its reply, read events.
//!   Strictly sequential, which is what a script wants.
//! - [`Client`]: a task that keeps a joined session alive for an interactive
//!   program. It reconnects with backoff and jitter, resumes from the last seq
//!   it delivered (the server falls back to a snapshot when it must), sends a
//!   keepalive `PING` that also measures the round trip, and reports
//!   everything as one ordered stream of [`ClientEvent`]s. Replies come back
//!   in that same stream, tagged, so a caller sees a reply and the events
//!   around it in the order the server sent them. Given several servers of
//!   one cluster, it moves to the next when one is down, and resumes there
//!   (every server of a cluster serves the same canvas and seqs).
//!
//! ```no_run
//! use pixchat::client::{Connection, Login};
//! use pixchat::protocol::Command;
//!
//! # async fn demo() -> Result<(), pixchat::client::ClientError> {
//! let mut conn = Connection::connect("127.0.0.1:7878").await?;
//! let joined = conn.join(&Login::new("bot"), None).await?;
//! println!("canvas {}x{}", joined.welcome.width, joined.welcome.height);
//! conn.request(&Command::Set { x: 3, y: 4, color: 5 }).await?;
//! while let Some(event) = conn.next_event().await? {
//!     println!("{event:?}");
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::Framed;

use super::transport::{Stream, Transport};
use tokio_util::sync::CancellationToken;

use crate::protocol::binary::{ClientCodec, FrameError};
use crate::protocol::{
    Command, ErrorCode, Event, HelloInfo, PROTOCOL_VERSION, Placement, Reply, Resume, ServerMsg,
    Snapshot, Welcome, WireError,
};

/// How long connecting (TCP and `HELLO`) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to answer a command before the connection
/// is considered dead.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a [`Client`] pings an otherwise quiet server. Keeps idle
/// connections from being cut (load balancers, the server's idle timeout)
/// and feeds the round-trip display.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Commands a [`Client`] leaves unanswered at once. The server stops reading
/// a connection with 64 unanswered commands; staying well under that means
/// our writes can always complete, so reading and writing in one task can
/// never deadlock.
pub const MAX_IN_FLIGHT: usize = 32;
/// Commands a [`Client`] queues before [`Client::send`] says
/// [`SendError::Full`].
pub const MAX_QUEUED: usize = 256;
/// Events a [`Connection`] keeps while a caller awaits replies and reads no
/// events; past this the caller is told it lags instead of memory growing.
pub const MAX_BUFFERED_EVENTS: usize = 65_536;
/// How long a polite goodbye (`QUIT`) may take when closing.
const QUIT_GRACE: Duration = Duration::from_millis(500);

/// Who to join as, and the password that lets us in.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The user name to ask for.
    pub name: String,
    /// The server password (or the admin password, which also grants
    /// `KICK` and `BAN`). [`Connection::join`] sends it as `AUTH` before
    /// `JOIN`, so a [`Client`] presents it again on every reconnect.
    pub password: Option<String>,
    /// Join quietly: the server tells nobody of the join or the leave, and
    /// listings show the name with a trailing `*`. For scripts that join
    /// for one command, so they do not flash in everyone's chat.
    pub quiet: bool,
}

impl Login {
    /// A login with just a name, for a server without a password.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            password: None,
            quiet: false,
        }
    }

    /// The same login with `password`; an empty one counts as none, as it
    /// does for the server's `--password`.
    pub fn with_password(mut self, password: Option<String>) -> Self {
        self.password = password.filter(|p| !p.is_empty());
        self
    }

    /// The same login, joining quietly (see [`Login::quiet`]).
    pub fn quietly(mut self) -> Self {
        self.quiet = true;
        self
    }
}

impl std::fmt::Debug for Login {
    /// Never prints the password: logins end up in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("quiet", &self.quiet)
            .finish()
    }
}

/// Why the server would not let a login in. Each carries the server's own
/// error, which is what [`Display`](std::fmt::Display) shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The server needs a password and the login has none.
    #[error("{0}")]
    PasswordRequired(WireError),
    /// The server refused the password (`AUTH` answered `forbidden`).
    #[error("{0}")]
    WrongPassword(WireError),
    /// The server refused the name: `bad_name`, `name_taken`, or
    /// `forbidden` for a name an admin banned.
    #[error("{0}")]
    Name(WireError),
}

impl LoginError {
    /// The server's error.
    pub fn wire(&self) -> &WireError {
        match self {
            LoginError::PasswordRequired(e)
            | LoginError::WrongPassword(e)
            | LoginError::Name(e) => e,
        }
    }
}

/// What a successful `JOIN` brought.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The server's welcome.
    pub welcome: Welcome,
    /// The whole canvas, unless the server resumed from our seq (then the
    /// missed pixels follow as events).
    pub snapshot: Option<Arc<Snapshot>>,
}

/// Why a [`Connection`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// The address tried.
        addr: String,
        /// What the system said (in the message, so one line tells all).
        error: std::io::Error,
    },
    /// The server answered the command with an error.
    #[error("{0}")]
    Server(WireError),
    /// The server refused the login (password or name).
    #[error(transparent)]
    Login(#[from] LoginError),
    /// The server said goodbye (`BYE`) and closed the connection.
    #[error("the server closed the connection: {code}: {text}")]
    Bye {
        /// The reason's code word.
        code: ErrorCode,
        /// The reason in words.
        text: String,
    },
    /// The connection ended.
    #[error("the server closed the connection")]
    Closed,
    /// The server did not answer in time.
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server answered something that does not fit the command.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// More events arrived than a caller that reads none may buffer.
    #[error("more than {MAX_BUFFERED_EVENTS} events arrived without being read")]
    Lagged,
    /// A frame could not be read or written.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ClientError {
    /// The server's error, when the server refused the command.
    pub fn wire(&self) -> Option<&WireError> {
        match self {
            ClientError::Server(e) => Some(e),
            ClientError::Login(e) => Some(e.wire()),
            _ => None,
        }
    }
}

fn unexpected(what: &str, got: &impl std::fmt::Debug) -> ClientError {
    let mut text = format!("{got:?}");
    text.truncate(120);
    ClientError::Protocol(format!("{what} was answered with {text}"))
}

/// One binary-mode session with the server, used sequentially: each
/// [`request`](Self::request) sends a command and reads up to its reply;
/// events that arrive meanwhile wait for [`next_event`](Self::next_event).
#[derive(Debug)]
pub struct Connection {
    framed: Framed<Stream, ClientCodec>,
    hello: HelloInfo,
    events: VecDeque<Event>,
}

/// The servers in a server list: `host:port` entries separated by commas
/// (servers of one cluster), in the order to try them.
pub fn server_list(servers: &str) -> Vec<String> {
    servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl ClientError {
    /// Whether the server could not be reached or cannot serve now (it is
    /// down, full, stopping, or cut off from its cluster's Redis), so that
    /// another server of the same cluster is worth trying.
    pub fn is_server_down(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::Closed
            | ClientError::Timeout(_)
            | ClientError::Frame(_) => true,
            ClientError::Server(e) => matches!(
                e.code,
                ErrorCode::Unavailable | ErrorCode::ServerFull | ErrorCode::ShuttingDown
            ),
            ClientError::Bye { code, .. } => {
                matches!(code, ErrorCode::ShuttingDown | ErrorCode::Resync)
            }
            _ => false,
        }
    }
}

impl Connection {
    /// Connects to the first server of `servers` (a [`server_list`]) that
    /// answers `HELLO`, trying each in turn; returns it with its address.
    /// When none does, the error is the last one's.
    pub async fn connect_any(servers: &str) -> Result<(Self, String), ClientError> {
        Self::connect_any_via(servers, &Transport::default()).await
    }

    /// [`Connection::connect_any`] over `transport` (TLS, or plain TCP).
    pub async fn connect_any_via(
        servers: &str,
        transport: &Transport,
    ) -> Result<(Self, String), ClientError> {
        let mut last = None;
        for addr in server_list(servers) {
            match Self::connect_via(addr.as_str(), transport).await {
                Ok(conn) => return Ok((conn, addr)),
                Err(e) if e.is_server_down() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last
            .unwrap_or_else(|| ClientError::Protocol(format!("no server address in {servers:?}"))))
    }

    /// Connects and says `HELLO`.
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Self, ClientError> {
        Self::connect_via(addr, &Transport::default()).await
    }

    /// [`Connection::connect`] over `transport`: with TLS, the handshake
    /// (which checks that the certificate names the host of `addr`) comes
    /// first, within the same time limit.
    pub async fn connect_via(
        addr: impl ToSocketAddrs + std::fmt::Display,
        transport: &Transport,
    ) -> Result<Self, ClientError> {
        let name = addr.to_string();
        let connecting = async {
            let tcp = TcpStream::connect(addr).await?;
            // Pixels and keys are tiny writes that should leave at once.
            let _ = tcp.set_nodelay(true);
            transport.wrap(tcp, &name).await
        };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(s)) => s,
            Ok(Err(error)) => return Err(ClientError::Connect { addr: name, error }),
            Err(_) => return Err(ClientError::Timeout(CONNECT_TIMEOUT)),
        };
        let mut conn = Self {
            framed: Framed::new(stream, ClientCodec::default()),
            // Replaced by the HELLO reply below; no Connection is handed
            // out without it.
            hello: HelloInfo {
                version: 0,
                canvas_id: 0,
                width: 0,
                height: 0,
                seq: 0,
            },
            events: VecDeque::new(),
        };
        let hello = Command::Hello {
            version: PROTOCOL_VERSION,
        };
        conn.send(&hello).await?;
        match tokio::time::timeout(CONNECT_TIMEOUT, conn.reply()).await {
            Ok(Ok(Reply::Hello(h))) => conn.hello = h,
            Ok(Ok(Reply::Error(e))) => return Err(ClientError::Server(e)),
            Ok(Ok(other)) => return Err(unexpected("HELLO", &other)),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ClientError::Timeout(CONNECT_TIMEOUT)),
        }
        Ok(conn)
    }

    /// What the server said to `HELLO`: canvas id, size and latest seq.
    pub fn hello(&self) -> &HelloInfo {
        &self.hello
    }

    /// Presents a password (`AUTH`). A refused one is
    /// [`LoginError::WrongPassword`]. A server without passwords answers
    /// `bad_args`: there is nothing to unlock, so that counts as success.
    pub async fn auth(&mut self, password: &str) -> Result<(), ClientError> {
        let cmd = Command::Auth {
            password: password.to_string(),
        };
        match self.request(&cmd).await {
            Ok(Reply::Ok) => Ok(()),
            Ok(other) => Err(unexpected("AUTH", &other)),
            Err(ClientError::Server(e)) if e.code == ErrorCode::Forbidden => {
                Err(LoginError::WrongPassword(e).into())
            }
            Err(ClientError::Server(e)) if e.code == ErrorCode::BadArgs => {
                tracing::debug!(error = %e, "the server needs no password");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Joins, after `AUTH` when the login has a password. With `resume`
    /// (the canvas id and last seq this client applied) the server replays
    /// what was missed instead of sending the canvas, if it still can;
    /// [`Joined::snapshot`] says which happened. A refused login is
    /// [`ClientError::Login`].
    pub async fn join(
        &mut self,
        login: &Login,
        resume: Option<Resume>,
    ) -> Result<Joined, ClientError> {
        if let Some(password) = &login.password {
            self.auth(password).await?;
        }
        let cmd = Command::Join {
            name: login.name.clone(),
            resume,
            quiet: login.quiet,
        };
        let welcome = match self.request(&cmd).await {
            Ok(Reply::Welcome(w)) => w,
            Ok(other) => return Err(unexpected("JOIN", &other)),
            Err(ClientError::Server(e)) => {
                return Err(self.join_refused(e, login.password.is_some()));
            }
            Err(e) => return Err(e),
        };
        let snapshot = if welcome.resumed {
            None
        } else {
            match self.reply().await? {
                Reply::Canvas(s) if s.canvas_id == welcome.canvas_id => Some(s),
                other => return Err(unexpected("the snapshot after WELCOME", &other)),
            }
        };
        Ok(Joined { welcome, snapshot })
    }

    /// Makes sense of an error answering `JOIN`: a name the user must
    /// change, a password the server wants, or anything else.
    fn join_refused(&self, e: WireError, authed: bool) -> ClientError {
        match e.code {
            ErrorCode::BadName | ErrorCode::NameTaken | ErrorCode::Banned => {
                LoginError::Name(e).into()
            }
            ErrorCode::Forbidden if !authed => LoginError::PasswordRequired(e).into(),
            _ => ClientError::Server(e),
        }
    }

    /// Who placed the pixel at `(x, y)` last, and when; `None` if nobody
    /// has. Works before joining (after `AUTH` on a password server).
    pub async fn whose(&mut self, x: u32, y: u32) -> Result<Option<Placement>, ClientError> {
        match self.request(&Command::Whose { x, y }).await? {
            Reply::Whose(placement) => Ok(placement),
            other => Err(unexpected("WHOSE", &other)),
        }
    }

    /// Admin (after `AUTH` with the admin password): puts back the colour
    /// each pixel had before `name`'s placements of the last `minutes`
    /// (0: all of them), where `name` is still the last author. Returns
    /// the pixels placed, the seq after them, and how many are left over
    /// the server's per-command cap (call again for those).
    pub async fn rollback(
        &mut self,
        name: &str,
        minutes: u32,
    ) -> Result<(u32, u64, u32), ClientError> {
        let cmd = Command::Rollback {
            name: name.to_string(),
            minutes,
        };
        match self.request(&cmd).await? {
            Reply::Bulk { placed, seq, more } => Ok((placed, seq, more)),
            other => Err(unexpected("ROLLBACK", &other)),
        }
    }

    /// Admin: paints the rectangle from `(x1, y1)` to `(x2, y2)`
    /// (inclusive) with `color`. Returns the pixels placed and the seq of
    /// the last one.
    pub async fn fill(
        &mut self,
        (x1, y1): (u32, u32),
        (x2, y2): (u32, u32),
        color: u32,
    ) -> Result<(u32, u64), ClientError> {
        let cmd = Command::Fill {
            x1,
            y1,
            x2,
            y2,
            color,
        };
        match self.request(&cmd).await? {
            Reply::Bulk { placed, seq, .. } => Ok((placed, seq)),
            other => Err(unexpected("FILL", &other)),
        }
    }

    /// Sends `cmd` and returns its reply; an `ERROR` reply is
    /// [`ClientError::Server`].
    pub async fn request(&mut self, cmd: &Command) -> Result<Reply, ClientError> {
        self.send(cmd).await?;
        match self.reply().await? {
            Reply::Error(e) => Err(ClientError::Server(e)),
            reply => Ok(reply),
        }
    }

    /// The next event, first those that arrived during earlier requests.
    /// `None` when the server closed the connection. Waits as long as it
    /// takes: events come when others act.
    pub async fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        loop {
            match self.framed.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(ServerMsg::Event(e))) => return Ok(Some(e)),
                // A newer server's event type: the protocol says skip it.
                Some(Ok(ServerMsg::Unknown { kind })) if kind < 0x80 => {}
                Some(Ok(other)) => return Err(unexpected("no command", &other)),
            }
        }
    }

    /// Says `QUIT` and waits (briefly) for the server's goodbye.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.send(&Command::Quit).await?;
        match tokio::time::timeout(QUIT_GRACE, self.reply()).await {
            Ok(Ok(Reply::Bye)) | Ok(Err(ClientError::Closed)) => Ok(()),
            Ok(Ok(other)) => Err(unexpected("QUIT", &other)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Timeout(QUIT_GRACE)),
        }
    }

    async fn send(&mut self, cmd: &Command) -> Result<(), ClientError> {
        send_within(&mut self.framed, cmd, REPLY_TIMEOUT).await
    }

    /// Reads up to the next reply, keeping events for later.
    async fn reply(&mut self) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.framed.next()).await {
                Err(_) => return Err(ClientError::Timeout(REPLY_TIMEOUT)),
                Ok(None) => return Err(ClientError::Closed),
                Ok(Some(msg)) => msg?,
            };
            match msg {
                ServerMsg::Reply(r) => return Ok(r),
                ServerMsg::Event(Event::Bye { code, text }) => {
                    return Err(ClientError::Bye { code, text });
                }
                ServerMsg::Event(e) => {
                    if self.events.len() >= MAX_BUFFERED_EVENTS {
                        return Err(ClientError::Lagged);
                    }
                    self.events.push_back(e);
                }
                ServerMsg::Unknown { kind } if kind >= 0x80 => {
                    return Err(ClientError::Protocol(format!(
                        "a reply of unknown type 0x{kind:02x}"
                    )));
                }
                ServerMsg::Unknown { .. } => {}
            }
        }
    }
}

/// Reconnect delays: doubling from `first` up to `max`, each cut by a random
/// jitter to between half and all of it, so clients dropped together (a
/// server restart) do not all come back in the same instant. The first
/// delay is short: most drops are a server restarting, which is back
/// within a second or two, and waiting out a long first delay only keeps
/// the user staring at a countdown.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first delay, before jitter.
    pub first: Duration,
    /// The longest delay, before jitter.
    pub max: Duration,
    failures: u32,
}

impl Default for Backoff {
    /// 100 ms (50-100 ms after jitter), doubling up to 30 s: attempts at
    /// about 0.1, 0.3, 0.7, 1.5, 3 and 6 s after a drop, then further
    /// apart.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A backoff that has not failed yet.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            failures: 0,
        }
    }

    /// The delay before the next attempt; each call counts one failure.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .first
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        base.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Starts again from `first` (after a connection worked).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Server address, `host:port`; or several servers of one cluster
    /// separated by commas ([`server_list`]), tried in turn.
    pub addr: String,
    /// Join at once with this login; without one the client waits for
    /// [`Client::login`].
    pub login: Option<Login>,
    /// Delays between reconnect attempts.
    pub backoff: Backoff,
    /// Keepalive and round-trip ping period.
    pub ping_interval: Duration,
    /// How long a command may go unanswered before the connection is
    /// dropped and made again.
    pub reply_timeout: Duration,
    /// Plain TCP (the default) or TLS.
    pub transport: Transport,
}

impl ClientConfig {
    /// Defaults for `addr`: no login yet, 0.1-30 s backoff, 15 s pings.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            login: None,
            backoff: Backoff::default(),
            ping_interval: PING_INTERVAL,
            reply_timeout: REPLY_TIMEOUT,
            transport: Transport::default(),
        }
    }
}

/// Why a command sent through a [`Client`] got no reply from the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// There was no joined connection to send it on.
    #[error("not connected")]
    NotConnected,
    /// The connection dropped before the reply came.
    #[error("the connection dropped before the server answered")]
    ConnectionLost,
    /// A newer server answered with a reply type this build does not know.
    #[error("the server answered with an unknown reply type 0x{0:02x}")]
    UnknownReply(u8),
}

/// Everything a [`Client`] reports, in the order it happened.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// A connection attempt starts (`attempt` counts from 1 since the last
    /// success).
    Connecting {
        /// Attempts since the last joined session.
        attempt: u32,
    },
    /// The server the next [`ClientEvent::Joined`] comes from: one of the
    /// configured list, which may not be the one of the last session.
    Server(String),
    /// Joined. With a snapshot, the canvas starts again from it (a new
    /// client, a server that lost our place, or a new canvas); without, the
    /// pixels missed while away follow as events.
    Joined {
        /// The server's welcome.
        welcome: Welcome,
        /// The canvas, unless resumed.
        snapshot: Option<Arc<Snapshot>>,
    },
    /// The server refused the login: a password is needed or wrong, or the
    /// name is bad, banned, or taken before any join succeeded (a
    /// `name_taken` later is most likely our own old connection, and is
    /// retried). The client waits for [`Client::login`].
    LoginRejected(LoginError),
    /// An event from the server.
    Event(Event),
    /// The answer to the command sent with this tag.
    Reply {
        /// The caller's tag from [`Client::send`].
        tag: u64,
        /// The server's reply (which may be [`Reply::Error`]), or why there
        /// is none.
        result: Result<Reply, RequestError>,
    },
    /// A keepalive ping came back after this long.
    Rtt(Duration),
    /// The connection is gone (or could not be made); the next attempt
    /// starts after `retry_in`.
    Disconnected {
        /// What happened, in words.
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// An admin sent us away (`BYE kicked` or `BYE banned`; the `BYE`
    /// itself came just before as an event). The client does not
    /// reconnect by itself, which would only undo the admin's decision:
    /// it waits for [`Client::login`].
    Evicted {
        /// `kicked` or `banned`.
        code: ErrorCode,
        /// The server's words.
        text: String,
    },
    /// The client gave up for good (the server speaks another protocol
    /// version).
    Stopped {
        /// Why, in words.
        reason: String,
    },
}

/// Why [`Client::send`] or [`Client::login`] did not take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Too many commands are waiting to be sent.
    #[error("too many commands are waiting to be sent")]
    Full,
    /// The client has stopped.
    #[error("the client has stopped")]
    Stopped,
}

#[derive(Debug)]
enum ToClient {
    Login(Login),
    Send { tag: u64, cmd: Command },
}

/// A session kept alive in a background task; see the module docs. Created
/// by [`Client::spawn`], which also returns the receiver of its events.
#[derive(Debug)]
pub struct Client {
    requests: mpsc::Sender<ToClient>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Client {
    /// Starts the client task. It connects at once if `config.login` is set.
    /// Must be called inside a Tokio runtime.
    pub fn spawn(config: ClientConfig) -> (Client, mpsc::Receiver<ClientEvent>) {
        let (requests, requests_rx) = mpsc::channel(MAX_QUEUED);
        let (events_tx, events) = mpsc::channel(1024);
        let stop = CancellationToken::new();
        let mut servers = server_list(&config.addr);
        if servers.is_empty() {
            servers.push(config.addr.clone());
        }
        let supervisor = Supervisor {
            servers,
            current: 0,
            login: config.login.clone(),
            backoff: config.backoff.clone(),
            config,
            requests: requests_rx,
            events: events_tx,
            stop: stop.clone(),
            resume: None,
            joined_once: false,
        };
        let task = tokio::spawn(supervisor.run());
        (
            Client {
                requests,
                stop,
                task,
            },
            events,
        )
    }

    /// Joins with this login: the first time, after
    /// [`ClientEvent::LoginRejected`] or [`ClientEvent::Evicted`], or at once
    /// instead of waiting out a reconnect delay.
    pub fn login(&self, login: Login) -> Result<(), SendError> {
        self.push(ToClient::Login(login))
    }

    /// Queues `cmd`; its reply comes back as [`ClientEvent::Reply`] with the
    /// same `tag`. Without a joined connection the reply is
    /// [`RequestError::NotConnected`] (commands are not held for later: the
    /// caller decides what deserves a retry).
    pub fn send(&self, tag: u64, cmd: Command) -> Result<(), SendError> {
        self.push(ToClient::Send { tag, cmd })
    }

    fn push(&self, req: ToClient) -> Result<(), SendError> {
        self.requests.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Stopped,
        })
    }

    /// Says goodbye to the server (briefly) and stops the task.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(QUIT_GRACE * 2, self.task).await;
    }
}

/// How a joined session ended.
enum End {
    /// The caller stopped the client.
    Stopped,
    /// The connection broke; reconnect.
    Lost(String),
    /// An admin sent us away; wait for the caller.
    Evicted(ErrorCode, String),
}

/// Whether a `BYE` means an admin sent us away, rather than a connection
/// worth making again.
fn is_eviction(code: &ErrorCode) -> bool {
    matches!(code, ErrorCode::Kicked | ErrorCode::Banned)
}

struct Supervisor {
    config: ClientConfig,
    login: Option<Login>,
    backoff: Backoff,
    requests: mpsc::Receiver<ToClient>,
    events: mpsc::Sender<ClientEvent>,
    stop: CancellationToken,
    /// Where the events delivered so far leave the caller's canvas.
    resume: Option<Resume>,
    joined_once: bool,
    /// The configured servers, and the one to try first.
    servers: Vec<String>,
    current: usize,
}

/// A send to a caller that dropped the receiver: nothing left to do.
struct Gone;

impl Supervisor {
    async fn run(mut self) {
        let _ = self.run_inner().await;
    }

    async fn run_inner(&mut self) -> Result<(), Gone> {
        let mut attempt = 0;
        loop {
            let Some(login) = self.login.clone() else {
                self.wait_for_login().await?;
                continue;
            };
            attempt += 1;
            self.emit(ClientEvent::Connecting { attempt }).await?;
            let stop = self.stop.clone();
            let outcome = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                outcome = self.join_any(&login) => outcome,
            };
            let reason = match outcome {
                Ok((conn, joined)) => {
                    self.emit(ClientEvent::Server(self.servers[self.current].clone()))
                        .await?;
                    attempt = 0;
                    self.backoff.reset();
                    self.joined_once = true;
                    self.resume = Some(Resume {
                        canvas_id: joined.welcome.canvas_id,
                        seq: match (&joined.snapshot, self.resume) {
                            (Some(s), _) => s.seq,
                            // Resumed: the missed pixels still have to be
                            // delivered; they advance the seq one by one.
                            (None, Some(r)) => r.seq,
                            (None, None) => joined.welcome.seq,
                        },
                    });
                    self.emit(ClientEvent::Joined {
                        welcome: joined.welcome,
                        snapshot: joined.snapshot,
                    })
                    .await?;
                    match self.session(conn).await? {
                        End::Stopped => return Ok(()),
                        End::Lost(reason) => {
                            // The server may be gone: start with the next.
                            self.current = (self.current + 1) % self.servers.len();
                            reason
                        }
                        End::Evicted(code, text) => {
                            self.evicted(code, text).await?;
                            continue;
                        }
                    }
                }
                Err(ClientError::Login(e)) if self.is_login_refusal(&e) => {
                    self.login = None;
                    self.emit(ClientEvent::LoginRejected(e)).await?;
                    continue;
                }
                // Sent away while still joining.
                Err(ClientError::Bye { code, text }) if is_eviction(&code) => {
                    self.emit(ClientEvent::Event(Event::Bye {
                        code: code.clone(),
                        text: text.clone(),
                    }))
                    .await?;
                    self.evicted(code, text).await?;
                    continue;
                }
                Err(ClientError::Server(e)) if e.code == ErrorCode::UnsupportedVersion => {
                    self.emit(ClientEvent::Stopped {
                        reason: e.to_string(),
                    })
                    .await?;
                    self.stop.cancelled().await;
                    return Ok(());
                }
                Err(e) => e.to_string(),
            };
            let retry_in = self.backoff.next_delay();
            self.emit(ClientEvent::Disconnected { reason, retry_in })
                .await?;
            self.pause(retry_in).await?;
        }
    }

    /// Joins on the first server that serves, from the current one on, and
    /// makes it the current one; a server that is down is skipped at once.
    async fn join_any(&mut self, login: &Login) -> Result<(Connection, Joined), ClientError> {
        let n = self.servers.len();
        let mut k = 0;
        loop {
            let i = (self.current + k) % n;
            match connect_and_join(&self.servers[i], &self.config.transport, login, self.resume)
                .await
            {
                Ok(joined) => {
                    self.current = i;
                    return Ok(joined);
                }
                Err(e) if e.is_server_down() && k + 1 < n => {
                    tracing::debug!(server = %self.servers[i], error = %e, "server down; trying the next");
                    k += 1;
                }
                Err(e) => {
                    self.current = (i + 1) % n;
                    return Err(e);
                }
            }
        }
    }

    /// A refused password or name is the user's to fix (retrying the same
    /// login would only be refused again), except a `name_taken` after we
    /// were online: that is most likely our own old connection, not yet
    /// noticed as gone by the server (or, in a cluster, still held by the
    /// lease of a server that died), so it is retried like a drop.
    fn is_login_refusal(&self, e: &LoginError) -> bool {
        match e {
            LoginError::PasswordRequired(_) | LoginError::WrongPassword(_) => true,
            LoginError::Name(e) => e.code != ErrorCode::NameTaken || !self.joined_once,
        }
    }

    /// Forgets the login, so the loop waits for the caller to log in again.
    async fn evicted(&mut self, code: ErrorCode, text: String) -> Result<(), Gone> {
        self.login = None;
        self.backoff.reset();
        self.emit(ClientEvent::Evicted { code, text }).await
    }

    async fn emit(&self, event: ClientEvent) -> Result<(), Gone> {
        self.events.send(event).await.map_err(|_| Gone)
    }

    /// Handles what the caller asks while there is no connection.
    async fn offline_request(&mut self, req: Option<ToClient>) -> Result<bool, Gone> {
        match req {
            None => Err(Gone),
            Some(ToClient::Send { tag, .. }) => {
                self.emit(ClientEvent::Reply {
                    tag,
                    result: Err(RequestError::NotConnected),
                })
                .await?;
                Ok(false)
            }
            Some(ToClient::Login(login)) => {
                self.login = Some(login);
                Ok(true)
            }
        }
    }

    async fn wait_for_login(&mut self) -> Result<(), Gone> {
        loop {
            let req = tokio::select! {
                _ = self.stop.cancelled() => return Err(Gone),
                req = self.requests.recv() => req,
            };
            if self.offline_request(req).await? {
                return Ok(());
            }
        }
    }

    /// Sleeps before a reconnect; a new login cuts the wait short.
    async fn pause(&mut self, delay: Duration) -> Result<(), Gone> {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            let req = tokio::select! {
                _ = &mut sleep => return Ok(()),
                _ = self.stop.cancelled() => return Err(Gone),
                req = self.requests.recv() => req,
            };
            if self.offline_request(req).await? {
                return Ok(());
            }
        }
    }

    /// Notes how far the caller's canvas is, from what it is handed.
    fn track(&mut self, canvas_id: u64, seq: u64) {
        if let Some(r) = &mut self.resume
            && r.canvas_id == canvas_id
        {
            r.seq = r.seq.max(seq);
        }
    }

    async fn deliver(&mut self, event: Event) -> Result<(), Gone> {
        if let (Event::Pixel(p), Some(r)) = (&event, self.resume) {
            self.track(r.canvas_id, p.seq);
        }
        self.emit(ClientEvent::Event(event)).await
    }

    async fn session(&mut self, conn: Connection) -> Result<End, Gone> {
        let Connection {
            mut framed, events, ..
        } = conn;
        for event in events {
            self.deliver(event).await?;
        }
        let mut pending: VecDeque<(Pending, Instant)> = VecDeque::new();
        let mut housekeeping =
            tokio::time::interval(self.config.ping_interval.min(Duration::from_secs(5)));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ping: Option<Instant> = None;
        let mut token = 0u64;
        let end = loop {
            tokio::select! {
                _ = self.stop.cancelled() => {
                    say_goodbye(&mut framed).await;
                    break End::Stopped;
                }
                msg = framed.next() => {
                    let msg = match msg {
                        None => break End::Lost("the server closed the connection".into()),
                        Some(Err(e)) => break End::Lost(e.to_string()),
                        Some(Ok(msg)) => msg,
                    };
                    match msg {
                        ServerMsg::Event(Event::Bye { code, text }) => {
                            if code == ErrorCode::NameLost {
                                // Someone else has the name now: a
                                // `name_taken` on the way back is theirs,
                                // not our old connection's.
                                self.joined_once = false;
                            }
                            self.deliver(Event::Bye { code: code.clone(), text: text.clone() }).await?;
                            if is_eviction(&code) {
                                break End::Evicted(code, text);
                            }
                            break End::Lost(format!("the server said goodbye: {code}: {text}"));
                        }
                        ServerMsg::Event(e) => self.deliver(e).await?,
                        ServerMsg::Unknown { kind } if kind < 0x80 => {}
                        reply => {
                            let Some((waiting, sent)) = pending.pop_front() else {
                                break End::Lost("the server answered a command never sent".into());
                            };
                            let result = match reply {
                                ServerMsg::Reply(r) => Ok(r),
                                ServerMsg::Unknown { kind } => Err(RequestError::UnknownReply(kind)),
                                ServerMsg::Event(_) => unreachable!("events are matched above"),
                            };
                            match waiting {
                                Pending::Ping => self.emit(ClientEvent::Rtt(sent.elapsed())).await?,
                                Pending::Caller(tag) => {
                                    if let Ok(Reply::Canvas(s)) = &result {
                                        self.track(s.canvas_id, s.seq);
                                    }
                                    self.emit(ClientEvent::Reply { tag, result }).await?;
                                }
                            }
                        }
                    }
                }
                req = self.requests.recv(), if pending.len() < MAX_IN_FLIGHT => match req {
                    None => break End::Stopped,
                    Some(ToClient::Login(login)) => self.login = Some(login),
                    Some(ToClient::Send { tag, cmd }) => {
                        pending.push_back((Pending::Caller(tag), Instant::now()));
                        if let Err(e) = send_within(&mut framed, &cmd, self.config.reply_timeout).await {
                            break End::Lost(e.to_string());
                        }
                    }
                },
                _ = housekeeping.tick() => {
                    if let Some((_, sent)) = pending.front()
                        && sent.elapsed() > self.config.reply_timeout
                    {
                        break End::Lost(format!(
                            "the server did not answer for {} s",
                            self.config.reply_timeout.as_secs()
                        ));
                    }
                    let due = last_ping.is_none_or(|t| t.elapsed() >= self.config.ping_interval);
                    if due && pending.len() < MAX_IN_FLIGHT {
                        token += 1;
                        let ping = Command::Ping { token: format!("k{token}") };
                        pending.push_back((Pending::Ping, Instant::now()));
                        last_ping = Some(Instant::now());
                        if let Err(e) = send_within(&mut framed, &ping, self.config.reply_timeout).await {
                            break End::Lost(e.to_string());
                        }
                    }
                }
            }
        };
        for (waiting, _) in pending {
            if let Pending::Caller(tag) = waiting {
                self.emit(ClientEvent::Reply {
                    tag,
                    result: Err(RequestError::ConnectionLost),
                })
                .await?;
            }
        }
        Ok(end)
    }
}

/// Who waits for the reply at the head of a [`Client`]'s queue.
enum Pending {
    Caller(u64),
    Ping,
}

async fn connect_and_join(
    addr: &str,
    transport: &Transport,
    login: &Login,
    resume: Option<Resume>,
) -> Result<(Connection, Joined), ClientError> {
    let mut conn = Connection::connect_via(addr, transport).await?;
    let joined = conn.join(login, resume).await?;
    Ok((conn, joined))
}

async fn send_within(
    framed: &mut Framed<Stream, ClientCodec>,
    cmd: &Command,
    limit: Duration,
) -> Result<(), ClientError> {
    match tokio::time::timeout(limit, framed.send(cmd)).await {
        Ok(res) => res.map_err(ClientError::from),
        Err(_) => Err(ClientError::Timeout(limit)),
    }
}

/// Best-effort `QUIT`, so the server tells the others we left at once
/// rather than when it notices the closed socket.
async fn say_goodbye(framed: &mut Framed<Stream, ClientCodec>) {
    let _ = tokio::time::timeout(QUIT_GRACE, async {
        framed.send(&Command::Quit).await?;
        while let Some(msg) = framed.next().await {
            if matches!(msg?, ServerMsg::Reply(Reply::Bye)) {
                break;
            }
        }
        Ok::<_, FrameError>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let bases = [1, 2, 4, 8, 16, 30, 30, 30];
        for base in bases {
            let d = b.next_delay();
            let base = Duration::from_secs(base);
            assert!(
                d >= base / 2 && d <= base,
                "{d:?} not in [{:?}, {base:?}]",
                base / 2
            );
        }
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn the_default_retries_a_restarted_server_within_a_second_or_two() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(100), "{first:?}");
        // Five failed attempts (a server down for a second or so) still
        // leave the next one at most 1.6 s away.
        for _ in 0..3 {
            b.next_delay();
        }
        assert!(b.next_delay() <= Duration::from_millis(1600));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut b = Backoff::default();
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 1, "20 fresh backoffs all gave {seen:?}");
    }
}
