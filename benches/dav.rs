//! Calendars and contacts: a 2,000-item snapshot and restore against the
//! sandbox Radicale, with a naive client measured in the same run as the
//! peer (PROPFIND, then one GET per item, one at a time; and one PUT per
//! item into a new collection, one at a time) — what a simple sync script
//! does.
//!
//! `cargo bench --bench dav` (env `MAILRESTORE_BENCH_ITEMS`, default 2000:
//! three quarters events from the real-world corpus, one quarter vCards).
//! Prints items/s, the ratio peer seconds ÷ mailrestore seconds (above 1:
//! mailrestore is faster), the unchanged second snapshot, and the state
//! directory's growth.

use std::path::Path;
use std::time::{Duration, Instant};

use mailrestore::api::client::ApiClient;
use mailrestore::config::{Config, Secrets};
use mailrestore::daemon::Daemon;
use mailrestore_sandbox::daemon::write_config;
use mailrestore_sandbox::dav_seed::{SeedItem, calendar_items};
use mailrestore_sandbox::raw_http::RawHttp;
use mailrestore_sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const USER: &str = "alice@example.org";

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("MAILRESTORE_BENCH_ITEMS")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(2000);
    let rt = Runtime::new()?;
    let sandbox = Sandbox::start(SandboxOptions {
        radicale: true,
        ..SandboxOptions::default()
    })?;
    let radicale = sandbox.radicale.as_ref().expect("Radicale");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/ics/ical4j-valid");
    let mut events = calendar_items(&corpus, usize::MAX)?;
    events.truncate(n * 3 / 4);
    let cards: Vec<SeedItem> = (0..n - events.len()).map(card).collect();
    let bytes: usize = events.iter().chain(&cards).map(|i| i.bytes.len()).sum();
    println!(
        "seeded {} events (real-world corpus) and {} vCards, {:.1} MB",
        events.len(),
        cards.len(),
        bytes as f64 / 1e6
    );

    let http = radicale.admin_client();
    // Peer, write side (and the seeding): a calendar and an address book,
    // one PUT per item, one at a time.
    let (mut accepted, mut refused) = (0usize, 0usize);
    let peer_write = timed(|| {
        for (c, tag, items) in [("agenda", "cal", &events), ("contacts", "book", &cards)] {
            let path = format!("/{}/{c}/", enc(USER));
            let (method, body) = if tag == "cal" {
                ("MKCALENDAR", String::new())
            } else {
                (
                    "MKCOL",
                    r#"<?xml version="1.0"?><D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype></D:prop></D:set></D:mkcol>"#.to_string(),
                )
            };
            let r = http.request(
                method,
                &path,
                &[("Content-Type", "application/xml")],
                body.as_bytes(),
            )?;
            anyhow::ensure!(r.status == 201, "{method} {path}: {}", r.status);
            for item in items.iter() {
                let r = http.request(
                    "PUT",
                    &format!("{path}{}", item.name),
                    &[
                        ("If-None-Match", "*"),
                        (
                            "Content-Type",
                            if tag == "cal" {
                                "text/calendar"
                            } else {
                                "text/vcard"
                            },
                        ),
                    ],
                    &item.bytes,
                )?;
                if r.status == 201 {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
        }
        Ok(())
    })?;

    let n = accepted;
    println!("the server accepted {accepted} items and refused {refused}");

    let dir = tempfile::tempdir()?;
    let files = write_config(&sandbox, dir.path(), "")?;
    let config = Config::load(&files.config, Secrets::Read)?;
    let daemon = rt.block_on(Daemon::start(config))?;
    let stop = CancellationToken::new();
    let served = rt.spawn(daemon.wait(stop.clone()));
    let api = ApiClient::new(&files.socket);

    // Peer, read side: PROPFIND each collection, GET every item in turn.
    let peer_read = timed(|| {
        for c in ["agenda", "contacts"] {
            let path = format!("/{}/{c}/", enc(USER));
            for name in list(&http, &path)? {
                let r = http.request("GET", &format!("{path}{name}"), &[], b"")?;
                anyhow::ensure!(r.status == 200, "GET {name}: {}", r.status);
            }
        }
        Ok(())
    })?;

    let state_before = du(&files.state_dir);
    let (first, point) = rt.block_on(async {
        let t = Instant::now();
        let job = job(&api, "/v1/snapshots", json!({"user": USER})).await?;
        Ok::<_, anyhow::Error>((t.elapsed(), job["point"].as_str().unwrap_or("").to_string()))
    })?;
    let state_first = du(&files.state_dir);
    let gets_before = radicale.log().matches("GET request for").count();
    let second = rt.block_on(async {
        let t = Instant::now();
        job(&api, "/v1/snapshots", json!({"user": USER})).await?;
        Ok::<_, anyhow::Error>(t.elapsed())
    })?;
    let gets_second = radicale.log().matches("GET request for").count() - gets_before;
    let state_second = du(&files.state_dir);

    let restore = rt.block_on(async {
        let t = Instant::now();
        let j = job(
            &api,
            "/v1/restores",
            json!({"user": USER, "point": point, "scope": "all"}),
        )
        .await?;
        anyhow::ensure!(
            j["progress"]["items"]["done"] == json!(n),
            "restored {} of {n}",
            j["progress"]["items"]["done"]
        );
        Ok::<_, anyhow::Error>(t.elapsed())
    })?;

    stop.cancel();
    rt.block_on(served)??;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!();
    println!(
        "| {n} items | mailrestore | items/s | naive client (peer) | ratio peer ÷ mailrestore |"
    );
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| full snapshot | {:.2} s | {:.0} | {:.2} s (PROPFIND + GET each) | {:.2}× |",
        first.as_secs_f64(),
        rate(first),
        peer_read.as_secs_f64(),
        peer_read.as_secs_f64() / first.as_secs_f64()
    );
    println!(
        "| unchanged snapshot | {:.2} s | — | — | — |",
        second.as_secs_f64()
    );
    println!(
        "| restore all | {:.2} s | {:.0} | {:.2} s (MKCALENDAR/MKCOL + PUT each) | {:.2}× |",
        restore.as_secs_f64(),
        rate(restore),
        peer_write.as_secs_f64(),
        peer_write.as_secs_f64() / restore.as_secs_f64()
    );
    println!();
    println!(
        "state dir: +{} KiB for the first snapshot ({:.1} MB of items), +{} B for the unchanged one ({gets_second} GETs)",
        (state_first - state_before) / 1024,
        bytes as f64 / 1e6,
        state_second.saturating_sub(state_first)
    );
    Ok(())
}

fn enc(s: &str) -> String {
    s.replace('@', "%40")
}

fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

/// Member names of a collection (a raw PROPFIND, hrefs cut by hand).
fn list(http: &RawHttp, path: &str) -> anyhow::Result<Vec<String>> {
    let r = http.propfind(
        path,
        "1",
        r#"<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getetag/></prop></propfind>"#,
    )?;
    anyhow::ensure!(r.status == 207, "PROPFIND {path}: {}", r.status);
    Ok(r.text()
        .split("href>")
        .filter_map(|s| s.split('<').next())
        .filter(|h| h.len() > path.len() && !h.ends_with('/'))
        .filter_map(|h| h.rsplit('/').next().map(str::to_string))
        .collect())
}

/// A vCard 3.0; one in ten carries a small photo.
fn card(i: usize) -> SeedItem {
    let mut c = format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:bench-{i}@example.org\r\nFN:Contact Numéro {i}\r\nN:Numéro;Contact;;;\r\nEMAIL;TYPE=INTERNET:contact{i}@example.net\r\nTEL;TYPE=CELL:+33 6 {:02} {:02} {:02} {:02}\r\nNOTE:Rencontré à la réunion n°{i}\r\n",
        i % 100,
        (i / 100) % 100,
        (i * 7) % 100,
        (i * 13) % 100
    );
    if i.is_multiple_of(10) {
        let photo: String = (0..2000)
            .map(|k| (b'A' + ((i + k) % 26) as u8) as char)
            .collect();
        c.push_str(&format!("PHOTO;ENCODING=b;TYPE=JPEG:{photo}\r\n"));
    }
    c.push_str("END:VCARD\r\n");
    SeedItem {
        name: format!("bench-{i}.vcf"),
        bytes: c.into_bytes(),
    }
}

async fn job(api: &ApiClient, path: &str, body: Value) -> anyhow::Result<Value> {
    let r = api.post(path, &body).await?;
    let j = if r["jobs"].is_array() {
        r["jobs"][0].clone()
    } else {
        r
    };
    let id = j["id"].as_str().unwrap_or("").to_string();
    loop {
        let j = api.get(&format!("/v1/jobs/{id}")).await?;
        match j["state"].as_str() {
            Some("succeeded") => return Ok(j),
            Some("failed" | "cancelled") => anyhow::bail!("job {id}: {j}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += du(&e.path()),
                Ok(m) => total += std::os::unix::fs::MetadataExt::blocks(&m) * 512,
                Err(_) => {}
            }
        }
    }
    total
}
