//! The content-addressed blob store, shared by every user of the host.
//!
//! A blob is named by the BLAKE3 hash of its raw bytes ([`BlobId`]), written
//! once into a pack file (zstd-compressed when that helps), and found through
//! the index's blob locations. The same message stored for 1,000 users costs
//! once. Reading re-hashes what it read.
//!
//! Invariants (FORMAT.md has the full list):
//! - a blob's location enters the index only after its pack is durable
//!   (file fsynced, renamed into place, directory fsynced);
//! - packs are never modified; only prune removes or rewrites them;
//! - the store is the system of record: manifests are blobs, so the index's
//!   blob locations and generations can be rebuilt by scanning the packs.

pub mod pack;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

pub use pack::{BlobKind, BlobLocation, PackId};

use crate::index::{Index, IndexError};

/// Target size of a pack: a pack is finished once it holds this much (a blob
/// is never split, so one larger blob makes one larger pack).
const PACK_TARGET: u64 = 16 << 20;

/// A blob's name: the BLAKE3 hash of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> BlobId {
        BlobId(*blake3::hash(bytes).as_bytes())
    }

    /// 64 hex digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<BlobId> {
        Some(BlobId(decode_hex(s)?.try_into().ok()?))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", &self.hex()[..16])
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl serde::Serialize for BlobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for BlobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        BlobId::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("expected a 64-digit hex blob id"))
    }
}

/// Hex to bytes; `None` on odd length or a non-hex digit.
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("store I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The index has no location for a blob a manifest refers to.
    #[error("blob {0} is missing from the store")]
    Missing(BlobId),
    /// A blob's bytes are damaged.
    #[error("blob {blob} is damaged: {why}")]
    Corrupt {
        /// The blob.
        blob: BlobId,
        /// What is wrong.
        why: String,
    },
    /// A pack file is not readable as one.
    #[error("pack {path} is damaged: {why}")]
    BadPack {
        /// The pack.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// True when the disk is full (ENOSPC, EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }
}

/// The store of a state directory. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    root: PathBuf,
    index: Index,
    gc: std::sync::Arc<tokio::sync::RwLock<()>>,
}

impl Store {
    /// Opens the store below `root` (created if needed). Unfinished packs
    /// left by a crash (`*.pack.tmp`) are removed: nothing points into them.
    /// The caller holds the state directory's lock.
    pub fn open(root: &Path, index: Index) -> Result<Store, StoreError> {
        let packs = root.join("packs");
        if !packs.is_dir() {
            std::fs::create_dir_all(&packs).map_err(|e| StoreError::io(&packs, e))?;
            pack::sync_dir(root)?;
            if let Some(state_dir) = root.parent() {
                pack::sync_dir(state_dir)?;
            }
        }
        for entry in walk_packs(root)? {
            if entry.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&entry).map_err(|e| StoreError::io(&entry, e))?;
            }
        }
        Ok(Store {
            root: root.to_owned(),
            index,
            gc: Default::default(),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Held for reading by every job that writes or reads blobs, and for
    /// writing by prune: a snapshot deduplicates against blobs prune could
    /// otherwise delete under it.
    pub fn gc_lock(&self) -> &tokio::sync::RwLock<()> {
        &self.gc
    }

    /// The index the store records blob locations in.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// True when the blob is stored (durably).
    pub fn contains(&self, id: &BlobId) -> Result<bool, StoreError> {
        Ok(self.index.blob(id)?.is_some())
    }

    /// Reads and verifies a blob.
    pub fn get(&self, id: &BlobId) -> Result<Vec<u8>, StoreError> {
        let loc = self.index.blob(id)?.ok_or(StoreError::Missing(*id))?;
        self.read_at(id, &loc)
    }

    /// Reads and verifies a blob at a known location.
    pub fn read_at(&self, id: &BlobId, loc: &BlobLocation) -> Result<Vec<u8>, StoreError> {
        let path = loc.pack.path(&self.root);
        let file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        pack::read_at(&file, &path, id, loc)
    }

    /// A writer for one job.
    pub fn writer(&self) -> BlobWriter {
        BlobWriter {
            store: self.clone(),
            pack: None,
            new_blobs: 0,
        }
    }

    /// Every finished pack file.
    pub fn packs(&self) -> Result<Vec<(PackId, PathBuf)>, StoreError> {
        Ok(walk_packs(&self.root)?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "pack"))
            .filter_map(|p| {
                let id = PackId::from_hex(p.file_stem()?.to_str()?)?;
                Some((id, p))
            })
            .collect())
    }

    /// Bytes the packs take on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for (_, path) in self.packs()? {
            total += std::fs::metadata(&path)
                .map_err(|e| StoreError::io(&path, e))?
                .len();
        }
        Ok(total)
    }
}

fn walk_packs(root: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let packs = root.join("packs");
    let mut out = Vec::new();
    let read = |dir: &Path| std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e));
    if !packs.exists() {
        return Ok(out);
    }
    for sub in read(&packs)? {
        let sub = sub.map_err(|e| StoreError::io(&packs, e))?.path();
        if !sub.is_dir() {
            continue;
        }
        for f in read(&sub)? {
            out.push(f.map_err(|e| StoreError::io(&sub, e))?.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Adds blobs to the store for one job: deduplicates against the index and
/// its own open pack, rolls packs at [`PACK_TARGET`], and records a pack's
/// blob locations in the index only once the pack is durable.
pub struct BlobWriter {
    store: Store,
    pack: Option<pack::PackWriter>,
    new_blobs: u64,
}

impl BlobWriter {
    /// Stores data bytes unless already there; returns its id and whether it
    /// was new.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(BlobId, bool), StoreError> {
        self.put_kind(bytes, BlobKind::Data)
    }

    /// Stores a blob even if the index knows it (prune moving it out of a
    /// pack it rewrites).
    pub fn put_forced(&mut self, bytes: &[u8], kind: BlobKind) -> Result<BlobId, StoreError> {
        let id = BlobId::of(bytes);
        if self.pack.as_ref().is_some_and(|p| p.contains(&id)) {
            return Ok(id);
        }
        self.write(id, bytes, kind)?;
        Ok(id)
    }

    fn write(&mut self, id: BlobId, bytes: &[u8], kind: BlobKind) -> Result<(), StoreError> {
        if self.pack.is_none() {
            self.pack = Some(pack::PackWriter::create(&self.store.root)?);
        }
        let pack = self.pack.as_mut().expect("a pack was just opened");
        pack.add(id, bytes, kind)?;
        self.new_blobs += 1;
        if pack.len() >= PACK_TARGET {
            self.flush()?;
        }
        Ok(())
    }

    /// Stores a blob of the given kind unless already there.
    pub fn put_kind(&mut self, bytes: &[u8], kind: BlobKind) -> Result<(BlobId, bool), StoreError> {
        let id = BlobId::of(bytes);
        if self.pack.as_ref().is_some_and(|p| p.contains(&id)) || self.store.contains(&id)? {
            return Ok((id, false));
        }
        self.write(id, bytes, kind)?;
        Ok((id, true))
    }

    /// Makes every blob put so far durable and recorded in the index.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let entries = self.finish_pack()?;
        if !entries.is_empty() {
            self.store.index.put_blobs(&entries)?;
        }
        Ok(())
    }

    /// Makes every blob put so far durable and returns their locations for
    /// the caller to record in the index together with what refers to them
    /// (one index commit per snapshot).
    pub fn finish_pack(&mut self) -> Result<Vec<(BlobId, BlobLocation)>, StoreError> {
        match self.pack.take() {
            Some(pack) if pack.is_empty() => {
                pack.abandon();
                Ok(Vec::new())
            }
            Some(pack) => pack.finish(),
            None => Ok(Vec::new()),
        }
    }

    /// New blobs written.
    pub fn blobs_written(&self) -> u64 {
        self.new_blobs
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // A writer dropped without flush (an error, a cancel) leaves nothing
        // half-visible: its pack was never recorded in the index.
        if let Some(pack) = self.pack.take() {
            pack.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Store {
        let index = Index::open(&dir.join("index")).unwrap();
        Store::open(&dir.join("store"), index).unwrap()
    }

    #[test]
    fn blobs_are_written_once_and_read_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut w = s.writer();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (a, new_a) = w.put(b"hello").unwrap();
        let (a2, new_a2) = w.put(b"hello").unwrap();
        let (b, _) = w.put(&big).unwrap();
        let (e, _) = w.put(b"").unwrap();
        assert!(new_a && !new_a2 && a == a2);
        assert!(!s.contains(&a).unwrap(), "not visible before flush");
        w.flush().unwrap();
        assert_eq!(s.get(&a).unwrap(), b"hello");
        assert_eq!(s.get(&b).unwrap(), big);
        assert_eq!(s.get(&e).unwrap(), b"");
        let mut w2 = s.writer();
        assert!(!w2.put(b"hello").unwrap().1, "dedup across writers");
        w2.flush().unwrap();
        assert_eq!(s.packs().unwrap().len(), 1, "an empty writer makes no pack");
        assert!(
            s.size_on_disk().unwrap() < 100_000,
            "compressible data is compressed"
        );
    }

    #[test]
    fn a_dropped_writer_leaves_nothing_visible_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        {
            let mut w = s.writer();
            w.put(b"lost").unwrap();
        }
        assert!(!s.contains(&BlobId::of(b"lost")).unwrap());
        assert!(s.packs().unwrap().is_empty());

        let mut w = s.writer();
        let (id, _) = w
            .put(b"0123456789abcdef0123456789abcdef-incompressible?")
            .unwrap();
        w.flush().unwrap();
        let loc = s.index().blob(&id).unwrap().unwrap();
        let path = loc.pack.path(s.root());
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(s.get(&id), Err(StoreError::Corrupt { .. })));
        assert!(matches!(
            s.get(&BlobId::of(b"never")),
            Err(StoreError::Missing(_))
        ));
    }

    #[test]
    fn scanning_a_pack_finds_every_blob_and_stops_at_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut w = s.writer();
        let ids: Vec<BlobId> = (0..50)
            .map(|i| {
                w.put(format!("blob {i}").repeat(i + 1).as_bytes())
                    .unwrap()
                    .0
            })
            .collect();
        w.flush().unwrap();
        let (pack, path) = s.packs().unwrap().remove(0);
        let found = pack::scan(&path, pack).unwrap();
        assert_eq!(found.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
        for e in &found {
            assert_eq!(s.index().blob(&e.id).unwrap(), Some(e.location));
        }
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        assert_eq!(pack::scan(&path, pack).unwrap().len(), 49);
    }

    #[test]
    fn hex_round_trips() {
        let id = BlobId::of(b"x");
        assert_eq!(BlobId::from_hex(&id.hex()), Some(id));
        assert_eq!(BlobId::from_hex("zz"), None);
        let p = PackId::random();
        assert_eq!(PackId::from_hex(&p.hex()), Some(p));
        assert_ne!(PackId::random(), PackId::random());
    }
}
