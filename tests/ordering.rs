//! The guarantee Pixorama is built on: a snapshot plus every event after it
//! reproduces the canvas exactly, even while someone floods SETs.

mod common;

use std::net::SocketAddr;

use common::{BinClient, TextClient, parse_pixel, read_canvas_after_events, start_default};
use pixchat::protocol::{Command, Event, Reply};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const FLOOD: u64 = 6000;

/// Pipelines `FLOOD` SETs from one client while reading its replies, and
/// returns once every one was acknowledged.
async fn flood(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let painter = TextClient::joined(addr, "flooder").await;
    let TextClient { reader, mut writer } = painter;
    let read = tokio::spawn(async move {
        let mut reader = reader;
        let mut oks = 0;
        let mut line = String::new();
        while oks < FLOOD {
            line.clear();
            let n = tokio::time::timeout(common::WAIT, reader.read_line(&mut line))
                .await
                .expect("flood replies keep coming")
                .unwrap();
            assert!(n > 0, "flooder disconnected");
            if line.starts_with("OK") {
                oks += 1;
            } else {
                assert!(!line.starts_with("ERR"), "{line}");
            }
        }
    });
    tokio::spawn(async move {
        let mut batch = String::new();
        for i in 0..FLOOD {
            // A spread of positions and colours, repeating so pixels are
            // overwritten many times.
            let x = (i * 7) % 64;
            let y = (i * 13 / 5) % 64;
            batch.push_str(&format!("SET {x} {y} {}\n", (i * 5 + i / 64) % 16));
            if batch.len() > 4000 {
                writer.write_all(batch.as_bytes()).await.unwrap();
                batch.clear();
                tokio::task::yield_now().await;
            }
        }
        writer.write_all(batch.as_bytes()).await.unwrap();
        read.await.unwrap();
        drop(writer);
    })
}

fn apply(canvas: &mut [Vec<u8>], x: usize, y: usize, color: u8) {
    canvas[y][x] = color;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_snapshot_then_events_matches_the_canvas_under_flood() {
    let server = start_default().await;
    let flooder = flood(server.addr).await;
    let mut observers = Vec::new();
    for i in 0..4 {
        let addr = server.addr;
        observers.push(tokio::spawn(async move {
            // Join at different points of the flood.
            tokio::time::sleep(std::time::Duration::from_millis(15 * i)).await;
            let mut c = TextClient::joined(addr, &format!("obs{i}")).await;
            c.send("CANVAS").await;
            let (before, snap_seq, rows) = read_canvas_after_events(&mut c).await;
            for l in before {
                assert!(
                    parse_pixel(&l).0 <= snap_seq,
                    "event {l} preceded a snapshot at {snap_seq}"
                );
            }
            let mut canvas = rows;
            let mut last = snap_seq;
            while last < FLOOD {
                let (seq, x, y, color, _) = parse_pixel(&c.until("PIXEL").await);
                assert_eq!(seq, last + 1, "observer {i}: gap or reorder after {last}");
                apply(&mut canvas, x, y, color);
                last = seq;
            }
            (snap_seq, canvas)
        }));
    }
    flooder.await.unwrap();
    let mut check = TextClient::connect(server.addr).await;
    let (seq, truth) = check.canvas().await;
    assert_eq!(seq, FLOOD);
    let mut mid_flood = 0;
    for o in observers {
        let (snap_seq, canvas) = o.await.unwrap();
        if snap_seq > 0 && snap_seq < FLOOD {
            mid_flood += 1;
        }
        assert!(
            canvas == truth,
            "snapshot at {snap_seq} + events differs from the canvas"
        );
    }
    // The property is only interesting if some snapshots were taken while
    // pixels were flowing; report rather than fail on a very slow machine.
    eprintln!("{mid_flood} of 4 snapshots were taken mid-flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_welcome_snapshot_then_events_matches_the_canvas_under_flood() {
    let server = start_default().await;
    let flooder = flood(server.addr).await;
    let mut observers = Vec::new();
    for i in 0..4 {
        let addr = server.addr;
        observers.push(tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(15 * i)).await;
            let mut c = BinClient::connect(addr).await;
            c.send(Command::Join {
                name: format!("bin{i}"),
                resume: None,
                quiet: false,
            })
            .await;
            let welcome = match c.reply().await {
                Reply::Welcome(w) => w,
                other => panic!("{other:?}"),
            };
            assert!(!welcome.resumed);
            let snap = match c.next().await {
                pixchat::ServerMsg::Reply(Reply::Canvas(s)) => s,
                other => panic!("snapshot must follow the welcome, got {other:?}"),
            };
            assert_eq!(snap.seq, welcome.seq);
            let mut pixels = snap.pixels.clone();
            let mut last = snap.seq;
            while last < FLOOD {
                if let Event::Pixel(p) = c.event().await {
                    assert_eq!(p.seq, last + 1, "binary observer {i}: gap after {last}");
                    pixels[usize::from(p.y) * 64 + usize::from(p.x)] = p.color;
                    last = p.seq;
                }
            }
            (snap.seq, pixels)
        }));
    }
    flooder.await.unwrap();
    let mut check = BinClient::connect(server.addr).await;
    let truth = match check.cmd(Command::Canvas).await {
        Reply::Canvas(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(truth.seq, FLOOD);
    for o in observers {
        let (seq, pixels) = o.await.unwrap();
        assert!(pixels == truth.pixels, "snapshot at {seq} + events differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_resume_under_flood_converges() {
    let server = start_default().await;
    let flooder = flood(server.addr).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Take a snapshot without joining, then join and SYNC from it: the
    // replay plus live events must end at the server's canvas.
    let mut c = TextClient::connect(server.addr).await;
    let (seq0, mut canvas) = c.canvas().await;
    assert_eq!(c.cmd("JOIN resumer").await.split(' ').next(), Some("OK"));
    c.send(&format!("SYNC {seq0}")).await;
    // Everything is applied in arrival order; after the SYNC reply the
    // live events must continue without a gap.
    let mut after_reply: Option<u64> = None;
    while after_reply != Some(FLOOD) {
        let l = c.line().await;
        if l.starts_with("PIXEL") {
            let (seq, x, y, color, _) = parse_pixel(&l);
            if let Some(last) = after_reply {
                assert_eq!(seq, last + 1, "gap after the SYNC reply at {last}");
                after_reply = Some(seq);
            }
            apply(&mut canvas, x, y, color);
        } else if let Some(latest) = l.strip_prefix("OK ") {
            after_reply = Some(latest.parse().unwrap());
        }
    }
    flooder.await.unwrap();
    let (seq, truth) = TextClient::connect(server.addr).await.canvas().await;
    assert_eq!(seq, FLOOD);
    assert!(
        canvas == truth,
        "SYNC replay + events differs from the canvas"
    );
}

/// A `SET`'s `OK <seq>` reaches its sender before the `PIXEL <seq>` event
/// it caused, however quickly the storage makes the event visible.
async fn own_ok_precedes_own_pixel(server: common::TestServer) {
    const ROUNDS: u64 = 5;
    const SETS: u64 = 2000;
    let mut c = TextClient::joined(server.addr, "painter").await;
    for round in 0..ROUNDS {
        let mut batch = String::new();
        for i in 0..SETS {
            batch.push_str(&format!("SET {} {} {}\n", i % 64, (i / 64) % 64, i % 16));
        }
        c.send_raw(batch.as_bytes()).await;
        let first = round * SETS + 1;
        let mut acked = std::collections::HashSet::new();
        let mut pixels = 0;
        while pixels < SETS || (acked.len() as u64) < SETS {
            let l = c.line().await;
            if let Some(seq) = l.strip_prefix("OK ") {
                acked.insert(seq.parse::<u64>().expect("OK <seq>"));
            } else if l.starts_with("PIXEL ") {
                let seq = parse_pixel(&l).0;
                assert_eq!(seq, first + pixels, "pixels in seq order");
                assert!(
                    acked.contains(&seq),
                    "PIXEL {seq} reached its sender before OK {seq} (round {round})"
                );
                pixels += 1;
            } else {
                panic!("unexpected line {l:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_ok_precedes_own_pixel_in_memory() {
    own_ok_precedes_own_pixel(common::start_memory(pixchat::Config::default()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_ok_precedes_own_pixel_with_fsync_never() {
    let server = common::start_durable(
        pixchat::Config::default(),
        pixchat::server::storage::Fsync::Never,
    )
    .await;
    own_ok_precedes_own_pixel(server).await;
}
