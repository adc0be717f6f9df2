//! The server: an accept loop over an already bound listener (so tests can
//! bind `127.0.0.1:0`), connection limits that answer instead of queueing,
//! and a clean shutdown on a cancellation token that finishes durable writes.

pub(crate) mod address;
pub mod broadcast;
pub(crate) mod canvas;
pub mod cluster;
pub(crate) mod connection;
pub(crate) mod connections;
pub mod export;
pub(crate) mod fanout;
pub(crate) mod http;
pub(crate) mod hub;
pub(crate) mod metrics;
pub(crate) mod outbox;
pub(crate) mod sock;
pub mod storage;
pub(crate) mod supervise;
pub mod tls;
pub mod web;
pub(crate) mod world;

/// The canvas, history and broadcast ring, for the criterion benchmarks in
/// `benches/` only: not part of the API, and free to change.
#[doc(hidden)]
pub mod bench_internals {
    pub use super::broadcast::{BroadcastRing, Lagged};
    pub use super::canvas::{Canvas, History};
}

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::protocol::Mode;
use crate::protocol::{ErrorCode, Reply, WireError, binary, text};
use broadcast::BroadcastLimits;
use connections::{Connections, Refused};
use hub::{Hub, HubConfig};
use storage::StorageConfig;
use supervise::{Ended, Supervisor, Task};

/// Server settings. `Config::default()` keeps the canvas in memory only;
/// the `pixchat-server` binary stores it in `./pixchat-data` by default.
#[derive(Debug, Clone)]
pub struct Config {
    /// Canvas width asked for (`None`: the stored canvas, or the default).
    pub width: Option<u16>,
    /// Canvas height asked for.
    pub height: Option<u16>,
    /// Most connections served at once; more are told `server_full`.
    pub max_clients: usize,
    /// Pixel events kept for `SYNC`.
    pub history: usize,
    /// Without `storage`: recent placements kept in memory for `ROLLBACK`
    /// and `WHOSE x y n` (0: none, both are then unavailable).
    pub memory_history: usize,
    /// Broadcast window; a client further behind is disconnected.
    pub broadcast: BroadcastLimits,
    /// Kernel send buffer per connection (`SO_SNDBUF`), which bounds what a
    /// client that stops reading can pin in the kernel; `None` leaves the
    /// kernel's autotuning (up to several MiB per socket).
    pub send_buffer: Option<usize>,
    /// Durable storage; `None` keeps everything in memory.
    pub storage: Option<StorageConfig>,
    /// Share the canvas with other servers through Redis (then `storage`
    /// is not used: Redis is the source of truth).
    pub cluster: Option<cluster::ClusterConfig>,
    /// Abuse and overload limits.
    pub limits: Limits,
    /// Password every client must give (`AUTH`) before anything else.
    pub password: Option<String>,
    /// Password that grants `KICK` and `BAN`.
    pub admin_password: Option<String>,
    /// How joins and leaves are told once a crowd is online.
    pub presence: PresenceConfig,
    /// Notified once the server serves (the canvas is loaded and the
    /// listener accepts): readiness for a supervisor such as systemd.
    pub ready: Option<Arc<tokio::sync::Notify>>,
    /// The page on the HTTP listener.
    pub web: web::WebConfig,
    /// TLS on the chat port (beside plaintext, or instead of it).
    pub tls: Option<tls::TlsConfig>,
}

/// Presence for crowds: from `threshold` users online, joins and leaves
/// are not sent one by one (`JOINED`, `LEFT`) but every `interval` in one
/// `PRESENCE` event with the count and, capped, the names.
#[derive(Debug, Clone)]
pub struct PresenceConfig {
    /// Users online from which joins and leaves are batched.
    pub threshold: usize,
    /// How often a batch goes out (when anything changed).
    pub interval: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            threshold: crate::DEFAULT_PRESENCE_THRESHOLD,
            interval: Duration::from_millis(crate::DEFAULT_PRESENCE_INTERVAL_MS),
        }
    }
}

/// Abuse and overload limits; zero turns a limit off.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Minimum time between two placements by one user.
    pub cooldown: Duration,
    /// Commands per second per connection (token bucket refill rate).
    pub rate_limit: u32,
    /// Commands a connection may send at once before the rate applies.
    pub rate_burst: u32,
    /// Connections per client IP address.
    pub max_conns_per_ip: usize,
    /// A connection that sends nothing for this long after connecting is
    /// closed.
    pub handshake_timeout: Duration,
    /// A binary connection silent this long is closed (it is sent a
    /// `KEEPALIVE` at half of it).
    pub idle_timeout: Duration,
    /// A connection that has neither joined nor given a password (`AUTH`)
    /// this long after connecting is told `BYE join_timeout` and closed,
    /// in both modes (zero: never).
    pub join_timeout: Duration,
    /// The reply to a failed `AUTH` is held back this long, doubled for
    /// each earlier failure of the connection or of its address (the
    /// larger count), up to [`MAX_AUTH_DELAY`].
    pub auth_delay: Duration,
    /// Failed `AUTH`s after which the connection is told
    /// `BYE too_many_failures` and closed (0: never). A connection counts
    /// up to 255, so a larger value is never reached.
    pub max_auth_failures: u32,
    /// What the rate limit and the placement cooldown count by.
    pub limit_by: LimitBy,
}

/// The longest a failed `AUTH`'s reply is held back.
pub const MAX_AUTH_DELAY: Duration = Duration::from_secs(8);

/// What the rate limit and the placement cooldown count by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LimitBy {
    /// The rate per connection, the cooldown per user name (as before
    /// address limits existed).
    #[default]
    Name,
    /// Both per client address (IPv6 by /64): reconnecting or taking a
    /// fresh name changes nothing.
    Addr,
    /// Both: per connection and per address for the rate, per name and
    /// per address for the cooldown.
    Both,
}

impl LimitBy {
    /// Counts per connection or per name.
    pub fn by_name(self) -> bool {
        self != LimitBy::Addr
    }

    /// Counts per address.
    pub fn by_addr(self) -> bool {
        self != LimitBy::Name
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cooldown: Duration::ZERO,
            rate_limit: 0,
            rate_burst: 0,
            max_conns_per_ip: 0,
            handshake_timeout: connection::HANDSHAKE_TIMEOUT,
            idle_timeout: Duration::from_secs(crate::DEFAULT_IDLE_TIMEOUT_SECS),
            join_timeout: Duration::from_secs(crate::DEFAULT_JOIN_TIMEOUT_SECS),
            auth_delay: Duration::from_millis(crate::DEFAULT_AUTH_DELAY_MS),
            max_auth_failures: crate::DEFAULT_MAX_AUTH_FAILURES,
            limit_by: LimitBy::Name,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            width: None,
            height: None,
            max_clients: crate::DEFAULT_MAX_CLIENTS,
            history: crate::DEFAULT_HISTORY,
            memory_history: crate::DEFAULT_MEMORY_HISTORY,
            broadcast: BroadcastLimits::default(),
            send_buffer: Some(crate::DEFAULT_SEND_BUFFER),
            storage: None,
            cluster: None,
            limits: Limits::default(),
            password: None,
            admin_password: None,
            presence: PresenceConfig::default(),
            ready: None,
            web: web::WebConfig::default(),
            tls: None,
        }
    }
}

/// Milliseconds since the Unix epoch, as stamped on placements and chat.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Rejections answered at once; beyond this an over-limit connection is
/// simply closed, so a flood cannot make the server hold sockets open.
const MAX_PENDING_REJECTS: usize = 64;
/// How long an over-limit connection gets to reveal its mode.
const REJECT_SNIFF: Duration = Duration::from_secs(1);
/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Connections the kernel completes before the accept loop takes them. A
/// crowd connecting at once (hundreds within a millisecond, as after a
/// restart) overflows the usual 128, and on Linux an overflowing connection
/// can be reset after the client already sent its first command. The
/// kernel caps it at `net.core.somaxconn` (4096 on current kernels).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener for [`run`] on `addr` (`host:port`; port 0 picks a free
/// port) with a backlog of [`LISTEN_BACKLOG`].
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std's bind does: a restarted server may take its port back
        // while old connections linger in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// Serves `listener` until `shutdown` is cancelled, then tells every client
/// goodbye, writes what was accepted to disk and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with(listener, None, config, shutdown).await
}

/// Like [`run`], with the operators' HTTP listener (`/healthz`, `/readyz`,
/// `/metrics` and the browser view) on `http` when given (already bound, so
/// tests can bind `127.0.0.1:0`).
pub async fn run_with(
    listener: TcpListener,
    http: Option<TcpListener>,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The accept loop runs as a task on the runtime's workers, not in the
    // caller's `block_on` (a binary's main thread): there, every accepted
    // connection took two more thread wake-ups (a worker polling the socket
    // waking the main thread, which handed the connection back to a worker),
    // and on a busy machine each wake-up waits for a core. On a worker, the
    // connection's task starts on the same thread.
    match tokio::spawn(serve(listener, http, config, shutdown)).await {
        Ok(ended) => ended,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(anyhow::anyhow!("the server's task was cancelled: {e}")),
    }
}

async fn serve(
    listener: TcpListener,
    http: Option<TcpListener>,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let size = match (config.width, config.height) {
        (None, None) => None,
        (w, h) => Some((
            w.unwrap_or(crate::DEFAULT_WIDTH),
            h.unwrap_or(crate::DEFAULT_HEIGHT),
        )),
    };
    let hub_config = HubConfig {
        size,
        default_size: (crate::DEFAULT_WIDTH, crate::DEFAULT_HEIGHT),
        history: config.history,
        memory_history: config.memory_history,
        broadcast: config.broadcast,
        storage: config.storage.clone(),
        cooldown: config.limits.cooldown,
        limit_by: config.limits.limit_by,
        password: config.password.clone(),
        admin_password: config.admin_password.clone(),
        presence_threshold: config.presence.threshold,
    };
    let tls = match config.tls.clone() {
        Some(c) => Some(Arc::new(tls::Tls::load(c)?)),
        None => None,
    };
    let mut tasks = Supervisor::default();
    let hub = match config.cluster.clone() {
        Some(cluster_config) => {
            start_cluster(cluster_config, hub_config, size, &shutdown, &mut tasks).await?
        }
        None => {
            // Recovery reads and fsyncs files: keep it off the async workers.
            let hub = tokio::task::spawn_blocking(move || Hub::open(&hub_config))
                .await
                .context("recover the canvas")??;
            let hub = Arc::new(hub);
            hub.attach_journal();
            hub
        }
    };
    // The journal thread must not die unseen: if it does, nothing the
    // server accepts could be acknowledged, so the server stops.
    let journal_died = hub.journal_died().unwrap_or_default();
    let mut failure = None;
    let pacer = |shard| {
        let fanout = hub.fanout().clone();
        on_own_thread(
            format!("pixchat-pacer-{shard}"),
            shutdown.clone(),
            move |stop| fanout.run(shard, stop),
        )
    };
    for shard in 0..hub.fanout().shards() {
        tasks.spawn(Task::Pacer(shard), pacer(shard));
    }
    let presence = || publish_presence(hub.clone(), config.presence.interval, shutdown.clone());
    tasks.spawn(Task::Presence, presence());
    let (width, height) = hub.size();
    let addr = listener
        .local_addr()
        .context("read the listening address")?;
    info!(%addr, width, height, "listening");
    if let Some(ready) = &config.ready {
        ready.notify_one();
    }

    let limits = Arc::new(config.limits.clone());
    let shared = Arc::new(connection::Shared {
        hub: hub.clone(),
        limits: limits.clone(),
        connections: Connections::new(config.max_clients, limits.max_conns_per_ip),
        read_only: false,
    });
    let silence = || connection::watch_silence(shared.clone(), shutdown.clone());
    tasks.spawn(Task::Silence, silence());
    let rejects = Arc::new(Semaphore::new(MAX_PENDING_REJECTS));
    let tracker = TaskTracker::new();
    let entrance = connection::Entrance {
        shared: shared.clone(),
        tracker: tracker.clone(),
    };
    let reload = |tls: &Arc<tls::Tls>| tls::reload_on_hangup(tls.clone(), shutdown.clone());
    if let Some(tls) = &tls {
        tasks.spawn(Task::TlsReload, reload(tls));
    }
    if let Some(http) = http {
        let addr = http
            .local_addr()
            .context("read the HTTP listening address")?;
        info!(%addr, "http listening");
        let (registry, stream_lag) = metrics::registry(hub.clone());
        let state = http::HttpState {
            hub: hub.clone(),
            entrance: entrance.clone(),
            shutdown: shutdown.clone(),
            web: config.web.clone(),
            registry: Arc::new(registry),
            stream_lag,
        };
        tasks.spawn(Task::Http, http::serve(http, state));
    }
    loop {
        let (stream, peer) = tokio::select! {
            // Shutdown first: tasks end on it too, which is no failure.
            biased;
            _ = shutdown.cancelled() => break,
            _ = journal_died.cancelled() => {
                tracing::error!("the journal writer died; stopping the server");
                failure = Some(anyhow::anyhow!("the journal writer died; nothing more could be made durable"));
                shutdown.cancel();
                break;
            }
            ended = tasks.ended() => match ended {
                Ended::Restart(Task::Pacer(shard)) => {
                    tasks.spawn(Task::Pacer(shard), pacer(shard));
                    continue;
                }
                Ended::Restart(Task::Presence) => {
                    tasks.spawn(Task::Presence, presence());
                    continue;
                }
                Ended::Restart(Task::Silence) => {
                    tasks.spawn(Task::Silence, silence());
                    continue;
                }
                Ended::Restart(Task::TlsReload) => {
                    if let Some(tls) = &tls {
                        tasks.spawn(Task::TlsReload, reload(tls));
                    }
                    continue;
                }
                Ended::Restart(_) => unreachable!("only pacers, the presence ticker, the silence watch and the TLS reloader are restarted"),
                Ended::Fatal(e) => {
                    tracing::error!(error = %e, "stopping the server");
                    failure = Some(e);
                    shutdown.cancel();
                    break;
                }
            },
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match shared.connections.admit(peer.ip()) {
            Ok(listed) => {
                if let Some(size) = config.send_buffer {
                    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(size);
                }
                match &tls {
                    None => {
                        tracker.spawn(connection::serve(
                            Arc::new(stream.into()),
                            peer,
                            shared.clone(),
                            listed,
                        ));
                    }
                    Some(tls) => {
                        tracker.spawn(tls::front(
                            stream,
                            peer,
                            listed,
                            tls.clone(),
                            entrance.clone(),
                        ));
                    }
                }
            }
            Err(Refused::TooManyFromIp) => {
                warn!(%peer, "too many connections from this address");
                reject(
                    &rejects,
                    &tracker,
                    tls.clone(),
                    stream,
                    too_many_connections(),
                );
            }
            Err(Refused::Full) => reject(&rejects, &tracker, tls.clone(), stream, server_full()),
        }
    }
    drop(listener);
    tracker.close();
    info!(connections = shared.connections.len(), "shutting down");
    shared.connections.shut_down();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("some connections did not close in time");
    }
    if let Some(cluster) = hub.cluster() {
        cluster.depart(&hub.local_names()).await;
    }
    tasks.stop(SHUTDOWN_GRACE).await;
    let closing = hub.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .context("flush the journal")?;
    info!("stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Joins the Redis cluster: loads the shared canvas, then keeps the replica
/// current from the stream and this server registered, until `shutdown`.
async fn start_cluster(
    cluster_config: cluster::ClusterConfig,
    hub_config: HubConfig,
    size: Option<(u16, u16)>,
    shutdown: &CancellationToken,
    tasks: &mut Supervisor,
) -> anyhow::Result<Arc<Hub>> {
    let archive = cluster_config.archive.clone();
    let cluster = cluster::Cluster::connect(cluster_config, size, hub_config.default_size).await?;
    let loaded = cluster.load(hub_config.history).await?;
    let position = loaded.position.clone();
    let archiver = match archive {
        Some(config) => {
            let canvas = &loaded.world.canvas;
            let (id, w, h) = (canvas.id(), canvas.width(), canvas.height());
            let archiver = tokio::task::spawn_blocking(move || {
                cluster::archiver::Archiver::open(config, id, (w, h))
            })
            .await
            .context("open the history archive")??;
            // What it missed while stopped, before the stream is applied.
            archiver.catch_up(&cluster, &position).await?;
            let archiver = Arc::new(archiver);
            tasks.spawn(
                Task::ClusterArchive,
                archiver.clone().keep(shutdown.clone()),
            );
            Some(archiver)
        }
        None => None,
    };
    let hub = Arc::new(Hub::open_clustered(
        &hub_config,
        cluster.clone(),
        loaded,
        archiver,
    ));
    let applier = hub.clone();
    let reconciler = hub.clone();
    let reconciling = cluster.clone();
    tasks.spawn(
        Task::ClusterTail,
        cluster.clone().tail(
            position,
            move |event| applier.apply_remote(event),
            async move |forced: bool, position: String| {
                reconciler.reconcile(&reconciling, forced, &position).await
            },
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        Task::ClusterSend,
        cluster.clone().send_changes(shutdown.clone()),
    );
    let retaker = hub.clone();
    let retaking = cluster.clone();
    tasks.spawn(
        Task::ClusterKeepAlive,
        cluster.keep_alive(
            async move || retaker.retake_names(&retaking).await,
            shutdown.clone(),
        ),
    );
    Ok(hub)
}

/// Sends the crowd's `PRESENCE` every `every`, until `shutdown`.
async fn publish_presence(hub: Arc<Hub>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => hub.publish_presence(),
            _ = shutdown.cancelled() => return,
        }
    }
}

fn server_full() -> WireError {
    WireError::new(
        ErrorCode::ServerFull,
        "the server is at its client limit; try again later",
    )
}

fn too_many_connections() -> WireError {
    WireError::new(
        ErrorCode::TooManyConnections,
        "too many connections from your address",
    )
}

/// Answers an over-limit connection in its own mode (inside TLS for a TLS
/// client on a TLS port), if a rejection slot is free, and closes it.
fn reject(
    rejects: &Arc<Semaphore>,
    tracker: &TaskTracker,
    tls: Option<Arc<tls::Tls>>,
    stream: TcpStream,
    err: WireError,
) {
    if let Ok(permit) = rejects.clone().try_acquire_owned() {
        tracker.spawn(async move {
            match tls {
                Some(tls)
                    if sock::first_byte(&stream, REJECT_SNIFF).await
                        == Some(tls::HANDSHAKE_RECORD) =>
                {
                    tls::refuse(&tls, stream, &err).await
                }
                _ => reject_with(stream, err).await,
            }
            drop(permit);
        });
    }
}

async fn reject_with(mut stream: TcpStream, err: WireError) {
    let mode = connection::sniff(&stream, REJECT_SNIFF)
        .await
        .unwrap_or(Mode::Text);
    let err = Reply::Error(err);
    let mut out = BytesMut::new();
    match mode {
        Mode::Text => text::encode_reply(&err, &mut out),
        Mode::Binary => binary::encode_reply(&err, &mut out),
    }
    let _ = tokio::time::timeout(REJECT_SNIFF, async {
        stream.write_all(&out).await?;
        stream.shutdown().await?;
        connection::drain(&mut stream).await;
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Runs the future `task` makes on a thread of its own, with a runtime of
/// its own, and resolves when it ends (panicking if it panicked, so the
/// supervisor sees it).
///
/// The fan-out pacers run this way: on the connections' worker threads a
/// pacer's sweep of a crowd's sockets made every command (a newcomer's
/// `JOIN`) wait for it, where on threads of their own the kernel's
/// scheduler lets the command's thread in at once.
async fn on_own_thread<F, Fut>(name: String, shutdown: CancellationToken, task: F)
where
    F: FnOnce(CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    // Dropping this future (the supervisor gone) stops the thread too.
    let stop = shutdown.child_token();
    let _stop_on_drop = stop.clone().drop_guard();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("build a pacer's runtime");
        runtime.block_on(task(stop));
        let _ = done_tx.send(());
    });
    if let Err(e) = spawned {
        panic!("start a thread: {e}");
    }
    if done_rx.await.is_err() {
        panic!("the thread's task panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_on_its_own_thread_that_panics_is_seen_as_a_panic() {
        let ended = tokio::spawn(on_own_thread(
            "test-panics".into(),
            CancellationToken::new(),
            |_| async { panic!("injected") },
        ))
        .await;
        assert!(ended.unwrap_err().is_panic());
    }

    #[tokio::test]
    async fn its_thread_stops_on_shutdown_and_when_its_owner_is_gone() {
        for abort in [false, true] {
            let shutdown = CancellationToken::new();
            let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
            let task = tokio::spawn(on_own_thread(
                "test-stops".into(),
                shutdown.clone(),
                move |stop| async move {
                    stop.cancelled().await;
                    let _ = stopped_tx.send(std::thread::current().name().map(String::from));
                },
            ));
            tokio::time::sleep(Duration::from_millis(20)).await;
            if abort {
                task.abort();
            } else {
                shutdown.cancel();
                task.await.unwrap();
            }
            let name = tokio::task::spawn_blocking(move || {
                stopped_rx.recv_timeout(Duration::from_secs(10))
            })
            .await
            .unwrap();
            assert_eq!(name, Ok(Some("test-stops".into())), "abort: {abort}");
        }
    }
}
