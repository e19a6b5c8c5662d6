//! The DAV source: every calendar and address book of a user, each item's
//! bytes exactly as the server returns them to a GET.
//!
//! Discovery: the principal (`dav.principal`) → `calendar-home-set` and
//! `addressbook-home-set` (the principal itself when it names none) →
//! PROPFIND Depth 1 of each home. Every href is resolved and must stay
//! under a home.
//!
//! Incremental, per collection, against the same collection of the
//! previous point:
//! 1. same `sync-token` (or, without one, same `getctag`): the previous
//!    item list is reused, no request for items at all;
//! 2. else `sync-collection` from the previous token (RFC 6578): only the
//!    changed items are fetched, removed ones dropped;
//! 3. else (no token, or the server refused it) a Depth 1 ETag listing:
//!    items whose ETag did not change are reused.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use tracing::{debug, info, warn};
use url::Url;

use super::{Progress, SnapshotError};
use crate::blob::BlobKind;
use crate::manifest::{CollectionManifest, ItemEntry};
use crate::net::dav::{DavClient, DavError};
use crate::protocol::dav::{self, CollectionKind, Homes, href};
use crate::repo::BlobWriter;

/// Items fetched at once.
const PARALLEL_GETS: usize = 4;

/// A collection found on the server, with its listed properties.
struct Found {
    url: Url,
    home: Url,
    kind: CollectionKind,
    props: dav::Props,
    /// An item could not be read: the collection's token and ctag are not
    /// recorded, so the next snapshot lists it again instead of trusting them.
    degraded: std::sync::atomic::AtomicBool,
}

/// Key of a collection across points: its decoded path.
pub fn collection_key(url: &Url) -> String {
    href::segments(url).unwrap_or_default().join("/")
}

/// Snapshots every collection of `user`; `previous` holds the collections
/// of the user's newest point by [`collection_key`] of their href.
pub async fn snapshot_collections(
    client: &DavClient,
    user: &str,
    previous: &HashMap<String, CollectionManifest>,
    writer: &mut BlobWriter,
    progress: &Progress,
) -> Result<Vec<CollectionManifest>, SnapshotError> {
    let Some(homes) = find_homes(client, user, !previous.is_empty(), progress).await? else {
        return Ok(Vec::new());
    };
    let found = list_collections(client, &homes, progress).await?;
    debug!(user, collections = found.len(), "listed DAV collections");
    let mut out = Vec::with_capacity(found.len());
    for f in found {
        progress.check_stop()?;
        let prev = previous.get(&collection_key(&f.url));
        out.push(snapshot_collection(client, &homes, f, prev, writer, progress).await?);
    }
    Ok(out)
}

/// The user's calendar and address book homes as the principal names them
/// (the principal itself when it names none); `None` when the user has no
/// calendars or contacts to snapshot. `had_collections`: whether the
/// user's newest point holds some.
async fn find_homes(
    client: &DavClient,
    user: &str,
    had_collections: bool,
    progress: &Progress,
) -> Result<Option<Homes>, SnapshotError> {
    let principal = client.principal_url(user)?;
    let ms = match client
        .propfind(&principal, "0", dav::propfind_homes())
        .await
    {
        Ok(Some(ms)) => ms,
        Ok(None) => {
            info!(user, principal = %principal, "no DAV principal: no calendars or contacts");
            return Ok(None);
        }
        // A user without a DAV account on servers that say 403 rather
        // than 404: no calendars or contacts, said on the job. A user whose
        // last point had some fails instead (the account's rights changed?):
        // a point without them would quietly replace the ones with them.
        Err(DavError::Forbidden { .. }) if !had_collections => {
            progress.warn(format!(
                "the DAV server forbids {principal}: this point holds no calendars or contacts"
            ));
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let mut homes = Homes::default();
    for r in &ms.responses {
        for h in r
            .props
            .calendar_homes
            .iter()
            .chain(&r.props.addressbook_homes)
        {
            homes.add(href::resolve(&principal, h)?)?;
        }
    }
    if homes.iter().next().is_none() {
        homes.add(principal)?;
    }
    Ok(Some(homes))
}

/// The collections in the homes (PROPFIND Depth 1 of each), each once; one
/// whose href leaves the homes is left out with a warning on the job.
async fn list_collections(
    client: &DavClient,
    homes: &Homes,
    progress: &Progress,
) -> Result<Vec<Found>, SnapshotError> {
    let mut found: Vec<Found> = Vec::new();
    for home in homes.iter() {
        let Some(ms) = client
            .propfind(home, "1", dav::propfind_collections())
            .await?
        else {
            continue;
        };
        for r in ms.responses {
            let Some(kind) = r.props.kind else { continue };
            let url = match homes.resolve(home, &r.href) {
                Ok(url) => url,
                Err(e) => {
                    progress.warn(format!("a collection was left out: {e}"));
                    continue;
                }
            };
            if href::same_path(&url, home) || found.iter().any(|f| href::same_path(&f.url, &url)) {
                continue;
            }
            found.push(Found {
                url,
                home: home.clone(),
                kind,
                props: r.props,
                degraded: Default::default(),
            });
        }
    }
    Ok(found)
}

async fn snapshot_collection(
    client: &DavClient,
    homes: &Homes,
    f: Found,
    prev: Option<&CollectionManifest>,
    writer: &mut BlobWriter,
    progress: &Progress,
) -> Result<CollectionManifest, SnapshotError> {
    let unchanged = prev.is_some_and(|p| match (&p.sync_token, &f.props.sync_token) {
        (Some(a), Some(b)) => a == b,
        (None, None) => matches!((&p.ctag, &f.props.ctag), (Some(a), Some(b)) if a == b),
        _ => false,
    });
    let mut sync_token = f.props.sync_token.clone();
    let items: Vec<ItemEntry> = match prev {
        Some(p) if unchanged => {
            progress
                .items_carried
                .fetch_add(p.items.len() as u64, Ordering::Relaxed);
            p.items.clone()
        }
        _ => {
            let synced = match (prev.and_then(|p| p.sync_token.as_deref()), prev) {
                (Some(token), Some(p)) if f.props.sync_token.is_some() => {
                    match sync_all(client, &f, token).await? {
                        Some((responses, new_token)) => {
                            if new_token.is_some() {
                                sync_token = new_token;
                            }
                            Some(
                                apply_sync(client, homes, &f, p, responses, writer, progress)
                                    .await?,
                            )
                        }
                        None => {
                            debug!(collection = %f.url, "sync-token refused: listing ETags");
                            None
                        }
                    }
                }
                _ => None,
            };
            match synced {
                Some(items) => items,
                None => list_and_fetch(client, homes, &f, prev, writer, progress).await?,
            }
        }
    };
    let bytes = items.iter().map(|i| i.size).sum();
    let degraded = f.degraded.load(Ordering::Relaxed);
    Ok(CollectionManifest {
        kind: f.kind,
        href: f.url.path().to_string(),
        home: f.home.path().to_string(),
        display_name: f.props.display_name,
        color: f.props.color,
        description: f.props.description,
        components: f.props.components,
        sync_token: sync_token.filter(|_| !degraded),
        ctag: f.props.ctag.filter(|_| !degraded),
        bytes,
        items,
    })
}

/// Most sync-collection rounds for one collection whose answers the
/// server truncates (RFC 6578 §3.6) before listing it whole instead.
const MAX_SYNC_ROUNDS: usize = 50;

/// Everything that changed since `token`, following truncated answers (a
/// `507` on the collection itself): `None` when the token is refused or
/// the answers never end, and the caller lists the collection instead.
async fn sync_all(
    client: &DavClient,
    f: &Found,
    token: &str,
) -> Result<Option<(Vec<dav::Response>, Option<String>)>, SnapshotError> {
    let mut token = token.to_string();
    let mut all = Vec::new();
    for _ in 0..MAX_SYNC_ROUNDS {
        let Some(ms) = client.sync_collection(&f.url, &token).await? else {
            return Ok(None);
        };
        let truncated = ms.responses.iter().any(|r| {
            r.status == Some(507)
                && href::resolve(&f.url, &r.href).is_ok_and(|u| href::same_path(&u, &f.url))
        });
        all.extend(ms.responses);
        match (truncated, ms.sync_token) {
            (false, new) => return Ok(Some((all, new))),
            (true, Some(next)) if next != token => token = next,
            (true, _) => return Ok(None),
        }
    }
    debug!(collection = %f.url, "sync-collection kept truncating: listing it");
    Ok(None)
}

/// The key of an item across points: its decoded name, so that two
/// spellings of one name (`%40`/`@`, `%3a`/`%3A`) are one item.
fn item_key(name: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(name).collect()
}

/// Applies sync-collection answers (in order) to the previous item list.
async fn apply_sync(
    client: &DavClient,
    homes: &Homes,
    f: &Found,
    prev: &CollectionManifest,
    responses: Vec<dav::Response>,
    writer: &mut BlobWriter,
    progress: &Progress,
) -> Result<Vec<ItemEntry>, SnapshotError> {
    let mut items: BTreeMap<Vec<u8>, ItemEntry> = prev
        .items
        .iter()
        .map(|i| (item_key(&i.name), i.clone()))
        .collect();
    let mut changed: BTreeMap<Vec<u8>, (String, Url)> = BTreeMap::new();
    for r in responses {
        let Some((name, url)) = item_of(homes, f, &r.href, progress) else {
            continue;
        };
        let key = item_key(&name);
        if r.status == Some(404) || r.status == Some(410) {
            changed.remove(&key);
            items.remove(&key);
        } else {
            changed.insert(key, (name, url));
        }
    }
    let mut old = HashMap::new();
    for key in changed.keys() {
        if let Some(e) = items.remove(key) {
            old.insert(key.clone(), e);
        }
    }
    progress
        .items_carried
        .fetch_add(items.len() as u64, Ordering::Relaxed);
    let wanted = changed.into_values().collect();
    for e in fetch(client, f, wanted, &old, writer, progress).await? {
        items.insert(item_key(&e.name), e);
    }
    Ok(items.into_values().collect())
}

/// Lists the members with their ETags and fetches the new or changed ones.
async fn list_and_fetch(
    client: &DavClient,
    homes: &Homes,
    f: &Found,
    prev: Option<&CollectionManifest>,
    writer: &mut BlobWriter,
    progress: &Progress,
) -> Result<Vec<ItemEntry>, SnapshotError> {
    let Some(ms) = client.propfind(&f.url, "1", dav::propfind_etags()).await? else {
        // Deleted between the home listing and now: an empty collection.
        return Ok(Vec::new());
    };
    let old: HashMap<Vec<u8>, ItemEntry> = prev
        .map(|p| {
            p.items
                .iter()
                .map(|i| (item_key(&i.name), i.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut items = BTreeMap::new();
    let mut wanted = Vec::new();
    for r in ms.responses {
        if r.props.is_collection {
            continue;
        }
        let Some((name, url)) = item_of(homes, f, &r.href, progress) else {
            continue;
        };
        let key = item_key(&name);
        match (old.get(&key), &r.props.etag) {
            (Some(o), Some(etag)) if o.etag.as_ref() == Some(etag) => {
                progress.items_carried.fetch_add(1, Ordering::Relaxed);
                items.insert(key, o.clone());
            }
            _ => wanted.push((name, url)),
        }
    }
    for e in fetch(client, f, wanted, &old, writer, progress).await? {
        items.insert(item_key(&e.name), e);
    }
    Ok(items.into_values().collect())
}

/// The name and URL of the item an href of `f`'s listing names; `None`
/// for the collection itself and for what is not a plain item of it (an
/// href outside the homes is said on the job).
fn item_of(homes: &Homes, f: &Found, href: &str, progress: &Progress) -> Option<(String, Url)> {
    let url = match homes.resolve(&f.url, href) {
        Ok(url) => url,
        Err(e) => {
            progress.warn(format!("an item of {} was left out: {e}", f.url));
            return None;
        }
    };
    if href::same_path(&url, &f.url) {
        return None;
    }
    Some((member_name(&f.url, &url)?, url))
}

/// The member's name (its last segment) when `url` is a direct, safe
/// member of `collection`; anything else is logged and left out.
fn member_name(collection: &Url, url: &Url) -> Option<String> {
    let (c, u) = (href::segments(collection).ok()?, href::segments(url).ok()?);
    let name = href::last_segment(url)?;
    if u.len() != c.len() + 1 || u[..c.len()] != c[..] || !href::is_safe_member_name(name) {
        warn!(collection = %collection, href = %url, "ignoring a member that is not a plain item of the collection");
        return None;
    }
    Some(name.to_string())
}

/// GETs items, a few at a time, and stores their bytes. An item the server
/// fails to give (an error status) keeps its copy from the previous point
/// (`old`, by [`item_key`]) when there is one, with a warning either way;
/// an unreachable server fails the snapshot.
async fn fetch(
    client: &DavClient,
    f: &Found,
    wanted: Vec<(String, Url)>,
    old: &HashMap<Vec<u8>, ItemEntry>,
    writer: &mut BlobWriter,
    progress: &Progress,
) -> Result<Vec<ItemEntry>, SnapshotError> {
    let mut out = Vec::with_capacity(wanted.len());
    let mut responses = futures_util::stream::iter(wanted)
        .map(|(name, url)| async move { (name, client.get(&url).await) })
        .buffered(PARALLEL_GETS);
    while let Some((name, r)) = responses.next().await {
        progress.check_stop()?;
        let r = match r {
            // Gone between the listing and the GET: not part of this point.
            Ok(None) => continue,
            Ok(Some(r)) => r,
            Err(
                e @ (DavError::Status { .. } | DavError::Forbidden { .. } | DavError::Body { .. }),
            ) => {
                f.degraded.store(true, Ordering::Relaxed);
                match old.get(&item_key(&name)) {
                    Some(prev) => {
                        progress.warn(format!(
                            "{}{name} could not be read ({e}): its copy from the previous point is kept",
                            f.url
                        ));
                        out.push(prev.clone());
                    }
                    None => progress.warn(format!(
                        "{}{name} could not be read and is not in this point: {e}",
                        f.url
                    )),
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let (blob, _) = writer.put_async(r.body.to_vec(), BlobKind::Data).await?;
        progress.items_downloaded.fetch_add(1, Ordering::Relaxed);
        progress
            .item_bytes
            .fetch_add(r.body.len() as u64, Ordering::Relaxed);
        out.push(ItemEntry {
            uid: item_uid(f.kind, &r.body),
            name,
            etag: r.etag,
            blob,
            size: r.body.len() as u64,
            content_type: r.content_type,
        });
    }
    Ok(out)
}

/// The UID of an iCalendar object or vCard, read with calcard.
pub fn item_uid(kind: CollectionKind, bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    match kind {
        CollectionKind::Calendar => calcard::icalendar::ICalendar::parse(text)
            .ok()?
            .uids()
            .next()
            .map(str::to_string),
        CollectionKind::Addressbook => calcard::vcard::VCard::parse(text)
            .ok()?
            .uid()
            .map(str::to_string),
    }
}

impl From<DavError> for SnapshotError {
    fn from(e: DavError) -> Self {
        SnapshotError::Dav(e)
    }
}

impl From<href::HrefError> for SnapshotError {
    fn from(e: href::HrefError) -> Self {
        SnapshotError::Dav(DavError::Href(e))
    }
}
