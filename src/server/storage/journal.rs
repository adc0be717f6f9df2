//! The journal writer: one thread appends records with group commit and
//! publishes durable broadcast positions, and it is the one place that
//! handles write and fsync errors.
//!
//! After a failed write or fsync the journal trusts nothing it wrote since
//! its last good fsync (the kernel may already have dropped those pages:
//! PostgreSQL's "fsyncgate"), so it never retries the write. It goes
//! *down*: placements and chat are refused (`ERR unavailable`) and it
//! rebuilds from memory instead: a snapshot of the state (which holds every
//! record accepted so far, written or not), fsynced and renamed into place,
//! and a new empty journal. Only then are the records that were waiting
//! acknowledged. A full disk cannot stop that rebuild: the `reserve` file
//! holds enough space for one snapshot and is deleted first. The journal
//! comes back *up* once a new reserve is in place, which happens by itself
//! when space returns.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::faults::{self, Faults};
use super::files;
use super::recovery::Recovered;
use super::{BATCH_WINDOW, Fsync, LOG, LOG_NEW, StorageConfig, World};
use crate::protocol::Pixel;
use crate::server::broadcast::BroadcastRing;

/// How often a down journal tries again.
const RETRY: Duration = Duration::from_secs(1);
/// How often a journal that stays down says so again in the ring.
const REMIND: Duration = Duration::from_secs(30);
/// The reserve holds the snapshot plus this share of it for growth, and at
/// least [`RESERVE_MIN`] more.
const RESERVE_SLACK: u64 = 4;
const RESERVE_MIN: u64 = 256 * 1024;

/// Gives the journal a copy of the state with the broadcast ring position
/// it corresponds to, taken under the hub lock.
pub type StateSource = Box<dyn Fn() -> Option<(World, u64)> + Send + Sync>;

const UP: u8 = 0;
const DOWN: u8 = 1;
const DEAD: u8 = 2;

#[derive(Debug, Default)]
struct Pending {
    /// Encoded records not yet written.
    buf: Vec<u8>,
    /// A compaction point inside `buf`: records before it go to the old
    /// journal, the rest to the new one.
    rotate: Option<(usize, Box<World>)>,
    /// Broadcast ring index to publish once `buf` is written.
    upto: u64,
    /// Index published so far.
    published: u64,
    /// Records since the last compaction.
    records: u64,
    stop: bool,
    /// The writer is waiting on `wake`. A push notifies only then: std's
    /// condvar makes a futex syscall per notify, waiter or not, and under
    /// load the writer is nearly always busy writing.
    sleeping: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    fsync: Fsync,
    compact_after: u64,
    /// Archive what compaction retires, and how much of it to keep.
    archive: Option<super::archive::Retention>,
    compacting: AtomicBool,
    /// The background snapshot of a compaction failed: rebuild.
    compaction_failed: AtomicBool,
    dir: PathBuf,
    ring: Arc<BroadcastRing>,
    snapshotter: Mutex<Option<JoinHandle<()>>>,
    faults: Arc<Faults>,
    health: AtomicU8,
    /// Records wait that the files could not take: they are durable only
    /// once the files are rebuilt from memory.
    stuck: AtomicBool,
    /// Why the journal is down, for `ERR unavailable` and the operator.
    reason: Mutex<String>,
    /// Size the reserve should have.
    reserve_len: AtomicU64,
    source: OnceLock<StateSource>,
    /// Cancelled if the writer thread dies.
    died: CancellationToken,
    /// How long fsyncs take, for `/metrics`.
    fsync_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("dir", &self.dir)
            .field("health", &self.health.load(Ordering::Relaxed))
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().expect("journal lock poisoned")
    }

    fn go_down(&self, why: String) {
        *self.reason.lock().expect("reason lock") = why;
        // Only up → down: a dead journal stays dead.
        let _ = self
            .health
            .compare_exchange(UP, DOWN, Ordering::AcqRel, Ordering::Acquire);
    }

    fn reason(&self) -> String {
        self.reason.lock().expect("reason lock").clone()
    }
}

/// The journal writer: see the module docs.
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Marks the journal dead if its thread unwinds, so nothing waits for
/// acknowledgements that can never come.
struct DeathWatch(Arc<Shared>);

impl Drop for DeathWatch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            *self.0.reason.lock().unwrap_or_else(|e| e.into_inner()) =
                "the journal writer stopped after an internal error".into();
            self.0.stuck.store(true, Ordering::Release);
            self.0.health.store(DEAD, Ordering::Release);
            self.0.died.cancel();
        }
    }
}

impl Journal {
    /// Starts the writer thread on a recovered directory.
    pub fn start(
        recovered: Recovered,
        ring: Arc<BroadcastRing>,
        config: &StorageConfig,
    ) -> (Journal, World, Vec<Pixel>) {
        let Recovered {
            state,
            replayed,
            dir,
            log: file,
            snapshot_len,
            lock,
        } = recovered;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            fsync: config.fsync,
            compact_after: config.compact_after.max(1),
            archive: config.archive.then_some(config.retention),
            compacting: AtomicBool::new(false),
            compaction_failed: AtomicBool::new(false),
            dir,
            ring,
            snapshotter: Mutex::new(None),
            faults: config.faults.clone(),
            health: AtomicU8::new(UP),
            stuck: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
            reserve_len: AtomicU64::new(reserve_for(snapshot_len)),
            fsync_seconds: crate::server::metrics::fsync_histogram(),
            source: OnceLock::new(),
            died: CancellationToken::new(),
        });
        if let Err(e) = files::ensure_reserve(
            &shared.dir,
            shared.reserve_len.load(Ordering::Relaxed),
            &shared.faults,
        ) {
            warn!(error = %e, "no room for the storage reserve; placements are refused until there is");
            shared.go_down(format!("no room on the disk ({e})"));
        }
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("pixchat-journal".into())
                .spawn(move || {
                    // Held for the thread's life: no second server may use
                    // the directory while this one can still write to it.
                    let _lock = lock;
                    let watch = DeathWatch(shared.clone());
                    write_loop(&watch.0, file);
                })
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

    /// Where the journal gets a copy of the state when it must rebuild
    /// its files from memory. Set once, right after the hub exists.
    pub fn set_source(&self, source: StateSource) {
        let _ = self.shared.source.set(source);
    }

    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.shared.dir
    }

    /// `Ok` while records can be made durable; otherwise why not. Checked
    /// under the hub lock before anything that needs the journal changes.
    pub fn available(&self) -> Result<(), String> {
        match self.shared.health.load(Ordering::Acquire) {
            UP => Ok(()),
            _ => Err(self.shared.reason()),
        }
    }

    /// True while records wait that the files could not take (until the
    /// files are rebuilt from memory): events after them cannot go out.
    pub fn stuck(&self) -> bool {
        self.shared.stuck.load(Ordering::Acquire)
    }

    /// How long the journal's fsyncs take (a handle on the same histogram).
    pub fn fsync_histogram(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.shared.fsync_seconds.clone()
    }

    /// Cancelled if the writer thread dies: the server must stop then,
    /// because nothing it accepts could be acknowledged.
    pub fn died(&self) -> CancellationToken {
        self.shared.died.clone()
    }

    /// Queues records (written by `encode`) and asks for broadcast ring index
    /// `upto` to be published once they are durable. Call in ring order.
    pub fn push(&self, upto: u64, encode: impl FnOnce(&mut Vec<u8>) -> u64) {
        let mut p = self.shared.lock();
        let n = encode(&mut p.buf);
        p.records += n;
        p.upto = p.upto.max(upto);
        let sleeping = p.sleeping;
        drop(p);
        if sleeping {
            self.shared.wake.notify_one();
        }
    }

    /// True when enough records have accumulated for a compaction and none
    /// is running.
    pub fn wants_compaction(&self) -> bool {
        !self.shared.compacting.load(Ordering::Acquire)
            && self.shared.lock().records >= self.shared.compact_after
    }

    /// Marks the current end of the journal as the state `state`: a new
    /// snapshot of it is written in the background and the journal starts
    /// over after it.
    pub fn compact(&self, state: World) {
        self.shared.compacting.store(true, Ordering::Release);
        let mut p = self.shared.lock();
        let at = p.buf.len();
        p.rotate = Some((at, Box::new(state)));
        p.records = 0;
        drop(p);
        self.shared.wake.notify_one();
    }

    /// Writes and syncs everything queued, then stops the thread.
    pub fn close(&self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.lock().expect("journal thread lock").take() {
            let _ = t.join();
        }
        join_snapshotter(&self.shared);
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

fn join_snapshotter(shared: &Shared) {
    let snapshotter = shared.snapshotter.lock().expect("snapshotter lock").take();
    if let Some(t) = snapshotter {
        let _ = t.join();
    }
}

/// Moves the placements of the journals `names` into the archive, then
/// trims it to `retention`.
pub(crate) fn archive_retired(
    dir: &std::path::Path,
    names: &[&str],
    retention: super::archive::Retention,
    faults: &Faults,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let added = super::archive::absorb(dir, names, faults)?;
    if added > 0 {
        info!(
            placements = added,
            ms = started.elapsed().as_millis() as u64,
            "archived the retired journal's placements"
        );
    }
    if let Some((first, last)) = super::archive::apply_retention(dir, retention, faults)? {
        info!(first, last, "history retention removed archived placements");
    }
    Ok(())
}

fn reserve_for(snapshot_len: u64) -> u64 {
    snapshot_len + (snapshot_len / RESERVE_SLACK).max(RESERVE_MIN)
}

/// The writer's own state.
struct Writer<'a> {
    shared: &'a Arc<Shared>,
    file: File,
    /// The files can no longer be trusted: rebuild them from memory.
    rebuild: bool,
    failures: u64,
    reminded: Instant,
}

fn write_loop(shared: &Arc<Shared>, file: File) {
    let mut w = Writer {
        shared,
        file,
        rebuild: false,
        failures: 0,
        reminded: Instant::now(),
    };
    let mut spare = Vec::new();
    // When the last write (and its fsync) ended.
    let mut last_done = Instant::now() - BATCH_WINDOW;
    loop {
        let down = shared.health.load(Ordering::Acquire) != UP;
        let (buf, rotate, upto, stop) = {
            let mut p = shared.lock();
            while p.upto <= p.published && p.rotate.is_none() && !p.stop {
                p.sleeping = true;
                if down {
                    // Retry on a timer; new work also wakes us.
                    let (guard, timeout) = shared
                        .wake
                        .wait_timeout(p, RETRY)
                        .expect("journal lock poisoned");
                    p = guard;
                    p.sleeping = false;
                    if timeout.timed_out() {
                        break;
                    }
                } else {
                    p = shared.wake.wait(p).expect("journal lock poisoned");
                    p.sleeping = false;
                }
            }
            // Group commit. Records that came while the last fsync ran are
            // a batch already: write them at once, so under load one fsync
            // covers everything that arrived during the one before. After a
            // quiet spell, wait a little for company instead.
            let idle = last_done.elapsed();
            if shared.fsync == Fsync::Batch && !p.buf.is_empty() && !p.stop && idle >= BATCH_WINDOW
            {
                drop(p);
                std::thread::sleep(BATCH_WINDOW);
                p = shared.lock();
            }
            let buf = std::mem::replace(&mut p.buf, std::mem::take(&mut spare));
            (buf, p.rotate.take(), p.upto, p.stop)
        };
        if shared.compaction_failed.swap(false, Ordering::AcqRel) {
            w.fail("the compaction snapshot could not be written".into());
        }
        if !w.rebuild {
            let res = w.append(&buf, rotate);
            if !buf.is_empty() {
                last_done = Instant::now();
            }
            match res {
                Ok(()) => {
                    shared.ring.publish(upto);
                    let mut p = shared.lock();
                    p.published = p.published.max(upto);
                }
                Err(e) => w.fail(format!("{e:#}")),
            }
        }
        // What was in `buf` is in memory either way: a rebuild writes it.
        spare = buf;
        spare.clear();
        if w.rebuild {
            w.rebuild_from_memory();
        }
        if !w.rebuild && shared.health.load(Ordering::Acquire) == DOWN {
            w.restore_reserve();
        }
        let p = shared.lock();
        if stop && p.buf.is_empty() && p.rotate.is_none() && p.upto <= p.published {
            return;
        }
        if stop && w.rebuild {
            // Shutting down and the disk still refuses: what waits was
            // never acknowledged; a restart recovers what is on disk.
            error!(
                "stopping with records that could not be made durable; none of them was acknowledged"
            );
            return;
        }
    }
}

impl Writer<'_> {
    /// Appends `buf` (rotating to a new journal at the compaction point,
    /// if any) and syncs per the policy.
    fn append(&mut self, buf: &[u8], rotate: Option<(usize, Box<World>)>) -> anyhow::Result<()> {
        match rotate {
            None => self.write(buf),
            Some((at, state)) => {
                self.write(&buf[..at])?;
                self.rotate(*state)?;
                self.write(&buf[at..])
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let faults = &self.shared.faults;
        faults::write_all(faults, &mut self.file, bytes)?;
        match self.shared.fsync {
            Fsync::Never => {}
            Fsync::Always | Fsync::Batch => {
                let started = std::time::Instant::now();
                faults::sync_data(faults, &self.file)?;
                self.shared
                    .fsync_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    /// Starts `canvas.log.new` after `state` and writes the snapshot of
    /// `state` in the background.
    fn rotate(&mut self, state: World) -> anyhow::Result<()> {
        let shared = self.shared;
        self.file = files::new_log(&shared.dir, LOG_NEW, &state, &shared.faults, false)?;
        let snap_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("pixchat-snapshot".into())
            .spawn(move || {
                let dir = &snap_shared.dir;
                let faults = &snap_shared.faults;
                // The retired journal's placements go to the archive
                // before anything replaces it, so a crash at any point
                // leaves them in one place or both.
                let archived = match snap_shared.archive {
                    Some(retention) => archive_retired(dir, &[LOG], retention, faults),
                    None => Ok(()),
                };
                let res = archived
                    .and_then(|()| files::write_snapshot(dir, &state, faults, false))
                    .and_then(|len| {
                        std::fs::rename(dir.join(LOG_NEW), dir.join(LOG))?;
                        files::sync_dir(dir, faults)?;
                        Ok(len)
                    });
                match res {
                    Ok(len) => {
                        info!(
                            seq = state.canvas.seq(),
                            "compacted the journal into a snapshot"
                        );
                        snap_shared
                            .reserve_len
                            .fetch_max(reserve_for(len), Ordering::AcqRel);
                        snap_shared.compacting.store(false, Ordering::Release);
                    }
                    Err(e) => {
                        // canvas.log.new may now hold the only copy of recent
                        // records: no new rotation may replace it. The writer
                        // rebuilds everything from memory instead.
                        error!(error = %format!("{e:#}"), "compaction failed");
                        snap_shared.compaction_failed.store(true, Ordering::Release);
                        snap_shared.wake.notify_one();
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
        Ok(())
    }

    /// A write, fsync or compaction failed: stop accepting, rebuild.
    fn fail(&mut self, why: String) {
        self.rebuild = true;
        self.shared.stuck.store(true, Ordering::Release);
        self.failures += 1;
        if self.failures == 1 {
            error!(
                error = %why,
                "journal write failed; placements and chat are refused until the files are rebuilt from memory"
            );
        }
        self.shared
            .go_down(format!("the server cannot write its journal ({why})"));
    }

    /// Writes the memory state as the snapshot and starts an empty
    /// journal; on success every record accepted so far is durable and is
    /// published.
    fn rebuild_from_memory(&mut self) {
        let shared = self.shared;
        let Some(source) = shared.source.get() else {
            return;
        };
        join_snapshotter(shared);
        shared.compacting.store(false, Ordering::Release);
        // Taken under the hub lock: it holds everything pushed so far, and
        // nothing needing the journal is accepted while it is down.
        let Some((state, end)) = source() else {
            return;
        };
        if let Some(retention) = shared.archive {
            // Best effort: the files may be failing, and the canvas must
            // come back whatever the archive could take.
            if let Err(e) = archive_retired(&shared.dir, &[LOG, LOG_NEW], retention, &shared.faults)
            {
                error!(
                    error = %format!("{e:#}"),
                    "could not archive the journal before rebuilding it; the archive misses its placements"
                );
            }
        }
        let used_reserve = files::has_reserve(&shared.dir, 0);
        let res =
            files::write_snapshot(&shared.dir, &state, &shared.faults, true).and_then(|len| {
                let file = files::new_log(&shared.dir, LOG, &state, &shared.faults, true)?;
                match std::fs::remove_file(shared.dir.join(LOG_NEW)) {
                    Ok(()) => files::sync_dir(&shared.dir, &shared.faults)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
                Ok((file, len))
            });
        match res {
            Ok((file, len)) => {
                self.file = file;
                self.rebuild = false;
                shared.stuck.store(false, Ordering::Release);
                shared
                    .reserve_len
                    .fetch_max(reserve_for(len), Ordering::AcqRel);
                {
                    let mut p = shared.lock();
                    // Everything queued was pushed before the copy was taken.
                    p.buf.clear();
                    p.rotate = None;
                    p.records = 0;
                    p.published = p.published.max(end);
                }
                // Back up before the waiting replies go out, so a client
                // that sends again at once finds placements accepted.
                self.restore_reserve();
                if shared.health.load(Ordering::Acquire) != UP {
                    warn!(
                        reason = %shared.reason(),
                        "the canvas files are rebuilt, but there is no room to hold space in                          reserve; placements and chat stay refused until there is"
                    );
                }
                shared.ring.publish(end);
                info!(
                    seq = state.canvas.seq(),
                    used_reserve,
                    "rebuilt the canvas files from memory; waiting records are durable"
                );
            }
            Err(e) => self.still_down(&format!("{e:#}")),
        }
    }

    /// The files are good again; accept once a reserve is back in place.
    fn restore_reserve(&mut self) {
        let shared = self.shared;
        let len = shared.reserve_len.load(Ordering::Acquire);
        match files::ensure_reserve(&shared.dir, len, &shared.faults) {
            Ok(()) => {
                if shared
                    .health
                    .compare_exchange(DOWN, UP, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    info!(
                        failures = self.failures,
                        "storage is writable again; placements and chat are accepted"
                    );
                    self.failures = 0;
                }
            }
            Err(e) => {
                shared.go_down(format!("no room on the disk ({e})"));
                self.still_down(&e.to_string());
            }
        }
    }

    fn still_down(&mut self, why: &str) {
        self.failures += 1;
        if self.reminded.elapsed() >= REMIND {
            self.reminded = Instant::now();
            warn!(
                error = why,
                attempts = self.failures,
                "storage still failing; placements and chat are refused (ERR unavailable)"
            );
        }
    }
}
