//! The hub on its own: commands in, replies and events out, over real
//! loopback sockets, with time paused where a timer matters.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::*;
use crate::server::broadcast::BroadcastLimits;

fn config() -> HubConfig {
    HubConfig {
        size: Some((8, 8)),
        default_size: (8, 8),
        history: 1000,
        memory_history: 100_000,
        broadcast: BroadcastLimits::default(),
        storage: None,
        cooldown: Duration::ZERO,
        limit_by: crate::server::LimitBy::Name,
        password: None,
        admin_password: Some("root".into()),
        presence_threshold: 1000,
    }
}

/// A session on one end of a real connection; the other end reads.
struct Client {
    session: Session,
    peer: tokio::net::TcpStream,
}

async fn client(hub: &Hub) -> Client {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let sock = std::sync::Arc::new(crate::server::sock::Sock::Tcp(server));
    let outbox = Outbox::new(Mode::Text, sock, hub.ring().clone(), 0);
    Client {
        session: hub.session(outbox),
        peer,
    }
}

impl Client {
    async fn run(&mut self, hub: &Hub, cmd: Command) -> Result<After, WireError> {
        hub.handle(&mut self.session, cmd).await
    }

    async fn join(&mut self, hub: &Hub, name: &str) {
        let join = Command::Join {
            name: name.into(),
            resume: None,
            quiet: false,
        };
        self.run(hub, join).await.unwrap();
    }

    /// Everything written so far, as text.
    async fn read(&mut self, hub: &Hub) -> String {
        self.session.outbox.flush(hub.ring());
        let mut buf = vec![0; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_millis(200), self.peer.read(&mut buf))
            .await
            .map_or(0, |r| r.unwrap());
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

fn set(x: u32, y: u32, color: u32) -> Command {
    Command::Set { x, y, color }
}

#[tokio::test]
async fn a_placement_is_answered_then_seen_in_memory() {
    let hub = Hub::open(&config()).unwrap();
    let mut a = client(&hub).await;
    a.join(&hub, "al").await;
    assert!(a.read(&hub).await.starts_with("OK al 8 8 0\n"));
    a.run(&hub, set(1, 2, 5)).await.unwrap();
    assert_eq!(a.read(&hub).await, "OK 1\nPIXEL 1 1 2 5 al\n");
    assert_eq!(hub.lock().world.canvas.get(1, 2), Some(5));
}

#[tokio::test(start_paused = true)]
async fn the_cooldown_is_per_name_and_runs_on_tokio_time() {
    let hub = Hub::open(&HubConfig {
        cooldown: Duration::from_secs(5),
        ..config()
    })
    .unwrap();
    let mut a = client(&hub).await;
    a.join(&hub, "al").await;
    a.run(&hub, set(0, 0, 1)).await.unwrap();
    let early = a.run(&hub, set(0, 0, 2)).await.unwrap_err();
    assert_eq!(
        (early.code, early.message.as_str()),
        (ErrorCode::Cooldown, "5000")
    );
    tokio::time::advance(Duration::from_millis(4900)).await;
    let early = a.run(&hub, set(0, 0, 2)).await.unwrap_err();
    assert_eq!(early.message, "100");
    // Coming back under the same name does not reset it.
    hub.leave(&mut a.session);
    let mut b = client(&hub).await;
    b.join(&hub, "AL").await;
    assert_eq!(
        b.run(&hub, set(0, 0, 2)).await.unwrap_err().code,
        ErrorCode::Cooldown
    );
    tokio::time::advance(Duration::from_millis(100)).await;
    b.run(&hub, set(0, 0, 2)).await.unwrap();
}

#[tokio::test]
async fn bans_are_world_changes_that_an_unban_lifts() {
    let hub = Hub::open(&config()).unwrap();
    let mut admin = client(&hub).await;
    admin
        .run(
            &hub,
            Command::Auth {
                password: "root".into(),
            },
        )
        .await
        .unwrap();
    let mut eve = client(&hub).await;
    eve.join(&hub, "eve").await;
    admin
        .run(&hub, Command::Ban { name: "Eve".into() })
        .await
        .unwrap();
    assert!(hub.lock().world.is_banned("eve"));
    assert!(eve.read(&hub).await.contains("BYE banned "));
    // The connection ends after the goodbye.
    hub.leave(&mut eve.session);
    let mut again = client(&hub).await;
    let join = Command::Join {
        name: "EVE".into(),
        resume: None,
        quiet: false,
    };
    assert_eq!(
        again.run(&hub, join.clone()).await.unwrap_err().code,
        ErrorCode::Banned
    );
    admin
        .run(&hub, Command::Unban { name: "eve".into() })
        .await
        .unwrap();
    assert_eq!(
        admin
            .run(&hub, Command::Unban { name: "eve".into() })
            .await
            .unwrap_err()
            .code,
        ErrorCode::NoSuchUser
    );
    again.run(&hub, join).await.unwrap();
}

#[tokio::test]
async fn a_user_may_not_moderate() {
    let hub = Hub::open(&config()).unwrap();
    let mut u = client(&hub).await;
    for cmd in [
        Command::Kick { name: "x".into() },
        Command::Ban { name: "x".into() },
        Command::Unban { name: "x".into() },
    ] {
        assert_eq!(
            u.run(&hub, cmd).await.unwrap_err().code,
            ErrorCode::Forbidden
        );
    }
    assert!(hub.lock().world.bans.is_empty());
}

#[tokio::test]
async fn a_tell_to_an_impossible_name_is_nobody() {
    let hub = Hub::open(&config()).unwrap();
    let mut a = client(&hub).await;
    a.join(&hub, "al").await;
    let tell = Command::Tell {
        to: "no one".into(),
        text: "hi".into(),
    };
    assert_eq!(
        a.run(&hub, tell).await.unwrap_err().code,
        ErrorCode::NoSuchUser
    );
}

#[tokio::test]
async fn quiet_users_are_listed_with_a_star_and_not_announced() {
    let hub = Hub::open(&config()).unwrap();
    let mut al = client(&hub).await;
    al.join(&hub, "al").await;
    al.read(&hub).await;
    let mut bot = client(&hub).await;
    let join = Command::Join {
        name: "bot".into(),
        resume: None,
        quiet: true,
    };
    bot.run(&hub, join).await.unwrap();
    assert_eq!(
        hub.lock().user_names(None),
        (2, vec!["al".into(), "bot*".into()])
    );
    hub.leave(&mut bot.session);
    assert_eq!(al.read(&hub).await, "");
}

#[tokio::test]
async fn the_journal_keeps_bans_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let durable = || HubConfig {
        storage: Some(StorageConfig::new(dir.path())),
        ..config()
    };
    {
        let hub = Arc::new(Hub::open(&durable()).unwrap());
        hub.attach_journal();
        let mut admin = client(&hub).await;
        admin
            .run(
                &hub,
                Command::Auth {
                    password: "root".into(),
                },
            )
            .await
            .unwrap();
        admin
            .run(
                &hub,
                Command::Ban {
                    name: "mallory".into(),
                },
            )
            .await
            .unwrap();
        // The OK waits for the record: once it is out, the ban is on disk.
        let mut out = String::new();
        for _ in 0..50 {
            out += &admin.read(&hub).await;
            if out.contains("OK") {
                break;
            }
        }
        assert_eq!(out, "OK\n");
        hub.close();
    }
    let hub = Hub::open(&durable()).unwrap();
    assert!(hub.lock().world.is_banned("Mallory"));
}

#[tokio::test]
async fn who_pages_through_a_crowd_exactly() {
    let hub = Hub::open(&config()).unwrap();
    {
        let mut st = hub.lock();
        for i in 0..2500 {
            let name: Arc<str> = Arc::from(format!("U{i:05}"));
            st.roster.insert(
                Arc::from(name.to_ascii_lowercase()),
                Online::new(name, i % 7 == 0),
            );
        }
    }
    let mut a = client(&hub).await;
    let mut seen = Vec::new();
    let mut cmd = Command::Who;
    loop {
        a.run(&hub, cmd).await.unwrap();
        let mut line = String::new();
        while !line.ends_with('\n') {
            line.push_str(&a.read(&hub).await);
        }
        let words: Vec<String> = line.trim_end().split(' ').map(String::from).collect();
        assert_eq!(words[..2], ["OK", "2500"]);
        let page = &words[2..];
        assert!(page.len() <= MAX_LISTED_USERS);
        let Some(last) = page.last() else { break };
        cmd = Command::WhoAfter {
            after: last.clone(),
        };
        seen.extend_from_slice(page);
    }
    let want: Vec<String> = (0..2500)
        .map(|i| format!("U{i:05}{}", if i % 7 == 0 { "*" } else { "" }))
        .collect();
    assert_eq!(seen, want);
}
