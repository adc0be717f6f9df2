//! The history archive, its exports and the moderators' bulk changes
//! (issue #14): a real server over loopback TCP, then the real
//! `pixchat-server export` on its data directory.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{BinClient, ROLLBACK_LATER, TextClient, rollback_damage, rollback_frame, set_all};
use pixchat::protocol::{Command, ErrorCode, Reply};
use pixchat::server::storage::{Fsync, StorageConfig};

/// One placement as a client saw it acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placed {
    seq: u64,
    x: u16,
    y: u16,
    color: u8,
    name: String,
}

fn config(dir: &Path, compact_after: u64) -> pixchat::Config {
    pixchat::Config {
        storage: Some(StorageConfig {
            fsync: Fsync::Never,
            compact_after,
            ..StorageConfig::new(dir)
        }),
        admin_password: Some("boss".into()),
        ..Default::default()
    }
}

/// `name` places `count` pixels, pipelined `window` at a time, reading
/// everything the server sends meanwhile (so it never falls behind).
async fn draw(addr: SocketAddr, name: String, count: u64, salt: u64) -> Vec<Placed> {
    let mut c = TextClient::joined(addr, &name).await;
    let mut out = Vec::with_capacity(count as usize);
    let window = 500;
    let mut i = 0;
    while i < count {
        let n = window.min(count - i);
        let mut sent = Vec::new();
        let mut batch = String::new();
        for k in i..i + n {
            let v = k.wrapping_mul(2_654_435_761).wrapping_add(salt);
            let (x, y, color) = (
                (v % 64) as u16,
                ((v / 64) % 64) as u16,
                ((v / 4096) % 16) as u8,
            );
            batch.push_str(&format!("SET {x} {y} {color}\n"));
            sent.push((x, y, color));
        }
        c.send_raw(batch.as_bytes()).await;
        for (x, y, color) in sent {
            let reply = c.reply().await;
            let seq = reply
                .strip_prefix("OK ")
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("SET answered {reply}"));
            out.push(Placed {
                seq,
                x,
                y,
                color,
                name: name.clone(),
            });
        }
        i += n;
    }
    c.cmd("QUIT").await;
    out
}

fn export(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pixchat-server"))
        .arg("export")
        .args(args)
        .output()
        .expect("run pixchat-server export");
    assert!(
        out.status.success(),
        "export {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn replay(placed: &[Placed], upto: u64) -> Vec<u8> {
    let mut canvas = vec![0u8; 64 * 64];
    for p in placed.iter().take_while(|p| p.seq <= upto) {
        canvas[usize::from(p.y) * 64 + usize::from(p.x)] = p.color;
    }
    canvas
}

fn hex(color: u8) -> String {
    let [r, g, b] = pixchat::protocol::PALETTE[usize::from(color)].rgb;
    format!("#{r:02X}{g:02X}{b:02X}")
}

fn archive_bytes(dir: &Path) -> (u64, usize) {
    let segs: Vec<_> = std::fs::read_dir(dir.join("archive"))
        .map(|d| d.filter_map(Result::ok).collect())
        .unwrap_or_default();
    let bytes = segs
        .iter()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pxa"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let n = segs
        .iter()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pxa"))
        .count();
    (bytes, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_300000_placements_and_a_restart_the_exports_hold_every_placement() {
    let dir = tempfile::tempdir().unwrap();
    let started_ms = now_ms();
    let server = common::start_server(config(dir.path(), 40_000)).await;
    let writers = ["al", "bob", "cy"];
    let tasks: Vec<_> = writers
        .iter()
        .enumerate()
        .map(|(i, name)| {
            tokio::spawn(draw(
                server.addr,
                name.to_string(),
                100_000,
                i as u64 * 7919,
            ))
        })
        .collect();
    let mut placed = Vec::new();
    for t in tasks {
        placed.extend(t.await.unwrap());
    }
    server.stop().await;
    // A restart, then a few more placements on the recovered canvas.
    let server = common::start_server(config(dir.path(), 40_000)).await;
    placed.extend(draw(server.addr, "dee".into(), 1_000, 99).await);
    placed.sort_by_key(|p| p.seq);
    let total = placed.len() as u64;
    assert_eq!(total, 301_000);
    assert!(
        placed
            .iter()
            .enumerate()
            .all(|(i, p)| p.seq == i as u64 + 1),
        "the server acknowledged seqs 1..=301000"
    );
    let mut c = TextClient::connect(server.addr).await;
    let (seq, rows) = c.canvas().await;
    assert_eq!(seq, total);
    let live: Vec<u8> = rows.concat();
    let whose = c.cmd("WHOSE 5 5").await;
    server.stop().await;
    let ended_ms = now_ms();

    let (bytes, segments) = archive_bytes(dir.path());
    assert!(
        segments >= 5,
        "several compactions made {segments} segments"
    );
    let archived = 280_000; // at least 7 compactions of 40,000 records
    assert!(
        bytes < 16 * archived,
        "the archive takes {bytes} bytes for about {archived}+ placements"
    );

    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let csv = out.join("all.csv");
    let png = out.join("at.png");
    let gif = out.join("lapse.gif");
    let k = 123_457u64;
    let data = dir.path().to_str().unwrap();
    export(&[
        "--data-dir",
        data,
        "--csv",
        csv.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
        "--at",
        &k.to_string(),
        "--scale",
        "2",
        "--timelapse",
        gif.to_str().unwrap(),
        "--every",
        "25000",
        "--fps",
        "5",
    ]);

    // CSV: every placement, in seq order, with its exact fields.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,user,pixel_color,coordinate"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), placed.len());
    let mut last_ts = String::new();
    let mut stamps: HashMap<u64, String> = HashMap::new();
    for (row, p) in rows.iter().zip(&placed) {
        let (ts, rest) = row.split_once(',').unwrap();
        let want = format!("{},{},\"{},{}\"", p.name, hex(p.color), p.x, p.y);
        assert_eq!(rest, want, "seq {}", p.seq);
        assert!(ts.ends_with(" UTC") && ts.len() == 27, "{ts}");
        assert!(
            ts >= last_ts.as_str(),
            "timestamps never go back: {ts} after {last_ts}"
        );
        last_ts = ts.to_string();
        stamps.insert(p.seq, ts.to_string());
    }
    // The time of the last placement at (5, 5), as WHOSE told it.
    let parts: Vec<&str> = whose.split(' ').collect();
    let (ms, seq): (u64, u64) = (parts[2].parse().unwrap(), parts[3].parse().unwrap());
    assert!((started_ms..=ended_ms).contains(&ms));
    let t = time_of(ms);
    assert_eq!(
        stamps[&seq], t,
        "the CSV's timestamp is the placement's own"
    );

    // PNG at seq k, scaled by 2: the canvas replayed to k.
    let (w, h, pixels) = pixchat::image::read_png(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!((w, h), (128, 128));
    let want = replay(&placed, k);
    for y in 0..128usize {
        for x in 0..128usize {
            assert_eq!(pixels[y * 128 + x], want[(y / 2) * 64 + x / 2], "({x},{y})");
        }
    }

    // Timelapse: one frame every 25,000 placements and one for the rest;
    // the last frame is the canvas.
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    let mut dec = opts.read_info(std::fs::File::open(&gif).unwrap()).unwrap();
    let mut frames = 0;
    let mut last = Vec::new();
    while let Some(frame) = dec.read_next_frame().unwrap() {
        frames += 1;
        assert_eq!((frame.width, frame.height), (128, 128));
        last = frame.buffer.to_vec();
    }
    assert_eq!(frames, 301_000 / 25_000 + 1);
    let scaled_live: Vec<u8> = (0..128 * 128)
        .map(|i| live[(i / 128 / 2) * 64 + (i % 128) / 2])
        .collect();
    assert_eq!(last, scaled_live, "the last frame is the canvas");
    assert_eq!(replay(&placed, total), live);

    // CSV of a seq range.
    let part = out.join("part.csv");
    export(&[
        "--data-dir",
        data,
        "--csv",
        part.to_str().unwrap(),
        "--from",
        "1000",
        "--to",
        "1999",
    ]);
    assert_eq!(
        std::fs::read_to_string(&part).unwrap().lines().count(),
        1 + 1000
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// r/place 2022's timestamp format, computed here independently of the
/// server's code: days since the epoch to a civil date.
fn time_of(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        ms % 1000
    )
}

#[tokio::test]
async fn a_rollback_restores_the_shape_keeps_later_work_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Compactions every 40 records: the rollback reads the archive and
    // the journal.
    let server = common::start_server(config(dir.path(), 40)).await;
    let mut alice = TextClient::joined(server.addr, "alice").await;
    let mut grief = TextClient::joined(server.addr, "Griefer").await;
    let mut carol = TextClient::joined(server.addr, "carol").await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;
    // alice draws a 10x6 frame, some pixels twice.
    set_all(&mut alice, &rollback_frame()).await;
    set_all(&mut alice, &[(12, 12, 8), (13, 12, 8)]).await;
    let (_, before) = alice.canvas().await;
    // The griefer paints over the shape (some pixels several times) and
    // over the blank canvas beside it.
    let damage = rollback_damage();
    set_all(&mut grief, &damage).await;
    // carol then draws over part of the griefer's work: hers stays.
    let later = ROLLBACK_LATER;
    set_all(&mut carol, &later).await;
    let seq_before = alice.cmd("SYNC 0").await;
    let seq_before: u64 = seq_before[3..].parse().unwrap();

    let mut admin = TextClient::connect(server.addr).await;
    assert_eq!(admin.cmd("AUTH boss").await, "OK");
    let reply = admin.cmd("ROLLBACK griefer 60").await;
    let parts: Vec<u64> = reply[3..].split(' ').map(|n| n.parse().unwrap()).collect();
    // 14x3 painted, minus carol's two there; plus (31,30) (carol took
    // (30,30)).
    assert_eq!(parts[0], 14 * 3 - 2 + 1, "{reply}");
    assert_eq!(parts[1], seq_before + parts[0]);
    assert_eq!(parts[2], 0);
    // Everyone sees the rollback live, as ordinary placements.
    let mut seen = 0;
    while seen < parts[0] {
        let l = watcher.line().await;
        if l.starts_with("PIXEL ") {
            let (seq, ..) = common::parse_pixel(&l);
            if seq > seq_before {
                seen += 1;
            }
        }
    }
    let mut want = before.clone();
    for &(x, y, color) in &later {
        want[usize::from(y)][usize::from(x)] = color;
    }
    let (_, after) = admin.canvas().await;
    assert_eq!(after, want, "the shape is back, carol's pixels stay");
    // The pixel's history, newest first: the rollback, the griefer's
    // three coats, alice's second colour.
    let whose = admin.cmd("WHOSE 12 12 5").await;
    let fields: Vec<&str> = whose.split(' ').collect();
    assert_eq!(fields[..2], ["OK", "5"], "{whose}");
    let list: Vec<(&str, &str)> = fields[2..].chunks(4).map(|c| (c[0], c[3])).collect();
    assert_eq!(
        list,
        [
            ("admin", "8"),
            ("Griefer", "3"),
            ("Griefer", "15"),
            ("Griefer", "3"),
            ("alice", "8")
        ],
        "{whose}"
    );
    assert!(
        admin
            .cmd("WHOSE 12 12 101")
            .await
            .starts_with("ERR out_of_range")
    );
    // Nothing is left of the griefer.
    assert_eq!(
        admin.cmd("ROLLBACK griefer").await,
        format!("OK 0 {} 0", parts[1])
    );
    server.stop().await;

    let server = common::start_server(config(dir.path(), 40)).await;
    let (seq, rows) = TextClient::connect(server.addr).await.canvas().await;
    assert_eq!(seq, parts[1]);
    assert_eq!(rows, want, "the rollback survives a restart");
    server.stop().await;
}

#[tokio::test]
async fn fill_and_rollback_need_the_admin_password_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1000);
    cfg.password = Some("user".into());
    let server = common::start_server(cfg).await;
    let mut t = TextClient::connect(server.addr).await;
    assert_eq!(t.cmd("AUTH user").await, "OK");
    assert_eq!(t.cmd("JOIN mallory").await, "OK mallory 64 64 0");
    assert_eq!(t.cmd("SET 1 1 red").await, "OK 1");
    for line in ["FILL 0 0 9 9 red", "ROLLBACK mallory", "ROLLBACK mallory 5"] {
        let r = t.cmd(line).await;
        assert!(r.starts_with("ERR forbidden "), "{line}: {r}");
    }
    let mut b = BinClient::connect(server.addr).await;
    for cmd in [
        Command::Fill {
            x1: 0,
            y1: 0,
            x2: 3,
            y2: 3,
            color: 5,
        },
        Command::Rollback {
            name: "mallory".into(),
            minutes: 0,
        },
    ] {
        match b.cmd(cmd.clone()).await {
            Reply::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden, "{cmd:?}"),
            other => panic!("{cmd:?} answered {other:?}"),
        }
    }
    let (seq, rows) = t.canvas().await;
    assert_eq!(seq, 1, "nothing was placed");
    assert_eq!(rows[1][1], 5);
    assert_eq!(rows[0][0], 0);

    // With the admin password, in binary mode: a fill, then a rollback of
    // it (the admin is the fill's author).
    match b
        .cmd(Command::Auth {
            password: "boss".into(),
        })
        .await
    {
        Reply::Ok => {}
        other => panic!("AUTH answered {other:?}"),
    }
    let fill = Command::Fill {
        x1: 3,
        y1: 2,
        x2: 0,
        y2: 0,
        color: 13,
    };
    assert_eq!(
        b.cmd(fill).await,
        Reply::Bulk {
            placed: 12,
            seq: 13,
            more: 0
        }
    );
    let (_, rows) = t.canvas().await;
    for (y, row) in rows.iter().enumerate().take(4) {
        for (x, &c) in row.iter().enumerate().take(6) {
            let inside = x <= 3 && y <= 2;
            assert_eq!(
                c,
                if inside {
                    13
                } else if (x, y) == (1, 1) {
                    5
                } else {
                    0
                },
                "({x},{y})"
            );
        }
    }
    // Too large a rectangle is refused and changes nothing.
    let mut admin = TextClient::connect(server.addr).await;
    assert_eq!(admin.cmd("AUTH boss").await, "OK");
    assert_eq!(
        admin.cmd("FILL 0 0 0 64 red").await.split(' ').nth(1),
        Some("out_of_range")
    );
    assert_eq!(
        admin.cmd("FILL 0 0 1 1").await.split(' ').nth(1),
        Some("bad_args")
    );
    assert_eq!(
        b.cmd(Command::Rollback {
            name: "admin".into(),
            minutes: 0
        })
        .await,
        Reply::Bulk {
            placed: 12,
            seq: 25,
            more: 0
        }
    );
    match b.cmd(Command::WhoseLast { x: 0, y: 0, n: 3 }).await {
        Reply::WhoseList(list) => {
            let got: Vec<(&str, u64, u8)> = list
                .iter()
                .map(|p| (p.name.as_str(), p.seq, p.color))
                .collect();
            assert_eq!(got, [("admin", 14, 0), ("admin", 2, 13)]);
        }
        other => panic!("WHOSE 0 0 3 answered {other:?}"),
    }
    let (seq, rows) = t.canvas().await;
    assert_eq!(seq, 25);
    assert_eq!(rows[1][1], 5, "mallory's pixel is back under the fill");
    assert_eq!(rows[0][0], 0);
    assert_eq!(rows[2][3], 0);
    server.stop().await;
}

#[tokio::test]
async fn a_damaged_archive_segment_is_refused_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_server(config(dir.path(), 100)).await;
    draw(server.addr, "al".into(), 450, 1).await;
    server.stop().await;
    let seg = std::fs::read_dir(dir.path().join("archive"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pxa"))
        .expect("a segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pixchat-server"))
        .args([
            "export",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--csv",
        ])
        .arg(dir.path().join("x.csv"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checksum") && err.contains(".pxa"), "{err}");
}

#[tokio::test]
async fn a_kill_during_compactions_loses_no_acknowledged_placement_from_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        common::ServerProcess::start(dir.path(), &["--compact-after", "300", "--fsync", "never"])
            .await;
    let addr = server.addr;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = progress.clone();
    let writer = tokio::spawn(async move {
        let mut c = TextClient::joined(addr, "al").await;
        let mut acked = 0u64;
        'placing: for i in 0..100_000u64 {
            c.send(&format!("SET {} {} {}", i % 64, (i / 64) % 64, i % 16))
                .await;
            // Its OK, skipping the PIXEL events; nothing once killed.
            loop {
                match c.try_line_within(Duration::from_secs(5)).await {
                    Some(l) if l.starts_with("OK ") => {
                        acked = l[3..].parse().unwrap();
                        seen.store(acked, std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                    Some(l) if l.starts_with("PIXEL ") => {}
                    _ => break 'placing,
                }
            }
        }
        acked
    });
    // Kill it while it places, once several compactions ran (bounded).
    for _ in 0..600 {
        if progress.load(std::sync::atomic::Ordering::Relaxed) >= 1500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill9().await;
    let acked = writer.await.unwrap();
    assert!(
        acked >= 1500,
        "at least four compactions ran ({acked} acknowledged)"
    );
    // Restart: the interrupted compaction, if any, is finished.
    let server = common::ServerProcess::start(dir.path(), &[]).await;
    server.stop().await;
    let csv = dir.path().join("all.csv");
    export(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!(
        rows.len() as u64 >= acked,
        "{} rows, {acked} acknowledged",
        rows.len()
    );
    for (i, row) in rows.iter().enumerate().take(acked as usize) {
        let i = i as u64;
        let want = format!(
            ",al,{},\"{},{}\"",
            hex((i % 16) as u8),
            i % 64,
            (i / 64) % 64
        );
        assert!(row.ends_with(&want), "seq {}: {row}", i + 1);
    }
}

#[tokio::test]
async fn pixchat_canvas_png_writes_the_running_servers_canvas() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_server(config(dir.path(), 1000)).await;
    let mut al = TextClient::joined(server.addr, "al").await;
    set_all(
        &mut al,
        &[(0, 0, 5), (63, 0, 12), (10, 20, 3), (63, 63, 15)],
    )
    .await;
    let (_, rows) = al.canvas().await;
    let png = dir.path().join("now.png");
    let addr = server.addr.to_string();
    let out = tokio::task::spawn_blocking({
        let png = png.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_pixchat"))
                .args(["canvas", "--server", &addr, "--scale", "3", "--png"])
                .arg(&png)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (w, h, pixels) = pixchat::image::read_png(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!((w, h), (192, 192));
    for y in 0..192usize {
        for x in 0..192usize {
            assert_eq!(pixels[y * 192 + x], rows[y / 3][x / 3], "({x},{y})");
        }
    }
    server.stop().await;
}

/// `pixchat admin rollback` and `pixchat admin fill`, the real binary
/// against a real server: what a moderator runs from a shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pixchat_admin_rolls_back_and_fills_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_server(config(dir.path(), 100_000)).await;
    let mut bob = TextClient::joined(server.addr, "bob").await;
    for x in 0..3 {
        assert!(bob.cmd(&format!("SET {x} 0 5")).await.starts_with("OK"));
    }
    let mut griefer = TextClient::joined(server.addr, "griefer").await;
    for x in 0..3 {
        assert!(griefer.cmd(&format!("SET {x} 0 0")).await.starts_with("OK"));
    }
    // The real binary, off the runtime's threads; stdout, or the failure.
    let admin = |password: &'static str, args: &'static [&'static str]| {
        let server = server.addr.to_string();
        async move {
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_pixchat"))
                    .args(["admin", "--server", &server])
                    .args(args)
                    .env("PIXCHAT_ADMIN_PASSWORD", password)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            (out.status.success(), stdout, stderr)
        }
    };
    let (ok, stdout, stderr) = admin("boss", &["rollback", "griefer"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("placed 3 pixels"), "{stdout}");
    let (ok, stdout, stderr) = admin("boss", &["fill", "0", "1", "1", "2", "blue"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("placed 4 pixels"), "{stdout}");
    let (_, rows) = bob.canvas().await;
    assert_eq!(&rows[0][..3], &[5, 5, 5], "bob's pixels are back");
    let blue = pixchat::client::script::parse_color("blue").unwrap() as u8;
    assert_eq!(&rows[1][..2], &[blue, blue]);
    assert_eq!(&rows[2][..2], &[blue, blue]);
    // Without the admin password: refused, and the exit status says so.
    let (ok, _, stderr) = admin("guess", &["fill", "0", "0", "0", "0", "red"]).await;
    assert!(!ok);
    assert!(stderr.contains("forbidden"), "{stderr}");
}

/// Retention by size trims the archive; the base canvas it keeps lets
/// pictures of any seq still held be replayed, and the CSV says where it
/// starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_archive_still_exports_pictures_of_every_seq_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |dir: &Path| {
        let mut cfg = config(dir, 2_000);
        if let Some(s) = cfg.storage.as_mut() {
            // A few segments of 2,000 random placements.
            s.retention = pixchat::server::storage::archive::Retention::Bytes(8_000);
        }
        cfg
    };
    let server = common::start_server(cfg(dir.path())).await;
    let tasks: Vec<_> = ["al", "bob"]
        .iter()
        .enumerate()
        .map(|(i, name)| tokio::spawn(draw(server.addr, name.to_string(), 15_000, i as u64 * 31)))
        .collect();
    let mut placed = Vec::new();
    for t in tasks {
        placed.extend(t.await.unwrap());
    }
    server.stop().await;
    let server = common::start_server(cfg(dir.path())).await;
    placed.extend(draw(server.addr, "cy".into(), 500, 7).await);
    let (_, rows) = TextClient::connect(server.addr).await.canvas().await;
    let live: Vec<u8> = rows.concat();
    server.stop().await;
    placed.sort_by_key(|p| p.seq);
    let total = placed.len() as u64;
    assert_eq!(total, 30_500);
    assert_eq!(replay(&placed, total), live);
    let (bytes, segments) = archive_bytes(dir.path());
    // Retention never removes the newest segment.
    assert!(
        bytes <= 8_000 || segments == 1,
        "retention keeps {bytes} bytes in {segments} segments"
    );

    let data = dir.path().to_str().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let csv = out.join("all.csv");
    let lapse = out.join("lapse.gif");
    let every = 1_000u64;
    let o = export(&[
        "--data-dir",
        data,
        "--csv",
        csv.to_str().unwrap(),
        "--timelapse",
        lapse.to_str().unwrap(),
        "--every",
        &every.to_string(),
    ]);
    // The CSV holds the newest placements, exactly; stderr says from where.
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    let held = rows.len() as u64;
    assert!(
        held <= total - 1_000,
        "retention removed old placements ({held} held)"
    );
    let first = total - held + 1;
    for (row, p) in rows.iter().zip(&placed[first as usize - 1..]) {
        let want = format!(",{},{},\"{},{}\"", p.name, hex(p.color), p.x, p.y);
        assert!(row.ends_with(&want), "seq {}: {row}", p.seq);
    }
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("complete from seq {first}")), "{err}");
    // The timelapse: a frame every 1,000 placements held, one for the
    // rest; the last is the canvas.
    let (frames, last) = gif_frames(&lapse);
    assert_eq!(
        frames,
        held / every + u64::from(!held.is_multiple_of(every))
    );
    assert_eq!(last, live, "the last frame is the canvas");

    // The canvas at the first state held (the base), a little after it,
    // and near the end: each the canvas replayed to that seq.
    for k in [first - 1, first + 123, total - 77] {
        let png = out.join(format!("at-{k}.png"));
        export(&[
            "--data-dir",
            data,
            "--png",
            png.to_str().unwrap(),
            "--at",
            &k.to_string(),
        ]);
        let (w, h, pixels) = pixchat::image::read_png(&std::fs::read(&png).unwrap()).unwrap();
        assert_eq!((w, h), (64, 64));
        assert_eq!(pixels, replay(&placed, k), "the canvas at seq {k}");
    }
    // Before the base: refused, with the reason.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pixchat-server"))
        .args(["export", "--data-dir", data, "--at", "10", "--png"])
        .arg(out.join("old.png"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--history-retention"), "{err}");
}

/// The number of frames of a GIF file and its last frame (palette
/// indexes).
fn gif_frames(path: &Path) -> (u64, Vec<u8>) {
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    let mut dec = opts.read_info(std::fs::File::open(path).unwrap()).unwrap();
    let (mut frames, mut last) = (0, Vec::new());
    while let Some(frame) = dec.read_next_frame().unwrap() {
        frames += 1;
        last = frame.buffer.to_vec();
    }
    (frames, last)
}

/// A `--memory` server keeps its recent placements for `ROLLBACK` and
/// `WHOSE x y n`: a griefer is undone as on a durable server.
#[tokio::test]
async fn a_memory_server_rolls_back_and_lists_a_pixels_past() {
    let server = common::start_memory(pixchat::Config {
        admin_password: Some("boss".into()),
        ..Default::default()
    })
    .await;
    let mut alice = TextClient::joined(server.addr, "alice").await;
    let mut grief = TextClient::joined(server.addr, "griefer").await;
    let mut carol = TextClient::joined(server.addr, "carol").await;
    set_all(&mut alice, &[(1, 1, 5), (2, 1, 6), (1, 1, 7)]).await;
    set_all(&mut grief, &[(1, 1, 3), (2, 1, 3), (3, 1, 3), (1, 1, 4)]).await;
    set_all(&mut carol, &[(2, 1, 9)]).await;
    let mut admin = TextClient::connect(server.addr).await;
    assert_eq!(admin.cmd("AUTH boss").await, "OK");
    // (1,1) back to alice's 7, (3,1) back to blank; carol's (2,1) stays.
    assert_eq!(admin.cmd("ROLLBACK griefer 60").await, "OK 2 10 0");
    let (_, rows) = admin.canvas().await;
    assert_eq!(&rows[1][..5], &[0, 7, 9, 0, 0]);
    let whose = admin.cmd("WHOSE 1 1 10").await;
    let fields: Vec<&str> = whose.split(' ').collect();
    assert_eq!(fields[..2], ["OK", "5"], "{whose}");
    let list: Vec<(&str, &str, &str)> = fields[2..].chunks(4).map(|c| (c[0], c[2], c[3])).collect();
    assert_eq!(
        list,
        [
            ("admin", "10", "7"),
            ("griefer", "7", "4"),
            ("griefer", "4", "3"),
            ("alice", "3", "7"),
            ("alice", "1", "5"),
        ]
    );
    server.stop().await;
}

/// Beyond the ring's reach (`--memory-history`) the colour before the
/// griefer is unknown: those pixels are left as they are, as on a trimmed
/// archive; pixels within it are restored.
#[tokio::test]
async fn a_memory_servers_history_reaches_back_only_as_far_as_its_ring() {
    let server = common::start_memory(pixchat::Config {
        admin_password: Some("boss".into()),
        // The ring keeps the block of 4,096 placements being filled.
        memory_history: 1,
        ..Default::default()
    })
    .await;
    let mut al = TextClient::joined(server.addr, "al").await;
    set_all(&mut al, &[(0, 0, 5)]).await;
    // Seqs 2-4096 elsewhere: the first block fills and is dropped.
    let mut filler = TextClient::joined(server.addr, "filler").await;
    let mut batch = String::new();
    for i in 0..4095u32 {
        batch.push_str(&format!(
            "SET {} {} {}\n",
            i % 63 + 1,
            (i / 63) % 63 + 1,
            i % 16
        ));
    }
    filler.send_raw(batch.as_bytes()).await;
    for _ in 0..4095 {
        assert!(filler.reply().await.starts_with("OK "));
    }
    set_all(&mut filler, &[(2, 0, 7)]).await;
    let mut grief = TextClient::joined(server.addr, "griefer").await;
    set_all(&mut grief, &[(0, 0, 3), (2, 0, 3), (3, 0, 3)]).await;
    let mut admin = TextClient::connect(server.addr).await;
    assert_eq!(admin.cmd("AUTH boss").await, "OK");
    // Only (2,0) is known: filler's 7.
    assert_eq!(admin.cmd("ROLLBACK griefer").await, "OK 1 4101 0");
    let (_, rows) = admin.canvas().await;
    assert_eq!(&rows[0][..4], &[3, 0, 7, 3]);
    // al's placement at (0,0) is past the ring's reach.
    let whose = admin.cmd("WHOSE 0 0 5").await;
    assert!(whose.starts_with("OK 1 griefer "), "{whose}");
    server.stop().await;
}

/// `--anonymize`: each user becomes a keyed hash, the same one throughout
/// the file and again with the same `--salt`, another with another salt;
/// no name is left.
#[tokio::test]
async fn an_anonymized_csv_hashes_each_user_stably_with_its_salt() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_server(config(dir.path(), 1000)).await;
    let mut al = TextClient::joined(server.addr, "alice").await;
    let mut bob = TextClient::joined(server.addr, "Bob").await;
    set_all(&mut al, &[(1, 1, 5), (2, 2, 6)]).await;
    set_all(&mut bob, &[(3, 3, 7)]).await;
    set_all(&mut al, &[(4, 4, 8)]).await;
    server.stop().await;
    let data = dir.path().to_str().unwrap();
    let run = |name: &str, salt: Option<&str>| {
        let path = dir.path().join(name);
        let mut args = vec![
            "--data-dir",
            data,
            "--csv",
            path.to_str().unwrap(),
            "--anonymize",
        ];
        if let Some(s) = salt {
            args.extend(["--salt", s]);
        }
        let out = export(&args);
        let users: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().to_string())
            .collect();
        (users, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (a, _) = run("a.csv", Some("pepper"));
    assert_eq!(a.len(), 4);
    assert_eq!(a[0], a[1]);
    assert_eq!(a[0], a[3], "alice has one hash throughout");
    assert_ne!(a[0], a[2], "bob has another");
    for u in &a {
        assert_eq!(u.len(), 64, "{u}");
        assert!(u.bytes().all(|b| b.is_ascii_hexdigit()), "{u}");
    }
    let (again, _) = run("b.csv", Some("pepper"));
    assert_eq!(again, a, "the same salt gives the same hashes");
    let (other, _) = run("c.csv", Some("salt"));
    assert_ne!(other[0], a[0]);
    assert_eq!(other[0], other[3]);
    // Without --salt a random one is printed; giving it back repeats the
    // export exactly.
    let (random, err) = run("d.csv", None);
    let salt = err
        .split("--salt ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no salt printed: {err}"))
        .to_string();
    let (repeat, _) = run("e.csv", Some(&salt));
    assert_eq!(repeat, random);
    assert_ne!(random, a);
    // The name in clear without --anonymize.
    let clear = dir.path().join("clear.csv");
    export(&["--data-dir", data, "--csv", clear.to_str().unwrap()]);
    let text = std::fs::read_to_string(&clear).unwrap();
    assert!(text.contains(",alice,") && text.contains(",Bob,"), "{text}");
}

/// A rollback on an archive trimmed by retention: the colours from before
/// the griefer are in the base canvas only, and come back from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_on_a_trimmed_archive_takes_the_colours_from_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 500);
    if let Some(s) = cfg.storage.as_mut() {
        s.retention = pixchat::server::storage::archive::Retention::Bytes(2_000);
    }
    let server = common::start_server(cfg).await;
    let mut alice = TextClient::joined(server.addr, "alice").await;
    let shape: Vec<(u16, u16, u8)> = (0..10u16)
        .flat_map(|x| [(x, 0, 5), (x, 1, (x % 15 + 1) as u8)])
        .collect();
    set_all(&mut alice, &shape).await;
    // Placements below the shape, 1,000 at a time, until retention has
    // removed the oldest segments (alice's among them) and kept a base
    // canvas (compactions run in the background: bounded, 30 rounds).
    let mut filler = TextClient::joined(server.addr, "filler").await;
    let base_kept = || {
        std::fs::read_dir(dir.path().join("archive"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.path().extension().is_some_and(|x| x == "pxb"))
            })
            .unwrap_or(false)
    };
    for round in 0..30u32 {
        if base_kept() {
            break;
        }
        let mut batch = String::new();
        for i in 0..1_000u32 {
            let k = round * 1_000 + i;
            batch.push_str(&format!(
                "SET {} {} {}\n",
                k % 64,
                10 + (k / 64) % 54,
                k % 16
            ));
        }
        filler.send_raw(batch.as_bytes()).await;
        for _ in 0..1_000 {
            assert!(filler.reply().await.starts_with("OK "));
        }
    }
    assert!(base_kept(), "retention kept a base canvas");
    let (_, before) = alice.canvas().await;
    let mut grief = TextClient::joined(server.addr, "griefer").await;
    let damage: Vec<(u16, u16, u8)> = shape.iter().map(|&(x, y, _)| (x, y, 3)).collect();
    set_all(&mut grief, &damage).await;
    let mut admin = TextClient::connect(server.addr).await;
    assert_eq!(admin.cmd("AUTH boss").await, "OK");
    let reply = admin.cmd("ROLLBACK griefer").await;
    assert!(reply.starts_with("OK 20 "), "{reply}");
    let (_, after) = admin.canvas().await;
    assert_eq!(after, before, "alice's shape is back from the base canvas");
    server.stop().await;
}

/// Whether a compaction's snapshot is at `seq`, waiting a little for
/// the one that `seq` may have started (it is written in the background).
async fn snapshot_at_seq(dir: &Path, seq: u64) -> bool {
    for _ in 0..10 {
        if pixchat::server::storage::archive::snapshot_at(dir).is_some_and(|(_, s)| s == seq) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test]
async fn without_an_archive_a_rollback_takes_the_colours_before_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 20);
    if let Some(storage) = cfg.storage.as_mut() {
        storage.archive = false;
    }
    let server = common::start_server(cfg).await;
    let mut alice = TextClient::joined(server.addr, "alice").await;
    let mut grief = TextClient::joined(server.addr, "griefer").await;
    // alice's shape, then filler until a compaction has just put all of it
    // in the snapshot: the journal no longer holds the colours before, and
    // there is no archive to read them from.
    let shape: Vec<(u16, u16, u8)> = (0..10u16).map(|i| (i, 5, (i + 1) as u8)).collect();
    set_all(&mut alice, &shape).await;
    let mut seq = 10;
    loop {
        set_all(&mut alice, &[(40, 40, 2)]).await;
        seq += 1;
        if snapshot_at_seq(dir.path(), seq).await {
            break;
        }
        assert!(seq < 200, "no compaction after {seq} placements");
    }
    let (_, before) = alice.canvas().await;
    // The griefer paints over the shape and over blank canvas, within one
    // compaction's worth of the journal.
    let damage: Vec<(u16, u16, u8)> = (0..10u16)
        .map(|i| (i, 5, 3))
        .chain((0..5u16).map(|i| (i, 20, 3)))
        .collect();
    set_all(&mut grief, &damage).await;
    let mut admin = TextClient::connect(server.addr).await;
    assert_eq!(admin.cmd("AUTH boss").await, "OK");
    let reply = admin.cmd("ROLLBACK griefer").await;
    assert!(reply.starts_with("OK 15 "), "every pixel restored: {reply}");
    let (_, after) = admin.canvas().await;
    assert_eq!(after, before, "the shape and the blank canvas are back");
    server.stop().await;
}

#[tokio::test]
async fn whose_with_a_count_lists_a_placement_sent_just_before_it() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_server(pixchat::Config {
        storage: Some(StorageConfig::new(dir.path())),
        ..Default::default()
    })
    .await;
    // Pipelined, as `printf ... | nc` sends them: the WHOSE is read before
    // the SET's record is on disk, and must still list it.
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut io = BufReader::new(stream);
    io.get_mut()
        .write_all(b"JOIN bot\nSET 3 4 5\nWHOSE 3 4 2\nSET 3 4 6\nWHOSE 3 4 2\n")
        .await
        .unwrap();
    let mut whose = Vec::new();
    while whose.len() < 2 {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), io.read_line(&mut line))
            .await
            .expect("a line in time")
            .unwrap();
        assert!(n > 0, "closed early");
        if line.starts_with("OK ") && line.split(' ').nth(2) == Some("bot") {
            whose.push(line.trim_end().to_string());
        }
    }
    let seqs = |l: &str| -> Vec<String> {
        let f: Vec<&str> = l.split(' ').collect();
        f[2..]
            .chunks(4)
            .map(|c| format!("{}:{}", c[2], c[3]))
            .collect()
    };
    assert_eq!(seqs(&whose[0]), ["1:5"], "{whose:?}");
    assert_eq!(seqs(&whose[1]), ["2:6", "1:5"], "{whose:?}");
    server.stop().await;
}
