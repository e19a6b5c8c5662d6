//! The runners the daemon registers: they connect the queue to the engines.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{JobContext, JobError, RunResult, Runner};
use crate::restore::Restorer;
use crate::snapshot::{Progress, Snapshotter};

/// Runs restore jobs.
pub struct RestoreRunner {
    restorer: Restorer,
}

impl RestoreRunner {
    /// A runner over `restorer`.
    pub fn new(restorer: Restorer) -> Arc<Self> {
        Arc::new(RestoreRunner { restorer })
    }
}

impl Runner for RestoreRunner {
    fn run(&self, ctx: JobContext) -> Pin<Box<dyn Future<Output = RunResult> + Send>> {
        let restorer = self.restorer.clone();
        Box::pin(async move {
            match restorer.run(&ctx).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let mut err = e.to_job_error();
                    // Say what is there already: the panel and the mail
                    // tell the user what was kept.
                    let job = ctx.job();
                    if let Some(folder) = &job.target.folder {
                        err.message = format!(
                            "{} ({} of {} messages restored so far, kept in {folder}; the restore can be resumed)",
                            err.message, job.progress.messages.done, job.progress.messages.total
                        );
                    }
                    Err(err)
                }
            }
        })
    }
}

/// Runs snapshot jobs.
pub struct SnapshotRunner {
    snapshotter: Snapshotter,
}

impl SnapshotRunner {
    /// A runner over `snapshotter`.
    pub fn new(snapshotter: Snapshotter) -> Arc<Self> {
        Arc::new(SnapshotRunner { snapshotter })
    }
}

impl Runner for SnapshotRunner {
    fn run(&self, ctx: JobContext) -> Pin<Box<dyn Future<Output = RunResult> + Send>> {
        let snapshotter = self.snapshotter.clone();
        Box::pin(async move {
            let user = ctx.job().user;
            let progress = Arc::new(Progress::new(ctx.stop_token().clone()));
            let ticker = {
                let (ctx, progress) = (ctx.clone(), progress.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        publish(&ctx, &progress);
                    }
                })
            };
            let result = snapshotter.snapshot(&user, &progress).await;
            ticker.abort();
            publish(&ctx, &progress);
            let outcome = result.map_err(|e| e.to_job_error())?;
            ctx.update(|j| {
                j.point = Some(outcome.generation.id.to_string());
                j.progress.messages.total = outcome.generation.mail.messages;
                j.progress.bytes.total = outcome.generation.mail.bytes;
            })
            .map_err(|e| JobError::new("index_error", e.to_string()))?;
            Ok(())
        })
    }
}

/// Snapshot counters: messages done = downloaded + carried over.
fn publish(ctx: &JobContext, p: &Progress) {
    let done = p.downloaded.load(Ordering::Relaxed) + p.carried.load(Ordering::Relaxed);
    let bytes = p.bytes.load(Ordering::Relaxed);
    ctx.progress(|j| {
        j.progress.messages.done = done;
        j.progress.bytes.done = bytes;
    });
}
