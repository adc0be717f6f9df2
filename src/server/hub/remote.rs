//! Cluster mode: commands that change shared state go to Redis, and the
//! hub applies what comes back from the stream, in stream order, through
//! the same [`Hub::commit`] as standalone commands.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::{
    After, Change, Hub, Moderation, Online, PendingJoin, Session, State, admin, joinable, joined,
    recipient, roster_of, unix_ms,
};
use crate::protocol::{
    Command, ErrorCode, Event, Reply, Resume, WireError, validate_name, validate_text,
};
use crate::server::canvas::History;
use crate::server::cluster::{Cluster, Loaded, RemoteEvent, Retake};
use crate::server::outbox::{Deferred, Outbox, Outgoing};
use crate::server::storage::archive::Placement;

/// How long a JOIN waits for its event to come back from the stream.
const JOIN_WAIT: Duration = Duration::from_secs(10);

impl Hub {
    /// Runs a command that changes shared state by asking Redis. `Ok(Err)`
    /// gives back a command this server answers itself.
    pub(super) async fn handle_remote(
        &self,
        cluster: &Arc<Cluster>,
        session: &mut Session,
        cmd: Command,
        peer: std::net::IpAddr,
    ) -> Result<Result<After, Command>, WireError> {
        let after = match cmd {
            Command::Join {
                name,
                resume,
                quiet,
            } => {
                self.join_cluster(cluster, session, (name, peer), resume, quiet)
                    .await?
            }
            // Placements and chat are queued for Redis in order and
            // answered when Redis has, so a client can pipeline them: the
            // reply keeps its place in the outbox meanwhile.
            Command::Set { x, y, color } => {
                let name = joined(session)?;
                let placed = {
                    let mut st = self.lock();
                    let placed = st.world.canvas.check(x, y, color)?;
                    self.address_cooldown(&mut st, peer)?;
                    placed
                };
                let seq = cluster.place(&name, placed, unix_ms(), self.cooldown);
                self.reply_later(
                    session,
                    async move { seq.await.map(|seq| Reply::Set { seq }) },
                );
                After::Continue
            }
            Command::Say { text } => {
                let name = joined(session)?;
                validate_text(&text)?;
                let said = cluster.say(&name, &text, unix_ms());
                self.reply_later(session, async move { said.await.map(|_| Reply::Ok) });
                After::Continue
            }
            Command::Tell { to, text } => {
                let from = joined(session)?;
                validate_text(&text)?;
                recipient(&to)?;
                cluster.tell(&from, &to, &text).await?;
                self.reply(session, Reply::Ok)
            }
            Command::Kick { name } => {
                self.moderate_cluster(cluster, session, name, Moderation::Kick)
                    .await?
            }
            Command::Ban { name } => {
                self.moderate_cluster(cluster, session, name, Moderation::Ban)
                    .await?
            }
            Command::Unban { name } => self.unban_cluster(cluster, session, name).await?,
            Command::Fill {
                x1,
                y1,
                x2,
                y2,
                color,
            } => self.fill_cluster(cluster, session, (x1, y1, x2, y2), color)?,
            Command::Rollback { name, minutes } => {
                self.rollback_cluster(cluster, session, name, minutes)
                    .await?
            }
            Command::BanAddress { name } => {
                admin(session)?;
                validate_name(&name)?;
                let addr = self
                    .lock()
                    .users
                    .get(name.to_ascii_lowercase().as_str())
                    .map(|u| u.addr)
                    .ok_or_else(|| super::address_unknown(&name))?;
                let entry = crate::server::address::entry(addr);
                // The address first: once the name's ban sends the user
                // away, its address would be unknown.
                cluster.kick(&entry, true).await?;
                info!(address = %entry, action = "ban", "moderation");
                self.moderate_cluster(cluster, session, name, Moderation::Ban)
                    .await?
            }
            other => return Ok(Err(other)),
        };
        Ok(Ok(after))
    }

    /// Queues a reply that `answer` will provide, and sends it (and what
    /// follows it) once it has. `answer` runs as its own task, so the reply
    /// is filled in even if the caller stops waiting; the handle says when.
    pub(super) fn reply_later(
        &self,
        session: &Session,
        answer: impl std::future::Future<Output = Result<Reply, WireError>> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let deferred = Arc::new(Deferred::default());
        session
            .outbox
            .push_reply(self.ring.end(), Outgoing::Deferred(deferred.clone()));
        let outbox = session.outbox.clone();
        tokio::spawn(async move {
            deferred.set(answer.await.unwrap_or_else(Reply::Error));
            outbox.wake();
        })
    }

    async fn join_cluster(
        &self,
        cluster: &Cluster,
        session: &mut Session,
        (name, peer): (String, std::net::IpAddr),
        resume: Option<Resume>,
        quiet: bool,
    ) -> Result<After, WireError> {
        let key = joinable(session, &name)?;
        // The replica has Redis's bans, addresses included: the join
        // script checks only the name.
        if self.lock().world.is_address_banned(peer) {
            return Err(super::address_banned());
        }
        let nonce = rand::random::<u64>() | 1;
        let (done, joined) = tokio::sync::oneshot::channel();
        {
            let mut st = self.lock();
            // Two sessions of this server joining the same name at once
            // would both win in Redis (it is the same server): keep them
            // apart here.
            let pending = st
                .joining
                .values()
                .any(|p| p.name.eq_ignore_ascii_case(&name));
            if st.users.contains_key(key.as_str()) || pending {
                return Err(WireError::new(
                    ErrorCode::NameTaken,
                    format!("{name} is already online"),
                ));
            }
            st.joining.insert(
                nonce,
                PendingJoin {
                    name: name.clone(),
                    addr: peer,
                    outbox: session.outbox.clone(),
                    resume,
                    done,
                },
            );
        }
        if let Err(e) = cluster.join(&name, nonce, quiet).await {
            self.lock().joining.remove(&nonce);
            return Err(e);
        }
        match tokio::time::timeout(JOIN_WAIT, joined).await {
            Ok(Ok(name)) => {
                session.name = Some(name);
                session.quiet = quiet;
                Ok(After::Continue)
            }
            _ => {
                self.lock().joining.remove(&nonce);
                cluster.leave(&name).await;
                Err(WireError::new(
                    ErrorCode::Unavailable,
                    "the cluster did not confirm the join in time; try again",
                ))
            }
        }
    }

    /// `UNBAN` in a cluster: the name, the address, or both.
    async fn unban_cluster(
        &self,
        cluster: &Arc<Cluster>,
        session: &Session,
        text: String,
    ) -> Result<After, WireError> {
        admin(session)?;
        let entries = super::unban_entries(&text)?;
        let cluster = cluster.clone();
        let admin = session.name.clone();
        let done = self.reply_later(session, async move {
            let mut lifted = false;
            for entry in &entries {
                match cluster.unban(entry).await {
                    Ok(()) => lifted = true,
                    Err(e) if e.code == ErrorCode::NoSuchUser => {}
                    Err(e) => return Err(e),
                }
            }
            if !lifted {
                return Err(super::not_banned(&text));
            }
            info!(
                admin = admin.as_deref().unwrap_or("-"),
                target = text,
                action = "unban",
                "moderation"
            );
            Ok(Reply::Ok)
        });
        let _ = done.await;
        Ok(After::Continue)
    }

    async fn moderate_cluster(
        &self,
        cluster: &Arc<Cluster>,
        session: &Session,
        name: String,
        what: Moderation,
    ) -> Result<After, WireError> {
        admin(session)?;
        validate_name(&name)?;
        // The eviction comes back from the stream whenever Redis has it, and
        // nothing is sent after a `BYE`: an admin kicking itself must have
        // its reply's place taken before Redis is asked.
        let admin = session.name.clone();
        let cluster = cluster.clone();
        let done = self.reply_later(session, async move {
            match what {
                Moderation::Kick => cluster.kick(&name, false).await?,
                Moderation::Ban => cluster.kick(&name, true).await?,
            }
            info!(
                admin = admin.as_deref().unwrap_or("-"),
                target = name,
                action = what.word(),
                "moderation"
            );
            Ok(Reply::Ok)
        });
        // Later commands still wait for it, as they always did.
        let _ = done.await;
        Ok(After::Continue)
    }

    /// Applies one event from the stream. Returns false when it does not
    /// follow from the replica (a gap): the caller must resync.
    pub fn apply_remote(&self, event: RemoteEvent) -> bool {
        let mut st = self.lock();
        match event {
            RemoteEvent::Pixel {
                seq,
                x,
                y,
                color,
                name,
                unix_ms,
            } => {
                let change = Change::Pixel {
                    seq,
                    x,
                    y,
                    color,
                    unix_ms,
                    name: name.clone(),
                };
                if self.commit(&mut st, change, None).is_err() {
                    return false;
                }
                if let Some(archiver) = &self.archiver {
                    archiver.push(Placement {
                        seq,
                        unix_ms,
                        x,
                        y,
                        color,
                        name,
                    });
                }
                return true;
            }
            RemoteEvent::Msg(line) => {
                return self.commit(&mut st, Change::Chat(line), None).is_ok();
            }
            RemoteEvent::Dm {
                from,
                to,
                text,
                owner,
            } => {
                // Only the holder of the name: a session this server lost
                // the name of (and has not noticed yet) gets nothing.
                let mine = owner.is_none_or(|o| self.is_me(&o));
                if let Some(user) = st.users.get(to.as_str()).filter(|_| mine) {
                    user.outbox
                        .push_other(self.ring.end(), Outgoing::Event(Event::Dm { from, text }));
                }
            }
            RemoteEvent::Joined {
                name,
                server,
                nonce,
                quiet,
            } => {
                let key = name.to_ascii_lowercase();
                // The roster mirrors Redis's list of users, whatever this
                // server believes about its own: that is what makes every
                // server's `WHO` converge.
                let new = st
                    .roster
                    .insert(Arc::from(key.as_str()), Online::new(name.clone(), quiet))
                    .is_none();
                let mine = self.is_me(&server);
                if !mine && st.users.contains_key(key.as_str()) {
                    // Another server holds a name this one still serves.
                    self.doubt();
                }
                match st.joining.remove(&nonce).filter(|_| mine) {
                    Some(pending) if !pending.done.is_closed() => {
                        self.admit(
                            &mut st,
                            &pending.outbox,
                            (name.clone(), pending.addr),
                            pending.resume,
                            quiet,
                        );
                        let _ = pending.done.send(name);
                    }
                    Some(_) => {
                        // The session went away while waiting: announce the
                        // join like anyone's, and release the name again.
                        self.presence(&mut st, name.clone(), quiet, true);
                        if let Some(cluster) = self.cluster().cloned() {
                            tokio::spawn(async move { cluster.leave(&name).await });
                        }
                    }
                    // A name taken back, or taken over from a server whose
                    // lease ran out, was online all along for the others.
                    None if new => {
                        self.presence(&mut st, name, quiet, true);
                    }
                    None => {}
                }
            }
            RemoteEvent::Left { name, quiet } => {
                let key = name.to_ascii_lowercase();
                if st.roster.remove(key.as_str()).is_some() {
                    self.presence(&mut st, name, quiet, false);
                }
                if st.users.contains_key(key.as_str()) {
                    // Redis no longer lists a user this server serves: its
                    // lease ran out (a pause), or a leave raced a join.
                    self.doubt();
                }
            }
            RemoteEvent::Kick { name, ban, owner } => {
                let what = if ban {
                    if self
                        .commit(&mut st, Change::Ban(name.clone()), None)
                        .is_err()
                    {
                        return false;
                    }
                    Moderation::Ban
                } else {
                    Moderation::Kick
                };
                // A ban sends the name away wherever it is; a kick, the
                // session that held it.
                if (ban || owner.is_none_or(|o| self.is_me(&o)))
                    && let Some(bye) = what.bye()
                {
                    st.evict(&name, self.ring.end(), bye);
                }
            }
            RemoteEvent::Unban { name } => {
                return self.commit(&mut st, Change::Unban(name), None).is_ok();
            }
        }
        true
    }

    /// After Redis came back (or a gap): checks the replica still matches
    /// Redis and re-registers this server's users. Returns the stream
    /// position to continue from when the replica had to be reloaded.
    pub async fn reconcile(
        &self,
        cluster: &Cluster,
        forced: bool,
        position: &str,
    ) -> Option<String> {
        let consistent = match cluster.probe().await {
            Ok(probe) => {
                let st = self.lock();
                probe.canvas_id == st.world.canvas.id()
                    && probe.seq >= st.world.canvas.seq()
                    && !probe.trimmed_past(position)
            }
            Err(_) => return None,
        };
        if forced || !consistent {
            warn!(forced, "the replica no longer matches Redis; reloading it");
            match cluster.load(self.history_capacity).await {
                Ok(loaded) => {
                    let position = loaded.position.clone();
                    self.reset(loaded);
                    return Some(position);
                }
                Err(e) => {
                    warn!(error = %e, "reloading the canvas from Redis failed");
                    return None;
                }
            }
        }
        // The reaper may have released our users while Redis was away.
        if !self.retake_names(cluster).await {
            cluster.doubt();
        }
        None
    }

    /// Takes this server's users' names back after its lease ran out (or
    /// Redis came back, or a doubt): those still free are this server's
    /// again, and the sessions whose name another server holds now are
    /// sent away with `BYE name_lost`. Returns false when Redis could not
    /// say (try again later).
    pub async fn retake_names(&self, cluster: &Cluster) -> bool {
        let held: Vec<(String, bool, Arc<Outbox>)> = self
            .lock()
            .users
            .values()
            .map(|u| (u.name.to_string(), u.quiet, u.outbox.clone()))
            .collect();
        if held.is_empty() {
            return true;
        }
        let names: Vec<(String, bool)> = held.iter().map(|(n, q, _)| (n.clone(), *q)).collect();
        let Ok(found) = cluster.retake(&names).await else {
            return false;
        };
        let st = self.lock();
        let mut lost = 0;
        for ((name, _, outbox), found) in held.iter().zip(found) {
            let (code, text) = match found {
                Retake::Held => continue,
                Retake::Taken => (
                    ErrorCode::NameLost,
                    "this server was cut off from the cluster longer than its lease, and another server's user has your name now; reconnect",
                ),
                Retake::Banned => (ErrorCode::Banned, "an admin banned you from this server"),
            };
            // Only the session asked about, not one that joined since.
            let same = st
                .users
                .get(name.to_ascii_lowercase().as_str())
                .is_some_and(|u| Arc::ptr_eq(&u.outbox, outbox));
            if same {
                outbox.evict(
                    self.ring.end(),
                    Event::Bye {
                        code,
                        text: text.into(),
                    },
                );
                lost += 1;
            }
        }
        if lost > 0 {
            warn!(
                users = lost,
                "sent away users whose names another server holds now"
            );
        }
        true
    }

    fn is_me(&self, server: &str) -> bool {
        self.cluster().is_some_and(|c| c.server_id() == server)
    }

    fn doubt(&self) {
        if let Some(c) = self.cluster() {
            c.doubt();
        }
    }

    /// Replaces the replica with `loaded` and sends every client of this
    /// server away to reconnect: what they hold may not match any more.
    fn reset(&self, loaded: Loaded) {
        if let Some(archiver) = &self.archiver {
            archiver.reloaded(loaded.world.canvas.id(), loaded.world.canvas.seq());
        }
        let mut st = self.lock();
        let State {
            world,
            history,
            roster,
            users,
            joining,
            snapshot,
            presence,
            ..
        } = &mut *st;
        *world = loaded.world;
        *history = History::new(self.history_capacity);
        for pixel in loaded.recent {
            history.push(pixel);
        }
        *roster = roster_of(loaded.users);
        *presence = Default::default();
        *snapshot = None;
        joining.clear();
        for user in users.values() {
            user.outbox.evict(
                self.ring.end(),
                Event::Bye {
                    code: ErrorCode::Resync,
                    text: "the server reloaded the canvas; reconnect".into(),
                },
            );
        }
        users.clear();
        self.ring.set_watchers(0);
    }

    /// Names of this server's users.
    pub fn local_names(&self) -> Vec<String> {
        self.lock()
            .users
            .values()
            .map(|u| u.name.to_string())
            .collect()
    }
}
