//! Wire types of API version 1: what the panel sends and receives.
//!
//! They are built from the domain types (`jobs::Job`, …) and never stored: the
//! index keeps its own records, so the wire format can evolve separately.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error_code::ErrorCode;
use crate::jobs::{Count, Job};

/// `{"error": {"code", "message"}}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a sentence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (the list is in `docs/operations.md`).
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

/// A job as the contract shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobView {
    /// Identifier.
    pub id: String,
    /// `restore` | `snapshot`.
    pub kind: String,
    /// The mailbox.
    pub user: String,
    /// `queued` | `running` | `succeeded` | `failed` | `cancelled`.
    pub state: String,
    /// The restore point.
    pub point: Option<String>,
    /// `all` | `inbox` (restores).
    pub scope: Option<String>,
    /// Who asked.
    pub requested_by: Option<String>,
    /// Restores: the request allowed a point of an earlier mailbox with
    /// this address (`allow_mailbox_change`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_mailbox_change: bool,
    /// Where a restore writes.
    pub target: TargetView,
    /// Counters.
    pub progress: ProgressView,
    /// Why it failed.
    pub error: Option<ErrorDetail>,
    /// Problems that did not fail the job.
    pub warnings: Vec<String>,
    /// Times a worker took the job (more than 1 after a resume).
    pub attempts: u32,
    /// RFC 3339 times.
    pub created_at: String,
    /// When a worker first took it.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
}

/// `target`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct TargetView {
    /// The new folder, as the user sees it.
    pub folder: Option<String>,
    /// New calendar hrefs.
    pub calendars: Vec<String>,
    /// New address book hrefs.
    pub addressbooks: Vec<String>,
}

/// `progress`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ProgressView {
    /// Messages done/total.
    pub messages: CountView,
    /// Bytes done/total.
    pub bytes: CountView,
    /// Calendar and contact items done/total.
    pub items: CountView,
}

/// `{"done", "total"}`
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CountView {
    /// Done.
    pub done: u64,
    /// Total.
    pub total: u64,
    /// Skipped because the store could not give them back (named in the
    /// job's `warnings`); included in `done`.
    pub skipped: u64,
}

impl From<Count> for CountView {
    fn from(c: Count) -> Self {
        CountView {
            done: c.done,
            total: c.total,
            skipped: c.skipped,
        }
    }
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> Self {
        JobView {
            id: j.id.to_string(),
            kind: j.kind().as_str().to_string(),
            user: j.user.clone(),
            state: j.state.as_str().to_string(),
            point: j.point().map(ToString::to_string),
            scope: j.restore().map(|r| {
                match r.scope {
                    crate::jobs::Scope::All => "all",
                    crate::jobs::Scope::Inbox => "inbox",
                }
                .to_string()
            }),
            requested_by: j.restore().and_then(|r| r.requested_by.clone()),
            allow_mailbox_change: j.restore().is_some_and(|r| r.allow_mailbox_change),
            target: TargetView {
                folder: j.target.folder.clone(),
                calendars: j.target.calendars.clone(),
                addressbooks: j.target.addressbooks.clone(),
            },
            progress: ProgressView {
                messages: j.progress.messages.into(),
                bytes: j.progress.bytes.into(),
                items: j.progress.items.into(),
            },
            error: j.error.as_ref().map(|e| ErrorDetail {
                code: e.code,
                message: e.message.clone(),
            }),
            warnings: j.warnings.clone(),
            attempts: j.attempts,
            created_at: crate::time::rfc3339(&j.created_at),
            started_at: j.started_at.as_ref().map(crate::time::rfc3339),
            finished_at: j.finished_at.as_ref().map(crate::time::rfc3339),
        }
    }
}

/// `{"jobs": [...]}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobView>,
}

/// `GET /v1/health`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Health {
    /// `ok` when every configured backend answers, else `degraded`.
    pub status: String,
    /// This build's version.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_seconds: u64,
    /// `imap`, `dav`, `smtp`, `index`.
    pub backends: BTreeMap<String, BackendHealth>,
    /// Jobs waiting and running.
    pub jobs: JobCounts,
}

/// One backend's state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct BackendHealth {
    /// `up` | `down` | `not_configured`; the index is `damaged` when blobs
    /// were found damaged (see `error`), the state directory `full` when
    /// less than 1% or 64 MiB of it is free.
    pub state: String,
    /// Where it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Connect time when up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Free bytes (the state directory's file system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    /// Size in bytes (the state directory's file system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
}

impl BackendHealth {
    /// A backend in `state`, with nothing more said.
    pub fn new(state: &str) -> BackendHealth {
        BackendHealth {
            state: state.into(),
            address: None,
            latency_ms: None,
            error: None,
            free_bytes: None,
            total_bytes: None,
        }
    }
}

/// Queue counts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct JobCounts {
    /// Waiting.
    pub queued: usize,
    /// Running.
    pub running: usize,
}

/// A restore point as the contract shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PointView {
    /// Id.
    pub id: String,
    /// RFC 3339 UTC.
    pub taken_at: String,
    /// Mail counts.
    pub mail: MailCountsView,
    /// Calendar counts.
    pub calendars: CollectionCountsView,
    /// Contact counts.
    pub contacts: CollectionCountsView,
    /// Which mailbox the point is of (`null` for points taken before this
    /// was recorded).
    pub mailbox: Option<MailboxView>,
    /// What the point lacks because a backend was down when it was taken
    /// (`["dav"]`); empty for a complete point.
    pub partial: Vec<String>,
}

/// `{"id"}`: a mailbox identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct MailboxView {
    /// `imap-inbox-uidvalidity:N`.
    pub id: String,
}

/// `{"folders", "messages", "bytes"}`
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct MailCountsView {
    /// Folders.
    pub folders: u64,
    /// Messages.
    pub messages: u64,
    /// Sum of RFC822.SIZE.
    pub bytes: u64,
}

/// `{"collections", "items"}`
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CollectionCountsView {
    /// Collections.
    pub collections: u64,
    /// Items.
    pub items: u64,
}

impl From<&crate::manifest::Generation> for PointView {
    fn from(g: &crate::manifest::Generation) -> Self {
        PointView {
            id: g.id.to_string(),
            taken_at: g.taken_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            mailbox: g.mailbox.as_ref().map(|m| MailboxView { id: m.id.clone() }),
            partial: g.partial.clone(),
            mail: MailCountsView {
                folders: g.mail.folders,
                messages: g.mail.messages,
                bytes: g.mail.bytes,
            },
            calendars: CollectionCountsView {
                collections: g.calendars.collections,
                items: g.calendars.items,
            },
            contacts: CollectionCountsView {
                collections: g.contacts.collections,
                items: g.contacts.items,
            },
        }
    }
}

/// `{"user", "points": [...]}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PointList {
    /// The mailbox.
    pub user: String,
    /// Newest first.
    pub points: Vec<PointView>,
}

/// `POST /v1/snapshots`
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// One user.
    pub user: Option<String>,
    /// Every user the schedule knows.
    #[serde(default)]
    pub all: bool,
}

/// `POST /v1/prune` (an extension of the contract: the CLI's `prune` goes
/// through the daemon when one holds the state directory).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// Only compute what would go; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PruneReportView {
    /// Only computed, nothing changed.
    pub dry_run: bool,
    /// Points removed: `user point`.
    pub removed: Vec<String>,
    /// Points kept.
    pub kept: u64,
    /// Packs deleted whole.
    pub packs_deleted: u64,
    /// Packs rewritten without their dead blobs.
    pub packs_rewritten: u64,
    /// Bytes of packs before.
    pub bytes_before: u64,
    /// Bytes of packs after (dry run: estimated).
    pub bytes_after: u64,
    /// Damage found (the packs concerned were kept).
    pub damaged: Vec<String>,
}

impl From<&crate::prune::PruneReport> for PruneReportView {
    fn from(r: &crate::prune::PruneReport) -> Self {
        PruneReportView {
            dry_run: r.dry_run,
            removed: r.removed.clone(),
            kept: r.kept,
            packs_deleted: r.packs_deleted,
            packs_rewritten: r.packs_rewritten,
            bytes_before: r.bytes_before,
            bytes_after: r.bytes_after,
            damaged: r.damaged.clone(),
        }
    }
}

/// `POST /v1/restores`
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The mailbox.
    pub user: String,
    /// The restore point id.
    pub point: String,
    /// `all` (default) or `inbox`.
    pub scope: Option<String>,
    /// Who asked (gets the notification).
    pub requested_by: Option<String>,
    /// Restore even if the point is of an earlier mailbox that had this
    /// address (otherwise `409 mailbox_changed`).
    #[serde(default)]
    pub allow_mailbox_change: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_report_view_has_the_reports_bytes() {
        let report = crate::prune::PruneReport {
            dry_run: true,
            removed: vec!["alice@example.org 20261120T140500Z".into()],
            kept: 3,
            packs_deleted: 1,
            packs_rewritten: 2,
            bytes_before: 1000,
            bytes_after: 400,
            damaged: vec![],
        };
        assert_eq!(
            serde_json::to_string(&PruneReportView::from(&report)).unwrap(),
            serde_json::to_string(&report).unwrap()
        );
    }

    #[test]
    fn an_error_body_keeps_the_codes_spelling() {
        let body = ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::JobNotFound,
                message: "no job j9".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"job_not_found","message":"no job j9"}}"#
        );
    }
}
