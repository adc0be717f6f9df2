//! Moderators' bulk changes and the placement history in a cluster: real
//! `pixchat-server` processes sharing one canvas through a real
//! `redis-server` (started here on a free loopback port). Skipped loudly
//! when `redis-server` is missing, except under CI.

mod common;

use std::collections::BTreeSet;

use common::{RedisProcess, ServerProcess, TextClient, parse_pixel};

/// Redis and two servers on it with the admin password `root`.
struct Pair {
    _redis: RedisProcess,
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
        _redis: redis,
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
