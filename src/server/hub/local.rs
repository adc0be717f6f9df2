//! Changes this server orders itself (standalone, in memory or with a
//! journal): joins, chat, DMs, placements and moderation. Each is checked,
//! then made an ordered change through [`Hub::commit`].

use std::net::IpAddr;
use std::sync::Arc;

use super::{
    After, Change, Hub, Moderation, Online, Session, State, User, address_banned, address_unknown,
    admin, banned, joinable, joined, key_of, not_banned, recipient, unban_entries, unix_ms,
};
use crate::protocol::{
    ErrorCode, Event, Mode, PALETTE, Reply, Resume, Welcome, WireError, validate_name,
    validate_text,
};
use crate::server::address;
use crate::server::outbox::{Outbox, Outgoing};
use crate::server::world::ChatLine;

impl Hub {
    pub(super) fn join(
        &self,
        session: &mut Session,
        name: String,
        resume: Option<Resume>,
        quiet: bool,
        peer: IpAddr,
    ) -> Result<After, WireError> {
        let key = joinable(session, &name)?;
        let mut st = self.lock();
        if let Some(journal) = self.journal()
            && journal.stuck()
        {
            // The newcomer's JOINED event could not go out before the
            // records the journal is still trying to write.
            return Err(WireError::new(
                ErrorCode::Unavailable,
                format!(
                    "{}; try again shortly",
                    journal.available().err().unwrap_or_default()
                ),
            ));
        }
        if st.world.is_banned(&key) {
            return Err(banned(&name));
        }
        if st.world.is_address_banned(peer) {
            return Err(address_banned());
        }
        if st.users.contains_key(key.as_str()) {
            return Err(WireError::new(
                ErrorCode::NameTaken,
                format!("{name} is already online"),
            ));
        }
        let name: Arc<str> = Arc::from(name);
        st.roster
            .insert(key_of(&name), Online::new(name.clone(), quiet));
        self.admit(
            &mut st,
            &session.outbox,
            (name.clone(), peer),
            resume,
            quiet,
        );
        session.name = Some(name);
        session.quiet = quiet;
        Ok(After::Continue)
    }

    /// Announces a joined user and lets its session in: the `JOINED` event
    /// goes to everyone already subscribed (unless it joined quietly, or
    /// the crowd is past the presence threshold: then the next `PRESENCE`
    /// says it), then the session subscribes right after it (so it does
    /// not get its own), and is sent the welcome and the canvas (or the
    /// pixels since `resume`) and recent chat, all tagged at the same ring
    /// position.
    pub(super) fn admit(
        &self,
        st: &mut State,
        outbox: &Arc<Outbox>,
        (name, addr): (Arc<str>, IpAddr),
        resume: Option<Resume>,
        quiet: bool,
    ) {
        let cursor = self.presence(st, name.clone(), quiet, true);
        st.users.insert(
            key_of(&name),
            User {
                name: name.clone(),
                outbox: outbox.clone(),
                quiet,
                addr,
            },
        );
        self.ring.set_watchers(st.users.len());
        outbox.subscribe(cursor);
        self.fanout.add(outbox.clone());
        // A crowd's names would make every join cost as much as the crowd
        // is large: past the presence threshold the welcome carries the
        // count alone (WHO pages through the names).
        let (online, users) = if st.roster.len() < self.presence_threshold {
            st.user_names(None)
        } else {
            (st.roster.len() as u32, Vec::new())
        };
        let canvas = &st.world.canvas;
        let latest = canvas.seq();
        let replay = resume
            .filter(|r| r.canvas_id == canvas.id())
            .and_then(|r| st.history.since(r.seq, latest).ok());
        let welcome = Reply::Welcome(Welcome {
            name: name.to_string(),
            canvas_id: canvas.id(),
            width: canvas.width(),
            height: canvas.height(),
            seq: latest,
            palette: PALETTE
                .iter()
                .map(|c| (c.rgb, c.name.to_string()))
                .collect(),
            online,
            users,
            resumed: replay.is_some(),
        });
        let binary = outbox.mode() == Mode::Binary;
        let snapshot = (binary && replay.is_none()).then(|| st.shared_snapshot());
        let history = st.world.chat.iter().cloned().collect();
        outbox.push_reply(
            cursor,
            Outgoing::Join {
                welcome,
                snapshot,
                replay,
                history,
            },
        );
    }

    pub(super) fn say(&self, session: &Session, text: String) -> Result<After, WireError> {
        let from = joined(session)?;
        validate_text(&text)?;
        let mut st = self.lock();
        self.writable()?;
        let line = ChatLine {
            chat_seq: st.world.chat_seq + 1,
            unix_ms: unix_ms(),
            from,
            text: Arc::from(text),
        };
        self.commit(
            &mut st,
            Change::Chat(line),
            Some((&session.outbox, Reply::Ok)),
        )
        .expect("the next chat seq follows");
        Ok(After::Continue)
    }

    pub(super) fn tell(
        &self,
        session: &Session,
        to: &str,
        text: String,
    ) -> Result<After, WireError> {
        let from = joined(session)?;
        validate_text(&text)?;
        let key = recipient(to)?;
        let st = self.lock();
        let Some(target) = st.users.get(key.as_str()) else {
            return Err(WireError::new(
                ErrorCode::NoSuchUser,
                format!("nobody called {to} is online"),
            ));
        };
        let tag = self.tag();
        target.outbox.push_other(
            tag,
            Outgoing::Event(Event::Dm {
                from,
                text: Arc::from(text),
            }),
        );
        session.outbox.push_reply(tag, Outgoing::Reply(Reply::Ok));
        Ok(After::Continue)
    }

    pub(super) fn set(
        &self,
        session: &Session,
        (x, y, color): (u32, u32, u32),
        peer: IpAddr,
    ) -> Result<After, WireError> {
        let name = joined(session)?;
        let mut st = self.lock();
        let (x, y, color) = st.world.canvas.check(x, y, color)?;
        self.writable()?;
        // The keys only when there is a cooldown: a placement allocates
        // nothing it does not need. A name and an address entry cannot
        // collide: only the address has a `/`.
        let cooldown = (!self.cooldown.is_zero()).then(|| {
            let by_name = self.limit_by.by_name().then(|| name.to_ascii_lowercase());
            let by_addr = self
                .limit_by
                .by_addr()
                .then(|| crate::server::address::entry(peer));
            [by_name, by_addr]
        });
        let now = tokio::time::Instant::now();
        if let Some(keys) = &cooldown {
            self.cooling(&st, keys.iter().flatten(), now)?;
        }
        let seq = st.world.canvas.seq() + 1;
        let change = Change::Pixel {
            seq,
            x,
            y,
            color,
            unix_ms: unix_ms(),
            name,
        };
        self.commit(&mut st, change, Some((&session.outbox, Reply::Set { seq })))
            .expect("the next seq follows and the placement was checked");
        for key in cooldown.into_iter().flatten().flatten() {
            remember_placement(&mut st, key, now, self.cooldown);
        }
        Ok(After::Continue)
    }

    /// `KICK`, `BAN` and `UNBAN`. A ban is a change to the world (kept by
    /// the journal, so it survives a restart); a kick is not.
    pub(super) fn moderate(
        &self,
        session: &Session,
        name: &str,
        what: Moderation,
    ) -> Result<After, WireError> {
        admin(session)?;
        validate_name(name)?;
        let key = name.to_ascii_lowercase();
        let mut st = self.lock();
        let online = st.users.contains_key(key.as_str());
        match what {
            Moderation::Kick if !online => {
                return Err(WireError::new(
                    ErrorCode::NoSuchUser,
                    format!("nobody called {name} is online"),
                ));
            }
            Moderation::Kick => {}
            Moderation::Ban => self.writable()?,
        }
        tracing::info!(
            admin = session.name.as_deref().unwrap_or("-"),
            target = name,
            action = what.word(),
            online,
            "moderation"
        );
        // The reply first: an admin kicking itself gets its `OK` before
        // the `BYE`, since nothing is sent after that.
        let change = match what {
            Moderation::Kick => None,
            Moderation::Ban => Some(Change::Ban(key.clone())),
        };
        match change {
            None => {
                self.reply(session, Reply::Ok);
            }
            Some(change) => {
                self.commit(&mut st, change, Some((&session.outbox, Reply::Ok)))
                    .expect("bans are set operations: they always apply");
            }
        }
        if let Some(bye) = what.bye() {
            st.evict(&key, self.tag(), bye);
        }
        Ok(After::Continue)
    }
}

impl Hub {
    /// `BAN <name> addr`: bans the name and the address the user is
    /// connected from, and sends away everyone joined from there.
    pub(super) fn ban_address(&self, session: &Session, name: &str) -> Result<After, WireError> {
        admin(session)?;
        validate_name(name)?;
        let key = name.to_ascii_lowercase();
        let mut st = self.lock();
        let Some(addr) = st.users.get(key.as_str()).map(|u| u.addr) else {
            return Err(address_unknown(name));
        };
        self.writable()?;
        let entry = address::entry(addr);
        tracing::info!(
            admin = session.name.as_deref().unwrap_or("-"),
            target = name,
            address = %entry,
            action = "ban",
            online = true,
            "moderation"
        );
        self.commit(&mut st, Change::Ban(key.clone()), None)
            .expect("bans are set operations: they always apply");
        self.commit(
            &mut st,
            Change::Ban(entry.clone()),
            Some((&session.outbox, Reply::Ok)),
        )
        .expect("bans are set operations: they always apply");
        let bye = Moderation::Ban.bye().expect("a ban says goodbye");
        st.evict(&key, self.tag(), bye.clone());
        st.evict(&entry, self.tag(), bye);
        Ok(After::Continue)
    }

    /// `UNBAN <name|address>`: lifts the name's ban, the address's, or
    /// both when the text is both.
    pub(super) fn unban(&self, session: &Session, text: &str) -> Result<After, WireError> {
        admin(session)?;
        let mut entries = unban_entries(text)?;
        let mut st = self.lock();
        entries.retain(|e| st.world.bans.contains(e));
        let Some(last) = entries.pop() else {
            return Err(not_banned(text));
        };
        self.writable()?;
        tracing::info!(
            admin = session.name.as_deref().unwrap_or("-"),
            target = text,
            action = "unban",
            "moderation"
        );
        for entry in entries {
            self.commit(&mut st, Change::Unban(entry), None)
                .expect("bans are set operations: they always apply");
        }
        self.commit(
            &mut st,
            Change::Unban(last),
            Some((&session.outbox, Reply::Ok)),
        )
        .expect("bans are set operations: they always apply");
        Ok(After::Continue)
    }
}

impl Hub {
    /// Cluster mode with `--limit-by addr|both` and a cooldown: Redis
    /// keeps the cooldown by name; the one by address is kept here, by
    /// each server for its own clients, and counts from every attempt
    /// this server passes on to Redis.
    pub(super) fn address_cooldown(&self, st: &mut State, peer: IpAddr) -> Result<(), WireError> {
        if self.cooldown.is_zero() || !self.limit_by.by_addr() {
            return Ok(());
        }
        let key = address::entry(peer);
        let now = tokio::time::Instant::now();
        self.cooling(st, [&key], now)?;
        remember_placement(st, key, now, self.cooldown);
        Ok(())
    }

    /// `ERR cooldown <ms-left>` while the latest placement under any of
    /// `keys` (a name, an address entry) is within the cooldown.
    fn cooling<'k>(
        &self,
        st: &State,
        keys: impl IntoIterator<Item = &'k String>,
        now: tokio::time::Instant,
    ) -> Result<(), WireError> {
        let last = keys
            .into_iter()
            .filter_map(|k| st.last_placed.get(k).copied())
            .max();
        if let Some(ready) = last.map(|last| last + self.cooldown)
            && ready > now
        {
            let left = (ready - now).as_millis().max(1);
            return Err(WireError::new(ErrorCode::Cooldown, left.to_string()));
        }
        Ok(())
    }
}

/// Records a placement for the cooldown and forgets entries whose
/// cooldown is over, so the map stays as small as the active users.
fn remember_placement(
    st: &mut State,
    key: String,
    now: tokio::time::Instant,
    cooldown: std::time::Duration,
) {
    st.last_placed.insert(key, now);
    if st.last_placed.len() > 2 * st.users.len() + 64 {
        st.last_placed
            .retain(|_, t| now.duration_since(*t) < cooldown);
    }
}
