//! Moderators' bulk changes and the placement history in a cluster: real
//! `pixchat-server` processes sharing one canvas through a real
//! `redis-server` (started here on a free loopback port). Skipped loudly
//! when `redis-server` is missing, except under CI.

mod common;

use std::collections::BTreeSet;

use common::{RedisProcess, ServerProcess, TextClient, parse_pixel};

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
    let (seq_b, rows_b) = TextClient::connect(p.b.addr).await.canvas().await;
    let (seq_a, rows_a) = TextClient::connect(p.a.addr).await.canvas().await;
    assert_eq!((seq_a, seq_b), (last, last));
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

/// Sets pixels one by one as `c`.
async fn set_all(c: &mut TextClient, pixels: &[(u16, u16, u8)]) {
    for (x, y, color) in pixels {
        let r = c.cmd(&format!("SET {x} {y} {color}")).await;
        assert!(r.starts_with("OK "), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_on_one_server_restores_a_shape_drawn_through_another() {
    let Some(p) = pair(&[]).await else { return };
    let mut alice = TextClient::joined(p.a.addr, "alice").await;
    let mut grief = TextClient::joined(p.a.addr, "Griefer").await;
    let mut carol = TextClient::joined(p.b.addr, "carol").await;
    let mut watcher = TextClient::joined(p.a.addr, "watcher").await;
    // alice draws a 10x6 frame through A, some pixels twice.
    let mut shape = Vec::new();
    for x in 10..20u16 {
        for y in 10..16u16 {
            let edge = x == 10 || x == 19 || y == 10 || y == 15;
            shape.push((x, y, if edge { 5 } else { 12 }));
        }
    }
    set_all(&mut alice, &shape).await;
    set_all(&mut alice, &[(12, 12, 8), (13, 12, 8)]).await;
    let drawn = shape.len() as u64 + 2;
    // B has all of it before anything is compared.
    let before = canvas_at(p.b.addr, drawn).await;
    // The griefer paints over the shape (some pixels several times) and
    // over the blank canvas beside it, through A.
    let mut damage = Vec::new();
    for x in 8..22u16 {
        for y in 11..14u16 {
            damage.push((x, y, 3));
        }
    }
    damage.extend([(12, 12, 15), (12, 12, 3), (30, 30, 3), (31, 30, 4)]);
    set_all(&mut grief, &damage).await;
    // carol then draws over part of the griefer's work, through B: hers
    // stays.
    let later = [(11, 12, 10u8), (20, 12, 9), (30, 30, 6)];
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
        p.b.log_text().contains("unknown=3"),
        "the log says how many pixels the history did not reach"
    );
}
