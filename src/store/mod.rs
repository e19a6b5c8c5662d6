//! The content-addressed blob store, shared by every user of the host.
//!
//! A blob is named by the BLAKE3 hash of its raw bytes ([`BlobId`]) and
//! written once into a pack file (zstd-compressed when that helps). This
//! module owns the pack files only: it knows nothing of the index, which
//! records where each blob lies; [`crate::repo::Repository`] puts the two
//! together. Reading re-hashes what it read.
//!
//! Invariants (FORMAT.md has the full list):
//! - a blob's location enters the index only after its pack is durable
//!   (file fsynced, renamed into place, directory fsynced);
//! - packs are never modified; only prune removes or rewrites them;
//! - the store is the system of record: manifests are blobs, so the index's
//!   blob locations and generations can be rebuilt by scanning the packs.

pub mod pack;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use crate::blob::{BlobId, BlobKind, BlobLocation, PackId};

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
    /// No location is known for a blob a manifest refers to.
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
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// True when what was read is damaged or gone (a bad entry, a missing
    /// blob or pack), not when the disk merely failed for now.
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Missing(_) | StoreError::Corrupt { .. } | StoreError::BadPack { .. } => {
                true
            }
            StoreError::Io { source, .. } => {
                matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::InvalidData
                ) || source.raw_os_error() == Some(libc::EIO)
            }
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
    gc: std::sync::Arc<tokio::sync::RwLock<()>>,
}

impl Store {
    /// Opens the store below `root` (created if needed). Unfinished packs
    /// left by a crash (`*.pack.tmp`) are removed: nothing points into them.
    /// The caller holds the state directory's lock.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
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

    /// Reads and verifies a blob at a known location.
    pub fn read_at(&self, id: &BlobId, loc: &BlobLocation) -> Result<Vec<u8>, StoreError> {
        let path = loc.pack.path(&self.root);
        let file = File::open(&path).map_err(|e| StoreError::io(&path, e))?;
        pack::read_at(&file, &path, id, loc)
    }

    /// A new pack file for one writer (see [`crate::repo::BlobWriter`]).
    pub fn create_pack(&self) -> Result<pack::PackWriter, StoreError> {
        pack::PackWriter::create(&self.root)
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
