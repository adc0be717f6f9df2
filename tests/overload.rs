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

/// Clients that ask for the whole canvas and never read share one copy of
/// it: 200 of them on a 1024 x 1024 canvas would pin 200 MiB of text if
/// each had its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_ask_for_the_canvas_and_never_read_share_one_copy() {
    const STALLED: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--width", "1024", "--height", "1024"];
    let server = common::ServerProcess::start(dir.path(), &args).await;
    let (pid, addr) = (server.pid(), server.addr);
    let mut painter = TextClient::joined(addr, "painter").await;
    for i in 0..64 {
        assert!(
            painter
                .cmd(&format!("SET {i} {i} 5"))
                .await
                .starts_with("OK ")
        );
    }
    // One reader first, so the snapshot and its encoding exist (and are
    // counted in the baseline, not in the growth).
    let (seq, rows) = TextClient::connect(addr).await.canvas().await;
    assert_eq!((seq, rows.len(), rows[0].len()), (64, 1024, 1024));
    let baseline = rss_kib(pid);
    let mut stalled = Vec::new();
    for i in 0..STALLED {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        let cmd: &[u8] = if i % 2 == 0 {
            b"CANVAS\n"
        } else {
            // Binary: HELLO, then CANVAS.
            &[0, 0, 0, 7, 1, b'P', b'X', b'C', b'H', 0, 1, 0, 0, 0, 1, 6]
        };
        s.write_all(cmd).await.unwrap();
        stalled.push(s);
    }
    // Everyone was answered as far as their sockets take it.
    assert_eq!(painter.cmd("PING settled").await, "OK PONG settled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = rss_kib(pid).saturating_sub(baseline);
    assert!(
        grown < GROWTH_BOUND_KIB,
        "{STALLED} stalled CANVAS clients grew the server by {grown} KiB"
    );
    // And the server still serves.
    assert!(painter.cmd("SET 1 2 3").await.starts_with("OK "));
    drop(stalled);
}

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
                Command::Join {
                    name,
                    resume: None,
                    quiet: false,
                },
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

/// Connects with a small receive buffer, so a client that stops reading
/// fills up quickly, and sends `hello` (a JOIN in its mode).
async fn sloth(addr: std::net::SocketAddr, hello: &[u8]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(hello).await.unwrap();
    s
}

/// Everything the server still sends, up to its end of stream; fails on a
/// reset or if the stream does not end.
async fn read_to_eof(mut s: TcpStream, who: &str) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(common::WAIT, s.read_to_end(&mut all))
        .await
        .unwrap_or_else(|_| panic!("{who}: the server never closed"))
        .unwrap_or_else(|e| panic!("{who}: {e} instead of the end of stream"));
    all
}

/// Checks a text client's whole input: complete, well-formed lines, pixels
/// in seq order without gaps, and `BYE slow_consumer` last. Returns the
/// number of pixels.
fn check_text_goodbye(bytes: &[u8]) -> u64 {
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    let end = &text[text.len().saturating_sub(100)..];
    assert!(text.ends_with('\n'), "a cut line at the end: {end:?}");
    let lines: Vec<&str> = text.lines().collect();
    let (last, before) = lines.split_last().expect("some lines");
    assert!(last.starts_with("BYE slow_consumer "), "last line {last:?}");
    let mut pixels = 0;
    for l in before {
        let word = l.split(' ').next().unwrap();
        match word {
            "PIXEL" => {
                assert_eq!(l.split(' ').count(), 6, "{l:?}");
                pixels += 1;
                assert_eq!(parse_pixel(l).0, pixels, "{l:?}");
            }
            "OK" | "JOINED" | "LEFT" | "MSG" | "DM" | "HISTORY" => {}
            _ => panic!("not a whole line: {l:?}"),
        }
    }
    pixels
}

/// The same for a binary client: whole frames that all decode, pixels in
/// order, `BYE slow_consumer` last.
fn check_binary_goodbye(bytes: &[u8]) -> u64 {
    use pixchat::protocol::{ErrorCode, Event, binary::decode_server};
    let mut msgs = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let prefix = bytes
            .get(at..at + 4)
            .expect("the stream ends inside a length");
        let len = u32::from_be_bytes(prefix.try_into().unwrap()) as usize;
        let payload = bytes
            .get(at + 4..at + 4 + len)
            .expect("the stream ends inside a frame");
        msgs.push(decode_server(payload).expect("a frame that decodes"));
        at += 4 + len;
    }
    let (last, before) = msgs.split_last().expect("some frames");
    assert!(
        matches!(
            last,
            ServerMsg::Event(Event::Bye {
                code: ErrorCode::SlowConsumer,
                ..
            })
        ),
        "last frame {last:?}"
    );
    let mut pixels = 0;
    for m in before {
        if let ServerMsg::Event(Event::Pixel(p)) = m {
            pixels += 1;
            assert_eq!(p.seq, pixels);
        }
    }
    pixels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_reads_whole_messages_then_bye_then_the_end() {
    let server = common::start_memory(pixchat::Config {
        broadcast: pixchat::server::broadcast::BroadcastLimits {
            max_events: 1000,
            max_bytes: 1 << 20,
        },
        ..Default::default()
    })
    .await;
    let addr = server.addr;
    let mut flooder = TextClient::joined(addr, "flooder").await;
    let text = sloth(addr, b"JOIN tsloth\n").await;
    let mut hello = bytes::BytesMut::new();
    for cmd in [
        Command::Hello {
            version: PROTOCOL_VERSION,
        },
        Command::Join {
            name: "bsloth".into(),
            resume: None,
            quiet: false,
        },
    ] {
        pixchat::protocol::binary::encode_command(&cmd, &mut hello);
    }
    let mut binary = sloth(addr, &hello).await;
    // The two joins may be handled in either order.
    let mut joined = Vec::new();
    while joined.len() < 2 {
        joined.push(flooder.until("JOINED ").await);
    }
    joined.sort();
    assert_eq!(joined, ["JOINED bsloth", "JOINED tsloth"]);
    // The binary one keeps sending PINGs, as the client library does. Once
    // their replies cannot be sent the server stops reading them, and a
    // close with input unread would be a reset, not an end of stream.
    let mut pings = bytes::BytesMut::new();
    for _ in 0..100 {
        pixchat::protocol::binary::encode_command(&Command::Ping { token: "p".into() }, &mut pings);
    }

    // Flood until both have been dropped: bounded in rounds and time.
    const ROUND: u64 = 500;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut sent = 0;
    loop {
        let mut batch = String::new();
        for i in sent..sent + ROUND {
            batch.push_str(&format!("SET {} {} {}\n", i % 64, (i / 64) % 64, i % 16));
        }
        flooder.send_raw(batch.as_bytes()).await;
        binary.write_all(&pings).await.unwrap();
        sent += ROUND;
        for _ in 0..ROUND {
            let r = flooder.reply().await;
            assert!(r.starts_with("OK "), "{r}");
        }
        if flooder.cmd("WHO").await == "OK 1 flooder" {
            break;
        }
        assert!(
            sent < 400 * ROUND && tokio::time::Instant::now() < deadline,
            "the clients that stopped reading were never dropped"
        );
    }

    // Reading again, each finds whole messages, the goodbye, then the end.
    let text_pixels = check_text_goodbye(&read_to_eof(text, "text").await);
    let binary_pixels = check_binary_goodbye(&read_to_eof(binary, "binary").await);
    assert!(text_pixels < sent && binary_pixels < sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_queued_dms_end_with_bye_slow_consumer() {
    let server = common::start_memory(pixchat::Config {
        send_buffer: Some(4096),
        ..Default::default()
    })
    .await;
    let mut sender = TextClient::joined(server.addr, "sender").await;
    let target = sloth(server.addr, b"JOIN target\n").await;
    sender.until("JOINED target").await;
    let text = "x".repeat(500);
    // A few kernel buffers' worth, then the 256 DMs the server queues: at
    // most 1,000, far more than that takes.
    let mut gone = false;
    for _ in 0..1000 {
        match sender.cmd(&format!("TELL target {text}")).await.as_str() {
            "OK" => {}
            "ERR no_such_user nobody called target is online" => {
                gone = true;
                break;
            }
            other => panic!("TELL answered {other}"),
        }
    }
    assert!(gone, "the target was never dropped");
    let bytes = read_to_eof(target, "target").await;
    check_text_goodbye(&bytes);
    let dms = String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| l.starts_with("DM sender "))
        .count();
    assert!(dms < 1000);
}

/// A watcher that reads steadily but slower than a writer places pixels
/// holds the writer back instead of falling out of the broadcast window;
/// one that stops reading holds it back only for a while, and is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_faster_than_a_slow_reader_waits_for_it_but_not_for_a_stalled_one() {
    let server = common::start_memory(pixchat::Config {
        // A window of 4,096 events: producers wait at 1,024 behind.
        broadcast: pixchat::server::broadcast::BroadcastLimits {
            max_events: 4096,
            max_bytes: 1 << 20,
        },
        send_buffer: Some(8192),
        ..Default::default()
    })
    .await;
    let addr = server.addr;
    let mut writer = TextClient::joined(addr, "writer").await;
    let slow = sloth(addr, b"JOIN slow\n").await;
    let stalled = sloth(addr, b"JOIN stalled\n").await;
    for _ in 0..2 {
        writer.until("JOINED ").await;
    }
    // The slow reader takes 512 bytes every 2 ms (about 9,000 pixel lines
    // a second, well below what the writer sends) until it has them all.
    const PIXELS: u64 = 30_000;
    let reader = tokio::spawn(async move {
        let mut slow = BufReader::with_capacity(512, slow);
        let mut pixels = 0;
        let mut line = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while pixels < PIXELS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "too slow even for a slow reader"
            );
            line.clear();
            let n = slow.read_line(&mut line).await.unwrap();
            assert!(n > 0, "the slow reader was cut off after {pixels} pixels");
            assert!(
                !line.starts_with("BYE"),
                "the slow reader was dropped: {line}"
            );
            if line.starts_with("PIXEL ") {
                pixels += 1;
                assert_eq!(parse_pixel(line.trim_end()).0, pixels, "{line:?}");
            }
            if slow.buffer().is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        (pixels, slow)
    });
    let mut sent = 0;
    while sent < PIXELS {
        let mut batch = String::new();
        for i in sent..sent + 500 {
            batch.push_str(&format!("SET {} {} {}\n", i % 64, (i / 64) % 64, i % 16));
        }
        writer.send_raw(batch.as_bytes()).await;
        for _ in 0..500 {
            let r = writer.reply().await;
            assert!(r.starts_with("OK "), "{r}");
        }
        sent += 500;
    }
    let (pixels, _slow) = reader.await.unwrap();
    assert_eq!(pixels, PIXELS);
    // The one that never read was dropped, after whole lines and a BYE.
    let stalled_pixels = check_text_goodbye(&read_to_eof(stalled, "stalled").await);
    assert!(stalled_pixels < PIXELS);
    assert_eq!(writer.cmd("WHO").await, "OK 2 slow writer");
}
