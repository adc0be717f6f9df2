//! `--archive` in a cluster: the history archive, kept by a server from
//! the stream it tails, in the same segments as a standalone server's
//! (`DATA_DIR/archive`), so `pixchat-server export` and `WHOSE x y n`
//! read it the same way.
//!
//! Redis's stream plays the journal's part: placements applied from it
//! wait in memory and go into a new segment (written whole or not at all,
//! as compaction writes them) once enough have come, once the oldest has
//! waited long enough, and when the server stops. After a crash the
//! server continues from the last archived seq, reading what it lost from
//! the stream again. What the stream no longer held (it keeps about the
//! last 100,000 entries) is a gap: logged as a WARN with the seqs lost,
//! and visible to `export` (the history is not complete).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tracing::{error, info, warn};

use super::Cluster;
use crate::server::storage::archive::{self, Placement, Retention};
use crate::server::storage::faults::Faults;

/// Placements that make a segment: half of what the stream keeps, so what
/// a crash loses from memory is still in the stream to read again.
const FLUSH_AT: usize = (crate::DEFAULT_STREAM_LEN / 2) as usize;
/// How long a placement may wait in memory before its segment is written.
/// Long enough that a quiet canvas does not make a segment every few
/// seconds (`WHOSE x y n` reads the newest 16 segments at most), short
/// enough that the stream still holds them after a crash.
const FLUSH_AGE: Duration = Duration::from_secs(600);
/// Placements kept waiting at most while segments cannot be written (a
/// full or failing disk): beyond, the oldest are dropped, and logged as a
/// gap, rather than memory growing without bound.
const MAX_PENDING: usize = 8 * FLUSH_AT;
/// Stream entries read at a time while catching up.
const PAGE: usize = 10_000;
/// Pages read at most while catching up: more than the stream holds.
const MAX_PAGES: usize = 64;

/// Where and how long to keep a cluster server's archive.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// The data directory (the segments go in its `archive/`).
    pub dir: PathBuf,
    /// How much of it to keep.
    pub retention: Retention,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Archiver {
    config: ArchiveConfig,
    canvas_id: u64,
    size: (u16, u16),
    pending: Mutex<Pending>,
    faults: Faults,
    /// The data directory's lock, held while the server runs: two servers
    /// writing one archive would each write segments of the same seqs.
    _lock: std::fs::File,
}

#[derive(Debug, Default)]
struct Pending {
    /// Placements applied and not yet in a segment, in seq order.
    placements: Vec<Placement>,
    /// When the oldest of them came.
    since: Option<Instant>,
    /// Seq of the last placement archived or pending (0: none).
    last: u64,
    /// The cluster's canvas is no longer the archive's: nothing more is
    /// archived.
    stopped: bool,
}

impl Archiver {
    /// Opens the archive in `config.dir` for the canvas `canvas_id`,
    /// refusing one that belongs to another canvas.
    pub fn open(config: ArchiveConfig, canvas_id: u64, size: (u16, u16)) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("create {}", config.dir.display()))?;
        let lock = crate::server::storage::recovery::lock(&config.dir)?;
        let segments = archive::list(&config.dir)
            .with_context(|| format!("list the archive in {}", config.dir.display()))?;
        if let Some(newest) = segments.last() {
            let (header, _) = archive::read_segment(newest)?;
            if header.canvas_id != canvas_id {
                bail!(
                    "the archive in {} belongs to canvas {:016x}, the cluster's is {canvas_id:016x}; give --archive another --data-dir",
                    config.dir.display(),
                    header.canvas_id
                );
            }
        }
        let last = segments.last().map_or(0, |s| s.last);
        info!(dir = %config.dir.display(), last_seq = last, "keeping the history archive from the stream");
        Ok(Self {
            config,
            canvas_id,
            size,
            pending: Mutex::new(Pending {
                last,
                ..Pending::default()
            }),
            faults: Faults::default(),
            _lock: lock,
        })
    }

    /// Reads from the stream, up to `position` (the stream id the replica
    /// was loaded at), the placements after the last archived one: what a
    /// server that stopped or crashed missed.
    pub async fn catch_up(&self, cluster: &Cluster, position: &str) -> anyhow::Result<()> {
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let (page, next) = cluster
                .placements_between(after.as_deref(), position, PAGE)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))
                .context("read the stream to catch up the archive")?;
            for p in page {
                self.push(p);
            }
            match next {
                Some(id) => after = Some(id),
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Takes a placement applied from the stream, in seq order. One that
    /// does not follow the last is after a gap, which is logged.
    pub fn push(&self, p: Placement) {
        let mut pending = self.pending.lock().expect("archiver lock poisoned");
        if p.seq <= pending.last || pending.stopped {
            return;
        }
        if p.seq != pending.last + 1 {
            warn!(
                first_lost = pending.last + 1,
                last_lost = p.seq - 1,
                "the history archive misses placements the stream no longer held"
            );
        }
        pending.last = p.seq;
        pending.since.get_or_insert_with(Instant::now);
        pending.placements.push(p);
        if pending.placements.len() > MAX_PENDING {
            let dropped: Vec<Placement> = pending.placements.drain(..FLUSH_AT).collect();
            error!(
                first_lost = dropped.first().map_or(0, |p| p.seq),
                last_lost = dropped.last().map_or(0, |p| p.seq),
                "the history archive could not be written for too long; dropped the oldest placements waiting for it"
            );
        }
    }

    /// The replica was reloaded from Redis at `seq` of canvas
    /// `canvas_id`: if Redis holds another canvas now (it lost its data),
    /// this archive is the old canvas's and archiving stops; if it went
    /// back before the archive's last seq (an older copy of Redis), the
    /// archive holds placements Redis no longer has. Both are logged.
    pub fn reloaded(&self, canvas_id: u64, seq: u64) {
        let mut pending = self.pending.lock().expect("archiver lock poisoned");
        if canvas_id != self.canvas_id && !pending.stopped {
            pending.stopped = true;
            error!(
                dir = %self.config.dir.display(),
                "the cluster's canvas is not the one this archive belongs to any more (did Redis lose its data?); nothing more is archived: restart this server with another --data-dir"
            );
        } else if seq < pending.last {
            error!(
                first = seq + 1,
                last = pending.last,
                "Redis went back to an older state: the archive holds placements of these seqs that Redis no longer has, and new placements of the same seqs are not archived"
            );
        }
    }

    /// The pending placements at `(x, y)`, newest first, at most `n`.
    pub fn pending_at(&self, (x, y): (u16, u16), n: usize) -> Vec<Placement> {
        let pending = self.pending.lock().expect("archiver lock poisoned");
        pending
            .placements
            .iter()
            .rev()
            .filter(|p| (p.x, p.y) == (x, y))
            .take(n)
            .cloned()
            .collect()
    }

    /// Every placement archived or pending with a seq below `seq`, in seq
    /// order: what a `ROLLBACK` needs from before the stream's oldest
    /// entry. Blocks: it reads every segment.
    pub fn history_before(&self, seq: u64) -> anyhow::Result<Vec<Placement>> {
        let mut out = Vec::new();
        for segment in archive::list(&self.config.dir)? {
            if segment.first >= seq {
                break;
            }
            let (_, placements) = archive::read_segment(&segment)?;
            out.extend(placements.into_iter().filter(|p| p.seq < seq));
        }
        let pending = self.pending.lock().expect("archiver lock poisoned");
        out.extend(pending.placements.iter().filter(|p| p.seq < seq).cloned());
        drop(pending);
        out.sort_by_key(|p| p.seq);
        out.dedup_by_key(|p| p.seq);
        Ok(out)
    }

    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.config.dir
    }

    /// Writes the pending placements as a segment if they are due (or
    /// whatever is pending, with `all`), then applies the retention.
    /// Blocks: call off the async workers. On failure the placements stay
    /// pending, to be written at the next try.
    pub fn flush(&self, all: bool) -> anyhow::Result<()> {
        let placements = {
            let mut pending = self.pending.lock().expect("archiver lock poisoned");
            let due = pending.placements.len() >= FLUSH_AT
                || pending.since.is_some_and(|t| t.elapsed() >= FLUSH_AGE);
            if !(all || due) || pending.placements.is_empty() {
                return Ok(());
            }
            pending.since = None;
            std::mem::take(&mut pending.placements)
        };
        let written = archive::write_segments(
            &self.config.dir,
            self.canvas_id,
            self.size,
            &placements,
            &self.faults,
        );
        if let Err(e) = written {
            let mut pending = self.pending.lock().expect("archiver lock poisoned");
            let newer = std::mem::replace(&mut pending.placements, placements);
            pending.placements.extend(newer);
            pending.since.get_or_insert_with(Instant::now);
            return Err(e);
        }
        if let Some((first, last)) =
            archive::apply_retention(&self.config.dir, self.config.retention, &self.faults)?
        {
            info!(first, last, "history retention removed archived placements");
        }
        Ok(())
    }

    /// Writes due segments every second until `shutdown`. (The last
    /// pending placements are written by [`crate::server::hub::Hub::close`],
    /// once the stream is no longer applied.)
    pub async fn keep(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.flush(false)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    error!(error = %format!("{e:#}"), "writing the history archive failed; retrying")
                }
                Err(e) => error!(error = %e, "writing the history archive failed; retrying"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(seq: u64) -> Placement {
        Placement {
            seq,
            unix_ms: 1_700_000_000_000 + seq,
            x: (seq % 8) as u16,
            y: 1,
            color: (seq % 16) as u8,
            name: Arc::from("al"),
        }
    }

    fn open(dir: &std::path::Path, canvas_id: u64) -> anyhow::Result<Archiver> {
        let config = ArchiveConfig {
            dir: dir.to_path_buf(),
            retention: Retention::All,
        };
        Archiver::open(config, canvas_id, (8, 8))
    }

    #[test]
    fn placements_go_to_segments_in_order_and_a_restart_continues_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let archiver = open(dir.path(), 7).unwrap();
        for seq in 1..=5 {
            archiver.push(placement(seq));
        }
        // A repeat (read again while catching up) is not archived twice.
        archiver.push(placement(3));
        assert_eq!(archiver.pending_at((3, 1), 5), [placement(3)]);
        archiver.flush(true).unwrap();
        assert!(archiver.pending_at((3, 1), 5).is_empty());
        assert_eq!(archive::last_seq(dir.path()).unwrap(), 5);
        // One server per archive.
        let second = open(dir.path(), 7).map(|_| ()).unwrap_err();
        assert!(format!("{second:#}").contains("another pixchat-server"));
        drop(archiver);

        let archiver = open(dir.path(), 7).unwrap();
        for seq in 4..=9 {
            archiver.push(placement(seq));
        }
        assert_eq!(
            archiver
                .history_before(8)
                .unwrap()
                .iter()
                .map(|p| p.seq)
                .collect::<Vec<_>>(),
            (1..8).collect::<Vec<_>>()
        );
        // Redis lost its data and holds another canvas: nothing more.
        archiver.reloaded(8, 0);
        archiver.push(placement(10));
        archiver.flush(true).unwrap();
        drop(archiver);
        let history = archive::History::open(dir.path()).unwrap();
        assert_eq!(history.canvas_id, 7);
        let mut held = Vec::new();
        history
            .for_each(|p| {
                held.push(p.clone());
                Ok(std::ops::ControlFlow::Continue(()))
            })
            .unwrap();
        assert_eq!(held, (1..=9).map(placement).collect::<Vec<_>>());
        // An archive of another canvas is refused.
        let other = open(dir.path(), 8).map(|_| ()).unwrap_err();
        assert!(
            format!("{other:#}").contains("belongs to canvas"),
            "{other:#}"
        );
    }
}
