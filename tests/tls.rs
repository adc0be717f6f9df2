//! TLS on the chat port, over real sockets: both wire modes inside TLS
//! with a certificate made by rcgen, plaintext beside it, `--tls-only`,
//! an `openssl s_client` session, and the certificate reloaded on SIGHUP.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use pixchat::protocol::binary::ClientCodec;
use pixchat::protocol::{Command, PROTOCOL_VERSION, Reply, ServerMsg};
use pixchat::server::tls::TlsConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_util::codec::Framed;

/// A self-signed certificate for `localhost`, written as PEM files.
struct Cert {
    pem: String,
    der: CertificateDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

fn make_cert(dir: &Path, name: &str) -> Cert {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pem = made.cert.pem();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, &pem).unwrap();
    std::fs::write(&key_path, made.signing_key.serialize_pem()).unwrap();
    Cert {
        pem,
        der: made.cert.der().clone(),
        cert_path,
        key_path,
    }
}

async fn start_tls(cert: &Cert, only: bool) -> TestServer {
    start_memory(pixchat::Config {
        tls: Some(TlsConfig {
            cert: cert.cert_path.clone(),
            key: cert.key_path.clone(),
            only,
        }),
        ..Default::default()
    })
    .await
}

/// A TLS client that trusts `ca` only.
fn connector(ca: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(addr: SocketAddr, ca: &CertificateDer<'static>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(WAIT, connector(ca).connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("TLS handshake")
}

/// A text-mode session inside TLS.
struct TlsText {
    io: BufReader<TlsStream<TcpStream>>,
}

impl TlsText {
    async fn connect(addr: SocketAddr, ca: &CertificateDer<'static>) -> Self {
        Self {
            io: BufReader::new(tls_connect(addr, ca).await),
        }
    }

    async fn send(&mut self, line: &str) {
        let io = self.io.get_mut();
        io.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        io.flush().await.unwrap();
    }

    async fn try_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.io.read_line(&mut line))
            .await
            .expect("a line in time")
            .unwrap_or(0);
        (n > 0).then(|| line.trim_end_matches('\n').to_string())
    }

    async fn line(&mut self) -> String {
        self.try_line().await.expect("connection open")
    }

    /// Sends `line` and returns the first line starting with OK or ERR.
    async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        loop {
            let l = self.line().await;
            if l.starts_with("OK") || l.starts_with("ERR") {
                return l;
            }
        }
    }
}

#[tokio::test]
async fn text_mode_inside_tls_beside_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let server = start_tls(&cert, false).await;
    let mut secure = TlsText::connect(server.addr, &cert.der).await;
    let joined = secure.cmd("JOIN sec").await;
    assert!(joined.starts_with("OK sec "), "{joined}");
    let mut plain = TextClient::joined(server.addr, "plain").await;
    assert_eq!(secure.cmd("SET 1 2 red").await, "OK 1");
    // The plaintext client sees the TLS client's pixel, and the reverse.
    loop {
        let l = plain.line().await;
        if l.starts_with("PIXEL ") {
            assert_eq!(l, "PIXEL 1 1 2 5 sec");
            break;
        }
    }
    assert_eq!(plain.cmd("SAY hi there").await, "OK");
    loop {
        let l = secure.line().await;
        if l.starts_with("MSG ") {
            assert_eq!(l, "MSG plain hi there");
            break;
        }
    }
    assert_eq!(secure.cmd("WHO").await, "OK 2 plain sec");
    assert_eq!(secure.cmd("QUIT").await, "OK bye");
    assert_eq!(secure.try_line().await, None, "closed after QUIT");
    server.stop().await;
}

#[tokio::test]
async fn binary_mode_inside_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let server = start_tls(&cert, false).await;
    let mut framed = Framed::new(
        tls_connect(server.addr, &cert.der).await,
        ClientCodec::default(),
    );
    let cmd = async |framed: &mut Framed<TlsStream<TcpStream>, ClientCodec>, c: Command| {
        framed.send(&c).await.unwrap();
        loop {
            let msg = tokio::time::timeout(WAIT, framed.next())
                .await
                .expect("a frame in time")
                .expect("open")
                .expect("a valid frame");
            if let ServerMsg::Reply(r) = msg {
                return r;
            }
        }
    };
    let hello = cmd(
        &mut framed,
        Command::Hello {
            version: PROTOCOL_VERSION,
        },
    )
    .await;
    assert!(matches!(hello, Reply::Hello(_)), "{hello:?}");
    let pong = cmd(
        &mut framed,
        Command::Ping {
            token: "tls".into(),
        },
    )
    .await;
    assert!(
        matches!(&pong, Reply::Pong { token } if token == "tls"),
        "{pong:?}"
    );
    let canvas = cmd(&mut framed, Command::Canvas).await;
    assert!(matches!(canvas, Reply::Canvas(_)), "{canvas:?}");
    // A plain binary client on the same port is served as before.
    let mut plain = BinClient::connect(server.addr).await;
    let pong = plain
        .cmd(Command::Ping {
            token: "plain".into(),
        })
        .await;
    assert!(
        matches!(&pong, Reply::Pong { token } if token == "plain"),
        "{pong:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn tls_only_refuses_plaintext_in_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let server = start_tls(&cert, true).await;
    let mut plain = TextClient::connect(server.addr).await;
    plain.send("JOIN al").await;
    let refused = plain.line().await;
    assert!(refused.starts_with("ERR tls_required "), "{refused}");
    assert_eq!(plain.try_line().await, None, "closed after the refusal");
    let mut bin = BinClient {
        framed: Framed::new(
            TcpStream::connect(server.addr).await.unwrap(),
            ClientCodec::default(),
        ),
    };
    bin.send(Command::Hello {
        version: PROTOCOL_VERSION,
    })
    .await;
    match bin.next().await {
        ServerMsg::Reply(Reply::Error(e)) => assert_eq!(e.code.as_str(), "tls_required"),
        other => panic!("{other:?}"),
    }
    // TLS is served.
    let mut secure = TlsText::connect(server.addr, &cert.der).await;
    assert_eq!(secure.cmd("PING x").await, "OK PONG x");
    server.stop().await;
}

/// Whether `openssl` runs here; without it the test is skipped, loudly,
/// except under CI, where it must be installed (`.ci/run`).
fn openssl_available() -> bool {
    let ok = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is missing under CI; .ci/run installs it"
        );
        eprintln!("SKIPPED: openssl is not installed");
    }
    ok
}

#[tokio::test]
async fn an_openssl_s_client_session() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let server = start_tls(&cert, true).await;
    let port = server.addr.port();
    let cafile = cert.cert_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-verify_return_error",
                "-servername",
                "localhost",
            ])
            .args(["-connect", &format!("127.0.0.1:{port}")])
            .arg("-CAfile")
            .arg(&cafile)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run openssl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"JOIN ossl\nSET 0 0 red\nPING hi\nQUIT\n")
            .unwrap();
        // QUIT closes the session, so openssl ends by itself; bounded all
        // the same.
        let deadline = std::time::Instant::now() + WAIT;
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("OK ossl 64 64 ")),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines.contains(&"OK 1"), "{stdout}");
    assert!(lines.contains(&"OK PONG hi"), "{stdout}");
    assert_eq!(lines.last(), Some(&"OK bye"), "{stdout}");
    let _ = cert.pem;
    server.stop().await;
}

/// The certificate a TLS client is shown, trusting `ca`.
async fn served_cert(addr: SocketAddr, ca: &CertificateDer<'static>) -> CertificateDer<'static> {
    let tls = tls_connect(addr, ca).await;
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_a_bad_one_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let first = make_cert(dir.path(), "first");
    let cert_path = dir.path().join("server.crt");
    let key_path = dir.path().join("server.key");
    std::fs::copy(&first.cert_path, &cert_path).unwrap();
    std::fs::copy(&first.key_path, &key_path).unwrap();
    let spec = pixchat_harness::Pixchat::new(env!("CARGO_BIN_EXE_pixchat-server"))
        .args(["--memory"])
        .args([std::ffi::OsStr::new("--tls-cert"), cert_path.as_os_str()])
        .args([std::ffi::OsStr::new("--tls-key"), key_path.as_os_str()])
        .on_drop(pixchat_harness::OnDrop::Kill);
    let server = tokio::task::spawn_blocking(move || spec.start())
        .await
        .unwrap()
        .expect("server starts");
    let addr = server.addr();
    assert_eq!(served_cert(addr, &first.der).await, first.der);
    // A session opened before the reload goes on after it.
    let mut before = TlsText::connect(addr, &first.der).await;
    assert_eq!(before.cmd("PING 1").await, "OK PONG 1");

    let second = make_cert(dir.path(), "second");
    std::fs::copy(&second.cert_path, &cert_path).unwrap();
    std::fs::copy(&second.key_path, &key_path).unwrap();
    let hup = |pid: u32| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap()
    };
    hup(server.pid());
    wait_for_log(&server, "TLS certificate reloaded", 1).await;
    assert_eq!(served_cert(addr, &second.der).await, second.der);
    assert_eq!(before.cmd("PING 2").await, "OK PONG 2");

    // A broken file: logged, and the second certificate is still served.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    hup(server.pid());
    wait_for_log(&server, "TLS certificate not reloaded", 1).await;
    assert_eq!(served_cert(addr, &second.der).await, second.der);
    let mut plain = TextClient::connect(addr).await;
    assert_eq!(plain.cmd("PING 3").await, "OK PONG 3");
}

async fn wait_for_log(server: &pixchat_harness::ServerProcess, what: &str, n: usize) {
    let every = Duration::from_millis(20);
    let log = poll_until(
        WAIT,
        every,
        async || server.log_text(),
        |log| log.matches(what).count() >= n,
    )
    .await;
    assert!(
        log.matches(what).count() >= n,
        "no {what:?} in the log:\n{log}"
    );
}

#[tokio::test]
async fn the_client_library_and_cli_speak_tls() {
    use pixchat::client::{Connection, Transport};
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let server = start_tls(&cert, true).await;
    let addr = format!("localhost:{}", server.addr.port());
    let transport = Transport::tls_with_ca(&cert.cert_path).unwrap();
    let conn = Connection::connect_via(addr.as_str(), &transport)
        .await
        .expect("a TLS connection");
    assert_eq!(conn.hello().width, 64);
    drop(conn);
    // Plain TCP to a --tls-only server is refused with its reason.
    let plain = Connection::connect(addr.as_str()).await.unwrap_err();
    assert!(
        plain
            .wire()
            .is_some_and(|e| e.code.as_str() == "tls_required"),
        "{plain:?}"
    );

    // The CLI: --ca trusts the self-signed certificate.
    let cli = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_pixchat"))
                .args(args)
                .output()
                .unwrap()
        })
    };
    let ca = cert.cert_path.display().to_string();
    let out = cli(vec![
        "--server".into(),
        addr.clone(),
        "--ca".into(),
        ca.clone(),
        "--name".into(),
        "cli".into(),
        "set".into(),
        "2".into(),
        "3".into(),
        "red".into(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    let out = cli(vec![
        "--server".into(),
        addr.clone(),
        "--ca".into(),
        ca,
        "whose".into(),
        "2".into(),
        "3".into(),
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cli"),
        "{out:?}"
    );
    // --tls alone checks against the system's roots, which do not hold a
    // self-signed certificate: refused, and nothing is placed.
    let out = cli(vec![
        "--server".into(),
        addr.clone(),
        "--tls".into(),
        "--name".into(),
        "cli2".into(),
        "set".into(),
        "4".into(),
        "4".into(),
        "red".into(),
    ])
    .await
    .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let mut secure = TlsText::connect(server.addr, &cert.der).await;
    assert_eq!(secure.cmd("WHOSE 4 4").await, "OK * 0 0");
    server.stop().await;
}

#[tokio::test]
async fn a_tls_client_refused_for_a_full_server_is_told_so_inside_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path(), "a");
    let server = start_memory(pixchat::Config {
        tls: Some(TlsConfig {
            cert: cert.cert_path.clone(),
            key: cert.key_path.clone(),
            only: false,
        }),
        max_clients: 1,
        ..Default::default()
    })
    .await;
    let mut first = TextClient::joined(server.addr, "first").await;
    // Refused before its handshake (the server is full), the TLS client
    // still completes one and reads why, as a plaintext client would.
    let mut refused = TlsText::connect(server.addr, &cert.der).await;
    assert_eq!(
        refused.line().await,
        "ERR server_full the server is at its client limit; try again later"
    );
    assert_eq!(refused.try_line().await, None, "closed after the refusal");
    assert_eq!(first.cmd("WHO").await, "OK 1 first");
    server.stop().await;
}
