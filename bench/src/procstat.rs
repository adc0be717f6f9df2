//! CPU time and memory of a process (the server, Redis, or the bench itself)
//! and of the whole machine, read from `/proc` with the `procfs` crate.
//! Linux only; elsewhere every reading is an error and the report leaves the
//! field out.

use std::time::Duration;

use procfs::CurrentSI;
use procfs::process::Process;

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    /// This process.
    Myself,
    /// Another process, by pid.
    Pid(u32),
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// User plus system CPU time so far, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident memory now, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident memory, in KiB (`VmHWM`).
    pub peak_kib: u64,
}

/// Clock ticks per second of `/proc` CPU times (100 on Linux).
pub fn ticks_per_second() -> u64 {
    procfs::ticks_per_second().max(1)
}

/// Converts clock ticks to seconds.
pub fn ticks_to_secs(ticks: u64) -> f64 {
    ticks as f64 / ticks_per_second() as f64
}

/// Reads a process's CPU time and memory.
pub fn sample(p: Proc) -> procfs::ProcResult<Sample> {
    let process = match p {
        Proc::Myself => Process::myself()?,
        Proc::Pid(pid) => Process::new(pid as i32)?,
    };
    let stat = process.stat()?;
    let status = process.status()?;
    Ok(Sample {
        cpu_ticks: stat.utime + stat.stime,
        rss_kib: status.vmrss.unwrap_or(0),
        peak_kib: status.vmhwm.unwrap_or(0),
    })
}

/// TCP segments sent so far by every process in this network namespace
/// (`Tcp: OutSegs` in `/proc/net/snmp`). On loopback a segment is what
/// costs CPU (bytes are cheap), so segments per event delivered shows
/// whether a server batches: one write syscall of many events is one
/// segment. System calls do not show it: `/proc/<pid>/io` counts `write`,
/// but Rust's sockets use `send`.
pub fn tcp_out_segments() -> procfs::ProcResult<u64> {
    Ok(procfs::net::snmp()?.tcp_out_segs)
}

/// Machine-wide CPU time from `/proc/stat`, summed over every core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineTicks {
    /// Everything but idle and iowait.
    pub busy: u64,
    /// Of which softirq: loopback TCP's receive path runs there. Unless
    /// the kernel has CONFIG_IRQ_TIME_ACCOUNTING, these ticks are also
    /// charged to the process that was interrupted.
    pub softirq: u64,
    /// All ticks.
    pub all: u64,
}

/// Reads `/proc/stat`: user, nice, system, idle, iowait, irq, softirq and
/// steal of all cores together.
pub fn machine_ticks() -> procfs::ProcResult<MachineTicks> {
    let t = procfs::KernelStats::current()?.total;
    let [iowait, irq, softirq, steal] =
        [t.iowait, t.irq, t.softirq, t.steal].map(|v| v.unwrap_or(0));
    let all = t.user + t.nice + t.system + t.idle + iowait + irq + softirq + steal;
    Ok(MachineTicks {
        busy: all - t.idle - iowait,
        softirq,
        all,
    })
}

/// CPU use between two readings, in cores (1.0 = one core busy all along).
pub fn cores(ticks: u64, wall: Duration) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    ticks_to_secs(ticks) / wall.as_secs_f64()
}

/// Readings of the servers, the bench and the machine taken together, so
/// the difference between two of them covers the same interval.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// All the servers together (CPU ticks, RSS and peak RSS summed), when
    /// every one of them has a known and readable pid.
    pub server: Option<Sample>,
    /// Each server, in the order given.
    pub servers: Vec<Option<Sample>>,
    /// The Redis that clustered pixchat servers share, when its pid is known.
    pub redis: Option<Sample>,
    /// This process.
    pub bench: Option<Sample>,
    /// Machine ticks.
    pub machine: Option<MachineTicks>,
    /// TCP segments sent on this machine so far.
    pub tcp_out_segments: Option<u64>,
    /// When the readings were taken.
    pub at: std::time::Instant,
}

impl Snapshot {
    /// Reads everything now: the servers with these pids (`None`: not
    /// known), and the cluster's Redis if its pid is known.
    pub fn take(servers: &[Option<u32>], redis: Option<u32>) -> Self {
        let each = sample_all(servers);
        Self {
            server: sum(&each),
            servers: each,
            redis: redis.and_then(|pid| sample(Proc::Pid(pid)).ok()),
            bench: sample(Proc::Myself).ok(),
            machine: machine_ticks().ok(),
            tcp_out_segments: tcp_out_segments().ok(),
            at: std::time::Instant::now(),
        }
    }
}

/// Reads each of these processes (`None` for an unknown pid).
pub fn sample_all(pids: &[Option<u32>]) -> Vec<Option<Sample>> {
    pids.iter()
        .map(|pid| pid.and_then(|p| sample(Proc::Pid(p)).ok()))
        .collect()
}

/// The sum of several readings, or `None` if there are none or one is
/// missing: a total over only some of the servers would understate the cost
/// without saying so.
pub fn sum(samples: &[Option<Sample>]) -> Option<Sample> {
    if samples.is_empty() {
        return None;
    }
    samples.iter().try_fold(Sample::default(), |acc, s| {
        let s = (*s)?;
        Some(Sample {
            cpu_ticks: acc.cpu_ticks + s.cpu_ticks,
            rss_kib: acc.rss_kib + s.rss_kib,
            peak_kib: acc.peak_kib + s.peak_kib,
        })
    })
}

/// CPU used between two snapshots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuUse {
    /// All servers' CPU seconds together.
    pub server_s: Option<f64>,
    /// Each server's CPU seconds, in the order given.
    pub servers_s: Vec<Option<f64>>,
    /// The cluster's Redis's CPU seconds.
    pub redis_s: Option<f64>,
    /// Bench CPU seconds.
    pub bench_s: Option<f64>,
    /// Cores busy on the whole machine, averaged (all processes).
    pub machine_cores: Option<f64>,
    /// Of which softirq (mostly loopback networking), in cores.
    pub softirq_cores: Option<f64>,
    /// TCP segments sent on the machine (all processes).
    pub tcp_segments: Option<u64>,
    /// Wall time between the snapshots.
    pub wall_s: f64,
}

impl CpuUse {
    /// The CPU used from `a` to `b`.
    pub fn between(a: &Snapshot, b: &Snapshot) -> Self {
        let wall = b.at.saturating_duration_since(a.at);
        let diff = |x: Option<Sample>, y: Option<Sample>| {
            Some(ticks_to_secs(y?.cpu_ticks.saturating_sub(x?.cpu_ticks)))
        };
        // Shares of all cores' time, times the number of cores: the same
        // unit as a process's cores.
        let (machine, softirq) = match (a.machine, b.machine) {
            (Some(m0), Some(m1)) if m1.all > m0.all => {
                let all = (m1.all - m0.all) as f64 / online_cores() as f64;
                (
                    Some(m1.busy.saturating_sub(m0.busy) as f64 / all),
                    Some(m1.softirq.saturating_sub(m0.softirq) as f64 / all),
                )
            }
            _ => (None, None),
        };
        let segments = match (a.tcp_out_segments, b.tcp_out_segments) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x)),
            _ => None,
        };
        Self {
            tcp_segments: segments,
            server_s: diff(a.server, b.server),
            servers_s: a
                .servers
                .iter()
                .zip(&b.servers)
                .map(|(x, y)| diff(*x, *y))
                .collect(),
            redis_s: diff(a.redis, b.redis),
            bench_s: diff(a.bench, b.bench),
            machine_cores: machine,
            softirq_cores: softirq,
            wall_s: wall.as_secs_f64(),
        }
    }

    /// CPU seconds as cores busy on average over the interval.
    pub fn cores(&self, secs: f64) -> f64 {
        secs / self.wall_s.max(1e-9)
    }
}

/// Cores this machine has online.
pub fn online_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_and_its_network_can_be_read() {
        let m = machine_ticks().expect("/proc/stat on Linux");
        assert!(m.all >= m.busy && m.busy >= m.softirq);
        assert!(tcp_out_segments().is_ok(), "/proc/net/snmp on Linux");
    }

    #[test]
    fn a_sum_needs_every_reading() {
        let s = |cpu_ticks, rss_kib| Sample {
            cpu_ticks,
            rss_kib,
            peak_kib: rss_kib * 2,
        };
        assert_eq!(
            sum(&[Some(s(10, 100)), Some(s(5, 50))]),
            Some(Sample {
                cpu_ticks: 15,
                rss_kib: 150,
                peak_kib: 300
            })
        );
        assert_eq!(sum(&[Some(s(10, 100)), None]), None);
        assert_eq!(sum(&[]), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let s = sample(Proc::Myself).expect("/proc/self on Linux");
        assert!(s.rss_kib > 0);
        assert!(ticks_per_second() > 0);
    }
}
