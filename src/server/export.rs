//! Offline exports of a data directory's history (`pixchat-server
//! export`): every placement as CSV in r/place 2022's columns, the canvas
//! at any seq or time as an indexed PNG, and timelapses as GIF or APNG.
//! They read the archive and the journals ([`History`], a segment at a time)
//! without taking the directory's lock, so a running server's directory
//! can be exported.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::storage::archive::{Base, History, Placement};
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

/// How the CSV's `user` column is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Users {
    /// The name in clear (pixchat names are public on the wire).
    Clear,
    /// SHA-256 of the salt then the lower-cased name (names are unique
    /// ignoring case), in hex: one user keeps one value through an export
    /// made with one salt, and nobody without the salt can test a guessed
    /// name against it.
    Hashed {
        /// The key.
        salt: Vec<u8>,
    },
}

impl Users {
    /// A random salt: 32 random bytes in hex, used as text like a
    /// `--salt` given, so printing it lets the export be repeated with
    /// the same hashes.
    pub fn random_salt() -> String {
        let salt: [u8; 32] = rand::random();
        salt.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The `user` value of `name`.
    pub fn user(&self, name: &str) -> String {
        match self {
            Users::Clear => name.to_string(),
            Users::Hashed { salt } => {
                use sha2::Digest;
                let mut h = sha2::Sha256::new();
                h.update(salt);
                h.update(name.to_ascii_lowercase().as_bytes());
                h.finalize().iter().map(|b| format!("{b:02x}")).collect()
            }
        }
    }
}

/// Writes the placements between `from` and `to` (inclusive) as CSV with
/// r/place 2022's columns: `timestamp,user,pixel_color,coordinate`, as
/// they are read (one segment in memory at a time), the user as `users`
/// says. Returns how many rows were written.
pub fn csv(
    history: &History,
    out: impl Write,
    from: Option<Point>,
    to: Option<Point>,
    users: &Users,
) -> anyhow::Result<u64> {
    let mut w = csv::Writer::from_writer(BufWriter::new(out));
    w.write_record(["timestamp", "user", "pixel_color", "coordinate"])?;
    let bar = progress(history.len(), "csv");
    let mut rows = 0;
    let mut seen = 0u64;
    // One hash per author, not per row.
    let mut names: HashMap<Arc<str>, String> = HashMap::new();
    history.for_each(|p| {
        seen += 1;
        if seen.is_multiple_of(65_536) {
            bar.set_position(seen);
        }
        if from.is_some_and(|f| !f.reached(p)) {
            return Ok(ControlFlow::Continue(()));
        }
        if to.is_some_and(|t| !t.includes(p)) {
            return Ok(ControlFlow::Break(()));
        }
        w.write_record([
            timestamp(p.unix_ms),
            names
                .entry(p.name.clone())
                .or_insert_with(|| users.user(&p.name))
                .clone(),
            hex_color(p.color),
            format!("{},{}", p.x, p.y),
        ])?;
        rows += 1;
        Ok(ControlFlow::Continue(()))
    })?;
    w.flush()?;
    bar.finish_and_clear();
    Ok(rows)
}

/// The canvas pictures start from: the archive's base (after retention)
/// or the blank canvas; an error when neither is known (an archive
/// started on a data directory older than it, then trimmed).
fn start(history: &History) -> anyhow::Result<Base> {
    match &history.base {
        Some(base) => Ok(base.clone()),
        None => bail!(
            "the history starts at seq {} and no base canvas is kept for the state before it \
             (the archive began on an older data directory): no picture can be replayed",
            history.first_seq().unwrap_or(0)
        ),
    }
}

/// Applies `p` to `canvas`, refusing a gap in the history (a picture
/// after it would be wrong).
fn replay_one(canvas: &mut Base, p: &Placement) -> anyhow::Result<()> {
    if p.seq != canvas.seq + 1 {
        bail!(
            "the history has a gap (seq {} follows seq {}): no picture can be replayed past it",
            p.seq,
            canvas.seq
        );
    }
    canvas.apply(p);
    Ok(())
}

/// The canvas (palette indexes, row by row) after every placement up to
/// `at` (the end when `None`), and the seq it shows. Placements are read
/// one segment at a time into one canvas.
pub fn canvas_at(history: &History, at: Option<Point>) -> anyhow::Result<(Vec<u8>, u64)> {
    let mut canvas = start(history)?;
    let before = match at {
        Some(Point::Seq(s)) => s < canvas.seq,
        Some(Point::Time(t)) => canvas.seq > 0 && t < canvas.unix_ms,
        None => false,
    };
    if before {
        bail!(
            "the history held starts after seq {} ({}): older placements were removed by --history-retention",
            canvas.seq,
            timestamp(canvas.unix_ms)
        );
    }
    history.for_each(|p| {
        if at.is_some_and(|a| !a.includes(p)) {
            return Ok(ControlFlow::Break(()));
        }
        replay_one(&mut canvas, p)?;
        Ok(ControlFlow::Continue(()))
    })?;
    Ok((canvas.pixels, canvas.seq))
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

/// The frames of a timelapse: the canvas after every `every` placements
/// (counted from the first one held), and after the last one. Calls
/// `frame` with each (and its seq).
fn frames(
    history: &History,
    every: u64,
    mut frame: impl FnMut(&[u8], u64) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut canvas = start(history)?;
    let every = every.max(1);
    let bar = progress(history.len(), "timelapse");
    let mut count = 0;
    let mut placed = 0u64;
    let mut last_shown = None;
    history.for_each(|p| {
        replay_one(&mut canvas, p)?;
        placed += 1;
        if placed.is_multiple_of(every) {
            frame(&canvas.pixels, p.seq)?;
            count += 1;
            last_shown = Some(p.seq);
            bar.set_position(placed);
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if last_shown != Some(canvas.seq) || count == 0 {
        frame(&canvas.pixels, canvas.seq)?;
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
            let n = frame_count(history.len(), every);
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

/// Opens a data directory's history, with a message that says which.
pub fn read(data_dir: &Path) -> anyhow::Result<History> {
    History::open(data_dir).with_context(|| format!("read the history of {}", data_dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_user_is_sha256_of_the_salt_then_the_lower_cased_name() {
        let users = Users::Hashed {
            salt: b"pepper".to_vec(),
        };
        // Python: hashlib.sha256(b"pepperalice").hexdigest()
        let want = "b1b68da447843a6519d8dd7a9c13c90aa1148805cbe55810f86712e6c294ff36";
        assert_eq!(users.user("alice"), want);
        assert_eq!(users.user("Alice"), want, "names are unique ignoring case");
        assert_eq!(Users::Clear.user("Alice"), "Alice");
        assert_eq!(Users::random_salt().len(), 64);
        assert_ne!(Users::random_salt(), Users::random_salt());
    }
}
