//! Text mode: one command per `\n`-terminated line, for netcat and scripts.
//!
//! [`LineCodec`] splits lines over raw bytes with a hard length limit and
//! turns every recoverable problem (too long, not UTF-8, unknown word) into
//! an `Err` *item*, because a decoder error would end the `Framed` stream and
//! the text mode promises that every error leaves the connection usable.

use std::fmt::Write as _;
use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::{
    Command, ErrorCode, Event, HELP_TEXT, MAX_LINE, Reply, Snapshot, WireError, color_by_name,
    validate_token,
};

/// Splits and parses command lines; see the module docs.
#[derive(Debug, Default)]
pub struct LineCodec {
    /// Set after an over-long line was reported: bytes are dropped until the
    /// next `\n`, so memory stays bounded whatever the peer sends.
    discarding: bool,
}

impl LineCodec {
    /// A codec in its initial state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The line being received was given up (telnet's interrupt): what
    /// follows starts a new line, even after an over-long one.
    pub fn abandon_line(&mut self) {
        self.discarding = false;
    }
}

impl Decoder for LineCodec {
    type Item = Result<Command, WireError>;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        loop {
            if self.discarding {
                match memchr(buf) {
                    Some(i) => {
                        let _ = buf.split_to(i + 1);
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            // Only the first MAX_LINE + 2 bytes can hold a legal line end
            // (`\r\n` after a full-length line).
            let window = buf.len().min(MAX_LINE + 2);
            return match memchr(&buf[..window]) {
                Some(i) => {
                    let line = buf.split_to(i + 1);
                    Ok(Some(parse_line(strip_eol(&line))))
                }
                None if buf.len() > MAX_LINE + 1 => {
                    // The next call drops the rest of this line, wherever
                    // its end is.
                    self.discarding = true;
                    Ok(Some(Err(too_long())))
                }
                None => Ok(None),
            };
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        if let Some(item) = self.decode(buf)? {
            return Ok(Some(item));
        }
        // A last command without its newline (`printf 'QUIT' | nc`) still
        // counts: the peer clearly meant it.
        if buf.is_empty() || self.discarding {
            buf.clear();
            return Ok(None);
        }
        let line = buf.split();
        Ok(Some(parse_line(strip_eol(&line))))
    }
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn too_long() -> WireError {
    WireError::new(
        ErrorCode::LineTooLong,
        format!("lines are at most {MAX_LINE} bytes; the line was discarded"),
    )
}

/// Parses one line (without its line ending) into a command.
pub fn parse_line(line: &[u8]) -> Result<Command, WireError> {
    if line.len() > MAX_LINE {
        return Err(too_long());
    }
    let line = std::str::from_utf8(line)
        .map_err(|_| WireError::new(ErrorCode::BadUtf8, "the line is not valid UTF-8"))?;
    let (word, rest) = split_word(line);
    if looks_like_http(word, rest) {
        return Err(WireError::new(
            ErrorCode::CrossProtocol,
            "this is not an HTTP server",
        ));
    }
    if word.is_empty() {
        return Err(WireError::new(ErrorCode::EmptyLine, "empty line; try HELP"));
    }
    let is = |w: &str| word.eq_ignore_ascii_case(w);
    if is("JOIN") {
        let (name, flag) = split_word(rest);
        let quiet = match flag.trim_matches(' ') {
            "" => false,
            f if f.eq_ignore_ascii_case("quiet") => true,
            _ => return Err(usage("JOIN <name> [quiet]")),
        };
        if name.is_empty() {
            return Err(usage("JOIN <name> [quiet]"));
        }
        Ok(Command::Join {
            name: name.to_string(),
            resume: None,
            quiet,
        })
    } else if is("SAY") {
        Ok(Command::Say {
            text: rest.to_string(),
        })
    } else if is("TELL") {
        let (to, text) = split_word(rest);
        if to.is_empty() {
            return Err(usage("TELL <name> <text>"));
        }
        Ok(Command::Tell {
            to: to.to_string(),
            text: text.to_string(),
        })
    } else if is("SET") {
        parse_set(rest)
    } else if is("CANVAS") {
        no_args(rest, "CANVAS").map(|_| Command::Canvas)
    } else if is("SYNC") {
        let seq = one_arg(rest, "SYNC <seq>")?;
        let seq = seq
            .parse::<u64>()
            .map_err(|_| WireError::new(ErrorCode::BadArgs, "SYNC takes a seq number"))?;
        Ok(Command::Sync { seq })
    } else if is("WHO") {
        match rest.trim_end_matches(' ') {
            "" => Ok(Command::Who),
            after if after.contains(' ') => Err(usage("WHO [after]")),
            after => Ok(Command::WhoAfter {
                after: after.to_string(),
            }),
        }
    } else if is("PING") {
        validate_token(rest)?;
        Ok(Command::Ping {
            token: rest.to_string(),
        })
    } else if is("HELP") {
        no_args(rest, "HELP").map(|_| Command::Help)
    } else if is("QUIT") {
        no_args(rest, "QUIT").map(|_| Command::Quit)
    } else if is("WHOSE") {
        let args: Vec<&str> = rest.split_ascii_whitespace().collect();
        match args[..] {
            [x, y] => Ok(Command::Whose {
                x: parse_coord(x, "x")?,
                y: parse_coord(y, "y")?,
            }),
            [x, y, n] => Ok(Command::WhoseLast {
                x: parse_coord(x, "x")?,
                y: parse_coord(y, "y")?,
                n: parse_coord(n, "n")?,
            }),
            _ => Err(usage("WHOSE <x> <y> [n]")),
        }
    } else if is("AUTH") {
        if rest.is_empty() {
            return Err(usage("AUTH <password>"));
        }
        Ok(Command::Auth {
            password: rest.to_string(),
        })
    } else if is("KICK") {
        let name = one_arg(rest, "KICK <name>")?;
        Ok(Command::Kick {
            name: name.to_string(),
        })
    } else if is("BAN") {
        let args: Vec<&str> = rest.split_ascii_whitespace().collect();
        match args[..] {
            [name] => Ok(Command::Ban {
                name: name.to_string(),
            }),
            [name, also] if also.eq_ignore_ascii_case("addr") => Ok(Command::BanAddress {
                name: name.to_string(),
            }),
            _ => Err(usage("BAN <name> [addr]")),
        }
    } else if is("UNBAN") {
        let name = one_arg(rest, "UNBAN <name|address>")?;
        Ok(Command::Unban {
            name: name.to_string(),
        })
    } else if is("ROLLBACK") {
        let args: Vec<&str> = rest.split_ascii_whitespace().collect();
        let (name, minutes) = match args[..] {
            [name] => (name, 0),
            [name, minutes] => (
                name,
                minutes.parse::<u32>().map_err(|_| {
                    WireError::new(ErrorCode::BadArgs, "minutes must be a number 0-4294967295")
                })?,
            ),
            _ => return Err(usage("ROLLBACK <name> [minutes]")),
        };
        Ok(Command::Rollback {
            name: name.to_string(),
            minutes,
        })
    } else if is("FILL") {
        let args: Vec<&str> = rest.split_ascii_whitespace().collect();
        let [x1, y1, x2, y2, color] = args[..] else {
            return Err(usage("FILL <x1> <y1> <x2> <y2> <color>"));
        };
        Ok(Command::Fill {
            x1: parse_coord(x1, "x1")?,
            y1: parse_coord(y1, "y1")?,
            x2: parse_coord(x2, "x2")?,
            y2: parse_coord(y2, "y2")?,
            color: parse_color(color)?,
        })
    } else if is("BANS") {
        match rest.trim_end_matches(' ') {
            "" => Ok(Command::Bans { after: None }),
            after if after.contains(' ') => Err(usage("BANS [after]")),
            after => Ok(Command::Bans {
                after: Some(after.to_string()),
            }),
        }
    } else {
        Err(WireError::new(
            ErrorCode::UnknownCommand,
            truncate(word, 32).to_string(),
        ))
    }
}

/// A browser tricked into posting to this port sends an HTTP request line
/// or headers; like Redis, recognise it and hang up instead of executing
/// whatever the body says.
fn looks_like_http(word: &str, rest: &str) -> bool {
    const METHODS: [&str; 9] = [
        "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    (METHODS.contains(&word) && (rest.starts_with('/') || rest.contains("HTTP/")))
        || word.eq_ignore_ascii_case("host:")
}

fn parse_set(rest: &str) -> Result<Command, WireError> {
    let mut args = rest.split_ascii_whitespace();
    let (Some(x), Some(y), Some(color), None) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        return Err(usage("SET <x> <y> <color>"));
    };
    let x = parse_coord(x, "x")?;
    let y = parse_coord(y, "y")?;
    let color = parse_color(color)?;
    Ok(Command::Set { x, y, color })
}

/// A palette index or a palette colour's name.
fn parse_color(color: &str) -> Result<u32, WireError> {
    match parse_number(color) {
        Some(n) => Ok(n),
        None => color_by_name(color).map(u32::from).ok_or_else(|| {
            WireError::new(
                ErrorCode::BadArgs,
                "color is a palette index 0-15 or a palette name (see protocol.md)",
            )
        }),
    }
}

fn parse_coord(s: &str, what: &str) -> Result<u32, WireError> {
    parse_number(s)
        .ok_or_else(|| WireError::new(ErrorCode::BadArgs, format!("{what} must be a number")))
}

/// Reads an optionally signed decimal integer. Anything that is a number but
/// cannot be a coordinate (negative, huge) maps to `u32::MAX`, so the range
/// check answers `out_of_range` rather than `bad_args`.
fn parse_number(s: &str) -> Option<u32> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.starts_with('-') {
        return Some(u32::MAX);
    }
    Some(digits.parse::<u32>().unwrap_or(u32::MAX))
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(' ');
    match s.find(' ') {
        Some(i) => (&s[..i], s[i..].trim_start_matches(' ')),
        None => (s, ""),
    }
}

fn one_arg<'a>(rest: &'a str, usage_text: &str) -> Result<&'a str, WireError> {
    let rest = rest.trim_end_matches(' ');
    if rest.is_empty() || rest.contains(' ') {
        return Err(usage(usage_text));
    }
    Ok(rest)
}

fn no_args(rest: &str, usage_text: &str) -> Result<(), WireError> {
    if rest.trim().is_empty() {
        Ok(())
    } else {
        Err(usage(usage_text))
    }
}

fn usage(text: &str) -> WireError {
    WireError::new(ErrorCode::BadArgs, format!("usage: {text}"))
}

fn truncate(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

/// Appends the text form of a reply, line ending included.
pub fn encode_reply(reply: &Reply, out: &mut BytesMut) {
    // Straight into the buffer: a reply costs no allocation of its own.
    let mut w = StrBuf(out);
    let _ = match reply {
        Reply::Ok => writeln!(w, "OK"),
        Reply::Hello(h) => writeln!(
            w,
            "OK {} {} {} {} {}",
            h.version, h.canvas_id, h.width, h.height, h.seq
        ),
        Reply::Welcome(wl) => writeln!(w, "OK {} {} {} {}", wl.name, wl.width, wl.height, wl.seq),
        Reply::Set { seq } | Reply::Sync { seq } => writeln!(w, "OK {seq}"),
        Reply::Canvas(snapshot) => {
            out.extend_from_slice(&encode_canvas(snapshot));
            return;
        }
        Reply::Who {
            online: count,
            users: listed,
        }
        | Reply::Bans {
            total: count,
            entries: listed,
        } => {
            let _ = write!(w, "OK {count}");
            for name in listed {
                let _ = write!(w, " {name}");
            }
            writeln!(w)
        }
        Reply::Pong { token } if token.is_empty() => writeln!(w, "OK PONG"),
        Reply::Pong { token } => writeln!(w, "OK PONG {token}"),
        Reply::Help { text } => writeln!(w, "OK {text}"),
        Reply::Bye => writeln!(w, "OK bye"),
        Reply::Whose(Some(p)) => writeln!(w, "OK {} {} {}", p.name, p.unix_ms, p.seq),
        Reply::Whose(None) => writeln!(w, "OK * 0 0"),
        Reply::Bulk { placed, seq, more } => writeln!(w, "OK {placed} {seq} {more}"),
        Reply::WhoseList(list) => {
            let _ = write!(w, "OK {}", list.len());
            for p in list {
                let _ = write!(w, " {} {} {} {}", p.name, p.unix_ms, p.seq, p.color);
            }
            writeln!(w)
        }
        Reply::Error(e) => writeln!(w, "ERR {} {}", e.code, e.message),
    };
}

/// The text form of a whole `CANVAS` answer: `ROW` lines, then its `OK`.
/// Kept separate so the server can build it once per seq and share it.
pub fn encode_canvas(snapshot: &Snapshot) -> Bytes {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let width = usize::from(snapshot.width);
    let mut out = BytesMut::with_capacity((width + 12) * usize::from(snapshot.height) + 32);
    for (y, row) in snapshot.pixels.chunks(width.max(1)).enumerate() {
        let _ = write!(StrBuf(&mut out), "ROW {y} ");
        out.extend(row.iter().map(|&c| HEX[usize::from(c & 0x0F)]));
        out.put_u8(b'\n');
    }
    let _ = writeln!(
        StrBuf(&mut out),
        "OK {} {} {}",
        snapshot.seq,
        snapshot.width,
        snapshot.height
    );
    out.freeze()
}

/// Appends the text form of an event, line ending included.
pub fn encode_event(event: &Event, out: &mut BytesMut) {
    let mut w = StrBuf(out);
    let _ = match event {
        Event::Pixel(p) => writeln!(w, "PIXEL {} {} {} {} {}", p.seq, p.x, p.y, p.color, p.name),
        Event::Joined { name } => writeln!(w, "JOINED {name}"),
        Event::Left { name } => writeln!(w, "LEFT {name}"),
        Event::Msg { from, text } => writeln!(w, "MSG {from} {text}"),
        Event::Dm { from, text } => writeln!(w, "DM {from} {text}"),
        Event::History {
            unix_ms,
            from,
            text,
        } => writeln!(w, "HISTORY {unix_ms} {from} {text}"),
        Event::Keepalive => writeln!(w, "KEEPALIVE"),
        Event::Presence(p) => {
            let _ = write!(w, "PRESENCE {} {} {}", p.online, p.joined, p.left);
            for name in &p.joined_names {
                let _ = write!(w, " +{name}");
            }
            for name in &p.left_names {
                let _ = write!(w, " -{name}");
            }
            writeln!(w)
        }
        Event::Bye { code, text } => writeln!(w, "BYE {code} {text}"),
    };
}

/// `fmt::Write` straight into a `BytesMut`, so formatting numbers allocates
/// nothing on the fan-out path.
struct StrBuf<'a>(&'a mut BytesMut);

impl std::fmt::Write for StrBuf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A reply line for a text `HELP`.
pub fn help_reply() -> Reply {
    Reply::Help {
        text: HELP_TEXT.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn decode_all(input: &[u8]) -> Vec<Result<Command, WireError>> {
        let mut codec = LineCodec::new();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            out.push(item);
        }
        while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
            out.push(item);
        }
        out
    }

    fn code(r: &Result<Command, WireError>) -> &str {
        r.as_ref().unwrap_err().code.as_str()
    }

    #[test]
    fn commands_parse_case_insensitively() {
        let got = decode_all(
            b"join alice\r\nSaY hello  there\nSET 3 4 red\nset 1 2 15\nWho\nPING\nping t1\nQUIT",
        );
        assert_eq!(
            got,
            vec![
                Ok(Command::Join {
                    name: "alice".into(),
                    resume: None,
                    quiet: false,
                }),
                Ok(Command::Say {
                    text: "hello  there".into()
                }),
                Ok(Command::Set {
                    x: 3,
                    y: 4,
                    color: 5
                }),
                Ok(Command::Set {
                    x: 1,
                    y: 2,
                    color: 15
                }),
                Ok(Command::Who),
                Ok(Command::Ping {
                    token: String::new()
                }),
                Ok(Command::Ping { token: "t1".into() }),
                Ok(Command::Quit),
            ]
        );
    }

    #[test]
    fn malformed_arguments() {
        let got = decode_all(b"SET 1 2\nSET a 2 3\nSET 1 2 mauve\nSET -1 2 3\nSYNC x\nJOIN\nJOIN a b\nTELL\nFLY away\n\n");
        assert_eq!(
            got[..3].iter().map(code).collect::<Vec<_>>(),
            ["bad_args"; 3]
        );
        // The negative coordinate is a number: the hub range-checks it.
        assert_eq!(
            got[3],
            Ok(Command::Set {
                x: u32::MAX,
                y: 2,
                color: 3
            })
        );
        assert_eq!(
            got[4..].iter().map(code).collect::<Vec<_>>(),
            [
                "bad_args",
                "bad_args",
                "bad_args",
                "bad_args",
                "unknown_command",
                "empty_line"
            ]
        );
    }

    #[test]
    fn every_command_refuses_extra_arguments() {
        for line in [
            &b"HELP me"[..],
            b"QUIT now",
            b"WHO after extra",
            b"CANVAS extra",
            b"JOIN a b",
            b"SYNC 1 2",
            b"SET 1 2 3 4",
            b"WHOSE 1 2 3 4",
            b"ROLLBACK a 1 2",
            b"FILL 1 2 3 4 5 6",
            b"PING a b",
            b"KICK a b",
            b"BAN a b",
        ] {
            assert_eq!(
                parse_line(line).unwrap_err().code,
                ErrorCode::BadArgs,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        // Trailing spaces are not arguments.
        assert_eq!(parse_line(b"HELP  "), Ok(Command::Help));
        assert_eq!(parse_line(b"quit "), Ok(Command::Quit));
    }

    #[test]
    fn admin_and_lookup_commands() {
        let got = decode_all(b"WHOSE 1 2\nauth open sesame\nKICK bob\nban eve\nWHOSE 1\nKICK\n");
        assert_eq!(got[0], Ok(Command::Whose { x: 1, y: 2 }));
        assert_eq!(
            got[1],
            Ok(Command::Auth {
                password: "open sesame".into()
            })
        );
        assert_eq!(got[2], Ok(Command::Kick { name: "bob".into() }));
        assert_eq!(got[3], Ok(Command::Ban { name: "eve".into() }));
        assert_eq!(code(&got[4]), "bad_args");
        assert_eq!(code(&got[5]), "bad_args");
        assert_eq!(
            parse_line(b"WHO bob "),
            Ok(Command::WhoAfter {
                after: "bob".into()
            })
        );
    }

    #[test]
    fn http_requests_are_recognised() {
        for line in [
            &b"GET / HTTP/1.1"[..],
            b"POST /submit HTTP/1.1",
            b"Host: 127.0.0.1:7878",
            b"host: example",
        ] {
            assert_eq!(parse_line(line).unwrap_err().code, ErrorCode::CrossProtocol);
        }
        // A chat message mentioning HTTP is not an attack.
        assert!(parse_line(b"SAY GET / HTTP/1.1").is_ok());
        assert_eq!(
            parse_line(b"get").unwrap_err().code,
            ErrorCode::UnknownCommand
        );
    }

    #[test]
    fn long_lines_are_reported_once_and_discarded() {
        let mut input = vec![b'A'; MAX_LINE * 5];
        input.extend_from_slice(b"\nWHO\n");
        let got = decode_all(&input);
        assert_eq!(got.len(), 2);
        assert_eq!(code(&got[0]), "line_too_long");
        assert_eq!(got[1], Ok(Command::Who));
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_accepted() {
        let mut input = b"SAY ".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_LINE - 4));
        input.extend_from_slice(b"\r\n");
        let got = decode_all(&input);
        assert!(matches!(&got[..], [Ok(Command::Say { .. })]), "{got:?}");
    }

    #[test]
    fn invalid_utf8_is_an_item_not_a_stream_error() {
        let got = decode_all(b"SAY \xff\xfe\nWHO\n");
        assert_eq!(code(&got[0]), "bad_utf8");
        assert_eq!(got[1], Ok(Command::Who));
    }

    #[test]
    fn events_and_replies_have_their_exact_text() {
        let mut out = BytesMut::new();
        let name: Arc<str> = Arc::from("bob");
        encode_event(
            &Event::Pixel(crate::protocol::Pixel {
                seq: 7,
                x: 3,
                y: 4,
                color: 5,
                name: name.clone(),
            }),
            &mut out,
        );
        encode_event(
            &Event::Msg {
                from: name.clone(),
                text: Arc::from("hi there"),
            },
            &mut out,
        );
        encode_reply(
            &Reply::Who {
                online: 2,
                users: vec!["a".into(), "b".into()],
            },
            &mut out,
        );
        encode_reply(&Reply::Pong { token: "x".into() }, &mut out);
        encode_reply(
            &Reply::Error(WireError::new(
                ErrorCode::NoSuchUser,
                "nobody called zed is online",
            )),
            &mut out,
        );
        encode_event(
            &Event::Presence(crate::protocol::Presence {
                online: 1500,
                joined: 3,
                left: 1,
                joined_names: vec![Arc::from("al"), Arc::from("-x-")],
                left_names: vec![name.clone()],
            }),
            &mut out,
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "PIXEL 7 3 4 5 bob\nMSG bob hi there\nOK 2 a b\nOK PONG x\nERR no_such_user nobody called zed is online\nPRESENCE 1500 3 1 +al +-x- -bob\n"
        );
    }

    #[test]
    fn canvas_rows_are_lower_case_hex() {
        let snap = Snapshot {
            canvas_id: 1,
            seq: 9,
            width: 3,
            height: 2,
            pixels: vec![0, 10, 15, 1, 2, 3],
        };
        assert_eq!(
            &encode_canvas(&snap)[..],
            b"ROW 0 0af\nROW 1 123\nOK 9 3 2\n"
        );
    }
}
