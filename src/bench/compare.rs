//! `compare`: the same fan-out workload against pixchat and Redis, run after
//! run, alternating which goes first so slow drifts on a shared machine hit
//! both alike; each run gets a freshly started server (unless one is given)
//! so no run inherits another's state.

use std::path::PathBuf;
use std::time::Duration;

use super::fanout::{self, RunOptions};
use super::report::{CompareReport, RunReport, Summary};
use super::spawn::ServerProcess;
use super::{Endpoint, Target, Workload};

/// Pause between runs, for the previous run's sockets to be closed.
const BETWEEN_RUNS: Duration = Duration::from_millis(500);

/// Where a run's server comes from.
#[derive(Debug, Clone)]
pub enum ServerSource {
    /// An existing server (loopback), with its pid when known.
    Given(Endpoint),
    /// Start `pixchat-server` from `bin` with a canvas of this size and
    /// these extra flags.
    Pixchat {
        /// The binary.
        bin: PathBuf,
        /// Canvas width.
        width: u16,
        /// Canvas height.
        height: u16,
        /// Extra flags, passed after the bench's own.
        args: Vec<String>,
    },
    /// Start `redis-server` from `bin` with these extra flags.
    Redis {
        /// The binary.
        bin: PathBuf,
        /// Extra flags, passed after the bench's own.
        args: Vec<String>,
    },
}

impl ServerSource {
    /// Starts the server if this source says so (room for `connections`
    /// clients); returns the guard that stops it, and where to connect.
    pub fn start(&self, connections: usize) -> anyhow::Result<(Option<ServerProcess>, Endpoint)> {
        // Before starting anything: a run that cannot fit fails at once.
        super::check_fd_budget(connections)?;
        // Room for the bench's connections and a few more (a probe, a
        // straggler from the previous run).
        let max_clients = connections + 64;
        match self {
            ServerSource::Given(ep) => Ok((None, *ep)),
            ServerSource::Pixchat {
                bin,
                width,
                height,
                args,
            } => {
                let mut all = vec![
                    "--width".to_string(),
                    width.to_string(),
                    "--height".to_string(),
                    height.to_string(),
                    "--max-clients".to_string(),
                    max_clients.to_string(),
                ];
                all.extend(args.iter().cloned());
                let p = ServerProcess::start_pixchat(bin, &all)?;
                let ep = p.endpoint();
                Ok((Some(p), ep))
            }
            ServerSource::Redis { bin, args } => {
                let p = ServerProcess::start_redis(bin, max_clients, args)?;
                let ep = p.endpoint();
                Ok((Some(p), ep))
            }
        }
    }
}

/// Runs the fan-out workload once against a server from `source`, stopping
/// the server afterwards if it was started here.
pub async fn run_once(
    target: Target,
    source: &ServerSource,
    w: &Workload,
    opts: &RunOptions,
) -> anyhow::Result<RunReport> {
    let (server, ep) = source.start(w.clients + w.writers)?;
    let res = fanout::run(target, ep, w, opts).await;
    if let (Err(_), Some(s)) = (&res, &server) {
        let log = s.recent_log();
        if !log.is_empty() {
            eprintln!("{target} server log (last lines):\n{log}");
        }
    }
    drop(server);
    res
}

/// `compare`: `runs` runs against each target, alternating.
pub async fn run(
    w: &Workload,
    runs: usize,
    pixchat: &ServerSource,
    redis: &ServerSource,
    opts: &RunOptions,
) -> anyhow::Result<CompareReport> {
    let (mut p_runs, mut r_runs) = (Vec::new(), Vec::new());
    for i in 0..runs.max(1) {
        let order = if i % 2 == 0 {
            [Target::Pixchat, Target::Redis]
        } else {
            [Target::Redis, Target::Pixchat]
        };
        for target in order {
            let source = match target {
                Target::Pixchat => pixchat,
                Target::Redis => redis,
            };
            let opts = RunOptions {
                label: format!("{} {target} run {}/{}", opts.label, i + 1, runs),
                ..opts.clone()
            };
            let report = run_once(target, source, w, &opts).await?;
            match target {
                Target::Pixchat => p_runs.push(report),
                Target::Redis => r_runs.push(report),
            }
            tokio::time::sleep(BETWEEN_RUNS).await;
        }
    }
    Ok(CompareReport::new(
        w,
        Summary::of(p_runs),
        Summary::of(r_runs),
    ))
}
