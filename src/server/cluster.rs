//! Several servers, one canvas: Redis is the source of truth and the
//! ordering authority.
//!
//! Every change is one Lua script in Redis that validates, updates the
//! shared state and appends an event to a capped stream (`XADD`): placing a
//! pixel assigns the next seq, writes the canvas and the author and checks
//! the cluster-wide cooldown in one atomic step. Every server tails the
//! stream (`XREAD BLOCK`) and applies the events, in stream order, to its
//! own replica of the canvas, which it serves snapshots, `SYNC` and `WHOSE`
//! from and fans out to its own clients; so every client on every server
//! sees the same events in the same order. A server that loses Redis
//! reconnects with backoff and continues from the last stream id it
//! applied, so it misses nothing the stream still holds; while Redis is
//! unreachable, changes are refused with `ERR unavailable` and reads are
//! served from the replica.
//!
//! Names are leases. A server holds the names of its users through one
//! lease key in Redis with a time to live (`lease:<id>`), which it renews
//! five times per lease; a server whose lease ran out (it died, or was
//! paused longer than the lease) loses its users: another server's reaper
//! releases them and announces them as left. A lease alone is not a lock,
//! though: a server paused past its lease wakes up believing it still holds
//! its names. So every script that acts for a user (placing, chat, DMs)
//! checks, atomically with the act, that the name's entry is this server's
//! and that this server's lease is alive, and refuses otherwise (the
//! fencing a lock needs). A server that finds its lease expired, or is
//! refused, or reads that one of its users left, takes its users' names
//! back where they are still free and sends the other clients away with
//! `BYE name_lost`. So a name acts for at most one connection at a time,
//! and every server's list of who is online, built from the same stream,
//! converges to Redis's.
//!
//! Redis itself may be one server (`redis://host:port`) or a master that
//! Sentinel watches (`sentinel://host:port[,host:port...]/master`): on a
//! failover the servers ask Sentinel for the new master and continue from
//! the stream position they had. With `wait_replicas`, placements and chat
//! are acknowledged only once that many replicas have them (`WAIT`), so a
//! failover loses nothing acknowledged.
//!
//! Keys, under the prefix (`pixchat:` by default): `meta` (hash: canvas id,
//! size, seq, chat seq), `pixels` (string, one byte per pixel), `whose`
//! (hash: pixel index → `seq:unix_ms:name`), `events` (the stream), `chat`
//! (list of the last 100 messages), `users` (hash: lower-cased name →
//! `server name [q]`), `servers` (set of server ids), `lease:<id>` (a
//! server's lease on its users' names, with a time to live), `banned`
//! (set), `cooldown:<name>`.
//!
//! The scripts touch keys they compute from a prefix, which standalone
//! Redis allows; Redis Cluster would need every key in one hash slot.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncConnectionConfig, Script, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub mod archiver;

use super::canvas::{Canvas, PixelMeta};
use super::storage::archive::Placement;
use super::storage::{CHAT_HISTORY, ChatLine, World};
use crate::protocol::{ErrorCode, PALETTE, Pixel, WireError};

/// How to reach the cluster. Its `Debug` masks the URL's password.
#[derive(Clone)]
pub struct ClusterConfig {
    /// Where Redis is: `redis://host:port` for one Redis, or
    /// `sentinel://host:port[,host:port...]/master` for the master that
    /// these Sentinels watch (followed across failovers).
    pub url: String,
    /// Prefix of every key.
    pub prefix: String,
    /// Stream entries kept (approximately) for servers catching up.
    pub stream_len: u64,
    /// How long a server's hold on its users' names lasts without being
    /// renewed: a server silent this long (dead, or paused) loses them.
    pub lease: Duration,
    /// Replicas that must have a placement or chat line before it is
    /// acknowledged (Redis `WAIT`); 0 acknowledges once the master has it.
    pub wait_replicas: u32,
    /// Keep the history archive from the stream (`--archive`).
    pub archive: Option<archiver::ArchiveConfig>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("url", &redacted_url(&self.url))
            .field("prefix", &self.prefix)
            .field("stream_len", &self.stream_len)
            .field("lease", &self.lease)
            .field("wait_replicas", &self.wait_replicas)
            .field("archive", &self.archive)
            .finish()
    }
}

/// How long a placement waits for its replicas (`wait_replicas`) before it
/// is answered `unavailable`.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(1);

/// An event read from the shared stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoteEvent {
    /// A pixel was placed.
    Pixel {
        /// Canvas seq.
        seq: u64,
        /// Column.
        x: u16,
        /// Row.
        y: u16,
        /// Palette index.
        color: u8,
        /// Author.
        name: Arc<str>,
        /// When.
        unix_ms: u64,
    },
    /// A chat message.
    Msg(ChatLine),
    /// A direct message for whoever holds `to` (lower-cased).
    Dm {
        /// Sender.
        from: Arc<str>,
        /// Lower-cased recipient.
        to: String,
        /// Message.
        text: Arc<str>,
        /// The server holding the recipient when it was sent: only its
        /// session gets it, not a stale one elsewhere.
        owner: Option<String>,
    },
    /// Someone joined on some server (or a server took a name back).
    Joined {
        /// Their name.
        name: Arc<str>,
        /// The server they joined.
        server: String,
        /// Ties the event to the local JOIN that asked for it (0: a name
        /// taken back).
        nonce: u64,
        /// Joined quietly: not announced.
        quiet: bool,
    },
    /// Someone left (or their server's lease ran out).
    Left {
        /// Their name.
        name: Arc<str>,
        /// They had joined quietly: not announced.
        quiet: bool,
    },
    /// An admin kicked (or banned) a user.
    Kick {
        /// Lower-cased name.
        name: String,
        /// Banned, not just kicked.
        ban: bool,
        /// The server holding the name when it was kicked.
        owner: Option<String>,
    },
    /// An admin lifted a ban.
    Unban {
        /// Lower-cased name.
        name: String,
    },
}

/// What a server loads when it starts, or resyncs: the state and the
/// stream position it corresponds to.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Canvas, authorship, chat.
    pub world: World,
    /// Everyone online, by the `users` hash, and whether they joined
    /// quietly.
    pub users: Vec<(String, bool)>,
    /// Recent pixel events, oldest first, to serve `SYNC` from.
    pub recent: Vec<Pixel>,
    /// Stream id the state includes everything up to.
    pub position: String,
}

/// What Redis holds now, to check a replica against.
#[derive(Debug)]
pub(crate) struct Probe {
    /// The shared canvas id.
    pub canvas_id: u64,
    /// Its seq.
    pub seq: u64,
    /// Id of the oldest entry the stream still holds.
    pub oldest: Option<String>,
}

impl Probe {
    /// True when the stream no longer holds the entries right after
    /// `position` (they were trimmed, or the stream is new).
    pub fn trimmed_past(&self, position: &str) -> bool {
        match (&self.oldest, stream_id(position)) {
            (Some(oldest), Some(pos)) => {
                stream_id(oldest).is_some_and(|o| o > pos && pos != (0, 0))
            }
            _ => false,
        }
    }
}

/// A stream id `ms-seq` as a comparable pair.
fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    /// The lease was alive and is renewed.
    Held,
    /// The lease had run out (this server was silent too long): it is
    /// taken again, but the names it covered may be gone.
    Expired,
}

/// What taking a name back found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retake {
    /// The name is this server's (it still was, or it was free again).
    Held,
    /// Another server holds it now.
    Taken,
    /// The name is banned.
    Banned,
}

/// Where Redis is.
enum Target {
    /// One Redis.
    Direct(redis::Client),
    /// The master Sentinel names, asked again after every lost connection.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// See the module docs.
pub(crate) struct Cluster {
    config: ClusterConfig,
    server_id: String,
    target: Target,
    /// The Redis commands and changes go to, and the address it was made
    /// for (to notice a failover to another master).
    commands: Mutex<Option<(ConnectionManager, String)>>,
    up: AtomicBool,
    /// A command met a Redis that is no longer the master (`READONLY`):
    /// the tail reconnects, through Sentinel, before anything else.
    stale: AtomicBool,
    scripts: Scripts,
    /// Leaves to retry once Redis is back.
    pending_leaves: Mutex<VecDeque<String>>,
    /// Placements and chat on their way to Redis, in the order clients
    /// sent them.
    changes: tokio::sync::mpsc::Sender<Change>,
    changes_rx: Mutex<Option<tokio::sync::mpsc::Receiver<Change>>>,
    /// Something suggests this server lost names (a refused act, a leave
    /// of a user it serves): check them now rather than at the next beat.
    doubt: Arc<Notify>,
    /// The time part (ms) of the last stream entry applied, for
    /// `/metrics`' stream lag; set once per batch read.
    applied_ms: AtomicU64,
}

/// A placement or chat line on its way to Redis.
struct Change {
    cmd: redis::Cmd,
    done: tokio::sync::oneshot::Sender<Result<Value, WireError>>,
}

/// Changes sent to Redis in one pipeline at most.
const BATCH: usize = 256;
/// Changes waiting for Redis at most; beyond, new ones are refused.
const QUEUED: usize = 16_384;
/// Names one script takes back at most, so a server with a crowd does not
/// hold Redis in one long script.
const RETAKE_BATCH: usize = 500;
/// How long asking Sentinel for the master may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server_id", &self.server_id)
            .field("prefix", &self.config.prefix)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish()
    }
}

struct Scripts {
    init: Script,
    load: Script,
    place: Script,
    say: Script,
    join: Script,
    retake: Script,
    leave: Script,
    tell: Script,
    kick: Script,
    unban: Script,
    fill: Script,
    restore: Script,
    heartbeat: Script,
    reap: Script,
}

/// Creates the canvas if Redis has none; returns its id and size.
const INIT: &str = r"
local p = ARGV[1]
if redis.call('EXISTS', p .. 'meta') == 0 then
  redis.call('HSET', p .. 'meta', 'id', ARGV[2], 'width', ARGV[3], 'height', ARGV[4], 'seq', 0, 'chat_seq', 0)
  redis.call('SET', p .. 'pixels', string.rep('\0', tonumber(ARGV[3]) * tonumber(ARGV[4])))
end
return redis.call('HMGET', p .. 'meta', 'id', 'width', 'height')
";

/// Everything a replica needs, read atomically with the stream position.
const LOAD: &str = r"
local p = ARGV[1]
local meta = redis.call('HMGET', p .. 'meta', 'id', 'width', 'height', 'seq', 'chat_seq')
local pixels = redis.call('GET', p .. 'pixels')
local whose = redis.call('HGETALL', p .. 'whose')
local chat = redis.call('LRANGE', p .. 'chat', 0, -1)
local users = redis.call('HVALS', p .. 'users')
local recent = redis.call('XREVRANGE', p .. 'events', '+', '-', 'COUNT', ARGV[2])
local banned = redis.call('SMEMBERS', p .. 'banned')
return {meta, pixels, whose, chat, users, recent, banned}
";

/// The fencing check, put before the scripts that act for a user: the
/// user's name (lower-cased `key`) is held by server `me`, and `me`'s lease
/// is alive. A server paused past its lease fails it even before it knows.
const HOLDS: &str = r"
local function holds(p, key, me)
  if redis.call('EXISTS', p .. 'lease:' .. me) == 0 then return false end
  local cur = redis.call('HGET', p .. 'users', key)
  return cur and string.match(cur, '^(%S+)') == me
end
";

/// Places a pixel: fencing, range, cooldown, seq, canvas, author, event.
const PLACE: &str = r"
local p = ARGV[1]
if not holds(p, ARGV[10], ARGV[11]) then return {'lease'} end
local size = redis.call('HMGET', p .. 'meta', 'width', 'height')
local w, h = tonumber(size[1]), tonumber(size[2])
local x, y, c = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if x >= w or y >= h or c >= tonumber(ARGV[9]) then return {'out_of_range'} end
local cd = tonumber(ARGV[7])
if cd > 0 then
  local key = p .. 'cooldown:' .. ARGV[10]
  local left = redis.call('PTTL', key)
  if left > 0 then return {'cooldown', left} end
  redis.call('SET', key, 1, 'PX', cd)
end
local seq = redis.call('HINCRBY', p .. 'meta', 'seq', 1)
local idx = y * w + x
redis.call('SETRANGE', p .. 'pixels', idx, string.char(c))
redis.call('HSET', p .. 'whose', idx, seq .. ':' .. ARGV[6] .. ':' .. ARGV[5])
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[8], '*',
  't', 'p', 's', seq, 'x', x, 'y', y, 'c', c, 'n', ARGV[5], 'ms', ARGV[6])
return {'ok', seq}
";

/// An admin's `FILL`: the rectangle ARGV[2..5] (inclusive, in order) in
/// colour ARGV[6], by ARGV[7] at ARGV[8], as one placement per pixel, row
/// by row: one seq, author and event each, like `PLACE`'s, in one atomic
/// step (so no placement falls between two of its pixels). At most
/// ARGV[11] pixels, which keeps the script, and the burst of events, short.
const FILL: &str = r"
local p = ARGV[1]
local x1, y1, x2, y2 = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local c, name, ms, maxlen = tonumber(ARGV[6]), ARGV[7], ARGV[8], ARGV[9]
local size = redis.call('HMGET', p .. 'meta', 'width', 'height')
local w, h = tonumber(size[1]), tonumber(size[2])
local n = (x2 - x1 + 1) * (y2 - y1 + 1)
if x1 > x2 or y1 > y2 or x2 >= w or y2 >= h or c >= tonumber(ARGV[10]) or n > tonumber(ARGV[11]) then
  return {'out_of_range'}
end
local last = redis.call('HINCRBY', p .. 'meta', 'seq', n)
local seq = last - n
local row = string.rep(string.char(c), x2 - x1 + 1)
for y = y1, y2 do
  redis.call('SETRANGE', p .. 'pixels', y * w + x1, row)
  for x = x1, x2 do
    seq = seq + 1
    redis.call('HSET', p .. 'whose', y * w + x, seq .. ':' .. ms .. ':' .. name)
    redis.call('XADD', p .. 'events', 'MAXLEN', '~', maxlen, '*',
      't', 'p', 's', seq, 'x', x, 'y', y, 'c', c, 'n', name, 'ms', ms)
  end
end
return {'ok', last}
";

/// An admin's `ROLLBACK`, as planned by a server: quadruples of x, y,
/// colour and the seq of the placement there when it was planned, from
/// ARGV[5]. Each pixel is placed (by ARGV[2] at ARGV[3], like `PLACE`)
/// only if its last placement is still that one, checked atomically with
/// the placement: whoever drew there since keeps their pixel. Returns how
/// many were placed and the latest seq.
const RESTORE: &str = r"
local p = ARGV[1]
local name, ms, maxlen = ARGV[2], ARGV[3], ARGV[4]
local size = redis.call('HMGET', p .. 'meta', 'width', 'height')
local w, h = tonumber(size[1]), tonumber(size[2])
local placed = 0
for i = 5, #ARGV - 3, 4 do
  local x, y, c = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if x < w and y < h then
    local idx = y * w + x
    local cur = redis.call('HGET', p .. 'whose', idx)
    if cur and string.match(cur, '^(%d+):') == ARGV[i + 3] then
      local seq = redis.call('HINCRBY', p .. 'meta', 'seq', 1)
      redis.call('SETRANGE', p .. 'pixels', idx, string.char(c))
      redis.call('HSET', p .. 'whose', idx, seq .. ':' .. ms .. ':' .. name)
      redis.call('XADD', p .. 'events', 'MAXLEN', '~', maxlen, '*',
        't', 'p', 's', seq, 'x', x, 'y', y, 'c', c, 'n', name, 'ms', ms)
      placed = placed + 1
    end
  end
end
return {'ok', placed, redis.call('HGET', p .. 'meta', 'seq')}
";

/// Chat: fencing, the next chat seq, the history list, the event.
const SAY: &str = r"
local p = ARGV[1]
if not holds(p, ARGV[7], ARGV[8]) then return {'lease'} end
local s = redis.call('HINCRBY', p .. 'meta', 'chat_seq', 1)
redis.call('RPUSH', p .. 'chat', s .. ' ' .. ARGV[4] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
redis.call('LTRIM', p .. 'chat', -tonumber(ARGV[6]), -1)
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[5], '*',
  't', 'm', 's', s, 'n', ARGV[2], 'x', ARGV[3], 'ms', ARGV[4])
return {'ok', s}
";

/// Claims a name cluster-wide for a session of server ARGV[4], whose lease
/// must be alive. A name whose holder's lease ran out is free.
const JOIN: &str = r"
local p = ARGV[1]
if redis.call('EXISTS', p .. 'lease:' .. ARGV[4]) == 0 then return 'lease' end
if redis.call('SISMEMBER', p .. 'banned', ARGV[2]) == 1 then return 'banned' end
local cur = redis.call('HGET', p .. 'users', ARGV[2])
if cur then
  local owner = string.match(cur, '^(%S+)')
  if owner ~= ARGV[4] and redis.call('EXISTS', p .. 'lease:' .. owner) == 1 then
    return 'name_taken'
  end
end
local quiet = ARGV[7] == '1'
redis.call('HSET', p .. 'users', ARGV[2], ARGV[4] .. ' ' .. ARGV[3] .. (quiet and ' q' or ''))
redis.call('SADD', p .. 'servers', ARGV[4])
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[6], '*',
  't', 'j', 'n', ARGV[3], 'v', ARGV[4], 'k', ARGV[5], 'q', ARGV[7])
return 'ok'
";

/// Takes back the names of server ARGV[2]'s users (triples of lower-cased
/// name, name, quiet from ARGV[4]): each is still its own (`held`), free
/// again and taken (`retaken`, announced), held by a live server
/// (`taken`), or banned. Only while the server's lease is alive.
const RETAKE: &str = r"
local p, me = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. 'lease:' .. me) == 0 then return 'lease' end
local out = {}
for i = 4, #ARGV, 3 do
  local key, name, q = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local r = 'held'
  if redis.call('SISMEMBER', p .. 'banned', key) == 1 then
    r = 'banned'
  else
    local cur = redis.call('HGET', p .. 'users', key)
    local owner = cur and string.match(cur, '^(%S+)')
    if owner ~= me then
      if owner and redis.call('EXISTS', p .. 'lease:' .. owner) == 1 then
        r = 'taken'
      else
        redis.call('HSET', p .. 'users', key, me .. ' ' .. name .. (q == '1' and ' q' or ''))
        redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[3], '*',
          't', 'j', 'n', name, 'v', me, 'k', 0, 'q', q)
        r = 'retaken'
      end
    end
  end
  out[#out + 1] = r
end
redis.call('SADD', p .. 'servers', me)
return out
";

/// Releases a name this server holds.
const LEAVE: &str = r"
local p = ARGV[1]
local cur = redis.call('HGET', p .. 'users', ARGV[2])
if cur and string.match(cur, '^(%S+)') == ARGV[4] then
  redis.call('HDEL', p .. 'users', ARGV[2])
  local q = string.match(cur, ' q$') and '1' or '0'
  redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[5], '*', 't', 'l', 'n', ARGV[3], 'q', q)
end
return 'ok'
";

/// A direct message from a user of server ARGV[7] (fenced), for whichever
/// live server holds the recipient: the event names it.
const TELL: &str = r"
local p = ARGV[1]
if not holds(p, ARGV[6], ARGV[7]) then return 'lease' end
local cur = redis.call('HGET', p .. 'users', ARGV[2])
if not cur then return 'no_such_user' end
local owner = string.match(cur, '^(%S+)')
if redis.call('EXISTS', p .. 'lease:' .. owner) == 0 then return 'no_such_user' end
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[5], '*',
  't', 'd', 'f', ARGV[3], 'to', ARGV[2], 'x', ARGV[4], 'v', owner)
return 'ok'
";

/// Kick (or ban) a user wherever they are.
const KICK: &str = r"
local p = ARGV[1]
if ARGV[3] == '1' then redis.call('SADD', p .. 'banned', ARGV[2]) end
local cur = redis.call('HGET', p .. 'users', ARGV[2])
if not cur then
  if ARGV[3] ~= '1' then return 'no_such_user' end
  -- Every server's copy of the bans learns it (an address ban is
  -- checked there, and BANS lists it), though nobody is sent away.
  redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[4], '*',
    't', 'k', 'n', ARGV[2], 'b', '1')
  return 'ok'
end
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[4], '*',
  't', 'k', 'n', ARGV[2], 'b', ARGV[3], 'v', string.match(cur, '^(%S+)'))
return 'ok'
";

/// Lifts a ban, everywhere.
const UNBAN: &str = r"
local p = ARGV[1]
if redis.call('SREM', p .. 'banned', ARGV[2]) == 0 then return 'not_banned' end
redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[3], '*', 't', 'u', 'n', ARGV[2])
return 'ok'
";

/// Renews this server's lease for another ARGV[3] ms. Returns 1 if it was
/// still alive, 0 if it had run out (and is taken anew).
const HEARTBEAT: &str = r"
local p = ARGV[1]
local key = p .. 'lease:' .. ARGV[2]
local held = redis.call('EXISTS', key)
redis.call('SET', key, 1, 'PX', ARGV[3])
redis.call('SADD', p .. 'servers', ARGV[2])
return held
";

/// Every user of a server whose lease ran out leaves. Not while Redis
/// itself has been up for less than a lease: after a Redis restart every
/// lease looks expired until the servers have reconnected.
const REAP: &str = r"
local p = ARGV[1]
local up = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)'))
if up < tonumber(ARGV[3]) then return 0 end
local dead = {}
local any = false
for _, s in ipairs(redis.call('SMEMBERS', p .. 'servers')) do
  if redis.call('EXISTS', p .. 'lease:' .. s) == 0 then
    dead[s] = true
    any = true
    redis.call('SREM', p .. 'servers', s)
  end
end
if not any then return 0 end
local n = 0
local all = redis.call('HGETALL', p .. 'users')
for i = 1, #all, 2 do
  local owner, name = string.match(all[i + 1], '^(%S+) (%S+)')
  if owner and dead[owner] then
    local q = string.match(all[i + 1], ' q$') and '1' or '0'
    redis.call('HDEL', p .. 'users', all[i])
    redis.call('XADD', p .. 'events', 'MAXLEN', '~', ARGV[2], '*', 't', 'l', 'n', name, 'q', q)
    n = n + 1
  end
end
return n
";

fn unavailable() -> WireError {
    WireError::new(
        ErrorCode::Unavailable,
        "the cluster's Redis is unreachable; try again shortly",
    )
}

/// A refusal by the fencing check: this server is not (or no longer sure
/// to be) the holder of the user's name.
fn lease_lost() -> WireError {
    WireError::new(
        ErrorCode::Unavailable,
        "this server is renewing its hold on your name in the cluster; nothing was changed, try again shortly",
    )
}

fn unconfirmed(wanted: u32) -> WireError {
    WireError::new(
        ErrorCode::Unavailable,
        format!(
            "not confirmed by {wanted} Redis replica(s) in time, so not acknowledged (it may still be kept); try again"
        ),
    )
}

/// A Redis or Sentinel URL as it may be printed: the password of every
/// host (`redis://user:secret@host`, `sentinel://:secret@a,b/master`) and a
/// `password=`/`pass=` query parameter become `***`. Written by hand: a URL
/// parser would refuse the comma-separated Sentinel hosts, and an
/// unparseable URL must be masked too.
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let hosts: Vec<String> = authority
        .split(',')
        .map(|host| match host.rsplit_once('@') {
            Some((user, at)) => match user.split_once(':') {
                Some((name, _)) => format!("{name}:***@{at}"),
                None => format!("***@{at}"),
            },
            None => host.to_string(),
        })
        .collect();
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _))
                        if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                    {
                        format!("{k}=***")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{}{tail}", hosts.join(",")),
        None => format!("{}{tail}", hosts.join(",")),
    }
}

/// Reads `--redis`: one Redis, or Sentinels and the master they watch.
fn target(url: &str) -> anyhow::Result<Target> {
    let shown = redacted_url(url);
    let Some(rest) = url.strip_prefix("sentinel://") else {
        let client =
            redis::Client::open(url).with_context(|| format!("parse the Redis URL {shown}"))?;
        return Ok(Target::Direct(client));
    };
    let (hosts, master) = rest
        .split_once('/')
        .filter(|(h, m)| !h.is_empty() && !m.is_empty())
        .with_context(|| {
            format!("{shown}: a Sentinel URL is sentinel://HOST:PORT[,HOST:PORT...]/MASTER")
        })?;
    let sentinels: Vec<String> = hosts.split(',').map(|h| format!("redis://{h}")).collect();
    let client = SentinelClient::build(
        sentinels,
        master.to_string(),
        None,
        SentinelServerType::Master,
    )
    .with_context(|| format!("parse the Sentinel URL {shown}"))?;
    Ok(Target::Sentinel(tokio::sync::Mutex::new(client)))
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1))
}

/// A server error that means the Redis answering is not the master (any
/// more): a failover happened.
fn is_read_only(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
    )
}

impl Cluster {
    /// Connects, creating the shared canvas if there is none. `size` is the
    /// size asked for on the command line, if any.
    pub async fn connect(
        config: ClusterConfig,
        size: Option<(u16, u16)>,
        default_size: (u16, u16),
    ) -> anyhow::Result<Arc<Cluster>> {
        let target = target(&config.url)?;
        let (changes, changes_rx) = tokio::sync::mpsc::channel(QUEUED);
        let script = |body: &str| Script::new(body);
        let fenced = |body: &str| Script::new(&format!("{HOLDS}{body}"));
        let cluster = Arc::new(Cluster {
            changes,
            changes_rx: Mutex::new(Some(changes_rx)),
            server_id: format!("{:016x}", rand::random::<u64>()),
            config,
            target,
            commands: Mutex::new(None),
            up: AtomicBool::new(true),
            stale: AtomicBool::new(false),
            applied_ms: AtomicU64::new(0),
            scripts: Scripts {
                init: script(INIT),
                load: script(LOAD),
                place: fenced(PLACE),
                say: fenced(SAY),
                join: script(JOIN),
                retake: script(RETAKE),
                leave: script(LEAVE),
                tell: fenced(TELL),
                kick: script(KICK),
                unban: script(UNBAN),
                fill: script(FILL),
                restore: script(RESTORE),
                heartbeat: script(HEARTBEAT),
                reap: script(REAP),
            },
            pending_leaves: Mutex::new(VecDeque::new()),
            doubt: Arc::new(Notify::new()),
        });
        let client = cluster
            .resolve()
            .await
            .with_context(|| format!("find Redis at {}", redacted_url(&cluster.config.url)))?;
        cluster.use_master(client).await.with_context(|| {
            format!("connect to Redis at {}", redacted_url(&cluster.config.url))
        })?;
        let (w, h) = size.unwrap_or(default_size);
        Canvas::new(0, w, h).map_err(|e| anyhow::anyhow!(e.message))?;
        let reply: Vec<Option<String>> = cluster
            .scripts
            .init
            .arg(&cluster.config.prefix)
            .arg(rand::random::<u64>().to_string())
            .arg(w)
            .arg(h)
            .invoke_async(&mut cluster.con()?)
            .await
            .context("create the shared canvas")?;
        let stored = (
            reply
                .get(1)
                .cloned()
                .flatten()
                .and_then(|v| v.parse::<u16>().ok()),
            reply
                .get(2)
                .cloned()
                .flatten()
                .and_then(|v| v.parse::<u16>().ok()),
        );
        if let (Some((w, h)), (Some(sw), Some(sh))) = (size, stored)
            && (w, h) != (sw, sh)
        {
            bail!(
                "the shared canvas in Redis ({}) is {sw}x{sh}, not {w}x{h}; start without --width/--height",
                cluster.config.prefix
            );
        }
        cluster
            .load_pipelined_scripts()
            .await
            .context("load the placement and chat scripts")?;
        cluster
            .heartbeat()
            .await
            .context("register with the cluster")?;
        info!(server_id = %cluster.server_id, prefix = %cluster.config.prefix, "joined the cluster");
        Ok(cluster)
    }

    /// The Redis to use now: the one configured, or the master Sentinel
    /// names (checked to be a master).
    async fn resolve(&self) -> anyhow::Result<redis::Client> {
        match &self.target {
            Target::Direct(client) => Ok(client.clone()),
            Target::Sentinel(sentinel) => {
                let ask = async { sentinel.lock().await.async_get_client().await };
                match tokio::time::timeout(RESOLVE_TIMEOUT, ask).await {
                    Ok(client) => client.context("ask Sentinel for the master"),
                    Err(_) => bail!("Sentinel did not name a master within {RESOLVE_TIMEOUT:?}"),
                }
            }
        }
    }

    /// Sends commands and changes to `client` from now on, unless they go
    /// there already.
    async fn use_master(&self, client: redis::Client) -> anyhow::Result<()> {
        let addr = client.get_connection_info().addr().to_string();
        let current = self
            .commands
            .lock()
            .expect("cluster lock poisoned")
            .as_ref()
            .map(|(_, a)| a.clone());
        if current.as_deref() == Some(addr.as_str()) {
            return Ok(());
        }
        let manager = ConnectionManager::new_with_config(client, manager_config()).await?;
        if let Some(old) = current {
            warn!(from = %old, to = %addr, "Redis master changed");
        }
        *self.commands.lock().expect("cluster lock poisoned") = Some((manager, addr));
        Ok(())
    }

    /// Placements, chat and bulk changes go out as EVALSHA in pipelines:
    /// load them.
    async fn load_pipelined_scripts(&self) -> redis::RedisResult<()> {
        let mut con = self.con().map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Io, "no connection to Redis"))
        })?;
        for script in [
            &self.scripts.place,
            &self.scripts.say,
            &self.scripts.fill,
            &self.scripts.restore,
        ] {
            script.load_async(&mut con).await?;
        }
        Ok(())
    }

    /// This server's id in the cluster.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Whether Redis answered lately.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Asks for this server's names to be checked now: something suggests
    /// it lost some (a user of it left in the stream, or was refused).
    pub fn doubt(&self) {
        self.doubt.notify_one();
    }

    /// How far this server's read of the stream is behind its newest
    /// entry, in milliseconds of entry ids (0 when it has read it all);
    /// `None` if Redis does not answer within a second. For `/metrics`.
    pub async fn stream_lag(&self) -> Option<Duration> {
        let mut con = self.con().ok()?;
        let events = format!("{}events", self.config.prefix);
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(&events).arg("+").arg("-").arg("COUNT").arg(1);
        let newest = cmd.query_async::<StreamRangeReply>(&mut con);
        let newest = tokio::time::timeout(Duration::from_secs(1), newest)
            .await
            .ok()?
            .ok()?;
        let newest_ms = newest.ids.first().map_or(0, |e| id_ms(&e.id));
        let applied = self.applied_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(newest_ms.saturating_sub(applied)))
    }

    fn con(&self) -> Result<ConnectionManager, WireError> {
        self.commands
            .lock()
            .expect("cluster lock poisoned")
            .as_ref()
            .map(|(m, _)| m.clone())
            .ok_or_else(unavailable)
    }

    /// Notes a Redis error: a `READONLY` one means the master changed.
    fn failed(&self, e: &redis::RedisError) {
        if is_read_only(e) {
            self.stale.store(true, Ordering::Relaxed);
        }
    }

    /// Runs a script for a command; any Redis failure is `unavailable`.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, WireError> {
        if !self.is_up() {
            return Err(unavailable());
        }
        let mut con = self.con()?;
        invocation.invoke_async(&mut con).await.map_err(|e| {
            warn!(error = %e, "Redis command failed");
            self.failed(&e);
            unavailable()
        })
    }

    /// Runs a script that answers `ok`, `lease` (the fencing check failed),
    /// or something else for `refused`.
    async fn run_ok(
        &self,
        invocation: redis::ScriptInvocation<'_>,
        refused: impl FnOnce() -> WireError,
    ) -> Result<(), WireError> {
        let reply: String = self.run(invocation).await?;
        match reply.as_str() {
            "ok" => Ok(()),
            "lease" => {
                self.doubt();
                Err(lease_lost())
            }
            _ => Err(refused()),
        }
    }

    /// Reads the whole shared state and the stream position it matches.
    pub async fn load(&self, history: usize) -> anyhow::Result<Loaded> {
        let mut con = self.con()?;
        let value: Value = self
            .scripts
            .load
            .arg(&self.config.prefix)
            .arg(history.max(1))
            .invoke_async(&mut con)
            .await
            .context("load the shared canvas")?;
        parse_loaded(value).context("read the shared canvas")
    }

    /// Reads the canvas id, its seq and the oldest stream entry.
    pub async fn probe(&self) -> Result<Probe, WireError> {
        let mut con = self.con()?;
        let p = &self.config.prefix;
        let (meta, oldest): (Vec<Option<u64>>, StreamRangeReply) = redis::pipe()
            .cmd("HMGET")
            .arg(format!("{p}meta"))
            .arg("id")
            .arg("seq")
            .cmd("XRANGE")
            .arg(format!("{p}events"))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut con)
            .await
            .map_err(|_| unavailable())?;
        let oldest = oldest.ids.into_iter().next().map(|e| e.id);
        Ok(Probe {
            canvas_id: meta.first().copied().flatten().unwrap_or(0),
            seq: meta.get(1).copied().flatten().unwrap_or(0),
            oldest,
        })
    }

    /// A call of a loaded script by its hash (pipelines cannot load it), with
    /// the key prefix, its first argument.
    fn evalsha(&self, script: &Script) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(0).arg(&self.config.prefix);
        cmd
    }

    /// Queues a placement for Redis now, so placements reach Redis in the
    /// order clients sent them, and returns a future of its seq. The caller
    /// need not wait for it before reading the client's next command.
    pub fn place(
        &self,
        name: &str,
        (x, y, color): (u16, u16, u8),
        unix_ms: u64,
        cooldown: Duration,
    ) -> impl std::future::Future<Output = Result<u64, WireError>> + Send + 'static {
        let mut cmd = self.evalsha(&self.scripts.place);
        cmd.arg(x)
            .arg(y)
            .arg(color)
            .arg(name)
            .arg(unix_ms)
            .arg(cooldown.as_millis() as u64)
            .arg(self.config.stream_len)
            .arg(PALETTE.len())
            .arg(name.to_ascii_lowercase())
            .arg(&self.server_id);
        let answer = self.submit(cmd);
        let doubt = self.doubt.clone();
        async move {
            let reply: Vec<String> =
                redis::from_redis_value(answer.await?).map_err(|_| unavailable())?;
            match reply.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["ok", seq] => seq.parse().map_err(|_| unavailable()),
                ["cooldown", left] => Err(WireError::new(ErrorCode::Cooldown, left)),
                ["out_of_range"] => Err(WireError::new(
                    ErrorCode::OutOfRange,
                    "outside the canvas or palette",
                )),
                ["lease"] => {
                    doubt.notify_one();
                    Err(lease_lost())
                }
                _ => Err(unavailable()),
            }
        }
    }

    /// Queues a chat line for Redis now (see [`Cluster::place`]).
    pub fn say(
        &self,
        name: &str,
        text: &str,
        unix_ms: u64,
    ) -> impl std::future::Future<Output = Result<(), WireError>> + Send + 'static {
        let mut cmd = self.evalsha(&self.scripts.say);
        cmd.arg(name)
            .arg(text)
            .arg(unix_ms)
            .arg(self.config.stream_len)
            .arg(CHAT_HISTORY)
            .arg(name.to_ascii_lowercase())
            .arg(&self.server_id);
        let answer = self.submit(cmd);
        let doubt = self.doubt.clone();
        async move {
            let reply: Vec<String> =
                redis::from_redis_value(answer.await?).map_err(|_| unavailable())?;
            match reply.first().map(String::as_str) {
                Some("ok") => Ok(()),
                Some("lease") => {
                    doubt.notify_one();
                    Err(lease_lost())
                }
                _ => Err(unavailable()),
            }
        }
    }

    /// Queues an admin's `FILL` of the rectangle `(x1, y1)`-`(x2, y2)`
    /// (inclusive, in order, at most `max` pixels) for Redis, in order with
    /// the placements before it (see [`Cluster::place`]); the future is the
    /// seq of its last pixel.
    pub fn fill(
        &self,
        name: &str,
        (x1, y1, x2, y2): (u16, u16, u16, u16),
        color: u8,
        unix_ms: u64,
        max: usize,
    ) -> impl std::future::Future<Output = Result<u64, WireError>> + Send + 'static {
        let mut cmd = self.evalsha(&self.scripts.fill);
        cmd.arg(x1)
            .arg(y1)
            .arg(x2)
            .arg(y2)
            .arg(color)
            .arg(name)
            .arg(unix_ms)
            .arg(self.config.stream_len)
            .arg(PALETTE.len())
            .arg(max);
        let answer = self.submit(cmd);
        async move {
            let reply: Vec<String> =
                redis::from_redis_value(answer.await?).map_err(|_| unavailable())?;
            match reply.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["ok", seq] => seq.parse().map_err(|_| unavailable()),
                ["out_of_range"] => Err(WireError::new(
                    ErrorCode::OutOfRange,
                    "outside the canvas or palette",
                )),
                _ => Err(unavailable()),
            }
        }
    }

    /// Queues an admin's `ROLLBACK` for Redis: each `(x, y, color,
    /// expect_seq)` is placed only where the last placement is still
    /// `expect_seq`. The future is how many were placed and the latest seq.
    pub fn restore(
        &self,
        name: &str,
        pixels: &[(u16, u16, u8, u64)],
        unix_ms: u64,
    ) -> impl std::future::Future<Output = Result<(u32, u64), WireError>> + Send + 'static {
        let mut cmd = self.evalsha(&self.scripts.restore);
        cmd.arg(name).arg(unix_ms).arg(self.config.stream_len);
        for (x, y, color, expect_seq) in pixels {
            cmd.arg(x).arg(y).arg(color).arg(expect_seq);
        }
        let answer = self.submit(cmd);
        async move {
            let reply: Vec<String> =
                redis::from_redis_value(answer.await?).map_err(|_| unavailable())?;
            match reply.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["ok", placed, seq] => Ok((
                    placed.parse().map_err(|_| unavailable())?,
                    seq.parse().map_err(|_| unavailable())?,
                )),
                _ => Err(unavailable()),
            }
        }
    }

    /// One page of the placements the stream holds, newest first: up to
    /// `count` entries older than the entry `before` (from the newest when
    /// `None`). Returns the placements among them and the id of the oldest
    /// entry read, to continue from; `None` once the stream holds nothing
    /// older.
    pub async fn placements_before(
        &self,
        before: Option<&str>,
        count: usize,
    ) -> Result<(Vec<Placement>, Option<String>), WireError> {
        let end = before.map_or_else(|| "+".to_string(), |id| format!("({id}"));
        self.placement_page("XREVRANGE", (&end, "-"), count).await
    }

    /// One page of the placements the stream holds, oldest first: up to
    /// `count` entries after the entry `after` (from the oldest when
    /// `None`) and up to the entry `upto`. Returns the placements among
    /// them and the id of the newest entry read, to continue from; `None`
    /// once the stream holds nothing more up to `upto`.
    pub async fn placements_between(
        &self,
        after: Option<&str>,
        upto: &str,
        count: usize,
    ) -> Result<(Vec<Placement>, Option<String>), WireError> {
        let start = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        self.placement_page("XRANGE", (&start, upto), count).await
    }

    /// Up to `count` stream entries by `range_cmd` (`XRANGE` or
    /// `XREVRANGE`) between the two ids, in its order: the placements among
    /// them, and the id of the last entry read when the page was full.
    async fn placement_page(
        &self,
        range_cmd: &str,
        (from, to): (&str, &str),
        count: usize,
    ) -> Result<(Vec<Placement>, Option<String>), WireError> {
        let mut con = self.con()?;
        let page: StreamRangeReply = redis::cmd(range_cmd)
            .arg(format!("{}events", self.config.prefix))
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await
            .map_err(|e| {
                self.failed(&e);
                unavailable()
            })?;
        let next = (page.ids.len() == count)
            .then(|| page.ids.last().map(|e| e.id.clone()))
            .flatten();
        Ok((page.ids.iter().filter_map(placement_of).collect(), next))
    }

    /// Hands a change to the pipeline task; the future is its answer.
    fn submit(
        &self,
        cmd: redis::Cmd,
    ) -> impl std::future::Future<Output = Result<Value, WireError>> + Send + 'static {
        let (done, answer) = tokio::sync::oneshot::channel();
        let queued = self.is_up() && self.changes.try_send(Change { cmd, done }).is_ok();
        async move {
            if !queued {
                return Err(unavailable());
            }
            answer.await.unwrap_or_else(|_| Err(unavailable()))
        }
    }

    /// Sends queued changes to Redis, many to a pipeline and in order, and
    /// answers each, until `shutdown`. Scripts that Redis forgot (it
    /// restarted, or a replica took over) are loaded again and the changes
    /// they refused resent.
    pub async fn send_changes(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(mut rx) = self
            .changes_rx
            .lock()
            .expect("cluster lock poisoned")
            .take()
        else {
            return;
        };
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let first = tokio::select! {
                c = rx.recv() => match c { Some(c) => c, None => return },
                _ = shutdown.cancelled() => return,
            };
            batch.push(first);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            for attempt in 0..2 {
                let answers = self.pipeline(&batch).await;
                let mut retry = Vec::new();
                for (change, answer) in batch.drain(..).zip(answers) {
                    match answer {
                        Err(Failed::NoScript) if attempt == 0 => retry.push(change),
                        Err(Failed::Unconfirmed) => {
                            let _ = change
                                .done
                                .send(Err(unconfirmed(self.config.wait_replicas)));
                        }
                        Err(_) => {
                            let _ = change.done.send(Err(unavailable()));
                        }
                        Ok(v) => {
                            let _ = change.done.send(Ok(v));
                        }
                    }
                }
                if retry.is_empty() {
                    break;
                }
                let _ = self.load_pipelined_scripts().await;
                batch = retry;
            }
            batch.clear();
        }
    }

    /// Runs a batch as one pipeline, followed by `WAIT` when replicas must
    /// confirm: one `WAIT` covers the whole batch, since it waits for every
    /// write the connection made before it. Each answer is the script's
    /// reply or why there is none.
    async fn pipeline(&self, batch: &[Change]) -> Vec<Result<Value, Failed>> {
        let failed = |why: Failed| (0..batch.len()).map(|_| Err(why)).collect();
        let Ok(mut con) = self.con() else {
            return failed(Failed::Other);
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for change in batch {
            pipe.add_command(change.cmd.clone());
        }
        let wait = self.config.wait_replicas;
        if wait > 0 {
            pipe.cmd("WAIT")
                .arg(wait)
                .arg(WAIT_TIMEOUT.as_millis() as u64);
        }
        let expected = batch.len() + usize::from(wait > 0);
        match pipe.query_async::<Vec<Value>>(&mut con).await {
            Ok(mut values) if values.len() == expected => {
                let confirmed = wait == 0
                    || matches!(values.pop(), Some(Value::Int(n)) if n >= i64::from(wait));
                values
                    .into_iter()
                    .map(|v| match v {
                        Value::ServerError(e) => Err(match e.kind() {
                            Some(redis::ServerErrorKind::NoScript) => Failed::NoScript,
                            Some(redis::ServerErrorKind::ReadOnly) => {
                                self.stale.store(true, Ordering::Relaxed);
                                Failed::Other
                            }
                            _ => Failed::Other,
                        }),
                        // A refusal changed nothing: nothing to confirm.
                        v if !confirmed && !refused(&v) => Err(Failed::Unconfirmed),
                        v => Ok(v),
                    })
                    .collect()
            }
            Ok(_) => failed(Failed::Other),
            Err(e) => {
                warn!(error = %e, "Redis pipeline failed");
                self.failed(&e);
                failed(Failed::Other)
            }
        }
    }

    /// Claims `name` for a session of this server; the `Joined` event with
    /// `nonce` follows in the stream.
    pub async fn join(&self, name: &str, nonce: u64, quiet: bool) -> Result<(), WireError> {
        let mut inv = self.scripts.join.prepare_invoke();
        inv.arg(&self.config.prefix)
            .arg(name.to_ascii_lowercase())
            .arg(name)
            .arg(&self.server_id)
            .arg(nonce)
            .arg(self.config.stream_len)
            .arg(if quiet { "1" } else { "0" });
        let reply: String = self.run(inv).await?;
        match reply.as_str() {
            "ok" => Ok(()),
            "banned" => Err(WireError::new(
                ErrorCode::Banned,
                format!("{name} is banned from this server"),
            )),
            "name_taken" => Err(WireError::new(
                ErrorCode::NameTaken,
                format!("{name} is already online"),
            )),
            "lease" => {
                self.doubt();
                Err(lease_lost())
            }
            _ => Err(unavailable()),
        }
    }

    /// Takes back the names of this server's users (name, quiet), in
    /// order: after its lease ran out, or after Redis came back. A name
    /// still free is this server's again (and announced); one that
    /// another server holds, or that was banned, is not.
    pub async fn retake(&self, names: &[(String, bool)]) -> Result<Vec<Retake>, WireError> {
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(RETAKE_BATCH) {
            let mut inv = self.scripts.retake.prepare_invoke();
            inv.arg(&self.config.prefix)
                .arg(&self.server_id)
                .arg(self.config.stream_len);
            for (name, quiet) in chunk {
                inv.arg(name.to_ascii_lowercase())
                    .arg(name)
                    .arg(if *quiet { "1" } else { "0" });
            }
            let reply: Value = self.run(inv).await?;
            let Ok(found) = redis::from_redis_value::<Vec<String>>(reply) else {
                // The lease ran out again in between: the next beat retries.
                return Err(lease_lost());
            };
            if found.len() != chunk.len() {
                return Err(unavailable());
            }
            out.extend(found.iter().map(|r| match r.as_str() {
                "taken" => Retake::Taken,
                "banned" => Retake::Banned,
                _ => Retake::Held,
            }));
        }
        Ok(out)
    }

    /// Releases a name of this server; retried after an outage. (Whether
    /// the leave is announced follows from how the name was joined.)
    pub async fn leave(&self, name: &str) {
        if self.try_leave(name).await.is_err() {
            self.pending_leaves
                .lock()
                .expect("cluster lock poisoned")
                .push_back(name.to_string());
        }
    }

    async fn try_leave(&self, name: &str) -> Result<(), WireError> {
        let mut inv = self.scripts.leave.prepare_invoke();
        inv.arg(&self.config.prefix)
            .arg(name.to_ascii_lowercase())
            .arg(name)
            .arg(&self.server_id)
            .arg(self.config.stream_len);
        let _: String = self.run(inv).await?;
        Ok(())
    }

    /// A direct message from `from` (a user of this server) to `to`,
    /// wherever they are.
    pub async fn tell(&self, from: &str, to: &str, text: &str) -> Result<(), WireError> {
        let mut inv = self.scripts.tell.prepare_invoke();
        inv.arg(&self.config.prefix)
            .arg(to.to_ascii_lowercase())
            .arg(from)
            .arg(text)
            .arg(self.config.stream_len)
            .arg(from.to_ascii_lowercase())
            .arg(&self.server_id);
        self.run_ok(inv, || {
            WireError::new(
                ErrorCode::NoSuchUser,
                format!("nobody called {to} is online"),
            )
        })
        .await
    }

    /// Kicks or bans `name` wherever they are.
    pub async fn kick(&self, name: &str, ban: bool) -> Result<(), WireError> {
        let mut inv = self.scripts.kick.prepare_invoke();
        inv.arg(&self.config.prefix)
            .arg(name.to_ascii_lowercase())
            .arg(if ban { "1" } else { "0" })
            .arg(self.config.stream_len);
        self.run_ok(inv, || {
            WireError::new(
                ErrorCode::NoSuchUser,
                format!("nobody called {name} is online"),
            )
        })
        .await
    }

    /// Lifts the ban on `name`, everywhere.
    pub async fn unban(&self, name: &str) -> Result<(), WireError> {
        let mut inv = self.scripts.unban.prepare_invoke();
        inv.arg(&self.config.prefix)
            .arg(name.to_ascii_lowercase())
            .arg(self.config.stream_len);
        self.run_ok(inv, || {
            WireError::new(ErrorCode::NoSuchUser, format!("{name} is not banned"))
        })
        .await
    }

    /// Renews this server's lease, and says whether it had run out.
    async fn heartbeat(&self) -> Result<Lease, WireError> {
        let mut con = self.con()?;
        let held = self
            .scripts
            .heartbeat
            .arg(&self.config.prefix)
            .arg(&self.server_id)
            .arg(self.config.lease.as_millis() as u64)
            .invoke_async::<i64>(&mut con)
            .await
            .map_err(|e| {
                self.failed(&e);
                unavailable()
            })?;
        Ok(if held == 1 {
            Lease::Held
        } else {
            Lease::Expired
        })
    }

    async fn reap(&self) -> Result<i64, WireError> {
        let mut con = self.con()?;
        self.scripts
            .reap
            .arg(&self.config.prefix)
            .arg(self.config.stream_len)
            // Servers reconnect within a couple of seconds of a Redis
            // restart and renew their leases at once; one lease covers it.
            .arg(self.config.lease.as_secs().max(1))
            .invoke_async::<i64>(&mut con)
            .await
            .map_err(|_| unavailable())
    }

    /// Keeps this server's lease, reaps the users of servers whose lease
    /// ran out and retries leaves that failed, until `shutdown`. When the
    /// lease had run out (this server was paused or cut off), or someone
    /// doubts it ([`Cluster::doubt`]), `recheck` takes this server's names
    /// back; it returns false to be called again at the next beat.
    pub async fn keep_alive<R>(self: Arc<Self>, mut recheck: R, shutdown: CancellationToken)
    where
        R: AsyncFnMut() -> bool,
    {
        // Five beats per lease: a server loses its names only after missing
        // several in a row.
        let period = self.config.lease / 5;
        let mut unsure = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.doubt.notified() => unsure = true,
                _ = shutdown.cancelled() => return,
            }
            match self.heartbeat().await {
                Ok(Lease::Held) => {}
                Ok(Lease::Expired) => {
                    warn!(
                        "this server's lease on its users' names had run out (was it paused?); taking them back"
                    );
                    unsure = true;
                }
                Err(_) => continue,
            }
            if unsure {
                unsure = !recheck().await;
            }
            loop {
                let next = self
                    .pending_leaves
                    .lock()
                    .expect("cluster lock poisoned")
                    .pop_front();
                let Some(name) = next else { break };
                if self.try_leave(&name).await.is_err() {
                    self.pending_leaves
                        .lock()
                        .expect("cluster lock poisoned")
                        .push_front(name);
                    break;
                }
            }
            match self.reap().await {
                Ok(n) if n > 0 => {
                    info!(users = n, "reaped the users of servers whose lease ran out")
                }
                _ => {}
            }
        }
    }

    /// Leaves the cluster: releases every name this server holds (given by
    /// the caller) and its lease.
    pub async fn depart(&self, names: &[String]) {
        for name in names {
            let _ = self.try_leave(name).await;
        }
        if let Ok(mut con) = self.con() {
            let _: Result<(), _> = redis::cmd("DEL")
                .arg(format!("{}lease:{}", self.config.prefix, self.server_id))
                .query_async(&mut con)
                .await;
        }
    }

    /// Tails the stream from `position`, handing each event to `apply` in
    /// order, until `shutdown`. On a lost connection (or a master that is
    /// no longer one) it finds Redis again (through Sentinel, when there is
    /// one), reconnects with backoff and calls `reconnected(false,
    /// position)`, then continues from the last id it delivered, unless
    /// `reconnected` reloaded the replica and returned the position to
    /// continue from instead. When `apply` refuses an event (it does not
    /// follow), `reconnected(true, ..)` must reload.
    pub async fn tail<A, R>(
        self: Arc<Self>,
        mut position: String,
        mut apply: A,
        mut reconnected: R,
        shutdown: CancellationToken,
    ) where
        A: FnMut(RemoteEvent) -> bool,
        R: AsyncFnMut(bool, String) -> Option<String>,
    {
        let events = format!("{}events", self.config.prefix);
        let mut backoff = Duration::from_millis(100);
        // The blocking read has its own connection, without a response
        // timeout: XREAD BLOCK legitimately waits.
        let tail_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(None);
        'connect: loop {
            let connected = async {
                let client = self.resolve().await?;
                let con = client
                    .get_multiplexed_async_connection_with_config(&tail_config)
                    .await?;
                self.use_master(client).await?;
                anyhow::Ok(con)
            };
            let con = tokio::select! {
                c = connected => c,
                _ = shutdown.cancelled() => return,
            };
            let mut con = match con {
                Ok(c) => c,
                Err(e) => {
                    if self.up.swap(false, Ordering::Relaxed) {
                        warn!(error = %format!("{e:#}"), "lost Redis; reconnecting");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue 'connect;
                }
            };
            self.stale.store(false, Ordering::Relaxed);
            if !self.is_up() {
                info!("Redis is back");
                self.up.store(true, Ordering::Relaxed);
                let _ = self.load_pipelined_scripts().await;
                let _ = self.heartbeat().await;
                if let Some(resynced) = reconnected(false, position.clone()).await {
                    position = resynced;
                }
            }
            backoff = Duration::from_millis(100);
            loop {
                // Once per read (a batch of up to 1,000 entries).
                self.applied_ms.store(id_ms(&position), Ordering::Relaxed);
                if self.stale.load(Ordering::Relaxed) {
                    warn!("Redis answered as a replica: the master changed; reconnecting");
                    self.up.store(false, Ordering::Relaxed);
                    continue 'connect;
                }
                let mut xread = redis::cmd("XREAD");
                xread
                    .arg("COUNT")
                    .arg(1000)
                    .arg("BLOCK")
                    .arg(1000)
                    .arg("STREAMS")
                    .arg(&events)
                    .arg(&position);
                let read = xread.query_async::<Option<redis::streams::StreamReadReply>>(&mut con);
                let reply = tokio::select! {
                    r = read => r,
                    _ = shutdown.cancelled() => return,
                };
                let reply = match reply {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(error = %e, "lost Redis while reading events; reconnecting");
                        self.up.store(false, Ordering::Relaxed);
                        continue 'connect;
                    }
                };
                for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                    position = entry.id.clone();
                    let Some(event) = parse_event(&entry) else {
                        warn!(id = %entry.id, "skipped an unreadable stream entry");
                        continue;
                    };
                    if !apply(event) {
                        // The replica and the stream disagree: reload.
                        if let Some(resynced) = reconnected(true, position.clone()).await {
                            position = resynced;
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// The time part of a stream entry id (`<ms>-<seq>`).
fn id_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// Why a change sent in a pipeline has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    /// Redis did not know the script (it restarted, or a replica took
    /// over): load it and send the change again.
    NoScript,
    /// Made, but not confirmed by enough replicas in time.
    Unconfirmed,
    /// Anything else.
    Other,
}

/// A script reply that refused the change (so it changed nothing): a table
/// whose first word is not `ok`.
fn refused(v: &Value) -> bool {
    match v {
        Value::Array(items) => !matches!(
            items.first(),
            Some(Value::BulkString(b)) if b.as_slice() == b"ok"
        ),
        _ => false,
    }
}

/// The placement a stream entry holds, if it is one.
fn placement_of(entry: &StreamId) -> Option<Placement> {
    match parse_event(entry)? {
        RemoteEvent::Pixel {
            seq,
            x,
            y,
            color,
            name,
            unix_ms,
        } => Some(Placement {
            seq,
            unix_ms,
            x,
            y,
            color,
            name,
        }),
        _ => None,
    }
}

/// Turns one stream entry into an event.
fn parse_event(entry: &StreamId) -> Option<RemoteEvent> {
    let field = |k: &str| entry.get::<String>(k);
    let num = |k: &str| entry.get::<u64>(k);
    Some(match field("t")?.as_str() {
        "p" => RemoteEvent::Pixel {
            seq: num("s")?,
            x: u16::try_from(num("x")?).ok()?,
            y: u16::try_from(num("y")?).ok()?,
            color: u8::try_from(num("c")?).ok()?,
            name: Arc::from(field("n")?),
            unix_ms: num("ms")?,
        },
        "m" => RemoteEvent::Msg(ChatLine {
            chat_seq: num("s")?,
            unix_ms: num("ms")?,
            from: Arc::from(field("n")?),
            text: Arc::from(field("x")?),
        }),
        "d" => RemoteEvent::Dm {
            from: Arc::from(field("f")?),
            to: field("to")?,
            text: Arc::from(field("x")?),
            owner: field("v"),
        },
        "j" => RemoteEvent::Joined {
            name: Arc::from(field("n")?),
            server: field("v")?,
            nonce: num("k").unwrap_or(0),
            quiet: num("q") == Some(1),
        },
        "l" => RemoteEvent::Left {
            name: Arc::from(field("n")?),
            quiet: num("q") == Some(1),
        },
        "k" => RemoteEvent::Kick {
            name: field("n")?,
            ban: field("b")? == "1",
            owner: field("v"),
        },
        "u" => RemoteEvent::Unban { name: field("n")? },
        _ => return None,
    })
}

/// The `LOAD` script's reply: meta (id, width, height, seq, chat seq), the
/// pixels, `whose` (pixel index to `seq:unix_ms:name`), the chat lines,
/// the users, the latest stream entries (newest first) and the bans.
type LoadReply = (
    (u64, u16, u16, u64, u64),
    Vec<u8>,
    HashMap<usize, String>,
    Vec<String>,
    Vec<String>,
    StreamRangeReply,
    Vec<String>,
);

/// Reads the reply of the `LOAD` script.
fn parse_loaded(value: Value) -> anyhow::Result<Loaded> {
    let ((id, width, height, seq, chat_seq), pixels, whose, chat, users, recent, banned): LoadReply =
        redis::from_redis_value(value)?;
    let n = usize::from(width) * usize::from(height);
    if pixels.len() != n {
        bail!("the pixels do not fit a {width}x{height} canvas");
    }
    let mut meta_of: Vec<Option<PixelMeta>> = vec![None; n];
    for (idx, val) in whose {
        let mut it = val.splitn(3, ':');
        let (Some(s), Some(ms), Some(name)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if let (Ok(seq), Ok(unix_ms), Some(slot)) = (s.parse(), ms.parse(), meta_of.get_mut(idx)) {
            *slot = Some(PixelMeta {
                name: Arc::from(name),
                unix_ms,
                seq,
            });
        }
    }
    let canvas = Canvas::restore(id, width, height, seq, pixels.into_iter().zip(meta_of))
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let mut world = World::new(canvas);
    for line in chat {
        let mut it = line.splitn(4, ' ');
        if let (Some(s), Some(ms), Some(from), Some(body)) =
            (it.next(), it.next(), it.next(), it.next())
            && let (Ok(chat_seq), Ok(unix_ms)) = (s.parse(), ms.parse())
        {
            world.chat.push_back(ChatLine {
                chat_seq,
                unix_ms,
                from: Arc::from(from),
                text: Arc::from(body),
            });
        }
    }
    world.chat_seq = chat_seq;
    world.bans = banned.into_iter().collect();
    let users = users
        .iter()
        .filter_map(|v| {
            let mut words = v.split(' ').skip(1);
            let name = words.next()?.to_string();
            Some((name, words.next() == Some("q")))
        })
        .collect();
    let position = recent
        .ids
        .first()
        .map_or_else(|| "0-0".to_string(), |e| e.id.clone());
    let mut recent: Vec<Pixel> = recent
        .ids
        .iter()
        .filter_map(|entry| match parse_event(entry) {
            Some(RemoteEvent::Pixel {
                seq,
                x,
                y,
                color,
                name,
                ..
            }) if seq <= world.canvas.seq() => Some(Pixel {
                seq,
                x,
                y,
                color,
                name,
            }),
            _ => None,
        })
        .collect();
    recent.reverse();
    // History must be consecutive up to the canvas seq.
    let latest = world.canvas.seq();
    let keep = recent
        .iter()
        .rev()
        .enumerate()
        .take_while(|(i, p)| p.seq == latest - *i as u64)
        .count();
    let recent = recent.split_off(recent.len() - keep);
    Ok(Loaded {
        world,
        users,
        recent,
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn passwords_in_redis_urls_are_masked() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:s3cret@db:6379/0", "redis://:***@db:6379/0"),
            ("redis://app:s3cret@db:6379", "redis://app:***@db:6379"),
            ("rediss://s3cret@db", "rediss://***@db"),
            (
                "sentinel://:s3cret@a:26379,b:26379/mymaster",
                "sentinel://:***@a:26379,b:26379/mymaster",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            ("db:6379", "db:6379"),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
        }
        let config = super::ClusterConfig {
            url: "redis://:s3cret@db".into(),
            prefix: "p:".into(),
            stream_len: 1,
            lease: std::time::Duration::from_secs(1),
            wait_replicas: 0,
            archive: None,
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
