//! `pixchat-bench`: a load generator that measures fan-out the way a user
//! sees it, against pixchat or, for comparison, Redis pub/sub.
//!
//! Module map:
//! - [`fanout`]: one run of the fan-out workload (setup, window, drain,
//!   report). A run loads one server or several pixchat servers sharing one
//!   canvas through Redis ([`Servers`]).
//! - [`shared`]: what both targets share: the run's state, the counts, the
//!   writers' window and pacing.
//! - [`pixchat`]: pixchat's watchers and writers (binary mode, frames
//!   decoded in place by the library's decoder, [`frames`]);
//!   [`redis`]: the same over Redis `SUBSCRIBE`/`PUBLISH`, with a minimal
//!   RESP reader ([`resp`]); [`watchers`]: the threads that read every
//!   watcher's socket, many per thread.
//! - [`compare`]: two set-ups, alternating, with medians and ratios:
//!   pixchat against Redis, or durable storage against `--memory`.
//! - [`join_storm`], [`idle`], [`stalled`]: the other workloads.
//! - [`latency`]: send-time slots and histograms; [`procstat`]: CPU and
//!   memory from `/proc`; [`spawn`]: servers the bench starts and stops;
//!   [`report`]: JSON and the tables; [`progress`]: the line on stderr.
//!
//! Everything runs in one process with one monotonic clock, only against
//! loopback addresses, and every wait is bounded.

pub mod compare;
pub mod fanout;
pub mod frames;
pub mod idle;
pub mod inbuf;
pub mod join_storm;
pub mod latency;
pub mod pixchat;
pub mod probe;
pub mod procstat;
pub mod progress;
pub mod redis;
pub mod report;
pub mod resp;
pub mod shared;
pub mod spawn;
pub mod stalled;
pub mod watchers;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

/// Most connections one run may open (a loopback address has about 28,000
/// ephemeral ports by default; the file descriptor limit usually binds first).
pub const MAX_CLIENTS: usize = 60_000;
/// Most writer connections.
pub const MAX_WRITERS: usize = 1_000;
/// Longest run, in seconds.
pub const MAX_DURATION_S: f64 = 3_600.0;
/// Most placements per second a run may offer.
pub const MAX_RATE: f64 = 10_000_000.0;
/// Largest window of unacknowledged placements per writer.
pub const MAX_WINDOW: usize = 65_536;
/// How long one connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may take to join (connect, hello, join, welcome
/// and the whole snapshot).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Connects to `addr` as connection number `id`. A loopback target is
/// reached from one of 254 loopback source addresses in turn (127.0.0.2 and
/// up, with the port picked at connect time): from a single address, Linux
/// searches its ephemeral ports for a free one on every connect, a search
/// that grows with the connections already open (`__inet_hash_connect`
/// took 55% of the machine's CPU in a join storm of 19,900). That is the
/// load generator's cost, not the server's, and real clients come from
/// many addresses.
pub async fn connect(addr: SocketAddr, id: usize) -> std::io::Result<tokio::net::TcpStream> {
    let SocketAddr::V4(v4) = addr else {
        return tokio::net::TcpStream::connect(addr).await;
    };
    if !v4.ip().is_loopback() {
        return tokio::net::TcpStream::connect(addr).await;
    }
    let socket = tokio::net::TcpSocket::new_v4()?;
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::IpBindAddressNoPort,
        &true,
    )?;
    let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + (id % 254) as u8);
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(addr).await
}

/// Connections that join at the same time while a run sets up: enough to
/// set up 20,000 watchers in seconds, few enough not to overflow the
/// server's listen backlog (SYNs beyond it are retried after a second).
pub const SETUP_CONCURRENCY: usize = 256;
/// File descriptors the bench keeps for itself beyond its connections.
pub const SPARE_FDS: u64 = 32;

/// What a workload runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// `pixchat-server`, binary mode.
    Pixchat,
    /// Redis pub/sub.
    Redis,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Pixchat => "pixchat",
            Target::Redis => "redis",
        })
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pixchat" => Ok(Target::Pixchat),
            "redis" => Ok(Target::Redis),
            other => Err(format!("unknown target {other:?}: pixchat or redis")),
        }
    }
}

/// The load shared by every workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Watcher connections.
    pub clients: usize,
    /// Writer connections.
    pub writers: usize,
    /// Placements per second offered by all writers together; 0 = as fast as
    /// the window allows.
    pub rate: f64,
    /// How long writers place pixels.
    pub duration: Duration,
    /// Unacknowledged placements a writer may have in flight.
    pub window: usize,
    /// How long after the end the bench waits for acknowledgements and
    /// events still under way; what has not arrived then is lost.
    pub drain: Duration,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            clients: 100,
            writers: 1,
            rate: 0.0,
            duration: Duration::from_secs(5),
            window: 64,
            drain: Duration::from_secs(10),
        }
    }
}

impl Workload {
    /// Checks the bounds every workload keeps.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            bail!("--clients must be 1-{MAX_CLIENTS}");
        }
        if self.writers == 0 || self.writers > MAX_WRITERS {
            bail!("--writers must be 1-{MAX_WRITERS}");
        }
        if !(0.0..=MAX_RATE).contains(&self.rate) {
            bail!("--rate must be 0 (max rate) to {MAX_RATE}");
        }
        let secs = self.duration.as_secs_f64();
        if !(0.1..=MAX_DURATION_S).contains(&secs) {
            bail!("--duration must be 0.1-{MAX_DURATION_S} seconds");
        }
        if self.window == 0 || self.window > MAX_WINDOW {
            bail!("--window must be 1-{MAX_WINDOW}");
        }
        if self.drain > Duration::from_secs(600) {
            bail!("--drain must be at most 600 seconds");
        }
        Ok(())
    }

    /// "1000 watchers, 4 writers, 2000/s offered, 5 s".
    pub fn describe(&self) -> String {
        let rate = if self.rate > 0.0 {
            format!("{} placements/s offered", self.rate)
        } else {
            format!("max rate (window {})", self.window)
        };
        format!(
            "{} watchers, {} writer{}, {rate}, {} s",
            self.clients,
            self.writers,
            if self.writers == 1 { "" } else { "s" },
            self.duration.as_secs_f64()
        )
    }
}

/// A server to load: where it listens and, when known, its pid (for CPU
/// and memory readings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// A loopback address.
    pub addr: SocketAddr,
    /// The server's process id.
    pub pid: Option<u32>,
}

/// The servers one run loads: one or more pixchat servers, or one Redis.
/// Several pixchat servers must share one canvas through Redis (cluster
/// mode); clients are spread over them round-robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Servers {
    /// Where clients connect: client i of a kind (watcher, writer) goes to
    /// `endpoints[i % len]`.
    pub endpoints: Vec<Endpoint>,
    /// The pid of the Redis that clustered pixchat servers share, when the
    /// bench started it: its CPU is part of what the system costs.
    pub redis_pid: Option<u32>,
}

impl Servers {
    /// One server, no cluster Redis.
    pub fn single(ep: Endpoint) -> Self {
        Self {
            endpoints: vec![ep],
            redis_pid: None,
        }
    }

    /// The server that client `i` (of one kind) connects to.
    pub fn addr_for(&self, i: usize) -> SocketAddr {
        self.endpoints[i % self.endpoints.len()].addr
    }

    /// The servers' pids, in order (`None` where unknown).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.endpoints.iter().map(|e| e.pid).collect()
    }

    /// The first server's address (the only one, for a single server).
    pub fn first(&self) -> SocketAddr {
        self.endpoints[0].addr
    }
}

/// How many of `n` clients, dealt round-robin over `servers` servers, land
/// on server `s`.
pub fn share(n: usize, servers: usize, s: usize) -> usize {
    n / servers + usize::from(s < n % servers)
}

/// Resolves `HOST:PORT` and refuses anything that is not loopback: the bench
/// generates heavy load and must never point it at another machine.
pub fn loopback_addr(spec: &str) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .with_context(|| format!("resolve {spec}"))?
        .collect();
    let Some(first) = addrs.first() else {
        bail!("{spec} resolves to no address");
    };
    if let Some(far) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "{spec} resolves to {far}, which is not a loopback address; the bench only loads this machine"
        );
    }
    Ok(*first)
}

/// Raises this process's soft limit on open files to its hard limit (child
/// servers inherit it) and returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::Resource::NOFILE.get().map(|(soft, _)| soft))
        .unwrap_or(1024)
}

/// Fails with a clear message when `connections` sockets do not fit in the
/// open-file limit (of the bench, and of a server that inherits it).
pub fn check_fd_budget(connections: usize) -> anyhow::Result<()> {
    let limit = raise_fd_limit();
    let need = connections as u64 + SPARE_FDS;
    if need > limit {
        bail!(
            "{connections} connections need about {need} open files, but the limit here is {limit} \
             (hard limit; raising it needs root: `ulimit -Hn`, or LimitNOFILE= for a service); \
             use at most {} connections",
            limit.saturating_sub(SPARE_FDS)
        );
    }
    Ok(())
}

/// A short random tag that makes this run's user names unique, so a run
/// against a long-lived server never collides with an earlier one.
pub fn run_tag() -> String {
    format!("{:04x}", rand::random::<u16>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(loopback_addr("127.0.0.1:7878").is_ok());
        assert!(loopback_addr("127.0.0.2:7878").is_ok());
        assert!(loopback_addr("[::1]:7878").is_ok());
        let err = loopback_addr("10.0.0.1:7878").unwrap_err().to_string();
        assert!(err.contains("not a loopback address"), "{err}");
        assert!(loopback_addr("192.168.1.1:6379").is_err());
        assert!(loopback_addr("no-port").is_err());
    }

    #[test]
    fn workloads_are_bounded() {
        assert!(Workload::default().check().is_ok());
        let bad = [
            Workload {
                clients: 0,
                ..Workload::default()
            },
            Workload {
                writers: 0,
                ..Workload::default()
            },
            Workload {
                rate: -1.0,
                ..Workload::default()
            },
            Workload {
                duration: Duration::from_secs(100_000),
                ..Workload::default()
            },
            Workload {
                window: 0,
                ..Workload::default()
            },
        ];
        for w in bad {
            assert!(w.check().is_err(), "{w:?}");
        }
    }

    #[test]
    fn clients_are_dealt_round_robin() {
        let ep = |port| Endpoint {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pid: None,
        };
        let s = Servers {
            endpoints: vec![ep(1), ep(2), ep(3)],
            redis_pid: None,
        };
        let ports: Vec<u16> = (0..5).map(|i| s.addr_for(i).port()).collect();
        assert_eq!(ports, [1, 2, 3, 1, 2]);
        assert_eq!(
            (0..3).map(|i| share(5, 3, i)).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert_eq!(
            (0..3).map(|i| share(1, 3, i)).collect::<Vec<_>>(),
            [1, 0, 0]
        );
        assert_eq!(Servers::single(ep(9)).addr_for(7).port(), 9);
    }

    #[test]
    fn targets_parse_and_print() {
        assert_eq!("redis".parse::<Target>(), Ok(Target::Redis));
        assert_eq!(Target::Pixchat.to_string(), "pixchat");
        assert!("memcached".parse::<Target>().is_err());
    }
}
