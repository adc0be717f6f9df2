//! Several real `pixchat-server` processes sharing one canvas through a real
//! `redis-server` (started here on a free loopback port, stopped by pid).
//! Skipped loudly when `redis-server` is missing, except under CI.

mod common;

use std::time::Duration;

use common::{
    BinClient, RedisProcess, SentinelProcess, ServerProcess, TextClient, parse_pixel, poll_until,
};
use pixchat::protocol::{Command, Event, Reply, Resume, ServerMsg};

/// Redis and `n` servers on it, each with its own (unused) data dir.
struct Cluster {
    redis: RedisProcess,
    servers: Vec<ServerProcess>,
    _dirs: Vec<tempfile::TempDir>,
}

async fn cluster(n: usize) -> Option<Cluster> {
    if !RedisProcess::available() {
        return None;
    }
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = RedisProcess::start(redis_dir.path()).await;
    let mut dirs = vec![redis_dir];
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(start_server(&redis, &mut dirs).await);
    }
    Some(Cluster {
        redis,
        servers,
        _dirs: dirs,
    })
}

async fn start_server(redis: &RedisProcess, dirs: &mut Vec<tempfile::TempDir>) -> ServerProcess {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--redis", &redis.url()]).await;
    dirs.push(dir);
    server
}

/// Reads the next `n` PIXEL events with a seq above `after`.
async fn pixels_after(
    c: &mut TextClient,
    after: u64,
    n: usize,
) -> Vec<(u64, usize, usize, u8, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let p = pixels(c, 1).await.remove(0);
        if p.0 > after {
            out.push(p);
        }
    }
    out
}

/// Reads `n` PIXEL events (skipping other lines) as (seq, x, y, color, name).
async fn pixels(c: &mut TextClient, n: usize) -> Vec<(u64, usize, usize, u8, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let l = c.line().await;
        if l.starts_with("PIXEL") {
            out.push(parse_pixel(&l));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_chat_dms_and_pixels_cross_servers_in_one_order() {
    let Some(cl) = cluster(3).await else { return };
    let [a, b, c] = [0, 1, 2].map(|i| cl.servers[i].addr);
    let mut alice = TextClient::joined(a, "alice").await;
    let mut bob = TextClient::joined(b, "bob").await;
    alice.until("JOINED bob").await;
    let mut carol = TextClient::joined(c, "carol").await;
    alice.until("JOINED carol").await;
    bob.until("JOINED carol").await;
    assert_eq!(carol.cmd("WHO").await, "OK 3 alice bob carol");
    // Names are unique across the cluster.
    let mut dup = TextClient::connect(c).await;
    assert!(dup.cmd("JOIN ALICE").await.starts_with("ERR name_taken "));

    assert_eq!(alice.cmd("SAY hello cluster").await, "OK");
    bob.until("MSG alice hello cluster").await;
    carol.until("MSG alice hello cluster").await;
    assert_eq!(bob.cmd("TELL Carol psst").await, "OK");
    carol.until("DM bob psst").await;
    // alice got no DM: the next thing she sees after the chat is bob's pixel.
    assert!(bob.cmd("SET 1 1 1").await.starts_with("OK "));
    assert_eq!(alice.until("PIXEL").await, "PIXEL 1 1 1 1 bob");

    // Everyone draws at once, on three servers.
    const EACH: usize = 40;
    for i in 0..EACH {
        for (c, row) in [(&mut alice, 2), (&mut bob, 3), (&mut carol, 4)] {
            c.send(&format!("SET {} {row} {}", i % 64, (i + row) % 16))
                .await;
        }
    }
    let total = 3 * EACH;
    // bob's and carol's own copies of the first pixel may still be unread.
    let seen_a = pixels_after(&mut alice, 1, total).await;
    let seen_b = pixels_after(&mut bob, 1, total).await;
    let seen_c = pixels_after(&mut carol, 1, total).await;
    assert_eq!(seen_a, seen_b, "servers A and B delivered different orders");
    assert_eq!(seen_a, seen_c, "servers A and C delivered different orders");
    let seqs: Vec<u64> = seen_a.iter().map(|p| p.0).collect();
    assert_eq!(seqs, (2..=1 + total as u64).collect::<Vec<_>>());

    // The canvas is the same everywhere.
    let mut views = Vec::new();
    for s in &cl.servers {
        views.push(TextClient::connect(s.addr).await.canvas().await);
    }
    assert_eq!(views[0].0, 1 + total as u64);
    assert!(views.iter().all(|v| *v == views[0]));
    alice.send("QUIT").await;
    carol.until("LEFT alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_late_serves_the_whole_canvas() {
    let Some(mut cl) = cluster(1).await else {
        return;
    };
    let mut painter = TextClient::joined(cl.servers[0].addr, "painter").await;
    for i in 0..30 {
        assert_eq!(
            painter.cmd(&format!("SET {i} {i} {}", i % 16)).await,
            format!("OK {}", i + 1)
        );
    }
    assert_eq!(painter.cmd("SAY before you came").await, "OK");
    let mut dirs = Vec::new();
    let late = start_server(&cl.redis, &mut dirs).await;
    cl.servers.push(late);
    let expected = TextClient::connect(cl.servers[0].addr).await.canvas().await;
    let mut newcomer = TextClient::connect(cl.servers[1].addr).await;
    assert_eq!(newcomer.canvas().await, expected);
    assert_eq!(
        newcomer
            .cmd("WHOSE 7 7")
            .await
            .split(' ')
            .take(2)
            .collect::<Vec<_>>(),
        ["OK", "painter"]
    );
    assert_eq!(newcomer.cmd("JOIN late").await, "OK late 64 64 30");
    assert!(newcomer.line().await.ends_with(" painter before you came"));
    // And live events flow to it.
    assert_eq!(painter.cmd("SET 0 63 3").await, "OK 31");
    assert_eq!(newcomer.until("PIXEL").await, "PIXEL 31 0 63 3 painter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_s_users_leave_and_the_others_keep_serving() {
    let Some(mut cl) = cluster(3).await else {
        return;
    };
    let mut alice = TextClient::joined(cl.servers[0].addr, "alice").await;
    let _bob = TextClient::joined(cl.servers[1].addr, "bob").await;
    alice.until("JOINED bob").await;
    let mut carol = TextClient::joined(cl.servers[2].addr, "carol").await;
    alice.until("JOINED carol").await;

    let doomed = cl.servers.remove(1);
    doomed.kill9().await;
    // Within the heartbeat time to live (5 s) plus the reaper's period
    // (and once Redis itself has been up that long): bounded at 30 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut left = false;
    while !left && tokio::time::Instant::now() < deadline {
        if let Some(l) = alice.try_line_within(Duration::from_secs(1)).await {
            left = l == "LEFT bob";
        }
    }
    assert!(left, "bob was never shown as left");
    carol.until("LEFT bob").await;
    assert_eq!(alice.cmd("WHO").await, "OK 2 alice carol");
    // The others still serve, and bob's name is free again.
    assert!(alice.cmd("SET 5 5 5").await.starts_with("OK "));
    assert!(carol.until("PIXEL").await.ends_with(" 5 5 5 alice"));
    let mut bob_again = TextClient::joined(cl.servers[1].addr, "bob").await;
    assert_eq!(bob_again.cmd("WHO").await, "OK 3 alice bob carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_acknowledged_pixel_and_no_event() {
    let Some(mut cl) = cluster(2).await else {
        return;
    };
    let mut watchers = Vec::new();
    for (i, s) in cl.servers.iter().enumerate() {
        watchers.push(TextClient::joined(s.addr, &format!("watcher{i}")).await);
    }
    let mut painter = TextClient::joined(cl.servers[0].addr, "painter").await;
    let mut acked = Vec::new();
    let place = async |painter: &mut TextClient, i: u64, acked: &mut Vec<(u64, u64)>| {
        let r = painter
            .cmd(&format!("SET {} {} {}", i % 64, i / 64, i % 15 + 1))
            .await;
        if let Some(seq) = r.strip_prefix("OK ") {
            acked.push((seq.parse::<u64>().unwrap(), i));
            true
        } else {
            assert!(r.starts_with("ERR unavailable "), "{r}");
            false
        }
    };
    for i in 0..50 {
        assert!(place(&mut painter, i, &mut acked).await);
    }
    // Redis goes away for a few seconds: changes are refused, reads work.
    cl.redis.stop().await;
    let mut refused = 0;
    for i in 50..60 {
        if !place(&mut painter, i, &mut acked).await {
            refused += 1;
        }
    }
    assert!(refused > 0, "nothing was refused while Redis was down");
    let mut reader = TextClient::connect(cl.servers[1].addr).await;
    assert_eq!(reader.canvas().await.0, acked.len() as u64);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cl.redis.restart().await;
    // Back: placing works again (once the server has reconnected).
    let mut resumed = false;
    for i in 60..160 {
        if place(&mut painter, i, &mut acked).await {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(resumed, "placing never worked again after Redis came back");
    for j in 0..20 {
        assert!(place(&mut painter, 1000 + j, &mut acked).await);
    }
    let last = acked.last().unwrap().0;
    // Every acknowledged pixel is on every server's canvas, and every
    // watcher got every event, in order, without a gap.
    for (w, s) in watchers.iter_mut().zip(&cl.servers) {
        let seen = pixels(w, last as usize).await;
        let seqs: Vec<u64> = seen.iter().map(|p| p.0).collect();
        assert_eq!(
            seqs,
            (1..=last).collect::<Vec<_>>(),
            "a watcher missed events"
        );
        let (seq, rows) = TextClient::connect(s.addr).await.canvas().await;
        assert_eq!(seq, last);
        for (_, i) in &acked {
            let (x, y) = ((i % 64) as usize, (i / 64) as usize);
            let newest = acked
                .iter()
                .rev()
                .find(|(_, j)| j % 64 == i % 64 && j / 64 == i / 64);
            if newest.map(|(_, j)| j) == Some(i) {
                assert_eq!(u64::from(rows[y][x]), i % 15 + 1, "pixel {i} lost");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moving_to_another_server_resumes_where_it_was() {
    let Some(cl) = cluster(3).await else { return };
    let mut roamer = BinClient::connect(cl.servers[0].addr).await;
    roamer
        .send(Command::Join {
            name: "roamer".into(),
            resume: None,
            quiet: false,
        })
        .await;
    let w = match roamer.reply().await {
        Reply::Welcome(w) => w,
        other => panic!("{other:?}"),
    };
    drop(roamer);
    let mut painter = TextClient::joined(cl.servers[1].addr, "painter").await;
    for i in 0..5 {
        assert!(
            painter
                .cmd(&format!("SET {i} 9 {i}"))
                .await
                .starts_with("OK ")
        );
    }
    // Wait until the roamer's old session is gone everywhere.
    let mut gone = false;
    for _ in 0..100 {
        if !painter.cmd("WHO").await.contains("roamer") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone);
    let mut roamer = BinClient::connect(cl.servers[2].addr).await;
    roamer
        .send(Command::Join {
            name: "roamer".into(),
            resume: Some(Resume {
                canvas_id: w.canvas_id,
                seq: w.seq,
            }),
            quiet: false,
        })
        .await;
    let w2 = match roamer.reply().await {
        Reply::Welcome(w) => w,
        other => panic!("{other:?}"),
    };
    assert!(
        w2.resumed,
        "the other server did not resume from seq {}",
        w.seq
    );
    assert_eq!(w2.canvas_id, w.canvas_id);
    for seq in w.seq + 1..=w2.seq {
        loop {
            match roamer.next().await {
                ServerMsg::Event(Event::Pixel(p)) => {
                    assert_eq!(p.seq, seq);
                    break;
                }
                ServerMsg::Event(_) => {}
                other => panic!("expected the missed pixels, got {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_kicking_itself_gets_its_ok_before_the_bye() {
    if !RedisProcess::available() {
        return;
    }
    let redis_dir = tempfile::tempdir().unwrap();
    let redis = RedisProcess::start(redis_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--redis", &redis.url(), "--admin-password", "root"];
    let server = ServerProcess::start(dir.path(), &args).await;
    // The eviction comes back from the Redis stream on its own time, so
    // try it a few times.
    for i in 0..10 {
        let name = format!("boss{i}");
        let mut admin = TextClient::joined(server.addr, &name).await;
        assert_eq!(admin.cmd("AUTH root").await, "OK");
        admin.send(&format!("KICK {name}")).await;
        // The previous admin's LEFT may still be on its way.
        let rest: Vec<String> = admin
            .expect_closed()
            .await
            .into_iter()
            .filter(|l| !l.starts_with("LEFT "))
            .collect();
        assert_eq!(rest, ["OK", "BYE kicked an admin disconnected you"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_join_is_listed_everywhere_and_announced_nowhere() {
    let Some(cl) = cluster(2).await else { return };
    let [a, b] = [0, 1].map(|i| cl.servers[i].addr);
    let mut alice = TextClient::joined(a, "alice").await;
    let mut cron = TextClient::connect(b).await;
    assert!(cron.cmd("JOIN cron quiet").await.starts_with("OK cron "));
    // The other server learns of it from the stream, soon after.
    let mut listed = false;
    for _ in 0..50 {
        if alice.cmd("WHO").await == "OK 2 alice cron*" {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listed, "cron is not listed on the other server");
    let mut dup = TextClient::connect(a).await;
    assert!(dup.cmd("JOIN CRON").await.starts_with("ERR name_taken "));
    assert!(cron.cmd("SET 2 2 2").await.starts_with("OK "));
    cron.send("QUIT").await;
    cron.until("OK bye").await;
    // Everything alice saw since: the pixel, and nothing about cron coming
    // or going; the roster converges to alice alone.
    let mut gone = false;
    for _ in 0..50 {
        alice.send("WHO").await;
        let mut lines = Vec::new();
        let who = loop {
            let l = alice.line().await;
            if l.starts_with("OK ") {
                break l;
            }
            lines.push(l);
        };
        assert!(
            lines
                .iter()
                .all(|l| !l.starts_with("JOINED") && !l.starts_with("LEFT")),
            "{lines:?}"
        );
        if who == "OK 1 alice" {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "cron is still listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_are_cluster_wide_survive_restarts_and_can_be_lifted() {
    let Some(cl) = cluster(0).await else { return };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let url = cl.redis.url();
    let args = ["--redis", url.as_str(), "--admin-password", "root"];
    let a = ServerProcess::start(dirs[0].path(), &args).await;
    let b = ServerProcess::start(dirs[1].path(), &args).await;
    let mut admin = TextClient::connect(a.addr).await;
    assert_eq!(admin.cmd("AUTH root").await, "OK");
    assert_eq!(admin.cmd("BAN mallory").await, "OK");
    let mut user = TextClient::connect(b.addr).await;
    assert!(user.cmd("JOIN Mallory").await.starts_with("ERR banned "));
    // A server that restarts still knows (Redis keeps the bans).
    b.stop().await;
    let b = ServerProcess::start(dirs[1].path(), &args).await;
    let mut user = TextClient::connect(b.addr).await;
    assert!(user.cmd("JOIN mallory").await.starts_with("ERR banned "));
    let mut admin_b = TextClient::connect(b.addr).await;
    assert_eq!(admin_b.cmd("AUTH root").await, "OK");
    assert!(
        admin_b
            .cmd("UNBAN bob")
            .await
            .starts_with("ERR no_such_user ")
    );
    assert_eq!(admin_b.cmd("UNBAN mallory").await, "OK");
    let mut user = TextClient::connect(a.addr).await;
    assert!(user.cmd("JOIN mallory").await.starts_with("OK mallory "));

    // An address ban, asked of the server the user is on, reaches every
    // server through Redis: a fresh name from that address is refused on
    // the other one too, and both list it.
    let _eve = TextClient::joined(b.addr, "eve").await;
    assert!(
        admin
            .cmd("BAN eve addr")
            .await
            .starts_with("ERR no_such_user eve is not online on this server"),
        "only eve's server knows her address"
    );
    assert_eq!(admin_b.cmd("BAN eve addr").await, "OK");
    assert!(user.until("BYE").await.starts_with("BYE banned "));
    let (limit, every) = (Duration::from_secs(5), Duration::from_millis(100));
    let bans = poll_until(
        limit,
        every,
        async || admin.cmd("BANS").await,
        |b| b == "OK 2 127.0.0.1/32 eve",
    )
    .await;
    assert_eq!(bans, "OK 2 127.0.0.1/32 eve");
    let mut fresh = TextClient::connect(a.addr).await;
    assert_eq!(
        fresh.cmd("JOIN frank").await,
        "ERR banned your address is banned from this server"
    );
    assert_eq!(admin.cmd("UNBAN 127.0.0.1").await, "OK");
    let join = async || TextClient::connect(b.addr).await.cmd("JOIN frank").await;
    let reply = poll_until(limit, every, join, |r| r.starts_with("OK frank ")).await;
    assert!(reply.starts_with("OK frank "), "{reply}");
    assert_eq!(admin_b.cmd("BANS").await, "OK 1 eve");
}

/// `WHO` on each of `addrs`, from a fresh connection.
async fn who_on(addrs: &[std::net::SocketAddr]) -> Vec<String> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(TextClient::connect(*a).await.cmd("WHO").await);
    }
    out
}

/// Polls `WHO` on every server until each answers `want`, for at most
/// `bound`; returns the last answers when they never did.
async fn who_converges(
    addrs: &[std::net::SocketAddr],
    want: &str,
    bound: Duration,
) -> Result<(), Vec<String>> {
    let every = Duration::from_millis(100);
    let seen = poll_until(
        bound,
        every,
        async || who_on(addrs).await,
        |seen| seen.iter().all(|w| w == want),
    )
    .await;
    if seen.iter().all(|w| w == want) {
        Ok(())
    } else {
        Err(seen)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_never_lets_a_name_act_twice_and_who_converges() {
    let Some(cl) = cluster(3).await else { return };
    let addrs: Vec<_> = cl.servers.iter().map(|s| s.addr).collect();
    let [a, b, c] = [addrs[0], addrs[1], addrs[2]];
    let mut alice = TextClient::joined(a, "alice").await;
    let old_bob = TextClient::joined(b, "bob").await;
    let mut dave = TextClient::joined(b, "dave").await;
    let mut carol = TextClient::joined(c, "carol").await;
    who_converges(&addrs, "OK 4 alice bob carol dave", Duration::from_secs(10))
        .await
        .expect("everyone is listed everywhere");

    // The old bob draws on row 10 all along: before, during and after the
    // pause of its server; every answer it gets is kept.
    let TextClient { reader, writer } = old_bob;
    let drawing = tokio::spawn(async move {
        let mut writer = writer;
        for i in 0..250u32 {
            let line = format!("SET {} 10 5\n", i % 64);
            if tokio::io::AsyncWriteExt::write_all(&mut writer, line.as_bytes())
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let answers = tokio::spawn(async move {
        let mut reader = reader;
        let mut lines = Vec::new();
        let read_all = async {
            loop {
                let mut l = String::new();
                match tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut l).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => lines.push(l.trim_end().to_string()),
                }
            }
        };
        let closed = tokio::time::timeout(Duration::from_secs(60), read_all)
            .await
            .is_ok();
        (lines, closed)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    cl.servers[1].signal("STOP");
    let paused = tokio::time::Instant::now();
    // Its lease runs out: the others release bob and dave, and the name is
    // free to take elsewhere.
    let mut new_bob = None;
    for _ in 0..80 {
        let mut c2 = TextClient::connect(c).await;
        let r = c2.cmd("JOIN bob").await;
        if r.starts_with("OK bob ") {
            new_bob = Some((c2, r));
            break;
        }
        assert!(r.starts_with("ERR name_taken "), "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut new_bob, ok) = new_bob.expect("bob's name was never released");
    let taken_at: u64 = ok.rsplit(' ').next().unwrap().parse().unwrap();
    for i in 0..5 {
        assert!(
            new_bob
                .cmd(&format!("SET {i} 20 9"))
                .await
                .starts_with("OK ")
        );
    }
    let stopped_for = Duration::from_secs(10).saturating_sub(paused.elapsed());
    tokio::time::sleep(stopped_for).await;
    cl.servers[1].signal("CONT");
    let woke = tokio::time::Instant::now();

    // Within a few seconds every server lists the same four names: dave
    // taken back by his server, bob on server C only.
    if let Err(seen) =
        who_converges(&addrs, "OK 4 alice bob carol dave", Duration::from_secs(5)).await
    {
        panic!(
            "WHO did not converge within 5 s of the server waking: {seen:?}\n{}",
            cl.servers[1].log_text()
        );
    }
    let converged_in = woke.elapsed();

    // The old bob was sent away with a clear reason, and nothing it sent
    // after losing its name was placed.
    let (lines, closed) = answers.await.unwrap();
    drawing.abort();
    assert!(
        closed,
        "the old bob's connection was never closed: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("BYE name_lost ")),
        "no BYE name_lost for the old bob: {lines:?}"
    );
    for l in &lines {
        if let Some(seq) = l.strip_prefix("OK ") {
            let seq: u64 = seq.parse().unwrap();
            assert!(
                seq <= taken_at,
                "the old bob placed seq {seq} after the new bob took the name at seq {taken_at}: {lines:?}"
            );
        }
    }

    // dave, whose name nobody took, goes on: drawing and telling.
    let mut placed = false;
    for _ in 0..40 {
        let r = dave.cmd("SET 3 30 3").await;
        if r.starts_with("OK ") {
            placed = true;
            break;
        }
        assert!(r.starts_with("ERR unavailable "), "{r}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(placed, "dave never drew again after the pause");
    assert_eq!(dave.cmd("TELL carol still here").await, "OK");
    carol.until("DM dave still here").await;
    assert_eq!(new_bob.cmd("TELL dave hi").await, "OK");
    dave.until("DM bob hi").await;

    // alice saw one bob drawing at a time: after the new bob took the name,
    // every bob pixel is on row 20.
    assert_eq!(new_bob.cmd("SAY done").await, "OK");
    loop {
        let l = alice.line().await;
        if l == "MSG bob done" {
            break;
        }
        if l.starts_with("PIXEL ") {
            let (seq, _, y, _, name) = parse_pixel(&l);
            if name == "bob" && seq > taken_at {
                assert_eq!(y, 20, "a pixel of the old bob after the takeover: {l}");
            }
        }
    }
    eprintln!("WHO converged {converged_in:?} after the paused server woke");
}

/// A text client that survives its server sending it away (`BYE resync`
/// after a failover that lost unacknowledged events): it joins again.
struct Painter {
    addr: std::net::SocketAddr,
    name: String,
    conn: Option<TextClient>,
}

impl Painter {
    /// Sends `line` and returns its reply, or `None` when the connection
    /// ended first (the next call connects and joins again).
    async fn cmd(&mut self, line: &str) -> Option<String> {
        use tokio::io::AsyncWriteExt;
        if self.conn.is_none() {
            let mut c = TextClient::connect(self.addr).await;
            let ok = c.cmd(&format!("JOIN {}", self.name)).await;
            if !ok.starts_with("OK ") {
                return Some(ok);
            }
            self.conn = Some(c);
        }
        let c = self.conn.as_mut().unwrap();
        if c.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_err()
        {
            self.conn = None;
            return None;
        }
        while let Some(l) = c.try_line().await {
            if l.starts_with("OK") || l.starts_with("ERR ") {
                return Some(l);
            }
        }
        self.conn = None;
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_loses_no_acknowledged_pixel_with_redis_wait() {
    if !RedisProcess::available() {
        return;
    }
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    // A replica that must be synced from scratch (the old master, back) is
    // served at once, not after Redis's default 5 s wait for others.
    let no_delay = ["--repl-diskless-sync-delay", "0"];
    let mut master = RedisProcess::start_with(dirs[0].path(), &no_delay).await;
    let mport = master.port.to_string();
    let replica = RedisProcess::start_with(
        dirs[1].path(),
        &[&no_delay[..], &["--replicaof", "127.0.0.1", &mport]].concat(),
    )
    .await;
    // The replica has synced with the master (until then nothing could be
    // confirmed by it).
    let mut synced = false;
    for _ in 0..200 {
        let role = common::redis_query(replica.port, "ROLE").await;
        if role.is_some_and(|r| r.get(3).map(String::as_str) == Some("connected")) {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(synced, "the replica never synced with the master");
    let sentinel = SentinelProcess::start(dirs[2].path(), master.port, "pix").await;
    let url = format!("sentinel://127.0.0.1:{}/pix", sentinel.port);
    let args = ["--redis", url.as_str(), "--redis-wait", "1"];
    let a = ServerProcess::start(dirs[3].path(), &args).await;
    let b = ServerProcess::start(dirs[4].path(), &args).await;

    let mut painter = Painter {
        addr: a.addr,
        name: "painter".into(),
        conn: None,
    };
    // (seq, i) of every acknowledged placement; pixel i is at (i % 64,
    // i / 64) in colour i % 15 + 1.
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut place = async |painter: &mut Painter, i: u64| {
        let r = painter
            .cmd(&format!("SET {} {} {}", i % 64, i / 64, i % 15 + 1))
            .await;
        match r.as_deref().and_then(|r| r.strip_prefix("OK ")) {
            Some(seq) => {
                acked.push((seq.parse().unwrap(), i));
                true
            }
            None => {
                if let Some(r) = &r {
                    assert!(r.starts_with("ERR unavailable "), "{r}");
                }
                false
            }
        }
    };
    let mut i = 0;
    while i < 40 {
        assert!(place(&mut painter, i).await, "placing before the failover");
        i += 1;
    }
    // The master dies under a steady stream of placements.
    master.kill9().await;
    let killed = tokio::time::Instant::now();
    let mut refused = 0;
    let mut restarted = false;
    let mut resumed = None;
    let deadline = killed + Duration::from_secs(60);
    while resumed.is_none() && tokio::time::Instant::now() < deadline {
        if place(&mut painter, i).await {
            resumed = Some(killed.elapsed());
        } else {
            refused += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        i += 1;
        // Once Sentinel has promoted the replica, the old master comes back
        // as the new master's replica (as its operator would bring it back;
        // Sentinel would turn it into one too, some 10 s after it returns),
        // so `--redis-wait 1` can be met again.
        if !restarted && sentinel.master("pix").await == Some(replica.port) {
            eprintln!(
                "Sentinel promoted the replica {:?} after the kill",
                killed.elapsed()
            );
            master.extra = [&no_delay[..], &["--replicaof", "127.0.0.1"]]
                .concat()
                .into_iter()
                .map(String::from)
                .chain([replica.port.to_string()])
                .collect();
            master.restart().await;
            restarted = true;
        }
    }
    let resumed = resumed.expect("writes never resumed after the failover");
    assert!(refused > 0, "nothing was refused while the master was gone");
    for _ in 0..20 {
        let mut placed = false;
        for _ in 0..50 {
            if place(&mut painter, i).await {
                placed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(placed, "placing stopped working again after the failover");
        i += 1;
    }
    eprintln!("writes resumed {resumed:?} after the kill ({refused} placements refused meanwhile)");

    // Every acknowledged pixel is on both servers' canvas (the newest of
    // each cell), and their canvases agree.
    let last = acked.iter().map(|(s, _)| *s).max().unwrap();
    for server in [&a, &b] {
        let mut seen = None;
        for _ in 0..100 {
            let (seq, rows) = TextClient::connect(server.addr).await.canvas().await;
            if seq >= last {
                seen = Some(rows);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rows = seen.expect("the server never caught up with the last acknowledged pixel");
        let mut newest = std::collections::HashMap::new();
        for (seq, i) in &acked {
            let cell = (i % 64, i / 64);
            let e = newest.entry(cell).or_insert((*seq, *i));
            if *seq > e.0 {
                *e = (*seq, *i);
            }
        }
        for ((x, y), (seq, i)) in newest {
            assert_eq!(
                u64::from(rows[y as usize][x as usize]),
                i % 15 + 1,
                "acknowledged pixel {i} (seq {seq}) was lost in the failover"
            );
        }
    }
    let _ = (a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_library_moves_to_the_next_server_and_resumes_there() {
    use pixchat::client::{Backoff, Client, ClientConfig, ClientEvent, Login};
    let Some(mut cl) = cluster(2).await else {
        return;
    };
    let (a, b) = (cl.servers[0].addr, cl.servers[1].addr);
    let dead = common::free_port();
    let mut painter = TextClient::joined(b, "painter").await;
    for i in 0..3 {
        assert!(
            painter
                .cmd(&format!("SET {i} 0 5"))
                .await
                .starts_with("OK ")
        );
    }
    let (client, mut events) = Client::spawn(ClientConfig {
        login: Some(Login::new("roamer")),
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
        ..ClientConfig::new(format!("127.0.0.1:{dead}, {a},{b}"))
    });
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("a client event in time")
            .expect("the client runs")
    };
    // The first server of the list is down: the client goes on to the next.
    let server = loop {
        if let ClientEvent::Server(s) = next().await {
            break s;
        }
    };
    assert_eq!(server, a.to_string());
    match next().await {
        ClientEvent::Joined { welcome, snapshot } => {
            assert_eq!(welcome.seq, 3);
            assert!(snapshot.is_some());
        }
        other => panic!("{other:?}"),
    }
    painter.until("JOINED roamer").await;

    // Its server dies; what is drawn meanwhile arrives on the other one,
    // resumed from the seq the client had, without a snapshot.
    cl.servers.remove(0).kill9().await;
    for i in 3..6 {
        assert!(
            painter
                .cmd(&format!("SET {i} 0 9"))
                .await
                .starts_with("OK ")
        );
    }
    let server = loop {
        if let ClientEvent::Server(s) = next().await {
            break s;
        }
    };
    assert_eq!(server, b.to_string());
    match next().await {
        ClientEvent::Joined { welcome, snapshot } => {
            assert!(welcome.resumed, "{welcome:?}");
            assert!(snapshot.is_none());
        }
        other => panic!("{other:?}"),
    }
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        if let ClientEvent::Event(Event::Pixel(p)) = next().await {
            seqs.push(p.seq);
        }
    }
    assert_eq!(seqs, [4, 5, 6]);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pixchat_watch_moves_to_the_next_server_without_missing_a_pixel() {
    use tokio::io::AsyncBufReadExt;
    let Some(mut cl) = cluster(2).await else {
        return;
    };
    let (a, b) = (cl.servers[0].addr, cl.servers[1].addr);
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_pixchat"))
        .args(["watch", "--name", "w", "--server", &format!("{a},{b}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run pixchat watch");
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut painter = TextClient::joined(b, "painter").await;
    // Until the watcher is in, pixels could go unseen: wait for its join.
    let mut who = String::new();
    for _ in 0..100 {
        who = painter.cmd("WHO").await;
        if who.contains(" w") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(who.contains(" w"), "{who}");
    for i in 0..3 {
        assert!(
            painter
                .cmd(&format!("SET {i} 1 5"))
                .await
                .starts_with("OK ")
        );
    }
    let mut pixel = async || loop {
        let l = tokio::time::timeout(Duration::from_secs(40), lines.next_line())
            .await
            .expect("a line from pixchat watch in time")
            .unwrap()
            .expect("pixchat watch still runs");
        if l.starts_with("PIXEL ") {
            return common::parse_pixel(&l).0;
        }
    };
    for seq in 1..=3 {
        assert_eq!(pixel().await, seq);
    }
    cl.servers.remove(0).kill9().await;
    for i in 3..8 {
        assert!(
            painter
                .cmd(&format!("SET {i} 1 9"))
                .await
                .starts_with("OK ")
        );
    }
    // Every pixel once, in order: those drawn while it moved are replayed.
    for seq in 4..=8 {
        assert_eq!(pixel().await, seq);
    }
    let _ = watch.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_across_servers_is_told_with_presence_events() {
    if !RedisProcess::available() {
        return;
    }
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let redis = RedisProcess::start(dirs[0].path()).await;
    let url = redis.url();
    let args = [
        "--redis",
        url.as_str(),
        "--presence-threshold",
        "3",
        "--presence-interval-ms",
        "100",
    ];
    let a = ServerProcess::start(dirs[1].path(), &args).await;
    let b = ServerProcess::start(dirs[2].path(), &args).await;
    let mut alice = TextClient::joined(a.addr, "alice").await;
    let mut bob = BinClient::connect(b.addr).await;
    bob.send(Command::Join {
        name: "bob".into(),
        resume: None,
        quiet: false,
    })
    .await;
    assert!(matches!(bob.reply().await, Reply::Welcome(_)));
    assert!(matches!(bob.reply().await, Reply::Canvas(_)));
    assert_eq!(alice.until("JOINED").await, "JOINED bob");
    // The third makes a crowd, on either server: one PRESENCE each.
    let _carol = TextClient::joined(a.addr, "carol").await;
    assert_eq!(alice.until("PRESENCE").await, "PRESENCE 3 1 0 +carol");
    let p = loop {
        match bob.event().await {
            Event::Presence(p) => break p,
            e @ (Event::Joined { .. } | Event::Left { .. }) => panic!("{e:?}"),
            _ => {}
        }
    };
    assert_eq!((p.online, p.joined, p.left), (3, 1, 0));
    assert_eq!(
        p.joined_names.iter().map(|n| &**n).collect::<Vec<_>>(),
        ["carol"]
    );
    // The welcome of a fourth has the count alone; WHO has every name.
    let mut dee = BinClient::connect(b.addr).await;
    dee.send(Command::Join {
        name: "dee".into(),
        resume: None,
        quiet: false,
    })
    .await;
    match dee.reply().await {
        Reply::Welcome(w) => assert_eq!((w.online, w.users.len()), (4, 0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(alice.until("PRESENCE").await, "PRESENCE 4 1 0 +dee");
    assert_eq!(alice.cmd("WHO").await, "OK 4 alice bob carol dee");
    assert_eq!(alice.cmd("WHO bob").await, "OK 4 carol dee");
}
