//! Binary codec tests: protocol.md's hex vectors byte for byte, round trips,
//! and property tests that arbitrary input never panics the decoders.

use super::*;
use crate::protocol::{PALETTE, Resume};
use proptest::prelude::*;

/// protocol.md is the contract; its vectors are read from the file itself so
/// the document and the code cannot drift apart.
const PROTOCOL_MD: &str = include_str!("../../../protocol.md");

fn doc_vectors() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in PROTOCOL_MD.lines() {
        if line.trim_start().starts_with("```") {
            inside = line.trim() == "```vectors";
            continue;
        }
        if !inside || line.trim().is_empty() {
            continue;
        }
        let (name, hex) = line.split_once(' ').expect("vector line: name then hex");
        let bytes = hex
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
            .collect();
        out.push((name.to_string(), bytes));
    }
    out
}

fn vector(name: &str) -> Vec<u8> {
    doc_vectors()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("protocol.md has no vector named {name}"))
        .1
}

fn name(s: &str) -> Arc<str> {
    Arc::from(s)
}

fn client_vectors() -> Vec<(&'static str, Command)> {
    vec![
        ("hello", Command::Hello { version: 1 }),
        (
            "join",
            Command::Join {
                name: "bob".into(),
                resume: None,
                quiet: false,
            },
        ),
        (
            "join_quiet",
            Command::Join {
                name: "bob".into(),
                resume: None,
                quiet: true,
            },
        ),
        (
            "join_resume",
            Command::Join {
                name: "bob".into(),
                resume: Some(Resume {
                    canvas_id: 0x0102030405060708,
                    seq: 42,
                }),
                quiet: false,
            },
        ),
        ("say", Command::Say { text: "hi".into() }),
        (
            "tell",
            Command::Tell {
                to: "al".into(),
                text: "yo".into(),
            },
        ),
        (
            "set",
            Command::Set {
                x: 3,
                y: 4,
                color: 5,
            },
        ),
        ("canvas", Command::Canvas),
        ("sync", Command::Sync { seq: 7 }),
        ("who", Command::Who),
        ("who_after", Command::WhoAfter { after: "al".into() }),
        ("ping", Command::Ping { token: "t1".into() }),
        ("help", Command::Help),
        ("quit", Command::Quit),
        (
            "auth",
            Command::Auth {
                password: "pw".into(),
            },
        ),
        ("whose", Command::Whose { x: 3, y: 4 }),
        ("whose_n", Command::WhoseLast { x: 3, y: 4, n: 2 }),
        ("kick", Command::Kick { name: "al".into() }),
        ("ban", Command::Ban { name: "al".into() }),
        ("unban", Command::Unban { name: "al".into() }),
        (
            "rollback",
            Command::Rollback {
                name: "al".into(),
                minutes: 60,
            },
        ),
        (
            "fill",
            Command::Fill {
                x1: 1,
                y1: 2,
                x2: 3,
                y2: 4,
                color: 5,
            },
        ),
        ("ban_addr", Command::BanAddress { name: "al".into() }),
        ("bans", Command::Bans { after: None }),
        (
            "bans_after",
            Command::Bans {
                after: Some("al".into()),
            },
        ),
    ]
}

fn server_vectors() -> Vec<(&'static str, ServerMsg)> {
    use ServerMsg::{Event as E, Reply as R};
    vec![
        (
            "pixel",
            E(Event::Pixel(Pixel {
                seq: 7,
                x: 3,
                y: 4,
                color: 5,
                name: name("bob"),
            })),
        ),
        ("joined", E(Event::Joined { name: name("al") })),
        ("left", E(Event::Left { name: name("al") })),
        (
            "msg",
            E(Event::Msg {
                from: name("al"),
                text: name("hi"),
            }),
        ),
        (
            "dm",
            E(Event::Dm {
                from: name("al"),
                text: name("hi"),
            }),
        ),
        (
            "bye",
            E(Event::Bye {
                code: ErrorCode::ShuttingDown,
                text: "bye".into(),
            }),
        ),
        (
            "history",
            E(Event::History {
                unix_ms: 1_700_000_000_000,
                from: name("al"),
                text: name("hi"),
            }),
        ),
        ("keepalive", E(Event::Keepalive)),
        (
            "presence",
            E(Event::Presence(crate::protocol::Presence {
                online: 1500,
                joined: 3,
                left: 1,
                joined_names: vec![name("al"), name("bob")],
                left_names: vec![name("yo")],
            })),
        ),
        ("ok", R(Reply::Ok)),
        (
            "hello_ok",
            R(Reply::Hello(HelloInfo {
                version: 1,
                canvas_id: 0x0102030405060708,
                width: 64,
                height: 64,
                seq: 9,
            })),
        ),
        (
            "welcome",
            R(Reply::Welcome(Welcome {
                name: "bob".into(),
                canvas_id: 0x0102030405060708,
                width: 2,
                height: 2,
                seq: 9,
                palette: vec![
                    ([0xFF, 0xFF, 0xFF], "white".into()),
                    ([0xE5, 0, 0], "red".into()),
                ],
                online: 2,
                users: vec!["al".into(), "bob".into()],
                resumed: false,
            })),
        ),
        ("set_ok", R(Reply::Set { seq: 9 })),
        (
            "snapshot",
            R(Reply::Canvas(Arc::new(Snapshot {
                canvas_id: 0x0102030405060708,
                seq: 9,
                width: 3,
                height: 1,
                pixels: vec![1, 15, 5],
            }))),
        ),
        ("sync_ok", R(Reply::Sync { seq: 9 })),
        (
            "who_ok",
            R(Reply::Who {
                online: 1,
                users: vec!["al".into()],
            }),
        ),
        ("pong", R(Reply::Pong { token: "t1".into() })),
        ("help_ok", R(Reply::Help { text: "hi".into() })),
        ("bye_ok", R(Reply::Bye)),
        (
            "whose_ok",
            R(Reply::Whose(Some(crate::protocol::Placement {
                name: "al".into(),
                unix_ms: 1_700_000_000_000,
                seq: 9,
            }))),
        ),
        ("whose_nobody", R(Reply::Whose(None))),
        (
            "whose_list",
            R(Reply::WhoseList(vec![crate::protocol::PastPlacement {
                name: "al".into(),
                unix_ms: 1_700_000_000_000,
                seq: 9,
                color: 5,
            }])),
        ),
        (
            "bulk_ok",
            R(Reply::Bulk {
                placed: 12,
                seq: 9,
                more: 1,
            }),
        ),
        (
            "bans_ok",
            R(Reply::Bans {
                total: 2,
                entries: vec!["al".into(), "bob".into()],
            }),
        ),
        (
            "error",
            R(Reply::Error(WireError::new(ErrorCode::BadArgs, "no"))),
        ),
    ]
}

fn encode_server(msg: &ServerMsg) -> BytesMut {
    let mut out = BytesMut::new();
    match msg {
        ServerMsg::Reply(r) => encode_reply(r, &mut out),
        ServerMsg::Event(e) => encode_event(e, &mut out),
        ServerMsg::Unknown { kind } => frame(&mut out, |o| o.put_u8(*kind)),
    }
    out
}

#[test]
fn client_frames_match_protocol_md() {
    for (name, cmd) in client_vectors() {
        let want = vector(name);
        let mut got = BytesMut::new();
        encode_command(&cmd, &mut got);
        assert_eq!(hex(&got), hex(&want), "encoding {name}");
        assert_eq!(decode_command(&want[4..]), Ok(cmd), "decoding {name}");
    }
}

#[test]
fn server_frames_match_protocol_md() {
    for (name, msg) in server_vectors() {
        let want = vector(name);
        assert_eq!(hex(&encode_server(&msg)), hex(&want), "encoding {name}");
        assert_eq!(decode_server(&want[4..]), Ok(msg), "decoding {name}");
    }
}

#[test]
fn the_borrowing_decoder_agrees_with_protocol_md() {
    for (name, msg) in server_vectors() {
        let want = vector(name);
        let (payload, used) = split_server_frame(&want)
            .expect("valid frame")
            .expect("whole frame");
        assert_eq!(used, want.len(), "{name}");
        let got = decode_server_ref(payload).expect(name);
        assert_eq!(got.clone().into_owned(), msg, "decoding {name} in place");
        assert_eq!(Ok(got.into_owned()), decode_server(payload), "{name}");
    }
    // The fields borrow from the frame.
    let pixel = vector("pixel");
    assert_eq!(
        decode_server_ref(&pixel[4..]),
        Ok(ServerMsgRef::Pixel(PixelRef {
            seq: 7,
            x: 3,
            y: 4,
            color: 5,
            name: "bob"
        }))
    );
    let snapshot = vector("snapshot");
    let Ok(ServerMsgRef::Snapshot(s)) = decode_server_ref(&snapshot[4..]) else {
        panic!("not a snapshot");
    };
    assert_eq!((s.seq, s.packed.len(), s.pixels()), (9, 2, vec![1, 15, 5]));
}

#[test]
fn frames_are_found_in_place_with_the_codec_s_limits() {
    let pixel = vector("pixel");
    for cut in 0..pixel.len() {
        assert!(
            matches!(split_server_frame(&pixel[..cut]), Ok(None)),
            "{cut}"
        );
    }
    assert_eq!(server_frame_len(&pixel[..4]).unwrap(), Some(pixel.len()));
    assert!(matches!(
        split_server_frame(&[0, 0, 0, 0]),
        Err(FrameError::Empty)
    ));
    assert!(matches!(
        server_frame_len(&[0xFF, 0, 0, 0]),
        Err(FrameError::TooLarge(_))
    ));
}

#[test]
fn every_vector_in_protocol_md_is_checked() {
    let known: Vec<&str> = client_vectors()
        .iter()
        .map(|(n, _)| *n)
        .chain(server_vectors().iter().map(|(n, _)| *n))
        .collect();
    let doc = doc_vectors();
    assert!(!doc.is_empty());
    for (name, _) in doc {
        assert!(
            known.contains(&name.as_str()),
            "vector {name} is not tested"
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn unknown_types_and_malformed_fields_are_recoverable_errors() {
    assert_eq!(
        decode_command(&[0x3E]).unwrap_err().code,
        ErrorCode::UnknownType
    );
    assert_eq!(
        decode_command(&[0x05, 0, 1]).unwrap_err().code,
        ErrorCode::BadArgs
    );
    // One byte too many is malformed too: a message has exactly its fields.
    assert_eq!(
        decode_command(&[0x05, 0, 1, 0, 2, 3, 9]).unwrap_err().code,
        ErrorCode::BadArgs
    );
    assert_eq!(
        decode_command(&[0x01, b'N', b'O', b'P', b'E', 0, 1])
            .unwrap_err()
            .code,
        ErrorCode::BadArgs
    );
}

#[test]
fn a_huge_length_prefix_fails_before_allocating() {
    let mut codec = ServerCodec::default();
    let mut buf = BytesMut::from(&[0x7F, 0xFF, 0xFF, 0xFF, 0x01][..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(err, FrameError::TooLarge(_)), "{err:?}");
    assert!(buf.capacity() < 1024, "reserved {} bytes", buf.capacity());
}

#[test]
fn unknown_server_types_are_reported_not_fatal() {
    assert_eq!(
        decode_server(&[0x7E, 1, 2]),
        Ok(ServerMsg::Unknown { kind: 0x7E })
    );
    assert_eq!(
        decode_server(&[0xA0]),
        Ok(ServerMsg::Unknown { kind: 0xA0 })
    );
    // Client types never come from a server.
    assert!(decode_server(&[0x05]).is_err());
}

#[test]
fn an_empty_frame_is_broken() {
    let mut codec = ServerCodec::default();
    let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
    assert!(matches!(codec.decode(&mut buf), Err(FrameError::Empty)));
}

#[test]
fn a_truncated_frame_waits_then_fails_at_eof() {
    let mut codec = ServerCodec::default();
    let mut buf = BytesMut::from(&[0, 0, 0, 6, 0x05, 0][..]);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    assert!(codec.decode_eof(&mut buf).is_err());
}

#[test]
fn the_default_palette_fits_the_welcome() {
    let w = Welcome {
        name: "x".into(),
        canvas_id: 1,
        width: 1,
        height: 1,
        seq: 0,
        palette: PALETTE
            .iter()
            .map(|c| (c.rgb, c.name.to_string()))
            .collect(),
        online: 0,
        users: vec![],
        resumed: true,
    };
    let msg = ServerMsg::Reply(Reply::Welcome(w));
    let bytes = encode_server(&msg);
    assert_eq!(decode_server(&bytes[4..]), Ok(msg));
}

fn arb_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max / 4).prop_map(|c| c.into_iter().collect())
}

fn arb_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,24}"
}

fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        any::<u16>().prop_map(|version| Command::Hello { version }),
        (
            arb_name(),
            proptest::option::of((any::<u64>(), any::<u64>())),
            any::<bool>()
        )
            .prop_map(|(name, r, quiet)| {
                Command::Join {
                    name,
                    resume: r.map(|(canvas_id, seq)| Resume { canvas_id, seq }),
                    quiet,
                }
            }),
        arb_text(512).prop_map(|text| Command::Say { text }),
        (arb_name(), arb_text(512)).prop_map(|(to, text)| Command::Tell { to, text }),
        (any::<u16>(), any::<u16>(), any::<u8>()).prop_map(|(x, y, c)| Command::Set {
            x: x.into(),
            y: y.into(),
            color: c.into()
        }),
        Just(Command::Canvas),
        any::<u64>().prop_map(|seq| Command::Sync { seq }),
        Just(Command::Who),
        arb_name().prop_map(|after| Command::WhoAfter { after }),
        "[a-z0-9]{0,64}".prop_map(|token| Command::Ping { token }),
        Just(Command::Help),
        Just(Command::Quit),
        "[ -~]{0,64}".prop_map(|password| Command::Auth { password }),
        (any::<u16>(), any::<u16>()).prop_map(|(x, y)| Command::Whose {
            x: x.into(),
            y: y.into()
        }),
        (any::<u16>(), any::<u16>(), any::<u8>()).prop_map(|(x, y, n)| Command::WhoseLast {
            x: x.into(),
            y: y.into(),
            n: n.into()
        }),
        arb_name().prop_map(|name| Command::Kick { name }),
        arb_name().prop_map(|name| Command::Ban { name }),
        arb_name().prop_map(|name| Command::Unban { name }),
        (arb_name(), any::<u32>()).prop_map(|(name, minutes)| Command::Rollback { name, minutes }),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u8>()
        )
            .prop_map(|(x1, y1, x2, y2, c)| Command::Fill {
                x1: x1.into(),
                y1: y1.into(),
                x2: x2.into(),
                y2: y2.into(),
                color: c.into()
            }),
    ]
}

fn arb_event() -> impl Strategy<Value = Event> {
    let n = || arb_name().prop_map(Arc::<str>::from);
    prop_oneof![
        (any::<u64>(), any::<u16>(), any::<u16>(), 0u8..16, n()).prop_map(
            |(seq, x, y, color, name)| Event::Pixel(Pixel {
                seq,
                x,
                y,
                color,
                name
            })
        ),
        n().prop_map(|name| Event::Joined { name }),
        n().prop_map(|name| Event::Left { name }),
        (n(), arb_text(512)).prop_map(|(from, t)| Event::Msg {
            from,
            text: t.into()
        }),
        (n(), arb_text(512)).prop_map(|(from, t)| Event::Dm {
            from,
            text: t.into()
        }),
        arb_text(100).prop_map(|text| Event::Bye {
            code: ErrorCode::SlowConsumer,
            text
        }),
        (any::<u64>(), n(), arb_text(512)).prop_map(|(unix_ms, from, t)| Event::History {
            unix_ms,
            from,
            text: t.into()
        }),
        Just(Event::Keepalive),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(n(), 0..5),
            proptest::collection::vec(n(), 0..5)
        )
            .prop_map(|(online, joined, left, joined_names, left_names)| {
                Event::Presence(crate::protocol::Presence {
                    online,
                    joined,
                    left,
                    joined_names,
                    left_names,
                })
            }),
    ]
}

fn arb_reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        Just(Reply::Ok),
        (any::<u64>(), 1u16..64, 1u16..64, any::<u64>()).prop_map(|(id, w, h, seq)| {
            Reply::Hello(HelloInfo {
                version: 1,
                canvas_id: id,
                width: w,
                height: h,
                seq,
            })
        }),
        (1u16..20, 1u16..20, any::<u64>())
            .prop_flat_map(|(w, h, seq)| {
                proptest::collection::vec(0u8..16, usize::from(w) * usize::from(h))
                    .prop_map(move |pixels| (w, h, seq, pixels))
            })
            .prop_map(|(width, height, seq, pixels)| {
                Reply::Canvas(Arc::new(Snapshot {
                    canvas_id: 5,
                    seq,
                    width,
                    height,
                    pixels,
                }))
            }),
        (
            arb_name(),
            proptest::collection::vec(arb_name(), 0..5),
            any::<bool>()
        )
            .prop_map(|(name, users, resumed)| Reply::Welcome(Welcome {
                name,
                canvas_id: 1,
                width: 64,
                height: 64,
                seq: 3,
                palette: PALETTE
                    .iter()
                    .map(|c| (c.rgb, c.name.to_string()))
                    .collect(),
                online: 2000,
                users,
                resumed,
            })),
        any::<u64>().prop_map(|seq| Reply::Set { seq }),
        any::<u64>().prop_map(|seq| Reply::Sync { seq }),
        proptest::collection::vec(arb_name(), 0..10).prop_map(|users| Reply::Who {
            online: users.len() as u32 + 7,
            users
        }),
        "[a-z0-9]{0,64}".prop_map(|token| Reply::Pong { token }),
        arb_text(200).prop_map(|text| Reply::Help { text }),
        Just(Reply::Bye),
        (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(placed, seq, more)| Reply::Bulk {
            placed,
            seq,
            more
        }),
        proptest::option::of((arb_name(), any::<u64>(), any::<u64>())).prop_map(|p| {
            Reply::Whose(p.map(|(name, unix_ms, seq)| crate::protocol::Placement {
                name,
                unix_ms,
                seq,
            }))
        }),
        arb_text(200).prop_map(|m| Reply::Error(WireError::new(ErrorCode::TooOld, m))),
    ]
}

/// Splits `bytes` at the given cut points and feeds the pieces one by one.
fn decode_chunked<D: Decoder>(codec: &mut D, bytes: &[u8], cuts: &[usize]) -> Vec<D::Item>
where
    D::Error: std::fmt::Debug,
{
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(bytes.len());
    points.sort_unstable();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        buf.extend_from_slice(&bytes[at..p]);
        at = p;
        while let Some(item) = codec.decode(&mut buf).expect("valid frames") {
            out.push(item);
        }
    }
    out
}

proptest! {
    #[test]
    fn commands_round_trip(cmd in arb_command()) {
        let mut buf = BytesMut::new();
        encode_command(&cmd, &mut buf);
        prop_assert_eq!(roundtrip_command(&buf[4..]), Ok(cmd));
    }

    #[test]
    fn server_messages_round_trip(msg in prop_oneof![
        arb_event().prop_map(ServerMsg::Event),
        arb_reply().prop_map(ServerMsg::Reply),
    ]) {
        let bytes = encode_server(&msg);
        prop_assert_eq!(decode_server(&bytes[4..]), Ok(msg));
    }

    #[test]
    fn the_borrowing_decoder_gives_the_same_messages(msg in prop_oneof![
        arb_event().prop_map(ServerMsg::Event),
        arb_reply().prop_map(ServerMsg::Reply),
    ]) {
        let bytes = encode_server(&msg);
        let (payload, used) = split_server_frame(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(decode_server_ref(payload).map(ServerMsgRef::into_owned), Ok(msg));
    }

    #[test]
    fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = roundtrip_command(&bytes);
        // Same messages, same errors.
        prop_assert_eq!(
            decode_server_ref(&bytes).map(ServerMsgRef::into_owned),
            decode_server(&bytes)
        );
    }

    #[test]
    fn frames_in_place_match_the_codec(
        msgs in proptest::collection::vec(prop_oneof![
            arb_event().prop_map(ServerMsg::Event),
            arb_reply().prop_map(ServerMsg::Reply),
        ], 1..10),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut bytes = BytesMut::new();
        for m in &msgs {
            bytes.extend_from_slice(&encode_server(m));
        }
        let codec = decode_chunked(&mut ClientCodec::default(), &bytes, &cuts);
        let mut in_place = Vec::new();
        let mut rest = &bytes[..];
        while let Some((payload, used)) = split_server_frame(rest).unwrap() {
            in_place.push(decode_server_ref(payload).unwrap().into_owned());
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(&in_place, &codec);
        prop_assert_eq!(in_place, msgs);
    }

    #[test]
    fn arbitrary_streams_never_panic_or_overreserve(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut codec = ServerCodec::default();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
        prop_assert!(buf.capacity() <= crate::protocol::MAX_CLIENT_FRAME + 4 + bytes.len());
        let mut client = ClientCodec::default();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = client.decode(&mut buf) {}
    }

    #[test]
    fn chunking_does_not_change_the_frames(
        cmds in proptest::collection::vec(arb_command(), 1..20),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut bytes = BytesMut::new();
        for cmd in &cmds {
            encode_command(cmd, &mut bytes);
        }
        let got = decode_chunked(&mut ServerCodec::default(), &bytes, &cuts);
        let got: Vec<Command> = got.into_iter().map(|r| r.expect("valid command")).collect();
        prop_assert_eq!(got, cmds);
    }

    #[test]
    fn text_lines_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let mut codec = crate::protocol::text::LineCodec::new();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
        prop_assert!(buf.len() <= crate::protocol::MAX_LINE + 1);
    }
}
