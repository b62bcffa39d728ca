//! The agent's long-running tasks, owned in one `JoinSet` (issue 11, item 7).
//!
//! Every loop of [`crate::run`] is spawned here with a name and a stage. A task
//! that ends while the agent runs — a panic, or a loop that gave up — is logged
//! with its cause and ends the agent with an error, so `main` exits non-zero and
//! the service manager restarts it; nothing is thrown away with `let _ = task.await`.
//! At shutdown the stages stop in order (each stage's token is cancelled and its
//! tasks are awaited before the next stage's): the config watchers, then the
//! producers, then the uplink (its final flush then sees the last sample), then the
//! rest.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// When a task stops at shutdown, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// Config file watch and the applier of reloads.
    Reload = 0,
    /// Everything that writes to the spool (sampler, patches, inventory, posture).
    Produce = 1,
    /// The uplink: its last flush follows the last write.
    Uplink = 2,
    /// Certificate renewal.
    Last = 3,
}

const STAGES: usize = 4;

/// Why the agent stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("the {task} task panicked: {cause}")]
    Panicked { task: &'static str, cause: String },
    #[error("the {task} task ended while the agent was running")]
    Ended { task: &'static str },
    #[error("the {task} task was cancelled")]
    Cancelled { task: &'static str },
}

/// The set of running tasks and the tokens that stop each stage.
pub(crate) struct Tasks {
    /// Owns every task: dropping it aborts them.
    set: JoinSet<()>,
    /// Each task's name and stage, by its id, to name it when it ends.
    names: HashMap<Id, (&'static str, Stage)>,
    stops: [CancellationToken; STAGES],
}

impl Tasks {
    pub(crate) fn new() -> Tasks {
        Tasks {
            set: JoinSet::new(),
            names: HashMap::new(),
            stops: std::array::from_fn(|_| CancellationToken::new()),
        }
    }

    /// The token a task of `stage` stops on.
    pub(crate) fn stop_token(&self, stage: Stage) -> CancellationToken {
        self.stops[stage as usize].clone()
    }

    pub(crate) fn spawn(
        &mut self,
        name: &'static str,
        stage: Stage,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let id = self.set.spawn(task).id();
        self.names.insert(id, (name, stage));
    }

    /// Runs until `shutdown` resolves (`Ok`) or a task ends first (`Err`, logged
    /// with its cause); then stops every task, stage by stage.
    pub(crate) async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), TaskError> {
        let early = tokio::select! {
            _ = shutdown => None,
            Some(ended) = self.set.join_next_with_id() => Some(self.failure(ended)),
        };
        if let Some(err) = &early {
            tracing::error!(error = %err, "agent stopping: one of its tasks failed");
        } else {
            tracing::info!("agent stopping");
        }
        let stopped = self.stop().await;
        match early {
            Some(err) => Err(err),
            None => stopped,
        }
    }

    /// Stops the stages in order; the first failure seen is returned (all are logged).
    async fn stop(&mut self) -> Result<(), TaskError> {
        let mut first = Ok(());
        for stage in 0..STAGES {
            self.stops[stage].cancel();
            while self.names.values().any(|(_, s)| *s as usize == stage) {
                let Some(ended) = self.set.join_next_with_id().await else {
                    break;
                };
                // A task that ends now was asked to: only a panic is a failure.
                let failed = match ended {
                    Ok((id, ())) => {
                        self.names.remove(&id);
                        None
                    }
                    Err(e) => Some(self.failure(Err(e))),
                };
                if let Some(err) = failed {
                    tracing::error!(error = %err, "task failed while stopping");
                    if first.is_ok() {
                        first = Err(err);
                    }
                }
            }
        }
        first
    }

    /// What a task that ended means, and forgets it.
    fn failure(&mut self, ended: Result<(Id, ()), JoinError>) -> TaskError {
        let id = match &ended {
            Ok((id, ())) => *id,
            Err(e) => e.id(),
        };
        let task = self.names.remove(&id).map_or("unknown", |(n, _)| n);
        match ended {
            Ok(_) => TaskError::Ended { task },
            Err(e) if e.is_panic() => TaskError::Panicked {
                task,
                cause: panic_text(e),
            },
            Err(_) => TaskError::Cancelled { task },
        }
    }
}

/// The message a panicked task left (`"cancelled"` if it did not panic).
pub(crate) fn panic_text(e: JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned()),
        Err(_) => "cancelled".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A panic in one task ends the whole set with an error that names the task and
    /// the panic's message, and the other tasks are still stopped in stage order.
    #[tokio::test]
    async fn a_panicking_task_ends_the_agent_with_its_cause() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Tasks::new();
        for (name, stage) in [("uplink", Stage::Uplink), ("sampler", Stage::Produce)] {
            let stop = tasks.stop_token(stage);
            let order = order.clone();
            tasks.spawn(name, stage, async move {
                stop.cancelled().await;
                order.lock().unwrap().push(name);
            });
        }
        tasks.spawn("inventory", Stage::Produce, async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            panic!("disk on fire");
        });
        let never = std::future::pending::<()>();
        let r = tokio::time::timeout(Duration::from_secs(10), tasks.run_until(never))
            .await
            .expect("the set did not stop");
        let err = r.unwrap_err();
        assert!(
            matches!(&err, TaskError::Panicked { task: "inventory", cause } if cause == "disk on fire"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "the inventory task panicked: disk on fire");
        assert_eq!(*order.lock().unwrap(), ["sampler", "uplink"]);
    }

    #[tokio::test]
    async fn a_task_that_returns_early_is_a_failure_and_a_stop_is_not() {
        let mut tasks = Tasks::new();
        tasks.spawn("patches", Stage::Produce, async {});
        let err = tasks
            .run_until(std::future::pending::<()>())
            .await
            .unwrap_err();
        assert!(
            matches!(err, TaskError::Ended { task: "patches" }),
            "{err:?}"
        );

        let mut tasks = Tasks::new();
        let stop = tasks.stop_token(Stage::Last);
        tasks.spawn(
            "renewal",
            Stage::Last,
            async move { stop.cancelled().await },
        );
        assert!(tasks.run_until(async {}).await.is_ok());
    }
}
