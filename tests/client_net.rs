//! The library client against a real server over loopback TCP: a single
//! [`Connection`] for scripts, and the reconnecting [`Client`] across
//! dropped connections and a restarted server.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TextClient, WAIT, start_default, start_server};
use pixchat::client::{
    Backoff, Client, ClientConfig, ClientError, ClientEvent, Connection, Login, LoginError,
    RequestError,
};
use pixchat::protocol::{Command, ErrorCode, Event, Reply, Resume};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The next event `pick` accepts, skipping others; fails after [`WAIT`].
async fn expect<T>(
    rx: &mut mpsc::Receiver<ClientEvent>,
    what: &str,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(WAIT, async {
        let mut seen = Vec::new();
        loop {
            match rx.recv().await {
                Some(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                    seen.push(format!("{event:?}"));
                    assert!(seen.len() < 10_000, "too many other events");
                }
                None => panic!("client stopped while waiting for {what}; saw {seen:#?}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

fn fast(addr: SocketAddr, name: &str) -> ClientConfig {
    let mut config = ClientConfig::new(addr.to_string());
    config.login = Some(Login::new(name));
    config.backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    config
}

#[tokio::test]
async fn a_connection_joins_places_and_reads_events() {
    let server = start_default().await;
    let mut alice = Connection::connect(server.addr).await.unwrap();
    assert_eq!((alice.hello().width, alice.hello().height), (64, 64));
    let joined = alice.join(&Login::new("alice"), None).await.unwrap();
    let snap = joined.snapshot.expect("a new client gets the canvas");
    assert_eq!((snap.width, snap.height, snap.seq), (64, 64, 0));
    assert_eq!(joined.welcome.users, ["alice"]);

    let reply = alice
        .request(&Command::Set {
            x: 3,
            y: 4,
            color: 5,
        })
        .await
        .unwrap();
    assert_eq!(reply, Reply::Set { seq: 1 });
    match alice.next_event().await.unwrap() {
        Some(Event::Pixel(p)) => {
            assert_eq!((p.seq, p.x, p.y, p.color, &*p.name), (1, 3, 4, 5, "alice"))
        }
        other => panic!("{other:?}"),
    }

    let mut bob = Connection::connect(server.addr).await.unwrap();
    let joined = bob.join(&Login::new("bob"), None).await.unwrap();
    assert_eq!(joined.snapshot.unwrap().pixels[4 * 64 + 3], 5);
    match tokio::time::timeout(WAIT, alice.next_event())
        .await
        .unwrap()
        .unwrap()
    {
        Some(Event::Joined { name }) => assert_eq!(&*name, "bob"),
        other => panic!("{other:?}"),
    }
    bob.quit().await.unwrap();
}

#[tokio::test]
async fn a_quiet_login_joins_without_telling_anyone() {
    let server = start_default().await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    let mut cron = Connection::connect(server.addr).await.unwrap();
    let joined = cron
        .join(&Login::new("cron").quietly(), None)
        .await
        .unwrap();
    assert!(
        joined.welcome.users.iter().any(|u| u == "cron*"),
        "{:?}",
        joined.welcome.users
    );
    // Line by line, so a JOINED or LEFT could not be skipped over.
    watcher.send("WHO").await;
    assert_eq!(watcher.line().await, "OK 2 cron* watcher");
    cron.quit().await.unwrap();
    watcher.send("PING after").await;
    assert_eq!(watcher.line().await, "OK PONG after");
}

#[tokio::test]
async fn server_errors_come_back_as_errors_and_the_connection_stays_usable() {
    let server = start_default().await;
    let mut c = Connection::connect(server.addr).await.unwrap();
    c.join(&Login::new("erin"), None).await.unwrap();
    let err = c
        .request(&Command::Set {
            x: 99,
            y: 0,
            color: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.wire().map(|e| &e.code), Some(&ErrorCode::OutOfRange));
    assert_eq!(
        c.request(&Command::Who).await.unwrap(),
        Reply::Who {
            online: 1,
            users: vec!["erin".into()]
        }
    );

    let mut twin = Connection::connect(server.addr).await.unwrap();
    let err = twin.join(&Login::new("ERIN"), None).await.unwrap_err();
    assert_eq!(err.wire().map(|e| &e.code), Some(&ErrorCode::NameTaken));

    let refused = Connection::connect("127.0.0.1:1").await.unwrap_err();
    assert!(matches!(refused, ClientError::Connect { .. }), "{refused}");
}

#[tokio::test]
async fn join_with_resume_replays_only_what_was_missed() {
    let server = start_default().await;
    let mut c = Connection::connect(server.addr).await.unwrap();
    let first = c.join(&Login::new("rae"), None).await.unwrap();
    c.quit().await.unwrap();
    let mut other = TextClient::joined(server.addr, "other").await;
    assert_eq!(other.cmd("SET 1 1 red").await, "OK 1");
    assert_eq!(other.cmd("SET 2 2 blue").await, "OK 2");

    let resume = Resume {
        canvas_id: first.welcome.canvas_id,
        seq: first.welcome.seq,
    };
    let mut c = Connection::connect(server.addr).await.unwrap();
    let again = c.join(&Login::new("rae"), Some(resume)).await.unwrap();
    assert!(again.welcome.resumed && again.snapshot.is_none());
    let mut seqs = Vec::new();
    for _ in 0..2 {
        match c.next_event().await.unwrap() {
            Some(Event::Pixel(p)) => seqs.push((p.seq, p.x, p.y, p.color)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seqs, [(1, 1, 1, 5), (2, 2, 2, 12)]);

    // Another canvas's seq never applies: the server sends the canvas.
    let mut d = Connection::connect(server.addr).await.unwrap();
    let wrong = Resume {
        canvas_id: first.welcome.canvas_id ^ 1,
        seq: 0,
    };
    let joined = d.join(&Login::new("dee"), Some(wrong)).await.unwrap();
    assert!(!joined.welcome.resumed);
    assert_eq!(joined.snapshot.unwrap().seq, 2);
}

/// A loopback proxy whose connections the test can cut, to drop a client
/// without stopping the server.
struct Proxy {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u32>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cuts) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    /// Closes every connection open now.
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test]
async fn the_client_resumes_after_a_drop_and_delivers_the_missed_pixels() {
    let server = start_default().await;
    let proxy = Proxy::start(server.addr).await;
    let (client, mut events) = Client::spawn(fast(proxy.addr, "dot"));
    let canvas_id = expect(&mut events, "the first join", |e| match e {
        ClientEvent::Joined {
            welcome,
            snapshot: Some(_),
        } => Some(welcome.canvas_id),
        _ => None,
    })
    .await;
    let mut other = TextClient::joined(server.addr, "other").await;
    assert_eq!(other.cmd("SET 0 0 red").await, "OK 1");
    expect(&mut events, "pixel 1", |e| match e {
        ClientEvent::Event(Event::Pixel(p)) if p.seq == 1 => Some(()),
        _ => None,
    })
    .await;

    proxy.cut();
    expect(&mut events, "the drop", |e| {
        matches!(e, ClientEvent::Disconnected { .. }).then_some(())
    })
    .await;
    // Drawn while dot is away (its retry waits at least 10 ms; if it is back
    // already, these arrive live instead, which is just as correct).
    assert_eq!(other.cmd("SET 1 0 green").await, "OK 2");
    assert_eq!(other.cmd("SET 2 0 blue").await, "OK 3");

    let resumed = expect(&mut events, "the rejoin", |e| match e {
        ClientEvent::Joined { welcome, snapshot } => Some((welcome.clone(), snapshot.is_none())),
        _ => None,
    })
    .await;
    assert_eq!(resumed.0.canvas_id, canvas_id);
    assert!(resumed.1, "same canvas and history: resumed, no snapshot");
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        let seq = expect(&mut events, "the missed pixels", |e| match e {
            ClientEvent::Event(Event::Pixel(p)) => Some(p.seq),
            _ => None,
        })
        .await;
        seqs.push(seq);
    }
    assert_eq!(seqs, [2, 3], "each missed pixel once, in order");
    client.shutdown().await;
}

#[tokio::test]
async fn the_client_takes_the_new_canvas_of_a_restarted_server() {
    let first = start_default().await;
    let addr = first.addr;
    let (client, mut events) = Client::spawn(fast(addr, "phoenix"));
    let old_id = expect(&mut events, "the first join", |e| match e {
        ClientEvent::Joined { welcome, .. } => Some(welcome.canvas_id),
        _ => None,
    })
    .await;
    first.stop().await;
    let bye = expect(&mut events, "the server's goodbye", |e| match e {
        ClientEvent::Event(Event::Bye { code, .. }) => Some(code.clone()),
        _ => None,
    })
    .await;
    assert_eq!(bye, ErrorCode::ShuttingDown);

    // The same port again; a previous listener can linger a moment.
    let mut listener = None;
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            listener = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = CancellationToken::new();
    let _guard = token.clone().drop_guard();
    tokio::spawn(pixchat::run(
        listener.expect("rebind the port"),
        pixchat::Config::default(),
        token,
    ));
    let mut painter = TextClient::joined(addr, "painter").await;
    assert_eq!(painter.cmd("SET 5 6 purple").await, "OK 1");

    let snap = expect(&mut events, "the join to the new server", |e| match e {
        ClientEvent::Joined {
            snapshot: Some(s), ..
        } => Some(s.clone()),
        _ => None,
    })
    .await;
    assert_ne!(
        snap.canvas_id, old_id,
        "a restarted server has a new canvas"
    );
    assert_eq!(snap.pixels[6 * 64 + 5], 15, "the pixel placed while away");
    client.shutdown().await;
}

#[tokio::test]
async fn replies_come_back_by_tag_and_rtt_is_measured() {
    let server = start_default().await;
    let (client, mut events) = Client::spawn(fast(server.addr, "tagger"));
    expect(&mut events, "the join", |e| {
        matches!(e, ClientEvent::Joined { .. }).then_some(())
    })
    .await;
    client
        .send(
            7,
            Command::Set {
                x: 1,
                y: 2,
                color: 3,
            },
        )
        .unwrap();
    client
        .send(
            8,
            Command::Set {
                x: 64,
                y: 0,
                color: 3,
            },
        )
        .unwrap();
    let (seven, eight) = (
        expect(&mut events, "reply 7", |e| match e {
            ClientEvent::Reply { tag: 7, result } => Some(result.clone()),
            _ => None,
        })
        .await,
        expect(&mut events, "reply 8", |e| match e {
            ClientEvent::Reply { tag: 8, result } => Some(result.clone()),
            _ => None,
        })
        .await,
    );
    assert_eq!(seven, Ok(Reply::Set { seq: 1 }));
    assert!(matches!(eight, Ok(Reply::Error(e)) if e.code == ErrorCode::OutOfRange));
    // The first keepalive goes out right after joining.
    expect(&mut events, "a round trip", |e| match e {
        ClientEvent::Rtt(d) => Some(*d),
        _ => None,
    })
    .await;
    client.shutdown().await;
}

#[tokio::test]
async fn without_a_connection_commands_are_answered_not_connected() {
    // Nobody listens on port 1.
    let mut config = fast("127.0.0.1:1".parse().unwrap(), "lonely");
    config.backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(5));
    let (client, mut events) = Client::spawn(config);
    let retry = expect(&mut events, "the failed attempt", |e| match e {
        ClientEvent::Disconnected { retry_in, reason } => Some((*retry_in, reason.clone())),
        _ => None,
    })
    .await;
    assert!(retry.1.contains("cannot connect"), "{}", retry.1);
    assert!(retry.0 >= Duration::from_millis(2500), "{:?}", retry.0);
    client.send(1, Command::Who).unwrap();
    let result = expect(&mut events, "the unsent reply", |e| match e {
        ClientEvent::Reply { tag: 1, result } => Some(result.clone()),
        _ => None,
    })
    .await;
    assert_eq!(result, Err(pixchat::client::RequestError::NotConnected));
    client.shutdown().await;
}

#[tokio::test]
async fn a_refused_login_waits_for_a_better_one() {
    let server = start_default().await;
    let _taken = TextClient::joined(server.addr, "taken").await;
    let (client, mut events) = Client::spawn(ClientConfig::new(server.addr.to_string()));
    client.login(Login::new("has space")).unwrap();
    let err = expect(&mut events, "bad_name", |e| match e {
        ClientEvent::LoginRejected(e) => Some(e.clone()),
        _ => None,
    })
    .await;
    assert_eq!(err.wire().code, ErrorCode::BadName);
    client.login(Login::new("TAKEN")).unwrap();
    let err = expect(&mut events, "name_taken", |e| match e {
        ClientEvent::LoginRejected(e) => Some(e.clone()),
        _ => None,
    })
    .await;
    assert_eq!(err.wire().code, ErrorCode::NameTaken);
    client.login(Login::new("fresh")).unwrap();
    let name = expect(&mut events, "the join", |e| match e {
        ClientEvent::Joined { welcome, .. } => Some(welcome.name.clone()),
        _ => None,
    })
    .await;
    assert_eq!(name, "fresh");
    client.shutdown().await;
}

const PASSWORD: &str = "s3cret";
const ADMIN: &str = "b0ss";

/// A server that wants `PASSWORD`, with `ADMIN` as its admin password.
async fn start_locked() -> common::TestServer {
    start_server(pixchat::Config {
        password: Some(PASSWORD.into()),
        admin_password: Some(ADMIN.into()),
        ..pixchat::Config::default()
    })
    .await
}

fn login(name: &str, password: &str) -> Login {
    Login::new(name).with_password(Some(password.into()))
}

#[tokio::test]
async fn a_connection_logs_in_to_a_password_server_only_with_the_password() {
    let server = start_locked().await;

    let mut c = Connection::connect(server.addr).await.unwrap();
    let err = c.join(&Login::new("nopw"), None).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Login(LoginError::PasswordRequired(e)) if e.code == ErrorCode::Forbidden),
        "{err:?}"
    );

    let err = c.join(&login("guess", "letmein"), None).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Login(LoginError::WrongPassword(e)) if e.code == ErrorCode::Forbidden),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "forbidden: wrong password");

    // The same connection, now with the password: AUTH, then JOIN.
    let joined = c.join(&login("alice", PASSWORD), None).await.unwrap();
    assert_eq!(joined.welcome.users, ["alice"]);
    let reply = c
        .request(&Command::Set {
            x: 3,
            y: 4,
            color: 5,
        })
        .await
        .unwrap();
    assert_eq!(reply, Reply::Set { seq: 1 });

    // WHOSE needs no JOIN, only AUTH.
    let mut reader = Connection::connect(server.addr).await.unwrap();
    let err = reader.whose(3, 4).await.unwrap_err();
    assert_eq!(err.wire().map(|e| &e.code), Some(&ErrorCode::Forbidden));
    reader.auth(PASSWORD).await.unwrap();
    let placed = reader.whose(3, 4).await.unwrap().expect("alice placed it");
    assert_eq!((placed.name.as_str(), placed.seq), ("alice", 1));
    assert!(placed.unix_ms > 0);
    assert_eq!(reader.whose(0, 0).await.unwrap(), None);
}

#[tokio::test]
async fn a_banned_name_is_a_name_refusal_not_a_password_prompt() {
    // The server says `banned`, which the client reports as a name problem.
    let server = start_locked().await;
    let mut admin = TextClient::connect(server.addr).await;
    assert_eq!(admin.cmd(&format!("AUTH {ADMIN}")).await, "OK");
    assert_eq!(admin.cmd("BAN troll").await, "OK");
    let mut c = Connection::connect(server.addr).await.unwrap();
    let err = c.join(&login("troll", PASSWORD), None).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Login(LoginError::Name(e)) if e.code == ErrorCode::Banned),
        "{err:?}"
    );

    // Without a password on a server that needs none: the same.
    let open = start_server(pixchat::Config {
        admin_password: Some(ADMIN.into()),
        ..pixchat::Config::default()
    })
    .await;
    let mut admin = TextClient::connect(open.addr).await;
    assert_eq!(admin.cmd(&format!("AUTH {ADMIN}")).await, "OK");
    assert_eq!(admin.cmd("BAN troll").await, "OK");
    let mut c = Connection::connect(open.addr).await.unwrap();
    let err = c.join(&Login::new("troll"), None).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Login(LoginError::Name(e)) if e.code == ErrorCode::Banned),
        "{err:?}"
    );
    // Its admin password is a password: a wrong one is refused.
    let err = c
        .join(&login("friend", "whatever"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Login(LoginError::WrongPassword(_))),
        "{err:?}"
    );

    // A password for a server without any is no obstacle.
    let plain = start_default().await;
    let mut c = Connection::connect(plain.addr).await.unwrap();
    let joined = c.join(&login("friend", "whatever"), None).await.unwrap();
    assert_eq!(joined.welcome.name, "friend");
}

#[tokio::test]
async fn the_client_authenticates_again_on_every_reconnect() {
    let server = start_locked().await;
    let proxy = Proxy::start(server.addr).await;
    let mut config = fast(proxy.addr, "dot");
    config.login = Some(login("dot", PASSWORD));
    let (client, mut events) = Client::spawn(config);
    expect(&mut events, "the first join", |e| {
        matches!(e, ClientEvent::Joined { .. }).then_some(())
    })
    .await;
    proxy.cut();
    expect(&mut events, "the drop", |e| {
        matches!(e, ClientEvent::Disconnected { .. }).then_some(())
    })
    .await;
    // Any refusal (the server answers JOIN without AUTH with forbidden)
    // would show up here before the join.
    let rejoined = expect(&mut events, "the rejoin", |e| match e {
        ClientEvent::Joined { welcome, .. } => Some(Ok(welcome.name.clone())),
        ClientEvent::LoginRejected(e) => Some(Err(e.clone())),
        _ => None,
    })
    .await;
    assert_eq!(rejoined, Ok("dot".to_string()));
    client.send(1, Command::Who).unwrap();
    let who = expect(&mut events, "the WHO reply", |e| match e {
        ClientEvent::Reply { tag: 1, result } => Some(result.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        who,
        Ok(Reply::Who {
            online: 1,
            users: vec!["dot".into()]
        })
    );
    client.shutdown().await;
}

#[tokio::test]
async fn a_refused_password_waits_for_a_new_login_instead_of_retrying() {
    let server = start_locked().await;
    let (client, mut events) = Client::spawn(fast(server.addr, "pat"));
    let first = expect(&mut events, "the refusal", |e| match e {
        ClientEvent::LoginRejected(e) => Some(e.clone()),
        _ => None,
    })
    .await;
    assert!(
        matches!(first, LoginError::PasswordRequired(_)),
        "{first:?}"
    );

    client.login(login("pat", "nope")).unwrap();
    let second = expect(&mut events, "the second refusal", |e| match e {
        ClientEvent::LoginRejected(e) => Some(e.clone()),
        ClientEvent::Joined { .. } => panic!("joined with a wrong password"),
        _ => None,
    })
    .await;
    assert!(matches!(second, LoginError::WrongPassword(_)), "{second:?}");

    // Parked: a command is answered at once as not connected, and nothing
    // (no retry, no second refusal) comes before that answer.
    client.send(1, Command::Who).unwrap();
    let next = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            next,
            ClientEvent::Reply {
                tag: 1,
                result: Err(RequestError::NotConnected)
            }
        ),
        "{next:?}"
    );

    client.login(login("pat", PASSWORD)).unwrap();
    expect(&mut events, "the join", |e| match e {
        ClientEvent::Joined { .. } => Some(()),
        ClientEvent::LoginRejected(e) => panic!("refused: {e}"),
        _ => None,
    })
    .await;
    client.shutdown().await;
}

#[tokio::test]
async fn a_kicked_client_does_not_come_back_by_itself() {
    let server = start_locked().await;
    let mut config = fast(server.addr, "dot");
    config.login = Some(login("dot", PASSWORD));
    // Without a delay a client that retried would be back at once.
    config.backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
    let (client, mut events) = Client::spawn(config);
    expect(&mut events, "the join", |e| {
        matches!(e, ClientEvent::Joined { .. }).then_some(())
    })
    .await;

    let mut admin = TextClient::connect(server.addr).await;
    // A user's password does not allow kicking.
    assert_eq!(admin.cmd(&format!("AUTH {PASSWORD}")).await, "OK");
    assert!(admin.cmd("KICK dot").await.starts_with("ERR forbidden"));
    assert_eq!(admin.cmd(&format!("AUTH {ADMIN}")).await, "OK");
    assert_eq!(admin.cmd("KICK dot").await, "OK");

    let bye = expect(&mut events, "the BYE", |e| match e {
        ClientEvent::Event(Event::Bye { code, .. }) => Some(code.clone()),
        _ => None,
    })
    .await;
    assert_eq!(bye, ErrorCode::Kicked);
    // Next in order: the eviction, not a drop-and-retry.
    let next = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            &next,
            ClientEvent::Evicted {
                code: ErrorCode::Kicked,
                ..
            }
        ),
        "{next:?}"
    );
    client.send(1, Command::Who).unwrap();
    let next = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            next,
            ClientEvent::Reply {
                tag: 1,
                result: Err(RequestError::NotConnected)
            }
        ),
        "a parked client answers at once, nothing before: {next:?}"
    );
    assert_eq!(admin.cmd("WHO").await, "OK 0");

    // Asked to, it comes back (resuming where it was).
    client.login(login("dot", PASSWORD)).unwrap();
    expect(&mut events, "the join after the kick", |e| {
        matches!(e, ClientEvent::Joined { .. }).then_some(())
    })
    .await;
    assert_eq!(admin.cmd("WHO").await, "OK 1 dot");
    client.shutdown().await;
}
