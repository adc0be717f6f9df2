//! Write and fsync errors, injected into a real server's storage: nothing
//! acknowledged is lost, placements are refused while the journal cannot
//! take them, reads keep working, and writes resume by themselves.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{BinClient, TextClient, WAIT};
use pixchat::protocol::{Command, Reply};
use pixchat::server::storage::{Faults, Fsync, StorageConfig, recovery};

struct Durable {
    server: common::TestServer,
    faults: Arc<Faults>,
    dir: tempfile::TempDir,
}

async fn start(fsync: Fsync) -> Durable {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir, fsync).await
}

async fn start_in(dir: tempfile::TempDir, fsync: Fsync) -> Durable {
    let faults = Arc::new(Faults::none());
    let storage = StorageConfig {
        fsync,
        faults: faults.clone(),
        ..StorageConfig::new(dir.path())
    };
    let server = common::start_server(pixchat::Config {
        storage: Some(storage),
        width: Some(16),
        height: Some(16),
        ..Default::default()
    })
    .await;
    Durable {
        server,
        faults,
        dir,
    }
}

impl Durable {
    async fn restart(self) -> Durable {
        let Durable { server, dir, .. } = self;
        server.stop().await;
        start_in(dir, Fsync::Batch).await
    }
}

/// Places pixel `n` (cell n % 256, colour n % 15 + 1) and returns the reply.
async fn place(c: &mut TextClient, n: u64) -> String {
    c.cmd(&format!("SET {} {} {}", n % 16, n / 16 % 16, n % 15 + 1))
        .await
}

fn expect_cell(rows: &[Vec<u8>], n: u64) {
    assert_eq!(
        u64::from(rows[(n / 16 % 16) as usize][(n % 16) as usize]),
        n % 15 + 1,
        "pixel {n}"
    );
}

#[tokio::test]
async fn a_failed_fsync_is_recovered_from_memory_and_nothing_acknowledged_is_lost() {
    let d = start(Fsync::Batch).await;
    let mut a = TextClient::joined(d.server.addr, "a").await;
    for n in 1..=20 {
        assert_eq!(place(&mut a, n).await, format!("OK {n}"));
    }
    // The fsync covering the next placement fails: the journal rebuilds
    // from memory (snapshot + new journal) and only then acknowledges it.
    d.faults.fail_syncs(1);
    assert_eq!(place(&mut a, 21).await, "OK 21");
    assert!(!d.faults.pending(), "the injected fault was hit");
    for n in 22..=40 {
        assert_eq!(place(&mut a, n).await, format!("OK {n}"));
    }
    let report = recovery::check(d.dir.path()).unwrap();
    assert!(report.startable, "{:?}", report.lines);
    let d = d.restart().await;
    let (seq, rows) = TextClient::connect(d.server.addr).await.canvas().await;
    assert_eq!(seq, 40);
    for n in 25..=40 {
        expect_cell(&rows, n);
    }
}

#[tokio::test]
async fn a_write_cut_short_by_a_full_disk_leaves_no_hole() {
    for fsync in [Fsync::Always, Fsync::Batch, Fsync::Never] {
        let d = start(fsync).await;
        let mut a = TextClient::joined(d.server.addr, "a").await;
        for n in 1..=10 {
            assert_eq!(place(&mut a, n).await, format!("OK {n}"));
        }
        d.faults.short_writes(1);
        assert_eq!(place(&mut a, 11).await, "OK 11");
        for n in 12..=300 {
            assert_eq!(place(&mut a, n).await, format!("OK {n}"));
        }
        // Stopping writes nothing more; the journal on disk must read back
        // whole: no torn or damaged record where the short write was.
        let Durable { server, dir, .. } = d;
        server.stop().await;
        let report = recovery::check(dir.path()).unwrap();
        assert!(report.startable, "{fsync:?}: {:?}", report.lines);
        assert!(
            report
                .lines
                .iter()
                .all(|l| !l.contains("torn") && !l.contains("DAMAGED")),
            "{fsync:?}: {:?}",
            report.lines
        );
        assert!(
            report
                .lines
                .iter()
                .any(|l| l.contains("a start succeeds at seq 300")),
            "{fsync:?}: {:?}",
            report.lines
        );
    }
}

/// Sends a SET and reads until its reply, skipping events.
async fn set_reply(c: &mut TextClient, line: &str) -> String {
    c.send(line).await;
    c.reply().await
}

#[tokio::test]
async fn while_the_disk_fails_placements_are_refused_and_reads_keep_working() {
    let d = start(Fsync::Batch).await;
    let addr = d.server.addr;
    let mut a = TextClient::joined(addr, "a").await;
    let mut b = TextClient::joined(addr, "b").await;
    for n in 1..=10 {
        assert_eq!(place(&mut a, n).await, format!("OK {n}"));
    }
    assert_eq!(b.cmd("SAY before").await, "OK");
    // Every fsync fails from now on, the rebuild's too.
    d.faults.fail_syncs(u32::MAX);
    // This placement is accepted and waits for the disk: no reply yet.
    a.send("SET 15 15 red").await;
    // The failure shows within one batch (2 ms); a command that arrived
    // before it would wait with the placement, so give it time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = TextClient::connect(addr).await;
    let join = c.cmd("JOIN c").await;
    assert!(join.starts_with("ERR unavailable "), "{join}");
    // Everyone else is told at once that nothing can be placed.
    let refused = tokio::time::timeout(WAIT, set_reply(&mut b, "SET 0 15 blue"))
        .await
        .expect("a SET is answered while the disk fails");
    assert!(refused.starts_with("ERR unavailable "), "{refused}");
    assert!(refused.contains("nothing was changed"), "{refused}");
    let said = set_reply(&mut b, "SAY during").await;
    assert!(said.starts_with("ERR unavailable "), "{said}");

    // A newcomer can read everything that is durable, and nothing else.
    assert_eq!(c.cmd("PING x").await, "OK PONG x");
    assert_eq!(c.cmd("WHO").await, "OK 2 a b");
    let (seq, rows) = c.canvas().await;
    assert!(seq >= 10, "{seq}");
    for n in 1..=10 {
        expect_cell(&rows, n);
    }
    assert_eq!(rows[15][15], 0, "the waiting placement is not shown");
    c.send(&format!("SYNC {}", seq - 3)).await;
    for _ in 0..3 {
        assert!(c.line().await.starts_with("PIXEL "));
    }
    assert_eq!(c.line().await, format!("OK {seq}"));
    assert_eq!(c.cmd("WHOSE 15 15").await, "OK * 0 0");
    let whose = c.cmd("WHOSE 10 0").await;
    assert!(
        whose.starts_with("OK a ") && whose.ends_with(" 10"),
        "{whose}"
    );
    let mut bin = BinClient::connect(addr).await;
    match bin.cmd(Command::Canvas).await {
        Reply::Canvas(s) => assert_eq!(s.seq, seq),
        other => panic!("{other:?}"),
    }

    // The disk works again: the waiting placement is made durable and
    // acknowledged, and placements are accepted again, by themselves.
    d.faults.fail_syncs(0);
    let ok = tokio::time::timeout(WAIT, a.reply())
        .await
        .expect("the waiting placement is answered once the disk works");
    assert!(ok.starts_with("OK "), "{ok}");
    let acked: u64 = ok[3..].parse().unwrap();
    let mut placed = false;
    for _ in 0..50 {
        if set_reply(&mut b, "SET 1 15 green").await.starts_with("OK ") {
            placed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(placed, "placements resume once the disk works");
    assert!(c.cmd("JOIN c").await.starts_with("OK c "));
    let d = d.restart().await;
    let mut c = TextClient::connect(d.server.addr).await;
    let (seq, rows) = c.canvas().await;
    assert!(seq > acked);
    assert_eq!(rows[15][15], 5, "the acknowledged placement survived");
    let whose = c.cmd("WHOSE 15 15").await;
    assert!(whose.ends_with(&format!(" {acked}")), "{whose}");
}

#[tokio::test]
async fn the_server_stops_when_its_journal_writer_dies() {
    let mut d = start(Fsync::Batch).await;
    let mut a = TextClient::joined(d.server.addr, "a").await;
    assert_eq!(place(&mut a, 1).await, "OK 1");
    d.faults.crash_writer();
    a.send("SET 2 2 2").await;
    let handle = d.server.handle.take().unwrap();
    let result = tokio::time::timeout(WAIT, handle)
        .await
        .expect("the server stops on its own")
        .unwrap();
    let err = result.expect_err("the server reports the failure");
    assert!(err.to_string().contains("journal"), "{err}");
    // The placement was never acknowledged; the client was told goodbye.
    let rest = a.expect_closed().await;
    assert!(rest.iter().all(|l| !l.starts_with("OK")), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("BYE shutting_down")),
        "{rest:?}"
    );
}
