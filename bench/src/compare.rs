//! `compare` and `durability`: the same fan-out workload against two
//! set-ups (pixchat and Redis; pixchat's durable storage and `--memory`),
//! run after run, alternating which goes first so slow drifts on a shared
//! machine hit both alike; each run gets a freshly started server (unless
//! one is given) so no run inherits another's state.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use super::fanout::{self, RunOptions};
use super::report::{CompareReport, DurabilityReport, RunReport, Summary};
use super::spawn::{Server, Started};
use super::{Servers, Target, Workload};

/// Pause between runs, for the previous run's sockets to be closed.
const BETWEEN_RUNS: Duration = Duration::from_millis(500);

/// Where a run's server comes from.
#[derive(Debug, Clone)]
pub enum ServerSource {
    /// Existing servers (loopback), with their pids when known.
    Given(Servers),
    /// Start `servers` `pixchat-server`s from `bin` with a canvas of this
    /// size and these extra flags; in cluster mode (`cluster` set) on a
    /// Redis started for the run, each with `--redis` and one fresh
    /// `--redis-prefix`.
    Pixchat {
        /// The binary.
        bin: PathBuf,
        /// Canvas width.
        width: u16,
        /// Canvas height.
        height: u16,
        /// Extra flags, passed after the bench's own.
        args: Vec<String>,
        /// How many servers.
        servers: usize,
        /// The Redis to start for them, if they are to share a canvas.
        cluster: Option<RedisSpec>,
    },
    /// Start `redis-server` from `bin` with these extra flags.
    Redis {
        /// The binary.
        bin: PathBuf,
        /// Extra flags, passed after the bench's own.
        args: Vec<String>,
    },
}

/// A `redis-server` to start: the binary and extra flags.
#[derive(Debug, Clone)]
pub struct RedisSpec {
    /// The binary.
    pub bin: PathBuf,
    /// Extra flags, passed after the bench's own.
    pub args: Vec<String>,
}

/// Connections one clustered pixchat server may hold to Redis (it uses a
/// few); the cluster's Redis gets room for this many per server.
const REDIS_CONNS_PER_SERVER: usize = 16;

impl ServerSource {
    /// Starts the servers if this source says so (room for `connections`
    /// clients); returns the guard that stops them, and where to connect.
    pub fn start(&self, connections: usize) -> anyhow::Result<(Started, Servers)> {
        // Before starting anything: a run that cannot fit fails at once.
        super::check_fd_budget(connections)?;
        // Room for the bench's connections and a few more (a probe, a
        // straggler from the previous run).
        let max_clients = connections + 64;
        match self {
            ServerSource::Given(servers) => Ok((Started::default(), servers.clone())),
            ServerSource::Pixchat {
                bin,
                width,
                height,
                args,
                servers,
                cluster,
            } => {
                let mut started = Started::default();
                let mut all = vec![
                    "--width".to_string(),
                    width.to_string(),
                    "--height".to_string(),
                    height.to_string(),
                    "--max-clients".to_string(),
                    max_clients.to_string(),
                ];
                if let Some(redis) = cluster {
                    let r = Server::start_redis(
                        &redis.bin,
                        64 + REDIS_CONNS_PER_SERVER * servers,
                        &redis.args,
                    )?;
                    // A fresh prefix per run: nothing of an earlier run's
                    // canvas, users or stream can leak into this one even
                    // if the Redis were reused.
                    all.extend([
                        "--redis".to_string(),
                        r.url(),
                        "--redis-prefix".to_string(),
                        format!("pixchat-bench-{}:", super::run_tag()),
                    ]);
                    started.redis = Some(r);
                }
                all.extend(args.iter().cloned());
                // One after another: the first creates the shared canvas
                // with its size, the others find it.
                for _ in 0..*servers {
                    started
                        .servers
                        .push(Server::Pixchat(Server::start_pixchat(bin, &all)?));
                }
                let servers = Servers {
                    endpoints: started.servers.iter().map(Server::endpoint).collect(),
                    redis_pid: started.redis.as_ref().and_then(|r| r.pid()),
                };
                Ok((started, servers))
            }
            ServerSource::Redis { bin, args } => {
                let p = Server::Redis(Server::start_redis(bin, max_clients, args)?);
                let servers = Servers::single(p.endpoint());
                Ok((
                    Started {
                        servers: vec![p],
                        redis: None,
                    },
                    servers,
                ))
            }
        }
    }
}

/// Runs the fan-out workload once against the servers from `source`,
/// stopping them afterwards if they were started here.
pub async fn run_once(
    target: Target,
    source: &ServerSource,
    w: &Workload,
    opts: &RunOptions,
) -> anyhow::Result<RunReport> {
    let (started, servers) = source.start(w.clients + w.writers)?;
    let res = fanout::run(target, &servers, w, opts).await;
    if res.is_err() {
        let log = started.recent_logs();
        if !log.is_empty() {
            eprintln!("{target} server logs (last lines):\n{log}");
        }
    }
    drop(started);
    res
}

/// `runs` runs of each of two set-ups, alternating which goes first, so
/// slow drifts on a shared machine hit both alike; returns each side's
/// summary.
async fn run_pair(
    w: &Workload,
    runs: usize,
    sides: [(&str, Target, &ServerSource); 2],
    opts: &RunOptions,
) -> anyhow::Result<[Summary; 2]> {
    let mut reports: [Vec<RunReport>; 2] = [Vec::new(), Vec::new()];
    for i in 0..runs.max(1) {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let (name, target, source) = sides[side];
            let opts = RunOptions {
                label: format!("{} {name} run {}/{}", opts.label, i + 1, runs),
                ..opts.clone()
            };
            reports[side].push(run_once(target, source, w, &opts).await?);
            tokio::time::sleep(BETWEEN_RUNS).await;
        }
    }
    let [a, b] = reports;
    Ok([Summary::of(a), Summary::of(b)])
}

/// `compare`: `runs` runs against each target, alternating.
pub async fn run(
    w: &Workload,
    runs: usize,
    pixchat: &ServerSource,
    redis: &ServerSource,
    opts: &RunOptions,
) -> anyhow::Result<CompareReport> {
    let [p, r] = run_pair(
        w,
        runs,
        [
            ("pixchat", Target::Pixchat, pixchat),
            ("redis", Target::Redis, redis),
        ],
        opts,
    )
    .await?;
    Ok(CompareReport::new(w, p, r))
}

/// `durability`: `runs` runs of pixchat with its default durable storage
/// and as many with `--memory` added to `durable`'s flags, alternating.
pub async fn durability(
    w: &Workload,
    runs: usize,
    durable: &ServerSource,
    opts: &RunOptions,
) -> anyhow::Result<DurabilityReport> {
    let ServerSource::Pixchat { args, .. } = durable else {
        bail!("durability starts its own servers: no --addr");
    };
    if args.iter().any(|a| a == "--memory") {
        bail!("durability adds --memory itself; leave it out of --server-arg");
    }
    let mut memory = durable.clone();
    if let ServerSource::Pixchat { args, .. } = &mut memory {
        args.push("--memory".into());
    }
    let [d, m] = run_pair(
        w,
        runs,
        [
            ("durable", Target::Pixchat, durable),
            ("memory", Target::Pixchat, &memory),
        ],
        opts,
    )
    .await?;
    Ok(DurabilityReport::new(w, d, m))
}
