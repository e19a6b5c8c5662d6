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
    /// True when the blob is damaged or missing in the store (see
    /// [`StoreError::is_damage`]).
    pub fn is_damage(&self) -> bool {
        matches!(self, RepoError::Store(e) if e.is_damage())
    }

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

    /// True when a sound copy of the blob is stored (durably): one that no
    /// reader has found damaged.
    pub fn contains(&self, id: &BlobId) -> Result<bool, RepoError> {
        Ok(self.index.blob(id)?.is_some() && !self.index.is_damaged(id)?)
    }

    /// Reads and verifies a blob. A blob found damaged or missing is marked
    /// so in the index (see [`Index::mark_damaged`]): the next snapshot
    /// fetches it again, and no writer deduplicates against it.
    pub fn get(&self, id: &BlobId) -> Result<Vec<u8>, RepoError> {
        let read = match self.index.blob(id)? {
            Some(loc) => self.store.read_at(id, &loc),
            None => Err(StoreError::Missing(*id)),
        };
        match read {
            Ok(bytes) => Ok(bytes),
            Err(e) => {
                if e.is_damage() {
                    // Best effort: the read fails either way.
                    if let Err(mark) = self.index.mark_damaged(&[(*id, e.to_string())]) {
                        tracing::warn!(blob = %id, error = %mark, "cannot record a damaged blob");
                    }
                }
                Err(e.into())
            }
        }
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

    /// Reads several blobs off the async threads, each with its own
    /// outcome: one damaged blob does not hide the others.
    pub async fn get_each(&self, ids: Vec<BlobId>) -> Vec<Result<Vec<u8>, RepoError>> {
        let repo = self.clone();
        off_thread(move || ids.iter().map(|id| repo.get(id)).collect()).await
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
        assert!(found.is_whole());
        assert_eq!(found.entries.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
        for e in &found.entries {
            assert_eq!(s.index().blob(&e.id).unwrap(), Some(e.location));
        }
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let torn = crate::store::pack::scan(&path, pack).unwrap();
        assert_eq!(torn.entries.len(), 49);
        let last = found.entries[49].location.offset;
        assert_eq!(
            torn.damaged,
            vec![crate::store::pack::DamagedRegion {
                offset: last,
                end: len - 3
            }],
            "a torn tail is damage, never silently the end"
        );
    }

    /// A pack of `n` incompressible blobs, and their ids.
    fn pack_of(s: &Repository, n: usize) -> (Vec<BlobId>, PackId, std::path::PathBuf) {
        let mut w = s.writer();
        let ids = (0..n)
            .map(|i| {
                let bytes: Vec<u8> = (0..500u32)
                    .map(|j| blake3::hash(&[i as u8, j as u8]).as_bytes()[0])
                    .collect();
                w.put(&bytes).unwrap().0
            })
            .collect();
        w.flush().unwrap();
        let (pack, path) = s.packs().unwrap().remove(0);
        (ids, pack, path)
    }

    #[test]
    fn a_damaged_header_is_a_region_and_the_entries_after_it_are_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (ids, pack, path) = pack_of(&s, 10);
        let whole = crate::store::pack::scan(&path, pack).unwrap();
        let third = whole.entries[3].location;
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[third.offset as usize + 40] ^= 0x40; // its raw length
        std::fs::write(&path, &bytes).unwrap();
        let scan = crate::store::pack::scan(&path, pack).unwrap();
        assert!(!scan.is_whole());
        assert_eq!(scan.damaged[0].offset, third.offset);
        assert_eq!(scan.damaged[0].end, whole.entries[4].location.offset);
        let found: Vec<BlobId> = scan.entries.iter().map(|e| e.id).collect();
        let mut expected = ids.clone();
        expected.remove(3);
        assert_eq!(found, expected);
        assert_eq!(s.get(&ids[3]).unwrap().len(), 500, "the index still knows");
        bytes[third.offset as usize + 64 + 10] ^= 0x01; // its bytes
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            s.get(&ids[3]),
            Err(RepoError::Store(StoreError::Corrupt { .. }))
        ));
        assert!(s.index().is_damaged(&ids[3]).unwrap(), "marked for refetch");
        assert!(!s.contains(&ids[3]).unwrap(), "no dedup against it");
        assert_eq!(s.get(&ids[4]).unwrap().len(), 500);
    }

    #[test]
    fn no_byte_of_a_pack_can_make_a_read_or_a_scan_panic_or_allocate_wildly() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
        let mut w = s.writer();
        let (id, _) = w.put(&big).unwrap();
        w.put(b"a small one after it").unwrap();
        w.flush().unwrap();
        let (pack, path) = s.packs().unwrap().remove(0);
        let clean = std::fs::read(&path).unwrap();
        let loc = s.index().blob(&id).unwrap().unwrap();
        // Every byte of the first header, each bit, and a run of lengths
        // claiming exabytes: errors, never an abort.
        for at in 0..(loc.offset + 64) as usize {
            for bit in 0..8 {
                let mut bytes = clean.clone();
                bytes[at] ^= 1 << bit;
                std::fs::write(&path, &bytes).unwrap();
                let _ = crate::store::pack::scan(&path, pack);
                let _ = s.store().read_at(&id, &loc);
            }
        }
        let mut bytes = clean.clone();
        let o = loc.offset as usize;
        bytes[o + 36..o + 44].copy_from_slice(&(u64::MAX / 3).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let lying = BlobLocation {
            raw_len: u64::MAX / 3,
            ..loc
        };
        assert!(s.store().read_at(&id, &lying).is_err());
        let lying = BlobLocation {
            raw_len: loc.raw_len * 1000,
            ..loc
        };
        assert!(s.store().read_at(&id, &lying).is_err());
    }

    /// Inputs the pack_scan fuzz target found (or was handed) that made the
    /// first round's reader overflow, spin or allocate terabytes: each must
    /// now be an error or a sound read, quickly.
    #[test]
    fn fuzz_regressions_in_pack_reading() {
        use base64::Engine;
        const INPUTS: [&str; 3] = [
            "TVJQQUNLMDFNUkJMAubBo9KqKYzf5cHlNugTDc5pWZp5VDfGRZ0IqqPW4RkCAQAAQkx4zUUAAAAAAAAAAQAAAAAAAAAAAAAAKLUv/QBY5QEA1AJGcm9tOiBhQGV4YW1wbGUub3JnDQpUbzogYlN1YmplY3Q6IGhlbGxvDQoNCiAEAC6eFKTMi0UImjzxTVJCTHjNNG2e6GbcFHJnwVBneNtpVjHWX2uwoIh+WIlp6AUEEgAAAAAAAAASAAAAAAAAAAAAAAAAAAAAAAAAAAABAiBpbmNvbXByZXNzaWJsZU1SQkx8I0+inkDTRN/DDAusWCkb+GKBuSqzeSL9UXAjO8Zjc08AAAAAAAAAUAAAAAAAAAABAgAAAAAAAAAAAAAotS/9AFg9AgDyxBAXoCdtrg382kgaJfRXBUcSjVpkR/N/RwEJAVmxO4WHf3V/I63qxn1h+WyxvynnwyBB4uJyT3GaxatjCgDIQCgcBidEAHjNNG2e6GbcFHJnwVBneNtpVjHWX2uwoIh+WIlp6AUEBwcHBwcHBwcHBwcHBwcHB40AAAAAAAAAEgAAAAAAAAASAAAAAAAAAAA=",
            "TVJQQUNLMDFNUkJMEREREREREREREREREREREREREREREREREREREREREREFAAAAAAAAAMD/////////AAAAAAAAAAAAAAAA",
            "TVJQQUNLMDFNUkJMIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIHBwcHBwcHBwcHBwcHBwcHCAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAA==",
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.pack");
        for input in INPUTS {
            let data = base64::engine::general_purpose::STANDARD
                .decode(input)
                .unwrap();
            std::fs::write(&path, &data).unwrap();
            let pack = PackId([7; 16]);
            let file = std::fs::File::open(&path).unwrap();
            if let Ok(scan) = crate::store::pack::scan(&path, pack) {
                for e in &scan.entries {
                    let _ = crate::store::pack::read_at(&file, &path, &e.id, &e.location);
                }
            }
            // The input's tail as an index location: what the fuzz target probes.
            let Some(tail) = data.len().checked_sub(73).map(|at| &data[at..]) else {
                continue;
            };
            let id = BlobId(tail[..32].try_into().unwrap());
            if let Some(loc) = BlobLocation::from_bytes(&tail[32..]) {
                // Sound (the hash vouches for it) or an error; never a panic.
                if let Ok(raw) = crate::store::pack::read_at(&file, &path, &id, &loc) {
                    assert_eq!(BlobId::of(&raw), id);
                }
            }
        }
    }
}
