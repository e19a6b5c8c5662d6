//! Raw DAV reading for the tests: members and items of a collection through
//! PROPFIND and GET, parsed with string search (independent of the code
//! under test).

use std::collections::BTreeMap;

use mailrestore_sandbox::raw_http::RawHttp;

/// Decodes the few entities a server puts in text.
pub fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of every `…href>` element of a raw body (any prefix).
pub fn hrefs(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("href>") {
        let after = &rest[i + 5..];
        let end = after.find('<').unwrap_or(after.len());
        let text = after[..end].trim();
        if !text.is_empty() && !rest[..i].ends_with('/') {
            out.push(unescape(text));
        }
        rest = &after[end..];
    }
    out
}

/// The text of the first `…name>` element of a raw body.
pub fn prop(body: &str, name: &str) -> Option<String> {
    let open = format!("{name}>");
    let mut rest = body;
    while let Some(i) = rest.find(&open) {
        let before = &rest[..i];
        let after = &rest[i + open.len()..];
        if !before.ends_with('/') && !before.ends_with("</") {
            let end = after.find('<').unwrap_or(after.len());
            return Some(unescape(&after[..end]));
        }
        rest = after;
    }
    None
}

/// Members of a collection (their last path segment, decoded the way the
/// server sent it), through a raw PROPFIND.
pub fn members(http: &RawHttp, path: &str) -> Vec<String> {
    let r = http
        .propfind(
            path,
            "1",
            r#"<?xml version="1.0"?><propfind xmlns="DAV:"><prop><resourcetype/></prop></propfind>"#,
        )
        .expect("PROPFIND");
    assert_eq!(r.status, 207, "PROPFIND {path}: {}", r.text());
    let decoded = |s: &str| percent_decode(s.trim_end_matches('/'));
    let me = decoded(path);
    hrefs(&r.text())
        .into_iter()
        .map(|h| {
            let p = h
                .find("://")
                .map_or(h.as_str(), |i| {
                    &h[i + 3 + h[i + 3..].find('/').unwrap_or(0)..]
                })
                .to_string();
            decoded(&p)
        })
        .filter(|p| *p != me)
        .filter_map(|p| p.rsplit('/').next().map(str::to_string))
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Every item of a collection: name → the bytes the server returns to GET.
pub fn items(http: &RawHttp, path: &str) -> BTreeMap<String, Vec<u8>> {
    members(http, path)
        .into_iter()
        .map(|name| {
            let r = http
                .request("GET", &format!("{path}{name}"), &[], b"")
                .expect("GET");
            assert_eq!(r.status, 200, "GET {path}{name}");
            (name, r.body)
        })
        .collect()
}
