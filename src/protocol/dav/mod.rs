//! WebDAV, CalDAV and CardDAV without I/O: the request bodies the daemon
//! sends, the multistatus and error bodies it reads, and the href rules.
//!
//! Only what a snapshot and a restore need: discovery of the homes
//! (RFC 4791 §6.2.1, RFC 6352 §7.1.1), a collection listing with its
//! properties, ETag listings, `sync-collection` (RFC 6578), MKCALENDAR and
//! extended MKCOL (RFC 5689) bodies, and the precondition elements of
//! `DAV:error` bodies (RFC 4918 §16).

pub mod href;
pub mod xml;

use quick_xml::escape::escape;

pub use href::{Homes, HrefError};
pub use xml::Element;

/// `DAV:`
pub const NS_DAV: &str = "DAV:";
/// CalDAV.
pub const NS_CALDAV: &str = "urn:ietf:params:xml:ns:caldav";
/// CardDAV.
pub const NS_CARDDAV: &str = "urn:ietf:params:xml:ns:carddav";
/// Calendar Server extensions (`getctag`).
pub const NS_CS: &str = "http://calendarserver.org/ns/";
/// Apple's iCal properties (`calendar-color`).
pub const NS_ICAL: &str = "http://apple.com/ns/ical/";

/// A body that is not the XML it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DavParseError(String);

impl DavParseError {
    pub(crate) fn new(why: impl Into<String>) -> DavParseError {
        DavParseError(why.into())
    }
}

/// What kind of collection a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionKind {
    /// A CalDAV calendar (events, tasks, journals).
    Calendar,
    /// A CardDAV address book.
    Addressbook,
}

/// The properties the daemon reads, from the `200` propstats of a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    /// `resourcetype` holds `collection`.
    pub is_collection: bool,
    /// `resourcetype` holds `C:calendar` or `CR:addressbook`.
    pub kind: Option<CollectionKind>,
    /// `displayname`.
    pub display_name: Option<String>,
    /// `ICAL:calendar-color`.
    pub color: Option<String>,
    /// `C:calendar-description` or `CR:addressbook-description`.
    pub description: Option<String>,
    /// `C:supported-calendar-component-set` (`VEVENT`, `VTODO`…).
    pub components: Vec<String>,
    /// `CS:getctag`.
    pub ctag: Option<String>,
    /// `sync-token`.
    pub sync_token: Option<String>,
    /// `getetag`.
    pub etag: Option<String>,
    /// `getcontenttype`.
    pub content_type: Option<String>,
    /// `C:calendar-home-set` hrefs.
    pub calendar_homes: Vec<String>,
    /// `CR:addressbook-home-set` hrefs.
    pub addressbook_homes: Vec<String>,
}

/// One `response` of a multistatus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The href, as sent (percent-encoded, maybe a full URL).
    pub href: String,
    /// The response-level status (sync-collection: `404` = removed).
    pub status: Option<u16>,
    /// Properties found (status 200).
    pub props: Props,
}

/// A parsed `207 Multi-Status` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multistatus {
    /// The responses, in order.
    pub responses: Vec<Response>,
    /// The new `sync-token` of a sync-collection report.
    pub sync_token: Option<String>,
}

/// Parses a multistatus body.
pub fn parse_multistatus(body: &[u8]) -> Result<Multistatus, DavParseError> {
    let root = xml::parse(body)?;
    if !root.is(NS_DAV, "multistatus") {
        return Err(DavParseError::new(format!(
            "expected a DAV:multistatus, found {{{}}}{}",
            root.ns, root.name
        )));
    }
    let mut out = Multistatus {
        sync_token: root
            .child(NS_DAV, "sync-token")
            .map(|t| t.text.trim().to_string()),
        ..Multistatus::default()
    };
    for r in root.children_named(NS_DAV, "response") {
        let Some(href) = r.child(NS_DAV, "href") else {
            continue;
        };
        let mut response = Response {
            href: href.text.trim().to_string(),
            status: r.child(NS_DAV, "status").and_then(|s| status_code(&s.text)),
            props: Props::default(),
        };
        for ps in r.children_named(NS_DAV, "propstat") {
            let ok = ps
                .child(NS_DAV, "status")
                .and_then(|s| status_code(&s.text))
                .is_some_and(|c| (200..300).contains(&c));
            if !ok {
                continue;
            }
            if let Some(prop) = ps.child(NS_DAV, "prop") {
                read_props(prop, &mut response.props);
            }
        }
        out.responses.push(response);
    }
    Ok(out)
}

fn read_props(prop: &Element, p: &mut Props) {
    let text = |e: &Element| Some(e.text.trim().to_string()).filter(|t| !t.is_empty());
    for e in &prop.children {
        match (e.ns.as_str(), e.name.as_str()) {
            (NS_DAV, "resourcetype") => {
                p.is_collection = e.child(NS_DAV, "collection").is_some();
                if e.child(NS_CALDAV, "calendar").is_some() {
                    p.kind = Some(CollectionKind::Calendar);
                } else if e.child(NS_CARDDAV, "addressbook").is_some() {
                    p.kind = Some(CollectionKind::Addressbook);
                }
            }
            (NS_DAV, "displayname") => p.display_name = Some(e.text.clone()),
            (NS_ICAL, "calendar-color") => p.color = text(e),
            (NS_CALDAV, "calendar-description") | (NS_CARDDAV, "addressbook-description") => {
                p.description = Some(e.text.clone()).filter(|t| !t.is_empty());
            }
            (NS_CALDAV, "supported-calendar-component-set") => {
                p.components = e
                    .children_named(NS_CALDAV, "comp")
                    .filter_map(|c| c.attr("name"))
                    .map(|n| n.to_ascii_uppercase())
                    .collect();
            }
            (NS_CS, "getctag") => p.ctag = text(e),
            (NS_DAV, "sync-token") => p.sync_token = text(e),
            (NS_DAV, "getetag") => p.etag = text(e),
            (NS_DAV, "getcontenttype") => p.content_type = text(e),
            (NS_CALDAV, "calendar-home-set") => p.calendar_homes = hrefs(e),
            (NS_CARDDAV, "addressbook-home-set") => p.addressbook_homes = hrefs(e),
            _ => {}
        }
    }
}

fn hrefs(e: &Element) -> Vec<String> {
    e.children_named(NS_DAV, "href")
        .map(|h| h.text.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect()
}

/// The code of an HTTP status line (`HTTP/1.1 404 Not Found`).
fn status_code(line: &str) -> Option<u16> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The precondition and postcondition elements of a `DAV:error` body
/// (`no-uid-conflict`, `unique-scheduling-object-resource`,
/// `valid-sync-token`…), by local name. Empty when the body is not one.
pub fn error_conditions(body: &[u8]) -> Vec<String> {
    match xml::parse(body) {
        Ok(root) if root.is(NS_DAV, "error") => {
            root.children.iter().map(|c| c.name.clone()).collect()
        }
        _ => Vec::new(),
    }
}

/// True when an error body says the item's UID is already used by another
/// resource of the user: CalDAV's `no-uid-conflict` (RFC 4791 §5.3.2.1),
/// CardDAV's (RFC 6352 §6.3.2.1), or the scheduling rule
/// `unique-scheduling-object-resource` (RFC 6638 §3.2.4.1, Cyrus).
pub fn is_uid_conflict(body: &[u8]) -> bool {
    error_conditions(body)
        .iter()
        .any(|c| c == "no-uid-conflict" || c == "unique-scheduling-object-resource")
}

/// True when an error body says the sync-token is no longer valid.
pub fn is_invalid_sync_token(body: &[u8]) -> bool {
    error_conditions(body)
        .iter()
        .any(|c| c == "valid-sync-token")
}

const XML_HEAD: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

/// PROPFIND Depth 0 body on a principal: where its homes are.
pub fn propfind_homes() -> String {
    format!(
        r#"{XML_HEAD}<D:propfind xmlns:D="DAV:" xmlns:C="{NS_CALDAV}" xmlns:CR="{NS_CARDDAV}"><D:prop><D:resourcetype/><C:calendar-home-set/><CR:addressbook-home-set/></D:prop></D:propfind>"#
    )
}

/// PROPFIND Depth 1 body on a home: its collections and their properties.
pub fn propfind_collections() -> String {
    format!(
        r#"{XML_HEAD}<D:propfind xmlns:D="DAV:" xmlns:C="{NS_CALDAV}" xmlns:CR="{NS_CARDDAV}" xmlns:CS="{NS_CS}" xmlns:I="{NS_ICAL}"><D:prop><D:resourcetype/><D:displayname/><I:calendar-color/><C:calendar-description/><CR:addressbook-description/><C:supported-calendar-component-set/><CS:getctag/><D:sync-token/></D:prop></D:propfind>"#
    )
}

/// PROPFIND Depth 1 body on a collection: each member's ETag.
pub fn propfind_etags() -> String {
    format!(
        r#"{XML_HEAD}<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getetag/><D:getcontenttype/></D:prop></D:propfind>"#
    )
}

/// REPORT body: what changed since `token` (RFC 6578 §3.2).
pub fn sync_collection(token: &str) -> String {
    format!(
        r#"{XML_HEAD}<D:sync-collection xmlns:D="DAV:"><D:sync-token>{}</D:sync-token><D:sync-level>1</D:sync-level><D:prop><D:getetag/><D:getcontenttype/></D:prop></D:sync-collection>"#,
        escape(token)
    )
}

/// The properties a restored collection is created with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewCollection {
    /// Display name.
    pub display_name: String,
    /// Colour (calendars).
    pub color: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Component set (calendars); empty: the server's default.
    pub components: Vec<String>,
}

/// MKCALENDAR body (RFC 4791 §5.3.1).
pub fn mkcalendar(c: &NewCollection) -> String {
    let mut props = format!("<D:displayname>{}</D:displayname>", escape(&c.display_name));
    if let Some(color) = &c.color {
        props.push_str(&format!(
            "<I:calendar-color>{}</I:calendar-color>",
            escape(color)
        ));
    }
    if let Some(d) = &c.description {
        props.push_str(&format!(
            "<C:calendar-description>{}</C:calendar-description>",
            escape(d)
        ));
    }
    if !c.components.is_empty() {
        props.push_str("<C:supported-calendar-component-set>");
        for comp in &c.components {
            props.push_str(&format!(r#"<C:comp name="{}"/>"#, escape(comp)));
        }
        props.push_str("</C:supported-calendar-component-set>");
    }
    format!(
        r#"{XML_HEAD}<C:mkcalendar xmlns:D="DAV:" xmlns:C="{NS_CALDAV}" xmlns:I="{NS_ICAL}"><D:set><D:prop>{props}</D:prop></D:set></C:mkcalendar>"#
    )
}

/// Extended MKCOL body for an address book (RFC 5689, RFC 6352 §6.3.1).
pub fn mkcol_addressbook(c: &NewCollection) -> String {
    let mut props = format!(
        "<D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype><D:displayname>{}</D:displayname>",
        escape(&c.display_name)
    );
    if let Some(d) = &c.description {
        props.push_str(&format!(
            "<CR:addressbook-description>{}</CR:addressbook-description>",
            escape(d)
        ));
    }
    format!(
        r#"{XML_HEAD}<D:mkcol xmlns:D="DAV:" xmlns:CR="{NS_CARDDAV}"><D:set><D:prop>{props}</D:prop></D:set></D:mkcol>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Radicale 3.1's answer to the collection listing of a home (trimmed).
    const RADICALE_HOME: &str = r#"<?xml version='1.0' encoding='utf-8'?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CR="urn:ietf:params:xml:ns:carddav" xmlns:CS="http://calendarserver.org/ns/" xmlns:ICAL="http://apple.com/ns/ical/"><response><href>/alice%40example.org/</href><propstat><prop><resourcetype><principal /><collection /></resourcetype></prop><status>HTTP/1.1 200 OK</status></propstat><propstat><prop><displayname /><ICAL:calendar-color /></prop><status>HTTP/1.1 404 Not Found</status></propstat></response><response><href>/alice%40example.org/work/</href><propstat><prop><resourcetype><C:calendar /><collection /></resourcetype><displayname>Work &amp; play</displayname><ICAL:calendar-color>#ff0000ff</ICAL:calendar-color><C:supported-calendar-component-set><C:comp name="VEVENT" /><C:comp name="VTODO" /></C:supported-calendar-component-set><CS:getctag>"abc"</CS:getctag><sync-token>http://radicale.org/ns/sync/1234</sync-token></prop><status>HTTP/1.1 200 OK</status></propstat></response><response><href>/alice%40example.org/book/</href><propstat><prop><resourcetype><CR:addressbook /><collection /></resourcetype><displayname>Friends</displayname><CR:addressbook-description>Old
friends</CR:addressbook-description></prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"#;

    #[test]
    fn a_home_listing_gives_each_collection_and_its_properties() {
        let ms = parse_multistatus(RADICALE_HOME.as_bytes()).unwrap();
        assert_eq!(ms.responses.len(), 3);
        let home = &ms.responses[0];
        assert!(home.props.is_collection && home.props.kind.is_none());
        assert_eq!(home.props.display_name, None, "a 404 propstat is not read");
        let work = &ms.responses[1].props;
        assert_eq!(work.kind, Some(CollectionKind::Calendar));
        assert_eq!(work.display_name.as_deref(), Some("Work & play"));
        assert_eq!(work.color.as_deref(), Some("#ff0000ff"));
        assert_eq!(work.components, ["VEVENT", "VTODO"]);
        assert_eq!(work.ctag.as_deref(), Some("\"abc\""));
        assert_eq!(
            work.sync_token.as_deref(),
            Some("http://radicale.org/ns/sync/1234")
        );
        let book = &ms.responses[2].props;
        assert_eq!(book.kind, Some(CollectionKind::Addressbook));
        assert_eq!(book.description.as_deref(), Some("Old\nfriends"));
    }

    #[test]
    fn a_sync_report_gives_changes_removals_and_the_new_token() {
        let body = r#"<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"><d:response><d:href>/c/a.ics</d:href><d:propstat><d:prop><d:getetag>"2"</d:getetag></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response><d:response><d:href>/c/b.ics</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response><d:sync-token>tok-2</d:sync-token></d:multistatus>"#;
        let ms = parse_multistatus(body.as_bytes()).unwrap();
        assert_eq!(ms.sync_token.as_deref(), Some("tok-2"));
        assert_eq!(ms.responses[0].props.etag.as_deref(), Some("\"2\""));
        assert_eq!(ms.responses[1].status, Some(404));
    }

    #[test]
    fn preconditions_are_read_from_the_element_not_the_status() {
        // Cyrus's answer to a PUT whose UID another calendar holds.
        let cyrus = br#"<?xml version="1.0" encoding="utf-8"?>
<D:error xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><C:unique-scheduling-object-resource><D:href>/dav/calendars/user/alice/Default/x.ics</D:href></C:unique-scheduling-object-resource></D:error>"#;
        assert!(is_uid_conflict(cyrus));
        let caldav = br#"<error xmlns="DAV:"><no-uid-conflict xmlns="urn:ietf:params:xml:ns:caldav"><href>/a/b.ics</href></no-uid-conflict></error>"#;
        assert!(is_uid_conflict(caldav));
        // Radicale 3.1's 409 to a PUT that changes the UID at an href.
        let radicale = br#"<?xml version='1.0' encoding='utf-8'?>
<error xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><C:no-uid-conflict /></error>"#;
        assert!(is_uid_conflict(radicale));
        assert!(!is_uid_conflict(b"<html>Conflict</html>"));
        assert!(!is_uid_conflict(b""));
        assert!(is_invalid_sync_token(
            br#"<D:error xmlns:D="DAV:"><D:valid-sync-token/></D:error>"#
        ));
    }

    #[test]
    fn hostile_bodies_are_errors_not_panics() {
        let deep = "<a>".repeat(10_000);
        for bad in [
            &b"<multistatus xmlns=\"DAV:\"><response>"[..],
            b"not xml at all",
            b"<x:multistatus xmlns:x='urn:other'/>",
            &[0xff, 0xfe, 0x00],
            deep.as_bytes(),
        ] {
            assert!(
                parse_multistatus(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A response without an href is skipped, not a crash.
        let ms =
            parse_multistatus(br#"<multistatus xmlns="DAV:"><response/></multistatus>"#).unwrap();
        assert!(ms.responses.is_empty());
    }

    #[test]
    fn bodies_escape_what_they_carry() {
        let c = NewCollection {
            display_name: "Tom & Jerry <3 (restored 2026-11-26 14:05)".into(),
            color: Some("#00ff00".into()),
            description: Some("</D:prop>".into()),
            components: vec!["VEVENT".into()],
        };
        let body = mkcalendar(&c);
        let root = xml::parse(body.as_bytes()).unwrap();
        let prop = root
            .child(NS_DAV, "set")
            .and_then(|s| s.child(NS_DAV, "prop"))
            .unwrap();
        let mut p = Props::default();
        read_props(prop, &mut p);
        assert_eq!(p.display_name.as_deref(), Some(c.display_name.as_str()));
        assert_eq!(p.description.as_deref(), Some("</D:prop>"));
        assert_eq!(p.components, ["VEVENT"]);
        let book = mkcol_addressbook(&c);
        assert!(xml::parse(book.as_bytes()).is_ok());
        assert!(xml::parse(sync_collection("a<b").as_bytes()).is_ok());
    }
}
