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
use std::io::{BufWriter, Read, Write};
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
        // A pack that cannot be made durable (a full disk) leaves no file.
        let synced = file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| {
                crate::failpoint::hit("pack.written");
                file.sync_all()
            });
        if let Err(e) = synced {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::io(&tmp, e));
        }
        crate::failpoint::hit("pack.synced");
        let root = tmp
            .parent()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"))
            .to_owned();
        let final_path = id.path(&root);
        std::fs::rename(&tmp, &final_path).map_err(|e| StoreError::io(&final_path, e))?;
        crate::failpoint::hit("pack.renamed");
        if let Some(dir) = final_path.parent() {
            sync_dir(dir)?;
        }
        crate::failpoint::hit("pack.durable");
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

/// The largest blob a pack entry may claim: a message bigger than the
/// largest IMAP literal the client accepts (1 GiB) cannot have been stored,
/// so a header claiming more is damaged, not big.
pub const MAX_BLOB: u64 = 1 << 30;

/// Reads a blob's stored bytes at `loc` from an open pack and decodes them.
/// Every length comes from the index and is checked against the entry's
/// header and the pack's size before anything is allocated: no damage on
/// disk can make it allocate more than the pack holds.
pub fn read_at(
    file: &File,
    path: &Path,
    id: &BlobId,
    loc: &BlobLocation,
) -> Result<Vec<u8>, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt { blob: *id, why };
    let size = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let end = loc
        .offset
        .checked_add(ENTRY_HEADER)
        .and_then(|o| o.checked_add(loc.stored_len));
    if end.is_none_or(|end| end > size) || loc.raw_len > MAX_BLOB {
        return Err(corrupt(format!(
            "{} ({size} bytes) cannot hold its entry at offset {} ({} bytes)",
            path.display(),
            loc.offset,
            loc.stored_len
        )));
    }
    let mut header = [0u8; ENTRY_HEADER as usize];
    file.read_exact_at(&mut header, loc.offset)
        .map_err(|e| StoreError::io(path, e))?;
    // Magic and id only: the lengths and codec come from the index, and
    // the hash below vouches for the bytes (a damaged length in the header
    // harms a rebuild, which `verify --read-data` reports, not this read).
    if &header[..4] != ENTRY_MAGIC || header[4..36] != id.0 {
        return Err(corrupt(format!(
            "{} has no entry for it at offset {}",
            path.display(),
            loc.offset
        )));
    }
    let mut stored = vec![0u8; loc.stored_len as usize];
    file.read_exact_at(&mut stored, loc.offset + ENTRY_HEADER)
        .map_err(|e| StoreError::io(path, e))?;
    let raw = match loc.codec {
        Codec::Stored => stored,
        Codec::Zstd => decompress(&stored, loc.raw_len)
            .map_err(|e| corrupt(format!("cannot decompress: {e}")))?,
    };
    if raw.len() as u64 != loc.raw_len || BlobId::of(&raw) != *id {
        return Err(corrupt("its bytes do not match its hash".into()));
    }
    Ok(raw)
}

/// Decompresses at most `raw_len` bytes (and one more, to see a lie): the
/// output grows with what the data really holds, never with what a header
/// claims.
fn decompress(stored: &[u8], raw_len: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw_len.min(stored.len() as u64 * 4) as usize);
    zstd::stream::read::Decoder::new(stored)?
        .take(raw_len + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// An entry header's fields.
#[derive(Debug, Clone, Copy)]
struct Header {
    id: BlobId,
    raw_len: u64,
    stored_len: u64,
    codec: Codec,
    kind: BlobKind,
}

/// Parses an entry header; `None` when it is not one (bad magic, unknown
/// codec, nonzero padding, impossible lengths).
fn parse_header(h: &[u8; ENTRY_HEADER as usize]) -> Option<Header> {
    if &h[..4] != ENTRY_MAGIC || h[54..].iter().any(|&b| b != 0) {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&h[4..36]);
    let raw_len = u64::from_le_bytes(h[36..44].try_into().ok()?);
    let stored_len = u64::from_le_bytes(h[44..52].try_into().ok()?);
    let codec = Codec::from_byte(h[52])?;
    let plausible = raw_len <= MAX_BLOB
        && match codec {
            Codec::Stored => stored_len == raw_len,
            // zstd is kept only when it is smaller (see `add`).
            Codec::Zstd => stored_len < raw_len,
        };
    let kind = match h[53] {
        0 => BlobKind::Data,
        1 => BlobKind::Root,
        2 => BlobKind::Manifest,
        _ => return None,
    };
    plausible.then_some(Header {
        id: BlobId(id),
        raw_len,
        stored_len,
        codec,
        kind,
    })
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

/// A region of a pack a scan could not read as entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRegion {
    /// Where it starts.
    pub offset: u64,
    /// Where the next readable entry (or the end of the pack) starts.
    pub end: u64,
}

/// What a front-to-back [`scan`] of a pack found.
#[derive(Debug, Clone, Default)]
pub struct PackScan {
    /// The pack's size.
    pub len: u64,
    /// Every entry whose header reads well, in offset order.
    pub entries: Vec<ScannedEntry>,
    /// The regions between them that are not entries (empty for a sound
    /// pack). An entry found after a damaged region is only as good as its
    /// hash: read it before trusting it.
    pub damaged: Vec<DamagedRegion>,
}

impl PackScan {
    /// True when the whole pack reads as entries, end to end.
    pub fn is_whole(&self) -> bool {
        self.damaged.is_empty()
    }
}

/// Reads a pack front to back and lists its entries (without decoding
/// them). A finished pack is never torn (it is renamed into place only once
/// durable), so any byte that is not part of an entry is damage: the scan
/// notes the region, looks for the next entry header after it, and goes on.
/// A pack whose magic is wrong is an error: nothing in it is trusted.
pub fn scan(path: &Path, pack: PackId) -> Result<PackScan, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let mut magic = [0u8; 8];
    if file.read_exact_at(&mut magic, 0).is_err() || &magic != FILE_MAGIC {
        return Err(StoreError::BadPack {
            path: path.to_owned(),
            why: "not a mailrestore pack (bad magic)".into(),
        });
    }
    let mut out = PackScan {
        len,
        ..PackScan::default()
    };
    let mut offset = FILE_MAGIC.len() as u64;
    while offset < len {
        match entry_at(&file, path, offset, len)? {
            Some(h) => {
                out.entries.push(ScannedEntry {
                    id: h.id,
                    kind: h.kind,
                    location: BlobLocation {
                        pack,
                        offset,
                        stored_len: h.stored_len,
                        raw_len: h.raw_len,
                        codec: h.codec,
                    },
                });
                offset += ENTRY_HEADER + h.stored_len;
            }
            None => {
                let end = next_header(&file, path, offset + 1, len)?;
                out.damaged.push(DamagedRegion { offset, end });
                offset = end;
            }
        }
    }
    Ok(out)
}

/// The entry whose header starts at `offset`, if one does and it fits in
/// the pack.
fn entry_at(file: &File, path: &Path, offset: u64, len: u64) -> Result<Option<Header>, StoreError> {
    if offset + ENTRY_HEADER > len {
        return Ok(None);
    }
    let mut h = [0u8; ENTRY_HEADER as usize];
    file.read_exact_at(&mut h, offset)
        .map_err(|e| StoreError::io(path, e))?;
    Ok(parse_header(&h).filter(|h| offset + ENTRY_HEADER + h.stored_len <= len))
}

/// The offset of the next plausible entry header at or after `from` (the
/// pack's length when there is none).
fn next_header(file: &File, path: &Path, from: u64, len: u64) -> Result<u64, StoreError> {
    const WINDOW: usize = 1 << 16;
    let mut buf = vec![0u8; WINDOW + ENTRY_MAGIC.len()];
    let mut at = from;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)
            .map_err(|e| StoreError::io(path, e))?;
        for i in memchr::memmem::find_iter(&buf[..n], ENTRY_MAGIC) {
            let candidate = at + i as u64;
            if entry_at(file, path, candidate, len)?.is_some() {
                return Ok(candidate);
            }
        }
        if n < buf.len() {
            break;
        }
        at += WINDOW as u64;
    }
    Ok(len)
}
