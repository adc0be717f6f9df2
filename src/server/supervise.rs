//! Owned background tasks: every long-lived task of the server is spawned
//! here and watched. One that ends while the server runs either is
//! restarted, where that is safe (a fan-out pacer keeps nothing a restart
//! would lose), or stops the server with a clear error (the cluster's tasks
//! hold their place in Redis's stream and its queue of changes). Nothing
//! dies unseen, and nothing hangs waiting for a task that is gone.
//!
//! In the release build a panic aborts the process (see Cargo.toml): a
//! supervisor such as systemd restarts it and the journal has everything
//! acknowledged. This module matters for builds that unwind (tests,
//! programs that embed the server) and for tasks that return early.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tracing::error;

/// Restarts allowed within [`RESTART_WINDOW`] before a task that keeps
/// failing stops the server instead.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// What a task is, to say what died and whether it may be restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    /// Fan-out pacer number `n`.
    Pacer(usize),
    /// Reads the cluster's stream into the hub.
    ClusterTail,
    /// Sends placements and chat to Redis.
    ClusterSend,
    /// Renews the lease, reaps the servers whose lease ran out, takes
    /// names back.
    ClusterKeepAlive,
    /// Writes the history archive kept from the stream (`--archive`).
    ClusterArchive,
    /// Sends a crowd's periodic `PRESENCE` events.
    Presence,
    /// The operators' HTTP listener (`--http`). Not restarted: it owns its
    /// listening socket, and it only returns on shutdown.
    Http,
    /// Reloads the TLS certificate on SIGHUP.
    TlsReload,
    /// Closes silent connections and those that never join.
    Silence,
}

impl Task {
    /// Pacers, the presence ticker, the TLS reloader and the silence watch
    /// keep nothing a restart would lose.
    fn restartable(self) -> bool {
        matches!(
            self,
            Task::Pacer(_) | Task::Presence | Task::TlsReload | Task::Silence
        )
    }
}

/// What to do about a task that ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Start it again.
    Restart(Task),
    /// Stop the server with this error.
    Fatal(anyhow::Error),
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Supervisor {
    tasks: JoinSet<()>,
    kinds: HashMap<Id, Task>,
    restarts: VecDeque<Instant>,
}

impl Supervisor {
    /// Spawns and watches `task`.
    pub fn spawn(&mut self, task: Task, fut: impl Future<Output = ()> + Send + 'static) {
        let handle = self.tasks.spawn(fut);
        self.kinds.insert(handle.id(), task);
    }

    /// Waits until a task ends and says what to do about it. Never returns
    /// while every task runs (and forever if there are none).
    pub async fn ended(&mut self) -> Ended {
        let Some(res) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (id, why) = match res {
            Ok((id, ())) => (id, "it returned".to_string()),
            Err(e) => (
                e.id(),
                if e.is_panic() {
                    "it panicked".into()
                } else {
                    e.to_string()
                },
            ),
        };
        let Some(task) = self.kinds.remove(&id) else {
            return Ended::Fatal(anyhow::anyhow!("an unknown task ended: {why}"));
        };
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
        {
            self.restarts.pop_front();
        }
        if task.restartable() && self.restarts.len() < MAX_RESTARTS {
            self.restarts.push_back(now);
            error!(?task, why, "a background task ended; restarting it");
            return Ended::Restart(task);
        }
        Ended::Fatal(anyhow::anyhow!(
            "the background task {task:?} ended ({why}); the server cannot go on without it"
        ))
    }

    /// After shutdown was asked for: waits a while for the tasks to finish,
    /// then stops the rest.
    pub async fn stop(mut self, grace: Duration) {
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            self.tasks.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pacer_that_dies_is_restarted_and_a_cluster_task_is_fatal() {
        let mut s = Supervisor::default();
        s.spawn(Task::Pacer(1), async { panic!("injected") });
        assert!(matches!(s.ended().await, Ended::Restart(Task::Pacer(1))));
        s.spawn(Task::ClusterTail, async {});
        match s.ended().await {
            Ended::Fatal(e) => assert!(e.to_string().contains("ClusterTail"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_task_that_keeps_dying_stops_the_server() {
        let mut s = Supervisor::default();
        for _ in 0..MAX_RESTARTS {
            s.spawn(Task::Pacer(0), async {});
            assert!(matches!(s.ended().await, Ended::Restart(_)));
        }
        s.spawn(Task::Pacer(0), async {});
        assert!(matches!(s.ended().await, Ended::Fatal(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_ended_it_waits() {
        let mut s = Supervisor::default();
        s.spawn(Task::Pacer(0), std::future::pending());
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), s.ended())
                .await
                .is_err()
        );
    }
}
