//! The names and places of blobs: [`BlobId`] (what a blob is), [`PackId`] and
//! [`BlobLocation`] (where it lies), [`BlobKind`] and [`Codec`].
//!
//! A leaf: it depends on nothing else of the crate, so the store (which
//! writes and reads packs) and the index (which records locations) both use
//! it without depending on each other.

use std::fmt;
use std::path::{Path, PathBuf};

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
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<BlobId> {
        blake3::Hash::from_hex(s)
            .ok()
            .map(|h| BlobId(*h.as_bytes()))
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

/// How a blob's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// As they are (incompressible data).
    Stored = 0,
    /// zstd.
    Zstd = 1,
}

/// What a blob is, recorded in its entry header so `verify --repair` can
/// find the root manifests without decoding every blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// A message, a calendar item: opaque bytes.
    Data = 0,
    /// A generation's root manifest.
    Root = 1,
    /// A folder manifest, a chunk, a collection manifest.
    Manifest = 2,
}

impl BlobKind {
    /// The kind an entry header's byte names (an unknown byte reads as data).
    pub fn from_byte(b: u8) -> BlobKind {
        match b {
            1 => BlobKind::Root,
            2 => BlobKind::Manifest,
            _ => BlobKind::Data,
        }
    }
}

/// Where a blob lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack.
    pub pack: PackId,
    /// Offset of the entry header in the pack.
    pub offset: u64,
    /// Length of the stored (maybe compressed) bytes.
    pub stored_len: u64,
    /// Length of the blob itself.
    pub raw_len: u64,
    /// How it is stored.
    pub codec: Codec,
}

impl BlobLocation {
    /// Encodes as 41 bytes for the index.
    pub fn to_bytes(&self) -> [u8; 41] {
        let mut b = [0u8; 41];
        b[..16].copy_from_slice(&self.pack.0);
        b[16..24].copy_from_slice(&self.offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.stored_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.raw_len.to_le_bytes());
        b[40] = self.codec as u8;
        b
    }

    /// Decodes what [`BlobLocation::to_bytes`] made.
    pub fn from_bytes(b: &[u8]) -> Option<BlobLocation> {
        if b.len() != 41 {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(BlobLocation {
            pack: PackId(b[..16].try_into().ok()?),
            offset: u64_at(16),
            stored_len: u64_at(24),
            raw_len: u64_at(32),
            codec: Codec::from_byte(b[40])?,
        })
    }
}

impl Codec {
    /// The codec an entry header's byte names; `None` for an unknown byte.
    pub fn from_byte(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::Stored),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// A pack's name: 16 random bytes, shown as 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(pub [u8; 16]);

impl PackId {
    /// A fresh id, unique across processes and restarts.
    pub fn random() -> PackId {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = blake3::Hasher::new();
        h.update(&std::process::id().to_le_bytes());
        h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        h.update(&now.as_nanos().to_le_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        PackId(id)
    }

    /// 32 hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", u128::from_be_bytes(self.0))
    }

    /// Parses 32 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<PackId> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let n = u128::from_str_radix(s, 16).ok()?;
        Some(PackId(n.to_be_bytes()))
    }

    /// `packs/ab/ab….pack` below the store root.
    pub fn path(&self, root: &Path) -> PathBuf {
        let hex = self.hex();
        root.join("packs")
            .join(&hex[..2])
            .join(format!("{hex}.pack"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let id = BlobId::of(b"x");
        assert_eq!(BlobId::from_hex(&id.hex()), Some(id));
        assert_eq!(BlobId::from_hex(&id.hex().to_uppercase()), Some(id));
        assert_eq!(id.hex(), blake3::hash(b"x").to_hex().as_str());
        for bad in ["zz", "", &id.hex()[1..], &format!("+{}", &id.hex()[1..])] {
            assert_eq!(BlobId::from_hex(bad), None, "{bad}");
        }
        let p = PackId::random();
        assert_eq!(PackId::from_hex(&p.hex()), Some(p));
        assert_eq!(PackId([0xab; 16]).hex(), "ab".repeat(16));
        assert_eq!(PackId([0; 16]).hex(), "0".repeat(32));
        for bad in [
            "+".to_owned() + &"0".repeat(31),
            "0".repeat(31),
            "g".repeat(32),
        ] {
            assert_eq!(PackId::from_hex(&bad), None, "{bad}");
        }
        assert_ne!(PackId::random(), PackId::random());
    }

    #[test]
    fn locations_round_trip_through_their_bytes() {
        let loc = BlobLocation {
            pack: PackId::random(),
            offset: 8,
            stored_len: 100,
            raw_len: 250,
            codec: Codec::Zstd,
        };
        assert_eq!(BlobLocation::from_bytes(&loc.to_bytes()), Some(loc));
        let mut bad = loc.to_bytes();
        bad[40] = 9;
        assert_eq!(BlobLocation::from_bytes(&bad), None);
        assert_eq!(BlobLocation::from_bytes(&bad[..40]), None);
    }
}
