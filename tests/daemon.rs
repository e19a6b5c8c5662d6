//! The daemon as operators and the panel see it: `mailrestore serve` as a
//! process, its socket API (health, jobs, error shapes), the peer-uid check,
//! one daemon per state directory, configuration errors and clean shutdown.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailrestore::api::client::{ApiClient, ClientError};
use mailrestore_sandbox::daemon::{DaemonFiles, write_config};
use mailrestore_sandbox::{Sandbox, SandboxOptions};

const BIN: &str = env!("CARGO_BIN_EXE_mailrestore");

/// A `mailrestore serve` child, killed on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &Path) -> Serve {
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mailrestore serve");
    Serve(child)
}

/// Polls the socket until the daemon answers (or the child dies).
fn wait_ready(child: &mut Serve, socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return;
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("mailrestore serve exited with {status} before listening:\n{err}");
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not listen within 30s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions::default()).expect("start the sandbox Dovecot")
}

fn files(sandbox: &Sandbox, dir: &Path) -> DaemonFiles {
    write_config(sandbox, dir, "").expect("write the daemon config")
}

async fn api_error(r: Result<serde_json::Value, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_health_and_jobs_with_contract_errors_then_stops_on_sigterm() {
    let sandbox = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let f = files(&sandbox, dir.path());
    let mut daemon = serve(&f.config);
    wait_ready(&mut daemon, &f.socket);
    let api = ApiClient::new(&f.socket);

    let health = api.get("/v1/health").await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["backends"]["imap"]["state"], "up", "{health}");
    assert_eq!(health["backends"]["dav"]["state"], "not_configured");
    assert_eq!(health["jobs"]["running"], 0);

    // The OpenAPI description, served on the socket like every route.
    let doc = api.get("/v1/openapi.json").await.unwrap();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    assert!(doc["paths"]["/v1/jobs/{id}"]["delete"].is_object(), "{doc}");

    assert_eq!(
        api.get("/v1/jobs").await.unwrap()["jobs"],
        serde_json::json!([])
    );
    let filtered = api
        .get("/v1/jobs?user=alice%40example.org&kind=restore&state=running")
        .await
        .unwrap();
    assert_eq!(filtered["jobs"], serde_json::json!([]));

    assert_eq!(
        api_error(api.get("/v1/jobs/j999").await).await,
        (404, "job_not_found".into())
    );
    assert_eq!(
        api_error(api.get("/v1/jobs/bogus").await).await,
        (404, "job_not_found".into())
    );
    assert_eq!(
        api_error(api.delete("/v1/jobs/j999").await).await,
        (404, "job_not_found".into())
    );
    assert_eq!(
        api_error(api.get("/v2/nothing").await).await,
        (404, "not_found".into())
    );
    assert_eq!(
        api_error(api.get("/v1/jobs?kind=bogus").await).await,
        (400, "bad_request".into())
    );
    assert_eq!(
        api_error(api.get("/v1/jobs?colour=red").await).await,
        (400, "bad_request".into())
    );
    let (status, body) = api
        .raw("POST", "/v1/health", Some(&serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(status, 405);
    assert!(String::from_utf8_lossy(&body).contains("method_not_allowed"));

    // The CLI over the same socket: human and JSON output, exit codes.
    let out = Command::new(BIN)
        .args(["--socket"])
        .arg(&f.socket)
        .args(["health", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backends"]["imap"]["state"], "up");
    let out = Command::new(BIN)
        .args(["job", "j999", "--config"])
        .arg(&f.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("job_not_found"));

    // A second daemon on the same state directory refuses to start.
    let second = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&f.config)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("in use by another mailrestore process"),
        "{err}"
    );

    // SIGTERM: a clean exit, socket removed.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 30s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!f.socket.exists(), "the socket must be removed at shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_whose_uid_is_not_allowed_gets_403_without_sending_anything() {
    let sandbox = sandbox();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = files(&sandbox, dir.path());
    let mut daemon = serve(&f.config);
    wait_ready(&mut daemon, &f.socket);
    // Let `nobody` reach the socket file, so only SO_PEERCRED stands in its way.
    std::fs::set_permissions(&f.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                  d=b''\nwhile True:\n  b=s.recv(4096)\n  if not b: break\n  d+=b\nsys.stdout.write(d.decode())";
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(&f.socket)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run python3 as nobody");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 403"),
        "{text} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\"code\":\"forbidden\""), "{text}");
    // The allowed uid still gets in.
    let api = ApiClient::new(&f.socket);
    assert_eq!(api.get("/v1/health").await.unwrap()["status"], "ok");
    drop(daemon);
}

#[test]
fn configuration_errors_exit_2_and_name_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("imap.secret");
    std::fs::write(&secret, "pw\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}/state\"\ncolour = \"blue\"\n[imap]\nport = 0\nmaster_user = \"restore\"\nmaster_password_file = {:?}\n",
            dir.path().display(),
            secret.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "colour: unknown key",
        "imap.port: expected",
        "imap.master_password_file: secret file",
    ] {
        assert!(err.contains(key), "missing {key:?} in:\n{err}");
    }
    assert!(
        !dir.path().join("state").exists(),
        "nothing may be created on a bad config"
    );
}

#[test]
fn clients_exit_3_when_the_daemon_is_not_there_and_2_on_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["jobs", "--socket"])
        .arg(dir.path().join("none.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the daemon"));
    let out = Command::new(BIN).args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_degraded_when_the_imap_server_is_down() {
    let sandbox = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let f = files(&sandbox, dir.path());
    // Point the daemon at a port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let port = sandbox.dovecot().unwrap().imap_port;
    let text = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace(&format!("port = {port}"), &format!("port = {dead_port}"));
    std::fs::write(&f.config, text).unwrap();
    let mut daemon = serve(&f.config);
    wait_ready(&mut daemon, &f.socket);
    let health = ApiClient::new(&f.socket).get("/v1/health").await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["backends"]["imap"]["state"], "down");
    assert!(health["backends"]["imap"]["error"].as_str().unwrap().len() > 3);
}

#[test]
fn the_systemd_unit_is_rated_ok_or_better_by_systemd_analyze() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/mailrestore.service");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", unit])
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let verdict = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no verdict in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        verdict.contains(" OK") || verdict.contains("SAFE"),
        "{verdict}"
    );
    let unit_text = std::fs::read_to_string(unit).unwrap();
    for line in [
        "Type=notify",
        "StateDirectory=mailrestore",
        "RuntimeDirectory=mailrestore",
        "LoadCredential=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
    ] {
        assert!(unit_text.contains(line), "the unit lacks {line}");
    }
}
