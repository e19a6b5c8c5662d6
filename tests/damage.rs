//! Damage is never absence, against real Dovecot: a restore skips the one
//! message the store cannot give back and names it; the next snapshot
//! fetches that message again (healing the older point too) and reads a
//! folder whose manifest is damaged again in full, with a warning.

mod common;

use std::collections::BTreeMap;

use common::daemon::{serve, snapshot_job, start_restore, wait_job};
use common::{ALICE, Msg, content, live};
use mailrestore::api::client::ApiClient;
use mailrestore::index::Index;
use mailrestore::manifest::{FolderManifest, RootManifest};
use mailrestore::repo::Repository;
use mailrestore_sandbox::daemon::{DaemonFiles, write_config};
use mailrestore_sandbox::{Sandbox, SandboxOptions};
use serde_json::Value;

/// Flips one byte of a blob's stored bytes (past its entry header).
fn damage(store: &Repository, blob: &mailrestore::blob::BlobId) {
    let loc = store.index().blob(blob).unwrap().unwrap();
    let path = loc.pack.path(store.root());
    let mut bytes = std::fs::read(&path).unwrap();
    let at = (loc.offset + mailrestore::store::pack::ENTRY_HEADER + loc.stored_len / 2) as usize;
    bytes[at] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
}

/// Damages, in the only point, INBOX's message UID 4 and the manifest of
/// folder Work; returns UID 4's subject line.
fn damage_point(f: &DaemonFiles) {
    let index = Index::open(&f.state_dir.join("index")).unwrap();
    let store = Repository::open(&f.state_dir.join("store"), index).unwrap();
    let g = store.index().generations(ALICE).unwrap().remove(0);
    let root: RootManifest = mailrestore::snapshot::read_manifest(&store, &g.root).unwrap();
    for f in &root.folders {
        let m: FolderManifest = mailrestore::snapshot::read_manifest(&store, &f.manifest).unwrap();
        if m.name == "INBOX" {
            let entries = mailrestore::snapshot::folder_messages(&store, &m).unwrap();
            let uid4 = entries.iter().find(|e| e.uid == 4).unwrap();
            damage(&store, &uid4.blob);
        }
        if m.name == "Work" {
            damage(&store, &f.manifest);
        }
    }
}

async fn restore(api: &ApiClient, point: &str) -> Value {
    let job = wait_job(api, &start_restore(api, ALICE, point, "all").await).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    job
}

fn warnings(job: &Value) -> String {
    job["warnings"].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn damage_is_skipped_named_and_fetched_again() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    imap.create("Work").unwrap();
    for i in 1..=10 {
        let m = format!("Subject: inbox {i}\r\n\r\n{}\r\n", "text ".repeat(100 * i));
        imap.append("INBOX", &["\\Seen"], None, m.as_bytes())
            .unwrap();
    }
    for i in 1..=5 {
        let m = format!("Subject: work {i}\r\n\r\nwork {i}\r\n");
        imap.append("Work", &["\\Flagged"], None, m.as_bytes())
            .unwrap();
    }
    imap.logout().unwrap();
    let at_first: BTreeMap<String, BTreeMap<u32, Msg>> = live(d, ALICE);

    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let first = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    drop(daemon);
    damage_point(&f);

    // The restore brings back everything it can read and names the rest.
    let _daemon = serve(&f);
    let job = restore(&api, &first).await;
    let target = job["target"]["folder"].as_str().unwrap().to_string();
    assert_eq!(job["progress"]["messages"]["skipped"], 1, "{job}");
    let w = warnings(&job);
    assert!(w.contains("UID 4") && w.contains("skipped"), "{w}");
    assert!(
        w.contains("\\\"Work\\\""),
        "the damaged folder is named: {w}"
    );
    let now = live(d, ALICE);
    let mut expected = at_first["INBOX"].clone();
    expected.remove(&4);
    assert_eq!(
        content(&now[&target]),
        content(&expected),
        "INBOX but UID 4"
    );
    let health = api.get("/v1/health").await.unwrap();
    assert_eq!(health["backends"]["index"]["state"], "damaged", "{health}");

    // The next snapshot fetches UID 4 again and reads Work in full.
    let second = snapshot_job(&api, ALICE).await;
    let w = warnings(&second);
    assert!(w.contains("Work") && w.contains("in full"), "{second}");
    let health = api.get("/v1/health").await.unwrap();
    assert_eq!(health["backends"]["index"]["state"], "up", "{health}");
    let point2 = second["point"].as_str().unwrap();
    let job = restore(&api, point2).await;
    let target2 = job["target"]["folder"].as_str().unwrap().to_string();
    assert!(
        job["warnings"].as_array().is_none_or(Vec::is_empty),
        "{job}"
    );
    let now = live(d, ALICE);
    assert_eq!(content(&now[&target2]), content(&at_first["INBOX"]));
    assert_eq!(
        content(&now[&format!("{target2}/Work")]),
        content(&at_first["Work"])
    );
    // The first point's INBOX reads whole again: the blob is the same.
    let job = restore(&api, &first).await;
    assert_eq!(job["progress"]["messages"]["skipped"], 0, "{job}");
    let target3 = job["target"]["folder"].as_str().unwrap().to_string();
    let now = live(d, ALICE);
    assert_eq!(content(&now[&target3]), content(&at_first["INBOX"]));
}
