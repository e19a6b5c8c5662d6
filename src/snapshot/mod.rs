//! The snapshot engine: takes a restore point of one user.
//!
//! It lists every folder over IMAP (subscribed or not, special-use and empty
//! ones included), snapshots them in parallel over a small pool of master
//! connections (see [`imap`]), and commits the generation:
//! blobs durable → manifests (blobs too) durable → index commit → success.
//! A snapshot that dies half-way leaves no restore point; the blobs it made
//! durable are reused by the next run.

pub mod dav;
pub mod imap;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::time::Timestamp;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::blob::{BlobId, BlobKind};
use crate::error_code::ErrorCode;
use crate::jobs::JobError;
use crate::manifest::{
    self, CollectionManifest, FolderManifest, FolderRef, Generation, GenerationId, MANIFEST_FORMAT,
    MailCounts, Namespace, RootManifest,
};
use crate::net::dav::DavClient;
use crate::net::imap::{Endpoint, ImapConnection};
use crate::protocol::imap::{ImapError, MailboxEntry};
use crate::repo::{BlobWriter, RepoError, Repository, off_thread};
use crate::store::StoreError;

/// Why a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The IMAP server failed or refused.
    #[error(transparent)]
    Imap(#[from] ImapError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// A previous manifest could not be read.
    #[error("manifest {blob} cannot be read: {why}")]
    Manifest {
        /// The blob.
        blob: BlobId,
        /// What is wrong.
        why: String,
    },
    /// The CalDAV/CardDAV server failed or refused.
    #[error(transparent)]
    Dav(crate::net::dav::DavError),
    /// Stopped on request.
    #[error("the snapshot was stopped")]
    Stopped,
    /// The login succeeded but the mailbox has no INBOX: it does not exist
    /// (a proxy that accepts any login does this); no point is made.
    #[error("{0:?} logged in but has no INBOX: no such mailbox on the server")]
    NoInbox(String),
}

impl From<RepoError> for SnapshotError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Store(e) => SnapshotError::Store(e),
            RepoError::Index(e) => SnapshotError::Index(e),
        }
    }
}

impl SnapshotError {
    /// True when what failed is damage in the store (a blob or manifest
    /// that does not read back), not the server or the disk.
    pub fn is_damage(&self) -> bool {
        match self {
            SnapshotError::Store(e) => e.is_damage(),
            SnapshotError::Manifest { .. } => true,
            _ => false,
        }
    }

    /// The job error: a stable code and a sentence.
    pub fn to_job_error(&self) -> JobError {
        match self {
            SnapshotError::Imap(e) => imap_job_error(e),
            SnapshotError::Store(e) if e.is_disk_full() => {
                JobError::new(ErrorCode::DiskFull, e.to_string())
            }
            SnapshotError::Stopped => JobError::new(ErrorCode::Cancelled, self.to_string()),
            SnapshotError::NoInbox(_) => JobError::new(ErrorCode::UnknownUser, self.to_string()),
            SnapshotError::Dav(e) => JobError::new(e.code(), e.to_string()),
            other => JobError::new(ErrorCode::StoreError, other.to_string()),
        }
    }
}

/// True when a master login failed because the user does not exist: Dovecot
/// then answers `NO [UNAVAILABLE]` (the master's password was right, the
/// user's lookup failed), where a wrong master password gets
/// `[AUTHENTICATIONFAILED]`.
pub fn is_unknown_user(e: &ImapError) -> bool {
    matches!(
        e,
        ImapError::AuthenticationFailed {
            code: Some(crate::protocol::imap::ResponseCode::Unavailable),
            ..
        }
    )
}

/// Maps an IMAP error to a job error code (shared by snapshot and restore).
pub fn imap_job_error(e: &ImapError) -> JobError {
    use crate::protocol::imap::ResponseCode;
    let code = match e {
        _ if is_unknown_user(e) => ErrorCode::UnknownUser,
        ImapError::AuthenticationFailed { .. } => ErrorCode::LoginFailed,
        ImapError::InvalidUserName { .. } => ErrorCode::InvalidUser,
        ImapError::Resolve { .. }
        | ImapError::NoAddress { .. }
        | ImapError::Connect { .. }
        | ImapError::ConnectTimeout { .. }
        | ImapError::GreetingBye { .. } => ErrorCode::ServerDown,
        ImapError::Certificate { .. } | ImapError::TlsHandshake { .. } => ErrorCode::TlsError,
        _ => match e.response_code() {
            Some(ResponseCode::OverQuota) => ErrorCode::OverQuota,
            Some(ResponseCode::Limit) => ErrorCode::ServerLimit,
            Some(ResponseCode::TooBig) => ErrorCode::MessageTooBig,
            Some(ResponseCode::TryCreate) | Some(ResponseCode::NonExistent) => {
                ErrorCode::FolderMissing
            }
            _ if e.is_transient() => ErrorCode::ConnectionLost,
            _ => ErrorCode::ImapError,
        },
    };
    JobError::new(code, e.to_string())
}

/// Counters shared by the workers of one snapshot, and the stop signal.
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages whose bytes were downloaded.
    pub downloaded: AtomicU64,
    /// Bytes downloaded.
    pub bytes: AtomicU64,
    /// Messages carried over from the previous point without download.
    pub carried: AtomicU64,
    /// Their bytes.
    pub carried_bytes: AtomicU64,
    /// Calendar and contact items whose bytes were downloaded.
    pub items_downloaded: AtomicU64,
    /// Their bytes.
    pub item_bytes: AtomicU64,
    /// Items carried over from the previous point without download.
    pub items_carried: AtomicU64,
    /// Things that went wrong without failing the snapshot.
    pub warnings: Mutex<Vec<String>>,
    /// Backends that were down, so the point lacks what they hold.
    pub partial: Mutex<Vec<String>>,
    stop: CancellationToken,
}

impl Progress {
    /// Counters that stop when `stop` fires.
    pub fn new(stop: CancellationToken) -> Progress {
        Progress {
            stop,
            ..Progress::default()
        }
    }

    fn downloaded(&self, bytes: u64) {
        self.downloaded.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn skipped(&self, n: u64, bytes: u64) {
        self.carried.fetch_add(n, Ordering::Relaxed);
        self.carried_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records a warning (logged, and shown on the job).
    pub fn warn(&self, text: String) {
        tracing::warn!(warning = %text, "snapshot warning");
        let mut w = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() < 1000 {
            w.push(text);
        }
    }

    fn check_stop(&self) -> Result<(), SnapshotError> {
        if self.stop.is_cancelled() {
            Err(SnapshotError::Stopped)
        } else {
            Ok(())
        }
    }
}

/// What a finished snapshot reports.
#[derive(Debug, Clone)]
pub struct SnapshotOutcome {
    /// The new restore point.
    pub generation: Generation,
    /// Messages downloaded.
    pub downloaded: u64,
    /// Bytes downloaded.
    pub bytes_downloaded: u64,
    /// Calendar and contact items downloaded.
    pub items_downloaded: u64,
    /// New blobs written.
    pub new_blobs: u64,
}

/// Takes restore points.
#[derive(Clone)]
pub struct Snapshotter {
    store: Repository,
    endpoint: Endpoint,
    connections: usize,
    dav: Option<DavClient>,
}

impl Snapshotter {
    /// A snapshotter writing into `store`, reading from `endpoint` over at
    /// most `connections` connections per user.
    pub fn new(store: Repository, endpoint: Endpoint, connections: usize) -> Self {
        Snapshotter {
            store,
            endpoint,
            connections: connections.max(1),
            dav: None,
        }
    }

    /// Also takes every calendar and address book from `client`.
    pub fn with_dav(mut self, client: DavClient) -> Self {
        self.dav = Some(client);
        self
    }

    /// The store written to.
    pub fn store(&self) -> &Repository {
        &self.store
    }

    /// Takes a restore point of `user`: list the folders, snapshot them (and
    /// the calendars and contacts) in parallel, then write the point.
    pub async fn snapshot(
        &self,
        user: &str,
        progress: &Progress,
    ) -> Result<SnapshotOutcome, SnapshotError> {
        let taken_at = crate::time::now();
        let mut first = ImapConnection::open(&self.endpoint, user).await?;
        let (namespace, foreign) = personal_namespace(&mut first).await?;
        let listed = first.list_mailboxes().await?;
        let entries: Vec<MailboxEntry> = listed
            .into_iter()
            .filter(|e| is_own(e.name.as_str(), &foreign))
            .collect();
        if !entries
            .iter()
            .any(|e| e.name.as_str().eq_ignore_ascii_case("INBOX") && e.is_selectable())
        {
            return Err(SnapshotError::NoInbox(user.to_string()));
        }
        debug!(user, folders = entries.len(), "listed folders");
        let (folders, collections, writers) = self.take(user, first, entries, progress).await?;
        let previous = {
            let (repo, user) = (self.store.clone(), user.to_string());
            off_thread(move || repo.index().generations(&user))
                .await?
                .pop()
        };
        let partial = progress
            .partial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(previous) = previous {
            for w in drops(&previous, &folders, &collections, partial.is_empty()) {
                progress.warn(w);
            }
        }
        let point = PointParts {
            user: user.to_string(),
            taken_at,
            namespace,
            folders,
            collections,
            writers,
            partial,
        };
        let repo = self.store.clone();
        let (generation, new_blobs) = off_thread(move || write_point(&repo, point)).await?;
        info!(
            user,
            generation = %generation.id,
            folders = generation.mail.folders,
            messages = generation.mail.messages,
            downloaded = progress.downloaded.load(Ordering::Relaxed),
            "restore point taken"
        );
        Ok(SnapshotOutcome {
            generation,
            downloaded: progress.downloaded.load(Ordering::Relaxed),
            bytes_downloaded: progress.bytes.load(Ordering::Relaxed),
            items_downloaded: progress.items_downloaded.load(Ordering::Relaxed),
            new_blobs,
        })
    }

    /// Snapshots every folder over a pool of connections (`first` is one
    /// of them) and the DAV collections alongside; returns the folder
    /// manifests in listing order, the collection manifests and the writers
    /// whose packs hold what was downloaded.
    async fn take(
        &self,
        user: &str,
        first: ImapConnection,
        entries: Vec<MailboxEntry>,
        progress: &Progress,
    ) -> Result<
        (
            Vec<FolderManifest>,
            Vec<CollectionManifest>,
            Vec<BlobWriter>,
        ),
        SnapshotError,
    > {
        let (previous, previous_collections) = {
            let (repo, user) = (self.store.clone(), user.to_string());
            let (previous, warnings) = off_thread(move || previous_point(&repo, &user)).await?;
            for w in warnings {
                progress.warn(w);
            }
            previous
        };
        let work: VecDeque<(usize, MailboxEntry)> = entries.into_iter().enumerate().collect();
        let work = Arc::new(Mutex::new(work));
        let results: Arc<Mutex<Vec<(usize, FolderManifest)>>> = Arc::default();
        let workers = self.connections.min(work_len(&work)).max(1);
        let mut conns = vec![Some(first)];
        conns.resize_with(workers, || None);
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|conn| {
                let writer = self.store.writer();
                self.worker(
                    user,
                    conn,
                    work.clone(),
                    results.clone(),
                    &previous,
                    writer,
                    progress,
                )
            })
            .collect();
        let mut dav_writer = self.store.writer();
        let dav = async {
            match &self.dav {
                Some(client) => {
                    let previous = &previous_collections;
                    dav::snapshot_collections(client, user, previous, &mut dav_writer, progress)
                        .await
                }
                None => Ok(Vec::new()),
            }
        };
        let (mail_results, collections) = tokio::join!(futures_util::future::join_all(tasks), dav);
        let mut writers = mail_results.into_iter().collect::<Result<Vec<_>, _>>()?;
        let collections = match collections {
            Ok(c) => c,
            // The DAV server is down: the mail point is still taken, and
            // says it lacks the calendars and contacts.
            Err(SnapshotError::Dav(e)) if e.code() == ErrorCode::DavServerDown => {
                progress.warn(format!(
                    "the calendar and contact server is down ({e}): this point holds the mail only"
                ));
                progress
                    .partial
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push("dav".into());
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        writers.push(dav_writer);
        let mut folders = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
        folders.sort_by_key(|(i, _)| *i);
        Ok((
            folders.into_iter().map(|(_, f)| f).collect(),
            collections,
            writers,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn worker(
        &self,
        user: &str,
        conn: Option<ImapConnection>,
        work: Arc<Mutex<VecDeque<(usize, MailboxEntry)>>>,
        results: Arc<Mutex<Vec<(usize, FolderManifest)>>>,
        previous: &HashMap<String, FolderManifest>,
        mut writer: BlobWriter,
        progress: &Progress,
    ) -> Result<BlobWriter, SnapshotError> {
        let mut conn = match conn {
            Some(c) => c,
            None => {
                if work_len(&work) == 0 {
                    return Ok(writer);
                }
                ImapConnection::open(&self.endpoint, user).await?
            }
        };
        loop {
            progress.check_stop()?;
            let next = work.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            let Some((i, entry)) = next else { break };
            let prev = previous.get(entry.name.as_str());
            let mut attempt = 0;
            let folder = loop {
                match imap::snapshot_folder(
                    &mut conn,
                    &entry,
                    prev,
                    &self.store,
                    &mut writer,
                    progress,
                )
                .await
                {
                    Ok(f) => break f,
                    // A dropped connection or a server hiccup: a new
                    // connection, and the folder again (what was stored is
                    // deduplicated), a few times with backoff.
                    Err(SnapshotError::Imap(e)) if is_retryable(&e) && attempt < RETRIES => {
                        attempt += 1;
                        tracing::warn!(user, folder = %entry.name.as_str(), error = %e, attempt, "retrying a folder on a new connection");
                        tokio::time::sleep(backoff(attempt)).await;
                        conn = ImapConnection::open(&self.endpoint, user).await?;
                    }
                    Err(e) => return Err(e),
                }
            };
            results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((i, folder));
        }
        let _ = conn.logout().await;
        Ok(writer)
    }
}

/// What a point lost against the previous one that looks like a change of
/// rights or of mailbox rather than the user's doing: every calendar or
/// every address book gone, or more than half of the folders.
fn drops(
    previous: &Generation,
    folders: &[FolderManifest],
    collections: &[CollectionManifest],
    dav_read: bool,
) -> Vec<String> {
    use crate::protocol::dav::CollectionKind;
    let mut out = Vec::new();
    let count = |kind| collections.iter().filter(|c| c.kind == kind).count() as u64;
    for (kind, before, what) in [
        (
            CollectionKind::Calendar,
            previous.calendars.collections,
            "calendars",
        ),
        (
            CollectionKind::Addressbook,
            previous.contacts.collections,
            "address books",
        ),
    ] {
        if dav_read && before > 0 && count(kind) == 0 {
            out.push(format!(
                "the previous point {} had {before} {what} and this one has none: check the DAV account's rights",
                previous.id
            ));
        }
    }
    let now = folders.len() as u64;
    if previous.mail.folders >= 4 && now * 2 < previous.mail.folders {
        out.push(format!(
            "the previous point {} had {} folders and this one has {now}: more than half are gone",
            previous.id, previous.mail.folders
        ));
    }
    out
}

/// The personal namespace the server announces (prefix and separator),
/// and the prefixes of the others (other users', shared): what is there
/// is not the user's own data and never goes into their points.
async fn personal_namespace(
    conn: &mut ImapConnection,
) -> Result<(Namespace, Vec<String>), SnapshotError> {
    let namespace = conn.namespace().await?;
    let personal = namespace.personal.first();
    let foreign = namespace
        .other_users
        .iter()
        .chain(&namespace.shared)
        .map(|n| n.prefix.as_str().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    Ok((
        Namespace {
            prefix: personal
                .map(|n| n.prefix.as_str().to_string())
                .unwrap_or_default(),
            separator: personal.and_then(|n| n.delimiter),
        },
        foreign,
    ))
}

/// True when a listed folder is in the user's own namespace: not under (nor
/// the root of) another user's or a shared namespace.
fn is_own(name: &str, foreign: &[String]) -> bool {
    !foreign.iter().any(|prefix| {
        name.starts_with(prefix.as_str())
            || prefix
                .strip_suffix(|c: char| !c.is_alphanumeric())
                .is_some_and(|root| name == root)
    })
}

/// What a snapshot took, before it becomes a point.
struct PointParts {
    user: String,
    taken_at: Timestamp,
    namespace: Namespace,
    folders: Vec<FolderManifest>,
    collections: Vec<CollectionManifest>,
    writers: Vec<BlobWriter>,
    partial: Vec<String>,
}

/// Writes the point (blocking: call it off the async threads): the folder
/// and collection manifests and the root, then every pack durable, then the
/// one index commit that makes the point visible. Returns the generation and
/// the number of new blobs.
fn write_point(repo: &Repository, p: PointParts) -> Result<(Generation, u64), SnapshotError> {
    let mut writer = repo.writer();
    let mut refs = Vec::with_capacity(p.folders.len());
    let mut mail = MailCounts::default();
    for f in &p.folders {
        let (id, _) = writer.put_kind(&manifest::encode(f), BlobKind::Manifest)?;
        refs.push(FolderRef {
            name: f.name.clone(),
            manifest: id,
        });
        mail.folders += 1;
        mail.messages += f.messages;
        mail.bytes += f.bytes;
    }
    let mut calendars = crate::manifest::CollectionCounts::default();
    let mut contacts = crate::manifest::CollectionCounts::default();
    let mut collection_refs = Vec::with_capacity(p.collections.len());
    for c in &p.collections {
        let counts = match c.kind {
            crate::protocol::dav::CollectionKind::Calendar => &mut calendars,
            crate::protocol::dav::CollectionKind::Addressbook => &mut contacts,
        };
        counts.collections += 1;
        counts.items += c.items.len() as u64;
        let (id, _) = writer.put_kind(&manifest::encode(c), BlobKind::Manifest)?;
        collection_refs.push(id);
    }
    let root = RootManifest {
        format: MANIFEST_FORMAT,
        id: new_generation_id(repo, &p.user, p.taken_at)?,
        user: p.user,
        taken_at: p.taken_at,
        namespace: p.namespace,
        mail,
        calendars,
        contacts,
        folders: refs,
        collections: collection_refs,
        mailbox: p
            .folders
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case("INBOX") && f.selectable)
            .map(|f| crate::manifest::MailboxIdentity::of_inbox(f.uid_validity)),
        partial: p.partial,
    };
    let (root_id, _) = writer.put_kind(&manifest::encode(&root), BlobKind::Root)?;
    // Durable blobs first (every worker's packs, then the manifests'),
    // then the index commit that makes the point visible.
    let mut new_blobs = writer.blobs_written();
    let mut locations = Vec::new();
    for mut w in p.writers {
        locations.extend(w.finish_pack()?);
        new_blobs += w.blobs_written();
    }
    locations.extend(writer.finish_pack()?);
    let generation = root.generation(root_id);
    repo.index().commit_generation(&locations, &generation)?;
    Ok((generation, new_blobs))
}

/// The folder manifests of the user's newest point, by name, and its
/// collection manifests, by [`dav::collection_key`]; empty for a first point.
type PreviousPoint = (
    HashMap<String, FolderManifest>,
    HashMap<String, CollectionManifest>,
);

/// What the user's newest point holds, read once (blocking).
///
/// Damage there never stops a snapshot: a manifest that cannot be read is
/// left out (its folder or collection is read again in full, with a
/// warning), and a folder or collection holding a blob found damaged since
/// is marked changed, so that blob is fetched again.
fn previous_point(
    repo: &Repository,
    user: &str,
) -> Result<(PreviousPoint, Vec<String>), SnapshotError> {
    let mut warnings = Vec::new();
    let Some(last) = repo.index().generations(user)?.pop() else {
        return Ok(Default::default());
    };
    let root: RootManifest = match read_manifest(repo, &last.root) {
        Ok(root) => root,
        Err(e) if e.is_damage() => {
            warnings.push(format!(
                "the previous point {} cannot be read ({e}): every folder is read again in full",
                last.id
            ));
            return Ok((Default::default(), warnings));
        }
        Err(e) => return Err(e),
    };
    let damaged = repo.index().damaged_blobs()?;
    let mut folders = HashMap::new();
    for f in &root.folders {
        match read_manifest::<FolderManifest>(repo, &f.manifest) {
            Ok(mut m) => {
                if !damaged.is_empty() && holds_damage(repo, &m, &damaged) {
                    // Not unchanged, and no CHANGEDSINCE shortcut: the
                    // damaged messages are left out of what is carried
                    // over (see `imap::load_entries`), so they download.
                    m.highest_modseq = None;
                    m.uid_next = 0;
                }
                folders.insert(m.name.clone(), m);
            }
            Err(e) if e.is_damage() => warnings.push(format!(
                "folder {:?} of the previous point cannot be read ({e}): it is read again in full",
                f.name
            )),
            Err(e) => return Err(e),
        }
    }
    let mut collections = HashMap::new();
    for id in &root.collections {
        let mut c: CollectionManifest = match read_manifest(repo, id) {
            Ok(c) => c,
            Err(e) if e.is_damage() => {
                warnings.push(format!(
                    "a collection of the previous point cannot be read ({e}): it is read again in full"
                ));
                continue;
            }
            Err(e) => return Err(e),
        };
        if c.items.iter().any(|i| damaged.contains(&i.blob)) {
            c.items.retain(|i| !damaged.contains(&i.blob));
            c.sync_token = None;
            c.ctag = None;
        }
        if let Ok(url) = url::Url::parse("http://x/").and_then(|b| b.join(&c.href)) {
            collections.insert(dav::collection_key(&url), c);
        }
    }
    Ok(((folders, collections), warnings))
}

/// True when a folder of the previous point refers to a damaged blob (or
/// cannot be listed, which [`imap::load_entries`] then treats as empty).
fn holds_damage(
    repo: &Repository,
    folder: &FolderManifest,
    damaged: &std::collections::HashSet<BlobId>,
) -> bool {
    folder_messages(repo, folder).map_or(true, |entries| {
        entries.iter().any(|e| damaged.contains(&e.blob))
    })
}

/// The id of a point of `user` taken at `t`: `n` > 1 when one exists already.
fn new_generation_id(
    repo: &Repository,
    user: &str,
    t: Timestamp,
) -> Result<GenerationId, SnapshotError> {
    let index = repo.index();
    let mut n = 1;
    loop {
        let id = GenerationId::new(t, n);
        if index.generation(user, &id)?.is_none() {
            return Ok(id);
        }
        n += 1;
    }
}

/// Worth another try on a new connection: a transient error, or Dovecot's
/// `NO [ALREADYEXISTS]` to EXAMINE/SELECT of an auto-created special-use
/// folder that another connection is creating at the same moment.
pub fn is_retryable(e: &ImapError) -> bool {
    e.is_transient()
        || e.response_code() == Some(&crate::protocol::imap::ResponseCode::AlreadyExists)
}

/// Attempts after the first for a folder whose connection failed.
pub const RETRIES: u32 = 3;

/// Wait before retry `attempt` (1-based): 0.5 s, 1 s, 2 s…
pub fn backoff(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(250 << attempt.min(6))
}

fn work_len(work: &Mutex<VecDeque<(usize, MailboxEntry)>>) -> usize {
    work.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// Reads and decodes a manifest blob.
pub fn read_manifest<T: serde::de::DeserializeOwned>(
    store: &Repository,
    id: &BlobId,
) -> Result<T, SnapshotError> {
    manifest::decode(&store.get(id)?).map_err(|e| SnapshotError::Manifest {
        blob: *id,
        why: e.to_string(),
    })
}

/// Every message entry of a folder manifest, in UID order.
pub fn folder_messages(
    store: &Repository,
    folder: &FolderManifest,
) -> Result<Vec<crate::manifest::MessageEntry>, SnapshotError> {
    let mut out = Vec::with_capacity(folder.messages as usize);
    for g in &folder.groups {
        let group: crate::manifest::ChunkGroup = read_manifest(store, g)?;
        for c in &group.chunks {
            let chunk: crate::manifest::MessageChunk = read_manifest(store, c)?;
            out.extend(chunk.messages);
        }
    }
    Ok(out)
}
