//! Hrefs a DAV server returns (`protocol::dav::href`), resolved against a
//! fixed request URL (the first byte picks one of [`BASES`]).
//!
//! What `resolve` promises: requests always go to the configured server.
//! So whatever the href, an `Ok` result has the base's scheme, host and port
//! (and no user name or password of the server's choosing: those would
//! become the request's credentials), and its path has no `.`, `..`,
//! NUL or encoded `/` segment. `Homes::resolve` adds: the result lies
//! below one of the homes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailrestore::protocol::dav::href::{
    Homes, is_safe_member_name, last_segment, resolve, same_origin, same_path, segments,
};
use url::Url;

/// Request URLs as the daemon makes them: a home on Radicale, a nested
/// home behind a TLS proxy on a non-default port, a default port.
const BASES: &[(&str, &str)] = &[
    (
        "http://127.0.0.1:5232/alice%40example.org/",
        "http://127.0.0.1:5232/alice%40example.org/",
    ),
    (
        "https://dav.example.org:8443/dav/calendars/alice%40example.org/work/",
        "https://dav.example.org:8443/dav/calendars/alice%40example.org/",
    ),
    (
        "https://dav.example.org/remote.php/dav/addressbooks/users/alice/",
        "https://dav.example.org/remote.php/dav/addressbooks/users/alice/",
    ),
];

fn check_on_base(base: &Url, url: &Url, href: &str) {
    assert!(
        same_origin(base, url),
        "{href:?} resolved to {url} off {base}"
    );
    assert_eq!(url.scheme(), base.scheme(), "{href:?} -> {url}");
    assert_eq!(url.host_str(), base.host_str(), "{href:?} -> {url}");
    assert_eq!(
        url.port_or_known_default(),
        base.port_or_known_default(),
        "{href:?} -> {url}"
    );
    assert_eq!(
        (url.username(), url.password()),
        (base.username(), base.password()),
        "{href:?} -> {url} carries credentials of the server's choosing"
    );
    assert!(
        segments(url).is_ok(),
        "{href:?} -> {url} has an unsafe segment"
    );
}

fuzz_target!(|data: &[u8]| {
    let [which, href @ ..] = data else {
        return;
    };
    let Ok(href) = std::str::from_utf8(href) else {
        return;
    };
    let (base, home) = BASES[usize::from(*which) % BASES.len()];
    let base = Url::parse(base).expect("a valid base");
    let home = Url::parse(home).expect("a valid home");

    match resolve(&base, href) {
        Ok(url) => {
            check_on_base(&base, &url, href);
            let _ = (
                same_path(&base, &url),
                last_segment(&url).map(is_safe_member_name),
            );
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }

    let mut homes = Homes::default();
    homes.add(home.clone()).expect("a valid home");
    if let Ok(url) = homes.resolve(&base, href) {
        check_on_base(&base, &url, href);
        let (Ok(inside), Ok(home)) = (segments(&url), segments(&home)) else {
            panic!("{href:?} -> {url}: segments refused after resolve");
        };
        assert!(
            inside.starts_with(&home),
            "{href:?} -> {url} is outside {home:?}"
        );
    }
    let _ = is_safe_member_name(href);
});
