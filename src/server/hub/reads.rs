//! Answers that read the state: `HELLO`, `WHO`, `WHOSE`, `CANVAS`, `SYNC`.
//!
//! While the journal is up they see everything accepted and wait (by their
//! tag) until it is durable. While it is down they are answered at once
//! from the durable state instead: the current state with the placements
//! still waiting for the disk undone, so nothing a crash could take back is
//! ever shown, and nothing hangs on a failing disk.

use std::sync::Arc;

use super::{After, Hub, Session, State, Unsettled};
use crate::protocol::{ErrorCode, HelloInfo, Mode, PROTOCOL_VERSION, Placement, Reply, WireError};
use crate::server::outbox::{Outgoing, SharedSnapshot};

/// The state every published event adds up to: the current state minus
/// the unsettled placements after `visible`.
struct Durable<'a> {
    visible: u64,
    seq: u64,
    undo: Vec<&'a Unsettled>,
}

impl Hub {
    pub(super) fn hello(&self, session: &mut Session, version: u16) -> Result<After, WireError> {
        if session.outbox.mode() != Mode::Binary || session.hello {
            return Err(WireError::new(ErrorCode::BadArgs, "HELLO was already said"));
        }
        if version != PROTOCOL_VERSION {
            return Err(WireError::new(
                ErrorCode::UnsupportedVersion,
                format!("this server speaks protocol version {PROTOCOL_VERSION}"),
            ));
        }
        session.hello = true;
        let st = self.lock();
        let durable = self.durable(&st);
        let info = HelloInfo {
            version: PROTOCOL_VERSION,
            canvas_id: st.world.canvas.id(),
            width: st.world.canvas.width(),
            height: st.world.canvas.height(),
            seq: durable.as_ref().map_or(st.world.canvas.seq(), |d| d.seq),
        };
        drop(st);
        Ok(self.reply(session, Reply::Hello(info)))
    }

    /// `WHO`, or the page after `after`: exact whatever the crowd, paged
    /// by name.
    pub(super) fn who(&self, session: &Session, after: Option<&str>) -> Result<After, WireError> {
        let (online, users) = self.lock().user_names(after);
        Ok(self.reply(session, Reply::Who { online, users }))
    }

    /// `BANS`, admin only: names and addresses in order, paged like `WHO`.
    /// In a cluster, this server's copy of Redis's bans.
    pub(super) fn bans(&self, session: &Session, after: Option<&str>) -> Result<After, WireError> {
        use std::ops::Bound;
        super::admin(session)?;
        let from = match after {
            Some(a) => Bound::Excluded(a.to_ascii_lowercase()),
            None => Bound::Unbounded,
        };
        let st = self.lock();
        let bans = &st.world.bans;
        let entries = bans
            .range((from, Bound::Unbounded))
            .take(crate::protocol::MAX_LISTED_USERS)
            .cloned()
            .collect();
        let total = bans.len() as u32;
        drop(st);
        Ok(self.reply(session, Reply::Bans { total, entries }))
    }

    pub(super) fn whose(&self, session: &Session, x: u32, y: u32) -> Result<After, WireError> {
        let st = self.lock();
        let (x, y) = st.world.canvas.check_xy(x, y)?;
        let mut meta = st.world.canvas.whose(x, y);
        if let Some(d) = self.durable(&st)
            && let Some(u) = d.undo.iter().find(|u| (u.x, u.y) == (x, y))
        {
            meta = u.meta.clone();
        }
        let placement = meta.map(|m| Placement {
            name: m.name.to_string(),
            unix_ms: m.unix_ms,
            seq: m.seq,
        });
        drop(st);
        Ok(self.reply(session, Reply::Whose(placement)))
    }

    pub(super) fn canvas(&self, session: &Session) -> Result<After, WireError> {
        let mut st = self.lock();
        if let Some(d) = self.durable(&st) {
            let mut snapshot = st.world.canvas.snapshot();
            for u in d.undo.iter().rev() {
                let i = usize::from(u.y) * usize::from(snapshot.width) + usize::from(u.x);
                snapshot.pixels[i] = u.color;
            }
            snapshot.seq = d.seq;
            session.outbox.push_reply(
                d.visible,
                Outgoing::Canvas(Arc::new(SharedSnapshot::built(snapshot))),
            );
            return Ok(After::Continue);
        }
        let snapshot = st.shared_snapshot();
        session
            .outbox
            .push_reply(self.ring.end(), Outgoing::Canvas(snapshot));
        Ok(After::Continue)
    }

    pub(super) fn sync(&self, session: &Session, seq: u64) -> Result<After, WireError> {
        let st = self.lock();
        let (tag, latest) = match self.durable(&st) {
            Some(d) => (d.visible, d.seq),
            None => (self.ring.end(), st.world.canvas.seq()),
        };
        let replay = st.history.since(seq, latest)?;
        session.outbox.push_reply(
            tag,
            Outgoing::Sync {
                replay,
                seq: latest,
            },
        );
        Ok(After::Continue)
    }

    /// While the journal is down: the durable state's position (reads are
    /// answered from it, so nothing a crash could take back is shown).
    /// `None` while it is up: reads see everything and wait for it.
    fn durable<'a>(&self, st: &'a State) -> Option<Durable<'a>> {
        self.writable().err()?;
        let visible = self.ring.visible();
        let undo: Vec<&Unsettled> = st.unsettled.iter().filter(|u| u.index > visible).collect();
        let seq = undo.first().map_or(st.world.canvas.seq(), |u| u.seq - 1);
        Some(Durable { visible, seq, undo })
    }
}
