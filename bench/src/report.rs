//! What a run reports: the numbers ([`RunReport`], [`Summary`] over several
//! runs, [`CompareReport`]), serialized as one JSON object for scripts, and
//! rendered as short tables for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::Target;

/// One run of a workload against one target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunReport {
    /// `pixchat` or `redis`.
    pub target: Target,
    /// `fanout` or `idle`.
    pub workload: &'static str,
    /// Watcher connections.
    pub clients: usize,
    /// Writer connections.
    pub writers: usize,
    /// Offered placements per second, 0 for max rate.
    pub rate: f64,
    /// Window of unacknowledged placements per writer.
    pub window: usize,
    /// Seconds the writers placed pixels (the measurement window).
    pub duration_s: f64,
    /// Placements acknowledged within the window, per second.
    pub placements_per_s: f64,
    /// Placements offered per second (fixed rate only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_per_s: Option<f64>,
    /// Placements sent within the window, per second.
    pub sent_per_s: f64,
    /// Events received by all watchers within the window, per second.
    pub deliveries_per_s: f64,
    /// Placements acknowledged in all (the window and the drain).
    pub placements: u64,
    /// Placements the server refused (`ERROR` replies).
    pub rejected: u64,
    /// Fixed rate: placements that were due by the end but never sent
    /// because the window was full (the target could not keep up).
    pub behind: u64,
    /// Events received by all watchers in all.
    pub deliveries: u64,
    /// Latency percentiles, placement sent to event received, in µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p999_us: f64,
    /// Largest latency, µs.
    pub max_us: f64,
    /// Mean latency, µs.
    pub mean_us: f64,
    /// Events whose latency was recorded.
    pub latency_samples: u64,
    /// Events from our writers whose send time could not be found (should
    /// be 0; a watcher more than a canvas's worth of placements behind).
    pub unmatched: u64,
    /// Events watchers should have received and did not by the end of the
    /// drain, gaps included (must be 0).
    pub lost: u64,
    /// Events that arrived out of order or twice (must be 0).
    pub out_of_order: u64,
    /// Watchers that ended before receiving everything (closed, told
    /// `BYE`, or still behind at the drain deadline).
    pub watchers_incomplete: u64,
    /// Watchers told `BYE slow_consumer`.
    pub slow_consumers: u64,
    /// Server CPU seconds (user + system) within the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
    /// The same as cores busy on average.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_cores: Option<f64>,
    /// Server resident memory at the end of the window, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_kib: Option<u64>,
    /// Server peak resident memory so far, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_kib: Option<u64>,
    /// Servers loaded (pixchat servers sharing one canvas through Redis
    /// when more than one). With several, `server_cpu_s`,
    /// `server_cpu_cores`, `server_rss_kib` and `server_peak_rss_kib` are
    /// sums over all of them (the peak: the sum of each one's peak).
    pub servers: usize,
    /// Each server: address, clients, CPU and memory.
    pub per_server: Vec<ServerUse>,
    /// pid of the Redis the pixchat servers share, when the bench started
    /// it (cluster mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_pid: Option<u32>,
    /// CPU seconds of that Redis within the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cpu_s: Option<f64>,
    /// The same as cores busy on average.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cpu_cores: Option<f64>,
    /// That Redis's resident memory at the end of the window, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_rss_kib: Option<u64>,
    /// What the servers cost together, in cores: every pixchat server
    /// plus, in cluster mode, the Redis they share (when its pid is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_server_cpu_cores: Option<f64>,
    /// TCP segments sent per second on the whole machine within the window
    /// (server, bench and anything else on loopback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_segments_per_s: Option<f64>,
    /// Events delivered per TCP segment (higher = more batching; about 1 =
    /// one segment per event per watcher).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries_per_segment: Option<f64>,
    /// Bench CPU seconds within the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bench_cpu_s: Option<f64>,
    /// The same as cores busy on average.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bench_cpu_cores: Option<f64>,
    /// Server CPU per event delivered within the window, ns (all servers,
    /// plus the cluster's Redis when the bench started it): what the
    /// target spends on one delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_ns_per_delivery: Option<f64>,
    /// Bench CPU per event delivered within the window, ns: what receiving
    /// one delivery (and sending the placements) costs the load generator.
    /// It must stay well below the server's, or the bench measures itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bench_cpu_ns_per_delivery: Option<f64>,
    /// Cores busy on the whole machine within the window (every process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_cpu_cores: Option<f64>,
    /// Cores spent in softirq on the machine: mostly the loopback TCP
    /// receive path of the server and the bench. Unless the kernel has
    /// CONFIG_IRQ_TIME_ACCOUNTING, this time is also inside the server's and
    /// the bench's own CPU times (charged to whichever process it
    /// interrupted): a part of them, not an addition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub softirq_cpu_cores: Option<f64>,
    /// Cores used by everything else (machine minus the servers, the
    /// cluster's Redis when known, and the bench): a shared machine shows
    /// up here (and, on kernels that account IRQ time
    /// apart, softirq).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_cpu_cores: Option<f64>,
    /// Cores this machine has.
    pub machine_cores: usize,
    /// Seconds to connect and join everyone.
    pub setup_s: f64,
    /// Seconds from the end of the window until every watcher had everything
    /// (or the drain deadline).
    pub drain_s: f64,
    /// Idle workload: server RSS before the watchers joined, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_kib: Option<u64>,
    /// Idle workload: server RSS with every watcher joined and idle, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_joined_kib: Option<u64>,
    /// Idle workload: (joined - before) / watchers, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_connection_bytes: Option<f64>,
    /// With join probes: a newcomer's `JOIN` answered within (median, p99)
    /// ms, before the writers started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_idle_ms: Option<(f64, f64)>,
    /// The same while the writers ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_loaded_ms: Option<(f64, f64)>,
    /// Anything a reader should know about this run.
    pub notes: Vec<String>,
}

/// One server of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerUse {
    /// Where it listens.
    pub addr: String,
    /// Its pid, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Watchers connected to it.
    pub watchers: usize,
    /// Writers connected to it.
    pub writers: usize,
    /// CPU seconds within the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_s: Option<f64>,
    /// The same as cores busy on average.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    /// Resident memory at the end of the window, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_kib: Option<u64>,
    /// Peak resident memory so far, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
}

/// Median, smallest and largest of a metric over several runs.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// The metrics summarised over runs, in table order: JSON key, row label,
/// how to print a value, and how to read it off a run.
type Metric = (
    &'static str,
    &'static str,
    Unit,
    fn(&RunReport) -> Option<f64>,
);

/// How a metric prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Rate,
    Micros,
    Count,
    Cores,
    Kib,
    Ratio,
    Nanos,
}

const METRICS: &[Metric] = &[
    ("placements_per_s", "placements/s", Unit::Rate, |r| {
        Some(r.placements_per_s)
    }),
    ("deliveries_per_s", "deliveries/s", Unit::Rate, |r| {
        Some(r.deliveries_per_s)
    }),
    ("p50_us", "latency p50", Unit::Micros, |r| Some(r.p50_us)),
    ("p99_us", "latency p99", Unit::Micros, |r| Some(r.p99_us)),
    ("p999_us", "latency p99.9", Unit::Micros, |r| {
        Some(r.p999_us)
    }),
    ("max_us", "latency max", Unit::Micros, |r| Some(r.max_us)),
    ("lost", "lost events", Unit::Count, |r| Some(r.lost as f64)),
    ("out_of_order", "out of order", Unit::Count, |r| {
        Some(r.out_of_order as f64)
    }),
    ("server_cpu_cores", "server CPU (cores)", Unit::Cores, |r| {
        r.server_cpu_cores
    }),
    ("server_rss_kib", "server RSS", Unit::Kib, |r| {
        r.server_rss_kib.map(|k| k as f64)
    }),
    ("tcp_segments_per_s", "TCP segments/s", Unit::Rate, |r| {
        r.tcp_segments_per_s
    }),
    (
        "deliveries_per_segment",
        "deliveries/segment",
        Unit::Ratio,
        |r| r.deliveries_per_segment,
    ),
    ("bench_cpu_cores", "bench CPU (cores)", Unit::Cores, |r| {
        r.bench_cpu_cores
    }),
    (
        "server_cpu_ns_per_delivery",
        "server CPU/delivery",
        Unit::Nanos,
        |r| r.server_cpu_ns_per_delivery,
    ),
    (
        "bench_cpu_ns_per_delivery",
        "bench CPU/delivery",
        Unit::Nanos,
        |r| r.bench_cpu_ns_per_delivery,
    ),
    ("softirq_cpu_cores", "softirq (cores)", Unit::Cores, |r| {
        r.softirq_cpu_cores
    }),
    ("other_cpu_cores", "other CPU (cores)", Unit::Cores, |r| {
        r.other_cpu_cores
    }),
];

/// Several runs of one target, summarised.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Number of runs.
    pub runs: usize,
    /// Median deliveries per second.
    pub deliveries_per_s: f64,
    /// Median placements accepted per second.
    pub placements_per_s: f64,
    /// Median of the runs' p50 latency, µs.
    pub p50_us: f64,
    /// Median of the runs' p99 latency, µs.
    pub p99_us: f64,
    /// Median of the runs' p99.9 latency, µs.
    pub p999_us: f64,
    /// Largest latency of any run, µs.
    pub max_us: f64,
    /// Lost events over all runs.
    pub lost: u64,
    /// Out-of-order events over all runs.
    pub out_of_order: u64,
    /// Slow-consumer disconnections over all runs.
    pub slow_consumers: u64,
    /// Median server CPU, cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_cores: Option<f64>,
    /// Median server RSS, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_kib: Option<f64>,
    /// Median bench CPU, cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bench_cpu_cores: Option<f64>,
    /// Median server CPU per delivery, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_ns_per_delivery: Option<f64>,
    /// Median bench CPU per delivery, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bench_cpu_ns_per_delivery: Option<f64>,
    /// Median, min and max of every metric.
    pub spread: BTreeMap<&'static str, Spread>,
    /// Every run.
    pub each: Vec<RunReport>,
}

impl Summary {
    /// Summarises `runs` (at least one).
    pub fn of(runs: Vec<RunReport>) -> Self {
        let mut spread = BTreeMap::new();
        for (key, _, _, get) in METRICS {
            let values: Vec<f64> = runs.iter().filter_map(get).collect();
            if let Some(s) = Spread::of(&values) {
                spread.insert(*key, s);
            }
        }
        let med = |k: &str| spread.get(k).map(|s: &Spread| s.median);
        Self {
            runs: runs.len(),
            deliveries_per_s: med("deliveries_per_s").unwrap_or(0.0),
            placements_per_s: med("placements_per_s").unwrap_or(0.0),
            p50_us: med("p50_us").unwrap_or(0.0),
            p99_us: med("p99_us").unwrap_or(0.0),
            p999_us: med("p999_us").unwrap_or(0.0),
            max_us: spread.get("max_us").map_or(0.0, |s| s.max),
            lost: runs.iter().map(|r| r.lost).sum(),
            out_of_order: runs.iter().map(|r| r.out_of_order).sum(),
            slow_consumers: runs.iter().map(|r| r.slow_consumers).sum(),
            server_cpu_cores: med("server_cpu_cores"),
            server_rss_kib: med("server_rss_kib"),
            bench_cpu_cores: med("bench_cpu_cores"),
            server_cpu_ns_per_delivery: med("server_cpu_ns_per_delivery"),
            bench_cpu_ns_per_delivery: med("bench_cpu_ns_per_delivery"),
            spread,
            each: runs,
        }
    }
}

/// `compare`: the same workload against pixchat and Redis.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompareReport {
    /// Watcher connections.
    pub clients: usize,
    /// Writer connections.
    pub writers: usize,
    /// Offered placements per second, 0 for max rate.
    pub rate: f64,
    /// Seconds per run.
    pub duration_s: f64,
    /// Window per writer.
    pub window: usize,
    /// Cores this machine has.
    pub machine_cores: usize,
    /// pixchat's runs.
    pub pixchat: Summary,
    /// Redis's runs.
    pub redis: Summary,
    /// pixchat / Redis median deliveries per second.
    pub ratio_deliveries: f64,
    /// pixchat / Redis median placements per second.
    pub ratio_placements: f64,
    /// pixchat / Redis median p50 latency (below 1 is better for pixchat).
    pub ratio_p50: f64,
    /// pixchat / Redis median p99 latency (below 1 is better for pixchat).
    pub ratio_p99: f64,
}

impl CompareReport {
    /// Puts the two summaries side by side.
    pub fn new(w: &super::Workload, pixchat: Summary, redis: Summary) -> Self {
        Self {
            clients: w.clients,
            writers: w.writers,
            rate: w.rate,
            duration_s: w.duration.as_secs_f64(),
            window: w.window,
            machine_cores: super::procstat::online_cores(),
            ratio_deliveries: ratio(pixchat.deliveries_per_s, redis.deliveries_per_s),
            ratio_placements: ratio(pixchat.placements_per_s, redis.placements_per_s),
            ratio_p50: ratio(pixchat.p50_us, redis.p50_us),
            ratio_p99: ratio(pixchat.p99_us, redis.p99_us),
            pixchat,
            redis,
        }
    }
}

/// a / b, 0 when b is 0 (JSON has no infinity).
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// A number with a k/M/G suffix and three significant digits: 6.3 M.
pub fn si(x: f64) -> String {
    let (v, suffix) = match x.abs() {
        a if a >= 1e9 => (x / 1e9, " G"),
        a if a >= 1e6 => (x / 1e6, " M"),
        a if a >= 1e4 => (x / 1e3, " k"),
        _ => (x, ""),
    };
    format!("{}{suffix}", sig3(v))
}

/// Three significant digits (whole numbers from 100 up).
fn sig3(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A latency given in µs: 850 µs, 1.31 ms, 1.2 s.
pub fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", sig3(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", sig3(us / 1e3))
    } else {
        format!("{} µs", sig3(us))
    }
}

/// A size given in KiB: 812 KiB, 45.3 MiB, 1.2 GiB.
pub fn kib(k: f64) -> String {
    if k >= 1024.0 * 1024.0 {
        format!("{} GiB", sig3(k / 1024.0 / 1024.0))
    } else if k >= 1024.0 {
        format!("{} MiB", sig3(k / 1024.0))
    } else {
        format!("{} KiB", sig3(k))
    }
}

fn fmt_unit(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Rate => si(v),
        Unit::Micros => micros(v),
        Unit::Count => format!("{v:.0}"),
        Unit::Cores => format!("{v:.2}"),
        Unit::Kib => kib(v),
        Unit::Ratio => format!("{v:.1}"),
        Unit::Nanos => format!("{} ns", sig3(v)),
    }
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "n/a".into(), f)
}

/// One run as a few lines of text.
pub fn render_run(r: &RunReport) -> String {
    let mut s = String::new();
    let rate = if r.rate > 0.0 {
        format!("{} placements/s offered", si(r.rate))
    } else {
        format!("max rate (window {})", r.window)
    };
    let servers = if r.servers > 1 {
        format!(" on {} servers", r.servers)
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "{} {}{servers}: {} watchers, {} writers, {rate}, {} s",
        r.target, r.workload, r.clients, r.writers, r.duration_s
    );
    let _ = writeln!(
        s,
        "  placements/s   {} accepted, {} sent{}",
        si(r.placements_per_s),
        si(r.sent_per_s),
        if r.behind > 0 {
            format!(", {} due but never sent (could not keep up)", r.behind)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "  deliveries/s   {} ({} events in all)",
        si(r.deliveries_per_s),
        r.deliveries
    );
    let _ = writeln!(
        s,
        "  latency        p50 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
        micros(r.p50_us),
        micros(r.p99_us),
        micros(r.p999_us),
        micros(r.max_us),
        r.latency_samples
    );
    let _ = writeln!(
        s,
        "  lost           {}  out of order {}  incomplete watchers {}  slow consumers {}",
        r.lost, r.out_of_order, r.watchers_incomplete, r.slow_consumers
    );
    let _ = writeln!(
        s,
        "  server         CPU {} s ({} cores)  RSS {} (peak {})",
        opt(r.server_cpu_s, |v| format!("{v:.2}")),
        opt(r.server_cpu_cores, |v| format!("{v:.2}")),
        opt(r.server_rss_kib, |v| kib(v as f64)),
        opt(r.server_peak_rss_kib, |v| kib(v as f64)),
    );
    if r.per_server.len() > 1 {
        for (i, e) in r.per_server.iter().enumerate() {
            let _ = writeln!(
                s,
                "    server {i}     {} ({} watchers, {} writers): CPU {} cores  RSS {}",
                e.addr,
                e.watchers,
                e.writers,
                opt(e.cpu_cores, |v| format!("{v:.2}")),
                opt(e.rss_kib, |v| kib(v as f64)),
            );
        }
    }
    if r.redis_cpu_s.is_some() {
        let _ = writeln!(
            s,
            "  cluster Redis  CPU {} s ({} cores)  RSS {}; servers and Redis together {} cores",
            opt(r.redis_cpu_s, |v| format!("{v:.2}")),
            opt(r.redis_cpu_cores, |v| format!("{v:.2}")),
            opt(r.redis_rss_kib, |v| kib(v as f64)),
            opt(r.total_server_cpu_cores, |v| format!("{v:.2}")),
        );
    }
    if let (Some(w), Some(d)) = (r.tcp_segments_per_s, r.deliveries_per_segment) {
        let _ = writeln!(
            s,
            "  TCP segments   {}/s on the machine, {d:.1} events delivered per segment",
            si(w)
        );
    }
    let _ = writeln!(
        s,
        "  CPU            bench {} cores, machine {} of {} cores busy, others {}; softirq {} (networking, mostly inside the server's and bench's times)",
        opt(r.bench_cpu_cores, |v| format!("{v:.2}")),
        opt(r.machine_cpu_cores, |v| format!("{v:.2}")),
        r.machine_cores,
        opt(r.other_cpu_cores, |v| format!("{v:.2}")),
        opt(r.softirq_cpu_cores, |v| format!("{v:.2}")),
    );
    if let (Some(server), Some(bench)) = (r.server_cpu_ns_per_delivery, r.bench_cpu_ns_per_delivery)
    {
        let _ = writeln!(
            s,
            "  CPU/delivery   server {} ns, bench {} ns",
            sig3(server),
            sig3(bench)
        );
    }
    if let (Some(before), Some(joined), Some(per)) = (
        r.rss_before_kib,
        r.rss_joined_kib,
        r.rss_per_connection_bytes,
    ) {
        let _ = writeln!(
            s,
            "  idle memory    {} before, {} with {} joined: {} per connection",
            kib(before as f64),
            kib(joined as f64),
            r.clients,
            kib(per / 1024.0)
        );
    }
    if let (Some((ip50, ip99)), Some((lp50, lp99))) = (r.join_idle_ms, r.join_loaded_ms) {
        let _ = writeln!(
            s,
            "  JOIN answered  idle p50 {ip50:.2} ms p99 {ip99:.2} ms; under load p50 {lp50:.2} ms p99 {lp99:.2} ms"
        );
    }
    let _ = writeln!(s, "  setup {:.1} s, drain {:.2} s", r.setup_s, r.drain_s);
    for n in &r.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    s
}

/// The compare table: medians (min-max) and the pixchat/Redis ratio.
pub fn render_compare(c: &CompareReport) -> String {
    render_pair(
        "compare",
        &c.describe(),
        [("pixchat", &c.pixchat), ("redis", &c.redis)],
    )
}

/// Two summaries side by side, medians (min-max), and the first / second
/// ratio of each metric that compares the targets.
pub fn render_pair(
    title: &str,
    load: &str,
    [(a_name, a), (b_name, b)]: [(&str, &Summary); 2],
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{title}: {load} x {} runs each; median (min-max)",
        a.runs
    );
    let cell = |sum: &Summary, key: &str, unit: Unit| match sum.spread.get(key) {
        Some(sp) if sp.min == sp.max => fmt_unit(unit, sp.median),
        Some(sp) => format!(
            "{} ({}-{})",
            fmt_unit(unit, sp.median),
            fmt_unit(unit, sp.min),
            fmt_unit(unit, sp.max)
        ),
        None => "n/a".into(),
    };
    let _ = writeln!(
        s,
        "{:<20} {:<30} {:<30} {a_name}/{b_name}",
        "", a_name, b_name
    );
    for (key, label, unit, _) in METRICS {
        let p = a.spread.get(key).map(|x| x.median);
        let r = b.spread.get(key).map(|x| x.median);
        // Ratios of the load generator's or other processes' CPU say
        // nothing about the targets.
        let compared = !matches!(
            *key,
            "bench_cpu_cores"
                | "softirq_cpu_cores"
                | "other_cpu_cores"
                | "bench_cpu_ns_per_delivery"
        );
        let ratio = match (p, r) {
            (Some(p), Some(r)) if r > 0.0 && compared && *unit != Unit::Count => {
                format!("{:.2}", p / r)
            }
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "{:<20} {:<30} {:<30} {}",
            label,
            cell(a, key, *unit),
            cell(b, key, *unit),
            ratio
        );
    }
    for (name, sum) in [(a_name, a), (b_name, b)] {
        for r in &sum.each {
            for n in &r.notes {
                let _ = writeln!(s, "note ({name}): {n}");
            }
        }
    }
    s
}

/// `durability`: the same pixchat workload on the default durable storage
/// and with `--memory`, alternating.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DurabilityReport {
    /// Watcher connections.
    pub clients: usize,
    /// Writer connections.
    pub writers: usize,
    /// Offered placements per second, 0 for max rate.
    pub rate: f64,
    /// Seconds per run.
    pub duration_s: f64,
    /// Window per writer.
    pub window: usize,
    /// Cores this machine has.
    pub machine_cores: usize,
    /// The server with its default durable storage (a data directory,
    /// `--fsync batch` unless a `--server-arg` says otherwise).
    pub durable: Summary,
    /// The same server with `--memory`.
    pub memory: Summary,
    /// durable / memory median deliveries per second.
    pub ratio_deliveries: f64,
    /// durable / memory median placements per second.
    pub ratio_placements: f64,
    /// durable / memory median p50 latency.
    pub ratio_p50: f64,
    /// durable / memory median p99 latency.
    pub ratio_p99: f64,
}

impl DurabilityReport {
    /// Puts the two summaries side by side.
    pub fn new(w: &super::Workload, durable: Summary, memory: Summary) -> Self {
        Self {
            clients: w.clients,
            writers: w.writers,
            rate: w.rate,
            duration_s: w.duration.as_secs_f64(),
            window: w.window,
            machine_cores: super::procstat::online_cores(),
            ratio_deliveries: ratio(durable.deliveries_per_s, memory.deliveries_per_s),
            ratio_placements: ratio(durable.placements_per_s, memory.placements_per_s),
            ratio_p50: ratio(durable.p50_us, memory.p50_us),
            ratio_p99: ratio(durable.p99_us, memory.p99_us),
            durable,
            memory,
        }
    }
}

/// The durability table.
pub fn render_durability(d: &DurabilityReport) -> String {
    render_pair(
        "durability",
        &describe_load(d.clients, d.writers, d.rate, d.window, d.duration_s),
        [("durable", &d.durable), ("memory", &d.memory)],
    )
}

/// "1000 watchers, 4 writers, 2 k placements/s offered, 5 s".
fn describe_load(clients: usize, writers: usize, rate: f64, window: usize, secs: f64) -> String {
    let rate = if rate > 0.0 {
        format!("{} placements/s offered", si(rate))
    } else {
        format!("max rate (window {window})")
    };
    format!("{clients} watchers, {writers} writers, {rate}, {secs} s")
}

impl CompareReport {
    fn describe(&self) -> String {
        describe_load(
            self.clients,
            self.writers,
            self.rate,
            self.window,
            self.duration_s,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_run(target: Target, deliveries: f64, p50: f64) -> RunReport {
        RunReport {
            target,
            workload: "fanout",
            clients: 100,
            writers: 1,
            rate: 0.0,
            window: 64,
            duration_s: 5.0,
            placements_per_s: deliveries / 100.0,
            offered_per_s: None,
            sent_per_s: deliveries / 100.0,
            deliveries_per_s: deliveries,
            placements: 10,
            rejected: 0,
            behind: 0,
            deliveries: 1000,
            p50_us: p50,
            p99_us: p50 * 2.0,
            p999_us: p50 * 3.0,
            max_us: p50 * 4.0,
            mean_us: p50,
            latency_samples: 1000,
            unmatched: 0,
            lost: 0,
            out_of_order: 0,
            watchers_incomplete: 0,
            slow_consumers: 0,
            server_cpu_s: Some(5.0),
            server_cpu_cores: Some(1.0),
            server_rss_kib: Some(2048),
            server_peak_rss_kib: Some(4096),
            servers: 1,
            per_server: vec![ServerUse {
                addr: "127.0.0.1:7878".into(),
                pid: Some(42),
                watchers: 100,
                writers: 1,
                cpu_s: Some(5.0),
                cpu_cores: Some(1.0),
                rss_kib: Some(2048),
                peak_rss_kib: Some(4096),
            }],
            redis_pid: None,
            redis_cpu_s: None,
            redis_cpu_cores: None,
            redis_rss_kib: None,
            total_server_cpu_cores: Some(1.0),
            tcp_segments_per_s: Some(1000.0),
            deliveries_per_segment: Some(10.0),
            bench_cpu_s: Some(4.0),
            bench_cpu_cores: Some(0.8),
            server_cpu_ns_per_delivery: Some(90.0),
            bench_cpu_ns_per_delivery: Some(80.0),
            machine_cpu_cores: Some(1.9),
            softirq_cpu_cores: Some(0.1),
            other_cpu_cores: Some(0.1),
            machine_cores: 2,
            setup_s: 0.5,
            drain_s: 0.01,
            rss_before_kib: None,
            rss_joined_kib: None,
            rss_per_connection_bytes: None,
            join_idle_ms: None,
            join_loaded_ms: None,
            notes: vec![],
        }
    }

    #[test]
    fn numbers_print_with_three_significant_digits() {
        assert_eq!(si(6_300_000.0), "6.30 M");
        assert_eq!(si(62_800.0), "62.8 k");
        assert_eq!(si(5_100.0), "5100");
        assert_eq!(si(950.7), "951");
        assert_eq!(si(0.0), "0");
        assert_eq!(micros(1_300.0), "1.30 ms");
        assert_eq!(micros(850.0), "850 µs");
        assert_eq!(micros(1_250_000.0), "1.25 s");
        assert_eq!(kib(2048.0), "2.00 MiB");
        assert_eq!(kib(12.5), "12.5 KiB");
    }

    #[test]
    fn spreads_are_medians_with_min_and_max() {
        assert_eq!(
            Spread::of(&[3.0, 1.0, 2.0]),
            Some(Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
        assert_eq!(Spread::of(&[4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN]), None);
    }

    #[test]
    fn compare_json_has_the_keys_scripts_check() {
        let p = Summary::of(vec![
            sample_run(Target::Pixchat, 9e6, 500.0),
            sample_run(Target::Pixchat, 10e6, 400.0),
            sample_run(Target::Pixchat, 11e6, 600.0),
        ]);
        let r = Summary::of(vec![sample_run(Target::Redis, 5e6, 1000.0)]);
        let c = CompareReport::new(&super::super::Workload::default(), p, r);
        assert_eq!(c.ratio_deliveries, 2.0);
        assert_eq!(c.ratio_p50, 0.5);
        let json: serde_json::Value = serde_json::to_value(&c).unwrap();
        for side in ["pixchat", "redis"] {
            for key in [
                "deliveries_per_s",
                "placements_per_s",
                "p50_us",
                "p99_us",
                "lost",
            ] {
                assert!(json[side][key].is_number(), "{side}.{key}");
            }
        }
        assert!(json["ratio_deliveries"].is_number());
        assert_eq!(json["pixchat"]["spread"]["deliveries_per_s"]["min"], 9e6);
        let table = render_compare(&c);
        assert!(table.contains("deliveries/s"), "{table}");
        assert!(table.contains("10.0 M (9.00 M-11.0 M)"), "{table}");
        assert!(table.contains("2.00"), "{table}");
    }

    #[test]
    fn a_run_renders_its_key_numbers() {
        let text = render_run(&sample_run(Target::Redis, 5e6, 1300.0));
        assert!(text.starts_with("redis fanout: 100 watchers"), "{text}");
        assert!(text.contains("p50 1.30 ms"), "{text}");
        assert!(text.contains("lost           0"), "{text}");
    }
}
