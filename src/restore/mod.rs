//! The restore engine: brings a restore point back into new folders next to
//! the live data, never over it, exactly once.
//!
//! 1. The plan ([`plan`], pure) is made once, from the request time and the
//!    live folder names, and saved in the journal before anything is created:
//!    a resumed restore uses the same target.
//! 2. Folders are created (parents first) and subscribed.
//! 3. Messages are appended folder by folder over a small pool of master
//!    connections ([`imap`]), each batch journaled before and after.
//!
//! Nothing outside the planned folders is ever created, changed or deleted.

pub mod dav;
pub mod imap;
pub mod plan;

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error_code::ErrorCode;
use crate::index::IndexError;
use crate::jobs::{JobContext, JobError, JobId, Scope};
use crate::manifest::CollectionManifest;
use crate::manifest::{FolderManifest, GenerationId, MessageEntry, RootManifest};
use crate::net::dav::DavClient;
use crate::net::imap::{Endpoint, ImapConnection};
use crate::protocol::imap::ImapError;
use crate::snapshot::{SnapshotError, folder_messages, imap_job_error, read_manifest};
use crate::store::{Store, StoreError};
use plan::{LiveNamespace, Plan, SourceFolder};

/// Why a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The IMAP server failed or refused.
    #[error(transparent)]
    Imap(#[from] ImapError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The restore point could not be read.
    #[error("the restore point cannot be read: {0}")]
    Point(#[from] SnapshotError),
    /// No such restore point.
    #[error("no restore point {point} for {user}")]
    NoPoint {
        /// The mailbox.
        user: String,
        /// The point.
        point: String,
    },
    /// No plan could be made.
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    /// Someone else changed a folder this restore made.
    #[error("the restore target was changed by someone else: {0}")]
    TargetChanged(String),
    /// The CalDAV/CardDAV server failed or refused.
    #[error(transparent)]
    Dav(#[from] crate::net::dav::DavError),
    /// The DAV server's storage for the user is full (507).
    #[error("the calendar and contact storage is full: {0}")]
    DavOverQuota(String),
    /// The point holds calendars or contacts but no DAV server is configured.
    #[error(
        "the restore point holds {0} calendars and address books, but no [dav] server is configured to restore them into"
    )]
    NoDav(usize),
    /// Stopped on request.
    #[error("the restore was stopped")]
    Stopped,
}

impl From<crate::protocol::dav::HrefError> for RestoreError {
    fn from(e: crate::protocol::dav::HrefError) -> Self {
        RestoreError::Dav(crate::net::dav::DavError::Href(e))
    }
}

impl RestoreError {
    /// The job error: a stable code and a sentence.
    pub fn to_job_error(&self) -> JobError {
        match self {
            RestoreError::Imap(e) => imap_job_error(e),
            RestoreError::Store(e) if e.is_disk_full() => {
                JobError::new(ErrorCode::DiskFull, self.to_string())
            }
            RestoreError::Point(e) => JobError::new(ErrorCode::PointDamaged, e.to_string()),
            RestoreError::NoPoint { .. } => {
                JobError::new(ErrorCode::PointNotFound, self.to_string())
            }
            RestoreError::TargetChanged(_) => {
                JobError::new(ErrorCode::TargetChanged, self.to_string())
            }
            RestoreError::Stopped => JobError::new(ErrorCode::Cancelled, self.to_string()),
            RestoreError::Dav(e) => JobError::new(e.code(), e.to_string()),
            RestoreError::NoDav(_) => JobError::new(ErrorCode::DavNotConfigured, self.to_string()),
            RestoreError::DavOverQuota(_) => JobError::new(ErrorCode::OverQuota, self.to_string()),
            other => JobError::new(ErrorCode::InternalError, other.to_string()),
        }
    }
}

/// A batch sent but not yet known to have landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The target's UIDVALIDITY before the batch.
    pub uid_validity: u32,
    /// The target's UIDNEXT before the batch.
    pub uid_next: u32,
    /// Index of the batch's first message in the folder's entries.
    pub start: u64,
    /// Messages in the batch.
    pub count: u64,
}

/// Journal of one planned folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderJournal {
    /// Created and subscribed.
    pub created: bool,
    /// Messages (in UID order of the point) known to be in the target.
    pub done: u64,
    /// A batch that may or may not have landed.
    pub pending: Option<Pending>,
}

/// What the workers of one restore share.
pub struct Shared<'a> {
    store: &'a Store,
    ctx: &'a JobContext,
    job: JobId,
    warned: Mutex<HashSet<String>>,
}

impl Shared<'_> {
    fn save(&self, index: usize, j: &FolderJournal) -> Result<(), RestoreError> {
        Ok(self
            .store
            .index()
            .put_journal(self.job, &format!("f{index}"), j)?)
    }

    fn save_collection(
        &self,
        index: usize,
        j: &dav::CollectionJournal,
    ) -> Result<(), RestoreError> {
        Ok(self
            .store
            .index()
            .put_journal(self.job, &format!("c{index}"), j)?)
    }

    fn add_items(&self, n: u64) {
        self.ctx.progress(|job| job.progress.items.done += n);
    }

    fn add_done(&self, bytes: u64, messages: u64) {
        self.ctx.progress(|job| {
            job.progress.messages.done += messages;
            job.progress.bytes.done += bytes;
        });
    }

    fn done_messages(&self) -> (u64, u64) {
        let job = self.ctx.job();
        (job.progress.messages.done, job.progress.bytes.done)
    }

    /// Puts the counters back before a folder is retried (it counts its
    /// journaled progress again when it starts).
    fn rewind_done(&self, (messages, bytes): (u64, u64)) {
        self.ctx.progress(|job| {
            job.progress.messages.done = messages;
            job.progress.bytes.done = bytes;
        });
    }

    fn check_stop(&self) -> Result<(), RestoreError> {
        if self.ctx.should_stop() {
            Err(RestoreError::Stopped)
        } else {
            Ok(())
        }
    }

    fn warn(&self, text: String) {
        tracing::warn!(warning = %text, "restore warning");
        let _ = self.ctx.update(|job| {
            if job.warnings.len() < 1000 {
                job.warnings.push(text);
            }
        });
    }

    fn warn_once(&self, text: String) {
        let new = self
            .warned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(text.clone());
        if new {
            self.warn(text);
        }
    }
}

/// Restores points.
#[derive(Clone)]
pub struct Restorer {
    store: Store,
    endpoint: Endpoint,
    connections: usize,
    template: String,
    timezone: TimeZone,
    dav: Option<DavClient>,
}

impl Restorer {
    /// A restorer from `store` to `endpoint`.
    pub fn new(
        store: Store,
        endpoint: Endpoint,
        connections: usize,
        template: String,
        timezone: TimeZone,
    ) -> Self {
        Restorer {
            store,
            endpoint,
            connections: connections.max(1),
            template,
            timezone,
            dav: None,
        }
    }

    /// Also restores calendars and address books through `client`.
    pub fn with_dav(mut self, client: DavClient) -> Self {
        self.dav = Some(client);
        self
    }

    /// The store read from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs (or resumes) the restore job in `ctx`.
    pub async fn run(&self, ctx: &JobContext) -> Result<(), RestoreError> {
        let job = ctx.job();
        let point: GenerationId =
            job.point
                .as_deref()
                .unwrap_or_default()
                .parse()
                .map_err(|_| RestoreError::NoPoint {
                    user: job.user.clone(),
                    point: job.point.clone().unwrap_or_default(),
                })?;
        let generation = self
            .store
            .index()
            .generation(&job.user, &point)?
            .ok_or_else(|| RestoreError::NoPoint {
                user: job.user.clone(),
                point: point.to_string(),
            })?;
        let root: RootManifest = read_manifest(&self.store, &generation.root)?;
        let mut folders = Vec::with_capacity(root.folders.len());
        for f in &root.folders {
            folders.push(read_manifest::<FolderManifest>(&self.store, &f.manifest)?);
        }
        let scope = job.scope.unwrap_or(Scope::All);
        let mut collections: Vec<CollectionManifest> = Vec::new();
        if scope == Scope::All {
            for id in &root.collections {
                collections.push(read_manifest(&self.store, id)?);
            }
        }

        let mut first = ImapConnection::open(&self.endpoint, &job.user).await?;
        let plan = match self.store.index().journal::<Plan>(job.id, "plan")? {
            Some(plan) => plan,
            None => {
                let plan = self
                    .make_plan(&mut first, &root, &folders, scope, job.created_at)
                    .await?;
                self.store.index().put_journal(job.id, "plan", &plan)?;
                plan
            }
        };
        let dav_plan = match &self.dav {
            Some(client) if !collections.is_empty() => Some(
                match self
                    .store
                    .index()
                    .journal::<dav::DavPlan>(job.id, "dav_plan")?
                {
                    Some(p) => p,
                    None => {
                        let when = job.created_at.to_zoned(self.timezone.clone());
                        let p = dav::plan(client, &collections, &when).await?;
                        self.store.index().put_journal(job.id, "dav_plan", &p)?;
                        p
                    }
                },
            ),
            _ => None,
        };
        let total_messages: u64 = plan
            .folders
            .iter()
            .filter_map(|p| p.source)
            .map(|i| folders[i].messages)
            .sum();
        let total_bytes: u64 = plan
            .folders
            .iter()
            .filter_map(|p| p.source)
            .map(|i| folders[i].bytes)
            .sum();
        ctx.update(|j| {
            j.target.folder = Some(plan.target.clone());
            j.progress.messages = crate::jobs::Count {
                done: 0,
                total: total_messages,
            };
            j.progress.bytes = crate::jobs::Count {
                done: 0,
                total: total_bytes,
            };
            j.progress.items = crate::jobs::Count {
                done: 0,
                total: dav_plan.as_ref().map_or(0, |p| {
                    p.collections
                        .iter()
                        .map(|c| collections[c.source].items.len() as u64)
                        .sum()
                }),
            };
            for c in dav_plan.iter().flat_map(|p| &p.collections) {
                let path = url::Url::parse(&c.url)
                    .map(|u| u.path().to_string())
                    .unwrap_or_else(|_| c.url.clone());
                match c.kind {
                    crate::protocol::dav::CollectionKind::Calendar => j.target.calendars.push(path),
                    crate::protocol::dav::CollectionKind::Addressbook => {
                        j.target.addressbooks.push(path)
                    }
                }
            }
        })?;
        for r in &plan.renamed {
            info!(rename = %r, "folder name made safe");
        }
        let shared = Shared {
            store: &self.store,
            ctx,
            job: job.id,
            warned: Mutex::default(),
        };
        for r in &plan.renamed {
            shared.warn_once(format!("folder renamed to be safe: {r}"));
        }

        // Folders first, on one connection, parents before children.
        let mut journals = Vec::with_capacity(plan.folders.len());
        for (i, pf) in plan.folders.iter().enumerate() {
            let mut j = self
                .store
                .index()
                .journal::<FolderJournal>(job.id, &format!("f{i}"))?
                .unwrap_or_default();
            if !j.created {
                shared.check_stop()?;
                imap::create_folder(&mut first, &pf.target).await?;
                j.created = true;
                shared.save(i, &j)?;
            }
            journals.push(j);
        }

        // Then messages, one folder per connection at a time.
        let work: VecDeque<(usize, usize, FolderJournal)> = plan
            .folders
            .iter()
            .enumerate()
            .filter_map(|(i, pf)| pf.source.map(|src| (i, src, journals[i].clone())))
            .filter(|(_, src, _)| folders[*src].messages > 0)
            .collect();
        let workers = self.connections.min(work.len()).max(1);
        let work = Arc::new(Mutex::new(work));
        let mut conns = vec![Some(first)];
        conns.resize_with(workers, || None);
        let tasks = conns
            .into_iter()
            .map(|conn| self.worker(&job.user, conn, &work, &plan, &folders, &shared));
        let dav_work = async {
            let (Some(client), Some(p)) = (&self.dav, &dav_plan) else {
                return Ok(());
            };
            for (i, pc) in p.collections.iter().enumerate() {
                shared.check_stop()?;
                let c = &collections[pc.source];
                let mut j = self
                    .store
                    .index()
                    .journal::<dav::CollectionJournal>(job.id, &format!("c{i}"))?
                    .unwrap_or_default();
                if !j.created {
                    dav::create(client, pc, c, &shared).await?;
                    j.created = true;
                    shared.save_collection(i, &j)?;
                }
                dav::restore_items(client, pc, i, c, j, &shared).await?;
            }
            Ok::<(), RestoreError>(())
        };
        let (mail, dav_result) = tokio::join!(futures_util::future::join_all(tasks), dav_work);
        for r in mail {
            r?;
        }
        dav_result?;
        if self.dav.is_none() && !collections.is_empty() {
            return Err(RestoreError::NoDav(collections.len()));
        }
        info!(target = %plan.target, messages = total_messages, "restore finished");
        Ok(())
    }

    async fn make_plan(
        &self,
        conn: &mut ImapConnection,
        root: &RootManifest,
        folders: &[FolderManifest],
        scope: Scope,
        requested_at: jiff::Timestamp,
    ) -> Result<Plan, RestoreError> {
        let ns = conn.namespace().await?;
        let personal = ns.personal.first();
        let live = LiveNamespace {
            prefix: personal
                .map(|n| n.prefix.as_str().to_string())
                .unwrap_or_default(),
            separator: personal.and_then(|n| n.delimiter).unwrap_or('/'),
        };
        let existing: BTreeSet<String> = conn
            .list_mailboxes()
            .await?
            .into_iter()
            .map(|m| m.name.as_str().to_string())
            .collect();
        let sources: Vec<SourceFolder> = folders
            .iter()
            .map(|f| SourceFolder {
                name: f.name.clone(),
                separator: f.separator,
            })
            .collect();
        let when = requested_at.to_zoned(self.timezone.clone());
        Ok(plan::plan(
            &sources,
            &root.namespace.prefix,
            scope,
            &when,
            &self.template,
            &live,
            &existing,
        )?)
    }

    async fn worker(
        &self,
        user: &str,
        conn: Option<ImapConnection>,
        work: &Mutex<VecDeque<(usize, usize, FolderJournal)>>,
        plan: &Plan,
        folders: &[FolderManifest],
        shared: &Shared<'_>,
    ) -> Result<(), RestoreError> {
        let mut conn = match conn {
            Some(c) => c,
            None => {
                if work.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                    return Ok(());
                }
                ImapConnection::open(&self.endpoint, user).await?
            }
        };
        loop {
            shared.check_stop()?;
            let next = work.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            let Some((i, src, journal)) = next else { break };
            let entries: Vec<MessageEntry> = folder_messages(&self.store, &folders[src])?;
            let mut journal = journal;
            let mut attempt = 0;
            loop {
                let before = shared.done_messages();
                match imap::restore_messages(
                    &mut conn,
                    shared,
                    i,
                    &plan.folders[i].target,
                    &entries,
                    journal.clone(),
                )
                .await
                {
                    Ok(()) => break,
                    // A dropped connection: a new one, and the folder resumes
                    // from its journal (a pending batch is settled first).
                    Err(RestoreError::Imap(e))
                        if e.is_transient() && attempt < crate::snapshot::RETRIES =>
                    {
                        attempt += 1;
                        tracing::warn!(user, folder = %plan.folders[i].target, error = %e, attempt, "retrying a folder on a new connection");
                        shared.rewind_done(before);
                        tokio::time::sleep(crate::snapshot::backoff(attempt)).await;
                        conn = ImapConnection::open(&self.endpoint, user).await?;
                        journal = self
                            .store
                            .index()
                            .journal::<FolderJournal>(shared.job, &format!("f{i}"))?
                            .unwrap_or_default();
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let _ = conn.logout().await;
        Ok(())
    }
}
