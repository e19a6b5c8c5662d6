//! Calendars and contacts against the real Radicale (and Xandikos), driven
//! through the daemon's socket, checked with an independent raw HTTP client:
//! seeded from real-world .ics/.vcf files (`../shared/corpus`), snapshot,
//! an accident, `restore all`, and every item back in a new collection equal
//! to the server's own copy of the original; nothing live touched, nothing
//! twice, across a crash too.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::ALICE;
use common::daemon::{
    cli, serve, serve_crashing_at, snapshot_job, start_restore, wait_crash, wait_job,
};
use common::dav::{items, members, prop};
use mailrestore::api::client::ApiClient;
use mailrestore_sandbox::daemon::write_config;
use mailrestore_sandbox::dav_seed::{
    SeedItem, calendar_items, contact_items, make_addressbook, make_calendar, put_items,
};
use mailrestore_sandbox::raw_http::RawHttp;
use mailrestore_sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;

const CAL: &str = "text/calendar; charset=utf-8";
const CARD: &str = "text/vcard; charset=utf-8";

fn corpus(sub: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
        .join(sub);
    assert!(dir.is_dir(), "the corpus is missing: {}", dir.display());
    dir
}

/// Alice's home on Radicale.
fn home() -> String {
    "/alice%40example.org/".into()
}

fn dav_sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions {
        radicale: true,
        ..SandboxOptions::default()
    })
    .expect("sandbox with Radicale")
}

/// Displayname and colour of a collection.
fn collection_props(http: &RawHttp, path: &str) -> (Option<String>, Option<String>) {
    let r = http
        .propfind(
            path,
            "0",
            r#"<?xml version="1.0"?><propfind xmlns="DAV:" xmlns:I="http://apple.com/ns/ical/"><prop><displayname/><I:calendar-color/></prop></propfind>"#,
        )
        .expect("PROPFIND");
    let t = r.text();
    (prop(&t, "displayname"), prop(&t, "calendar-color"))
}

/// Everything under a home: collection → items.
fn everything(http: &RawHttp, home: &str) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    members(http, home)
        .into_iter()
        .map(|c| {
            let path = format!("{home}{c}/");
            (c, items(http, &path))
        })
        .collect()
}

/// The restore time as collection names show it.
fn restored_suffix(job: &Value) -> String {
    let created: jiff::Timestamp = job["created_at"].as_str().unwrap().parse().unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    format!(
        " (restored {})",
        created.to_zoned(tz).strftime("%Y-%m-%d %H:%M")
    )
}

struct Seeded {
    work: BTreeMap<String, Vec<u8>>,
    perso: BTreeMap<String, Vec<u8>>,
    contacts: BTreeMap<String, Vec<u8>>,
}

/// Two calendars and an address book from the corpus, read back as the
/// server keeps them.
fn seed(http: &RawHttp, home: &str) -> Seeded {
    let valid = calendar_items(&corpus("ics/ical4j-valid"), 4).unwrap();
    let invalid = calendar_items(&corpus("ics/ical4j-invalid"), 4).unwrap();
    let cards = contact_items(&corpus("vcf")).unwrap();
    let (mut work, mut perso): (Vec<SeedItem>, Vec<SeedItem>) = (Vec::new(), Vec::new());
    for (i, item) in valid.into_iter().enumerate() {
        if i % 2 == 0 {
            work.push(item)
        } else {
            perso.push(item)
        }
    }
    perso.extend(invalid);
    for (path, name, color) in [
        ("work/", "Travail &amp; réunions", "#ff8800ff"),
        ("perso/", "Perso été", "#3366ffff"),
    ] {
        let status = make_calendar(http, &format!("{home}{path}"), name, color).unwrap();
        assert_eq!(status, 201, "MKCALENDAR {path}");
    }
    let status = make_addressbook(http, &format!("{home}contacts/"), "Carnet d'adresses").unwrap();
    assert_eq!(status, 201, "MKCOL contacts");
    let n_work = put_items(http, &format!("{home}work/"), CAL, &work)
        .unwrap()
        .len();
    let n_perso = put_items(http, &format!("{home}perso/"), CAL, &perso)
        .unwrap()
        .len();
    let accepted = put_items(http, &format!("{home}contacts/"), CARD, &cards).unwrap();
    let n_cards = accepted.len();
    for c in cards.iter().filter(|c| !accepted.contains(&c.name)) {
        eprintln!("the server refused the vCard {}", c.name);
    }
    assert!(
        n_work >= 30 && n_perso >= 30 && n_cards >= 10,
        "accepted: {n_work} {n_perso} {n_cards}"
    );
    let s = Seeded {
        work: items(http, &format!("{home}work/")),
        perso: items(http, &format!("{home}perso/")),
        contacts: items(http, &format!("{home}contacts/")),
    };
    assert_eq!(
        (s.work.len(), s.perso.len(), s.contacts.len()),
        (n_work, n_perso, n_cards)
    );
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn calendars_and_contacts_come_back_as_new_collections_beside_the_live_ones() {
    let sandbox = dav_sandbox();
    let radicale = sandbox.radicale.as_ref().unwrap();
    let http = radicale.user_client(ALICE);
    let home = home();
    let seeded = seed(&http, &home);

    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let job = snapshot_job(&api, ALICE).await;
    let point = job["point"].as_str().unwrap().to_string();
    let points = api.get(&format!("/v1/users/{ALICE}/points")).await.unwrap();
    let p = &points["points"][0];
    assert_eq!(p["id"], point.as_str());
    assert_eq!(p["calendars"]["collections"], 2, "{p}");
    assert_eq!(
        p["calendars"]["items"],
        (seeded.work.len() + seeded.perso.len()) as u64,
        "{p}"
    );
    assert_eq!(p["contacts"]["collections"], 1, "{p}");
    assert_eq!(p["contacts"]["items"], seeded.contacts.len() as u64, "{p}");

    // The accident: a phone sync wipes the work calendar, the address book
    // is deleted.
    for name in seeded.work.keys() {
        let r = http
            .request("DELETE", &format!("{home}work/{name}"), &[], b"")
            .unwrap();
        assert!(matches!(r.status, 200 | 204), "DELETE {name}: {}", r.status);
    }
    let r = http
        .request("DELETE", &format!("{home}contacts/"), &[], b"")
        .unwrap();
    assert!(
        matches!(r.status, 200 | 204),
        "DELETE contacts: {}",
        r.status
    );
    let live_before = everything(&http, &home);

    let job = start_restore(&api, ALICE, &point, "all").await;
    let job = wait_job(&api, &job).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["warnings"].as_array().map_or(0, Vec::len), 0, "{job}");
    let total = (seeded.work.len() + seeded.perso.len() + seeded.contacts.len()) as u64;
    assert_eq!(job["progress"]["items"]["total"], total, "{job}");
    assert_eq!(job["progress"]["items"]["done"], total, "{job}");
    let calendars: Vec<String> =
        serde_json::from_value(job["target"]["calendars"].clone()).unwrap();
    let books: Vec<String> = serde_json::from_value(job["target"]["addressbooks"].clone()).unwrap();
    assert_eq!((calendars.len(), books.len()), (2, 1), "{job}");

    // Each new collection: the original's name with the suffix, its colour,
    // and exactly the original's items as the server keeps them.
    let suffix = restored_suffix(&job);
    let originals = [
        ("Travail & réunions", Some("#ff8800ff"), &seeded.work),
        ("Perso été", Some("#3366ffff"), &seeded.perso),
        ("Carnet d'adresses", None, &seeded.contacts),
    ];
    let mut found = 0;
    for href in calendars.iter().chain(&books) {
        let (name, color) = collection_props(&http, href);
        let name = name.unwrap_or_default();
        let (orig, want_color, want) = originals
            .iter()
            .find(|(o, _, _)| name == format!("{o}{suffix}"))
            .unwrap_or_else(|| panic!("{href}: unexpected display name {name:?}"));
        if let Some(c) = want_color {
            assert_eq!(color.as_deref(), Some(*c), "{orig}: colour");
        }
        let got = items(&http, href);
        assert_eq!(got.len(), want.len(), "{orig}: item count");
        for (item, bytes) in *want {
            let restored = got
                .get(item)
                .unwrap_or_else(|| panic!("{orig}: {item} missing"));
            assert!(
                restored == bytes,
                "{orig}: {item} differs:\n--- original\n{}\n--- restored\n{}",
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(restored)
            );
        }
        found += 1;
    }
    assert_eq!(found, 3);

    // Nothing live was touched: every collection there before the restore
    // holds what it held.
    let live_after = everything(&http, &home);
    for (c, its) in &live_before {
        assert_eq!(live_after.get(c), Some(its), "live collection {c} changed");
    }
    assert_eq!(live_after.len(), live_before.len() + 3);
    assert!(live_before["work"].is_empty() && !live_before.contains_key("contacts"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_second_snapshot_fetches_no_item_and_adds_under_16_kib() {
    let sandbox = dav_sandbox();
    let radicale = sandbox.radicale.as_ref().unwrap();
    let http = radicale.user_client(ALICE);
    let home = home();
    let seeded = seed(&http, &home);

    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let gets = || radicale.log().matches("GET request for").count();
    let before_first = gets();
    snapshot_job(&api, ALICE).await;
    let first = gets() - before_first;
    let total = seeded.work.len() + seeded.perso.len() + seeded.contacts.len();
    assert_eq!(first, total, "the first snapshot GETs every item once");

    let size = common::du(&f.state_dir);
    let job = snapshot_job(&api, ALICE).await;
    let grown = common::du(&f.state_dir).saturating_sub(size);
    assert_eq!(
        gets() - before_first - first,
        0,
        "the second snapshot fetched items"
    );
    assert_eq!(job["progress"]["items"]["done"], total as u64, "{job}");
    eprintln!("unchanged second snapshot: state dir +{grown} B");
    assert!(
        grown < 16 * 1024,
        "an unchanged snapshot added {grown} bytes"
    );

    // One changed item, one new, one deleted: only two GETs.
    let (name, _) = seeded.perso.iter().next().unwrap();
    let r = http
        .request("DELETE", &format!("{home}perso/{name}"), &[], b"")
        .unwrap();
    assert!(matches!(r.status, 200 | 204));
    let new = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailrestore//test//EN\r\nBEGIN:VEVENT\r\nUID:new-1@test\r\nDTSTAMP:20261126T100000Z\r\nDTSTART:20261127T100000Z\r\nSUMMARY:Nouveau\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let r = http
        .request(
            "PUT",
            &format!("{home}work/new-1.ics"),
            &[("Content-Type", CAL)],
            new.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 201);
    let card = seeded.contacts.iter().next().unwrap();
    let changed = String::from_utf8_lossy(card.1).replace("END:VCARD", "NOTE:changed\r\nEND:VCARD");
    let r = http
        .request(
            "PUT",
            &format!("{home}contacts/{}", card.0),
            &[("Content-Type", CARD)],
            changed.as_bytes(),
        )
        .unwrap();
    assert!(matches!(r.status, 201 | 204), "{}", r.status);
    let before = gets();
    let job = snapshot_job(&api, ALICE).await;
    assert_eq!(
        gets() - before,
        2,
        "only the new and the changed item are fetched"
    );
    assert_eq!(job["progress"]["items"]["total"], total as u64, "{job}");
}

/// A calendar object with one event.
fn event(uid: &str, summary: &str) -> Vec<u8> {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailrestore//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261126T100000Z\r\nDTSTART:20261201T090000Z\r\nDURATION:PT1H\r\nSUMMARY:{summary}\r\nORGANIZER:mailto:alice@example.org\r\nATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.org\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    .into_bytes()
}

/// Creates the calendar `name` at `path` holding `n` one-event items
/// `{prefix}{i}.ics` (UID `{prefix}{i}@test`).
fn calendar_of_events(http: &RawHttp, path: &str, name: &str, prefix: &str, n: usize) {
    assert_eq!(make_calendar(http, path, name, "#102030ff").unwrap(), 201);
    let seed: Vec<SeedItem> = (0..n)
        .map(|i| SeedItem {
            name: format!("{prefix}{i}.ics"),
            bytes: event(&format!("{prefix}{i}@test"), &format!("{name} {i}")),
        })
        .collect();
    put_items(http, path, CAL, &seed).unwrap();
}

/// Restores `point` (scope `all`); returns the items of its one new calendar.
async fn restored_calendar(
    api: &ApiClient,
    http: &RawHttp,
    point: &str,
) -> BTreeMap<String, Vec<u8>> {
    let job = wait_job(api, &start_restore(api, ALICE, point, "all").await).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let target = job["target"]["calendars"][0].as_str().unwrap().to_string();
    items(http, &target)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_killed_half_way_resumes_and_ends_with_each_item_once() {
    let sandbox = dav_sandbox();
    let radicale = sandbox.radicale.as_ref().unwrap();
    let http = radicale.user_client(ALICE);
    let home = home();
    let path = format!("{home}big/");
    assert_eq!(
        make_calendar(&http, &path, "Big", "#112233ff").unwrap(),
        201
    );
    let seed: Vec<SeedItem> = (0..200)
        .map(|i| SeedItem {
            name: format!("ev-{i:04}.ics"),
            bytes: event(&format!("ev-{i}@test"), &format!("Réunion n°{i}")),
        })
        .collect();
    assert_eq!(put_items(&http, &path, CAL, &seed).unwrap().len(), 200);
    let original = items(&http, &path);

    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    // The daemon dies right after the server created the 21st item,
    // before the journal knows (items go several at a time).
    let daemon = serve_crashing_at(&f, "dav.put:21");
    let api = ApiClient::new(&f.socket);
    let point = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    let job = start_restore(&api, ALICE, &point, "all").await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_crash(daemon, &f);

    let _daemon = serve(&f);
    let job = wait_job(&api, &serde_json::json!({"id": id})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["progress"]["items"]["done"], 200, "{job}");
    let target = job["target"]["calendars"][0].as_str().unwrap().to_string();
    let restored = items(&http, &target);
    assert_eq!(restored.len(), 200, "each item exactly once");
    assert!(
        restored == original,
        "the restored items differ from the originals"
    );
    assert_eq!(items(&http, &path), original, "the live calendar changed");
}

// ---------------------------------------------------------------------------
// A server that refuses a UID the user already has elsewhere. Radicale
// accepts a UID in two calendars, so a proxy in front of it answers the
// PUT of one UID as Cyrus does (403 with the CalDAV precondition element,
// RFC 6638 §3.2.4.1) and passes everything else through.

/// Cyrus IMAP 3.x's body for a PUT whose UID another calendar of the user holds.
const CYRUS_UID_CONFLICT: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:error xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><C:unique-scheduling-object-resource><D:href>/dav/calendars/user/alice@example.org/Default/dup.ics</D:href></C:unique-scheduling-object-resource></D:error>
"#;

/// What the proxy answers instead of the server: status line and body.
type Refusal = (&'static str, &'static str);

/// Starts a proxy in front of `upstream` that answers a request for which
/// `rule(head, body)` gives a refusal itself, and passes the others
/// through; returns its port and the count of refusals sent.
async fn refusing_proxy(
    upstream: u16,
    rule: fn(&str, &[u8]) -> Option<Refusal>,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let refusals = std::sync::Arc::new(AtomicUsize::new(0));
    let count = refusals.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                // One request per connection: read the head and the body.
                let mut buf = Vec::new();
                let head_end = loop {
                    let mut chunk = [0u8; 8192];
                    let n = client.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let mut chunk = [0u8; 65536];
                    let n = client.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = &buf[head_end..];
                let action = rule(&head, body);
                if action.is_some() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                let forwards =
                    |status: &str| status.starts_with("after-forward ") || status == "truncate";
                if let Some((status, text)) = action.filter(|(status, _)| !forwards(status)) {
                    let answer = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = client.write_all(answer.as_bytes()).await;
                    return;
                }
                // Pass through, one request per upstream connection.
                let head: String = head
                    .split("\r\n")
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .filter(|l| !l.is_empty())
                    .map(|l| format!("{l}\r\n"))
                    .collect::<String>()
                    + "Connection: close\r\n\r\n";
                let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let _ = up.write_all(head.as_bytes()).await;
                let _ = up.write_all(body).await;
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer).await;
                match action {
                    // The server did it; the client is told it failed.
                    Some((status, _)) if status.starts_with("after-forward ") => {
                        let answer = format!(
                            "HTTP/1.1 {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            &status["after-forward ".len()..]
                        );
                        let _ = client.write_all(answer.as_bytes()).await;
                        return;
                    }
                    // RFC 6578 §3.6: the answer says it is truncated.
                    Some(("truncate", _)) => answer = truncated(&head, &answer),
                    _ => {}
                }
                // Tell the client this connection ends here.
                if let Some(i) = answer.windows(2).position(|w| w == b"\r\n") {
                    answer.splice(i + 2..i + 2, b"Connection: close\r\n".iter().copied());
                }
                let _ = client.write_all(&answer).await;
            });
        }
    });
    (port, refusals)
}

/// A multistatus answer with a `507` response for the request's own path
/// added, as a server that truncates a sync report says it.
fn truncated(request_head: &str, answer: &[u8]) -> Vec<u8> {
    let path = request_head.split(' ').nth(1).unwrap_or("/");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |i| i + 4);
    let (head, body) = answer.split_at(split);
    let body = String::from_utf8_lossy(body);
    let Some(end) = body.rfind("</") else {
        return answer.to_vec();
    };
    let prefix = body[end + 2..]
        .split(':')
        .next()
        .filter(|p| !p.contains('>'));
    let tag = |t: &str| prefix.map_or(t.to_string(), |p| format!("{p}:{t}"));
    let body = format!(
        "{}<{r}><{h}>{path}</{h}><{st}>HTTP/1.1 507 Insufficient Storage</{st}></{r}>{}",
        &body[..end],
        &body[end..],
        r = tag("response"),
        h = tag("href"),
        st = tag("status"),
    );
    let head: String = String::from_utf8_lossy(head)
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("content-length:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    format!("{head}Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// A daemon configuration whose `[dav]` goes through the proxy.
fn through_proxy(
    sandbox: &Sandbox,
    dir: &Path,
    proxy: u16,
) -> mailrestore_sandbox::daemon::DaemonFiles {
    let radicale = sandbox.radicale.as_ref().unwrap();
    let f = write_config(sandbox, dir, "").unwrap();
    let config = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace(&radicale.url, &format!("http://127.0.0.1:{proxy}"));
    std::fs::write(&f.config, config).unwrap();
    f
}

#[tokio::test(flavor = "multi_thread")]
async fn an_item_whose_uid_the_server_refuses_comes_back_with_a_derived_uid() {
    let sandbox = dav_sandbox();
    let radicale = sandbox.radicale.as_ref().unwrap();
    let http = radicale.user_client(ALICE);
    let home = home();
    let path = format!("{home}team/");
    assert_eq!(
        make_calendar(&http, &path, "Équipe", "#aa00aaff").unwrap(),
        201
    );
    let seed: Vec<SeedItem> = ["keep-1", "dup-uid", "keep-2"]
        .iter()
        .map(|u| SeedItem {
            name: format!("{u}.ics"),
            bytes: event(&format!("{u}@test"), &format!("Point {u}")),
        })
        .collect();
    assert_eq!(put_items(&http, &path, CAL, &seed).unwrap().len(), 3);
    let original = items(&http, &path);

    let (proxy, refusals) = refusing_proxy(radicale.port, |head, body| {
        let uid = b"UID:dup-uid@test\r\n";
        (head.starts_with("PUT ") && body.windows(uid.len()).any(|w| w == uid))
            .then_some(("403 Forbidden", CYRUS_UID_CONFLICT))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let f = through_proxy(&sandbox, dir.path(), proxy);
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let point = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    let job = wait_job(&api, &start_restore(&api, ALICE, &point, "all").await).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(refusals.load(std::sync::atomic::Ordering::SeqCst), 1);
    let warnings = job["warnings"].to_string();
    assert!(
        warnings.contains("dup-uid@test-restored-") && warnings.contains("dup-uid.ics"),
        "the new UID is reported: {warnings}"
    );
    let target = job["target"]["calendars"][0].as_str().unwrap().to_string();
    let restored = items(&http, &target);
    assert_eq!(restored.len(), 3);
    for name in ["keep-1.ics", "keep-2.ics"] {
        assert_eq!(restored[name], original[name], "{name}");
    }
    let dup = String::from_utf8_lossy(&restored["dup-uid.ics"]).to_string();
    assert!(dup.contains("UID:dup-uid@test-restored-"), "{dup}");
    assert!(dup.contains("SUMMARY:Point dup-uid"), "{dup}");
    // The copy differs from the original by its UID, and by
    // SCHEDULE-AGENT=CLIENT on its organizer and attendee, which keeps a
    // server that schedules implicitly from inviting anyone to the copy.
    let unfold = |s: &str| s.replace("\r\n ", "").replace("\n ", "");
    let dup = unfold(&dup);
    let orig = unfold(&String::from_utf8_lossy(&original["dup-uid.ics"]));
    assert_eq!(dup.matches("SCHEDULE-AGENT=CLIENT").count(), 2, "{dup}");
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| {
                !l.starts_with("UID:") && !l.starts_with("ORGANIZER") && !l.starts_with("ATTENDEE")
            })
            .map(str::to_string)
            .collect()
    };
    assert_eq!(strip(&dup), strip(&orig));
}

// ---------------------------------------------------------------------------
// A second server: Xandikos (homes /alice/calendars/ and /alice/contacts/,
// found through the principal's home sets; no authentication).

#[tokio::test(flavor = "multi_thread")]
async fn xandikos_calendars_and_contacts_come_back_too() {
    let sandbox = Sandbox::start(SandboxOptions {
        xandikos: true,
        users: vec!["alice".into()],
        ..SandboxOptions::default()
    })
    .expect("sandbox with Xandikos");
    let x = sandbox.xandikos.as_ref().unwrap();
    let http = x.client();
    let cal = "/alice/calendars/travail/";
    assert!(matches!(
        make_calendar(&http, cal, "Travail", "#00aa00ff").unwrap(),
        201 | 200
    ));
    let events = calendar_items(&corpus("ics/ical4j-valid"), 2).unwrap();
    let accepted = put_items(&http, cal, CAL, &events).unwrap();
    assert!(accepted.len() >= 30, "Xandikos accepted {}", accepted.len());
    let book = "/alice/contacts/addressbook/";
    let cards = contact_items(&corpus("vcf")).unwrap();
    let accepted_cards = put_items(&http, book, CARD, &cards).unwrap();
    assert!(
        accepted_cards.len() >= 10,
        "Xandikos accepted {}",
        accepted_cards.len()
    );
    let original_cal = items(&http, cal);
    let original_book = items(&http, book);

    // What Xandikos does with a UID that another calendar already holds
    // (reported in the closing note; the restore handles either answer).
    let dup = http
        .request(
            "PUT",
            "/alice/calendars/calendar/dup.ics",
            &[("Content-Type", CAL)],
            &events
                .iter()
                .find(|e| accepted.contains(&e.name))
                .unwrap()
                .bytes,
        )
        .unwrap();
    eprintln!(
        "Xandikos, a UID already in another calendar: {} {}",
        dup.status,
        dup.text()
    );

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("xandikos.secret");
    std::fs::write(&secret, "unused\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let extra = format!(
        "\n[dav]\nurl = {:?}\nprincipal = \"/{{user}}/\"\nuser = \"alice\"\npassword_file = {:?}\n",
        x.url,
        secret.display().to_string()
    );
    let f = write_config(&sandbox, &dir.path().join("d"), &extra).unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let job = snapshot_job(&api, "alice").await;
    let point = job["point"].as_str().unwrap().to_string();
    let points = api.get("/v1/users/alice/points").await.unwrap();
    assert!(
        points["points"][0]["calendars"]["collections"]
            .as_u64()
            .unwrap()
            >= 2,
        "{points}"
    );
    assert_eq!(
        points["points"][0]["contacts"]["collections"], 1,
        "{points}"
    );

    for name in original_cal.keys() {
        let r = http
            .request("DELETE", &format!("{cal}{name}"), &[], b"")
            .unwrap();
        assert!(matches!(r.status, 200 | 204), "DELETE {name}: {}", r.status);
    }
    let job = wait_job(&api, &start_restore(&api, "alice", &point, "all").await).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let suffix = restored_suffix(&job);
    let mut checked = 0;
    for href in job["target"]["calendars"]
        .as_array()
        .unwrap()
        .iter()
        .chain(job["target"]["addressbooks"].as_array().unwrap())
    {
        let href = href.as_str().unwrap();
        let (name, _) = collection_props(&http, href);
        let name = name.unwrap_or_default();
        assert!(name.ends_with(&suffix), "{href}: {name:?}");
        let want = if name == format!("Travail{suffix}") {
            &original_cal
        } else if href.starts_with("/alice/contacts/") {
            &original_book
        } else {
            continue;
        };
        let got = items(&http, href);
        assert_eq!(got.len(), want.len(), "{name}");
        for (item, bytes) in want {
            assert!(
                got.get(item) == Some(bytes),
                "{name}: {item} differs or is missing"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 2, "{job}");
    assert!(
        items(&http, cal).is_empty(),
        "the live calendar was touched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_item_is_reported_and_a_full_storage_fails_the_job_keeping_what_came_back() {
    let sandbox = dav_sandbox();
    let radicale = sandbox.radicale.as_ref().unwrap();
    let http = radicale.user_client(ALICE);
    let home = home();
    let path = format!("{home}mix/");
    assert_eq!(
        make_calendar(&http, &path, "Mix", "#000000ff").unwrap(),
        201
    );
    let seed: Vec<SeedItem> = ["one", "too-big", "two", "zz-full"]
        .iter()
        .map(|u| SeedItem {
            name: format!("{u}.ics"),
            bytes: event(&format!("{u}@test"), u),
        })
        .collect();
    assert_eq!(put_items(&http, &path, CAL, &seed).unwrap().len(), 4);
    let original = items(&http, &path);
    // 413 for one item (reported, the others go on), then 507 for the last
    // (the user's storage is full: the job fails, keeping what it made), on
    // their restore only.
    let (proxy, refusals) = refusing_proxy(radicale.port, |head, _| {
        let restored = head.starts_with("PUT ") && head.contains("-restored-");
        if restored && head.contains("/too-big.ics ") {
            Some(("413 Payload Too Large", "<html>too large</html>"))
        } else if restored && head.contains("/zz-full.ics ") {
            Some(("507 Insufficient Storage", ""))
        } else {
            None
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let f = through_proxy(&sandbox, dir.path(), proxy);
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let point = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    let job = wait_job(&api, &start_restore(&api, ALICE, &point, "all").await).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "over_quota", "{job}");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("zz-full.ics"),
        "{job}"
    );
    assert_eq!(refusals.load(std::sync::atomic::Ordering::SeqCst), 2);
    let warnings = job["warnings"].to_string();
    assert!(
        warnings.contains("too-big.ics") && warnings.contains("413"),
        "{warnings}"
    );
    assert_eq!(job["progress"]["items"]["done"], 2, "{job}");
    let target = job["target"]["calendars"][0].as_str().unwrap().to_string();
    let restored = items(&http, &target);
    assert_eq!(restored.keys().collect::<Vec<_>>(), ["one.ics", "two.ics"]);
    for (name, bytes) in &restored {
        assert_eq!(bytes, &original[name], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_and_verify_keep_every_item_of_the_points_kept() {
    let sandbox = dav_sandbox();
    let radicale = sandbox.radicale.as_ref().unwrap();
    let http = radicale.user_client(ALICE);
    let home = home();
    let path = format!("{home}keep/");
    calendar_of_events(&http, &path, "Keep", "k", 6);

    let dir = tempfile::tempdir().unwrap();
    // Keep only the newest point.
    let f = write_config(
        &sandbox,
        dir.path(),
        "\n[retention]\nhourly = 0\ndaily = 0\nweekly = 0\nmonthly = 0\n",
    )
    .unwrap();
    let daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    snapshot_job(&api, ALICE).await;
    // Between the points: one item deleted (its blob only the old point
    // holds), one added.
    let r = http
        .request("DELETE", &format!("{path}k0.ics"), &[], b"")
        .unwrap();
    assert!(matches!(r.status, 200 | 204));
    let r = http
        .request(
            "PUT",
            &format!("{path}k9.ics"),
            &[("Content-Type", CAL)],
            &event("k9@test", "New"),
        )
        .unwrap();
    assert_eq!(r.status, 201);
    let at_second = items(&http, &path);
    let second = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    drop(daemon);

    let out = cli(&f, &["prune"]);
    assert!(
        out.status.success(),
        "prune: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&f, &["verify", "--read-data"]);
    assert!(
        out.status.success(),
        "verify after prune: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let _daemon = serve(&f);
    let points = api.get(&format!("/v1/users/{ALICE}/points")).await.unwrap();
    assert_eq!(points["points"].as_array().unwrap().len(), 1, "{points}");
    assert_eq!(points["points"][0]["id"], second.as_str());
    // Everything live goes, then the kept point comes back whole.
    for name in at_second.keys() {
        http.request("DELETE", &format!("{path}{name}"), &[], b"")
            .unwrap();
    }
    assert_eq!(restored_calendar(&api, &http, &second).await, at_second);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_sync_token_falls_back_to_etags_and_fetches_only_changes() {
    let sandbox = dav_sandbox();
    let radicale = sandbox.radicale.as_ref().unwrap();
    let http = radicale.user_client(ALICE);
    let home = home();
    let path = format!("{home}etag/");
    calendar_of_events(&http, &path, "ETag", "e", 10);
    // Every sync-collection REPORT is answered as a server that lost the
    // token does (RFC 6578 §3.2).
    let (proxy, refusals) = refusing_proxy(radicale.port, |head, _| {
        head.starts_with("REPORT ").then_some((
            "403 Forbidden",
            r#"<?xml version="1.0" encoding="utf-8"?><D:error xmlns:D="DAV:"><D:valid-sync-token/></D:error>"#,
        ))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let f = through_proxy(&sandbox, dir.path(), proxy);
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    snapshot_job(&api, ALICE).await;
    let r = http
        .request(
            "PUT",
            &format!("{path}e10.ics"),
            &[("Content-Type", CAL)],
            &event("e10@test", "New"),
        )
        .unwrap();
    assert_eq!(r.status, 201);
    let gets = || radicale.log().matches("GET request for").count();
    let before = gets();
    let job = snapshot_job(&api, ALICE).await;
    assert_eq!(refusals.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(gets() - before, 1, "only the new item is fetched");
    let point = job["point"].as_str().unwrap().to_string();
    let points = api.get(&format!("/v1/users/{ALICE}/points")).await.unwrap();
    assert_eq!(points["points"][0]["id"], point.as_str());
    assert_eq!(points["points"][0]["calendars"]["items"], 11, "{points}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collection_made_by_a_request_whose_answer_was_lost_is_adopted() {
    let sandbox = dav_sandbox();
    let radicale = sandbox.radicale.as_ref().unwrap();
    let http = radicale.user_client(ALICE);
    let home = home();
    let path = format!("{home}lost/");
    calendar_of_events(&http, &path, "Lost", "l", 3);
    let original = items(&http, &path);
    // The first MKCALENDAR of the restore reaches Radicale, which creates
    // the calendar, but its answer is lost (504 from a proxy): the retry
    // finds it there (Radicale says 409) and must adopt it.
    static ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let (proxy, lost) = refusing_proxy(radicale.port, |head, _| {
        (head.starts_with("MKCALENDAR ") && !ONCE.swap(true, std::sync::atomic::Ordering::SeqCst))
            .then_some(("after-forward 504 Gateway Timeout", ""))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let f = through_proxy(&sandbox, dir.path(), proxy);
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let point = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    let job = wait_job(&api, &start_restore(&api, ALICE, &point, "all").await).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(lost.load(std::sync::atomic::Ordering::SeqCst), 1);
    let target = job["target"]["calendars"][0].as_str().unwrap().to_string();
    assert_eq!(items(&http, &target), original);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_sync_report_is_followed_to_its_end() {
    let sandbox = dav_sandbox();
    let radicale = sandbox.radicale.as_ref().unwrap();
    let http = radicale.user_client(ALICE);
    let home = home();
    let path = format!("{home}trunc/");
    calendar_of_events(&http, &path, "Trunc", "t", 4);
    // Each first sync report of a snapshot says it is truncated.
    static FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    let (proxy, truncations) = refusing_proxy(radicale.port, |head, _| {
        (head.starts_with("REPORT ") && FIRST.swap(false, std::sync::atomic::Ordering::SeqCst))
            .then_some(("truncate", ""))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let f = through_proxy(&sandbox, dir.path(), proxy);
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    snapshot_job(&api, ALICE).await;
    // Changes between the points: one new, one deleted.
    let r = http
        .request(
            "PUT",
            &format!("{path}t9.ics"),
            &[("Content-Type", CAL)],
            &event("t9@test", "New"),
        )
        .unwrap();
    assert_eq!(r.status, 201);
    let r = http
        .request("DELETE", &format!("{path}t0.ics"), &[], b"")
        .unwrap();
    assert!(matches!(r.status, 200 | 204));
    let live = items(&http, &path);
    let reports = || radicale.log().matches("REPORT request for").count();
    let before = reports();
    let point = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(truncations.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        reports() - before,
        2,
        "the truncated report is asked again from its token"
    );
    // The point holds exactly the live calendar.
    for name in live.keys() {
        http.request("DELETE", &format!("{path}{name}"), &[], b"")
            .unwrap();
    }
    assert_eq!(restored_calendar(&api, &http, &point).await, live);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_item_the_server_fails_to_give_keeps_its_old_copy_and_is_fetched_next_time() {
    let sandbox = dav_sandbox();
    let radicale = sandbox.radicale.as_ref().unwrap();
    let http = radicale.user_client(ALICE);
    let home = home();
    let path = format!("{home}flaky/");
    calendar_of_events(&http, &path, "Flaky", "f", 3);
    let first = items(&http, &path);
    // While BROKEN is set, the server fails every GET of f1.ics.
    static BROKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let (proxy, failures) = refusing_proxy(radicale.port, |head, _| {
        (head.starts_with("GET ")
            && head.contains("/f1.ics ")
            && BROKEN.load(std::sync::atomic::Ordering::SeqCst))
        .then_some(("500 Internal Server Error", "oops"))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let f = through_proxy(&sandbox, dir.path(), proxy);
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    snapshot_job(&api, ALICE).await;

    // f1 changes, and the server fails to give it: the point keeps its old
    // copy, says so, and succeeds.
    // (No comma in the summary: Radicale's parser would read an unescaped
    // one as a list and keep "F 1", storing nothing new.)
    let changed = event("f1@test", "F 1 moved");
    let r = http
        .request(
            "PUT",
            &format!("{path}f1.ics"),
            &[("Content-Type", CAL)],
            &changed,
        )
        .unwrap();
    assert!(matches!(r.status, 201 | 204), "{}", r.status);
    BROKEN.store(true, std::sync::atomic::Ordering::SeqCst);
    let job = snapshot_job(&api, ALICE).await;
    assert!(
        failures.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "{job}\n{}",
        radicale.log()
    );
    assert!(
        job["warnings"]
            .to_string()
            .contains("f1.ics could not be read"),
        "{job}"
    );
    let second = job["point"].as_str().unwrap().to_string();

    // The server heals: the next point fetches f1 again (its sync-token was
    // not trusted) and holds the new version.
    BROKEN.store(false, std::sync::atomic::Ordering::SeqCst);
    let third = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    let now = items(&http, &path);
    for (point, want) in [(&second, &first), (&third, &now)] {
        assert_eq!(
            &restored_calendar(&api, &http, point).await,
            want,
            "point {point}"
        );
    }
}
