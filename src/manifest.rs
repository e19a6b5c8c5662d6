//! Manifests: what a generation (restore point) holds, stored as blobs.
//!
//! ```text
//! RootManifest ──▶ FolderManifest (one blob per folder)
//!                    ──▶ ChunkGroup blobs ──▶ MessageChunk blobs
//! ```
//!
//! Every manifest is deterministic JSON (fixed field order, sorted flags), so
//! an unchanged folder produces the same [`FolderManifest`] blob and costs
//! nothing in a new generation. A folder's messages are cut into chunks at
//! boundaries decided by the UIDs alone (a hash of the UID, and every 512th
//! UID), and chunks are gathered into groups the same way, so one new message
//! in a 50,000-message folder rewrites one chunk (about 100 entries), one
//! group and the folder manifest: a few KiB, not the folder.
//!
//! [`Generation`] is the index's summary of a root manifest; it can always
//! be rebuilt from the root manifest alone.

use std::fmt;

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::store::BlobId;

/// Version of the manifest format written by this build.
pub const MANIFEST_FORMAT: u32 = 1;

/// A restore point's id: its UTC time, `20261126T140500Z`, with `-N` added
/// when a user has two points in the same second.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GenerationId(String);

impl GenerationId {
    /// The id for a point taken at `t` (`n` > 1 distinguishes same-second points).
    pub fn new(t: Timestamp, n: u32) -> GenerationId {
        let base = t.format("%Y%m%dT%H%M%SZ").to_string();
        if n <= 1 {
            GenerationId(base)
        } else {
            GenerationId(format!("{base}-{n}"))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GenerationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for GenerationId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let ok = s.len() >= 16
            && s.len() <= 24
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b == b'T' || b == b'Z' || b == b'-');
        if ok {
            Ok(GenerationId(s))
        } else {
            Err(format!(
                "{s:?} is not a restore point id (expected e.g. 20261126T140500Z)"
            ))
        }
    }
}

impl std::str::FromStr for GenerationId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GenerationId::try_from(s.to_string())
    }
}

impl From<GenerationId> for String {
    fn from(g: GenerationId) -> String {
        g.0
    }
}

/// Mail counts of a point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailCounts {
    /// Folders.
    pub folders: u64,
    /// Messages.
    pub messages: u64,
    /// Sum of RFC822.SIZE.
    pub bytes: u64,
}

/// Calendar or contact counts of a point.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionCounts {
    /// Collections.
    pub collections: u64,
    /// Items.
    pub items: u64,
}

/// The index's record of a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Id.
    pub id: GenerationId,
    /// The mailbox.
    pub user: String,
    /// When the snapshot started.
    pub taken_at: Timestamp,
    /// The root manifest blob.
    pub root: BlobId,
    /// Mail counts.
    pub mail: MailCounts,
    /// Calendar counts.
    pub calendars: CollectionCounts,
    /// Contact counts.
    pub contacts: CollectionCounts,
    /// Which mailbox the point is of (see [`MailboxIdentity`]); absent in
    /// points taken before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<MailboxIdentity>,
    /// What the point lacks because a backend was down when it was taken
    /// (`["dav"]`); empty for a complete point.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<String>,
}

/// Which mailbox a point belongs to, beyond its user name: an address
/// deleted and given to someone else is a new mailbox with the same name.
/// On IMAP it is the INBOX's UIDVALIDITY at the snapshot (`imap-inbox-
/// uidvalidity:N`): a server gives a new mailbox's INBOX a new UIDVALIDITY
/// (Dovecot: the creation time), and keeps it while the mailbox lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxIdentity {
    /// The identity, compared as a string.
    pub id: String,
}

impl MailboxIdentity {
    /// The identity of a mailbox whose INBOX has `uid_validity`.
    pub fn of_inbox(uid_validity: u32) -> MailboxIdentity {
        MailboxIdentity {
            id: format!("imap-inbox-uidvalidity:{uid_validity}"),
        }
    }
}

/// The personal namespace as the server announced it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Prefix (`""` or `INBOX.`).
    pub prefix: String,
    /// Hierarchy separator.
    pub separator: Option<char>,
}

/// A generation's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootManifest {
    /// [`MANIFEST_FORMAT`]; a root of another format does not decode.
    #[serde(deserialize_with = "known_format")]
    pub format: u32,
    /// Id.
    pub id: GenerationId,
    /// The mailbox.
    pub user: String,
    /// When the snapshot started.
    pub taken_at: Timestamp,
    /// The personal namespace at that time.
    pub namespace: Namespace,
    /// Mail counts.
    pub mail: MailCounts,
    /// Calendar counts.
    pub calendars: CollectionCounts,
    /// Contact counts.
    pub contacts: CollectionCounts,
    /// Folder manifests, in LIST order.
    pub folders: Vec<FolderRef>,
    /// Collection manifests ([`CollectionManifest`]), in discovery order.
    #[serde(default)]
    pub collections: Vec<BlobId>,
    /// Which mailbox this is of; absent in points taken before it was
    /// recorded (FORMAT.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<MailboxIdentity>,
    /// What the point lacks because a backend was down (`["dav"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<String>,
}

/// Refuses a manifest format this build does not know (FORMAT.md §1):
/// guessing at a newer layout could restore the wrong thing.
fn known_format<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let format = u32::deserialize(d)?;
    if format == MANIFEST_FORMAT {
        Ok(format)
    } else {
        Err(serde::de::Error::custom(format!(
            "manifest format {format} is not supported (this build reads format {MANIFEST_FORMAT})"
        )))
    }
}

impl RootManifest {
    /// The index record for this root stored as `root`.
    pub fn generation(&self, root: BlobId) -> Generation {
        Generation {
            id: self.id.clone(),
            user: self.user.clone(),
            taken_at: self.taken_at,
            root,
            mail: self.mail,
            calendars: self.calendars,
            contacts: self.contacts,
            mailbox: self.mailbox.clone(),
            partial: self.partial.clone(),
        }
    }
}

/// A folder in the root manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRef {
    /// Decoded name.
    pub name: String,
    /// Its manifest blob.
    pub manifest: BlobId,
}

/// One folder at snapshot time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderManifest {
    /// The name decoded to UTF-8 (full path, with the server's separator).
    pub name: String,
    /// The name as the server spelt it on the wire (modified UTF-7 or UTF-8).
    pub wire_name: String,
    /// Hierarchy separator.
    pub separator: Option<char>,
    /// Special-use attributes (`\Sent`, `\Trash`, …).
    pub special_use: Vec<String>,
    /// Subscribed at snapshot time.
    pub subscribed: bool,
    /// `\Noselect` / `\NonExistent`: a level of the hierarchy without messages.
    pub selectable: bool,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UIDNEXT.
    pub uid_next: u32,
    /// HIGHESTMODSEQ, when the server has CONDSTORE.
    pub highest_modseq: Option<u64>,
    /// Messages.
    pub messages: u64,
    /// Sum of sizes.
    pub bytes: u64,
    /// Chunk groups, in UID order.
    pub groups: Vec<BlobId>,
}

impl FolderManifest {
    /// A folder as a listing describes it, before anything of its
    /// messages is known: no messages, no UIDVALIDITY.
    pub fn listed(
        name: String,
        wire_name: String,
        separator: Option<char>,
        special_use: Vec<String>,
        subscribed: bool,
        selectable: bool,
    ) -> FolderManifest {
        FolderManifest {
            name,
            wire_name,
            separator,
            special_use,
            subscribed,
            selectable,
            uid_validity: 0,
            uid_next: 0,
            highest_modseq: None,
            messages: 0,
            bytes: 0,
            groups: Vec::new(),
        }
    }
}

/// A run of chunks of one folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkGroup {
    /// Chunk blobs, in UID order.
    pub chunks: Vec<BlobId>,
}

/// One message in a chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEntry {
    /// UID under the folder's UIDVALIDITY.
    pub uid: u32,
    /// The message bytes.
    pub blob: BlobId,
    /// RFC822.SIZE (the blob's length).
    pub size: u64,
    /// System flags (`\Seen`, …), sorted.
    pub flags: Vec<String>,
    /// Keywords (`$Label1`, `urgent`), sorted.
    pub keywords: Vec<String>,
    /// INTERNALDATE as the server gave it (`17-Jul-1996 02:44:25 -0700`).
    pub internal_date: String,
}

/// A run of messages of one folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageChunk {
    /// Entries in UID order.
    pub messages: Vec<MessageEntry>,
}

/// A calendar or address book at snapshot time (one blob per collection;
/// an unchanged collection gives the same blob and costs nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionManifest {
    /// Calendar or address book.
    pub kind: crate::protocol::dav::CollectionKind,
    /// Its path on the server, as the server spelt it (percent-encoded).
    pub href: String,
    /// The path of the home it was found in.
    pub home: String,
    /// `displayname`.
    pub display_name: Option<String>,
    /// `calendar-color`.
    pub color: Option<String>,
    /// Calendar or address book description.
    pub description: Option<String>,
    /// Supported calendar components (`VEVENT`, `VTODO`, `VJOURNAL`).
    pub components: Vec<String>,
    /// `sync-token` when the snapshot listed it.
    pub sync_token: Option<String>,
    /// `getctag` when the server has it.
    pub ctag: Option<String>,
    /// Sum of the items' sizes.
    pub bytes: u64,
    /// The items, sorted by name.
    pub items: Vec<ItemEntry>,
}

/// One calendar object or vCard of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemEntry {
    /// The last segment of its href, as the server spelt it (encoded).
    pub name: String,
    /// `ETag` when fetched.
    pub etag: Option<String>,
    /// Its bytes, exactly as the server returned them.
    pub blob: BlobId,
    /// Their length.
    pub size: u64,
    /// `Content-Type` as the server gave it.
    pub content_type: Option<String>,
    /// The iCalendar or vCard UID, when it could be read.
    pub uid: Option<String>,
}

/// Most entries in one chunk, whatever the boundaries say.
const MAX_CHUNK: usize = 512;
/// Most chunks in one group.
const MAX_GROUP: usize = 128;

/// True when a chunk ends after the message with this UID: about one UID in
/// 128, and every 512th UID (so the open tail where new mail arrives stays
/// small), decided by the UID alone so boundaries do not move as messages
/// come and go elsewhere in the folder.
pub fn is_chunk_boundary(uid: u32) -> bool {
    uid.is_multiple_of(512) || blake3::hash(&uid.to_le_bytes()).as_bytes()[0] < 2
}

/// True when a group ends after the chunk whose last UID is `uid`: about
/// one chunk in 32, and at every 16,384th UID.
fn is_group_boundary(uid: u32) -> bool {
    let mut h = blake3::Hasher::new();
    h.update(b"group");
    h.update(&uid.to_le_bytes());
    uid.is_multiple_of(16_384) || h.finalize().as_bytes()[0] < 8
}

/// Gathers chunk blobs (each with its last UID, in UID order) into groups.
pub fn group(chunks: Vec<(BlobId, u32)>) -> Vec<ChunkGroup> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for (id, last_uid) in chunks {
        current.push(id);
        if is_group_boundary(last_uid) || current.len() >= MAX_GROUP {
            out.push(ChunkGroup {
                chunks: std::mem::take(&mut current),
            });
        }
    }
    if !current.is_empty() {
        out.push(ChunkGroup { chunks: current });
    }
    out
}

/// Cuts a folder's entries (sorted by UID) into chunks.
pub fn chunk(entries: Vec<MessageEntry>) -> Vec<MessageChunk> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for e in entries {
        let boundary = is_chunk_boundary(e.uid);
        current.push(e);
        if boundary || current.len() >= MAX_CHUNK {
            out.push(MessageChunk {
                messages: std::mem::take(&mut current),
            });
        }
    }
    if !current.is_empty() {
        out.push(MessageChunk { messages: current });
    }
    out
}

/// Deterministic JSON of a manifest.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our manifest types hold only strings, numbers and lists: always serialisable.
    serde_json::to_vec(value).expect("manifests always serialise")
}

/// Parses a manifest blob.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: u32) -> MessageEntry {
        MessageEntry {
            uid,
            blob: BlobId::of(&uid.to_le_bytes()),
            size: 100,
            flags: vec!["\\Seen".into()],
            keywords: vec![],
            internal_date: "17-Jul-1996 02:44:25 -0700".into(),
        }
    }

    /// Encoded size of what a folder's manifests add over `old`: new chunks
    /// and groups (compressed as the store would) and the folder's group list.
    fn added_bytes(
        entries: Vec<MessageEntry>,
        old: &std::collections::HashSet<BlobId>,
    ) -> (usize, std::collections::HashSet<BlobId>) {
        let mut seen = std::collections::HashSet::new();
        let mut added = 0;
        let mut put = |bytes: Vec<u8>, seen: &mut std::collections::HashSet<BlobId>| {
            let id = BlobId::of(&bytes);
            if !old.contains(&id) {
                added += zstd::bulk::compress(&bytes, 3).unwrap().len();
            }
            seen.insert(id);
            id
        };
        let mut chunk_ids = Vec::new();
        for c in chunk(entries) {
            let last = c.messages.last().unwrap().uid;
            chunk_ids.push((put(encode(&c), &mut seen), last));
        }
        let groups: Vec<BlobId> = group(chunk_ids)
            .iter()
            .map(|g| put(encode(g), &mut seen))
            .collect();
        put(encode(&groups), &mut seen);
        (added, seen)
    }

    #[test]
    fn one_new_message_in_50000_adds_a_few_kib_of_manifest() {
        let (first, ids) = added_bytes((1..=50_000).map(entry).collect(), &Default::default());
        assert!(first > 1_000_000, "{first}");
        for n in [50_001, 50_100, 50_500] {
            let (added, _) = added_bytes((1..=n).map(entry).collect(), &ids);
            assert!(added < 24 * 1024, "{n}: {added} bytes");
        }
        let mut fewer: Vec<MessageEntry> = (1..=50_000).map(entry).collect();
        fewer.remove(25_000);
        let (added, _) = added_bytes(fewer, &ids);
        assert!(added < 24 * 1024, "expunge: {added} bytes");
    }

    #[test]
    fn one_new_message_changes_only_the_last_chunk() {
        let before = chunk((1..=50_000).map(entry).collect());
        let after = chunk((1..=50_001).map(entry).collect());
        assert!(
            before.len() > 200 && before.len() < 800,
            "{} chunks",
            before.len()
        );
        let ids = |c: &[MessageChunk]| c.iter().map(|c| BlobId::of(&encode(c))).collect::<Vec<_>>();
        let (b, a) = (ids(&before), ids(&after));
        let shared = b.iter().filter(|x| a.contains(x)).count();
        assert!(
            shared >= b.len() - 1,
            "{shared} of {} chunks shared",
            b.len()
        );
        // An expunge in the middle touches one chunk too.
        let mut fewer: Vec<MessageEntry> = (1..=50_000).map(entry).collect();
        fewer.remove(25_000);
        let c = ids(&chunk(fewer));
        assert!(b.iter().filter(|x| c.contains(x)).count() >= b.len() - 1);
    }

    #[test]
    fn a_root_of_an_unknown_format_does_not_decode() {
        let t = crate::time::from_second(1_764_165_900).unwrap();
        let root = RootManifest {
            format: MANIFEST_FORMAT,
            id: GenerationId::new(t, 1),
            user: "alice@example.org".into(),
            taken_at: t,
            namespace: Namespace::default(),
            mail: MailCounts::default(),
            calendars: CollectionCounts::default(),
            contacts: CollectionCounts::default(),
            folders: vec![],
            collections: vec![],
            mailbox: None,
            partial: vec![],
        };
        let bytes = encode(&root);
        assert_eq!(decode::<RootManifest>(&bytes).unwrap(), root);
        let newer = String::from_utf8(bytes)
            .unwrap()
            .replace("\"format\":1", "\"format\":2");
        let err = decode::<RootManifest>(newer.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("format 2 is not supported"),
            "{err}"
        );
        // Unknown fields are ignored; `collections` may be absent.
        let older = String::from_utf8(encode(&root))
            .unwrap()
            .replace(",\"collections\":[]", ",\"later\":true");
        assert_eq!(decode::<RootManifest>(older.as_bytes()).unwrap(), root);
    }

    #[test]
    fn generation_ids_sort_by_time_and_parse() {
        let t = crate::time::from_second(1_764_165_900).unwrap();
        let id = GenerationId::new(t, 1);
        assert_eq!(id.as_str(), "20251126T140500Z");
        assert_eq!(GenerationId::new(t, 2).as_str(), "20251126T140500Z-2");
        assert!(GenerationId::new(t + crate::time::TimeDelta::seconds(1), 1) > id);
        assert_eq!(id.as_str().parse::<GenerationId>().unwrap(), id);
        for bad in ["", "../etc", "20251126T140500Z/x", "x".repeat(30).as_str()] {
            assert!(bad.parse::<GenerationId>().is_err(), "{bad}");
        }
    }
}
