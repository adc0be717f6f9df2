//! What `/metrics` reports, in the Prometheus text format
//! (`prometheus-client`).
//!
//! Counting must not slow the hot path, so nothing here is looked up or
//! locked per event: the connection task adds to a plain atomic per
//! command (indexed by kind, no label lookup), the fan-out adds once per
//! flush (a batch of events to one watcher), and most of what is reported
//! is read at scrape time from what the server keeps anyway (the broadcast
//! ring's indexes, the flush interval, the roster, the journal's state,
//! Redis's). Only the journal's fsync latency is a histogram, observed on
//! the journal thread once per fsync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::hub::Hub;
use crate::protocol::{Command, Mode};

/// Command kinds, in the order of [`kind_of`]'s indexes.
const KINDS: [&str; 20] = [
    "hello", "join", "say", "tell", "set", "canvas", "sync", "who", "ping", "help", "quit", "auth",
    "whose", "kick", "ban", "unban", "bans", "rollback", "fill", "other",
];

/// The index of `cmd`'s kind in [`KINDS`].
pub(crate) fn kind_of(cmd: &Command) -> usize {
    match cmd {
        Command::Hello { .. } => 0,
        Command::Join { .. } => 1,
        Command::Say { .. } => 2,
        Command::Tell { .. } => 3,
        Command::Set { .. } => 4,
        Command::Canvas => 5,
        Command::Sync { .. } => 6,
        Command::Who | Command::WhoAfter { .. } => 7,
        Command::Ping { .. } => 8,
        Command::Help => 9,
        Command::Quit => 10,
        Command::Auth { .. } => 11,
        Command::Whose { .. } | Command::WhoseLast { .. } => 12,
        Command::Kick { .. } => 13,
        Command::Ban { .. } | Command::BanAddress { .. } => 14,
        Command::Unban { .. } => 15,
        Command::Bans { .. } => 16,
        Command::Rollback { .. } => 17,
        Command::Fill { .. } => 18,
    }
}

/// Counters the connections add to; the hub owns them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Commands handled, by kind and result (`[ok, error]`).
    commands: [[AtomicU64; 2]; KINDS.len()],
    /// Connections whose mode was chosen, and those that ended, by mode
    /// (`[text, binary]`).
    opened: [AtomicU64; 2],
    closed: [AtomicU64; 2],
    /// Connections dropped as slow consumers.
    slow_consumers: AtomicU64,
}

fn mode_index(mode: Mode) -> usize {
    match mode {
        Mode::Text => 0,
        Mode::Binary => 1,
    }
}

impl Counters {
    /// A command of kind `kind` ([`kind_of`]) was answered.
    pub fn command(&self, kind: usize, ok: bool) {
        self.commands[kind][usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection chose `mode`.
    pub fn opened(&self, mode: Mode) {
        self.opened[mode_index(mode)].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection in `mode` ended.
    pub fn closed(&self, mode: Mode) {
        self.closed[mode_index(mode)].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was dropped as a slow consumer.
    pub fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the fan-out sent, added once per flush (see the module docs); the
/// broadcast ring carries it, since every flush has the ring at hand.
#[derive(Debug, Default)]
pub struct SendCounters {
    /// Events gathered for watchers (one per event per watcher).
    pub events: AtomicU64,
    /// Bytes written to clients' sockets by flushes.
    pub bytes: AtomicU64,
    /// Socket writes.
    pub writes: AtomicU64,
}

impl SendCounters {
    /// A flush wrote `bytes` in `writes` writes, carrying `events` events.
    pub fn add(&self, events: u64, bytes: u64, writes: u64) {
        if events > 0 {
            self.events.fetch_add(events, Ordering::Relaxed);
        }
        if bytes > 0 {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
            self.writes.fetch_add(writes, Ordering::Relaxed);
        }
    }
}

/// Histogram buckets of the journal's fsync time, in seconds: from a
/// fast SSD's 50 µs to a stuck disk's seconds.
fn fsync_buckets() -> impl Iterator<Item = f64> {
    [
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5,
    ]
    .into_iter()
}

/// A new histogram for the journal's fsync latency.
pub fn fsync_histogram() -> Histogram {
    Histogram::new(fsync_buckets())
}

/// The Redis stream lag, in seconds, set by the `/metrics` handler.
pub(crate) type LagGauge = prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>;

/// The registry behind `/metrics`: the hub's numbers, read at scrape time;
/// and in a cluster the gauge of the stream lag, which the handler sets
/// (asking Redis takes a round trip, so it is not done while encoding).
pub(crate) fn registry(hub: Arc<Hub>) -> (Registry, Option<LagGauge>) {
    let mut registry = Registry::default();
    let lag = hub.cluster().map(|_| {
        let lag = LagGauge::default();
        registry.register(
            "pixchat_redis_stream_lag_seconds",
            "How far this server's read of the Redis stream is behind its newest entry (by entry time; -1 while Redis does not answer)",
            lag.clone(),
        );
        lag
    });
    if let Some(fsync) = hub.fsync_histogram() {
        registry.register(
            "pixchat_journal_fsync_seconds",
            "Time the journal's fsyncs took",
            fsync,
        );
    }
    registry.register_collector(Box::new(HubCollector(hub)));
    (registry, lag)
}

/// Reads the hub at scrape time.
#[derive(Debug)]
struct HubCollector(Arc<Hub>);

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge<V>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<V>: EncodeMetric,
{
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl prometheus_client::collector::Collector for HubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let hub = &self.0;
        let c = hub.counters();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let modes = ["text", "binary"];

        let open = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "pixchat_connections",
            "Connections open, by wire mode (before a client's first byte it has no mode and is not counted)",
            None,
            open.metric_type(),
        )?;
        for (i, mode) in modes.iter().enumerate() {
            let n = load(&c.opened[i]).saturating_sub(load(&c.closed[i]));
            ConstGauge::new(n as i64).encode(family.encode_family(&[("mode", *mode)])?)?;
        }
        let opened = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "pixchat_connections_opened",
            "Connections that chose a wire mode, by mode",
            None,
            opened.metric_type(),
        )?;
        for (i, mode) in modes.iter().enumerate() {
            ConstCounter::new(load(&c.opened[i]))
                .encode(family.encode_family(&[("mode", *mode)])?)?;
        }

        let (users, seq) = hub.census();
        gauge(
            &mut encoder,
            "pixchat_users",
            "Users joined (on every server of a cluster)",
            users as i64,
        )?;
        gauge(
            &mut encoder,
            "pixchat_canvas_seq",
            "Seq of the canvas's last placement",
            seq as i64,
        )?;

        let mut family = encoder.encode_descriptor(
            "pixchat_commands",
            "Commands answered, by kind and result",
            None,
            opened.metric_type(),
        )?;
        for (kind, name) in KINDS.iter().enumerate() {
            for (r, result) in ["ok", "error"].iter().enumerate() {
                let n = load(&c.commands[kind][r]);
                if n > 0 {
                    ConstCounter::new(n)
                        .encode(family.encode_family(&[("kind", *name), ("result", *result)])?)?;
                }
            }
        }
        counter(
            &mut encoder,
            "pixchat_placements",
            "Pixels placed by this server's clients (SET answered OK)",
            load(&c.commands[4][0]),
        )?;

        let ring = hub.ring();
        let sent = ring.sent();
        counter(
            &mut encoder,
            "pixchat_deliveries",
            "Broadcast events sent to watchers (one per event per watcher)",
            load(&sent.events),
        )?;
        counter(
            &mut encoder,
            "pixchat_sent_bytes",
            "Bytes the fan-out wrote to clients",
            load(&sent.bytes),
        )?;
        counter(
            &mut encoder,
            "pixchat_socket_writes",
            "Socket writes of the fan-out",
            load(&sent.writes),
        )?;
        counter(
            &mut encoder,
            "pixchat_slow_consumer_disconnects",
            "Clients dropped for falling out of the broadcast window",
            load(&c.slow_consumers),
        )?;
        gauge(
            &mut encoder,
            "pixchat_fanout_flush_interval_seconds",
            "The fan-out's current flush interval",
            hub.fanout().interval().as_secs_f64(),
        )?;
        let (held, max) = ring.window();
        gauge(
            &mut encoder,
            "pixchat_broadcast_window_events",
            "Events held in the broadcast window",
            held as i64,
        )?;
        gauge(
            &mut encoder,
            "pixchat_broadcast_window_capacity_events",
            "Most events the broadcast window holds",
            max as i64,
        )?;
        gauge(
            &mut encoder,
            "pixchat_watchers",
            "Joined clients the fan-out writes to",
            ring.watchers() as i64,
        )?;
        gauge(
            &mut encoder,
            "pixchat_journal_lag_events",
            "Events accepted but not yet durable (so not yet sent)",
            ring.end().saturating_sub(ring.visible()) as i64,
        )?;
        if let Some(up) = hub.journal_up() {
            gauge(
                &mut encoder,
                "pixchat_journal_up",
                "1 while the journal can make changes durable, 0 while it is down (full or failing disk)",
                i64::from(up),
            )?;
        }
        if let Some(cluster) = hub.cluster() {
            gauge(
                &mut encoder,
                "pixchat_redis_up",
                "1 while Redis answers, 0 while this server reconnects",
                i64::from(cluster.is_up()),
            )?;
        }
        Ok(())
    }
}
