//! The IMAP sink: creates and subscribes the planned folders and APPENDs a
//! folder's messages in batches (MULTIAPPEND when offered), exactly once.
//!
//! Exactly once: before a batch is sent, the journal records the target's
//! UIDNEXT and which messages the batch holds; after the server's OK it
//! records them done. A batch found pending at resume is settled by asking the
//! server (every message from that UIDNEXT on, compared by content hash with
//! the batch) instead of guessing.

use std::collections::BTreeSet;

use tracing::{debug, warn};

use crate::blob::BlobId;
use crate::manifest::MessageEntry;
use crate::net::imap::ImapConnection;
use crate::protocol::imap::{
    AppendMessage, BodySection, FetchItems, FetchRequest, Flag, ImapError, InternalDate,
    MailboxName, ResponseCode, Uid, UidRange, UidSet,
};

use super::{FolderJournal, Pending, RestoreError, Shared};

/// Most messages in one APPEND command.
const BATCH_MESSAGES: usize = 200;
/// Most bytes in one APPEND command (a larger message goes alone).
const BATCH_BYTES: u64 = 8 << 20;

/// Creates (if not yet) and subscribes a planned folder; true when this
/// call created it, false when it existed (`ALREADYEXISTS`: the caller
/// decides whether it is this restore's own, from before an interruption).
pub async fn create_folder(conn: &mut ImapConnection, name: &str) -> Result<bool, RestoreError> {
    let mailbox = MailboxName::from_utf8(name)?;
    let fresh = match conn.create(&mailbox).await {
        Ok(()) => {
            crate::failpoint::hit("restore.created");
            true
        }
        Err(e) if e.response_code() == Some(&ResponseCode::AlreadyExists) => {
            debug!(folder = name, "folder already exists");
            false
        }
        Err(e) => return Err(e.into()),
    };
    conn.subscribe(&mailbox).await?;
    Ok(fresh)
}

/// Restores one folder's messages into `target`, from where the journal
/// says the previous attempt stopped.
pub async fn restore_messages(
    conn: &mut ImapConnection,
    shared: &Shared<'_>,
    index: usize,
    target: &str,
    entries: &[MessageEntry],
    journal: FolderJournal,
) -> Result<(), RestoreError> {
    let mut folder = FolderRestore {
        shared,
        index,
        target,
        mailbox: MailboxName::from_utf8(target)?,
        journal,
    };
    folder.resume(conn, entries).await?;
    let kept = KeptFlags::of(conn, &folder.mailbox).await?;
    let multiappend = conn.capabilities().multiappend();
    let mut next = folder.journal.done as usize;
    // After a batch is refused for one of its messages (too big, over
    // quota…), its messages go one by one, each journaled, so everything
    // that fits lands and the culprit is known.
    let mut single_until = 0;
    while next < entries.len() {
        shared.check_stop()?;
        let end = batch_end(entries, next, multiappend && next >= single_until);
        match folder
            .append_batch(conn, &kept, next, &entries[next..end])
            .await?
        {
            Batch::Landed => next = end,
            Batch::OneByOne => single_until = end,
        }
    }
    Ok(())
}

/// One folder being restored: where its messages go, and its journal
/// (saved as folder `index` of the plan).
struct FolderRestore<'a, 's> {
    shared: &'a Shared<'s>,
    index: usize,
    target: &'a str,
    mailbox: MailboxName,
    journal: FolderJournal,
}

/// What became of a batch.
enum Batch {
    /// Appended, or (a lone message) refused and skipped; journaled done.
    Landed,
    /// A MULTIAPPEND refused for one of its messages: nothing of it landed,
    /// and its messages are to go one by one.
    OneByOne,
}

impl FolderRestore<'_, '_> {
    async fn save(&self) -> Result<(), RestoreError> {
        self.shared.save(self.index, &self.journal).await
    }

    /// Settles the batch the journal left pending, if any, and counts what
    /// is already in the target.
    async fn resume(
        &mut self,
        conn: &mut ImapConnection,
        entries: &[MessageEntry],
    ) -> Result<(), RestoreError> {
        if let Some(pending) = self.journal.pending.take() {
            // The session that sent this batch may have died with the whole
            // command already in the server's buffer: the server can still be
            // saving it. Settle only once the folder has stopped changing.
            wait_until_quiet(conn, &self.mailbox).await?;
            let landed = settle_pending(conn, &self.mailbox, &pending, entries).await?;
            debug!(
                folder = self.target,
                landed,
                of = pending.count,
                "settled a pending batch"
            );
            self.journal.done = pending.start + landed;
            self.save().await?;
        }
        let done = &entries[..self.journal.done as usize];
        self.shared
            .add_done(done.iter().map(|e| e.size).sum(), self.journal.done);
        Ok(())
    }

    /// Sends the batch of entries from `start` on, journaled as pending
    /// before it is sent and as done after its OK.
    async fn append_batch(
        &mut self,
        conn: &mut ImapConnection,
        kept: &KeptFlags,
        start: usize,
        batch: &[MessageEntry],
    ) -> Result<Batch, RestoreError> {
        let (sendable, bodies, unreadable) = self.load(batch).await?;
        let flags: Vec<Vec<Flag>> = sendable
            .iter()
            .map(|e| restorable_flags(e, kept, self.shared, self.target))
            .collect();
        self.journal_pending(conn, start, batch.len()).await?;
        crate::failpoint::hit("restore.sending");
        let sent = if sendable.is_empty() {
            Ok(())
        } else {
            append(conn, &self.mailbox, &sendable, &bodies, &flags).await
        };
        match sent {
            Ok(()) => crate::failpoint::hit("restore.answered"),
            // MULTIAPPEND is all or nothing: nothing of this batch landed.
            Err(e) if batch.len() > 1 && (is_per_message(&e) || is_over_quota(&e)) => {
                debug!(folder = self.target, error = %e, "batch refused; sending its messages one by one");
                self.journal.pending = None;
                self.save().await?;
                return Ok(Batch::OneByOne);
            }
            Err(e) if is_per_message(&e) => {
                self.shared.warn(format!(
                    "{}: message (UID {} in the restore point, {} bytes) refused and skipped: {e}",
                    self.target, batch[0].uid, batch[0].size
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.journal.done = (start + batch.len()) as u64;
        self.journal.pending = None;
        self.save().await?;
        self.shared
            .add_done(batch.iter().map(|e| e.size).sum(), batch.len() as u64);
        self.shared.add_skipped_messages(unreadable);
        Ok(Batch::Landed)
    }

    /// Reads a batch's messages from the store. One that cannot be read
    /// back whole (damaged, missing) is skipped and named in the job's
    /// warnings; everything else goes. Returns the messages to send, their
    /// bytes and how many were skipped.
    async fn load<'e>(
        &self,
        batch: &'e [MessageEntry],
    ) -> Result<(Vec<&'e MessageEntry>, Vec<Vec<u8>>, u64), RestoreError> {
        let read = self
            .shared
            .store
            .get_each(batch.iter().map(|e| e.blob).collect())
            .await;
        let (mut sendable, mut bodies, mut skipped) = (Vec::new(), Vec::new(), 0);
        for (e, r) in batch.iter().zip(read) {
            match r {
                Ok(body) => {
                    sendable.push(e);
                    bodies.push(body);
                }
                Err(err) if err.is_damage() => {
                    skipped += 1;
                    self.shared.warn_once(format!(
                        "{}: message (UID {} in the restore point, {} bytes, received {}) cannot be read back from the store and was skipped: {err}",
                        self.target, e.uid, e.size, e.internal_date
                    ));
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok((sendable, bodies, skipped))
    }

    /// Journals the batch of `count` entries from `start` on as pending,
    /// with the target's UIDNEXT from before it is sent.
    async fn journal_pending(
        &mut self,
        conn: &mut ImapConnection,
        start: usize,
        count: usize,
    ) -> Result<(), RestoreError> {
        let status = conn.status(&self.mailbox).await?;
        self.journal.pending = Some(Pending {
            uid_validity: status.uid_validity.get(),
            uid_next: status.uid_next.get(),
            start: start as u64,
            count: count as u64,
        });
        self.save().await
    }
}

/// Sends one batch: MULTIAPPEND for several messages, APPEND for one.
async fn append(
    conn: &mut ImapConnection,
    mailbox: &MailboxName,
    batch: &[&MessageEntry],
    bodies: &[Vec<u8>],
    flags: &[Vec<Flag>],
) -> Result<(), ImapError> {
    let messages: Vec<AppendMessage<'_>> = batch
        .iter()
        .zip(bodies)
        .zip(flags)
        .map(|((e, body), flags)| AppendMessage {
            content: body,
            flags,
            internal_date: InternalDate::parse_imap(&e.internal_date),
        })
        .collect();
    if messages.len() > 1 {
        conn.multiappend(mailbox, &messages).await.map(|_| ())
    } else {
        conn.append(mailbox, messages[0]).await.map(|_| ())
    }
}

/// Which flags and keywords the target folder keeps, as SELECT tells.
struct KeptFlags {
    /// Whether the folder accepts new keywords (`\*`).
    keywords_ok: bool,
    /// Its permanent flags and keywords, lower-cased.
    allowed: BTreeSet<String>,
}

impl KeptFlags {
    async fn of(conn: &mut ImapConnection, mailbox: &MailboxName) -> Result<Self, RestoreError> {
        // SELECT (not EXAMINE: read-only answers PERMANENTFLAGS ()) our own
        // new folder to learn which keywords it keeps.
        let selected = conn.select(mailbox).await?;
        Ok(Self {
            keywords_ok: selected.can_create_keywords,
            allowed: selected
                .permanent_flags
                .iter()
                .map(|f| f.as_str().to_ascii_lowercase())
                .collect(),
        })
    }
}

/// The end of the batch starting at `start`.
fn batch_end(entries: &[MessageEntry], start: usize, multiappend: bool) -> usize {
    if !multiappend {
        return start + 1;
    }
    let mut bytes = 0;
    let mut end = start;
    while end < entries.len() && end - start < BATCH_MESSAGES {
        if end > start && bytes + entries[end].size > BATCH_BYTES {
            break;
        }
        bytes += entries[end].size;
        end += 1;
    }
    end
}

fn is_over_quota(e: &ImapError) -> bool {
    e.response_code() == Some(&ResponseCode::OverQuota)
}

/// Errors that concern one message, not the connection or the mailbox.
fn is_per_message(e: &ImapError) -> bool {
    matches!(
        e,
        ImapError::MessageHasNul | ImapError::LiteralTooLarge { .. }
    ) || matches!(
        e.response_code(),
        Some(ResponseCode::TooBig) | Some(ResponseCode::Limit) | Some(ResponseCode::Parse)
    )
}

/// The flags to set: all but `\Deleted` and `\Recent`; keywords only when
/// the target folder can keep them (dropped with a warning otherwise).
fn restorable_flags(
    e: &MessageEntry,
    kept: &KeptFlags,
    shared: &Shared<'_>,
    target: &str,
) -> Vec<Flag> {
    let mut out = Vec::new();
    for f in &e.flags {
        if f.eq_ignore_ascii_case("\\Deleted") || f.eq_ignore_ascii_case("\\Recent") {
            continue;
        }
        if let Ok(flag) = Flag::new(f.clone()) {
            out.push(flag);
        }
    }
    for k in &e.keywords {
        if !kept.keywords_ok && !kept.allowed.contains(&k.to_ascii_lowercase()) {
            shared.warn_once(format!(
                "{target}: the server does not keep keyword {k}; dropped"
            ));
            continue;
        }
        match Flag::new(k.clone()) {
            Ok(flag) => out.push(flag),
            Err(_) => shared.warn_once(format!(
                "{target}: keyword {k:?} is not valid IMAP; dropped"
            )),
        }
    }
    out
}

/// Waits until the folder's UIDNEXT stays the same for a while (at most 60 s):
/// an APPEND the server received from a dead session is then committed.
async fn wait_until_quiet(
    conn: &mut ImapConnection,
    mailbox: &MailboxName,
) -> Result<(), RestoreError> {
    let quiet = std::time::Duration::from_millis(1500);
    let mut last = conn.status(mailbox).await?.uid_next;
    for _ in 0..40 {
        tokio::time::sleep(quiet).await;
        let now = conn.status(mailbox).await?.uid_next;
        if now == last {
            return Ok(());
        }
        debug!(
            folder = mailbox.as_str(),
            "the folder is still changing; waiting"
        );
        last = now;
    }
    Err(RestoreError::TargetChanged(format!(
        "{} kept changing for a minute while the restore waited to resume",
        mailbox.as_str()
    )))
}

/// How many messages of a pending batch are in the target already, found
/// by fetching every message from the recorded UIDNEXT on and comparing
/// content hashes in order.
async fn settle_pending(
    conn: &mut ImapConnection,
    mailbox: &MailboxName,
    pending: &Pending,
    entries: &[MessageEntry],
) -> Result<u64, RestoreError> {
    let selected = conn.examine(mailbox).await?;
    if selected.uid_validity.get() != pending.uid_validity {
        return Err(RestoreError::TargetChanged(format!(
            "{} was re-created (UIDVALIDITY {} is now {})",
            mailbox.as_str(),
            pending.uid_validity,
            selected.uid_validity.get()
        )));
    }
    let Some(first) = Uid::new(pending.uid_next) else {
        return Ok(0);
    };
    let mut stream = conn
        .uid_fetch(FetchRequest {
            uids: UidSet::new(vec![UidRange::from(first)]).unwrap_or_else(UidSet::all),
            items: FetchItems::Full(BodySection::Body),
            changed_since: None,
        })
        .await?;
    let batch = &entries[pending.start as usize..(pending.start + pending.count) as usize];
    // Messages land in batch order; one sent alone may have been refused
    // and skipped, so a match may jump ahead. `landed` is the count of batch
    // entries up to the last one found.
    let mut landed = 0u64;
    while let Some(m) = stream.next().await? {
        // `n:*` also matches the highest UID when it is below n.
        if m.uid.get() < pending.uid_next {
            continue;
        }
        let hash = BlobId::of(m.body.as_deref().unwrap_or_default());
        match batch[landed as usize..].iter().position(|e| e.blob == hash) {
            Some(skip) => landed += skip as u64 + 1,
            None => {
                warn!(
                    uid = m.uid.get(),
                    "a message in the restore target is not the one expected"
                );
                return Err(RestoreError::TargetChanged(format!(
                    "{} holds a message (UID {}) this restore did not send",
                    mailbox.as_str(),
                    m.uid.get()
                )));
            }
        }
    }
    Ok(landed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(size: u64) -> MessageEntry {
        MessageEntry {
            uid: 1,
            blob: BlobId::of(b""),
            size,
            flags: vec![],
            keywords: vec![],
            internal_date: String::new(),
        }
    }

    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        let small: Vec<_> = (0..450).map(|_| e(1000)).collect();
        assert_eq!(batch_end(&small, 0, true), 200);
        assert_eq!(batch_end(&small, 400, true), 450);
        assert_eq!(batch_end(&small, 0, false), 1);
        let big = vec![e(5 << 20), e(5 << 20), e(20 << 20), e(1)];
        assert_eq!(batch_end(&big, 0, true), 1);
        assert_eq!(batch_end(&big, 1, true), 2);
        assert_eq!(
            batch_end(&big, 2, true),
            3,
            "an oversized message goes alone"
        );
    }
}
