//! A private Dovecot 2.3 (IMAP + LMTP) under the sandbox temp dir.
//!
//! Layout under `<root>/dovecot/`: `dovecot.conf` (rendered from
//! `fixtures/servers/dovecot.conf`), `users` and `master-users`
//! (passwd-file, `{PLAIN}`), `run/` (base_dir: sockets), `state/`,
//! `dovecot.log`, `stderr.log`, and `mail/<user>/Maildir` owned by `vmail`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::process::{self, ServerProcess};
use super::raw_imap::{ImapError, RawImap};
use super::{
    Credentials, READY_TIMEOUT, RESTORE_ACCOUNT, SandboxError, SandboxOptions, ports, template,
};

const CONFIG_TEMPLATE: &str = include_str!("../../fixtures/servers/dovecot.conf");
const PACKAGE: &str = "dovecot-imapd";
/// The unprivileged user that owns the mail.
const MAIL_USER: &str = "vmail";
/// Start attempts when another process grabs a probed port first.
const START_ATTEMPTS: usize = 3;

/// How Maildir folders are laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaildirLayout {
    /// `LAYOUT=fs`: folder `a/b` is the directory `Maildir/a/b`; any name
    /// without the separator works, `.` included.
    Fs,
    /// Maildir++: folder `a/b` is `Maildir/.a.b`; names must not hold `.`.
    MaildirPlusPlus,
}

/// A running Dovecot; stopped (process group killed and reaped) on drop.
#[derive(Debug)]
pub struct Dovecot {
    /// Where it listens: `127.0.0.1`.
    pub host: String,
    /// The IMAP port (plaintext; loopback only).
    pub imap_port: u16,
    /// The LMTP port.
    pub lmtp_port: u16,
    /// The master user: `user*restore` logs in as `user`.
    pub master_user: String,
    /// The master user's password.
    pub master_password: String,
    /// The inbox namespace's hierarchy separator.
    pub separator: char,
    /// The inbox namespace's prefix (`""` or e.g. `INBOX.`).
    pub prefix: String,
    dir: PathBuf,
    passwords: BTreeMap<String, String>,
    // Declared before `_root`: the server stops before the temp dir goes.
    process: ServerProcess,
    _root: Arc<tempfile::TempDir>,
}

impl Dovecot {
    /// Deletes a user's whole mailbox (as an operator deleting the
    /// account does); the next login makes a new, empty one.
    pub fn delete_mailbox(&self, user: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.dir.join("mail").join(user)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub(crate) fn start(
        root: &Arc<tempfile::TempDir>,
        opts: &SandboxOptions,
        credentials: &Credentials,
    ) -> Result<Dovecot, SandboxError> {
        process::require_root("dovecot")?;
        let binary = process::find_program("/usr/sbin/dovecot", PACKAGE)?;
        process::find_program("/usr/lib/dovecot/lmtp", "dovecot-lmtpd")?;
        let (mail_uid, mail_gid) = process::system_user(MAIL_USER)?;
        let dir = root.path().join("dovecot");
        process::make_dir(&dir, 0o755, None)?;
        process::make_dir(&dir.join("mail"), 0o755, Some((mail_uid, mail_gid)))?;

        let passwords: BTreeMap<String, String> = opts
            .users
            .iter()
            .map(|user| (user.clone(), credentials.user_password(user)))
            .collect();
        let master_password = credentials.restore_password();
        write_passwd_file(&dir.join("users"), &passwords)?;
        write_passwd_file(
            &dir.join("master-users"),
            &BTreeMap::from([(RESTORE_ACCOUNT.to_owned(), master_password.clone())]),
        )?;

        let mut attempt = 0;
        let (process, [imap_port, lmtp_port]) = loop {
            attempt += 1;
            let ports = ports::free_ports::<2>()?;
            let config = render_config(&dir, opts, ports, (mail_uid, mail_gid))?;
            process::write_file(&dir.join("dovecot.conf"), config.as_bytes(), 0o644)?;
            match spawn_and_wait(&binary, &dir, ports) {
                Ok(process) => break (process, ports),
                Err(error) if attempt < START_ATTEMPTS && ServerProcess::is_port_clash(&error) => {
                    continue;
                }
                Err(error) => return Err(error),
            }
        };
        Ok(Dovecot {
            host: "127.0.0.1".to_owned(),
            imap_port,
            lmtp_port,
            master_user: RESTORE_ACCOUNT.to_owned(),
            master_password,
            separator: opts.separator,
            prefix: opts.prefix.clone(),
            dir,
            passwords,
            process,
            _root: Arc::clone(root),
        })
    }

    /// The password of `user` (one of [`SandboxOptions::users`]).
    ///
    /// # Panics
    /// When `user` is not a sandbox user: a test bug.
    pub fn user_password(&self, user: &str) -> String {
        match self.passwords.get(user) {
            Some(password) => password.clone(),
            None => panic!("{user:?} is not a sandbox user (users: {:?})", self.users()),
        }
    }

    /// The sandbox users, sorted.
    pub fn users(&self) -> Vec<String> {
        self.passwords.keys().cloned().collect()
    }

    /// Runs `doveadm -c <this config> args…` and returns its standard output.
    pub fn doveadm(&self, args: &[&str]) -> Result<String, SandboxError> {
        let binary = process::find_program("/usr/bin/doveadm", "dovecot-core")?;
        let config = self.config_path();
        let output = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .args(args)
            .output()
            .map_err(|e| SandboxError::io(format!("run {}", binary.display()), e))?;
        if !output.status.success() {
            return Err(SandboxError::CommandFailed {
                command: format!("doveadm -c {} {}", config.display(), args.join(" ")),
                status: output.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stderr),
                    String::from_utf8_lossy(&output.stdout)
                ),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The process group of every Dovecot process (for leak checks).
    pub fn process_group(&self) -> u32 {
        self.process.process_group()
    }

    /// The last lines of Dovecot's log and standard error.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// The rendered `dovecot.conf`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("dovecot.conf")
    }

    /// The user's Maildir (INBOX; other folders below it). Exists once the
    /// user has logged in or received mail.
    pub fn mail_dir(&self, user: &str) -> PathBuf {
        self.dir.join("mail").join(user).join("Maildir")
    }

    /// An IMAP connection logged in as `user` with their own password.
    pub fn login(&self, user: &str) -> Result<RawImap, ImapError> {
        let mut imap = RawImap::connect(&self.host, self.imap_port)?;
        imap.login(user, &self.user_password(user))?;
        Ok(imap)
    }

    /// An IMAP connection logged in as `user` through the master user
    /// (`user*restore`).
    pub fn login_master(&self, user: &str) -> Result<RawImap, ImapError> {
        let mut imap = RawImap::connect(&self.host, self.imap_port)?;
        imap.login_master(user, &self.master_user, &self.master_password)?;
        Ok(imap)
    }
}

fn spawn_and_wait(
    binary: &Path,
    dir: &Path,
    [imap_port, lmtp_port]: [u16; 2],
) -> Result<ServerProcess, SandboxError> {
    let mut command = Command::new(binary);
    command
        .arg("-F")
        .arg("-c")
        .arg(dir.join("dovecot.conf"))
        .current_dir(dir);
    let mut process = ServerProcess::spawn(
        "dovecot",
        command,
        &dir.join("stderr.log"),
        vec![dir.join("dovecot.log")],
    )?;
    let what = format!("IMAP 127.0.0.1:{imap_port} and LMTP 127.0.0.1:{lmtp_port}");
    process.wait_ready(&what, READY_TIMEOUT, || {
        ports::greets(imap_port, "* OK") && ports::greets(lmtp_port, "220 ")
    })?;
    Ok(process)
}

fn render_config(
    dir: &Path,
    opts: &SandboxOptions,
    [imap_port, lmtp_port]: [u16; 2],
    (mail_uid, mail_gid): (u32, u32),
) -> Result<String, SandboxError> {
    let dir_text = dir.display().to_string();
    let mail_root = dir.join("mail").display().to_string();
    let instance_name = format!("mrsb-{imap_port}");
    let mail_location = match opts.maildir_layout {
        MaildirLayout::Fs => "maildir:~/Maildir:LAYOUT=fs",
        MaildirLayout::MaildirPlusPlus => "maildir:~/Maildir",
    };
    let (mut mail_plugins, mut imap_mail_plugins, mut plugin_settings) = match &opts.quota {
        Some(limit) => (
            "quota".to_string(),
            "imap_quota".to_string(),
            format!("  quota = maildir:User quota\n  quota_rule = *:storage={limit}"),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    let mut shared_namespace = String::new();
    if opts.shared_folders {
        mail_plugins.push_str(" acl");
        imap_mail_plugins.push_str(" imap_acl");
        plugin_settings.push_str(&format!(
            // A master login is checked against the user's own rights.
            "\n  acl = vfile\n  acl_shared_dict = file:{mail_root}/shared-mailboxes.db\n  acl_user = %u"
        ));
        shared_namespace = format!(
            "namespace shared {{\n  type = shared\n  separator = {sep}\n  prefix = shared{sep}%%u{sep}\n  location = {mail_location}:INDEX=~/shared/%%u\n  subscriptions = no\n  list = children\n}}\n# The imap process looks up the sharing user's home.\nservice auth {{\n  unix_listener auth-userdb {{\n    mode = 0777\n  }}\n}}\n",
            sep = opts.separator,
            mail_location = mail_location.replace('~', "%%h"),
        );
    }
    let separator = opts.separator.to_string();
    let (uid, gid) = (mail_uid.to_string(), mail_gid.to_string());
    let (imap, lmtp) = (imap_port.to_string(), lmtp_port.to_string());
    template::render(
        "fixtures/servers/dovecot.conf",
        CONFIG_TEMPLATE,
        &[
            ("dir", &dir_text),
            ("instance_name", &instance_name),
            ("mail_user", MAIL_USER),
            ("mail_group", MAIL_USER),
            ("mail_uid", &uid),
            ("mail_gid", &gid),
            ("mail_root", &mail_root),
            ("mail_location", mail_location),
            ("mail_fsync", if opts.fsync { "optimized" } else { "never" }),
            ("mail_plugins", mail_plugins.trim()),
            ("imap_mail_plugins", imap_mail_plugins.trim()),
            ("plugin_settings", &plugin_settings),
            ("shared_namespace", &shared_namespace),
            ("separator", &separator),
            ("prefix", &opts.prefix),
            ("imap_port", &imap),
            ("lmtp_port", &lmtp),
        ],
    )
}

/// A passwd-file: `user:{PLAIN}password::::::` per line. Readable by the
/// `dovecot` user the auth process runs as (test passwords only).
fn write_passwd_file(
    path: &Path,
    passwords: &BTreeMap<String, String>,
) -> Result<(), SandboxError> {
    let text: String = passwords
        .iter()
        .map(|(user, password)| format!("{user}:{{PLAIN}}{password}::::::\n"))
        .collect();
    process::write_file(path, text.as_bytes(), 0o644)
}
