//! The canvas as plain data: pixels, seq, and the ring of recent pixel events
//! that `SYNC` replays. No tokio, no locks: the hub owns one of each and
//! serialises access.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::protocol::{
    ErrorCode, Event, MAX_SIDE, Mode, PALETTE, Pixel, Snapshot, WireError, binary, text,
};

/// Colour a new canvas is filled with (white, as on r/place).
pub const BLANK_COLOR: u8 = 0;

/// Marks a pixel nobody has placed yet in [`Canvas`]'s author table.
const NOBODY: u32 = u32::MAX;

/// Cells per chunk of a canvas. A canvas is copied on write a chunk at a
/// time: a copy of it (for a compaction's snapshot, or a `CANVAS` answer)
/// costs a pointer per chunk, and only the chunks placements touch while
/// the copy lives are copied, once each.
const CHUNK: usize = 16 * 1024;

/// One chunk of cells: their colours and last placements.
#[derive(Debug, Clone)]
pub struct Cells {
    pixels: Vec<u8>,
    /// Per pixel: index into `names` of the last author, or `NOBODY`.
    authors: Vec<u32>,
    /// Per pixel: Unix ms of the last placement.
    times: Vec<u64>,
    /// Per pixel: seq of the last placement.
    seqs: Vec<u64>,
}

impl Cells {
    fn blank(n: usize) -> Self {
        Self {
            pixels: vec![BLANK_COLOR; n],
            authors: vec![NOBODY; n],
            times: vec![0; n],
            seqs: vec![0; n],
        }
    }
}

/// Pixels, the seq counter, and who placed each pixel when, of one canvas.
#[derive(Debug, Clone)]
pub struct Canvas {
    id: u64,
    width: u16,
    height: u16,
    seq: u64,
    /// The cells, row by row, `CHUNK` at a time.
    chunks: Vec<Arc<Cells>>,
    /// Every author name ever seen, so per-pixel authorship costs 4 bytes.
    /// Shared with copies, like the chunks.
    names: Arc<Vec<Arc<str>>>,
    name_ids: Arc<HashMap<Arc<str>, u32>>,
}

/// The last placement at one pixel, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelMeta {
    /// Author.
    pub name: Arc<str>,
    /// Unix ms.
    pub unix_ms: u64,
    /// Seq of the placement.
    pub seq: u64,
}

/// A canvas's colours at one seq, shared with the canvas until it changes
/// them: building it costs a pointer per chunk, and the copy into one
/// `Snapshot` is made by whoever needs it, outside the hub lock.
#[derive(Debug, Clone)]
pub struct Frozen {
    canvas_id: u64,
    seq: u64,
    width: u16,
    height: u16,
    chunks: Vec<Arc<Cells>>,
}

impl Frozen {
    /// Seq of the state it shows.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The snapshot, as one copy of the colours.
    pub fn snapshot(&self) -> Snapshot {
        let mut pixels = Vec::with_capacity(usize::from(self.width) * usize::from(self.height));
        for chunk in &self.chunks {
            pixels.extend_from_slice(&chunk.pixels);
        }
        Snapshot {
            canvas_id: self.canvas_id,
            seq: self.seq,
            width: self.width,
            height: self.height,
            pixels,
        }
    }
}

impl Canvas {
    /// A blank canvas. Sides must be `1..=MAX_SIDE`.
    pub fn new(id: u64, width: u16, height: u16) -> Result<Self, WireError> {
        if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
            return Err(WireError::new(
                ErrorCode::OutOfRange,
                format!("canvas sides are 1 to {MAX_SIDE} pixels"),
            ));
        }
        let n = usize::from(width) * usize::from(height);
        let chunks = (0..n)
            .step_by(CHUNK)
            .map(|start| Arc::new(Cells::blank(CHUNK.min(n - start))))
            .collect();
        Ok(Self {
            id,
            width,
            height,
            seq: 0,
            chunks,
            names: Arc::default(),
            name_ids: Arc::default(),
        })
    }

    /// Identity of this canvas.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Width in pixels.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u16 {
        self.height
    }

    /// Seq of the latest accepted pixel (0 for a fresh canvas).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn len(&self) -> usize {
        usize::from(self.width) * usize::from(self.height)
    }

    /// The chunk and offset of cell `i`.
    fn cell(&self, i: usize) -> (&Cells, usize) {
        (&self.chunks[i / CHUNK], i % CHUNK)
    }

    /// Palette index at `(x, y)`, if inside.
    pub fn get(&self, x: u16, y: u16) -> Option<u8> {
        (x < self.width && y < self.height).then(|| {
            let (c, j) = self.cell(self.index(x, y));
            c.pixels[j]
        })
    }

    /// Who last placed `(x, y)` and when; `None` for a pixel never placed
    /// (or outside the canvas).
    pub fn whose(&self, x: u16, y: u16) -> Option<PixelMeta> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let (c, j) = self.cell(self.index(x, y));
        self.meta(c, j)
    }

    fn meta(&self, c: &Cells, j: usize) -> Option<PixelMeta> {
        let author = c.authors[j];
        (author != NOBODY).then(|| PixelMeta {
            name: self.names[author as usize].clone(),
            unix_ms: c.times[j],
            seq: c.seqs[j],
        })
    }

    fn index(&self, x: u16, y: u16) -> usize {
        usize::from(y) * usize::from(self.width) + usize::from(x)
    }

    /// Range-checks a placement before anything changes.
    pub fn check(&self, x: u32, y: u32, color: u32) -> Result<(u16, u16, u8), WireError> {
        let (x, y) = self.check_xy(x, y)?;
        if color >= PALETTE.len() as u32 {
            return Err(WireError::new(
                ErrorCode::OutOfRange,
                format!("color must be 0-{}", PALETTE.len() - 1),
            ));
        }
        Ok((x, y, color as u8))
    }

    /// Range-checks a position.
    pub fn check_xy(&self, x: u32, y: u32) -> Result<(u16, u16), WireError> {
        if x >= u32::from(self.width) || y >= u32::from(self.height) {
            return Err(WireError::new(
                ErrorCode::OutOfRange,
                format!("x must be 0-{} and y 0-{}", self.width - 1, self.height - 1),
            ));
        }
        Ok((x as u16, y as u16))
    }

    /// Applies a checked placement by `name` at `unix_ms` and returns its
    /// new seq.
    pub fn apply(&mut self, x: u16, y: u16, color: u8, name: &Arc<str>, unix_ms: u64) -> u64 {
        let author = self.name_id(name);
        let i = self.index(x, y);
        self.seq += 1;
        let seq = self.seq;
        self.set_cell(i, color, author, unix_ms, seq);
        seq
    }

    /// Writes cell `i`, copying its chunk first if a copy of the canvas
    /// still shares it.
    fn set_cell(&mut self, i: usize, color: u8, author: u32, unix_ms: u64, seq: u64) {
        let c = Arc::make_mut(&mut self.chunks[i / CHUNK]);
        let j = i % CHUNK;
        c.pixels[j] = color;
        c.authors[j] = author;
        c.times[j] = unix_ms;
        c.seqs[j] = seq;
    }

    fn name_id(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        Arc::make_mut(&mut self.names).push(name.clone());
        Arc::make_mut(&mut self.name_ids).insert(name.clone(), id);
        id
    }

    /// The colours at the current seq, shared until they change.
    pub fn frozen(&self) -> Frozen {
        Frozen {
            canvas_id: self.id,
            seq: self.seq,
            width: self.width,
            height: self.height,
            chunks: self.chunks.clone(),
        }
    }

    /// A copy of the whole canvas at the current seq.
    pub fn snapshot(&self) -> Snapshot {
        self.frozen().snapshot()
    }

    /// Every pixel with its last placement, row by row, for persistence.
    pub fn cells(&self) -> impl Iterator<Item = (u8, Option<PixelMeta>)> + '_ {
        self.chunks
            .iter()
            .flat_map(move |c| (0..c.pixels.len()).map(move |j| (c.pixels[j], self.meta(c, j))))
    }

    /// Rebuilds a canvas from persisted cells (row by row) at `seq`.
    pub fn restore(
        id: u64,
        width: u16,
        height: u16,
        seq: u64,
        cells: impl IntoIterator<Item = (u8, Option<PixelMeta>)>,
    ) -> Result<Self, WireError> {
        let mut c = Self::new(id, width, height)?;
        let mut n = 0;
        for (i, (color, meta)) in cells.into_iter().enumerate() {
            if i >= c.len() || usize::from(color) >= PALETTE.len() {
                return Err(WireError::new(
                    ErrorCode::BadArgs,
                    "cells do not fit the canvas",
                ));
            }
            match meta {
                Some(m) => {
                    let author = c.name_id(&m.name);
                    c.set_cell(i, color, author, m.unix_ms, m.seq);
                }
                None => c.set_cell(i, color, NOBODY, 0, 0),
            }
            n += 1;
        }
        if n != c.len() {
            return Err(WireError::new(
                ErrorCode::BadArgs,
                "too few cells for the canvas",
            ));
        }
        c.seq = seq;
        Ok(c)
    }
}

/// Events per history block. Blocks are immutable once full, so a `SYNC`
/// shares them by reference count instead of copying events.
const BLOCK: usize = 1024;

/// The most recent pixel events, oldest first, with consecutive seqs.
#[derive(Debug)]
pub struct History {
    full: VecDeque<Arc<Block>>,
    current: Vec<Pixel>,
    full_len: usize,
    capacity: usize,
}

/// A block of history, immutable, with its encodings built once (by the
/// first `SYNC` that sends it whole) and shared by every later one, so
/// clients replaying it hold references, not copies.
#[derive(Debug)]
pub struct Block {
    pixels: Box<[Pixel]>,
    text: OnceLock<Bytes>,
    binary: OnceLock<Bytes>,
}

impl Block {
    fn new(pixels: impl Into<Box<[Pixel]>>) -> Self {
        Self {
            pixels: pixels.into(),
            text: OnceLock::new(),
            binary: OnceLock::new(),
        }
    }

    /// The block's events, each as a `PIXEL` event in `mode`, one after
    /// the other.
    pub fn encoded(&self, mode: Mode) -> &Bytes {
        let cell = match mode {
            Mode::Text => &self.text,
            Mode::Binary => &self.binary,
        };
        cell.get_or_init(|| {
            let mut out = BytesMut::new();
            for p in self.pixels.iter() {
                encode_pixel(mode, p, &mut out);
            }
            out.freeze()
        })
    }
}

/// Appends one `PIXEL` event in `mode`.
pub fn encode_pixel(mode: Mode, pixel: &Pixel, out: &mut BytesMut) {
    let event = Event::Pixel(pixel.clone());
    match mode {
        Mode::Text => text::encode_event(&event, out),
        Mode::Binary => binary::encode_event(&event, out),
    }
}

/// Pixel events a `SYNC` replays: shared blocks, the first one partly skipped.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    blocks: Vec<Arc<Block>>,
    skip: usize,
    /// Events to replay; the blocks may hold newer ones.
    len: usize,
}

/// A piece of a [`Replay`]: a whole block (whose encoding can be shared),
/// or some of one.
#[derive(Debug)]
pub enum ReplayPart<'a> {
    /// Every event of the block.
    Whole(&'a Block),
    /// These events only.
    Some(&'a [Pixel]),
}

impl Replay {
    /// The events in seq order.
    pub fn iter(&self) -> impl Iterator<Item = &Pixel> {
        self.blocks
            .iter()
            .flat_map(|b| b.pixels.iter())
            .skip(self.skip)
            .take(self.len)
    }

    /// The events in seq order, by the block.
    pub fn parts(&self) -> impl Iterator<Item = ReplayPart<'_>> {
        let mut skip = self.skip;
        let mut left = self.len;
        self.blocks.iter().filter_map(move |b| {
            let start = skip.min(b.pixels.len());
            let end = (start + left).min(b.pixels.len());
            skip -= start;
            left -= end - start;
            match (start, end) {
                (s, e) if s == e => None,
                (0, e) if e == b.pixels.len() => Some(ReplayPart::Whole(b)),
                (s, e) => Some(ReplayPart::Some(&b.pixels[s..e])),
            }
        })
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is nothing to replay.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl History {
    /// Keeps at least `capacity` recent events (up to one block more).
    pub fn new(capacity: usize) -> Self {
        Self {
            full: VecDeque::new(),
            current: Vec::new(),
            full_len: 0,
            capacity,
        }
    }

    /// Records the next event; its seq must follow the previous one.
    pub fn push(&mut self, pixel: Pixel) {
        debug_assert!(self.newest().is_none_or(|s| s + 1 == pixel.seq));
        self.current.push(pixel);
        if self.current.len() == BLOCK {
            let block = Arc::new(Block::new(std::mem::take(&mut self.current)));
            self.full_len += block.pixels.len();
            self.full.push_back(block);
        }
        while self.full_len > self.capacity {
            match self.full.pop_front() {
                Some(b) => self.full_len -= b.pixels.len(),
                None => break,
            }
        }
        if self.capacity == 0 {
            self.current.clear();
        }
    }

    fn oldest(&self) -> Option<u64> {
        self.full
            .front()
            .map(|b| b.pixels[0].seq)
            .or_else(|| self.current.first().map(|p| p.seq))
    }

    fn newest(&self) -> Option<u64> {
        self.current
            .last()
            .or_else(|| self.full.back().and_then(|b| b.pixels.last()))
            .map(|p| p.seq)
    }

    /// Every event after `seq` up to `latest` (the canvas's seq, or an
    /// older one that every event up to is durable).
    pub fn since(&self, seq: u64, latest: u64) -> Result<Replay, WireError> {
        if seq > latest {
            return Err(WireError::new(
                ErrorCode::BadSeq,
                format!("seq {seq} is above the latest seq {latest}"),
            ));
        }
        if seq == latest {
            return Ok(Replay::default());
        }
        let oldest = self.oldest().unwrap_or(latest + 1);
        if seq + 1 < oldest {
            return Err(WireError::new(
                ErrorCode::TooOld,
                format!(
                    "the server keeps events after seq {}; fetch CANVAS",
                    oldest.saturating_sub(1)
                ),
            ));
        }
        let mut blocks = Vec::new();
        let mut skip = 0;
        for block in &self.full {
            let last = block.pixels[block.pixels.len() - 1].seq;
            if last <= seq {
                continue;
            }
            if blocks.is_empty() {
                skip = (seq + 1 - block.pixels[0].seq) as usize;
            }
            blocks.push(block.clone());
        }
        if !self.current.is_empty() {
            if blocks.is_empty() {
                skip = (seq + 1 - self.current[0].seq) as usize;
            }
            blocks.push(Arc::new(Block::new(self.current.clone())));
        }
        Ok(Replay {
            blocks,
            skip,
            len: (latest - seq) as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(seq: u64) -> Pixel {
        Pixel {
            seq,
            x: 0,
            y: 0,
            color: (seq % 16) as u8,
            name: Arc::from("t"),
        }
    }

    #[test]
    fn copies_share_chunks_until_a_placement_touches_one() {
        let name: Arc<str> = Arc::from("al");
        let mut c = Canvas::new(1, 1024, 1024).unwrap();
        c.apply(0, 0, 5, &name, 1);
        let copy = c.clone();
        let frozen = c.frozen();
        assert!(
            c.chunks
                .iter()
                .zip(&copy.chunks)
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );
        // A placement copies its chunk, only that one, and the copies keep
        // what they had.
        c.apply(1000, 1000, 7, &name, 2);
        let shared = c
            .chunks
            .iter()
            .zip(&copy.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, c.chunks.len() - 1);
        assert_eq!(copy.get(1000, 1000), Some(0));
        assert_eq!(frozen.snapshot().pixels[1000 * 1024 + 1000], 0);
        assert_eq!(frozen.seq(), 1);
        assert_eq!(c.get(1000, 1000), Some(7));
        assert_eq!(c.snapshot().pixels[1000 * 1024 + 1000], 7);
        // New names after a copy leave the copy's table alone.
        c.apply(1, 1, 3, &Arc::from("bo"), 3);
        assert_eq!(copy.names.len(), 1);
        assert_eq!(c.whose(1, 1).unwrap().name.as_ref(), "bo");
    }

    #[test]
    fn checks_ranges() {
        let c = Canvas::new(1, 4, 3).unwrap();
        assert!(c.check(3, 2, 15).is_ok());
        for (x, y, col) in [(4, 0, 0), (0, 3, 0), (0, 0, 16), (u32::MAX, 0, 0)] {
            assert_eq!(c.check(x, y, col).unwrap_err().code, ErrorCode::OutOfRange);
        }
        assert!(Canvas::new(1, 0, 3).is_err());
        assert!(Canvas::new(1, MAX_SIDE + 1, 3).is_err());
    }

    #[test]
    fn apply_counts_seq_and_snapshot_copies() {
        let mut c = Canvas::new(9, 2, 2).unwrap();
        let al: Arc<str> = Arc::from("al");
        assert_eq!(c.apply(1, 1, 5, &al, 1000), 1);
        assert_eq!(c.apply(0, 1, 3, &al, 2000), 2);
        assert_eq!(
            c.whose(0, 1),
            Some(PixelMeta {
                name: al.clone(),
                unix_ms: 2000,
                seq: 2
            })
        );
        assert_eq!(c.whose(0, 0), None);
        let copy = Canvas::restore(9, 2, 2, 2, c.cells()).unwrap();
        assert_eq!(copy.whose(1, 1).unwrap().seq, 1);
        assert_eq!(copy.snapshot(), c.snapshot());
        let s = c.snapshot();
        assert_eq!((s.canvas_id, s.seq), (9, 2));
        assert_eq!(s.pixels, vec![0, 0, 3, 5]);
        assert_eq!(c.get(1, 1), Some(5));
        assert_eq!(c.get(2, 0), None);
    }

    #[test]
    fn sync_replays_exactly_the_missing_suffix() {
        let mut h = History::new(3000);
        for seq in 1..=2500 {
            h.push(pixel(seq));
        }
        for from in [0, 1, 1023, 1024, 1025, 2047, 2048, 2499] {
            let r = h.since(from, 2500).unwrap();
            let seqs: Vec<u64> = r.iter().map(|p| p.seq).collect();
            assert_eq!(seqs, ((from + 1)..=2500).collect::<Vec<_>>(), "from {from}");
            assert_eq!(r.len(), seqs.len());
        }
        assert!(h.since(2500, 2500).unwrap().is_empty());
        assert_eq!(h.since(2501, 2500).unwrap_err().code, ErrorCode::BadSeq);
    }

    #[test]
    fn old_events_are_dropped_in_blocks() {
        let mut h = History::new(1500);
        for seq in 1..=5000 {
            h.push(pixel(seq));
        }
        let oldest = h.oldest().unwrap();
        assert!(5000 - oldest + 1 >= 1500, "kept too few: oldest {oldest}");
        assert!(5000 - oldest < 1500 + 2 * BLOCK as u64, "kept too many");
        assert_eq!(
            h.since(oldest - 2, 5000).unwrap_err().code,
            ErrorCode::TooOld
        );
        assert_eq!(
            h.since(oldest - 1, 5000).unwrap().len() as u64,
            5000 - oldest + 1
        );
    }

    #[test]
    fn empty_history_only_allows_the_latest() {
        let h = History::new(100);
        assert!(h.since(0, 0).unwrap().is_empty());
        let mut h = History::new(0);
        h.push(pixel(1));
        assert_eq!(h.since(0, 1).unwrap_err().code, ErrorCode::TooOld);
    }
}
