//! A private Xandikos (a second CalDAV/CardDAV server) under the sandbox temp dir.
//!
//! No authentication; one principal, `/alice/`, with the default homes
//! `/alice/calendars/` and `/alice/contacts/` (`--defaults`). Layout under
//! `<root>/xandikos/`: `data/` and `xandikos.log`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::process::{self, ServerProcess};
use super::raw_http::RawHttp;
use super::{READY_TIMEOUT, SandboxError, ports};

const PACKAGE: &str = "xandikos";
/// The principal Xandikos serves.
const PRINCIPAL: &str = "/alice/";
const START_ATTEMPTS: usize = 3;

/// A running Xandikos; stopped on drop.
#[derive(Debug)]
pub struct Xandikos {
    /// Base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    /// The port.
    pub port: u16,
    /// The current-user principal, `/alice/`.
    pub principal: String,
    dir: PathBuf,
    process: ServerProcess,
    _root: Arc<tempfile::TempDir>,
}

impl Xandikos {
    pub(crate) fn start(root: &Arc<tempfile::TempDir>) -> Result<Xandikos, SandboxError> {
        let binary = process::find_program("xandikos", PACKAGE)?;
        let dir = root.path().join("xandikos");
        process::make_dir(&dir.join("data"), 0o755, None)?;
        let mut attempt = 0;
        let (process, port) = loop {
            attempt += 1;
            let port = ports::free_port()?;
            match spawn_and_wait(&binary, &dir, port) {
                Ok(process) => break (process, port),
                Err(error) if attempt < START_ATTEMPTS && ServerProcess::is_port_clash(&error) => {
                    continue;
                }
                Err(error) => return Err(error),
            }
        };
        Ok(Xandikos {
            url: format!("http://127.0.0.1:{port}"),
            port,
            principal: PRINCIPAL.to_owned(),
            dir,
            process,
            _root: Arc::clone(root),
        })
    }

    /// An HTTP client for this server (no authentication needed).
    pub fn client(&self) -> RawHttp {
        RawHttp::new("127.0.0.1", self.port)
    }

    /// Xandikos's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The process group of every Xandikos process (for leak checks).
    pub fn process_group(&self) -> u32 {
        self.process.process_group()
    }

    /// The whole log so far (requests are logged at `info`).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("xandikos.log")).unwrap_or_default())
            .into_owned()
    }

    /// The last lines of Xandikos's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

fn spawn_and_wait(binary: &Path, dir: &Path, port: u16) -> Result<ServerProcess, SandboxError> {
    let mut command = Command::new(binary);
    command
        .arg("-d")
        .arg(dir.join("data"))
        .args([
            "--defaults",
            "--current-user-principal",
            PRINCIPAL,
            "-l",
            "127.0.0.1",
            "-p",
        ])
        .arg(port.to_string())
        .current_dir(dir);
    let mut process = ServerProcess::spawn("xandikos", command, &dir.join("xandikos.log"), vec![])?;
    process.wait_ready(&format!("HTTP 127.0.0.1:{port}"), READY_TIMEOUT, || {
        ports::answers_http(port)
    })?;
    Ok(process)
}
