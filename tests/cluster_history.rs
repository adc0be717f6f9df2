//! Moderators' bulk changes and the placement history in a cluster: real
//! `pixchat-server` processes sharing one canvas through a real
//! `redis-server` (started here on a free loopback port). Skipped loudly
//! when `redis-server` is missing, except under CI.

mod common;

use std::collections::BTreeSet;

use common::{
    ROLLBACK_LATER, RedisProcess, ServerProcess, TextClient, parse_pixel, rollback_damage,
    rollback_frame, set_all,
};

/// Redis and two servers on it with the admin password `root`.
struct Pair {
    redis: RedisProcess,
    a: ServerProcess,
    b: ServerProcess,
    _dirs: Vec<tempfile::TempDir>,
}

async fn pair(extra: &[&str]) -> Option<Pair> {
    if !RedisProcess::available() {
        return None;
    }
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let redis = RedisProcess::start(dirs[0].path()).await;
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str(), "--admin-password", "root"];
    args.extend_from_slice(extra);
    let a = ServerProcess::start(dirs[1].path(), &args).await;
    let b = ServerProcess::start(dirs[2].path(), &args).await;
    Some(Pair {
        redis,
        a,
        b,
        _dirs: dirs,
    })
}

/// Reads PIXEL events (skipping other lines) until one has seq `last`,
/// returning those with a seq above `after` as (seq, x, y, color, name).
async fn pixels_up_to(
    c: &mut TextClient,
    after: u64,
    last: u64,
) -> Vec<(u64, usize, usize, u8, String)> {
    let mut out = Vec::new();
    loop {
        let l = c.line().await;
        if !l.starts_with("PIXEL ") {
            continue;
        }
        let p = parse_pixel(&l);
        let seq = p.0;
        if seq > after {
            out.push(p);
        }
        if seq >= last {
            return out;
        }
    }
}

/// The canvas of the server at `addr` once it has applied seq `seq` (it
/// follows the stream on its own time): asked again up to 400 times.
async fn canvas_at(addr: std::net::SocketAddr, seq: u64) -> Vec<Vec<u8>> {
    let mut view = TextClient::connect(addr).await;
    for _ in 0..400 {
        let (s, rows) = view.canvas().await;
        assert!(s <= seq, "seq {s} beyond {seq}");
        if s == seq {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{addr} never reached seq {seq}");
}

/// Whether `server`'s log shows `needle`, asked up to 200 times: the
/// log is read from the process's standard error by another thread, so
/// a line written just before a reply may not be there yet.
async fn logged(server: &ServerProcess, needle: &str) -> bool {
    for _ in 0..200 {
        if server.log_text().contains(needle) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

/// The `OK <placed> <seq> <more>` of a bulk command, as numbers.
fn bulk(reply: &str) -> (u64, u64, u64) {
    let n: Vec<u64> = reply
        .strip_prefix("OK ")
        .unwrap_or_else(|| panic!("{reply}"))
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    (n[0], n[1], n[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_on_one_server_is_seen_live_on_the_other_and_needs_the_admin_password() {
    let Some(p) = pair(&["--width", "300", "--height", "300"]).await else {
        return;
    };
    let mut watcher = TextClient::joined(p.b.addr, "watcher").await;
    let mut user = TextClient::joined(p.a.addr, "user").await;
    watcher.until("JOINED user").await;
    // Without the admin password: refused, nothing placed.
    assert!(
        user.cmd("FILL 0 0 3 3 red")
            .await
            .starts_with("ERR forbidden "),
    );
    assert_eq!(user.cmd("SET 0 0 1").await, "OK 1");

    let mut admin = TextClient::joined(p.a.addr, "boss").await;
    assert_eq!(admin.cmd("AUTH root").await, "OK");
    // Corners in either order; 8 x 5 pixels, after the user's one.
    let (placed, last, more) = bulk(&admin.cmd("FILL 9 7 2 3 red").await);
    assert_eq!((placed, last, more), (40, 41, 0));
    let seen = pixels_up_to(&mut watcher, 0, last).await;
    assert_eq!(seen[0], (1, 0, 0, 1, "user".to_string()));
    let fill = &seen[1..];
    assert_eq!(
        fill.iter().map(|p| p.0).collect::<Vec<_>>(),
        (2..=41).collect::<Vec<_>>(),
        "one seq per pixel, in order"
    );
    let cells: BTreeSet<(usize, usize)> = fill.iter().map(|p| (p.1, p.2)).collect();
    let want: BTreeSet<(usize, usize)> =
        (3..=7).flat_map(|y| (2..=9).map(move |x| (x, y))).collect();
    assert_eq!(cells, want);
    let red = fill[0].3;
    assert!(fill.iter().all(|p| p.3 == red && p.4 == "boss"));

    // As large as allowed: the whole of it reaches the other server, and
    // both servers' canvases are the same.
    let (placed, last, _) = bulk(&admin.cmd("FILL 0 0 255 255 3").await);
    assert_eq!((placed, last), (65_536, 41 + 65_536));
    let seen = pixels_up_to(&mut watcher, 41, last).await;
    assert_eq!(seen.len(), 65_536);
    // A follows the stream on its own time: compared once it is there.
    let rows_b = canvas_at(p.b.addr, last).await;
    let rows_a = canvas_at(p.a.addr, last).await;
    assert_eq!(rows_a, rows_b);
    assert!(
        rows_b[..256]
            .iter()
            .all(|r| r[..256].iter().all(|&c| c == 3))
    );
    assert!(rows_b[256..].iter().all(|r| r.iter().all(|&c| c == 0)));

    // Larger than a FILL may be, or off the canvas: refused, nothing placed.
    assert!(
        admin
            .cmd("FILL 0 0 299 299 3")
            .await
            .starts_with("ERR out_of_range ")
    );
    assert!(
        admin
            .cmd("FILL 0 0 300 1 3")
            .await
            .starts_with("ERR out_of_range ")
    );
    assert_eq!(admin.cmd("SET 299 299 2").await, format!("OK {}", last + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_on_one_server_restores_a_shape_drawn_through_another() {
    let Some(p) = pair(&[]).await else { return };
    let mut alice = TextClient::joined(p.a.addr, "alice").await;
    let mut grief = TextClient::joined(p.a.addr, "Griefer").await;
    let mut carol = TextClient::joined(p.b.addr, "carol").await;
    let mut watcher = TextClient::joined(p.a.addr, "watcher").await;
    // alice draws a 10x6 frame through A, some pixels twice.
    let shape = rollback_frame();
    set_all(&mut alice, &shape).await;
    set_all(&mut alice, &[(12, 12, 8), (13, 12, 8)]).await;
    let drawn = shape.len() as u64 + 2;
    // B has all of it before anything is compared.
    let before = canvas_at(p.b.addr, drawn).await;
    // The griefer paints over the shape (some pixels several times) and
    // over the blank canvas beside it, through A.
    let damage = rollback_damage();
    set_all(&mut grief, &damage).await;
    // carol then draws over part of the griefer's work, through B: hers
    // stays.
    let later = ROLLBACK_LATER;
    set_all(&mut carol, &later).await;
    let seq_before = drawn + damage.len() as u64 + later.len() as u64;

    // Refused without the admin password, on either server.
    let mut user = TextClient::connect(p.b.addr).await;
    assert!(
        user.cmd("ROLLBACK griefer 60")
            .await
            .starts_with("ERR forbidden ")
    );
    let mut admin = TextClient::connect(p.b.addr).await;
    assert_eq!(admin.cmd("AUTH root").await, "OK");
    let (placed, seq, more) = bulk(&admin.cmd("ROLLBACK griefer 60").await);
    // 14x3 painted, minus carol's two there; plus (31,30) (carol took
    // (30,30)).
    assert_eq!(
        (placed, seq, more),
        (14 * 3 - 2 + 1, seq_before + placed, 0)
    );
    // Clients of the other server see it live, as ordinary placements by
    // the admin.
    let seen = pixels_up_to(&mut watcher, seq_before, seq).await;
    assert_eq!(seen.len() as u64, placed);
    assert!(seen.iter().all(|p| p.4 == "admin"), "{seen:?}");
    let mut want = before.clone();
    for &(x, y, color) in &later {
        want[usize::from(y)][usize::from(x)] = color;
    }
    for server in [p.a.addr, p.b.addr] {
        let after = canvas_at(server, seq).await;
        assert_eq!(after, want, "the shape is back, carol's pixels stay");
    }
    // Nothing is left of the griefer.
    assert_eq!(admin.cmd("ROLLBACK griefer").await, format!("OK 0 {seq} 0"));

    // Where the stream no longer holds what was there before (trimmed
    // past it), the pixels are left as they are, and the log counts them.
    let mut vandal = TextClient::joined(p.a.addr, "vandal").await;
    let vandalism = [(10, 10, 1), (11, 10, 1), (12, 10, 1)];
    set_all(&mut vandal, &vandalism).await;
    let trimmed = common::redis_query(p.redis.port, "XTRIM pixchat:events MAXLEN 3")
        .await
        .expect("Redis answers");
    assert_eq!(trimmed.len(), 1, "{trimmed:?}");
    let last = seq + 3;
    let (placed, at, _) = bulk(&admin.cmd("ROLLBACK vandal").await);
    assert_eq!((placed, at), (0, last));
    let rows = canvas_at(p.a.addr, last).await;
    assert!(
        vandalism
            .iter()
            .all(|&(x, y, c)| rows[usize::from(y)][usize::from(x)] == c)
    );
    assert!(
        logged(&p.b, "unknown=3").await,
        "the log says how many pixels the history did not reach"
    );
}

/// A placement as acknowledged: (seq, name, x, y, color).
type Acked = (u64, String, u16, u16, u8);

/// Sets pixels one by one as `name` (joined on `c`), recording each
/// placement with the seq its `OK` gave.
async fn place_all(
    c: &mut TextClient,
    name: &str,
    pixels: &[(u16, u16, u8)],
    acked: &mut Vec<Acked>,
) {
    for &(x, y, color) in pixels {
        let r = c.cmd(&format!("SET {x} {y} {color}")).await;
        let seq = r
            .strip_prefix("OK ")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{r}"));
        acked.push((seq, name.to_string(), x, y, color));
    }
}

/// `pixchat-server export --data-dir dir --csv out` (must succeed):
/// returns its rows after the header, and its standard error.
fn export_csv(dir: &std::path::Path, out: &std::path::Path) -> (Vec<String>, String) {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_pixchat-server"))
        .args(["export", "--data-dir"])
        .arg(dir)
        .arg("--csv")
        .arg(out)
        .output()
        .expect("run pixchat-server export");
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "export failed: {stderr}");
    let text = std::fs::read_to_string(out).unwrap();
    let mut lines = text.lines().map(str::to_string);
    assert_eq!(
        lines.next().as_deref(),
        Some("timestamp,user,pixel_color,coordinate")
    );
    (lines.collect(), stderr)
}

/// The CSV rows' fields after the timestamp, as the placements should
/// give them (in seq order).
fn rows_of(acked: &[Acked]) -> Vec<String> {
    let mut sorted = acked.to_vec();
    sorted.sort_by_key(|a| a.0);
    sorted
        .iter()
        .map(|(_, name, x, y, color)| {
            let [r, g, b] = pixchat::protocol::PALETTE[usize::from(*color)].rgb;
            format!("{name},#{r:02X}{g:02X}{b:02X},\"{x},{y}\"")
        })
        .collect()
}

/// The rows without their timestamps (checked for their form here).
fn fields(rows: &[String]) -> Vec<String> {
    rows.iter()
        .map(|row| {
            let (ts, rest) = row.split_once(',').unwrap();
            assert!(ts.ends_with(" UTC") && ts.len() == 27, "{ts}");
            rest.to_string()
        })
        .collect()
}

/// `WHOSE x y n` as (name, seq, color), newest first.
async fn whose(c: &mut TextClient, x: u16, y: u16, n: u32) -> Vec<(String, u64, u8)> {
    let r = c.cmd(&format!("WHOSE {x} {y} {n}")).await;
    let f: Vec<&str> = r.split(' ').collect();
    assert_eq!(f[0], "OK", "{r}");
    let list: Vec<(String, u64, u8)> = f[2..]
        .chunks(4)
        .map(|c| {
            (
                c[0].to_string(),
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(list.len(), f[1].parse::<usize>().unwrap(), "{r}");
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_archive_keeps_every_placement_of_the_cluster_across_a_crash() {
    if !RedisProcess::available() {
        return;
    }
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let redis = RedisProcess::start(dirs[0].path()).await;
    let url = redis.url();
    let plain = ["--redis", url.as_str(), "--admin-password", "root"];
    let archiving = ["--redis", url.as_str(), "--archive"];
    let data = dirs[1].path();
    let a = ServerProcess::start(data, &archiving).await;
    let b = ServerProcess::start(dirs[2].path(), &plain).await;
    let mut acked = Vec::new();

    // Placements through both servers, interleaved, several at (5, 5).
    let mut alice = TextClient::joined(a.addr, "alice").await;
    let mut bob = TextClient::joined(b.addr, "bob").await;
    for i in 0..30u16 {
        let color = (i % 16) as u8;
        place_all(&mut alice, "alice", &[(i, 1, color)], &mut acked).await;
        place_all(&mut bob, "bob", &[(i, 2, 15 - color)], &mut acked).await;
    }
    place_all(&mut alice, "alice", &[(5, 5, 1)], &mut acked).await;
    place_all(&mut bob, "bob", &[(5, 5, 2)], &mut acked).await;
    place_all(&mut alice, "alice", &[(5, 5, 3)], &mut acked).await;
    // An admin's FILL through B: 10 x 2 pixels, row by row.
    let mut admin = TextClient::connect(b.addr).await;
    assert_eq!(admin.cmd("AUTH root").await, "OK");
    let (placed, last, _) = bulk(&admin.cmd("FILL 0 10 9 11 4").await);
    assert_eq!(placed, 20);
    for (i, seq) in (last - 19..=last).enumerate() {
        acked.push((
            seq,
            "admin".into(),
            (i % 10) as u16,
            10 + (i / 10) as u16,
            4,
        ));
    }
    // WHOSE with a count on the archiving server, before any segment is
    // written: from the placements waiting for theirs.
    canvas_at(a.addr, last).await;
    let mut asker = TextClient::connect(a.addr).await;
    let at = |seq_of: usize| acked[acked.len() - 20 - seq_of].0;
    assert_eq!(
        whose(&mut asker, 5, 5, 2).await,
        [
            ("alice".to_string(), at(1), 3),
            ("bob".to_string(), at(2), 2)
        ]
    );
    // Without --archive, a cluster server says what it needs.
    let mut other = TextClient::connect(b.addr).await;
    let refused = other.cmd("WHOSE 5 5 2").await;
    assert!(
        refused.starts_with("ERR unavailable ") && refused.contains("--archive"),
        "{refused}"
    );

    // A crash loses what waited in memory; the stream still has it, and
    // placements made while the server is down are read from it too.
    drop(alice);
    drop(asker);
    a.kill9().await;
    for i in 0..25u16 {
        place_all(&mut bob, "bob", &[(i, 3, (i % 16) as u8)], &mut acked).await;
    }
    let a = ServerProcess::start(data, &archiving).await;
    let mut carol = TextClient::joined(a.addr, "carol").await;
    for i in 0..10u16 {
        place_all(&mut carol, "carol", &[(i, 4, 7)], &mut acked).await;
    }
    let last = acked.iter().map(|p| p.0).max().unwrap();
    canvas_at(a.addr, last).await;
    drop(carol);
    a.stop().await;

    let (rows, stderr) = export_csv(data, &dirs[3].path().join("all.csv"));
    assert_eq!(rows.len(), acked.len(), "every placement of the cluster");
    assert_eq!(fields(&rows), rows_of(&acked), "in seq order, exact fields");
    assert!(!stderr.contains("not complete"), "{stderr}");

    // The stream trimmed past what the archive has: the server says what
    // it lost, and so does the export.
    for i in 0..20u16 {
        place_all(&mut bob, "bob", &[(i, 6, 9)], &mut acked).await;
    }
    let trimmed = common::redis_query(redis.port, "XTRIM pixchat:events MAXLEN 5")
        .await
        .expect("Redis answers");
    assert_eq!(trimmed.len(), 1, "{trimmed:?}");
    let a = ServerProcess::start(data, &archiving).await;
    let lost = (last + 1, last + 15);
    let warned = format!("first_lost={} last_lost={}", lost.0, lost.1);
    assert!(logged(&a, &warned).await, "{}", a.log_text());
    // WHOSE from the segments now.
    let mut asker = TextClient::connect(a.addr).await;
    assert_eq!(whose(&mut asker, 5, 5, 1).await[0].0, "alice");
    drop(asker);
    a.stop().await;
    let (rows, stderr) = export_csv(data, &dirs[3].path().join("gap.csv"));
    let kept: Vec<Acked> = acked
        .iter()
        .filter(|p| !(lost.0..=lost.1).contains(&p.0))
        .cloned()
        .collect();
    assert_eq!(fields(&rows), rows_of(&kept));
    assert!(
        stderr.contains("not complete") && stderr.contains("missing=15"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_reaches_past_the_stream_on_a_server_with_archive() {
    if !RedisProcess::available() {
        return;
    }
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let redis = RedisProcess::start(dirs[0].path()).await;
    let url = redis.url();
    let plain = ["--redis", url.as_str(), "--admin-password", "root"];
    let archiving = [plain.as_slice(), &["--archive"]].concat();
    let a = ServerProcess::start(dirs[1].path(), &archiving).await;
    let b = ServerProcess::start(dirs[2].path(), &plain).await;
    let mut alice = TextClient::joined(b.addr, "alice").await;
    let mut grief = TextClient::joined(b.addr, "griefer").await;
    let drawn = [(1, 1, 5), (2, 1, 6), (3, 1, 7)];
    set_all(&mut alice, &drawn).await;
    set_all(&mut grief, &[(1, 1, 3), (2, 1, 3), (3, 1, 3)]).await;
    canvas_at(a.addr, 6).await;
    // The stream keeps only the griefer's placements.
    let trimmed = common::redis_query(redis.port, "XTRIM pixchat:events MAXLEN 3")
        .await
        .expect("Redis answers");
    assert_eq!(trimmed.len(), 1, "{trimmed:?}");

    // One archive, one server.
    let second = ServerProcess::try_start(dirs[1].path(), &archiving).await;
    let refused = second
        .err()
        .expect("a second server on the same archive is refused");
    assert!(
        refused.contains("another pixchat-server is using"),
        "{refused}"
    );

    // B keeps no archive: it cannot know the colours before.
    let mut admin_b = TextClient::connect(b.addr).await;
    assert_eq!(admin_b.cmd("AUTH root").await, "OK");
    assert_eq!(admin_b.cmd("ROLLBACK griefer").await, "OK 0 6 0");
    assert!(logged(&b, "unknown=3").await, "{}", b.log_text());
    // A reads them from its archive.
    let mut admin_a = TextClient::connect(a.addr).await;
    assert_eq!(admin_a.cmd("AUTH root").await, "OK");
    assert_eq!(admin_a.cmd("ROLLBACK griefer").await, "OK 3 9 0");
    for server in [a.addr, b.addr] {
        let rows = canvas_at(server, 9).await;
        assert_eq!(rows[1][1..4], [5, 6, 7], "the drawing is back on {server}");
    }
}
