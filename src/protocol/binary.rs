//! Binary mode: frames of a 4-byte big-endian length and a payload that
//! starts with a type byte. Client types are `0x01..=0x3F`, server events
//! `0x40..=0x7F`, server replies `0x80..=0xFF`, so a client can tell a reply
//! from an event by one bit.
//!
//! Framing is tokio-util's [`LengthDelimitedCodec`], which checks the length
//! prefix against the limit before it reserves anything. The message
//! decoders check the remaining length before every read and fail with a
//! typed error; a well-framed but malformed or unknown message is a
//! recoverable `Err` item, a broken frame ends the stream.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::{
    Command, ErrorCode, Event, HelloInfo, Pixel, Reply, Resume, ServerMsg, Snapshot, Welcome,
    WireError,
};

/// Magic bytes inside `HELLO`, so a stray peer that happens to send 0x00
/// first is rejected at once.
pub const HELLO_MAGIC: &[u8; 4] = b"PXCH";

/// `JOIN` flag: a canvas id and seq to resume from follow.
pub const JOIN_RESUME: u8 = 1;
/// `JOIN` flag: join quietly (no `JOINED`/`LEFT` for this session).
pub const JOIN_QUIET: u8 = 2;

/// Client message types.
pub mod client_type {
    /// `HELLO magic:4 version:u16`
    pub const HELLO: u8 = 0x01;
    /// `JOIN name:str8 flags:u8 [canvas_id:u64 seq:u64]`
    pub const JOIN: u8 = 0x02;
    /// `SAY text:str16`
    pub const SAY: u8 = 0x03;
    /// `TELL to:str8 text:str16`
    pub const TELL: u8 = 0x04;
    /// `SET x:u16 y:u16 color:u8`
    pub const SET: u8 = 0x05;
    /// `CANVAS`
    pub const CANVAS: u8 = 0x06;
    /// `SYNC seq:u64`
    pub const SYNC: u8 = 0x07;
    /// `WHO [after:str8]`
    pub const WHO: u8 = 0x08;
    /// `PING token:str8`
    pub const PING: u8 = 0x09;
    /// `HELP`
    pub const HELP: u8 = 0x0A;
    /// `QUIT`
    pub const QUIT: u8 = 0x0B;
    /// `AUTH password:str8`
    pub const AUTH: u8 = 0x0C;
    /// `WHOSE x:u16 y:u16 [n:u8]`
    pub const WHOSE: u8 = 0x0D;
    /// `KICK name:str8`
    pub const KICK: u8 = 0x0E;
    /// `BAN name:str8 [flags:u8]` (flag bit 0: the user's address too)
    pub const BAN: u8 = 0x0F;
    /// `UNBAN name:str8`
    pub const UNBAN: u8 = 0x10;
    /// `ROLLBACK name:str8 minutes:u32` (0: all time)
    pub const ROLLBACK: u8 = 0x20;
    /// `FILL x1:u16 y1:u16 x2:u16 y2:u16 color:u8`
    pub const FILL: u8 = 0x21;
    /// `BANS [after:str8]`
    pub const BANS: u8 = 0x11;
}

/// `BAN` flag: ban the address the user is connected from too.
pub const BAN_ADDRESS: u8 = 1;

/// Server event types.
pub mod event_type {
    /// `PIXEL seq:u64 x:u16 y:u16 color:u8 name:str8`
    pub const PIXEL: u8 = 0x40;
    /// `JOINED name:str8`
    pub const JOINED: u8 = 0x41;
    /// `LEFT name:str8`
    pub const LEFT: u8 = 0x42;
    /// `MSG from:str8 text:str16`
    pub const MSG: u8 = 0x43;
    /// `DM from:str8 text:str16`
    pub const DM: u8 = 0x44;
    /// `BYE code:str8 text:str16`
    pub const BYE: u8 = 0x45;
    /// `HISTORY unix_ms:u64 from:str8 text:str16`
    pub const HISTORY: u8 = 0x46;
    /// `KEEPALIVE`
    pub const KEEPALIVE: u8 = 0x47;
    /// `PRESENCE online:u32 joined:u32 left:u32 n:u16 name:str8*n m:u16
    /// name:str8*m`
    pub const PRESENCE: u8 = 0x48;
}

/// Server reply types.
pub mod reply_type {
    /// `OK`
    pub const OK: u8 = 0x80;
    /// `HELLO_OK version:u16 canvas_id:u64 width:u16 height:u16 seq:u64`
    pub const HELLO_OK: u8 = 0x81;
    /// `WELCOME` (see protocol.md)
    pub const WELCOME: u8 = 0x82;
    /// `SET_OK seq:u64`
    pub const SET_OK: u8 = 0x83;
    /// `SNAPSHOT canvas_id:u64 seq:u64 width:u16 height:u16 bpp:u8 pixels`
    pub const SNAPSHOT: u8 = 0x84;
    /// `SYNC_OK seq:u64`
    pub const SYNC_OK: u8 = 0x85;
    /// `WHO_OK online:u32 count:u32 name:str8*`
    pub const WHO_OK: u8 = 0x86;
    /// `PONG token:str8`
    pub const PONG: u8 = 0x87;
    /// `HELP_OK text:str16`
    pub const HELP_OK: u8 = 0x88;
    /// `BYE_OK`
    pub const BYE_OK: u8 = 0x89;
    /// `WHOSE_OK name:str8 unix_ms:u64 seq:u64` (empty name: nobody)
    pub const WHOSE_OK: u8 = 0x8A;
    /// `BULK_OK placed:u32 seq:u64 more:u32` (`ROLLBACK`, `FILL`)
    pub const BULK_OK: u8 = 0x90;
    /// `BANS_OK total:u32 count:u32 entries:str8*`
    pub const BANS_OK: u8 = 0x8B;
    /// `WHOSE_LIST count:u8 (name:str8 unix_ms:u64 seq:u64 color:u8)*count`
    pub const WHOSE_LIST: u8 = 0x91;
    /// `ERROR code:str8 message:str16`
    pub const ERROR: u8 = 0xFF;
}

/// A frame that cannot be read: the connection ends.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is over the limit.
    #[error("frame length over the limit of {0} bytes")]
    TooLarge(usize),
    /// A zero-length frame has no type byte.
    #[error("empty frame")]
    Empty,
    /// A server frame that does not decode (client side only).
    #[error("malformed server frame: {0}")]
    Malformed(WireError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl FrameError {
    /// The wire code to send before closing, where one fits.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge(_) => ErrorCode::FrameTooLarge,
            _ => ErrorCode::BadFrame,
        }
    }
}

fn framer(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_length(4)
        .max_frame_length(max)
        .new_codec()
}

fn next_frame(
    framer: &mut LengthDelimitedCodec,
    max: usize,
    buf: &mut BytesMut,
    eof: bool,
) -> Result<Option<BytesMut>, FrameError> {
    let res = if eof {
        framer.decode_eof(buf)
    } else {
        framer.decode(buf)
    };
    match res {
        Ok(Some(frame)) if frame.is_empty() => Err(FrameError::Empty),
        Ok(frame) => Ok(frame),
        Err(e)
            if e.get_ref().is_some_and(|inner| {
                inner.is::<tokio_util::codec::LengthDelimitedCodecError>()
            }) =>
        {
            Err(FrameError::TooLarge(max))
        }
        Err(e) => Err(FrameError::Io(e)),
    }
}

/// The server side of binary mode: frames in, [`Command`]s out.
#[derive(Debug)]
pub struct ServerCodec {
    framer: LengthDelimitedCodec,
}

impl Default for ServerCodec {
    fn default() -> Self {
        Self {
            framer: framer(super::MAX_CLIENT_FRAME),
        }
    }
}

impl Decoder for ServerCodec {
    type Item = Result<Command, WireError>;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, FrameError> {
        Ok(
            next_frame(&mut self.framer, super::MAX_CLIENT_FRAME, buf, false)?
                .map(|f| decode_command(&f)),
        )
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, FrameError> {
        Ok(
            next_frame(&mut self.framer, super::MAX_CLIENT_FRAME, buf, true)?
                .map(|f| decode_command(&f)),
        )
    }
}

/// The client side of binary mode: [`Command`]s out, [`ServerMsg`]s in.
#[derive(Debug)]
pub struct ClientCodec {
    framer: LengthDelimitedCodec,
}

impl Default for ClientCodec {
    fn default() -> Self {
        Self {
            framer: framer(super::MAX_SERVER_FRAME),
        }
    }
}

impl Decoder for ClientCodec {
    type Item = ServerMsg;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ServerMsg>, FrameError> {
        match next_frame(&mut self.framer, super::MAX_SERVER_FRAME, buf, false)? {
            Some(f) => decode_server(&f).map(Some).map_err(FrameError::Malformed),
            None => Ok(None),
        }
    }
}

impl Encoder<&Command> for ClientCodec {
    type Error = FrameError;

    fn encode(&mut self, cmd: &Command, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_command(cmd, dst);
        Ok(())
    }
}

/// Writes one frame: a length placeholder, the payload, then the real length.
fn frame(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    body(out);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_str8(out: &mut BytesMut, s: &str) {
    let s = clip(s, u8::MAX as usize);
    out.put_u8(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn put_str16(out: &mut BytesMut, s: &str) {
    let s = clip(s, u16::MAX as usize);
    out.put_u16(s.len() as u16);
    out.extend_from_slice(s.as_bytes());
}

/// Cuts a string to at most `max` bytes on a character boundary; the server
/// validates lengths earlier, this only keeps the encoder total.
fn clip(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

/// Appends a client command as one frame.
pub fn encode_command(cmd: &Command, out: &mut BytesMut) {
    use client_type as t;
    frame(out, |out| match cmd {
        Command::Hello { version } => {
            out.put_u8(t::HELLO);
            out.extend_from_slice(HELLO_MAGIC);
            out.put_u16(*version);
        }
        Command::Join {
            name,
            resume,
            quiet,
        } => {
            out.put_u8(t::JOIN);
            put_str8(out, name);
            let quiet = if *quiet { JOIN_QUIET } else { 0 };
            match resume {
                None => out.put_u8(quiet),
                Some(r) => {
                    out.put_u8(JOIN_RESUME | quiet);
                    out.put_u64(r.canvas_id);
                    out.put_u64(r.seq);
                }
            }
        }
        Command::Say { text } => {
            out.put_u8(t::SAY);
            put_str16(out, text);
        }
        Command::Tell { to, text } => {
            out.put_u8(t::TELL);
            put_str8(out, to);
            put_str16(out, text);
        }
        Command::Set { x, y, color } => {
            out.put_u8(t::SET);
            out.put_u16((*x).min(u16::MAX.into()) as u16);
            out.put_u16((*y).min(u16::MAX.into()) as u16);
            out.put_u8((*color).min(u8::MAX.into()) as u8);
        }
        Command::Canvas => out.put_u8(t::CANVAS),
        Command::Sync { seq } => {
            out.put_u8(t::SYNC);
            out.put_u64(*seq);
        }
        Command::Who => out.put_u8(t::WHO),
        Command::WhoAfter { after } => {
            out.put_u8(t::WHO);
            put_str8(out, after);
        }
        Command::Ping { token } => {
            out.put_u8(t::PING);
            put_str8(out, token);
        }
        Command::Help => out.put_u8(t::HELP),
        Command::Quit => out.put_u8(t::QUIT),
        Command::Auth { password } => {
            out.put_u8(t::AUTH);
            put_str8(out, password);
        }
        Command::Whose { x, y } => {
            out.put_u8(t::WHOSE);
            out.put_u16((*x).min(u16::MAX.into()) as u16);
            out.put_u16((*y).min(u16::MAX.into()) as u16);
        }
        Command::WhoseLast { x, y, n } => {
            out.put_u8(t::WHOSE);
            out.put_u16((*x).min(u16::MAX.into()) as u16);
            out.put_u16((*y).min(u16::MAX.into()) as u16);
            out.put_u8((*n).min(u8::MAX.into()) as u8);
        }
        Command::Kick { name } => {
            out.put_u8(t::KICK);
            put_str8(out, name);
        }
        Command::Ban { name } => {
            out.put_u8(t::BAN);
            put_str8(out, name);
        }
        Command::Unban { name } => {
            out.put_u8(t::UNBAN);
            put_str8(out, name);
        }
        Command::Rollback { name, minutes } => {
            out.put_u8(t::ROLLBACK);
            put_str8(out, name);
            out.put_u32(*minutes);
        }
        Command::Fill {
            x1,
            y1,
            x2,
            y2,
            color,
        } => {
            out.put_u8(t::FILL);
            for v in [x1, y1, x2, y2] {
                out.put_u16((*v).min(u16::MAX.into()) as u16);
            }
            out.put_u8((*color).min(u8::MAX.into()) as u8);
        }
        Command::BanAddress { name } => {
            out.put_u8(t::BAN);
            put_str8(out, name);
            out.put_u8(BAN_ADDRESS);
        }
        Command::Bans { after } => {
            out.put_u8(t::BANS);
            if let Some(after) = after {
                put_str8(out, after);
            }
        }
    });
}

/// Appends a reply as one frame.
pub fn encode_reply(reply: &Reply, out: &mut BytesMut) {
    use reply_type as t;
    if let Reply::Canvas(snapshot) = reply {
        out.extend_from_slice(&encode_snapshot(snapshot));
        return;
    }
    frame(out, |out| match reply {
        Reply::Ok => out.put_u8(t::OK),
        Reply::Hello(h) => {
            out.put_u8(t::HELLO_OK);
            out.put_u16(h.version);
            out.put_u64(h.canvas_id);
            out.put_u16(h.width);
            out.put_u16(h.height);
            out.put_u64(h.seq);
        }
        Reply::Welcome(w) => {
            out.put_u8(t::WELCOME);
            put_str8(out, &w.name);
            out.put_u64(w.canvas_id);
            out.put_u16(w.width);
            out.put_u16(w.height);
            out.put_u64(w.seq);
            out.put_u8(u8::from(w.resumed));
            out.put_u8(w.palette.len().min(255) as u8);
            for (rgb, name) in w.palette.iter().take(255) {
                out.extend_from_slice(rgb);
                put_str8(out, name);
            }
            out.put_u32(w.online);
            out.put_u32(w.users.len() as u32);
            for name in &w.users {
                put_str8(out, name);
            }
        }
        Reply::Set { seq } => {
            out.put_u8(t::SET_OK);
            out.put_u64(*seq);
        }
        Reply::Canvas(_) => unreachable!("handled above"),
        Reply::Sync { seq } => {
            out.put_u8(t::SYNC_OK);
            out.put_u64(*seq);
        }
        Reply::Who { online, users } => {
            out.put_u8(t::WHO_OK);
            out.put_u32(*online);
            out.put_u32(users.len() as u32);
            for name in users {
                put_str8(out, name);
            }
        }
        Reply::Bans { total, entries } => {
            out.put_u8(t::BANS_OK);
            out.put_u32(*total);
            out.put_u32(entries.len() as u32);
            for entry in entries {
                put_str8(out, entry);
            }
        }
        Reply::Pong { token } => {
            out.put_u8(t::PONG);
            put_str8(out, token);
        }
        Reply::Help { text } => {
            out.put_u8(t::HELP_OK);
            put_str16(out, text);
        }
        Reply::Bye => out.put_u8(t::BYE_OK),
        Reply::WhoseList(list) => {
            out.put_u8(t::WHOSE_LIST);
            out.put_u8(list.len().min(255) as u8);
            for p in list.iter().take(255) {
                put_str8(out, &p.name);
                out.put_u64(p.unix_ms);
                out.put_u64(p.seq);
                out.put_u8(p.color);
            }
        }
        Reply::Bulk { placed, seq, more } => {
            out.put_u8(t::BULK_OK);
            out.put_u32(*placed);
            out.put_u64(*seq);
            out.put_u32(*more);
        }
        Reply::Whose(p) => {
            out.put_u8(t::WHOSE_OK);
            match p {
                Some(p) => {
                    put_str8(out, &p.name);
                    out.put_u64(p.unix_ms);
                    out.put_u64(p.seq);
                }
                None => {
                    out.put_u8(0);
                    out.put_u64(0);
                    out.put_u64(0);
                }
            }
        }
        Reply::Error(e) => {
            out.put_u8(t::ERROR);
            put_str8(out, e.code.as_str());
            put_str16(out, &e.message);
        }
    });
}

/// The binary `SNAPSHOT` frame, 4 bits per pixel, high nibble first. Kept
/// separate so the server can build it once per seq and share it.
pub fn encode_snapshot(s: &Snapshot) -> Bytes {
    let packed = s.pixels.len().div_ceil(2);
    let mut out = BytesMut::with_capacity(4 + 1 + 8 + 8 + 2 + 2 + 1 + packed);
    frame(&mut out, |out| {
        out.put_u8(reply_type::SNAPSHOT);
        out.put_u64(s.canvas_id);
        out.put_u64(s.seq);
        out.put_u16(s.width);
        out.put_u16(s.height);
        out.put_u8(4);
        for pair in s.pixels.chunks(2) {
            let hi = pair[0] & 0x0F;
            let lo = pair.get(1).map_or(0, |c| c & 0x0F);
            out.put_u8(hi << 4 | lo);
        }
    });
    out.freeze()
}

/// Appends an event as one frame.
pub fn encode_event(event: &Event, out: &mut BytesMut) {
    use event_type as t;
    frame(out, |out| match event {
        Event::Pixel(p) => {
            out.put_u8(t::PIXEL);
            out.put_u64(p.seq);
            out.put_u16(p.x);
            out.put_u16(p.y);
            out.put_u8(p.color);
            put_str8(out, &p.name);
        }
        Event::Joined { name } => {
            out.put_u8(t::JOINED);
            put_str8(out, name);
        }
        Event::Left { name } => {
            out.put_u8(t::LEFT);
            put_str8(out, name);
        }
        Event::Msg { from, text } => {
            out.put_u8(t::MSG);
            put_str8(out, from);
            put_str16(out, text);
        }
        Event::Dm { from, text } => {
            out.put_u8(t::DM);
            put_str8(out, from);
            put_str16(out, text);
        }
        Event::History {
            unix_ms,
            from,
            text,
        } => {
            out.put_u8(t::HISTORY);
            out.put_u64(*unix_ms);
            put_str8(out, from);
            put_str16(out, text);
        }
        Event::Keepalive => out.put_u8(t::KEEPALIVE),
        Event::Presence(p) => {
            out.put_u8(t::PRESENCE);
            out.put_u32(p.online);
            out.put_u32(p.joined);
            out.put_u32(p.left);
            for names in [&p.joined_names, &p.left_names] {
                let names = &names[..names.len().min(u16::MAX.into())];
                out.put_u16(names.len() as u16);
                for name in names {
                    put_str8(out, name);
                }
            }
        }
        Event::Bye { code, text } => {
            out.put_u8(t::BYE);
            put_str8(out, code.as_str());
            put_str16(out, text);
        }
    });
}

/// A bounds-checked cursor over a frame payload: `bytes`' `try_get_*`,
/// plus borrowed strings and the check that nothing is left over.
struct Reader<'a>(&'a [u8]);

type Field<T> = Result<T, ()>;

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Field<u8> {
        self.0.try_get_u8().map_err(drop)
    }
    fn u16(&mut self) -> Field<u16> {
        self.0.try_get_u16().map_err(drop)
    }
    fn u32(&mut self) -> Field<u32> {
        self.0.try_get_u32().map_err(drop)
    }
    fn u64(&mut self) -> Field<u64> {
        self.0.try_get_u64().map_err(drop)
    }
    fn bytes(&mut self, n: usize) -> Field<&'a [u8]> {
        if self.0.len() < n {
            return Err(());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn str8(&mut self) -> Field<String> {
        self.str8_ref().map(str::to_owned)
    }
    fn str16(&mut self) -> Field<String> {
        self.str16_ref().map(str::to_owned)
    }
    fn str8_ref(&mut self) -> Field<&'a str> {
        let n = self.u8()?;
        self.utf8(n.into())
    }
    fn str16_ref(&mut self) -> Field<&'a str> {
        let n = self.u16()?;
        self.utf8(n.into())
    }
    fn utf8(&mut self, n: usize) -> Field<&'a str> {
        let raw = self.bytes(n)?;
        std::str::from_utf8(raw).map_err(|_| ())
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
    /// Fails when bytes are left over: a message has exactly its fields.
    fn end<T>(self, value: T) -> Field<T> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(())
        }
    }
}

fn malformed(kind: u8) -> WireError {
    WireError::new(
        ErrorCode::BadArgs,
        format!("malformed message of type 0x{kind:02x}"),
    )
}

/// Decodes one client frame payload (type byte first).
pub fn decode_command(payload: &[u8]) -> Result<Command, WireError> {
    use client_type as t;
    let mut r = Reader(payload);
    let kind = r.u8().map_err(|_| malformed(0))?;
    let cmd: Field<Command> = (|| match kind {
        t::HELLO => {
            if r.bytes(4)? != HELLO_MAGIC {
                return Err(());
            }
            let version = r.u16()?;
            r.end(Command::Hello { version })
        }
        t::JOIN => {
            let name = r.str8()?;
            let flags = r.u8()?;
            if flags & !(JOIN_RESUME | JOIN_QUIET) != 0 {
                return Err(());
            }
            let resume = if flags & JOIN_RESUME != 0 {
                Some(Resume {
                    canvas_id: r.u64()?,
                    seq: r.u64()?,
                })
            } else {
                None
            };
            r.end(Command::Join {
                name,
                resume,
                quiet: flags & JOIN_QUIET != 0,
            })
        }
        t::SAY => {
            let text = r.str16()?;
            r.end(Command::Say { text })
        }
        t::TELL => {
            let to = r.str8()?;
            let text = r.str16()?;
            r.end(Command::Tell { to, text })
        }
        t::SET => {
            let x = r.u16()?.into();
            let y = r.u16()?.into();
            let color = r.u8()?.into();
            r.end(Command::Set { x, y, color })
        }
        t::CANVAS => r.end(Command::Canvas),
        t::SYNC => {
            let seq = r.u64()?;
            r.end(Command::Sync { seq })
        }
        t::WHO if r.0.is_empty() => Ok(Command::Who),
        t::WHO => {
            let after = r.str8()?;
            r.end(Command::WhoAfter { after })
        }
        t::PING => {
            let token = r.str8()?;
            r.end(Command::Ping { token })
        }
        t::HELP => r.end(Command::Help),
        t::QUIT => r.end(Command::Quit),
        t::AUTH => {
            let password = r.str8()?;
            r.end(Command::Auth { password })
        }
        t::WHOSE => {
            let x = r.u16()?.into();
            let y = r.u16()?.into();
            if r.0.is_empty() {
                return Ok(Command::Whose { x, y });
            }
            let n = r.u8()?.into();
            r.end(Command::WhoseLast { x, y, n })
        }
        t::KICK => {
            let name = r.str8()?;
            r.end(Command::Kick { name })
        }
        t::BAN => {
            let name = r.str8()?;
            match r.0 {
                [] => Ok(Command::Ban { name }),
                [BAN_ADDRESS] => Ok(Command::BanAddress { name }),
                _ => Err(()),
            }
        }
        t::UNBAN => {
            let name = r.str8()?;
            r.end(Command::Unban { name })
        }
        t::ROLLBACK => {
            let name = r.str8()?;
            let minutes = r.u32()?;
            r.end(Command::Rollback { name, minutes })
        }
        t::FILL => {
            let x1 = r.u16()?.into();
            let y1 = r.u16()?.into();
            let x2 = r.u16()?.into();
            let y2 = r.u16()?.into();
            let color = r.u8()?.into();
            r.end(Command::Fill {
                x1,
                y1,
                x2,
                y2,
                color,
            })
        }
        t::BANS if r.0.is_empty() => Ok(Command::Bans { after: None }),
        t::BANS => {
            let after = r.str8()?;
            r.end(Command::Bans { after: Some(after) })
        }
        _ => Err(()),
    })();
    cmd.map_err(|_| {
        if (t::HELLO..=t::BANS).contains(&kind) || (t::ROLLBACK..=t::FILL).contains(&kind) {
            malformed(kind)
        } else {
            WireError::new(
                ErrorCode::UnknownType,
                format!("unknown message type 0x{kind:02x}"),
            )
        }
    })
}

/// Decodes one server frame payload (type byte first).
pub fn decode_server(payload: &[u8]) -> Result<ServerMsg, WireError> {
    use event_type as e;
    use reply_type as t;
    let mut r = Reader(payload);
    let kind = r.u8().map_err(|_| malformed(0))?;
    let msg: Field<ServerMsg> = (|| {
        let reply = |x| Ok(ServerMsg::Reply(x));
        let event = |x| Ok(ServerMsg::Event(x));
        match kind {
            e::PIXEL => {
                let p = Pixel {
                    seq: r.u64()?,
                    x: r.u16()?,
                    y: r.u16()?,
                    color: r.u8()?,
                    name: Arc::from(r.str8()?),
                };
                r.end(())?;
                event(Event::Pixel(p))
            }
            e::JOINED => {
                let name = Arc::from(r.str8()?);
                r.end(())?;
                event(Event::Joined { name })
            }
            e::LEFT => {
                let name = Arc::from(r.str8()?);
                r.end(())?;
                event(Event::Left { name })
            }
            e::MSG | e::DM => {
                let from = Arc::from(r.str8()?);
                let text = Arc::from(r.str16()?);
                r.end(())?;
                if kind == e::MSG {
                    event(Event::Msg { from, text })
                } else {
                    event(Event::Dm { from, text })
                }
            }
            e::HISTORY => {
                let unix_ms = r.u64()?;
                let from = Arc::from(r.str8()?);
                let text = Arc::from(r.str16()?);
                r.end(())?;
                event(Event::History {
                    unix_ms,
                    from,
                    text,
                })
            }
            e::KEEPALIVE => r.end(()).and_then(|_| event(Event::Keepalive)),
            e::PRESENCE => {
                let online = r.u32()?;
                let joined = r.u32()?;
                let left = r.u32()?;
                let mut lists = [Vec::new(), Vec::new()];
                for list in &mut lists {
                    for _ in 0..r.u16()? {
                        list.push(Arc::from(r.str8()?));
                    }
                }
                r.end(())?;
                let [joined_names, left_names] = lists;
                event(Event::Presence(crate::protocol::Presence {
                    online,
                    joined,
                    left,
                    joined_names,
                    left_names,
                }))
            }
            e::BYE => {
                let code = ErrorCode::from_word(&r.str8()?);
                let text = r.str16()?;
                r.end(())?;
                event(Event::Bye { code, text })
            }
            t::OK => r.end(()).and_then(|_| reply(Reply::Ok)),
            t::HELLO_OK => {
                let h = HelloInfo {
                    version: r.u16()?,
                    canvas_id: r.u64()?,
                    width: r.u16()?,
                    height: r.u16()?,
                    seq: r.u64()?,
                };
                r.end(())?;
                reply(Reply::Hello(h))
            }
            t::WELCOME => {
                let name = r.str8()?;
                let canvas_id = r.u64()?;
                let width = r.u16()?;
                let height = r.u16()?;
                let seq = r.u64()?;
                let resumed = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(()),
                };
                let mut palette = Vec::new();
                for _ in 0..r.u8()? {
                    let rgb: [u8; 3] = r.bytes(3)?.try_into().map_err(|_| ())?;
                    palette.push((rgb, r.str8()?));
                }
                let online = r.u32()?;
                let mut users = Vec::new();
                for _ in 0..r.u32()? {
                    users.push(r.str8()?);
                }
                r.end(())?;
                reply(Reply::Welcome(Welcome {
                    name,
                    canvas_id,
                    width,
                    height,
                    seq,
                    palette,
                    online,
                    users,
                    resumed,
                }))
            }
            t::SET_OK => {
                let seq = r.u64()?;
                r.end(())?;
                reply(Reply::Set { seq })
            }
            t::SNAPSHOT => {
                let canvas_id = r.u64()?;
                let seq = r.u64()?;
                let width = r.u16()?;
                let height = r.u16()?;
                if r.u8()? != 4 {
                    return Err(());
                }
                let packed = r.rest();
                if packed.len() != packed_len(width, height) {
                    return Err(());
                }
                reply(Reply::Canvas(Arc::new(Snapshot {
                    canvas_id,
                    seq,
                    width,
                    height,
                    pixels: unpack_pixels(packed, width, height),
                })))
            }
            t::SYNC_OK => {
                let seq = r.u64()?;
                r.end(())?;
                reply(Reply::Sync { seq })
            }
            t::WHO_OK => {
                let online = r.u32()?;
                let mut users = Vec::new();
                for _ in 0..r.u32()? {
                    users.push(r.str8()?);
                }
                r.end(())?;
                reply(Reply::Who { online, users })
            }
            t::BANS_OK => {
                let total = r.u32()?;
                let mut entries = Vec::new();
                for _ in 0..r.u32()? {
                    entries.push(r.str8()?);
                }
                r.end(())?;
                reply(Reply::Bans { total, entries })
            }
            t::PONG => {
                let token = r.str8()?;
                r.end(())?;
                reply(Reply::Pong { token })
            }
            t::HELP_OK => {
                let text = r.str16()?;
                r.end(())?;
                reply(Reply::Help { text })
            }
            t::BYE_OK => r.end(()).and_then(|_| reply(Reply::Bye)),
            t::WHOSE_OK => {
                let name = r.str8()?;
                let unix_ms = r.u64()?;
                let seq = r.u64()?;
                r.end(())?;
                reply(Reply::Whose(
                    (!name.is_empty()).then_some(crate::protocol::Placement { name, unix_ms, seq }),
                ))
            }
            t::WHOSE_LIST => {
                let count = r.u8()?;
                let mut list = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    let name = r.str8()?;
                    let unix_ms = r.u64()?;
                    let seq = r.u64()?;
                    let color = r.u8()?;
                    list.push(crate::protocol::PastPlacement {
                        name,
                        unix_ms,
                        seq,
                        color,
                    });
                }
                r.end(())?;
                reply(Reply::WhoseList(list))
            }
            t::BULK_OK => {
                let placed = r.u32()?;
                let seq = r.u64()?;
                let more = r.u32()?;
                r.end(())?;
                reply(Reply::Bulk { placed, seq, more })
            }
            t::ERROR => {
                let code = ErrorCode::from_word(&r.str8()?);
                let message = r.str16()?;
                r.end(())?;
                reply(Reply::Error(WireError { code, message }))
            }
            _ if kind >= event_type::PIXEL => Ok(ServerMsg::Unknown { kind }),
            _ => Err(()),
        }
    })();
    msg.map_err(|_| malformed(kind))
}

/// Bytes of a packed snapshot of `width` x `height` pixels (4 bits each).
fn packed_len(width: u16, height: u16) -> usize {
    (usize::from(width) * usize::from(height)).div_ceil(2)
}

/// One palette index per pixel from a packed snapshot, high nibble first.
fn unpack_pixels(packed: &[u8], width: u16, height: u16) -> Vec<u8> {
    let count = usize::from(width) * usize::from(height);
    let mut pixels = Vec::with_capacity(count);
    for b in packed {
        pixels.push(b >> 4);
        pixels.push(b & 0x0F);
    }
    pixels.truncate(count);
    pixels
}

/// A `PIXEL` event borrowed from the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelRef<'a> {
    /// Canvas seq of this placement.
    pub seq: u64,
    /// Column.
    pub x: u16,
    /// Row.
    pub y: u16,
    /// Palette index.
    pub color: u8,
    /// Who placed it.
    pub name: &'a str,
}

/// A `SNAPSHOT` borrowed from the bytes it was decoded from, still packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRef<'a> {
    /// Canvas id.
    pub canvas_id: u64,
    /// The seq the snapshot is at.
    pub seq: u64,
    /// Canvas width.
    pub width: u16,
    /// Canvas height.
    pub height: u16,
    /// Two pixels per byte, high nibble first; exactly the right length.
    pub packed: &'a [u8],
}

impl SnapshotRef<'_> {
    /// One palette index per pixel, row by row.
    pub fn pixels(&self) -> Vec<u8> {
        unpack_pixels(self.packed, self.width, self.height)
    }
}

/// A server message decoded where it lies, without allocating, for a reader
/// that must keep up with millions of events per second (a load generator,
/// a relay). The frequent messages borrow their fields from the frame (a
/// crowd joining sends every joined client one `JOINED` per newcomer); the
/// rest come decoded by [`decode_server`] in [`ServerMsgRef::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsgRef<'a> {
    /// A `PIXEL` event.
    Pixel(PixelRef<'a>),
    /// `SET_OK`: a placement was accepted with this seq.
    SetOk {
        /// The placement's seq.
        seq: u64,
    },
    /// `SNAPSHOT` (the answer to `CANVAS`, or the canvas after `JOIN`).
    Snapshot(SnapshotRef<'a>),
    /// `ERROR`: the oldest command was refused.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human explanation.
        message: &'a str,
    },
    /// `BYE`: the server is closing this connection.
    Bye {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human text.
        text: &'a str,
    },
    /// `JOINED`: someone joined (one per newcomer to every joined client).
    Joined {
        /// Their name.
        name: &'a str,
    },
    /// `LEFT`: someone left.
    Left {
        /// Their name.
        name: &'a str,
    },
    /// `KEEPALIVE`: the server has heard nothing from this client for a
    /// while; any command keeps the connection open.
    Keepalive,
    /// Any other message. These are rare on a busy connection (one welcome
    /// per join, one `JOINED` per newcomer), so they are decoded by the
    /// owning decoder rather than twice over; boxed, so that the frequent
    /// messages stay small to return.
    Other(Box<ServerMsg>),
}

impl ServerMsgRef<'_> {
    /// The same message as [`decode_server`] gives it.
    pub fn into_owned(self) -> ServerMsg {
        match self {
            ServerMsgRef::Pixel(p) => ServerMsg::Event(Event::Pixel(Pixel {
                seq: p.seq,
                x: p.x,
                y: p.y,
                color: p.color,
                name: Arc::from(p.name),
            })),
            ServerMsgRef::SetOk { seq } => ServerMsg::Reply(Reply::Set { seq }),
            ServerMsgRef::Snapshot(s) => ServerMsg::Reply(Reply::Canvas(Arc::new(Snapshot {
                canvas_id: s.canvas_id,
                seq: s.seq,
                width: s.width,
                height: s.height,
                pixels: s.pixels(),
            }))),
            ServerMsgRef::Error { code, message } => ServerMsg::Reply(Reply::Error(WireError {
                code,
                message: message.to_owned(),
            })),
            ServerMsgRef::Bye { code, text } => ServerMsg::Event(Event::Bye {
                code,
                text: text.to_owned(),
            }),
            ServerMsgRef::Joined { name } => ServerMsg::Event(Event::Joined {
                name: Arc::from(name),
            }),
            ServerMsgRef::Left { name } => ServerMsg::Event(Event::Left {
                name: Arc::from(name),
            }),
            ServerMsgRef::Keepalive => ServerMsg::Event(Event::Keepalive),
            ServerMsgRef::Other(msg) => *msg,
        }
    }
}

/// Decodes one server frame payload (type byte first) in place: the same
/// messages and the same errors as [`decode_server`], without allocating
/// for `PIXEL`, `SET_OK`, `SNAPSHOT`, `ERROR`, `BYE`, `JOINED`, `LEFT` and
/// `KEEPALIVE` (an unknown error code word is the exception:
/// [`ErrorCode::Other`] owns it).
///
/// `PIXEL`, the hottest frame by far, is decoded inline at the caller.
#[inline]
pub fn decode_server_ref(payload: &[u8]) -> Result<ServerMsgRef<'_>, WireError> {
    match payload.split_first() {
        Some((&event_type::PIXEL, body)) => decode_pixel_ref(body)
            .map(ServerMsgRef::Pixel)
            .ok_or_else(|| malformed(event_type::PIXEL)),
        _ => decode_server_ref_other(payload),
    }
}

/// `PIXEL seq:u64 x:u16 y:u16 color:u8 name:str8`: the fixed head is read
/// at once, with one length check, instead of field by field.
#[inline]
fn decode_pixel_ref(body: &[u8]) -> Option<PixelRef<'_>> {
    let (head, name) = body.split_first_chunk::<14>()?;
    if name.len() != usize::from(head[13]) {
        return None;
    }
    let [s0, s1, s2, s3, s4, s5, s6, s7, x0, x1, y0, y1, color, _] = *head;
    Some(PixelRef {
        seq: u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
        x: u16::from_be_bytes([x0, x1]),
        y: u16::from_be_bytes([y0, y1]),
        color,
        name: std::str::from_utf8(name).ok()?,
    })
}

/// [`decode_server_ref`] for everything but `PIXEL`.
fn decode_server_ref_other(payload: &[u8]) -> Result<ServerMsgRef<'_>, WireError> {
    use event_type as e;
    use reply_type as t;
    let Some((&kind, body)) = payload.split_first() else {
        return decode_server(payload).map(|m| ServerMsgRef::Other(Box::new(m)));
    };
    let mut r = Reader(body);
    let msg: Field<ServerMsgRef<'_>> = match kind {
        t::SET_OK => (|| {
            let seq = r.u64()?;
            r.end(ServerMsgRef::SetOk { seq })
        })(),
        t::SNAPSHOT => (|| {
            let canvas_id = r.u64()?;
            let seq = r.u64()?;
            let width = r.u16()?;
            let height = r.u16()?;
            if r.u8()? != 4 {
                return Err(());
            }
            let packed = r.rest();
            if packed.len() != packed_len(width, height) {
                return Err(());
            }
            Ok(ServerMsgRef::Snapshot(SnapshotRef {
                canvas_id,
                seq,
                width,
                height,
                packed,
            }))
        })(),
        t::ERROR => (|| {
            let code = ErrorCode::from_word(r.str8_ref()?);
            let message = r.str16_ref()?;
            r.end(ServerMsgRef::Error { code, message })
        })(),
        e::BYE => (|| {
            let code = ErrorCode::from_word(r.str8_ref()?);
            let text = r.str16_ref()?;
            r.end(ServerMsgRef::Bye { code, text })
        })(),
        e::JOINED => (|| {
            let name = r.str8_ref()?;
            r.end(ServerMsgRef::Joined { name })
        })(),
        e::LEFT => (|| {
            let name = r.str8_ref()?;
            r.end(ServerMsgRef::Left { name })
        })(),
        e::KEEPALIVE => r.end(ServerMsgRef::Keepalive),
        _ => return decode_server(payload).map(|m| ServerMsgRef::Other(Box::new(m))),
    };
    msg.map_err(|_| malformed(kind))
}

/// The length of the server frame at the start of `buf`, its 4-byte prefix
/// included, once the prefix is there: lets a reader size its buffer for
/// (or skip over) a frame before all of it has arrived. The limits are
/// [`ClientCodec`]'s: an empty frame, or one over
/// [`MAX_SERVER_FRAME`](super::MAX_SERVER_FRAME), is a [`FrameError`].
pub fn server_frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    match u32::from_be_bytes(*prefix) as usize {
        0 => Err(FrameError::Empty),
        n if n > super::MAX_SERVER_FRAME => Err(FrameError::TooLarge(super::MAX_SERVER_FRAME)),
        n => Ok(Some(4 + n)),
    }
}

/// The first server frame in `buf`, found in place: its payload (type byte
/// first, for [`decode_server_ref`]) and the bytes it takes, prefix
/// included; `Ok(None)` until the whole frame is there.
pub fn split_server_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    Ok(server_frame_len(buf)?.and_then(|len| buf.get(4..len).map(|payload| (payload, len))))
}

/// Decodes a client frame payload, encodes the command again and decodes
/// that: the two results must agree. Shared by unit tests, proptest and the
/// fuzz targets (prost's pattern). Returns the first decode.
pub fn roundtrip_command(payload: &[u8]) -> Result<Command, WireError> {
    let cmd = decode_command(payload)?;
    let mut again = BytesMut::new();
    encode_command(&cmd, &mut again);
    let mut framer = framer(super::MAX_CLIENT_FRAME * 16);
    let frame = framer
        .decode(&mut again)
        .expect("own frame")
        .expect("complete frame");
    assert_eq!(
        decode_command(&frame).as_ref(),
        Ok(&cmd),
        "re-encoding changed the command"
    );
    Ok(cmd)
}

#[cfg(test)]
mod tests;
