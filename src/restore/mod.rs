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

use crate::time::TimeZone;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error_code::ErrorCode;
use crate::index::IndexError;
use crate::jobs::{Job, JobContext, JobError, JobId, RestoreSpec, Scope};
use crate::manifest::CollectionManifest;
use crate::manifest::{FolderManifest, MessageEntry, RootManifest};
use crate::net::dav::DavClient;
use crate::net::imap::{Endpoint, ImapConnection};
use crate::protocol::imap::ImapError;
use crate::repo::{RepoError, Repository, off_thread};
use crate::snapshot::{SnapshotError, imap_job_error, read_manifest};
use crate::store::StoreError;
use plan::{LiveNamespace, Plan, SourceFolder};

/// The records a restore keeps in its job's journal, each bound to its type.
/// Their names are part of the on-disk format (FORMAT.md).
pub mod journal {
    use super::{FolderJournal, Plan, dav};
    use crate::index::JournalKey;

    /// The folder plan, written before the first CREATE.
    pub const PLAN: JournalKey<Plan> = JournalKey::single("plan");
    /// The calendar and address book plan, written before the first MKCOL.
    pub const DAV_PLAN: JournalKey<dav::DavPlan> = JournalKey::single("dav_plan");

    /// Folder `i`'s progress (`f3`).
    pub fn folder(i: usize) -> JournalKey<FolderJournal> {
        JournalKey::nth("f", i)
    }

    /// Collection `i`'s progress (`c3`).
    pub fn collection(i: usize) -> JournalKey<dav::CollectionJournal> {
        JournalKey::nth("c", i)
    }
}

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
    /// The point is of another mailbox than the one the address has now.
    #[error("{0}")]
    MailboxChanged(String),
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

impl From<RepoError> for RestoreError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Store(e) => RestoreError::Store(e),
            RepoError::Index(e) => RestoreError::Index(e),
        }
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
            RestoreError::MailboxChanged(_) => {
                JobError::new(ErrorCode::MailboxChanged, self.to_string())
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
    /// The folder's UIDVALIDITY right after this restore created it: at
    /// resume, a folder of that name with another one was re-created by
    /// someone else (`target_changed`, nothing merged). Absent in journals
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid_validity: Option<u32>,
}

/// What a restore brings back, read from its point.
struct Loaded {
    root: RootManifest,
    folders: Vec<FolderManifest>,
    /// Empty for scope `inbox`.
    collections: Vec<CollectionManifest>,
    scope: Scope,
    /// What could not be read back (damage), for the job's warnings.
    warnings: Vec<String>,
}

/// The plans of a restore, as journaled.
struct Plans {
    mail: Plan,
    dav: Option<dav::DavPlan>,
}

/// Reads the point a restore brings back (blocking).
fn load_point(repo: &Repository, user: &str, spec: RestoreSpec) -> Result<Loaded, RestoreError> {
    let generation =
        repo.index()
            .generation(user, &spec.point)?
            .ok_or_else(|| RestoreError::NoPoint {
                user: user.to_string(),
                point: spec.point.to_string(),
            })?;
    let root: RootManifest = read_manifest(repo, &generation.root)?;
    let mut warnings = Vec::new();
    let mut folders = Vec::with_capacity(root.folders.len());
    for f in &root.folders {
        folders.push(match read_manifest::<FolderManifest>(repo, &f.manifest) {
            Ok(m) => m,
            // The folder is still created (its place in the plan and its
            // subfolders stay as they were), empty.
            Err(e) if e.is_damage() => {
                warnings.push(format!(
                    "folder {:?}: its list of messages cannot be read back from the store, so none of its messages are restored: {e}",
                    f.name
                ));
                unreadable_folder(&root, f)
            }
            Err(e) => return Err(e.into()),
        });
    }
    let mut collections = Vec::new();
    if spec.scope == Scope::All {
        for id in &root.collections {
            match read_manifest(repo, id) {
                Ok(c) => collections.push(c),
                Err(e) if e.is_damage() => warnings.push(format!(
                    "a calendar or address book of the point cannot be read back from the store and is not restored: {e}"
                )),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Loaded {
        root,
        folders,
        collections,
        scope: spec.scope,
        warnings,
    })
}

/// Fails with `mailbox_changed` when the live mailbox is not the one the
/// point was taken of (checked again when the job runs: the POST checked
/// already, but the address may have changed hands since).
async fn same_mailbox(
    conn: &mut ImapConnection,
    recorded: &crate::manifest::MailboxIdentity,
) -> Result<(), RestoreError> {
    let inbox = crate::protocol::imap::MailboxName::from_utf8("INBOX")?;
    let now = conn.status(&inbox).await?.uid_validity.get();
    let live = crate::manifest::MailboxIdentity::of_inbox(now);
    if &live == recorded {
        return Ok(());
    }
    Err(RestoreError::MailboxChanged(format!(
        "the restore point is of another mailbox than the one this address has now (point: {}, now: {}); nothing was written",
        recorded.id, live.id
    )))
}

/// Stands for a folder whose manifest is damaged: its name, no messages.
fn unreadable_folder(root: &RootManifest, f: &crate::manifest::FolderRef) -> FolderManifest {
    FolderManifest::listed(
        f.name.clone(),
        f.name.clone(),
        root.namespace.separator,
        Vec::new(),
        true,
        true,
    )
}

/// A folder's messages, in UID order, without those of chunks that cannot
/// be read back (named in the returned warnings). The same damage gives
/// the same list every time, so a resumed restore's journal still lines up.
fn readable_messages(
    repo: &Repository,
    folder: &FolderManifest,
) -> Result<(Vec<MessageEntry>, Vec<String>), RestoreError> {
    let mut out = Vec::with_capacity(folder.messages as usize);
    let mut warnings = Vec::new();
    let mut damaged = |e: SnapshotError| -> Result<(), RestoreError> {
        if !e.is_damage() {
            return Err(e.into());
        }
        warnings.push(format!(
            "folder {:?}: some of its messages cannot be listed from the store and are not restored: {e}",
            folder.name
        ));
        Ok(())
    };
    for g in &folder.groups {
        let group: crate::manifest::ChunkGroup = match read_manifest(repo, g) {
            Ok(group) => group,
            Err(e) => {
                damaged(e)?;
                continue;
            }
        };
        for c in &group.chunks {
            match read_manifest::<crate::manifest::MessageChunk>(repo, c) {
                Ok(chunk) => out.extend(chunk.messages),
                Err(e) => damaged(e)?,
            }
        }
    }
    Ok((out, warnings))
}

/// Puts the plan's target and totals on the job, for the panel.
fn announce(ctx: &JobContext, point: &Loaded, plans: &Plans) -> Result<(), RestoreError> {
    let planned = || {
        plans
            .mail
            .folders
            .iter()
            .filter_map(|p| p.source)
            .map(|i| &point.folders[i])
    };
    let messages = planned().map(|f| f.messages).sum();
    let bytes = planned().map(|f| f.bytes).sum();
    let items = plans.dav.as_ref().map_or(0, |p| {
        p.collections
            .iter()
            .map(|c| point.collections[c.source].items.len() as u64)
            .sum()
    });
    ctx.update(|j| {
        j.target.folder = Some(plans.mail.target.clone());
        j.progress.messages = crate::jobs::Count {
            done: 0,
            total: messages,
            ..Default::default()
        };
        j.progress.bytes = crate::jobs::Count {
            done: 0,
            total: bytes,
            ..Default::default()
        };
        j.progress.items = crate::jobs::Count {
            done: 0,
            total: items,
            ..Default::default()
        };
        for c in plans.dav.iter().flat_map(|p| &p.collections) {
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
    Ok(())
}

/// What the workers of one restore share.
pub struct Shared<'a> {
    store: &'a Repository,
    ctx: &'a JobContext,
    job: JobId,
    warned: Mutex<HashSet<String>>,
}

impl Shared<'_> {
    /// Writes folder `index`'s journal durably (sled flush: off the async
    /// threads).
    async fn save(&self, index: usize, j: &FolderJournal) -> Result<(), RestoreError> {
        let (db, job, j) = (self.store.index().clone(), self.job, j.clone());
        Ok(off_thread(move || db.put_journal(job, &journal::folder(index), &j)).await?)
    }

    /// Writes collection `index`'s journal durably.
    async fn save_collection(
        &self,
        index: usize,
        j: &dav::CollectionJournal,
    ) -> Result<(), RestoreError> {
        let (db, job, j) = (self.store.index().clone(), self.job, j.clone());
        Ok(off_thread(move || db.put_journal(job, &journal::collection(index), &j)).await?)
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

    fn add_skipped_messages(&self, n: u64) {
        if n > 0 {
            self.ctx.progress(|job| job.progress.messages.skipped += n);
        }
    }

    fn add_skipped_items(&self, n: u64) {
        if n > 0 {
            self.ctx.progress(|job| job.progress.items.skipped += n);
        }
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
    store: Repository,
    endpoint: Endpoint,
    connections: usize,
    template: String,
    timezone: TimeZone,
    dav: Option<DavClient>,
}

impl Restorer {
    /// A restorer from `store` to `endpoint`.
    pub fn new(
        store: Repository,
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
    pub fn store(&self) -> &Repository {
        &self.store
    }

    /// Runs (or resumes) the restore job in `ctx`: load the point, plan
    /// (or read the journaled plan), create the folders and collections,
    /// transfer the messages and items.
    pub async fn run(&self, ctx: &JobContext) -> Result<(), RestoreError> {
        let job = ctx.job();
        let point = self.load(&job).await?;
        let mut first = ImapConnection::open(&self.endpoint, &job.user).await?;
        let allowed = job.restore().is_some_and(|r| r.allow_mailbox_change);
        if let (Some(recorded), false) = (&point.root.mailbox, allowed) {
            same_mailbox(&mut first, recorded).await?;
        }
        let plans = self.plan(&job, &mut first, &point).await?;
        announce(ctx, &point, &plans)?;
        let shared = Shared {
            store: &self.store,
            ctx,
            job: job.id,
            warned: Mutex::default(),
        };
        for r in &plans.mail.renamed {
            info!(rename = %r, "folder name made safe");
            shared.warn_once(format!("folder renamed to be safe: {r}"));
        }
        for w in &point.warnings {
            shared.warn_once(w.clone());
        }
        for lacking in &point.root.partial {
            let what = match lacking.as_str() {
                "dav" => "its calendars and contacts",
                other => other,
            };
            shared.warn_once(format!(
                "the restore point lacks {what}: the server was down when it was taken"
            ));
        }
        let journals = self
            .create_folders(&mut first, &plans.mail, &shared)
            .await?;
        self.transfer(&job.user, first, &point, &plans, journals, &shared)
            .await?;
        if self.dav.is_none() && !point.collections.is_empty() {
            return Err(RestoreError::NoDav(point.collections.len()));
        }
        let messages = ctx.job().progress.messages.total;
        info!(target = %plans.mail.target, messages, "restore finished");
        Ok(())
    }

    /// The job's point: its root, its folder manifests and (scope `all`) its
    /// collection manifests, read off the async threads.
    async fn load(&self, job: &Job) -> Result<Loaded, RestoreError> {
        let Some(spec) = job.restore().cloned() else {
            return Err(RestoreError::NoPoint {
                user: job.user.clone(),
                point: String::new(),
            });
        };
        let (repo, user) = (self.store.clone(), job.user.clone());
        off_thread(move || load_point(&repo, &user, spec)).await
    }

    /// The journaled plans, or new ones journaled before anything is created.
    async fn plan(
        &self,
        job: &Job,
        first: &mut ImapConnection,
        point: &Loaded,
    ) -> Result<Plans, RestoreError> {
        let index = self.store.index();
        let mail = match index.journal(job.id, &journal::PLAN)? {
            Some(plan) => plan,
            None => {
                let plan = self
                    .make_plan(
                        first,
                        &point.root,
                        &point.folders,
                        point.scope,
                        job.created_at,
                    )
                    .await?;
                index.put_journal(job.id, &journal::PLAN, &plan)?;
                plan
            }
        };
        let dav = match &self.dav {
            Some(client) if !point.collections.is_empty() => {
                Some(match index.journal(job.id, &journal::DAV_PLAN)? {
                    Some(p) => p,
                    None => {
                        let when = job.created_at.with_timezone(&self.timezone);
                        let p = dav::plan(client, &point.collections, &when).await?;
                        index.put_journal(job.id, &journal::DAV_PLAN, &p)?;
                        p
                    }
                })
            }
            _ => None,
        };
        Ok(Plans { mail, dav })
    }

    /// Creates (and subscribes) the planned folders not created yet, on one
    /// connection, parents before children; returns every folder's journal.
    async fn create_folders(
        &self,
        conn: &mut ImapConnection,
        plan: &Plan,
        shared: &Shared<'_>,
    ) -> Result<Vec<FolderJournal>, RestoreError> {
        let mut journals = Vec::with_capacity(plan.folders.len());
        for (i, pf) in plan.folders.iter().enumerate() {
            let mut j = self
                .store
                .index()
                .journal(shared.job, &journal::folder(i))?
                .unwrap_or_default();
            let mailbox = crate::protocol::imap::MailboxName::from_utf8(&pf.target)?;
            if !j.created {
                shared.check_stop()?;
                let fresh = imap::create_folder(conn, &pf.target).await?;
                let status = conn.status(&mailbox).await?;
                // ALREADYEXISTS with nothing recorded: this restore died
                // between its CREATE and the journal (the name was free
                // when the plan was saved), unless the folder holds mail.
                if !fresh && status.messages > 0 {
                    return Err(RestoreError::TargetChanged(format!(
                        "{} exists and holds {} messages this restore did not send",
                        pf.target, status.messages
                    )));
                }
                j.created = true;
                j.uid_validity = Some(status.uid_validity.get());
                shared.save(i, &j).await?;
            } else if let Some(recorded) = j.uid_validity {
                let now = conn.status(&mailbox).await?.uid_validity.get();
                if now != recorded {
                    return Err(RestoreError::TargetChanged(format!(
                        "{} was re-created by someone else (UIDVALIDITY {recorded} is now {now})",
                        pf.target
                    )));
                }
            }
            journals.push(j);
        }
        Ok(journals)
    }

    /// The messages, one folder per connection at a time (`first` is one of
    /// them), and the calendar and contact items alongside.
    async fn transfer(
        &self,
        user: &str,
        first: ImapConnection,
        point: &Loaded,
        plans: &Plans,
        journals: Vec<FolderJournal>,
        shared: &Shared<'_>,
    ) -> Result<(), RestoreError> {
        let folders = &point.folders;
        let work: VecDeque<(usize, usize, FolderJournal)> = plans
            .mail
            .folders
            .iter()
            .zip(journals)
            .enumerate()
            .filter_map(|(i, (pf, j))| pf.source.map(|src| (i, src, j)))
            .filter(|(_, src, _)| folders[*src].messages > 0)
            .collect();
        let workers = self.connections.min(work.len()).max(1);
        let work = Arc::new(Mutex::new(work));
        let mut conns = vec![Some(first)];
        conns.resize_with(workers, || None);
        let tasks = conns
            .into_iter()
            .map(|conn| self.worker(user, conn, &work, &plans.mail, folders, shared));
        let dav_work = self.transfer_collections(point, plans.dav.as_ref(), shared);
        let (mail, dav_result) = tokio::join!(futures_util::future::join_all(tasks), dav_work);
        for r in mail {
            r?;
        }
        dav_result
    }

    /// Creates the planned collections not created yet and puts their items.
    async fn transfer_collections(
        &self,
        point: &Loaded,
        plan: Option<&dav::DavPlan>,
        shared: &Shared<'_>,
    ) -> Result<(), RestoreError> {
        let (Some(client), Some(p)) = (&self.dav, plan) else {
            return Ok(());
        };
        for (i, pc) in p.collections.iter().enumerate() {
            shared.check_stop()?;
            let c = &point.collections[pc.source];
            let mut j = self
                .store
                .index()
                .journal(shared.job, &journal::collection(i))?
                .unwrap_or_default();
            if !j.created {
                dav::create(client, pc, c, shared).await?;
                j.created = true;
                shared.save_collection(i, &j).await?;
            }
            dav::restore_items(client, pc, i, c, j, shared).await?;
        }
        Ok(())
    }

    async fn make_plan(
        &self,
        conn: &mut ImapConnection,
        root: &RootManifest,
        folders: &[FolderManifest],
        scope: Scope,
        requested_at: crate::time::Timestamp,
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
        let when = requested_at.with_timezone(&self.timezone);
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
            let entries: Vec<MessageEntry> = {
                let (repo, folder) = (self.store.clone(), folders[src].clone());
                let (entries, warnings) =
                    off_thread(move || readable_messages(&repo, &folder)).await?;
                for w in warnings {
                    shared.warn_once(w);
                }
                entries
            };
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
                            .journal(shared.job, &journal::folder(i))?
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
