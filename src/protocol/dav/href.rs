//! Hrefs: the user's name where it enters a URL, and every href a server
//! returns resolved against the request and checked to stay on the server
//! and under the user's homes.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use url::Url;

/// Everything but RFC 3986's unreserved characters is encoded in a path
/// segment we build (`alice@example.org` → `alice%40example.org`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An href the daemon will not follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HrefError {
    /// Not a URL or path at all.
    #[error("the server returned an href that is not a URL: {0:?}")]
    Invalid(String),
    /// Another scheme, host or port than the configured server.
    #[error("the server returned an href on another server: {0}")]
    OtherServer(String),
    /// A path outside every home of the user.
    #[error("the server returned an href outside the user's homes: {0}")]
    OutsideHomes(String),
    /// `.`/`..`, a NUL, or an encoded `/` in a segment.
    #[error("the server returned an href with an unsafe segment: {0}")]
    Unsafe(String),
}

/// Percent-encodes one path segment.
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The principal URL of `user`: `template` (`/{user}/`) with the user's
/// name encoded as one segment, on `base`.
pub fn principal_url(base: &Url, template: &str, user: &str) -> Result<Url, HrefError> {
    let path = template.replace("{user}", &encode_segment(user));
    base.join(&path).map_err(|_| HrefError::Invalid(path))
}

/// Resolves an href from a response to a request on `request`. A full URL
/// naming another host (a server behind a proxy that builds hrefs from its
/// public name, `localhost` for `127.0.0.1`) keeps only its path: requests
/// always go to the configured server, and the path is what gets checked.
/// So does one carrying a user name or password (`//user:pw@host/…`): the
/// HTTP client would send those as the request's credentials.
pub fn resolve(request: &Url, href: &str) -> Result<Url, HrefError> {
    let url = request
        .join(href)
        .map_err(|_| HrefError::Invalid(href.to_string()))?;
    let url = if url.scheme() != request.scheme()
        || url.host_str() != request.host_str()
        || url.port_or_known_default() != request.port_or_known_default()
        || url.username() != request.username()
        || url.password() != request.password()
    {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HrefError::OtherServer(url.to_string()));
        }
        tracing::debug!(
            href,
            "an href names another host: its path is used on the configured server"
        );
        // Only the path moves over: joining it could read `//host/…` as
        // another host.
        let mut same = request.clone();
        same.set_path(url.path());
        same.set_query(None);
        same.set_fragment(None);
        same
    } else {
        url
    };
    segments(&url)?;
    Ok(url)
}

/// The decoded path segments of `url` (a trailing `/` gives no empty last
/// segment), refusing `.`, `..`, NUL and encoded `/`.
pub fn segments(url: &Url) -> Result<Vec<String>, HrefError> {
    let mut out = Vec::new();
    for raw in url.path().split('/').filter(|s| !s.is_empty()) {
        let s = percent_decode_str(raw).decode_utf8_lossy();
        if s == "." || s == ".." || s.contains('/') || s.contains('\0') {
            return Err(HrefError::Unsafe(url.to_string()));
        }
        out.push(s.into_owned());
    }
    Ok(out)
}

/// True when two URLs have the same scheme, host and port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// True when `a` and `b` name the same resource (decoded paths equal, a
/// trailing `/` ignored).
pub fn same_path(a: &Url, b: &Url) -> bool {
    matches!((segments(a), segments(b)), (Ok(x), Ok(y)) if x == y)
}

/// The last segment of a URL's path, as it is on the wire (encoded).
pub fn last_segment(url: &Url) -> Option<&str> {
    url.path().split('/').rfind(|s| !s.is_empty())
}

/// True when a member name (a last segment, encoded) is safe to reuse in a
/// path we build: not empty, not `.`/`..`, no `/`, `?`, `#` or NUL once
/// decoded, and not absurdly long.
pub fn is_safe_member_name(raw: &str) -> bool {
    let decoded = percent_decode_str(raw).decode_utf8_lossy();
    !raw.is_empty()
        && raw.len() <= 512
        && decoded != "."
        && decoded != ".."
        && !raw.contains(['/', '?', '#'])
        && !decoded.contains(['/', '\0'])
}

/// The user's homes: every href met during a snapshot must lie below one.
#[derive(Debug, Clone, Default)]
pub struct Homes {
    homes: Vec<(Url, Vec<String>)>,
}

impl Homes {
    /// Adds a home (deduplicated).
    pub fn add(&mut self, home: Url) -> Result<(), HrefError> {
        let segs = segments(&home)?;
        if !self.homes.iter().any(|(_, s)| *s == segs) {
            self.homes.push((home, segs));
        }
        Ok(())
    }

    /// The homes, in discovery order.
    pub fn iter(&self) -> impl Iterator<Item = &Url> {
        self.homes.iter().map(|(u, _)| u)
    }

    /// Resolves `href` against `request` and checks it lies below a home
    /// (or is one), on the home's server.
    pub fn resolve(&self, request: &Url, href: &str) -> Result<Url, HrefError> {
        let url = resolve(request, href)?;
        if !self.homes.iter().any(|(h, _)| same_origin(h, &url)) {
            return Err(HrefError::OtherServer(url.to_string()));
        }
        let segs = segments(&url)?;
        if self
            .homes
            .iter()
            .any(|(_, home)| segs.len() >= home.len() && segs[..home.len()] == home[..])
        {
            Ok(url)
        } else {
            Err(HrefError::OutsideHomes(url.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:5232").unwrap()
    }

    #[test]
    fn the_user_name_is_one_encoded_segment() {
        let u = principal_url(&base(), "/{user}/", "alice@example.org").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:5232/alice%40example.org/");
        let evil = principal_url(&base(), "/{user}/", "../admin/x?y#z").unwrap();
        assert_eq!(evil.path(), "/..%2Fadmin%2Fx%3Fy%23z/");
        assert!(segments(&evil).is_err(), "an encoded / is refused");
        let nested = principal_url(&base(), "/dav/principals/{user}/", "bob").unwrap();
        assert_eq!(nested.path(), "/dav/principals/bob/");
    }

    #[test]
    fn hrefs_stay_under_the_homes() {
        let mut homes = Homes::default();
        homes
            .add(base().join("/alice%40example.org/").unwrap())
            .unwrap();
        let req = base().join("/alice%40example.org/").unwrap();
        // Encoded differently, relative or absolute: the same place.
        for ok in [
            "/alice@example.org/cal/",
            "/alice%40example.org/cal/x.ics",
            "cal/",
            "http://127.0.0.1:5232/alice%40example.org/",
            // Another spelling of the host: its path, on our server.
            "https://dav.example.net/alice%40example.org/cal/",
            // `/\host/…` is `//host/…`: again only its path is used.
            "/\\evil.example/alice%40example.org/cal/",
        ] {
            let url = homes
                .resolve(&req, ok)
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(
                (url.host_str(), url.port()),
                (Some("127.0.0.1"), Some(5232)),
                "{ok}"
            );
        }
        for (bad, want) in [
            ("/bob/cal/", "outside"),
            ("/alice%40example.org/../bob/", "outside"),
            ("/alice%40example.org/%2e%2e/bob/", "outside"),
            ("/alice%40example.org/a%2fb/", "unsafe"),
            ("http://evil.example:5232/bob/", "outside"),
            ("mailto:alice@example.org", "another server"),
            (
                "http://evil.example//evil.example/alice%40example.org/cal/",
                "outside",
            ),
            ("/alice%40example.orgx/", "outside"),
        ] {
            let e = homes.resolve(&req, bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_in_an_href_are_dropped() {
        // The `href` fuzz target's invariant: a same-host href with user
        // info kept it, and reqwest turns URL user info into an
        // Authorization header of the server's choosing.
        let req = base().join("/alice%40example.org/").unwrap();
        for href in [
            "//user:pw@127.0.0.1:5232/alice%40example.org/x",
            "http://user@127.0.0.1:5232/alice%40example.org/x",
        ] {
            let url = resolve(&req, href).unwrap();
            assert_eq!(
                url.as_str(),
                "http://127.0.0.1:5232/alice%40example.org/x",
                "{href}"
            );
        }
    }

    #[test]
    fn member_names_are_checked_before_reuse() {
        for ok in ["a.ics", "2f1c%20x.vcf", "%C3%A9t%C3%A9.ics"] {
            assert!(is_safe_member_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "%2e%2E",
            "a%2Fb",
            "a/b",
            "a?b",
            "%00",
            &"x".repeat(600),
        ] {
            assert!(!is_safe_member_name(bad), "{bad}");
        }
        let u = base().join("/a/b/c.ics").unwrap();
        assert_eq!(last_segment(&u), Some("c.ics"));
        assert_eq!(last_segment(&base().join("/a/b/").unwrap()), Some("b"));
        assert!(same_path(
            &base().join("/a%40b/c/").unwrap(),
            &base().join("/a@b/c").unwrap()
        ));
    }
}
