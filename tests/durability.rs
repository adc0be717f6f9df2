//! Nothing acknowledged is lost: the real server binary killed with SIGKILL
//! mid-flood, damaged journals, and state that survives restarts.

mod common;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use common::{BinClient, TextClient};
use pixchat::protocol::{Command, Reply};
use tokio::io::AsyncWriteExt;

type Server = common::ServerProcess;

/// One acknowledged placement.
#[derive(Debug, Clone, Copy)]
struct Acked {
    seq: u64,
    x: u16,
    y: u16,
    color: u8,
    writer: usize,
}

const SIDE: u16 = 256;

/// Floods SETs from `writers` text clients, each on its own cells, until the
/// connection dies (the server is killed); returns what got `OK`.
async fn flood_until_killed(
    addr: std::net::SocketAddr,
    cycle: usize,
    writers: usize,
) -> Vec<Acked> {
    let mut tasks = Vec::new();
    for w in 0..writers {
        tasks.push(tokio::spawn(async move {
            let mut c = TextClient::joined(addr, &format!("w{w}")).await;
            let mut acked = Vec::new();
            // Cells are unique per (cycle, writer, i) so nothing is overwritten
            // and every acknowledged pixel must be visible after recovery.
            let base = (cycle * writers + w) * 2000;
            let mut sent = VecDeque::new();
            for i in 0..2000usize {
                let cell = base + i;
                let (x, y) = ((cell % SIDE as usize) as u16, (cell / SIDE as usize) as u16);
                let color = ((cell * 7) % 15 + 1) as u8;
                let line = format!("SET {x} {y} {color}\n");
                if c.writer.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
                sent.push_back((x, y, color));
                // Keep a few commands in flight; read replies as they come.
                if sent.len() > 8 && !collect_acks(&mut c, &mut sent, 8, w, &mut acked).await {
                    return acked;
                }
            }
            collect_acks(&mut c, &mut sent, 0, w, &mut acked).await;
            acked
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Reads replies until at most `keep` SETs are unanswered, recording each
/// acknowledged one; false once the connection is gone.
async fn collect_acks(
    c: &mut TextClient,
    sent: &mut VecDeque<(u16, u16, u8)>,
    keep: usize,
    writer: usize,
    acked: &mut Vec<Acked>,
) -> bool {
    while sent.len() > keep {
        let Some(seq) = read_reply(c).await else {
            return false;
        };
        let (x, y, color) = sent.pop_front().expect("a SET was in flight");
        acked.push(Acked {
            seq,
            x,
            y,
            color,
            writer,
        });
    }
    true
}

/// The seq of the next `OK <seq>`, skipping events; `None` once the
/// connection is gone.
async fn read_reply(c: &mut TextClient) -> Option<u64> {
    loop {
        // A killed server shows up as end of stream or a reset.
        let line = c.try_line_within(common::WAIT).await?;
        if let Some(seq) = line.strip_prefix("OK ") {
            return Some(seq.parse().expect("OK <seq>"));
        }
        assert!(!line.starts_with("ERR"), "{line}");
    }
}

/// Checks every acknowledged pixel is on the recovered canvas with its
/// author and seq.
async fn verify(addr: std::net::SocketAddr, acked: &[Acked]) {
    let mut c = TextClient::connect(addr).await;
    let (seq, rows) = c.canvas().await;
    let max = acked.iter().map(|a| a.seq).max().unwrap_or(0);
    assert!(
        seq >= max,
        "recovered seq {seq} is below acknowledged seq {max}"
    );
    for a in acked {
        assert_eq!(
            rows[usize::from(a.y)][usize::from(a.x)],
            a.color,
            "pixel {a:?} lost"
        );
    }
    // Authorship too, for a sample (WHOSE is one round trip each).
    for a in acked.iter().step_by(97) {
        let whose = c.cmd(&format!("WHOSE {} {}", a.x, a.y)).await;
        let parts: Vec<&str> = whose.split(' ').collect();
        assert_eq!(parts[1], format!("w{}", a.writer), "{whose}");
        assert_eq!(parts[3], a.seq.to_string(), "{whose}");
    }
}

async fn kill_restart_cycles(fsync: &str) {
    let dir = tempfile::tempdir().unwrap();
    let size = SIDE.to_string();
    let args = ["--fsync", fsync, "--width", &size, "--height", &size];
    let mut acked: Vec<Acked> = Vec::new();
    for cycle in 0..3 {
        let server = Server::start(dir.path(), &args).await;
        if cycle > 0 {
            verify(server.addr, &acked).await;
        }
        let addr = server.addr;
        let flood = tokio::spawn(flood_until_killed(addr, cycle, 3));
        // Let the flood run, then kill the server in the middle of it.
        tokio::time::sleep(Duration::from_millis(400)).await;
        server.kill9().await;
        let got = flood.await.unwrap();
        assert!(
            !got.is_empty(),
            "cycle {cycle}: nothing was acknowledged before the kill"
        );
        acked.extend(got);
    }
    let server = Server::start(dir.path(), &args).await;
    verify(server.addr, &acked).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_pixel_with_fsync_always() {
    kill_restart_cycles("always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_pixel_with_fsync_batch() {
    kill_restart_cycles("batch").await;
}

/// Places pixels `from..to` (pixel k at (k % 64, k / 64), colour
/// k % 15 + 1; pipelined, `--fsync never`) and kills the server, leaving
/// them in the journal.
async fn journal_with_pixels(dir: &Path, from: u32, to: u32) {
    let server = Server::start(dir, &["--fsync", "never"]).await;
    let mut c = TextClient::joined(server.addr, "p").await;
    for chunk in (from..to).collect::<Vec<_>>().chunks(50) {
        for &k in chunk {
            c.send(&format!("SET {} {} {}", k % 64, k / 64, k % 15 + 1))
                .await;
        }
        for &k in chunk {
            assert_eq!(c.reply().await, format!("OK {}", k + 1));
        }
    }
    server.kill9().await;
}

/// Checks pixels `0..n` are on the canvas with their seqs.
async fn expect_pixels(addr: std::net::SocketAddr, n: u32) {
    let (seq, rows) = TextClient::connect(addr).await.canvas().await;
    assert_eq!(seq, u64::from(n));
    for k in 0..n {
        assert_eq!(
            u32::from(rows[(k / 64) as usize][(k % 64) as usize]),
            k % 15 + 1,
            "pixel {k}"
        );
    }
}

/// Every file of the data directory but the lock (and the archive's
/// directory), with its bytes.
fn contents(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "lock" && e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Files set aside as `*.<what>-<time>`.
fn aside(dir: &Path, what: &str) -> Vec<Vec<u8>> {
    contents(dir)
        .into_iter()
        .filter(|(name, _)| name.contains(&format!(".{what}-")))
        .map(|(_, bytes)| bytes)
        .collect()
}

/// Runs `pixchat-server <tool> --data-dir DIR`: (exit code, stdout).
fn tool(tool: &str, dir: &Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pixchat-server"))
        .args([tool, "--data-dir"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn a_torn_journal_tail_is_cut_kept_aside_and_everything_before_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    journal_with_pixels(dir.path(), 0, 10).await;
    let log = dir.path().join("canvas.log");
    let bytes = std::fs::read(&log).unwrap();
    let record = (bytes.len() - pixchat::server::storage::JOURNAL_HEADER_LEN) / 10;
    // A crash in the middle of writing the last record.
    let torn = bytes.len() - 5;
    std::fs::write(&log, &bytes[..torn]).unwrap();
    let (code, report) = tool("check", dir.path());
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("a start cuts the torn tail"), "{report}");
    let server = Server::start(dir.path(), &[]).await;
    expect_pixels(server.addr, 9).await;
    let log_text = server.log_text();
    assert!(log_text.contains("torn journal tail cut off"), "{log_text}");
    assert_eq!(
        aside(dir.path(), "torn"),
        vec![bytes[bytes.len() - record..torn].to_vec()],
        "the cut bytes are kept beside the journal"
    );
    // The cut is for good: the server keeps working and restarts cleanly.
    let mut c = TextClient::joined(server.addr, "after").await;
    assert_eq!(c.cmd("SET 9 0 10").await, "OK 10");
    server.stop().await;
    let server = Server::start(dir.path(), &[]).await;
    expect_pixels(server.addr, 10).await;
    assert!(!server.log_text().contains("torn"));
}

#[tokio::test]
async fn one_flipped_bit_in_the_journal_header_costs_no_record() {
    let dir = tempfile::tempdir().unwrap();
    journal_with_pixels(dir.path(), 0, 2000).await;
    let log = dir.path().join("canvas.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[9] ^= 0x10; // the canvas id, in the first copy of the header
    std::fs::write(&log, &bytes).unwrap();
    let server = Server::start(dir.path(), &[]).await;
    expect_pixels(server.addr, 2000).await;
    assert!(
        server
            .log_text()
            .contains("the first copy of the journal header is damaged"),
        "{}",
        server.log_text()
    );
}

#[tokio::test]
async fn a_flipped_bit_mid_journal_refuses_the_start_until_repair_sets_the_rest_aside() {
    let dir = tempfile::tempdir().unwrap();
    journal_with_pixels(dir.path(), 0, 2000).await;
    let log = dir.path().join("canvas.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let header = pixchat::server::storage::JOURNAL_HEADER_LEN;
    let record = (bytes.len() - header) / 2000;
    // Damage record 11 of 2000.
    let at = header + 10 * record;
    bytes[at + 12] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    let before = contents(dir.path());

    let err = match Server::try_start(dir.path(), &[]).await {
        Err(log) => log,
        Ok(_) => panic!("a journal damaged in the middle must not start"),
    };
    assert!(err.contains(&format!("canvas.log at byte {at}")), "{err}");
    assert!(err.contains("1989 intact records follow"), "{err}");
    assert!(err.contains("Nothing was changed"), "{err}");
    assert!(err.contains("pixchat-server repair"), "{err}");
    assert_eq!(
        contents(dir.path()),
        before,
        "a refused start changes nothing"
    );

    let (code, report) = tool("check", dir.path());
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains(&format!("DAMAGED at byte {at}")),
        "{report}"
    );
    assert!(report.contains("1989 intact records follow"), "{report}");
    assert_eq!(contents(dir.path()), before, "check changes nothing");

    let (code, report) = tool("repair", dir.path());
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("acknowledged placements given up: 1990"),
        "{report}"
    );
    assert_eq!(
        aside(dir.path(), "cut"),
        vec![bytes[at..].to_vec()],
        "what was cut is kept byte for byte"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes[..at],
        "the rest is untouched"
    );
    let server = Server::start(dir.path(), &[]).await;
    expect_pixels(server.addr, 10).await;
}

#[tokio::test]
async fn a_missing_snapshot_is_rebuilt_from_a_journal_that_holds_the_whole_canvas() {
    let dir = tempfile::tempdir().unwrap();
    journal_with_pixels(dir.path(), 0, 2000).await;
    let log = std::fs::read(dir.path().join("canvas.log")).unwrap();
    // What the damaged-snapshot message used to tell operators to do.
    std::fs::remove_file(dir.path().join("canvas.snap")).unwrap();
    let server = Server::start(dir.path(), &[]).await;
    expect_pixels(server.addr, 2000).await;
    assert!(server.log_text().contains("canvas.snap is missing"));
    server.stop().await;
    // And when the journal does not hold the whole canvas, the start is
    // refused and the journal is left exactly as it was.
    journal_with_pixels(dir.path(), 2000, 2100).await;
    let log_after = std::fs::read(dir.path().join("canvas.log")).unwrap();
    assert_ne!(log_after, log);
    std::fs::remove_file(dir.path().join("canvas.snap")).unwrap();
    let err = match Server::try_start(dir.path(), &[]).await {
        Err(log) => log,
        Ok(_) => panic!("a journal without its snapshot must not start"),
    };
    assert!(err.contains("canvas.snap is missing"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("canvas.log")).unwrap(),
        log_after
    );
}

#[tokio::test]
async fn a_damaged_snapshot_refuses_the_start_and_repair_keeps_what_it_can_read() {
    let dir = tempfile::tempdir().unwrap();
    journal_with_pixels(dir.path(), 0, 1000).await;
    // A start folds the journal into the snapshot; then more pixels.
    Server::start(dir.path(), &[]).await.stop().await;
    journal_with_pixels(dir.path(), 1000, 2000).await;
    let snap = dir.path().join("canvas.snap");
    let mut bytes = std::fs::read(&snap).unwrap();
    let n = bytes.len();
    bytes[n - 200] ^= 0x01; // in the chat-free tail: the seqs of the last pixels
    std::fs::write(&snap, &bytes).unwrap();
    let before = contents(dir.path());
    let err = match Server::try_start(dir.path(), &[]).await {
        Err(log) => log,
        Ok(_) => panic!("a damaged snapshot must not start"),
    };
    assert!(err.contains("canvas.snap"), "{err}");
    assert!(err.contains("checksum"), "{err}");
    assert_eq!(
        contents(dir.path()),
        before,
        "a refused start changes nothing"
    );
    let (code, report) = tool("repair", dir.path());
    assert_eq!(code, 0, "{report}");
    assert_eq!(aside(dir.path(), "damaged"), vec![bytes.clone()]);
    let server = Server::start(dir.path(), &[]).await;
    expect_pixels(server.addr, 2000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_compaction_loses_no_acknowledged_pixel() {
    let dir = tempfile::tempdir().unwrap();
    let size = SIDE.to_string();
    let args = [
        "--compact-after",
        "300",
        "--width",
        &size,
        "--height",
        &size,
    ];
    let mut acked: Vec<Acked> = Vec::new();
    for cycle in 0..4 {
        let server = Server::start(dir.path(), &args).await;
        if cycle > 0 {
            verify(server.addr, &acked).await;
        }
        let addr = server.addr;
        let flood = tokio::spawn(flood_until_killed(addr, cycle, 2));
        // Compactions run every 300 records: a kill lands in one often.
        tokio::time::sleep(Duration::from_millis(250 + 70 * cycle as u64)).await;
        server.kill9().await;
        acked.extend(flood.await.unwrap());
    }
    let server = Server::start(dir.path(), &args).await;
    verify(server.addr, &acked).await;
    server.stop().await;
}

#[tokio::test]
async fn canvas_identity_authorship_and_chat_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--width", "40", "--height", "20"]).await;
    let mut b = BinClient::connect(server.addr).await;
    let hello = match b.cmd(Command::Canvas).await {
        Reply::Canvas(s) => s,
        other => panic!("{other:?}"),
    };
    let mut a = TextClient::joined(server.addr, "Alice").await;
    assert_eq!(a.cmd("SET 7 8 red").await, "OK 1");
    assert_eq!(a.cmd("SAY remember me").await, "OK");
    let whose = a.cmd("WHOSE 7 8").await;
    assert!(
        whose.starts_with("OK Alice ") && whose.ends_with(" 1"),
        "{whose}"
    );
    assert_eq!(a.cmd("WHOSE 0 0").await, "OK * 0 0");
    server.stop().await;

    // No size flags: the stored 40x20 canvas is used.
    let server = Server::start(dir.path(), &[]).await;
    let mut b = BinClient::connect(server.addr).await;
    b.send(Command::Join {
        name: "bob".into(),
        resume: None,
        quiet: false,
    })
    .await;
    let w = match b.reply().await {
        Reply::Welcome(w) => w,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (w.canvas_id, w.width, w.height, w.seq),
        (hello.canvas_id, 40, 20, 1)
    );
    let mut c = TextClient::connect(server.addr).await;
    assert_eq!(c.cmd("WHOSE 7 8").await, whose, "authorship survives");
    assert_eq!(c.cmd("JOIN carol").await, "OK carol 40 20 1");
    let history = c.line().await;
    let parts: Vec<&str> = history.splitn(4, ' ').collect();
    assert_eq!(
        (parts[0], parts[2], parts[3]),
        ("HISTORY", "Alice", "remember me")
    );
    assert!(
        parts[1].parse::<u64>().unwrap() > 1_600_000_000_000,
        "{history}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_different_size_is_refused_unless_a_new_canvas_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--width", "32", "--height", "32"]).await;
    let mut a = TextClient::joined(server.addr, "a").await;
    assert_eq!(a.cmd("SET 1 1 1").await, "OK 1");
    server.stop().await;

    let err = match Server::try_start(dir.path(), &["--width", "64", "--height", "64"]).await {
        Err(log) => log,
        Ok(_) => panic!("a size mismatch must not start"),
    };
    assert!(err.contains("is 32x32, not 64x64"), "{err}");
    assert!(err.contains("--new-canvas"), "{err}");

    let server = Server::start(
        dir.path(),
        &["--width", "64", "--height", "64", "--new-canvas"],
    )
    .await;
    let (seq, rows) = TextClient::connect(server.addr).await.canvas().await;
    assert_eq!((seq, rows.len(), rows[0].len()), (0, 64, 64));
    assert!(rows.iter().flatten().all(|&c| c == 0));
    server.stop().await;
    let kept_aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".replaced-")
        })
        .count();
    assert!(kept_aside >= 1, "the old canvas files are kept aside");
}

#[tokio::test]
async fn two_servers_cannot_share_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), &[]).await;
    let err = match Server::try_start(dir.path(), &[]).await {
        Err(log) => log,
        Ok(_) => panic!("a second server on the same directory must not start"),
    };
    assert!(err.contains("another pixchat-server is using"), "{err}");
    first.stop().await;
}

#[tokio::test]
async fn compaction_keeps_the_canvas_and_bounds_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let storage = pixchat::server::storage::StorageConfig {
        fsync: pixchat::server::storage::Fsync::Never,
        compact_after: 500,
        ..pixchat::server::storage::StorageConfig::new(dir.path())
    };
    let config = || pixchat::Config {
        storage: Some(storage.clone()),
        ..Default::default()
    };
    let server = common::start_server(config()).await;
    let mut a = TextClient::joined(server.addr, "a").await;
    let mut expected: HashMap<(u64, u64), u64> = HashMap::new();
    for i in 0..3000u64 {
        a.send(&format!("SET {} {} {}", i % 64, (i * 7) % 64, i % 16))
            .await;
        expected.insert((i % 64, (i * 7) % 64), i % 16);
    }
    for i in 0..3000u64 {
        assert_eq!(a.reply().await, format!("OK {}", i + 1));
    }
    // Compaction runs in the background and is started by new records:
    // keep drawing (bounded) until the journal is shorter than 1000 records,
    // far below the 3000+ it would hold without compaction.
    let log = dir.path().join("canvas.log");
    let mut small = false;
    let mut seq = 3000;
    for _ in 0..100 {
        if std::fs::metadata(&log).map(|m| m.len()).unwrap_or(u64::MAX) < 32 * 1000 {
            small = true;
            break;
        }
        seq += 1;
        assert_eq!(a.cmd("SET 0 0 0").await, format!("OK {seq}"));
        expected.insert((0, 0), 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(small, "the journal was never compacted");
    server.stop().await;
    let server = common::start_server(config()).await;
    let (recovered, rows) = TextClient::connect(server.addr).await.canvas().await;
    assert_eq!(recovered, seq);
    for ((x, y), color) in expected {
        assert_eq!(u64::from(rows[y as usize][x as usize]), color);
    }
}
