//! Servers that lie or trickle, through a fault-injecting proxy in front
//! of the real Dovecot: the job ends with a clear error, nothing huge is
//! allocated, and the daemon stays up.

mod common;

use std::time::{Duration, Instant};

use common::ALICE;
use common::daemon::{ended_snapshot, serve, snapshot_job, start_restore, wait_job};
use mailrestore::api::client::ApiClient;
use mailrestore_sandbox::daemon::{DaemonFiles, write_config};
use mailrestore_sandbox::fault_proxy::{Fault, FaultProxy};
use mailrestore_sandbox::{Sandbox, SandboxOptions};
use serde_json::json;

fn seeded() -> Sandbox {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    for i in 0..5 {
        let m = format!("Subject: {i}\r\n\r\n{}\r\n", "body ".repeat(200));
        imap.append("INBOX", &[], None, m.as_bytes()).unwrap();
    }
    imap.logout().unwrap();
    sandbox
}

/// A sandbox started with `opts` where alice has one message.
fn one_message(opts: SandboxOptions) -> Sandbox {
    let sandbox = Sandbox::start(opts).expect("sandbox");
    let mut imap = sandbox.dovecot().unwrap().login_master(ALICE).unwrap();
    imap.append("INBOX", &[], None, b"Subject: x\r\n\r\nx\r\n")
        .unwrap();
    imap.logout().unwrap();
    sandbox
}

/// Points the daemon's `[imap]` at `port`, with more `[imap]` keys.
fn through(f: &DaemonFiles, sandbox: &Sandbox, port: u16, keys: &str) {
    let text = std::fs::read_to_string(&f.config).unwrap();
    let real = format!("\nport = {}\n", sandbox.dovecot().unwrap().imap_port);
    assert!(text.contains(&real), "{text}");
    let text = text.replacen(&real, &format!("\nport = {port}\n{keys}"), 1);
    std::fs::write(&f.config, text).unwrap();
}

/// A daemon's files whose `[imap]` goes through a proxy with `fault` in
/// front of the sandbox's Dovecot (and has `keys` more).
fn behind_proxy(
    sandbox: &Sandbox,
    fault: Fault,
    keys: &str,
) -> (tempfile::TempDir, DaemonFiles, FaultProxy) {
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(sandbox, dir.path(), "").unwrap();
    let proxy = FaultProxy::start(sandbox.dovecot().unwrap().imap_port, fault).unwrap();
    through(&f, sandbox, proxy.port, keys);
    (dir, f, proxy)
}

async fn alive(api: &ApiClient) {
    let health = api.get("/v1/health").await.expect("the daemon is up");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"), "{health}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_appenduid_of_four_billion_uids_is_a_clear_error_not_an_abort() {
    let sandbox = seeded();
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let point = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    drop(daemon);
    let proxy =
        FaultProxy::start(sandbox.dovecot().unwrap().imap_port, Fault::HugeAppendUid).unwrap();
    through(&f, &sandbox, proxy.port, "");
    let _daemon = serve(&f);
    let job = wait_job(&api, &start_restore(&api, ALICE, &point, "all").await).await;
    assert!(proxy.applied.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "imap_error", "{job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(message.contains("APPENDUID"), "{message}");
    alive(&api).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_trickling_a_fetch_fails_the_snapshot_at_the_response_deadline() {
    let sandbox = seeded();
    let (_dir, f, _proxy) = behind_proxy(
        &sandbox,
        Fault::TrickleAfter {
            marker: b"FETCH (".to_vec(),
            every: Duration::from_millis(50),
        },
        "response_timeout = \"2s\"\n",
    );
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let started = Instant::now();
    let job = ended_snapshot(&api, ALICE).await;
    assert_eq!(job["state"], "failed", "{job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(message.contains("whole response"), "{job}");
    // Four tries (the first and three retries) of 2 s each, with backoff;
    // the per-read timeout (60 s) never fires on a trickle.
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    alive(&api).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn names_at_the_servers_limits_restore_with_their_mapping_named() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    // 1,940 bytes in 20 levels: Dovecot takes it, but not with the
    // target's name before it (it refuses names over 2,048 bytes).
    let long: Vec<String> = (0..20)
        .map(|i| format!("{i:02}{}", "n".repeat(95)))
        .collect();
    let long = long.join("/");
    let wild = "50% off * now";
    for name in [long.as_str(), wild] {
        imap.create(name).unwrap();
        imap.append(name, &[], None, b"Subject: x\r\n\r\nx\r\n")
            .unwrap();
    }
    imap.logout().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let point = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    let job = wait_job(&api, &start_restore(&api, ALICE, &point, "all").await).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let w = job["warnings"].to_string();
    assert!(w.contains("joined into one"), "{w}");
    assert!(w.contains("50_ off _ now"), "{w}");
    let target = job["target"]["folder"].as_str().unwrap();
    let now = common::live(d, ALICE);
    let restored: Vec<_> = now
        .iter()
        .filter(|(n, m)| n.starts_with(target) && !m.is_empty())
        .map(|(n, _)| n.clone())
        .collect();
    assert!(
        restored.iter().any(|n| n.ends_with("50_ off _ now")),
        "{restored:?}"
    );
    assert!(restored.iter().all(|n| n.len() <= 2000), "{restored:?}");
    assert_eq!(restored.len(), 2, "both messages restored: {restored:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_folder_another_user_shares_never_goes_into_the_point() {
    let sandbox = Sandbox::start(SandboxOptions {
        shared_folders: true,
        ..SandboxOptions::default()
    })
    .expect("sandbox with shared folders");
    let d = sandbox.dovecot().unwrap();
    let mut bob = d.login_master("bob@example.org").unwrap();
    bob.create("Projet").unwrap();
    bob.append(
        "Projet",
        &[],
        None,
        b"Subject: bob's\r\n\r\nbob's own mail\r\n",
    )
    .unwrap();
    bob.command_ok("SETACL \"Projet\" \"alice@example.org\" \"lr\"")
        .unwrap();
    bob.logout().unwrap();
    let mut alice = d.login_master(ALICE).unwrap();
    alice
        .append("INBOX", &[], None, b"Subject: mine\r\n\r\nmine\r\n")
        .unwrap();
    let listed: Vec<String> = alice.list().unwrap().into_iter().map(|f| f.name).collect();
    assert!(
        listed.iter().any(|n| n.starts_with("shared/")),
        "the share is visible to alice: {listed:?}\n{}",
        sandbox.log_tail()
    );
    alice.logout().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let job = snapshot_job(&api, ALICE).await;
    let point = job["point"].as_str().unwrap().to_string();
    let points = api.get(&format!("/v1/users/{ALICE}/points")).await.unwrap();
    let p = &points["points"][0];
    assert_eq!(p["id"], point.as_str());
    assert_eq!(p["mail"]["messages"], 1, "only alice's own message: {p}");
    let restored = wait_job(&api, &start_restore(&api, ALICE, &point, "all").await).await;
    let target = restored["target"]["folder"].as_str().unwrap();
    let now = common::live(d, ALICE);
    assert!(
        !now.keys()
            .any(|n| n.starts_with(target) && n.contains("shared")),
        "{:?}",
        now.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_without_an_inbox_is_an_unknown_user_and_makes_no_point() {
    let sandbox = seeded();
    // A server that logs anyone in and lists no INBOX (as Cyrus's proxy
    // does for a mailbox that does not exist).
    let (_dir, f, _proxy) = behind_proxy(
        &sandbox,
        Fault::DropLines {
            containing: b"\"/\" INBOX\r".to_vec(),
        },
        "",
    );
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let job = ended_snapshot(&api, ALICE).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "unknown_user", "{job}");
    let points = api.get(&format!("/v1/users/{ALICE}/points")).await.unwrap();
    assert!(points["points"].as_array().unwrap().is_empty(), "{points}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_point_that_lost_most_folders_says_so() {
    let sandbox = seeded();
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    for i in 0..8 {
        imap.create(&format!("F{i}")).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let first = snapshot_job(&api, ALICE).await;
    assert!(
        first["warnings"].as_array().is_none_or(Vec::is_empty),
        "{first}"
    );
    for i in 0..8 {
        imap.command_ok(&format!("DELETE \"F{i}\"")).unwrap();
    }
    imap.logout().unwrap();
    let second = snapshot_job(&api, ALICE).await;
    assert!(
        second["warnings"].to_string().contains("more than half"),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_reaches_a_log_even_at_trace_level() {
    let sandbox = one_message(SandboxOptions {
        radicale: true,
        postfix: true,
        ..SandboxOptions::default()
    });
    let d = sandbox.dovecot().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let daemon = common::daemon::serve_with(&f, &[("MAILRESTORE_LOG", "trace")]);
    let api = ApiClient::new(&f.socket);
    let point = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    let job = wait_job(&api, &start_restore(&api, ALICE, &point, "all").await).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    // A wrong password too: its error must not quote what was sent.
    drop(daemon);
    std::fs::write(dir.path().join("imap.secret"), "not-the-password\n").unwrap();
    let _daemon = common::daemon::serve_with(&f, &[("MAILRESTORE_LOG", "trace")]);
    let refused = api
        .post("/v1/snapshots", &json!({"user": ALICE}))
        .await
        .expect_err("the master password is wrong");
    let failed = refused.to_string();
    assert!(failed.contains("AUTHENTICATIONFAILED"), "{failed}");

    let log = std::fs::read_to_string(f.dir.join("serve.log")).unwrap();
    assert!(
        log.len() > 10_000,
        "trace logging is on: {} bytes",
        log.len()
    );
    let radicale = sandbox.radicale().unwrap();
    let mut secrets = vec![
        d.master_password.clone(),
        radicale.admin_password.clone(),
        "not-the-password".to_string(),
    ];
    for user in ["alice@example.org", "bob@example.org"] {
        secrets.push(d.user_password(user));
        secrets.push(radicale.user_password(user));
    }
    let everything = format!("{log}\n{job}\n{failed}");
    for s in &secrets {
        assert!(
            !everything.contains(s.as_str()),
            "a password is in the log or the API"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_point_of_a_deleted_and_re_created_mailbox_is_not_restored_into_the_new_one() {
    let sandbox = seeded();
    let d = sandbox.dovecot().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let point = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    let points = api.get(&format!("/v1/users/{ALICE}/points")).await.unwrap();
    let id = points["points"][0]["mailbox"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("imap-inbox-uidvalidity:"), "{points}");

    // The address is deleted, then given to someone else: a new mailbox
    // (its INBOX's UIDVALIDITY is the second it was made).
    std::thread::sleep(Duration::from_millis(1100));
    d.delete_mailbox(ALICE).unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    imap.append("INBOX", &[], None, b"Subject: new owner\r\n\r\nhello\r\n")
        .unwrap();
    imap.logout().unwrap();
    let before = common::live(d, ALICE);

    let (status, body) = api
        .raw(
            "POST",
            "/v1/restores",
            Some(&json!({"user": ALICE, "point": point})),
        )
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("mailbox_changed"), "{text}");
    assert_eq!(common::live(d, ALICE), before, "nothing was written");

    // Asked for explicitly, it goes, and the job says so.
    let job = api
        .post(
            "/v1/restores",
            &json!({"user": ALICE, "point": point, "allow_mailbox_change": true}),
        )
        .await
        .unwrap();
    let job = wait_job(&api, &job).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["allow_mailbox_change"], true, "{job}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dav_server_down_at_snapshot_time_gives_a_partial_point_not_none() {
    let sandbox = one_message(SandboxOptions {
        radicale: true,
        ..SandboxOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    // The DAV server is down: nothing listens where the config points.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let text = std::fs::read_to_string(&f.config).unwrap();
    let url = sandbox.radicale().unwrap().url.clone();
    assert!(text.contains(&url), "{text}");
    std::fs::write(
        &f.config,
        text.replace(&url, &format!("http://127.0.0.1:{dead}")),
    )
    .unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let job = snapshot_job(&api, ALICE).await;
    assert!(job["warnings"].to_string().contains("mail only"), "{job}");
    let points = api.get(&format!("/v1/users/{ALICE}/points")).await.unwrap();
    let p = &points["points"][0];
    assert_eq!(p["partial"], json!(["dav"]), "{p}");
    assert_eq!(p["mail"]["messages"], 1, "{p}");
    let point = p["id"].as_str().unwrap();
    let restore = api
        .post(
            "/v1/restores",
            &json!({"user": ALICE, "point": point, "scope": "inbox"}),
        )
        .await
        .unwrap();
    let restore = wait_job(&api, &restore).await;
    assert_eq!(restore["state"], "succeeded", "{restore}");
    assert!(
        restore["warnings"]
            .to_string()
            .contains("lacks its calendars and contacts"),
        "{restore}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_that_flood_the_socket_are_bounded_and_the_daemon_answers_after() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let text = std::fs::read_to_string(&f.config).unwrap();
    let text = text.replacen("[api]\n", "[api]\nrequest_timeout = \"2s\"\n", 1);
    std::fs::write(&f.config, text).unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    // One that sends its headers a byte every 20 ms: cut off at the
    // request timeout (2 s), not kept for the 8 s it would take.
    let mut slow = UnixStream::connect(&f.socket).unwrap();
    let started = Instant::now();
    for b in b"GET /v1/health HTTP/1.1\r\nX: "
        .iter()
        .chain([b'y'; 400].iter())
    {
        if slow.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = slow.read_to_end(&mut rest);
    let cut = started.elapsed();
    assert!(
        cut < Duration::from_secs(5),
        "the slow sender was kept {cut:?}"
    );
    // 200 idle connections: beyond the daemon's 64 they are refused at
    // once, and the 64 it took are closed at the request timeout; then
    // the panel is served again.
    let idle: Vec<UnixStream> = (0..200)
        .filter_map(|_| UnixStream::connect(&f.socket).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(3000));
    alive(&api).await;
    // A body nested 100,000 levels deep is a 400, not a crash.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body) = api
        .raw(
            "POST",
            "/v1/restores",
            Some(&serde_json::from_str::<serde_json::Value>("null").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let mut raw = UnixStream::connect(&f.socket).unwrap();
    write!(
        raw,
        "POST /v1/restores HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{deep}",
        deep.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 4"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    alive(&api).await;
    drop(idle);
}
