//! `idle`: N watchers join and stay idle while the server's memory is read
//! before and after they joined (RSS per connection); then a trickle of
//! placements measures how fast events still reach all of them.
//!
//! It is the fan-out run with a pause after the watchers joined: the
//! server's RSS is read before the first watcher connects and again once
//! all have joined and the server has settled (snapshots sent, buffers
//! given back), before any writer joins.

use std::time::Duration;

use super::fanout::{self, RunOptions};
use super::report::RunReport;
use super::{Servers, Target, Workload};

/// How long the server gets to settle after the last watcher joined.
pub const SETTLE: Duration = Duration::from_secs(2);
/// The trickle's default rate: what r/place 2017 was designed for.
pub const DEFAULT_RATE: f64 = 333.0;

/// Runs the idle workload once against `servers` (with several, memory is
/// summed over all of them).
pub async fn run(
    target: Target,
    servers: &Servers,
    w: &Workload,
    opts: &RunOptions,
) -> anyhow::Result<RunReport> {
    let opts = RunOptions {
        idle_settle: Some(SETTLE),
        ..opts.clone()
    };
    let mut report = fanout::run(target, servers, w, &opts).await?;
    if servers.endpoints.iter().any(|e| e.pid.is_none()) {
        report
            .notes
            .push("no server pid (--server-pid): memory per connection not measured".into());
    }
    Ok(report)
}
