//! The sandbox: real mail and DAV servers for tests, benches and the quickstart.
//!
//! [`Sandbox::start`] runs Dovecot (IMAP + LMTP), Radicale (CalDAV/CardDAV),
//! Postfix (SMTP, relaying into the sandbox Dovecot) and Xandikos (a second
//! DAV server) as child processes of the calling process, each on free
//! loopback ports, under one temp dir, from the configs in
//! `fixtures/servers/` (embedded with `include_str!`, so any working
//! directory does). Dropping a server (or the [`Sandbox`]) stops it: its whole
//! process group is terminated and reaped, also when a test panics.
//!
//! It also holds the independent test clients: [`raw_imap::RawImap`] (no
//! imap-codec inside, so it can check our IMAP code from outside) and
//! [`raw_http::RawHttp`].
//!
//! This crate is test support: `mailrestore` uses it only as a
//! dev-dependency (tests and benches), and the quickstart is its binary, so
//! none of it reaches the shipped `mailrestore` binary (a test checks that).
//!
//! Requirements: run as root (Dovecot switches to the `vmail` user, Postfix to
//! `postfix`) on a machine prepared by `scripts/install-deps.sh`. A missing
//! server is an error naming the Debian package, never a silent skip.
//!
//! Mail storage: Maildir under `<root>/dovecot/mail/<user>/Maildir`, by default
//! with `LAYOUT=fs` (a folder `a/b` is the directory `a/b`, so any name without
//! the separator is allowed, `.` included); [`MaildirLayout::MaildirPlusPlus`]
//! gives the classic `.a.b` layout instead.

pub mod daemon;
pub mod dav_seed;
pub mod demo;
mod dovecot;
pub mod fault_proxy;
mod ports;
mod postfix;
pub mod powerloss;
mod process;
mod radicale;
pub mod raw_http;
pub mod raw_imap;
mod template;
mod xandikos;

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use dovecot::{Dovecot, MaildirLayout};
pub use postfix::Postfix;
pub use radicale::Radicale;
pub use xandikos::Xandikos;

/// The account that the restore side logs in as: Dovecot master user and
/// Radicale account with read/write rights on every user's collections.
pub const RESTORE_ACCOUNT: &str = "restore";

/// How long a server may take to come up before start fails.
///
/// Generous: CI machines with two cores are often busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which servers to start and how to set them up.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Start Dovecot (IMAP and LMTP).
    pub dovecot: bool,
    /// Start Radicale (CalDAV and CardDAV, with authentication).
    pub radicale: bool,
    /// Start Postfix relaying `example.org` into the Dovecot LMTP listener;
    /// requires `dovecot`.
    pub postfix: bool,
    /// Start Xandikos (a second DAV server, no authentication).
    pub xandikos: bool,
    /// Mail and DAV users, e.g. `alice@example.org`. Each gets a password
    /// ([`Dovecot::user_password`]) and, in Radicale, a principal `/{user}/`.
    pub users: Vec<String>,
    /// Per-user storage quota for Dovecot (e.g. `"1M"`): enables the quota
    /// plugins so that an APPEND beyond it answers `NO [OVERQUOTA]`.
    pub quota: Option<String>,
    /// `false` sets `mail_fsync = never` (fast, test only); `true` keeps
    /// Dovecot's default `optimized`. Benches must say which they used.
    pub fsync: bool,
    /// Hierarchy separator of the inbox namespace (`/` or `.`).
    pub separator: char,
    /// Prefix of the inbox namespace: empty (the modern default) or e.g.
    /// `INBOX.` for a Courier-style layout. Must end with `separator`.
    pub prefix: String,
    /// On-disk Maildir layout.
    pub maildir_layout: MaildirLayout,
    /// Dovecot's `acl` plugin and a shared namespace `shared/USER/`, so that
    /// users can share folders with each other (`SETACL`).
    pub shared_folders: bool,
}

impl Default for SandboxOptions {
    /// Dovecot only; users alice, bob, carol and admin `@example.org`; no
    /// quota; no fsync; separator `/`, empty prefix, Maildir `LAYOUT=fs`.
    fn default() -> Self {
        SandboxOptions {
            dovecot: true,
            radicale: false,
            postfix: false,
            xandikos: false,
            users: ["alice", "bob", "carol", "admin"]
                .iter()
                .map(|name| format!("{name}@example.org"))
                .collect(),
            quota: None,
            fsync: false,
            separator: '/',
            prefix: String::new(),
            maildir_layout: MaildirLayout::Fs,
            shared_folders: false,
        }
    }
}

impl SandboxOptions {
    /// Every server: Dovecot, Radicale, Postfix and Xandikos.
    pub fn all() -> Self {
        SandboxOptions {
            radicale: true,
            postfix: true,
            xandikos: true,
            ..SandboxOptions::default()
        }
    }

    /// A Courier-style mail store: namespace prefix `INBOX.`, separator `.`,
    /// Maildir++ on disk.
    pub fn courier() -> Self {
        SandboxOptions {
            separator: '.',
            prefix: "INBOX.".to_owned(),
            maildir_layout: MaildirLayout::MaildirPlusPlus,
            ..SandboxOptions::default()
        }
    }

    fn validate(&self) -> Result<(), SandboxError> {
        let invalid = |why: String| Err(SandboxError::InvalidOptions(why));
        if self.postfix && !self.dovecot {
            return invalid("postfix delivers into the sandbox Dovecot: set dovecot too".into());
        }
        let mut seen = BTreeSet::new();
        for user in &self.users {
            // Dovecot lowercases login names (auth_username_format = %Lu).
            let bad_char = |c: char| {
                c.is_control() || c.is_whitespace() || c.is_uppercase() || ":\"\\/*".contains(c)
            };
            if user.is_empty() || user.chars().any(bad_char) || user.starts_with('.') {
                return invalid(format!(
                    "user name {user:?} must be non-empty, not start with `.` and hold no \
                     upper case, space, control character or any of : \" \\ / *"
                ));
            }
            if user == RESTORE_ACCOUNT {
                return invalid(format!(
                    "user name {user:?} is reserved for the restore account"
                ));
            }
            if !seen.insert(user.as_str()) {
                return invalid(format!("user {user:?} is listed twice"));
            }
        }
        if !self.separator.is_ascii_punctuation() || "\"\\#{}*%".contains(self.separator) {
            return invalid(format!(
                "separator {:?} must be ASCII punctuation other than \" \\ # {{ }} * %",
                self.separator
            ));
        }
        if !self.prefix.is_empty() && !self.prefix.ends_with(self.separator) {
            return invalid(format!(
                "prefix {:?} must be empty or end with the separator {:?}",
                self.prefix, self.separator
            ));
        }
        if !self.prefix.is_ascii()
            || self
                .prefix
                .chars()
                .any(|c| c.is_ascii_whitespace() || c == '"')
        {
            return invalid(format!(
                "prefix {:?} must be ASCII without spaces or quotes",
                self.prefix
            ));
        }
        if let Some(quota) = &self.quota {
            let digits = quota.trim_end_matches(['k', 'K', 'M', 'G', 'T', 'B']);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return invalid(format!("quota {quota:?} must look like 1M, 512k or 2G"));
            }
        }
        Ok(())
    }
}

/// Passwords of one sandbox: random per sandbox, derived per user.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    token: String,
}

impl Credentials {
    fn random() -> Self {
        // RandomState is seeded from the OS per instance: enough for
        // throw-away test passwords, and no extra dependency.
        let a = RandomState::new().hash_one(std::process::id());
        let b = RandomState::new().hash_one(std::time::SystemTime::now());
        Credentials {
            token: format!("{a:016x}{b:016x}"),
        }
    }

    /// The password of a mail/DAV user.
    pub(crate) fn user_password(&self, user: &str) -> String {
        format!("pw-{}-{user}", &self.token[..16])
    }

    /// The password of the restore account (Dovecot master user, Radicale admin).
    pub(crate) fn restore_password(&self) -> String {
        format!("restore-{}", &self.token[16..])
    }
}

/// Real servers on loopback ports under one temp dir; stopped on drop.
#[derive(Debug)]
pub struct Sandbox {
    /// Dovecot, when [`SandboxOptions::dovecot`].
    pub dovecot: Option<Dovecot>,
    /// Radicale, when [`SandboxOptions::radicale`].
    pub radicale: Option<Radicale>,
    /// Postfix, when [`SandboxOptions::postfix`].
    pub postfix: Option<Postfix>,
    /// Xandikos, when [`SandboxOptions::xandikos`].
    pub xandikos: Option<Xandikos>,
    // Declared last: dropped after the servers (they hold it too).
    root: Arc<tempfile::TempDir>,
}

impl Sandbox {
    /// Starts the servers `opts` asks for and waits until each answers.
    ///
    /// Dovecot (then Postfix, which points at Dovecot's LMTP port), Radicale
    /// and Xandikos start concurrently. On any failure the servers already up
    /// are stopped before the error returns.
    pub fn start(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
        opts.validate()?;
        process::become_subreaper();
        let root = Arc::new(make_root()?);
        let credentials = Credentials::random();

        let (mail, radicale, xandikos) = std::thread::scope(|scope| {
            let mail = scope.spawn(|| start_mail(&opts, &root, &credentials));
            let radicale = opts
                .radicale
                .then(|| scope.spawn(|| Radicale::start(&root, &opts.users, &credentials)));
            let xandikos = opts
                .xandikos
                .then(|| scope.spawn(|| Xandikos::start(&root)));
            (join(mail), radicale.map(join), xandikos.map(join))
        });
        // Every Ok value above is a running server; the `?`s below drop (and
        // so stop) the others when one failed.
        let radicale = radicale.transpose();
        let xandikos = xandikos.transpose();
        let (dovecot, postfix) = mail?;
        Ok(Sandbox {
            dovecot,
            postfix,
            radicale: radicale?,
            xandikos: xandikos?,
            root,
        })
    }

    /// The temp dir holding every server's config, data and logs.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The Dovecot server, or an error saying the sandbox was started without it.
    pub fn dovecot(&self) -> Result<&Dovecot, SandboxError> {
        self.dovecot
            .as_ref()
            .ok_or(SandboxError::NotStarted("dovecot"))
    }

    /// The Radicale server, or an error saying the sandbox was started without it.
    pub fn radicale(&self) -> Result<&Radicale, SandboxError> {
        self.radicale
            .as_ref()
            .ok_or(SandboxError::NotStarted("radicale"))
    }

    /// The Postfix server, or an error saying the sandbox was started without it.
    pub fn postfix(&self) -> Result<&Postfix, SandboxError> {
        self.postfix
            .as_ref()
            .ok_or(SandboxError::NotStarted("postfix"))
    }

    /// The Xandikos server, or an error saying the sandbox was started without it.
    pub fn xandikos(&self) -> Result<&Xandikos, SandboxError> {
        self.xandikos
            .as_ref()
            .ok_or(SandboxError::NotStarted("xandikos"))
    }

    /// The last lines of every server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let tails = [
            self.dovecot.as_ref().map(Dovecot::log_tail),
            self.postfix.as_ref().map(Postfix::log_tail),
            self.radicale.as_ref().map(Radicale::log_tail),
            self.xandikos.as_ref().map(Xandikos::log_tail),
        ];
        tails.into_iter().flatten().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Postfix first: it delivers into Dovecot.
        drop(self.postfix.take());
        drop(self.dovecot.take());
        drop(self.radicale.take());
        drop(self.xandikos.take());
    }
}

type MailServers = (Option<Dovecot>, Option<Postfix>);

fn start_mail(
    opts: &SandboxOptions,
    root: &Arc<tempfile::TempDir>,
    credentials: &Credentials,
) -> Result<MailServers, SandboxError> {
    if !opts.dovecot {
        return Ok((None, None));
    }
    let dovecot = Dovecot::start(root, opts, credentials)?;
    let postfix = if opts.postfix {
        Some(Postfix::start(root, dovecot.lmtp_port)?)
    } else {
        None
    };
    Ok((Some(dovecot), postfix))
}

fn join<T>(
    handle: std::thread::ScopedJoinHandle<'_, Result<T, SandboxError>>,
) -> Result<T, SandboxError> {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A temp dir under `/tmp` (short: Dovecot's unix sockets live below it and
/// `sun_path` holds 108 bytes), traversable by the unprivileged server users.
fn make_root() -> Result<tempfile::TempDir, SandboxError> {
    let root = tempfile::Builder::new()
        .prefix("mrsb-")
        .tempdir_in("/tmp")
        .map_err(|source| SandboxError::io("create the sandbox temp dir under /tmp", source))?;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).map_err(
        |source| SandboxError::io(format!("chmod 0755 {}", root.path().display()), source),
    )?;
    Ok(root)
}

/// Why the sandbox could not start or a sandbox helper failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A server program is not installed.
    #[error(
        "{program} not found: install the Debian package `{package}` \
         (scripts/install-deps.sh installs every server the tests need)"
    )]
    MissingProgram {
        /// What was looked for (a path or a program name).
        program: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A system user or group the servers run as does not exist.
    #[error(
        "system {kind} `{name}` does not exist: run scripts/install-deps.sh as root to create it"
    )]
    MissingAccount {
        /// `user` or `group`.
        kind: &'static str,
        /// The account name.
        name: String,
    },
    /// A server that switches users was asked for without root privileges.
    #[error("{server} in the sandbox must be started as root (it switches to unprivileged users)")]
    NotRoot {
        /// The server.
        server: &'static str,
    },
    /// The options contradict each other or hold an unusable value.
    #[error("invalid sandbox options: {0}")]
    InvalidOptions(String),
    /// The server was not part of this sandbox's options.
    #[error("the sandbox was started without {0}")]
    NotStarted(&'static str),
    /// The server process exited while starting up.
    #[error("{server} exited during start-up ({status}); last log lines:\n{log_tail}")]
    Exited {
        /// The server.
        server: &'static str,
        /// Its exit status.
        status: String,
        /// The end of its logs.
        log_tail: String,
    },
    /// The server did not answer in time.
    #[error("{server} did not answer on {what} within {waited:?}; last log lines:\n{log_tail}")]
    NotReady {
        /// The server.
        server: &'static str,
        /// What was polled (port and expected greeting).
        what: String,
        /// How long the harness waited.
        waited: Duration,
        /// The end of its logs.
        log_tail: String,
    },
    /// A helper command (e.g. doveadm) failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error and output.
        output: String,
    },
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A fixture template held a placeholder no value was given for.
    #[error("fixture {template}: no value for placeholder {{{{{placeholder}}}}}")]
    Template {
        /// The fixture file.
        template: &'static str,
        /// The placeholder left over.
        placeholder: String,
    },
}

impl SandboxError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_are_valid() {
        SandboxOptions::default().validate().unwrap();
        SandboxOptions::courier().validate().unwrap();
        SandboxOptions::all().validate().unwrap();
    }

    #[test]
    fn invalid_options_are_refused() {
        let cases = [
            SandboxOptions {
                dovecot: false,
                postfix: true,
                ..SandboxOptions::default()
            },
            SandboxOptions {
                users: vec!["a:b@example.org".into()],
                ..SandboxOptions::default()
            },
            SandboxOptions {
                users: vec!["Alice@example.org".into()],
                ..SandboxOptions::default()
            },
            SandboxOptions {
                users: vec![RESTORE_ACCOUNT.into()],
                ..SandboxOptions::default()
            },
            SandboxOptions {
                users: vec!["x@example.org".into(), "x@example.org".into()],
                ..SandboxOptions::default()
            },
            SandboxOptions {
                prefix: "INBOX.".into(),
                ..SandboxOptions::default()
            },
            SandboxOptions {
                separator: '"',
                ..SandboxOptions::default()
            },
            SandboxOptions {
                quota: Some("lots".into()),
                ..SandboxOptions::default()
            },
        ];
        for opts in cases {
            assert!(
                matches!(opts.validate(), Err(SandboxError::InvalidOptions(_))),
                "accepted {opts:?}"
            );
        }
    }

    #[test]
    fn passwords_differ_per_user_and_sandbox() {
        let a = Credentials::random();
        let b = Credentials::random();
        assert_ne!(
            a.user_password("alice@example.org"),
            a.user_password("bob@example.org")
        );
        assert_ne!(
            a.user_password("alice@example.org"),
            b.user_password("alice@example.org")
        );
        assert_ne!(a.restore_password(), b.restore_password());
    }
}
