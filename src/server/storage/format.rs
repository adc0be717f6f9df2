//! On-disk formats: the snapshot file and the append-only journal of
//! records. Everything is big-endian and checksummed with CRC-32, so a torn
//! write or a flipped bit is detected instead of replayed.
//!
//! Journal: a header (`PXCHLOG1`, canvas id, base seq, base chat seq, CRC),
//! then records of `len:u32 crc:u32 payload[len]`. Snapshot: `PXCHSNP1`, the
//! body, and a CRC of everything before it; it is only ever replaced by an
//! atomic rename, so it is whole or absent.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Buf, BufMut};

use super::super::canvas::{Canvas, PixelMeta};
use super::{ChatLine, Persisted};
use crate::protocol::PALETTE;

const LOG_MAGIC: &[u8; 8] = b"PXCHLOG1";
const SNAP_MAGIC: &[u8; 8] = b"PXCHSNP1";
/// Journal header: magic, canvas id, base seq, base chat seq, CRC.
pub const LOG_HEADER_LEN: usize = 8 + 8 + 8 + 8 + 4;
/// No record is anywhere near this long; a larger length is damage.
const MAX_RECORD: usize = 4096;
const PIXEL: u8 = 1;
const CHAT: u8 = 2;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An accepted pixel.
    Pixel {
        /// Its seq.
        seq: u64,
        /// Column.
        x: u16,
        /// Row.
        y: u16,
        /// Palette index.
        color: u8,
        /// Unix ms when accepted.
        unix_ms: u64,
        /// Author.
        name: Arc<str>,
    },
    /// A chat message.
    Chat(ChatLine),
}

/// Appends one pixel record.
pub fn put_pixel(
    out: &mut Vec<u8>,
    seq: u64,
    (x, y, color): (u16, u16, u8),
    unix_ms: u64,
    name: &str,
) {
    put_record(out, |p| {
        p.put_u8(PIXEL);
        p.put_u64(seq);
        p.put_u16(x);
        p.put_u16(y);
        p.put_u8(color);
        p.put_u64(unix_ms);
        put_str(p, name, 1);
    });
}

/// Appends one chat record.
pub fn put_chat(out: &mut Vec<u8>, line: &ChatLine) {
    put_record(out, |p| {
        p.put_u8(CHAT);
        p.put_u64(line.chat_seq);
        p.put_u64(line.unix_ms);
        put_str(p, &line.from, 1);
        put_str(p, &line.text, 2);
    });
}

fn put_record(out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.put_u32(0);
    out.put_u32(0);
    payload(out);
    let body = start + 8;
    let len = (out.len() - body) as u32;
    let crc = crc32fast::hash(&out[body..]);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4..body].copy_from_slice(&crc.to_be_bytes());
}

/// Writes a string with a `len_bytes`-byte length prefix (1 or 2); longer
/// strings are clipped, though the server validates lengths long before.
fn put_str(out: &mut Vec<u8>, s: &str, len_bytes: usize) {
    let max = if len_bytes == 1 { 255 } else { 65535 };
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if len_bytes == 1 {
        out.put_u8(end as u8);
    } else {
        out.put_u16(end as u16);
    }
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// The journal header for a log that follows the given state.
pub fn log_header(canvas_id: u64, seq: u64, chat_seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOG_HEADER_LEN);
    out.extend_from_slice(LOG_MAGIC);
    out.put_u64(canvas_id);
    out.put_u64(seq);
    out.put_u64(chat_seq);
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out
}

/// What a journal file held.
#[derive(Debug, Default)]
pub struct Scan {
    /// Canvas id from the header.
    pub canvas_id: u64,
    /// The intact records, in order.
    pub records: Vec<Record>,
    /// Bytes of the file that are intact (header included).
    pub good_len: usize,
    /// Where and why reading stopped early, if it did.
    pub damage: Option<String>,
}

/// Reads a journal file's bytes up to the first damaged record.
pub fn scan_log(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    if bytes.len() < LOG_HEADER_LEN
        || &bytes[..8] != LOG_MAGIC
        || crc32fast::hash(&bytes[..LOG_HEADER_LEN - 4]) != (&bytes[LOG_HEADER_LEN - 4..]).get_u32()
    {
        scan.damage = Some("the journal header is missing or damaged".into());
        return scan;
    }
    scan.canvas_id = (&bytes[8..16]).get_u64();
    let mut at = LOG_HEADER_LEN;
    scan.good_len = at;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 8 {
            scan.damage = Some(format!("torn record header at byte {at}"));
            break;
        }
        let len = (&rest[..4]).get_u32() as usize;
        let crc = (&rest[4..8]).get_u32();
        if len == 0 || len > MAX_RECORD {
            scan.damage = Some(format!("impossible record length {len} at byte {at}"));
            break;
        }
        if rest.len() < 8 + len {
            scan.damage = Some(format!("torn record at byte {at}"));
            break;
        }
        let payload = &rest[8..8 + len];
        if crc32fast::hash(payload) != crc {
            scan.damage = Some(format!("checksum mismatch in the record at byte {at}"));
            break;
        }
        match decode_record(payload) {
            Some(r) => scan.records.push(r),
            None => {
                scan.damage = Some(format!("undecodable record at byte {at}"));
                break;
            }
        }
        at += 8 + len;
        scan.good_len = at;
    }
    scan
}

/// A bounds-checked reader; `None` on any short read.
struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|mut b| b.get_u16())
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|mut b| b.get_u32())
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|mut b| b.get_u64())
    }
    fn str(&mut self, len_bytes: usize) -> Option<Arc<str>> {
        let n = if len_bytes == 1 {
            usize::from(self.u8()?)
        } else {
            usize::from(self.u16()?)
        };
        std::str::from_utf8(self.take(n)?).ok().map(Arc::from)
    }
}

fn decode_record(payload: &[u8]) -> Option<Record> {
    let mut r = Rd(payload);
    let rec = match r.u8()? {
        PIXEL => Record::Pixel {
            seq: r.u64()?,
            x: r.u16()?,
            y: r.u16()?,
            color: r.u8()?,
            unix_ms: r.u64()?,
            name: r.str(1)?,
        },
        CHAT => Record::Chat(ChatLine {
            chat_seq: r.u64()?,
            unix_ms: r.u64()?,
            from: r.str(1)?,
            text: r.str(2)?,
        }),
        _ => return None,
    };
    r.0.is_empty().then_some(rec)
}

/// Serialises the whole persisted state into snapshot bytes.
pub fn encode_snapshot(state: &Persisted) -> Vec<u8> {
    let c = &state.canvas;
    let n = usize::from(c.width()) * usize::from(c.height());
    let mut out = Vec::with_capacity(64 + n * 21);
    out.extend_from_slice(SNAP_MAGIC);
    out.put_u64(c.id());
    out.put_u16(c.width());
    out.put_u16(c.height());
    out.put_u64(c.seq());
    out.put_u64(state.chat_seq);
    out.put_u8(PALETTE.len() as u8);
    for color in PALETTE {
        out.extend_from_slice(&color.rgb);
        put_str(&mut out, color.name, 1);
    }
    // Only names still on the canvas are written, so the table shrinks
    // when old authors are painted over.
    let mut ids: HashMap<Arc<str>, u32> = HashMap::new();
    let mut names: Vec<Arc<str>> = Vec::new();
    let mut colors = Vec::with_capacity(n);
    let mut authors = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut seqs = Vec::with_capacity(n);
    for (color, meta) in c.cells() {
        colors.push(color);
        match meta {
            None => {
                authors.push(u32::MAX);
                times.push(0);
                seqs.push(0);
            }
            Some(m) => {
                let id = *ids.entry(m.name.clone()).or_insert_with(|| {
                    names.push(m.name.clone());
                    (names.len() - 1) as u32
                });
                authors.push(id);
                times.push(m.unix_ms);
                seqs.push(m.seq);
            }
        }
    }
    out.put_u32(names.len() as u32);
    for name in &names {
        put_str(&mut out, name, 1);
    }
    out.extend_from_slice(&colors);
    authors.iter().for_each(|&a| out.put_u32(a));
    times.iter().for_each(|&t| out.put_u64(t));
    seqs.iter().for_each(|&s| out.put_u64(s));
    out.put_u16(state.chat.len() as u16);
    for line in &state.chat {
        out.put_u64(line.chat_seq);
        out.put_u64(line.unix_ms);
        put_str(&mut out, &line.from, 1);
        put_str(&mut out, &line.text, 2);
    }
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out
}

/// Reads snapshot bytes back; `Err` says what is wrong with them.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Persisted, String> {
    if bytes.len() < SNAP_MAGIC.len() + 4 || &bytes[..8] != SNAP_MAGIC {
        return Err("not a pixchat snapshot".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != (&crc[..]).get_u32() {
        return Err("the snapshot checksum does not match (the file is damaged)".into());
    }
    let short = || "the snapshot is truncated".to_string();
    let mut r = Rd(&body[8..]);
    let id = r.u64().ok_or_else(short)?;
    let width = r.u16().ok_or_else(short)?;
    let height = r.u16().ok_or_else(short)?;
    let seq = r.u64().ok_or_else(short)?;
    let chat_seq = r.u64().ok_or_else(short)?;
    let palette_len = r.u8().ok_or_else(short)?;
    let mut palette = Vec::new();
    for _ in 0..palette_len {
        let rgb = r.take(3).ok_or_else(short)?;
        let name = r.str(1).ok_or_else(short)?;
        palette.push(([rgb[0], rgb[1], rgb[2]], name));
    }
    let same_palette = palette.len() == PALETTE.len()
        && palette
            .iter()
            .zip(PALETTE)
            .all(|((rgb, name), c)| *rgb == c.rgb && &**name == c.name);
    if !same_palette {
        return Err("the snapshot uses a palette this build does not know".into());
    }
    let name_count = r.u32().ok_or_else(short)?;
    let mut names = Vec::new();
    for _ in 0..name_count {
        names.push(r.str(1).ok_or_else(short)?);
    }
    let n = usize::from(width) * usize::from(height);
    let colors = r.take(n).ok_or_else(short)?;
    let authors = r.take(n * 4).ok_or_else(short)?;
    let times = r.take(n * 8).ok_or_else(short)?;
    let seqs = r.take(n * 8).ok_or_else(short)?;
    let mut bad_author = false;
    let cells = (0..n).map(|i| {
        let author = (&authors[i * 4..]).get_u32();
        let meta = if author == u32::MAX {
            None
        } else if let Some(name) = names.get(author as usize) {
            Some(PixelMeta {
                name: name.clone(),
                unix_ms: (&times[i * 8..]).get_u64(),
                seq: (&seqs[i * 8..]).get_u64(),
            })
        } else {
            bad_author = true;
            None
        };
        (colors[i], meta)
    });
    let canvas = Canvas::restore(id, width, height, seq, cells.collect::<Vec<_>>())
        .map_err(|e| format!("the snapshot's canvas is invalid: {}", e.message))?;
    if bad_author {
        return Err("the snapshot names an unknown author".into());
    }
    let chat_len = r.u16().ok_or_else(short)?;
    let mut chat = VecDeque::new();
    for _ in 0..chat_len {
        chat.push_back(ChatLine {
            chat_seq: r.u64().ok_or_else(short)?,
            unix_ms: r.u64().ok_or_else(short)?,
            from: r.str(1).ok_or_else(short)?,
            text: r.str(2).ok_or_else(short)?,
        });
    }
    if !r.0.is_empty() {
        return Err("the snapshot has trailing bytes".into());
    }
    Ok(Persisted {
        canvas,
        chat,
        chat_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Persisted {
        let mut canvas = Canvas::new(77, 3, 2).unwrap();
        let al: Arc<str> = Arc::from("al");
        canvas.apply(1, 1, 5, &al, 1_000);
        canvas.apply(2, 0, 15, &Arc::from("bé"), 2_000);
        let mut chat = VecDeque::new();
        chat.push_back(ChatLine {
            chat_seq: 1,
            unix_ms: 3_000,
            from: al,
            text: Arc::from("hello"),
        });
        Persisted {
            canvas,
            chat,
            chat_seq: 1,
        }
    }

    #[test]
    fn snapshots_round_trip() {
        let s = sample();
        let back = decode_snapshot(&encode_snapshot(&s)).unwrap();
        assert_eq!(back.canvas.snapshot(), s.canvas.snapshot());
        assert_eq!(back.canvas.whose(2, 0), s.canvas.whose(2, 0));
        assert_eq!(back.canvas.whose(0, 0), None);
        assert_eq!(back.chat, s.chat);
        assert_eq!(back.chat_seq, 1);
    }

    #[test]
    fn every_flipped_byte_in_a_snapshot_is_detected() {
        let bytes = encode_snapshot(&sample());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode_snapshot(&bad).is_err(), "flip at {i} went unnoticed");
        }
        assert!(decode_snapshot(&bytes[..bytes.len() - 1]).is_err());
    }

    fn journal(n: u64) -> Vec<u8> {
        let mut out = log_header(77, 0, 0);
        for seq in 1..=n {
            put_pixel(&mut out, seq, (1, 2, 3), 10 * seq, "al");
        }
        out
    }

    #[test]
    fn journals_scan_back_their_records() {
        let mut bytes = journal(3);
        put_chat(
            &mut bytes,
            &ChatLine {
                chat_seq: 1,
                unix_ms: 5,
                from: Arc::from("al"),
                text: Arc::from("hi"),
            },
        );
        let scan = scan_log(&bytes);
        assert_eq!(scan.damage, None);
        assert_eq!(scan.canvas_id, 77);
        assert_eq!(scan.records.len(), 4);
        assert_eq!(scan.good_len, bytes.len());
        assert!(matches!(
            &scan.records[2],
            Record::Pixel {
                seq: 3,
                unix_ms: 30,
                ..
            }
        ));
    }

    #[test]
    fn a_torn_tail_keeps_every_whole_record() {
        let bytes = journal(5);
        let whole = scan_log(&bytes).good_len;
        for cut in LOG_HEADER_LEN..whole {
            let scan = scan_log(&bytes[..cut]);
            let kept = scan.records.len();
            assert!(scan.good_len <= cut);
            // Every record that fits entirely before the cut survives.
            assert_eq!(scan_log(&bytes[..scan.good_len]).records.len(), kept);
            assert_eq!(scan.damage.is_some(), scan.good_len != cut, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_stops_at_the_damaged_record() {
        let bytes = journal(5);
        let record_len = (bytes.len() - LOG_HEADER_LEN) / 5;
        for i in LOG_HEADER_LEN..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let scan = scan_log(&bad);
            let damaged_record = (i - LOG_HEADER_LEN) / record_len;
            assert_eq!(scan.records.len(), damaged_record, "flip at {i}");
            assert!(scan.damage.is_some());
        }
    }
}
