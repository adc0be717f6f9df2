//! The connections being served: admitted within the server's limits
//! (`--max-clients`, `--max-conns-per-ip`) and reachable at shutdown.
//!
//! A connection's task waits for its socket and for its outbox's
//! interruptions ([`Outbox::interrupted`]) and for nothing else: telling it
//! that the server is shutting down goes through this list instead of a
//! future that every idle connection would keep, and its place here is all
//! it holds of the limits.
//!
//! What is counted per client address rather than per connection lives
//! here too, so reconnecting does not reset it: failed `AUTH`s, and the
//! command rate under `--limit-by addr` (addresses as [`address::key`]
//! gives them: IPv6 by /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use slab::Slab;
use tokio::time::Instant;

use super::address;
use super::connection::Bucket;
use super::outbox::{Outbox, Silence};

/// How long an address's failed `AUTH`s are remembered after its last one.
pub const AUTH_FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Addresses tracked for failed `AUTH`s or for the rate before the stale
/// ones are forgotten; a flood of addresses cannot grow the maps further
/// than this and what is current.
const TRACKED_ADDRESSES: usize = 16_384;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Connections {
    inner: Mutex<Inner>,
    /// Most connections at once.
    max: usize,
    /// Most connections from one address at once; 0 for no limit.
    max_per_ip: usize,
}

#[derive(Debug, Default)]
struct Inner {
    live: Slab<Entry>,
    /// Connections per address, counted only with a limit.
    per_ip: HashMap<IpAddr, usize>,
    /// Failed `AUTH`s per address key, and when the last one was.
    auth_failures: HashMap<IpAddr, (u32, Instant)>,
    /// Command rate per address key, with `--limit-by addr`.
    buckets: HashMap<IpAddr, Bucket>,
    shutting_down: bool,
}

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    /// Set once the connection has an outbox (after its mode is known).
    outbox: Weak<Outbox>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `--max-clients` connections are being served.
    Full,
    /// `--max-conns-per-ip` connections come from its address.
    TooManyFromIp,
}

/// A connection's place in [`Connections`], given up when dropped.
#[derive(Debug)]
pub(crate) struct Registered {
    list: Arc<Connections>,
    key: usize,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut inner = self.list.lock();
        let entry = inner.live.remove(self.key);
        if self.list.max_per_ip > 0
            && let Some(n) = inner.per_ip.get_mut(&entry.ip)
        {
            *n -= 1;
            if *n == 0 {
                inner.per_ip.remove(&entry.ip);
            }
        }
    }
}

impl Registered {
    /// Makes the connection reachable through its outbox. Told at once if
    /// the server is already shutting down.
    pub fn attach(&self, outbox: &Arc<Outbox>) {
        let mut inner = self.list.lock();
        inner.live[self.key].outbox = Arc::downgrade(outbox);
        if inner.shutting_down {
            outbox.shut_down();
        }
    }
}

impl Connections {
    /// A list admitting at most `max` connections, and at most
    /// `max_per_ip` from one address (0: no limit).
    pub fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::default(),
            max,
            max_per_ip,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("connection list lock poisoned")
    }

    /// Admits a connection from `ip` if the limits allow; it stays listed
    /// until the returned guard is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Registered, Refused> {
        let mut inner = self.lock();
        if self.max_per_ip > 0 {
            let n = inner.per_ip.get(&ip).copied().unwrap_or(0);
            if n >= self.max_per_ip {
                return Err(Refused::TooManyFromIp);
            }
            if inner.live.len() >= self.max {
                return Err(Refused::Full);
            }
            inner.per_ip.insert(ip, n + 1);
        } else if inner.live.len() >= self.max {
            return Err(Refused::Full);
        }
        let key = inner.live.insert(Entry {
            ip,
            outbox: Weak::new(),
        });
        Ok(Registered {
            list: self.clone(),
            key,
        })
    }

    /// Tells every connection, and every one attached from now on, that
    /// the server is shutting down.
    pub fn shut_down(&self) {
        let mut inner = self.lock();
        inner.shutting_down = true;
        for (_, entry) in inner.live.iter() {
            if let Some(outbox) = entry.outbox.upgrade() {
                outbox.shut_down();
            }
        }
    }

    /// The connections the silence watch must act on at `now` (see
    /// [`Outbox::silence`]), and what to do about each.
    pub fn silent(&self, now: u32, idle_ms: u32, join_ms: u32) -> Vec<(Arc<Outbox>, Silence)> {
        let inner = self.lock();
        inner
            .live
            .iter()
            .filter_map(|(_, entry)| {
                let outbox = entry.outbox.upgrade()?;
                match outbox.silence(now, idle_ms, join_ms) {
                    Silence::Fine => None,
                    what => Some((outbox, what)),
                }
            })
            .collect()
    }

    /// How many connections are being served.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Counts a failed `AUTH` from `ip`'s address; returns how many it
    /// made within [`AUTH_FAILURE_MEMORY`] of each other, this one included.
    pub fn auth_failed(&self, ip: IpAddr) -> u32 {
        let now = Instant::now();
        let mut inner = self.lock();
        let failures = &mut inner.auth_failures;
        if failures.len() >= TRACKED_ADDRESSES {
            failures.retain(|_, (_, last)| now.duration_since(*last) < AUTH_FAILURE_MEMORY);
            if failures.len() >= TRACKED_ADDRESSES {
                // Only under a flood from that many addresses at once:
                // each connection still pays its own delay.
                failures.clear();
            }
        }
        let (count, last) = failures.entry(address::key(ip)).or_insert((0, now));
        if now.duration_since(*last) >= AUTH_FAILURE_MEMORY {
            *count = 0;
        }
        *count += 1;
        *last = now;
        *count
    }

    /// Takes one command from the rate of `ip`'s address (`rate` per
    /// second, `burst` at once); false when it is used up.
    pub fn take_token(&self, ip: IpAddr, rate: u32, burst: u32) -> bool {
        let mut inner = self.lock();
        let buckets = &mut inner.buckets;
        if buckets.len() >= TRACKED_ADDRESSES {
            // A full bucket is the same as none.
            buckets.retain(|_, b| !b.is_full());
            if buckets.len() >= TRACKED_ADDRESSES {
                buckets.clear();
            }
        }
        buckets
            .entry(address::key(ip))
            .or_insert_with(|| Bucket::new(rate, burst).expect("a rate limit is set"))
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_counted_per_server_and_per_address_and_given_back() {
        let list = Connections::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = list.admit(a).unwrap();
        let _a2 = list.admit(a).unwrap();
        assert_eq!(list.admit(a).unwrap_err(), Refused::TooManyFromIp);
        let _b1 = list.admit(b).unwrap();
        assert_eq!(list.admit(b).unwrap_err(), Refused::Full);
        assert_eq!(list.len(), 3);
        drop(a1);
        assert_eq!(list.len(), 2);
        let _a3 = list.admit(a).unwrap();
        assert!(list.lock().per_ip[&a] == 2 && list.lock().per_ip[&b] == 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_auths_count_per_address_and_are_forgotten() {
        let list = Connections::new(10, 0);
        let a: IpAddr = "2001:db8:1:2::9".parse().unwrap();
        let a2: IpAddr = "2001:db8:1:2::10".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(list.auth_failed(a), 1);
        assert_eq!(list.auth_failed(a2), 2, "one /64 is one address");
        assert_eq!(list.auth_failed(b), 1);
        tokio::time::advance(AUTH_FAILURE_MEMORY).await;
        assert_eq!(list.auth_failed(a), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_shares_one_rate() {
        let list = Connections::new(10, 0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(list.take_token(a, 1, 2));
        assert!(list.take_token(a, 1, 2));
        assert!(!list.take_token(a, 1, 2));
        assert!(list.take_token("10.0.0.2".parse().unwrap(), 1, 2));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(list.take_token(a, 1, 2));
    }

    #[test]
    fn without_a_per_address_limit_nothing_is_counted_per_address() {
        let list = Connections::new(2, 0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let _one = list.admit(a).unwrap();
        let _two = list.admit(a).unwrap();
        assert_eq!(list.admit(a).unwrap_err(), Refused::Full);
        assert!(list.lock().per_ip.is_empty());
    }
}
