//! A real full disk: the data directory on a small tmpfs (mounting one
//! needs root, which CI has). Nothing acknowledged is lost across the
//! episode and a `kill -9` after it; placements are refused while the disk
//! is full, everything else keeps working, and writes resume by themselves
//! when space returns.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{ServerProcess, TextClient, WAIT};

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Another process eating the disk: keeps appending to a file whenever
/// space appears, until stopped.
struct Hog {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl Hog {
    fn start(path: PathBuf) -> Hog {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::spawn(move || {
                let mut f = std::fs::File::create(&path).unwrap();
                let chunk = vec![7u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if f.write_all(&chunk).is_err() {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            })
        };
        Hog {
            stop,
            thread: Some(thread),
            path,
        }
    }

    /// Stops eating and gives the space back.
    fn release(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::fs::remove_file(&self.path).unwrap();
    }
}

/// Places pixel `n` (cell n % 4096 of a 64x64 canvas, colour n % 15 + 1);
/// returns the reply.
async fn place(c: &mut TextClient, n: u64) -> String {
    let cell = n % 4096;
    c.cmd(&format!("SET {} {} {}", cell % 64, cell / 64, n % 15 + 1))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_placements_keeps_reads_and_loses_nothing_acknowledged() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root {
        return common::skip("disk_full", "mounting a tmpfs needs root");
    }
    let Some(fs) = Tmpfs::mount("4m") else {
        return common::skip("disk_full", "mount -t tmpfs failed");
    };
    let data = fs.path().join("data");
    let args = ["--width", "64", "--height", "64"];
    let server = ServerProcess::start(&data, &args).await;
    let addr = server.addr;
    let mut a = TextClient::joined(addr, "a").await;
    let mut acked = Vec::new();
    let mut n = 0;
    for _ in 0..300 {
        n += 1;
        assert_eq!(place(&mut a, n).await, format!("OK {n}"));
        acked.push(n);
    }

    // Another program fills the disk and keeps it full.
    let hog = Hog::start(fs.path().join("hog"));
    let started = Instant::now();
    let refused = loop {
        n += 1;
        let reply = place(&mut a, n).await;
        if reply.starts_with("ERR ") {
            break reply;
        }
        assert_eq!(reply, format!("OK {}", acked.len() as u64 + 1));
        acked.push(n);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the disk never filled"
        );
    };
    assert!(refused.starts_with("ERR unavailable "), "{refused}");
    assert!(refused.contains("No space left on device"), "{refused}");

    // Everything that does not need the journal still works, for anyone.
    let seq = acked.len() as u64;
    let mut c = TextClient::connect(addr).await;
    assert_eq!(c.cmd("PING").await, "OK PONG");
    let (canvas_seq, _) = c.canvas().await;
    assert_eq!(canvas_seq, seq);
    assert!(c.cmd("WHOSE 1 0").await.starts_with("OK a "));
    assert_eq!(c.cmd(&format!("SYNC {}", seq)).await, format!("OK {seq}"));
    assert_eq!(c.cmd("JOIN c").await, format!("OK c 64 64 {seq}"));
    assert_eq!(c.cmd("WHO").await, "OK 2 a c");
    let said = c.cmd("SAY hello?").await;
    assert!(said.starts_with("ERR unavailable "), "{said}");
    // Refused again and again while the disk stays full.
    for _ in 0..5 {
        n += 1;
        let reply = place(&mut a, n).await;
        assert!(reply.starts_with("ERR unavailable "), "{reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Space comes back: placements resume by themselves.
    hog.release();
    let resumed = Instant::now();
    loop {
        n += 1;
        let reply = place(&mut a, n).await;
        if reply.starts_with("OK ") {
            assert_eq!(reply, format!("OK {}", acked.len() as u64 + 1));
            acked.push(n);
            break;
        }
        assert!(reply.starts_with("ERR unavailable "), "{reply}");
        assert!(resumed.elapsed() < WAIT, "placements never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..2000 {
        n += 1;
        assert_eq!(
            place(&mut a, n).await,
            format!("OK {}", acked.len() as u64 + 1)
        );
        acked.push(n);
    }
    // What the operator saw.
    let log = server.log_text();
    assert!(log.contains("journal write failed"), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    assert!(log.contains("storage is writable again"), "{log}");
    server.kill9().await;

    // Nothing acknowledged is lost, before, during or after the episode.
    let server = ServerProcess::start(&data, &args).await;
    let (seq, rows) = TextClient::connect(server.addr).await.canvas().await;
    assert_eq!(seq, acked.len() as u64);
    // The last placement at each cell wins.
    let mut want = std::collections::HashMap::new();
    for &n in &acked {
        want.insert(n % 4096, n % 15 + 1);
    }
    for (cell, color) in want {
        assert_eq!(
            u64::from(rows[(cell / 64) as usize][(cell % 64) as usize]),
            color,
            "cell {cell}"
        );
    }
    server.stop().await;
}
