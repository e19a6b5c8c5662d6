//! The IMAP source: reads one folder of the live mailbox into the store,
//! read-only (EXAMINE, BODY.PEEK), incrementally against the previous
//! generation's manifest of the same folder.
//!
//! - Same UIDVALIDITY, same UIDNEXT, same HIGHESTMODSEQ and message count:
//!   the folder is unchanged and its previous manifest is reused as is.
//! - Same UIDVALIDITY otherwise: flags come from `UID FETCH (FLAGS)`, with
//!   `CHANGEDSINCE` under CONDSTORE; only UIDs not seen before are downloaded.
//! - A new UIDVALIDITY (or no previous manifest): every message is
//!   downloaded again, and stored once more only if its bytes are new.

use std::collections::HashMap;

use crate::blob::{BlobId, BlobKind};
use crate::manifest::{self, FolderManifest, MessageEntry};
use crate::net::imap::ImapConnection;
use crate::protocol::imap::{
    BodySection, FetchItems, FetchRequest, FetchedMessage, Flag, MailboxEntry, Uid, UidRange,
    UidSet,
};
use crate::repo::{BlobWriter, Repository, off_thread};

use super::{Progress, SnapshotError};

/// Snapshots one folder; returns its manifest.
pub async fn snapshot_folder(
    conn: &mut ImapConnection,
    entry: &MailboxEntry,
    prev: Option<&FolderManifest>,
    store: &Repository,
    writer: &mut BlobWriter,
    progress: &Progress,
) -> Result<FolderManifest, SnapshotError> {
    let mut folder = listed_folder(entry);
    if !folder.selectable {
        return Ok(folder);
    }
    let sel = conn.examine(&entry.name).await?;
    folder.uid_validity = sel.uid_validity.get();
    folder.uid_next = sel.uid_next.map_or(0, Uid::get);
    folder.highest_modseq = sel.highest_modseq.map(|m| m.get());

    let same_validity = prev.filter(|p| p.uid_validity == folder.uid_validity && p.selectable);
    if let Some(p) = same_validity.filter(|p| is_unchanged(p, &folder, sel.exists)) {
        progress.skipped(p.messages, p.bytes);
        return Ok(FolderManifest {
            messages: p.messages,
            bytes: p.bytes,
            groups: p.groups.clone(),
            ..folder
        });
    }
    if sel.exists == 0 {
        return writer
            .off_thread(move |w| finish(folder, Vec::new(), w))
            .await;
    }
    let (mut kept, to_fetch) =
        known_messages(conn, store, same_validity, sel.exists, progress).await?;
    if let Some(uids) = to_fetch {
        download(conn, uids, writer, &mut kept, progress).await?;
    }
    kept.sort_by_key(|e| e.uid);
    kept.dedup_by_key(|e| e.uid);
    writer.off_thread(move |w| finish(folder, kept, w)).await
}

/// The folder as LIST describes it, before EXAMINE says anything of its
/// messages.
fn listed_folder(entry: &MailboxEntry) -> FolderManifest {
    let mut special_use: Vec<String> = entry
        .special_uses()
        .map(|s| s.as_str().to_string())
        .collect();
    special_use.sort();
    FolderManifest::listed(
        entry.name.as_str().to_string(),
        String::from_utf8_lossy(entry.name.raw()).into_owned(),
        entry.delimiter,
        special_use,
        entry.is_subscribed(),
        entry.is_selectable(),
    )
}

/// Whether the folder is as `prev` left it (same UIDVALIDITY assumed): no
/// new UID, no flag change (HIGHESTMODSEQ), no expunge (message count).
fn is_unchanged(prev: &FolderManifest, now: &FolderManifest, exists: u32) -> bool {
    prev.uid_next == now.uid_next
        && prev.highest_modseq.is_some()
        && prev.highest_modseq == now.highest_modseq
        && prev.messages == u64::from(exists)
}

/// The messages of `prev` (same UIDVALIDITY) still in the folder, with
/// their flags brought up to date, and the UIDs still to download (`None`:
/// none). Without `prev`, every message is to download.
async fn known_messages(
    conn: &mut ImapConnection,
    store: &Repository,
    prev: Option<&FolderManifest>,
    exists: u32,
    progress: &Progress,
) -> Result<(Vec<MessageEntry>, Option<UidSet>), SnapshotError> {
    let old = match prev {
        Some(p) => {
            let (repo, p) = (store.clone(), p.clone());
            match off_thread(move || load_entries(&repo, &p)).await {
                Ok(old) => old,
                Err(e) if e.is_damage() => {
                    progress.warn(format!(
                        "the previous point's list of messages cannot be read ({e}): the folder is read again in full"
                    ));
                    HashMap::new()
                }
                Err(e) => return Err(e),
            }
        }
        None => HashMap::new(),
    };
    if old.is_empty() {
        return Ok((Vec::new(), Some(UidSet::all())));
    }
    let (kept, new) = resync_flags(conn, old, prev, exists).await?;
    progress.skipped(kept.len() as u64, kept.iter().map(|e| e.size).sum());
    let to_fetch = if new.is_empty() {
        None
    } else {
        UidSet::new(ranges(new))
    };
    Ok((kept, to_fetch))
}

/// Writes the chunks and groups and fills the counts.
fn finish(
    mut folder: FolderManifest,
    entries: Vec<MessageEntry>,
    writer: &mut BlobWriter,
) -> Result<FolderManifest, SnapshotError> {
    folder.messages = entries.len() as u64;
    folder.bytes = entries.iter().map(|e| e.size).sum();
    let mut chunks = Vec::new();
    for chunk in manifest::chunk(entries) {
        let last_uid = chunk.messages.last().map_or(0, |m| m.uid);
        let (id, _) = writer.put_kind(&manifest::encode(&chunk), BlobKind::Manifest)?;
        chunks.push((id, last_uid));
    }
    for group in manifest::group(chunks) {
        let (id, _) = writer.put_kind(&manifest::encode(&group), BlobKind::Manifest)?;
        folder.groups.push(id);
    }
    Ok(folder)
}

/// The previous point's messages of a folder, by UID, without those whose
/// blob was found damaged since: they download again.
fn load_entries(
    store: &Repository,
    prev: &FolderManifest,
) -> Result<HashMap<u32, MessageEntry>, SnapshotError> {
    let index = store.index();
    let mut out = HashMap::new();
    for m in super::folder_messages(store, prev)? {
        if !index.is_damaged(&m.blob)? {
            out.insert(m.uid, m);
        }
    }
    Ok(out)
}

/// Brings the flags of known messages up to date; returns the entries still
/// present and the UIDs that are new.
async fn resync_flags(
    conn: &mut ImapConnection,
    mut old: HashMap<u32, MessageEntry>,
    prev: Option<&FolderManifest>,
    exists: u32,
) -> Result<(Vec<MessageEntry>, Vec<u32>), SnapshotError> {
    let condstore_since = prev
        .and_then(|p| p.highest_modseq)
        .and_then(crate::protocol::imap::ModSeq::new);
    if let Some(since) = condstore_since {
        // Only what changed since the previous snapshot: flag changes and
        // new messages. If the count then adds up, nothing was expunged.
        let changed = fetch_flags(conn, Some(since)).await?;
        let mut new = Vec::new();
        let mut updates = Vec::new();
        for m in changed {
            if old.contains_key(&m.uid.get()) {
                updates.push(m);
            } else {
                new.push(m.uid.get());
            }
        }
        if old.len() + new.len() == exists as usize {
            for m in updates {
                if let Some(e) = old.get_mut(&m.uid.get()) {
                    set_flags(e, &m.flags);
                }
            }
            return Ok((old.into_values().collect(), new));
        }
    }
    // Full listing: every UID with its flags.
    let all = fetch_flags(conn, None).await?;
    let mut kept = Vec::with_capacity(all.len());
    let mut new = Vec::new();
    for m in all {
        match old.remove(&m.uid.get()) {
            Some(mut e) => {
                set_flags(&mut e, &m.flags);
                kept.push(e);
            }
            None => new.push(m.uid.get()),
        }
    }
    Ok((kept, new))
}

async fn fetch_flags(
    conn: &mut ImapConnection,
    changed_since: Option<crate::protocol::imap::ModSeq>,
) -> Result<Vec<FetchedMessage>, SnapshotError> {
    let stream = conn
        .uid_fetch(FetchRequest {
            uids: UidSet::all(),
            items: FetchItems::FlagsOnly,
            changed_since,
        })
        .await?;
    Ok(stream.collect().await?)
}

/// Downloads whole messages, one at a time, into the store.
async fn download(
    conn: &mut ImapConnection,
    uids: UidSet,
    writer: &mut BlobWriter,
    out: &mut Vec<MessageEntry>,
    progress: &Progress,
) -> Result<(), SnapshotError> {
    let mut stream = conn
        .uid_fetch(FetchRequest {
            uids,
            items: FetchItems::Full(BodySection::Body),
            changed_since: None,
        })
        .await?;
    let mut batch = Batch::default();
    while let Some(mut m) = stream.next().await? {
        progress.check_stop()?;
        let Some(body) = m.body.take() else {
            // A message expunged while we fetch answers without a body; it is
            // not part of this point.
            continue;
        };
        let internal_date = m
            .internal_date
            .map(|d| d.to_imap_string())
            .unwrap_or_default();
        let mut entry = MessageEntry {
            uid: m.uid.get(),
            // Set when the batch is stored.
            blob: BlobId([0; 32]),
            size: body.len() as u64,
            flags: Vec::new(),
            keywords: Vec::new(),
            internal_date,
        };
        set_flags(&mut entry, &m.flags);
        batch.add(entry, body);
        if batch.is_full() {
            batch.store(writer, out, progress).await?;
        }
    }
    batch.store(writer, out, progress).await
}

/// Messages stored per trip to the blocking pool: enough to spread the
/// hand-off over many small messages, few enough to keep memory flat.
const STORE_BATCH_MESSAGES: usize = 64;
/// Bytes of message bodies that end a batch early.
const STORE_BATCH_BYTES: usize = 1 << 20;

/// Downloaded messages waiting to be stored.
#[derive(Default)]
struct Batch {
    entries: Vec<MessageEntry>,
    bodies: Vec<Vec<u8>>,
    bytes: usize,
}

impl Batch {
    fn add(&mut self, entry: MessageEntry, body: Vec<u8>) {
        self.bytes += body.len();
        self.entries.push(entry);
        self.bodies.push(body);
    }

    fn is_full(&self) -> bool {
        self.entries.len() >= STORE_BATCH_MESSAGES || self.bytes >= STORE_BATCH_BYTES
    }

    /// Stores the bodies (hashing, zstd, pack writes: off the async
    /// threads) and moves the entries, with their blob ids, to `out`.
    async fn store(
        &mut self,
        writer: &mut BlobWriter,
        out: &mut Vec<MessageEntry>,
        progress: &Progress,
    ) -> Result<(), SnapshotError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let bodies = std::mem::take(&mut self.bodies);
        let ids = writer
            .off_thread(move |w| {
                bodies
                    .iter()
                    .map(|b| w.put(b).map(|(id, _)| id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        for (mut entry, id) in self.entries.drain(..).zip(ids) {
            entry.blob = id;
            progress.downloaded(entry.size);
            out.push(entry);
        }
        self.bytes = 0;
        Ok(())
    }
}

/// Splits flags into system flags and keywords, sorted (so manifests are
/// deterministic); `\Recent` is never kept.
fn set_flags(e: &mut MessageEntry, flags: &[Flag]) {
    let mut system = Vec::new();
    let mut keywords = Vec::new();
    for f in flags {
        let s = f.as_str();
        if f.is_recent() {
            continue;
        }
        if s.starts_with('\\') {
            system.push(s.to_string());
        } else {
            keywords.push(s.to_string());
        }
    }
    system.sort();
    system.dedup();
    keywords.sort();
    keywords.dedup();
    e.flags = system;
    e.keywords = keywords;
}

/// Sorted UIDs to ranges.
fn ranges(mut uids: Vec<u32>) -> Vec<UidRange> {
    uids.sort_unstable();
    uids.dedup();
    let mut out: Vec<UidRange> = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    for u in uids {
        run = match run {
            Some((a, b)) if u == b + 1 => Some((a, u)),
            Some((a, b)) => {
                push_range(&mut out, a, b);
                Some((u, u))
            }
            None => Some((u, u)),
        };
    }
    if let Some((a, b)) = run {
        push_range(&mut out, a, b);
    }
    out
}

fn push_range(out: &mut Vec<UidRange>, a: u32, b: u32) {
    if let (Some(a), Some(b)) = (Uid::new(a), Uid::new(b)) {
        out.push(if a == b {
            UidRange::single(a)
        } else {
            UidRange::new(a, b)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_runs_become_ranges() {
        let r = ranges(vec![5, 1, 2, 3, 9, 10, 3]);
        let shown: Vec<(u32, Option<u32>)> = r
            .iter()
            .map(|r| (r.first.get(), r.last.map(Uid::get)))
            .collect();
        assert_eq!(shown, vec![(1, Some(3)), (5, Some(5)), (9, Some(10))]);
        assert!(ranges(vec![]).is_empty());
    }

    #[test]
    fn flags_split_sorted_without_recent() {
        let mut e = MessageEntry {
            uid: 1,
            blob: crate::store::BlobId::of(b""),
            size: 0,
            flags: vec![],
            keywords: vec![],
            internal_date: String::new(),
        };
        let flags: Vec<Flag> = ["\\Seen", "zeta", "$Label1", "\\Answered"]
            .iter()
            .map(|f| Flag::new(*f).unwrap())
            .collect();
        set_flags(&mut e, &flags);
        assert_eq!(e.flags, vec!["\\Answered", "\\Seen"]);
        assert_eq!(e.keywords, vec!["$Label1", "zeta"]);
    }
}
