//! The daemon as a child process, driven through its socket as the panel does.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailrestore::api::client::ApiClient;
use mailrestore_sandbox::daemon::DaemonFiles;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_mailrestore");

/// `mailrestore serve`, killed on drop; its log goes to `DIR/serve.log`.
pub struct Serve(pub Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the daemon on `f` and waits until its socket answers.
pub fn serve(f: &DaemonFiles) -> Serve {
    serve_with(f, &[])
}

/// Starts the daemon set to die (SIGKILL, by its own hand) the `n`-th time
/// it passes the crash point `at` (`NAME:n`, see `src/failpoint.rs`).
pub fn serve_crashing_at(f: &DaemonFiles, at: &str) -> Serve {
    assert!(
        mailrestore::failpoint::enabled(),
        "build the tests with --features mailrestore/failpoints (scripts/test.sh does)"
    );
    serve_with(f, &[("MAILRESTORE_CRASH_AT", at)])
}

/// Waits until a daemon set by [`serve_crashing_at`] has crashed.
pub fn wait_crash(mut daemon: Serve, f: &DaemonFiles) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while daemon.0.try_wait().expect("try_wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "the daemon never reached its crash point"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = std::fs::read_to_string(f.dir.join("serve.log")).unwrap_or_default();
    assert!(
        log.contains("failpoint: crashing at"),
        "it died otherwise:\n{log}"
    );
}

/// [`serve`] with more environment.
pub fn serve_with(f: &DaemonFiles, env: &[(&str, &str)]) -> Serve {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(f.dir.join("serve.log"))
        .expect("open the daemon log");
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&f.config)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&f.socket).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Serve(child)
}

/// Polls a job until it ends.
pub async fn wait_job(api: &ApiClient, job: &Value) -> Value {
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let j = api.get(&format!("/v1/jobs/{id}")).await.unwrap();
        if matches!(
            j["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Takes a restore point of `user`; returns the finished job.
pub async fn snapshot_job(api: &ApiClient, user: &str) -> Value {
    let job = ended_snapshot(api, user).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    job
}

/// Asks for a restore point of `user`; returns the job once it ended,
/// whichever way.
pub async fn ended_snapshot(api: &ApiClient, user: &str) -> Value {
    let r = api
        .post("/v1/snapshots", &json!({"user": user}))
        .await
        .unwrap();
    wait_job(api, &r["jobs"][0]).await
}

/// Starts a restore; returns the job as first answered.
pub async fn start_restore(api: &ApiClient, user: &str, point: &str, scope: &str) -> Value {
    let job = api
        .post(
            "/v1/restores",
            &json!({"user": user, "point": point, "scope": scope, "requested_by": "admin@example.org"}),
        )
        .await
        .unwrap();
    assert_eq!(job["kind"], "restore", "{job}");
    job
}

/// Runs the `mailrestore` binary with `args` on `f`'s configuration.
pub fn cli(f: &DaemonFiles, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--config")
        .arg(&f.config)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mailrestore")
}
