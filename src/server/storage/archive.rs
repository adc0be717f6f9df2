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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, BufMut};

use super::faults::{self, Faults};
use super::files;
use super::format::{self, Record};

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

/// The segments in `data_dir`'s archive, by seq; none if there is no
/// archive. Leftover temporary files of an interrupted write are ignored
/// (the journal still holds what they had).
pub fn list(data_dir: &Path) -> io::Result<Vec<Segment>> {
    let dir = data_dir.join(DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
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
        let tmp = dir.join(format!("{name}.tmp"));
        let res = (|| {
            let mut f = File::create(&tmp)?;
            faults::write_all(faults, &mut f, &bytes)?;
            faults::sync_all(faults, &f)
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("write {}", tmp.display()));
        }
        fs::rename(&tmp, dir.join(&name)).with_context(|| format!("rename {name}"))?;
        files::sync_dir(&dir, faults)?;
    }
    // The directory entry of `archive` itself, the first time.
    files::sync_dir(data_dir, faults)?;
    Ok(())
}

/// Removes the oldest segments that `retention` no longer keeps (never
/// the newest one). Returns the seqs removed, if any.
pub fn apply_retention(
    data_dir: &Path,
    retention: Retention,
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
    for seg in &older[..drop] {
        fs::remove_file(&seg.path).with_context(|| format!("remove {}", seg.path.display()))?;
    }
    Ok(Some((older[0].first, older[drop - 1].last)))
}

/// Everything a data directory remembers of its placements, in seq order:
/// the archive's segments, then the journals' placements after them.
#[derive(Debug)]
pub struct History {
    /// The canvas.
    pub canvas_id: u64,
    /// Canvas width.
    pub width: u16,
    /// Canvas height.
    pub height: u16,
    /// Every placement held, in seq order, without duplicates.
    pub placements: Vec<Placement>,
    /// Seq of the canvas's current state as stored (snapshot + journals).
    pub seq: u64,
}

impl History {
    /// The seqs missing from the placements held, as inclusive ranges:
    /// before the first one (when it is not seq 1) and between any two
    /// that do not follow each other (what a cluster server's archive
    /// could not read from the stream).
    pub fn gaps(&self) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut next = 1;
        for p in &self.placements {
            if p.seq > next {
                gaps.push((next, p.seq - 1));
            }
            next = p.seq + 1;
        }
        gaps
    }

    /// True when the placements start at seq 1 with no gap, so the canvas
    /// at any seq can be replayed from a blank one.
    pub fn complete(&self) -> bool {
        self.placements
            .iter()
            .enumerate()
            .all(|(i, p)| p.seq == i as u64 + 1)
    }
}

/// Reads every placement a data directory holds (without taking its lock:
/// a running server's directory may be read). The journals are read
/// before the archive: a compaction that runs meanwhile archives a
/// journal before it removes it, so nothing falls between the two reads.
pub fn read_history(data_dir: &Path) -> anyhow::Result<History> {
    let ins = super::recovery::inspect(data_dir)?;
    let (canvas_id, width, height, mut seq) = match &ins.snapshot {
        super::recovery::SnapshotFile::Ok { state, .. } => (
            state.canvas.id(),
            state.canvas.width(),
            state.canvas.height(),
            state.canvas.seq(),
        ),
        _ => match ins
            .journals
            .iter()
            .find_map(|j| j.scan.header.filter(|h| h.size.is_some()))
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
                let (h, _) = read_segment(&newest)?;
                (h.canvas_id, h.width, h.height, h.last)
            }
        },
    };
    let mut journal = Vec::new();
    for j in &ins.journals {
        journal.extend(
            j.scan
                .records
                .iter()
                .filter_map(|(_, r)| Placement::of_record(r)),
        );
    }
    let mut placements = Vec::new();
    for seg in list(data_dir)? {
        let (h, ps) = read_segment(&seg)?;
        if h.canvas_id != canvas_id {
            bail!(
                "archive segment {} belongs to canvas {:016x}, the data directory holds {canvas_id:016x}",
                seg.path.display(),
                h.canvas_id
            );
        }
        placements.extend(ps);
    }
    placements.extend(journal);
    placements.sort_by_key(|p| p.seq);
    placements.dedup_by_key(|p| p.seq);
    seq = seq.max(placements.last().map_or(0, |p| p.seq));
    Ok(History {
        canvas_id,
        width,
        height,
        placements,
        seq,
    })
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
    fn gaps_are_the_seqs_missing_from_1_on() {
        let history = |seqs: &[u64]| History {
            canvas_id: 1,
            width: 64,
            height: 64,
            placements: seqs.iter().map(|&s| p(s, 0, 0, "al")).collect(),
            seq: seqs.last().copied().unwrap_or(0),
        };
        assert_eq!(history(&[]).gaps(), []);
        assert_eq!(history(&[1, 2, 3]).gaps(), []);
        assert_eq!(
            history(&[3, 4, 8, 9, 11]).gaps(),
            [(1, 2), (5, 7), (10, 10)]
        );
        assert!(history(&[1, 2, 3]).complete());
        assert!(!history(&[2, 3]).complete());
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
        assert_eq!(apply_retention(dir.path(), Retention::All).unwrap(), None);
        let age = Retention::Age(Duration::from_secs(60 * 60 * 60));
        assert_eq!(apply_retention(dir.path(), age).unwrap(), Some((1, 100)));
        assert_eq!(firsts(dir.path()), [101, 201]);
        // A size smaller than everything still keeps the newest.
        assert_eq!(
            apply_retention(dir.path(), Retention::Bytes(1)).unwrap(),
            Some((101, 200))
        );
        assert_eq!(firsts(dir.path()), [201]);
        assert_eq!(last_seq(dir.path()).unwrap(), 300);
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
