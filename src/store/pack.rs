//! The pack file format: many blobs in one file, each behind a fixed header.
//!
//! ```text
//! pack   = file-header entry*
//! file-header = "MRPACK01" (8 bytes)
//! entry  = "MRBL" | blob id (32) | raw length (u64 LE) | stored length (u64 LE)
//!          | codec (u8: 0 = stored, 1 = zstd) | kind (u8: 0 = data, 1 = root
//!          manifest, 2 = other manifest) | 10 zero bytes | stored bytes
//! ```
//!
//! A pack is written under a temporary name, fsynced, renamed into place and
//! its directory fsynced before any index entry points into it (see FORMAT.md).
//! A pack can be scanned front to back without the index: that is how
//! `verify --repair` rebuilds blob locations.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::StoreError;
use crate::blob::{BlobId, BlobKind, BlobLocation, Codec, PackId};

/// First bytes of every pack.
pub const FILE_MAGIC: &[u8; 8] = b"MRPACK01";
/// First bytes of every entry.
pub const ENTRY_MAGIC: &[u8; 4] = b"MRBL";
/// Size of an entry header.
pub const ENTRY_HEADER: u64 = 64;

/// Writes one pack. Blobs written are not reachable until [`PackWriter::finish`]
/// has made the file durable and returned their locations.
pub struct PackWriter {
    id: PackId,
    tmp: PathBuf,
    file: BufWriter<File>,
    offset: u64,
    entries: Vec<(BlobId, BlobLocation)>,
}

impl PackWriter {
    /// Starts a new pack below `root`.
    pub fn create(root: &Path) -> Result<PackWriter, StoreError> {
        let id = PackId::random();
        let final_path = id.path(root);
        let dir = final_path.parent().unwrap_or(root).to_owned();
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
            // The new `packs/XX` entry must survive a crash as surely as the
            // pack that `finish` renames into it.
            sync_dir(dir.parent().unwrap_or(root))?;
        }
        let tmp = final_path.with_extension("pack.tmp");
        let file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let mut w = PackWriter {
            id,
            tmp,
            file: BufWriter::with_capacity(1 << 20, file),
            offset: 0,
            entries: Vec::new(),
        };
        w.write_all(FILE_MAGIC)?;
        Ok(w)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    /// True when no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `id` was added to this pack.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.entries.iter().any(|(b, _)| b == id)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(bytes)
            .map_err(|e| StoreError::io(&self.tmp, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Appends a blob (compressed when that saves space).
    pub fn add(
        &mut self,
        id: BlobId,
        raw: &[u8],
        kind: BlobKind,
    ) -> Result<BlobLocation, StoreError> {
        let compressed = zstd::bulk::compress(raw, 3).map_err(|e| StoreError::io(&self.tmp, e))?;
        let (codec, stored): (Codec, &[u8]) = if compressed.len() < raw.len() {
            (Codec::Zstd, &compressed)
        } else {
            (Codec::Stored, raw)
        };
        let loc = BlobLocation {
            pack: self.id,
            offset: self.offset,
            stored_len: stored.len() as u64,
            raw_len: raw.len() as u64,
            codec,
        };
        let mut header = [0u8; ENTRY_HEADER as usize];
        header[..4].copy_from_slice(ENTRY_MAGIC);
        header[4..36].copy_from_slice(&id.0);
        header[36..44].copy_from_slice(&loc.raw_len.to_le_bytes());
        header[44..52].copy_from_slice(&loc.stored_len.to_le_bytes());
        header[52] = codec as u8;
        header[53] = kind as u8;
        self.write_all(&header)?;
        self.write_all(stored)?;
        self.entries.push((id, loc));
        Ok(loc)
    }

    /// Makes the pack durable (fsync the file, rename it into place, fsync
    /// the directory) and returns the locations of its blobs.
    pub fn finish(self) -> Result<Vec<(BlobId, BlobLocation)>, StoreError> {
        let PackWriter {
            id,
            tmp,
            file,
            entries,
            ..
        } = self;
        let file = file
            .into_inner()
            .map_err(|e| StoreError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
        drop(file);
        let root = tmp
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"))
            .to_owned();
        let final_path = id.path(&root);
        std::fs::rename(&tmp, &final_path).map_err(|e| StoreError::io(&final_path, e))?;
        if let Some(dir) = final_path.parent() {
            sync_dir(dir)?;
        }
        Ok(entries)
    }

    /// Drops an unfinished pack and its file.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// fsyncs a directory so a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// Reads a blob's stored bytes at `loc` from an open pack and decodes them.
pub fn read_at(
    file: &File,
    path: &Path,
    id: &BlobId,
    loc: &BlobLocation,
) -> Result<Vec<u8>, StoreError> {
    let mut header = [0u8; ENTRY_HEADER as usize];
    file.read_exact_at(&mut header, loc.offset)
        .map_err(|e| StoreError::io(path, e))?;
    if &header[..4] != ENTRY_MAGIC || header[4..36] != id.0 {
        return Err(StoreError::Corrupt {
            blob: *id,
            why: format!(
                "{} has no entry for it at offset {}",
                path.display(),
                loc.offset
            ),
        });
    }
    let mut stored = vec![0u8; loc.stored_len as usize];
    file.read_exact_at(&mut stored, loc.offset + ENTRY_HEADER)
        .map_err(|e| StoreError::io(path, e))?;
    let raw = match loc.codec {
        Codec::Stored => stored,
        Codec::Zstd => zstd::bulk::decompress(&stored, loc.raw_len as usize).map_err(|e| {
            StoreError::Corrupt {
                blob: *id,
                why: format!("cannot decompress: {e}"),
            }
        })?,
    };
    if raw.len() as u64 != loc.raw_len || BlobId::of(&raw) != *id {
        return Err(StoreError::Corrupt {
            blob: *id,
            why: "its bytes do not match its hash".into(),
        });
    }
    Ok(raw)
}

/// One entry found by [`scan`].
#[derive(Debug, Clone, Copy)]
pub struct ScannedEntry {
    /// The blob.
    pub id: BlobId,
    /// Where it is.
    pub location: BlobLocation,
    /// What it is.
    pub kind: BlobKind,
}

/// Reads a pack front to back and lists its entries (without decoding them).
/// A torn tail (a crash while writing an unfinished pack) ends the scan.
pub fn scan(path: &Path, pack: PackId) -> Result<Vec<ScannedEntry>, StoreError> {
    let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)
        .map_err(|e| StoreError::io(path, e))?;
    if &magic != FILE_MAGIC {
        return Err(StoreError::BadPack {
            path: path.to_owned(),
            why: "not a mailrestore pack (bad magic)".into(),
        });
    }
    let mut out = Vec::new();
    let mut offset = FILE_MAGIC.len() as u64;
    while offset + ENTRY_HEADER <= len {
        let mut h = [0u8; ENTRY_HEADER as usize];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut h))
            .map_err(|e| StoreError::io(path, e))?;
        if &h[..4] != ENTRY_MAGIC {
            break;
        }
        let raw_len = u64::from_le_bytes(h[36..44].try_into().unwrap_or([0; 8]));
        let stored_len = u64::from_le_bytes(h[44..52].try_into().unwrap_or([0; 8]));
        let Some(codec) = Codec::from_byte(h[52]) else {
            break;
        };
        if offset + ENTRY_HEADER + stored_len > len {
            break;
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&h[4..36]);
        out.push(ScannedEntry {
            id: BlobId(id),
            kind: BlobKind::from_byte(h[53]),
            location: BlobLocation {
                pack,
                offset,
                stored_len,
                raw_len,
                codec,
            },
        });
        offset += ENTRY_HEADER + stored_len;
    }
    Ok(out)
}
