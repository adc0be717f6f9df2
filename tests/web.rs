//! The live page (`GET /` on `--http`) in a real headless Chromium, driven
//! over the DevTools protocol; `/canvas.png` against `CANVAS`; the `/ws`
//! bridge's read-only rule and `Origin` check over real sockets.
//!
//! Chromium is Debian's `chromium` (`CHROMIUM` names another binary); the
//! browser tests skip loudly without it, except under `CI=true`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use common::{TextClient, WAIT};
use futures::{SinkExt, StreamExt};
use pixchat::server::storage::{Fsync, StorageConfig};
use pixchat::server::web::WebConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

// ---- a server with its HTTP listener, restartable on the same ports ----

struct WebServer {
    tcp: SocketAddr,
    http: SocketAddr,
    token: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts a durable server in `dir` on `tcp` and `http` (port 0: free
/// ones); a restart passes the same addresses and directory.
async fn start(dir: &std::path::Path, tcp: &str, http: &str, play: bool) -> WebServer {
    start_with(dir, tcp, http, play, None).await
}

async fn start_with(
    dir: &std::path::Path,
    tcp: &str,
    http: &str,
    play: bool,
    password: Option<&str>,
) -> WebServer {
    let config = pixchat::Config {
        password: password.map(String::from),
        storage: Some(StorageConfig {
            fsync: Fsync::Batch,
            ..StorageConfig::new(dir)
        }),
        width: Some(32),
        height: Some(24),
        web: WebConfig {
            play,
            origins: Vec::new(),
        },
        ..pixchat::Config::default()
    };
    let listener = pixchat::bind(tcp).await.expect("bind tcp");
    let http_listener = pixchat::bind(http).await.expect("bind http");
    let tcp = listener.local_addr().unwrap();
    let http = http_listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let handle = tokio::spawn(pixchat::server::run_with(
        listener,
        Some(http_listener),
        config,
        token.clone(),
    ));
    WebServer {
        tcp,
        http,
        token,
        handle,
    }
}

impl WebServer {
    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server result");
    }
}

// ---- HTTP by hand: the test sees the bytes ----

struct HttpAnswer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

async fn http_get(addr: SocketAddr, path: &str, extra: &str) -> HttpAnswer {
    let mut stream = TcpStream::connect(addr).await.expect("connect http");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    // To the end, or to Content-Length: Chromium's DevTools server keeps
    // the connection open.
    let mut raw = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let (head, mut body) = loop {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("an HTTP answer in time")
            .expect("read");
        raw.extend_from_slice(&chunk[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_string();
            let want = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
            let body_len = raw.len() - split - 4;
            if n == 0 || want.is_some_and(|w| body_len >= w) {
                break (head, raw[split + 4..].to_vec());
            }
        } else {
            assert!(n > 0, "the connection closed before a header");
        }
    };
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    HttpAnswer { status, head, body }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// ---- Chromium over the DevTools protocol ----

type Cdp = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    cdp: Cdp,
    next_id: u64,
}

impl Drop for Browser {
    /// Debian's `chromium` is a script that starts the browser as its
    /// child, which starts its helpers: the whole process group goes.
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(p.into());
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| pixchat_harness::find_on_path(n))
}

impl Browser {
    /// A headless Chromium with one blank page, or `None` (the test is
    /// skipped, loudly) when there is none.
    async fn launch(test: &str) -> Option<Browser> {
        let Some(bin) = chromium() else {
            common::skip(test, "no chromium on PATH (apt-get install chromium)");
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        let mut child = Process::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1100,700",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start chromium");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let browser_url = tokio::task::spawn_blocking(move || rx.recv_timeout(WAIT * 3))
            .await
            .unwrap()
            .expect("chromium says where DevTools listens");
        let port: u16 = browser_url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let devtools: SocketAddr = ([127, 0, 0, 1], port).into();
        let list = http_get(devtools, "/json/list", "").await;
        let targets: Value = serde_json::from_slice(&list.body).expect("json target list");
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (cdp, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect to the page's DevTools");
        Some(Browser {
            child,
            _profile: profile,
            cdp,
            next_id: 0,
        })
    }

    /// One DevTools call and its result (events in between are dropped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params});
        self.cdp
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to DevTools");
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.cdp.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer from DevTools"))
                .expect("DevTools open")
                .expect("DevTools message");
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Evaluates `expr` every 20 ms until it is true; the time it took.
    async fn wait_for(&mut self, expr: &str, within: Duration) -> Duration {
        let start = Instant::now();
        // False while the page is still loading, rather than an error.
        let guarded = format!(
            "(() => {{ try {{ return ({expr}) === true; }} catch (e) {{ return false; }} }})()"
        );
        loop {
            if self.eval(&guarded).await == Value::Bool(true) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "not within {within:?}: {expr}; page state: {}",
                self.eval("JSON.stringify(window.pixchatState, (k, v) => typeof v === 'bigint' ? String(v) : v instanceof Set ? [...v] : v instanceof Uint8Array ? undefined : v)")
                    .await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// Screen position of the centre of canvas pixel (x, y).
    async fn pixel_on_screen(&mut self, x: u32, y: u32) -> (f64, f64) {
        let v = self
            .eval(&format!(
                "(() => {{ const r = document.getElementById('board').getBoundingClientRect();
                   const s = r.width / window.pixchatState.width;
                   return [r.left + ({x} + 0.5) * s, r.top + ({y} + 0.5) * s]; }})()"
            ))
            .await;
        (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
    }

    async fn click(&mut self, (x, y): (f64, f64)) {
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1}),
            )
            .await;
        }
    }

    async fn screenshot(&mut self, path: &std::path::Path) {
        use base64::Engine;
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).expect("write the screenshot");
    }
}

// ---- the tests ----

/// The page shows the canvas and chat live, asks WHOSE, and resumes after
/// a server restart without a new snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_the_canvas_live_and_resumes_after_a_restart() {
    let Some(mut browser) = Browser::launch("page_shows_the_canvas_live").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0", "127.0.0.1:0", false).await;
    let (tcp, http) = (server.tcp, server.http);

    let mut artist = TextClient::joined(tcp, "artist").await;
    assert!(artist.cmd("SET 1 1 blue").await.starts_with("OK "));

    browser.goto(&format!("http://{http}/")).await;
    browser
        .wait_for("window.pixchatState?.status === 'live'", WAIT)
        .await;
    // What was placed before the page came is in its snapshot, on the
    // <canvas> element itself.
    browser
        .wait_for("window.pixchatPixelAt(1, 1) === 12", WAIT)
        .await;
    assert_eq!(browser.eval("window.pixchatState.snapshots").await, 1);

    // A pixel placed over TCP is on the page's canvas within a second.
    assert!(artist.cmd("SET 5 6 red").await.starts_with("OK "));
    let took = browser
        .wait_for("window.pixchatPixelAt(5, 6) === 5", Duration::from_secs(1))
        .await;
    eprintln!("a pixel placed over TCP was on the page's canvas after {took:?}");

    assert_eq!(artist.cmd("SAY hello browser").await, "OK");
    browser
        .wait_for(
            "window.pixchatState.chat.includes('artist: hello browser')",
            WAIT,
        )
        .await;

    // The pointer over (1, 1) asks WHOSE: the author shows.
    let at = browser.pixel_on_screen(1, 1).await;
    browser
        .call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseMoved", "x": at.0, "y": at.1}),
        )
        .await;
    browser
        .wait_for(
            "document.getElementById('hover-who').textContent.startsWith('by artist')",
            WAIT,
        )
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('hover-xy').textContent")
            .await,
        "1, 1"
    );

    // Read-only: nothing the page could send places a pixel.
    assert_eq!(
        browser
            .eval("document.getElementById('join').offsetParent === null")
            .await,
        true
    );

    // The server restarts; the page reconnects and resumes with the
    // pixels placed meanwhile, without a second snapshot.
    server.stop().await;
    browser
        .wait_for("window.pixchatState.status !== 'live'", WAIT)
        .await;
    let server = start(dir.path(), &tcp.to_string(), &http.to_string(), false).await;
    let mut artist = TextClient::joined(server.tcp, "artist").await;
    assert!(artist.cmd("SET 7 8 green").await.starts_with("OK "));
    browser
        .wait_for(
            "window.pixchatState.status === 'live' && window.pixchatPixelAt(7, 8) === 10",
            WAIT,
        )
        .await;
    assert_eq!(browser.eval("window.pixchatState.resumed").await, 1);
    assert_eq!(browser.eval("window.pixchatState.snapshots").await, 1);
    assert_eq!(browser.eval("window.pixchatPixelAt(5, 6)").await, 5);
    assert!(artist.cmd("SET 2 2 purple").await.starts_with("OK "));
    browser
        .wait_for("window.pixchatPixelAt(2, 2) === 15", WAIT)
        .await;

    // The README's screenshot: taken on request, as it rewrites a file
    // under docs/.
    if std::env::var_os("PIXCHAT_SCREENSHOT").is_some() {
        for line in [
            "SAY welcome to the canvas",
            "SET 10 10 orange",
            "SET 11 10 yellow",
            "SET 12 10 lightgreen",
        ] {
            assert!(artist.cmd(line).await.starts_with("OK"));
        }
        for x in 0..32u32 {
            let c = (x / 2) % 16;
            assert!(
                artist
                    .cmd(&format!("SET {x} 20 {c}"))
                    .await
                    .starts_with("OK")
            );
        }
        browser
            .wait_for("window.pixchatPixelAt(31, 20) === 15", WAIT)
            .await;
        let at = browser.pixel_on_screen(10, 10).await;
        browser
            .call(
                "Input.dispatchMouseEvent",
                json!({"type": "mouseMoved", "x": at.0, "y": at.1}),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/web-page.png");
        browser.screenshot(&path).await;
    }
    server.stop().await;
}

/// With `--http-play`, a click on the page places a pixel that a TCP
/// watcher receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_play_a_click_places_a_pixel() {
    let Some(mut browser) = Browser::launch("with_play_a_click_places_a_pixel").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0", "127.0.0.1:0", true).await;
    let mut watcher = TextClient::joined(server.tcp, "watcher").await;

    browser.goto(&format!("http://{}/", server.http)).await;
    browser
        .wait_for("window.pixchatState?.status === 'live'", WAIT)
        .await;
    browser
        .eval(
            "document.getElementById('join-name').value = 'painter';
             document.getElementById('join').requestSubmit(); true",
        )
        .await;
    browser
        .wait_for(
            "window.pixchatState.status === 'live' && window.pixchatState.name === 'painter' && !window.pixchatState.watching",
            WAIT,
        )
        .await;
    assert_eq!(watcher.until("JOINED").await, "JOINED painter");

    // Pick purple (15) and click on pixel (3, 4).
    browser
        .eval("document.querySelectorAll('#palette button')[15].click(); true")
        .await;
    let at = browser.pixel_on_screen(3, 4).await;
    browser.click(at).await;
    let pixel = watcher.until("PIXEL").await;
    let (_, x, y, color, name) = common::parse_pixel(&pixel);
    assert_eq!((x, y, color, name.as_str()), (3, 4, 15, "painter"));
    browser
        .wait_for("window.pixchatPixelAt(3, 4) === 15", WAIT)
        .await;

    // And chat.
    browser
        .eval(
            "document.getElementById('say-text').value = 'hi from the page';
             document.getElementById('say').requestSubmit(); true",
        )
        .await;
    assert_eq!(watcher.until("MSG").await, "MSG painter hi from the page");
    server.stop().await;
}

/// On a server with a password, the read-only page asks for it, and
/// watches once it has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_page_asks_for_the_password() {
    let Some(mut browser) = Browser::launch("a_watching_page_asks_for_the_password").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        dir.path(),
        "127.0.0.1:0",
        "127.0.0.1:0",
        false,
        Some("sesame"),
    )
    .await;
    browser.goto(&format!("http://{}/", server.http)).await;
    browser
        .wait_for(
            "document.body.classList.contains('need-password')
             && document.getElementById('join-password').offsetParent !== null",
            WAIT,
        )
        .await;
    assert_ne!(browser.eval("window.pixchatState.status").await, "live");
    browser
        .eval(
            "document.getElementById('join-password').value = 'sesame';
             document.getElementById('join').requestSubmit(); true",
        )
        .await;
    browser
        .wait_for("window.pixchatState.status === 'live'", WAIT)
        .await;
    let mut artist = TextClient::connect(server.tcp).await;
    assert_eq!(artist.cmd("AUTH sesame").await, "OK");
    assert!(artist.cmd("JOIN artist").await.starts_with("OK "));
    assert!(artist.cmd("SET 4 4 red").await.starts_with("OK "));
    browser
        .wait_for("window.pixchatPixelAt(4, 4) === 5", WAIT)
        .await;
    server.stop().await;
}

/// Bytes of one binary frame with its length prefix.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// The next server frame's type byte over the WebSocket.
async fn next_type(ws: &mut Cdp) -> (u8, Vec<u8>) {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a message");
        if let Message::Binary(b) = msg {
            let len = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
            assert_eq!(len + 4, b.len(), "one whole frame per message");
            return (b[4], b.to_vec());
        }
    }
}

/// Without `--http-play`, the bridge lets a page watch but not place,
/// chat or join loudly; a foreign `Origin` is refused.
#[tokio::test]
async fn the_bridge_is_read_only_by_default_and_checks_origin() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0", "127.0.0.1:0", false).await;
    let url = format!("ws://{}/ws", server.http);

    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a foreign origin was not refused: {other:?}"),
    }

    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws.send(Message::binary(frame(b"\x01PXCH\x00\x01")))
        .await
        .unwrap();
    assert_eq!(next_type(&mut ws).await.0, 0x81);
    // A loud JOIN is refused; a quiet one watches.
    ws.send(Message::binary(frame(b"\x02\x03bob\x00")))
        .await
        .unwrap();
    let (t, f) = next_type(&mut ws).await;
    assert_eq!(t, 0xff);
    assert!(String::from_utf8_lossy(&f).contains("forbidden"));
    ws.send(Message::binary(frame(b"\x02\x03bob\x02")))
        .await
        .unwrap();
    assert_eq!(next_type(&mut ws).await.0, 0x82);
    assert_eq!(next_type(&mut ws).await.0, 0x84);
    // SET and SAY are refused, in order with the other replies.
    ws.send(Message::binary(frame(b"\x05\x00\x01\x00\x01\x05")))
        .await
        .unwrap();
    ws.send(Message::binary(frame(b"\x03\x00\x02hi")))
        .await
        .unwrap();
    ws.send(Message::binary(frame(b"\x09\x02t1")))
        .await
        .unwrap();
    assert_eq!(next_type(&mut ws).await.0, 0xff);
    assert_eq!(next_type(&mut ws).await.0, 0xff);
    assert_eq!(next_type(&mut ws).await.0, 0x87);
    // Nothing was placed.
    let mut c = TextClient::connect(server.tcp).await;
    assert_eq!(c.cmd("WHOSE 1 1").await, "OK * 0 0");
    // A pixel placed over TCP reaches the bridged watcher as one frame.
    let mut artist = TextClient::joined(server.tcp, "artist").await;
    assert!(artist.cmd("SET 1 1 red").await.starts_with("OK "));
    let (t, f) = loop {
        let (t, f) = next_type(&mut ws).await;
        if t != 0x41 {
            break (t, f);
        }
    };
    assert_eq!(t, 0x40, "JOINED artist, then the pixel");
    assert_eq!(&f[f.len() - 6..], b"artist");
    server.stop().await;
}

/// `/canvas.png` is `CANVAS`, pixel for pixel, at any scale; its `ETag`
/// follows the seq.
#[tokio::test]
async fn canvas_png_equals_canvas() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0", "127.0.0.1:0", false).await;
    let mut c = TextClient::joined(server.tcp, "artist").await;
    for (i, (x, y)) in [(0, 0), (31, 23), (5, 7), (6, 7), (30, 0)]
        .iter()
        .enumerate()
    {
        assert!(
            c.cmd(&format!("SET {x} {y} {}", i * 3 + 1))
                .await
                .starts_with("OK ")
        );
    }
    let (seq, rows) = c.canvas().await;
    for scale in [1u32, 3] {
        let a = http_get(server.http, &format!("/canvas.png?scale={scale}"), "").await;
        assert_eq!(a.status, 200, "{}", a.head);
        assert_eq!(header(&a.head, "content-type"), Some("image/png"));
        let etag = header(&a.head, "etag").unwrap().to_string();
        assert!(etag.contains(&format!("-{seq}-")), "{etag}");
        let decoder = png::Decoder::new(std::io::Cursor::new(a.body));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Indexed);
        assert_eq!((info.width, info.height), (32 * scale, 24 * scale));
        let palette = reader.info().palette.as_ref().unwrap().to_vec();
        assert_eq!(&palette[9..12], &[0x22, 0x22, 0x22], "black is index 3");
        for (y, row) in rows.iter().enumerate() {
            for (x, &want) in row.iter().enumerate() {
                for (dx, dy) in [(0, 0), (scale - 1, scale - 1)] {
                    let px = x as u32 * scale + dx;
                    let line = &buf[(y as u32 * scale + dy) as usize * info.line_size..];
                    let byte = line[px as usize / 2];
                    let got = if px.is_multiple_of(2) {
                        byte >> 4
                    } else {
                        byte & 15
                    };
                    assert_eq!(got, want, "pixel {x},{y} at scale {scale}");
                }
            }
        }
        // Unchanged seq: 304 without a body.
        let again = http_get(
            server.http,
            &format!("/canvas.png?scale={scale}"),
            &format!("If-None-Match: {etag}\r\n"),
        )
        .await;
        assert_eq!(again.status, 304);
    }
    // A new pixel, a new ETag.
    assert!(c.cmd("SET 1 1 red").await.starts_with("OK "));
    let a = http_get(server.http, "/canvas.png", "").await;
    assert!(
        header(&a.head, "etag")
            .unwrap()
            .contains(&format!("-{}-", seq + 1))
    );
    // Bounded: a scale too large is refused, not drawn.
    assert_eq!(
        http_get(server.http, "/canvas.png?scale=1000", "")
            .await
            .status,
        400
    );
    assert_eq!(
        http_get(server.http, "/canvas.png?scale=x", "")
            .await
            .status,
        400
    );
    server.stop().await;
}
