//! The scheduler takes points of every scheduled user; prune removes what
//! the policy drops, reclaims the space of deleted mail, keeps every
//! remaining point whole, and survives SIGKILL at any moment.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{ALICE, du, live, noise, point};
use mailrestore::api::client::ApiClient;
use mailrestore::config::RetentionConfig;
use mailrestore::index::Index;
use mailrestore::net::imap::{Endpoint, Security};
use mailrestore::repo::Repository;
use mailrestore::secret::Secret;
use mailrestore::snapshot::{Progress, Snapshotter};
use mailrestore_sandbox::daemon::write_config;
use mailrestore_sandbox::{Dovecot, Sandbox, SandboxOptions};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_mailrestore");

fn endpoint(d: &Dovecot) -> Endpoint {
    Endpoint::new(
        d.host.clone(),
        d.imap_port,
        Security::None,
        d.master_user.clone(),
        Secret::new(d.master_password.clone()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_round_takes_a_point_of_every_user() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let users = ["alice@example.org", "bob@example.org", "carol@example.org"];
    for u in users {
        let mut imap = d.login_master(u).unwrap();
        mailrestore_sandbox::demo::seed(&mut imap, d.separator).unwrap();
        imap.logout().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "\n[schedule]\ninterval = \"1h\"\nfirst_round_after = \"1s\"\nspread = \"2s\"\nusers = {users:?}\n"
    );
    let f = write_config(&sandbox, dir.path(), &extra).unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&f.config)
            .spawn()
            .unwrap(),
    );
    let api = ApiClient::new(&f.socket);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut done = Vec::new();
    while done.len() < users.len() {
        assert!(Instant::now() < deadline, "points after 90 s: {done:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        done.clear();
        for u in users {
            let Ok(v) = api.get(&format!("/v1/users/{u}/points")).await else {
                continue;
            };
            if v["points"].as_array().is_some_and(|p| !p.is_empty()) {
                assert_eq!(v["points"][0]["mail"]["messages"], 9, "{v}");
                done.push(u);
            }
        }
    }
    let jobs = api.get("/v1/jobs?kind=snapshot").await.unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 3, "{jobs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_reclaims_deleted_mail_and_every_remaining_point_stays_whole() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(ALICE).unwrap();
    mailrestore_sandbox::demo::seed(&mut imap, d.separator).unwrap();
    imap.create("Big").unwrap();
    imap.append("Big", &[], None, &noise(4 << 20)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let f = write_config(&sandbox, dir.path(), "").unwrap();
    let index = Index::open(&f.state_dir.join("index")).unwrap();
    let store = Repository::open(&f.state_dir.join("store"), index).unwrap();
    let snap = Snapshotter::new(store.clone(), endpoint(d), 2);
    let progress = || Progress::new(CancellationToken::new());
    let first = snap.snapshot(ALICE, &progress()).await.unwrap();
    imap.command_ok("DELETE \"Big\"").unwrap();
    imap.logout().unwrap();
    let second = snap.snapshot(ALICE, &progress()).await.unwrap();
    let live_now = live(d, ALICE);

    // Only the newest point of the last hour stays.
    let policy = RetentionConfig {
        hourly: 1,
        daily: 0,
        weekly: 0,
        monthly: 0,
    };
    let tz = mailrestore::time::UTC;
    let now = mailrestore::time::now();
    let before = du(&f.state_dir.join("store"));
    let dry =
        mailrestore::prune::prune(&store, &policy, &tz, now, &Default::default(), true).unwrap();
    assert_eq!(
        dry.removed,
        vec![format!("{ALICE} {}", first.generation.id)]
    );
    assert!(dry.bytes_after + (3 << 20) < dry.bytes_before, "{dry:?}");
    assert_eq!(
        du(&f.state_dir.join("store")),
        before,
        "a dry run changes nothing"
    );
    assert_eq!(store.index().generations(ALICE).unwrap().len(), 2);

    let report =
        mailrestore::prune::prune(&store, &policy, &tz, now, &Default::default(), false).unwrap();
    assert_eq!(report.removed.len(), 1);
    let after = du(&f.state_dir.join("store"));
    assert!(
        after + (3 << 20) < before,
        "store {before} -> {after}: the deleted 4 MB must come back"
    );
    let gens = store.index().generations(ALICE).unwrap();
    assert_eq!(gens, vec![second.generation.clone()]);
    let (_, folders) = point(&store, &second.generation);
    for (name, msgs) in &live_now {
        assert_eq!(
            &folders[name].1, msgs,
            "folder {name:?} of the remaining point"
        );
    }
    assert!(
        mailrestore::verify::verify(&store, true)
            .unwrap()
            .is_clean()
    );
    // Nothing left to do: a second prune removes nothing and keeps the size.
    let again =
        mailrestore::prune::prune(&store, &policy, &tz, now, &Default::default(), false).unwrap();
    assert!(
        again.removed.is_empty() && again.packs_deleted == 0 && again.packs_rewritten == 0,
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prune_killed_at_any_moment_loses_no_remaining_point() {
    let sandbox = Sandbox::start(SandboxOptions::default()).expect("sandbox");
    let d = sandbox.dovecot().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write_config(
        &sandbox,
        dir.path(),
        "\n[retention]\nhourly = 1\ndaily = 0\nweekly = 0\nmonthly = 0\n",
    )
    .unwrap();
    let newest = {
        let index = Index::open(&f.state_dir.join("index")).unwrap();
        let store = Repository::open(&f.state_dir.join("store"), index).unwrap();
        let snap = Snapshotter::new(store.clone(), endpoint(d), 2);
        let mut imap = d.login_master(ALICE).unwrap();
        let mut newest = None;
        for round in 0..6u32 {
            imap.create(&format!("Round{round}")).unwrap();
            for i in 0..20u32 {
                imap.append(
                    &format!("Round{round}"),
                    &[],
                    None,
                    &noise(20_000 + i as usize),
                )
                .unwrap();
            }
            if round % 2 == 0 {
                imap.command_ok(&format!("DELETE \"Round{}\"", round.saturating_sub(1)))
                    .ok();
            }
            newest = Some(
                snap.snapshot(ALICE, &Progress::new(CancellationToken::new()))
                    .await
                    .unwrap()
                    .generation,
            );
        }
        imap.logout().unwrap();
        newest.unwrap()
    };
    // `mailrestore prune` dies at each step of its write order in turn
    // (src/failpoint.rs), then runs to its end; after every death the
    // store verifies clean and the newest point is there.
    assert!(
        mailrestore::failpoint::enabled(),
        "build the tests with --features mailrestore/failpoints"
    );
    let steps = [
        "prune.dropped:1",
        "prune.dropped:3",
        "pack.synced:1",
        "pack.renamed:1",
        "index.durable:3",
        "prune.rewritten:1",
        "prune.deleted:1",
        "prune.deleted:2",
        "",
    ];
    // Each crash from the same store: a copy taken before the first.
    let original = dir.path().join("state.orig");
    let cp = |from: &std::path::Path, to: &std::path::Path| {
        let ok = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(ok.success());
    };
    cp(&f.state_dir, &original);
    for at in steps {
        std::fs::remove_dir_all(&f.state_dir).unwrap();
        cp(&original, &f.state_dir);
        let status = Command::new(BIN)
            .args(["prune", "--config"])
            .arg(&f.config)
            .args(["--socket"])
            .arg(dir.path().join("no-daemon.sock"))
            .env("MAILRESTORE_CRASH_AT", at)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        let verify = Command::new(BIN)
            .args(["verify", "--read-data", "--config"])
            .arg(&f.config)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "after a crash at {at}: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
        let index = Index::open(&f.state_dir.join("index")).unwrap();
        assert!(
            index.generations(ALICE).unwrap().contains(&newest),
            "the newest point is gone after a crash at {at}"
        );
        drop(index);
        if at.is_empty() {
            assert!(status.success(), "prune exited with {status}");
        } else {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "prune never reached {at}"
            );
            // The next prune finishes the work.
            let again = Command::new(BIN)
                .args(["prune", "--config"])
                .arg(&f.config)
                .args(["--socket"])
                .arg(dir.path().join("no-daemon.sock"))
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(again.success(), "prune after a crash at {at}: {again}");
            let index = Index::open(&f.state_dir.join("index")).unwrap();
            assert_eq!(
                index.generations(ALICE).unwrap(),
                vec![newest.clone()],
                "{at}"
            );
        }
    }
    let index = Index::open(&f.state_dir.join("index")).unwrap();
    assert_eq!(index.generations(ALICE).unwrap(), vec![newest]);
}
