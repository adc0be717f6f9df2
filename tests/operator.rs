//! Running pixchat on a public address (issue 13, the operator half), over
//! real sockets: wrong passwords cost time and end the connection, silent
//! connections that never join are closed, limits by address that a
//! reconnect or a fresh name does not sidestep, bans of names and
//! addresses that survive a restart, `pixchat admin` (the real binary),
//! flags from `PIXCHAT_*` variables with JSON logs (the real server
//! binary), and a Redis password that is never printed.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{BinClient, TextClient, WAIT, start_server};
use pixchat::protocol::{Command, ErrorCode, Event, Reply};
use pixchat::server::Limits;
use pixchat::server::storage::StorageConfig;
use tokio::io::{AsyncBufReadExt, BufReader};

const PASSWORD: &str = "s3cret";
const ADMIN: &str = "root";

fn limits(limits: Limits) -> pixchat::Config {
    pixchat::Config {
        limits,
        ..pixchat::Config::default()
    }
}

/// Sends a command and times its reply.
async fn timed(c: &mut TextClient, line: &str) -> (String, Duration) {
    let started = Instant::now();
    let reply = c.cmd(line).await;
    (reply, started.elapsed())
}

#[tokio::test]
async fn a_wrong_password_is_answered_late_and_five_close_the_connection() {
    let delay = Duration::from_millis(100);
    let server = start_server(pixchat::Config {
        password: Some(PASSWORD.into()),
        ..limits(Limits {
            auth_delay: delay,
            ..Limits::default()
        })
    })
    .await;
    let mut c = TextClient::connect(server.addr).await;
    let (ok, ok_took) = timed(&mut c, &format!("AUTH {PASSWORD}")).await;
    assert_eq!(ok, "OK");
    // Each failure waits twice as long as the one before: 100, 200, 400,
    // 800 and 1,600 ms. Lower bounds only: a busy machine may add to them.
    for n in 0..5u32 {
        let (reply, took) = timed(&mut c, "AUTH guess").await;
        assert_eq!(reply, "ERR forbidden wrong password");
        let least = delay * (1 << n);
        assert!(
            took >= least,
            "failure {} answered after {took:?}, before {least:?} (a success took {ok_took:?})",
            n + 1
        );
    }
    let rest = c.expect_closed().await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert!(
        rest[0].starts_with("BYE too_many_failures "),
        "{:?}",
        rest[0]
    );

    // The address remembers: a new connection's first failure already
    // pays for the five before it (100 ms doubled five times).
    let mut again = TextClient::connect(server.addr).await;
    let (reply, took) = timed(&mut again, "AUTH guess").await;
    assert_eq!(reply, "ERR forbidden wrong password");
    assert!(took >= delay * 32, "{took:?}");
}

#[tokio::test]
async fn a_wrong_password_is_answered_late_in_binary_mode_too() {
    let delay = Duration::from_millis(300);
    let server = start_server(pixchat::Config {
        admin_password: Some(ADMIN.into()),
        ..limits(Limits {
            auth_delay: delay,
            ..Limits::default()
        })
    })
    .await;
    let mut c = BinClient::connect(server.addr).await;
    let started = Instant::now();
    let reply = c
        .cmd(Command::Auth {
            password: "guess".into(),
        })
        .await;
    let took = started.elapsed();
    assert!(
        matches!(&reply, Reply::Error(e) if e.code == ErrorCode::Forbidden),
        "{reply:?}"
    );
    assert!(took >= delay, "{took:?}");
    // The connection is still usable.
    let reply = c
        .cmd(Command::Auth {
            password: ADMIN.into(),
        })
        .await;
    assert_eq!(reply, Reply::Ok);
}

#[tokio::test]
async fn connections_that_neither_join_nor_authenticate_are_closed_in_both_modes() {
    let server = start_server(limits(Limits {
        join_timeout: Duration::from_secs(1),
        ..Limits::default()
    }))
    .await;
    // A text connection that only reads is answered, then closed.
    let mut reader = TextClient::connect(server.addr).await;
    assert_eq!(reader.cmd("WHO").await, "OK 0");
    let rest = reader.expect_closed().await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert!(rest[0].starts_with("BYE join_timeout "), "{:?}", rest[0]);

    // One that sent a single byte and nothing else.
    let mut byte = TextClient::connect(server.addr).await;
    byte.send_raw(b"J").await;
    let rest = byte.expect_closed().await;
    assert!(
        rest.iter().any(|l| l.starts_with("BYE join_timeout ")),
        "{rest:?}"
    );

    // A binary connection after HELLO.
    let mut bin = BinClient::connect(server.addr).await;
    match bin.event().await {
        Event::Bye { code, .. } => assert_eq!(code, ErrorCode::JoinTimeout),
        other => panic!("{other:?}"),
    }
    assert!(bin.try_next().await.is_none(), "closed after the BYE");
}

#[tokio::test]
async fn joined_and_authenticated_connections_outlive_the_join_timeout() {
    let server = start_server(pixchat::Config {
        password: Some(PASSWORD.into()),
        ..limits(Limits {
            join_timeout: Duration::from_secs(1),
            ..Limits::default()
        })
    })
    .await;
    let mut authed = TextClient::connect(server.addr).await;
    assert_eq!(authed.cmd(&format!("AUTH {PASSWORD}")).await, "OK");
    let mut joined = TextClient::connect(server.addr).await;
    assert_eq!(joined.cmd(&format!("AUTH {PASSWORD}")).await, "OK");
    assert_eq!(joined.cmd("JOIN watcher").await, "OK watcher 64 64 0");
    let mut idle = TextClient::connect(server.addr).await;
    assert!(idle.cmd("WHO").await.starts_with("ERR forbidden"));

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(authed.cmd("PING a").await, "OK PONG a");
    assert_eq!(joined.cmd("PING b").await, "OK PONG b");
    let rest = idle.expect_closed().await;
    assert!(
        rest.iter().any(|l| l.starts_with("BYE join_timeout ")),
        "{rest:?}"
    );
}

/// `PING`s sent by `connections` fresh connections, `each` apiece; how
/// many were answered, and how long it all took.
async fn pings_over_reconnects(addr: SocketAddr, connections: usize, each: usize) -> (usize, f64) {
    let started = Instant::now();
    let mut accepted = 0;
    for _ in 0..connections {
        let mut c = TextClient::connect(addr).await;
        for _ in 0..each {
            let reply = c.cmd("PING").await;
            if reply == "OK PONG" {
                accepted += 1;
            } else {
                assert!(reply.starts_with("ERR rate_limited "), "{reply}");
            }
        }
    }
    (accepted, started.elapsed().as_secs_f64())
}

#[tokio::test]
async fn by_address_reconnecting_does_not_reset_the_rate() {
    let rate = |limit_by| {
        limits(Limits {
            rate_limit: 5,
            rate_burst: 5,
            limit_by,
            ..Limits::default()
        })
    };
    // Per connection (the default), every reconnect brings a full bucket.
    let by_name = start_server(rate(pixchat::LimitBy::Name)).await;
    let (accepted, _) = pings_over_reconnects(by_name.addr, 4, 5).await;
    assert_eq!(accepted, 20);

    let by_addr = start_server(rate(pixchat::LimitBy::Addr)).await;
    let (accepted, secs) = pings_over_reconnects(by_addr.addr, 4, 5).await;
    // The burst, and what the rate refilled meanwhile.
    let most = 5 + (5.0 * secs).ceil() as usize;
    assert!(
        accepted <= most && accepted < 20,
        "{accepted} accepted in {secs:.2} s"
    );
}

#[tokio::test]
async fn by_address_a_fresh_name_does_not_reset_the_cooldown() {
    let cooldown = |limit_by| {
        limits(Limits {
            cooldown: Duration::from_secs(60),
            limit_by,
            ..Limits::default()
        })
    };
    for (limit_by, second) in [
        (pixchat::LimitBy::Name, "OK 2"),
        (pixchat::LimitBy::Addr, "ERR cooldown"),
        (pixchat::LimitBy::Both, "ERR cooldown"),
    ] {
        let server = start_server(cooldown(limit_by)).await;
        let mut first = TextClient::joined(server.addr, "first").await;
        assert_eq!(first.cmd("SET 1 1 red").await, "OK 1");
        assert!(first.cmd("SET 2 2 red").await.starts_with("ERR cooldown"));
        first.cmd("QUIT").await;
        let mut fresh = TextClient::joined(server.addr, "fresh").await;
        let reply = fresh.cmd("SET 2 2 red").await;
        assert!(reply.starts_with(second), "{limit_by:?}: {reply}");
    }
}

#[tokio::test]
async fn bans_of_names_and_addresses_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || pixchat::Config {
        admin_password: Some(ADMIN.into()),
        storage: Some(StorageConfig::new(dir.path())),
        ..pixchat::Config::default()
    };
    let server = start_server(config()).await;
    let mut carol = TextClient::joined(server.addr, "carol").await;
    let mut admin = TextClient::connect(server.addr).await;
    assert!(admin.cmd("BANS").await.starts_with("ERR forbidden"));
    assert_eq!(admin.cmd(&format!("AUTH {ADMIN}")).await, "OK");
    assert_eq!(admin.cmd("BANS").await, "OK 0");
    assert_eq!(admin.cmd("BAN bob").await, "OK");
    assert!(
        admin
            .cmd("BAN dave addr")
            .await
            .starts_with("ERR no_such_user dave is not online"),
        "an address is known only for someone online"
    );
    assert_eq!(admin.cmd("BAN carol addr").await, "OK");
    assert!(carol.until("BYE").await.starts_with("BYE banned "));
    assert_eq!(admin.cmd("BANS").await, "OK 3 127.0.0.1/32 bob carol");
    assert_eq!(admin.cmd("BANS bob").await, "OK 3 carol");
    server.stop().await;

    let server = start_server(config()).await;
    let mut c = TextClient::connect(server.addr).await;
    assert_eq!(
        c.cmd("JOIN bob").await,
        "ERR banned bob is banned from this server"
    );
    assert_eq!(
        c.cmd("JOIN dave").await,
        "ERR banned your address is banned from this server"
    );
    for read in ["CANVAS", "WHO", "WHOSE 1 1", "SYNC 0"] {
        assert_eq!(
            c.cmd(read).await,
            "ERR banned your address is banned from this server",
            "{read} from a banned address"
        );
    }
    let mut admin = TextClient::connect(server.addr).await;
    assert_eq!(admin.cmd(&format!("AUTH {ADMIN}")).await, "OK");
    assert_eq!(admin.cmd("BANS").await, "OK 3 127.0.0.1/32 bob carol");
    assert_eq!(admin.cmd("UNBAN 127.0.0.1").await, "OK");
    assert!(
        admin
            .cmd("UNBAN 127.0.0.1/32")
            .await
            .starts_with("ERR no_such_user ")
    );
    assert_eq!(c.cmd("JOIN dave").await, "OK dave 64 64 0");
    assert_eq!(admin.cmd("BANS").await, "OK 2 bob carol");
    server.stop().await;
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the real `pixchat admin ...` with the admin password from the
/// environment.
async fn admin(addr: SocketAddr, password: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pixchat"));
    cmd.args(["--server", &addr.to_string(), "admin"])
        .args(args)
        .env_remove("PIXCHAT_PASSWORD")
        .env("PIXCHAT_ADMIN_PASSWORD", password)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("pixchat finishes in time")
        .expect("run pixchat")
}

#[tokio::test]
async fn the_admin_subcommands_moderate_a_live_server() {
    let server = start_server(pixchat::Config {
        admin_password: Some(ADMIN.into()),
        ..pixchat::Config::default()
    })
    .await;
    let mut bob = TextClient::joined(server.addr, "bob").await;
    let mut carol = TextClient::joined(server.addr, "carol").await;

    let out = admin(server.addr, ADMIN, &["who"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "bob\ncarol\n");

    let out = admin(server.addr, ADMIN, &["kick", "carol"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(carol.until("BYE").await.starts_with("BYE kicked "));

    let out = admin(server.addr, ADMIN, &["ban", "bob", "--addr"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(bob.until("BYE").await.starts_with("BYE banned "));

    let out = admin(server.addr, ADMIN, &["bans"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "127.0.0.1/32\nbob\n");

    let out = admin(server.addr, ADMIN, &["unban", "127.0.0.1"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = admin(server.addr, ADMIN, &["bans"]).await;
    assert_eq!(text(&out.stdout), "bob\n");

    let out = admin(server.addr, ADMIN, &["kick", "nobody"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no_such_user"),
        "{}",
        text(&out.stderr)
    );
    let out = admin(server.addr, "guess", &["bans"]).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("forbidden") && !err.contains("guess"), "{err}");
}

/// A real `pixchat-server` started with `env` and no flags at all, its
/// standard error read line by line.
struct Binary {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    seen: Vec<String>,
}

impl Binary {
    fn start(env: &[(&str, &str)], args: &[&str]) -> Binary {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pixchat-server"));
        for (var, _) in std::env::vars() {
            if var.starts_with("PIXCHAT_") {
                cmd.env_remove(var);
            }
        }
        cmd.envs(env.iter().copied())
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start pixchat-server");
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        Binary {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next log line that contains `want`; every line read is kept.
    async fn until(&mut self, want: &str) -> Option<String> {
        loop {
            let line = tokio::time::timeout(WAIT, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {want:?} in the log: {:#?}", self.seen))
                .expect("read the log")?;
            self.seen.push(line.clone());
            if line.contains(want) {
                return Some(line);
            }
        }
    }
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test]
async fn flags_come_from_the_environment_and_logs_are_json_lines_with_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let mut server = Binary::start(
        &[
            ("PIXCHAT_LISTEN", "127.0.0.1:0"),
            ("PIXCHAT_MEMORY", "1"),
            ("PIXCHAT_WIDTH", "10"),
            ("PIXCHAT_HEIGHT", "5"),
            ("PIXCHAT_LOG_FORMAT", "json"),
            ("PIXCHAT_AUTH_DELAY_MS", "10"),
            ("PIXCHAT_PASSWORD_FILE", password_file.to_str().unwrap()),
        ],
        &[],
    );
    let listening = json(&server.until("\"listening\"").await.expect("listening"));
    let addr: SocketAddr = listening["fields"]["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let mut c = TextClient::connect(addr).await;
    let peer = c.writer.local_addr().unwrap().to_string();
    assert_eq!(c.cmd("AUTH guess").await, "ERR forbidden wrong password");
    assert_eq!(c.cmd(&format!("AUTH {PASSWORD}")).await, "OK");
    // The size came from PIXCHAT_WIDTH and PIXCHAT_HEIGHT.
    assert_eq!(c.cmd("JOIN alice").await, "OK alice 10 5 0");
    assert_eq!(c.cmd("QUIT").await, "OK bye");

    for (message, name) in [
        ("connected", None),
        ("failed AUTH", None),
        ("joined", Some("alice")),
        ("left", Some("alice")),
    ] {
        let line = json(
            &server
                .until(&format!("\"message\":\"{message}\""))
                .await
                .unwrap_or_else(|| panic!("no {message} line")),
        );
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["span"]["peer"], peer.as_str(), "{line}");
        if let Some(name) = name {
            assert_eq!(line["span"]["user"], name, "{line}");
        }
    }
    assert!(
        !server.seen.iter().any(|l| l.contains(PASSWORD)),
        "{:#?}",
        server.seen
    );
    server.child.kill().await.unwrap();
}

#[tokio::test]
async fn a_redis_password_is_never_printed() {
    // Nothing listens on port 1: the start fails, and says where it tried.
    let mut server = Binary::start(&[], &["--redis", "redis://:hunter2@127.0.0.1:1"]);
    let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .expect("the server gives up in time")
        .unwrap();
    assert!(!status.success());
    while let Ok(Some(line)) = server.lines.next_line().await {
        server.seen.push(line);
    }
    let log = server.seen.join("\n");
    assert!(!log.contains("hunter2"), "{log}");
    assert!(log.contains("redis://:***@127.0.0.1:1"), "{log}");
}

#[tokio::test]
async fn a_reply_to_a_failed_auth_is_not_sent_before_its_delay_even_when_pipelined() {
    // Guesses sent all at once are still answered one per delay: the
    // connection reads the next only after answering the last.
    let delay = Duration::from_millis(200);
    let server = start_server(pixchat::Config {
        password: Some(PASSWORD.into()),
        ..limits(Limits {
            auth_delay: delay,
            max_auth_failures: 0,
            ..Limits::default()
        })
    })
    .await;
    let mut c = TextClient::connect(server.addr).await;
    let started = Instant::now();
    c.send_raw(b"AUTH a\nAUTH b\nAUTH c\n").await;
    for _ in 0..3 {
        assert_eq!(c.line().await, "ERR forbidden wrong password");
    }
    // 200 + 400 + 800 ms.
    assert!(started.elapsed() >= delay * 7, "{:?}", started.elapsed());
    assert_eq!(c.cmd("PING").await, "OK PONG", "still usable");
}

#[tokio::test]
async fn completions_and_the_man_page_list_the_flags_and_their_variables() {
    let run = |args: &'static [&'static str]| async move {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pixchat-server"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run pixchat-server");
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let bash = run(&["completions", "bash"]).await;
    assert!(
        bash.contains("complete -F") && bash.contains("--join-timeout"),
        "{bash}"
    );
    let man = run(&["man"]).await;
    assert!(
        man.starts_with(".ie") && man.contains(".TH pixchat-server 1"),
        "{man}"
    );
    assert!(man.contains("PIXCHAT_MAX_CLIENTS"), "{man}");
}
