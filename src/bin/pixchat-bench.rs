//! `pixchat-bench`: parse flags, start the servers a run needs, run the
//! workload, print the report (a table, or one JSON object with `--json`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use pixchat::bench::compare::{self, ServerSource};
use pixchat::bench::fanout::RunOptions;
use pixchat::bench::spawn::{pixchat_server_bin, redis_server_bin};
use pixchat::bench::{self, Endpoint, Target, Workload, idle, join_storm, report};

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
        })
    }
}

/// Which pixchat server to load.
#[derive(Debug, Args)]
struct PixchatServer {
    /// A running server to load (loopback HOST:PORT); otherwise one is
    /// started for each run in a fresh temporary directory.
    #[arg(long)]
    addr: Option<String>,
    /// pid of the --addr server, to read its CPU time and memory.
    #[arg(long, requires = "addr")]
    server_pid: Option<u32>,
    /// pixchat-server binary to start (default: the one next to this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Extra flag for a started pixchat-server (repeat for more), e.g.
    /// --server-arg=--history=1000.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Canvas width of a started server.
    #[arg(long, default_value_t = 1024)]
    width: u16,
    /// Canvas height of a started server.
    #[arg(long, default_value_t = 1024)]
    height: u16,
}

impl PixchatServer {
    fn source(&self) -> anyhow::Result<ServerSource> {
        if let Some(addr) = &self.addr {
            return Ok(ServerSource::Given(Endpoint {
                addr: bench::loopback_addr(addr)?,
                pid: self.server_pid,
            }));
        }
        Ok(ServerSource::Pixchat {
            bin: pixchat_server_bin(self.server_bin.as_deref())?,
            width: self.width,
            height: self.height,
            args: self.server_args.clone(),
        })
    }
}

/// Which Redis server to load.
#[derive(Debug, Args)]
struct RedisServer {
    /// A running Redis to load (loopback HOST:PORT) in compare; otherwise
    /// one is started for each run.
    #[arg(long)]
    redis_addr: Option<String>,
    /// pid of the --redis-addr server.
    #[arg(long, requires = "redis_addr")]
    redis_pid: Option<u32>,
    /// redis-server binary to start (default: redis-server on PATH).
    #[arg(long)]
    redis_bin: Option<PathBuf>,
    /// Extra flag for a started redis-server (repeat for more).
    #[arg(long = "redis-arg", allow_hyphen_values = true)]
    redis_args: Vec<String>,
}

impl RedisServer {
    fn source(&self) -> anyhow::Result<ServerSource> {
        if let Some(addr) = &self.redis_addr {
            return Ok(ServerSource::Given(Endpoint {
                addr: bench::loopback_addr(addr)?,
                pid: self.redis_pid,
            }));
        }
        Ok(ServerSource::Redis {
            bin: redis_server_bin(self.redis_bin.as_deref())?,
            args: self.redis_args.clone(),
        })
    }
}

/// The server for a single-target workload: `--addr` (and `--server-pid`)
/// name the target's server whichever it is.
fn single_source(
    target: Target,
    pixchat: &PixchatServer,
    redis: &RedisServer,
) -> anyhow::Result<ServerSource> {
    match target {
        Target::Pixchat => pixchat.source(),
        Target::Redis if pixchat.addr.is_some() => Ok(ServerSource::Given(Endpoint {
            addr: bench::loopback_addr(pixchat.addr.as_deref().unwrap_or_default())?,
            pid: pixchat.server_pid,
        })),
        Target::Redis => redis.source(),
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
        } => {
            let w = load.workload(100, 0.0, 5.0)?;
            let source = single_source(target, &pixchat, &redis)?;
            let opts = load.options(&format!("{target} fanout"), cli.quiet)?;
            let r = compare::run_once(target, &source, &w, &opts).await?;
            print(json, &r, report::render_run);
        }
        Cmd::Compare {
            load,
            runs,
            pixchat,
            redis,
        } => {
            if runs == 0 || runs > 100 {
                bail!("--runs must be 1-100");
            }
            let w = load.workload(100, 0.0, 5.0)?;
            let opts = load.options("compare", cli.quiet)?;
            let r = compare::run(&w, runs, &pixchat.source()?, &redis.source()?, &opts).await?;
            print(json, &r, report::render_compare);
        }
        Cmd::JoinStorm {
            clients,
            timeout,
            pixchat,
        } => {
            let timeout = Duration::try_from_secs_f64(timeout)?;
            let (server, ep) = pixchat.source()?.start(clients)?;
            let r = join_storm::run(ep, clients, timeout, !cli.quiet).await;
            drop(server);
            print(json, &r?, join_storm::render);
        }
        Cmd::Idle {
            load,
            target,
            pixchat,
            redis,
        } => {
            let w = load.workload(1000, idle::DEFAULT_RATE, 10.0)?;
            let source = single_source(target, &pixchat, &redis)?;
            let opts = load.options(&format!("{target} idle"), cli.quiet)?;
            let (server, ep) = source.start(w.clients + w.writers)?;
            let r = idle::run(target, ep, &w, &opts).await;
            drop(server);
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
