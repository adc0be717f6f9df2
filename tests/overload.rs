//! Overload: readers that never read must not grow the server's memory or
//! delay anyone, and a crowd of broken clients must not corrupt the canvas.

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use common::{TextClient, parse_pixel, start_default};
use futures::{SinkExt, StreamExt};
use pixchat::protocol::binary::ClientCodec;
use pixchat::protocol::{Command, PROTOCOL_VERSION, Reply, ServerMsg};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// How much the server may grow in this test: the shared broadcast window,
/// `SYNC` history and allocator slack for 100,000 events (measured: 25-40
/// MiB), far less than the 200 MiB that 100 readers' backlogs of 2 MiB each
/// would take if the server buffered them.
const GROWTH_BOUND_KIB: u64 = 64 * 1024;
const PIXELS: u64 = 100_000;
const SLOW_READERS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_never_read_keep_memory_bounded_and_delay_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::ServerProcess::start(dir.path(), &["--fsync", "never"]).await;
    let (pid, addr) = (server.pid(), server.addr);

    let mut normal = TextClient::joined(addr, "normal").await;
    let mut slow = Vec::new();
    for i in 0..SLOW_READERS {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        s.write_all(format!("JOIN sloth{i}\n").as_bytes())
            .await
            .unwrap();
        slow.push(s);
        normal.until(&format!("JOINED sloth{i}")).await;
    }
    let baseline = rss_kib(pid);

    let painter = TextClient::joined(addr, "painter").await;
    let TextClient { reader, mut writer } = painter;
    let paint = tokio::spawn(async move {
        let mut batch = String::new();
        for i in 0..PIXELS {
            batch.push_str(&format!("SET {} {} {}\n", i % 64, (i / 64) % 64, i % 16));
            if batch.len() > 16 * 1024 {
                writer.write_all(batch.as_bytes()).await.unwrap();
                batch.clear();
            }
        }
        writer.write_all(batch.as_bytes()).await.unwrap();
        writer
    });
    let acks = tokio::spawn(async move {
        let mut reader = reader;
        let mut oks = 0;
        let mut line = String::new();
        while oks < PIXELS {
            line.clear();
            let n = tokio::time::timeout(common::WAIT, reader.read_line(&mut line))
                .await
                .expect("the painter's replies keep coming")
                .unwrap();
            assert!(n > 0);
            if line.starts_with("OK") {
                oks += 1;
            }
        }
    });
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            // Bounded: at most a minute of samples.
            for _ in 0..3000 {
                peak = peak.max(rss_kib(pid));
                if !sampling.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };

    // The normal client gets every event, in order, while the others stall.
    let mut next = 1;
    while next <= PIXELS {
        let l = normal.line().await;
        if l.starts_with("PIXEL") {
            assert_eq!(parse_pixel(&l).0, next);
            next += 1;
        }
    }
    acks.await.unwrap();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_during = sampler.await.unwrap();
    let _writer = paint.await.unwrap();
    let growth = peak_during.saturating_sub(baseline);
    eprintln!("server RSS: baseline {baseline} KiB, peak during {PIXELS} pixels {peak_during} KiB");
    assert!(
        growth < GROWTH_BOUND_KIB,
        "server grew by {growth} KiB with {SLOW_READERS} readers that never read"
    );
    drop(slow);
}

/// One chaos connection's behaviour.
#[derive(Debug, Clone, Copy)]
enum Chaos {
    RandomBytes,
    HalfFrame,
    HugeLength,
    TextMixed,
    BinaryValid,
}

/// Runs one chaos connection and returns the pixels it placed that got OK,
/// as (seq, x, y, color).
async fn chaos(addr: std::net::SocketAddr, id: u64, kind: Chaos) -> Vec<(u64, u16, u16, u8)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(id);
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return Vec::new();
    };
    let mut acked = Vec::new();
    match kind {
        Chaos::RandomBytes => {
            let mut bytes = vec![0u8; rng.random_range(1..8192)];
            rng.fill(&mut bytes[..]);
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(common::WAIT, s.read_to_end(&mut sink)).await;
        }
        Chaos::HalfFrame => {
            let _ = s
                .write_all(&[0, 0, 0, 7, 1, b'P', b'X', b'C', b'H', 0, 1])
                .await;
            let _ = s.write_all(&[0, 0, 0, 9, 5, 0]).await;
            // Hang up in the middle of the frame.
        }
        Chaos::HugeLength => {
            let _ = s.write_all(&[0, 0xFF, 0xFF, 0xFF, 1, 2, 3]).await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(common::WAIT, s.read_to_end(&mut sink)).await;
        }
        Chaos::TextMixed => {
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            let name = format!("t{id}");
            let mut lines = vec![format!("JOIN {name}")];
            let mut sets = VecDeque::new();
            for _ in 0..40 {
                if rng.random_bool(0.5) {
                    let (x, y, c) = (
                        rng.random_range(0..64u16),
                        rng.random_range(0..64u16),
                        rng.random_range(0..16u8),
                    );
                    lines.push(format!("SET {x} {y} {c}"));
                } else {
                    // Garbage without line breaks, starting with a byte no
                    // command (or HTTP method) starts with.
                    let len = rng.random_range(0..1500);
                    let junk: String = (0..len)
                        .map(|_| rng.random_range(0x20u8..0x7F) as char)
                        .collect();
                    lines.push(format!("~{junk}"));
                }
            }
            let mut script = String::new();
            for l in &lines {
                script.push_str(l);
                script.push('\n');
            }
            let _ = w.write_all(script.as_bytes()).await;
            // One reply per line, in order: map the OKs of SETs.
            let mut buf = String::new();
            let mut replies = 0;
            while replies < lines.len() {
                buf.clear();
                match tokio::time::timeout(common::WAIT, r.read_line(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => panic!("text chaos client {id} lost its connection"),
                }
                let l = buf.trim_end();
                if !(l.starts_with("OK") || l.starts_with("ERR")) {
                    continue;
                }
                let line = &lines[replies];
                replies += 1;
                if let Some(set) = line.strip_prefix("SET ") {
                    let p: Vec<u64> = set.split(' ').map(|v| v.parse().unwrap()).collect();
                    let seq = l.strip_prefix("OK ").expect("a valid SET is accepted");
                    sets.push_back((seq.parse().unwrap(), p[0] as u16, p[1] as u16, p[2] as u8));
                }
            }
            acked.extend(sets);
            let _ = w.write_all(b"QUIT\n").await;
        }
        Chaos::BinaryValid => {
            let mut f = tokio_util::codec::Framed::new(s, ClientCodec::default());
            let name = format!("b{id}");
            let mut cmds = vec![
                Command::Hello {
                    version: PROTOCOL_VERSION,
                },
                Command::Join { name, resume: None },
            ];
            for _ in 0..30 {
                cmds.push(Command::Set {
                    x: rng.random_range(0..64),
                    y: rng.random_range(0..64),
                    color: rng.random_range(0..16),
                });
            }
            for c in &cmds {
                f.send(c).await.unwrap();
            }
            let mut i = 0;
            while i < cmds.len() {
                let msg = tokio::time::timeout(common::WAIT, f.next())
                    .await
                    .expect("binary chaos replies")
                    .expect("open")
                    .expect("frame");
                let ServerMsg::Reply(reply) = msg else {
                    continue;
                };
                if matches!(reply, Reply::Canvas(_)) {
                    continue; // the snapshot after WELCOME
                }
                if let (Command::Set { x, y, color }, Reply::Set { seq }) = (&cmds[i], &reply) {
                    acked.push((*seq, *x as u16, *y as u16, *color as u8));
                }
                i += 1;
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_of_broken_and_valid_clients_leaves_exactly_the_accepted_pixels() {
    let server = start_default().await;
    let kinds = [
        Chaos::RandomBytes,
        Chaos::HalfFrame,
        Chaos::HugeLength,
        Chaos::TextMixed,
        Chaos::BinaryValid,
    ];
    let mut tasks = Vec::new();
    for id in 0..300u64 {
        let kind = kinds[(id % kinds.len() as u64) as usize];
        tasks.push(tokio::spawn(chaos(server.addr, id, kind)));
    }
    let mut accepted = Vec::new();
    for t in tasks {
        accepted.extend(t.await.unwrap());
    }
    accepted.sort_unstable();
    // Every seq was acknowledged exactly once, with no gaps.
    let seqs: Vec<u64> = accepted.iter().map(|a| a.0).collect();
    assert_eq!(seqs, (1..=accepted.len() as u64).collect::<Vec<_>>());
    let mut expected = vec![vec![0u8; 64]; 64];
    for (_, x, y, c) in &accepted {
        expected[usize::from(*y)][usize::from(*x)] = *c;
    }
    let mut normal = TextClient::connect(server.addr).await;
    assert_eq!(normal.cmd("PING after").await, "OK PONG after");
    let (seq, rows) = normal.canvas().await;
    assert_eq!(seq, accepted.len() as u64);
    assert!(
        rows == expected,
        "the canvas is not the sum of the accepted pixels"
    );
}
