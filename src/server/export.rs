//! Offline exports of a data directory's history (`pixchat-server
//! export`): every placement as CSV in r/place 2022's columns, the canvas
//! at any seq or time as an indexed PNG, and timelapses as GIF or APNG.
//! They read the archive and the journals ([`archive::read_history`])
//! without taking the directory's lock, so a running server's directory
//! can be exported.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::storage::archive::{self, History, Placement};
use crate::image;
use crate::protocol::PALETTE;

/// A point in the history: a seq, or a time (Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// A seq.
    Seq(u64),
    /// Unix milliseconds.
    Time(u64),
}

impl std::str::FromStr for Point {
    type Err = String;

    /// A plain number is a seq; a time is RFC 3339
    /// (`2026-12-01T12:00:00Z`) or `@<unix-ms>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(ms) = s.strip_prefix('@') {
            return ms
                .parse()
                .map(Point::Time)
                .map_err(|_| format!("{s:?}: @ takes Unix milliseconds"));
        }
        if let Ok(seq) = s.parse() {
            return Ok(Point::Seq(seq));
        }
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("{s:?} is neither a seq, @<unix-ms> nor an RFC 3339 time: {e}"))?;
        Ok(Point::Time(
            (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64
        ))
    }
}

impl Point {
    fn includes(self, p: &Placement) -> bool {
        match self {
            Point::Seq(s) => p.seq <= s,
            Point::Time(t) => p.unix_ms <= t,
        }
    }

    fn reached(self, p: &Placement) -> bool {
        match self {
            Point::Seq(s) => p.seq >= s,
            Point::Time(t) => p.unix_ms >= t,
        }
    }
}

/// A progress bar on standard error when it is a terminal; hidden
/// otherwise, so logs and pipes stay clean.
fn progress(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// The r/place 2022 timestamp: `2022-04-04 00:53:51.577 UTC`.
fn timestamp(unix_ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (h, m, s) = t.to_hms();
    format!(
        "{:04}-{:02}-{:02} {h:02}:{m:02}:{s:02}.{:03} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.millisecond()
    )
}

/// `#RRGGBB` of a palette index.
pub fn hex_color(color: u8) -> String {
    let [r, g, b] = PALETTE.get(usize::from(color)).map_or([0; 3], |c| c.rgb);
    format!("#{r:02X}{g:02X}{b:02X}")
}

/// Writes the placements between `from` and `to` (inclusive) as CSV with
/// r/place 2022's columns: `timestamp,user,pixel_color,coordinate`. The
/// user is the name in clear (pixchat names are public on the wire).
/// Returns how many rows were written.
pub fn csv(
    history: &History,
    out: impl Write,
    from: Option<Point>,
    to: Option<Point>,
) -> anyhow::Result<u64> {
    let mut w = csv::Writer::from_writer(BufWriter::new(out));
    w.write_record(["timestamp", "user", "pixel_color", "coordinate"])?;
    let bar = progress(history.placements.len() as u64, "csv");
    let mut rows = 0;
    for (i, p) in history.placements.iter().enumerate() {
        if i % 65_536 == 0 {
            bar.set_position(i as u64);
        }
        if from.is_some_and(|f| !f.reached(p)) {
            continue;
        }
        if to.is_some_and(|t| !t.includes(p)) {
            break;
        }
        w.write_record([
            timestamp(p.unix_ms),
            p.name.to_string(),
            hex_color(p.color),
            format!("{},{}", p.x, p.y),
        ])?;
        rows += 1;
    }
    w.flush()?;
    bar.finish_and_clear();
    Ok(rows)
}

/// Refuses a picture of a history that does not start at the blank
/// canvas (an archive trimmed by retention, or started on an older data
/// directory): the canvas before its first placement is unknown.
fn replayable(history: &History) -> anyhow::Result<()> {
    if !history.complete() {
        let first = history.placements.first().map_or(0, |p| p.seq);
        bail!(
            "the history does not hold every placement from seq 1 (it starts at seq {first}, or has a gap): \
             the canvas before it is unknown, so no picture can be replayed"
        );
    }
    Ok(())
}

/// The canvas (palette indexes, row by row) after every placement up to
/// `at` (the end when `None`), and the seq it shows.
pub fn canvas_at(history: &History, at: Option<Point>) -> anyhow::Result<(Vec<u8>, u64)> {
    replayable(history)?;
    let w = usize::from(history.width);
    let mut pixels = vec![0u8; w * usize::from(history.height)];
    let mut seq = 0;
    for p in &history.placements {
        if at.is_some_and(|a| !a.includes(p)) {
            break;
        }
        if let Some(cell) = pixels.get_mut(usize::from(p.y) * w + usize::from(p.x)) {
            *cell = p.color;
        }
        seq = p.seq;
    }
    Ok((pixels, seq))
}

/// Writes the canvas at `at` as an indexed PNG; returns the seq it shows.
pub fn png(history: &History, path: &Path, at: Option<Point>, scale: u32) -> anyhow::Result<u64> {
    let (pixels, seq) = canvas_at(history, at)?;
    let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    image::write_png(
        BufWriter::new(f),
        &pixels,
        history.width,
        history.height,
        scale,
    )?;
    Ok(seq)
}

/// Timelapse container, by the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Animation {
    /// `.gif`
    Gif,
    /// `.png`/`.apng`: animated PNG.
    Apng,
}

impl Animation {
    /// The format a file name asks for.
    pub fn of_path(path: &Path) -> anyhow::Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("gif") => Ok(Animation::Gif),
            Some("png" | "apng") => Ok(Animation::Apng),
            _ => bail!("{}: a timelapse is a .gif or a .png (APNG)", path.display()),
        }
    }
}

/// The frames of a timelapse: the canvas after every `every` placements,
/// and after the last one. Calls `frame` with each (and its seq).
fn frames(
    history: &History,
    every: u64,
    mut frame: impl FnMut(&[u8], u64) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    replayable(history)?;
    let every = every.max(1);
    let w = usize::from(history.width);
    let mut pixels = vec![0u8; w * usize::from(history.height)];
    let bar = progress(history.placements.len() as u64, "timelapse");
    let mut count = 0;
    let mut last_shown = 0;
    for (i, p) in history.placements.iter().enumerate() {
        if let Some(cell) = pixels.get_mut(usize::from(p.y) * w + usize::from(p.x)) {
            *cell = p.color;
        }
        if (i as u64 + 1).is_multiple_of(every) {
            frame(&pixels, p.seq)?;
            count += 1;
            last_shown = p.seq;
            bar.set_position(i as u64 + 1);
        }
    }
    let end = history.placements.last().map_or(0, |p| p.seq);
    if end != last_shown || count == 0 {
        frame(&pixels, end)?;
        count += 1;
    }
    bar.finish_and_clear();
    Ok(count)
}

/// How many frames a timelapse of `placements` placements every `every`
/// has: one per `every`, and one more for a remainder (at least one).
pub fn frame_count(placements: u64, every: u64) -> u64 {
    let every = every.max(1);
    (placements / every + u64::from(!placements.is_multiple_of(every))).max(1)
}

/// Writes a timelapse: the canvas every `every` placements, `scale` times
/// larger, at `fps` frames a second. Returns the number of frames.
pub fn timelapse(
    history: &History,
    path: &Path,
    every: u64,
    scale: u32,
    fps: u16,
) -> anyhow::Result<u64> {
    let kind = Animation::of_path(path)?;
    let scale = scale.max(1);
    let fps = fps.max(1);
    let (w, h) = (history.width, history.height);
    let (sw, sh) = (u32::from(w) * scale, u32::from(h) * scale);
    if sw > u32::from(u16::MAX) || sh > u32::from(u16::MAX) {
        bail!("{sw}x{sh} is too large a frame");
    }
    let file =
        BufWriter::new(File::create(path).with_context(|| format!("create {}", path.display()))?);
    match kind {
        Animation::Gif => {
            let mut enc = gif::Encoder::new(file, sw as u16, sh as u16, &image::palette_rgb())?;
            enc.set_repeat(gif::Repeat::Infinite)?;
            let delay = (100 / fps).max(1);
            let n = frames(history, every, |pixels, _| {
                let f = gif::Frame {
                    width: sw as u16,
                    height: sh as u16,
                    delay,
                    buffer: std::borrow::Cow::Owned(image::scaled(pixels, w, h, scale)),
                    ..gif::Frame::default()
                };
                enc.write_frame(&f)?;
                Ok(())
            })?;
            enc.into_inner()?.flush()?;
            Ok(n)
        }
        Animation::Apng => {
            let n = frame_count(history.placements.len() as u64, every);
            let mut enc = png::Encoder::new(file, sw, sh);
            enc.set_color(png::ColorType::Indexed);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_palette(image::palette_rgb());
            enc.set_animated(n as u32, 0)?;
            enc.set_frame_delay(1, fps)?;
            let mut writer = enc.write_header()?;
            let written = frames(history, every, |pixels, _| {
                writer.write_image_data(&image::scaled(pixels, w, h, scale))?;
                Ok(())
            })?;
            debug_assert_eq!(written, n);
            writer.finish()?;
            Ok(written)
        }
    }
}

/// Reads a data directory's history, with a message that says which.
pub fn read(data_dir: &Path) -> anyhow::Result<History> {
    archive::read_history(data_dir)
        .with_context(|| format!("read the history of {}", data_dir.display()))
}
