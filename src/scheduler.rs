//! The scheduler: takes restore points of every scheduled user once per
//! `schedule.interval`, spread over the first half of the interval, then
//! prunes; and runs prune on request.
//!
//! A user whose previous snapshot is still queued or running is skipped for
//! the round (counted); a failed snapshot is simply taken again next round
//! and never blocks the others (the queue runs them independently, at most
//! `schedule.concurrency` at once).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::jobs::{JobFilter, JobId, JobKind, Queue};
use crate::prune::{PruneError, PruneReport};
use crate::repo::Repository;

/// Counters the metrics endpoint shows.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    /// Rounds started.
    pub rounds: AtomicU64,
    /// Snapshots queued by the schedule.
    pub queued: AtomicU64,
    /// Users skipped because their previous snapshot was still active.
    pub skipped: AtomicU64,
    /// Delay of the last round's start after its planned time, in ms.
    pub lag_ms: AtomicU64,
    /// Prunes run.
    pub prunes: AtomicU64,
}

/// Runs rounds and prunes.
#[derive(Clone)]
pub struct Scheduler {
    config: Arc<Config>,
    queue: Queue,
    store: Repository,
    /// Its counters.
    pub stats: Arc<SchedulerStats>,
}

impl Scheduler {
    /// A scheduler over the daemon's queue and store.
    pub fn new(config: Arc<Config>, queue: Queue, store: Repository) -> Self {
        Scheduler {
            config,
            queue,
            store,
            stats: Arc::default(),
        }
    }

    /// Applies the retention policy and reclaims space, waiting for running
    /// snapshots and restores to leave the store first.
    pub async fn prune(&self, dry_run: bool) -> Result<PruneReport, PruneError> {
        let in_use: HashSet<(String, String)> = self
            .queue
            .list(&JobFilter {
                kind: Some(JobKind::Restore),
                ..JobFilter::default()
            })?
            .into_iter()
            .filter(|j| !j.state.is_final())
            .filter_map(|j| Some((j.user.clone(), j.point()?.to_string())))
            .collect();
        let _gc = self.store.gc_lock().write().await;
        let store = self.store.clone();
        let config = self.config.clone();
        let report = tokio::task::spawn_blocking(move || {
            crate::prune::prune_with_reserve(&store, &config, crate::time::now(), &in_use, dry_run)
        })
        .await
        .map_err(|e| PruneError::Interrupted(e.to_string()))??;
        self.stats.prunes.fetch_add(1, Ordering::Relaxed);
        Ok(report)
    }

    /// Runs rounds until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(interval) = self.config.schedule.interval else {
            info!("scheduled snapshots are off (schedule.interval)");
            return;
        };
        // The first round shortly after start, then every interval.
        let mut planned = Instant::now() + self.config.schedule.first_round_after;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(planned) => {}
                _ = shutdown.cancelled() => return,
            }
            let lag = Instant::now().saturating_duration_since(planned);
            self.stats
                .lag_ms
                .store(lag.as_millis() as u64, Ordering::Relaxed);
            self.stats.rounds.fetch_add(1, Ordering::Relaxed);
            if !self.round(planned, interval, &shutdown).await {
                return;
            }
            planned += interval;
            if planned < Instant::now() {
                warn!("a scheduled round took longer than schedule.interval; the next starts now");
                planned = Instant::now();
            }
        }
    }

    /// One round; false when shutdown came.
    async fn round(
        &self,
        start: Instant,
        interval: Duration,
        shutdown: &CancellationToken,
    ) -> bool {
        let users = match crate::schedule::users(&self.config.schedule).await {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "cannot list the scheduled users; skipping this round");
                return true;
            }
        };
        info!(users = users.len(), "scheduled round");
        let spread = self.config.schedule.spread.min(interval);
        let n = users.len().max(1) as u32;
        let mut jobs: Vec<JobId> = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let at = start + spread * i as u32 / n;
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = shutdown.cancelled() => return false,
            }
            match self.queue.submit_snapshot_once(user) {
                Ok((job, false)) => {
                    self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                    info!(user = %user, job = %job.id, "previous snapshot still active; skipped");
                }
                Ok((job, true)) => {
                    self.stats.queued.fetch_add(1, Ordering::Relaxed);
                    jobs.push(job.id);
                }
                Err(e) => warn!(user = %user, error = %e, "cannot queue a snapshot"),
            }
        }
        // Prune once the round's snapshots have ended.
        loop {
            let open = jobs
                .iter()
                .filter(|id| matches!(self.queue.get(**id), Ok(Some(j)) if !j.state.is_final()))
                .count();
            if open == 0 {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return false,
            }
        }
        if let Err(e) = self.prune(false).await {
            warn!(error = %e, "prune after the round failed");
        }
        true
    }
}
