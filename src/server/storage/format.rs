//! On-disk formats: the snapshot file and the append-only journal of
//! records. Everything is big-endian and checksummed with CRC-32, so a torn
//! write or a flipped bit is detected instead of replayed.
//!
//! Journal: a header, then records of `len:u32 crc:u32 payload[len]`.
//! The header (`PXCHLOG2`, canvas id, base seq, base chat seq, width,
//! height, CRC) is written twice, so one damaged copy costs nothing; the
//! older `PXCHLOG1` header (one copy, no size) is still read. Records are
//! the world's [`Change`]s: pixels, chat, bans and unbans. Snapshot:
//! `PXCHSNP2` (with the bans; `PXCHSNP1` without them is still read), the
//! body, and a CRC of everything before it; it is only ever replaced by an
//! atomic rename, so it is whole or absent.
//!
//! Scanning tells a *torn tail* (damage with no intact record after it:
//! what a crash in the middle of a write leaves) from *corruption* (damage
//! with intact records after it), because only the first may be cut
//! without asking the operator.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Buf, BufMut};

use super::super::canvas::{Canvas, PixelMeta};
use super::super::world::{ChatLine, World};
use crate::protocol::PALETTE;

/// One journal record: an ordered change to the world.
pub use super::super::world::Change as Record;

const LOG_MAGIC_V1: &[u8; 8] = b"PXCHLOG1";
const LOG_MAGIC_V2: &[u8; 8] = b"PXCHLOG2";
const SNAP_MAGIC_V1: &[u8; 8] = b"PXCHSNP1";
const SNAP_MAGIC: &[u8; 8] = b"PXCHSNP2";
/// A version 1 journal header: magic, canvas id, base seq, base chat seq,
/// CRC.
pub const LOG_V1_HEADER_LEN: usize = 8 + 8 + 8 + 8 + 4;
/// One copy of a version 2 header: the same plus the canvas size.
const HEADER_COPY_LEN: usize = 8 + 8 + 8 + 8 + 2 + 2 + 4;
/// A version 2 journal header: two identical copies.
pub const LOG_HEADER_LEN: usize = 2 * HEADER_COPY_LEN;
/// No record is anywhere near this long; a larger length is damage.
const MAX_RECORD: usize = 4096;
const PIXEL: u8 = 1;
const CHAT: u8 = 2;
const BAN: u8 = 3;
const UNBAN: u8 = 4;
/// Payload bytes of a pixel record before its name.
const PIXEL_FIXED: usize = 1 + 8 + 2 + 2 + 1 + 8 + 1;
/// Payload bytes of a chat record before its sender's name.
const CHAT_FIXED: usize = 1 + 8 + 8 + 1;

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

/// Appends one ban (or unban) record.
pub fn put_ban(out: &mut Vec<u8>, name: &str, banned: bool) {
    put_record(out, |p| {
        p.put_u8(if banned { BAN } else { UNBAN });
        put_str(p, name, 1);
    });
}

/// Appends the record of any change.
pub fn put_change(out: &mut Vec<u8>, change: &Record) {
    match change {
        Record::Pixel {
            seq,
            x,
            y,
            color,
            unix_ms,
            name,
        } => put_pixel(out, *seq, (*x, *y, *color), *unix_ms, name),
        Record::Chat(line) => put_chat(out, line),
        Record::Ban(name) => put_ban(out, name, true),
        Record::Unban(name) => put_ban(out, name, false),
    }
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
    let s = &s[..s.floor_char_boundary(max)];
    if len_bytes == 1 {
        out.put_u8(s.len() as u8);
    } else {
        out.put_u16(s.len() as u16);
    }
    out.extend_from_slice(s.as_bytes());
}

/// What a journal header says: the state the journal's records follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version (1 or 2).
    pub version: u8,
    /// The canvas the records belong to.
    pub canvas_id: u64,
    /// Seq of the state before the first record.
    pub seq: u64,
    /// Chat seq of that state.
    pub chat_seq: u64,
    /// Canvas size (version 2 only), so a journal that starts at seq 0
    /// can rebuild its canvas without the snapshot.
    pub size: Option<(u16, u16)>,
}

impl Header {
    /// Bytes of this header's version on disk, where the records begin.
    pub fn records_at(&self) -> usize {
        if self.version == 1 {
            LOG_V1_HEADER_LEN
        } else {
            LOG_HEADER_LEN
        }
    }
}

/// The version 2 journal header (two copies) for a journal that follows
/// the given state.
pub fn log_header(canvas_id: u64, seq: u64, chat_seq: u64, (w, h): (u16, u16)) -> Vec<u8> {
    let mut copy = Vec::with_capacity(HEADER_COPY_LEN);
    copy.extend_from_slice(LOG_MAGIC_V2);
    copy.put_u64(canvas_id);
    copy.put_u64(seq);
    copy.put_u64(chat_seq);
    copy.put_u16(w);
    copy.put_u16(h);
    let crc = crc32fast::hash(&copy);
    copy.put_u32(crc);
    let mut out = copy.clone();
    out.extend_from_slice(&copy);
    out
}

/// The fields of a `len`-byte header that starts with `magic` and ends
/// with a CRC of the rest, if it is intact.
fn checked<'a>(bytes: &'a [u8], magic: &[u8; 8], len: usize) -> Option<&'a [u8]> {
    let header = bytes.get(..len)?;
    let (body, mut crc) = header.split_at(len - 4);
    (&body[..8] == magic && crc32fast::hash(body) == crc.get_u32()).then(|| &body[8..])
}

fn header_copy_v2(bytes: &[u8]) -> Option<Header> {
    let mut r = checked(bytes, LOG_MAGIC_V2, HEADER_COPY_LEN)?;
    Some(Header {
        version: 2,
        canvas_id: r.get_u64(),
        seq: r.get_u64(),
        chat_seq: r.get_u64(),
        size: Some((r.get_u16(), r.get_u16())),
    })
}

fn header_v1(bytes: &[u8]) -> Option<Header> {
    let mut r = checked(bytes, LOG_MAGIC_V1, LOG_V1_HEADER_LEN)?;
    Some(Header {
        version: 1,
        canvas_id: r.get_u64(),
        seq: r.get_u64(),
        chat_seq: r.get_u64(),
        size: None,
    })
}

/// Reads a journal header. `Ok` carries a note when one of the two copies
/// was damaged and the other was used; `Err` says why neither is usable.
fn read_header(bytes: &[u8]) -> Result<(Header, Option<String>), String> {
    if let Some(h) = header_v1(bytes) {
        return Ok((h, None));
    }
    let first = header_copy_v2(bytes);
    let second = bytes.get(HEADER_COPY_LEN..).and_then(header_copy_v2);
    match (first, second) {
        (Some(a), Some(b)) if a == b => Ok((a, None)),
        (Some(_), Some(_)) => Err("the two copies of the journal header disagree".into()),
        (Some(h), None) => Ok((
            h,
            Some("the second copy of the journal header is damaged; the first was used".into()),
        )),
        (None, Some(h)) => Ok((
            h,
            Some("the first copy of the journal header is damaged; the second was used".into()),
        )),
        (None, None) if bytes.len() < LOG_HEADER_LEN.min(LOG_V1_HEADER_LEN) => Err(format!(
            "the journal header is cut short ({} bytes)",
            bytes.len()
        )),
        (None, None) => Err("both copies of the journal header are damaged".into()),
    }
}

/// Where scanning a journal stopped early, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the damage (the start of the first bad record, or 0
    /// for the header).
    pub offset: usize,
    /// What is wrong there.
    pub why: String,
    /// Intact records found after the damage; `None` means none: the
    /// damage is a torn tail, which a crash leaves and which may be cut.
    pub intact_after: Option<IntactAfter>,
}

impl Damage {
    /// True for a torn tail: nothing intact follows the damage.
    #[cfg(test)]
    pub fn is_torn_tail(&self) -> bool {
        self.intact_after.is_none()
    }
}

/// Intact records that follow a damaged spot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntactAfter {
    /// Offset of the first intact record after the damage.
    pub offset: usize,
    /// How many intact records lie after the damage in all.
    pub records: usize,
}

/// What a journal file held.
#[derive(Debug, Default)]
pub struct Scan {
    /// The header, when a copy of it could be read.
    pub header: Option<Header>,
    /// A note about the header (one copy damaged), if any.
    pub header_note: Option<String>,
    /// The intact records before any damage, with their byte offsets.
    pub records: Vec<(usize, Record)>,
    /// Bytes of the file that are intact (header included).
    pub good_len: usize,
    /// Where and why reading stopped early, if it did.
    pub damage: Option<Damage>,
}

/// Reads a journal file's bytes up to the first damage, and looks past it
/// for intact records to tell a torn tail from corruption.
pub fn scan_log(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let header = match read_header(bytes) {
        Ok((h, note)) => {
            scan.header_note = note;
            h
        }
        Err(why) => {
            scan.damage = Some(Damage {
                offset: 0,
                why,
                intact_after: intact_after(bytes, 0),
            });
            return scan;
        }
    };
    scan.header = Some(header);
    let (records, end, stop) = walk(bytes, header.records_at());
    scan.records = records;
    scan.good_len = end;
    scan.damage = stop.map(|why| Damage {
        offset: end,
        why,
        intact_after: intact_after(bytes, end + 1),
    });
    scan
}

/// Reads consecutive records from `at`: the records with their offsets, the
/// offset reading stopped at, and why it stopped short of the end.
pub fn walk(bytes: &[u8], mut at: usize) -> (Vec<(usize, Record)>, usize, Option<String>) {
    let mut records = Vec::new();
    while at < bytes.len() {
        match record_at(bytes, at) {
            Ok((record, len)) => {
                records.push((at, record));
                at += len;
            }
            Err(why) => return (records, at, Some(why)),
        }
    }
    (records, at, None)
}

/// Counts the intact records at or after `from`, skipping damaged spots.
fn intact_after(bytes: &[u8], from: usize) -> Option<IntactAfter> {
    let first = find_record(bytes, from)?;
    let mut records = 0;
    let mut at = Some(first);
    while let Some(start) = at {
        let (found, end, stop) = walk(bytes, start);
        records += found.len();
        at = stop.and_then(|_| find_record(bytes, end + 1));
    }
    Some(IntactAfter {
        offset: first,
        records,
    })
}

/// The first offset at or after `from` where an intact record starts.
/// Cheap structural checks come before the checksum, so a long damaged
/// stretch is searched quickly.
pub fn find_record(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&at| plausible(bytes, at) && record_at(bytes, at).is_ok())
}

/// Whether the bytes at `at` have the shape of a record: a length that
/// matches the payload's own string lengths.
fn plausible(bytes: &[u8], at: usize) -> bool {
    let Some(head) = bytes.get(at..at + 8) else {
        return false;
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
        return false;
    };
    match payload.first() {
        Some(&PIXEL) => {
            len > PIXEL_FIXED && len == PIXEL_FIXED + usize::from(payload[PIXEL_FIXED - 1])
        }
        Some(&CHAT) => {
            let Some(&from_len) = payload.get(CHAT_FIXED - 1) else {
                return false;
            };
            let text_at = CHAT_FIXED + usize::from(from_len);
            payload
                .get(text_at..text_at + 2)
                .is_some_and(|t| len == text_at + 2 + usize::from(u16::from_be_bytes([t[0], t[1]])))
        }
        Some(&BAN | &UNBAN) => payload.get(1).is_some_and(|&n| len == 2 + usize::from(n)),
        _ => false,
    }
}

/// Decodes the record at `at`: the record and its length on disk.
fn record_at(bytes: &[u8], at: usize) -> Result<(Record, usize), String> {
    let rest = &bytes[at..];
    if rest.len() < 8 {
        return Err(format!("torn record header at byte {at}"));
    }
    let len = (&rest[..4]).get_u32() as usize;
    let crc = (&rest[4..8]).get_u32();
    if len == 0 || len > MAX_RECORD {
        return Err(format!("impossible record length {len} at byte {at}"));
    }
    if rest.len() < 8 + len {
        return Err(format!("torn record at byte {at}"));
    }
    let payload = &rest[8..8 + len];
    if crc32fast::hash(payload) != crc {
        return Err(format!("checksum mismatch in the record at byte {at}"));
    }
    decode_record(payload)
        .map(|r| (r, 8 + len))
        .ok_or_else(|| format!("undecodable record at byte {at}"))
}

fn get_str(r: &mut &[u8], len_bytes: usize) -> Option<Arc<str>> {
    let n = if len_bytes == 1 {
        usize::from(r.try_get_u8().ok()?)
    } else {
        usize::from(r.try_get_u16().ok()?)
    };
    let s = std::str::from_utf8(r.get(..n)?).ok().map(Arc::from)?;
    r.advance(n);
    Some(s)
}

fn decode_record(payload: &[u8]) -> Option<Record> {
    let mut r = payload;
    let rec = match r.try_get_u8().ok()? {
        PIXEL => Record::Pixel {
            seq: r.try_get_u64().ok()?,
            x: r.try_get_u16().ok()?,
            y: r.try_get_u16().ok()?,
            color: r.try_get_u8().ok()?,
            unix_ms: r.try_get_u64().ok()?,
            name: get_str(&mut r, 1)?,
        },
        CHAT => Record::Chat(ChatLine {
            chat_seq: r.try_get_u64().ok()?,
            unix_ms: r.try_get_u64().ok()?,
            from: get_str(&mut r, 1)?,
            text: get_str(&mut r, 2)?,
        }),
        BAN => Record::Ban(get_str(&mut r, 1)?.to_string()),
        UNBAN => Record::Unban(get_str(&mut r, 1)?.to_string()),
        _ => return None,
    };
    r.is_empty().then_some(rec)
}

/// Serialises the whole world into snapshot bytes.
pub fn encode_snapshot(state: &World) -> Vec<u8> {
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
    out.put_u32(state.bans.len() as u32);
    for name in &state.bans {
        put_str(&mut out, name, 1);
    }
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out
}

/// The canvas id, width, height and seq at the start of a snapshot,
/// without reading (or checking) the rest: what a history export needs of
/// it, for the cost of a few bytes instead of decoding every cell.
pub fn snapshot_header(bytes: &[u8]) -> Option<(u64, u16, u16, u64)> {
    let mut r = bytes.get(..28)?;
    if &r[..8] != SNAP_MAGIC && &r[..8] != SNAP_MAGIC_V1 {
        return None;
    }
    r.advance(8);
    Some((r.get_u64(), r.get_u16(), r.get_u16(), r.get_u64()))
}

/// Reads snapshot bytes back; `Err` says what is wrong with them.
pub fn decode_snapshot(bytes: &[u8]) -> Result<World, String> {
    decode_snapshot_checked(bytes, true)
}

/// Reads a snapshot whose checksum fails, as far as its structure allows:
/// for `repair`, which keeps what can be read of a damaged snapshot rather
/// than nothing. Pixels near the damage may be wrong.
pub fn salvage_snapshot(bytes: &[u8]) -> Result<World, String> {
    decode_snapshot_checked(bytes, false)
}

fn decode_snapshot_checked(bytes: &[u8], check_crc: bool) -> Result<World, String> {
    if bytes.len() < SNAP_MAGIC.len() + 4
        || (&bytes[..8] != SNAP_MAGIC && &bytes[..8] != SNAP_MAGIC_V1)
    {
        return Err("not a pixchat snapshot".into());
    }
    let with_bans = &bytes[..8] == SNAP_MAGIC;
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if check_crc && crc32fast::hash(body) != (&crc[..]).get_u32() {
        return Err("the snapshot checksum does not match (the file is damaged)".into());
    }
    let short = || "the snapshot is truncated".to_string();
    let mut r = &body[8..];
    let id = r.try_get_u64().map_err(|_| short())?;
    let width = r.try_get_u16().map_err(|_| short())?;
    let height = r.try_get_u16().map_err(|_| short())?;
    let seq = r.try_get_u64().map_err(|_| short())?;
    let chat_seq = r.try_get_u64().map_err(|_| short())?;
    let palette_len = r.try_get_u8().map_err(|_| short())?;
    let mut palette = Vec::new();
    for _ in 0..palette_len {
        let rgb = take(&mut r, 3).ok_or_else(short)?;
        let name = get_str(&mut r, 1).ok_or_else(short)?;
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
    let name_count = r.try_get_u32().map_err(|_| short())?;
    let mut names = Vec::new();
    for _ in 0..name_count {
        names.push(get_str(&mut r, 1).ok_or_else(short)?);
    }
    let n = usize::from(width) * usize::from(height);
    let colors = take(&mut r, n).ok_or_else(short)?;
    let authors = take(&mut r, n * 4).ok_or_else(short)?;
    let times = take(&mut r, n * 8).ok_or_else(short)?;
    let seqs = take(&mut r, n * 8).ok_or_else(short)?;
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
    let chat_len = r.try_get_u16().map_err(|_| short())?;
    let mut chat = VecDeque::new();
    for _ in 0..chat_len {
        chat.push_back(ChatLine {
            chat_seq: r.try_get_u64().map_err(|_| short())?,
            unix_ms: r.try_get_u64().map_err(|_| short())?,
            from: get_str(&mut r, 1).ok_or_else(short)?,
            text: get_str(&mut r, 2).ok_or_else(short)?,
        });
    }
    let mut bans = std::collections::BTreeSet::new();
    if with_bans {
        let n = r.try_get_u32().map_err(|_| short())?;
        for _ in 0..n {
            bans.insert(get_str(&mut r, 1).ok_or_else(short)?.to_string());
        }
    }
    if !r.is_empty() {
        return Err("the snapshot has trailing bytes".into());
    }
    Ok(World {
        canvas,
        chat,
        chat_seq,
        bans,
    })
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (a, b) = r.split_at_checked(n)?;
    *r = b;
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> World {
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
        World {
            canvas,
            chat,
            chat_seq: 1,
            bans: ["mallory".to_string()].into(),
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
        assert_eq!(back.bans, s.bans);
    }

    #[test]
    fn version_1_snapshots_are_still_read() {
        let mut s = sample();
        s.bans.clear();
        let mut bytes = encode_snapshot(&s);
        // A version 1 snapshot is the same without the bans.
        bytes.truncate(bytes.len() - 8);
        bytes[..8].copy_from_slice(SNAP_MAGIC_V1);
        let crc = crc32fast::hash(&bytes);
        bytes.put_u32(crc);
        let back = decode_snapshot(&bytes).unwrap();
        assert_eq!(back.canvas.snapshot(), s.canvas.snapshot());
        assert!(back.bans.is_empty());
    }

    #[test]
    fn ban_records_scan_back() {
        let mut bytes = journal(1);
        put_ban(&mut bytes, "bob", true);
        put_ban(&mut bytes, "bob", false);
        let scan = scan_log(&bytes);
        assert_eq!(scan.damage, None);
        assert_eq!(scan.records[1].1, Record::Ban("bob".into()));
        assert_eq!(scan.records[2].1, Record::Unban("bob".into()));
        // And they are found after damage like any record.
        let mut bad = bytes.clone();
        bad[LOG_HEADER_LEN + 3] ^= 1;
        assert_eq!(
            scan_log(&bad).damage.unwrap().intact_after.unwrap().records,
            2
        );
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

    #[test]
    fn a_snapshot_with_a_flipped_pixel_can_be_salvaged() {
        let s = sample();
        let mut bytes = encode_snapshot(&s);
        // Find pixel (0, 0)'s colour byte as the first byte that differs
        // from a snapshot where only that pixel differs.
        let mut other = s.clone();
        other.canvas = Canvas::restore(
            77,
            3,
            2,
            s.canvas.seq(),
            s.canvas
                .cells()
                .enumerate()
                .map(|(i, (c, m))| (if i == 0 { 1 } else { c }, m)),
        )
        .unwrap();
        let other = encode_snapshot(&other);
        let at = (0..bytes.len()).find(|&i| bytes[i] != other[i]).unwrap();
        bytes[at] ^= 0x01;
        assert!(decode_snapshot(&bytes).is_err());
        let got = salvage_snapshot(&bytes).unwrap();
        assert_eq!(got.canvas.get(0, 0), Some(1));
        assert_eq!(got.canvas.get(2, 0), Some(15));
        assert_eq!(got.chat, s.chat);
    }

    fn journal(n: u64) -> Vec<u8> {
        let mut out = log_header(77, 0, 0, (3, 2));
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
        let header = scan.header.unwrap();
        assert_eq!((header.canvas_id, header.size), (77, Some((3, 2))));
        assert_eq!(scan.records.len(), 4);
        assert_eq!(scan.records[0].0, LOG_HEADER_LEN);
        assert_eq!(scan.good_len, bytes.len());
        assert!(matches!(
            &scan.records[2].1,
            Record::Pixel {
                seq: 3,
                unix_ms: 30,
                ..
            }
        ));
    }

    #[test]
    fn version_1_journals_are_still_read() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(LOG_MAGIC_V1);
        bytes.put_u64(77);
        bytes.put_u64(4);
        bytes.put_u64(1);
        let crc = crc32fast::hash(&bytes);
        bytes.put_u32(crc);
        put_pixel(&mut bytes, 5, (1, 1, 1), 9, "al");
        let scan = scan_log(&bytes);
        let header = scan.header.unwrap();
        assert_eq!((header.version, header.seq, header.size), (1, 4, None));
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.damage, None);
    }

    #[test]
    fn a_torn_tail_keeps_every_whole_record_and_is_told_apart() {
        let bytes = journal(5);
        let whole = scan_log(&bytes).good_len;
        for cut in LOG_HEADER_LEN..whole {
            let scan = scan_log(&bytes[..cut]);
            let kept = scan.records.len();
            assert!(scan.good_len <= cut);
            // Every record that fits entirely before the cut survives.
            assert_eq!(scan_log(&bytes[..scan.good_len]).records.len(), kept);
            assert_eq!(scan.damage.is_some(), scan.good_len != cut, "cut at {cut}");
            assert!(scan.damage.is_none_or(|d| d.is_torn_tail()), "cut at {cut}");
        }
        // Zeros after the last record (a file extended by a crash) are a
        // torn tail too.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 100]);
        assert!(scan_log(&zeros).damage.unwrap().is_torn_tail());
    }

    #[test]
    fn a_flipped_byte_stops_at_the_damaged_record_and_counts_what_follows() {
        let bytes = journal(5);
        let record_len = (bytes.len() - LOG_HEADER_LEN) / 5;
        for i in LOG_HEADER_LEN..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let scan = scan_log(&bad);
            let damaged_record = (i - LOG_HEADER_LEN) / record_len;
            assert_eq!(scan.records.len(), damaged_record, "flip at {i}");
            let damage = scan.damage.expect("damage is found");
            assert_eq!(damage.offset, LOG_HEADER_LEN + damaged_record * record_len);
            let after = 4 - damaged_record;
            match damage.intact_after {
                None => assert_eq!(after, 0, "flip at {i}"),
                Some(a) => {
                    assert_eq!(a.records, after, "flip at {i}");
                    assert_eq!(a.offset, damage.offset + record_len);
                }
            }
        }
    }

    #[test]
    fn one_flipped_bit_anywhere_in_the_header_costs_no_record() {
        let bytes = journal(5);
        for i in 0..LOG_HEADER_LEN {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                let scan = scan_log(&bad);
                assert_eq!(scan.damage, None, "flip at {i}.{bit}");
                assert_eq!(scan.records.len(), 5);
                assert!(scan.header_note.is_some());
                assert_eq!(scan.header.unwrap().canvas_id, 77);
            }
        }
    }

    #[test]
    fn a_destroyed_header_reports_the_records_after_it() {
        let mut bytes = journal(5);
        bytes[..LOG_HEADER_LEN].fill(0xAA);
        let scan = scan_log(&bytes);
        assert!(scan.header.is_none());
        let damage = scan.damage.unwrap();
        assert_eq!(damage.offset, 0);
        assert_eq!(
            damage.intact_after,
            Some(IntactAfter {
                offset: LOG_HEADER_LEN,
                records: 5
            })
        );
    }
}
