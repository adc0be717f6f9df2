//! Reading a data directory back: what is there ([`inspect`]), whether a
//! start may proceed and with what state ([`plan`]), the start itself
//! ([`open`]), and the operator's tools `check` ([`check`]) and `repair`
//! ([`repair`]), like Redis's `redis-check-aof`.
//!
//! The rule: a start never destroys what it cannot read. A torn tail (an
//! incomplete last record with nothing intact after it, which a crash
//! leaves) is cut automatically, and the cut bytes are kept beside the
//! journal. Anything else (a damaged record with intact records after it,
//! a damaged header, records out of sequence, a damaged snapshot, or a
//! missing one while a journal still needs it) stops the start with a
//! message that says which file, where, what follows and what to do, and
//! nothing on disk is changed. `repair` then makes a start possible and
//! keeps everything it takes out in files beside the originals.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tracing::{info, warn};

use super::super::canvas::Canvas;
use super::super::world::Applied;
use super::files::{self, keep_aside, move_aside};
use super::format::{self, Header, Record, Scan};
use super::{LOCK, LOG, LOG_NEW, LOG_TMP, SNAP, SNAP_TMP, StorageConfig, World};
use crate::protocol::Pixel;

/// The snapshot file as found.
#[derive(Debug)]
pub(crate) enum SnapshotFile {
    /// There is none.
    Missing,
    /// It is there but cannot be used.
    Damaged {
        /// What is wrong.
        why: String,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// It reads back whole.
    Ok {
        /// The state it holds.
        state: Box<World>,
        /// Its size.
        len: u64,
    },
}

/// One journal file as found.
#[derive(Debug)]
pub(crate) struct JournalFile {
    /// `canvas.log` or `canvas.log.new`.
    pub name: &'static str,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// What scanning it found.
    pub scan: Scan,
}

/// Everything in a data directory, read but not changed.
#[derive(Debug)]
pub(crate) struct Inspection {
    /// The directory.
    pub dir: PathBuf,
    /// `canvas.snap`.
    pub snapshot: SnapshotFile,
    /// `canvas.log`, then `canvas.log.new`, those that exist.
    pub journals: Vec<JournalFile>,
}

/// Reads the data directory without changing anything.
pub(crate) fn inspect(dir: &Path) -> anyhow::Result<Inspection> {
    let snapshot = match fs::read(dir.join(SNAP)) {
        Ok(bytes) => match format::decode_snapshot(&bytes) {
            Ok(state) => SnapshotFile::Ok {
                state: Box::new(state),
                len: bytes.len() as u64,
            },
            Err(why) => SnapshotFile::Damaged { why, bytes },
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => SnapshotFile::Missing,
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.join(SNAP).display())),
    };
    let mut journals = Vec::new();
    for name in [LOG, LOG_NEW] {
        match fs::read(dir.join(name)) {
            Ok(bytes) => journals.push(JournalFile {
                name,
                scan: format::scan_log(&bytes),
                bytes,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("read {}", dir.join(name).display())),
        }
    }
    Ok(Inspection {
        dir: dir.to_path_buf(),
        snapshot,
        journals,
    })
}

/// A torn tail to cut: the bytes after the last whole record.
#[derive(Debug)]
pub(crate) struct Torn {
    /// The journal it is cut from.
    pub file: &'static str,
    /// Where the cut is.
    pub offset: usize,
    /// The bytes cut off.
    pub bytes: Vec<u8>,
}

/// How a start may proceed.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The state after snapshot and replay.
    pub state: World,
    /// Pixel events replayed from the journal, to seed `SYNC` history.
    pub replayed: Vec<Pixel>,
    /// Torn tails to cut (and keep aside).
    pub torn: Vec<Torn>,
    /// Things worth a line in the log.
    pub notes: Vec<String>,
    /// There was no canvas: a new one was made.
    pub fresh: bool,
    /// The files must be rewritten: the state becomes the snapshot and the
    /// journal starts empty.
    pub normalise: bool,
}

/// Why a start refuses, in terms an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The file at fault.
    pub file: &'static str,
    /// Byte offset of the damage, where that means something.
    pub offset: Option<usize>,
    /// What is wrong.
    pub what: String,
    /// Intact records that follow the damage (they would be lost by
    /// cutting there).
    pub intact_after: usize,
    /// What kind of problem, for `repair`.
    pub kind: Problem,
}

/// The kinds of damage `repair` knows how to get past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The snapshot does not read back.
    SnapshotDamaged,
    /// No snapshot, and the journal does not start at the beginning.
    SnapshotMissing,
    /// Neither copy of a journal header reads back.
    HeaderDamaged,
    /// A journal of another canvas.
    ForeignJournal,
    /// A journal that starts after the state before it ends.
    Gap,
    /// A damaged record with intact records after it.
    DamagedRecord,
    /// A whole record that does not follow the one before.
    OutOfSequence,
    /// The canvas is another size than asked for (not damage).
    SizeMismatch,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(at) = self.offset {
            write!(f, " at byte {at}")?;
        }
        write!(f, ": {}", self.what)?;
        if self.intact_after > 0 {
            write!(
                f,
                "; {} intact record{} follow{} it",
                self.intact_after,
                if self.intact_after == 1 { "" } else { "s" },
                if self.intact_after == 1 { "s" } else { "" }
            )?;
        }
        Ok(())
    }
}

impl Refusal {
    /// What the operator can do about it.
    pub fn advice(&self, dir: &Path) -> String {
        let repair = format!("pixchat-server repair --data-dir {}", dir.display());
        match self.kind {
            Problem::SizeMismatch => {
                "start without --width/--height to use it, or add --new-canvas to replace it \
                 (the old files are kept aside)"
                    .into()
            }
            Problem::SnapshotDamaged => format!(
                "run `{repair}` (it rebuilds the snapshot from the journal when the journal \
                 holds the whole canvas, or keeps what can still be read of it), or restore \
                 {SNAP} from a backup, or start with --new-canvas (the old files are kept aside)"
            ),
            Problem::SnapshotMissing => format!(
                "restore {SNAP} from a backup; or run `{repair}`, which starts from what the \
                 journal holds and gives up the placements only the snapshot had (the canvas \
                 gets a new id); or start with --new-canvas (the old files are kept aside)"
            ),
            Problem::DamagedRecord | Problem::OutOfSequence => format!(
                "run `{repair}`: it cuts the journal there and keeps the cut part in a file \
                 beside it; the placements after the damage are given up (`pixchat-server \
                 check` counts them first)"
            ),
            Problem::HeaderDamaged => format!(
                "run `{repair}`: it rebuilds the header from the snapshot and keeps every \
                 intact record"
            ),
            Problem::ForeignJournal | Problem::Gap => format!(
                "put back the files that belong together, or run `{repair}`, which sets the \
                 journal aside (or keeps what it can of it) and says what that gives up"
            ),
        }
    }
}

fn refuse(
    file: &'static str,
    offset: Option<usize>,
    what: String,
    intact_after: usize,
    kind: Problem,
) -> Refusal {
    Refusal {
        file,
        offset,
        what,
        intact_after,
        kind,
    }
}

fn records_in(journals: &[JournalFile]) -> usize {
    journals.iter().map(|j| j.scan.records.len()).sum()
}

/// Decides how a start proceeds from what `inspect` found. `size` is the
/// size asked for on the command line, if any.
pub(crate) fn plan(
    ins: &Inspection,
    size: Option<(u16, u16)>,
    default_size: (u16, u16),
) -> Result<Plan, Refusal> {
    let mut notes = Vec::new();
    let mut fresh = false;
    let mut normalise = false;
    let mut state = match &ins.snapshot {
        SnapshotFile::Ok { state, .. } => (**state).clone(),
        SnapshotFile::Damaged { why, .. } => {
            return Err(refuse(SNAP, None, why.clone(), 0, Problem::SnapshotDamaged));
        }
        SnapshotFile::Missing => match ins.journals.first() {
            None => {
                let (w, h) = size.unwrap_or(default_size);
                let canvas = Canvas::new(rand::random(), w, h)
                    .map_err(|e| refuse(SNAP, None, e.message, 0, Problem::SizeMismatch))?;
                fresh = true;
                normalise = true;
                World::new(canvas)
            }
            Some(j) => match j.scan.header {
                Some(Header {
                    canvas_id,
                    seq: 0,
                    chat_seq: 0,
                    size: Some((w, h)),
                    ..
                }) => {
                    notes.push(format!(
                        "{SNAP} is missing; {} holds the canvas from its first placement, so it \
                         was rebuilt from there",
                        j.name
                    ));
                    normalise = true;
                    let canvas = Canvas::new(canvas_id, w, h).map_err(|e| {
                        refuse(j.name, Some(0), e.message, 0, Problem::SnapshotMissing)
                    })?;
                    World::new(canvas)
                }
                Some(h) => {
                    let what = if h.size.is_none() {
                        format!(
                            "{SNAP} is missing, and {} (an older format without the canvas \
                             size) cannot rebuild the canvas on its own",
                            j.name
                        )
                    } else {
                        format!(
                            "{SNAP} is missing, and {} starts after seq {}: the placements up \
                             to it were only in the snapshot",
                            j.name, h.seq
                        )
                    };
                    return Err(refuse(
                        SNAP,
                        None,
                        what,
                        records_in(&ins.journals),
                        Problem::SnapshotMissing,
                    ));
                }
                None => {
                    return Err(refuse(
                        SNAP,
                        None,
                        format!("{SNAP} is missing, and the header of {} is damaged", j.name),
                        records_in(&ins.journals)
                            + j.scan
                                .damage
                                .as_ref()
                                .and_then(|d| d.intact_after)
                                .map_or(0, |a| a.records),
                        Problem::SnapshotMissing,
                    ));
                }
            },
        },
    };
    if let Some((w, h)) = size
        && (w, h) != (state.canvas.width(), state.canvas.height())
    {
        return Err(refuse(
            SNAP,
            None,
            format!(
                "the canvas in {} is {}x{}, not {w}x{h}",
                ins.dir.display(),
                state.canvas.width(),
                state.canvas.height()
            ),
            0,
            Problem::SizeMismatch,
        ));
    }

    let mut replayed = Vec::new();
    let mut torn = Vec::new();
    for (i, j) in ins.journals.iter().enumerate() {
        let later = records_in(&ins.journals[i + 1..]);
        if j.name == LOG_NEW {
            // A compaction was under way: finish it by rewriting.
            normalise = true;
        }
        let Some(header) = j.scan.header else {
            let damage = j.scan.damage.as_ref().expect("no header means damage");
            match damage.intact_after {
                Some(after) => {
                    return Err(refuse(
                        j.name,
                        Some(0),
                        damage.why.clone(),
                        after.records + later,
                        Problem::HeaderDamaged,
                    ));
                }
                None => {
                    // Not one record in it: nothing to lose. Kept aside all
                    // the same.
                    notes.push(format!("{}: {}; it holds no record", j.name, damage.why));
                    torn.push(Torn {
                        file: j.name,
                        offset: 0,
                        bytes: j.bytes.clone(),
                    });
                    normalise = true;
                    continue;
                }
            }
        };
        if let Some(note) = &j.scan.header_note {
            notes.push(format!("{}: {note}", j.name));
            normalise = true;
        }
        if header.version < 2 {
            normalise = true;
        }
        if header.canvas_id != state.canvas.id() {
            return Err(refuse(
                j.name,
                Some(0),
                format!(
                    "it belongs to canvas {:016x}, not to canvas {:016x} of {SNAP}",
                    header.canvas_id,
                    state.canvas.id()
                ),
                j.scan.records.len() + later,
                Problem::ForeignJournal,
            ));
        }
        if header.seq > state.canvas.seq() || header.chat_seq > state.chat_seq {
            return Err(refuse(
                j.name,
                Some(0),
                format!(
                    "it starts after seq {} (chat seq {}), but what comes before it ends at seq \
                     {} (chat seq {}): the placements in between are missing",
                    header.seq,
                    header.chat_seq,
                    state.canvas.seq(),
                    state.chat_seq
                ),
                j.scan.records.len() + later,
                Problem::Gap,
            ));
        }
        for (k, (offset, record)) in j.scan.records.iter().enumerate() {
            normalise = true;
            match state.apply(record) {
                Ok(Applied::Done(Some(pixel))) => replayed.push(pixel),
                Ok(_) => {}
                Err(why) => {
                    return Err(refuse(
                        j.name,
                        Some(*offset),
                        format!("a record out of sequence: {why}"),
                        j.scan.records.len() - k - 1 + later,
                        Problem::OutOfSequence,
                    ));
                }
            }
        }
        if let Some(damage) = &j.scan.damage {
            if let Some(after) = damage.intact_after {
                return Err(refuse(
                    j.name,
                    Some(damage.offset),
                    damage.why.clone(),
                    after.records + later,
                    Problem::DamagedRecord,
                ));
            }
            torn.push(Torn {
                file: j.name,
                offset: damage.offset,
                bytes: j.bytes[damage.offset..].to_vec(),
            });
            normalise = true;
        }
    }
    if !ins.journals.iter().any(|j| j.name == LOG) {
        normalise = true;
    }
    Ok(Plan {
        state,
        replayed,
        torn,
        notes,
        fresh,
        normalise,
    })
}

/// The outcome of opening a data directory.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The state after snapshot and replay.
    pub state: World,
    /// Pixel events replayed from the journal, to seed `SYNC` history.
    pub replayed: Vec<Pixel>,
    /// The directory.
    pub(crate) dir: PathBuf,
    /// The journal, open for appending.
    pub(crate) log: File,
    /// Size of the snapshot on disk, which sizes the reserve.
    pub(crate) snapshot_len: u64,
    /// Held for the server's lifetime so no second server shares the dir.
    pub(crate) lock: File,
}

/// Takes the directory's lock, or says who holds it.
pub(crate) fn lock(dir: &Path) -> anyhow::Result<File> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK))
        .with_context(|| format!("open {}", dir.join(LOCK).display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "another pixchat-server is using the data directory {}",
            dir.display()
        );
    }
    Ok(lock)
}

/// Opens (or creates) the data directory and recovers the state: the
/// start-up of the durable server. `size` is the canvas size asked for, if
/// any: a stored canvas of another size is an error unless `new_canvas`
/// is set. A refusal changes nothing on disk.
pub(crate) fn open(
    config: &StorageConfig,
    size: Option<(u16, u16)>,
    default_size: (u16, u16),
) -> anyhow::Result<Recovered> {
    let dir = &config.dir;
    fs::create_dir_all(dir)
        .with_context(|| format!("create the data directory {}", dir.display()))?;
    let lock = lock(dir)?;
    if config.new_canvas {
        set_aside_for_new_canvas(dir)?;
    }
    let ins = inspect(dir)?;
    let plan = plan(&ins, size, default_size).map_err(|refusal| {
        anyhow::anyhow!(
            "{}/{refusal}. Nothing was changed. To go on: {}",
            dir.display(),
            refusal.advice(dir)
        )
    })?;
    drop(ins);
    for note in &plan.notes {
        warn!(dir = %dir.display(), "{note}");
    }
    for torn in &plan.torn {
        let kept = keep_aside(dir, torn.file, "torn", &torn.bytes)?;
        warn!(
            file = torn.file,
            offset = torn.offset,
            cut_bytes = torn.bytes.len(),
            kept_in = %kept.display(),
            "torn journal tail cut off (an incomplete last record, which a crash leaves); \
             every whole record before it was kept"
        );
    }
    if plan.fresh {
        info!(dir = %dir.display(), width = plan.state.canvas.width(), height = plan.state.canvas.height(), "creating a new canvas");
    }
    // Leftovers of a write that a crash interrupted; the real files never
    // depend on them.
    for tmp in [SNAP_TMP, LOG_TMP] {
        let _ = fs::remove_file(dir.join(tmp));
    }
    let faults = &config.faults;
    if plan.normalise && config.archive {
        // The journals are about to be replaced: what they hold goes to
        // the archive first (the intact records; a torn tail never had an
        // `OK`).
        // Best effort: a full disk must not keep the canvas from coming
        // back; the error names what the archive misses.
        if let Err(e) =
            super::journal::archive_retired(dir, &[LOG, LOG_NEW], config.retention, faults)
        {
            tracing::error!(error = %format!("{e:#}"), "could not archive the journals before rewriting them; the archive misses their placements");
        }
    }
    let (log, snapshot_len) = if plan.normalise {
        // The recovered state becomes the snapshot and the journal starts
        // empty, so a cut stays cut and start-up stays fast.
        normalise(dir, &plan.state, faults, false).or_else(|e| {
            // A full disk: the reserve is there for exactly this.
            warn!(error = %format!("{e:#}"), "no room to rewrite the canvas files; writing them into the reserve");
            normalise(dir, &plan.state, faults, true)
        })?
    } else {
        let len = fs::metadata(dir.join(SNAP)).map_or(0, |m| m.len());
        (files::open_append(&dir.join(LOG))?, len)
    };
    info!(
        dir = %dir.display(),
        canvas_id = format_args!("{:016x}", plan.state.canvas.id()),
        seq = plan.state.canvas.seq(),
        replayed = plan.replayed.len(),
        "canvas recovered"
    );
    Ok(Recovered {
        state: plan.state,
        replayed: plan.replayed,
        dir: dir.clone(),
        log,
        snapshot_len,
        lock,
    })
}

fn normalise(
    dir: &Path,
    state: &World,
    faults: &super::Faults,
    reserve: bool,
) -> anyhow::Result<(File, u64)> {
    let len = files::write_snapshot(dir, state, faults, reserve)?;
    let log = files::new_log(dir, LOG, state, faults, reserve)?;
    match fs::remove_file(dir.join(LOG_NEW)) {
        Ok(()) => files::sync_dir(dir, faults)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("remove canvas.log.new"),
    }
    Ok((log, len))
}

/// Moves the current canvas files aside for `--new-canvas`.
fn set_aside_for_new_canvas(dir: &Path) -> anyhow::Result<()> {
    for name in [SNAP, LOG, LOG_NEW, super::archive::DIR] {
        if dir.join(name).exists() {
            let to = move_aside(dir, name, "replaced")?;
            info!(from = name, to = %to.display(), "old canvas kept aside");
        }
    }
    Ok(())
}

/// What `check` found, and whether a start would go through.
#[derive(Debug)]
pub struct CheckReport {
    /// Lines for the operator.
    pub lines: Vec<String>,
    /// A start would succeed (possibly cutting a torn tail).
    pub startable: bool,
}

/// Reads the data directory and reports, changing nothing: the canvas id,
/// size and seq of the snapshot, each journal's header and records, and
/// the first damage with its offset.
pub fn check(dir: &Path) -> anyhow::Result<CheckReport> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let ins = inspect(dir)?;
    let mut lines = vec![format!("data directory {}", dir.display())];
    match &ins.snapshot {
        SnapshotFile::Missing => lines.push(format!("{SNAP}: missing")),
        SnapshotFile::Damaged { why, bytes } => {
            lines.push(format!("{SNAP}: DAMAGED: {why} ({} bytes)", bytes.len()))
        }
        SnapshotFile::Ok { state, len } => lines.push(format!(
            "{SNAP}: ok: canvas {:016x}, {}x{}, seq {}, chat seq {}, {len} bytes",
            state.canvas.id(),
            state.canvas.width(),
            state.canvas.height(),
            state.canvas.seq(),
            state.chat_seq
        )),
    }
    for j in &ins.journals {
        lines.push(describe_journal(j));
    }
    let startable = match plan(&ins, None, (crate::DEFAULT_WIDTH, crate::DEFAULT_HEIGHT)) {
        Ok(p) => {
            for note in &p.notes {
                lines.push(format!("note: {note}"));
            }
            for t in &p.torn {
                lines.push(format!(
                    "a start cuts the torn tail of {} at byte {} ({} bytes, kept in a file beside it)",
                    t.file,
                    t.offset,
                    t.bytes.len()
                ));
            }
            lines.push(if p.fresh {
                "verdict: no canvas yet; a start creates one".to_string()
            } else {
                format!(
                    "verdict: a start succeeds at seq {} (chat seq {}), replaying {} placements",
                    p.state.canvas.seq(),
                    p.state.chat_seq,
                    p.replayed.len()
                )
            });
            true
        }
        Err(refusal) => {
            lines.push(format!("verdict: a start refuses: {refusal}"));
            lines.push(format!("to go on: {}", refusal.advice(dir)));
            false
        }
    };
    Ok(CheckReport { lines, startable })
}

fn describe_journal(j: &JournalFile) -> String {
    let s = &j.scan;
    let pixels: Vec<u64> = s
        .records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Pixel { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    let chats = s
        .records
        .iter()
        .filter(|(_, r)| matches!(r, Record::Chat(_)))
        .count();
    let mut line = match s.header {
        Some(h) => format!(
            "{}: format {}, canvas {:016x}, after seq {} (chat seq {}), {} records{} ({}{} chat), {} bytes",
            j.name,
            h.version,
            h.canvas_id,
            h.seq,
            h.chat_seq,
            s.records.len(),
            if s.damage.is_some() {
                " before the damage"
            } else {
                ""
            },
            match (pixels.first(), pixels.last()) {
                (Some(a), Some(b)) => format!("pixels seq {a}-{b}, "),
                _ => String::new(),
            },
            chats,
            j.bytes.len()
        ),
        None => format!("{}: {} bytes", j.name, j.bytes.len()),
    };
    if let Some(note) = &s.header_note {
        line.push_str(&format!("; {note}"));
    }
    match &s.damage {
        None => line.push_str("; ok"),
        Some(d) => match d.intact_after {
            None => line.push_str(&format!("; torn tail at byte {}: {}", d.offset, d.why)),
            Some(a) => line.push_str(&format!(
                "; DAMAGED at byte {}: {}; {} intact records follow (the first at byte {})",
                d.offset, d.why, a.records, a.offset
            )),
        },
    }
    line
}

/// What `repair` did.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Lines for the operator.
    pub lines: Vec<String>,
    /// Acknowledged placements given up (they stay in the set-aside files).
    pub given_up: u64,
    /// A start now succeeds.
    pub startable: bool,
}

/// Makes a start possible: gets past each refusal in turn, keeping what it
/// takes out in files beside the originals. Refuses to touch a directory a
/// running server holds.
pub fn repair(dir: &Path) -> anyhow::Result<RepairReport> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let _lock = lock(dir)?;
    let mut report = RepairReport::default();
    for _ in 0..8 {
        let ins = inspect(dir)?;
        let refusal = match plan(&ins, None, (crate::DEFAULT_WIDTH, crate::DEFAULT_HEIGHT)) {
            Ok(p) => {
                report.startable = true;
                report.lines.push(format!(
                    "a start now succeeds at seq {} (chat seq {}){}",
                    p.state.canvas.seq(),
                    p.state.chat_seq,
                    if p.torn.is_empty() {
                        String::new()
                    } else {
                        "; it cuts a torn tail and keeps it aside".to_string()
                    }
                ));
                break;
            }
            Err(r) => r,
        };
        report.lines.push(format!("found: {refusal}"));
        if !fix(dir, &ins, &refusal, &mut report)? {
            report
                .lines
                .push(format!("cannot repair this: {}", refusal.advice(dir)));
            break;
        }
    }
    report.lines.push(format!(
        "acknowledged placements given up: {}{}",
        report.given_up,
        if report.given_up > 0 {
            " (they are kept in the set-aside files)"
        } else {
            ""
        }
    ));
    Ok(report)
}

/// Pixel records among `records`.
fn pixels(records: &[(usize, Record)]) -> u64 {
    records
        .iter()
        .filter(|(_, r)| matches!(r, Record::Pixel { .. }))
        .count() as u64
}

/// Gets past one refusal; false if it cannot.
fn fix(
    dir: &Path,
    ins: &Inspection,
    refusal: &Refusal,
    report: &mut RepairReport,
) -> anyhow::Result<bool> {
    let journal = |name: &str| ins.journals.iter().find(|j| j.name == name);
    match refusal.kind {
        Problem::SizeMismatch => Ok(false),
        Problem::SnapshotDamaged => {
            let SnapshotFile::Damaged { bytes, .. } = &ins.snapshot else {
                return Ok(false);
            };
            let from_start = ins
                .journals
                .first()
                .and_then(|j| j.scan.header)
                .is_some_and(|h| h.seq == 0 && h.chat_seq == 0 && h.size.is_some());
            if from_start {
                let to = move_aside(dir, SNAP, "damaged")?;
                report.lines.push(format!(
                    "moved the damaged {SNAP} to {}; the journal holds the canvas from its first placement and rebuilds it",
                    to.display()
                ));
                return Ok(true);
            }
            match format::salvage_snapshot(bytes) {
                Ok(state) => {
                    let to = keep_aside(dir, SNAP, "damaged", bytes)?;
                    files::write_snapshot(dir, &state, &super::Faults::none(), false)?;
                    report.lines.push(format!(
                        "{SNAP}'s checksum failed, but its contents still read back: rewrote it from them \
                         (seq {}); pixels near the damage may be wrong; the damaged file is kept in {}",
                        state.canvas.seq(),
                        to.display()
                    ));
                    Ok(true)
                }
                Err(why) => {
                    report
                        .lines
                        .push(format!("{SNAP} cannot be read back: {why}"));
                    Ok(false)
                }
            }
        }
        Problem::SnapshotMissing => {
            // Start from what the journals hold; the rest is gone with the
            // snapshot. A new id makes every client reload the canvas
            // instead of mixing it with pixels the server no longer has.
            let Some(first) = ins.journals.first() else {
                return Ok(false);
            };
            let Some(Header {
                seq,
                chat_seq,
                size: Some((w, h)),
                ..
            }) = first.scan.header
            else {
                return Ok(false);
            };
            let canvas = Canvas::restore(
                rand::random(),
                w,
                h,
                seq,
                (0..usize::from(w) * usize::from(h)).map(|_| (0, None)),
            )
            .map_err(|e| anyhow::anyhow!(e.message))?;
            let mut state = World::new(canvas);
            state.chat_seq = chat_seq;
            let kept = rewrite_from(dir, &mut state, &ins.journals, &ins.journals, report)?;
            report.given_up += seq;
            report.lines.push(format!(
                "wrote a new {SNAP} (new canvas id {:016x}) from the {kept} placements the journal held; \
                 the {seq} placements up to seq {seq} were only in the missing snapshot and are given up",
                state.canvas.id()
            ));
            Ok(true)
        }
        Problem::HeaderDamaged => {
            let SnapshotFile::Ok { state, .. } = &ins.snapshot else {
                return Ok(false);
            };
            let Some(j) = journal(refusal.file) else {
                return Ok(false);
            };
            let Some(after) = j.scan.damage.as_ref().and_then(|d| d.intact_after) else {
                return Ok(false);
            };
            let (records, _, _) = format::walk(&j.bytes, after.offset);
            let first = records.iter().find_map(|(_, r)| match r {
                Record::Pixel { seq, .. } => Some(seq.saturating_sub(1)),
                _ => None,
            });
            let base = first.unwrap_or(state.canvas.seq()).min(state.canvas.seq());
            let first_chat = records.iter().find_map(|(_, r)| match r {
                Record::Chat(l) => Some(l.chat_seq.saturating_sub(1)),
                _ => None,
            });
            let chat_base = first_chat.unwrap_or(state.chat_seq).min(state.chat_seq);
            let c = &state.canvas;
            let mut bytes = format::log_header(c.id(), base, chat_base, (c.width(), c.height()));
            bytes.extend_from_slice(&j.bytes[after.offset..]);
            let to = keep_aside(dir, j.name, "damaged", &j.bytes)?;
            write_whole(dir, j.name, &bytes)?;
            report.lines.push(format!(
                "rewrote the header of {} from {SNAP} and kept its records from byte {}; the damaged file is kept in {}",
                j.name,
                after.offset,
                to.display()
            ));
            Ok(true)
        }
        Problem::ForeignJournal => {
            let Some(j) = journal(refusal.file) else {
                return Ok(false);
            };
            let to = move_aside(dir, j.name, "foreign")?;
            report.lines.push(format!(
                "moved {} ({} records of another canvas) to {}",
                j.name,
                j.scan.records.len(),
                to.display()
            ));
            Ok(true)
        }
        Problem::Gap => {
            // Keep both sides of the gap: the state before it, then the
            // journal's records, with the seq jumping over what is missing.
            let SnapshotFile::Ok { state, .. } = &ins.snapshot else {
                return Ok(false);
            };
            let mut state = (**state).clone();
            let before = replay_until(&mut state, &ins.journals, refusal.file);
            let Some(j) = journal(refusal.file) else {
                return Ok(false);
            };
            let Some(h) = j.scan.header else {
                return Ok(false);
            };
            let missing = h.seq.saturating_sub(state.canvas.seq());
            let c = &state.canvas;
            let cells: Vec<_> = c.cells().collect();
            state.canvas = Canvas::restore(rand::random(), c.width(), c.height(), h.seq, cells)
                .map_err(|e| anyhow::anyhow!(e.message))?;
            state.chat_seq = state.chat_seq.max(h.chat_seq);
            let idx = ins
                .journals
                .iter()
                .position(|x| x.name == j.name)
                .unwrap_or(0);
            let kept = rewrite_from(dir, &mut state, &ins.journals[idx..], &ins.journals, report)?;
            report.given_up += missing;
            report.lines.push(format!(
                "wrote a new {SNAP} (new canvas id {:016x}): {before} placements before the gap and {kept} after it; \
                 the {missing} placements in the gap are missing from every file and are given up",
                state.canvas.id()
            ));
            Ok(true)
        }
        Problem::DamagedRecord | Problem::OutOfSequence => {
            let Some(j) = journal(refusal.file) else {
                return Ok(false);
            };
            let Some(offset) = refusal.offset else {
                return Ok(false);
            };
            let (after, _, _) = format::walk(&j.bytes, offset);
            let rest = match refusal.kind {
                // The damaged record itself does not read; count what
                // can be read after it.
                Problem::DamagedRecord => j
                    .scan
                    .damage
                    .as_ref()
                    .and_then(|d| d.intact_after)
                    .map(|a| {
                        let mut n = 0;
                        let mut at = Some(a.offset);
                        while let Some(start) = at {
                            let (found, end, stop) = format::walk(&j.bytes, start);
                            n += pixels(&found);
                            at = stop.and_then(|_| format::find_record(&j.bytes, end + 1));
                        }
                        n + 1
                    })
                    .unwrap_or(1),
                _ => pixels(&after),
            };
            let to = keep_aside(dir, j.name, "cut", &j.bytes[offset..])?;
            write_whole(dir, j.name, &j.bytes[..offset])?;
            // A later journal follows the cut part: it cannot be replayed.
            let mut later = 0;
            if j.name == LOG && journal(LOG_NEW).is_some() {
                let n = journal(LOG_NEW).map_or(0, |l| pixels(&l.scan.records));
                let moved = move_aside(dir, LOG_NEW, "cut")?;
                report.lines.push(format!(
                    "moved {LOG_NEW} ({n} placements after the cut) to {}",
                    moved.display()
                ));
                later = n;
            }
            report.given_up += rest + later;
            report.lines.push(format!(
                "cut {} at byte {offset}; the {} bytes after it are kept in {}; this gives up about {} placements",
                j.name,
                j.bytes.len() - offset,
                to.display(),
                rest + later
            ));
            Ok(true)
        }
    }
}

/// Replays the journals before `stop` into `state`; returns the pixels.
fn replay_until(state: &mut World, journals: &[JournalFile], stop: &str) -> u64 {
    let mut n = 0;
    for j in journals.iter().take_while(|j| j.name != stop) {
        for (_, r) in &j.scan.records {
            if let Ok(Applied::Done(Some(_))) = state.apply(r) {
                n += 1;
            }
        }
    }
    n
}

/// Replays `replay` into `state`, writes `state` as the new snapshot and
/// moves every journal of `all` aside: a canvas rebuilt from what was
/// there. Returns the pixels replayed.
fn rewrite_from(
    dir: &Path,
    state: &mut World,
    replay: &[JournalFile],
    all: &[JournalFile],
    report: &mut RepairReport,
) -> anyhow::Result<u64> {
    let kept = replay_what_follows(state, replay);
    files::write_snapshot(dir, state, &super::Faults::none(), false)?;
    for j in all {
        let to = move_aside(dir, j.name, "replayed")?;
        report.lines.push(format!(
            "moved {} to {} after replaying it",
            j.name,
            to.display()
        ));
    }
    Ok(kept)
}

/// Replays every record of `journals` that follows `state`, skipping what
/// does not; returns the pixels applied.
fn replay_what_follows(state: &mut World, journals: &[JournalFile]) -> u64 {
    let mut n = 0;
    for j in journals {
        for (_, r) in &j.scan.records {
            if let Ok(Applied::Done(Some(_))) = state.apply(r) {
                n += 1;
            }
        }
    }
    n
}

/// Replaces `name` by `bytes`, durably.
fn write_whole(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{name}.repair"));
    let mut f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    io::Write::write_all(&mut f, bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, dir.join(name)).with_context(|| format!("replace {name}"))?;
    files::sync_dir(dir, &super::Faults::none())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::server::storage::ChatLine;
    use crate::server::storage::faults::Faults;

    const ID: u64 = 0xC0FFEE;

    /// A directory with a snapshot at `snap_seq` pixels and a journal of
    /// pixels `from+1..=to` (pixel `s` at (s % 8, s / 8 % 8), colour s % 16).
    struct Dir {
        tmp: tempfile::TempDir,
    }

    fn pixel(seq: u64) -> Record {
        Record::Pixel {
            seq,
            x: (seq % 8) as u16,
            y: (seq / 8 % 8) as u16,
            color: (seq % 16) as u8,
            unix_ms: 1000 + seq,
            name: Arc::from("al"),
        }
    }

    fn state_at(seq: u64) -> World {
        let mut s = World::new(Canvas::new(ID, 8, 8).unwrap());
        for k in 1..=seq {
            s.apply(&pixel(k)).unwrap();
        }
        s
    }

    fn journal(id: u64, base: u64, records: impl IntoIterator<Item = u64>) -> Vec<u8> {
        let mut out = format::log_header(id, base, 0, (8, 8));
        for seq in records {
            if let Record::Pixel {
                seq,
                x,
                y,
                color,
                unix_ms,
                name,
            } = pixel(seq)
            {
                format::put_pixel(&mut out, seq, (x, y, color), unix_ms, &name);
            }
        }
        out
    }

    impl Dir {
        fn new() -> Self {
            Self {
                tmp: tempfile::tempdir().unwrap(),
            }
        }
        fn path(&self) -> &Path {
            self.tmp.path()
        }
        fn snapshot(&self, seq: u64) -> &Self {
            files::write_snapshot(self.path(), &state_at(seq), &Faults::none(), false).unwrap();
            self
        }
        fn write(&self, name: &str, bytes: &[u8]) -> &Self {
            fs::write(self.path().join(name), bytes).unwrap();
            self
        }
        fn read(&self, name: &str) -> Vec<u8> {
            fs::read(self.path().join(name)).unwrap()
        }
        /// Every file and its bytes (but the lock file and the archive's
        /// directory).
        fn contents(&self) -> BTreeMap<String, Vec<u8>> {
            fs::read_dir(self.path())
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| e.file_name() != LOCK && e.file_type().unwrap().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        }
        fn aside(&self, what: &str) -> Vec<(String, Vec<u8>)> {
            self.contents()
                .into_iter()
                .filter(|(n, _)| n.contains(&format!(".{what}-")))
                .collect()
        }
        fn plan(&self) -> Result<Plan, Refusal> {
            plan(&inspect(self.path()).unwrap(), None, (8, 8))
        }
        fn open(&self) -> anyhow::Result<Recovered> {
            open(&StorageConfig::new(self.path()), None, (8, 8))
        }
    }

    fn assert_canvas(state: &World, seq: u64) {
        assert_eq!(state.canvas.seq(), seq);
        let want = state_at(seq);
        assert_eq!(
            state.canvas.snapshot().pixels,
            want.canvas.snapshot().pixels
        );
    }

    #[test]
    fn a_new_directory_gets_a_new_canvas() {
        let d = Dir::new();
        let p = d.plan().unwrap();
        assert!(p.fresh && p.normalise);
        let r = d.open().unwrap();
        assert_eq!(r.state.canvas.seq(), 0);
        assert!(d.path().join(SNAP).exists() && d.path().join(LOG).exists());
    }

    #[test]
    fn snapshot_and_journal_replay_to_the_end() {
        let d = Dir::new();
        d.snapshot(5).write(LOG, &journal(ID, 5, 6..=40));
        let p = d.plan().unwrap();
        assert_canvas(&p.state, 40);
        assert_eq!(p.replayed.len(), 35);
        assert!(p.torn.is_empty());
    }

    #[test]
    fn a_torn_tail_is_cut_and_kept_aside_byte_for_byte() {
        let d = Dir::new();
        let whole = journal(ID, 0, 1..=10);
        let cut_at = whole.len() - 7;
        d.snapshot(0).write(LOG, &whole[..cut_at]);
        let record = (whole.len() - format::LOG_HEADER_LEN) / 10;
        let r = d.open().unwrap();
        assert_canvas(&r.state, 9);
        let aside = d.aside("torn");
        assert_eq!(aside.len(), 1);
        let offset = format::LOG_HEADER_LEN + 9 * record;
        assert_eq!(aside[0].1, whole[offset..cut_at]);
        drop(r);
        // The cut is for good.
        assert_canvas(&d.plan().unwrap().state, 9);
        assert!(d.plan().unwrap().torn.is_empty());
    }

    #[test]
    fn a_damaged_record_refuses_the_start_and_changes_nothing() {
        let d = Dir::new();
        let mut bytes = journal(ID, 0, 1..=2000);
        let record = (bytes.len() - format::LOG_HEADER_LEN) / 2000;
        let at = format::LOG_HEADER_LEN + 10 * record;
        bytes[at + 12] ^= 0x04;
        d.snapshot(0).write(LOG, &bytes);
        let before = d.contents();
        let err = d.open().unwrap_err().to_string();
        assert!(err.contains(&format!("canvas.log at byte {at}")), "{err}");
        assert!(err.contains("1989 intact records follow"), "{err}");
        assert!(err.contains("Nothing was changed"), "{err}");
        assert!(err.contains("pixchat-server repair"), "{err}");
        assert_eq!(d.contents(), before, "a refused start changes nothing");

        let report = check(d.path()).unwrap();
        assert!(!report.startable);
        assert!(
            report
                .lines
                .iter()
                .any(|l| l.contains("DAMAGED at byte") && l.contains("1989 intact")),
            "{:?}",
            report.lines
        );
        assert_eq!(d.contents(), before, "check changes nothing");

        let report = repair(d.path()).unwrap();
        assert!(report.startable, "{:?}", report.lines);
        assert_eq!(report.given_up, 1990);
        let cut = d.aside("cut");
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].1, bytes[at..], "what was cut is kept byte for byte");
        assert_eq!(d.read(LOG), bytes[..at], "what stays is untouched");
        assert_canvas(&d.open().unwrap().state, 10);
    }

    #[test]
    fn a_destroyed_header_refuses_and_repair_keeps_every_record() {
        let d = Dir::new();
        let mut bytes = journal(ID, 3, 4..=50);
        bytes[..format::LOG_HEADER_LEN].fill(0x5A);
        d.snapshot(3).write(LOG, &bytes);
        let refusal = d.plan().unwrap_err();
        assert_eq!(refusal.kind, Problem::HeaderDamaged);
        assert_eq!(refusal.intact_after, 47);
        let report = repair(d.path()).unwrap();
        assert!(report.startable, "{:?}", report.lines);
        assert_eq!(report.given_up, 0);
        assert_eq!(d.aside("damaged")[0].1, bytes);
        assert_canvas(&d.open().unwrap().state, 50);
    }

    #[test]
    fn a_missing_snapshot_is_rebuilt_from_a_journal_that_starts_at_the_beginning() {
        let d = Dir::new();
        d.write(LOG, &journal(ID, 0, 1..=300));
        let r = d.open().unwrap();
        assert_eq!(r.state.canvas.id(), ID, "the same canvas");
        assert_canvas(&r.state, 300);
    }

    #[test]
    fn a_missing_snapshot_with_a_later_journal_refuses_and_never_truncates() {
        let d = Dir::new();
        let bytes = journal(ID, 100, 101..=300);
        d.write(LOG, &bytes);
        let err = d.open().unwrap_err().to_string();
        assert!(err.contains("canvas.snap is missing"), "{err}");
        assert!(err.contains("starts after seq 100"), "{err}");
        assert_eq!(d.read(LOG), bytes, "the journal is never truncated");
        assert!(!d.path().join(SNAP).exists());

        let report = repair(d.path()).unwrap();
        assert!(report.startable, "{:?}", report.lines);
        assert_eq!(report.given_up, 100);
        assert_eq!(d.aside("replayed")[0].1, bytes);
        let r = d.open().unwrap();
        assert_ne!(
            r.state.canvas.id(),
            ID,
            "clients must reload a canvas that lost pixels"
        );
        assert_eq!(r.state.canvas.seq(), 300);
        for seq in 101..=300 {
            let Record::Pixel { x, y, color, .. } = pixel(seq) else {
                unreachable!()
            };
            if (seq + 64..=300).step_by(64).next().is_none() {
                assert_eq!(r.state.canvas.get(x, y), Some(color), "seq {seq}");
            }
        }
    }

    #[test]
    fn a_damaged_snapshot_refuses_then_is_rebuilt_or_salvaged() {
        // With a journal from the beginning: rebuilt from it.
        let d = Dir::new();
        d.snapshot(0).write(LOG, &journal(ID, 0, 1..=64));
        let mut snap = d.read(SNAP);
        let n = snap.len();
        snap[n - 10] ^= 1;
        d.write(SNAP, &snap);
        assert_eq!(d.plan().unwrap_err().kind, Problem::SnapshotDamaged);
        let report = repair(d.path()).unwrap();
        assert!(report.startable, "{:?}", report.lines);
        assert_eq!(d.aside("damaged")[0].1, snap);
        assert_canvas(&d.open().unwrap().state, 64);

        // Without: what can be read of it is kept (the damage is in the
        // seqs of the last pixels, before the chat and the bans).
        let d = Dir::new();
        d.snapshot(30).write(LOG, &journal(ID, 30, 31..=40));
        let mut snap = d.read(SNAP);
        let n = snap.len();
        snap[n - 40] ^= 1;
        d.write(SNAP, &snap);
        let report = repair(d.path()).unwrap();
        assert!(report.startable, "{:?}", report.lines);
        assert_canvas(&d.open().unwrap().state, 40);
    }

    #[test]
    fn a_journal_of_another_canvas_is_refused_and_set_aside_by_repair() {
        let d = Dir::new();
        let bytes = journal(ID + 1, 0, 1..=5);
        d.snapshot(0).write(LOG, &bytes);
        assert_eq!(d.plan().unwrap_err().kind, Problem::ForeignJournal);
        let report = repair(d.path()).unwrap();
        assert!(report.startable);
        assert_eq!(d.aside("foreign")[0].1, bytes);
    }

    #[test]
    fn records_out_of_sequence_are_refused() {
        let d = Dir::new();
        let bytes = journal(ID, 0, (1..=10).chain(12..=20));
        d.snapshot(0).write(LOG, &bytes);
        let r = d.plan().unwrap_err();
        assert_eq!((r.kind, r.intact_after), (Problem::OutOfSequence, 8));
        let report = repair(d.path()).unwrap();
        assert!(report.startable);
        assert_eq!(report.given_up, 9);
        assert_canvas(&d.open().unwrap().state, 10);
    }

    #[test]
    fn an_interrupted_compaction_is_finished() {
        // Crash after the new snapshot was renamed, before canvas.log.new
        // replaced canvas.log: the old journal repeats what the snapshot has.
        let d = Dir::new();
        d.snapshot(30)
            .write(LOG, &journal(ID, 10, 11..=30))
            .write(LOG_NEW, &journal(ID, 30, 31..=45));
        let r = d.open().unwrap();
        assert_canvas(&r.state, 45);
        assert!(!d.path().join(LOG_NEW).exists());
        // Crash before the new snapshot: both journals replay.
        let d = Dir::new();
        d.snapshot(10)
            .write(LOG, &journal(ID, 10, 11..=30))
            .write(LOG_NEW, &journal(ID, 30, 31..=45));
        assert_canvas(&d.open().unwrap().state, 45);
    }

    #[test]
    fn damage_in_the_old_journal_during_a_compaction_is_refused_and_repaired() {
        let d = Dir::new();
        let mut old = journal(ID, 10, 11..=30);
        let record = (old.len() - format::LOG_HEADER_LEN) / 20;
        let at = format::LOG_HEADER_LEN + 5 * record;
        old[at + 9] ^= 0x80;
        let new = journal(ID, 30, 31..=45);
        d.snapshot(10).write(LOG, &old).write(LOG_NEW, &new);
        let r = d.plan().unwrap_err();
        assert_eq!((r.file, r.kind), (LOG, Problem::DamagedRecord));
        assert_eq!(r.intact_after, 14 + 15);
        let report = repair(d.path()).unwrap();
        assert!(report.startable, "{:?}", report.lines);
        assert_eq!(report.given_up, 15 + 15);
        assert_canvas(&d.open().unwrap().state, 15);
        assert!(d.aside("cut").iter().any(|(_, b)| *b == new));
    }

    #[test]
    fn chat_records_replay_and_follow_their_own_seq() {
        let d = Dir::new();
        let mut bytes = journal(ID, 0, 1..=3);
        for n in 1..=3 {
            format::put_chat(
                &mut bytes,
                &ChatLine {
                    chat_seq: n,
                    unix_ms: n,
                    from: Arc::from("al"),
                    text: Arc::from("hi"),
                },
            );
        }
        d.snapshot(0).write(LOG, &bytes);
        let p = d.plan().unwrap();
        assert_eq!((p.state.chat_seq, p.state.chat.len()), (3, 3));
    }
}
