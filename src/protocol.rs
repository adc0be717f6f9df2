//! The one message vocabulary both wire modes share: what clients ask
//! ([`Command`]), what the server answers ([`Reply`]) and what it pushes
//! ([`Event`]), the error codes, the palette and every protocol limit.
//!
//! [`text`] and [`binary`] only encode and decode these types; nothing in
//! them decides behaviour.

pub mod binary;
pub mod telnet;
pub mod text;

use std::fmt;
use std::sync::Arc;

/// Which encoding a connection speaks; the server picks it from the
/// client's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Line-based text, for netcat and scripts.
    Text,
    /// Length-prefixed frames.
    Binary,
}

/// Version of the binary protocol this crate speaks (sent in `HELLO`).
pub const PROTOCOL_VERSION: u16 = 1;

/// Longest text-mode line the server accepts, without the `\n`.
pub const MAX_LINE: usize = 1024;
/// Largest binary frame payload a client may send; a larger length prefix
/// closes the connection before anything is allocated.
pub const MAX_CLIENT_FRAME: usize = 4096;
/// Largest binary frame payload the server sends (a packed 4096x4096
/// snapshot plus its header fits).
pub const MAX_SERVER_FRAME: usize = 16 * 1024 * 1024 + 64;
/// Longest user name, in bytes (names are ASCII).
pub const MAX_NAME: usize = 24;
/// Longest chat or DM text, in bytes of UTF-8.
pub const MAX_TEXT: usize = 512;
/// Longest `PING` token, in bytes.
pub const MAX_TOKEN: usize = 64;
/// Largest canvas side the server accepts.
pub const MAX_SIDE: u16 = 4096;
/// Most names a `WELCOME` or `WHO` lists; with more users online they carry
/// the count and the first names in order, so a crowd joining costs each
/// newcomer a bounded frame instead of one that grows with the crowd.
pub const MAX_LISTED_USERS: usize = 1000;
/// Most names a `PRESENCE` event lists of those who joined, and as many of
/// those who left; the counts are always the full ones.
pub const MAX_PRESENCE_NAMES: usize = 100;

/// One palette entry: a colour's wire name and its sRGB value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaletteColor {
    /// Lower-case name accepted by text-mode `SET`.
    pub name: &'static str,
    /// Red, green, blue.
    pub rgb: [u8; 3],
}

/// The 16-colour palette of r/place 2017, in its original order; a pixel's
/// colour on the wire is an index into this table.
pub const PALETTE: [PaletteColor; 16] = [
    PaletteColor {
        name: "white",
        rgb: [0xFF, 0xFF, 0xFF],
    },
    PaletteColor {
        name: "lightgrey",
        rgb: [0xE4, 0xE4, 0xE4],
    },
    PaletteColor {
        name: "grey",
        rgb: [0x88, 0x88, 0x88],
    },
    PaletteColor {
        name: "black",
        rgb: [0x22, 0x22, 0x22],
    },
    PaletteColor {
        name: "pink",
        rgb: [0xFF, 0xA7, 0xD1],
    },
    PaletteColor {
        name: "red",
        rgb: [0xE5, 0x00, 0x00],
    },
    PaletteColor {
        name: "orange",
        rgb: [0xE5, 0x95, 0x00],
    },
    PaletteColor {
        name: "brown",
        rgb: [0xA0, 0x6A, 0x42],
    },
    PaletteColor {
        name: "yellow",
        rgb: [0xE5, 0xD9, 0x00],
    },
    PaletteColor {
        name: "lightgreen",
        rgb: [0x94, 0xE0, 0x44],
    },
    PaletteColor {
        name: "green",
        rgb: [0x02, 0xBE, 0x01],
    },
    PaletteColor {
        name: "cyan",
        rgb: [0x00, 0xD3, 0xDD],
    },
    PaletteColor {
        name: "blue",
        rgb: [0x00, 0x83, 0xC7],
    },
    PaletteColor {
        name: "darkblue",
        rgb: [0x00, 0x00, 0xEA],
    },
    PaletteColor {
        name: "magenta",
        rgb: [0xCF, 0x6E, 0xE4],
    },
    PaletteColor {
        name: "purple",
        rgb: [0x82, 0x00, 0x80],
    },
];

/// Finds a palette index by colour name, ignoring case.
pub fn color_by_name(name: &str) -> Option<u8> {
    PALETTE
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

/// A request from a client, decoded from either wire mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Binary mode only: the first frame, naming the protocol version.
    Hello {
        /// Protocol version the client speaks.
        version: u16,
    },
    /// Take a name and start receiving events.
    Join {
        /// Requested user name (validated by the hub, not the codec).
        name: String,
        /// Binary mode only: resume from this point instead of a snapshot.
        resume: Option<Resume>,
        /// Join without telling anyone: no `JOINED` or `LEFT` for this
        /// session, and listings mark the name with a trailing `*`. For
        /// scripts that join for one command.
        quiet: bool,
    },
    /// Chat to everyone.
    Say {
        /// The message.
        text: String,
    },
    /// Direct message to one user.
    Tell {
        /// Recipient name.
        to: String,
        /// The message.
        text: String,
    },
    /// Place a pixel. Values are unchecked: the hub range-checks them, and
    /// text-mode numbers too large for `u32` arrive as `u32::MAX`.
    Set {
        /// Column, from 0.
        x: u32,
        /// Row, from 0.
        y: u32,
        /// Palette index.
        color: u32,
    },
    /// Ask for the whole canvas.
    Canvas,
    /// Ask for every pixel event after `seq`.
    Sync {
        /// Last seq the client has applied.
        seq: u64,
    },
    /// List users online: the first [`MAX_LISTED_USERS`] in listing
    /// order.
    Who,
    /// List the users online whose names come after `after` in listing
    /// order (ignoring case): the next page of a `WHO`.
    WhoAfter {
        /// The last name of the previous page (a trailing `*` is ignored).
        after: String,
    },
    /// Round trip; the token comes back unchanged.
    Ping {
        /// Opaque token, possibly empty.
        token: String,
    },
    /// One-line command summary.
    Help,
    /// Say goodbye; the server closes after replying.
    Quit,
    /// Present the server password (or the admin password).
    Auth {
        /// The password.
        password: String,
    },
    /// Ask who placed the pixel at `(x, y)` and when.
    Whose {
        /// Column (unchecked, like `Set`).
        x: u32,
        /// Row.
        y: u32,
    },
    /// Admin: disconnect a user.
    Kick {
        /// Who.
        name: String,
    },
    /// Admin: disconnect a user and refuse the name until an admin lifts
    /// the ban (bans survive restarts).
    Ban {
        /// Who.
        name: String,
    },
    /// Admin: lift a ban.
    Unban {
        /// A name, or an address as `BANS` lists it (with or without its
        /// prefix length); a text that is both lifts both.
        name: String,
    },
    /// The last `n` placements at `(x, y)`, newest first (`WHOSE x y n`).
    WhoseLast {
        /// Column (unchecked, like `Set`).
        x: u32,
        /// Row.
        y: u32,
        /// How many, 1 to [`MAX_WHOSE_LAST`].
        n: u32,
    },
    /// Admin: put back, as new placements, the colour each pixel had
    /// before `name`'s placements of the last `minutes` (0: all of them),
    /// where `name` is still the last author.
    Rollback {
        /// Whose placements.
        name: String,
        /// The window in minutes; 0 is all time.
        minutes: u32,
    },
    /// Admin: paint the rectangle from `(x1, y1)` to `(x2, y2)` (inclusive,
    /// either corner first) with one colour. Values are unchecked, like
    /// `Set`.
    Fill {
        /// One corner's column.
        x1: u32,
        /// One corner's row.
        y1: u32,
        /// The other corner's column.
        x2: u32,
        /// The other corner's row.
        y2: u32,
        /// Palette index.
        color: u32,
    },
    /// Admin: like [`Command::Ban`], and ban the address the user is
    /// connected from too (IPv6 by its /64), so a fresh name from there
    /// cannot join either.
    BanAddress {
        /// Who (online on the server asked).
        name: String,
    },
    /// Admin: list the bans, names and addresses: the first
    /// [`MAX_LISTED_USERS`] in order, or those after `after`.
    Bans {
        /// The last entry of the previous page.
        after: Option<String>,
    },
}

impl Command {
    /// Whether it needs the admin password: moderation and bulk changes.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Command::Kick { .. }
                | Command::Ban { .. }
                | Command::BanAddress { .. }
                | Command::Unban { .. }
                | Command::Bans { .. }
                | Command::Rollback { .. }
                | Command::Fill { .. }
        )
    }
}

/// Where a reconnecting binary client left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Canvas id from the previous welcome.
    pub canvas_id: u64,
    /// Last seq applied from that canvas.
    pub seq: u64,
}

/// What the server knows about the canvas when a binary client says hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloInfo {
    /// Protocol version the server will speak.
    pub version: u16,
    /// Identity of the canvas; changes whenever a canvas is created anew.
    pub canvas_id: u64,
    /// Canvas width in pixels.
    pub width: u16,
    /// Canvas height in pixels.
    pub height: u16,
    /// Latest seq.
    pub seq: u64,
}

/// The answer to `JOIN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The name as it was accepted.
    pub name: String,
    /// Identity of the canvas.
    pub canvas_id: u64,
    /// Canvas width.
    pub width: u16,
    /// Canvas height.
    pub height: u16,
    /// Seq the snapshot (or resume) brings the client to.
    pub seq: u64,
    /// Palette in index order.
    pub palette: Vec<([u8; 3], String)>,
    /// How many users are online, the new user included.
    pub online: u32,
    /// Names online, sorted ignoring case; at most [`MAX_LISTED_USERS`].
    pub users: Vec<String>,
    /// True when the missed pixel events follow instead of a snapshot.
    pub resumed: bool,
}

/// The whole canvas at one seq, one byte (palette index) per pixel, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Identity of the canvas.
    pub canvas_id: u64,
    /// Seq of the last pixel this snapshot includes.
    pub seq: u64,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// `width * height` palette indexes, row by row.
    pub pixels: Vec<u8>,
}

/// The single answer a command gets, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Plain success (`SAY`, `TELL`).
    Ok,
    /// Binary `HELLO` accepted.
    Hello(HelloInfo),
    /// `JOIN` accepted.
    Welcome(Welcome),
    /// `SET` accepted with this seq.
    Set {
        /// Seq assigned to the pixel.
        seq: u64,
    },
    /// `CANVAS`.
    Canvas(Arc<Snapshot>),
    /// End of a `SYNC` replay.
    Sync {
        /// Latest seq; the replayed events ended here.
        seq: u64,
    },
    /// `WHO`.
    Who {
        /// How many users are online.
        online: u32,
        /// Names online, sorted ignoring case; at most [`MAX_LISTED_USERS`].
        users: Vec<String>,
    },
    /// `PING`.
    Pong {
        /// The client's token.
        token: String,
    },
    /// `HELP`.
    Help {
        /// Command summary.
        text: String,
    },
    /// `QUIT`; the connection closes after this.
    Bye,
    /// `WHOSE`: the last placement at a pixel, if any.
    Whose(Option<Placement>),
    /// `WHOSE x y n`: the last placements at a pixel, newest first.
    WhoseList(Vec<PastPlacement>),
    /// `ROLLBACK` and `FILL`: pixels placed, the seq of the last one (the
    /// latest seq when none), and for `ROLLBACK` how many pixels are left
    /// over the per-command cap (run it again for those).
    Bulk {
        /// Pixels placed.
        placed: u32,
        /// Seq after them.
        seq: u64,
        /// Pixels still to put back.
        more: u32,
    },
    /// `BANS`: the ban list, names and addresses.
    Bans {
        /// How many bans there are.
        total: u32,
        /// Banned names and addresses (`198.51.100.7/32`,
        /// `2001:db8:1:2::/64`) in order; at most [`MAX_LISTED_USERS`].
        entries: Vec<String>,
    },
    /// The command failed; the connection stays usable unless noted.
    Error(WireError),
}

/// Who placed a pixel, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Author's name.
    pub name: String,
    /// Unix time of the placement, in milliseconds.
    pub unix_ms: u64,
    /// Seq of the placement.
    pub seq: u64,
}

/// Most placements one `WHOSE x y n` lists.
pub const MAX_WHOSE_LAST: u32 = 100;

/// One placement at a pixel, from its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastPlacement {
    /// Author's name.
    pub name: String,
    /// Unix time of the placement, in milliseconds.
    pub unix_ms: u64,
    /// Seq of the placement.
    pub seq: u64,
    /// Palette index placed.
    pub color: u8,
}

/// One pixel placement as broadcast and as replayed by `SYNC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixel {
    /// Canvas seq of this placement.
    pub seq: u64,
    /// Column.
    pub x: u16,
    /// Row.
    pub y: u16,
    /// Palette index.
    pub color: u8,
    /// Who placed it.
    pub name: Arc<str>,
}

/// Who came and went, for a crowd: sent periodically instead of one
/// `JOINED` or `LEFT` per user once as many users are online as the
/// server's presence threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// Users online now.
    pub online: u32,
    /// How many joined since the previous `PRESENCE` (net: someone who
    /// joined and left in between is in neither count).
    pub joined: u32,
    /// How many left since the previous one.
    pub left: u32,
    /// Names of those who joined, sorted ignoring case; at most
    /// [`MAX_PRESENCE_NAMES`] (quiet joins are never named).
    pub joined_names: Vec<Arc<str>>,
    /// Names of those who left, likewise.
    pub left_names: Vec<Arc<str>>,
}

/// Something the server pushes without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A pixel was placed.
    Pixel(Pixel),
    /// Someone joined.
    Joined {
        /// Their name.
        name: Arc<str>,
    },
    /// Someone left or dropped.
    Left {
        /// Their name.
        name: Arc<str>,
    },
    /// Public chat.
    Msg {
        /// Sender.
        from: Arc<str>,
        /// Message.
        text: Arc<str>,
    },
    /// Direct message to this client.
    Dm {
        /// Sender.
        from: Arc<str>,
        /// Message.
        text: Arc<str>,
    },
    /// A chat message from before this client joined (sent after `JOIN`,
    /// oldest first).
    History {
        /// When it was said, Unix milliseconds.
        unix_ms: u64,
        /// Sender.
        from: Arc<str>,
        /// Message.
        text: Arc<str>,
    },
    /// Binary mode: the server has heard nothing for a while; any command
    /// (a `PING`) keeps the connection open.
    Keepalive,
    /// A crowd's comings and goings since the last such event.
    Presence(Presence),
    /// The server is closing this connection, and why.
    Bye {
        /// Machine-readable reason (an error code word).
        code: ErrorCode,
        /// Human text.
        text: String,
    },
}

/// Anything a client can receive: the decoded form of a server frame or line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    /// The answer to the oldest unanswered command.
    Reply(Reply),
    /// A pushed event.
    Event(Event),
    /// A well-framed message of a type this build does not know, from a
    /// newer server. An unknown event (`0x40-0x7F`) can be ignored; an
    /// unknown reply (`0x80-0xFF`) still answers the oldest command.
    Unknown {
        /// The type byte.
        kind: u8,
    },
}

/// An error as it travels on the wire: a stable code word and human text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    /// Stable, machine-readable code.
    pub code: ErrorCode,
    /// Human explanation.
    pub message: String,
}

impl WireError {
    /// Builds an error from a code and its explanation. Control characters
    /// in the explanation (it may quote what a client sent) are escaped, as
    /// `\x04`, so an error never puts raw control bytes on a terminal.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: escape_controls(message.into()),
        }
    }
}

/// `text` with each control character written as `\xNN` (or `\u{NN}`
/// beyond ASCII); unchanged, without copying, when it has none.
fn escape_controls(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !c.is_control() {
            out.push(c);
        } else if c.is_ascii() {
            let _ = fmt::Write::write_fmt(&mut out, format_args!("\\x{:02x}", c as u32));
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $word:literal,)*) => {
        /// Every error code the server sends; the wire form is the word.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this build does not know (a newer server).
            Other(String),
        }

        impl ErrorCode {
            /// Every known code, for documentation checks.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The word sent on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $word,)*
                    ErrorCode::Other(s) => s,
                }
            }

            /// Maps a wire word back to its code.
            pub fn from_word(word: &str) -> ErrorCode {
                match word {
                    $($word => ErrorCode::$variant,)*
                    other => ErrorCode::Other(other.to_string()),
                }
            }
        }
    };
}

error_codes! {
    /// The name is already in use (ignoring case).
    NameTaken => "name_taken",
    /// The name breaks the naming rules.
    BadName => "bad_name",
    /// The command needs `JOIN` first.
    NotJoined => "not_joined",
    /// `JOIN` on a connection that has already joined.
    AlreadyJoined => "already_joined",
    /// `TELL` to a name that is not online.
    NoSuchUser => "no_such_user",
    /// A coordinate or colour outside the canvas or palette.
    OutOfRange => "out_of_range",
    /// Missing, extra or malformed arguments.
    BadArgs => "bad_args",
    /// `SYNC` from a seq the server no longer holds.
    TooOld => "too_old",
    /// `SYNC` from a seq above the latest.
    BadSeq => "bad_seq",
    /// The command word is not known.
    UnknownCommand => "unknown_command",
    /// A text line longer than the limit (the line is discarded).
    LineTooLong => "line_too_long",
    /// A text line that is not UTF-8.
    BadUtf8 => "bad_utf8",
    /// An empty text line.
    EmptyLine => "empty_line",
    /// The server is at its client limit; it closes the connection.
    ServerFull => "server_full",
    /// The client fell too far behind the event stream; it is disconnected.
    SlowConsumer => "slow_consumer",
    /// Binary mode: the first frame was not `HELLO`.
    HelloRequired => "hello_required",
    /// Binary mode: the client's protocol version is not supported.
    UnsupportedVersion => "unsupported_version",
    /// Binary mode: a frame length over the limit; the connection closes.
    FrameTooLarge => "frame_too_large",
    /// Binary mode: a frame that cannot carry a message (zero length); the
    /// connection closes.
    BadFrame => "bad_frame",
    /// Binary mode: an unknown message type (the connection stays usable).
    UnknownType => "unknown_type",
    /// The server is shutting down.
    ShuttingDown => "shutting_down",
    /// The password is missing or wrong, or an admin command without admin
    /// rights; nothing changed.
    Forbidden => "forbidden",
    /// `SET` before the user's placement cooldown ended; the message is
    /// the milliseconds left.
    Cooldown => "cooldown",
    /// The connection sent commands faster than `--rate-limit`.
    RateLimited => "rate_limited",
    /// Too many connections from this address; the connection closes.
    TooManyConnections => "too_many_connections",
    /// (as `BYE`) nothing was heard from a binary client for too long.
    IdleTimeout => "idle_timeout",
    /// (as `BYE`) an admin disconnected this user.
    Kicked => "kicked",
    /// `JOIN` with a banned name, or (as `BYE`) an admin banned this user.
    Banned => "banned",
    /// Cluster mode: Redis is unreachable; the change was not made.
    Unavailable => "unavailable",
    /// (as `BYE`) cluster mode: the server reloaded the canvas from Redis
    /// and its clients must reconnect.
    Resync => "resync",
    /// (as `BYE`) cluster mode: the server lost its hold on this user's
    /// name (it was cut off or paused longer than its lease) and another
    /// server's user has the name now.
    NameLost => "name_lost",
    /// Text mode: the line looked like HTTP (a web page attacking the port
    /// across protocols); the connection is closed without a reply.
    CrossProtocol => "cross_protocol",
    /// (as `BYE`) the connection neither joined nor gave the password
    /// within the server's join timeout.
    JoinTimeout => "join_timeout",
    /// (as `BYE`) too many failed `AUTH`s on this connection.
    TooManyFailures => "too_many_failures",
    /// The server takes TLS connections only (`--tls-only`) and the client
    /// spoke plaintext; the connection closes.
    TlsRequired => "tls_required",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a user name: 1-24 ASCII letters, digits, `_`, `-` or `.`.
pub fn validate_name(name: &str) -> Result<(), WireError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(WireError::new(
            ErrorCode::BadName,
            format!("a name has 1 to {MAX_NAME} characters"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(WireError::new(
            ErrorCode::BadName,
            "a name uses only letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

/// Checks chat text: 1-512 bytes of UTF-8 without control characters.
pub fn validate_text(text: &str) -> Result<(), WireError> {
    if text.is_empty() {
        return Err(WireError::new(ErrorCode::BadArgs, "the message is empty"));
    }
    if text.len() > MAX_TEXT {
        return Err(WireError::new(
            ErrorCode::BadArgs,
            format!("a message has at most {MAX_TEXT} bytes"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(WireError::new(
            ErrorCode::BadArgs,
            "a message may not contain control characters",
        ));
    }
    Ok(())
}

/// Checks a `PING` token: at most 64 bytes without control characters or
/// spaces (so it survives text mode unchanged).
pub fn validate_token(token: &str) -> Result<(), WireError> {
    if token.len() > MAX_TOKEN || token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(WireError::new(
            ErrorCode::BadArgs,
            format!("a ping token has at most {MAX_TOKEN} bytes and no spaces"),
        ));
    }
    Ok(())
}

/// The one-line command summary `HELP` answers with.
pub const HELP_TEXT: &str = "commands: JOIN <name> | SAY <text> | TELL <name> <text> | \
SET <x> <y> <color> | WHOSE <x> <y> [n] | CANVAS | SYNC <seq> | WHO [after] | PING [token] | \
AUTH <password> | KICK <name> | BAN <name> [addr] | UNBAN <name|address> | BANS [after] | \
ROLLBACK <name> [minutes] | FILL <x1> <y1> <x2> <y2> <color> | HELP | QUIT";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        assert!(validate_name("alice").is_ok());
        assert!(validate_name("A.b-c_9").is_ok());
        assert!(validate_name(&"x".repeat(24)).is_ok());
        for bad in ["", "has space", "émile", &"x".repeat(25), "semi;colon"] {
            assert_eq!(
                validate_name(bad).unwrap_err().code,
                ErrorCode::BadName,
                "{bad}"
            );
        }
    }

    #[test]
    fn text_rules() {
        assert!(validate_text("hello, wörld").is_ok());
        assert!(validate_text(&"a".repeat(512)).is_ok());
        assert!(validate_text(&"a".repeat(513)).is_err());
        assert!(validate_text("tab\there").is_err());
        assert!(validate_text("").is_err());
    }

    #[test]
    fn error_messages_never_carry_control_characters() {
        let e = WireError::new(ErrorCode::UnknownCommand, "\u{4}a\tb\u{7f}\u{85}é");
        assert_eq!(e.message, "\\x04a\\x09b\\x7f\\u{85}é");
        // Escaping twice changes nothing.
        assert_eq!(
            WireError::new(ErrorCode::BadArgs, e.message.clone()).message,
            e.message
        );
    }

    #[test]
    fn colors_by_name_ignore_case() {
        assert_eq!(color_by_name("RED"), Some(5));
        assert_eq!(color_by_name("purple"), Some(15));
        assert_eq!(color_by_name("mauve"), None);
    }

    #[test]
    fn protocol_md_documents_every_error_code_and_colour() {
        let doc = include_str!("../protocol.md");
        for code in ErrorCode::ALL {
            assert!(
                doc.contains(&format!("| `{code}` |")),
                "protocol.md lacks {code}"
            );
        }
        for c in PALETTE {
            assert!(
                doc.contains(&format!("| `{}` |", c.name)),
                "protocol.md lacks {}",
                c.name
            );
        }
    }

    #[test]
    fn error_words_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(&ErrorCode::from_word(code.as_str()), code);
        }
        assert_eq!(
            ErrorCode::from_word("from_the_future"),
            ErrorCode::Other("from_the_future".into())
        );
    }
}
