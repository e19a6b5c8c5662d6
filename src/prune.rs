//! Prune: removes the restore points the retention policy drops, and
//! reclaims the space of blobs no remaining point uses.
//!
//! Crash-safe at every step:
//! 1. dropped generations leave the index (each removal flushed) — a point
//!    is either listed and whole, or gone;
//! 2. the live set is computed from the remaining generations;
//! 3. a pack whose blobs are all dead is deleted after its index entries
//!    are; a pack partly dead (or holding a dead root manifest, which
//!    `verify --repair` would otherwise resurrect) is rewritten: its live
//!    blobs go into a new durable pack, the index points at it, and only
//!    then is the old pack deleted. A pack no index entry points to is an
//!    orphan of an interrupted prune and is deleted.
//!
//! Killed at any step, every remaining point stays restorable and the next
//! prune finishes the work. Prune must not run while a snapshot writes (a
//! blob it deduplicates against could vanish): the daemon holds
//! [`Store::gc_lock`] for writing around it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::time::TimeZone;
use crate::time::Timestamp;
use tracing::info;

use crate::blob::{BlobId, BlobKind, PackId};
use crate::config::RetentionConfig;
use crate::manifest::{
    ChunkGroup, CollectionManifest, FolderManifest, Generation, MessageChunk, RootManifest,
};
use crate::repo::{RepoError, Repository};
use crate::retention::{self, PointRef};
use crate::snapshot::{SnapshotError, read_manifest};
use crate::store::{StoreError, pack};

/// Share of dead bytes above which a pack is rewritten.
const REPACK_DEAD_SHARE: f64 = 0.2;

/// What a prune did (or, dry, would do).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneReport {
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
}

/// Why prune stopped.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// The prune task stopped unexpectedly (the next prune finishes the work).
    #[error("prune stopped unexpectedly: {0}")]
    Interrupted(String),
    /// A remaining point's manifest cannot be read: nothing is deleted.
    #[error("a restore point cannot be read, so nothing is reclaimed: {0}")]
    Manifest(#[from] SnapshotError),
}

impl From<RepoError> for PruneError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Store(e) => PruneError::Store(e),
            RepoError::Index(e) => PruneError::Index(e),
        }
    }
}

/// Applies the policy to every user's points and reclaims space.
/// `in_use` holds `(user, point)` pairs that running restores read.
pub fn prune(
    store: &Repository,
    policy: &RetentionConfig,
    tz: &TimeZone,
    now: Timestamp,
    in_use: &HashSet<(String, String)>,
    dry_run: bool,
) -> Result<PruneReport, PruneError> {
    let mut report = PruneReport {
        dry_run,
        bytes_before: store.size_on_disk()?,
        ..PruneReport::default()
    };
    let kept = drop_points(store, policy, tz, now, in_use, &mut report)?;
    report.kept = kept.len() as u64;
    let live = live_blobs(store, &kept)?;
    let bytes_after = reclaim(store, &live, &mut report)?;
    report.bytes_after = if dry_run {
        bytes_after
    } else {
        store.size_on_disk()?
    };
    info!(
        removed = report.removed.len(),
        kept = report.kept,
        packs_deleted = report.packs_deleted,
        packs_rewritten = report.packs_rewritten,
        bytes_before = report.bytes_before,
        bytes_after = report.bytes_after,
        dry_run,
        "prune done"
    );
    Ok(report)
}

/// Applies the retention policy to every user's points: removes from the
/// index those it drops (not in a dry run), lists them in the report, and
/// returns those it keeps.
fn drop_points(
    store: &Repository,
    policy: &RetentionConfig,
    tz: &TimeZone,
    now: Timestamp,
    in_use: &HashSet<(String, String)>,
    report: &mut PruneReport,
) -> Result<Vec<Generation>, PruneError> {
    let index = store.index();
    let mut by_user: BTreeMap<String, Vec<Generation>> = BTreeMap::new();
    for g in index.all_generations()? {
        by_user.entry(g.user.clone()).or_default().push(g);
    }
    let mut kept: Vec<Generation> = Vec::new();
    for (user, gens) in by_user {
        let points: Vec<PointRef> = gens
            .iter()
            .map(|g| PointRef {
                id: g.id.to_string(),
                taken_at: g.taken_at,
            })
            .collect();
        let used: HashSet<String> = in_use
            .iter()
            .filter(|(u, _)| *u == user)
            .map(|(_, p)| p.clone())
            .collect();
        let decisions = retention::plan(policy, &points, now, tz, &used);
        for (g, d) in gens.into_iter().zip(decisions) {
            if d.keep {
                kept.push(g);
            } else {
                report.removed.push(format!("{user} {}", g.id));
                if !report.dry_run {
                    index.remove_generation(&user, &g.id)?;
                }
            }
        }
    }
    Ok(kept)
}

/// Deletes the packs that hold no live blob and rewrites those mostly dead
/// (or holding a dropped point's root); returns the bytes the packs take
/// after (estimated in a dry run).
fn reclaim(
    store: &Repository,
    live: &HashSet<BlobId>,
    report: &mut PruneReport,
) -> Result<u64, PruneError> {
    let mut per_pack: HashMap<PackId, HashSet<BlobId>> = HashMap::new();
    for (id, loc) in store.index().blobs()? {
        per_pack.entry(loc.pack).or_default().insert(id);
    }
    let mut bytes_after = 0;
    for (pack_id, path) in store.packs()? {
        // A blob counts here only if the index points at this copy of it.
        let indexed = per_pack.remove(&pack_id).unwrap_or_default();
        bytes_after += reclaim_pack(store, pack_id, &path, &indexed, live, report)?;
    }
    Ok(bytes_after)
}

/// Deletes, rewrites or keeps one pack; returns its bytes after.
fn reclaim_pack(
    store: &Repository,
    pack_id: PackId,
    path: &Path,
    indexed: &HashSet<BlobId>,
    live: &HashSet<BlobId>,
    report: &mut PruneReport,
) -> Result<u64, PruneError> {
    let size = std::fs::metadata(path)
        .map_err(|e| StoreError::io(path, e))?
        .len();
    let entries = pack::scan(path, pack_id)?;
    let live_here: Vec<_> = entries
        .iter()
        .filter(|e| indexed.contains(&e.id) && live.contains(&e.id))
        .collect();
    let live_bytes: u64 = live_here
        .iter()
        .map(|e| e.location.stored_len + pack::ENTRY_HEADER)
        .sum();
    let dead_root = entries
        .iter()
        .any(|e| e.kind == BlobKind::Root && !live.contains(&e.id));
    if live_here.is_empty() {
        if !report.dry_run {
            delete_pack(store, path, indexed.iter().copied().collect())?;
        }
        report.packs_deleted += 1;
        return Ok(0);
    }
    let dead_share = 1.0 - live_bytes as f64 / size.max(1) as f64;
    if dead_share <= REPACK_DEAD_SHARE && !dead_root {
        return Ok(size);
    }
    if !report.dry_run {
        let mut writer = store.writer();
        for e in &live_here {
            let bytes = store.read_at(&e.id, &e.location)?;
            writer.put_forced(&bytes, e.kind)?;
        }
        writer.flush()?;
        let dead = indexed.iter().filter(|id| !live.contains(id)).copied();
        delete_pack(store, path, dead.collect())?;
    }
    report.packs_rewritten += 1;
    Ok(live_bytes + pack::FILE_MAGIC.len() as u64)
}

/// Forgets the `dead` blobs' locations, then deletes the pack durably.
fn delete_pack(store: &Repository, path: &Path, dead: Vec<BlobId>) -> Result<(), PruneError> {
    store.index().remove_blobs(&dead)?;
    std::fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
    if let Some(dir) = path.parent() {
        pack::sync_dir(dir)?;
    }
    Ok(())
}

/// Every blob the given points use: manifests and messages.
fn live_blobs(store: &Repository, gens: &[Generation]) -> Result<HashSet<BlobId>, PruneError> {
    let mut live = HashSet::new();
    for g in gens {
        live.insert(g.root);
        let root: RootManifest = read_manifest(store, &g.root)?;
        for c in &root.collections {
            if !live.insert(*c) {
                continue; // an unchanged collection shared with a point already walked
            }
            let col: CollectionManifest = read_manifest(store, c)?;
            live.extend(col.items.iter().map(|i| i.blob));
        }
        for f in &root.folders {
            if !live.insert(f.manifest) {
                continue; // a folder manifest shared with a point already walked
            }
            let folder: FolderManifest = read_manifest(store, &f.manifest)?;
            for gid in &folder.groups {
                if !live.insert(*gid) {
                    continue;
                }
                let group: ChunkGroup = read_manifest(store, gid)?;
                for c in &group.chunks {
                    if !live.insert(*c) {
                        continue;
                    }
                    let chunk: MessageChunk = read_manifest(store, c)?;
                    live.extend(chunk.messages.iter().map(|m| m.blob));
                }
            }
        }
    }
    Ok(live)
}
