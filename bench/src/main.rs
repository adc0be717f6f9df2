//! `pixchat-bench`: parse flags, start the servers a run needs, run the
//! workload, print the report (a table, or one JSON object with `--json`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use pixchat_bench::compare::{self, RedisSpec, ServerSource};
use pixchat_bench::fanout::RunOptions;
use pixchat_bench::spawn::{pixchat_server_bin, redis_server_bin};
use pixchat_bench::{
    self as bench, Endpoint, Servers, Target, Workload, idle, join_storm, report, stalled,
};

/// Load generator for pixchat: fan-out, join storms and idle connections,
/// measured side by side with Redis pub/sub. Loopback only.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Print one JSON object on stdout instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// No progress line on stderr.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// C watchers receive everything W writers place, at a fixed rate or max
    /// rate: placements/s, deliveries/s, latency, lost events, server CPU.
    Fanout {
        #[command(flatten)]
        load: Load,
        /// What to load: pixchat or redis (with --addr, or one started here).
        #[arg(long, default_value = "pixchat")]
        target: Target,
        #[command(flatten)]
        pixchat: PixchatServer,
        #[command(flatten)]
        redis: RedisServer,
        #[command(flatten)]
        redis_bin: RedisBin,
    },
    /// The fanout workload against pixchat and Redis, alternating, with
    /// medians and pixchat/Redis ratios.
    Compare {
        #[command(flatten)]
        load: Load,
        /// Runs per target.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[command(flatten)]
        pixchat: PixchatServer,
        #[command(flatten)]
        redis: RedisServer,
        #[command(flatten)]
        redis_bin: RedisBin,
    },
    /// C clients connect and join at once; time until all hold the full
    /// canvas.
    JoinStorm {
        /// Clients joining at once.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Longest a client may take to hold the canvas, seconds.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
        #[command(flatten)]
        pixchat: PixchatServer,
        #[command(flatten)]
        redis_bin: RedisBin,
    },
    /// The fanout workload on pixchat's default durable storage and with
    /// --memory, alternating, with medians and durable/memory ratios.
    Durability {
        #[command(flatten)]
        load: Load,
        /// Runs per set-up.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[command(flatten)]
        pixchat: PixchatServer,
        #[command(flatten)]
        redis_bin: RedisBin,
    },
    /// N connections each send CANVAS and never read the answer: server RSS
    /// per stalled client, and whether the server still answers.
    Stalled {
        /// Stalled connections.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Wire mode of the stalled clients.
        #[arg(long, value_enum, default_value = "text")]
        mode: stalled::Mode,
        /// Seconds the server gets to settle before its memory is read.
        #[arg(long, default_value_t = stalled::SETTLE.as_secs_f64())]
        settle: f64,
        #[command(flatten)]
        pixchat: PixchatServer,
        #[command(flatten)]
        redis_bin: RedisBin,
    },
    /// N watchers join and stay idle (server RSS per connection), then a
    /// trickle of placements (latency to all of them).
    Idle {
        #[command(flatten)]
        load: Load,
        /// What to load: pixchat or redis.
        #[arg(long, default_value = "pixchat")]
        target: Target,
        #[command(flatten)]
        pixchat: PixchatServer,
        #[command(flatten)]
        redis: RedisServer,
        #[command(flatten)]
        redis_bin: RedisBin,
    },
}

/// The load every workload shares; unset flags take the workload's default.
#[derive(Debug, Args)]
struct Load {
    /// Watcher connections (default: 100; idle: 1000).
    #[arg(long)]
    clients: Option<usize>,
    /// Writer connections (default: 1).
    #[arg(long)]
    writers: Option<usize>,
    /// Placements per second by all writers together; 0 = max rate
    /// (default: 0; idle: 333).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds the writers place pixels (default: 5; idle: 10).
    #[arg(long)]
    duration: Option<f64>,
    /// Unacknowledged placements each writer may have in flight.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Seconds to wait after the end for events still under way.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// Seconds connecting and joining everyone may take (default: 60 + clients/100).
    #[arg(long)]
    setup_timeout: Option<f64>,
    /// Threads that read the watchers' sockets (default: half the cores, at
    /// least one).
    #[arg(long)]
    watcher_threads: Option<usize>,
    /// Time a newcomer's JOIN (text mode, quiet) every 100 ms: 20 times before
    /// the writers start and all the while they run (pixchat only).
    #[arg(long)]
    probe_joins: bool,
}

impl Load {
    fn workload(&self, clients: usize, rate: f64, duration: f64) -> anyhow::Result<Workload> {
        let secs = |s: f64, what: &str| {
            Duration::try_from_secs_f64(s).map_err(|_| anyhow::anyhow!("bad {what}: {s}"))
        };
        let w = Workload {
            clients: self.clients.unwrap_or(clients),
            writers: self.writers.unwrap_or(1),
            rate: self.rate.unwrap_or(rate),
            duration: secs(self.duration.unwrap_or(duration), "--duration")?,
            window: self.window,
            drain: secs(self.drain, "--drain")?,
        };
        w.check()?;
        Ok(w)
    }

    fn options(&self, label: &str, quiet: bool) -> anyhow::Result<RunOptions> {
        Ok(RunOptions {
            label: label.into(),
            progress: !quiet,
            idle_settle: None,
            setup_timeout: self
                .setup_timeout
                .map(Duration::try_from_secs_f64)
                .transpose()?,
            watcher_threads: self.watcher_threads,
            probe_joins: self.probe_joins,
        })
    }
}

/// Most pixchat servers a run may start.
const MAX_SERVERS: usize = 16;

/// Which pixchat servers to load.
#[derive(Debug, Args)]
struct PixchatServer {
    /// A running server to load (loopback HOST:PORT); repeat it (or
    /// separate with commas) for several servers sharing one canvas through
    /// Redis: watchers and writers are dealt round-robin over them.
    /// Without it, servers are started for each run in fresh temporary
    /// directories.
    #[arg(long, value_delimiter = ',')]
    addr: Vec<String>,
    /// pid of each --addr server, in the same order (repeat, or separate
    /// with commas), to read their CPU time and memory.
    #[arg(long, value_delimiter = ',', requires = "addr")]
    server_pid: Vec<u32>,
    /// pixchat-servers to start for each run. More than one share one
    /// canvas through a redis-server started with them (no persistence;
    /// each run gets a fresh Redis and --redis-prefix); 1 is one standalone
    /// server unless --cluster.
    #[arg(long, default_value_t = 1, conflicts_with = "addr")]
    servers: usize,
    /// Start the servers in cluster mode, on a Redis started with them,
    /// even with --servers 1 (to see what Redis costs a single server).
    #[arg(long, conflicts_with = "addr")]
    cluster: bool,
    /// pixchat-server binary to start (default: the one next to this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Extra flag for every started pixchat-server (repeat for more), e.g.
    /// --server-arg=--history=1000.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Canvas width of started servers.
    #[arg(long, default_value_t = 1024)]
    width: u16,
    /// Canvas height of started servers.
    #[arg(long, default_value_t = 1024)]
    height: u16,
}

impl PixchatServer {
    /// The servers given with --addr (and --server-pid), if any.
    fn given(&self) -> anyhow::Result<Option<Servers>> {
        if self.addr.is_empty() {
            return Ok(None);
        }
        if !self.server_pid.is_empty() && self.server_pid.len() != self.addr.len() {
            bail!(
                "{} --addr but {} --server-pid: give one pid per server, in the same order",
                self.addr.len(),
                self.server_pid.len()
            );
        }
        let endpoints = self
            .addr
            .iter()
            .enumerate()
            .map(|(i, a)| {
                Ok(Endpoint {
                    addr: bench::loopback_addr(a)?,
                    pid: self.server_pid.get(i).copied(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(Servers {
            endpoints,
            redis_pid: None,
        }))
    }

    /// More than one server, or --cluster: the started servers need Redis.
    fn clustered(&self) -> bool {
        self.servers > 1 || self.cluster
    }

    fn source(&self, redis: &RedisBin) -> anyhow::Result<ServerSource> {
        if let Some(given) = self.given()? {
            return Ok(ServerSource::Given(given));
        }
        if self.servers == 0 || self.servers > MAX_SERVERS {
            bail!("--servers must be 1-{MAX_SERVERS}");
        }
        let cluster = if self.clustered() {
            Some(RedisSpec {
                bin: redis_server_bin(redis.redis_bin.as_deref())?,
                args: redis.redis_args.clone(),
            })
        } else {
            None
        };
        Ok(ServerSource::Pixchat {
            bin: pixchat_server_bin(self.server_bin.as_deref())?,
            width: self.width,
            height: self.height,
            args: self.server_args.clone(),
            servers: self.servers,
            cluster,
        })
    }
}

/// The redis-server the bench starts: as the target (`--target redis`,
/// `compare`), or shared by clustered pixchat servers (`--servers N`).
#[derive(Debug, Args)]
struct RedisBin {
    /// redis-server binary to start (default: redis-server on PATH).
    #[arg(long)]
    redis_bin: Option<PathBuf>,
    /// Extra flag for every started redis-server (repeat for more).
    #[arg(long = "redis-arg", allow_hyphen_values = true)]
    redis_args: Vec<String>,
}

/// Which Redis server to load as the target.
#[derive(Debug, Args)]
struct RedisServer {
    /// A running Redis to load (loopback HOST:PORT) in compare; otherwise
    /// one is started for each run.
    #[arg(long)]
    redis_addr: Option<String>,
    /// pid of the --redis-addr server.
    #[arg(long, requires = "redis_addr")]
    redis_pid: Option<u32>,
}

impl RedisServer {
    fn source(&self, bin: &RedisBin) -> anyhow::Result<ServerSource> {
        if let Some(addr) = &self.redis_addr {
            return Ok(ServerSource::Given(Servers::single(Endpoint {
                addr: bench::loopback_addr(addr)?,
                pid: self.redis_pid,
            })));
        }
        Ok(ServerSource::Redis {
            bin: redis_server_bin(bin.redis_bin.as_deref())?,
            args: bin.redis_args.clone(),
        })
    }
}

/// The servers for a single-target workload: `--addr` (and `--server-pid`)
/// name the target's server whichever it is.
fn single_source(
    target: Target,
    pixchat: &PixchatServer,
    redis: &RedisServer,
    bin: &RedisBin,
) -> anyhow::Result<ServerSource> {
    match target {
        Target::Pixchat => pixchat.source(bin),
        // Separate Redis servers share no channel: one server only.
        Target::Redis if pixchat.addr.len() > 1 || pixchat.clustered() => {
            bail!("--target redis loads one Redis: no several --addr, --servers or --cluster")
        }
        Target::Redis => match pixchat.given()? {
            Some(given) => Ok(ServerSource::Given(given)),
            None => redis.source(bin),
        },
    }
}

fn print<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("reports serialize")
        );
    } else {
        print!("{}", text(value));
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Children inherit the raised limit, so do it before starting servers.
    bench::raise_fd_limit();
    let json = cli.json;
    match cli.cmd {
        Cmd::Fanout {
            load,
            target,
            pixchat,
            redis,
            redis_bin,
        } => {
            let w = load.workload(100, 0.0, 5.0)?;
            let source = single_source(target, &pixchat, &redis, &redis_bin)?;
            let opts = load.options(&format!("{target} fanout"), cli.quiet)?;
            let r = compare::run_once(target, &source, &w, &opts).await?;
            print(json, &r, report::render_run);
        }
        Cmd::Compare {
            load,
            runs,
            pixchat,
            redis,
            redis_bin,
        } => {
            if runs == 0 || runs > 100 {
                bail!("--runs must be 1-100");
            }
            let w = load.workload(100, 0.0, 5.0)?;
            let opts = load.options("compare", cli.quiet)?;
            let r = compare::run(
                &w,
                runs,
                &pixchat.source(&redis_bin)?,
                &redis.source(&redis_bin)?,
                &opts,
            )
            .await?;
            print(json, &r, report::render_compare);
        }
        Cmd::JoinStorm {
            clients,
            timeout,
            pixchat,
            redis_bin,
        } => {
            let timeout = Duration::try_from_secs_f64(timeout)?;
            let (started, servers) = pixchat.source(&redis_bin)?.start(clients)?;
            let r = join_storm::run(&servers, clients, timeout, !cli.quiet).await;
            drop(started);
            print(json, &r?, join_storm::render);
        }
        Cmd::Durability {
            load,
            runs,
            pixchat,
            redis_bin,
        } => {
            if runs == 0 || runs > 100 {
                bail!("--runs must be 1-100");
            }
            if !pixchat.addr.is_empty() {
                bail!("durability starts its own servers: no --addr");
            }
            let w = load.workload(100, 0.0, 5.0)?;
            let opts = load.options("durability", cli.quiet)?;
            let r = compare::durability(&w, runs, &pixchat.source(&redis_bin)?, &opts).await?;
            print(json, &r, report::render_durability);
        }
        Cmd::Stalled {
            clients,
            mode,
            settle,
            pixchat,
            redis_bin,
        } => {
            let settle = Duration::try_from_secs_f64(settle)?;
            let (started, servers) = pixchat.source(&redis_bin)?.start(clients)?;
            let r = stalled::run(&servers, clients, mode, settle, !cli.quiet).await;
            drop(started);
            print(json, &r?, stalled::render);
        }
        Cmd::Idle {
            load,
            target,
            pixchat,
            redis,
            redis_bin,
        } => {
            let w = load.workload(1000, idle::DEFAULT_RATE, 10.0)?;
            let source = single_source(target, &pixchat, &redis, &redis_bin)?;
            let opts = load.options(&format!("{target} idle"), cli.quiet)?;
            let (started, servers) = source.start(w.clients + w.writers)?;
            let r = idle::run(target, &servers, &w, &opts).await;
            drop(started);
            print(json, &r?, report::render_run);
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // On Ctrl-C the run is dropped when `select!` returns, and with it the
    // guards that stop the servers this bench started.
    let interrupted = tokio::select! {
        r = run(cli) => return r,
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        eprintln!("\npixchat-bench: interrupted; the servers it started are stopped");
        std::process::exit(130);
    }
    Ok(())
}
