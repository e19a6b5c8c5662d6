//! The DAV sink: each calendar and address book of the point comes back as
//! a new collection beside the live ones, never over one, each item once.
//!
//! 1. The plan (new paths and display names) is made once and journaled
//!    before anything is created: a resumed restore uses the same paths.
//! 2. Each collection is created (MKCALENDAR, or extended MKCOL for an
//!    address book) with the original's colour, description and
//!    components, and the display name `<original> (restored <when>)`.
//! 3. Items are PUT under their original names with `If-None-Match: *`. A
//!    `412` means the name is taken: in a collection only this restore
//!    writes to, that is the item itself from an earlier attempt, which a
//!    GET confirms (same UID). So each item ends up there exactly once.
//! 4. A server that refuses an item because its UID already exists
//!    elsewhere for the user (`no-uid-conflict`, Cyrus's
//!    `unique-scheduling-object-resource`) gets a copy whose UID is derived
//!    from the original one, reported in the job's warnings.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use url::Url;

use super::{RestoreError, Shared};
use crate::manifest::{CollectionManifest, ItemEntry};
use crate::net::dav::{DavClient, DavError, PutOutcome};
use crate::protocol::dav::{self, CollectionKind, href};
use crate::snapshot::dav::item_uid;

/// Items PUT at once.
const PARALLEL_PUTS: usize = 4;
/// The journal is written after this many items (a replay is settled by
/// `If-None-Match`, so this only bounds repeated work).
const JOURNAL_EVERY: u64 = 25;

/// Names tried for one new collection before giving up.
const MAX_NAME_TRIES: u32 = 1000;

/// Where each collection of the point goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DavPlan {
    /// In the order of the point's collections.
    pub collections: Vec<PlannedCollection>,
}

/// One new collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCollection {
    /// Index in the point's collections.
    pub source: usize,
    /// Calendar or address book.
    pub kind: CollectionKind,
    /// The new collection's URL (ends with `/`).
    pub url: String,
    /// Its display name.
    pub display_name: String,
}

/// Journal of one planned collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionJournal {
    /// Created.
    pub created: bool,
    /// Items (in the point's order) known to be in the collection.
    pub done: u64,
}

/// The segment of a new collection: the original's, made plain, then
/// `-restored-YYYYMMDD-HHMM`.
fn new_segment(original: &str, when: &crate::time::Zoned, n: u32) -> String {
    let decoded = percent_encoding::percent_decode_str(original).decode_utf8_lossy();
    let mut base: String = decoded
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => Some(c),
            '.' | ' ' => Some('-'),
            _ => None,
        })
        .take(60)
        .collect();
    if base.trim_matches('-').is_empty() {
        base = "collection".into();
    }
    let stamp = when.format("%Y%m%d-%H%M");
    if n <= 1 {
        format!("{base}-restored-{stamp}")
    } else {
        format!("{base}-restored-{stamp}-{n}")
    }
}

/// The display name of a restored collection.
pub fn restored_name(c: &CollectionManifest, when: &crate::time::Zoned) -> String {
    let original = c
        .display_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| {
            let last = c
                .href
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("");
            percent_encoding::percent_decode_str(last)
                .decode_utf8_lossy()
                .into_owned()
        });
    format!("{original} (restored {})", when.format("%Y-%m-%d %H:%M"))
}

/// Makes the plan: a fresh path in the same home for every collection.
pub async fn plan(
    client: &DavClient,
    collections: &[CollectionManifest],
    when: &crate::time::Zoned,
) -> Result<DavPlan, RestoreError> {
    let base = client.principal_url("x")?;
    let mut taken = BTreeSet::new();
    let mut out = Vec::new();
    for (i, c) in collections.iter().enumerate() {
        let home = base.join(&c.home).map_err(|_| dav_href(&c.home))?;
        let original = c
            .href
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        let mut n = 1;
        let url = loop {
            if n > MAX_NAME_TRIES {
                return Err(RestoreError::TargetChanged(format!(
                    "no free name for a restored collection in {home} after {MAX_NAME_TRIES} tries"
                )));
            }
            let seg = new_segment(original, when, n);
            n += 1;
            let url = home
                .join(&format!("{}/", href::encode_segment(&seg)))
                .map_err(|_| dav_href(&seg))?;
            if taken.contains(url.as_str()) {
                continue;
            }
            // Free when nothing answers as a collection there (some servers
            // answer a missing path with a 207 of 404 propstats).
            let taken = client
                .propfind(&url, "0", dav::propfind_collections())
                .await?
                .is_some_and(|ms| ms.responses.iter().any(|r| r.props.is_collection));
            if !taken {
                break url;
            }
        };
        taken.insert(url.to_string());
        out.push(PlannedCollection {
            source: i,
            kind: c.kind,
            url: url.to_string(),
            display_name: restored_name(c, when),
        });
    }
    Ok(DavPlan { collections: out })
}

fn dav_href(s: &str) -> RestoreError {
    RestoreError::Dav(DavError::Href(href::HrefError::Invalid(s.to_string())))
}

/// Creates (or, on resume, finds) the planned collection.
pub async fn create(
    client: &DavClient,
    p: &PlannedCollection,
    c: &CollectionManifest,
    shared: &Shared<'_>,
) -> Result<(), RestoreError> {
    let url = Url::parse(&p.url).map_err(|_| dav_href(&p.url))?;
    let props = dav::NewCollection {
        display_name: p.display_name.clone(),
        color: c.color.clone(),
        description: c.description.clone(),
        components: c.components.clone(),
    };
    let method = match p.kind {
        CollectionKind::Calendar => "MKCALENDAR",
        CollectionKind::Addressbook => "MKCOL",
    };
    let Some(refused) = client.make_collection(&url, p.kind, &props).await? else {
        return Ok(());
    };
    // Something may already be there: ours, from an attempt that died (or
    // a retried request whose first try landed) before the journal said so,
    // which has our display name. Servers say so with 405, 409 or 403.
    if let Some(ours) = existing_is_ours(client, &url, p).await? {
        return if ours {
            Ok(())
        } else {
            Err(RestoreError::TargetChanged(format!(
                "{} appeared before this restore could create it",
                p.url
            )))
        };
    }
    // Nothing there: the server refused a property. The collection with its
    // name alone, and a warning.
    let plain = dav::NewCollection {
        display_name: p.display_name.clone(),
        ..Default::default()
    };
    if let Some(again) = client.make_collection(&url, p.kind, &plain).await? {
        if existing_is_ours(client, &url, p).await? == Some(true) {
            return Ok(());
        }
        return Err(DavClient::refused(method, &url, &again).into());
    }
    shared.warn(format!(
        "{}: created without its colour, description or component set (the server answered {}: {})",
        p.display_name,
        refused.status,
        refused.snippet()
    ));
    Ok(())
}

/// `None` when nothing is at `url`; else whether it is the planned
/// collection (same display name).
async fn existing_is_ours(
    client: &DavClient,
    url: &Url,
    p: &PlannedCollection,
) -> Result<Option<bool>, RestoreError> {
    let Some(ms) = client
        .propfind(url, "0", dav::propfind_collections())
        .await?
    else {
        return Ok(None);
    };
    let Some(r) = ms.responses.into_iter().find(|r| r.props.is_collection) else {
        return Ok(None);
    };
    Ok(Some(
        r.props.display_name.as_deref() == Some(p.display_name.as_str()),
    ))
}

/// PUTs the items of one collection from `journal.done` on.
pub async fn restore_items(
    client: &DavClient,
    p: &PlannedCollection,
    index: usize,
    c: &CollectionManifest,
    mut journal: CollectionJournal,
    shared: &Shared<'_>,
) -> Result<(), RestoreError> {
    let url = Url::parse(&p.url).map_err(|_| dav_href(&p.url))?;
    shared.add_items(journal.done);
    let start = journal.done as usize;
    let store = shared.store;
    let mut pending = c.items.iter().skip(start);
    let mut results = futures_util::stream::FuturesOrdered::new();
    for item in pending.by_ref().take(PARALLEL_PUTS) {
        results.push_back(load_and_put(client, store, &url, p.kind, item));
    }
    let mut since_save = 0;
    while let Some(r) = results.next().await {
        if let Some(item) = pending.next() {
            results.push_back(load_and_put(client, store, &url, p.kind, item));
        }
        match r? {
            ItemResult::Restored => shared.add_items(1),
            ItemResult::NewUid { name, old, new } => {
                shared.add_items(1);
                shared.warn_once(format!(
                    "{}: {name} restored with the new UID {new}: the server refused its UID {old}, which another of the user's items holds",
                    p.display_name
                ));
            }
            ItemResult::Refused { name, why } => {
                shared.warn_once(format!(
                    "{}: {name} was not restored: {why}",
                    p.display_name
                ));
            }
            ItemResult::Unreadable { name, why } => {
                shared.add_skipped_items(1);
                shared.warn_once(format!(
                    "{}: {name} cannot be read back from the store and was skipped: {why}",
                    p.display_name
                ));
            }
        }
        journal.done += 1;
        since_save += 1;
        if since_save >= JOURNAL_EVERY {
            shared.save_collection(index, &journal).await?;
            since_save = 0;
        }
        if shared.ctx.should_stop() {
            shared.save_collection(index, &journal).await?;
            return Err(RestoreError::Stopped);
        }
    }
    shared.save_collection(index, &journal).await?;
    info!(collection = %p.url, items = c.items.len(), "collection restored");
    Ok(())
}

async fn load_and_put(
    client: &DavClient,
    store: &crate::repo::Repository,
    collection: &Url,
    kind: CollectionKind,
    item: &ItemEntry,
) -> Result<ItemResult, RestoreError> {
    let bytes = match store.get_async(item.blob).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_damage() => {
            let name = percent_encoding::percent_decode_str(&item.name)
                .decode_utf8_lossy()
                .into_owned();
            return Ok(ItemResult::Unreadable {
                name,
                why: e.to_string(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    put_item(client, collection, kind, item, Bytes::from(bytes)).await
}

enum ItemResult {
    Restored,
    NewUid {
        name: String,
        old: String,
        new: String,
    },
    Refused {
        name: String,
        why: String,
    },
    /// The store could not give the item back whole: skipped.
    Unreadable {
        name: String,
        why: String,
    },
}

async fn put_item(
    client: &DavClient,
    collection: &Url,
    kind: CollectionKind,
    item: &ItemEntry,
    bytes: Bytes,
) -> Result<ItemResult, RestoreError> {
    // `./` keeps a name such as `urn:uuid:1.vcf` a relative path.
    let url = collection
        .join(&format!("./{}", item.name))
        .map_err(|_| dav_href(&item.name))?;
    let content_type = content_type(kind, item);
    let name = percent_encoding::percent_decode_str(&item.name)
        .decode_utf8_lossy()
        .into_owned();
    let mut tries = 0;
    loop {
        tries += 1;
        crate::failpoint::hit("dav.putting");
        match client.put_new(&url, &content_type, bytes.clone()).await? {
            PutOutcome::Created => {
                crate::failpoint::hit("dav.put");
                return Ok(ItemResult::Restored);
            }
            PutOutcome::Exists => {
                match settle_existing(client, &url, kind, item, None, &name).await? {
                    Some(r) => return Ok(r),
                    // 412, then nothing there: a first try still being
                    // written behind a proxy, or gone again. Once more.
                    None if tries < 3 => settle_pause(tries).await,
                    None => {
                        return Err(RestoreError::TargetChanged(format!(
                            "{url} answers 412 to a new item but holds none"
                        )));
                    }
                }
            }
            PutOutcome::OverQuota { body } => return Err(over_quota(&name, &body)),
            PutOutcome::Refused { status, body } => {
                return Ok(ItemResult::Refused {
                    name,
                    why: format!("the server answered {status}: {body}"),
                });
            }
            PutOutcome::UidConflict { status, body } => {
                return put_with_new_uid(
                    client,
                    collection,
                    &url,
                    kind,
                    item,
                    &bytes,
                    name,
                    (status, body),
                )
                .await;
            }
        }
    }
}

/// The Content-Type a PUT carries: the one the server gave at snapshot
/// time when it names the right kind (a vCard 2.1 in Latin-1 is not
/// claimed to be UTF-8), else the kind's own.
fn content_type(kind: CollectionKind, item: &ItemEntry) -> String {
    let (essence, default) = match kind {
        CollectionKind::Calendar => ("text/calendar", "text/calendar; charset=utf-8"),
        CollectionKind::Addressbook => ("text/vcard", "text/vcard; charset=utf-8"),
    };
    match &item.content_type {
        Some(t)
            if t.to_ascii_lowercase().starts_with(essence)
                && !t.contains(['\r', '\n'])
                && t.len() < 200 =>
        {
            t.clone()
        }
        _ => default.to_string(),
    }
}

/// The error of an item that did not fit in the user's storage.
fn over_quota(name: &str, body: &str) -> RestoreError {
    RestoreError::DavOverQuota(format!(
        "{name} did not fit: the server answered 507 {body}"
    ))
}

/// A pause before a PUT is tried again after a 412 with nothing there.
async fn settle_pause(tries: u32) {
    tokio::time::sleep(std::time::Duration::from_millis(200 << tries.min(4))).await;
}

/// The server refused the item's UID: a copy with a derived one.
#[allow(clippy::too_many_arguments)]
async fn put_with_new_uid(
    client: &DavClient,
    collection: &Url,
    url: &Url,
    kind: CollectionKind,
    item: &ItemEntry,
    bytes: &[u8],
    name: String,
    (status, body): (u16, String),
) -> Result<ItemResult, RestoreError> {
    let content_type = content_type(kind, item);
    let Some(old) = item.uid.clone() else {
        return Ok(ItemResult::Refused {
            name,
            why: format!("UID conflict ({status}: {body}) and its UID cannot be read"),
        });
    };
    let new = derived_uid(&old, collection, &item.name);
    let Some(rewritten) = rewrite_uid(kind, bytes, &old, &new) else {
        return Ok(ItemResult::Refused {
            name,
            why: format!("UID conflict ({status}: {body}) and the item cannot be rewritten"),
        });
    };
    let rewritten = Bytes::from(rewritten);
    let mut tries = 0;
    let outcome = loop {
        tries += 1;
        let outcome = client
            .put_new(url, &content_type, rewritten.clone())
            .await?;
        if outcome != PutOutcome::Exists {
            break outcome;
        }
        match settle_existing(client, url, kind, item, Some(new.clone()), &name).await? {
            Some(r) => return Ok(r),
            None if tries < 3 => settle_pause(tries).await,
            None => {
                return Err(RestoreError::TargetChanged(format!(
                    "{url} answers 412 to a new item but holds none"
                )));
            }
        }
    };
    match outcome {
        PutOutcome::Created | PutOutcome::Exists => Ok(ItemResult::NewUid { name, old, new }),
        PutOutcome::OverQuota { body } => Err(over_quota(&name, &body)),
        PutOutcome::UidConflict { status, body } | PutOutcome::Refused { status, body } => {
            Ok(ItemResult::Refused {
                name,
                why: format!("the server answered {status}: {body}, also with a new UID"),
            })
        }
    }
}

/// A 412: the name is taken in our new collection. It is this item from an
/// earlier attempt when the UID matches (the original or the derived one).
async fn settle_existing(
    client: &DavClient,
    url: &Url,
    kind: CollectionKind,
    item: &ItemEntry,
    derived: Option<String>,
    name: &str,
) -> Result<Option<ItemResult>, RestoreError> {
    let Some(there) = client.get(url).await? else {
        return Ok(None);
    };
    let uid = item_uid(kind, &there.body);
    let derived = derived.or_else(|| {
        let collection = url.join("./").ok()?;
        item.uid
            .as_deref()
            .map(|u| derived_uid(u, &collection, &item.name))
    });
    match (&uid, &item.uid) {
        (Some(u), Some(o)) if u == o => Ok(Some(ItemResult::Restored)),
        (Some(u), Some(o)) if Some(u) == derived.as_ref() => Ok(Some(ItemResult::NewUid {
            name: name.to_string(),
            old: o.clone(),
            new: u.clone(),
        })),
        // An item without a readable UID: the collection is ours and names
        // are unique in it, so what is at its name is what we put there.
        (_, None) => Ok(Some(ItemResult::Restored)),
        _ => {
            warn!(%url, "a restored collection holds an item this restore did not write");
            Err(RestoreError::TargetChanged(format!(
                "{url} holds an item this restore did not write"
            )))
        }
    }
}

/// The UID given to a copy whose UID the server refuses: the original's,
/// plus a suffix fixed by the target collection and the item's name (the
/// same on resume; distinct for items that shared a UID).
pub fn derived_uid(old: &str, collection: &Url, name: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(old.as_bytes());
    h.update(b"\0");
    h.update(collection.path().as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    let hex = h.finalize().to_hex();
    format!("{old}-restored-{}", &hex[..8])
}

/// The item with every UID equal to `old` replaced by `new` (calcard);
/// `None` when the result would not read back with the new UID.
pub fn rewrite_uid(kind: CollectionKind, bytes: &[u8], old: &str, new: &str) -> Option<Vec<u8>> {
    let out = rewritten(kind, bytes, old, new)?;
    // A malformed item may not survive the parser's round trip (a component
    // name it cannot write back): a rewrite whose output does not read back
    // with the new UID is no rewrite, and the item is reported instead.
    (crate::snapshot::dav::item_uid(kind, &out).as_deref() == Some(new)).then_some(out)
}

fn rewritten(kind: CollectionKind, bytes: &[u8], old: &str, new: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    match kind {
        CollectionKind::Calendar => {
            use calcard::icalendar::{
                ICalendar, ICalendarParameter, ICalendarParameterName, ICalendarParameterValue,
                ICalendarProperty, ICalendarScheduleAgentValue, ICalendarValue,
            };
            let mut cal = ICalendar::parse(text).ok()?;
            let mut changed = false;
            for comp in &mut cal.components {
                let ours = comp.uid() == Some(old);
                for e in &mut comp.entries {
                    if e.name == ICalendarProperty::Uid && ours {
                        e.values = vec![ICalendarValue::Text(new.to_string())];
                        changed = true;
                    }
                    // The copy is a new scheduling object to the server:
                    // RFC 6638 §7.1 SCHEDULE-AGENT=CLIENT keeps a server
                    // that schedules implicitly from inviting anyone.
                    if ours
                        && matches!(
                            e.name,
                            ICalendarProperty::Organizer | ICalendarProperty::Attendee
                        )
                    {
                        e.params
                            .retain(|p| p.name != ICalendarParameterName::ScheduleAgent);
                        e.params.push(ICalendarParameter {
                            name: ICalendarParameterName::ScheduleAgent,
                            value: ICalendarParameterValue::ScheduleAgent(
                                ICalendarScheduleAgentValue::Client,
                            ),
                        });
                    }
                }
            }
            changed.then(|| cal.to_string().into_bytes())
        }
        CollectionKind::Addressbook => {
            use calcard::vcard::{VCard, VCardProperty, VCardValue};
            let mut card = VCard::parse(text).ok()?;
            let mut changed = false;
            for e in &mut card.entries {
                if e.name == VCardProperty::Uid {
                    e.values = vec![VCardValue::Text(new.to_string())];
                    changed = true;
                }
            }
            changed.then(|| card.to_string().into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn when() -> crate::time::Zoned {
        crate::time::zoned("2026-11-26T14:05:00[Europe/Paris]")
    }

    #[test]
    fn new_paths_are_plain_and_dated() {
        assert_eq!(
            new_segment("a1b2c3d4-e5f6", &when(), 1),
            "a1b2c3d4-e5f6-restored-20261126-1405"
        );
        assert_eq!(
            new_segment("Mon%20agenda%20%C3%A9t%C3%A9", &when(), 2),
            "Mon-agenda-t-restored-20261126-1405-2"
        );
        assert_eq!(
            new_segment("%2F..%00", &when(), 1),
            "collection-restored-20261126-1405"
        );
    }

    #[test]
    fn display_names_carry_the_restore_time() {
        let c = CollectionManifest {
            kind: CollectionKind::Calendar,
            href: "/alice/work/".into(),
            home: "/alice/".into(),
            display_name: Some("Travail".into()),
            color: None,
            description: None,
            components: vec![],
            sync_token: None,
            ctag: None,
            bytes: 0,
            items: vec![],
        };
        assert_eq!(
            restored_name(&c, &when()),
            "Travail (restored 2026-11-26 14:05)"
        );
        let unnamed = CollectionManifest {
            display_name: None,
            href: "/alice/caf%C3%A9/".into(),
            ..c
        };
        assert_eq!(
            restored_name(&unnamed, &when()),
            "café (restored 2026-11-26 14:05)"
        );
    }

    #[test]
    fn a_uid_rewrite_changes_every_component_of_the_object_and_nothing_else() {
        let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:abc@x\r\nDTSTART:20261126T100000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\nSUMMARY:Standup\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:abc@x\r\nRECURRENCE-ID:20261127T100000Z\r\nDTSTART:20261127T110000Z\r\nSUMMARY:Moved\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let out = rewrite_uid(
            CollectionKind::Calendar,
            ics.as_bytes(),
            "abc@x",
            "abc@x-restored-1",
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("UID:abc@x-restored-1").count(), 2, "{text}");
        assert!(text.contains("SUMMARY:Moved") && text.contains("RRULE:FREQ=DAILY;COUNT=3"));
        assert_eq!(
            item_uid(CollectionKind::Calendar, text.as_bytes()).as_deref(),
            Some("abc@x-restored-1")
        );
        let vcf = "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:1234\r\nFN:Zoë\r\nEND:VCARD\r\n";
        let out = rewrite_uid(
            CollectionKind::Addressbook,
            vcf.as_bytes(),
            "urn:uuid:1234",
            "n",
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("UID:n\r\n") && text.contains("FN:Zoë"),
            "{text}"
        );
        assert!(rewrite_uid(CollectionKind::Calendar, b"garbage", "a", "b").is_none());
        let u = Url::parse("http://h/alice/x-restored/").unwrap();
        assert_eq!(derived_uid("a", &u, "x.ics"), derived_uid("a", &u, "x.ics"));
        assert_ne!(derived_uid("a", &u, "x.ics"), derived_uid("b", &u, "x.ics"));
        assert_ne!(derived_uid("a", &u, "x.ics"), derived_uid("a", &u, "y.ics"));
    }

    /// The ical_vcard_uid fuzz target's find: a malformed calendar whose
    /// rewrite calcard writes back as something it cannot read again.
    #[test]
    fn a_rewrite_that_does_not_read_back_is_no_rewrite() {
        let input = include_bytes!("../../fixtures/fuzz/ical_vcard_uid-round-trip.bin");
        let (selector, item) = input.split_first().unwrap();
        let kind = if selector & 1 == 0 {
            CollectionKind::Calendar
        } else {
            CollectionKind::Addressbook
        };
        let old = crate::snapshot::dav::item_uid(kind, item).unwrap();
        let new = format!("{old}-restored");
        if let Some(out) = rewrite_uid(kind, item, &old, &new) {
            assert_eq!(crate::snapshot::dav::item_uid(kind, &out), Some(new));
        }
    }
}
