//! A full disk: a snapshot that runs out of space fails with `disk_full`
//! and damages nothing, `/v1/health` shows the space left, the next
//! snapshot once there is room succeeds, and prune (which frees space)
//! still runs on a disk filled to the last byte. The state directory is a
//! small tmpfs of its own.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::daemon::{cli, ended_snapshot, serve, snapshot_job};
use common::{ALICE, noise};
use mailrestore::api::client::ApiClient;
use mailrestore_sandbox::daemon::write_config;
use mailrestore_sandbox::{Sandbox, SandboxOptions};
use serde_json::json;

/// A tmpfs mounted for the test, unmounted (lazily) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "mount -t tmpfs on {} (needs root)", dir.display());
        Tmpfs(dir.to_owned())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    mailrestore::state::disk_space(dir).unwrap().0
}

/// Writes a file until the disk refuses a byte more.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0xa5u8; 64 << 10];
    loop {
        if f.write_all(&block).and_then(|_| f.sync_all()).is_err() {
            break;
        }
    }
    for _ in 0..4096 {
        if f.write_all(&[1]).and_then(|_| f.flush()).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_the_snapshot_cleanly_and_prune_still_runs() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    for i in 0..3 {
        let m = format!("Subject: small {i}\r\n\r\nhello {i}\r\n");
        imap.append("INBOX", &["\\Seen"], None, m.as_bytes())
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = "\n[retention]\nhourly = 1\ndaily = 0\nweekly = 0\nmonthly = 0\n";
    let f = write_config(&sandbox, dir.path(), extra).unwrap();
    let disk = Tmpfs::mount(&f.state_dir, "40m");
    let daemon = serve(&f);
    let api = ApiClient::new(&f.socket);
    let first = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();

    // 30 messages of 1.5 MB that do not compress: more than the disk holds.
    imap.create("Big").unwrap();
    for i in 0..30 {
        let mut m = format!("X-Part: {i}\r\n").into_bytes();
        m.extend(noise(1_500_000));
        imap.append("Big", &[], None, &m).unwrap();
    }
    let job = ended_snapshot(&api, ALICE).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "disk_full", "{job}");
    let health = api.get("/v1/health").await.unwrap();
    let state = &health["backends"]["state_dir"];
    assert!(state["free_bytes"].as_u64().is_some(), "{health}");
    assert_eq!(state["total_bytes"].as_u64(), Some(40 << 20), "{health}");
    assert_eq!(health["backends"]["index"]["state"], "up", "{health}");
    let points = api.get(&format!("/v1/users/{ALICE}/points")).await.unwrap();
    assert_eq!(points["points"].as_array().unwrap().len(), 1, "{points}");
    assert!(
        !std::fs::read_dir(f.state_dir.join("store/packs"))
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .any(|p| p.unwrap().path().extension().is_some_and(|e| e == "tmp")),
        "no unfinished pack left behind"
    );

    // Room again: the next snapshot succeeds.
    disk.resize("200m");
    let second = snapshot_job(&api, ALICE).await;
    assert_eq!(second["state"], "succeeded", "{second}");

    // Big goes from the mailbox, a third point, then the disk is filled
    // to the last byte: prune must still drop the first two points and
    // give their space back.
    imap.command_ok("DELETE \"Big\"").unwrap();
    imap.logout().unwrap();
    let third = snapshot_job(&api, ALICE).await["point"]
        .as_str()
        .unwrap()
        .to_string();
    fill(&f.state_dir.join("filler"));
    let before = free_bytes(&f.state_dir);
    assert!(before < 1 << 20, "the disk is full: {before} bytes free");
    let report = api
        .post("/v1/prune", &json!({"dry_run": false}))
        .await
        .expect("prune on a full disk");
    assert_eq!(report["removed"].as_array().unwrap().len(), 2, "{report}");
    assert!(
        free_bytes(&f.state_dir) > before + (30 << 20),
        "prune gave the space back: {report}"
    );
    let points = api.get(&format!("/v1/users/{ALICE}/points")).await.unwrap();
    let ids: Vec<&str> = points["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![third.as_str()], "{points}");
    assert_ne!(first, third);
    drop(daemon);
    std::fs::remove_file(f.state_dir.join("filler")).unwrap();
    let out = cli(&f, &["verify", "--read-data"]);
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
