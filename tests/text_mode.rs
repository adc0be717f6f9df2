//! Text mode over real TCP: every command, event and text-mode error code.

mod common;

use common::{TextClient, parse_pixel, start_default, start_server};

#[tokio::test]
async fn join_notices_go_both_ways() {
    let server = start_default().await;
    let mut alice = TextClient::joined(server.addr, "alice").await;
    let mut bob = TextClient::connect(server.addr).await;
    assert_eq!(bob.cmd("join bob").await, "OK bob 64 64 0");
    alice.expect("JOINED bob").await;
    // The newcomer learns who is there from WHO, not from its own JOINED.
    assert_eq!(bob.cmd("WHO").await, "OK 2 alice bob");
    bob.send("QUIT").await;
    bob.expect("OK bye").await;
    assert!(bob.expect_closed().await.is_empty());
    alice.expect("LEFT bob").await;

    // A dropped connection (no QUIT) is a leave too.
    let carol = TextClient::joined(server.addr, "carol").await;
    alice.expect("JOINED carol").await;
    drop(carol);
    alice.expect("LEFT carol").await;
    assert_eq!(alice.cmd("WHO").await, "OK 1 alice");
}

#[tokio::test]
async fn a_quiet_join_is_neither_announced_nor_its_leave() {
    let server = start_default().await;
    let mut alice = TextClient::joined(server.addr, "alice").await;
    let mut cron = TextClient::connect(server.addr).await;
    assert_eq!(cron.cmd("JOIN cron quiet").await, "OK cron 64 64 0");
    // Listed, marked, and its name is taken.
    assert_eq!(cron.cmd("WHO").await, "OK 2 alice cron*");
    let mut other = TextClient::connect(server.addr).await;
    assert!(other.cmd("JOIN Cron").await.starts_with("ERR name_taken "));
    // It places pixels and chats like anyone, and gets events.
    assert_eq!(cron.cmd("SET 1 1 red").await, "OK 1");
    assert_eq!(cron.cmd("SAY backup done").await, "OK");
    alice.send("SAY thanks").await;
    cron.until("MSG alice thanks").await;
    cron.send("QUIT").await;
    cron.until("OK bye").await;
    assert!(cron.expect_closed().await.is_empty());
    // Alice saw the pixel and the chat, and no JOINED or LEFT for cron.
    alice.send("PING end").await;
    let mut seen = Vec::new();
    loop {
        let line = alice.line().await;
        if line == "OK PONG end" {
            break;
        }
        seen.push(line);
    }
    assert_eq!(
        seen,
        [
            "PIXEL 1 1 1 5 cron",
            "MSG cron backup done",
            "OK",
            "MSG alice thanks"
        ],
    );
    assert_eq!(alice.cmd("WHO").await, "OK 1 alice");
    // A second word that is not `quiet` is refused.
    assert!(
        other
            .cmd("JOIN bob loud")
            .await
            .starts_with("ERR bad_args ")
    );
}

#[tokio::test]
async fn chat_reaches_everyone_including_the_sender() {
    let server = start_default().await;
    let mut a = TextClient::joined(server.addr, "a").await;
    let mut b = TextClient::joined(server.addr, "b").await;
    a.expect("JOINED b").await;
    assert_eq!(a.cmd("SAY hello,  wörld!").await, "OK");
    a.expect("MSG a hello,  wörld!").await;
    b.expect("MSG a hello,  wörld!").await;
}

#[tokio::test]
async fn dm_reaches_only_its_target() {
    let server = start_default().await;
    let mut a = TextClient::joined(server.addr, "a").await;
    let mut b = TextClient::joined(server.addr, "Bee").await;
    let mut c = TextClient::joined(server.addr, "c").await;
    a.expect("JOINED Bee").await;
    a.expect("JOINED c").await;
    b.expect("JOINED c").await;
    assert_eq!(a.cmd("TELL bee psst").await, "OK");
    b.expect("DM a psst").await;
    // c must see nothing between its own two markers.
    assert_eq!(c.cmd("SAY marker").await, "OK");
    c.expect("MSG c marker").await;
    a.expect("MSG c marker").await;
    b.expect("MSG c marker").await;
    assert_eq!(
        a.cmd("TELL nobody hi").await,
        "ERR no_such_user nobody called nobody is online"
    );
}

#[tokio::test]
async fn pixels_reach_every_client_in_order() {
    let server = start_default().await;
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(TextClient::joined(server.addr, &format!("c{i}")).await);
    }
    let mut painter = TextClient::joined(server.addr, "painter").await;
    for i in 0..200u64 {
        painter
            .send(&format!("SET {} {} {}", i % 64, i / 64, i % 16))
            .await;
    }
    for (n, c) in clients
        .iter_mut()
        .chain(std::iter::once(&mut painter))
        .enumerate()
    {
        for i in 0..200u64 {
            let line = c.until("PIXEL").await;
            let (seq, x, y, color, name) = parse_pixel(&line);
            assert_eq!(
                (seq, x as u64, y as u64, u64::from(color), name.as_str()),
                (i + 1, i % 64, i / 64, i % 16, "painter"),
                "client {n}"
            );
        }
    }
}

#[tokio::test]
async fn set_accepts_colour_names_and_canvas_shows_them() {
    let server = start_default().await;
    let mut a = TextClient::joined(server.addr, "a").await;
    assert_eq!(a.cmd("SET 3 4 Red").await, "OK 1");
    assert_eq!(a.cmd("set 0 0 15").await, "OK 2");
    assert_eq!(a.cmd("SET 63 63 purple").await, "OK 3");
    let mut viewer = TextClient::connect(server.addr).await;
    let (seq, rows) = viewer.canvas().await;
    assert_eq!(seq, 3);
    assert_eq!(rows.len(), 64);
    assert_eq!(rows[4][3], 5);
    assert_eq!(rows[0][0], 15);
    assert_eq!(rows[63][63], 15);
    assert_eq!(rows.iter().flatten().filter(|&&c| c != 0).count(), 3);
}

#[tokio::test]
async fn sync_replays_what_a_client_missed() {
    let server = start_default().await;
    let mut painter = TextClient::joined(server.addr, "painter").await;
    for i in 0..10 {
        assert_eq!(
            painter.cmd(&format!("SET {i} 0 {i}")).await,
            format!("OK {}", i + 1)
        );
    }
    // A reconnecting client that had applied up to seq 6.
    let mut back = TextClient::joined(server.addr, "back").await;
    back.send("SYNC 6").await;
    for seq in 7..=10u64 {
        let (s, x, _, c, name) = parse_pixel(&back.line().await);
        assert_eq!(
            (s, x as u64, u64::from(c), name.as_str()),
            (seq, seq - 1, seq - 1, "painter")
        );
    }
    back.expect("OK 10").await;
    // Live events continue after the replay.
    assert_eq!(painter.cmd("SET 0 1 2").await, "OK 11");
    assert_eq!(parse_pixel(&back.line().await).0, 11);
    // Up to date and from the future.
    assert_eq!(back.cmd("SYNC 11").await, "OK 11");
    assert!(back.cmd("SYNC 12").await.starts_with("ERR bad_seq "));
    // Works before JOIN too.
    let mut reader = TextClient::connect(server.addr).await;
    reader.send("SYNC 10").await;
    assert_eq!(parse_pixel(&reader.line().await).0, 11);
    reader.expect("OK 11").await;
}

#[tokio::test]
async fn sync_from_before_the_history_is_too_old() {
    let server = start_server(pixchat::Config {
        history: 10,
        ..Default::default()
    })
    .await;
    let mut a = TextClient::joined(server.addr, "a").await;
    for i in 0..3000u64 {
        a.send(&format!("SET {} {} 1", i % 64, (i / 64) % 64)).await;
    }
    assert_eq!(a.reply().await, "OK 1");
    let last = loop {
        let l = a.reply().await;
        if l == "OK 3000" {
            break l;
        }
    };
    assert_eq!(last, "OK 3000");
    let err = a.cmd("SYNC 5").await;
    assert!(err.starts_with("ERR too_old "), "{err}");
    // Recent enough still works.
    a.send("SYNC 2995").await;
    for seq in 2996..=3000 {
        assert_eq!(parse_pixel(&a.until("PIXEL").await).0, seq);
    }
    assert_eq!(a.reply().await, "OK 3000");
}

#[tokio::test]
async fn small_commands() {
    let server = start_default().await;
    let mut c = TextClient::connect(server.addr).await;
    assert_eq!(c.cmd("PING").await, "OK PONG");
    assert_eq!(c.cmd("ping abc-123").await, "OK PONG abc-123");
    let help = c.cmd("HELP").await;
    assert!(help.starts_with("OK commands: JOIN <name>"), "{help}");
    for word in [
        "SAY", "TELL", "SET", "CANVAS", "SYNC", "WHO", "PING", "QUIT",
    ] {
        assert!(help.contains(word), "HELP lacks {word}");
    }
    assert_eq!(c.cmd("WHO").await, "OK 0");
    // CRLF line endings are fine.
    c.send_raw(b"PING crlf\r\n").await;
    assert_eq!(c.reply().await, "OK PONG crlf");
}

/// Sends `line` and checks the reply starts with `ERR <code> `.
async fn expect_err(c: &mut TextClient, line: &str, code: &str) {
    let reply = c.cmd(line).await;
    assert!(
        reply.starts_with(&format!("ERR {code} ")) && reply.len() > code.len() + 5,
        "{line:?} answered {reply:?}, wanted {code} with a message"
    );
}

#[tokio::test]
async fn every_text_error_code_and_the_connection_stays_usable() {
    let server = start_default().await;
    let mut other = TextClient::joined(server.addr, "Taken").await;
    let mut c = TextClient::connect(server.addr).await;
    expect_err(&mut c, "SAY hi", "not_joined").await;
    expect_err(&mut c, "TELL taken hi", "not_joined").await;
    expect_err(&mut c, "SET 1 1 1", "not_joined").await;
    expect_err(&mut c, "JOIN taken", "name_taken").await;
    expect_err(&mut c, "JOIN TAKEN", "name_taken").await;
    expect_err(&mut c, "JOIN bad/name", "bad_name").await;
    expect_err(&mut c, &format!("JOIN {}", "x".repeat(25)), "bad_name").await;
    expect_err(&mut c, "JOIN", "bad_args").await;
    expect_err(&mut c, "JOIN two words", "bad_args").await;
    assert_eq!(c.cmd("JOIN me").await, "OK me 64 64 0");
    expect_err(&mut c, "JOIN again", "already_joined").await;
    expect_err(&mut c, "TELL ghost hi", "no_such_user").await;
    expect_err(&mut c, "SET 64 0 1", "out_of_range").await;
    expect_err(&mut c, "SET 0 64 1", "out_of_range").await;
    expect_err(&mut c, "SET -1 0 1", "out_of_range").await;
    expect_err(&mut c, "SET 0 0 16", "out_of_range").await;
    expect_err(&mut c, "SET 99999999999999999999 0 1", "out_of_range").await;
    expect_err(&mut c, "SET 1 2", "bad_args").await;
    expect_err(&mut c, "SET 1 2 3 4", "bad_args").await;
    expect_err(&mut c, "SET one 2 3", "bad_args").await;
    expect_err(&mut c, "SET 1 2 mauve", "bad_args").await;
    expect_err(&mut c, "SAY", "bad_args").await;
    expect_err(&mut c, &format!("SAY {}", "a".repeat(513)), "bad_args").await;
    expect_err(&mut c, "SAY tab\there", "bad_args").await;
    expect_err(&mut c, "TELL taken", "bad_args").await;
    expect_err(&mut c, "SYNC", "bad_args").await;
    expect_err(&mut c, "SYNC -3", "bad_args").await;
    expect_err(&mut c, "SYNC 1", "bad_seq").await;
    expect_err(&mut c, "CANVAS now", "bad_args").await;
    expect_err(&mut c, "PING two words", "bad_args").await;
    expect_err(&mut c, "DANCE", "unknown_command").await;
    expect_err(&mut c, "", "empty_line").await;
    c.send_raw(b"SAY \xc3\x28\n").await;
    assert!(c.reply().await.starts_with("ERR bad_utf8 "));
    c.send_raw(&[b'X'; 5000]).await;
    c.send_raw(b"\n").await;
    assert!(c.reply().await.starts_with("ERR line_too_long "));
    // After all that, the connection works and nothing leaked to others.
    assert_eq!(c.cmd("SET 1 1 1").await, "OK 1");
    assert_eq!(c.cmd("WHO").await, "OK 2 me Taken");
    other.expect("JOINED me").await;
    assert_eq!(parse_pixel(&other.line().await), (1, 1, 1, 1, "me".into()));
}

#[tokio::test]
async fn extra_arguments_are_bad_args_for_every_command() {
    let server = start_default().await;
    let mut c = TextClient::joined(server.addr, "me").await;
    for line in [
        "HELP me",
        "QUIT now",
        "WHO after extra",
        "CANVAS extra",
        "JOIN a b",
        "SYNC 0 1",
        "SET 1 2 3 4",
        "WHOSE 1 2 3 4",
        "ROLLBACK a 1 2",
        "FILL 1 2 3 4 5 6",
        "PING a b",
        "KICK a b",
        "BAN a b",
    ] {
        expect_err(&mut c, line, "bad_args").await;
    }
    // The refused QUIT did not close the connection.
    assert_eq!(c.cmd("PING still-here").await, "OK PONG still-here");
}

#[tokio::test]
async fn unknown_command_names_the_word() {
    let server = start_default().await;
    let mut c = TextClient::connect(server.addr).await;
    assert_eq!(c.cmd("fly me").await, "ERR unknown_command fly");
}

/// Reads exactly `n` bytes, failing on a timeout or the end of stream.
async fn read_exactly(c: &mut TextClient, n: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = vec![0u8; n];
    tokio::time::timeout(common::WAIT, c.reader.read_exact(&mut got))
        .await
        .expect("the bytes within the timeout")
        .expect("read");
    got
}

#[tokio::test]
async fn telnet_interrupt_is_answered_and_the_session_goes_on() {
    let server = start_default().await;
    let mut c = TextClient::connect(server.addr).await;
    // What telnet sends for Ctrl-C: IAC IP, IAC DO TIMING-MARK.
    c.send_raw(b"PING a\r\n").await;
    c.send_raw(&[0xFF, 0xF4, 0xFF, 0xFD, 0x06]).await;
    c.send_raw(b"PING b\r\n").await;
    let want = b"OK PONG a\n\xff\xfb\x06OK PONG b\n";
    assert_eq!(read_exactly(&mut c, want.len()).await, want);
    // Other options are refused, refusals are not answered, a subnegotiation
    // is skipped, and IAC IP drops the half-typed line.
    c.send_raw(b"\xff\xfd\x01\xff\xfc\x01\xff\xfa\x18\x00xterm\xff\xf0SAY half\xff\xf4PING c\n")
        .await;
    let want = b"\xff\xfc\x01OK PONG c\n";
    assert_eq!(read_exactly(&mut c, want.len()).await, want);
}

#[tokio::test]
async fn errors_escape_control_characters() {
    let server = start_default().await;
    let mut c = TextClient::connect(server.addr).await;
    // Ctrl-D, Ctrl-L and a DEL, each alone on a line.
    c.send_raw(b"\x04\n\x0c\r\nA\x7fB\n").await;
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        tokio::time::timeout(
            common::WAIT,
            tokio::io::AsyncBufReadExt::read_line(&mut c.reader, &mut line),
        )
        .await
        .expect("a reply")
        .expect("read");
        assert!(line.ends_with('\n'));
        assert!(
            line.bytes()
                .all(|b| b == b'\n' || (0x20..0x7f).contains(&b)),
            "raw control bytes in {line:?}"
        );
        lines.push(line.trim_end().to_string());
    }
    assert_eq!(
        lines,
        [
            "ERR unknown_command \\x04",
            "ERR unknown_command \\x0c",
            "ERR unknown_command A\\x7fB"
        ]
    );
}
