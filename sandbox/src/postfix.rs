//! A private Postfix 3.7 (SMTP) under the sandbox temp dir, relaying
//! `example.org` into the sandbox Dovecot's LMTP listener.
//!
//! Layout under `<root>/postfix/`: `etc/main.cf` and `etc/master.cf`
//! (rendered from `fixtures/servers/postfix-*.cf`), `queue/`, `data/`,
//! `maillog` (written by postlogd: there is no syslog) and `master.log`.
//!
//! The alternate config directory: Postfix insists that a non-default
//! `config_directory` be listed in `alternate_config_directories` of the
//! default `/etc/postfix/main.cf` only for set-gid commands run by non-root
//! users. The harness runs as root and starts the `master` daemon directly
//! (`master -d -c <root>/postfix/etc`: `-d` keeps it in our process group, so
//! dropping kills every Postfix process), so any number of parallel instances
//! with random temp dirs work with no entry in `/etc/postfix/main.cf` (which
//! need not even exist). The queue directories, normally made by
//! `postfix check`, are created here with Postfix's owners and modes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::process::{self, ServerProcess};
use super::{READY_TIMEOUT, SandboxError, ports, template};

const MAIN_TEMPLATE: &str = include_str!("../../fixtures/servers/postfix-main.cf");
const MASTER_TEMPLATE: &str = include_str!("../../fixtures/servers/postfix-master.cf");
const PACKAGE: &str = "postfix";
/// Debian's `daemon_directory`.
const MASTER: &str = "/usr/lib/postfix/sbin/master";
/// The mail domain relayed into Dovecot.
const DOMAIN: &str = "example.org";
const START_ATTEMPTS: usize = 3;

/// Queue subdirectories owned by `postfix:root`, mode 0700 (from Postfix's
/// `postfix-files`).
const PRIVATE_QUEUE_DIRS: [&str; 11] = [
    "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private",
    "saved", "trace",
];

/// A running Postfix; stopped on drop.
#[derive(Debug)]
pub struct Postfix {
    /// Where it listens: `127.0.0.1`.
    pub host: String,
    /// The SMTP port (no TLS, no auth; relays for 127.0.0.0/8).
    pub smtp_port: u16,
    /// The domain it delivers into Dovecot over LMTP: `example.org`.
    pub domain: String,
    dir: PathBuf,
    process: ServerProcess,
    _root: Arc<tempfile::TempDir>,
}

impl Postfix {
    pub(crate) fn start(
        root: &Arc<tempfile::TempDir>,
        lmtp_port: u16,
    ) -> Result<Postfix, SandboxError> {
        process::require_root("postfix")?;
        let master = process::find_program(MASTER, PACKAGE)?;
        let dir = root.path().join("postfix");
        make_queue(&dir)?;
        let main = template::render(
            "fixtures/servers/postfix-main.cf",
            MAIN_TEMPLATE,
            &[
                ("dir", &dir.display().to_string()),
                ("virtual_domains", DOMAIN),
                ("lmtp_port", &lmtp_port.to_string()),
            ],
        )?;
        write_config(&dir.join("etc/main.cf"), &main)?;

        let mut attempt = 0;
        let (process, smtp_port) = loop {
            attempt += 1;
            let port = ports::free_port()?;
            let master_cf = template::render(
                "fixtures/servers/postfix-master.cf",
                MASTER_TEMPLATE,
                &[("smtp_port", &port.to_string())],
            )?;
            write_config(&dir.join("etc/master.cf"), &master_cf)?;
            match spawn_and_wait(&master, &dir, port) {
                Ok(process) => break (process, port),
                Err(error) if attempt < START_ATTEMPTS && ServerProcess::is_port_clash(&error) => {
                    continue;
                }
                Err(error) => return Err(error),
            }
        };
        Ok(Postfix {
            host: "127.0.0.1".to_owned(),
            smtp_port,
            domain: DOMAIN.to_owned(),
            dir,
            process,
            _root: Arc::clone(root),
        })
    }

    /// The queue directory (`deferred/` holds what could not be delivered).
    pub fn queue_dir(&self) -> PathBuf {
        self.dir.join("queue")
    }

    /// The process group of every Postfix process (for leak checks).
    pub fn process_group(&self) -> u32 {
        self.process.process_group()
    }

    /// The last lines of Postfix's maillog and the master's output.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// Writes a config file with an mtime in the past. Postfix reads a file
/// changed within the last second again and again, 300 ms apart, until it is
/// older ("let it cool down", against half-written files): a fresh main.cf
/// would cost each start up to 1.5 s.
fn write_config(path: &Path, text: &str) -> Result<(), SandboxError> {
    process::write_file(path, text.as_bytes(), 0o644)?;
    let past = SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(past))
        .map_err(|e| SandboxError::io(format!("backdate {}", path.display()), e))
}

/// The config, queue and data directories with Postfix's owners and modes.
fn make_queue(dir: &Path) -> Result<(), SandboxError> {
    let (postfix_uid, postfix_gid) = process::system_user("postfix")?;
    let postdrop_gid = process::system_group("postdrop")?;
    process::make_dir(&dir.join("etc"), 0o755, Some((0, 0)))?;
    let queue = dir.join("queue");
    process::make_dir(&queue, 0o755, Some((0, 0)))?;
    for name in PRIVATE_QUEUE_DIRS {
        process::make_dir(&queue.join(name), 0o700, Some((postfix_uid, 0)))?;
    }
    process::make_dir(
        &queue.join("maildrop"),
        0o730,
        Some((postfix_uid, postdrop_gid)),
    )?;
    process::make_dir(
        &queue.join("public"),
        0o710,
        Some((postfix_uid, postdrop_gid)),
    )?;
    process::make_dir(&queue.join("pid"), 0o755, Some((0, 0)))?;
    process::make_dir(&dir.join("data"), 0o700, Some((postfix_uid, postfix_gid)))
}

fn spawn_and_wait(master: &Path, dir: &Path, port: u16) -> Result<ServerProcess, SandboxError> {
    let mut command = Command::new(master);
    command
        .arg("-d")
        .arg("-c")
        .arg(dir.join("etc"))
        .current_dir(dir.join("queue"))
        .env("MAIL_CONFIG", dir.join("etc"));
    let mut process = ServerProcess::spawn(
        "postfix",
        command,
        &dir.join("master.log"),
        vec![dir.join("maillog")],
    )?;
    process.wait_ready(&format!("SMTP 127.0.0.1:{port}"), READY_TIMEOUT, || {
        ports::greets(port, "220 ")
    })?;
    Ok(process)
}
