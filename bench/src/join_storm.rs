//! `join-storm`: C clients connect and join at the same moment; the time
//! until every one of them holds the full canvas (welcome received and the
//! whole snapshot frame received and checked: header, size, and exactly
//! ceil(width*height/2) bytes of packed pixels, kept in memory until all are
//! done). Unpacking the 4-bit pixels is left out on purpose: it is client
//! work that does not touch the server, and on a 2-core machine it would
//! take CPU from the server being measured.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;
use tokio::sync::watch;

use super::frames::Keep;
use super::latency::{Percentiles, new_histogram};
use super::pixchat::{Joined, join};
use super::procstat::{self, CpuUse};
use super::progress::{Counters, Progress};
use super::report::{kib, micros};
use super::{Servers, check_fd_budget, run_tag};

/// Read buffer per client; it grows to hold the snapshot.
const BUFFER: usize = 64 * 1024;

/// What a join storm measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JoinStormReport {
    /// Clients that tried to join.
    pub clients: usize,
    /// Servers they joined, round-robin (sharing one canvas through Redis
    /// when more than one).
    pub servers: usize,
    /// Clients that hold the full canvas.
    pub joined: usize,
    /// Canvas width.
    pub width: u16,
    /// Canvas height.
    pub height: u16,
    /// Seconds from the start until the last client held the full canvas.
    pub all_joined_s: f64,
    /// Per-client time to the full canvas: median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Bytes the clients received (the server sent) until they were done.
    pub bytes_received: u64,
    /// Bytes the clients sent (HELLO and JOIN).
    pub bytes_sent: u64,
    /// Server CPU seconds during the storm (all servers together).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
    /// CPU seconds of the cluster's Redis during the storm, when the bench
    /// started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_cpu_s: Option<f64>,
    /// Server resident memory once all had joined, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_kib: Option<u64>,
    /// Server peak resident memory, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_kib: Option<u64>,
    /// Bench CPU seconds during the storm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bench_cpu_s: Option<f64>,
    /// Cores busy on the machine during the storm (every process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_cpu_cores: Option<f64>,
    /// Failures, by reason.
    pub notes: Vec<String>,
}

/// Runs one join storm of `clients` against `servers` (dealt round-robin);
/// each client may take at most `timeout`.
pub async fn run(
    servers: &Servers,
    clients: usize,
    timeout: Duration,
    progress: bool,
) -> anyhow::Result<JoinStormReport> {
    if clients == 0 || clients > super::MAX_CLIENTS {
        bail!("--clients must be 1-{}", super::MAX_CLIENTS);
    }
    check_fd_budget(clients)?;
    if servers.endpoints.is_empty() {
        bail!("no server to load");
    }
    if servers.endpoints.len() > 1 {
        super::pixchat::probe_shared_canvas(servers).await?;
    }
    let tag = run_tag();
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(
        "join-storm".into(),
        counters.clone(),
        clients,
        0,
        timeout,
        progress,
    );
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let mut tasks = Vec::with_capacity(clients);
    for id in 0..clients {
        let mut start = start_rx.clone();
        let name = format!("j{tag}-{id}");
        let addr = servers.addr_for(id);
        let counters = counters.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = match start.wait_for(Option::is_some).await {
                Ok(t) => t.expect("checked"),
                Err(_) => bail!("the storm was called off"),
            };
            let joined =
                tokio::time::timeout(timeout, join(addr, id, &name, Keep::Everything, BUFFER))
                    .await
                    .map_err(|_| anyhow::anyhow!("no full canvas within {timeout:?}"))??;
            let took = t0.elapsed();
            counters.watchers_ready.fetch_add(1, Ordering::Relaxed);
            Ok::<(Duration, Joined), anyhow::Error>((took, joined))
        }));
    }
    // Let every task reach its start line before the gun.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pids = servers.pids();
    let before = procstat::Snapshot::take(&pids, servers.redis_pid);
    let t0 = Instant::now();
    let _ = start_tx.send(Some(t0));
    let mut held = Vec::with_capacity(clients);
    let mut failures: std::collections::BTreeMap<String, usize> = Default::default();
    let mut hist = new_histogram();
    let (mut received, mut sent, mut last) = (0u64, 0u64, Duration::ZERO);
    for t in tasks {
        match t.await {
            Ok(Ok((took, joined))) => {
                let want = (usize::from(joined.width) * usize::from(joined.height)).div_ceil(2);
                if joined.packed.as_ref().map(Vec::len) != Some(want) {
                    *failures
                        .entry("snapshot of the wrong size".into())
                        .or_default() += 1;
                    continue;
                }
                hist.saturating_record(took.as_micros().max(1) as u64);
                received += joined.bytes;
                sent += joined_request_len(&joined);
                last = last.max(took);
                held.push(joined);
            }
            Ok(Err(e)) => *failures.entry(format!("{e:#}")).or_default() += 1,
            Err(e) => *failures.entry(format!("task failed: {e}")).or_default() += 1,
        }
    }
    let after = procstat::Snapshot::take(&pids, servers.redis_pid);
    progress.finish().await;
    let cpu = CpuUse::between(&before, &after);
    let lat = Percentiles::of(&hist);
    let (width, height) = held.first().map_or((0, 0), |j| (j.width, j.height));
    let report = JoinStormReport {
        clients,
        servers: servers.endpoints.len(),
        joined: held.len(),
        width,
        height,
        all_joined_s: last.as_secs_f64(),
        p50_ms: lat.p50_us / 1e3,
        p99_ms: lat.p99_us / 1e3,
        max_ms: lat.max_us / 1e3,
        bytes_received: received,
        bytes_sent: sent,
        server_cpu_s: cpu.server_s,
        redis_cpu_s: cpu.redis_s,
        server_rss_kib: after.server.map(|s| s.rss_kib),
        server_peak_rss_kib: after.server.map(|s| s.peak_kib),
        bench_cpu_s: cpu.bench_s,
        machine_cpu_cores: cpu.machine_cores,
        notes: failures
            .into_iter()
            .map(|(why, n)| format!("{n} clients failed: {why}"))
            .collect(),
    };
    // Everyone held the canvas until here; now they may go.
    drop(held);
    Ok(report)
}

/// Bytes a client sent to join: HELLO (11) and JOIN with its name.
fn joined_request_len(j: &Joined) -> u64 {
    j.sent
}

/// A join storm as a few lines of text.
pub fn render(r: &JoinStormReport) -> String {
    let mut s = format!(
        "join-storm: {} clients{} on a {}x{} canvas\n  all held the full canvas after {:.3} s ({} of {} joined)\n  per client      p50 {}  p99 {}  max {}\n  bytes           {} received, {} sent\n",
        r.clients,
        if r.servers > 1 {
            format!(" over {} servers", r.servers)
        } else {
            String::new()
        },
        r.width,
        r.height,
        r.all_joined_s,
        r.joined,
        r.clients,
        micros(r.p50_ms * 1e3),
        micros(r.p99_ms * 1e3),
        micros(r.max_ms * 1e3),
        r.bytes_received,
        r.bytes_sent,
    );
    s.push_str(&format!(
        "  server          CPU {} s  RSS {} (peak {})\n  bench CPU       {} s, machine {} cores busy\n",
        r.server_cpu_s.map_or("n/a".into(), |v| format!("{v:.2}")),
        r.server_rss_kib.map_or("n/a".into(), |v| kib(v as f64)),
        r.server_peak_rss_kib.map_or("n/a".into(), |v| kib(v as f64)),
        r.bench_cpu_s.map_or("n/a".into(), |v| format!("{v:.2}")),
        r.machine_cpu_cores.map_or("n/a".into(), |v| format!("{v:.2}")),
    ));
    if let Some(redis) = r.redis_cpu_s {
        s.push_str(&format!("  cluster Redis   CPU {redis:.2} s\n"));
    }
    for n in &r.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    s
}
