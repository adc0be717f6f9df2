//! The progress line on stderr (an `indicatif` bar that is only a
//! message), updated once per second, so a long run shows it is alive and
//! roughly how fast it goes. Hidden when stderr is not a terminal.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Counters the workload tasks bump and the progress line reads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events received by all watchers.
    pub deliveries: AtomicU64,
    /// Placements acknowledged.
    pub acked: AtomicU64,
    /// Watchers joined (or subscribed).
    pub watchers_ready: AtomicU64,
    /// Writers joined.
    pub writers_ready: AtomicU64,
    /// Watchers that have everything they should get.
    pub watchers_done: AtomicU64,
    /// When the writers started, once they have.
    pub started: OnceLock<Instant>,
    /// When the writers stopped, once they have.
    pub stopped: OnceLock<Instant>,
}

/// A running progress line; [`Progress::finish`] leaves its last state.
#[derive(Debug)]
pub struct Progress {
    stop: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the line for a run labelled `label` (disabled: does nothing).
    pub fn start(
        label: String,
        counters: Arc<Counters>,
        clients: usize,
        writers: usize,
        duration: Duration,
        enabled: bool,
    ) -> Self {
        let stop = CancellationToken::new();
        let handle = enabled.then(|| {
            let stop = stop.clone();
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let (mut last_d, mut last_a, mut last_t) = (0, 0, Instant::now());
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let now = Instant::now();
                    let d = counters.deliveries.load(Ordering::Relaxed);
                    let a = counters.acked.load(Ordering::Relaxed);
                    let dt = now.duration_since(last_t).as_secs_f64().max(1e-3);
                    let rates = Rates {
                        deliveries: (d - last_d) as f64 / dt,
                        placements: (a - last_a) as f64 / dt,
                    };
                    bar.set_message(line(
                        &label,
                        &counters,
                        (clients, writers),
                        duration,
                        now,
                        rates,
                    ));
                    (last_d, last_a, last_t) = (d, a, now);
                }
                bar.finish();
            })
        });
        Self { stop, handle }
    }

    /// Stops the line and waits for its last write.
    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Events per second over the last tick.
struct Rates {
    deliveries: f64,
    placements: f64,
}

fn line(
    label: &str,
    c: &Counters,
    (clients, writers): (usize, usize),
    duration: Duration,
    now: Instant,
    Rates {
        deliveries,
        placements,
    }: Rates,
) -> String {
    let ready = c.watchers_ready.load(Ordering::Relaxed);
    match (c.started.get(), c.stopped.get()) {
        (None, _) if writers == 0 => format!("{label}: {ready}/{clients} clients joined"),
        (None, _) => format!(
            "{label}: setting up, {ready}/{clients} watchers, {}/{writers} writers",
            c.writers_ready.load(Ordering::Relaxed)
        ),
        (Some(start), None) => format!(
            "{label}: {:.0}/{:.0} s, {}/s placements, {}/s deliveries",
            now.duration_since(*start).as_secs_f64(),
            duration.as_secs_f64(),
            super::report::si(placements),
            super::report::si(deliveries),
        ),
        (Some(_), Some(_)) => format!(
            "{label}: draining, {}/{clients} watchers complete, {}/s deliveries",
            c.watchers_done.load(Ordering::Relaxed),
            super::report::si(deliveries),
        ),
    }
}
