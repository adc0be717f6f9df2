//! Join probes: how long a newcomer's `JOIN` takes to be answered, on the
//! idle server and while the writers keep every watcher busy.
//!
//! A probe connects in text mode, sends `JOIN <name> quiet` (a plain
//! `JOIN` to a server from before quiet joins) and times the `OK` line: the hub's work for a join (taking its lock, registering the
//! watcher with the pacers) and the reply, without the snapshot, which
//! depends on the canvas rather than on the load.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::CONNECT_TIMEOUT;

/// Joins made before the writers start, [`LOADED_EVERY`] apart.
pub const IDLE_PROBES: usize = 20;
/// Time between probes while the writers run.
pub const LOADED_EVERY: Duration = Duration::from_millis(100);

/// Connects, joins quietly as `name` and returns the time from sending the
/// `JOIN` to reading its `OK`. The connection is closed afterwards.
pub async fn join_once(addr: SocketAddr, id: usize, name: &str) -> anyhow::Result<Duration> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, super::connect(addr, id))
        .await
        .context("connect timed out")?
        .context("connect")?;
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    let t0 = Instant::now();
    stream
        .get_mut()
        .write_all(format!("JOIN {name} quiet\n").as_bytes())
        .await?;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_line(&mut line))
        .await
        .context("no answer to JOIN within 30 s")??;
    let mut took = t0.elapsed();
    if line.starts_with("ERR bad_args") {
        // A server from before quiet joins: join plainly (its watchers see
        // the probe come and go, two events per probe).
        line.clear();
        let t0 = Instant::now();
        stream
            .get_mut()
            .write_all(format!("JOIN {name}\n").as_bytes())
            .await?;
        tokio::time::timeout(Duration::from_secs(30), stream.read_line(&mut line))
            .await
            .context("no answer to JOIN within 30 s")??;
        took = t0.elapsed();
    }
    if !line.starts_with("OK ") {
        bail!("JOIN refused: {}", line.trim_end());
    }
    Ok(took)
}

/// Median and 99th percentile of `samples`, in milliseconds.
pub fn summary(samples: &mut [Duration]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    Some((at(0.5), at(0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_takes_nearest_rank_percentiles() {
        let mut s: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(summary(&mut s), Some((50.0, 99.0)));
        assert_eq!(summary(&mut []), None);
    }
}
