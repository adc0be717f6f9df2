//! Shared test helpers: a real server on `127.0.0.1:0`, and text and binary
//! clients over real TCP whose every wait is bounded by a timeout.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pixchat::protocol::binary::ClientCodec;
use pixchat::protocol::{Command, Event, PROTOCOL_VERSION, Reply, ServerMsg};
use pixchat::server::storage::{Fsync, StorageConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// How long any single expected message may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server running in this test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub token: CancellationToken,
    pub handle: Option<JoinHandle<anyhow::Result<()>>>,
    /// The data directory, removed when the server is dropped.
    pub data: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Cancels the server and waits for `run` to return.
    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(WAIT, h)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server result");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Starts a server with `config` on a free loopback port. Without storage
/// in `config`, it gets a fresh temporary data directory with the default
/// fsync policy, so tests exercise the durable path the binary uses.
pub async fn start_server(config: pixchat::Config) -> TestServer {
    if config.storage.is_some() {
        return start_as_given(config, None).await;
    }
    start_durable(config, Fsync::Batch).await
}

/// Like [`start_server`], with a fresh data directory and `fsync`.
pub async fn start_durable(mut config: pixchat::Config, fsync: Fsync) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    config.storage = Some(StorageConfig {
        fsync,
        ..StorageConfig::new(dir.path())
    });
    start_as_given(config, Some(dir)).await
}

/// Starts a server that keeps nothing on disk (`--memory`).
pub async fn start_memory(mut config: pixchat::Config) -> TestServer {
    config.storage = None;
    start_as_given(config, None).await
}

async fn start_as_given(config: pixchat::Config, data: Option<tempfile::TempDir>) -> TestServer {
    let listener = pixchat::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let handle = tokio::spawn(pixchat::run(listener, config, token.clone()));
    TestServer {
        addr,
        token,
        handle: Some(handle),
        data,
    }
}

/// A server with default settings.
pub async fn start_default() -> TestServer {
    start_server(pixchat::Config::default()).await
}

/// A `pixchat-server` child process (the real binary), started and stopped
/// by `pixchat-harness` (the bench's spawner too); killed if dropped.
pub struct ServerProcess {
    pub addr: SocketAddr,
    inner: pixchat_harness::ServerProcess,
}

impl ServerProcess {
    /// Starts the binary on a free port with its data in `dir`.
    pub async fn start(dir: &std::path::Path, args: &[&str]) -> ServerProcess {
        Self::try_start(dir, args).await.expect("server starts")
    }

    /// Starts the binary and reads its address from the `listening addr=`
    /// log line; `Err` carries its log if it exits instead.
    pub async fn try_start(dir: &std::path::Path, args: &[&str]) -> Result<ServerProcess, String> {
        Self::try_start_on("127.0.0.1:0", dir, args).await
    }

    /// Like [`ServerProcess::start`] on a given address (to restart a
    /// server on the same port).
    pub async fn start_on(listen: &str, dir: &std::path::Path, args: &[&str]) -> ServerProcess {
        Self::try_start_on(listen, dir, args)
            .await
            .expect("server starts")
    }

    async fn try_start_on(
        listen: &str,
        dir: &std::path::Path,
        args: &[&str],
    ) -> Result<ServerProcess, String> {
        let spec = pixchat_harness::Pixchat::new(env!("CARGO_BIN_EXE_pixchat-server"))
            .listen(listen)
            .args([std::ffi::OsStr::new("--data-dir"), dir.as_os_str()])
            .args(args)
            .on_drop(pixchat_harness::OnDrop::Kill);
        let started = tokio::task::spawn_blocking(move || spec.start())
            .await
            .expect("start task");
        match started {
            Ok(inner) => Ok(ServerProcess {
                addr: inner.addr(),
                inner,
            }),
            Err(pixchat_harness::StartError::Exited { log, .. }) => Err(log),
            Err(e) => panic!("{e}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    pub fn log_text(&self) -> String {
        self.inner.log_text()
    }

    /// Sends `signal` (a name `kill` knows: `STOP`, `CONT`, ...) without
    /// waiting. SIGSTOP freezes the process as a VM pause or a long stall
    /// would: its sockets stay open, nothing it owns moves.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGKILL: no chance to flush anything.
    pub async fn kill9(self) {
        let inner = self.inner;
        tokio::task::spawn_blocking(move || inner.kill())
            .await
            .expect("kill task");
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        self.inner.terminate();
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(self) {
        let inner = self.inner;
        let stopped = tokio::task::spawn_blocking(move || inner.stop_within(WAIT))
            .await
            .expect("stop task");
        match stopped {
            pixchat_harness::Stopped::Exited(status) => assert!(status.success(), "{status:?}"),
            pixchat_harness::Stopped::Killed => panic!("no exit within {WAIT:?} of SIGTERM"),
        }
    }
}

/// A netcat-like client speaking the text mode.
pub struct TextClient {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl TextClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (r, w) = stream.into_split();
        Self {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    /// Connects and joins as `name`, returning the `OK` line.
    pub async fn joined(addr: SocketAddr, name: &str) -> Self {
        let mut c = Self::connect(addr).await;
        let ok = c.cmd(&format!("JOIN {name}")).await;
        assert!(ok.starts_with(&format!("OK {name} ")), "join {name}: {ok}");
        c
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("send");
    }

    /// Sends one line (the `\n` is added).
    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    /// The next line, without its `\n`; `None` at end of stream.
    pub async fn try_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
            .await
            .expect("a line within the timeout")
            .expect("read");
        if n == 0 {
            return None;
        }
        assert!(line.ends_with('\n'), "unterminated line {line:?}");
        line.pop();
        Some(line)
    }

    /// The next line if one comes within `wait`.
    pub async fn try_line_within(&mut self, wait: Duration) -> Option<String> {
        let mut line = String::new();
        match tokio::time::timeout(wait, self.reader.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => {
                line.pop();
                Some(line)
            }
            _ => None,
        }
    }

    /// The next line; panics at end of stream.
    pub async fn line(&mut self) -> String {
        self.try_line().await.expect("connection still open")
    }

    /// Asserts the next line.
    pub async fn expect(&mut self, want: &str) {
        assert_eq!(self.line().await, want);
    }

    /// Sends a command and returns its reply line, skipping events.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.reply().await
    }

    /// The next line that is a reply (`OK ...` or `ERR ...`), skipping events.
    pub async fn reply(&mut self) -> String {
        loop {
            let l = self.line().await;
            if l.starts_with("OK") || l.starts_with("ERR ") {
                return l;
            }
        }
    }

    /// The next line starting with `prefix`, skipping others.
    pub async fn until(&mut self, prefix: &str) -> String {
        loop {
            let l = self.line().await;
            if l.starts_with(prefix) {
                return l;
            }
        }
    }

    /// Asserts the server closes the connection, allowing a few last lines.
    pub async fn expect_closed(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        loop {
            let mut line = String::new();
            match tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
                .await
                .expect("close within the timeout")
            {
                Ok(0) | Err(_) => return rest,
                Ok(_) => rest.push(line.trim_end().to_string()),
            }
            assert!(rest.len() < 100_000, "connection never closed");
        }
    }

    /// Fetches `CANVAS` and returns (seq, rows of palette indexes).
    pub async fn canvas(&mut self) -> (u64, Vec<Vec<u8>>) {
        self.send("CANVAS").await;
        read_canvas(self).await
    }
}

/// Reads a `CANVAS` answer: returns (seq, rows of palette indexes).
pub async fn read_canvas(c: &mut TextClient) -> (u64, Vec<Vec<u8>>) {
    let (_, seq, rows) = read_canvas_after_events(c).await;
    (seq, rows)
}

/// Reads a `CANVAS` answer that may be preceded by events: returns those
/// events' lines, the snapshot seq and the rows. Fails on an event between
/// rows.
pub async fn read_canvas_after_events(c: &mut TextClient) -> (Vec<String>, u64, Vec<Vec<u8>>) {
    let mut before = Vec::new();
    let mut rows: Vec<Vec<u8>> = Vec::new();
    loop {
        let l = c.line().await;
        if let Some(rest) = l.strip_prefix("ROW ") {
            let (y, hex) = rest.split_once(' ').expect("ROW y hex");
            assert_eq!(y.parse::<usize>().unwrap(), rows.len(), "rows in order");
            rows.push(
                hex.chars()
                    .map(|h| h.to_digit(16).expect("hex digit") as u8)
                    .collect(),
            );
        } else if let Some(rest) = l.strip_prefix("OK ") {
            let parts: Vec<u64> = rest.split(' ').map(|p| p.parse().unwrap()).collect();
            assert_eq!(parts[2] as usize, rows.len(), "height matches rows");
            assert!(rows.iter().all(|r| r.len() == parts[1] as usize));
            return (before, parts[0], rows);
        } else {
            assert!(!l.starts_with("ERR "), "CANVAS failed: {l}");
            assert!(rows.is_empty(), "event inside a canvas answer: {l}");
            before.push(l);
        }
    }
}

/// Parses `PIXEL <seq> <x> <y> <color> <name>`.
pub fn parse_pixel(line: &str) -> (u64, usize, usize, u8, String) {
    let p: Vec<&str> = line.split(' ').collect();
    assert_eq!(p[0], "PIXEL", "{line}");
    (
        p[1].parse().unwrap(),
        p[2].parse().unwrap(),
        p[3].parse().unwrap(),
        p[4].parse().unwrap(),
        p[5].to_string(),
    )
}

/// A binary-mode client over the library's codec.
pub struct BinClient {
    pub framed: Framed<TcpStream, ClientCodec>,
}

impl BinClient {
    /// Connects and says hello.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut c = Self {
            framed: Framed::new(stream, ClientCodec::default()),
        };
        match c
            .cmd(Command::Hello {
                version: PROTOCOL_VERSION,
            })
            .await
        {
            Reply::Hello(_) => {}
            other => panic!("hello answered {other:?}"),
        }
        c
    }

    pub async fn send(&mut self, cmd: Command) {
        self.framed.send(&cmd).await.expect("send");
    }

    /// The next message; `None` at end of stream.
    pub async fn try_next(&mut self) -> Option<ServerMsg> {
        tokio::time::timeout(WAIT, self.framed.next())
            .await
            .expect("a frame within the timeout")
            .map(|r| r.expect("valid frame"))
    }

    pub async fn next(&mut self) -> ServerMsg {
        self.try_next().await.expect("connection still open")
    }

    /// The next reply, skipping events.
    pub async fn reply(&mut self) -> Reply {
        loop {
            if let ServerMsg::Reply(r) = self.next().await {
                return r;
            }
        }
    }

    /// The next event, failing on a reply.
    pub async fn event(&mut self) -> Event {
        match self.next().await {
            ServerMsg::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    pub async fn cmd(&mut self, cmd: Command) -> Reply {
        self.send(cmd).await;
        self.reply().await
    }
}

/// A `redis-server` child process on a free loopback port, for the cluster
/// tests, started by `pixchat-harness`; stopped by its pid.
pub struct RedisProcess {
    pub port: u16,
    pub dir: std::path::PathBuf,
    /// Flags given on every (re)start, such as `--replicaof`.
    pub extra: Vec<String>,
    inner: pixchat_harness::RedisProcess,
}

/// A free loopback port (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    pixchat_harness::free_port().expect("a free loopback port")
}

/// Sends one inline command to a Redis (or Sentinel) on `port` and returns
/// the bulk strings of its reply (a simple reply or an integer as one
/// string, a nil as none); `None` if it does not answer in time.
pub async fn redis_query(port: u16, command: &str) -> Option<Vec<String>> {
    use tokio::io::AsyncReadExt;
    let ask = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(format!("{command}\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(parsed) = parse_resp(&buf) {
                return Some(parsed);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

/// Parses one whole RESP reply into its strings (nested arrays are
/// flattened); `None` while it is incomplete.
fn parse_resp(buf: &[u8]) -> Option<Vec<String>> {
    fn line(buf: &[u8], at: usize) -> Option<(&str, usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((std::str::from_utf8(&buf[at..end]).ok()?, end + 2))
    }
    fn one(buf: &[u8], at: usize, out: &mut Vec<String>) -> Option<usize> {
        let (l, next) = line(buf, at)?;
        let (kind, rest) = l.split_at(1);
        match kind {
            "+" | ":" | "-" => {
                out.push(rest.to_string());
                Some(next)
            }
            "$" if rest == "-1" => Some(next),
            "$" => {
                let n: usize = rest.parse().ok()?;
                if buf.len() < next + n + 2 {
                    return None;
                }
                out.push(String::from_utf8_lossy(&buf[next..next + n]).into_owned());
                Some(next + n + 2)
            }
            "*" if rest == "-1" => Some(next),
            "*" => {
                let mut at = next;
                for _ in 0..rest.parse::<usize>().ok()? {
                    at = one(buf, at, out)?;
                }
                Some(at)
            }
            _ => None,
        }
    }
    let mut out = Vec::new();
    one(buf, 0, &mut out)?;
    Some(out)
}

/// A Redis Sentinel (`redis-server --sentinel`, the same binary) watching
/// one master, on a free loopback port; stopped by its pid.
pub struct SentinelProcess {
    pub child: tokio::process::Child,
    pub port: u16,
}

impl SentinelProcess {
    /// Starts a Sentinel that watches the master on `master_port` as
    /// `name`, with quorum 1, and calls it down after 1 s of silence.
    pub async fn start(dir: &std::path::Path, master_port: u16, name: &str) -> SentinelProcess {
        let port = free_port();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = tokio::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server --sentinel");
        let sentinel = SentinelProcess { child, port };
        for _ in 0..200 {
            if sentinel.master(name).await.is_some() {
                return sentinel;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the Sentinel did not start on port {port}");
    }

    /// The port of the master the Sentinel names now.
    pub async fn master(&self, name: &str) -> Option<u16> {
        let reply = redis_query(
            self.port,
            &format!("SENTINEL get-master-addr-by-name {name}"),
        )
        .await?;
        reply.get(1)?.parse().ok()
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

impl RedisProcess {
    /// True when `redis-server` can be run. Under CI a missing Redis is a
    /// failure; elsewhere the caller skips loudly.
    pub fn available() -> bool {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            skip(
                "a cluster test",
                "redis-server is not installed (apt-get install redis-server)",
            );
        }
        found
    }

    /// Starts Redis with an append-only file fsynced on every write, keeping
    /// its files in `dir`, on a free port.
    pub async fn start(dir: &std::path::Path) -> RedisProcess {
        Self::start_with(dir, &[]).await
    }

    /// Like [`RedisProcess::start`] with more flags, e.g. a replica with
    /// `["--replicaof", "127.0.0.1", "<port>"]`.
    pub async fn start_with(dir: &std::path::Path, extra: &[&str]) -> RedisProcess {
        let spec = pixchat_harness::Redis::new("redis-server")
            .dir(dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--protected-mode", "no"])
            .extra_args(extra)
            .on_drop(pixchat_harness::OnDrop::Kill);
        let inner = tokio::task::spawn_blocking(move || spec.start())
            .await
            .expect("start task")
            .unwrap_or_else(|e| panic!("redis-server did not start: {e}"));
        RedisProcess {
            port: inner.port(),
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            inner,
        }
    }

    /// Starts (again) on the same port and directory, with `extra` as it
    /// is now.
    pub async fn restart(&mut self) {
        self.inner.set_extra_args(&self.extra);
        blocking(|| self.inner.restart())
            .unwrap_or_else(|e| panic!("redis-server did not restart: {e}"));
    }

    pub fn url(&self) -> String {
        self.inner.url()
    }

    /// SIGKILL, as a crash: no chance to flush or to hand over.
    pub async fn kill9(&mut self) {
        blocking(|| self.inner.kill());
    }

    /// SIGTERM (Redis flushes its append-only file) and waits for the exit.
    pub async fn stop(&mut self) {
        blocking(|| self.inner.stop_within(WAIT));
    }
}

/// Runs a short blocking call (a process start or stop) without stalling
/// the other tasks of a multi-threaded test runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Asks `probe` every `every` until `done` holds for its answer, for at
/// most `limit`, and returns the last answer either way: the caller
/// asserts on it, so a test that times out shows what it last saw.
pub async fn poll_until<T>(
    limit: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let seen = probe().await;
        if done(&seen) || tokio::time::Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(every).await;
    }
}

/// Skips a test that lacks something it needs: loudly, on the real
/// standard error (which `cargo test` does not capture, unlike `eprintln!`),
/// and not at all under `CI=true`, where it fails instead.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {why} (CI must provide it)"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Starts a server with `config` (in memory unless `config` has storage)
/// and its operators' HTTP listener, both on free loopback ports; returns
/// the server and the HTTP address.
pub async fn start_with_http(config: pixchat::Config) -> (TestServer, SocketAddr) {
    let listener = pixchat::bind("127.0.0.1:0").await.unwrap();
    let http = pixchat::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http_addr = http.local_addr().unwrap();
    let token = CancellationToken::new();
    let handle = tokio::spawn(pixchat::run_with(
        listener,
        Some(http),
        config,
        token.clone(),
    ));
    let server = TestServer {
        addr,
        token,
        handle: Some(handle),
        data: None,
    };
    (server, http_addr)
}

/// An HTTP answer: status code and body.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// `GET path` over a fresh TCP connection (HTTP/1.1, `Connection: close`),
/// read to the end within [`WAIT`]. Plain sockets rather than an HTTP
/// client library: it is what `curl` sends, and the test sees the bytes.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpReply {
    use tokio::io::AsyncReadExt;
    let mut stream = TcpStream::connect(addr).await.expect("connect to HTTP");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("an HTTP answer within the timeout")
        .expect("read");
    let raw = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header and a body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpReply { status, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// Sets pixels one by one as `c`, each answered `OK`.
pub async fn set_all(c: &mut TextClient, pixels: &[(u16, u16, u8)]) {
    for (x, y, color) in pixels {
        let r = c.cmd(&format!("SET {x} {y} {color}")).await;
        assert!(r.starts_with("OK "), "{r}");
    }
}

/// The rollback tests' scene (tests/history.rs, tests/cluster_history.rs):
/// a 10x6 frame at (10, 10), edge colour 5 and inside 12, that alice draws
/// (then she paints (12, 12) and (13, 12) over with 8).
pub fn rollback_frame() -> Vec<(u16, u16, u8)> {
    let mut shape = Vec::new();
    for x in 10..20u16 {
        for y in 10..16u16 {
            let edge = x == 10 || x == 19 || y == 10 || y == 15;
            shape.push((x, y, if edge { 5 } else { 12 }));
        }
    }
    shape
}

/// What the griefer paints in the rollback scene: over the frame (some
/// pixels several times) and over the blank canvas beside it.
pub fn rollback_damage() -> Vec<(u16, u16, u8)> {
    let mut damage = Vec::new();
    for x in 8..22u16 {
        for y in 11..14u16 {
            damage.push((x, y, 3));
        }
    }
    damage.extend([(12, 12, 15), (12, 12, 3), (30, 30, 3), (31, 30, 4)]);
    damage
}

/// What carol draws over part of the griefer's work afterwards: it stays.
pub const ROLLBACK_LATER: [(u16, u16, u8); 3] = [(11, 12, 10), (20, 12, 9), (30, 30, 6)];
