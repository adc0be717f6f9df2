//! `pixchat-server`: parse flags, set up logging, serve until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pixchat::server::cluster::ClusterConfig;
use pixchat::server::storage::{Fsync, StorageConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Real-time chat and collaborative pixel canvas over TCP (text and binary
/// protocols on one port).
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Without a command: serve.
    #[command(subcommand)]
    command: Option<Tool>,
    /// Address to listen on; port 0 picks a free port (the log shows it).
    #[arg(long, default_value = pixchat::DEFAULT_LISTEN)]
    listen: String,
    /// Serve the operators' HTTP endpoints (/healthz, /readyz, /metrics)
    /// and the browser view on this address (off by default); port 0
    /// picks a free port (the log line `http listening addr=` shows it).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Serve TLS on the chat port with this certificate chain (PEM, leaf
    /// first): a client whose first byte is 0x16 gets TLS, the others
    /// plaintext as before. Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse plaintext clients (`ERR tls_required`), so passwords never
    /// cross the network in clear.
    #[arg(long, requires = "tls_cert")]
    tls_only: bool,
    /// Canvas width in pixels (1-4096) [default: the stored canvas's, or 64].
    #[arg(long)]
    width: Option<u16>,
    /// Canvas height in pixels (1-4096) [default: the stored canvas's, or 64].
    #[arg(long)]
    height: Option<u16>,
    /// Most connections served at once; more get `ERR server_full`.
    #[arg(long, default_value_t = pixchat::DEFAULT_MAX_CLIENTS)]
    max_clients: usize,
    /// Pixel events kept in memory for `SYNC` resume.
    #[arg(long, default_value_t = pixchat::DEFAULT_HISTORY)]
    history: usize,
    /// Directory that keeps the canvas (created if missing).
    #[arg(long, default_value = pixchat::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Keep nothing on disk: the canvas lives only as long as the process.
    #[arg(long, conflicts_with = "data_dir")]
    memory: bool,
    /// When accepted pixels are forced to disk before their `OK`.
    /// (always: fsync as soon as records arrive; batch: one fsync for
    /// everything accepted within 2 ms; never: leave it to the OS.)
    #[arg(long, default_value_t = Fsync::Batch, value_parser = fsync_parser())]
    fsync: Fsync,
    /// Replace the stored canvas with a new blank one (old files are kept aside).
    #[arg(long)]
    new_canvas: bool,
    /// Journal records after which the journal is folded into a new snapshot.
    #[arg(long, default_value_t = pixchat::DEFAULT_COMPACT_AFTER)]
    compact_after: u64,
    /// Minimum milliseconds between two pixels from one user (0 = off).
    #[arg(long, default_value_t = 0)]
    cooldown_ms: u64,
    /// Commands per second per connection (0 = off).
    #[arg(long, default_value_t = 0)]
    rate_limit: u32,
    /// Commands a connection may send at once under --rate-limit
    /// [default: the rate].
    #[arg(long)]
    rate_burst: Option<u32>,
    /// Connections per client IP address (0 = off).
    #[arg(long, default_value_t = 0)]
    max_conns_per_ip: usize,
    /// Seconds a binary client may stay silent before it is dropped (0 = off).
    #[arg(long, default_value_t = pixchat::DEFAULT_IDLE_TIMEOUT_SECS)]
    idle_timeout: u64,
    /// Password clients must give with `AUTH` before anything else.
    #[arg(long, env = "PIXCHAT_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Password that grants `KICK` and `BAN` (after `AUTH`).
    #[arg(long, env = "PIXCHAT_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Share one canvas with every server on this Redis: one Redis
    /// (redis://127.0.0.1:6379), or the master that Sentinels watch
    /// (sentinel://HOST:PORT[,HOST:PORT...]/MASTER), followed across
    /// failovers. Redis then keeps the canvas, not --data-dir.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Prefix of every Redis key (servers with the same prefix share a canvas).
    #[arg(long, default_value = pixchat::DEFAULT_REDIS_PREFIX, requires = "redis")]
    redis_prefix: String,
    /// Acknowledge a placement or chat line only once this many Redis
    /// replicas have it (Redis WAIT), so a failover loses nothing
    /// acknowledged (0 = once the master has it).
    #[arg(long, default_value_t = 0, value_name = "N", requires = "redis")]
    redis_wait: u32,
    /// Milliseconds this server's hold on its users' names lasts without
    /// renewal: a server dead or paused longer loses them to the others.
    #[arg(long, default_value_t = pixchat::DEFAULT_LEASE_MS, value_name = "MS", requires = "redis", value_parser = clap::value_parser!(u64).range(500..))]
    lease_ms: u64,
    /// Users online from which joins and leaves go out as one periodic
    /// PRESENCE event (count and names) instead of one JOINED or LEFT each.
    #[arg(long, default_value_t = pixchat::DEFAULT_PRESENCE_THRESHOLD, value_name = "N")]
    presence_threshold: usize,
    /// Milliseconds between two PRESENCE events.
    #[arg(long, default_value_t = pixchat::DEFAULT_PRESENCE_INTERVAL_MS, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..))]
    presence_interval_ms: u64,
}

/// `--fsync` takes the policy names the library defines.
fn fsync_parser() -> impl clap::builder::TypedValueParser<Value = Fsync> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Fsync::ALL.map(|(name, _)| name))
        .map(|name| name.parse::<Fsync>().expect("a listed policy"))
}

/// Offline tools for the data directory (run them while no server uses it).
#[derive(Debug, clap::Subcommand)]
enum Tool {
    /// Read the data directory and report what is in it and whether a
    /// start would succeed, changing nothing (exit 1 if it would refuse).
    Check {
        /// The data directory to read.
        #[arg(long, default_value = pixchat::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Make a start possible after damage: cut or set aside what cannot be
    /// read, keeping every byte taken out in files beside the originals,
    /// and say how many acknowledged placements that gives up.
    Repair {
        /// The data directory to repair.
        #[arg(long, default_value = pixchat::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

/// Runs `check` or `repair` and exits with its verdict.
fn run_tool(tool: Tool) -> anyhow::Result<()> {
    let (lines, ok) = match tool {
        Tool::Check { data_dir } => {
            let report = pixchat::server::storage::recovery::check(&data_dir)?;
            (report.lines, report.startable)
        }
        Tool::Repair { data_dir } => {
            let report = pixchat::server::storage::recovery::repair(&data_dir)?;
            (report.lines, report.startable)
        }
    };
    for line in lines {
        println!("{line}");
    }
    std::process::exit(if ok { 0 } else { 1 });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    if let Some(tool) = cli.command {
        return run_tool(tool);
    }
    // Every client is a file descriptor; the usual soft limit of 1024 would
    // cap the server long before --max-clients. Raise it to the hard limit,
    // and the hard limit too where we may (as root), as Redis does.
    raise_open_file_limit(cli.max_clients as u64 + 1024);
    let config = pixchat::Config {
        width: cli.width,
        height: cli.height,
        max_clients: cli.max_clients,
        history: cli.history,
        cluster: cli.redis.clone().map(|url| ClusterConfig {
            url,
            prefix: cli.redis_prefix.clone(),
            stream_len: pixchat::DEFAULT_STREAM_LEN,
            lease: Duration::from_millis(cli.lease_ms),
            wait_replicas: cli.redis_wait,
        }),
        storage: (!cli.memory && cli.redis.is_none()).then(|| StorageConfig {
            fsync: cli.fsync,
            new_canvas: cli.new_canvas,
            compact_after: cli.compact_after,
            ..StorageConfig::new(cli.data_dir.clone())
        }),
        limits: pixchat::server::Limits {
            cooldown: Duration::from_millis(cli.cooldown_ms),
            rate_limit: cli.rate_limit,
            rate_burst: cli.rate_burst.unwrap_or(cli.rate_limit),
            max_conns_per_ip: cli.max_conns_per_ip,
            idle_timeout: Duration::from_secs(cli.idle_timeout),
            ..Default::default()
        },
        password: cli.password.filter(|p| !p.is_empty()),
        admin_password: cli.admin_password.filter(|p| !p.is_empty()),
        presence: pixchat::PresenceConfig {
            threshold: cli.presence_threshold,
            interval: Duration::from_millis(cli.presence_interval_ms),
        },
        tls: match (cli.tls_cert, cli.tls_key) {
            (Some(cert), Some(key)) => Some(pixchat::server::tls::TlsConfig {
                cert,
                key,
                only: cli.tls_only,
            }),
            _ => None,
        },
        ..pixchat::Config::default()
    };
    let listener = pixchat::server::bind(&cli.listen)
        .await
        .with_context(|| format!("bind {}", cli.listen))?;
    let http = match &cli.http {
        Some(addr) => Some(
            pixchat::server::bind(addr)
                .await
                .with_context(|| format!("bind the HTTP listener on {addr}"))?,
        ),
        None => None,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    pixchat::run_with(listener, http, config, shutdown).await
}

/// Raises the open-file limit towards `want`: the hard limit too where we
/// may (as root with CAP_SYS_RESOURCE), then the soft limit up to the hard.
fn raise_open_file_limit(want: u64) {
    use rlimit::Resource;
    let Ok((soft, hard)) = Resource::NOFILE.get() else {
        return;
    };
    if hard < want {
        let _ = Resource::NOFILE.set(want, want);
    }
    let hard = Resource::NOFILE.get().map_or(hard, |(_, h)| h);
    let target = want.min(hard).max(soft);
    if let Err(e) = Resource::NOFILE.set(target, hard) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    } else if target < want {
        tracing::warn!(
            limit = target,
            wanted = want,
            "the open-file limit is below what --max-clients needs; raise the hard limit (ulimit -Hn)"
        );
    }
}

/// Cancels `token` on the first Ctrl-C or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    token.cancel();
}
