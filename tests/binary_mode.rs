//! Binary mode over real TCP: hello, join with snapshot or resume, the same
//! vocabulary as text mode, and clean errors for broken input.

mod common;

use std::sync::Arc;

use common::{BinClient, TextClient, start_default};
use pixchat::protocol::{Command, ErrorCode, Event, PROTOCOL_VERSION, Reply, Resume, ServerMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn welcome(r: Reply) -> pixchat::protocol::Welcome {
    match r {
        Reply::Welcome(w) => w,
        other => panic!("expected WELCOME, got {other:?}"),
    }
}

fn error_code(r: Reply) -> ErrorCode {
    match r {
        Reply::Error(e) => e.code,
        other => panic!("expected ERROR, got {other:?}"),
    }
}

async fn join(c: &mut BinClient, name: &str) -> pixchat::protocol::Welcome {
    c.send(Command::Join {
        name: name.into(),
        resume: None,
        quiet: false,
    })
    .await;
    let w = welcome(c.reply().await);
    match c.next().await {
        ServerMsg::Reply(Reply::Canvas(s)) => assert_eq!(s.seq, w.seq),
        other => panic!("expected SNAPSHOT after WELCOME, got {other:?}"),
    }
    w
}

#[tokio::test]
async fn hello_join_welcome_snapshot_and_events() {
    let server = start_default().await;
    let mut text = TextClient::joined(server.addr, "texter").await;
    assert_eq!(text.cmd("SET 3 4 5").await, "OK 1");

    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut c = BinClient {
        framed: tokio_util::codec::Framed::new(stream, Default::default()),
    };
    let hello = match c
        .cmd(Command::Hello {
            version: PROTOCOL_VERSION,
        })
        .await
    {
        Reply::Hello(h) => h,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (hello.version, hello.width, hello.height, hello.seq),
        (1, 64, 64, 1)
    );

    c.send(Command::Join {
        name: "binny".into(),
        resume: None,
        quiet: false,
    })
    .await;
    let w = welcome(c.reply().await);
    assert_eq!(w.name, "binny");
    assert_eq!(w.canvas_id, hello.canvas_id);
    assert_eq!((w.width, w.height, w.seq, w.resumed), (64, 64, 1, false));
    assert_eq!(w.users, vec!["binny".to_string(), "texter".to_string()]);
    assert_eq!(w.palette.len(), 16);
    assert_eq!(w.palette[5], ([0xE5, 0, 0], "red".to_string()));
    let snap = match c.next().await {
        ServerMsg::Reply(Reply::Canvas(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(snap.pixels[4 * 64 + 3], 5);
    assert_eq!(snap.pixels.iter().filter(|&&p| p != 0).count(), 1);
    text.until("JOINED")
        .await
        .eq("JOINED binny")
        .then_some(())
        .expect("JOINED binny");

    // Text and binary clients share one world.
    assert_eq!(
        c.cmd(Command::Set {
            x: 63,
            y: 63,
            color: 15
        })
        .await,
        Reply::Set { seq: 2 }
    );
    assert_eq!(
        c.event().await,
        Event::Pixel(pixchat::protocol::Pixel {
            seq: 2,
            x: 63,
            y: 63,
            color: 15,
            name: Arc::from("binny")
        })
    );
    assert_eq!(text.line().await, "PIXEL 2 63 63 15 binny");
    assert_eq!(text.cmd("SAY hi bin").await, "OK");
    assert_eq!(
        c.event().await,
        Event::Msg {
            from: Arc::from("texter"),
            text: Arc::from("hi bin")
        }
    );
    assert_eq!(
        c.cmd(Command::Tell {
            to: "TEXTER".into(),
            text: "hi txt".into()
        })
        .await,
        Reply::Ok
    );
    text.until("DM")
        .await
        .eq("DM binny hi txt")
        .then_some(())
        .expect("DM text");
    assert_eq!(
        c.cmd(Command::Who).await,
        Reply::Who {
            online: 2,
            users: vec!["binny".into(), "texter".into()]
        }
    );
    assert_eq!(
        c.cmd(Command::Ping { token: "42".into() }).await,
        Reply::Pong { token: "42".into() }
    );
    assert!(matches!(c.cmd(Command::Help).await, Reply::Help { .. }));
    assert_eq!(c.cmd(Command::Quit).await, Reply::Bye);
    assert!(c.try_next().await.is_none(), "server closes after QUIT");
    text.expect("LEFT binny").await;
}

#[tokio::test]
async fn join_with_resume_replays_only_what_was_missed() {
    let server = start_default().await;
    let mut painter = TextClient::joined(server.addr, "painter").await;
    for i in 0..5 {
        painter.cmd(&format!("SET {i} 0 {i}")).await;
    }
    let mut c = BinClient::connect(server.addr).await;
    let w = join(&mut c, "roamer").await;
    assert_eq!(w.seq, 5);
    drop(c);
    painter.until("LEFT roamer").await;
    for i in 5..8 {
        painter.cmd(&format!("SET {i} 0 {i}")).await;
    }

    let mut c = BinClient::connect(server.addr).await;
    c.send(Command::Join {
        name: "roamer".into(),
        resume: Some(Resume {
            canvas_id: w.canvas_id,
            seq: 5,
        }),
        quiet: false,
    })
    .await;
    let w2 = welcome(c.reply().await);
    assert!(w2.resumed);
    assert_eq!(w2.seq, 8);
    for seq in 6..=8 {
        match c.event().await {
            Event::Pixel(p) => assert_eq!((p.seq, p.x), (seq, seq as u16 - 1)),
            other => panic!("{other:?}"),
        }
    }
    // Then live events.
    painter.cmd("SET 9 9 9").await;
    match c.event().await {
        Event::Pixel(p) => assert_eq!(p.seq, 9),
        other => panic!("{other:?}"),
    }

    // Another canvas id never resumes: a snapshot comes instead.
    let mut d = BinClient::connect(server.addr).await;
    d.send(Command::Join {
        name: "stranger".into(),
        resume: Some(Resume {
            canvas_id: w.canvas_id ^ 1,
            seq: 5,
        }),
        quiet: false,
    })
    .await;
    assert!(!welcome(d.reply().await).resumed);
    assert!(matches!(d.next().await, ServerMsg::Reply(Reply::Canvas(_))));
}

#[tokio::test]
async fn sync_and_errors_in_binary_keep_the_connection() {
    let server = start_default().await;
    let mut c = BinClient::connect(server.addr).await;
    assert_eq!(
        error_code(
            c.cmd(Command::Set {
                x: 1,
                y: 1,
                color: 1
            })
            .await
        ),
        ErrorCode::NotJoined
    );
    join(&mut c, "b").await;
    assert_eq!(
        error_code(
            c.cmd(Command::Set {
                x: 64,
                y: 1,
                color: 1
            })
            .await
        ),
        ErrorCode::OutOfRange
    );
    assert_eq!(
        error_code(
            c.cmd(Command::Set {
                x: 1,
                y: 1,
                color: 16
            })
            .await
        ),
        ErrorCode::OutOfRange
    );
    assert_eq!(
        error_code(
            c.cmd(Command::Say {
                text: String::new()
            })
            .await
        ),
        ErrorCode::BadArgs
    );
    assert_eq!(
        error_code(c.cmd(Command::Sync { seq: 3 }).await),
        ErrorCode::BadSeq
    );
    assert_eq!(
        error_code(
            c.cmd(Command::Join {
                name: "b2".into(),
                resume: None,
                quiet: false
            })
            .await
        ),
        ErrorCode::AlreadyJoined
    );
    assert_eq!(
        error_code(
            c.cmd(Command::Hello {
                version: PROTOCOL_VERSION
            })
            .await
        ),
        ErrorCode::BadArgs
    );
    // Hand-made frames: an unknown type and a malformed SET.
    let raw = c.framed.get_mut();
    raw.write_all(&[0, 0, 0, 1, 0x3E]).await.unwrap();
    raw.write_all(&[0, 0, 0, 3, 0x05, 0, 1]).await.unwrap();
    assert_eq!(error_code(c.reply().await), ErrorCode::UnknownType);
    assert_eq!(error_code(c.reply().await), ErrorCode::BadArgs);
    assert_eq!(
        c.cmd(Command::Set {
            x: 1,
            y: 2,
            color: 3
        })
        .await,
        Reply::Set { seq: 1 }
    );
    assert!(matches!(c.event().await, Event::Pixel(_)));
    c.send(Command::Sync { seq: 0 }).await;
    assert!(matches!(c.next().await, ServerMsg::Event(Event::Pixel(p)) if p.seq == 1));
    assert_eq!(c.reply().await, Reply::Sync { seq: 1 });
}

#[tokio::test]
async fn ping_tokens_follow_the_text_mode_rules() {
    let server = start_default().await;
    let mut c = BinClient::connect(server.addr).await;
    for token in [String::new(), "t1".into(), "x".repeat(64)] {
        assert_eq!(
            c.cmd(Command::Ping {
                token: token.clone()
            })
            .await,
            Reply::Pong { token }
        );
    }
    for token in [
        "x".repeat(65),
        "x".repeat(255),
        "a b".into(),
        "a\0b".into(),
        "a\tb".into(),
    ] {
        assert_eq!(
            error_code(c.cmd(Command::Ping { token }).await),
            ErrorCode::BadArgs
        );
    }
    // The same tokens in text mode.
    let mut t = TextClient::connect(server.addr).await;
    assert_eq!(
        t.cmd(&format!("PING {}", "x".repeat(64))).await,
        format!("OK PONG {}", "x".repeat(64))
    );
    for token in ["x".repeat(65), "x".repeat(255), "a b".into(), "a\tb".into()] {
        let reply = t.cmd(&format!("PING {token}")).await;
        assert!(reply.starts_with("ERR bad_args "), "{token:?}: {reply}");
    }
    t.send_raw(b"PING a\0b\n").await;
    assert!(t.reply().await.starts_with("ERR bad_args "));
    // Refused pings leave both connections usable.
    assert_eq!(
        c.cmd(Command::Who).await,
        Reply::Who {
            online: 0,
            users: vec![]
        }
    );
    assert_eq!(t.cmd("PING ok").await, "OK PONG ok");
}

/// Reads everything until the server closes; fails if it stays open.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(common::WAIT, s.read_to_end(&mut out))
        .await
        .expect("server closes the connection")
        .ok();
    out
}

fn frame_error(bytes: &[u8]) -> String {
    match pixchat::protocol::binary::decode_server(&bytes[4..]) {
        Ok(ServerMsg::Reply(Reply::Error(e))) => e.code.to_string(),
        other => panic!("expected an ERROR frame, got {other:?}"),
    }
}

#[tokio::test]
async fn hello_required_and_version_mismatch_close() {
    let server = start_default().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 1, 0x08]).await.unwrap(); // WHO before HELLO
    assert_eq!(frame_error(&read_to_close(&mut s).await), "hello_required");

    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 7, 0x01, b'P', b'X', b'C', b'H', 0, 99])
        .await
        .unwrap();
    assert_eq!(
        frame_error(&read_to_close(&mut s).await),
        "unsupported_version"
    );
}

#[tokio::test]
async fn oversized_and_broken_frames_close_only_that_client() {
    let server = start_default().await;
    let mut watcher = TextClient::joined(server.addr, "watcher").await;

    // A length prefix of 2 GiB: an error and a close, no allocation.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&[0x00, 0x00, 0x00, 0x07]).await.unwrap();
    s.write_all(&[0x01, b'P', b'X', b'C', b'H', 0, 1])
        .await
        .unwrap();
    s.write_all(&[0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3])
        .await
        .unwrap();
    let out = read_to_close(&mut s).await;
    // HELLO_OK, then the error.
    let first_len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
    assert_eq!(frame_error(&out[4 + first_len..]), "frame_too_large");

    // Just over the 4096-byte limit.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&[0, 0, 0x10, 0x01]).await.unwrap();
    assert_eq!(frame_error(&read_to_close(&mut s).await), "frame_too_large");

    // A zero-length frame has no type byte.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 0]).await.unwrap();
    assert_eq!(frame_error(&read_to_close(&mut s).await), "bad_frame");

    // A frame cut short by the client closing its side.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 9, 0x07, 0]).await.unwrap();
    s.shutdown().await.unwrap();
    let out = read_to_close(&mut s).await;
    assert!(out.is_empty(), "{out:?}");

    // Everyone else is undisturbed.
    assert_eq!(watcher.cmd("SET 1 1 1").await, "OK 1");
    assert_eq!(watcher.line().await, "PIXEL 1 1 1 1 watcher");
}

#[tokio::test]
async fn a_quiet_binary_join_is_not_announced() {
    let server = start_default().await;
    let mut watcher = BinClient::connect(server.addr).await;
    join(&mut watcher, "watcher").await;
    let mut bot = BinClient::connect(server.addr).await;
    bot.send(Command::Join {
        name: "bot".into(),
        resume: None,
        quiet: true,
    })
    .await;
    let w = welcome(bot.reply().await);
    assert_eq!(w.users, ["bot*", "watcher"]);
    assert!(matches!(
        bot.next().await,
        ServerMsg::Reply(Reply::Canvas(_))
    ));
    match bot
        .cmd(Command::Set {
            x: 0,
            y: 0,
            color: 3,
        })
        .await
    {
        Reply::Set { seq } => assert_eq!(seq, 1),
        other => panic!("{other:?}"),
    }
    drop(bot);
    // The watcher's next event is the pixel: no JOINED before it; and once
    // the bot is gone, WHO lists the watcher alone with no LEFT on the way.
    match watcher.event().await {
        Event::Pixel(p) => assert_eq!(&*p.name, "bot"),
        other => panic!("{other:?}"),
    }
    let mut alone = false;
    for _ in 0..50 {
        match watcher.cmd(Command::Who).await {
            Reply::Who { users, .. } if users == ["watcher"] => {
                alone = true;
                break;
            }
            Reply::Who { .. } => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            other => panic!("{other:?}"),
        }
    }
    assert!(alone);
}
