//! `pixchat-server`: parse flags (each also from a `PIXCHAT_*` variable),
//! set up logging, serve until Ctrl-C or SIGTERM.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use pixchat::server::cluster::archiver::ArchiveConfig;
use pixchat::server::cluster::{ClusterConfig, redacted_url};
use pixchat::server::storage::{Fsync, StorageConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Real-time chat and collaborative pixel canvas over TCP (text and binary
/// protocols on one port).
///
/// Every flag can also be set by an environment variable: PIXCHAT_ and the
/// flag's name in capitals with `_` for `-` (--max-clients: PIXCHAT_MAX_CLIENTS).
#[derive(clap::Parser)]
#[command(name = "pixchat-server")]
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
    /// With --memory: recent placements kept for ROLLBACK and `WHOSE x y
    /// n` (17 bytes each, allocated as placements happen; 0 = none).
    #[arg(long, default_value_t = pixchat::DEFAULT_MEMORY_HISTORY, value_name = "N")]
    memory_history: usize,
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
    /// Keep no history archive: placements compaction folds into the
    /// snapshot are dropped instead of moved to DATA_DIR/archive.
    #[arg(long)]
    no_archive: bool,
    /// How much of the history archive to keep: an age (30d, 12h) or a
    /// size (10GiB, 500MB); the oldest segments go first.
    #[arg(long, default_value = "all", value_name = "AGE|SIZE")]
    history_retention: pixchat::server::storage::archive::Retention,
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
    /// Seconds a connection may take to JOIN (or to AUTH on a server with
    /// a password) before it is closed, in both modes (0 = off).
    #[arg(long, default_value_t = pixchat::DEFAULT_JOIN_TIMEOUT_SECS, value_name = "SECS")]
    join_timeout: u64,
    /// Milliseconds the reply to a failed AUTH is held back; it doubles
    /// with each failure of the connection or its address, up to 8 s.
    #[arg(long, default_value_t = pixchat::DEFAULT_AUTH_DELAY_MS, value_name = "MS")]
    auth_delay_ms: u64,
    /// Failed AUTHs after which the connection is closed (0 = never;
    /// at most 255).
    #[arg(long, default_value_t = pixchat::DEFAULT_MAX_AUTH_FAILURES, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=255))]
    max_auth_failures: u32,
    /// What --rate-limit and --cooldown-ms count by: name (the rate per
    /// connection, the cooldown per user name), addr (both per client
    /// address, IPv6 by /64, so reconnecting or a fresh name changes
    /// nothing) or both.
    #[arg(long, value_enum, default_value_t = LimitByArg::Name)]
    limit_by: LimitByArg,
    /// Password clients must give with `AUTH` before anything else (on
    /// the command line it shows in `ps`: prefer --password-file or the
    /// environment).
    #[arg(long)]
    password: Option<String>,
    /// Read the password from this file (its first line).
    #[arg(long, value_name = "FILE", conflicts_with = "password")]
    password_file: Option<PathBuf>,
    /// Password that grants `KICK`, `BAN`, `UNBAN` and `BANS` (after `AUTH`).
    #[arg(long)]
    admin_password: Option<String>,
    /// Read the admin password from this file (its first line).
    #[arg(long, value_name = "FILE", conflicts_with = "admin_password")]
    admin_password_file: Option<PathBuf>,
    /// Log lines as text or as one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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
    /// In a cluster, keep the history archive in --data-dir from the
    /// stream (as a standalone server does from its journal), so `export`
    /// and `WHOSE x y n` work on this server; --history-retention applies.
    #[arg(long, requires = "redis", conflicts_with_all = ["memory", "no_archive"])]
    archive: bool,
    /// Users online from which joins and leaves go out as one periodic
    /// PRESENCE event (count and names) instead of one JOINED or LEFT each.
    #[arg(long, default_value_t = pixchat::DEFAULT_PRESENCE_THRESHOLD, value_name = "N")]
    presence_threshold: usize,
    /// Milliseconds between two PRESENCE events.
    #[arg(long, default_value_t = pixchat::DEFAULT_PRESENCE_INTERVAL_MS, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..))]
    presence_interval_ms: u64,
    /// Let the page on the --http listener join with a name, place pixels
    /// and chat (under the same limits as any client); without it the page
    /// only watches.
    #[arg(long)]
    http_play: bool,
    /// An origin (`https://canvas.example.org`) whose pages may open the
    /// --http listener's WebSocket besides the listener's own host; `*`
    /// allows any. May be given several times.
    #[arg(long, value_name = "ORIGIN")]
    http_origin: Vec<String>,
}

/// `--limit-by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LimitByArg {
    /// The rate per connection, the cooldown per user name.
    Name,
    /// Both per client address (IPv6 by /64).
    Addr,
    /// Per connection and address, per name and address.
    Both,
}

impl From<LimitByArg> for pixchat::LimitBy {
    fn from(by: LimitByArg) -> Self {
        match by {
            LimitByArg::Name => pixchat::LimitBy::Name,
            LimitByArg::Addr => pixchat::LimitBy::Addr,
            LimitByArg::Both => pixchat::LimitBy::Both,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One line of text per event (colours on a terminal).
    Text,
    /// One JSON object per line, with the connection's span (peer, name).
    Json,
}

/// `--fsync` takes the policy names the library defines.
fn fsync_parser() -> impl clap::builder::TypedValueParser<Value = Fsync> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Fsync::ALL.map(|(name, _)| name))
        .map(|name| name.parse::<Fsync>().expect("a listed policy"))
}

/// Offline tools for the data directory (run them while no server uses
/// it), and the shell completions and man page.
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
    /// Export the history (the archive and the journal) of a data
    /// directory: placements as CSV, the canvas at any moment as a PNG, a
    /// timelapse as GIF or APNG. Reads only; a running server's directory
    /// may be exported.
    Export(ExportArgs),
    /// Print the completion script for a shell (bash: save it as
    /// /usr/share/bash-completion/completions/pixchat-server).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `pixchat-server man > pixchat-server.1`.
    Man,
}

/// What `export` writes; at least one of `--csv`, `--png`, `--timelapse`.
#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// The data directory to read.
    #[arg(long, visible_alias = "data", default_value = pixchat::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Write every placement as CSV (r/place 2022's columns: timestamp,
    /// user (the name), pixel_color (#RRGGBB), coordinate ("x,y")).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// CSV: the first placement, a seq or a time (RFC 3339, or @UNIX_MS).
    #[arg(long, value_name = "SEQ|TIME", requires = "csv")]
    from: Option<pixchat::server::export::Point>,
    /// CSV: the last placement, a seq or a time.
    #[arg(long, value_name = "SEQ|TIME", requires = "csv")]
    to: Option<pixchat::server::export::Point>,
    /// CSV: write each user as a keyed hash (hex SHA-256 of a salt and
    /// the lower-cased name) instead of the name, like r/place's hashed
    /// user ids; the same user has the same hash throughout the file.
    #[arg(long, requires = "csv")]
    anonymize: bool,
    /// --anonymize: the salt (any text), to get the same hashes as an
    /// earlier export [default: a random one, printed on stderr].
    #[arg(long, value_name = "TEXT", requires = "anonymize")]
    salt: Option<String>,
    /// Write the canvas as an indexed PNG.
    #[arg(long, value_name = "FILE")]
    png: Option<PathBuf>,
    /// PNG: the canvas after this seq or time [default: the latest].
    #[arg(long, value_name = "SEQ|TIME", requires = "png")]
    at: Option<pixchat::server::export::Point>,
    /// Write a timelapse: .gif, or .png for an animated PNG.
    #[arg(long, value_name = "FILE")]
    timelapse: Option<PathBuf>,
    /// Timelapse: one frame every N placements (and one at the end).
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    every: u64,
    /// Timelapse: frames per second.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
    fps: u16,
    /// PNG and timelapse: each canvas pixel becomes N x N image pixels.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    scale: u32,
}

/// Runs `export`: prints one line per file written.
fn run_export(args: ExportArgs) -> anyhow::Result<()> {
    use pixchat::server::export;
    if args.csv.is_none() && args.png.is_none() && args.timelapse.is_none() {
        anyhow::bail!("export needs --csv, --png or --timelapse");
    }
    let started = std::time::Instant::now();
    let history = export::read(&args.data_dir)?;
    println!(
        "found {} placements (seq {}-{}) in {:.2} s",
        history.len(),
        history.first_seq().unwrap_or(0),
        history.last_seq(),
        started.elapsed().as_secs_f64()
    );
    // Say where a trimmed history starts, so nobody takes a partial CSV
    // for the whole story.
    if let Some(first) = history.first_seq().filter(|&f| f > 1) {
        eprintln!(
            "note: the history held starts at seq {first}: placements 1-{} were removed by \
             --history-retention (or predate the archive); the CSV is complete from seq {first}",
            first - 1
        );
    }
    // And where seqs are missing after it (a cluster server's archive that
    // the stream had been trimmed past): pictures after a gap lack them.
    let gaps = history.gaps()?;
    if !gaps.is_empty() {
        let shown: Vec<String> = gaps
            .iter()
            .take(10)
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        let more = if gaps.len() > 10 { " ..." } else { "" };
        tracing::warn!(
            missing = gaps.iter().map(|(a, b)| b - a + 1).sum::<u64>(),
            seqs = %format!("{}{more}", shown.join(", ")),
            "the history is not complete: a cluster server's archive that the stream had been trimmed past (the CSV lacks these rows, pictures after them lack their pixels)"
        );
    }
    if let Some(path) = &args.csv {
        let t = std::time::Instant::now();
        let f =
            std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
        let users = match (args.anonymize, &args.salt) {
            (false, _) => export::Users::Clear,
            (true, Some(salt)) => export::Users::Hashed {
                salt: salt.as_bytes().to_vec(),
            },
            (true, None) => {
                let salt = export::Users::random_salt();
                eprintln!(
                    "users anonymized with the salt {salt} (--salt {salt} gives the same hashes)"
                );
                export::Users::Hashed {
                    salt: salt.into_bytes(),
                }
            }
        };
        let rows = export::csv(&history, f, args.from, args.to, &users)?;
        println!(
            "{}: {rows} placements in {:.2} s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
    if let Some(path) = &args.png {
        let t = std::time::Instant::now();
        let seq = export::png(&history, path, args.at, args.scale)?;
        println!(
            "{}: the canvas at seq {seq} in {:.2} s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
    if let Some(path) = &args.timelapse {
        let t = std::time::Instant::now();
        let frames = export::timelapse(&history, path, args.every, args.scale, args.fps)?;
        println!(
            "{}: {frames} frames in {:.2} s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The flags, each also read from `PIXCHAT_<FLAG>` (`--max-clients`:
/// `PIXCHAT_MAX_CLIENTS`): done here once rather than per flag, so a flag
/// added later gets its variable too. Values of secrets are never shown.
fn command() -> clap::Command {
    fn with_env(arg: clap::Arg) -> clap::Arg {
        let id = arg.get_id().as_str();
        if arg.is_positional() || matches!(id, "help" | "version") || arg.get_env().is_some() {
            return arg;
        }
        let secret = id.contains("password");
        let var = format!("PIXCHAT_{}", id.to_ascii_uppercase());
        let arg = arg.env(var).hide_env_values(secret);
        // A switch from the environment: PIXCHAT_MEMORY=true, 1, yes, on.
        if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
            arg.value_parser(clap::builder::BoolishValueParser::new())
        } else {
            arg
        }
    }
    Cli::command()
        .mut_args(with_env)
        .mut_subcommands(|tool| tool.mut_args(with_env))
}

/// Parses the command line and the environment; exits with clap's message
/// on a mistake.
fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command()).exit())
}

/// A password from the flag (or its variable), or from the first line of
/// its file.
fn secret(value: Option<String>, file: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    let value = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read the password file {}", path.display()))?;
            let first = text.lines().next().unwrap_or_default();
            // An empty file is a mistake, not a wish for an open server.
            anyhow::ensure!(
                !first.is_empty(),
                "the password file {} is empty",
                path.display()
            );
            Some(first.to_string())
        }
        None => value,
    };
    Ok(value.filter(|p| !p.is_empty()))
}

/// Runs `check` or `repair` and exits with its verdict.
fn run_tool(tool: Tool) -> anyhow::Result<()> {
    let (lines, ok) = match tool {
        Tool::Export(args) => return run_export(args),
        Tool::Check { data_dir } => {
            let report = pixchat::server::storage::recovery::check(&data_dir)?;
            (report.lines, report.startable)
        }
        Tool::Repair { data_dir } => {
            let report = pixchat::server::storage::recovery::repair(&data_dir)?;
            (report.lines, report.startable)
        }
        Tool::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut command(),
                "pixchat-server",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Tool::Man => {
            clap_mangen::Man::new(command())
                .render(&mut std::io::stdout())
                .context("write the man page")?;
            return Ok(());
        }
    };
    for line in lines {
        println!("{line}");
    }
    std::process::exit(if ok { 0 } else { 1 });
}

/// Logs to standard error, as text or JSON; `RUST_LOG` filters.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(short_slice)
        .build()
        .context("start the runtime")?
        .block_on(serve())
}

/// Asks the kernel (Linux 6.12 and later, EEVDF) for a short time slice for
/// the calling thread, keeping its policy and nice value.
///
/// The runtime's workers answer commands: a `JOIN` wakes one, and with the
/// default slice (1.4 ms on two cores) it waits for the fan-out pacers or
/// another process on its core to use up theirs. A thread with a shorter
/// slice than the one running preempts it on wake-up; it gets no more CPU
/// time than before, only sooner. Older kernels ignore the field, and
/// nothing here is needed for correctness, so failures are ignored.
///
/// Hand-written: no maintained crate wraps `sched_setattr`'s slice.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn short_slice() {
    // struct sched_attr (include/uapi/linux/sched/types.h), version 0.
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    const SLICE_NS: u64 = 100_000; // the kernel's shortest
    const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: the syscalls read and write only `attr`, of the size given.
    unsafe {
        if libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        ) != 0
        {
            return;
        }
        // A real-time policy or a raised priority is the operator's choice:
        // leave it (and the threads these start) alone.
        let fair =
            attr.policy == libc::SCHED_OTHER as u32 || attr.policy == libc::SCHED_BATCH as u32;
        if !fair || attr.nice < 0 {
            return;
        }
        attr.size = size;
        attr.runtime = SLICE_NS;
        // Threads these start (the fan-out pacers) keep the default slice.
        attr.flags |= SCHED_FLAG_RESET_ON_FORK;
        libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0);
    }
}

#[cfg(not(target_os = "linux"))]
fn short_slice() {}

async fn serve() -> anyhow::Result<()> {
    let cli = parse();
    init_logging(cli.log_format);
    if let Some(tool) = cli.command {
        return run_tool(tool);
    }
    let password = secret(cli.password, cli.password_file.as_ref())?;
    let admin_password = secret(cli.admin_password, cli.admin_password_file.as_ref())?;
    // Every client is a file descriptor; the usual soft limit of 1024 would
    // cap the server long before --max-clients. Raise it to the hard limit,
    // and the hard limit too where we may (as root), as Redis does.
    raise_open_file_limit(cli.max_clients as u64 + 1024);
    let mut config = pixchat::Config {
        width: cli.width,
        height: cli.height,
        max_clients: cli.max_clients,
        history: cli.history,
        memory_history: cli.memory_history,
        cluster: cli.redis.clone().map(|url| ClusterConfig {
            url,
            prefix: cli.redis_prefix.clone(),
            stream_len: pixchat::DEFAULT_STREAM_LEN,
            lease: Duration::from_millis(cli.lease_ms),
            wait_replicas: cli.redis_wait,
            archive: cli.archive.then(|| ArchiveConfig {
                dir: cli.data_dir.clone(),
                retention: cli.history_retention,
            }),
        }),
        storage: (!cli.memory && cli.redis.is_none()).then(|| StorageConfig {
            fsync: cli.fsync,
            new_canvas: cli.new_canvas,
            compact_after: cli.compact_after,
            archive: !cli.no_archive,
            retention: cli.history_retention,
            ..StorageConfig::new(cli.data_dir.clone())
        }),
        limits: pixchat::server::Limits {
            cooldown: Duration::from_millis(cli.cooldown_ms),
            rate_limit: cli.rate_limit,
            rate_burst: cli.rate_burst.unwrap_or(cli.rate_limit),
            max_conns_per_ip: cli.max_conns_per_ip,
            idle_timeout: Duration::from_secs(cli.idle_timeout),
            join_timeout: Duration::from_secs(cli.join_timeout),
            auth_delay: Duration::from_millis(cli.auth_delay_ms),
            max_auth_failures: cli.max_auth_failures,
            limit_by: cli.limit_by.into(),
            ..Default::default()
        },
        password,
        admin_password,
        presence: pixchat::PresenceConfig {
            threshold: cli.presence_threshold,
            interval: Duration::from_millis(cli.presence_interval_ms),
        },
        web: pixchat::server::web::WebConfig {
            play: cli.http_play,
            origins: cli.http_origin,
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
    if let Some(url) = &cli.redis {
        tracing::info!(redis = %redacted_url(url), "cluster mode");
    }
    // Under systemd (Type=notify) the unit is started once the canvas is
    // loaded and the port accepts; elsewhere NOTIFY_SOCKET is unset and
    // this does nothing.
    let ready = std::sync::Arc::new(tokio::sync::Notify::new());
    config.ready = Some(ready.clone());
    tokio::spawn(async move {
        ready.notified().await;
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "could not tell systemd the server is ready");
        }
    });
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
