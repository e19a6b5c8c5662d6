//! The runners the daemon registers: they connect the queue to the engines.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{JobContext, JobError, RunResult, Runner};
use crate::snapshot::{Progress, Snapshotter};

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
