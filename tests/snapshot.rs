//! Restore points of real Dovecot mailboxes: exact bytes, flags, keywords and
//! INTERNALDATEs (checked against raw IMAP FETCH), nothing changed on the
//! live mailbox, incremental runs that cost almost nothing, and an index that
//! can be rebuilt from the store.

mod common;

use std::path::Path;

use common::{ALICE, du, live, point, seed_varied};
use mailrestore::index::Index;
use mailrestore::net::imap::{Endpoint, Security};
use mailrestore::repo::Repository;
use mailrestore::secret::Secret;
use mailrestore::snapshot::{Progress, Snapshotter};
use mailrestore_sandbox::{Dovecot, Sandbox, SandboxOptions};
use tokio_util::sync::CancellationToken;

fn endpoint(d: &Dovecot) -> Endpoint {
    Endpoint::new(
        d.host.clone(),
        d.imap_port,
        Security::None,
        d.master_user.clone(),
        Secret::new(d.master_password.clone()),
    )
}

fn open_store(dir: &Path) -> Repository {
    let index = Index::open(&dir.join("index")).expect("index");
    Repository::open(&dir.join("store"), index).expect("store")
}

fn progress() -> Progress {
    Progress::new(CancellationToken::new())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_point_holds_every_message_exactly_and_the_live_mailbox_is_untouched() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let seeded = seed_varied(d);
    let before = live(d, ALICE);
    assert_eq!(before.values().map(|f| f.len()).sum::<usize>(), seeded);

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let snap = Snapshotter::new(store.clone(), endpoint(d), 3);
    let first = snap.snapshot(ALICE, &progress()).await.expect("snapshot");
    assert_eq!(first.downloaded as usize, seeded);

    let (root, folders) = point(&store, &first.generation);
    for (name, msgs) in &before {
        let (_, got) = folders
            .get(name)
            .unwrap_or_else(|| panic!("folder {name:?} missing from the point"));
        assert_eq!(got, msgs, "folder {name:?} differs from the raw FETCH");
    }
    assert_eq!(root.mail.messages as usize, seeded);
    assert_eq!(first.generation.mail, root.mail);
    let sent = &folders["Sent"].0;
    assert_eq!(sent.special_use, vec!["\\Sent"]);
    assert!(folders["Empty"].0.subscribed && folders["Empty"].0.messages == 0);
    assert!(!folders["Unsubscribed"].0.subscribed);
    assert!(folders.contains_key("日本語/メール") && folders.contains_key("Archive/2024/Q1"));
    assert!(folders.contains_key("Quotes \"and\" backslash \\ here"));

    // Nothing on the live mailbox changed, \Seen included.
    assert_eq!(live(d, ALICE), before);

    // Unchanged mailbox: no body downloaded, almost no space.
    let size = du(dir.path());
    let second = snap
        .snapshot(ALICE, &progress())
        .await
        .expect("second snapshot");
    assert_eq!(
        second.downloaded, 0,
        "an unchanged mailbox downloads nothing"
    );
    let grown = du(dir.path()).saturating_sub(size);
    assert!(
        grown < 64 * 1024,
        "an unchanged snapshot added {grown} bytes"
    );
    assert_ne!(second.generation.id, first.generation.id);

    // A new message and changed flags: one download, flags picked up.
    let mut imap = d.login_master(ALICE).unwrap();
    imap.append(
        "INBOX",
        &["$Important"],
        Some("26-Nov-2026 09:00:00 +0000"),
        b"Subject: new\r\n\r\nnew\r\n",
    )
    .unwrap();
    imap.select("Sent").unwrap();
    imap.command_ok("UID STORE 1:* +FLAGS (\\Flagged work)")
        .unwrap();
    imap.logout().unwrap();
    let now = live(d, ALICE);
    let third = snap
        .snapshot(ALICE, &progress())
        .await
        .expect("third snapshot");
    assert_eq!(third.downloaded, 1);
    let (_, folders) = point(&store, &third.generation);
    for (name, msgs) in &now {
        assert_eq!(&folders[name].1, msgs, "folder {name:?} after changes");
    }

    // Everything verifies, and the index can be rebuilt from the store alone.
    let report = mailrestore::verify::verify(&store, true).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.generations, 3);
    let gens = store.index().generations(ALICE).unwrap();
    let repaired = mailrestore::verify::rebuild_index(&store).unwrap();
    assert_eq!(repaired.generations, 3);
    assert_eq!(store.index().generations(ALICE).unwrap(), gens);
    assert!(
        mailrestore::verify::verify(&store, false)
            .unwrap()
            .is_clean()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_new_message_in_a_50000_message_folder_adds_one_chunk() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    imap.create("Big").unwrap();
    // 50,000 messages written straight into the Maildir: APPENDing them
    // would take minutes. Dovecot indexes them at the first EXAMINE.
    let cur = d.mail_dir(ALICE).join("Big").join("cur");
    assert!(
        cur.is_dir(),
        "expected the folder's Maildir at {}",
        cur.display()
    );
    for i in 0..50_000u32 {
        let body = format!(
            "From: sender{i}@example.net\r\nSubject: message {i}\r\nMessage-ID: <{i}@bulk>\r\n\r\nBody of message {i}.\r\n"
        );
        let name = format!("1700000000.M{i}P1.sandbox,S={}:2,S", body.len());
        std::fs::write(cur.join(name), body).unwrap();
    }
    assert_eq!(imap.message_count("Big").unwrap(), 50_000);

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let snap = Snapshotter::new(store.clone(), endpoint(d), 2);
    let started = std::time::Instant::now();
    let first = snap.snapshot(ALICE, &progress()).await.expect("snapshot");
    let first_took = started.elapsed();
    assert_eq!(first.downloaded, 50_000);

    let new = b"Subject: one more\r\n\r\nThe 50,001st message.\r\n";
    imap.append("Big", &[], None, new).unwrap();
    imap.logout().unwrap();
    let (s_store, s_index) = (du(&dir.path().join("store")), du(&dir.path().join("index")));
    let second = snap
        .snapshot(ALICE, &progress())
        .await
        .expect("second snapshot");
    let store_grown = du(&dir.path().join("store")) - s_store;
    let index_grown = du(&dir.path().join("index")).saturating_sub(s_index);
    // Read only now: a lookup may itself make sled write.
    let locations = store.index().blobs().unwrap().len() as u64;
    eprintln!(
        "first snapshot: {first_took:.1?}, index {s_index} B for {locations} blob locations ({} B each)",
        s_index / locations
    );
    eprintln!("one new message: store +{store_grown} B, index (sled) +{index_grown} B");
    assert_eq!(second.downloaded, 1);
    // Issue #3: the state directory (the store's packs: the message, one
    // chunk, one group, the folder and root manifests; and the index) grows
    // by less than 64 KiB plus the message.
    assert!(
        store_grown + index_grown < 64 * 1024 + new.len() as u64,
        "one new message added {store_grown} bytes to the store and {index_grown} to the index"
    );
    let (_, folders) = point(&store, &second.generation);
    assert_eq!(folders["Big"].1.len(), 50_001);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_user_fails_with_a_clear_code_and_leaves_no_point() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let snap = Snapshotter::new(store.clone(), endpoint(d), 2);
    let err = snap
        .snapshot("nobody@example.org", &progress())
        .await
        .expect_err("no such user");
    let job_error = err.to_job_error();
    assert!(
        ["unknown_user", "connection_lost"].contains(&job_error.code.as_str()),
        "{job_error:?}"
    );
    assert!(
        store
            .index()
            .generations("nobody@example.org")
            .unwrap()
            .is_empty()
    );
    let err = snap
        .snapshot("alice@example.org*restore", &progress())
        .await
        .unwrap_err();
    assert_eq!(err.to_job_error().code, "invalid_user");
}
