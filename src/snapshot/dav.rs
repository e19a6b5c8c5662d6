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
use crate::manifest::{CollectionManifest, ItemEntry};
use crate::net::dav::{DavClient, DavError};
use crate::protocol::dav::{self, CollectionKind, Homes, href};
use crate::store::BlobWriter;

/// Items fetched at once.
const PARALLEL_GETS: usize = 4;

/// A collection found on the server, with its listed properties.
struct Found {
    url: Url,
    home: Url,
    kind: CollectionKind,
    props: dav::Props,
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
    let principal = client.principal_url(user)?;
    let Some(ms) = client
        .propfind(&principal, "0", dav::propfind_homes())
        .await?
    else {
        info!(user, principal = %principal, "no DAV principal: no calendars or contacts");
        return Ok(Vec::new());
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
        homes.add(principal.clone())?;
    }
    let mut found = Vec::new();
    for home in homes.iter() {
        let Some(ms) = client
            .propfind(home, "1", dav::propfind_collections())
            .await?
        else {
            continue;
        };
        for r in ms.responses {
            let Some(kind) = r.props.kind else { continue };
            let url = homes.resolve(home, &r.href)?;
            if href::same_path(&url, home)
                || found.iter().any(|f: &Found| href::same_path(&f.url, &url))
            {
                continue;
            }
            found.push(Found {
                url,
                home: home.clone(),
                kind,
                props: r.props,
            });
        }
    }
    debug!(user, collections = found.len(), "listed DAV collections");
    let mut out = Vec::with_capacity(found.len());
    for f in found {
        progress.check_stop()?;
        let prev = previous.get(&collection_key(&f.url));
        out.push(snapshot_collection(client, &homes, f, prev, writer, progress).await?);
    }
    Ok(out)
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
                    match client.sync_collection(&f.url, token).await? {
                        Some(ms) => {
                            if ms.sync_token.is_some() {
                                sync_token = ms.sync_token.clone();
                            }
                            Some(apply_sync(client, homes, &f, p, ms, writer, progress).await?)
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
    Ok(CollectionManifest {
        kind: f.kind,
        href: f.url.path().to_string(),
        home: f.home.path().to_string(),
        display_name: f.props.display_name,
        color: f.props.color,
        description: f.props.description,
        components: f.props.components,
        sync_token,
        ctag: f.props.ctag,
        bytes,
        items,
    })
}

/// Applies a sync-collection answer to the previous item list.
async fn apply_sync(
    client: &DavClient,
    homes: &Homes,
    f: &Found,
    prev: &CollectionManifest,
    ms: dav::Multistatus,
    writer: &mut BlobWriter,
    progress: &Progress,
) -> Result<Vec<ItemEntry>, SnapshotError> {
    let mut items: BTreeMap<String, ItemEntry> = prev
        .items
        .iter()
        .map(|i| (i.name.clone(), i.clone()))
        .collect();
    let mut changed = Vec::new();
    for r in ms.responses {
        let url = homes.resolve(&f.url, &r.href)?;
        if href::same_path(&url, &f.url) {
            continue;
        }
        let Some(name) = member_name(&f.url, &url) else {
            continue;
        };
        if r.status == Some(404) || r.status == Some(410) {
            items.remove(&name);
        } else {
            items.remove(&name);
            changed.push((name, url));
        }
    }
    let carried = items.len() as u64;
    progress.items_carried.fetch_add(carried, Ordering::Relaxed);
    for e in fetch(client, f.kind, changed, writer, progress).await? {
        items.insert(e.name.clone(), e);
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
    let old: HashMap<&str, &ItemEntry> = prev
        .map(|p| p.items.iter().map(|i| (i.name.as_str(), i)).collect())
        .unwrap_or_default();
    let mut items = BTreeMap::new();
    let mut wanted = Vec::new();
    for r in ms.responses {
        if r.props.is_collection {
            continue;
        }
        let url = homes.resolve(&f.url, &r.href)?;
        if href::same_path(&url, &f.url) {
            continue;
        }
        let Some(name) = member_name(&f.url, &url) else {
            continue;
        };
        match (old.get(name.as_str()), &r.props.etag) {
            (Some(o), Some(etag)) if o.etag.as_ref() == Some(etag) => {
                progress.items_carried.fetch_add(1, Ordering::Relaxed);
                items.insert(name, (*o).clone());
            }
            _ => wanted.push((name, url)),
        }
    }
    for e in fetch(client, f.kind, wanted, writer, progress).await? {
        items.insert(e.name.clone(), e);
    }
    Ok(items.into_values().collect())
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

/// GETs items, a few at a time, and stores their bytes.
async fn fetch(
    client: &DavClient,
    kind: CollectionKind,
    wanted: Vec<(String, Url)>,
    writer: &mut BlobWriter,
    progress: &Progress,
) -> Result<Vec<ItemEntry>, SnapshotError> {
    let mut out = Vec::with_capacity(wanted.len());
    let mut responses = futures_util::stream::iter(wanted)
        .map(|(name, url)| async move { (name, client.get(&url).await) })
        .buffered(PARALLEL_GETS);
    while let Some((name, r)) = responses.next().await {
        progress.check_stop()?;
        // Gone between the listing and the GET: not part of this point.
        let Some(r) = r? else { continue };
        let (blob, _) = writer.put(&r.body)?;
        progress.items_downloaded.fetch_add(1, Ordering::Relaxed);
        progress
            .item_bytes
            .fetch_add(r.body.len() as u64, Ordering::Relaxed);
        out.push(ItemEntry {
            uid: item_uid(kind, &r.body),
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
