//! The history archive: every accepted placement (seq, time, position,
//! colour, author), kept in `archive/` in the data directory after
//! compaction has folded the journal into a snapshot.
//!
//! Compaction moves the placements of the journal it retires into a new
//! *segment* instead of dropping them, before that journal is removed, so
//! a crash at any point leaves each placement in the journal, in the
//! archive, or in both (segments only ever take seqs above the archive's
//! last one, so finishing an interrupted compaction again adds nothing
//! twice). The work happens on the compaction's own thread, off the hub
//! lock and off the journal writer: placements pay nothing for it.
//!
//! A segment (`<first-seq>-<last-seq>.pxa`, 20 digits each) is written to a
//! temporary name, fsynced, renamed into place and the directory fsynced,
//! like the snapshot: it is whole or absent. Its layout:
//!
//! ```text
//! "PXCHARC1" canvas_id:u64 width:u16 height:u16 first_seq:u64 last_seq:u64
//! count:u32 last_unix_ms:u64 body_len:u32 | zstd(body) | crc32:u32
//! ```
//!
//! The CRC covers everything before it, so a damaged segment is refused by
//! whoever reads it, never silently used. The body is columnar, so zstd
//! finds the regularities of each column: the author dictionary (`count`
//! varint, then each name `len:u8` bytes), then per placement the seq
//! delta (varint, 1 for consecutive seqs), the time delta (zigzag
//! varint), x and y (`u16` BE each, a column each), the colour (`u8`) and
//! the author's index in the dictionary (varint).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, BufMut};

use super::faults::Faults;
use super::files;
use super::format::{self, Record};
use crate::server::canvas::BLANK_COLOR;

/// The archive's directory inside the data directory.
pub const DIR: &str = "archive";
const MAGIC: &[u8; 8] = b"PXCHARC1";
const HEADER_LEN: usize = 8 + 8 + 2 + 2 + 8 + 8 + 4 + 8 + 4;
const EXT: &str = "pxa";
/// zstd level. Measured on segments of 100,000 placements: random ones
/// took 3.58 bytes each at level 3 in about 2 ms, 3.57 at level 9 in 7-22
/// ms, 3.46 at level 19 in 0.6 s; regular ones (a bench's sweeps) 0.19,
/// 0.14 and 0.12 bytes. Level 3 keeps the compaction thread's share of the
/// cores small.
const LEVEL: i32 = 3;
/// A segment holds at most this many placements, so reading one never
/// needs more memory than this bounds (a larger journal is split).
pub const SEGMENT_MAX: usize = 1 << 20;

/// One placement as the archive keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Its seq.
    pub seq: u64,
    /// Unix ms when it was accepted.
    pub unix_ms: u64,
    /// Column.
    pub x: u16,
    /// Row.
    pub y: u16,
    /// Palette index.
    pub color: u8,
    /// Author.
    pub name: Arc<str>,
}

impl Placement {
    /// The placement a journal record holds, if it is one.
    pub fn of_record(record: &Record) -> Option<Placement> {
        match record {
            Record::Pixel {
                seq,
                x,
                y,
                color,
                unix_ms,
                name,
            } => Some(Placement {
                seq: *seq,
                unix_ms: *unix_ms,
                x: *x,
                y: *y,
                color: *color,
                name: name.clone(),
            }),
            _ => None,
        }
    }
}

/// What a segment's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The canvas its placements belong to.
    pub canvas_id: u64,
    /// Canvas width.
    pub width: u16,
    /// Canvas height.
    pub height: u16,
    /// Seq of its first placement.
    pub first: u64,
    /// Seq of its last placement.
    pub last: u64,
    /// Placements in it.
    pub count: u32,
    /// Time of its last placement.
    pub last_unix_ms: u64,
}

/// A segment file as listed.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Seq of its first placement (from the file name).
    pub first: u64,
    /// Seq of its last placement.
    pub last: u64,
    /// The file.
    pub path: PathBuf,
    /// Its size on disk.
    pub len: u64,
}

/// How much history to keep (`--history-retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Everything (the default).
    #[default]
    All,
    /// Segments whose last placement is younger than this.
    Age(Duration),
    /// The newest segments that fit in this many bytes.
    Bytes(u64),
}

impl std::str::FromStr for Retention {
    type Err = String;

    /// `all`, an age (`30d`, `12h`, `90m`, `3600s`) or a size (`10GiB`,
    /// `500MiB`, `64KiB`, `1000000B`, or `GB`/`MB`/`KB` in powers of 10).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(Retention::All);
        }
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{s:?} needs a unit: 30d, 12h, 10GiB, 500MB ..."))?;
        let (n, unit) = s.split_at(split);
        let n: u64 = n
            .parse()
            .map_err(|_| format!("{s:?}: expected a number then a unit"))?;
        let age = |secs: u64| Ok(Retention::Age(Duration::from_secs(n.saturating_mul(secs))));
        let size = |mul: u64| Ok(Retention::Bytes(n.saturating_mul(mul)));
        match unit {
            "s" => age(1),
            "m" => age(60),
            "h" => age(3600),
            "d" => age(86_400),
            "B" => size(1),
            "KiB" => size(1 << 10),
            "MiB" => size(1 << 20),
            "GiB" => size(1 << 30),
            "TiB" => size(1 << 40),
            "KB" => size(1_000),
            "MB" => size(1_000_000),
            "GB" => size(1_000_000_000),
            "TB" => size(1_000_000_000_000),
            _ => Err(format!(
                "{s:?}: the unit must be s, m, h, d (an age) or B, KiB, MiB, GiB, TiB, KB, MB, GB, TB (a size)"
            )),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(r: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = r.try_get_u8().ok()?;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Encodes placements (in seq order, at least one) as a segment file.
pub fn encode_segment(canvas_id: u64, (width, height): (u16, u16), ps: &[Placement]) -> Vec<u8> {
    assert!(!ps.is_empty(), "a segment holds at least one placement");
    let mut ids: HashMap<&str, u64> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let mut authors = Vec::with_capacity(ps.len());
    for p in ps {
        let id = *ids.entry(&p.name).or_insert_with(|| {
            names.push(&p.name);
            names.len() as u64 - 1
        });
        authors.push(id);
    }
    let mut body = Vec::with_capacity(ps.len() * 12);
    put_varint(&mut body, names.len() as u64);
    for name in &names {
        let n = &name.as_bytes()[..name.len().min(255)];
        body.push(n.len() as u8);
        body.extend_from_slice(n);
    }
    let mut prev = ps[0].seq.saturating_sub(1);
    for p in ps {
        put_varint(&mut body, p.seq.wrapping_sub(prev));
        prev = p.seq;
    }
    let mut prev = 0u64;
    for p in ps {
        put_varint(&mut body, zigzag(p.unix_ms.wrapping_sub(prev) as i64));
        prev = p.unix_ms;
    }
    ps.iter().for_each(|p| body.put_u16(p.x));
    ps.iter().for_each(|p| body.put_u16(p.y));
    ps.iter().for_each(|p| body.put_u8(p.color));
    authors.iter().for_each(|&a| put_varint(&mut body, a));
    let packed = zstd::bulk::compress(&body, LEVEL).expect("zstd compresses in memory");
    let mut out = Vec::with_capacity(HEADER_LEN + packed.len() + 4);
    out.extend_from_slice(MAGIC);
    out.put_u64(canvas_id);
    out.put_u16(width);
    out.put_u16(height);
    out.put_u64(ps[0].seq);
    out.put_u64(ps[ps.len() - 1].seq);
    out.put_u32(ps.len() as u32);
    out.put_u64(ps[ps.len() - 1].unix_ms);
    out.put_u32(body.len() as u32);
    out.extend_from_slice(&packed);
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out
}

/// Reads a segment's header without checking its body.
pub fn read_header(bytes: &[u8]) -> Result<SegmentHeader, String> {
    let mut r = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| format!("cut short ({} bytes)", bytes.len()))?;
    if &r[..8] != MAGIC {
        return Err("not an archive segment".into());
    }
    r.advance(8);
    Ok(SegmentHeader {
        canvas_id: r.get_u64(),
        width: r.get_u16(),
        height: r.get_u16(),
        first: r.get_u64(),
        last: r.get_u64(),
        count: r.get_u32(),
        last_unix_ms: r.get_u64(),
    })
}

/// Decodes a whole segment, checking its CRC and every field; `Err` says
/// what is wrong.
pub fn decode_segment(bytes: &[u8]) -> Result<(SegmentHeader, Vec<Placement>), String> {
    let header = read_header(bytes)?;
    if bytes.len() < HEADER_LEN + 4 {
        return Err("cut short".into());
    }
    let (all, mut crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(all) != crc.get_u32() {
        return Err("checksum mismatch (the segment is damaged)".into());
    }
    let body_len = (&all[HEADER_LEN - 4..HEADER_LEN]).get_u32() as usize;
    let count = header.count as usize;
    // Every placement takes at least 7 bytes of body: a forged length
    // cannot make this allocate more than the file could describe.
    if count == 0 || count > SEGMENT_MAX || body_len > count * 40 + 256 * 26 + 16 {
        return Err(format!("impossible sizes (count {count}, body {body_len})"));
    }
    let body = zstd::bulk::decompress(&all[HEADER_LEN..], body_len)
        .map_err(|e| format!("undecodable body: {e}"))?;
    let bad = || "undecodable body".to_string();
    let mut r = &body[..];
    let n_names = get_varint(&mut r).ok_or_else(bad)? as usize;
    if n_names > count {
        return Err(bad());
    }
    let mut names: Vec<Arc<str>> = Vec::with_capacity(n_names);
    for _ in 0..n_names {
        let n = usize::from(r.try_get_u8().map_err(|_| bad())?);
        let s = std::str::from_utf8(r.get(..n).ok_or_else(bad)?).map_err(|_| bad())?;
        names.push(Arc::from(s));
        r.advance(n);
    }
    let mut ps: Vec<Placement> = Vec::with_capacity(count);
    let mut seq = header.first.saturating_sub(1);
    for _ in 0..count {
        seq = seq.wrapping_add(get_varint(&mut r).ok_or_else(bad)?);
        ps.push(Placement {
            seq,
            unix_ms: 0,
            x: 0,
            y: 0,
            color: 0,
            name: Arc::from(""),
        });
    }
    let mut t = 0u64;
    for p in &mut ps {
        t = t.wrapping_add(unzigzag(get_varint(&mut r).ok_or_else(bad)?) as u64);
        p.unix_ms = t;
    }
    if r.len() < count * 5 {
        return Err(bad());
    }
    for p in &mut ps {
        p.x = r.get_u16();
    }
    for p in &mut ps {
        p.y = r.get_u16();
    }
    for p in &mut ps {
        p.color = r.get_u8();
    }
    for p in &mut ps {
        let a = get_varint(&mut r).ok_or_else(bad)? as usize;
        p.name = names.get(a).ok_or_else(bad)?.clone();
    }
    if !r.is_empty() || ps.first().map(|p| p.seq) != Some(header.first) || seq != header.last {
        return Err("the body does not match the header".into());
    }
    if ps.windows(2).any(|w| w[1].seq <= w[0].seq) {
        return Err("placements out of seq order".into());
    }
    Ok((header, ps))
}

fn segment_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}.{EXT}")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(&format!(".{EXT}"))?;
    let (a, b) = stem.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The files in `data_dir`'s archive directory, in no order; none if there
/// is no archive.
fn archive_entries(data_dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    match fs::read_dir(data_dir.join(DIR)) {
        Ok(entries) => entries.collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The segments in `data_dir`'s archive, by seq; none if there is no
/// archive. Leftover temporary files of an interrupted write are ignored
/// (the journal still holds what they had).
pub fn list(data_dir: &Path) -> io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for entry in archive_entries(data_dir)? {
        let name = entry.file_name();
        let Some((first, last)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        out.push(Segment {
            first,
            last,
            path: entry.path(),
            len: entry.metadata()?.len(),
        });
    }
    out.sort_by_key(|s| s.first);
    Ok(out)
}

/// Seq of the last archived placement (0: none).
pub fn last_seq(data_dir: &Path) -> io::Result<u64> {
    Ok(list(data_dir)?.last().map_or(0, |s| s.last))
}

/// Reads and checks one segment.
pub fn read_segment(seg: &Segment) -> anyhow::Result<(SegmentHeader, Vec<Placement>)> {
    let bytes = fs::read(&seg.path).with_context(|| format!("read {}", seg.path.display()))?;
    let (h, ps) = decode_segment(&bytes)
        .map_err(|why| anyhow::anyhow!("archive segment {}: {why}", seg.path.display()))?;
    if (h.first, h.last) != (seg.first, seg.last) {
        bail!(
            "archive segment {}: its name does not match the seqs it holds ({}-{})",
            seg.path.display(),
            h.first,
            h.last
        );
    }
    Ok((h, ps))
}

/// Moves the placements of the journals `names` (in the data directory,
/// in order) that the archive does not hold yet into new segments, each
/// durable before this returns. Returns how many placements were added.
/// A journal's damaged tail is not read (its intact records are).
pub fn absorb(data_dir: &Path, names: &[&str], faults: &Faults) -> anyhow::Result<u64> {
    let have = last_seq(data_dir).context("list the archive")?;
    let mut placements = Vec::new();
    let mut canvas: Option<(u64, (u16, u16))> = None;
    for name in names {
        let bytes = match fs::read(data_dir.join(name)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("read {name}")),
        };
        let scan = format::scan_log(&bytes);
        let Some(header) = scan.header else {
            continue;
        };
        if let Some(size) = header.size {
            canvas.get_or_insert((header.canvas_id, size));
        }
        placements.extend(
            scan.records
                .iter()
                .filter_map(|(_, r)| Placement::of_record(r))
                .filter(|p| p.seq > have),
        );
    }
    let Some((canvas_id, size)) = canvas else {
        return Ok(0);
    };
    placements.sort_by_key(|p| p.seq);
    placements.dedup_by_key(|p| p.seq);
    write_segments(data_dir, canvas_id, size, &placements, faults)?;
    Ok(placements.len() as u64)
}

/// Writes `bytes` as `dir/name`: to a temporary name, fsynced, renamed
/// into place and the directory fsynced, so the file is whole or absent.
fn write_durably(dir: &Path, name: &str, bytes: &[u8], faults: &Faults) -> anyhow::Result<()> {
    files::replace(dir, &format!("{name}.tmp"), name, bytes, faults)
}

/// Writes placements (above the archive's last seq, in order) as segments.
pub fn write_segments(
    data_dir: &Path,
    canvas_id: u64,
    size: (u16, u16),
    placements: &[Placement],
    faults: &Faults,
) -> anyhow::Result<()> {
    if placements.is_empty() {
        return Ok(());
    }
    let dir = data_dir.join(DIR);
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    for chunk in placements.chunks(SEGMENT_MAX) {
        let bytes = encode_segment(canvas_id, size, chunk);
        let name = segment_name(chunk[0].seq, chunk[chunk.len() - 1].seq);
        write_durably(&dir, &name, &bytes, faults)?;
    }
    // The directory entry of `archive` itself, the first time.
    files::sync_dir(data_dir, faults)?;
    Ok(())
}

/// The canvas the archive's oldest segment starts from, once retention
/// has removed the segments before it: every pixel's colour after seq
/// `seq`. Pictures of a trimmed archive replay from it instead of from
/// the blank canvas, and a rollback takes from it the colour a pixel had
/// before the oldest placement still held there.
///
/// File `base-<seq>.pxb` (20 digits), written like a segment (temporary
/// name, fsync, rename, directory fsync) before the segments it replaces
/// are removed:
///
/// ```text
/// "PXCHBAS1" canvas_id:u64 width:u16 height:u16 seq:u64 unix_ms:u64
/// pixels:u32 | zstd(one palette index per pixel, row by row) | crc32:u32
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The canvas.
    pub canvas_id: u64,
    /// Canvas width.
    pub width: u16,
    /// Canvas height.
    pub height: u16,
    /// The seq of the last placement it includes (0: none).
    pub seq: u64,
    /// The time of that placement.
    pub unix_ms: u64,
    /// Palette indexes, row by row.
    pub pixels: Vec<u8>,
}

const BASE_MAGIC: &[u8; 8] = b"PXCHBAS1";
const BASE_HEADER_LEN: usize = 8 + 8 + 2 + 2 + 8 + 8 + 4;
const BASE_EXT: &str = "pxb";

impl Base {
    /// The blank canvas before seq 1.
    pub fn blank(canvas_id: u64, (width, height): (u16, u16)) -> Base {
        Base {
            canvas_id,
            width,
            height,
            seq: 0,
            unix_ms: 0,
            pixels: vec![BLANK_COLOR; usize::from(width) * usize::from(height)],
        }
    }

    /// Applies a placement (the next one after `seq`).
    pub fn apply(&mut self, p: &Placement) {
        let at = usize::from(p.y) * usize::from(self.width) + usize::from(p.x);
        if let Some(cell) = self.pixels.get_mut(at) {
            *cell = p.color;
        }
        self.seq = p.seq;
        self.unix_ms = p.unix_ms;
    }

    /// The colour at `(x, y)`.
    pub fn color(&self, x: u16, y: u16) -> u8 {
        let at = usize::from(y) * usize::from(self.width) + usize::from(x);
        self.pixels.get(at).copied().unwrap_or(BLANK_COLOR)
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let packed = zstd::bulk::compress(&self.pixels, LEVEL).expect("zstd compresses in memory");
        let mut out = Vec::with_capacity(BASE_HEADER_LEN + packed.len() + 4);
        out.extend_from_slice(BASE_MAGIC);
        out.put_u64(self.canvas_id);
        out.put_u16(self.width);
        out.put_u16(self.height);
        out.put_u64(self.seq);
        out.put_u64(self.unix_ms);
        out.put_u32(self.pixels.len() as u32);
        out.extend_from_slice(&packed);
        let crc = crc32fast::hash(&out);
        out.put_u32(crc);
        out
    }

    /// Reads a base file's bytes, checking its CRC and sizes.
    pub fn decode(bytes: &[u8]) -> Result<Base, String> {
        if bytes.len() < BASE_HEADER_LEN + 4 {
            return Err(format!("cut short ({} bytes)", bytes.len()));
        }
        let (all, mut crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(all) != crc.get_u32() {
            return Err("checksum mismatch (the base canvas is damaged)".into());
        }
        let mut r = &all[..BASE_HEADER_LEN];
        if &r[..8] != BASE_MAGIC {
            return Err("not a base canvas".into());
        }
        r.advance(8);
        let (canvas_id, width, height) = (r.get_u64(), r.get_u16(), r.get_u16());
        let (seq, unix_ms, len) = (r.get_u64(), r.get_u64(), r.get_u32() as usize);
        if len != usize::from(width) * usize::from(height) {
            return Err(format!("{len} pixels for a {width}x{height} canvas"));
        }
        let pixels = zstd::bulk::decompress(&all[BASE_HEADER_LEN..], len)
            .map_err(|e| format!("undecodable body: {e}"))?;
        if pixels.len() != len {
            return Err("the body does not match the header".into());
        }
        Ok(Base {
            canvas_id,
            width,
            height,
            seq,
            unix_ms,
            pixels,
        })
    }
}

fn base_name(seq: u64) -> String {
    format!("base-{seq:020}.{BASE_EXT}")
}

/// The base canvases in the archive, as (seq, path), oldest first.
fn list_bases(data_dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in archive_entries(data_dir)? {
        let seq = entry.file_name().to_str().and_then(|n| {
            n.strip_prefix("base-")?
                .strip_suffix(&format!(".{BASE_EXT}"))?
                .parse::<u64>()
                .ok()
        });
        if let Some(seq) = seq {
            out.push((seq, entry.path()));
        }
    }
    out.sort_by_key(|b| b.0);
    Ok(out)
}

/// The newest base canvas, checked; `None` when retention never removed
/// anything (or could not keep one).
pub fn read_base(data_dir: &Path) -> anyhow::Result<Option<Base>> {
    let Some((seq, path)) = list_bases(data_dir)?.pop() else {
        return Ok(None);
    };
    let bytes = fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let base = Base::decode(&bytes)
        .map_err(|why| anyhow::anyhow!("base canvas {}: {why}", path.display()))?;
    if base.seq != seq {
        bail!(
            "base canvas {}: its name does not match its seq ({})",
            path.display(),
            base.seq
        );
    }
    Ok(Some(base))
}

/// The canvas after the last of `segs` (the oldest segments, in order),
/// from the newest base or the blank canvas; `None` when the placements
/// before it are not all held (an archive started on an older data
/// directory, or a gap), so no base can be made.
fn base_after(data_dir: &Path, segs: &[Segment]) -> anyhow::Result<Option<Base>> {
    let Some(first) = segs.first() else {
        return Ok(None);
    };
    let mut base = match read_base(data_dir)? {
        Some(b) => b,
        None if first.first == 1 => {
            let (h, _) = read_segment(first)?;
            Base::blank(h.canvas_id, (h.width, h.height))
        }
        None => return Ok(None),
    };
    for seg in segs {
        if seg.last <= base.seq {
            continue;
        }
        let (h, ps) = read_segment(seg)?;
        if h.canvas_id != base.canvas_id || (h.width, h.height) != (base.width, base.height) {
            bail!(
                "archive segment {} belongs to another canvas than the base",
                seg.path.display()
            );
        }
        for p in &ps {
            if p.seq <= base.seq {
                continue;
            }
            if p.seq != base.seq + 1 {
                return Ok(None);
            }
            base.apply(p);
        }
    }
    Ok(Some(base))
}

/// Removes the oldest segments that `retention` no longer keeps (never
/// the newest one). Before it removes any, it writes the canvas after the
/// last one removed as the archive's base ([`Base`]), so what is held
/// still replays to any seq it holds; a crash between leaves the base and
/// segments it covers, which readers skip. Returns the seqs removed, if
/// any.
pub fn apply_retention(
    data_dir: &Path,
    retention: Retention,
    faults: &Faults,
) -> anyhow::Result<Option<(u64, u64)>> {
    let segs = list(data_dir)?;
    let Some((_, older)) = segs.split_last() else {
        return Ok(None);
    };
    let mut drop = 0;
    match retention {
        Retention::All => {}
        Retention::Age(age) => {
            let cutoff = crate::server::unix_ms().saturating_sub(age.as_millis() as u64);
            for seg in older {
                let mut head = [0u8; HEADER_LEN];
                let read =
                    File::open(&seg.path).and_then(|mut f| io::Read::read_exact(&mut f, &mut head));
                match read
                    .map_err(|e| e.to_string())
                    .and_then(|()| read_header(&head))
                {
                    Ok(h) if h.last_unix_ms < cutoff => drop += 1,
                    _ => break,
                }
            }
        }
        Retention::Bytes(max) => {
            let mut total: u64 = segs.iter().map(|s| s.len).sum();
            for seg in older {
                if total <= max {
                    break;
                }
                total -= seg.len;
                drop += 1;
            }
        }
    }
    if drop == 0 {
        return Ok(None);
    }
    let dir = data_dir.join(DIR);
    let gone = &older[..drop];
    let upto = gone[drop - 1].last;
    match base_after(data_dir, gone)? {
        Some(base) if base.seq == upto => {
            write_durably(&dir, &base_name(base.seq), &base.encode(), faults)?;
        }
        _ => tracing::warn!(
            upto,
            "the archive does not hold every placement up to the segments retention removes: \
             no base canvas is kept, so pictures of the history cannot be replayed"
        ),
    }
    for seg in gone {
        fs::remove_file(&seg.path).with_context(|| format!("remove {}", seg.path.display()))?;
    }
    for (seq, path) in list_bases(data_dir)? {
        if seq < upto {
            fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
        }
    }
    Ok(Some((gone[0].first, upto)))
}

/// The canvas id and seq of a data directory's snapshot (`canvas.snap`),
/// from its header only; `None` without a readable one.
pub fn snapshot_at(data_dir: &Path) -> Option<(u64, u64)> {
    let mut head = Vec::with_capacity(64);
    let f = File::open(data_dir.join(super::SNAP)).ok()?;
    io::Read::read_to_end(&mut io::Read::take(f, 64), &mut head).ok()?;
    let (id, _, _, seq) = format::snapshot_header(&head)?;
    Some((id, seq))
}

/// The canvas a data directory's snapshot holds (every cell decoded and
/// its checksum checked).
pub fn snapshot_canvas(data_dir: &Path) -> anyhow::Result<crate::server::canvas::Canvas> {
    let path = data_dir.join(super::SNAP);
    let bytes = fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let world =
        format::decode_snapshot(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(world.canvas)
}

/// What a data directory remembers of its placements, read a segment at
/// a time: the archive's base canvas (if retention trimmed it), its
/// segments, then the journals' placements after them. Only the
/// journals' placements (at most one compaction's worth) and one
/// segment at a time are held in memory, however long the history.
#[derive(Debug)]
pub struct History {
    /// The canvas.
    pub canvas_id: u64,
    /// Canvas width.
    pub width: u16,
    /// Canvas height.
    pub height: u16,
    /// Seq of the canvas's current state as stored (snapshot + journals).
    pub seq: u64,
    /// The canvas the held placements start from: the archive's base, or
    /// the blank canvas before seq 1. `None` when neither is known (an
    /// archive started on an older data directory, trimmed before it
    /// could keep a base): pictures cannot be replayed then.
    pub base: Option<Base>,
    /// The segments with placements after the base, by seq.
    segments: Vec<Segment>,
    /// The journals' placements after the last segment, in seq order.
    journal: Vec<Placement>,
}

impl History {
    /// Reads a data directory's history (without taking its lock: a
    /// running server's directory may be read). The journals are read
    /// before the archive is listed: a compaction that runs meanwhile
    /// archives a journal before it removes it, so nothing falls between
    /// the two reads.
    pub fn open(data_dir: &Path) -> anyhow::Result<History> {
        // The journals whole (one compaction's worth at most), the
        // snapshot only for its header: decoding a large canvas's every
        // cell would cost more memory than the rest of an export.
        let mut scans = Vec::new();
        for name in [super::LOG, super::LOG_NEW] {
            match fs::read(data_dir.join(name)) {
                Ok(bytes) => scans.push(format::scan_log(&bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("read {name}")),
            }
        }
        let mut head = Vec::with_capacity(64);
        if let Ok(f) = File::open(data_dir.join(super::SNAP)) {
            io::Read::read_to_end(&mut io::Read::take(f, 64), &mut head)
                .context("read canvas.snap")?;
        }
        let (canvas_id, width, height, seq) = match format::snapshot_header(&head) {
            Some(h) => h,
            None => match scans
                .iter()
                .find_map(|s| s.header.filter(|h| h.size.is_some()))
            {
                Some(h) => {
                    let (w, hh) = h.size.unwrap_or((1, 1));
                    (h.canvas_id, w, hh, h.seq)
                }
                // Only an archive: a cluster server's (`--archive`), whose
                // canvas lives in Redis. The newest segment names the canvas.
                None => {
                    let newest = list(data_dir)?.pop().with_context(|| {
                        format!(
                            "{}: no readable canvas.snap, journal or archive; is this a pixchat data directory?",
                            data_dir.display()
                        )
                    })?;
                    let bytes = fs::read(&newest.path)
                        .with_context(|| format!("read {}", newest.path.display()))?;
                    let h = read_header(&bytes).map_err(|e| {
                        anyhow::anyhow!("archive segment {}: {e}", newest.path.display())
                    })?;
                    (h.canvas_id, h.width, h.height, h.last)
                }
            },
        };
        let mut journal: Vec<Placement> = scans
            .iter()
            .flat_map(|s| s.records.iter())
            .filter_map(|(_, r)| Placement::of_record(r))
            .collect();
        drop(scans);
        let base = read_base(data_dir)?;
        if let Some(b) = &base
            && (b.canvas_id, b.width, b.height) != (canvas_id, width, height)
        {
            bail!(
                "the archive's base canvas belongs to canvas {:016x} ({}x{}), the data directory holds {canvas_id:016x} ({width}x{height})",
                b.canvas_id,
                b.width,
                b.height
            );
        }
        let from = base.as_ref().map_or(0, |b| b.seq);
        let segments: Vec<Segment> = list(data_dir)?
            .into_iter()
            .filter(|s| s.last > from)
            .collect();
        let archived = segments.last().map_or(from, |s| s.last);
        journal.retain(|p| p.seq > archived);
        journal.sort_by_key(|p| p.seq);
        journal.dedup_by_key(|p| p.seq);
        let first_held = segments
            .first()
            .map(|s| s.first)
            .or(journal.first().map(|p| p.seq));
        // Without a base, the blank canvas is where a history that starts
        // at seq 1 starts.
        let base = base.or_else(|| {
            (first_held.is_none_or(|f| f == 1)).then(|| Base::blank(canvas_id, (width, height)))
        });
        let last = journal.last().map_or(archived, |p| p.seq);
        Ok(History {
            canvas_id,
            width,
            height,
            seq: seq.max(last),
            base,
            segments,
            journal,
        })
    }

    /// Seq of the first placement held (after the base), if any.
    pub fn first_seq(&self) -> Option<u64> {
        self.segments
            .first()
            .map(|s| s.first.max(self.base_seq() + 1))
            .or(self.journal.first().map(|p| p.seq))
    }

    /// Seq of the last placement held (0: none).
    pub fn last_seq(&self) -> u64 {
        self.journal
            .last()
            .map(|p| p.seq)
            .or(self.segments.last().map(|s| s.last))
            .unwrap_or(0)
    }

    /// Seq of the base's state (0 for the blank canvas or no base).
    pub fn base_seq(&self) -> u64 {
        self.base.as_ref().map_or(0, |b| b.seq)
    }

    /// How many placements are held, counted from the segments' names
    /// (exact for a history without gaps; an upper bound otherwise).
    pub fn len(&self) -> u64 {
        let from = self.base_seq();
        let archived: u64 = self
            .segments
            .iter()
            .map(|s| s.last - s.first.max(from + 1) + 1)
            .sum();
        archived + self.journal.len() as u64
    }

    /// True when no placement is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seqs missing between the placements held, as inclusive ranges
    /// (what a cluster server's archive could not read from the stream),
    /// not counting those before the first one (see [`History::first_seq`]).
    /// Reads the whole history, a segment at a time.
    pub fn gaps(&self) -> anyhow::Result<Vec<(u64, u64)>> {
        let mut gaps = Vec::new();
        let mut next = None;
        self.for_each(|p| {
            if let Some(next) = next
                && p.seq > next
            {
                gaps.push((next, p.seq - 1));
            }
            next = Some(p.seq + 1);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(gaps)
    }

    /// Calls `f` with every placement held after the base, in seq order,
    /// each once, reading one segment at a time; stops when `f` breaks.
    pub fn for_each(
        &self,
        mut f: impl FnMut(&Placement) -> anyhow::Result<ControlFlow<()>>,
    ) -> anyhow::Result<()> {
        let mut last = self.base_seq();
        for seg in &self.segments {
            for p in &self.read(seg)? {
                if p.seq <= last {
                    continue;
                }
                last = p.seq;
                if f(p)?.is_break() {
                    return Ok(());
                }
            }
        }
        for p in self.journal.iter().filter(|p| p.seq > last) {
            if f(p)?.is_break() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Calls `f` with every placement held after the base, newest first,
    /// reading one segment at a time and no further than `f` needs: it
    /// stops when `f` breaks.
    pub fn for_each_rev(
        &self,
        mut f: impl FnMut(&Placement) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        for p in self.journal.iter().rev() {
            if f(p).is_break() {
                return Ok(());
            }
        }
        let from = self.base_seq();
        let mut below = self.journal.first().map_or(u64::MAX, |p| p.seq);
        for seg in self.segments.iter().rev() {
            for p in self.read(seg)?.iter().rev() {
                if p.seq <= from {
                    return Ok(());
                }
                if p.seq < below {
                    below = p.seq;
                    if f(p).is_break() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    fn read(&self, seg: &Segment) -> anyhow::Result<Vec<Placement>> {
        let (h, ps) = read_segment(seg).map_err(|e| {
            if seg.path.exists() {
                e
            } else {
                anyhow::anyhow!(
                    "archive segment {} was removed (by --history-retention, after it kept a newer base canvas) \
                     while the history was read: read it again",
                    seg.path.display()
                )
            }
        })?;
        if h.canvas_id != self.canvas_id {
            bail!(
                "archive segment {} belongs to canvas {:016x}, the data directory holds {:016x}",
                seg.path.display(),
                h.canvas_id,
                self.canvas_id
            );
        }
        Ok(ps)
    }
}

/// The last `n` placements at `(x, y)`, newest first, from the journals
/// and then the newest segments, reading at most `max_segments` of them:
/// the work of one `WHOSE x y n` stays bounded however long the history.
pub fn recent_at(
    data_dir: &Path,
    (x, y): (u16, u16),
    n: usize,
    max_segments: usize,
) -> anyhow::Result<Vec<Placement>> {
    let mut found: Vec<Placement> = Vec::new();
    let mut journal = Vec::new();
    for name in [super::LOG, super::LOG_NEW] {
        let bytes = match fs::read(data_dir.join(name)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("read {name}")),
        };
        journal.extend(
            format::scan_log(&bytes)
                .records
                .iter()
                .filter_map(|(_, r)| Placement::of_record(r))
                .filter(|p| (p.x, p.y) == (x, y)),
        );
    }
    journal.sort_by_key(|p| std::cmp::Reverse(p.seq));
    found.extend(journal);
    let mut oldest = found.last().map_or(u64::MAX, |p| p.seq);
    for seg in list(data_dir)?.iter().rev().take(max_segments) {
        if found.len() >= n {
            break;
        }
        let (_, ps) = read_segment(seg)?;
        for p in ps.into_iter().rev() {
            if p.seq < oldest && (p.x, p.y) == (x, y) {
                oldest = p.seq;
                found.push(p);
            }
        }
    }
    found.dedup_by_key(|p| p.seq);
    found.truncate(n);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(seq: u64, t: u64, x: u16, name: &str) -> Placement {
        Placement {
            seq,
            unix_ms: t,
            x,
            y: x / 2,
            color: (seq % 16) as u8,
            name: Arc::from(name),
        }
    }

    #[test]
    fn gaps_are_the_seqs_missing_between_the_placements_held() {
        let history = |seqs: &[u64]| History {
            canvas_id: 1,
            width: 64,
            height: 64,
            seq: seqs.last().copied().unwrap_or(0),
            base: None,
            segments: Vec::new(),
            journal: seqs.iter().map(|&s| p(s, 0, 0, "al")).collect(),
        };
        assert_eq!(history(&[]).gaps().unwrap(), []);
        assert_eq!(history(&[1, 2, 3]).gaps().unwrap(), []);
        let late = history(&[3, 4, 8, 9, 11]);
        assert_eq!(late.gaps().unwrap(), [(5, 7), (10, 10)]);
        assert_eq!(late.first_seq(), Some(3), "what comes before is told apart");
    }

    #[test]
    fn a_segment_reads_back_exactly() {
        let ps: Vec<_> = (1..=1000)
            .map(|i| {
                p(
                    i + 10,
                    1_700_000_000_000 + i * 7 - (i % 3),
                    (i % 64) as u16,
                    ["al", "bob", "cy"][i as usize % 3],
                )
            })
            .collect();
        let bytes = encode_segment(42, (64, 64), &ps);
        let (h, back) = decode_segment(&bytes).unwrap();
        assert_eq!(back, ps);
        assert_eq!(
            (h.first, h.last, h.count, h.canvas_id),
            (11, 1010, 1000, 42)
        );
        assert!(bytes.len() < 16 * ps.len(), "{} bytes", bytes.len());
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let ps: Vec<_> = (1..=50).map(|i| p(i, i, i as u16, "al")).collect();
        let bytes = encode_segment(1, (64, 64), &ps);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(decode_segment(&bad).is_err(), "flip at {at} accepted");
        }
        assert!(decode_segment(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn retention_removes_the_oldest_segments_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::none();
        let day = 86_400_000;
        let now = crate::server::unix_ms();
        // Three segments: placed 3 days ago, 2 days ago, now.
        for (k, t) in [(0u64, now - 3 * day), (1, now - 2 * day), (2, now)] {
            let ps: Vec<_> = (1..=100)
                .map(|i| p(k * 100 + i, t, (i % 64) as u16, "al"))
                .collect();
            write_segments(dir.path(), 7, (64, 64), &ps, &faults).unwrap();
        }
        let firsts = |d: &Path| list(d).unwrap().iter().map(|s| s.first).collect::<Vec<_>>();
        assert_eq!(firsts(dir.path()), [1, 101, 201]);
        assert_eq!(
            apply_retention(dir.path(), Retention::All, &faults).unwrap(),
            None
        );
        let age = Retention::Age(Duration::from_secs(60 * 60 * 60));
        assert_eq!(
            apply_retention(dir.path(), age, &faults).unwrap(),
            Some((1, 100))
        );
        assert_eq!(firsts(dir.path()), [101, 201]);
        // A size smaller than everything still keeps the newest.
        assert_eq!(
            apply_retention(dir.path(), Retention::Bytes(1), &faults).unwrap(),
            Some((101, 200))
        );
        assert_eq!(firsts(dir.path()), [201]);
        assert_eq!(last_seq(dir.path()).unwrap(), 300);
        // One base canvas is kept: the first 200 placements replayed.
        let mut want = Base::blank(7, (64, 64));
        for k in 0..2u64 {
            for i in 1..=100 {
                want.apply(&p(k * 100 + i, 0, (i % 64) as u16, "al"));
            }
        }
        let base = read_base(dir.path()).unwrap().expect("a base canvas");
        assert_eq!((base.seq, base.canvas_id), (200, 7));
        assert_eq!(base.pixels, want.pixels);
        assert_eq!(
            list_bases(dir.path()).unwrap().len(),
            1,
            "the older base is removed"
        );
    }

    #[test]
    fn a_damaged_base_canvas_is_refused() {
        let mut base = Base::blank(3, (8, 4));
        base.apply(&p(1, 5, 3, "al"));
        let bytes = base.encode();
        assert_eq!(Base::decode(&bytes), Ok(base));
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x04;
            assert!(Base::decode(&bad).is_err(), "flip at {at} accepted");
        }
    }

    #[test]
    fn retention_parses_ages_and_sizes() {
        assert_eq!(
            "30d".parse(),
            Ok(Retention::Age(Duration::from_secs(30 * 86_400)))
        );
        assert_eq!("10GiB".parse(), Ok(Retention::Bytes(10 << 30)));
        assert_eq!("all".parse(), Ok(Retention::All));
        assert!("10".parse::<Retention>().is_err());
        assert!("3 weeks".parse::<Retention>().is_err());
    }
}
