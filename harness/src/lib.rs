//! `pixchat-harness`: the one place that starts `pixchat-server` and
//! `redis-server` as child processes on loopback ports and stops them by
//! pid, shared by pixchat's integration tests and its load generator.
//!
//! - [`Pixchat`] builds a `pixchat-server` command line; [`Pixchat::start`]
//!   waits for the `listening addr=` log line and returns a
//!   [`ServerProcess`].
//! - [`Redis`] does the same for `redis-server`, which is ready once it
//!   answers `PING`; [`RedisProcess`] can be stopped and restarted on the
//!   same port and directory.
//!
//! Everything here is blocking (plain threads read the logs, so a child
//! never stalls on a full pipe); an async caller runs it on a blocking
//! thread. Every wait is bounded.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long a server may take to start listening (or answering `PING`).
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server gets to exit after SIGTERM when it is dropped.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Log lines kept per process; older ones are dropped.
pub const LOG_LINES: usize = 10_000;

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The binary could not be run.
    #[error("start {bin}: {error}")]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// A temporary directory could not be made.
    #[error("create a temporary directory: {0}")]
    TempDir(std::io::Error),
    /// It exited before it was ready.
    #[error("{name} exited before it was ready ({status}); its log:\n{log}")]
    Exited {
        /// Which server.
        name: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// Everything it logged.
        log: String,
    },
    /// It was not ready within [`START_TIMEOUT`] (it is killed).
    #[error("{name} was not ready within {START_TIMEOUT:?}; its log:\n{log}")]
    Timeout {
        /// Which server.
        name: &'static str,
        /// Everything it logged.
        log: String,
    },
}

impl StartError {
    /// The server's log, when it got as far as logging.
    pub fn log(&self) -> Option<&str> {
        match self {
            StartError::Exited { log, .. } | StartError::Timeout { log, .. } => Some(log),
            _ => None,
        }
    }
}

/// What dropping a [`ServerProcess`] or [`RedisProcess`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrop {
    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_GRACE`]:
    /// the server shuts down as it would for an operator.
    Terminate,
    /// SIGKILL at once: a test that forgets a server leaves nothing behind
    /// and waits for nothing.
    Kill,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself after SIGTERM (or had exited already).
    Exited(ExitStatus),
    /// It did not exit in time and was killed.
    Killed,
}

/// The lines a child logged, the last [`LOG_LINES`] of them.
#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<VecDeque<String>>>);

impl Log {
    /// Reads `pipe` on a thread, line by line, calling `on_line` for each.
    fn follow(
        pipe: impl Read + Send + 'static,
        mut on_line: impl FnMut(&str) + Send + 'static,
    ) -> Self {
        let log = Log::default();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                // Kept before `on_line` sees it, so whoever `on_line` wakes
                // finds the line already in the log.
                {
                    let mut kept = kept.0.lock().unwrap_or_else(|p| p.into_inner());
                    if kept.len() == LOG_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line.clone());
                }
                on_line(&line);
            }
        });
        log
    }

    fn last(&self, n: usize) -> String {
        let log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let skip = log.len().saturating_sub(n);
        log.iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A child process with its log, stopped by pid.
#[derive(Debug)]
struct Proc {
    child: Child,
    name: &'static str,
    log: Log,
    /// SIGTERM has been sent (once is enough).
    signalled: AtomicBool,
    /// It has been waited for: its pid may now belong to another process.
    reaped: bool,
}

impl Proc {
    fn new(child: Child, name: &'static str, log: Log) -> Self {
        Self {
            child,
            name,
            log,
            signalled: AtomicBool::new(false),
            reaped: false,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten();
        self.reaped |= status.is_some();
        status
    }

    /// Sends SIGTERM once, unless the process has been reaped (its pid may
    /// belong to another process then; an exited child that has not been
    /// waited for keeps its pid).
    fn terminate(&self) {
        if self.reaped || self.signalled.swap(true, Ordering::Relaxed) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }

    fn wait_for_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stop_within(&mut self, grace: Duration) -> Stopped {
        self.terminate();
        match self.wait_for_exit(grace) {
            Some(status) => Stopped::Exited(status),
            None => {
                self.kill();
                Stopped::Killed
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }

    fn drop_as(&mut self, how: OnDrop) {
        match how {
            OnDrop::Kill => self.kill(),
            OnDrop::Terminate => {
                if self.stop_within(STOP_GRACE) == Stopped::Killed {
                    eprintln!(
                        "{} (pid {}) did not stop within {STOP_GRACE:?} of SIGTERM; killed it",
                        self.name,
                        self.pid()
                    );
                }
            }
        }
    }
}

/// A `pixchat-server` to start: the binary and its flags.
#[derive(Debug, Clone)]
pub struct Pixchat {
    bin: PathBuf,
    listen: String,
    args: Vec<OsString>,
    /// `--http` address, when the HTTP listener is wanted.
    http: Option<String>,
    temp_dir: bool,
    on_drop: OnDrop,
}

impl Pixchat {
    /// `bin` listening on a free loopback port (`--listen 127.0.0.1:0`),
    /// in the caller's working directory, stopped with SIGTERM when dropped.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            listen: "127.0.0.1:0".into(),
            args: Vec::new(),
            http: None,
            temp_dir: false,
            on_drop: OnDrop::Terminate,
        }
    }

    /// Serves the operators' HTTP listener too (`--http ADDR`; port 0
    /// picks a free port): [`Pixchat::start`] then also waits for its
    /// `http listening addr=` line, and [`ServerProcess::http_addr`] gives
    /// it.
    pub fn http(mut self, addr: impl Into<String>) -> Self {
        self.http = Some(addr.into());
        self
    }

    /// Listens on `addr` instead (to restart a server on the same port).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Adds flags after `--listen`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs the server in a fresh temporary directory (removed once it has
    /// stopped), so its default `./pixchat-data` lands there.
    pub fn in_temp_dir(mut self) -> Self {
        self.temp_dir = true;
        self
    }

    /// What dropping the process does (default: [`OnDrop::Terminate`]).
    pub fn on_drop(mut self, how: OnDrop) -> Self {
        self.on_drop = how;
        self
    }

    /// Starts it and waits (up to [`START_TIMEOUT`]) for its `listening
    /// addr=` log line.
    pub fn start(&self) -> Result<ServerProcess, StartError> {
        let dir = if self.temp_dir {
            let dir = tempfile::Builder::new()
                .prefix("pixchat-server-")
                .tempdir()
                .map_err(StartError::TempDir)?;
            Some(dir)
        } else {
            None
        };
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--listen", &self.listen]);
        if let Some(http) = &self.http {
            cmd.args(["--http", http]);
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(dir) = &dir {
            cmd.current_dir(dir.path());
        }
        let mut child = cmd.spawn().map_err(|error| StartError::Spawn {
            bin: self.bin.clone(),
            error,
        })?;
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Log::follow(stderr, move |line| {
            if let Some(rest) = line.split("listening addr=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("");
                let http = line.contains("http listening addr=");
                let _ = tx.send((http, addr.parse::<SocketAddr>().ok()));
            }
        });
        let mut proc = Proc::new(child, "pixchat-server", log);
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut addr, mut http_addr) = (None, None);
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok((is_http, Some(got))) => {
                    if is_http {
                        http_addr = Some(got);
                    } else {
                        addr = Some(got);
                    }
                    if let Some(addr) = addr
                        && (self.http.is_none() || http_addr.is_some())
                    {
                        return Ok(ServerProcess {
                            proc,
                            addr,
                            http_addr,
                            dir,
                            on_drop: self.on_drop,
                        });
                    }
                }
                Ok((_, None)) => {
                    proc.kill();
                    return Err(StartError::Timeout {
                        name: proc.name,
                        log: format!("(an unreadable address)\n{}", proc.log.last(LOG_LINES)),
                    });
                }
                Err(_) => {}
            }
            if let Some(status) = proc.exited() {
                // The reader thread may still hold the last lines: give it
                // a moment to reach the end of the pipe.
                std::thread::sleep(Duration::from_millis(50));
                return Err(StartError::Exited {
                    name: proc.name,
                    status,
                    log: proc.log.last(LOG_LINES),
                });
            }
            if Instant::now() >= deadline {
                proc.kill();
                return Err(StartError::Timeout {
                    name: proc.name,
                    log: proc.log.last(LOG_LINES),
                });
            }
        }
    }
}

/// A running `pixchat-server`; dropping it stops it as its [`OnDrop`] says.
#[derive(Debug)]
pub struct ServerProcess {
    proc: Proc,
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    dir: Option<tempfile::TempDir>,
    on_drop: OnDrop,
}

impl ServerProcess {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where its HTTP listener listens, when started with [`Pixchat::http`].
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Its process id (for CPU and memory readings).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its working directory, when it runs in a temporary one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// Everything it logged so far (the last [`LOG_LINES`] lines).
    pub fn log_text(&self) -> String {
        self.proc.log.last(LOG_LINES)
    }

    /// Its last `n` log lines.
    pub fn recent_log(&self, n: usize) -> String {
        self.proc.log.last(n)
    }

    /// Sends SIGTERM (once) without waiting.
    pub fn terminate(&self) {
        self.proc.terminate();
    }

    /// Waits up to `within` for it to exit.
    pub fn wait_for_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        self.proc.wait_for_exit(within)
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop_within(mut self, grace: Duration) -> Stopped {
        self.proc.stop_within(grace)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        self.proc.kill();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.proc.drop_as(self.on_drop);
        // The directory goes only once the server is gone.
        drop(self.dir.take());
    }
}

/// A `redis-server` to start: the binary, flags, port and directory.
#[derive(Debug, Clone)]
pub struct Redis {
    bin: PathBuf,
    port: Option<u16>,
    dir: Option<PathBuf>,
    args: Vec<OsString>,
    /// Given after `args`, and replaceable between restarts.
    extra: Vec<OsString>,
    on_drop: OnDrop,
}

impl Redis {
    /// `bin` on a free loopback port, in a fresh temporary directory,
    /// stopped with SIGTERM when dropped. Only `--port`, `--bind 127.0.0.1`
    /// and `--daemonize no` are given: persistence is the caller's choice.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            port: None,
            dir: None,
            args: Vec::new(),
            extra: Vec::new(),
            on_drop: OnDrop::Terminate,
        }
    }

    /// Adds flags.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds flags given after the others, which
    /// [`RedisProcess::set_extra_args`] can replace between restarts.
    pub fn extra_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra.extend(args.into_iter().map(Into::into));
        self
    }

    /// Keeps its files in `dir` (given as `--dir`), which the caller owns.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// What dropping the process does (default: [`OnDrop::Terminate`]).
    pub fn on_drop(mut self, how: OnDrop) -> Self {
        self.on_drop = how;
        self
    }

    /// Starts it and waits (up to [`START_TIMEOUT`]) until it answers
    /// `PING`. A free port is picked first and taken by Redis a moment
    /// later; another process can slip in between, so a start that fails
    /// is tried on up to three ports.
    pub fn start(&self) -> Result<RedisProcess, StartError> {
        let mut last = None;
        for _ in 0..3 {
            let port = match free_port() {
                Ok(p) => p,
                Err(e) => return Err(StartError::TempDir(e)),
            };
            let spec = Redis {
                port: Some(port),
                ..self.clone()
            };
            let mut r = RedisProcess {
                proc: None,
                spec,
                temp: None,
            };
            if r.spec.dir.is_none() {
                let dir = tempfile::Builder::new()
                    .prefix("pixchat-redis-")
                    .tempdir()
                    .map_err(StartError::TempDir)?;
                r.temp = Some(dir);
            }
            match r.restart() {
                Ok(()) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried at least once"))
    }
}

/// A `redis-server` this process started; dropping it stops it as its
/// [`OnDrop`] says.
#[derive(Debug)]
pub struct RedisProcess {
    proc: Option<Proc>,
    spec: Redis,
    temp: Option<tempfile::TempDir>,
}

impl RedisProcess {
    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.spec.port.expect("a started Redis has a port")
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        match (&self.spec.dir, &self.temp) {
            (Some(d), _) => d,
            (None, Some(t)) => t.path(),
            (None, None) => Path::new("."),
        }
    }

    /// Its last `n` log lines.
    pub fn recent_log(&self, n: usize) -> String {
        self.proc
            .as_ref()
            .map(|p| p.log.last(n))
            .unwrap_or_default()
    }

    /// Sends SIGTERM (once) without waiting.
    pub fn terminate(&self) {
        if let Some(p) = &self.proc {
            p.terminate();
        }
    }

    /// SIGTERM (Redis writes what its persistence settings say), then
    /// SIGKILL if it has not exited within `grace`; it can be restarted.
    pub fn stop_within(&mut self, grace: Duration) -> Option<Stopped> {
        self.proc.take().map(|mut p| p.stop_within(grace))
    }

    /// SIGKILL, as a crash: nothing is flushed. It can be restarted.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Replaces the flags given after the others from the next
    /// [`RedisProcess::restart`] on, such as `--replicaof <host> <port>`.
    pub fn set_extra_args<I, S>(&mut self, args: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.spec.extra = args.into_iter().map(Into::into).collect();
    }

    /// Starts it (again) on the same port and directory, and waits until it
    /// answers `PING`.
    pub fn restart(&mut self) -> Result<(), StartError> {
        if let Some(mut old) = self.proc.take() {
            old.drop_as(self.spec.on_drop);
        }
        let port = self.port();
        let dir = self.dir().to_path_buf();
        let mut child = Command::new(&self.spec.bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--daemonize", "no", "--dir"])
            .arg(&dir)
            .args(&self.spec.args)
            .args(&self.spec.extra)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| StartError::Spawn {
                bin: self.spec.bin.clone(),
                error,
            })?;
        let log = Log::follow(child.stdout.take().expect("stdout is piped"), |_| {});
        let mut proc = Proc::new(child, "redis-server", log);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = proc.exited() {
                return Err(StartError::Exited {
                    name: proc.name,
                    status,
                    log: proc.log.last(LOG_LINES),
                });
            }
            if ping(self.addr()) {
                self.proc = Some(proc);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        proc.kill();
        Err(StartError::Timeout {
            name: proc.name,
            log: proc.log.last(LOG_LINES),
        })
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.drop_as(self.spec.on_drop);
        }
        // The directory goes only once Redis is gone.
        drop(self.temp.take());
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One `PING` over a fresh connection, with short timeouts.
fn ping(addr: SocketAddr) -> bool {
    let answer = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply)?;
        Ok(&reply == b"+PONG\r\n")
    };
    answer().unwrap_or(false)
}

/// The first `name` on `PATH` that is a file.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_that_is_not_there_is_a_spawn_error() {
        let err = Pixchat::new("/nonexistent/pixchat-server")
            .start()
            .unwrap_err();
        assert!(matches!(err, StartError::Spawn { .. }), "{err}");
    }

    #[test]
    fn a_server_that_exits_at_once_is_an_exit_error() {
        match Pixchat::new("/bin/false").start() {
            Err(StartError::Exited { status, .. }) => assert!(!status.success()),
            other => panic!("expected an early exit, got {other:?}"),
        }
    }

    #[test]
    fn a_fake_server_is_found_by_its_log_line_and_stopped() {
        let script = std::env::temp_dir().join(format!("harness-ok-{}.sh", std::process::id()));
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'INFO listening addr=127.0.0.1:4242' >&2\nexec sleep 30\n",
        )
        .unwrap();
        let mut perms = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&script, perms).unwrap();
        let server = Pixchat::new(&script).in_temp_dir().start().unwrap();
        let _ = std::fs::remove_file(&script);
        assert_eq!(server.addr().port(), 4242);
        assert!(server.log_text().contains("listening"));
        let dir = server.dir().unwrap().to_path_buf();
        let pid = server.pid();
        assert!(matches!(
            server.stop_within(Duration::from_secs(5)),
            Stopped::Exited(_)
        ));
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        assert!(!dir.exists(), "the temporary directory is removed");
    }
}
