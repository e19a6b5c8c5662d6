//! The repository: the blob store and the index that locates its blobs,
//! used together by every job.
//!
//! [`crate::store`] owns the pack files and [`crate::index`] the blob
//! locations; neither knows the other. This module is where they meet:
//! reading a blob looks its location up in the index, then reads the pack;
//! a [`BlobWriter`] deduplicates against the index and records a pack's
//! locations there only once the pack is durable.

use std::path::Path;

use crate::blob::{BlobId, BlobKind, BlobLocation};
use crate::index::{Index, IndexError};
use crate::store::pack::PackWriter;
use crate::store::{PackId, Store, StoreError};

/// Target size of a pack: a pack is finished once it holds this much (a blob
/// is never split, so one larger blob makes one larger pack).
const PACK_TARGET: u64 = 16 << 20;

/// Why a repository operation failed: the store (a blob the index does not
/// know is [`StoreError::Missing`]) or the index.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The pack files.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index.
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl RepoError {
    /// True when the disk is full (ENOSPC, EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, RepoError::Store(e) if e.is_disk_full())
    }
}

/// The store and the index of a state directory. Cheap to clone.
#[derive(Clone)]
pub struct Repository {
    store: Store,
    index: Index,
}

impl Repository {
    /// The store and the index, both open (the caller holds the state
    /// directory's lock).
    pub fn new(store: Store, index: Index) -> Repository {
        Repository { store, index }
    }

    /// Opens the store below `root` (see [`Store::open`]) beside `index`.
    pub fn open(root: &Path, index: Index) -> Result<Repository, StoreError> {
        Ok(Repository::new(Store::open(root)?, index))
    }

    /// The pack files.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The index: blob locations, generations, jobs, journals.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// See [`Store::gc_lock`].
    pub fn gc_lock(&self) -> &tokio::sync::RwLock<()> {
        self.store.gc_lock()
    }

    /// True when the blob is stored (durably).
    pub fn contains(&self, id: &BlobId) -> Result<bool, RepoError> {
        Ok(self.index.blob(id)?.is_some())
    }

    /// Reads and verifies a blob.
    pub fn get(&self, id: &BlobId) -> Result<Vec<u8>, RepoError> {
        let loc = self.index.blob(id)?.ok_or(StoreError::Missing(*id))?;
        Ok(self.store.read_at(id, &loc)?)
    }

    /// Reads and verifies a blob at a known location.
    pub fn read_at(&self, id: &BlobId, loc: &BlobLocation) -> Result<Vec<u8>, StoreError> {
        self.store.read_at(id, loc)
    }

    /// A writer for one job.
    pub fn writer(&self) -> BlobWriter {
        BlobWriter {
            repo: self.clone(),
            pack: None,
            new_blobs: 0,
        }
    }

    /// [`Repository::get`] off the async worker threads (see [`off_thread`]).
    pub async fn get_async(&self, id: BlobId) -> Result<Vec<u8>, RepoError> {
        let repo = self.clone();
        off_thread(move || repo.get(&id)).await
    }

    /// Reads and verifies blobs off the async worker threads (see
    /// [`off_thread`]).
    pub async fn get_many(&self, ids: Vec<BlobId>) -> Result<Vec<Vec<u8>>, RepoError> {
        let repo = self.clone();
        off_thread(move || ids.iter().map(|id| repo.get(id)).collect()).await
    }

    /// See [`Store::packs`].
    pub fn packs(&self) -> Result<Vec<(PackId, std::path::PathBuf)>, StoreError> {
        self.store.packs()
    }

    /// See [`Store::size_on_disk`].
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.store.size_on_disk()
    }
}

/// Adds blobs to the store for one job: deduplicates against the index and
/// its own open pack, rolls packs at [`PACK_TARGET`], and records a pack's
/// blob locations in the index only once the pack is durable.
pub struct BlobWriter {
    repo: Repository,
    pack: Option<PackWriter>,
    new_blobs: u64,
}

impl BlobWriter {
    /// Stores data bytes unless already there; returns its id and whether it
    /// was new.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(BlobId, bool), RepoError> {
        self.put_kind(bytes, BlobKind::Data)
    }

    /// Stores a blob even if the index knows it (prune moving it out of a
    /// pack it rewrites).
    pub fn put_forced(&mut self, bytes: &[u8], kind: BlobKind) -> Result<BlobId, RepoError> {
        let id = BlobId::of(bytes);
        if self.pack.as_ref().is_some_and(|p| p.contains(&id)) {
            return Ok(id);
        }
        self.write(id, bytes, kind)?;
        Ok(id)
    }

    fn write(&mut self, id: BlobId, bytes: &[u8], kind: BlobKind) -> Result<(), RepoError> {
        if self.pack.is_none() {
            self.pack = Some(self.repo.store.create_pack()?);
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
    pub fn put_kind(&mut self, bytes: &[u8], kind: BlobKind) -> Result<(BlobId, bool), RepoError> {
        let id = BlobId::of(bytes);
        if self.pack.as_ref().is_some_and(|p| p.contains(&id)) || self.repo.contains(&id)? {
            return Ok((id, false));
        }
        self.write(id, bytes, kind)?;
        Ok((id, true))
    }

    /// Makes every blob put so far durable and recorded in the index.
    pub fn flush(&mut self) -> Result<(), RepoError> {
        let entries = self.finish_pack()?;
        if !entries.is_empty() {
            self.repo.index.put_blobs(&entries)?;
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

impl BlobWriter {
    /// Runs `f` on this writer on the blocking pool (see [`off_thread`]) and
    /// takes the writer's state back. If `f` panics, its open pack is
    /// abandoned with the moved writer and the panic goes on in the caller.
    pub async fn off_thread<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut BlobWriter) -> R + Send + 'static,
    ) -> R {
        let mut moved = BlobWriter {
            repo: self.repo.clone(),
            pack: self.pack.take(),
            new_blobs: self.new_blobs,
        };
        let (moved, out) = off_thread(move || {
            let out = f(&mut moved);
            (moved, out)
        })
        .await;
        let mut moved = moved;
        self.pack = moved.pack.take();
        self.new_blobs = moved.new_blobs;
        out
    }

    /// [`BlobWriter::put_kind`] with hashing, compression and writing off the
    /// async worker threads.
    pub async fn put_async(
        &mut self,
        bytes: Vec<u8>,
        kind: BlobKind,
    ) -> Result<(BlobId, bool), RepoError> {
        self.off_thread(move |w| w.put_kind(&bytes, kind)).await
    }
}

/// Runs blocking store or index work (BLAKE3 over whole blobs, zstd, pack
/// reads, fsync, sled) on tokio's blocking pool, so that the async worker
/// threads keep driving the other connections of the job meanwhile. A panic
/// in `f` goes on in the caller (a runner's panic fails its job).
pub async fn off_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(f).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels a blocking task; the job is
        // being stopped with it.
        Err(e) => panic!("blocking store work was cancelled: {e}"),
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

    fn store(dir: &Path) -> Repository {
        let index = Index::open(&dir.join("index")).unwrap();
        Repository::new(Store::open(&dir.join("store")).unwrap(), index)
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
        assert!(matches!(
            s.get(&id),
            Err(RepoError::Store(StoreError::Corrupt { .. }))
        ));
        assert!(matches!(
            s.get(&BlobId::of(b"never")),
            Err(RepoError::Store(StoreError::Missing(_)))
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
        let found = crate::store::pack::scan(&path, pack).unwrap();
        assert_eq!(found.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
        for e in &found {
            assert_eq!(s.index().blob(&e.id).unwrap(), Some(e.location));
        }
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        assert_eq!(crate::store::pack::scan(&path, pack).unwrap().len(), 49);
    }
}
