//! `mailrestore verify [--read-data] [--repair]`: checks that every restore
//! point can be restored, and rebuilds the index from the store.
//!
//! Without `--read-data` every manifest is read (and so re-hashed) and every
//! message blob is checked to have a location whose pack exists. With it,
//! every blob is re-hashed: each one the index locates, read at its location
//! (so damage to an entry header is caught too, not only damage to its
//! bytes), then every entry a front-to-back scan of the packs finds that the
//! index does not point to. `--repair` first rebuilds the blob locations and
//! the generations from the packs alone: the store is the system of record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;

use crate::blob::{BlobId, BlobKind, BlobLocation, PackId};
use crate::index::Index;
use crate::manifest::{
    self, ChunkGroup, CollectionManifest, FolderManifest, MessageChunk, RootManifest,
};
use crate::repo::{RepoError, Repository};
use crate::store::{StoreError, pack};

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
    /// Blobs (and packs) found bad while reading the store.
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
    /// Packs that could not be scanned (their blobs are not recovered).
    pub unreadable_packs: Vec<String>,
    /// Packs read in part: what follows a damaged region is recovered only
    /// where it reads back sound.
    pub damaged_regions: Vec<String>,
}

/// Rebuilds the blob locations and the generations from the packs.
pub fn rebuild_index(store: &Repository) -> Result<RepairReport, RepoError> {
    let index = store.index();
    index.clear_store_records()?;
    let mut report = RepairReport::default();
    let mut roots = Vec::new();
    for (id, path) in store.packs()? {
        // One damaged pack must not keep every other point from coming back.
        let scan = match pack::scan(&path, id) {
            Ok(scan) => scan,
            Err(e) => {
                report.unreadable_packs.push(e.to_string());
                continue;
            }
        };
        report.packs += 1;
        let entries = trusted_entries(store, &path, scan, &mut report);
        report.blobs += entries.len() as u64;
        let locations: Vec<_> = entries.iter().map(|e| (e.id, e.location)).collect();
        index.put_scanned_blobs(&locations)?;
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

/// The entries of a scanned pack a rebuild may record: all of them when
/// the pack reads whole; otherwise those before the first damaged region,
/// and after it only those that read back sound (a header found by looking
/// for the next entry magic could be message bytes that look like one).
fn trusted_entries(
    store: &Repository,
    path: &std::path::Path,
    scan: pack::PackScan,
    report: &mut RepairReport,
) -> Vec<pack::ScannedEntry> {
    let Some(first) = scan.damaged.first() else {
        return scan.entries;
    };
    report.damaged_regions.push(format!(
        "pack {} is damaged: bytes {}..{} of {} are not readable entries",
        path.display(),
        first.offset,
        first.end,
        scan.len
    ));
    scan.entries
        .into_iter()
        .filter(|e| e.location.offset < first.offset || store.read_at(&e.id, &e.location).is_ok())
        .collect()
}

/// Checks every restore point (and, with `read_data`, every blob).
pub fn verify(store: &Repository, read_data: bool) -> Result<VerifyReport, RepoError> {
    let index = store.index();
    let mut report = VerifyReport::default();
    let mut bad: HashSet<BlobId> = HashSet::new();
    if read_data {
        read_all_data(store, &mut bad, &mut report)?;
    }
    let mut referenced: HashSet<BlobId> = HashSet::new();
    let mut packs_present: BTreeMap<crate::store::PackId, bool> = BTreeMap::new();
    for g in index.all_generations()? {
        report.generations += 1;
        let mut problems = Vec::new();
        let marks = check_generation(
            store,
            index,
            &g.root,
            &bad,
            &mut referenced,
            &mut packs_present,
            &mut problems,
        );
        index.mark_damaged(&marks)?;
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

/// Re-hashes every blob: first each one the index locates, at its location
/// (a scan alone stops at the first damaged entry header and would never
/// read what follows), then the entries of each pack the index does not
/// point to. Packs whose structure is damaged are reported as well.
fn read_all_data(
    store: &Repository,
    bad: &mut HashSet<BlobId>,
    report: &mut VerifyReport,
) -> Result<(), RepoError> {
    let indexed = read_indexed_blobs(store, bad, report)?;
    for (pack_id, path) in store.packs()? {
        scan_pack(store, pack_id, &path, indexed.get(&pack_id), report)?;
    }
    Ok(())
}

/// Where the index says each blob lies, by pack and offset.
type IndexedBlobs = HashMap<PackId, HashMap<u64, (BlobId, BlobLocation)>>;

/// Reads every blob through its indexed location, pack by pack in offset
/// order; notes the damaged ones in `bad`.
fn read_indexed_blobs(
    store: &Repository,
    bad: &mut HashSet<BlobId>,
    report: &mut VerifyReport,
) -> Result<IndexedBlobs, RepoError> {
    let mut located = store.index().blobs()?;
    located.sort_by_key(|(_, loc)| (loc.pack, loc.offset));
    let mut indexed: IndexedBlobs = HashMap::new();
    let mut open: Option<(PackId, std::path::PathBuf, std::io::Result<File>)> = None;
    for (id, loc) in &located {
        indexed
            .entry(loc.pack)
            .or_default()
            .insert(loc.offset, (*id, *loc));
        if open.as_ref().is_none_or(|(p, _, _)| *p != loc.pack) {
            let path = loc.pack.path(store.root());
            let file = File::open(&path);
            open = Some((loc.pack, path, file));
        }
        let Some((_, path, file)) = &open else {
            continue;
        };
        let result = match file {
            Ok(f) => pack::read_at(f, path, id, loc),
            Err(e) => Err(StoreError::Io {
                path: path.clone(),
                source: std::io::Error::new(e.kind(), e.to_string()),
            }),
        };
        count_read(report, loc);
        if let Err(err) = result {
            bad.insert(*id);
            report.bad_blobs.push(err.to_string());
        }
    }
    Ok(indexed)
}

/// Scans one pack front to back: a torn tail, an entry header that
/// disagrees with the index, and every blob the index does not know (read
/// and verified too) are reported.
fn scan_pack(
    store: &Repository,
    pack_id: PackId,
    path: &std::path::Path,
    known: Option<&HashMap<u64, (BlobId, BlobLocation)>>,
    report: &mut VerifyReport,
) -> Result<(), RepoError> {
    let scan = match pack::scan(path, pack_id) {
        Ok(scan) => scan,
        Err(e) => {
            report.bad_blobs.push(e.to_string());
            return Ok(());
        }
    };
    for d in &scan.damaged {
        report.bad_blobs.push(format!(
            "pack {} is damaged: bytes {}..{} of {} are not readable entries",
            path.display(),
            d.offset,
            d.end,
            scan.len
        ));
    }
    for e in scan.entries {
        match known.and_then(|k| k.get(&e.location.offset)) {
            // Read already, through the index.
            Some(&(id, loc)) if id == e.id && loc == e.location => continue,
            // The blob may still read well through the index, but a
            // rebuild from this header would not find it.
            Some(_) => {
                report.bad_blobs.push(format!(
                    "pack {} is damaged: the entry header at offset {} disagrees with the index",
                    path.display(),
                    e.location.offset
                ));
                continue;
            }
            None => {}
        }
        count_read(report, &e.location);
        if let Err(err) = store.read_at(&e.id, &e.location) {
            report.bad_blobs.push(err.to_string());
        }
    }
    Ok(())
}

fn count_read(report: &mut VerifyReport, loc: &BlobLocation) {
    report.blobs_read += 1;
    report.bytes_read += loc.raw_len;
}

fn check_generation(
    store: &Repository,
    index: &Index,
    root: &BlobId,
    bad: &HashSet<BlobId>,
    referenced: &mut HashSet<BlobId>,
    packs_present: &mut BTreeMap<crate::store::PackId, bool>,
    problems: &mut Vec<String>,
) -> Vec<(BlobId, String)> {
    let mut walk = Walk {
        store,
        index,
        bad,
        referenced,
        packs_present,
        problems,
        marks: Vec::new(),
    };
    let Some(root) =
        walk.manifest::<RootManifest>(root, "root manifest", |id| format!("root manifest {id}"))
    else {
        return walk.marks;
    };
    let mut blobs = Vec::new();
    for f in &root.folders {
        blobs.extend(walk.folder_blobs(f));
    }
    for c in &root.collections {
        blobs.extend(walk.collection_blobs(c));
    }
    for (what, blob) in blobs {
        walk.check_blob(&what, blob);
    }
    walk.marks
}

/// One point's walk through its manifests, noting every blob it references
/// and every problem (as `what: why`).
struct Walk<'a> {
    store: &'a Repository,
    index: &'a Index,
    bad: &'a HashSet<BlobId>,
    referenced: &'a mut HashSet<BlobId>,
    packs_present: &'a mut BTreeMap<crate::store::PackId, bool>,
    problems: &'a mut Vec<String>,
    /// Referenced blobs found missing or damaged, for the index's damage
    /// marks (the next snapshot fetches them again).
    marks: Vec<(BlobId, String)>,
}

impl Walk<'_> {
    /// Reads and decodes a manifest blob; `None` (with the problem noted)
    /// when it cannot be read (`what`) or decoded (`decoded(id)`).
    fn manifest<T: serde::de::DeserializeOwned>(
        &mut self,
        id: &BlobId,
        what: &str,
        decoded: impl FnOnce(&BlobId) -> String,
    ) -> Option<T> {
        self.referenced.insert(*id);
        let bytes = match self.store.get(id) {
            Ok(b) => b,
            Err(e) => {
                self.problems.push(format!("{what}: {e}"));
                return None;
            }
        };
        match manifest::decode(&bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                self.problems.push(format!("{}: {e}", decoded(id)));
                None
            }
        }
    }

    /// The message blobs of a folder, each with its label.
    fn folder_blobs(&mut self, f: &crate::manifest::FolderRef) -> Vec<(String, BlobId)> {
        let name = &f.name;
        let folder = format!("folder {name:?}");
        let Some(m) = self.manifest::<FolderManifest>(&f.manifest, &folder, |_| folder.clone())
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for g in &m.groups {
            let what = format!("folder {name:?} chunk group");
            let Some(group) = self.manifest::<ChunkGroup>(g, &what, |id| format!("{what} {id}"))
            else {
                continue;
            };
            for c in &group.chunks {
                let what = format!("folder {name:?} chunk");
                if let Some(chunk) =
                    self.manifest::<MessageChunk>(c, &what, |id| format!("{what} {id}"))
                {
                    out.extend(
                        chunk
                            .messages
                            .into_iter()
                            .map(|m| (format!("folder {name:?} UID {}", m.uid), m.blob)),
                    );
                }
            }
        }
        out
    }

    /// The item blobs of a collection, each with its label.
    fn collection_blobs(&mut self, c: &BlobId) -> Vec<(String, BlobId)> {
        let what = "collection manifest";
        let Some(col) = self.manifest::<CollectionManifest>(c, what, |id| format!("{what} {id}"))
        else {
            return Vec::new();
        };
        col.items
            .into_iter()
            .map(|i| {
                (
                    format!("collection {:?} item {:?}", col.href, i.name),
                    i.blob,
                )
            })
            .collect()
    }

    /// Notes a referenced blob that is missing or damaged.
    fn check_blob(&mut self, what: &str, blob: BlobId) {
        self.referenced.insert(blob);
        let root = self.store.root();
        let present = match self.index.blob(&blob) {
            Ok(Some(loc)) => *self
                .packs_present
                .entry(loc.pack)
                .or_insert_with(|| loc.pack.path(root).exists()),
            Ok(None) => false,
            Err(e) => {
                self.problems.push(format!("index: {e}"));
                false
            }
        };
        let problem = if !present {
            format!("{what}: blob {blob} is missing")
        } else if self.bad.contains(&blob) {
            format!("{what}: blob {blob} is damaged")
        } else {
            return;
        };
        self.marks.push((blob, problem.clone()));
        self.problems.push(problem);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifest::{
        CollectionCounts, FolderRef, GenerationId, MailCounts, MessageEntry, Namespace,
    };
    use std::path::Path;

    pub(crate) fn open(dir: &Path) -> Repository {
        let index = Index::open(&dir.join("index")).unwrap();
        Repository::open(&dir.join("store"), index).unwrap()
    }

    /// One point of one folder holding `messages`, all in one pack.
    pub(crate) fn one_point(store: &Repository, messages: &[Vec<u8>]) -> GenerationId {
        point_at(store, messages, 1_767_225_600)
    }

    /// [`one_point`] taken at `second` (Unix time).
    pub(crate) fn point_at(store: &Repository, messages: &[Vec<u8>], second: i64) -> GenerationId {
        let mut w = store.writer();
        let entries: Vec<MessageEntry> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| MessageEntry {
                uid: i as u32 + 1,
                blob: w.put(m).unwrap().0,
                size: m.len() as u64,
                flags: vec![],
                keywords: vec![],
                internal_date: "01-Jan-2026 00:00:00 +0000".into(),
            })
            .collect();
        let mut chunks = Vec::new();
        for c in manifest::chunk(entries) {
            let last = c.messages.last().unwrap().uid;
            let id = w
                .put_kind(&manifest::encode(&c), BlobKind::Manifest)
                .unwrap()
                .0;
            chunks.push((id, last));
        }
        let groups = manifest::group(chunks)
            .iter()
            .map(|g| {
                w.put_kind(&manifest::encode(g), BlobKind::Manifest)
                    .unwrap()
                    .0
            })
            .collect();
        let folder = FolderManifest {
            name: "INBOX".into(),
            wire_name: "INBOX".into(),
            separator: Some('/'),
            special_use: vec![],
            subscribed: true,
            selectable: true,
            uid_validity: 1,
            uid_next: messages.len() as u32 + 1,
            highest_modseq: None,
            messages: messages.len() as u64,
            bytes: messages.iter().map(|m| m.len() as u64).sum(),
            groups,
        };
        let folder_id = w
            .put_kind(&manifest::encode(&folder), BlobKind::Manifest)
            .unwrap()
            .0;
        let taken_at = crate::time::from_second(second).unwrap();
        let root = RootManifest {
            format: manifest::MANIFEST_FORMAT,
            id: GenerationId::new(taken_at, 1),
            user: "alice@example.org".into(),
            taken_at,
            namespace: Namespace::default(),
            mail: MailCounts {
                folders: 1,
                messages: folder.messages,
                bytes: folder.bytes,
            },
            calendars: CollectionCounts::default(),
            contacts: CollectionCounts::default(),
            folders: vec![FolderRef {
                name: "INBOX".into(),
                manifest: folder_id,
            }],
            collections: vec![],
            mailbox: None,
            partial: vec![],
        };
        let root_id = w
            .put_kind(&manifest::encode(&root), BlobKind::Root)
            .unwrap()
            .0;
        let locations = w.finish_pack().unwrap();
        store
            .index()
            .commit_generation(&locations, &root.generation(root_id))
            .unwrap();
        root.id
    }

    pub(crate) fn messages() -> Vec<Vec<u8>> {
        (0..20)
            .map(|i| format!("Subject: {i}\r\n\r\n{}\r\n", "body ".repeat(i * 10)).into_bytes())
            .collect()
    }

    fn damaged_points(report: &VerifyReport) -> Vec<String> {
        report.damaged.iter().map(|d| d.point.clone()).collect()
    }

    #[test]
    fn a_clean_store_verifies_and_repairs_to_the_same_point() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let id = one_point(&store, &messages());
        let report = verify(&store, true).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.generations, 1);
        let before = store.index().all_generations().unwrap();
        let repaired = rebuild_index(&store).unwrap();
        assert_eq!(repaired.generations, 1);
        assert_eq!(store.index().all_generations().unwrap(), before);
        assert_eq!(before[0].id, id);
    }

    /// Damage in an entry header (not in the blob bytes) must be found too:
    /// a front-to-back scan stops there, so the blobs behind it must still
    /// be read through the index.
    #[test]
    fn damage_in_an_entry_header_names_the_point() {
        // Magic and blob id: the blob cannot be read.
        for field in [0usize, 10] {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let msgs = messages();
            let id = one_point(&store, &msgs);
            let victim = BlobId::of(&msgs[5]);
            let loc = store.index().blob(&victim).unwrap().unwrap();
            let path = loc.pack.path(store.root());
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[loc.offset as usize + field] ^= 0x5a;
            std::fs::write(&path, bytes).unwrap();
            let report = verify(&store, true).unwrap();
            assert_eq!(
                damaged_points(&report),
                vec![id.to_string()],
                "header byte {field}: {report:?}"
            );
        }
        // Lengths and codec: the index still reads the blob, so the point
        // is whole, but the pack is reported (a rebuild would misread it).
        for field in [40usize, 48, 52] {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let msgs = messages();
            one_point(&store, &msgs);
            let loc = store.index().blob(&BlobId::of(&msgs[5])).unwrap().unwrap();
            let path = loc.pack.path(store.root());
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[loc.offset as usize + field] ^= 0x5a;
            std::fs::write(&path, bytes).unwrap();
            let report = verify(&store, true).unwrap();
            assert!(report.damaged.is_empty(), "header byte {field}: {report:?}");
            assert!(!report.is_clean(), "header byte {field}: {report:?}");
        }
    }

    #[test]
    fn a_damaged_pack_magic_is_reported_and_repair_skips_only_that_pack() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        one_point(&store, &messages());
        let (_, path) = store.packs().unwrap().remove(0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let report = verify(&store, true).unwrap();
        // Every blob is still readable at its indexed location: the point
        // is restorable, but the pack is reported.
        assert!(damaged_points(&report).is_empty(), "{report:?}");
        assert!(
            report.bad_blobs.iter().any(|b| b.contains("bad magic")),
            "{report:?}"
        );
        // --repair skips that pack instead of giving up on every point.
        let repaired = rebuild_index(&store).unwrap();
        assert_eq!(repaired.unreadable_packs.len(), 1, "{repaired:?}");
        assert_eq!(repaired.generations, 0);
        let report = verify(&store, true).unwrap();
        assert!(report.bad_blobs.iter().any(|b| b.contains("bad magic")));
    }
}
