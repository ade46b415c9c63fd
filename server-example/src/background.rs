//! The server's periodic background tasks, started by [`crate::App::serve`] and stopped when
//! shutdown begins (each task watches the shutdown signal; `serve` waits for them before the
//! shutdown hooks run, so no sweep races the engine's close).
//!
//! | task | what | interval |
//! |---|---|---|
//! | rate limiters | forgets idle per-IP and per-user keys | 60 s |
//! | media | [`crate::media::Media::sweep`]: expired grants, media no live message references (past the orphan grace), unreferenced blobs, expired unfinished tus uploads | `media_sweep_interval` (600 s; 0 = off) |
//! | stories | [`crate::stories::Stories::sweep`]: expired stories and their views | `story_sweep_interval` (600 s; 0 = off) |
//! | calls | [`crate::messaging::Messenger::run_call_timer`]: ends calls that rang past `call_ring_timeout` | at each deadline |
//!
//! The engine runs its own retention and checkpoints (`retention_interval`,
//! `checkpoint_interval`), and the push batcher its own loop.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::state::AppState;

/// How often idle rate-limiter keys are forgotten.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);

/// The running background tasks.
pub(crate) struct Background {
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

/// Starts every background task for `state` (on the current runtime).
pub(crate) fn spawn(state: &AppState) -> Background {
    let shutdown = &state.shutdown;
    let mut tasks = Vec::new();
    {
        let limits = state.limits.clone();
        let shutdown = shutdown.clone();
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(LIMITER_SWEEP);
            loop {
                tokio::select! {
                    _ = shutdown.started() => return,
                    _ = interval.tick() => limits.retain_recent(),
                }
            }
        });
        tasks.push(("rate limiter sweep", task));
    }
    if let Some(every) = state.config.media_sweep_interval {
        let task = tokio::spawn(state.media.clone().sweep_every(every, shutdown.clone()));
        tasks.push(("media sweep", task));
    }
    if let Some(every) = state.config.story_sweep_interval {
        let task = tokio::spawn(state.stories.clone().sweep_every(every, shutdown.clone()));
        tasks.push(("story sweep", task));
    }
    let task = tokio::spawn(state.messenger.clone().run_call_timer(shutdown.clone()));
    tasks.push(("call timer", task));
    tracing::debug!(
        tasks = ?tasks.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        "background tasks started"
    );
    Background { tasks }
}

impl Background {
    /// Waits for every task to stop (they stop once shutdown has begun).
    pub(crate) async fn join(self) {
        for (name, task) in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(task = name, error = %e, "background task failed");
            }
        }
    }
}
