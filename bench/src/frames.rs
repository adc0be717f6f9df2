//! Server frames from one socket, read in place: the library's own
//! decoder ([`split_server_frame`] and [`decode_server_ref`], which borrow
//! from the read buffer instead of allocating), plus the one thing a joining
//! bench client needs that a codec does not do: let a snapshot bigger than
//! the buffer stream past without keeping it.

use pixchat::protocol::WireError;
use pixchat::protocol::binary::{
    FrameError, ServerMsgRef, decode_server_ref, reply_type, server_frame_len, split_server_frame,
};

use super::inbuf::InBuf;

/// Frames a reader does not keep whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every frame is delivered whole (the buffer grows for a snapshot).
    Everything,
    /// A `SNAPSHOT` bigger than the buffer is consumed as it streams in and
    /// reported as [`Frame::Skipped`], so a watcher never holds 512 KiB for
    /// a canvas it does not look at.
    SkipBigSnapshots,
}

/// What [`FrameReader::next_frame`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole message, decoded where it lies.
    Msg(ServerMsgRef<'a>),
    /// A frame the reader was told to skip, now entirely consumed.
    Skipped {
        /// Its type byte.
        kind: u8,
        /// Its length with the prefix.
        len: usize,
    },
}

/// A server stream the bench cannot read on.
#[derive(Debug, thiserror::Error)]
pub enum FrameFault {
    /// The framing is broken (an empty or oversized frame).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A well-framed message that does not decode.
    #[error("the server sent a malformed message: {0}")]
    Malformed(#[from] WireError),
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
        let need = match (self.skipping, server_frame_len(self.buf.data())) {
            (None, Ok(Some(len))) => len,
            _ => 0,
        };
        self.buf.spare(need)
    }

    /// Marks `n` bytes of [`FrameReader::spare`] as read.
    pub fn advance(&mut self, n: usize) {
        self.buf.advance(n);
    }

    /// Bytes read but not parsed yet (the start of the next frames).
    pub fn unparsed(&self) -> &[u8] {
        self.buf.data()
    }

    /// The next complete frame, or `None` until more bytes are read.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameFault> {
        if self.skipping.is_none() && self.keep == Keep::SkipBigSnapshots {
            let data = self.buf.data();
            if let (Some(len), Some(&kind)) = (server_frame_len(data)?, data.get(4))
                && kind == reply_type::SNAPSHOT
                && len > self.base
            {
                self.skipping = Some((kind, len, len));
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
        let Some(used) = split_server_frame(self.buf.data())?.map(|(_, used)| used) else {
            return Ok(None);
        };
        let frame = self.buf.take(used);
        Ok(Some(Frame::Msg(decode_server_ref(&frame[4..])?)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::BytesMut;
    use proptest::prelude::*;

    use super::*;
    use pixchat::protocol::binary::{encode_event, encode_reply, encode_snapshot};
    use pixchat::protocol::{
        ErrorCode, Event, HelloInfo, Pixel, Reply, ServerMsg, Snapshot, Welcome,
    };

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
            &Reply::Hello(HelloInfo {
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
            Frame::Msg(ServerMsgRef::Pixel(p)) => {
                format!("pixel {} {} {} {} {}", p.seq, p.x, p.y, p.color, p.name)
            }
            Frame::Msg(ServerMsgRef::Snapshot(s)) => {
                format!("snapshot {} {} {}", s.seq, s.width, s.packed.len())
            }
            Frame::Skipped { kind, len } => format!("skipped {kind:#x} {len}"),
            Frame::Msg(other) => format!("{:?}", other.clone().into_owned()),
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
    fn whole_stream_in_one_buffer() {
        let bytes = stream(16);
        let frames = read_in_chunks(&bytes, &[], 1 << 16, Keep::Everything);
        assert_eq!(frames.len(), 3 + 1 + 100 + 2);
        assert!(frames[0].contains("Hello"), "{}", frames[0]);
        assert!(frames[1].contains("seq: 42"), "{}", frames[1]);
        assert_eq!(frames[2], "snapshot 42 16 128");
        assert_eq!(frames[4], "pixel 43 1043 7 11 w0");
        assert_eq!(frames[103], "pixel 142 1142 7 14 w0");
        assert_eq!(
            frames[104],
            format!("{:?}", ServerMsg::Reply(Reply::Set { seq: 143 }))
        );
        assert!(frames[105].contains("SlowConsumer"), "{}", frames[105]);
    }

    #[test]
    fn a_big_snapshot_is_skipped_or_kept_as_asked() {
        let bytes = stream(100); // 5,000-byte snapshot, buffer of 256
        let kept = read_in_chunks(&bytes, &[3, 500, 4000], 256, Keep::Everything);
        assert_eq!(kept[2], "snapshot 42 100 5000");
        let skipped = read_in_chunks(&bytes, &[3, 500, 4000], 256, Keep::SkipBigSnapshots);
        assert_eq!(skipped[2], "skipped 0x84 5026");
        assert_eq!(kept[3..], skipped[3..]);
    }

    #[test]
    fn broken_frames_are_faults() {
        let mut r = FrameReader::new(64, Keep::Everything);
        r.spare()[..4].copy_from_slice(&[0, 0, 0, 0]);
        r.advance(4);
        assert!(matches!(
            r.next_frame(),
            Err(FrameFault::Frame(FrameError::Empty))
        ));
        // SET_OK with a short seq: framed, but malformed.
        let mut r = FrameReader::new(64, Keep::Everything);
        r.spare()[..7].copy_from_slice(&[0, 0, 0, 3, 0x83, 0, 1]);
        r.advance(7);
        assert!(matches!(r.next_frame(), Err(FrameFault::Malformed(_))));
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
