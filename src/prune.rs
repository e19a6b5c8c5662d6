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

use crate::blob::{BlobId, BlobKind, BlobLocation, PackId};
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
    /// Damage found, each naming the pack and the offset: the packs
    /// concerned were kept as they are.
    pub damaged: Vec<String>,
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
    /// The store is damaged: every pack with damage was kept, the rest was
    /// reclaimed.
    #[error("{}", damage_summary(.0))]
    Damaged(Box<PruneReport>),
}

impl PruneError {
    /// True when the prune stopped at (or around) damage in the store.
    pub fn is_damage(&self) -> bool {
        match self {
            PruneError::Damaged(_) | PruneError::Manifest(_) => true,
            PruneError::Store(e) => e.is_damage(),
            _ => false,
        }
    }
}

fn damage_summary(report: &PruneReport) -> String {
    let more = match report.damaged.len() {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    format!(
        "the store is damaged, so the packs concerned were kept: {}{more}; \
         run `mailrestore verify --read-data`",
        report.damaged.first().map_or("", String::as_str)
    )
}

impl From<RepoError> for PruneError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Store(e) => PruneError::Store(e),
            RepoError::Index(e) => PruneError::Index(e),
        }
    }
}

/// [`prune`] with the configuration's policy, having released the state
/// directory's reserve (see [`crate::state::RESERVE_BYTES`]) so that it
/// runs even on a full disk; the reserve is taken back afterwards.
pub fn prune_with_reserve(
    store: &Repository,
    config: &crate::config::Config,
    now: Timestamp,
    in_use: &HashSet<(String, String)>,
    dry_run: bool,
) -> Result<PruneReport, PruneError> {
    let dir = &config.state_dir;
    if !dry_run && let Err(e) = crate::state::release_reserve(dir) {
        tracing::warn!(error = %e, "cannot release the state directory's reserve");
    }
    let result = prune(
        store,
        &config.retention,
        &config.timezone,
        now,
        in_use,
        dry_run,
    );
    if let Err(e) = crate::state::hold_reserve(dir) {
        tracing::warn!(error = %e, "the state directory's reserve stays released (the disk is still full)");
    }
    result
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
    if !report.damaged.is_empty() {
        tracing::error!(damaged = ?report.damaged, "prune kept damaged packs");
        return Err(PruneError::Damaged(Box::new(report)));
    }
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
                complete: g.partial.is_empty(),
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
                    crate::failpoint::hit("prune.dropped");
                }
            }
        }
    }
    Ok(kept)
}

/// Deletes the packs that hold no live blob and rewrites those mostly dead
/// (or holding a dropped point's root); returns the bytes the packs take
/// after (estimated in a dry run). A pack it cannot read whole is kept as
/// it is and noted in the report's `damaged`.
fn reclaim(
    store: &Repository,
    live: &HashSet<BlobId>,
    report: &mut PruneReport,
) -> Result<u64, PruneError> {
    let mut per_pack: HashMap<PackId, HashMap<BlobId, BlobLocation>> = HashMap::new();
    for (id, loc) in store.index().blobs()? {
        per_pack.entry(loc.pack).or_default().insert(id, loc);
    }
    // Deletes first, rewrites after: on a full disk, the space deleted
    // packs free is what the rewrites' new packs need.
    let mut bytes_after = 0;
    let mut rewrites = Vec::new();
    for (pack_id, path) in store.packs()? {
        // A blob counts here only if the index points at this copy of it.
        let indexed = per_pack.remove(&pack_id).unwrap_or_default();
        match plan_pack(pack_id, &path, &indexed, live, report)? {
            Action::Keep(len) => bytes_after += len,
            Action::Delete => {
                if !report.dry_run {
                    delete_pack(store, &path, indexed.keys().copied().collect())?;
                }
                report.packs_deleted += 1;
            }
            Action::Rewrite { live_here, len } => rewrites.push((path, indexed, live_here, len)),
        }
    }
    for (path, indexed, live_here, len) in rewrites {
        let live_bytes: u64 = live_here
            .iter()
            .map(|e| e.location.stored_len + pack::ENTRY_HEADER)
            .sum();
        if report.dry_run || rewrite(store, &path, &live_here, &indexed, live, report)? {
            report.packs_rewritten += 1;
            bytes_after += live_bytes + pack::FILE_MAGIC.len() as u64;
        } else {
            bytes_after += len;
        }
    }
    // Locations in packs that are gone: a kept point refers to them, so
    // their absence is damage, never a reason to delete.
    for (pack_id, blobs) in per_pack {
        if blobs.keys().any(|id| live.contains(id)) {
            report.damaged.push(format!(
                "pack {} holds blobs of kept points but is missing",
                pack_id.path(store.root()).display()
            ));
        }
    }
    Ok(bytes_after)
}

/// What prune does with one pack.
enum Action {
    /// Nothing (sound and mostly live, or damaged): its bytes stay.
    Keep(u64),
    /// Every blob in it is dead.
    Delete,
    /// Mostly dead, or holding a dropped point's root: its live blobs move.
    Rewrite {
        live_here: Vec<pack::ScannedEntry>,
        len: u64,
    },
}

/// Decides what becomes of one pack; damage keeps it and is reported.
fn plan_pack(
    pack_id: PackId,
    path: &Path,
    indexed: &HashMap<BlobId, BlobLocation>,
    live: &HashSet<BlobId>,
    report: &mut PruneReport,
) -> Result<Action, PruneError> {
    let scan = match pack::scan(path, pack_id) {
        Ok(scan) => scan,
        Err(e) if e.is_damage() => {
            report.damaged.push(e.to_string());
            return Ok(Action::Keep(file_size(path)));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(why) = unreadable(&scan, indexed) {
        report
            .damaged
            .push(format!("pack {} is damaged: {why}", path.display()));
        return Ok(Action::Keep(scan.len));
    }
    let live_here: Vec<pack::ScannedEntry> = scan
        .entries
        .iter()
        .filter(|e| indexed.contains_key(&e.id) && live.contains(&e.id))
        .copied()
        .collect();
    if live_here.is_empty() {
        return Ok(Action::Delete);
    }
    let live_bytes: u64 = live_here
        .iter()
        .map(|e| e.location.stored_len + pack::ENTRY_HEADER)
        .sum();
    let dead_root = scan
        .entries
        .iter()
        .any(|e| e.kind == BlobKind::Root && !live.contains(&e.id));
    let dead_share = 1.0 - live_bytes as f64 / scan.len.max(1) as f64;
    if dead_share <= REPACK_DEAD_SHARE && !dead_root {
        return Ok(Action::Keep(scan.len));
    }
    Ok(Action::Rewrite {
        live_here,
        len: scan.len,
    })
}

/// Why a pack cannot be reclaimed safely: a region that is not entries, or
/// an indexed blob whose location the scan does not find as it is.
fn unreadable(scan: &pack::PackScan, indexed: &HashMap<BlobId, BlobLocation>) -> Option<String> {
    if let Some(d) = scan.damaged.first() {
        return Some(format!(
            "bytes {}..{} of {} are not readable entries{}",
            d.offset,
            d.end,
            scan.len,
            match scan.damaged.len() {
                1 => String::new(),
                n => format!(" (and {} more regions)", n - 1),
            }
        ));
    }
    let found: HashMap<BlobId, &BlobLocation> =
        scan.entries.iter().map(|e| (e.id, &e.location)).collect();
    indexed.iter().find_map(|(id, loc)| {
        (found.get(id) != Some(&loc)).then(|| {
            format!(
                "the index places blob {id} at offset {}, where the pack has no such entry",
                loc.offset
            )
        })
    })
}

/// Copies the live blobs of a pack into a new durable pack and deletes the
/// old one; keeps the old one (and returns false) when a live blob does not
/// read back sound.
fn rewrite(
    store: &Repository,
    path: &Path,
    live_here: &[pack::ScannedEntry],
    indexed: &HashMap<BlobId, BlobLocation>,
    live: &HashSet<BlobId>,
    report: &mut PruneReport,
) -> Result<bool, PruneError> {
    let mut writer = store.writer();
    let mut sound = true;
    for e in live_here {
        match store.read_at(&e.id, &e.location) {
            Ok(bytes) => match writer.put_forced(&bytes, e.kind) {
                Ok(_) => {}
                // The disk is full: this pack stays as it is (the new one
                // is dropped with the writer), the next prune tries again.
                Err(err) if err.is_disk_full() => {
                    tracing::warn!(pack = %path.display(), "no space to rewrite a pack; kept as it is");
                    return Ok(false);
                }
                Err(err) => return Err(err.into()),
            },
            Err(err) if err.is_damage() => {
                report.damaged.push(format!(
                    "pack {} is damaged at offset {}: {err}",
                    path.display(),
                    e.location.offset
                ));
                store.index().mark_damaged(&[(e.id, err.to_string())])?;
                sound = false;
            }
            Err(err) => return Err(err.into()),
        }
    }
    // The sound copies move either way; the old pack goes only when all did.
    match writer.flush() {
        Err(err) if err.is_disk_full() => {
            tracing::warn!(pack = %path.display(), "no space to rewrite a pack; kept as it is");
            return Ok(false);
        }
        other => other?,
    }
    crate::failpoint::hit("prune.rewritten");
    if sound {
        let dead = indexed.keys().filter(|id| !live.contains(id)).copied();
        delete_pack(store, path, dead.collect())?;
    }
    Ok(sound)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Forgets the `dead` blobs' locations, then deletes the pack durably.
fn delete_pack(store: &Repository, path: &Path, dead: Vec<BlobId>) -> Result<(), PruneError> {
    store.index().remove_blobs(&dead)?;
    std::fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
    crate::failpoint::hit("prune.deleted");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::{messages, open, point_at};

    const DAY: i64 = 86_400;
    const T0: i64 = 1_767_225_600;

    /// Keeps the newest point only.
    fn newest_only() -> RetentionConfig {
        RetentionConfig {
            hourly: 1,
            daily: 0,
            weekly: 0,
            monthly: 0,
        }
    }

    /// Two points: an old one of `messages()` (dropped by `newest_only`)
    /// and a new one of its first 15 messages (kept). Every blob lies in
    /// the first point's pack, which a sound prune would rewrite.
    fn two_points(store: &Repository) -> (Vec<Vec<u8>>, GenerationIdPair) {
        let msgs = messages();
        let old = point_at(store, &msgs, T0);
        let new = point_at(store, &msgs[..15], T0 + DAY);
        (msgs, (old.to_string(), new.to_string()))
    }

    type GenerationIdPair = (String, String);

    fn prune_now(store: &Repository) -> Result<PruneReport, PruneError> {
        let now = crate::time::from_second(T0 + DAY + 60).unwrap();
        prune(
            store,
            &newest_only(),
            &crate::time::UTC,
            now,
            &HashSet::new(),
            false,
        )
    }

    /// Flips one byte at `at` in the pack holding `blob`; returns its path.
    fn flip(store: &Repository, blob: &BlobId, at: u64) -> std::path::PathBuf {
        let loc = store.index().blob(blob).unwrap().unwrap();
        let path = loc.pack.path(store.root());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(loc.offset + at) as usize] ^= 0x5a;
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_sound_store_prunes_the_dropped_point_and_keeps_the_other_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (msgs, (_, new)) = two_points(&store);
        let report = prune_now(&store).unwrap();
        assert_eq!(report.removed.len(), 1);
        assert!(
            report.packs_rewritten + report.packs_deleted >= 1,
            "{report:?}"
        );
        for m in &msgs[..15] {
            assert_eq!(&store.get(&BlobId::of(m)).unwrap(), m);
        }
        let gens = store.index().all_generations().unwrap();
        assert_eq!(gens.len(), 1);
        assert_eq!(gens[0].id.to_string(), new);
        assert!(crate::verify::verify(&store, true).unwrap().is_clean());
    }

    /// The first round's bug: one damaged entry header made the scan stop,
    /// and prune deleted or rewrote the pack from what it had scanned.
    #[test]
    fn one_damaged_byte_anywhere_in_an_entry_header_deletes_nothing_a_kept_point_uses() {
        // Each field of the header of the first and of a middle message.
        for victim in [0usize, 7] {
            for at in [0u64, 4, 20, 36, 44, 52, 53, 60] {
                let dir = tempfile::tempdir().unwrap();
                let store = open(dir.path());
                let (msgs, _) = two_points(&store);
                let blob = BlobId::of(&msgs[victim]);
                let path = flip(&store, &blob, at);
                let damaged_read = store.get(&blob).is_err();
                let result = prune_now(&store);
                let what = format!("message {victim}, header byte {at}: {result:?}");
                match &result {
                    Err(e @ PruneError::Damaged(report)) => {
                        assert!(e.is_damage(), "{what}");
                        assert!(path.exists(), "the damaged pack is kept: {what}");
                        assert!(
                            report
                                .damaged
                                .iter()
                                .any(|d| d.contains(&path.display().to_string())
                                    && d.contains("offset")
                                    || d.contains("bytes")),
                            "the report names pack and offset: {what}"
                        );
                    }
                    // Damage the scan cannot see (a flipped id byte of a
                    // blob no point uses any more) may prune soundly.
                    Ok(_) => assert!(!damaged_read || victim >= 15, "{what}"),
                    Err(e) => panic!("{what}: {e}"),
                }
                for m in &msgs[..15] {
                    let id = BlobId::of(m);
                    if id != blob {
                        assert_eq!(&store.get(&id).unwrap(), m, "{what}");
                    }
                }
                assert_eq!(store.index().all_generations().unwrap().len(), 1, "{what}");
            }
        }
    }

    #[test]
    fn a_damaged_blob_of_a_kept_point_keeps_its_pack_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (msgs, _) = two_points(&store);
        let blob = BlobId::of(&msgs[3]);
        let path = flip(&store, &blob, pack::ENTRY_HEADER + 2);
        let err = prune_now(&store).unwrap_err();
        assert!(matches!(err, PruneError::Damaged(_)), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(path.exists());
        assert!(store.index().is_damaged(&blob).unwrap());
        for m in msgs[..15].iter().filter(|m| BlobId::of(m) != blob) {
            assert_eq!(&store.get(&BlobId::of(m)).unwrap(), m);
        }
    }

    #[test]
    fn an_unreadable_manifest_of_a_kept_point_reclaims_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (msgs, (_, new)) = two_points(&store);
        let g = store
            .index()
            .all_generations()
            .unwrap()
            .into_iter()
            .find(|g| g.id.to_string() == new)
            .unwrap();
        let before = store.size_on_disk().unwrap();
        flip(&store, &g.root, pack::ENTRY_HEADER + 5);
        let err = prune_now(&store).unwrap_err();
        assert!(err.is_damage(), "{err}");
        assert_eq!(store.size_on_disk().unwrap(), before, "nothing reclaimed");
        for m in &msgs {
            assert_eq!(&store.get(&BlobId::of(m)).unwrap(), m);
        }
    }
}
