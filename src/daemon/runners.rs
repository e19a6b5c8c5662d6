//! The runners the daemon registers: they connect the generic job queue
//! ([`crate::jobs`]) to the engines ([`crate::snapshot`], [`crate::restore`])
//! and the notification. They live in the composition root so that `jobs`
//! knows nothing of what a job does.

use crate::protocol::dav::CollectionKind;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::{NotifyConfig, SmtpConfig};
use crate::error_code::ErrorCode;
use crate::index::Index;
use crate::jobs::{JobContext, JobError, RunResult, Runner, Scope};
use crate::notify::{self, Outcome, RestoreReport};
use crate::restore::Restorer;
use crate::snapshot::{Progress, Snapshotter};

/// Where and how restore notifications go.
#[derive(Clone)]
pub struct Notifier {
    /// The relay; `None`: no notification.
    pub smtp: Option<SmtpConfig>,
    /// Language and extra recipients.
    pub notify: NotifyConfig,
    /// For dates in the mail.
    pub timezone: crate::time::TimeZone,
    /// To find the point's date.
    pub index: Index,
}

/// Runs restore jobs, and mails the notification when one ends.
pub struct RestoreRunner {
    restorer: Restorer,
    notifier: Notifier,
}

impl RestoreRunner {
    /// A runner over `restorer`.
    pub fn new(restorer: Restorer, notifier: Notifier) -> Arc<Self> {
        Arc::new(RestoreRunner { restorer, notifier })
    }
}

impl Runner for RestoreRunner {
    fn run(&self, ctx: JobContext) -> Pin<Box<dyn Future<Output = RunResult> + Send>> {
        let restorer = self.restorer.clone();
        let notifier = self.notifier.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let ran = {
                let _gc = restorer.store().gc_lock().read().await;
                restorer.run(&ctx).await
            };
            let result = match ran {
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
            };
            let job = ctx.job();
            // Interrupted by a daemon stop (not a cancel): it resumes, and
            // the mail goes when it really ends.
            let interrupted = ctx.should_stop() && !job.cancel_requested;
            if !interrupted {
                let outcome = match &result {
                    Ok(()) => Outcome::Succeeded,
                    Err(_) if job.cancel_requested => Outcome::Cancelled,
                    Err(e) => Outcome::Failed {
                        code: e.code,
                        message: e.message.clone(),
                    },
                };
                notifier.notify(&ctx, outcome, started.elapsed()).await;
            }
            result
        })
    }
}

impl Notifier {
    async fn notify(&self, ctx: &JobContext, outcome: Outcome, duration: Duration) {
        let Some(smtp) = &self.smtp else { return };
        let job = ctx.job();
        let restore = job.restore();
        let taken_at = job
            .point()
            .and_then(|id| self.index.generation(&job.user, id).ok().flatten())
            .map(|g| g.taken_at);
        // The new collections by the names the user sees in their client.
        let dav_plan = self
            .index
            .journal(job.id, &crate::restore::journal::DAV_PLAN)
            .ok()
            .flatten();
        let report = RestoreReport {
            user: job.user.clone(),
            requested_by: restore.and_then(|r| r.requested_by.clone()),
            point: job.point().map(ToString::to_string).unwrap_or_default(),
            point_taken_at: taken_at,
            scope: match restore.map(|r| r.scope) {
                Some(Scope::Inbox) => "inbox".into(),
                _ => "all".into(),
            },
            folder: job.target.folder.clone(),
            calendars: collection_names(&dav_plan, CollectionKind::Calendar)
                .unwrap_or_else(|| job.target.calendars.clone()),
            addressbooks: collection_names(&dav_plan, CollectionKind::Addressbook)
                .unwrap_or_else(|| job.target.addressbooks.clone()),
            messages: job.progress.messages.done,
            messages_total: job.progress.messages.total,
            skipped: job.progress.messages.skipped + job.progress.items.skipped,
            bytes: job.progress.bytes.done,
            items: job.progress.items.done,
            duration,
            outcome,
            warnings: job.warnings.clone(),
            mailbox_change_allowed: restore.is_some_and(|r| r.allow_mailbox_change),
        };
        let sent = match notify::build(
            &report,
            &smtp.from,
            &self.notify.admin_addresses,
            self.notify.language,
            &self.timezone,
            crate::time::now(),
        ) {
            Ok(message) => notify::send(smtp, message).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => tracing::info!("notification sent"),
            Err(e) => {
                tracing::warn!(error = %e, "notification not sent");
                let _ = ctx.update(|j| j.warnings.push(format!("notification not sent: {e}")));
            }
        }
    }
}

/// The display names of the planned collections of `kind`, if there is a plan.
fn collection_names(
    plan: &Option<crate::restore::dav::DavPlan>,
    kind: CollectionKind,
) -> Option<Vec<String>> {
    plan.as_ref().map(|p| {
        p.collections
            .iter()
            .filter(|c| c.kind == kind)
            // A name comes from the DAV server: no control character may
            // reach the mail's lines.
            .map(|c| {
                c.display_name
                    .chars()
                    .filter(|ch| !ch.is_control())
                    .collect()
            })
            .collect()
    })
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
            let result = {
                let _gc = snapshotter.store().gc_lock().read().await;
                snapshotter.snapshot(&user, &progress).await
            };
            ticker.abort();
            publish(&ctx, &progress);
            let warnings =
                std::mem::take(&mut *progress.warnings.lock().unwrap_or_else(|p| p.into_inner()));
            if !warnings.is_empty() {
                let _ = ctx.update(|j| j.warnings.extend(warnings));
            }
            let outcome = result.map_err(|e| e.to_job_error())?;
            ctx.update(|j| {
                j.made = Some(outcome.generation.id.clone());
                j.progress.messages.total = outcome.generation.mail.messages;
                j.progress.bytes.total = outcome.generation.mail.bytes;
                j.progress.items.total =
                    outcome.generation.calendars.items + outcome.generation.contacts.items;
            })
            .map_err(|e| JobError::new(ErrorCode::IndexError, e.to_string()))?;
            Ok(())
        })
    }
}

/// Snapshot counters: messages (and items) done = downloaded + carried over.
fn publish(ctx: &JobContext, p: &Progress) {
    let done = p.downloaded.load(Ordering::Relaxed) + p.carried.load(Ordering::Relaxed);
    let bytes = p.bytes.load(Ordering::Relaxed) + p.carried_bytes.load(Ordering::Relaxed);
    let items =
        p.items_downloaded.load(Ordering::Relaxed) + p.items_carried.load(Ordering::Relaxed);
    ctx.progress(|j| {
        j.progress.messages.done = done;
        j.progress.bytes.done = bytes;
        j.progress.items.done = items;
    });
}
