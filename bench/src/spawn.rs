//! Servers the bench starts for itself: `pixchat-server` and `redis-server`,
//! each on a free loopback port, in a fresh temporary directory as its
//! working directory (so nothing is written into the user's directory), and
//! stopped by pid when the guard is dropped: after a run, on an error, or
//! when Ctrl-C ends the bench. Starting and stopping is `pixchat-harness`,
//! the spawner the integration tests use too.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use pixchat_harness::{Pixchat, Redis, RedisProcess, ServerProcess};

use super::Endpoint;

/// Log lines shown to explain a failure.
const LOG_LINES: usize = 20;

/// A server this bench started; dropping it stops it (SIGTERM, then
/// SIGKILL after a grace period).
#[derive(Debug)]
pub enum Server {
    /// A `pixchat-server`.
    Pixchat(ServerProcess),
    /// A `redis-server` loaded as the target.
    Redis(RedisProcess),
}

impl Server {
    /// Starts `pixchat-server` from `bin` on a free loopback port with the
    /// given extra flags, and waits for its `listening addr=` log line.
    pub fn start_pixchat(bin: &Path, args: &[String]) -> anyhow::Result<ServerProcess> {
        Pixchat::new(bin)
            .args(args)
            .in_temp_dir()
            .start()
            .context("start pixchat-server")
    }

    /// Starts `redis-server` from `bin` on a free loopback port without
    /// persistence, as a child (not daemonized) so it can be stopped by
    /// pid; waits until it answers `PING`.
    pub fn start_redis(
        bin: &Path,
        max_clients: usize,
        args: &[String],
    ) -> anyhow::Result<RedisProcess> {
        Redis::new(bin)
            .args(["--save", "", "--appendonly", "no"])
            .args(["--maxclients".to_string(), max_clients.to_string()])
            .args(args)
            .start()
            .context("start redis-server")
    }

    /// The endpoint to load, with the pid for CPU and memory readings.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Server::Pixchat(s) => Endpoint {
                addr: s.addr(),
                pid: Some(s.pid()),
            },
            Server::Redis(r) => Endpoint {
                addr: r.addr(),
                pid: r.pid(),
            },
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Server::Pixchat(_) => "pixchat-server",
            Server::Redis(_) => "redis-server",
        }
    }

    fn recent_log(&self) -> String {
        match self {
            Server::Pixchat(s) => s.recent_log(LOG_LINES),
            Server::Redis(r) => r.recent_log(LOG_LINES),
        }
    }

    fn terminate(&self) {
        match self {
            Server::Pixchat(s) => s.terminate(),
            Server::Redis(r) => r.terminate(),
        }
    }
}

/// The servers the bench started for one run; dropping it stops them all,
/// the pixchat servers before the Redis they share (stopping Redis first
/// would leave them retrying it while they shut down).
#[derive(Debug, Default)]
pub struct Started {
    /// pixchat servers (or one Redis loaded as the target), in start order.
    pub servers: Vec<Server>,
    /// The Redis that clustered pixchat servers share.
    pub redis: Option<RedisProcess>,
}

impl Started {
    /// The last lines each of them logged, labelled.
    pub fn recent_logs(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.servers.iter().enumerate() {
            let log = s.recent_log();
            if !log.is_empty() {
                let pid = s.endpoint().pid.unwrap_or(0);
                out.push_str(&format!("--- {} {i} (pid {pid}):\n{log}\n", s.name()));
            }
        }
        if let Some(r) = &self.redis {
            let log = r.recent_log(LOG_LINES);
            if !log.is_empty() {
                let pid = r.pid().unwrap_or(0);
                out.push_str(&format!("--- cluster redis-server (pid {pid}):\n{log}\n"));
            }
        }
        out
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        // SIGTERM to every server first, so they shut down side by side
        // rather than one after another; dropping each then waits for it.
        for s in &self.servers {
            s.terminate();
        }
        self.servers.clear();
        self.redis.take();
    }
}

/// The `pixchat-server` binary: `explicit`, or the one next to this
/// executable (cargo builds both into the same directory).
pub fn pixchat_server_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let me = std::env::current_exe().context("find this executable")?;
    let bin = me.with_file_name(format!("pixchat-server{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        bail!(
            "{} not found; build it next to the bench with `cargo build --release --bins`, \
             or pass --server-bin or --addr",
            bin.display()
        );
    }
    Ok(bin)
}

/// The `redis-server` binary: `explicit`, or the first on `PATH`.
pub fn redis_server_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    pixchat_harness::find_on_path("redis-server").context(
        "redis-server not found on PATH; install it (Debian/Ubuntu: `apt-get install redis-server`) \
         or pass --redis-bin or --redis-addr",
    )
}
