//! A private Radicale 3.1 (CalDAV + CardDAV) under the sandbox temp dir.
//!
//! Layout under `<root>/radicale/`: `config` and `rights` (rendered from
//! `fixtures/servers/radicale.conf` and `radicale-rights`), `users`
//! (htpasswd, plain), `collections/collection-root/<user>/` (each user's
//! principal collection, created before start so that the restore account
//! can reach it before the user ever logged in), `radicale.log`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::process::{self, ServerProcess};
use super::raw_http::RawHttp;
use super::{Credentials, READY_TIMEOUT, RESTORE_ACCOUNT, SandboxError, ports, template};

const CONFIG_TEMPLATE: &str = include_str!("../../fixtures/servers/radicale.conf");
const RIGHTS_TEMPLATE: &str = include_str!("../../fixtures/servers/radicale-rights");
const PACKAGE: &str = "radicale";
/// Debian's interpreter: a pyenv `python3` earlier in PATH lacks the module.
const PYTHON: &str = "/usr/bin/python3";
/// Where Debian's `python3-radicale` puts the module.
const MODULE_DIR: &str = "/usr/lib/python3/dist-packages/radicale";
const START_ATTEMPTS: usize = 3;

/// A running Radicale; stopped on drop.
#[derive(Debug)]
pub struct Radicale {
    /// Base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    /// The port.
    pub port: u16,
    /// The account with read/write rights on every user's collections.
    pub admin_user: String,
    /// Its password.
    pub admin_password: String,
    dir: PathBuf,
    passwords: BTreeMap<String, String>,
    process: ServerProcess,
    _root: Arc<tempfile::TempDir>,
}

impl Radicale {
    pub(crate) fn start(
        root: &Arc<tempfile::TempDir>,
        users: &[String],
        credentials: &Credentials,
    ) -> Result<Radicale, SandboxError> {
        let python = process::find_program(PYTHON, PACKAGE)?;
        if !Path::new(MODULE_DIR).is_dir() {
            return Err(SandboxError::MissingProgram {
                program: format!("the python3 module radicale ({MODULE_DIR})"),
                package: PACKAGE,
            });
        }
        let dir = root.path().join("radicale");
        for user in users {
            process::make_dir(
                &dir.join("collections/collection-root").join(user),
                0o755,
                None,
            )?;
        }
        let passwords: BTreeMap<String, String> = users
            .iter()
            .map(|user| (user.clone(), credentials.user_password(user)))
            .collect();
        let admin_password = credentials.restore_password();
        let htpasswd: String = passwords
            .iter()
            .chain([(&RESTORE_ACCOUNT.to_owned(), &admin_password)])
            .map(|(user, password)| format!("{user}:{password}\n"))
            .collect();
        process::write_file(&dir.join("users"), htpasswd.as_bytes(), 0o600)?;
        let rights = template::render(
            "fixtures/servers/radicale-rights",
            RIGHTS_TEMPLATE,
            &[("admin_user", RESTORE_ACCOUNT)],
        )?;
        process::write_file(&dir.join("rights"), rights.as_bytes(), 0o644)?;

        let mut attempt = 0;
        let (process, port) = loop {
            attempt += 1;
            let port = ports::free_port()?;
            let config = template::render(
                "fixtures/servers/radicale.conf",
                CONFIG_TEMPLATE,
                &[
                    ("dir", &dir.display().to_string()),
                    ("port", &port.to_string()),
                ],
            )?;
            process::write_file(&dir.join("config"), config.as_bytes(), 0o644)?;
            match spawn_and_wait(&python, &dir, port) {
                Ok(process) => break (process, port),
                Err(error) if attempt < START_ATTEMPTS && ServerProcess::is_port_clash(&error) => {
                    continue;
                }
                Err(error) => return Err(error),
            }
        };
        Ok(Radicale {
            url: format!("http://127.0.0.1:{port}"),
            port,
            admin_user: RESTORE_ACCOUNT.to_owned(),
            admin_password,
            dir,
            passwords,
            process,
            _root: Arc::clone(root),
        })
    }

    /// The password of `user` (one of the sandbox users).
    ///
    /// # Panics
    /// When `user` is not a sandbox user: a test bug.
    pub fn user_password(&self, user: &str) -> String {
        match self.passwords.get(user) {
            Some(password) => password.clone(),
            None => panic!("{user:?} is not a sandbox user"),
        }
    }

    /// The principal (= calendar home = address book home) of `user`: `/{user}/`.
    pub fn principal(&self, user: &str) -> String {
        format!("/{user}/")
    }

    /// An HTTP client authenticated as the restore account.
    pub fn admin_client(&self) -> RawHttp {
        RawHttp::new("127.0.0.1", self.port).with_basic_auth(&self.admin_user, &self.admin_password)
    }

    /// An HTTP client authenticated as `user`.
    pub fn user_client(&self, user: &str) -> RawHttp {
        RawHttp::new("127.0.0.1", self.port).with_basic_auth(user, &self.user_password(user))
    }

    /// Radicale's storage folder (`collection-root/` is below it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.join("collections")
    }

    /// The process group of every Radicale process (for leak checks).
    pub fn process_group(&self) -> u32 {
        self.process.process_group()
    }

    /// The whole log so far (requests are logged at `info`).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("radicale.log")).unwrap_or_default())
            .into_owned()
    }

    /// The last lines of Radicale's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

fn spawn_and_wait(python: &Path, dir: &Path, port: u16) -> Result<ServerProcess, SandboxError> {
    let mut command = Command::new(python);
    command
        .args(["-m", "radicale", "--config"])
        .arg(dir.join("config"))
        .current_dir(dir)
        .env_remove("RADICALE_CONFIG")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME");
    let mut process = ServerProcess::spawn("radicale", command, &dir.join("radicale.log"), vec![])?;
    process.wait_ready(&format!("HTTP 127.0.0.1:{port}"), READY_TIMEOUT, || {
        ports::answers_http(port)
    })?;
    Ok(process)
}
