//! Durable canvas: a snapshot file plus an append-only journal of accepted
//! pixels and chat, written by one thread with group commit.
//!
//! Files in the data directory:
//! - `canvas.snap`: the whole state at some seq, replaced only by an atomic
//!   rename of a fully written and fsynced `canvas.snap.tmp`;
//! - `canvas.log`: records after the snapshot;
//! - `canvas.log.new`: during a compaction, records after the snapshot
//!   being written; it becomes `canvas.log` once that snapshot is in place;
//! - `reserve.snap`, `reserve.log`: space held back so that after a write
//!   error the server can always write a snapshot from memory and a new
//!   journal, even on a full disk (they are written over, not freed);
//! - `archive/`: the history archive, every placement compaction moved
//!   out of the journal ([`archive`]);
//! - `lock`: held (flock) while a server uses the directory;
//! - `*.torn-<time>`, `*.cut-<time>`, `*.damaged-<time>`, ...: bytes that a
//!   start or `repair` set aside instead of destroying them.
//!
//! Start-up ([`recovery`]) loads the snapshot and replays `canvas.log`
//! then `canvas.log.new`. A torn tail (an incomplete last record, which a
//! crash leaves) is cut and kept aside; any other damage stops the start
//! with a message and changes nothing, until the operator runs
//! `pixchat-server repair`.
//!
//! Durability is tied to visibility: the journal thread tells the broadcast
//! log how far the journal is durable, and nothing past that point (no
//! event, no `OK`, no snapshot that includes it) reaches any client. So no
//! client ever sees a pixel a crash could take back, and seqs stay
//! consistent across restarts for `SYNC`. After a failed write or fsync the
//! journal trusts nothing it wrote since its last good fsync: it writes a
//! snapshot of the memory state and a new journal, and until it has, new
//! placements are refused ([`journal`]).

pub mod archive;
pub mod faults;
mod files;
pub(crate) mod format;
pub(crate) mod journal;
pub mod recovery;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use super::world::{CHAT_HISTORY, ChatLine, World};

pub use faults::Faults;
pub(crate) use journal::Journal;
pub(crate) use recovery::open;

/// Bytes of a journal's header (the records start after it).
pub const JOURNAL_HEADER_LEN: usize = format::LOG_HEADER_LEN;

/// How long `--fsync batch` waits to gather more records into one fsync.
pub const BATCH_WINDOW: Duration = Duration::from_millis(2);

const SNAP: &str = "canvas.snap";
const SNAP_TMP: &str = "canvas.snap.tmp";
const LOG: &str = "canvas.log";
const LOG_NEW: &str = "canvas.log.new";
const LOG_TMP: &str = "canvas.log.tmp";
const LOCK: &str = "lock";
const RESERVE_SNAP: &str = "reserve.snap";
const RESERVE_LOG: &str = "reserve.log";

/// When accepted records are forced to disk, like Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// fsync before acknowledging, as soon as records arrive.
    Always,
    /// fsync before acknowledging, grouping everything accepted within a
    /// couple of milliseconds into one fsync.
    Batch,
    /// Acknowledge once written to the operating system; no fsync.
    Never,
}

impl Fsync {
    /// Every policy, by its name on the command line.
    pub const ALL: [(&'static str, Fsync); 3] = [
        ("always", Fsync::Always),
        ("batch", Fsync::Batch),
        ("never", Fsync::Never),
    ];
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, f)| f)
            .ok_or_else(|| format!("{s:?} is not one of always, batch, never"))
    }
}

impl std::fmt::Display for Fsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = Self::ALL
            .iter()
            .find(|(_, p)| p == self)
            .map_or("", |(n, _)| n);
        f.write_str(name)
    }
}

/// Where and how the canvas is kept.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The data directory (created if missing).
    pub dir: std::path::PathBuf,
    /// fsync policy.
    pub fsync: Fsync,
    /// Replace the stored canvas with a new one (old files are kept aside).
    pub new_canvas: bool,
    /// Records in the journal that trigger a compaction into a snapshot.
    pub compact_after: u64,
    /// Write and fsync errors to inject, for tests; none by default.
    pub faults: Arc<Faults>,
    /// Keep every placement compaction moves out of the journal in
    /// `archive/` (on by default; `--no-archive`).
    pub archive: bool,
    /// How much of the archive to keep (`--history-retention`).
    pub retention: archive::Retention,
}

impl StorageConfig {
    /// Storage in `dir` with the default policy (batched fsync).
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            fsync: Fsync::Batch,
            new_canvas: false,
            compact_after: crate::DEFAULT_COMPACT_AFTER,
            faults: Arc::default(),
            archive: true,
            retention: archive::Retention::All,
        }
    }
}
