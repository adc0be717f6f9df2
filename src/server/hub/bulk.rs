//! Moderators' bulk changes: `FILL` paints a rectangle, `ROLLBACK` puts
//! back what a user painted over. Both are ordinary placements made
//! through [`Hub::commit`], authored by the admin who asked, so they are
//! journaled, archived, replayed at start and seen live by everyone like
//! any `SET`.
//!
//! A `ROLLBACK` reads the history (archive and journal, [`archive`]) on a
//! blocking thread, off the hub lock, against a copy of the canvas taken
//! at one seq; it then places, under the lock, only the pixels whose last
//! placement is still the one it saw (someone who drew there meanwhile
//! keeps their pixel).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::recent::RecentView;
use super::{After, Backend, Change, Hub, Session, State, admin, unix_ms};
use crate::protocol::{ErrorCode, MAX_WHOSE_LAST, PastPlacement, Reply, WireError, validate_name};
use crate::server::canvas::{BLANK_COLOR, Canvas, PixelMeta};
use crate::server::cluster::Cluster;
use crate::server::storage::archive::{self, Base, History, Placement};

/// Pixels one `FILL` or `ROLLBACK` may place: they are placed in one step
/// under the hub lock and go out as one burst of events, which this keeps
/// well inside the broadcast window (262,144 events) and short enough (tens
/// of milliseconds) not to stall everyone else.
pub const MAX_BULK: usize = 65_536;

/// How long a `ROLLBACK` waits for the journal to have written what it
/// saw in memory (in a cluster: for the replica to have applied what Redis
/// had).
const DURABLE_WAIT: Duration = Duration::from_secs(5);

/// Stream entries a cluster `ROLLBACK` reads from Redis at a time.
const STREAM_PAGE: usize = 10_000;
/// Pages it reads at most: more than the stream holds (100,000 entries,
/// and a few bulk changes beyond while Redis trims lazily).
const MAX_STREAM_PAGES: usize = 64;

/// A pixel to put back: where, what colour, and the seq of the last
/// placement there when it was planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Restore {
    pub x: u16,
    pub y: u16,
    pub color: u8,
    pub expect_seq: u64,
}

/// What `ROLLBACK` plans from the history.
#[derive(Debug, Default)]
pub(crate) struct RollbackPlan {
    pub restore: Vec<Restore>,
    /// Pixels whose colour before the user's work the history no longer
    /// holds (an archive trimmed by retention, or started late).
    pub unknown: usize,
}

impl RollbackPlan {
    /// The pixels to put back now: those whose last placement on `canvas`
    /// is still the one planned from (someone drew there since: theirs
    /// stays), at most [`MAX_BULK`], and how many more there were.
    fn still_theirs(&self, canvas: &Canvas) -> (Vec<Restore>, u32) {
        let mut todo: Vec<Restore> = self
            .restore
            .iter()
            .copied()
            .filter(|r| {
                canvas
                    .whose(r.x, r.y)
                    .is_some_and(|m| m.seq == r.expect_seq)
            })
            .collect();
        let more = todo.len().saturating_sub(MAX_BULK) as u32;
        todo.truncate(MAX_BULK);
        (todo, more)
    }

    /// The operator's log line for a rollback done.
    fn log(
        &self,
        author: &str,
        target: &str,
        minutes: u32,
        placed: u32,
        more: u32,
        started: std::time::Instant,
    ) {
        tracing::info!(
            admin = %author,
            target = %target,
            minutes,
            placed,
            more,
            unknown = self.unknown,
            ms = started.elapsed().as_millis() as u64,
            "rollback"
        );
    }
}

/// The pixels whose last placement is by `key` (lower-cased) at or after
/// `cutoff_ms`, with that placement's seq: what a rollback would restore.
fn held_cells(canvas: &Canvas, key: &str, cutoff_ms: u64) -> HashMap<(u16, u16), u64> {
    let mut open = HashMap::new();
    for y in 0..canvas.height() {
        for x in 0..canvas.width() {
            if let Some(m) = canvas.whose(x, y)
                && m.unix_ms >= cutoff_ms
                && m.name.eq_ignore_ascii_case(key)
            {
                open.insert((x, y), m.seq);
            }
        }
    }
    open
}

/// Plans a rollback of `key`'s (lower-cased) placements at or after
/// `cutoff_ms` on `canvas`. `newest_first` calls its argument with the
/// placements held (up to at least the canvas's seq), newest first, until
/// it breaks; `origin` is the canvas those placements start from (the
/// blank canvas, or the archive's base after retention), if known. The
/// history is read only as far back as a pixel still needs it; with a
/// `checkpoint` (the snapshot), a pixel whose user's run began after it
/// takes its colour before from there, without reading older history.
pub(crate) fn plan_rollback(
    canvas: &Canvas,
    key: &str,
    cutoff_ms: u64,
    origin: Option<&Base>,
    mut checkpoint: Option<Checkpoint<'_>>,
    newest_first: impl FnOnce(&mut dyn FnMut(&Placement) -> ControlFlow<()>) -> anyhow::Result<()>,
) -> anyhow::Result<RollbackPlan> {
    // Cells the user still holds: the seq of that placement.
    let mut open = held_cells(canvas, key, cutoff_ms);
    let mut plan = RollbackPlan::default();
    let seq = canvas.seq();
    // The next seq going down, while the placements seen have no gap.
    let mut expect = Some(seq);
    let run = |m: Option<&PixelMeta>| {
        m.is_some_and(|m| m.unix_ms >= cutoff_ms && m.name.eq_ignore_ascii_case(key))
    };
    newest_first(&mut |p| {
        if open.is_empty() {
            return ControlFlow::Break(());
        }
        if p.seq > seq {
            return ControlFlow::Continue(());
        }
        if checkpoint.as_ref().is_some_and(|c| p.seq <= c.seq) {
            let c = checkpoint.take().expect("just checked");
            c.resolve(expect, &mut open, &mut plan, run);
            if open.is_empty() {
                return ControlFlow::Break(());
            }
        }
        expect = expect.filter(|&e| e == p.seq).map(|e| e - 1);
        let at = (p.x, p.y);
        if !open.contains_key(&at) || (p.unix_ms >= cutoff_ms && p.name.eq_ignore_ascii_case(key)) {
            // Not a pixel to restore, or still the user's run there.
            return ControlFlow::Continue(());
        }
        let expect_seq = open.remove(&at).unwrap_or_default();
        plan.restore.push(Restore {
            x: p.x,
            y: p.y,
            color: p.color,
            expect_seq,
        });
        if open.is_empty() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    // The history held ends above the checkpoint (a journal without an
    // archive behind it): the checkpoint still knows what came before.
    if let Some(c) = checkpoint {
        c.resolve(expect, &mut open, &mut plan, run);
    }
    // Nobody placed before the user's run there since the origin: its
    // colour, if the placements held reach back to it without a gap.
    let origin = origin.filter(|o| expect == Some(o.seq));
    for ((x, y), expect_seq) in open {
        match origin {
            Some(o) => plan.restore.push(Restore {
                x,
                y,
                color: o.color(x, y),
                expect_seq,
            }),
            None => plan.unknown += 1,
        }
    }
    // In the order the user placed them, so a capped rollback undoes the
    // oldest damage first and a rerun continues with the rest.
    plan.restore.sort_by_key(|r| r.expect_seq);
    Ok(plan)
}

/// The whole canvas as it was at one seq (the data directory's snapshot,
/// written at the last compaction), read only if a rollback gets there
/// with pixels left to resolve.
pub(crate) struct Checkpoint<'a> {
    /// The seq it was at.
    pub seq: u64,
    /// Reads it.
    pub load: Box<dyn FnOnce() -> anyhow::Result<Canvas> + Send + 'a>,
}

impl Checkpoint<'_> {
    /// Every placement above `self.seq` having been seen (`expect` is the
    /// next seq down, `None` after a gap), a pixel still `open` whose last
    /// placement at the checkpoint is not part of the user's run (`run`)
    /// takes its colour there: nobody but the user placed there since.
    /// Those whose run reaches back past it stay open for older history.
    fn resolve(
        self,
        expect: Option<u64>,
        open: &mut HashMap<(u16, u16), u64>,
        plan: &mut RollbackPlan,
        run: impl Fn(Option<&PixelMeta>) -> bool,
    ) {
        if open.is_empty() || expect != Some(self.seq) {
            return;
        }
        let at = match (self.load)() {
            Ok(canvas) if canvas.seq() == self.seq => canvas,
            Ok(canvas) => {
                tracing::warn!(
                    expected = self.seq,
                    found = canvas.seq(),
                    "rollback: the snapshot changed while it was read; reading older history instead"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "rollback: the snapshot could not be read; reading older history instead");
                return;
            }
        };
        open.retain(|&(x, y), &mut expect_seq| {
            if run(at.whose(x, y).as_ref()) {
                return true;
            }
            plan.restore.push(Restore {
                x,
                y,
                color: at.get(x, y).unwrap_or(BLANK_COLOR),
                expect_seq,
            });
            false
        });
    }
}

/// Where a history read comes from.
enum Source {
    /// The data directory's archive and journal.
    Disk(PathBuf),
    /// A `--memory` server's recent placements.
    Memory(RecentView),
}

/// A rectangle's top left and bottom right corners, inclusive: x1, y1,
/// x2, y2.
pub(crate) type Corners = (u16, u16, u16, u16);

/// A `FILL`'s rectangle checked against `canvas`: its corners in order
/// (top left, bottom right), its colour and its area, at most
/// [`MAX_BULK`].
pub(super) fn fill_rect(
    canvas: &Canvas,
    (x1, y1, x2, y2): (u32, u32, u32, u32),
    color: u32,
) -> Result<(Corners, u8, usize), WireError> {
    let (x1, y1, color) = canvas.check(x1, y1, color)?;
    let (x2, y2) = canvas.check_xy(x2, y2)?;
    let (xa, xb) = (x1.min(x2), x1.max(x2));
    let (ya, yb) = (y1.min(y2), y1.max(y2));
    let area = (usize::from(xb - xa) + 1) * (usize::from(yb - ya) + 1);
    if area > MAX_BULK {
        return Err(WireError::new(
            ErrorCode::OutOfRange,
            format!("FILL covers at most {MAX_BULK} pixels; that rectangle has {area}"),
        ));
    }
    Ok(((xa, ya, xb, yb), color, area))
}

/// The earliest placement time a `ROLLBACK <name> <minutes>` undoes (0:
/// all of the user's placements).
fn rollback_cutoff(minutes: u32) -> u64 {
    match minutes {
        0 => 0,
        m => unix_ms().saturating_sub(u64::from(m) * 60_000),
    }
}

impl Hub {
    /// One history read at a time (`ROLLBACK`, `WHOSE x y n`): each may
    /// read much of the archive.
    async fn history_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, WireError> {
        self.history_reads
            .acquire()
            .await
            .map_err(|_| WireError::new(ErrorCode::Unavailable, "the server is stopping"))
    }

    fn bulk_allowed(&self, session: &Session) -> Result<(), WireError> {
        admin(session)?;
        if matches!(self.backend, Backend::Cluster(_)) {
            return Err(WireError::new(
                ErrorCode::Unavailable,
                "ROLLBACK is not available in a cluster",
            ));
        }
        Ok(())
    }

    /// `FILL` in a cluster: one script in Redis places the whole rectangle
    /// (see [`Cluster::fill`]); every server, this one included, gets its
    /// pixels from the stream. The reply keeps its place among the
    /// admin's replies meanwhile, as a `SET`'s does.
    pub(super) fn fill_cluster(
        &self,
        cluster: &Cluster,
        session: &Session,
        corners: (u32, u32, u32, u32),
        color: u32,
    ) -> Result<After, WireError> {
        admin(session)?;
        let (rect, color, area) = fill_rect(&self.lock().world.canvas, corners, color)?;
        let name = Self::bulk_author(session);
        let (xa, ya, xb, yb) = rect;
        tracing::info!(admin = %name, xa, ya, xb, yb, color, "fill");
        let last = cluster.fill(&name, rect, color, unix_ms(), MAX_BULK);
        self.reply_later(session, async move {
            let seq = last.await?;
            Ok(Reply::Bulk {
                placed: area as u32,
                seq,
                more: 0,
            })
        });
        Ok(After::Continue)
    }

    /// The name bulk placements are made under: the admin's own, or
    /// `admin` for an admin that has not joined.
    pub(super) fn bulk_author(session: &Session) -> Arc<str> {
        session.name.clone().unwrap_or_else(|| Arc::from("admin"))
    }

    /// `FILL x1 y1 x2 y2 color`.
    pub(super) fn fill(
        &self,
        session: &Session,
        corners: (u32, u32, u32, u32),
        color: u32,
    ) -> Result<After, WireError> {
        self.bulk_allowed(session)?;
        let mut st = self.lock();
        let ((xa, ya, xb, yb), color, area) = fill_rect(&st.world.canvas, corners, color)?;
        self.writable()?;
        let name = Self::bulk_author(session);
        tracing::info!(admin = %name, xa, ya, xb, yb, color, "fill");
        let now = unix_ms();
        let cells: Vec<(u16, u16)> = (ya..=yb)
            .flat_map(|y| (xa..=xb).map(move |x| (x, y)))
            .collect();
        let first = st.world.canvas.seq() + 1;
        for (i, &(x, y)) in cells.iter().enumerate() {
            let seq = first + i as u64;
            let reply = (i + 1 == cells.len()).then(|| {
                (
                    &*session.outbox,
                    Reply::Bulk {
                        placed: area as u32,
                        seq,
                        more: 0,
                    },
                )
            });
            let change = Change::Pixel {
                seq,
                x,
                y,
                color,
                unix_ms: now,
                name: name.clone(),
            };
            self.commit(&mut st, change, reply)
                .expect("the next seq follows and the rectangle was checked");
        }
        Ok(After::Continue)
    }

    /// `ROLLBACK name [minutes]` in a cluster: planned, by the same rule as
    /// standalone, from a copy of this server's replica and the placements
    /// the Redis stream still holds (read back from the newest only as far
    /// as the pixels to restore need); applied by one script in Redis that
    /// places each pixel only where its last placement is still the one
    /// planned ([`Cluster::restore`]). What the stream no longer holds is
    /// read from this server's archive, if it keeps one (`--archive`);
    /// pixels whose colour before lies beyond both are left as they are.
    pub(super) async fn rollback_cluster(
        &self,
        cluster: &Cluster,
        session: &Session,
        name: String,
        minutes: u32,
    ) -> Result<After, WireError> {
        admin(session)?;
        validate_name(&name)?;
        let key = name.to_ascii_lowercase();
        let cutoff = rollback_cutoff(minutes);
        let _permit = self.history_permit().await?;
        let started = std::time::Instant::now();
        // Plan from everything Redis had when the rollback came, not from
        // a replica still applying the latest placements (the griefer's
        // last ones, perhaps).
        let target = cluster.probe().await?.seq;
        let deadline = tokio::time::Instant::now() + DURABLE_WAIT;
        while self.lock().world.canvas.seq() < target {
            if tokio::time::Instant::now() >= deadline {
                return Err(WireError::new(
                    ErrorCode::Unavailable,
                    "this server is still applying the latest placements from the cluster; try again shortly",
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let canvas = Arc::new(self.lock().world.canvas.clone());
        let (copy, k) = (canvas.clone(), key.clone());
        let mut open = tokio::task::spawn_blocking(move || held_cells(&copy, &k, cutoff))
            .await
            .map_err(|e| WireError::new(ErrorCode::Unavailable, e.to_string()))?;
        // Newest first, as read.
        let mut read: Vec<Placement> = Vec::new();
        let mut before: Option<String> = None;
        for _ in 0..MAX_STREAM_PAGES {
            if open.is_empty() {
                break;
            }
            let (page, next) = cluster
                .placements_before(before.as_deref(), STREAM_PAGE)
                .await?;
            for p in &page {
                // The colour before the user's run at that pixel is found.
                if p.seq <= canvas.seq()
                    && !(p.unix_ms >= cutoff && p.name.eq_ignore_ascii_case(&key))
                {
                    open.remove(&(p.x, p.y));
                }
            }
            read.extend(page);
            match next {
                Some(id) => before = Some(id),
                None => break,
            }
        }
        read.reverse();
        // What the stream no longer holds, from this server's archive
        // (`--archive`), if it keeps one.
        if let Some(archiver) = self.archiver.clone().filter(|_| !open.is_empty()) {
            let oldest = read.first().map_or(u64::MAX, |p| p.seq);
            let older = tokio::task::spawn_blocking(move || archiver.history_before(oldest))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| format!("{e:#}")))
                .map_err(|why| {
                    tracing::error!(error = %why, "rollback could not read the archive");
                    WireError::new(
                        ErrorCode::Unavailable,
                        format!("the history could not be read: {why}"),
                    )
                })?;
            read.splice(0..0, older);
        }
        // The blank canvas is where the placements read start if they
        // reach back to seq 1.
        let origin = read
            .first()
            .is_some_and(|p| p.seq == 1)
            .then(|| Base::blank(canvas.id(), (canvas.width(), canvas.height())));
        let plan = tokio::task::spawn_blocking(move || {
            plan_rollback(&canvas, &key, cutoff, origin.as_ref(), None, |f| {
                for p in read.iter().rev() {
                    if f(p).is_break() {
                        break;
                    }
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| format!("{e:#}")))
        .map_err(|why| WireError::new(ErrorCode::Unavailable, why))?;
        let (todo, more) = plan.still_theirs(&self.lock().world.canvas);
        let todo: Vec<(u16, u16, u8, u64)> = todo
            .iter()
            .map(|r| (r.x, r.y, r.color, r.expect_seq))
            .collect();
        let author = Self::bulk_author(session);
        let restored = cluster.restore(&author, &todo, unix_ms());
        let done = self.reply_later(session, async move {
            let (placed, seq) = restored.await?;
            plan.log(&author, &name, minutes, placed, more, started);
            Ok(Reply::Bulk { placed, seq, more })
        });
        // The next rollback plans from what this one placed.
        let _ = done.await;
        Ok(After::Continue)
    }

    /// Where `what` reads the placement history from: the data
    /// directory, or (with `--memory`) a view of the recent placements
    /// taken under `st`'s lock, so it matches the canvas there.
    fn history_source(&self, st: &State, what: &str) -> Result<Source, WireError> {
        match (&self.backend, &st.recent) {
            (Backend::Journal(j), _) => Ok(Source::Disk(j.dir().to_path_buf())),
            (Backend::Memory, Some(recent)) => Ok(Source::Memory(recent.view())),
            (Backend::Cluster(_), _) if let Some(archiver) = &self.archiver => {
                Ok(Source::Disk(archiver.dir().to_path_buf()))
            }
            (Backend::Cluster(_), _) => Err(WireError::new(
                ErrorCode::Unavailable,
                format!(
                    "{what} needs the placement history, which this server of the cluster does \
                     not keep (start it with --archive)"
                ),
            )),
            _ => Err(WireError::new(
                ErrorCode::Unavailable,
                format!(
                    "{what} needs the placement history, which this server does not keep \
                     (--memory with --memory-history 0)"
                ),
            )),
        }
    }

    /// `WHOSE x y n`: the last `n` placements at a pixel, from the
    /// journal and the newest archive segments.
    pub(super) async fn whose_last(
        &self,
        session: &Session,
        x: u32,
        y: u32,
        n: u32,
    ) -> Result<After, WireError> {
        /// Segments one `WHOSE x y n` may read (about 100,000 placements
        /// each by default): older placements at that pixel are not listed.
        const MAX_SEGMENTS: usize = 16;
        let (x, y) = self.lock().world.canvas.check_xy(x, y)?;
        if !(1..=MAX_WHOSE_LAST).contains(&n) {
            return Err(WireError::new(
                ErrorCode::OutOfRange,
                format!("n must be 1-{MAX_WHOSE_LAST}"),
            ));
        }
        // In a cluster with `--archive`, the newest placements may still
        // wait in memory for their segment: they come first.
        let pending = self
            .archiver
            .as_ref()
            .map(|a| a.pending_at((x, y), n as usize))
            .unwrap_or_default();
        self.history_source(&self.lock(), "WHOSE with a count")?;
        if matches!(self.backend, Backend::Journal(_)) && self.writable().is_ok() {
            // Read your own writes: a placement accepted before this
            // command (its `OK` goes out before this reply) is in the
            // journal's files before they are read, not only in memory.
            let upto = self.ring.end();
            let mut published = self.ring.subscribe();
            let deadline = tokio::time::Instant::now() + DURABLE_WAIT;
            while self.ring.visible() < upto {
                match tokio::time::timeout_at(deadline, published.changed()).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
        }
        let _permit = self.history_permit().await?;
        let source = self.history_source(&self.lock(), "WHOSE with a count")?;
        let list = tokio::task::spawn_blocking(move || match source {
            Source::Disk(dir) => archive::recent_at(&dir, (x, y), n as usize, MAX_SEGMENTS)
                .map_err(|e| format!("{e:#}")),
            Source::Memory(view) => Ok(view.at((x, y), n as usize)),
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|why| {
            WireError::new(
                ErrorCode::Unavailable,
                format!("the history could not be read: {why}"),
            )
        })?;
        let oldest = pending.last().map_or(u64::MAX, |p| p.seq);
        let list = pending
            .into_iter()
            .chain(list.into_iter().filter(|p| p.seq < oldest))
            .take(n as usize)
            .map(|p| PastPlacement {
                name: p.name.to_string(),
                unix_ms: p.unix_ms,
                seq: p.seq,
                color: p.color,
            })
            .collect();
        self.reply(session, Reply::WhoseList(list));
        Ok(After::Continue)
    }

    /// `ROLLBACK name [minutes]`.
    pub(super) async fn rollback(
        &self,
        session: &Session,
        name: String,
        minutes: u32,
    ) -> Result<After, WireError> {
        self.bulk_allowed(session)?;
        validate_name(&name)?;
        self.history_source(&self.lock(), "ROLLBACK")?;
        self.writable()?;
        let key = name.to_ascii_lowercase();
        let cutoff = rollback_cutoff(minutes);
        let _permit = self.history_permit().await?;
        let (canvas, source) = {
            let st = self.lock();
            (
                st.world.canvas.clone(),
                self.history_source(&st, "ROLLBACK")?,
            )
        };
        let started = std::time::Instant::now();
        let plan = tokio::task::spawn_blocking(move || {
            let dir = match source {
                Source::Disk(dir) => dir,
                Source::Memory(view) => {
                    // The blank canvas is where the ring starts while it
                    // still holds every placement.
                    let origin = (view.origin_seq() == 0)
                        .then(|| Base::blank(canvas.id(), (canvas.width(), canvas.height())));
                    return plan_rollback(&canvas, &key, cutoff, origin.as_ref(), None, |f| {
                        view.for_each_rev(f);
                        Ok(())
                    })
                    .map_err(|e| format!("{e:#}"));
                }
            };
            let seq = canvas.seq();
            let deadline = std::time::Instant::now() + DURABLE_WAIT;
            // The journal may still be writing the latest placements the
            // copy holds: wait until the files have them.
            let open = || loop {
                let h = History::open(&dir).map_err(|e| format!("{e:#}"))?;
                if h.last_seq() >= seq || std::time::Instant::now() >= deadline {
                    break Ok::<_, String>(h);
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            // Retention may remove the oldest segments (after writing the
            // base that replaces them) while they are being read: read
            // again from the new state, a few times at most.
            let mut tries = 3;
            loop {
                let history = open()?;
                // The snapshot of the last compaction: a run that began
                // after it needs nothing older (read only if needed).
                let checkpoint = archive::snapshot_at(&dir)
                    .filter(|&(id, _)| id == canvas.id())
                    .map(|(_, seq)| Checkpoint {
                        seq,
                        load: Box::new(|| archive::snapshot_canvas(&dir)),
                    });
                match plan_rollback(&canvas, &key, cutoff, history.base.as_ref(), checkpoint, |f| {
                    history.for_each_rev(f)
                }) {
                    Ok(plan) => break Ok(plan),
                    Err(e) if tries > 1 => {
                        tracing::warn!(error = %format!("{e:#}"), "rollback reads the history again");
                        tries -= 1;
                    }
                    Err(e) => break Err(format!("{e:#}")),
                }
            }
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|why| {
            tracing::error!(error = %why, "rollback could not read the history");
            WireError::new(
                ErrorCode::Unavailable,
                format!("the history could not be read: {why}"),
            )
        })?;
        let mut st = self.lock();
        self.writable()?;
        let author = Self::bulk_author(session);
        let now = unix_ms();
        let mut placed = 0u32;
        let mut seq = st.world.canvas.seq();
        let (todo, more) = plan.still_theirs(&st.world.canvas);
        for (i, r) in todo.iter().enumerate() {
            seq += 1;
            placed += 1;
            let reply = (i + 1 == todo.len())
                .then(|| (&*session.outbox, Reply::Bulk { placed, seq, more }));
            let change = Change::Pixel {
                seq,
                x: r.x,
                y: r.y,
                color: r.color,
                unix_ms: now,
                name: author.clone(),
            };
            self.commit(&mut st, change, reply)
                .expect("the next seq follows and the pixel is on the canvas");
        }
        if todo.is_empty() {
            self.reply(
                session,
                Reply::Bulk {
                    placed: 0,
                    seq,
                    more: 0,
                },
            );
        }
        plan.log(&author, &name, minutes, placed, more, started);
        Ok(After::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A canvas after `ps` (seqs from 1), and the placements as the
    /// history holds them.
    fn history(ps: &[(u16, u16, u8, &str)]) -> (Canvas, Vec<Placement>) {
        let mut canvas = Canvas::new(1, 8, 8).unwrap();
        let mut held = Vec::new();
        for (i, &(x, y, color, name)) in ps.iter().enumerate() {
            let name: Arc<str> = Arc::from(name);
            let seq = canvas.apply(x, y, color, &name, 1000 + i as u64);
            held.push(Placement {
                seq,
                unix_ms: 1000 + i as u64,
                x,
                y,
                color,
                name,
            });
        }
        (canvas, held)
    }

    #[test]
    fn a_trimmed_history_takes_the_colour_before_it_from_its_base() {
        // al paints (0,0) and (1,0); then mallory paints over both and
        // over blank (2,0); bob paints elsewhere.
        let (canvas, held) = history(&[
            (0, 0, 5, "al"),
            (1, 0, 6, "al"),
            (0, 0, 9, "mallory"),
            (1, 0, 9, "mallory"),
            (2, 0, 9, "mallory"),
            (3, 3, 2, "bob"),
        ]);
        // The history now held starts after seq 2: al's placements are in
        // the base only.
        let mut base = Base::blank(1, (8, 8));
        held[..2].iter().for_each(|p| base.apply(p));
        let kept = &held[2..];
        let seen = std::cell::Cell::new(0);
        let newest_first = |f: &mut dyn FnMut(&Placement) -> ControlFlow<()>| {
            for p in kept.iter().rev() {
                seen.set(seen.get() + 1);
                if f(p).is_break() {
                    break;
                }
            }
            Ok(())
        };
        let plan = plan_rollback(&canvas, "Mallory", 0, Some(&base), None, newest_first).unwrap();
        let got: Vec<_> = plan.restore.iter().map(|r| (r.x, r.y, r.color)).collect();
        assert_eq!(got, [(0, 0, 5), (1, 0, 6), (2, 0, 0)]);
        assert_eq!(plan.unknown, 0);
        // Without a base the colours before the history are unknown.
        let plan = plan_rollback(&canvas, "mallory", 0, None, None, newest_first).unwrap();
        assert_eq!((plan.restore.len(), plan.unknown), (0, 3));
        // Only as far back as needed: bob's pixel resolved, nothing older
        // is read once every pixel is.
        let (canvas, held) = history(&[
            (4, 4, 1, "al"),
            (0, 0, 5, "al"),
            (0, 0, 9, "mallory"),
            (3, 3, 2, "bob"),
        ]);
        seen.set(0);
        let plan = plan_rollback(&canvas, "mallory", 0, None, None, |f| {
            for p in held.iter().rev() {
                seen.set(seen.get() + 1);
                if f(p).is_break() {
                    break;
                }
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(plan.restore.len(), 1);
        assert_eq!(seen.get(), 3, "al's first placement is never read");
    }
}
