//! `mailrestore verify [--read-data] [--repair]`: checks that every restore
//! point can be restored, and rebuilds the index from the store.
//!
//! Without `--read-data` every manifest is read (and so re-hashed) and every
//! message blob is checked to have a location whose pack exists. With it,
//! every pack is read whole and every blob re-hashed. `--repair` first
//! rebuilds the blob locations and the generations from the packs alone: the
//! store is the system of record.

use std::collections::{BTreeMap, HashSet};

use crate::index::Index;
use crate::manifest::{self, ChunkGroup, FolderManifest, MessageChunk, RootManifest};
use crate::store::{BlobId, BlobKind, Store, StoreError, pack};

/// What a check found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Restore points checked.
    pub generations: u64,
    /// Distinct blobs referenced by them.
    pub blobs_referenced: u64,
    /// Blobs re-hashed (with `--read-data`).
    pub blobs_read: u64,
    /// Bytes re-hashed.
    pub bytes_read: u64,
    /// Damaged points: `user`, `point`, what is wrong.
    pub damaged: Vec<Damage>,
    /// Blobs found bad while reading packs.
    pub bad_blobs: Vec<String>,
}

/// One damaged restore point.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Damage {
    /// The mailbox.
    pub user: String,
    /// The point.
    pub point: String,
    /// The first problems found (at most 10).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.bad_blobs.is_empty()
    }
}

/// What a rebuild found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RepairReport {
    /// Packs scanned.
    pub packs: u64,
    /// Blob locations recorded.
    pub blobs: u64,
    /// Restore points recovered.
    pub generations: u64,
    /// Root manifests that could not be read.
    pub unreadable_roots: Vec<String>,
}

/// Rebuilds the blob locations and the generations from the packs.
pub fn rebuild_index(store: &Store) -> Result<RepairReport, StoreError> {
    let index = store.index();
    index.clear_store_records()?;
    let mut report = RepairReport::default();
    let mut roots = Vec::new();
    for (id, path) in store.packs()? {
        let entries = pack::scan(&path, id)?;
        report.packs += 1;
        report.blobs += entries.len() as u64;
        let locations: Vec<_> = entries.iter().map(|e| (e.id, e.location)).collect();
        index.put_blobs(&locations)?;
        roots.extend(
            entries
                .iter()
                .filter(|e| e.kind == BlobKind::Root)
                .map(|e| e.id),
        );
    }
    for root in roots {
        match store
            .get(&root)
            .map(|b| manifest::decode::<RootManifest>(&b))
        {
            Ok(Ok(m)) => {
                index.put_generation(&m.generation(root))?;
                report.generations += 1;
            }
            Ok(Err(e)) => report.unreadable_roots.push(format!("{root}: {e}")),
            Err(e) => report.unreadable_roots.push(format!("{root}: {e}")),
        }
    }
    Ok(report)
}

/// Checks every restore point (and, with `read_data`, every blob).
pub fn verify(store: &Store, read_data: bool) -> Result<VerifyReport, StoreError> {
    let index = store.index();
    let mut report = VerifyReport::default();
    let mut bad: HashSet<BlobId> = HashSet::new();
    if read_data {
        for (id, path) in store.packs()? {
            for e in pack::scan(&path, id)? {
                report.blobs_read += 1;
                report.bytes_read += e.location.raw_len;
                if let Err(err) = store.read_at(&e.id, &e.location) {
                    bad.insert(e.id);
                    report.bad_blobs.push(err.to_string());
                }
            }
        }
    }
    let mut referenced: HashSet<BlobId> = HashSet::new();
    let mut packs_present: BTreeMap<crate::store::PackId, bool> = BTreeMap::new();
    for g in index.all_generations()? {
        report.generations += 1;
        let mut problems = Vec::new();
        check_generation(
            store,
            index,
            &g.root,
            &bad,
            &mut referenced,
            &mut packs_present,
            &mut problems,
        );
        if !problems.is_empty() {
            problems.truncate(10);
            report.damaged.push(Damage {
                user: g.user.clone(),
                point: g.id.to_string(),
                problems,
            });
        }
    }
    report.blobs_referenced = referenced.len() as u64;
    Ok(report)
}

fn check_generation(
    store: &Store,
    index: &Index,
    root: &BlobId,
    bad: &HashSet<BlobId>,
    referenced: &mut HashSet<BlobId>,
    packs_present: &mut BTreeMap<crate::store::PackId, bool>,
    problems: &mut Vec<String>,
) {
    let mut read_manifest =
        |id: &BlobId, what: &str, problems: &mut Vec<String>| -> Option<Vec<u8>> {
            referenced.insert(*id);
            match store.get(id) {
                Ok(b) => Some(b),
                Err(e) => {
                    problems.push(format!("{what}: {e}"));
                    None
                }
            }
        };
    let Some(root_bytes) = read_manifest(root, "root manifest", problems) else {
        return;
    };
    let root: RootManifest = match manifest::decode(&root_bytes) {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("root manifest {root}: {e}"));
            return;
        }
    };
    let mut messages = Vec::new();
    for f in &root.folders {
        let Some(b) = read_manifest(&f.manifest, &format!("folder {:?}", f.name), problems) else {
            continue;
        };
        let folder: FolderManifest = match manifest::decode(&b) {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("folder {:?}: {e}", f.name));
                continue;
            }
        };
        for g in &folder.groups {
            let Some(b) = read_manifest(g, &format!("folder {:?} chunk group", f.name), problems)
            else {
                continue;
            };
            let group: ChunkGroup = match manifest::decode(&b) {
                Ok(group) => group,
                Err(e) => {
                    problems.push(format!("folder {:?} chunk group {g}: {e}", f.name));
                    continue;
                }
            };
            for c in &group.chunks {
                let Some(b) = read_manifest(c, &format!("folder {:?} chunk", f.name), problems)
                else {
                    continue;
                };
                match manifest::decode::<MessageChunk>(&b) {
                    Ok(chunk) => {
                        messages.extend(chunk.messages.into_iter().map(|m| (f.name.clone(), m)))
                    }
                    Err(e) => problems.push(format!("folder {:?} chunk {c}: {e}", f.name)),
                }
            }
        }
    }
    for (folder, m) in messages {
        referenced.insert(m.blob);
        let present = match index.blob(&m.blob) {
            Ok(Some(loc)) => *packs_present
                .entry(loc.pack)
                .or_insert_with(|| loc.pack.path(store.root()).exists()),
            Ok(None) => false,
            Err(e) => {
                problems.push(format!("index: {e}"));
                false
            }
        };
        if !present {
            problems.push(format!(
                "folder {folder:?} UID {}: blob {} is missing",
                m.uid, m.blob
            ));
        } else if bad.contains(&m.blob) {
            problems.push(format!(
                "folder {folder:?} UID {}: blob {} is damaged",
                m.uid, m.blob
            ));
        }
    }
}
