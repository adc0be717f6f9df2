//! Hostile and careless clients: cooldown, rate limit, per-address limit,
//! handshake and idle timeouts, passwords, KICK/BAN, cross-protocol
//! requests. Each rejected action leaves the canvas and other users alone.

mod common;

use std::time::Duration;

use common::{BinClient, TextClient, parse_pixel, start_server};
use pixchat::protocol::{Command, ErrorCode, Event, Reply};
use pixchat::server::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn with_limits(limits: Limits) -> pixchat::Config {
    pixchat::Config {
        limits,
        ..Default::default()
    }
}

/// The canvas as (seq, number of non-blank pixels).
async fn canvas_summary(addr: std::net::SocketAddr) -> (u64, usize) {
    let (seq, rows) = TextClient::connect(addr).await.canvas().await;
    (seq, rows.iter().flatten().filter(|&&c| c != 0).count())
}

#[tokio::test]
async fn cooldown_refuses_early_pixels_per_user_across_reconnects() {
    let server = start_server(with_limits(Limits {
        cooldown: Duration::from_millis(800),
        ..Default::default()
    }))
    .await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    let mut a = TextClient::joined(server.addr, "alice").await;
    watcher.until("JOINED alice").await;
    assert_eq!(a.cmd("SET 1 1 5").await, "OK 1");
    assert_eq!(parse_pixel(&watcher.line().await).0, 1);
    let err = a.cmd("SET 2 2 5").await;
    let left: u64 = err
        .strip_prefix("ERR cooldown ")
        .unwrap_or_else(|| panic!("{err}"))
        .parse()
        .expect("ERR cooldown <ms-left>");
    assert!((1..=800).contains(&left), "{left}");
    // Reconnecting under the same name does not reset it.
    a.send("QUIT").await;
    drop(a);
    watcher.until("LEFT alice").await;
    let mut a = TextClient::joined(server.addr, "ALICE").await;
    assert!(a.cmd("SET 3 3 5").await.starts_with("ERR cooldown "));
    // Someone else is not affected.
    let mut b = TextClient::joined(server.addr, "bob").await;
    assert_eq!(b.cmd("SET 4 4 6").await, "OK 2");
    assert_eq!(canvas_summary(server.addr).await, (2, 2));
    // Only the accepted pixels were broadcast: the next one is bob's.
    let next = watcher.until("PIXEL").await;
    assert_eq!(parse_pixel(&next), (2, 4, 4, 6, "bob".into()));
    // When it ends is the hub's unit test, on paused time
    // (`the_cooldown_is_per_name_and_runs_on_tokio_time`).
}

#[tokio::test]
async fn rate_limit_drops_commands_over_the_rate_and_keeps_the_connection() {
    let server = start_server(with_limits(Limits {
        rate_limit: 5,
        rate_burst: 5,
        ..Default::default()
    }))
    .await;
    let mut other = TextClient::joined(server.addr, "other").await;
    let mut c = TextClient::joined(server.addr, "spammer").await;
    other.until("JOINED spammer").await;
    // The JOIN used one token; 20 SETs at once: about 4 pass, the rest are
    // refused (tokens refill at 5/s, so at most one or two more).
    for i in 0..20 {
        c.send(&format!("SET {i} 0 1")).await;
    }
    let mut ok = 0;
    let mut limited = 0;
    for _ in 0..20 {
        let r = c.reply().await;
        if r.starts_with("OK ") {
            ok += 1;
        } else {
            assert!(r.starts_with("ERR rate_limited "), "{r}");
            limited += 1;
        }
    }
    assert!((4..=7).contains(&ok), "{ok} passed");
    assert_eq!(ok + limited, 20);
    // Refused commands changed nothing.
    assert_eq!(canvas_summary(server.addr).await, (ok, ok as usize));
    // The connection stays usable once the rate allows.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.cmd("PING").await, "OK PONG");
    assert_eq!(other.cmd("PING").await, "OK PONG");
}

#[tokio::test]
async fn per_address_limit_refuses_extra_connections() {
    let server = start_server(with_limits(Limits {
        max_conns_per_ip: 2,
        ..Default::default()
    }))
    .await;
    let mut a = TextClient::joined(server.addr, "a").await;
    let mut b = TextClient::connect(server.addr).await;
    assert_eq!(b.cmd("PING").await, "OK PONG");
    let mut c = TextClient::connect(server.addr).await;
    c.send("JOIN c").await;
    let line = c.line().await;
    assert!(line.starts_with("ERR too_many_connections "), "{line}");
    assert!(c.expect_closed().await.is_empty());
    assert_eq!(a.cmd("WHO").await, "OK 1 a");
    // A freed slot can be used again.
    drop(b);
    let mut reused = false;
    for _ in 0..50 {
        let mut d = TextClient::connect(server.addr).await;
        d.send("PING").await;
        if d.line().await == "OK PONG" {
            reused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reused);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let server = start_server(with_limits(Limits {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    }))
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut prompt = TextClient::connect(server.addr).await;
    assert_eq!(prompt.cmd("PING").await, "OK PONG");
    let mut buf = Vec::new();
    let n = tokio::time::timeout(common::WAIT, silent.read_to_end(&mut buf))
        .await
        .expect("the silent connection is closed")
        .unwrap();
    assert_eq!(n, 0);
    // Having spoken in time, the other connection is not affected.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(prompt.cmd("PING").await, "OK PONG");
}

#[tokio::test]
async fn a_silent_binary_client_gets_a_keepalive_then_is_dropped() {
    let server = start_server(with_limits(Limits {
        idle_timeout: Duration::from_millis(600),
        ..Default::default()
    }))
    .await;
    let mut idle = BinClient::connect(server.addr).await;
    let mut pinger = BinClient::connect(server.addr).await;
    let keepalive = tokio::spawn(async move {
        // Silence: a keepalive, then the goodbye and the close.
        assert_eq!(idle.event().await, Event::Keepalive);
        match idle.event().await {
            Event::Bye { code, .. } => assert_eq!(code, ErrorCode::IdleTimeout),
            other => panic!("{other:?}"),
        }
        assert!(idle.try_next().await.is_none());
    });
    // A client that pings stays.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            pinger.cmd(Command::Ping { token: "x".into() }).await,
            Reply::Pong { token: "x".into() }
        );
    }
    keepalive.await.unwrap();
}

#[tokio::test]
async fn passwords_gate_everything_and_admins_kick_and_ban() {
    let server = start_server(pixchat::Config {
        password: Some("sesame".into()),
        admin_password: Some("root pw".into()),
        ..Default::default()
    })
    .await;
    let mut guest = TextClient::connect(server.addr).await;
    for cmd in ["JOIN guest", "CANVAS", "WHO", "SYNC 0", "WHOSE 0 0"] {
        let r = guest.cmd(cmd).await;
        assert!(r.starts_with("ERR forbidden "), "{cmd}: {r}");
    }
    assert_eq!(guest.cmd("PING").await, "OK PONG");
    assert!(guest.cmd("AUTH wrong").await.starts_with("ERR forbidden "));
    assert!(guest.cmd("JOIN guest").await.starts_with("ERR forbidden "));
    assert_eq!(guest.cmd("AUTH sesame").await, "OK");
    assert_eq!(guest.cmd("JOIN guest").await, "OK guest 64 64 0");

    let mut bob = TextClient::connect(server.addr).await;
    assert_eq!(bob.cmd("AUTH sesame").await, "OK");
    assert_eq!(bob.cmd("JOIN bob").await, "OK bob 64 64 0");
    assert_eq!(bob.cmd("SET 1 1 1").await, "OK 1");
    let mut eve = TextClient::connect(server.addr).await;
    assert_eq!(eve.cmd("AUTH sesame").await, "OK");
    assert_eq!(eve.cmd("JOIN eve").await, "OK eve 64 64 1");

    // A user cannot moderate: nothing changes.
    assert!(guest.cmd("KICK bob").await.starts_with("ERR forbidden "));
    assert!(guest.cmd("BAN eve").await.starts_with("ERR forbidden "));
    assert_eq!(guest.cmd("WHO").await, "OK 3 bob eve guest");

    let mut admin = TextClient::connect(server.addr).await;
    assert_eq!(admin.cmd("AUTH root pw").await, "OK");
    assert!(
        admin
            .cmd("KICK nobody")
            .await
            .starts_with("ERR no_such_user ")
    );
    assert_eq!(admin.cmd("KICK bob").await, "OK");
    let rest = bob.expect_closed().await;
    assert!(
        rest.iter()
            .any(|l| l == "BYE kicked an admin disconnected you"),
        "{rest:?}"
    );
    assert_eq!(admin.cmd("BAN Eve").await, "OK");
    let rest = eve.expect_closed().await;
    assert!(
        rest.iter().any(|l| l.starts_with("BYE banned ")),
        "{rest:?}"
    );
    guest.until("LEFT bob").await;
    guest.until("LEFT eve").await;
    // A banned name stays out; bob (only kicked) may come back.
    let mut eve2 = TextClient::connect(server.addr).await;
    assert_eq!(eve2.cmd("AUTH sesame").await, "OK");
    assert!(eve2.cmd("JOIN EVE").await.starts_with("ERR banned "));
    let mut bob2 = TextClient::connect(server.addr).await;
    assert_eq!(bob2.cmd("AUTH sesame").await, "OK");
    assert_eq!(bob2.cmd("JOIN bob").await, "OK bob 64 64 1");
    // The canvas kept bob's pixel and nothing else.
    let (seq, rows) = guest.canvas().await;
    assert_eq!((seq, rows[1][1]), (1, 1));
}

#[tokio::test]
async fn an_admin_kicking_itself_gets_its_ok_before_the_bye() {
    let server = start_server(pixchat::Config {
        admin_password: Some("root".into()),
        ..Default::default()
    })
    .await;
    for (cmd, bye) in [
        ("KICK boss", "BYE kicked an admin disconnected you"),
        (
            "BAN Boss",
            "BYE banned an admin banned you from this server",
        ),
    ] {
        let mut admin = TextClient::joined(server.addr, "boss").await;
        assert_eq!(admin.cmd("AUTH root").await, "OK");
        // The PING comes after the BYE, so it gets no reply.
        admin.send(&format!("{cmd}\nPING late")).await;
        admin.expect("OK").await;
        admin.expect(bye).await;
        assert_eq!(admin.expect_closed().await, Vec::<String>::new(), "{cmd}");
    }
    // The binary reply too.
    let mut b = BinClient::connect(server.addr).await;
    assert_eq!(
        b.cmd(Command::Auth {
            password: "root".into()
        })
        .await,
        Reply::Ok
    );
    assert!(matches!(
        b.cmd(Command::Join {
            name: "b".into(),
            resume: None,
            quiet: false
        })
        .await,
        Reply::Welcome(_)
    ));
    assert!(matches!(b.reply().await, Reply::Canvas(_)));
    assert_eq!(b.cmd(Command::Kick { name: "B".into() }).await, Reply::Ok);
    loop {
        match b.try_next().await {
            Some(pixchat::ServerMsg::Event(Event::Bye { code, .. })) => {
                assert_eq!(code, ErrorCode::Kicked);
                break;
            }
            Some(pixchat::ServerMsg::Event(_)) => {}
            other => panic!("expected BYE kicked, got {other:?}"),
        }
    }
    assert!(b.try_next().await.is_none(), "nothing after the BYE");
}

#[tokio::test]
async fn binary_clients_authenticate_too() {
    let server = start_server(pixchat::Config {
        password: Some("pw".into()),
        ..Default::default()
    })
    .await;
    let mut c = BinClient::connect(server.addr).await;
    match c
        .cmd(Command::Join {
            name: "b".into(),
            resume: None,
            quiet: false,
        })
        .await
    {
        Reply::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.cmd(Command::Auth {
            password: "pw".into()
        })
        .await,
        Reply::Ok
    );
    c.send(Command::Join {
        name: "b".into(),
        resume: None,
        quiet: false,
    })
    .await;
    assert!(matches!(c.reply().await, Reply::Welcome(_)));
}

#[tokio::test]
async fn an_http_request_is_hung_up_on_without_a_reply() {
    let server = start_server(pixchat::Config::default()).await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20\r\n\r\nJOIN evil\nSET 1 1 1\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(common::WAIT, s.read_to_end(&mut out))
        .await
        .expect("closed at once")
        .ok();
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert_eq!(watcher.cmd("WHO").await, "OK 1 watcher");
    assert_eq!(canvas_summary(server.addr).await, (0, 0));
}

#[tokio::test]
async fn bans_survive_a_restart_and_unban_lifts_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = || pixchat::Config {
        admin_password: Some("root".into()),
        storage: Some(pixchat::server::storage::StorageConfig::new(dir.path())),
        ..Default::default()
    };
    let server = start_server(config()).await;
    let mut admin = TextClient::connect(server.addr).await;
    assert_eq!(admin.cmd("AUTH root").await, "OK");
    // A name can be banned before it ever joins.
    assert_eq!(admin.cmd("BAN Mallory").await, "OK");
    let mut user = TextClient::connect(server.addr).await;
    assert!(
        user.cmd("UNBAN mallory")
            .await
            .starts_with("ERR forbidden ")
    );
    assert!(user.cmd("JOIN mallory").await.starts_with("ERR banned "));
    server.stop().await;

    // Restarted: still banned, until an admin lifts it.
    let server = start_server(config()).await;
    let mut user = TextClient::connect(server.addr).await;
    assert!(user.cmd("JOIN MALLORY").await.starts_with("ERR banned "));
    let mut admin = TextClient::connect(server.addr).await;
    assert_eq!(admin.cmd("AUTH root").await, "OK");
    assert!(
        admin
            .cmd("UNBAN bob")
            .await
            .starts_with("ERR no_such_user ")
    );
    assert!(admin.cmd("UNBAN").await.starts_with("ERR bad_args "));
    assert_eq!(admin.cmd("UNBAN mallory").await, "OK");
    assert!(user.cmd("JOIN mallory").await.starts_with("OK mallory "));
    server.stop().await;

    // And the unban is kept too.
    let server = start_server(config()).await;
    let mut bin = BinClient::connect(server.addr).await;
    assert_eq!(
        bin.cmd(Command::Auth {
            password: "root".into()
        })
        .await,
        Reply::Ok
    );
    assert!(matches!(
        bin.cmd(Command::Unban {
            name: "mallory".into()
        })
        .await,
        Reply::Error(e) if e.code == pixchat::ErrorCode::NoSuchUser
    ));
    assert_eq!(
        bin.cmd(Command::Ban {
            name: "mallory".into()
        })
        .await,
        Reply::Ok
    );
    assert_eq!(
        bin.cmd(Command::Unban {
            name: "mallory".into()
        })
        .await,
        Reply::Ok
    );
    let mut user = TextClient::connect(server.addr).await;
    assert!(user.cmd("JOIN mallory").await.starts_with("OK mallory "));
}
