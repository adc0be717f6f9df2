//! Telnet in text mode: `telnet host port` works like netcat, except that
//! telnet mixes its own commands (IAC sequences, RFC 854) into what the user
//! types, and after Ctrl-C (`IAC IP IAC DO TIMING-MARK`) it throws away all
//! output until the server answers the TIMING-MARK (RFC 860). A server that
//! never answers looks dead from then on.
//!
//! [`TextCodec`] strips those sequences from the input before lines are
//! split, and turns the ones that need an answer into items, so the answer
//! goes out in order with the replies to the lines before it. It never
//! answers `WONT` or `DONT`, so no negotiation can loop. A binary
//! connection never sees this: there `0xFF` is data.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::text::LineCodec;
use super::{Command, WireError};

/// "Interpret as command": starts every telnet sequence.
pub const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
/// Subnegotiation begin and end.
const SB: u8 = 250;
const SE: u8 = 240;
/// Erase line, abort output, interrupt process, break: the typed line is
/// given up.
const EL: u8 = 248;
const AO: u8 = 245;
const IP: u8 = 244;
const BRK: u8 = 243;
/// The TIMING-MARK option (RFC 860).
const TIMING_MARK: u8 = 6;

/// What the text-mode reader gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextInput {
    /// A command line, parsed (or why it could not be).
    Command(Result<Command, WireError>),
    /// Bytes to send back as they are, after the replies to the lines
    /// before: a telnet negotiation answer.
    Answer(Bytes),
}

/// Where the telnet parser is between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Plain text.
    Data,
    /// After an `IAC`.
    Iac,
    /// After `IAC WILL`/`WONT`/`DO`/`DONT`: the option byte comes next.
    Option(u8),
    /// Inside `IAC SB ... IAC SE`, skipped.
    Sub,
    /// After an `IAC` inside a subnegotiation.
    SubIac,
}

/// Lines for the text mode, with telnet sequences taken out; see the module
/// docs.
#[derive(Debug)]
pub struct TextCodec {
    lines: LineCodec,
    state: State,
    /// Input with telnet taken out, not yet split into lines. Empty unless
    /// the peer speaks telnet: plain input is split in place.
    clean: BytesMut,
    /// An answer to send once the lines before it are handled.
    answer: Option<Bytes>,
}

impl Default for TextCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl TextCodec {
    /// A codec in its initial state.
    pub fn new() -> Self {
        Self {
            lines: LineCodec::new(),
            state: State::Data,
            clean: BytesMut::new(),
            answer: None,
        }
    }

    /// Moves bytes from `buf` into `clean` without their telnet sequences,
    /// stopping after one that needs an answer, so the lines before it are
    /// handled first.
    fn filter(&mut self, buf: &mut BytesMut) {
        let mut at = 0;
        while at < buf.len() && self.answer.is_none() {
            if self.state == State::Data {
                let run = buf[at..]
                    .iter()
                    .position(|&b| b == IAC)
                    .unwrap_or(buf.len() - at);
                self.clean.extend_from_slice(&buf[at..at + run]);
                at += run;
                if at < buf.len() {
                    self.state = State::Iac;
                    at += 1;
                }
                continue;
            }
            let b = buf[at];
            at += 1;
            self.state = match (self.state, b) {
                (State::Iac, IAC) => {
                    self.clean.put_u8(IAC);
                    State::Data
                }
                (State::Iac, WILL | WONT | DO | DONT) => State::Option(b),
                (State::Iac, SB) => State::Sub,
                (State::Iac, EL | AO | IP | BRK) => {
                    self.abandon_line();
                    State::Data
                }
                // NOP, data mark, go ahead, are-you-there, erase character
                // and the like change nothing here.
                (State::Iac, _) => State::Data,
                (State::Option(verb), option) => {
                    self.answer = answer(verb, option);
                    State::Data
                }
                (State::Sub, IAC) => State::SubIac,
                (State::SubIac, SE) => State::Data,
                (State::Sub | State::SubIac, _) => State::Sub,
                (State::Data, _) => unreachable!("plain text is copied above"),
            };
        }
        buf.advance(at);
    }

    /// Drops the line being typed (telnet's interrupt, abort or erase line),
    /// keeping the complete lines before it.
    fn abandon_line(&mut self) {
        match self.clean.iter().rposition(|&b| b == b'\n') {
            Some(end) => self.clean.truncate(end + 1),
            None => {
                self.clean.clear();
                self.lines.abandon_line();
            }
        }
    }
}

/// The answer to `IAC <verb> <option>`: the timing mark is acknowledged,
/// every other option refused, and refusals are never answered.
fn answer(verb: u8, option: u8) -> Option<Bytes> {
    let reply = match verb {
        DO if option == TIMING_MARK => WILL,
        DO => WONT,
        WILL => DONT,
        _ => return None,
    };
    Some(Bytes::copy_from_slice(&[IAC, reply, option]))
}

impl Decoder for TextCodec {
    type Item = TextInput;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<TextInput>> {
        loop {
            // Netcat and scripts never send IAC (0xFF is not UTF-8): their
            // lines are split where they are, without a copy.
            if self.clean.is_empty()
                && self.answer.is_none()
                && self.state == State::Data
                && !buf.contains(&IAC)
            {
                return Ok(self.lines.decode(buf)?.map(TextInput::Command));
            }
            if let Some(line) = self.lines.decode(&mut self.clean)? {
                return Ok(Some(TextInput::Command(line)));
            }
            if let Some(answer) = self.answer.take() {
                return Ok(Some(TextInput::Answer(answer)));
            }
            if buf.is_empty() {
                return Ok(None);
            }
            self.filter(buf);
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<TextInput>> {
        if let Some(item) = self.decode(buf)? {
            return Ok(Some(item));
        }
        // What is left is a last line without its newline: in `buf` if the
        // peer never spoke telnet, else (all of `buf` filtered) in `clean`.
        let rest = if self.clean.is_empty() {
            buf
        } else {
            &mut self.clean
        };
        Ok(self.lines.decode_eof(rest)?.map(TextInput::Command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    /// Feeds `chunks` one after another, then the end of input.
    fn decode_chunks(chunks: &[&[u8]]) -> Vec<TextInput> {
        let mut codec = TextCodec::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                out.push(item);
            }
        }
        while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
            out.push(item);
        }
        out
    }

    fn ping(token: &str) -> TextInput {
        TextInput::Command(Ok(Command::Ping {
            token: token.into(),
        }))
    }

    fn answer(bytes: &[u8]) -> TextInput {
        TextInput::Answer(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn plain_lines_pass_through() {
        assert_eq!(
            decode_chunks(&[b"PING a\r\nPI", b"NG b\nPING c"]),
            [ping("a"), ping("b"), ping("c")]
        );
    }

    #[test]
    fn timing_mark_is_answered_after_the_lines_before_it() {
        let input = b"PING a\r\n\xff\xf4\xff\xfd\x06PING b\r\n";
        let want = [ping("a"), answer(&[IAC, WILL, TIMING_MARK]), ping("b")];
        assert_eq!(decode_chunks(&[input]), want);
        // The same input cut anywhere gives the same items.
        for cut in 0..input.len() {
            assert_eq!(
                decode_chunks(&[&input[..cut], &input[cut..]]),
                want,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn other_options_are_refused_and_refusals_not_answered() {
        assert_eq!(
            decode_chunks(&[b"\xff\xfd\x01\xff\xfb\x1f\xff\xfc\x03\xff\xfe\x05PING x\n"]),
            [answer(&[IAC, WONT, 1]), answer(&[IAC, DONT, 31]), ping("x")]
        );
    }

    #[test]
    fn commands_inside_a_line_and_subnegotiations_are_skipped() {
        // NOP inside a word, a subnegotiation with an escaped IAC in it.
        assert_eq!(
            decode_chunks(&[b"PI\xff\xf1NG \xff\xfa\x18\x00ab\xff\xff\xff\xf0t\n"]),
            [ping("t")]
        );
    }

    #[test]
    fn interrupt_drops_the_line_being_typed() {
        assert_eq!(
            decode_chunks(&[b"PING a\nSAY half a li", b"ne\xff\xf4PING b\n"]),
            [ping("a"), ping("b")]
        );
        // Also after an over-long line was reported: the rest of it is
        // dropped, not the next line.
        let got = decode_chunks(&[&[b'x'; 2000], b"\xff\xf4PING c\n"]);
        assert!(
            matches!(&got[0], TextInput::Command(Err(e)) if e.code == ErrorCode::LineTooLong),
            "{got:?}"
        );
        assert_eq!(got[1..], [ping("c")]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_in_any_chunks_never_panics_or_piles_up(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<u8>(),
                    proptest::prelude::Just(IAC),
                    proptest::prelude::Just(b'\n'),
                ],
                0..3000,
            ),
            cuts in proptest::collection::vec(0usize..3000, 0..8),
        ) {
            let mut codec = TextCodec::new();
            let mut buf = BytesMut::new();
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.push(bytes.len());
            points.sort_unstable();
            let mut at = 0;
            for p in points {
                buf.extend_from_slice(&bytes[at..p]);
                at = p;
                while codec.decode(&mut buf).unwrap().is_some() {}
                proptest::prop_assert!(buf.len() <= crate::protocol::MAX_LINE + 1);
                proptest::prop_assert!(codec.clean.len() <= crate::protocol::MAX_LINE + 1);
            }
            while codec.decode_eof(&mut buf).unwrap().is_some() {}
        }
    }

    #[test]
    fn escaped_iac_is_a_literal_byte() {
        let got = decode_chunks(&[b"SAY \xff\xff\n"]);
        assert!(
            matches!(&got[..], [TextInput::Command(Err(e))] if e.code == ErrorCode::BadUtf8),
            "{got:?}"
        );
    }
}
