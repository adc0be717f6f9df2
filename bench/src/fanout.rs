//! The fan-out workload: C watchers join and receive everything, W writers
//! place pixels at a fixed total rate or as fast as a bounded window of
//! unacknowledged placements allows, for D seconds; then the bench waits for
//! the events still under way and counts what each watcher got.
//!
//! This file holds the run itself (setup, start, window, drain, report);
//! [`super::shared`] has what both targets share, [`super::pixchat`] and
//! [`super::redis`] each target's watchers and writers, and
//! [`super::watchers`] the threads that read every watcher's socket.
//!
//! Several servers: watchers and writers are dealt round-robin over pixchat
//! servers that share one canvas through Redis (cluster mode). Seqs are
//! global there, and every server delivers every event in seq order, so the
//! same counts hold: a watcher on any server must see every writer's
//! placements without a gap, up to the highest seq acknowledged to any
//! writer on any server.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::latency::{Epoch, Percentiles, Recorder, SHARDS, SendTable};
use super::pixchat::{self, probe_shared_canvas};
use super::probe;
use super::procstat::{self, CpuUse};
use super::progress::{Counters, Progress};
use super::redis;
use super::report::{RunReport, ServerUse};
use super::shared::{End, Final, Shared, WatcherOutcome, WriterRun, WriterState, tail_losses};
use super::watchers::Pool;
use super::{SETUP_CONCURRENCY, Servers, Target, Workload, check_fd_budget, run_tag, share};

/// Most send-time slots per writer (32 MiB of table each).
pub const MAX_SLOTS: u64 = 1 << 22;

/// How a run is shown and what extra it measures.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Prefix of the progress line.
    pub label: String,
    /// Print the progress line on stderr.
    pub progress: bool,
    /// Idle workload: wait this long after the watchers joined, then read
    /// the server's memory before the writers join.
    pub idle_settle: Option<Duration>,
    /// How long connecting and joining everyone may take in all.
    pub setup_timeout: Option<Duration>,
    /// Threads that read the watchers' sockets (default: half the cores,
    /// at least one).
    pub watcher_threads: Option<usize>,
    /// Time newcomers' `JOIN`s before the writers start and while they run
    /// (pixchat only; see [`super::probe`]).
    pub probe_joins: bool,
}

/// Runs the fan-out workload once against `servers` and reports what it
/// saw.
pub async fn run(
    target: Target,
    servers: &Servers,
    w: &Workload,
    opts: &RunOptions,
) -> anyhow::Result<RunReport> {
    w.check()?;
    check_fd_budget(w.clients + w.writers)?;
    if servers.endpoints.is_empty() {
        bail!("no server to load");
    }
    // Half the cores by default: the bench must leave the server it
    // measures at least as much as it takes.
    let threads = opts
        .watcher_threads
        .unwrap_or_else(|| procstat::online_cores() / 2)
        .clamp(1, w.clients);
    let (width, slots) = match target {
        Target::Pixchat => {
            let canvas = probe_shared_canvas(servers).await?;
            let pixels = u64::from(canvas.width) * u64::from(canvas.height);
            (u64::from(canvas.width), pixels.min(MAX_SLOTS))
        }
        // Separate Redis servers share nothing: a message published on one
        // never reaches the subscribers of another.
        Target::Redis if servers.endpoints.len() > 1 => {
            bail!("Redis pub/sub is loaded on one server only")
        }
        Target::Redis => (0, 1 << 20),
    };
    let mut notes = Vec::new();
    if slots < 4 * w.window as u64 || slots < 4096 {
        notes.push(format!(
            "the canvas has only {slots} pixels: latency slots are reused quickly; use a canvas of at least 1024x1024"
        ));
    }
    let counters = Arc::new(Counters::default());
    let sh = Arc::new(Shared {
        epoch: Epoch::now(),
        workload: w.clone(),
        addrs: servers.endpoints.iter().map(|e| e.addr).collect(),
        tables: (0..w.writers)
            .map(|_| SendTable::new(slots as usize))
            .collect(),
        width,
        slots,
        hist: Recorder::new(SHARDS.min(threads)),
        counters: counters.clone(),
        window_end_ns: AtomicU64::new(u64::MAX),
        tag: run_tag(),
        stop: CancellationToken::new(),
        finished: AtomicU64::new(0),
        fin: OnceLock::new(),
    });
    // Whatever happens (an error, Ctrl-C dropping this future), every task
    // of the run stops with it.
    let _stop_all = sh.stop.clone().drop_guard();
    let progress = Progress::start(
        opts.label.clone(),
        counters.clone(),
        w.clients,
        w.writers,
        w.duration,
        opts.progress,
    );
    let pids = servers.pids();
    let rss_before = procstat::sum(&procstat::sample_all(&pids));

    // Watchers join, a bounded number at a time.
    let setup_start = Instant::now();
    let setup_deadline = setup_start
        + opts
            .setup_timeout
            .unwrap_or(Duration::from_secs(60 + w.clients as u64 / 100));
    let (ready_tx, mut ready_rx) = mpsc::channel(1024);
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let (pool, watchers) = match target {
        Target::Pixchat => {
            let (pool, handle) = Pool::start(&sh, threads)?;
            let tasks = spawn_setups(&sh, |id, sh| {
                pixchat::watcher(id, sh, gate.clone(), ready_tx.clone(), handle.clone())
            });
            (pool, tasks)
        }
        Target::Redis => {
            let (pool, handle) = Pool::start(&sh, threads)?;
            let tasks = spawn_setups(&sh, |id, sh| {
                redis::watcher(id, sh, gate.clone(), ready_tx.clone(), handle.clone())
            });
            (pool, tasks)
        }
    };
    wait_ready(&mut ready_rx, w.clients, setup_deadline, "watchers").await?;

    let mut rss_joined = None;
    if let Some(settle) = opts.idle_settle {
        tokio::time::sleep(settle).await;
        rss_joined = procstat::sum(&procstat::sample_all(&pids));
    }
    let probing = opts.probe_joins && target == Target::Pixchat;
    let probe_id = |k: usize| w.clients + w.writers + k;
    let mut idle_joins = Vec::new();
    if probing {
        // Spaced as under load: joins back to back would keep a worker
        // awake and its caches warm, which no lone newcomer finds.
        let mut tick = tokio::time::interval(probe::LOADED_EVERY);
        for k in 0..probe::IDLE_PROBES {
            tick.tick().await;
            let name = format!("p{}-{k}", sh.tag);
            idle_joins.push(probe::join_once(sh.addr_for(k), probe_id(k), &name).await?);
        }
    }

    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let mut writers = Vec::with_capacity(w.writers);
    for id in 0..w.writers {
        let (sh, ready, start) = (sh.clone(), ready_tx.clone(), start_rx.clone());
        writers.push(tokio::spawn(async move {
            match target {
                Target::Pixchat => pixchat::writer(id, sh, ready, start).await,
                Target::Redis => redis::writer(id, sh, ready, start).await,
            }
        }));
    }
    drop(ready_tx);
    wait_ready(&mut ready_rx, w.writers, setup_deadline, "writers").await?;
    let setup_s = setup_start.elapsed().as_secs_f64();

    // The measurement window.
    let t0 = Instant::now();
    let end = t0 + w.duration;
    sh.window_end_ns
        .store(sh.epoch.nanos(end), Ordering::Relaxed);
    let before = procstat::Snapshot::take(&pids, servers.redis_pid);
    let _ = counters.started.set(t0);
    let _ = start_tx.send(Some(t0));
    let loaded_probes = probing.then(|| {
        let (sh, first) = (sh.clone(), probe_id(probe::IDLE_PROBES));
        tokio::spawn(async move {
            let mut took = Vec::new();
            let mut k = 0;
            let mut tick = tokio::time::interval(probe::LOADED_EVERY);
            loop {
                tick.tick().await;
                if Instant::now() + probe::LOADED_EVERY > end {
                    return Ok::<_, anyhow::Error>(took);
                }
                let name = format!("q{}-{k}", sh.tag);
                took.push(probe::join_once(sh.addr_for(k), first + k, &name).await?);
                k += 1;
            }
        })
    });
    tokio::time::sleep_until(end.into()).await;
    let after = procstat::Snapshot::take(&pids, servers.redis_pid);
    let _ = counters.stopped.set(Instant::now());

    // Writers stop sending at the end and wait for their acknowledgements.
    let mut runs = Vec::with_capacity(w.writers);
    for h in writers {
        match tokio::time::timeout_at((end + w.drain + Duration::from_secs(5)).into(), h).await {
            Ok(Ok(Some(run))) => runs.push(run),
            Ok(Ok(None)) => bail!("a writer stopped before the run started"),
            Ok(Err(e)) => bail!("a writer task failed: {e}"),
            Err(_) => bail!("a writer did not finish in time"),
        }
    }
    let fin = Final {
        seq: runs
            .iter()
            .map(|r| r.state.max_seq.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0),
        acked: runs.iter().map(|r| r.state.accepted()).collect(),
    };
    let _ = sh.fin.set(fin);

    // Drain: until every watcher has everything, or the deadline.
    let drain_deadline = end + w.drain;
    while sh.finished.load(Ordering::Relaxed) < w.clients as u64 && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_s = Instant::now().duration_since(end).as_secs_f64();
    sh.stop.cancel();
    let mut outcomes = Vec::with_capacity(w.clients);
    for h in watchers {
        match tokio::time::timeout(Duration::from_secs(10), h).await {
            Ok(Ok(o)) => outcomes.extend(o),
            Ok(Err(e)) => bail!("a watcher task failed: {e}"),
            Err(_) => bail!("a watcher did not stop"),
        }
    }
    outcomes.extend(pool.finish(Duration::from_secs(10)).await?);
    for r in &mut runs {
        if let Some(h) = r.receiver.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }
    progress.finish().await;

    let cpu = CpuUse::between(&before, &after);
    let mut report = build_report(target, w, &sh, &outcomes, &runs, &cpu, &after);
    report.per_server = per_server(servers, w, &cpu, &after);
    report.redis_pid = servers.redis_pid;
    report.setup_s = setup_s;
    report.drain_s = drain_s;
    if let Some(h) = loaded_probes {
        let mut loaded = h.await??;
        report.join_idle_ms = probe::summary(&mut idle_joins);
        report.join_loaded_ms = probe::summary(&mut loaded);
    }
    if let Some(before) = rss_before {
        report.rss_before_kib = Some(before.rss_kib);
    }
    if let (Some(b), Some(j)) = (rss_before, rss_joined) {
        report.rss_joined_kib = Some(j.rss_kib);
        report.rss_per_connection_bytes =
            Some((j.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / w.clients as f64);
    }
    if opts.idle_settle.is_none() {
        report.rss_before_kib = None;
    } else {
        report.workload = "idle";
    }
    report.notes.extend(notes);
    Ok(report)
}

/// Spawns one setup task per watcher (`setup` makes its future); a task
/// returns the watcher's outcome if it never reached the pool.
fn spawn_setups<F>(
    sh: &Arc<Shared>,
    mut setup: impl FnMut(usize, Arc<Shared>) -> F,
) -> Vec<JoinHandle<Option<WatcherOutcome>>>
where
    F: Future<Output = Option<WatcherOutcome>> + Send + 'static,
{
    (0..sh.workload.clients)
        .map(|id| {
            let fut = setup(id, sh.clone());
            let sh = sh.clone();
            tokio::spawn(async move {
                let out = fut.await;
                if out.is_some() {
                    sh.finished.fetch_add(1, Ordering::Relaxed);
                }
                out
            })
        })
        .collect()
}

/// Waits for `n` ready messages; the first failure, or the deadline, ends
/// the run.
async fn wait_ready(
    rx: &mut mpsc::Receiver<Result<(), String>>,
    n: usize,
    deadline: Instant,
    what: &str,
) -> anyhow::Result<()> {
    for got in 0..n {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => bail!("{e} ({got} of {n} {what} had joined)"),
            Ok(None) => bail!("setup ended early ({got} of {n} {what} joined)"),
            Err(_) => bail!("setup timed out: {got} of {n} {what} joined"),
        }
    }
    Ok(())
}

fn build_report(
    target: Target,
    w: &Workload,
    sh: &Shared,
    outcomes: &[WatcherOutcome],
    runs: &[WriterRun],
    cpu: &CpuUse,
    after: &procstat::Snapshot,
) -> RunReport {
    let secs = w.duration.as_secs_f64();
    let sum = |f: fn(&WatcherOutcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    let state_sum = |f: fn(&WriterState) -> u64| runs.iter().map(|r| f(&r.state)).sum::<u64>();
    let lat = Percentiles::of(&sh.hist.merged());
    let mut notes = Vec::new();
    let mut by_end: std::collections::BTreeMap<String, u64> = Default::default();
    for o in outcomes {
        let key = match &o.end {
            End::Complete => continue,
            End::Deadline => "still behind at the drain deadline".to_string(),
            End::Bye(code) => format!("told BYE {code}"),
            End::Closed => "closed by the server".to_string(),
            End::Failed(e) => format!("failed: {e}"),
        };
        *by_end.entry(key).or_default() += 1;
    }
    for (why, n) in &by_end {
        notes.push(format!("{n} watchers {why}"));
    }
    for (id, r) in runs.iter().enumerate() {
        if let Some(e) = &r.send.error {
            notes.push(format!("writer {id}: {e}"));
        }
        if !r.send.drained {
            notes.push(format!(
                "writer {id}: placements still unanswered at the drain deadline"
            ));
        }
    }
    let unmatched = sum(|o| o.unmatched);
    if unmatched > 0 {
        notes.push(format!(
            "{unmatched} events had no matching send time (watchers far behind)"
        ));
    }
    let behind: u64 = runs.iter().map(|r| r.send.behind).sum();
    let sent: u64 = runs.iter().map(|r| r.send.sent).sum();
    let server_rss = after.server.map(|s| s.rss_kib);
    let per_s = |secs: f64| cpu.cores(secs);
    // CPU over the window per event received in it (both are counted over
    // the same window), in nanoseconds.
    let in_window = sum(|o| o.received_in_window);
    let per_delivery = |secs: f64| (in_window > 0).then(|| secs * 1e9 / in_window as f64);
    // Without CONFIG_IRQ_TIME_ACCOUNTING (the usual case) softirq time is
    // charged to the process it interrupted, so the server's and the
    // bench's times already hold their share and softirq is not subtracted.
    let servers_s = cpu.server_s.unwrap_or(0.0) + cpu.redis_s.unwrap_or(0.0);
    let other = match (cpu.machine_cores, cpu.bench_s) {
        (Some(m), Some(b)) => Some((m - per_s(servers_s) - per_s(b)).max(0.0)),
        _ => None,
    };
    RunReport {
        target,
        workload: "fanout",
        clients: w.clients,
        writers: w.writers,
        rate: w.rate,
        window: w.window,
        duration_s: secs,
        placements_per_s: state_sum(|s| s.acked_in_window.load(Ordering::Relaxed)) as f64 / secs,
        offered_per_s: (w.rate > 0.0).then_some(w.rate),
        sent_per_s: sent as f64 / secs,
        deliveries_per_s: sum(|o| o.received_in_window) as f64 / secs,
        placements: state_sum(WriterState::accepted),
        rejected: state_sum(|s| s.rejected.load(Ordering::Relaxed)),
        behind,
        deliveries: sum(|o| o.received),
        p50_us: lat.p50_us,
        p99_us: lat.p99_us,
        p999_us: lat.p999_us,
        max_us: lat.max_us,
        mean_us: lat.mean_us,
        latency_samples: lat.samples,
        unmatched,
        lost: sum(|o| o.lost) + tail_losses(outcomes, sh.fin.get()),
        out_of_order: sum(|o| o.out_of_order),
        watchers_incomplete: outcomes.iter().filter(|o| o.end != End::Complete).count() as u64,
        slow_consumers: outcomes
            .iter()
            .filter(|o| matches!(&o.end, End::Bye(c) if c == "slow_consumer"))
            .count() as u64,
        server_cpu_s: cpu.server_s,
        server_cpu_cores: cpu.server_s.map(|s| s / cpu.wall_s.max(1e-9)),
        server_rss_kib: server_rss,
        server_peak_rss_kib: after.server.map(|s| s.peak_kib),
        servers: sh.addrs.len(),
        per_server: Vec::new(),
        redis_pid: None,
        redis_cpu_s: cpu.redis_s,
        redis_cpu_cores: cpu.redis_s.map(per_s),
        redis_rss_kib: after.redis.map(|s| s.rss_kib),
        total_server_cpu_cores: cpu.server_s.map(|s| per_s(s + cpu.redis_s.unwrap_or(0.0))),
        tcp_segments_per_s: cpu.tcp_segments.map(|n| n as f64 / cpu.wall_s.max(1e-9)),
        deliveries_per_segment: cpu
            .tcp_segments
            .filter(|&n| n > 0)
            .map(|n| sum(|o| o.received_in_window) as f64 / n as f64),
        bench_cpu_s: cpu.bench_s,
        bench_cpu_cores: cpu.bench_s.map(|s| s / cpu.wall_s.max(1e-9)),
        server_cpu_ns_per_delivery: cpu
            .server_s
            .map(|s| s + cpu.redis_s.unwrap_or(0.0))
            .and_then(&per_delivery),
        bench_cpu_ns_per_delivery: cpu.bench_s.and_then(per_delivery),
        machine_cpu_cores: cpu.machine_cores,
        softirq_cpu_cores: cpu.softirq_cores,
        other_cpu_cores: other,
        machine_cores: procstat::online_cores(),
        setup_s: 0.0,
        drain_s: 0.0,
        rss_before_kib: None,
        rss_joined_kib: None,
        rss_per_connection_bytes: None,
        join_idle_ms: None,
        join_loaded_ms: None,
        notes,
    }
}

/// Each server's clients, CPU and memory.
pub(crate) fn per_server(
    servers: &Servers,
    w: &Workload,
    cpu: &CpuUse,
    after: &procstat::Snapshot,
) -> Vec<ServerUse> {
    let n = servers.endpoints.len();
    servers
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, ep)| {
            let cpu_s = cpu.servers_s.get(i).copied().flatten();
            let sample = after.servers.get(i).copied().flatten();
            ServerUse {
                addr: ep.addr.to_string(),
                pid: ep.pid,
                watchers: share(w.clients, n, i),
                writers: share(w.writers, n, i),
                cpu_s,
                cpu_cores: cpu_s.map(|s| cpu.cores(s)),
                rss_kib: sample.map(|s| s.rss_kib),
                peak_rss_kib: sample.map(|s| s.peak_kib),
            }
        })
        .collect()
}
