//! Jobs: the unit of work the daemon runs for the panel (a snapshot or a restore
//! of one user), persisted in the index so they survive a restart.
//!
//! This module owns the job record ([`Job`]) and the queue ([`Queue`]): it
//! persists every state change through [`crate::index::Index`], runs queued jobs
//! on the [`Runner`] registered for their kind, re-queues jobs a previous daemon
//! left `running` (they resume), and carries cancellation. It knows nothing of
//! IMAP or DAV: the runners the daemon registers (`daemon::runners`) do the
//! work. A job's arguments are typed ([`JobSpec`]), checked once when the job
//! is made.

mod queue;

pub use queue::{CancelError, JobContext, Queue, RunResult, Runner};

use std::fmt;
use std::str::FromStr;

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;
use crate::manifest::GenerationId;

/// A job's identifier: `j` followed by a number that grows with each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "j{}", self.0)
    }
}

impl FromStr for JobId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix('j')
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .map(JobId)
            .ok_or_else(|| format!("{s:?} is not a job id (expected j followed by digits)"))
    }
}

impl TryFrom<String> for JobId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.to_string()
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Take a restore point of a user.
    Snapshot,
    /// Bring a restore point back into new folders and collections.
    Restore,
}

impl JobKind {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Snapshot => "snapshot",
            JobKind::Restore => "restore",
        }
    }
}

impl FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "snapshot" => Ok(JobKind::Snapshot),
            "restore" => Ok(JobKind::Restore),
            _ => Err(format!(
                "unknown job kind {s:?} (expected snapshot or restore)"
            )),
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// Being worked on.
    Running,
    /// Ended well.
    Succeeded,
    /// Ended with an error (see [`Job::error`]).
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobState {
    /// True once the job will never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| {
            format!(
                "unknown job state {s:?} (expected queued, running, succeeded, failed or cancelled)"
            )
        })
    }
}

/// What a restore brings back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every folder, calendar and address book.
    All,
    /// The INBOX's messages only.
    Inbox,
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Scope::All),
            "inbox" => Ok(Scope::Inbox),
            _ => Err(format!("unknown scope {s:?} (expected all or inbox)")),
        }
    }
}

/// Where a restore puts what it brings back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The new top folder, as the user sees it.
    pub folder: Option<String>,
    /// Hrefs of the new calendars.
    pub calendars: Vec<String>,
    /// Hrefs of the new address books.
    pub addressbooks: Vec<String>,
}

/// A done/total pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Done so far.
    pub done: u64,
    /// Known total (0 while unknown).
    pub total: u64,
    /// Skipped because the store could not give them back whole (each one
    /// is named in the job's warnings); counted in `done` too, since the
    /// job is past them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How far a job has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Messages.
    pub messages: Count,
    /// Message bytes.
    pub bytes: Count,
    /// Calendar and contact items.
    pub items: Count,
}

/// Why a job failed: a stable snake_case code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredJobError")]
pub struct JobError {
    /// Stable code (`over_quota`, `unknown_user`, `server_down`, …).
    pub code: ErrorCode,
    /// What happened, for people.
    pub message: String,
}

impl JobError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        JobError {
            code,
            message: message.into(),
        }
    }
}

/// A job error as the index holds it: the code as a plain string.
///
/// Jobs are written with the code's snake_case spelling, so the stored bytes
/// are what they were when the code was a `String`. A record written by
/// another version may carry a code this one does not know; failing to load
/// it would hide the whole job (and `GET /v1/jobs` with it), and an
/// `Other(String)` variant would let unlisted codes reach the API. So an
/// unknown code reads as `internal_error`, and the stored code is kept in
/// the message, where people still see it.
#[derive(Deserialize)]
struct StoredJobError {
    code: String,
    message: String,
}

impl From<StoredJobError> for JobError {
    fn from(stored: StoredJobError) -> Self {
        match stored.code.parse() {
            Ok(code) => JobError::new(code, stored.message),
            Err(_) => JobError::new(
                ErrorCode::InternalError,
                format!("{} (recorded as {:?})", stored.message, stored.code),
            ),
        }
    }
}

/// What a job is asked to do: its kind, with the arguments of that kind
/// checked once, when the job is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSpec {
    /// Take a restore point of the job's user.
    Snapshot,
    /// Bring a restore point back.
    Restore(RestoreSpec),
}

/// The arguments of a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSpec {
    /// The restore point brought back.
    pub point: GenerationId,
    /// What of it.
    pub scope: Scope,
    /// Who asked (gets the notification).
    pub requested_by: Option<String>,
    /// Restore even though the point is of another mailbox than the one
    /// that now has this address (the request said so; the job and the
    /// notification record it).
    pub allow_mailbox_change: bool,
}

impl JobSpec {
    /// The kind: runners and limits are per kind.
    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::Snapshot => JobKind::Snapshot,
            JobSpec::Restore(_) => JobKind::Restore,
        }
    }
}

/// A job as persisted. Stored as a [`JobRecord`] (the flat form the index
/// has always held), read back into typed fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "JobRecord", try_from = "JobRecord")]
pub struct Job {
    /// Identifier.
    pub id: JobId,
    /// The mailbox.
    pub user: String,
    /// What it does.
    pub spec: JobSpec,
    /// Life cycle state.
    pub state: JobState,
    /// The restore point a snapshot made.
    pub made: Option<GenerationId>,
    /// Where a restore writes.
    pub target: Target,
    /// Counters.
    pub progress: Progress,
    /// Why it failed.
    pub error: Option<JobError>,
    /// Things that went wrong without failing the job (a skipped message …).
    pub warnings: Vec<String>,
    /// Times the job was started (more than 1 after a resume).
    pub attempts: u32,
    /// Cancellation was asked for.
    pub cancel_requested: bool,
    /// When it was asked for.
    pub created_at: Timestamp,
    /// When a worker first took it.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
}

impl Job {
    /// A new queued job.
    pub fn new(id: JobId, user: String, spec: JobSpec, now: Timestamp) -> Job {
        Job {
            id,
            user,
            spec,
            state: JobState::Queued,
            made: None,
            target: Target::default(),
            progress: Progress::default(),
            error: None,
            warnings: Vec::new(),
            attempts: 0,
            cancel_requested: false,
            created_at: now,
            started_at: None,
            finished_at: None,
        }
    }

    /// Snapshot or restore.
    pub fn kind(&self) -> JobKind {
        self.spec.kind()
    }

    /// A restore's arguments; `None` for a snapshot.
    pub fn restore(&self) -> Option<&RestoreSpec> {
        match &self.spec {
            JobSpec::Restore(r) => Some(r),
            JobSpec::Snapshot => None,
        }
    }

    /// The point of the job: the one a restore brings back, or the one a
    /// snapshot made.
    pub fn point(&self) -> Option<&GenerationId> {
        match &self.spec {
            JobSpec::Restore(r) => Some(&r.point),
            JobSpec::Snapshot => self.made.as_ref(),
        }
    }
}

impl crate::index::JobRecord for Job {
    fn number(&self) -> u64 {
        self.id.0
    }

    fn forgettable_before(&self, cutoff: Timestamp) -> bool {
        self.state.is_final() && self.finished_at.is_some_and(|t| t < cutoff)
    }
}

impl From<JobId> for u64 {
    fn from(id: JobId) -> u64 {
        id.0
    }
}

/// The stored form of a [`Job`]: the kind's arguments as optional fields,
/// as every index since the first holds them.
#[derive(Serialize, Deserialize)]
struct JobRecord {
    id: JobId,
    kind: JobKind,
    user: String,
    state: JobState,
    point: Option<GenerationId>,
    scope: Option<Scope>,
    requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    allow_mailbox_change: bool,
    target: Target,
    progress: Progress,
    error: Option<JobError>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    cancel_requested: bool,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
}

impl From<Job> for JobRecord {
    fn from(j: Job) -> JobRecord {
        let kind = j.spec.kind();
        let (point, scope, requested_by, allow_mailbox_change) = match j.spec {
            JobSpec::Snapshot => (j.made, None, None, false),
            JobSpec::Restore(r) => (
                Some(r.point),
                Some(r.scope),
                r.requested_by,
                r.allow_mailbox_change,
            ),
        };
        JobRecord {
            id: j.id,
            kind,
            user: j.user,
            state: j.state,
            point,
            scope,
            requested_by,
            allow_mailbox_change,
            target: j.target,
            progress: j.progress,
            error: j.error,
            warnings: j.warnings,
            attempts: j.attempts,
            cancel_requested: j.cancel_requested,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

impl TryFrom<JobRecord> for Job {
    type Error = String;
    fn try_from(r: JobRecord) -> Result<Job, String> {
        let (spec, made) = match r.kind {
            JobKind::Snapshot => (JobSpec::Snapshot, r.point),
            JobKind::Restore => {
                let point = r
                    .point
                    .ok_or_else(|| format!("restore job {} names no restore point", r.id))?;
                let spec = RestoreSpec {
                    point,
                    // Every restore record carries its scope; "all" was the
                    // API's default.
                    scope: r.scope.unwrap_or(Scope::All),
                    requested_by: r.requested_by,
                    allow_mailbox_change: r.allow_mailbox_change,
                };
                (JobSpec::Restore(spec), None)
            }
        };
        Ok(Job {
            id: r.id,
            user: r.user,
            spec,
            state: r.state,
            made,
            target: r.target,
            progress: r.progress,
            error: r.error,
            warnings: r.warnings,
            attempts: r.attempts,
            cancel_requested: r.cancel_requested,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

/// Filters of `GET /v1/jobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this user's jobs.
    pub user: Option<String>,
    /// Only this kind.
    pub kind: Option<JobKind>,
    /// Only this state.
    pub state: Option<JobState>,
}

impl JobFilter {
    /// True when the job passes every filter given.
    pub fn matches(&self, job: &Job) -> bool {
        self.user.as_ref().is_none_or(|u| *u == job.user)
            && self.kind.is_none_or(|k| k == job.kind())
            && self.state.is_none_or(|s| s == job.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip_and_refuse_junk() {
        assert_eq!("j42".parse::<JobId>(), Ok(JobId(42)));
        assert_eq!(JobId(7).to_string(), "j7");
        for bad in [
            "",
            "j",
            "42",
            "j-1",
            "jx",
            "j1a",
            "j99999999999999999999999",
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_form_round_trips() {
        let point: GenerationId = "20261126T140500Z".parse().unwrap();
        let job = Job::new(
            JobId(3),
            "alice@example.org".into(),
            JobSpec::Restore(RestoreSpec {
                point: point.clone(),
                scope: Scope::Inbox,
                requested_by: Some("admin@example.org".into()),
                allow_mailbox_change: false,
            }),
            crate::time::from_second(1_764_165_900).unwrap(),
        );
        let json = serde_json::to_string(&job).unwrap();
        assert!(json.contains(r#""id":"j3""#) && json.contains(r#""scope":"inbox""#));
        assert!(
            json.contains(r#""kind":"restore""#) && json.contains(r#""point":"20261126T140500Z""#)
        );
        assert_eq!(serde_json::from_str::<Job>(&json).unwrap(), job);

        let mut snapshot = Job::new(
            JobId(4),
            "bob@example.org".into(),
            JobSpec::Snapshot,
            Timestamp::UNIX_EPOCH,
        );
        snapshot.made = Some(point);
        let json = serde_json::to_string(&snapshot).unwrap();
        assert!(json.contains(r#""kind":"snapshot""#) && json.contains(r#""scope":null"#));
        assert_eq!(serde_json::from_str::<Job>(&json).unwrap(), snapshot);
    }

    #[test]
    fn records_of_earlier_daemons_load_and_a_restore_without_point_is_refused() {
        // The exact form an index of the first release holds.
        let old = r#"{"id":"j9","kind":"restore","user":"a@example.org","state":"succeeded","point":"20261126T140500Z","scope":"all","requested_by":null,"target":{"folder":"INBOX_2026_11_26_1405","calendars":[],"addressbooks":[]},"progress":{"messages":{"done":3,"total":3},"bytes":{"done":9,"total":9},"items":{"done":0,"total":0}},"error":null,"created_at":"2026-11-26T14:05:00Z","started_at":null,"finished_at":null}"#;
        let job: Job = serde_json::from_str(old).unwrap();
        assert_eq!(job.kind(), JobKind::Restore);
        assert_eq!(job.restore().unwrap().scope, Scope::All);
        assert_eq!(job.warnings, Vec::<String>::new());
        let broken = old.replace(r#""point":"20261126T140500Z","#, r#""point":null,"#);
        assert!(serde_json::from_str::<Job>(&broken).is_err());
    }

    #[test]
    fn stored_error_keeps_its_bytes_and_unknown_codes_still_load() {
        let err = JobError::new(ErrorCode::OverQuota, "full");
        let json = serde_json::to_string(&err).unwrap();
        assert_eq!(json, r#"{"code":"over_quota","message":"full"}"#);
        assert_eq!(serde_json::from_str::<JobError>(&json).unwrap(), err);
        let old: JobError =
            serde_json::from_str(r#"{"code":"gone_code","message":"it broke"}"#).unwrap();
        assert_eq!(old.code, ErrorCode::InternalError);
        assert_eq!(old.message, r#"it broke (recorded as "gone_code")"#);
    }

    #[test]
    fn filters_combine() {
        let mut job = Job::new(
            JobId(1),
            "bob@example.org".into(),
            JobSpec::Snapshot,
            Timestamp::UNIX_EPOCH,
        );
        job.state = JobState::Running;
        let f = |user: Option<&str>, kind, state| JobFilter {
            user: user.map(str::to_string),
            kind,
            state,
        };
        assert!(f(None, None, None).matches(&job));
        assert!(
            f(
                Some("bob@example.org"),
                Some(JobKind::Snapshot),
                Some(JobState::Running)
            )
            .matches(&job)
        );
        assert!(!f(Some("alice@example.org"), None, None).matches(&job));
        assert!(!f(None, Some(JobKind::Restore), None).matches(&job));
        assert!(!f(None, None, Some(JobState::Queued)).matches(&job));
    }
}
