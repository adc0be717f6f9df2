//! pixchat frames read in place, for the load generator.
//!
//! The library's [`ClientCodec`](pixchat::protocol::binary::ClientCodec)
//! builds a [`ServerMsg`](pixchat::protocol::ServerMsg) per frame, with an
//! `Arc<str>` for every name: right for a client, but a watcher that must
//! keep up with millions of events per second would measure its own
//! allocator. Here a frame is looked at where it lies in the read buffer and
//! only the fields the bench needs are read; the byte layout is protocol.md's.

use pixchat::protocol::MAX_SERVER_FRAME;
use pixchat::protocol::binary::{event_type, reply_type};

use super::inbuf::InBuf;

/// A pixel event, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelRef<'a> {
    /// The canvas seq.
    pub seq: u64,
    /// Column.
    pub x: u16,
    /// Row.
    pub y: u16,
    /// Palette index.
    pub color: u8,
    /// Who placed it.
    pub name: &'a [u8],
}

/// The server frames the bench cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `PIXEL`.
    Pixel(PixelRef<'a>),
    /// `HELLO_OK`: the canvas id, size and latest seq.
    HelloOk {
        /// Canvas id: servers sharing one canvas through Redis report the
        /// same one.
        canvas_id: u64,
        /// Canvas width.
        width: u16,
        /// Canvas height.
        height: u16,
        /// Latest seq.
        seq: u64,
    },
    /// `WELCOME` (only its fixed head is read; the user list is skipped).
    Welcome {
        /// Canvas id.
        canvas_id: u64,
        /// Canvas width.
        width: u16,
        /// Canvas height.
        height: u16,
        /// The seq the snapshot that follows is at.
        seq: u64,
    },
    /// `SET_OK`.
    SetOk {
        /// The placement's seq.
        seq: u64,
    },
    /// `SNAPSHOT`, kept whole.
    Snapshot {
        /// Canvas id.
        canvas_id: u64,
        /// Seq of the snapshot.
        seq: u64,
        /// Canvas width.
        width: u16,
        /// Canvas height.
        height: u16,
        /// Pixels, two per byte, checked to be exactly the right length.
        packed: &'a [u8],
    },
    /// A frame the reader was told to skip, now entirely consumed.
    Skipped {
        /// Its type byte.
        kind: u8,
        /// Its length (type byte and fields).
        len: usize,
    },
    /// `ERROR`.
    Error {
        /// The error code word.
        code: &'a [u8],
    },
    /// `BYE`.
    Bye {
        /// The reason word (`slow_consumer`, `shutting_down`).
        code: &'a [u8],
    },
    /// Any other frame (`JOINED`, `LEFT`, `MSG`, ...).
    Other {
        /// Its type byte.
        kind: u8,
    },
}

/// A server stream the bench cannot read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameFault {
    /// A frame with length 0.
    #[error("the server sent an empty frame")]
    Empty,
    /// A length prefix above the protocol's limit.
    #[error("the server sent a frame of {0} bytes, over the protocol's limit")]
    TooLarge(usize),
    /// A frame whose fields do not fit its type.
    #[error("the server sent a malformed frame of type {0:#04x}")]
    Malformed(u8),
}

/// What [`parse_frame`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete frame and the bytes it took, length prefix included.
    Frame(Frame<'a>, usize),
    /// Not enough bytes yet; the frame is `need` bytes long in all, when
    /// that is known already.
    Incomplete {
        /// Total bytes the frame needs (0 when even the length is missing).
        need: usize,
    },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A `str8` at `at`: its bytes and the offset after it.
fn str8(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let n = usize::from(*b.get(at)?);
    Some((b.get(at + 1..at + 1 + n)?, at + 1 + n))
}

/// Reads the length prefix at the start of `data`, if all four bytes are
/// there, checked against the protocol's limits.
pub fn frame_len(data: &[u8]) -> Result<Option<usize>, FrameFault> {
    let Some(prefix) = data.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("four bytes")) as usize;
    match len {
        0 => Err(FrameFault::Empty),
        n if n > MAX_SERVER_FRAME => Err(FrameFault::TooLarge(n)),
        n => Ok(Some(n)),
    }
}

/// Parses the frame at the start of `data`.
pub fn parse_frame(data: &[u8]) -> Result<Parsed<'_>, FrameFault> {
    let Some(len) = frame_len(data)? else {
        return Ok(Parsed::Incomplete { need: 0 });
    };
    let Some(payload) = data.get(4..4 + len) else {
        return Ok(Parsed::Incomplete { need: 4 + len });
    };
    Ok(Parsed::Frame(parse_payload(payload)?, 4 + len))
}

/// Parses one frame payload (type byte first).
pub fn parse_payload(p: &[u8]) -> Result<Frame<'_>, FrameFault> {
    let kind = p[0];
    let bad = || FrameFault::Malformed(kind);
    let frame = match kind {
        event_type::PIXEL => {
            let (name, end) = str8(p, 14).ok_or_else(bad)?;
            if end != p.len() {
                return Err(bad());
            }
            Frame::Pixel(PixelRef {
                seq: be64(p, 1).ok_or_else(bad)?,
                x: be16(p, 9).ok_or_else(bad)?,
                y: be16(p, 11).ok_or_else(bad)?,
                color: p[13],
                name,
            })
        }
        reply_type::SET_OK if p.len() == 9 => Frame::SetOk {
            seq: be64(p, 1).ok_or_else(bad)?,
        },
        reply_type::HELLO_OK if p.len() == 23 => Frame::HelloOk {
            canvas_id: be64(p, 3).ok_or_else(bad)?,
            width: be16(p, 11).ok_or_else(bad)?,
            height: be16(p, 13).ok_or_else(bad)?,
            seq: be64(p, 15).ok_or_else(bad)?,
        },
        reply_type::WELCOME => {
            let (_, at) = str8(p, 1).ok_or_else(bad)?;
            Frame::Welcome {
                canvas_id: be64(p, at).ok_or_else(bad)?,
                width: be16(p, at + 8).ok_or_else(bad)?,
                height: be16(p, at + 10).ok_or_else(bad)?,
                seq: be64(p, at + 12).ok_or_else(bad)?,
            }
        }
        reply_type::SNAPSHOT => {
            let width = be16(p, 17).ok_or_else(bad)?;
            let height = be16(p, 19).ok_or_else(bad)?;
            let packed = p.get(22..).ok_or_else(bad)?;
            let pixels = usize::from(width) * usize::from(height);
            if p[21] != 4 || packed.len() != pixels.div_ceil(2) {
                return Err(bad());
            }
            Frame::Snapshot {
                canvas_id: be64(p, 1).ok_or_else(bad)?,
                seq: be64(p, 9).ok_or_else(bad)?,
                width,
                height,
                packed,
            }
        }
        reply_type::ERROR => Frame::Error {
            code: str8(p, 1).ok_or_else(bad)?.0,
        },
        event_type::BYE => Frame::Bye {
            code: str8(p, 1).ok_or_else(bad)?.0,
        },
        reply_type::SET_OK | reply_type::HELLO_OK => return Err(bad()),
        other => Frame::Other { kind: other },
    };
    Ok(frame)
}

/// Frames a watcher does not keep whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every frame is delivered whole (the buffer grows for a snapshot).
    Everything,
    /// A `SNAPSHOT` bigger than the buffer is consumed as it streams in and
    /// reported as [`Frame::Skipped`], so a watcher never holds 512 KiB for
    /// a canvas it does not look at.
    SkipBigSnapshots,
}

/// Frames from a socket, read in place from an [`InBuf`].
#[derive(Debug)]
pub struct FrameReader {
    buf: InBuf,
    keep: Keep,
    /// The frame being skipped: its type, length and bytes still to drop.
    skipping: Option<(u8, usize, usize)>,
    base: usize,
}

impl FrameReader {
    /// A reader with a `capacity`-byte buffer.
    pub fn new(capacity: usize, keep: Keep) -> Self {
        Self {
            buf: InBuf::new(capacity),
            keep,
            skipping: None,
            base: capacity,
        }
    }

    /// Where the next socket read goes; never empty.
    pub fn spare(&mut self) -> &mut [u8] {
        let need = match (self.skipping, frame_len(self.buf.data())) {
            (None, Ok(Some(len))) => 4 + len,
            _ => 0,
        };
        self.buf.spare(need)
    }

    /// Marks `n` bytes of [`FrameReader::spare`] as read.
    pub fn advance(&mut self, n: usize) {
        self.buf.advance(n);
    }

    /// The next complete frame, or `None` until more bytes are read.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameFault> {
        if self.skipping.is_none() && self.keep == Keep::SkipBigSnapshots {
            let data = self.buf.data();
            if let (Some(len), Some(&kind)) = (frame_len(data)?, data.get(4))
                && kind == reply_type::SNAPSHOT
                && 4 + len > self.base
            {
                self.skipping = Some((kind, len, 4 + len));
            }
        }
        if let Some((kind, len, left)) = self.skipping {
            let drop = left.min(self.buf.len());
            self.buf.consume(drop);
            if drop < left {
                self.skipping = Some((kind, len, left - drop));
                return Ok(None);
            }
            self.skipping = None;
            return Ok(Some(Frame::Skipped { kind, len }));
        }
        let Some(len) = frame_len(self.buf.data())? else {
            return Ok(None);
        };
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let bytes = self.buf.take(4 + len);
        parse_payload(&bytes[4..]).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::BytesMut;
    use proptest::prelude::*;

    use super::*;
    use pixchat::protocol::binary::{encode_event, encode_reply, encode_snapshot};
    use pixchat::protocol::{ErrorCode, Event, Pixel, Reply, Snapshot, Welcome, WireError};

    fn pixel(seq: u64, name: &str) -> Event {
        Event::Pixel(Pixel {
            seq,
            x: 1000 + seq as u16,
            y: 7,
            color: (seq % 16) as u8,
            name: Arc::from(name),
        })
    }

    /// A stream as a watcher sees it: hello, welcome, a snapshot, events.
    fn stream(side: u16) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_reply(
            &Reply::Hello(pixchat::protocol::HelloInfo {
                version: 1,
                canvas_id: 9,
                width: side,
                height: side,
                seq: 41,
            }),
            &mut out,
        );
        encode_reply(
            &Reply::Welcome(Welcome {
                name: "v1".into(),
                canvas_id: 9,
                width: side,
                height: side,
                seq: 42,
                palette: vec![([1, 2, 3], "white".into())],
                online: 2,
                users: vec!["v1".into(), "w0".into()],
                resumed: false,
            }),
            &mut out,
        );
        out.extend_from_slice(&encode_snapshot(&Snapshot {
            canvas_id: 9,
            seq: 42,
            width: side,
            height: side,
            pixels: vec![3; usize::from(side) * usize::from(side)],
        }));
        encode_event(&Event::Joined { name: "w0".into() }, &mut out);
        for seq in 43..143 {
            encode_event(&pixel(seq, "w0"), &mut out);
        }
        encode_reply(&Reply::Set { seq: 143 }, &mut out);
        encode_event(
            &Event::Bye {
                code: ErrorCode::SlowConsumer,
                text: "behind".into(),
            },
            &mut out,
        );
        out.to_vec()
    }

    /// A compact description of a frame, to compare runs.
    fn describe(f: &Frame<'_>) -> String {
        match f {
            Frame::Pixel(p) => format!(
                "pixel {} {} {} {} {}",
                p.seq,
                p.x,
                p.y,
                p.color,
                String::from_utf8_lossy(p.name)
            ),
            Frame::Snapshot {
                seq, packed, width, ..
            } => format!("snapshot {seq} {width} {}", packed.len()),
            Frame::Skipped { kind, len } => format!("skipped {kind:#x} {len}"),
            other => format!("{other:?}"),
        }
    }

    /// Feeds `bytes` to a reader in chunks cut at `cuts` and collects frames.
    fn read_in_chunks(bytes: &[u8], cuts: &[usize], cap: usize, keep: Keep) -> Vec<String> {
        let mut r = FrameReader::new(cap, keep);
        let mut out = Vec::new();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.push(bytes.len());
        points.sort_unstable();
        let mut at = 0;
        for end in points {
            while at < end {
                let spare = r.spare();
                let n = spare.len().min(end - at);
                spare[..n].copy_from_slice(&bytes[at..at + n]);
                r.advance(n);
                at += n;
                while let Some(f) = r.next_frame().expect("valid stream") {
                    out.push(describe(&f));
                }
            }
        }
        out
    }

    #[test]
    fn the_protocol_md_pixel_vector_parses_in_place() {
        let bytes = [
            0, 0, 0, 0x12, 0x40, 0, 0, 0, 0, 0, 0, 0, 7, 0, 3, 0, 4, 5, 3, b'b', b'o', b'b',
        ];
        let Ok(Parsed::Frame(Frame::Pixel(p), used)) = parse_frame(&bytes) else {
            panic!("not a pixel");
        };
        assert_eq!(used, bytes.len());
        assert_eq!(
            (p.seq, p.x, p.y, p.color, p.name),
            (7, 3, 4, 5, &b"bob"[..])
        );
        for cut in 0..bytes.len() {
            assert!(matches!(
                parse_frame(&bytes[..cut]),
                Ok(Parsed::Incomplete { .. })
            ));
        }
    }

    #[test]
    fn the_protocol_md_hello_ok_vector_parses() {
        let bytes = [
            0, 0, 0, 0x17, 0x81, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0x40, 0, 0x40, 0, 0, 0, 0, 0, 0,
            0, 9,
        ];
        let Ok(Parsed::Frame(frame, used)) = parse_frame(&bytes) else {
            panic!("not a frame");
        };
        assert_eq!(used, bytes.len());
        assert_eq!(
            frame,
            Frame::HelloOk {
                canvas_id: 0x0102_0304_0506_0708,
                width: 64,
                height: 64,
                seq: 9
            }
        );
    }

    #[test]
    fn whole_stream_in_one_buffer() {
        let bytes = stream(16);
        let frames = read_in_chunks(&bytes, &[], 1 << 16, Keep::Everything);
        assert_eq!(frames.len(), 3 + 1 + 100 + 2);
        assert!(frames[0].starts_with("HelloOk"), "{}", frames[0]);
        assert!(frames[1].contains("seq: 42"), "{}", frames[1]);
        assert_eq!(frames[2], "snapshot 42 16 128");
        assert_eq!(frames[4], "pixel 43 1043 7 11 w0");
        assert_eq!(frames[103], "pixel 142 1142 7 14 w0");
        assert_eq!(frames[104], "SetOk { seq: 143 }");
        assert_eq!(
            frames[105],
            "Bye { code: [115, 108, 111, 119, 95, 99, 111, 110, 115, 117, 109, 101, 114] }"
        );
    }

    #[test]
    fn a_big_snapshot_is_skipped_or_kept_as_asked() {
        let bytes = stream(100); // 5,000-byte snapshot, buffer of 256
        let kept = read_in_chunks(&bytes, &[3, 500, 4000], 256, Keep::Everything);
        assert_eq!(kept[2], "snapshot 42 100 5000");
        let skipped = read_in_chunks(&bytes, &[3, 500, 4000], 256, Keep::SkipBigSnapshots);
        assert_eq!(skipped[2], "skipped 0x84 5022");
        assert_eq!(kept[3..], skipped[3..]);
    }

    #[test]
    fn broken_frames_are_faults() {
        assert_eq!(parse_frame(&[0, 0, 0, 0]), Err(FrameFault::Empty));
        assert_eq!(
            parse_frame(&[0xFF, 0, 0, 0, 1]),
            Err(FrameFault::TooLarge(0xFF00_0000))
        );
        // A pixel whose name runs past the frame.
        assert_eq!(
            parse_frame(&[
                0, 0, 0, 16, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 9, b'x'
            ]),
            Err(FrameFault::Malformed(0x40))
        );
        // SET_OK with a short seq.
        assert_eq!(
            parse_frame(&[0, 0, 0, 3, 0x83, 0, 1]),
            Err(FrameFault::Malformed(0x83))
        );
        let mut out = BytesMut::new();
        encode_reply(
            &Reply::Error(WireError::new(ErrorCode::ServerFull, "full")),
            &mut out,
        );
        assert!(matches!(
            parse_frame(&out),
            Ok(Parsed::Frame(
                Frame::Error {
                    code: b"server_full"
                },
                _
            ))
        ));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_frames(
            cuts in proptest::collection::vec(0usize..20_000, 0..40),
            cap in 64usize..2048,
        ) {
            let bytes = stream(60);
            let whole = read_in_chunks(&bytes, &[], 1 << 16, Keep::Everything);
            prop_assert_eq!(&read_in_chunks(&bytes, &cuts, cap, Keep::Everything), &whole);
            let skipped = read_in_chunks(&bytes, &cuts, cap, Keep::SkipBigSnapshots);
            prop_assert_eq!(&skipped[3..], &whole[3..]);
        }
    }
}
