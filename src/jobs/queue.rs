//! The job queue: persisted submission, dispatch to runners under per-kind
//! limits, cancellation, and resumption after a restart.
//!
//! Invariant: every state change of a job is written to the index before it is
//! visible to API callers; a job that was `running` when the daemon stopped is
//! `queued` again at the next start and its runner resumes it.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::{Job, JobError, JobFilter, JobId, JobKind, JobSpec, JobState};
use crate::error_code::ErrorCode;
use crate::index::{Index, IndexError};

/// What a runner's future resolves to.
pub type RunResult = Result<(), JobError>;

/// Does the work of one kind of job.
pub trait Runner: Send + Sync + 'static {
    /// Runs (or resumes) the job in `ctx`. It should return soon after
    /// `ctx.stop_token()` fires, keeping what it has done: the queue then decides
    /// whether the job was cancelled or is to be resumed at the next start.
    fn run(&self, ctx: JobContext) -> Pin<Box<dyn Future<Output = RunResult> + Send>>;
}

/// Why a cancel was refused.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No such job.
    #[error("no job {0}")]
    NotFound(JobId),
    /// The job has already ended.
    #[error("job {} has already ended ({})", .0.id, .0.state.as_str())]
    AlreadyEnded(Box<Job>),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// A running job's handle on its own record.
///
/// Every save writes the record as it is *when the save runs*, under
/// `save_lock`, so saves can never land out of order: a progress save still
/// in flight cannot overwrite a later state change with an older copy.
#[derive(Clone)]
pub struct JobContext {
    job: Arc<Mutex<Job>>,
    index: Index,
    stop: CancellationToken,
    last_save: Arc<Mutex<Instant>>,
    save_lock: Arc<Mutex<()>>,
    /// A progress save is queued on the blocking pool.
    saving: Arc<std::sync::atomic::AtomicBool>,
}

impl JobContext {
    /// A copy of the job as it is now.
    pub fn job(&self) -> Job {
        self.lock().clone()
    }

    /// Fires when the job must stop (cancel or daemon shutdown).
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// True once the job must stop.
    pub fn should_stop(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Changes the record and saves it now (targets, points: things a
    /// restart must know).
    pub fn update(&self, change: impl FnOnce(&mut Job)) -> Result<(), IndexError> {
        change(&mut self.lock());
        *self.last_save.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.save()
    }

    /// Changes counters; saved at most twice a second (they are rebuilt on
    /// resume), on the blocking pool: a counter never waits for an fsync.
    pub fn progress(&self, change: impl FnOnce(&mut Job)) {
        change(&mut self.lock());
        {
            let mut last = self.last_save.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < Duration::from_millis(500) {
                return;
            }
            *last = Instant::now();
        }
        if self.saving.swap(true, Ordering::AcqRel) {
            return; // a save is under way; the next one writes these counters
        }
        let ctx = self.clone();
        let save = move || {
            if let Err(e) = ctx.save() {
                warn!(job = %ctx.lock().id, error = %e, "could not save progress");
            }
            ctx.saving.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(save)),
            Err(_) => save(),
        }
    }

    /// Writes the record as it is now, durably, after any save before it.
    fn save(&self) -> Result<(), IndexError> {
        let _order = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        let job = self.job();
        self.index.put_job(&job)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Job> {
        // A runner that panicked while holding the lock left a Job that is
        // still a valid value: keep using it.
        self.job.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Running {
    kind: JobKind,
    user: String,
    stop: CancellationToken,
    ctx: JobContext,
}

#[derive(Default)]
struct State {
    queued: BTreeSet<JobId>,
    running: HashMap<JobId, Running>,
}

struct Inner {
    index: Index,
    runners: HashMap<JobKind, Arc<dyn Runner>>,
    limits: HashMap<JobKind, usize>,
    state: Mutex<State>,
    wake: Notify,
    shutdown: CancellationToken,
    /// Held while a submission looks for an identical active job, so two
    /// identical requests at the same instant make one job.
    submit_once: Mutex<()>,
}

/// The daemon's job queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl Queue {
    /// A queue over `index`. Jobs left `queued` or `running` by a previous
    /// daemon are queued again (oldest first).
    pub fn open(
        index: Index,
        runners: HashMap<JobKind, Arc<dyn Runner>>,
        limits: HashMap<JobKind, usize>,
    ) -> Result<Queue, IndexError> {
        let mut queued = BTreeSet::new();
        for mut job in index.jobs::<Job>()? {
            match job.state {
                JobState::Queued => {
                    queued.insert(job.id);
                }
                JobState::Running => {
                    info!(job = %job.id, user = %job.user, "resuming a job interrupted by the previous stop");
                    job.state = JobState::Queued;
                    index.put_job(&job)?;
                    queued.insert(job.id);
                }
                _ => {}
            }
        }
        Ok(Queue {
            inner: Arc::new(Inner {
                index,
                runners,
                limits,
                state: Mutex::new(State {
                    queued,
                    running: HashMap::new(),
                }),
                wake: Notify::new(),
                submit_once: Mutex::new(()),
                shutdown: CancellationToken::new(),
            }),
        })
    }

    /// Records a new queued job and wakes the dispatcher.
    pub fn submit(&self, user: String, spec: JobSpec) -> Result<Job, IndexError> {
        let id = JobId(self.inner.index.next_job_id()?);
        let job = Job::new(id, user, spec, crate::time::now());
        self.inner.index.put_job(&job)?;
        self.state().queued.insert(id);
        self.inner.wake.notify_one();
        info!(job = %id, user = %job.user, kind = job.kind().as_str(), "job queued");
        Ok(job)
    }

    /// Queues a snapshot of `user` unless one is already queued or running,
    /// in which case that job is returned; the flag says whether it is new.
    pub fn submit_snapshot_once(&self, user: &str) -> Result<(Job, bool), IndexError> {
        self.submit_once(user, JobSpec::Snapshot)
    }

    /// Queues `spec` for `user` unless a job with the same user and the
    /// same arguments is queued or running, in which case that job is
    /// returned; the flag says whether it is new.
    pub fn submit_once(&self, user: &str, spec: JobSpec) -> Result<(Job, bool), IndexError> {
        let _one_at_a_time = self
            .inner
            .submit_once
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let active = self.list(&JobFilter {
            user: Some(user.to_string()),
            kind: Some(spec.kind()),
            state: None,
        })?;
        if let Some(job) = active
            .into_iter()
            .find(|j| !j.state.is_final() && j.spec == spec)
        {
            return Ok((job, false));
        }
        let job = self.submit(user.to_string(), spec)?;
        Ok((job, true))
    }

    /// The job as it is now (live counters for running jobs).
    pub fn get(&self, id: JobId) -> Result<Option<Job>, IndexError> {
        if let Some(r) = self.state().running.get(&id) {
            return Ok(Some(r.ctx.job()));
        }
        self.inner.index.job(id.0)
    }

    /// Jobs passing `filter`, newest first.
    pub fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, IndexError> {
        let mut jobs = self.inner.index.jobs::<Job>()?;
        {
            let state = self.state();
            for job in &mut jobs {
                if let Some(r) = state.running.get(&job.id) {
                    *job = r.ctx.job();
                }
            }
        }
        jobs.retain(|j| filter.matches(j));
        jobs.sort_by_key(|j| std::cmp::Reverse(j.id));
        Ok(jobs)
    }

    /// Asks a job to stop. A queued job is cancelled at once; a running one
    /// stops at its runner's next check and keeps what it made.
    pub fn cancel(&self, id: JobId) -> Result<Job, CancelError> {
        let mut state = self.state();
        if let Some(r) = state.running.get(&id) {
            r.ctx.update(|j| j.cancel_requested = true)?;
            r.stop.cancel();
            return Ok(r.ctx.job());
        }
        let mut job = self
            .inner
            .index
            .job::<Job>(id.0)?
            .ok_or(CancelError::NotFound(id))?;
        if job.state.is_final() {
            return Err(CancelError::AlreadyEnded(Box::new(job)));
        }
        job.cancel_requested = true;
        job.state = JobState::Cancelled;
        job.finished_at = Some(crate::time::now());
        self.inner.index.put_job(&job)?;
        state.queued.remove(&id);
        info!(job = %id, "queued job cancelled");
        Ok(job)
    }

    /// Counts of (queued, running) jobs.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state();
        (s.queued.len(), s.running.len())
    }

    /// Dispatches jobs until `shutdown` fires, then stops the running ones
    /// (they stay `running` in the index and resume at the next start) and
    /// waits for them up to `grace`.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        loop {
            self.dispatch();
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.inner.shutdown.cancel();
        let stops: Vec<_> = self
            .state()
            .running
            .values()
            .map(|r| r.stop.clone())
            .collect();
        for s in stops {
            s.cancel();
        }
        let deadline = Instant::now() + grace;
        while self.counts().1 > 0 && Instant::now() < deadline {
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        let left = self.counts().1;
        if left > 0 {
            warn!(
                jobs = left,
                "jobs still running at shutdown; they resume at the next start"
            );
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is updated in small critical sections that cannot leave it
        // half-changed; a poisoned lock still holds a consistent value.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts every queued job that its kind's limit and the one-job-per-user
    /// rule allow, oldest first.
    fn dispatch(&self) {
        let mut state = self.state();
        let ids: Vec<JobId> = state.queued.iter().copied().collect();
        for id in ids {
            let job = match self.inner.index.job::<Job>(id.0) {
                Ok(Some(job)) if job.state == JobState::Queued => job,
                Ok(_) => {
                    state.queued.remove(&id);
                    continue;
                }
                Err(e) => {
                    error!(job = %id, error = %e, "cannot read a queued job");
                    continue;
                }
            };
            let busy = state
                .running
                .values()
                .filter(|r| r.kind == job.kind())
                .count();
            let limit = self.inner.limits.get(&job.kind()).copied().unwrap_or(1);
            let same_user = state
                .running
                .values()
                .any(|r| r.kind == job.kind() && r.user == job.user);
            if busy >= limit || same_user {
                continue;
            }
            state.queued.remove(&id);
            match self.start(job) {
                Ok(running) => {
                    state.running.insert(id, running);
                }
                Err(e) => error!(job = %id, error = %e, "cannot start a job"),
            }
        }
    }

    fn start(&self, mut job: Job) -> Result<Running, IndexError> {
        job.state = JobState::Running;
        job.attempts += 1;
        job.started_at.get_or_insert(crate::time::now());
        self.inner.index.put_job(&job)?;
        let stop = self.inner.shutdown.child_token();
        let ctx = JobContext {
            job: Arc::new(Mutex::new(job.clone())),
            index: self.inner.index.clone(),
            stop: stop.clone(),
            last_save: Arc::new(Mutex::new(Instant::now())),
            save_lock: Arc::default(),
            saving: Arc::default(),
        };
        let runner = self.inner.runners.get(&job.kind()).cloned();
        let queue = self.clone();
        let task_ctx = ctx.clone();
        let kind = job.kind();
        let attempts = job.attempts;
        let span = info_span!("job", job = %job.id, user = %job.user, kind = kind.as_str());
        tokio::spawn(
            async move {
                info!(attempt = attempts, "job started");
                let result = match runner {
                    Some(r) => {
                        // A panicking runner must not take the daemon or the
                        // queue with it: run it in its own task.
                        match tokio::spawn(r.run(task_ctx.clone())).await {
                            Ok(result) => result,
                            Err(e) => Err(JobError::new(
                                ErrorCode::InternalError,
                                format!("the job stopped unexpectedly: {e}"),
                            )),
                        }
                    }
                    None => Err(JobError::new(
                        ErrorCode::NotSupported,
                        format!("this daemon cannot run {} jobs", kind.as_str()),
                    )),
                };
                queue.finish(task_ctx, result);
            }
            .instrument(span),
        );
        Ok(Running {
            kind,
            user: job.user,
            stop,
            ctx,
        })
    }

    fn finish(&self, ctx: JobContext, result: RunResult) {
        let shutting_down = self.inner.shutdown.is_cancelled();
        if shutting_down && !ctx.job().cancel_requested {
            // Stays `running` in the index: resumed at the next start.
            if let Err(e) = ctx.save() {
                error!(error = %e, "cannot save an interrupted job");
            }
            info!("job interrupted by shutdown; it resumes at the next start");
            self.state().running.remove(&ctx.job().id);
        } else {
            let ended = ctx.update(|job| {
                job.finished_at = Some(crate::time::now());
                match result {
                    Ok(()) if job.cancel_requested => job.state = JobState::Cancelled,
                    Ok(()) => job.state = JobState::Succeeded,
                    Err(_) if job.cancel_requested => job.state = JobState::Cancelled,
                    Err(e) => {
                        job.state = JobState::Failed;
                        job.error = Some(e);
                    }
                }
            });
            if let Err(e) = ended {
                error!(error = %e, "cannot save a finished job");
            }
            let job = ctx.job();
            match &job.error {
                Some(e) => error!(code = %e.code, error = %e.message, "job failed"),
                None => info!(
                    state = job.state.as_str(),
                    messages = job.progress.messages.done,
                    bytes = job.progress.bytes.done,
                    items = job.progress.items.done,
                    "job ended"
                ),
            }
            self.state().running.remove(&job.id);
        }
        self.inner.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Scope;

    struct Blocking;
    impl Runner for Blocking {
        fn run(&self, ctx: JobContext) -> Pin<Box<dyn Future<Output = RunResult> + Send>> {
            Box::pin(async move {
                ctx.update(|j| j.target.folder = Some("INBOX_x".into()))
                    .map_err(|e| JobError::new(ErrorCode::IndexError, e.to_string()))?;
                ctx.stop_token().cancelled().await;
                Ok(())
            })
        }
    }

    struct Failing;
    impl Runner for Failing {
        fn run(&self, _ctx: JobContext) -> Pin<Box<dyn Future<Output = RunResult> + Send>> {
            Box::pin(async { Err(JobError::new(ErrorCode::UnknownUser, "no such user")) })
        }
    }

    struct Panicking;
    impl Runner for Panicking {
        fn run(&self, _ctx: JobContext) -> Pin<Box<dyn Future<Output = RunResult> + Send>> {
            Box::pin(async { panic!("runner bug") })
        }
    }

    fn spec(kind: JobKind) -> JobSpec {
        match kind {
            JobKind::Snapshot => JobSpec::Snapshot,
            JobKind::Restore => JobSpec::Restore(crate::jobs::RestoreSpec {
                point: "20261126T140500Z".parse().unwrap(),
                scope: Scope::All,
                requested_by: None,
                allow_mailbox_change: false,
            }),
        }
    }

    fn queue(index: &Index, restore: Arc<dyn Runner>) -> Queue {
        let runners = HashMap::from([
            (JobKind::Restore, restore),
            (JobKind::Snapshot, Arc::new(Failing) as Arc<dyn Runner>),
        ]);
        let limits = HashMap::from([(JobKind::Restore, 2), (JobKind::Snapshot, 1)]);
        Queue::open(index.clone(), runners, limits).unwrap()
    }

    async fn wait_for(q: &Queue, id: JobId, state: JobState) -> Job {
        for _ in 0..500 {
            let job = q.get(id).unwrap().unwrap();
            if job.state == state {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("job {id} never reached {state:?}: {:?}", q.get(id));
    }

    #[tokio::test]
    async fn runs_fails_cancels_and_resumes_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let q = queue(&index, Arc::new(Blocking));
        let stop = CancellationToken::new();
        let task = tokio::spawn(q.clone().run(stop.clone(), Duration::from_secs(5)));

        let failing = q.submit("a".into(), spec(JobKind::Snapshot)).unwrap();
        let failed = wait_for(&q, failing.id, JobState::Failed).await;
        assert_eq!(failed.error.unwrap().code, ErrorCode::UnknownUser);

        let r1 = q.submit("a".into(), spec(JobKind::Restore)).unwrap();
        let r2 = q.submit("a".into(), spec(JobKind::Restore)).unwrap(); // same user: waits
        let r3 = q.submit("b".into(), spec(JobKind::Restore)).unwrap();
        let running = wait_for(&q, r1.id, JobState::Running).await;
        wait_for(&q, r3.id, JobState::Running).await;
        assert_eq!(q.get(r2.id).unwrap().unwrap().state, JobState::Queued);
        assert_eq!(running.attempts, 1);

        let cancelled = q.cancel(r3.id).unwrap();
        assert!(cancelled.cancel_requested);
        let done = wait_for(&q, r3.id, JobState::Cancelled).await;
        assert_eq!(done.target.folder.as_deref(), Some("INBOX_x"));
        assert!(matches!(q.cancel(r3.id), Err(CancelError::AlreadyEnded(_))));
        assert!(matches!(
            q.cancel(JobId(999)),
            Err(CancelError::NotFound(_))
        ));

        // Shut down with r1 running and r2 queued: both come back queued.
        stop.cancel();
        task.await.unwrap();
        assert_eq!(
            index.job::<Job>(r1.id.0).unwrap().unwrap().state,
            JobState::Running
        );
        let q2 = queue(&index, Arc::new(Failing));
        assert_eq!(q2.get(r1.id).unwrap().unwrap().state, JobState::Queued);
        let stop2 = CancellationToken::new();
        let task2 = tokio::spawn(q2.clone().run(stop2.clone(), Duration::from_secs(5)));
        let resumed = wait_for(&q2, r1.id, JobState::Failed).await;
        assert_eq!(resumed.attempts, 2);
        wait_for(&q2, r2.id, JobState::Failed).await;
        let listed = q2
            .list(&JobFilter {
                kind: Some(JobKind::Restore),
                ..JobFilter::default()
            })
            .unwrap();
        assert_eq!(
            listed.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![r3.id, r2.id, r1.id]
        );
        stop2.cancel();
        task2.await.unwrap();
    }

    #[tokio::test]
    async fn a_panicking_runner_fails_its_job_only() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let q = queue(&index, Arc::new(Panicking));
        let stop = CancellationToken::new();
        let task = tokio::spawn(q.clone().run(stop.clone(), Duration::from_secs(1)));
        let job = q.submit("a".into(), spec(JobKind::Restore)).unwrap();
        let failed = wait_for(&q, job.id, JobState::Failed).await;
        assert_eq!(failed.error.unwrap().code, ErrorCode::InternalError);
        let next = q.submit("a".into(), spec(JobKind::Restore)).unwrap();
        wait_for(&q, next.id, JobState::Failed).await;
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_progress_save_in_flight_never_overwrites_a_later_change() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        for n in 1..=30u64 {
            let job = Job::new(JobId(n), "a".into(), JobSpec::Snapshot, crate::time::now());
            index.put_job(&job).unwrap();
            let ctx = JobContext {
                job: Arc::new(Mutex::new(job)),
                index: index.clone(),
                stop: CancellationToken::new(),
                last_save: Arc::new(Mutex::new(Instant::now() - Duration::from_secs(1))),
                save_lock: Arc::default(),
                saving: Arc::default(),
            };
            ctx.progress(|j| j.progress.messages.done = 7);
            ctx.update(|j| j.target.folder = Some("INBOX_T".into()))
                .unwrap();
            while ctx.saving.load(Ordering::Acquire) {
                tokio::task::yield_now().await;
            }
            let stored: Job = index.job(n).unwrap().unwrap();
            assert_eq!(stored.target.folder.as_deref(), Some("INBOX_T"), "job {n}");
            assert_eq!(stored.progress.messages.done, 7, "job {n}");
        }
    }
}
