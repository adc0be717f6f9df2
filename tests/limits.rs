//! Limits and hostile input over real TCP: many clients, a full server,
//! random bytes, and a client that never reads.

mod common;

use std::time::Duration;

use common::{BinClient, TextClient, parse_pixel, start_default, start_server};
use pixchat::protocol::{Reply, ServerMsg};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_at_once() {
    let server = start_default().await;
    let mut painter = TextClient::joined(server.addr, "painter").await;
    let joins = (0..200).map(|i| {
        let addr = server.addr;
        tokio::spawn(async move { TextClient::joined(addr, &format!("user{i:03}")).await })
    });
    let mut clients = Vec::new();
    for j in joins {
        clients.push(j.await.unwrap());
    }
    let who = painter.cmd("WHO").await;
    assert!(
        who.starts_with("OK 201 painter user000 user001 "),
        "{}",
        &who[..40]
    );
    assert_eq!(painter.cmd("SET 5 6 7").await, "OK 1");
    assert_eq!(painter.cmd("SAY everyone?").await, "OK");
    for c in clients.iter_mut() {
        assert_eq!(c.until("PIXEL").await, "PIXEL 1 5 6 7 painter");
        assert_eq!(c.until("MSG").await, "MSG painter everyone?");
    }
}

#[tokio::test]
async fn a_full_server_says_so_in_each_mode_and_closes() {
    let server = start_server(pixchat::Config {
        max_clients: 2,
        ..Default::default()
    })
    .await;
    let mut a = TextClient::joined(server.addr, "a").await;
    let _b = BinClient::connect(server.addr).await;

    let mut extra = TextClient::connect(server.addr).await;
    extra.send("JOIN c").await;
    let line = extra.line().await;
    assert!(line.starts_with("ERR server_full "), "{line}");
    assert!(extra.expect_closed().await.is_empty());

    let mut raw = TcpStream::connect(server.addr).await.unwrap();
    raw.write_all(&[0, 0, 0, 7, 1, b'P', b'X', b'C', b'H', 0, 1])
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(common::WAIT, raw.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    match pixchat::protocol::binary::decode_server(&out[4..]) {
        Ok(ServerMsg::Reply(Reply::Error(e))) => assert_eq!(e.code.as_str(), "server_full"),
        other => panic!("{other:?}"),
    }

    // A slot frees when a client leaves.
    assert_eq!(a.cmd("QUIT").await, "OK bye");
    drop(a);
    let mut later = None;
    for _ in 0..50 {
        let mut c = TextClient::connect(server.addr).await;
        if c.cmd("PING").await == "OK PONG" {
            later = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(later.is_some(), "the freed slot was never reusable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_disturb_other_clients() {
    let server = start_default().await;
    let mut good = TextClient::joined(server.addr, "good").await;
    assert_eq!(good.cmd("SET 2 2 2").await, "OK 1");
    let mut junk = Vec::new();
    for seed in 0..40u64 {
        let addr = server.addr;
        junk.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut bytes = vec![0u8; rng.random_range(1..20_000)];
            rng.fill(&mut bytes[..]);
            // Half the connections pick binary mode, half text.
            bytes[0] = if seed % 2 == 0 { 0 } else { b'J' };
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
            let mut sink = Vec::new();
            // The server answers or closes; either way it must end.
            tokio::time::timeout(common::WAIT, s.read_to_end(&mut sink))
                .await
                .expect("server ends a junk connection")
                .ok();
        }));
    }
    for j in junk {
        j.await.unwrap();
    }
    // Nobody joined or drew by accident, and the good client still works.
    assert_eq!(good.cmd("WHO").await, "OK 1 good");
    assert_eq!(good.cmd("SET 3 3 3").await, "OK 2");
    assert_eq!(parse_pixel(&good.until("PIXEL 2").await).1, 3);
    let (seq, rows) = TextClient::connect(server.addr).await.canvas().await;
    assert_eq!(seq, 2);
    assert_eq!(rows.iter().flatten().filter(|&&p| p != 0).count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_and_others_get_everything() {
    const PIXELS: u64 = 60_000;
    let server = start_server(pixchat::Config {
        broadcast: pixchat::server::broadcast::BroadcastLimits {
            max_events: 2_000,
            max_bytes: 1 << 20,
        },
        ..Default::default()
    })
    .await;
    let mut normal = TextClient::joined(server.addr, "normal").await;
    // The slow client joins and then never reads a byte.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let slow = socket.connect(server.addr).await.unwrap();
    let (slow_rd, mut slow_wr) = slow.into_split();
    slow_wr.write_all(b"JOIN sloth\n").await.unwrap();
    normal.until("JOINED sloth").await;
    let painter = TextClient::joined(server.addr, "painter").await;
    let TextClient { reader, mut writer } = painter;
    let paint = tokio::spawn(async move {
        let mut lines = String::new();
        for i in 0..PIXELS {
            lines.push_str(&format!("SET {} {} {}\n", i % 64, (i / 64) % 64, i % 16));
        }
        writer.write_all(lines.as_bytes()).await.unwrap();
        writer
    });
    let drain_painter = tokio::spawn(async move {
        let mut reader = reader;
        let mut sink = vec![0u8; 1 << 16];
        let mut total = 0usize;
        // Replies and events for the painter: keep reading so it never lags.
        while total < 1 << 30 {
            match tokio::time::timeout(Duration::from_secs(30), reader.read(&mut sink)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => total += n,
            }
        }
    });

    // The normal client sees every pixel, in order, and the slow one leave.
    let mut next = 1;
    let mut saw_left = false;
    while next <= PIXELS {
        let l = match normal.try_line_within(Duration::from_secs(3)).await {
            Some(l) => l,
            None => panic!("normal client stalled at {next}"),
        };
        if l.starts_with("PIXEL") {
            assert_eq!(parse_pixel(&l).0, next);
            next += 1;
        } else if l == "LEFT sloth" {
            saw_left = true;
        }
    }
    if !saw_left {
        normal.until("LEFT sloth").await;
    }
    assert_eq!(normal.cmd("WHO").await, "OK 2 normal painter");

    // What the slow client finally reads ends early, without all pixels.
    let mut rest = Vec::new();
    let mut slow_rd = slow_rd;
    tokio::time::timeout(common::WAIT, slow_rd.read_to_end(&mut rest))
        .await
        .expect("the slow client was closed")
        .ok();
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.lines().filter(|l| l.starts_with("PIXEL")).count() < PIXELS as usize,
        "the slow client got everything: it was never dropped"
    );
    drop(paint.await.unwrap());
    drain_painter.abort();
}
