//! Seeding calendars and address books on the sandbox's DAV servers from
//! real-world `.ics`/`.vcf` files, with the independent [`RawHttp`] client.
//!
//! A CalDAV object resource holds one UID (RFC 4791 §4.1), but exported
//! `.ics` files often hold many: [`split_calendar`] cuts a file into one
//! object per UID, each with the file's time zones. `.vcf` files are cut
//! into one vCard each by [`split_vcards`].

use std::path::Path;

use super::raw_http::{HttpError, RawHttp};

/// One object to PUT: its resource name and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedItem {
    /// Resource name (a plain file name).
    pub name: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// The lines of a text, each with its line ending.
fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

fn is(line: &str, what: &str) -> bool {
    line.trim_end().eq_ignore_ascii_case(what)
}

/// Cuts an iCalendar file into one calendar object per UID: the
/// VCALENDAR's own properties, every VTIMEZONE, then the components with
/// that UID (a recurring event and its overrides stay together).
/// Components without a UID are left out.
pub fn split_calendar(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let all = lines(text);
    let mut i = 0;
    while i < all.len() {
        if !is(all[i], "BEGIN:VCALENDAR") {
            i += 1;
            continue;
        }
        let begin = all[i];
        i += 1;
        let mut head = String::new();
        let mut zones = String::new();
        // (uid, text) in order of first appearance.
        let mut objects: Vec<(String, String)> = Vec::new();
        while i < all.len() && !is(all[i], "END:VCALENDAR") {
            let line = all[i];
            let upper = line.trim_end().to_ascii_uppercase();
            if let Some(kind) = upper.strip_prefix("BEGIN:") {
                let end = format!("END:{kind}");
                let start = i;
                let mut depth = 0;
                while i < all.len() {
                    let u = all[i].trim_end().to_ascii_uppercase();
                    if u == format!("BEGIN:{kind}") {
                        depth += 1;
                    } else if u == end {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    i += 1;
                }
                let block: String = all[start..=i.min(all.len() - 1)].concat();
                i += 1;
                if kind == "VTIMEZONE" {
                    zones.push_str(&block);
                    continue;
                }
                let uid = block
                    .split_inclusive('\n')
                    .skip(1)
                    .take_while(|l| !l.to_ascii_uppercase().starts_with("BEGIN:"))
                    .find_map(uid_value);
                let Some(uid) = uid else { continue };
                match objects.iter_mut().find(|(u, _)| *u == uid) {
                    Some((_, t)) => t.push_str(&block),
                    None => objects.push((uid, block)),
                }
            } else {
                head.push_str(line);
                i += 1;
            }
        }
        let end = all.get(i).copied().unwrap_or("END:VCALENDAR\r\n");
        i += 1;
        for (uid, body) in objects {
            out.push((uid, format!("{begin}{head}{zones}{body}{end}")));
        }
    }
    out
}

/// The value of a `UID:` line.
fn uid_value(line: &str) -> Option<String> {
    let t = line.trim_end();
    t.get(..4)
        .filter(|p| p.eq_ignore_ascii_case("UID:"))
        .map(|_| t[4..].to_string())
        .filter(|u| !u.is_empty())
}

/// Cuts a `.vcf` file into its vCards.
pub fn split_vcards(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in lines(text) {
        if is(line, "BEGIN:VCARD") {
            current = Some(String::new());
        }
        if let Some(c) = current.as_mut() {
            c.push_str(line);
            if is(line, "END:VCARD") {
                out.push(current.take().unwrap_or_default());
            }
        }
    }
    out
}

/// A resource name for a UID: readable, safe, unique enough.
pub fn item_name(uid: &str, ext: &str) -> String {
    let hash = blake3::hash(uid.as_bytes()).to_hex();
    let plain: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!("{plain}-{}.{ext}", &hash[..10])
}

/// The calendar objects of the `.ics` files in `dir` (sorted by file name),
/// at most `per_file` from each file (holiday calendars hold thousands).
pub fn calendar_items(dir: &Path, per_file: usize) -> std::io::Result<Vec<SeedItem>> {
    let mut out = Vec::new();
    for path in sorted_files(dir, "ics")? {
        let bytes = std::fs::read(&path)?;
        let text = String::from_utf8_lossy(&bytes);
        for (uid, object) in split_calendar(&text).into_iter().take(per_file) {
            out.push(SeedItem {
                name: item_name(&uid, "ics"),
                bytes: object.into_bytes(),
            });
        }
    }
    dedup(&mut out);
    Ok(out)
}

/// Every vCard of the `.vcf` files in `dir`; a card without a UID gets one
/// (derived from its bytes), as CardDAV requires.
pub fn contact_items(dir: &Path) -> std::io::Result<Vec<SeedItem>> {
    let mut out = Vec::new();
    for path in sorted_files(dir, "vcf")? {
        let bytes = std::fs::read(&path)?;
        let text = String::from_utf8_lossy(&bytes);
        for card in split_vcards(&text) {
            let (uid, card) = if let Some(uid) = card.lines().find_map(uid_value) {
                (uid, card)
            } else {
                let uid = format!("seed-{}", &blake3::hash(card.as_bytes()).to_hex()[..16]);
                let eol = if card.contains("\r\n") { "\r\n" } else { "\n" };
                let card = card.replacen("END:VCARD", &format!("UID:{uid}{eol}END:VCARD"), 1);
                (uid, card)
            };
            out.push(SeedItem {
                name: item_name(&uid, "vcf"),
                bytes: card.into_bytes(),
            });
        }
    }
    dedup(&mut out);
    Ok(out)
}

fn dedup(items: &mut Vec<SeedItem>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|i| seen.insert(i.name.clone()));
}

fn sorted_files(dir: &Path, ext: &str) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext)))
        .collect();
    files.sort();
    Ok(files)
}

/// Creates a calendar at `path` (ending in `/`) with a display name and colour.
pub fn make_calendar(
    client: &RawHttp,
    path: &str,
    name: &str,
    color: &str,
) -> Result<u16, HttpError> {
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:I="http://apple.com/ns/ical/"><D:set><D:prop><D:displayname>{name}</D:displayname><I:calendar-color>{color}</I:calendar-color><C:calendar-description>Seeded from real-world files</C:calendar-description><C:supported-calendar-component-set><C:comp name="VEVENT"/><C:comp name="VTODO"/><C:comp name="VJOURNAL"/></C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"#
    );
    Ok(client
        .request(
            "MKCALENDAR",
            path,
            &[("Content-Type", "application/xml; charset=utf-8")],
            body.as_bytes(),
        )?
        .status)
}

/// Creates an address book at `path` with a display name.
pub fn make_addressbook(client: &RawHttp, path: &str, name: &str) -> Result<u16, HttpError> {
    let body = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype><D:displayname>{name}</D:displayname></D:prop></D:set></D:mkcol>"#
    );
    Ok(client
        .request(
            "MKCOL",
            path,
            &[("Content-Type", "application/xml; charset=utf-8")],
            body.as_bytes(),
        )?
        .status)
}

/// PUTs every item into the collection at `path`; returns the names the
/// server accepted (a server may refuse an invalid one).
pub fn put_items(
    client: &RawHttp,
    path: &str,
    content_type: &str,
    items: &[SeedItem],
) -> Result<Vec<String>, HttpError> {
    let mut accepted = Vec::new();
    for item in items {
        let r = client.request(
            "PUT",
            &format!("{path}{}", item.name),
            &[("Content-Type", content_type)],
            &item.bytes,
        )?;
        if (200..300).contains(&r.status) {
            accepted.push(item.name.clone());
        } else {
            tracing::debug!(item = %item.name, status = r.status, body = %r.text(), "the server refused a seed item");
            if std::env::var_os("MAILRESTORE_SEED_DEBUG").is_some() {
                eprintln!("{}: {} {}", item.name, r.status, r.text());
            }
        }
    }
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calendar_is_cut_by_uid_with_its_time_zones() {
        let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:a\r\nRRULE:FREQ=DAILY\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nEND:VALARM\r\nEND:VEVENT\r\nBEGIN:VTODO\r\nUID:b\r\nEND:VTODO\r\nBEGIN:VEVENT\r\nUID:a\r\nRECURRENCE-ID:20260101T000000Z\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nSUMMARY:no uid\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let parts = split_calendar(ics);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, "a");
        assert_eq!(parts[0].1.matches("BEGIN:VEVENT").count(), 2);
        assert!(parts[0].1.contains("BEGIN:VALARM") && parts[0].1.contains("TZID:Europe/Paris"));
        assert!(parts[1].1.contains("BEGIN:VTODO") && !parts[1].1.contains("UID:a"));
        assert!(parts.iter().all(|(_, t)| {
            t.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n")
                && t.ends_with("END:VCALENDAR\r\n")
        }));
        let vcf = "BEGIN:VCARD\nVERSION:3.0\nFN:A\nEND:VCARD\nBEGIN:VCARD\nVERSION:4.0\nFN:B\nEND:VCARD\n";
        assert_eq!(split_vcards(vcf).len(), 2);
    }
}
