//! Restore points as the panel and operators reach them: `POST /v1/snapshots`,
//! `GET /v1/users/{user}/points[?date=]`, the CLI's `snapshot`, `points` and
//! `verify`, against the real sandbox Dovecot.
//!
//! Everything goes through the contract: the `mailrestore` binary (`serve`
//! as a child process, the client commands, the offline `verify`) and the
//! socket through `ApiClient`. Mail counts are compared with what an
//! independent raw IMAP client sees. The one exception is FORMAT.md: the
//! date-picker test adds a restore point by writing a pack by hand, as
//! FORMAT.md describes it, and lets `verify --repair` find it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::daemon::cli;
use common::{ALICE, live, seed_varied};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use mailrestore::api::client::ApiClient;
use mailrestore_sandbox::daemon::{DaemonFiles, write_config};
use mailrestore_sandbox::{Dovecot, Sandbox, SandboxOptions};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_mailrestore");
const BOB: &str = "bob@example.org";
const CAROL: &str = "carol@example.org";
/// The daemon's time zone in `write_config`.
const DAEMON_TZ: &str = "Europe/Paris";
/// Generous: two cores, debug build, other tests running alongside.
const JOB_DEADLINE: Duration = Duration::from_secs(240);
const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The daemon as a child process.

/// A `mailrestore serve` child whose standard error goes to a file; killed
/// on drop.
struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    /// Starts `serve` on `f` and waits until its socket answers.
    fn start(f: &DaemonFiles, log_name: &str) -> Serve {
        Serve::start_with(f, log_name, &[])
    }

    /// [`Serve::start`] with more environment (a crash point).
    fn start_with(f: &DaemonFiles, log_name: &str, env: &[(&str, &str)]) -> Serve {
        let log = f.dir.join(log_name);
        let stderr = std::fs::File::create(&log).expect("create the daemon log");
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&f.config)
            .env("NO_COLOR", "1")
            .env("MAILRESTORE_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn mailrestore serve");
        let mut serve = Serve { child, log };
        serve.wait_ready(&f.socket);
        serve
    }

    fn wait_ready(&mut self, socket: &Path) {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "mailrestore serve exited with {status} before listening:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not listen within {PROCESS_DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the daemon logged, without colour codes.
    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit within {PROCESS_DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM: the daemon must exit 0. Returns its log.
    fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit();
        assert!(
            status.success(),
            "serve exited with {status}:\n{}",
            self.log()
        );
        self.log()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cli_json(f: &DaemonFiles, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cli(f, &all);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", show(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", show(&out)))
}

fn sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions::default()).expect("start the sandbox Dovecot")
}

// ---------------------------------------------------------------------------
// The API.

/// Sends a request and returns the status and the JSON answer.
async fn call(api: &ApiClient, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (status, bytes) = api
        .raw(method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{method} {path} answered {status} with no JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, v)
}

async fn post_snapshots(api: &ApiClient, body: Value) -> (u16, Value) {
    call(api, "POST", "/v1/snapshots", Some(&body)).await
}

/// `POST /v1/snapshots` that must be accepted: its jobs.
async fn snapshot_jobs(api: &ApiClient, body: Value) -> Vec<Value> {
    let (status, v) = post_snapshots(api, body.clone()).await;
    assert_eq!(status, 202, "POST /v1/snapshots {body}: {v}");
    let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
    for j in &jobs {
        assert_eq!(j["kind"], "snapshot", "{j}");
        assert!(
            j["id"].as_str().is_some_and(|id| !id.is_empty()),
            "a job without an id: {j}"
        );
    }
    jobs
}

/// Asserts the contract's error shape, status and code.
fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error without a message: {}",
        got.1
    );
}

fn is_final(job: &Value) -> bool {
    matches!(
        job["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

async fn job(api: &ApiClient, id: &str) -> Value {
    let (status, v) = call(api, "GET", &format!("/v1/jobs/{id}"), None).await;
    assert_eq!(status, 200, "GET /v1/jobs/{id}: {v}");
    v
}

/// Polls a job until it has ended; it must have succeeded.
async fn wait_succeeded(api: &ApiClient, id: &str) -> Value {
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let j = job(api, id).await;
        if is_final(&j) {
            assert_eq!(j["state"], "succeeded", "{j}");
            assert!(j["error"].is_null(), "{j}");
            assert!(j["finished_at"].is_string(), "{j}");
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} still {} after {JOB_DEADLINE:?}",
            j["state"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn users_path(user: &str, suffix: &str) -> String {
    format!("/v1/users/{}/points{suffix}", percent_encode(user))
}

/// `GET /v1/users/{user}/points[?date=]`: the points, newest first.
async fn points(api: &ApiClient, user: &str, date: Option<Date>) -> Vec<Value> {
    let suffix = date.map(|d| format!("?date={d}")).unwrap_or_default();
    let (status, v) = call(api, "GET", &users_path(user, &suffix), None).await;
    assert_eq!(status, 200, "points of {user}: {v}");
    assert_eq!(v["user"], user, "{v}");
    let list = v["points"].as_array().cloned().expect("a points array");
    let times: Vec<Timestamp> = list.iter().map(taken_at).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "points are not newest first: {v}"
    );
    list
}

fn ids(points: &[Value]) -> Vec<String> {
    points
        .iter()
        .map(|p| p["id"].as_str().expect("a point id").to_string())
        .collect()
}

fn taken_at(p: &Value) -> Timestamp {
    p["taken_at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no RFC 3339 taken_at in {p}"))
}

/// The calendar day of a point in the daemon's time zone.
fn day_of(t: Timestamp) -> Date {
    t.to_zoned(TimeZone::get(DAEMON_TZ).expect("tzdb")).date()
}

// ---------------------------------------------------------------------------
// The live mailbox.

/// What raw IMAP shows of a user: (folders listed, messages, bytes).
fn live_counts(d: &Dovecot, user: &str) -> (u64, u64, u64) {
    let folders = {
        let mut imap = d.login_master(user).expect("master login");
        let n = imap.list().expect("LIST").len() as u64;
        imap.logout().expect("logout");
        n
    };
    let msgs = live(d, user);
    let messages = msgs.values().map(|f| f.len() as u64).sum();
    let bytes = msgs
        .values()
        .flat_map(|f| f.values())
        .map(|m| m.size as u64)
        .sum();
    (folders, messages, bytes)
}

fn assert_counts(point: &Value, counts: (u64, u64, u64)) {
    let (folders, messages, bytes) = counts;
    let mail = &point["mail"];
    assert_eq!(mail["folders"], folders, "folders: {point}");
    assert_eq!(mail["messages"], messages, "messages: {point}");
    assert_eq!(mail["bytes"], bytes, "bytes (sum of RFC822.SIZE): {point}");
}

/// A message of about `size` bytes of base64-looking text, different for
/// every `n` (so the store cannot deduplicate them).
fn attachment_message(n: usize, size: usize) -> Vec<u8> {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut m = format!(
        "From: scanner{n}@example.net\r\nTo: alice@example.org\r\nSubject: scan {n}\r\n\
         Message-ID: <scan{n}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    let mut x = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while m.len() < size {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.push(B64[(x % 64) as usize]);
        }
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// Fills `user`'s mailbox: `small` short messages written straight into the
/// Maildir of a folder `Bulk` (APPENDing thousands would take long; Dovecot
/// indexes them at the next EXAMINE), and `large` messages of `size` bytes
/// APPENDed to `Scans`. Returns how many were added.
fn seed_bulk(d: &Dovecot, user: &str, small: usize, large: usize, size: usize) -> usize {
    let mut imap = d.login_master(user).expect("master login");
    for folder in ["Bulk", "Scans"] {
        imap.create(folder).expect("CREATE");
        imap.subscribe(folder).expect("SUBSCRIBE");
    }
    let cur = d.mail_dir(user).join("Bulk").join("cur");
    assert!(cur.is_dir(), "no Maildir at {}", cur.display());
    for i in 0..small {
        let body = format!(
            "From: friend{i}@example.net\r\nSubject: note {i}\r\nMessage-ID: <note{i}@example.net>\r\n\r\nNote number {i}.\r\n"
        );
        let flags = ["S", "FS", ""][i % 3];
        let name = format!("1767000000.M{i}P1.seed,S={}:2,{flags}", body.len());
        std::fs::write(cur.join(name), body).expect("write a Maildir message");
    }
    for i in 0..large {
        imap.append("Scans", &[], None, &attachment_message(i, size))
            .expect("append a large message");
    }
    assert_eq!(imap.message_count("Bulk").expect("STATUS"), small as u32);
    imap.logout().expect("logout");
    small + large
}

// ---------------------------------------------------------------------------
// The state directory, as FORMAT.md describes it.

/// Every `.pack` (and `.pack.tmp`) file under `store/packs/`.
fn pack_files(state_dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let packs = state_dir.join("store").join("packs");
    for sub in std::fs::read_dir(&packs).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(sub.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = f.path();
            if p.to_string_lossy().ends_with(extension) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The root manifests found by reading every pack front to back (FORMAT.md §
/// Packs): entry header = "MRBL", id (32), raw length (u64 LE), stored length
/// (u64 LE), codec, kind, 10 zero bytes.
fn root_manifests(state_dir: &Path) -> Vec<Value> {
    let mut roots = Vec::new();
    for path in pack_files(state_dir, ".pack") {
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"MRPACK01", "{}", path.display());
        let mut at = 8;
        while at + 64 <= bytes.len() {
            let h = &bytes[at..at + 64];
            assert_eq!(&h[..4], b"MRBL", "{} at {at}", path.display());
            let id = &h[4..36];
            let raw_len = u64::from_le_bytes(h[36..44].try_into().unwrap()) as usize;
            let stored_len = u64::from_le_bytes(h[44..52].try_into().unwrap()) as usize;
            let (codec, kind) = (h[52], h[53]);
            assert!(h[54..].iter().all(|b| *b == 0), "reserved bytes not zero");
            let stored = &bytes[at + 64..at + 64 + stored_len];
            if kind == 1 {
                let raw = match codec {
                    0 => stored.to_vec(),
                    1 => zstd::bulk::decompress(stored, raw_len).unwrap(),
                    other => panic!("unknown codec {other}"),
                };
                assert_eq!(blake3::hash(&raw).as_bytes(), id, "a blob id is BLAKE3");
                roots.push(serde_json::from_slice(&raw).expect("a root manifest is JSON"));
            }
            at += 64 + stored_len;
        }
        assert_eq!(at, bytes.len(), "{} has a torn tail", path.display());
    }
    roots
}

/// Writes one new pack holding `raw` as a root manifest, stored as is.
fn write_root_pack(state_dir: &Path, raw: &[u8]) {
    let name = blake3::hash(format!("{}{raw:?}", std::process::id()).as_bytes()).to_hex();
    let name = &name.as_str()[..32];
    let dir = state_dir.join("store").join("packs").join(&name[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    let mut pack = b"MRPACK01".to_vec();
    pack.extend_from_slice(b"MRBL");
    pack.extend_from_slice(blake3::hash(raw).as_bytes());
    pack.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    pack.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    pack.extend_from_slice(&[0, 1]);
    pack.extend_from_slice(&[0; 10]);
    pack.extend_from_slice(raw);
    std::fs::write(dir.join(format!("{name}.pack")), pack).unwrap();
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_job_becomes_a_point_listed_newest_first_and_by_day() {
    let sandbox = sandbox();
    let d = sandbox.dovecot().unwrap();
    let seeded = seed_varied(d) as u64;
    let counts = live_counts(d, ALICE);
    assert_eq!(counts.1, seeded);
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").expect("write the config");
    let daemon = Serve::start(&f, "serve.log");
    let api = ApiClient::new(&f.socket);

    assert!(points(&api, ALICE, None).await.is_empty());

    let jobs = snapshot_jobs(&api, json!({ "user": ALICE })).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let first = &jobs[0];
    assert_eq!(first["user"], ALICE);
    assert!(
        matches!(first["state"].as_str(), Some("queued" | "running")),
        "{first}"
    );
    assert!(first["point"].is_null(), "{first}");
    let first = wait_succeeded(&api, first["id"].as_str().unwrap()).await;
    let messages = &first["progress"]["messages"];
    assert_eq!(messages["done"], seeded, "{first}");
    assert_eq!(messages["total"], seeded, "{first}");
    let bytes = &first["progress"]["bytes"];
    assert_eq!(bytes["total"], counts.2, "{first}");
    assert_eq!(
        bytes["done"], counts.2,
        "a first point downloads all: {first}"
    );

    let listed = points(&api, ALICE, None).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], first["point"]);
    assert_counts(&listed[0], counts);
    for kind in ["calendars", "contacts"] {
        assert_eq!(listed[0][kind]["collections"], 0, "{}", listed[0]);
        assert_eq!(listed[0][kind]["items"], 0, "{}", listed[0]);
    }

    // A second point: a new job, listed first.
    let jobs = snapshot_jobs(&api, json!({ "user": ALICE })).await;
    assert_ne!(jobs[0]["id"], first["id"], "a finished job is not reused");
    let second = wait_succeeded(&api, jobs[0]["id"].as_str().unwrap()).await;
    assert_eq!(second["progress"]["messages"]["done"], seeded, "{second}");
    let listed = points(&api, ALICE, None).await;
    assert_eq!(
        ids(&listed),
        vec![
            second["point"].as_str().unwrap().to_string(),
            first["point"].as_str().unwrap().to_string()
        ]
    );
    assert_counts(&listed[0], counts);

    // ?date=: that day (in the daemon's time zone) lists both; a day
    // without points gives the nearest point on each side that has one.
    let (newest, oldest) = (taken_at(&listed[0]), taken_at(&listed[1]));
    let day = day_of(oldest);
    let both = points(&api, ALICE, Some(day)).await;
    if day_of(newest) == day {
        assert_eq!(ids(&both), ids(&listed));
    } else {
        // The two points straddle midnight: only the older one is that day's.
        assert_eq!(ids(&both), ids(&listed[1..]));
    }
    let before = points(&api, ALICE, Some(day.yesterday().unwrap())).await;
    assert_eq!(ids(&before), ids(&listed[1..]), "nearest after the day");
    let after = points(&api, ALICE, Some(day_of(newest).tomorrow().unwrap())).await;
    assert_eq!(ids(&after), ids(&listed[..1]), "nearest before the day");
    let bad = call(&api, "GET", &users_path(ALICE, "?date=26/11/2026"), None).await;
    assert_eq!(bad.0, 400, "{}", bad.1);

    daemon.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_and_a_running_snapshot_is_not_doubled() {
    let sandbox = sandbox();
    let d = sandbox.dovecot().unwrap();
    // Enough mail that alice's snapshot is still running when we ask again.
    seed_bulk(d, ALICE, 6_000, 100, 200 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let schedule = format!(
        "\n[schedule]\ninterval = \"off\"\nconcurrency = 1\nusers = [{ALICE:?}, {BOB:?}, {CAROL:?}]\n"
    );
    let f = write_config(&sandbox, dir.path(), &schedule).expect("write the config");
    let max_body = 2048;
    let text = std::fs::read_to_string(&f.config).unwrap();
    assert!(text.contains("[api]\n"), "{text}");
    let text = text.replacen(
        "[api]\n",
        &format!("[api]\nmax_body_bytes = {max_body}\n"),
        1,
    );
    std::fs::write(&f.config, text).unwrap();
    let daemon = Serve::start(&f, "serve.log");
    let api = ApiClient::new(&f.socket);

    // Invalid user names, for both endpoints.
    for bad in [
        format!("{ALICE}*restore"),
        "alice smith@example.org".to_string(),
        "*".to_string(),
    ] {
        assert_error(
            &call(&api, "GET", &users_path(&bad, ""), None).await,
            400,
            "invalid_user",
        );
        assert_error(
            &post_snapshots(&api, json!({ "user": bad })).await,
            400,
            "invalid_user",
        );
    }
    // Malformed requests.
    for body in [
        json!({}),
        json!({ "user": ALICE, "all": true }),
        json!({ "all": false }),
        json!({ "user": 7 }),
    ] {
        let got = post_snapshots(&api, body.clone()).await;
        assert_eq!(got.0, 400, "{body}: {}", got.1);
        assert!(got.1["error"]["code"].is_string(), "{body}: {}", got.1);
    }
    let padding = "x".repeat(max_body * 2);
    let got = post_snapshots(&api, json!({ "user": ALICE, "note": padding })).await;
    assert_eq!(got.0, 413, "{}", got.1);
    assert!(got.1["error"]["code"].is_string(), "{}", got.1);
    // Nothing refused was queued.
    let (status, all) = call(&api, "GET", "/v1/jobs", None).await;
    assert_eq!(status, 200);
    assert_eq!(all["jobs"], json!([]), "{all}");

    // {"all": true}: one job per user the schedule lists.
    let jobs = snapshot_jobs(&api, json!({ "all": true })).await;
    let users: BTreeSet<&str> = jobs.iter().filter_map(|j| j["user"].as_str()).collect();
    assert_eq!(users, BTreeSet::from([ALICE, BOB, CAROL]), "{jobs:?}");
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    let job_of = |user: &str| {
        jobs.iter()
            .find(|j| j["user"] == user)
            .map(|j| j["id"].as_str().unwrap().to_string())
            .unwrap()
    };

    // Asking again while a user's snapshot is queued or running answers
    // that same job (one snapshot at a time: carol waits behind alice).
    for user in [ALICE, CAROL] {
        let again = snapshot_jobs(&api, json!({ "user": user })).await;
        assert_eq!(again.len(), 1, "{again:?}");
        assert_eq!(again[0]["id"], job_of(user), "{user}: {}", again[0]);
        assert!(
            !is_final(&again[0]),
            "{user}'s first snapshot ended too soon for this test: {}",
            again[0]
        );
    }
    let again = snapshot_jobs(&api, json!({ "all": true })).await;
    let again: BTreeSet<String> = again
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    let before: BTreeSet<String> = [ALICE, BOB, CAROL].iter().map(|u| job_of(u)).collect();
    assert!(
        again.is_subset(&before) && again.contains(&job_of(CAROL)),
        "{again:?} vs {before:?}"
    );

    for user in [ALICE, BOB, CAROL] {
        let done = wait_succeeded(&api, &job_of(user)).await;
        let listed = points(&api, user, None).await;
        assert_eq!(ids(&listed), vec![done["point"].as_str().unwrap()]);
        assert_counts(&listed[0], live_counts(d, user));
    }
    // Once ended, a new request makes a new job.
    let fresh = snapshot_jobs(&api, json!({ "user": BOB })).await;
    assert_ne!(fresh[0]["id"], job_of(BOB));
    wait_succeeded(&api, fresh[0]["id"].as_str().unwrap()).await;
    assert_eq!(points(&api, BOB, None).await.len(), 2);

    daemon.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_takes_points_and_verify_checks_repairs_and_names_damage() {
    let sandbox = sandbox();
    let d = sandbox.dovecot().unwrap();
    let seeded = seed_varied(d) as u64;
    let counts = live_counts(d, ALICE);
    assert_eq!(counts.1, seeded);
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").expect("write the config");
    let daemon = Serve::start(&f, "serve.log");

    // snapshot --wait, then points.
    let out = cli(&f, &["snapshot", ALICE, "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let taken = cli_json(&f, &["snapshot", ALICE, "--wait"]);
    let taken = taken["jobs"].as_array().expect("jobs").clone();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0]["state"], "succeeded", "{taken:?}");
    let listed = cli_json(&f, &["points", ALICE]);
    assert_eq!(listed["user"], ALICE);
    let listed = listed["points"].as_array().expect("points").clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["id"], taken[0]["point"]);
    for p in &listed {
        assert_counts(p, counts);
    }
    let human = cli(&f, &["points", ALICE]);
    assert_eq!(human.status.code(), Some(0), "{}", show(&human));
    for id in ids(&listed) {
        assert!(String::from_utf8_lossy(&human.stdout).contains(&id));
    }

    // verify is offline: refused while the daemon holds the state directory.
    let out = cli(&f, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("state directory") && err.contains("in use"),
        "{}",
        show(&out)
    );
    daemon.stop();

    let out = cli(&f, &["verify", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // The store is the system of record: without the index, --repair gives
    // back the same points.
    std::fs::remove_dir_all(f.state_dir.join("index")).unwrap();
    let out = cli(&f, &["verify", "--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let daemon = Serve::start(&f, "serve-2.log");
    let api = ApiClient::new(&f.socket);
    let repaired = points(&api, ALICE, None).await;
    assert_eq!(repaired, listed, "the rebuilt index lists other points");
    daemon.stop();

    // A point written by hand as FORMAT.md describes it (an older copy of
    // a root manifest) is found by --repair and picked by ?date=.
    let roots = root_manifests(&f.state_dir);
    assert_eq!(roots.len(), 2, "one root manifest per point");
    let mut old = roots[0].clone();
    let old_time = taken_at(&listed[1]) - SignedDuration::from_hours(72);
    let old_id = old_time.strftime("%Y%m%dT%H%M%SZ").to_string();
    old["taken_at"] = json!(old_time.to_string());
    old["id"] = json!(old_id);
    write_root_pack(&f.state_dir, &serde_json::to_vec(&old).unwrap());
    let out = cli(&f, &["verify", "--repair", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let daemon = Serve::start(&f, "serve-3.log");
    let api = ApiClient::new(&f.socket);
    let all = points(&api, ALICE, None).await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[2]["id"], old_id.as_str());
    assert_counts(&all[2], counts);
    let between = day_of(old_time + SignedDuration::from_hours(36));
    assert!(between > day_of(old_time) && between < day_of(taken_at(&listed[1])));
    let around = points(&api, ALICE, Some(between)).await;
    assert_eq!(
        ids(&around),
        vec![ids(&all)[1].clone(), old_id.clone()],
        "the nearest point after and before {between}"
    );
    assert_eq!(
        ids(&points(&api, ALICE, Some(day_of(old_time))).await),
        vec![old_id.clone()]
    );
    daemon.stop();

    // One flipped byte in the middle of the largest pack: --read-data
    // fails and names every point that uses the damaged blob (here all of
    // them: they hold the same mail).
    let largest = pack_files(&f.state_dir, ".pack")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a pack");
    let mut bytes = std::fs::read(&largest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&largest, bytes).unwrap();
    let out = cli(&f, &["verify", "--read-data"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for id in ids(&all) {
        assert!(text.contains(&id), "point {id} not named:\n{}", show(&out));
    }
    let report = cli(&f, &["--json", "verify", "--read-data"]);
    assert_eq!(report.status.code(), Some(1), "{}", show(&report));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_mid_snapshot_resumes_the_job_and_lists_one_point() {
    let sandbox = sandbox();
    let d = sandbox.dovecot().unwrap();
    seed_bulk(d, ALICE, 8_000, 200, 200 * 1024);
    let counts = live_counts(d, ALICE);
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").expect("write the config");
    // The daemon dies the moment its first pack is fsynced and not yet
    // renamed into place: messages are stored, no point exists.
    assert!(
        mailrestore::failpoint::enabled(),
        "build with --features mailrestore/failpoints"
    );
    let mut daemon = Serve::start_with(
        &f,
        "serve.log",
        &[("MAILRESTORE_CRASH_AT", "pack.synced:1")],
    );
    let api = ApiClient::new(&f.socket);

    let jobs = snapshot_jobs(&api, json!({ "user": ALICE })).await;
    let id = jobs[0]["id"].as_str().unwrap().to_string();
    daemon.wait_exit();
    let log = daemon.log();
    assert!(log.contains("failpoint: crashing at pack.synced"), "{log}");
    let torn = pack_files(&f.state_dir, ".pack.tmp");
    assert!(!torn.is_empty(), "the fsynced pack is not yet in place");

    let daemon = Serve::start(&f, "serve-2.log");
    // No half point is ever listed: while the resumed job has not
    // succeeded, there is no point at all.
    let early = points(&api, ALICE, None).await;
    let state = job(&api, &id).await;
    if state["state"] != "succeeded" {
        assert!(early.is_empty(), "a partial point is listed: {early:?}");
    }
    for t in &torn {
        assert!(!t.exists(), "{} survived the restart", t.display());
    }
    let resumed = wait_succeeded(&api, &id).await;
    assert_eq!(resumed["id"], id.as_str());
    if let Some(attempts) = resumed.get("attempts") {
        assert_eq!(attempts, 2, "{resumed}");
    }
    assert!(
        log.contains(&format!("job={id}")) && log.contains("attempt=1"),
        "first run not logged:\n{log}"
    );
    let log2 = daemon.log();
    assert!(
        log2.lines()
            .any(|l| l.contains(&format!("job={id}")) && l.contains("attempt=2")),
        "the job did not resume as its second attempt:\n{log2}"
    );
    let listed = points(&api, ALICE, None).await;
    assert_eq!(ids(&listed), vec![resumed["point"].as_str().unwrap()]);
    assert_counts(&listed[0], counts);
    let (_, mine) = call(
        &api,
        "GET",
        &format!("/v1/jobs?user={}", percent_encode(ALICE)),
        None,
    )
    .await;
    assert_eq!(mine["jobs"].as_array().map(Vec::len), Some(1), "{mine}");
    daemon.stop();

    assert!(pack_files(&f.state_dir, ".pack.tmp").is_empty());
    let out = cli(&f, &["verify", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

/// Dovecot 2.3 answers a master login for a user missing from its userdb
/// with `NO [UNAVAILABLE]`, or (most of the time, here) closes the
/// connection without a word; either way the daemon must say 404.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_user_is_404_for_points_and_snapshots() {
    let sandbox = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").expect("write the config");
    let daemon = Serve::start(&f, "serve.log");
    let api = ApiClient::new(&f.socket);
    for nobody in ["nobody@example.org", "ghost@example.org", "nobody"] {
        assert_error(
            &call(&api, "GET", &users_path(nobody, ""), None).await,
            404,
            "unknown_user",
        );
        assert_error(
            &post_snapshots(&api, json!({ "user": nobody })).await,
            404,
            "unknown_user",
        );
    }
    let (_, all) = call(&api, "GET", "/v1/jobs", None).await;
    assert_eq!(all["jobs"], json!([]), "{all}");
    daemon.stop();
}
