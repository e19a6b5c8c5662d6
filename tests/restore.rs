//! Restores against the real Dovecot, driven through the daemon's socket as
//! the panel does, checked by raw IMAP FETCH: every message of the point
//! byte for byte in the new dated folder tree with its flags, keywords and
//! INTERNALDATE, nothing missing, nothing twice, every new folder subscribed,
//! the live folders untouched; exactly once across a crash.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{serve, serve_crashing_at, snapshot_job, wait_crash, wait_job};
use common::{ALICE, Msg, live, seed_varied};
use mailrestore::api::client::ApiClient;
use mailrestore_sandbox::daemon::{DaemonFiles, write_config};
use mailrestore_sandbox::{Dovecot, Sandbox, SandboxOptions};
use serde_json::{Value, json};

async fn snapshot(api: &ApiClient, user: &str) -> String {
    snapshot_job(api, user).await["point"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn restore(api: &ApiClient, user: &str, point: &str, scope: &str) -> Value {
    let job = api
        .post(
            "/v1/restores",
            &json!({"user": user, "point": point, "scope": scope, "requested_by": "admin@example.org"}),
        )
        .await
        .unwrap();
    assert_eq!(job["kind"], "restore");
    wait_job(api, &job).await
}

/// The messages of a folder as a sorted list (UIDs differ after a restore),
/// without `\Deleted`, which a restore does not carry over.
fn content(msgs: &BTreeMap<u32, Msg>) -> Vec<Msg> {
    let mut v: Vec<Msg> = msgs
        .values()
        .cloned()
        .map(|mut m| {
            m.flags.retain(|f| !f.eq_ignore_ascii_case("\\Deleted"));
            m
        })
        .collect();
    v.sort();
    v
}

/// Asserts two folders hold the same messages, naming what differs
/// (missing, extra, duplicated) instead of dumping both lists.
fn assert_same(got: &BTreeMap<u32, Msg>, want: &BTreeMap<u32, Msg>, what: &str) {
    let (g, w) = (content(got), content(want));
    if g == w {
        return;
    }
    fn count(v: &[Msg]) -> BTreeMap<&Msg, usize> {
        let mut m: BTreeMap<&Msg, usize> = BTreeMap::new();
        for x in v {
            *m.entry(x).or_default() += 1;
        }
        m
    }
    let (gc, wc) = (count(&g), count(&w));
    let missing: Vec<_> = wc
        .iter()
        .filter(|(k, n)| gc.get(*k).copied().unwrap_or(0) < **n)
        .map(|(k, _)| (k.size, &k.flags))
        .take(5)
        .collect();
    let extra: Vec<_> = gc
        .iter()
        .filter(|(k, n)| wc.get(*k).copied().unwrap_or(0) < **n)
        .map(|(k, n)| (k.size, &k.flags, *n))
        .take(5)
        .collect();
    panic!(
        "{what}: {} messages, expected {}; missing (size, flags) {missing:?}; extra or duplicated {extra:?}",
        g.len(),
        w.len()
    );
}

fn subscribed(d: &Dovecot, user: &str) -> BTreeSet<String> {
    let mut imap = d.login_master(user).unwrap();
    let names = imap.lsub().unwrap().into_iter().map(|m| m.name).collect();
    imap.logout().unwrap();
    names
}

fn damage(d: &Dovecot) {
    let mut imap = d.login_master(ALICE).unwrap();
    imap.command_ok("DELETE \"Projets/Été 2025\"").ok();
    imap.command_ok("DELETE \"Archive/2024/Q1\"").unwrap();
    imap.select("INBOX").unwrap();
    imap.command_ok("UID STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        .unwrap();
    imap.command_ok("EXPUNGE").unwrap();
    imap.logout().unwrap();
}

/// A Dovecot that fsyncs, with 1,500 INBOX messages of 2–9 KB: enough that
/// a restore is still running when the test interrupts it.
fn bulk_sandbox() -> Sandbox {
    let sandbox = Sandbox::start(SandboxOptions {
        fsync: true,
        ..SandboxOptions::default()
    })
    .expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    for i in 0..1500u32 {
        let body = format!(
            "Subject: bulk {i}\r\nMessage-ID: <{i}@bulk>\r\n\r\n{}\r\n",
            "x".repeat(2000 + (i as usize % 7) * 1000)
        );
        imap.append("INBOX", &["\\Seen"], None, body.as_bytes())
            .unwrap();
    }
    imap.logout().unwrap();
    sandbox
}

/// Starts a restore of alice's point and returns its id once some messages
/// are in, and it is still running.
async fn start_restore_and_wait_for_progress(api: &ApiClient, point: &str) -> String {
    let job = api
        .post("/v1/restores", &json!({"user": ALICE, "point": point}))
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = api.get(&format!("/v1/jobs/{id}")).await.unwrap();
        assert_ne!(
            j["state"], "succeeded",
            "the restore ended before it could be interrupted"
        );
        if j["progress"]["messages"]["done"].as_u64().unwrap_or(0) > 0 {
            return id;
        }
        assert!(Instant::now() < deadline, "no progress within 120 s: {j}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn files(sandbox: &Sandbox, dir: &Path) -> DaemonFiles {
    write_config(
        sandbox,
        dir,
        "\n[restore]\nfolder_template = \"INBOX_%Y_%m_%d_%H%M\"\n",
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_all_brings_back_every_message_exactly_beside_the_live_data() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    seed_varied(d);
    let at_snapshot = live(d, ALICE);
    let dir = tempfile::tempdir().unwrap();
    let f = files(&sandbox, dir.path());
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let point = snapshot(&api, ALICE).await;

    damage(d);
    let damaged = live(d, ALICE);
    let subs_before = subscribed(d, ALICE);

    let before_request =
        jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get("Europe/Paris").unwrap());
    let job = restore(&api, ALICE, &point, "all").await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let target = job["target"]["folder"].as_str().unwrap().to_string();
    let expected = before_request.strftime("INBOX_%Y_%m_%d_%H%M").to_string();
    assert!(
        target == expected || target.starts_with("INBOX_2"),
        "{target} vs {expected}"
    );
    let total: usize = at_snapshot.values().map(|m| m.len()).sum();
    assert_eq!(job["progress"]["messages"]["done"], total as u64, "{job}");
    assert_eq!(job["progress"]["messages"]["total"], total as u64);

    let after = live(d, ALICE);
    // Every folder of the point, under the target, with the same messages.
    for (name, msgs) in &at_snapshot {
        // LIST wildcards in a name are cleaned (and the job says so).
        let restored_name = if name == "INBOX" {
            target.clone()
        } else {
            format!("{target}/{}", name.replace(['%', '*'], "_"))
        };
        if name.contains(['%', '*']) {
            assert!(
                job["warnings"]
                    .to_string()
                    .contains(&restored_name[target.len() + 1..]),
                "the rename of {name:?} is in the warnings: {job}"
            );
        }
        let got = after.get(&restored_name).unwrap_or_else(|| {
            panic!(
                "{restored_name:?} missing; job {job}; folders: {:?}",
                after.keys().collect::<Vec<_>>()
            )
        });
        assert_same(
            got,
            msgs,
            &format!("folder {name:?} restored as {restored_name:?}"),
        );
    }
    // The live folders are exactly as they were before the restore.
    for (name, msgs) in &damaged {
        assert_eq!(&after[name], msgs, "live folder {name:?} changed");
    }
    // Nothing else appeared: live folders + the target tree only.
    for name in after.keys() {
        assert!(
            damaged.contains_key(name)
                || name == &target
                || name.starts_with(&format!("{target}/")),
            "unexpected {name:?}"
        );
    }
    // Every folder the restore created is subscribed; the old subscriptions stay.
    let subs = subscribed(d, ALICE);
    for name in after.keys().filter(|n| n.starts_with(&target)) {
        assert!(subs.contains(name), "{name:?} is not subscribed");
    }
    assert!(subs_before.is_subset(&subs));

    // Scope inbox: only the INBOX, in a second folder of the same minute.
    let job2 = restore(&api, ALICE, &point, "inbox").await;
    assert_eq!(job2["state"], "succeeded", "{job2}");
    let target2 = job2["target"]["folder"].as_str().unwrap().to_string();
    assert_ne!(target2, target);
    let after2 = live(d, ALICE);
    assert_same(&after2[&target2], &at_snapshot["INBOX"], "inbox scope");
    assert!(
        !after2.keys().any(|n| n.starts_with(&format!("{target2}/"))),
        "inbox scope created subfolders"
    );

    // Contract errors.
    let e = api
        .post(
            "/v1/restores",
            &json!({"user": ALICE, "point": "20000101T000000Z"}),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("point_not_found"), "{e}");
    let e = api
        .post(
            "/v1/restores",
            &json!({"user": ALICE, "point": point, "scope": "some"}),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("bad_scope"), "{e}");
    for bad in [
        "admin@example.org, bob@example.org",
        "Admin <admin@example.org>",
        "admin",
        "admin@example.org\r\nBcc: x@example.org",
    ] {
        let e = api
            .post(
                "/v1/restores",
                &json!({"user": ALICE, "point": point, "requested_by": bad}),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("bad_requested_by"), "{bad:?}: {e}");
    }
    let long = format!("{}@example.org", "a".repeat(250));
    let e = api
        .post("/v1/restores", &json!({"user": long, "point": point}))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invalid_user"), "{e}");
    let e = api
        .post(
            "/v1/restores",
            &json!({"user": "nobody@example.org", "point": point}),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("unknown_user") || e.to_string().contains("server_down"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_killed_half_way_resumes_and_ends_with_each_message_once() {
    let sandbox = bulk_sandbox();
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    imap.create("Other").unwrap();
    for i in 0..300u32 {
        imap.append(
            "Other",
            &[],
            None,
            format!("Subject: other {i}\r\n\r\nbody {i}\r\n").as_bytes(),
        )
        .unwrap();
    }
    imap.logout().unwrap();
    let at_snapshot = live(d, ALICE);

    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    // The daemon dies between the server's OK to the first batch and the
    // journal's record of it: the hardest moment to resume from.
    let daemon = serve_crashing_at(&f, "restore.answered:1");
    let api = ApiClient::new(&f.socket);
    let point = snapshot(&api, ALICE).await;
    let job = api
        .post("/v1/restores", &json!({"user": ALICE, "point": point}))
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    wait_crash(daemon, &f);

    let _daemon = serve(&f);
    let job = wait_job(&api, &json!({"id": id})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(job["attempts"].is_null() || job["attempts"] != 1);
    let target = job["target"]["folder"].as_str().unwrap().to_string();
    let after = live(d, ALICE);
    assert_same(
        &after[&target],
        &at_snapshot["INBOX"],
        "INBOX after a resume",
    );
    assert_same(
        &after[&format!("{target}/Other")],
        &at_snapshot["Other"],
        "Other after a resume",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn over_quota_fails_with_a_clear_code_and_keeps_what_was_restored() {
    let sandbox = Sandbox::start(SandboxOptions {
        quota: Some("1M".into()),
        ..SandboxOptions::default()
    })
    .expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    for i in 0..30u32 {
        let body = format!("Subject: q {i}\r\n\r\n{}\r\n", "y".repeat(20_000));
        imap.append("INBOX", &[], None, body.as_bytes()).unwrap();
    }
    imap.logout().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let point = snapshot(&api, ALICE).await;
    // 600 KB live + 600 KB restored > 1 MB: the restore stops part-way.
    let second = restore(&api, ALICE, &point, "all").await;
    assert_eq!(second["state"], "failed", "{second}");
    assert_eq!(second["error"]["code"], "over_quota", "{second}");
    let message = second["error"]["message"].as_str().unwrap();
    let folder = second["target"]["folder"].as_str().unwrap();
    assert!(
        message.contains(folder) && message.contains("messages restored"),
        "{message}"
    );
    let done = second["progress"]["messages"]["done"].as_u64().unwrap();
    assert!(
        done > 0 && done < 30,
        "as much as fits is restored: {second}"
    );
    let after = live(d, ALICE);
    assert_eq!(
        after[folder].len() as u64,
        done,
        "the count reported is what is there"
    );
}

/// The notification mails in `user`'s INBOX (from restore@example.org).
fn notifications(d: &Dovecot, user: &str, count: u32) -> Vec<String> {
    let mut imap = d.login_master(user).unwrap();
    let msgs = imap
        .wait_for_messages("INBOX", count, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("no notification for {user}: {e}"));
    imap.logout().unwrap();
    msgs.into_iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .filter(|t| t.contains("From: restore@example.org"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_user_and_the_admin_get_a_notification_through_postfix_saying_what_happened() {
    let sandbox = Sandbox::start(SandboxOptions {
        postfix: true,
        radicale: true,
        quota: Some("1M".into()),
        ..SandboxOptions::default()
    })
    .expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    mailrestore_sandbox::demo::seed(&mut imap, d.separator).unwrap();
    imap.logout().unwrap();
    // The admin's mailbox exists before the notification arrives, as a
    // provisioned one does (a fresh INBOX created by an IMAP login and an
    // LMTP delivery at the same instant can make Dovecot 2.3's LMTP panic).
    let mut admin = d.login_master("admin@example.org").unwrap();
    admin.select("INBOX").unwrap();
    admin.logout().unwrap();
    let radicale = sandbox.radicale.as_ref().unwrap();
    let items =
        mailrestore_sandbox::demo::seed_dav(&radicale.user_client(ALICE), "/alice%40example.org/")
            .unwrap();
    assert_eq!(items, 5);
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "\n[notify]\nlanguage = \"fr\"\n").unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let point = snapshot(&api, ALICE).await;
    let job = restore(&api, ALICE, &point, "all").await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let folder = job["target"]["folder"].as_str().unwrap();
    let admin = notifications(d, "admin@example.org", 1);
    assert_eq!(admin.len(), 1, "{admin:?}");
    // Alice's INBOX: her 5 demo messages and the notification.
    let alice = notifications(d, ALICE, 6);
    assert_eq!(alice.len(), 1, "alice's copy arrives in her INBOX");
    let mail = &admin[0];
    assert!(
        mail.contains("To: alice@example.org, admin@example.org"),
        "{mail}"
    );
    assert!(
        mail.contains(folder),
        "the folder name is in the mail: {mail}"
    );
    // The new calendar and address book, by the names the user's client
    // shows (quoted-printable soft breaks undone).
    let text = mail.replace("=\r\n", "").replace("=\n", "");
    for name in [
        "Calendrier : Travail (restored ",
        "Carnet d'adresses : Contacts (restored ",
    ] {
        assert!(text.contains(name), "{name:?} is in the mail: {mail}");
    }
    assert!(
        mail.contains("Subject: =?utf-8?") || mail.contains("Subject: Restauration"),
        "{mail}"
    );

    // A failing restore: over quota. The admin's mail says why.
    let mut imap = d.login_master(ALICE).unwrap();
    for i in 0..40u32 {
        imap.append(
            "INBOX",
            &[],
            None,
            format!("Subject: fill {i}\r\n\r\n{}\r\n", "z".repeat(20_000)).as_bytes(),
        )
        .unwrap();
    }
    imap.logout().unwrap();
    let point = snapshot(&api, ALICE).await;
    let job = restore(&api, ALICE, &point, "inbox").await;
    assert_eq!(job["state"], "failed", "{job}");
    let admin = notifications(d, "admin@example.org", 2);
    let failed = admin
        .iter()
        .find(|m| m.contains("over_quota"))
        .unwrap_or_else(|| panic!("{admin:?}"));
    assert!(failed.contains("Cause"), "{failed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_running_restore_keeps_what_it_made_and_metrics_count_it() {
    let sandbox = bulk_sandbox();
    let d = sandbox.dovecot().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let _daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let point = snapshot(&api, ALICE).await;
    let id = start_restore_and_wait_for_progress(&api, &point).await;
    // The same restore again while it runs: that job (200), not a second.
    let (status, body) = api
        .raw(
            "POST",
            "/v1/restores",
            Some(&json!({"user": ALICE, "point": point})),
        )
        .await
        .unwrap();
    let same: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, same["id"].as_str()),
        (200, Some(id.as_str())),
        "{same}"
    );
    let (status, _) = api
        .raw("DELETE", &format!("/v1/jobs/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, 202);
    let job = wait_job(&api, &json!({"id": id})).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    let folder = job["target"]["folder"].as_str().unwrap();
    let done = job["progress"]["messages"]["done"].as_u64().unwrap();
    assert!(done < 1500, "{job}");
    let kept = live(d, ALICE)[folder].len() as u64;
    assert_eq!(kept, done, "what the job reports is what is in {folder}");
    let (status, body) = api
        .raw("DELETE", &format!("/v1/jobs/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, 409);
    assert!(String::from_utf8_lossy(&body).contains("job_finished"));
    // Filters.
    let cancelled = api
        .get("/v1/jobs?kind=restore&state=cancelled")
        .await
        .unwrap();
    assert_eq!(cancelled["jobs"].as_array().unwrap().len(), 1);
    let snapshots = api
        .get(&format!(
            "/v1/jobs?user={}&kind=snapshot",
            "alice%40example.org"
        ))
        .await
        .unwrap();
    assert_eq!(snapshots["jobs"].as_array().unwrap().len(), 1);
    // Metrics.
    let (status, body) = api.raw("GET", "/metrics", None).await.unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    for line in [
        "mailrestore_jobs_total{kind=\"restore\",outcome=\"cancelled\"} 1",
        "mailrestore_jobs_total{kind=\"snapshot\",outcome=\"succeeded\"} 1",
        "mailrestore_points{user=\"alice@example.org\"} 1",
        &format!("mailrestore_restored_messages_total {done}"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(
        text.contains("mailrestore_store_bytes ")
            && text.contains("mailrestore_scheduler_lag_seconds ")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_folder_re_created_by_someone_else_while_the_restore_was_down_is_never_merged_into() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    imap.create("Work").unwrap();
    for i in 0..5u32 {
        let m = format!("Subject: w {i}\r\n\r\nw {i}\r\n");
        imap.append("Work", &[], None, m.as_bytes()).unwrap();
        imap.append("INBOX", &[], None, m.as_bytes()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    // Dies after the server's OK to the first batch (INBOX or Work).
    let daemon = serve_crashing_at(&f, "restore.answered:1");
    let api = ApiClient::new(&f.socket);
    let point = snapshot(&api, ALICE).await;
    let job = api
        .post("/v1/restores", &json!({"user": ALICE, "point": point}))
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    wait_crash(daemon, &f);
    // Someone deletes the restored Work folder and makes their own there.
    let target = live(d, ALICE)
        .keys()
        .find(|n| n.starts_with("INBOX_") && !n.contains('/'))
        .cloned()
        .expect("the target was created");
    let work = format!("{target}/Work");
    imap.command_ok(&format!("DELETE \"{work}\"")).unwrap();
    imap.create(&work).unwrap();
    imap.append(&work, &[], None, b"Subject: theirs\r\n\r\ntheirs\r\n")
        .unwrap();
    imap.logout().unwrap();

    let _daemon = serve(&f);
    let job = wait_job(&api, &json!({"id": id})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "target_changed", "{job}");
    let now = live(d, ALICE);
    assert_eq!(now[&work].len(), 1, "nothing merged into their folder");
}
