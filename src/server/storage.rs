//! Durable canvas: a snapshot file plus an append-only journal of accepted
//! pixels and chat, written by one thread with group commit.
//!
//! Files in the data directory:
//! - `canvas.snap`: the whole state at some seq, replaced only by an atomic
//!   rename of a fully written and fsynced `canvas.snap.tmp`;
//! - `canvas.log`: records after the snapshot;
//! - `canvas.log.new`: during a compaction, records after the snapshot
//!   being written; it becomes `canvas.log` once that snapshot is in place;
//! - `lock`: held (flock) while a server uses the directory.
//!
//! Start-up loads the snapshot, replays `canvas.log` then `canvas.log.new`,
//! skipping records the snapshot already holds and stopping at the first
//! damaged or out-of-sequence record, which is reported and cut off.
//!
//! Durability is tied to visibility: the journal thread tells the broadcast
//! log how far the journal is durable, and nothing past that point (no
//! event, no `OK`, no snapshot that includes it) reaches any client. So no
//! client ever sees a pixel a crash could take back, and seqs stay
//! consistent across restarts for `SYNC`.

pub mod format;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use tracing::{error, info, warn};

use super::canvas::Canvas;
use super::log::EventLog;
use crate::protocol::Pixel;
use format::Record;

/// Chat messages kept for newcomers and across restarts.
pub const CHAT_HISTORY: usize = 100;
/// How long `--fsync batch` waits to gather more records into one fsync.
pub const BATCH_WINDOW: Duration = Duration::from_millis(2);

const SNAP: &str = "canvas.snap";
const SNAP_TMP: &str = "canvas.snap.tmp";
const LOG: &str = "canvas.log";
const LOG_NEW: &str = "canvas.log.new";
const LOCK: &str = "lock";

/// When accepted records are forced to disk, like Redis's `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// fsync before acknowledging, as soon as records arrive.
    Always,
    /// fsync before acknowledging, grouping everything accepted within a
    /// couple of milliseconds into one fsync.
    Batch,
    /// Acknowledge once written to the operating system; no fsync.
    Never,
}

/// Where and how the canvas is kept.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The data directory (created if missing).
    pub dir: PathBuf,
    /// fsync policy.
    pub fsync: Fsync,
    /// Replace the stored canvas with a new one (old files are kept aside).
    pub new_canvas: bool,
    /// Records in the journal that trigger a compaction into a snapshot.
    pub compact_after: u64,
}

/// One chat message as kept for history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// Position in the chat sequence (1, 2, ...).
    pub chat_seq: u64,
    /// When it was said.
    pub unix_ms: u64,
    /// Sender.
    pub from: Arc<str>,
    /// Message.
    pub text: Arc<str>,
}

/// Everything that survives a restart.
#[derive(Debug, Clone)]
pub struct Persisted {
    /// Pixels, seq, authorship.
    pub canvas: Canvas,
    /// The latest chat messages, oldest first.
    pub chat: VecDeque<ChatLine>,
    /// Seq of the latest chat message.
    pub chat_seq: u64,
}

impl Persisted {
    /// A fresh state around a blank canvas.
    pub fn new(canvas: Canvas) -> Self {
        Self {
            canvas,
            chat: VecDeque::new(),
            chat_seq: 0,
        }
    }

    /// Adds a chat line, forgetting the oldest beyond [`CHAT_HISTORY`].
    pub fn push_chat(&mut self, line: ChatLine) {
        self.chat_seq = line.chat_seq;
        self.chat.push_back(line);
        while self.chat.len() > CHAT_HISTORY {
            self.chat.pop_front();
        }
    }

    /// Applies a replayed record. `Ok(None)`: already in the state;
    /// `Err`: it does not follow (a gap, or out of range), so replay stops.
    fn replay(&mut self, record: Record) -> Result<Option<Pixel>, String> {
        match record {
            Record::Pixel {
                seq,
                x,
                y,
                color,
                unix_ms,
                name,
            } => {
                let have = self.canvas.seq();
                if seq <= have {
                    return Ok(None);
                }
                if seq != have + 1 {
                    return Err(format!("pixel seq {seq} does not follow {have}"));
                }
                let (x, y, color) = self
                    .canvas
                    .check(x.into(), y.into(), color.into())
                    .map_err(|e| format!("pixel seq {seq}: {}", e.message))?;
                self.canvas.apply(x, y, color, &name, unix_ms);
                Ok(Some(Pixel {
                    seq,
                    x,
                    y,
                    color,
                    name,
                }))
            }
            Record::Chat(line) => {
                if line.chat_seq <= self.chat_seq {
                    return Ok(None);
                }
                if line.chat_seq != self.chat_seq + 1 {
                    return Err(format!(
                        "chat seq {} does not follow {}",
                        line.chat_seq, self.chat_seq
                    ));
                }
                self.push_chat(line);
                Ok(None)
            }
        }
    }
}

/// The outcome of opening a data directory.
#[derive(Debug)]
pub struct Recovered {
    /// The state after snapshot and replay.
    pub state: Persisted,
    /// Pixel events replayed from the journal, to seed `SYNC` history.
    pub replayed: Vec<Pixel>,
    files: Files,
}

/// Open handles that belong to the journal.
#[derive(Debug)]
struct Files {
    dir: PathBuf,
    log: File,
    /// Held for the server's lifetime so no second server shares the dir.
    _lock: File,
}

/// Opens (or creates) the data directory and recovers the state. `size` is
/// the canvas size the user asked for, if any: a stored canvas of another
/// size is an error unless `new_canvas` is set.
pub fn recover(
    config: &StorageConfig,
    size: Option<(u16, u16)>,
    default_size: (u16, u16),
) -> anyhow::Result<Recovered> {
    let dir = &config.dir;
    fs::create_dir_all(dir)
        .with_context(|| format!("create the data directory {}", dir.display()))?;
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
    if config.new_canvas {
        set_aside(dir)?;
    }

    let snap_path = dir.join(SNAP);
    let (mut state, fresh) = match fs::read(&snap_path) {
        Ok(bytes) => {
            let state = format::decode_snapshot(&bytes).map_err(|why| {
                anyhow::anyhow!(
                    "{}: {why}; move it away, or start with --new-canvas to begin a new canvas",
                    snap_path.display()
                )
            })?;
            (state, false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (w, h) = size.unwrap_or(default_size);
            let canvas =
                Canvas::new(rand::random(), w, h).map_err(|e| anyhow::anyhow!(e.message))?;
            info!(dir = %dir.display(), width = w, height = h, "creating a new canvas");
            (Persisted::new(canvas), true)
        }
        Err(e) => return Err(e).with_context(|| format!("read {}", snap_path.display())),
    };
    if let Some((w, h)) = size
        && (w, h) != (state.canvas.width(), state.canvas.height())
    {
        bail!(
            "the canvas in {} is {}x{}, not {w}x{h}; start without --width/--height to use it, \
             or add --new-canvas to replace it (the old files are kept aside)",
            dir.display(),
            state.canvas.width(),
            state.canvas.height()
        );
    }

    let mut replayed = Vec::new();
    let mut damaged = false;
    let mut had_records = dir.join(LOG_NEW).exists();
    for name in [LOG, LOG_NEW] {
        let path = dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        if damaged {
            warn!(file = %path.display(), "skipped: it follows damaged records");
            continue;
        }
        let scan = format::scan_log(&bytes);
        if scan.damage.is_none() && scan.canvas_id != state.canvas.id() {
            warn!(file = %path.display(), "skipped: it belongs to another canvas");
            continue;
        }
        let mut applied = 0usize;
        had_records |= !scan.records.is_empty();
        for record in scan.records {
            match state.replay(record) {
                Ok(Some(pixel)) => {
                    replayed.push(pixel);
                    applied += 1;
                }
                Ok(None) => applied += 1,
                Err(why) => {
                    warn!(file = %path.display(), %why, "journal out of sequence; cutting it here");
                    damaged = true;
                    break;
                }
            }
        }
        if let Some(why) = scan.damage {
            warn!(
                file = %path.display(),
                %why,
                kept_bytes = scan.good_len,
                cut_bytes = bytes.len() - scan.good_len,
                "damaged journal tail cut off; every record before it was kept"
            );
            damaged = true;
        }
        info!(file = %path.display(), records = applied, "journal replayed");
    }
    info!(
        dir = %dir.display(),
        canvas_id = format_args!("{:016x}", state.canvas.id()),
        seq = state.canvas.seq(),
        "canvas recovered"
    );

    // Normalise: the recovered state becomes the snapshot and the journal
    // starts empty, so damage is cut off for good and start-up stays fast.
    if fresh || had_records || damaged {
        write_snapshot(dir, &state)?;
        let _ = fs::remove_file(dir.join(LOG_NEW));
    }
    let log = if fresh || had_records || damaged || !dir.join(LOG).exists() {
        create_log(&dir.join(LOG), &state)?
    } else {
        OpenOptions::new()
            .append(true)
            .open(dir.join(LOG))
            .with_context(|| format!("open {}", dir.join(LOG).display()))?
    };
    Ok(Recovered {
        state,
        replayed,
        files: Files {
            dir: dir.clone(),
            log,
            _lock: lock,
        },
    })
}

/// Moves the current canvas files aside for `--new-canvas`.
fn set_aside(dir: &Path) -> anyhow::Result<()> {
    let stamp = super::unix_ms();
    for name in [SNAP, LOG, LOG_NEW] {
        let from = dir.join(name);
        if from.exists() {
            let to = dir.join(format!("{name}.replaced-{stamp}"));
            fs::rename(&from, &to).with_context(|| format!("move {} aside", from.display()))?;
            info!(from = %from.display(), to = %to.display(), "old canvas kept aside");
        }
    }
    Ok(())
}

/// Writes a snapshot atomically: temp file, fsync, rename, fsync the dir.
fn write_snapshot(dir: &Path, state: &Persisted) -> anyhow::Result<()> {
    let bytes = format::encode_snapshot(state);
    let tmp = dir.join(SNAP_TMP);
    let mut f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    drop(f);
    fs::rename(&tmp, dir.join(SNAP)).context("rename the new snapshot into place")?;
    sync_dir(dir)
}

fn create_log(path: &Path, state: &Persisted) -> anyhow::Result<File> {
    let mut f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    f.write_all(&format::log_header(
        state.canvas.id(),
        state.canvas.seq(),
        state.chat_seq,
    ))
    .and_then(|_| f.sync_all())
    .with_context(|| format!("write {}", path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(f)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))
}

#[derive(Debug, Default)]
struct Pending {
    /// Encoded records not yet written.
    buf: Vec<u8>,
    /// A compaction point inside `buf`: records before it go to the old
    /// journal, the rest to the new one.
    rotate: Option<(usize, Box<Persisted>)>,
    /// Broadcast log index to publish once `buf` is written.
    upto: u64,
    /// Index published so far.
    published: u64,
    /// Records since the last compaction.
    records: u64,
    stop: bool,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    fsync: Fsync,
    compact_after: u64,
    compacting: AtomicBool,
    dir: PathBuf,
    log: Arc<EventLog>,
    snapshotter: Mutex<Option<JoinHandle<()>>>,
}

/// The journal writer: see the module docs.
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Journal {
    /// Starts the writer thread on a recovered directory.
    pub fn start(
        recovered: Recovered,
        log: Arc<EventLog>,
        config: &StorageConfig,
    ) -> (Journal, Persisted, Vec<Pixel>) {
        let Recovered {
            state,
            replayed,
            files,
        } = recovered;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            fsync: config.fsync,
            compact_after: config.compact_after.max(1),
            compacting: AtomicBool::new(false),
            dir: files.dir.clone(),
            log,
            snapshotter: Mutex::new(None),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("pixchat-journal".into())
                .spawn(move || write_loop(&shared, files))
                .expect("spawn the journal thread")
        };
        (
            Journal {
                shared,
                thread: Mutex::new(Some(thread)),
            },
            state,
            replayed,
        )
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.shared.pending.lock().expect("journal lock poisoned")
    }

    /// Queues records (written by `encode`) and asks for broadcast log index
    /// `upto` to be published once they are durable. Call in log order.
    pub fn push(&self, upto: u64, encode: impl FnOnce(&mut Vec<u8>) -> u64) {
        let mut p = self.lock();
        let n = encode(&mut p.buf);
        p.records += n;
        p.upto = p.upto.max(upto);
        drop(p);
        self.shared.wake.notify_one();
    }

    /// True when enough records have accumulated for a compaction and none
    /// is running.
    pub fn wants_compaction(&self) -> bool {
        !self.shared.compacting.load(Ordering::Acquire)
            && self.lock().records >= self.shared.compact_after
    }

    /// Marks the current end of the journal as the state `state`: a new
    /// snapshot of it is written in the background and the journal starts
    /// over after it.
    pub fn compact(&self, state: Persisted) {
        self.shared.compacting.store(true, Ordering::Release);
        let mut p = self.lock();
        let at = p.buf.len();
        p.rotate = Some((at, Box::new(state)));
        p.records = 0;
        drop(p);
        self.shared.wake.notify_one();
    }

    /// Writes and syncs everything queued, then stops the thread.
    pub fn close(&self) {
        self.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.lock().expect("journal thread lock").take() {
            let _ = t.join();
        }
        let snapshotter = self
            .shared
            .snapshotter
            .lock()
            .expect("snapshotter lock")
            .take();
        if let Some(t) = snapshotter {
            let _ = t.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(shared: &Arc<Shared>, files: Files) {
    let mut file = files.log;
    let mut spare = Vec::new();
    loop {
        let (buf, rotate, upto, stop) = {
            let mut p = shared.pending.lock().expect("journal lock poisoned");
            while p.upto == p.published && p.rotate.is_none() && !p.stop {
                p = shared.wake.wait(p).expect("journal lock poisoned");
            }
            if shared.fsync == Fsync::Batch && !p.buf.is_empty() && !p.stop {
                // Group commit: let more records join this fsync.
                drop(p);
                std::thread::sleep(BATCH_WINDOW);
                p = shared.pending.lock().expect("journal lock poisoned");
            }
            let buf = std::mem::replace(&mut p.buf, std::mem::take(&mut spare));
            (buf, p.rotate.take(), p.upto, p.stop)
        };
        match rotate {
            None => write_durably(shared, &mut file, &buf),
            Some((at, state)) => {
                write_durably(shared, &mut file, &buf[..at]);
                file = rotate_to_new_log(shared, file, *state);
                write_durably(shared, &mut file, &buf[at..]);
            }
        }
        shared.log.publish(upto);
        let mut p = shared.pending.lock().expect("journal lock poisoned");
        p.published = upto;
        let done = stop && p.buf.is_empty() && p.rotate.is_none();
        drop(p);
        spare = buf;
        spare.clear();
        if done {
            return;
        }
    }
}

/// Appends `bytes` and syncs per the policy, retrying after I/O errors: an
/// acknowledgement must never precede durability, so clients wait instead.
fn write_durably(shared: &Shared, file: &mut File, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    loop {
        let before = file.metadata().map(|m| m.len()).ok();
        let res = file.write_all(bytes).and_then(|_| match shared.fsync {
            Fsync::Never => Ok(()),
            Fsync::Always | Fsync::Batch => file.sync_data(),
        });
        match res {
            Ok(()) => return,
            Err(e) => {
                error!(error = %e, "journal write failed; acknowledgements wait and it is retried");
                // Drop any partial write so the retry does not leave a torn
                // record in the middle of the journal.
                if let Some(len) = before {
                    let _ = file.set_len(len);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Starts `canvas.log.new` after `state` and writes the snapshot of `state`
/// in the background; returns the new journal file.
fn rotate_to_new_log(shared: &Arc<Shared>, old: File, state: Persisted) -> File {
    drop(old);
    let new_path = shared.dir.join(LOG_NEW);
    let file = loop {
        match create_log(&new_path, &state) {
            Ok(f) => break f,
            Err(e) => {
                error!(error = %e, "cannot start a new journal; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    let snap_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name("pixchat-snapshot".into())
        .spawn(move || {
            let dir = &snap_shared.dir;
            let res = write_snapshot(dir, &state).and_then(|_| {
                fs::rename(dir.join(LOG_NEW), dir.join(LOG)).context("rename the new journal")?;
                sync_dir(dir)
            });
            match res {
                Ok(()) => {
                    info!(
                        seq = state.canvas.seq(),
                        "compacted the journal into a snapshot"
                    );
                    snap_shared.compacting.store(false, Ordering::Release);
                }
                // Staying in the compacting state is deliberate: the next
                // rotation would recreate canvas.log.new, which now holds
                // the only copy of recent records. A restart recovers and
                // compacts them.
                Err(e) => {
                    error!(error = %e, "compaction failed; the journal grows until a restart")
                }
            }
        })
        .expect("spawn the snapshot thread");
    let previous = shared
        .snapshotter
        .lock()
        .expect("snapshotter lock")
        .replace(handle);
    if let Some(t) = previous {
        let _ = t.join();
    }
    file
}
