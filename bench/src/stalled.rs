//! `stalled`: N connections each ask for the whole canvas (`CANVAS`) and
//! never read the answer. What the server holds for them is the cost of a
//! client that stopped reading: its RSS is read before the first one
//! connects and once all have asked and the server has settled. A fresh
//! client then checks that the server still answers everyone else.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use clap::ValueEnum;
use pixchat::protocol::binary::encode_command;
use pixchat::protocol::{Command, PROTOCOL_VERSION};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::pixchat::probe_canvas;
use super::procstat;
use super::progress::{Counters, Progress};
use super::report::kib;
use super::{CONNECT_TIMEOUT, SETUP_CONCURRENCY, Servers, check_fd_budget};

/// How long the server gets to settle after the last `CANVAS` was sent.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Which wire mode the stalled clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `CANVAS\n`: the answer is one `ROW` line per canvas row.
    Text,
    /// `HELLO` then `CANVAS`: the answer is one packed `SNAPSHOT` frame.
    Binary,
}

impl Mode {
    /// `text` or `binary`, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Text => "text",
            Mode::Binary => "binary",
        }
    }
}

/// What a stalled-clients run measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StalledReport {
    /// `stalled`.
    pub workload: &'static str,
    /// Connections that sent `CANVAS` and never read.
    pub clients: usize,
    /// Their wire mode.
    pub mode: Mode,
    /// Canvas width.
    pub width: u16,
    /// Canvas height.
    pub height: u16,
    /// Bytes of one answer to `CANVAS` in this mode.
    pub answer_bytes: u64,
    /// Server RSS before the first connection, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_kib: Option<u64>,
    /// Server RSS with every client stalled, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_stalled_kib: Option<u64>,
    /// (stalled - before) / clients, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_connection_bytes: Option<f64>,
    /// Server peak RSS, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_kib: Option<u64>,
    /// Seconds to connect every client and send its `CANVAS`.
    pub setup_s: f64,
    /// Milliseconds a fresh client waited for the answer to `PING` with
    /// every stalled client still connected.
    pub probe_ms: f64,
    /// Anything a reader should know about this run.
    pub notes: Vec<String>,
}

/// Bytes the server sends for one `CANVAS` of `width` x `height`: text rows
/// `ROW <y> <hex>\n` and `OK <seq> <w> <h>\n` (seq 0 here), or the binary
/// snapshot frame.
pub fn answer_bytes(mode: Mode, width: u16, height: u16) -> u64 {
    let (w, h) = (u64::from(width), u64::from(height));
    match mode {
        Mode::Text => {
            let rows: u64 = (0..h).map(|y| 4 + digits(y) + 1 + w + 1).sum();
            rows + format!("OK 0 {width} {height}\n").len() as u64
        }
        Mode::Binary => 4 + 22 + (w * h).div_ceil(2),
    }
}

fn digits(n: u64) -> u64 {
    n.checked_ilog10().map_or(1, |d| u64::from(d) + 1)
}

/// What one stalled client sends.
fn request(mode: Mode) -> Vec<u8> {
    match mode {
        Mode::Text => b"CANVAS\n".to_vec(),
        Mode::Binary => {
            let mut out = BytesMut::new();
            encode_command(
                &Command::Hello {
                    version: PROTOCOL_VERSION,
                },
                &mut out,
            );
            encode_command(&Command::Canvas, &mut out);
            out.to_vec()
        }
    }
}

/// Connects `clients` connections to `servers` (round-robin), has each ask
/// for the canvas, keeps them all open without reading, and reads the
/// servers' memory.
pub async fn run(
    servers: &Servers,
    clients: usize,
    mode: Mode,
    settle: Duration,
    progress: bool,
) -> anyhow::Result<StalledReport> {
    if clients == 0 || clients > super::MAX_CLIENTS {
        bail!("--clients must be 1-{}", super::MAX_CLIENTS);
    }
    check_fd_budget(clients)?;
    let canvas = probe_canvas(servers.first()).await?;
    let pids = servers.pids();
    let before = procstat::sum(&procstat::sample_all(&pids));
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(
        format!("stalled {}", mode.as_str()),
        counters.clone(),
        clients,
        0,
        Duration::ZERO,
        progress,
    );
    let gate = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for id in 0..clients {
        let (gate, addr, counters) = (gate.clone(), servers.addr_for(id), counters.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let mut s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .context("connect timed out")?
                .context("connect")?;
            s.write_all(&request(mode)).await.context("send CANVAS")?;
            counters.watchers_ready.fetch_add(1, Ordering::Relaxed);
            Ok::<TcpStream, anyhow::Error>(s)
        }));
    }
    let mut held = Vec::with_capacity(clients);
    let mut failures: std::collections::BTreeMap<String, usize> = Default::default();
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => *failures.entry(format!("{e:#}")).or_default() += 1,
            Err(e) => *failures.entry(format!("task failed: {e}")).or_default() += 1,
        }
    }
    let setup_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let stalled = procstat::sum(&procstat::sample_all(&pids));
    let probe = tokio::time::timeout(Duration::from_secs(30), ping(servers.first())).await;
    progress.finish().await;
    let mut notes: Vec<String> = failures
        .into_iter()
        .map(|(why, n)| format!("{n} clients failed: {why}"))
        .collect();
    let probe_ms = match probe {
        Ok(Ok(d)) => d.as_secs_f64() * 1e3,
        Ok(Err(e)) => {
            notes.push(format!("the probe client failed: {e:#}"));
            f64::NAN
        }
        Err(_) => {
            notes.push("the probe client got no answer within 30 s".into());
            f64::NAN
        }
    };
    if pids.iter().any(Option::is_none) {
        notes.push("no server pid (--server-pid): memory not measured".into());
    }
    let report = StalledReport {
        workload: "stalled",
        clients: held.len(),
        mode,
        width: canvas.width,
        height: canvas.height,
        answer_bytes: answer_bytes(mode, canvas.width, canvas.height),
        rss_before_kib: before.map(|b| b.rss_kib),
        rss_stalled_kib: stalled.map(|s| s.rss_kib),
        rss_per_connection_bytes: match (before, stalled) {
            (Some(b), Some(s)) if !held.is_empty() => {
                Some((s.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / held.len() as f64)
            }
            _ => None,
        },
        server_peak_rss_kib: stalled.map(|s| s.peak_kib),
        setup_s,
        probe_ms,
        notes,
    };
    // Every client stalled until here; now they may go.
    drop(held);
    Ok(report)
}

/// A fresh text connection: `PING`, and the time until its `OK`.
async fn ping(addr: std::net::SocketAddr) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).await.context("connect")?;
    s.write_all(b"PING probe\n").await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.contains(&b'\n') {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("closed before answering PING");
        }
        got.extend_from_slice(&buf[..n]);
    }
    if !got.starts_with(b"OK") {
        bail!("PING answered {:?}", String::from_utf8_lossy(&got));
    }
    Ok(t0.elapsed())
}

/// A stalled-clients run as a few lines of text.
pub fn render(r: &StalledReport) -> String {
    let mut s = format!(
        "stalled: {} {} clients sent CANVAS ({}x{}, {} bytes per answer) and never read\n",
        r.clients,
        r.mode.as_str(),
        r.width,
        r.height,
        r.answer_bytes
    );
    let opt_kib = |v: Option<u64>| v.map_or_else(|| "n/a".into(), |k| kib(k as f64));
    s.push_str(&format!(
        "  server RSS     {} before, {} stalled (peak {})\n",
        opt_kib(r.rss_before_kib),
        opt_kib(r.rss_stalled_kib),
        opt_kib(r.server_peak_rss_kib),
    ));
    if let Some(per) = r.rss_per_connection_bytes {
        s.push_str(&format!(
            "  per client     {} ({:.0}% of one answer)\n",
            kib(per / 1024.0),
            100.0 * per / r.answer_bytes as f64
        ));
    }
    s.push_str(&format!(
        "  setup {:.1} s; a fresh PING answered in {:.1} ms\n",
        r.setup_s, r.probe_ms
    ));
    for n in &r.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_sizes_follow_protocol_md() {
        // 2 x 2: "ROW 0 00\n" "ROW 1 00\n" "OK 0 2 2\n".
        assert_eq!(answer_bytes(Mode::Text, 2, 2), 9 + 9 + 9);
        // Rows 10-11 take one more digit.
        assert_eq!(
            answer_bytes(Mode::Text, 1, 12),
            10 * 8 + 2 * 9 + "OK 0 1 12\n".len() as u64
        );
        assert_eq!(answer_bytes(Mode::Binary, 1024, 1024), 4 + 22 + 524_288);
        assert_eq!(answer_bytes(Mode::Binary, 3, 1), 4 + 22 + 2);
    }
}
