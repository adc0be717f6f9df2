//! Servers the bench starts for itself: `pixchat-server` and `redis-server`,
//! each on a free loopback port, in a fresh temporary directory as its
//! working directory (so nothing is written into the user's directory), and
//! stopped by pid when the guard is dropped: after a run, on an error, or
//! when Ctrl-C ends the bench.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Endpoint;

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Log lines kept to explain a failure.
const LOG_LINES: usize = 20;

/// A server process this bench started; dropping it stops the server.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    name: &'static str,
    log: Arc<Mutex<VecDeque<String>>>,
    dir: Option<tempfile::TempDir>,
    /// SIGTERM has been sent (once is enough).
    signalled: bool,
}

impl ServerProcess {
    /// The endpoint to load, with the pid for CPU and memory readings.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.addr,
            pid: Some(self.child.id()),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines it logged.
    pub fn recent_log(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Starts `pixchat-server` from `bin` on a free loopback port with the
    /// given extra flags, and waits for its `listening addr=` log line.
    pub fn start_pixchat(bin: &Path, args: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("pixchat-bench-")
            .tempdir()
            .context("create a temporary directory for the server")?;
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let (tx, rx) = mpsc::channel();
        let log = keep_log(child.stderr.take().expect("piped stderr"), move |line| {
            if let Some(rest) = line.split("listening addr=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("");
                let _ = tx.send(addr.parse::<SocketAddr>().ok());
            }
        });
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            name: "pixchat-server",
            log,
            dir: Some(dir),
            signalled: false,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(addr)) => {
                server.addr = addr;
                Ok(server)
            }
            Ok(None) => bail!("pixchat-server logged an unreadable address"),
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                bail!(
                    "pixchat-server did not start listening (exit status {status:?}); its log:\n{}",
                    server.recent_log()
                )
            }
        }
    }

    /// Starts `redis-server` from `bin` on a free loopback port, without
    /// persistence, as a child (not daemonized) so it can be stopped by pid;
    /// waits until it answers `PING`.
    pub fn start_redis(bin: &Path, max_clients: usize, args: &[String]) -> anyhow::Result<Self> {
        let mut last_err = None;
        // The port is free when we look and taken by Redis a moment later;
        // another process can slip in between, so try a few ports.
        for _ in 0..3 {
            match Self::try_start_redis(bin, max_clients, args) {
                Ok(s) => return Ok(s),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("tried at least once"))
    }

    fn try_start_redis(bin: &Path, max_clients: usize, args: &[String]) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("find a free port")?
            .port();
        let dir = tempfile::Builder::new()
            .prefix("pixchat-bench-redis-")
            .tempdir()
            .context("create a temporary directory for Redis")?;
        let mut child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--maxclients", &max_clients.to_string()])
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let log = keep_log(child.stdout.take().expect("piped stdout"), |_| {});
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            name: "redis-server",
            log,
            dir: Some(dir),
            signalled: false,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "redis-server exited ({status}); its log:\n{}",
                    server.recent_log()
                );
            }
            if redis_ping(server.addr).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "redis-server did not answer PING on {}; its log:\n{}",
            server.addr,
            server.recent_log()
        )
    }

    /// Stops the server: SIGTERM, then SIGKILL if it has not exited in time.
    pub fn stop(mut self) {
        self.terminate();
    }

    /// Sends SIGTERM, unless the process has exited: once it is reaped its
    /// pid may be reused by another process.
    fn signal_stop(&mut self) {
        if self.signalled {
            return;
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        self.signalled = true;
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        self.signal_stop();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "{} (pid {}) did not stop after SIGTERM; killing it",
            self.name,
            self.child.id()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.terminate();
        // Remove the directory only after the server is gone.
        drop(self.dir.take());
    }
}

/// The servers the bench started for one run; dropping it stops them all,
/// the pixchat servers before the Redis they share (stopping Redis first
/// would leave them retrying it while they shut down).
#[derive(Debug, Default)]
pub struct Started {
    /// pixchat servers (or one Redis loaded as the target), in start order.
    pub servers: Vec<ServerProcess>,
    /// The Redis that clustered pixchat servers share.
    pub redis: Option<ServerProcess>,
}

impl Started {
    /// The last lines each of them logged, labelled.
    pub fn recent_logs(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.servers.iter().enumerate() {
            let log = s.recent_log();
            if !log.is_empty() {
                out.push_str(&format!("--- {} {i} (pid {}):\n{log}\n", s.name, s.pid()));
            }
        }
        if let Some(r) = &self.redis {
            let log = r.recent_log();
            if !log.is_empty() {
                out.push_str(&format!(
                    "--- cluster {} (pid {}):\n{log}\n",
                    r.name,
                    r.pid()
                ));
            }
        }
        out
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        // SIGTERM to every pixchat server first, so they shut down side by
        // side rather than one after another; then wait for each.
        for s in &mut self.servers {
            s.signal_stop();
        }
        self.servers.clear();
        self.redis.take();
    }
}

/// Reads a child's log on a thread (so the child never blocks on a full
/// pipe), calls `on_line` for each line and keeps the last few.
fn keep_log(
    pipe: impl Read + Send + 'static,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> Arc<Mutex<VecDeque<String>>> {
    let log = Arc::new(Mutex::new(VecDeque::new()));
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            on_line(&line);
            let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() == LOG_LINES {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
    log
}

/// One `PING` over a fresh connection, with short timeouts.
fn redis_ping(addr: SocketAddr) -> anyhow::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut reply = [0u8; 7];
    s.read_exact(&mut reply)?;
    if &reply != b"+PONG\r\n" {
        bail!("unexpected PING reply");
    }
    Ok(())
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
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .context(
            "redis-server not found on PATH; install it (Debian/Ubuntu: `apt-get install redis-server`) \
             or pass --redis-bin or --redis-addr",
        )
}
