//! The configuration file (TOML; README "Configuration" lists every key):
//! parsed, checked and turned into a validated [`Config`].
//!
//! Every problem is collected and reported at once, each naming its key
//! (`imap.port: expected an integer from 1 to 65535, found "x"`); unknown keys
//! are refused, never ignored. This module reads secret files (through
//! [`crate::secret`]) but opens no socket.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::time::TimeZone;

use crate::secret::{Secret, read_secret_file};

/// Where the daemon and the CLI look when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mailrestore/config.toml";

/// How a connection to a remote server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain TCP; allowed only to loopback addresses.
    None,
    /// Plain TCP upgraded with STARTTLS before login.
    StartTls,
    /// TLS from the first byte.
    Tls,
}

/// How the master user logs in for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterLogin {
    /// `LOGIN "user<sep>master" password` (Dovecot's `auth_master_user_separator`).
    Separator(String),
    /// `AUTHENTICATE PLAIN` with the user as authorization identity.
    SaslPlain,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The index and the blob store.
    pub state_dir: PathBuf,
    /// For folder names and `?date=`.
    pub timezone: TimeZone,
    /// The Unix-socket API.
    pub api: ApiConfig,
    /// The live IMAP server.
    pub imap: ImapConfig,
    /// The live CalDAV/CardDAV server, when configured.
    pub dav: Option<DavConfig>,
    /// The SMTP relay for notifications, when configured.
    pub smtp: Option<SmtpConfig>,
    /// Notification mail settings.
    pub notify: NotifyConfig,
    /// When restore points are taken, and of whom.
    pub schedule: ScheduleConfig,
    /// Which restore points are kept.
    pub retention: RetentionConfig,
    /// How restores are made.
    pub restore: RestoreConfig,
}

/// `[api]`
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The socket path.
    pub socket: PathBuf,
    /// Peer uids let in (SO_PEERCRED).
    pub allowed_uids: Vec<u32>,
    /// Permission bits of the socket file.
    pub socket_mode: u32,
    /// Group of the socket file (so a panel's group may connect).
    pub socket_group: Option<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// A client must send its whole request within this time.
    pub request_timeout: Duration,
}

/// `[imap]`
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Transport protection.
    pub security: Security,
    /// Extra CA certificates (PEM) trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// The master user acting for each user.
    pub master_user: String,
    /// Its password (read from `master_password_file`).
    pub master_password: Secret<String>,
    /// How the master user logs in.
    pub login: MasterLogin,
    /// Connections used in parallel for one job.
    pub connections: usize,
    /// Timeout for connecting and for each server answer.
    pub timeout: Duration,
    /// Longest one response (a FETCH of one message, a tagged answer) may
    /// take to arrive whole, plus 1 s per MiB it carries: a server that
    /// trickles bytes fails at this deadline, not never.
    pub response_timeout: Duration,
}

/// `[dav]`
#[derive(Debug, Clone)]
pub struct DavConfig {
    /// Base URL of the server.
    pub url: String,
    /// Principal path template, `{user}` replaced by the (percent-encoded) user.
    pub principal: String,
    /// The account with rights on every user's collections.
    pub user: String,
    /// Its password.
    pub password: Secret<String>,
    /// Extra CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Timeout for each request.
    pub timeout: Duration,
}

/// `[smtp]`
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Relay host.
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// Transport protection.
    pub security: Security,
    /// Extra CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Sender address of notifications.
    pub from: String,
    /// Optional SMTP AUTH user.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<Secret<String>>,
    /// Timeout for each SMTP step.
    pub timeout: Duration,
}

/// Notification language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// English.
    En,
    /// French.
    Fr,
}

/// `[notify]`
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Language of the notification mail.
    pub language: Language,
    /// Addresses that receive every notification besides the user and `requested_by`.
    pub admin_addresses: Vec<String>,
}

/// `[schedule]`
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Time between two rounds; `None` disables scheduled snapshots.
    pub interval: Option<Duration>,
    /// The users, as listed.
    pub users: Vec<String>,
    /// Or a command printing one user per line.
    pub users_command: Option<String>,
    /// Snapshots running at once.
    pub concurrency: usize,
    /// How long a round takes to queue every user's snapshot (default: half
    /// the interval), so they do not all start at once.
    pub spread: Duration,
    /// Delay of the first round after start.
    pub first_round_after: Duration,
}

/// `[retention]`: keep the newest point in each of the last N periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Hours.
    pub hourly: u32,
    /// Days.
    pub daily: u32,
    /// Weeks.
    pub weekly: u32,
    /// Months.
    pub monthly: u32,
}

/// `[restore]`
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    /// strftime template of the target folder name.
    pub folder_template: String,
}

/// Every problem found in a configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file, when there is one.
    pub path: Option<PathBuf>,
    /// One line per problem, each naming its key.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "invalid configuration {}:", p.display())?,
            None => write!(f, "invalid configuration:")?,
        }
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Whether secret files are read while loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Read and check them (the daemon, offline commands).
    Read,
    /// Leave them unread (client commands, which only need the socket path).
    Skip,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: Some(path.to_owned()),
            problems: vec![format!("cannot read the file: {e}")],
        })?;
        Self::parse(&text, secrets).map_err(|mut e| {
            e.path = Some(path.to_owned());
            e
        })
    }

    /// Validates configuration text.
    pub fn parse(text: &str, secrets: Secrets) -> Result<Config, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            path: None,
            problems: vec![format!("not valid TOML: {}", e.message().trim())],
        })?;
        let mut problems = Vec::new();
        let config = {
            let mut root = Section::new("", &table, &mut problems);
            let state_dir = root
                .path("state_dir")
                .unwrap_or("/var/lib/mailrestore".into());
            let timezone = root.timezone("timezone");
            let api = root.section("api", parse_api);
            let imap = root.required_section("imap", |s| parse_imap(s, secrets));
            let dav = root.optional_section("dav", |s| parse_dav(s, secrets));
            let smtp = root.optional_section("smtp", |s| parse_smtp(s, secrets));
            let notify = root.section("notify", parse_notify);
            let schedule = root.section("schedule", parse_schedule);
            let retention = root.section("retention", parse_retention);
            let restore = root.section("restore", parse_restore);
            root.finish();
            (
                state_dir, timezone, api, imap, dav, smtp, notify, schedule, retention, restore,
            )
        };
        match config {
            (
                state_dir,
                Some(timezone),
                Some(api),
                Some(imap),
                Some(dav),
                Some(smtp),
                Some(notify),
                Some(schedule),
                Some(retention),
                Some(restore),
            ) if problems.is_empty() => Ok(Config {
                state_dir,
                timezone,
                api,
                imap,
                dav,
                smtp,
                notify,
                schedule,
                retention,
                restore,
            }),
            _ => Err(ConfigError {
                path: None,
                problems,
            }),
        }
    }
}

fn parse_api(s: &mut Section) -> Option<ApiConfig> {
    let socket = s
        .path("socket")
        .unwrap_or("/run/mailrestore/api.sock".into());
    let allowed_uids = s.u32_list("allowed_uids").unwrap_or_else(|| vec![0]);
    let socket_mode = match s.string("socket_mode") {
        None => 0o660,
        Some(m) => match u32::from_str_radix(&m, 8) {
            Ok(v) if v & !0o770 == 0 => v,
            _ => {
                s.problem(
                    "socket_mode",
                    format!("expected octal permission bits for owner and group only, such as \"0660\", found {m:?}"),
                );
                0o660
            }
        },
    };
    let socket_group = s.string("socket_group");
    let max_body_bytes = s.integer("max_body_bytes", 1, 16 << 20).unwrap_or(64 << 10) as usize;
    let request_timeout = s
        .duration("request_timeout")
        .unwrap_or(Duration::from_secs(10));
    Some(ApiConfig {
        socket,
        allowed_uids,
        socket_mode,
        socket_group,
        max_body_bytes,
        request_timeout,
    })
}

fn parse_imap(s: &mut Section, secrets: Secrets) -> Option<ImapConfig> {
    let host = s.string("host").unwrap_or_else(|| "127.0.0.1".into());
    let security = s.security("security").unwrap_or(Security::None);
    let default_port = if security == Security::Tls { 993 } else { 143 };
    let port = s.port("port").unwrap_or(default_port);
    s.check_plaintext_host("security", &host, security);
    let ca_file = s.path("ca_file");
    let master_user = s.required_string("master_user");
    let master_password = s.secret("master_password_file", secrets, true);
    let login = match s.string("login").as_deref() {
        None | Some("master_separator") => {
            let sep = s.string("master_separator").unwrap_or_else(|| "*".into());
            if sep.is_empty() || sep.chars().any(|c| c.is_whitespace() || c.is_control()) {
                s.problem(
                    "master_separator",
                    "must be a non-empty string without spaces",
                );
            }
            MasterLogin::Separator(sep)
        }
        Some("sasl_plain") => MasterLogin::SaslPlain,
        Some(other) => {
            s.problem(
                "login",
                format!("expected \"master_separator\" or \"sasl_plain\", found {other:?}"),
            );
            MasterLogin::SaslPlain
        }
    };
    let connections = s.integer("connections", 1, 16).unwrap_or(4) as usize;
    let timeout = s.duration("timeout").unwrap_or(Duration::from_secs(60));
    let response_timeout = s
        .duration("response_timeout")
        .unwrap_or(Duration::from_secs(300));
    Some(ImapConfig {
        host,
        port,
        security,
        ca_file,
        master_user: master_user?,
        master_password: master_password?,
        login,
        connections,
        timeout,
        response_timeout,
    })
}

fn parse_dav(s: &mut Section, secrets: Secrets) -> Option<DavConfig> {
    let url = s.required_string("url");
    if let Some(u) = &url {
        match parse_http_url(u) {
            Some((scheme, host, _)) => {
                let security = if scheme == "https" {
                    Security::Tls
                } else {
                    Security::None
                };
                s.check_plaintext_host("url", &host, security);
            }
            None => s.problem(
                "url",
                format!("expected an http:// or https:// URL, found {u:?}"),
            ),
        }
    }
    let principal = s.string("principal").unwrap_or_else(|| "/{user}/".into());
    if !principal.starts_with('/') || !principal.contains("{user}") {
        s.problem(
            "principal",
            format!("expected a path starting with / and holding {{user}}, found {principal:?}"),
        );
    }
    let user = s.required_string("user");
    let password = s.secret("password_file", secrets, true);
    let ca_file = s.path("ca_file");
    let timeout = s.duration("timeout").unwrap_or(Duration::from_secs(60));
    Some(DavConfig {
        url: url?.trim_end_matches('/').to_string(),
        principal,
        user: user?,
        password: password?,
        ca_file,
        timeout,
    })
}

fn parse_smtp(s: &mut Section, secrets: Secrets) -> Option<SmtpConfig> {
    let host = s.string("host").unwrap_or_else(|| "127.0.0.1".into());
    let security = s.security("security").unwrap_or(Security::None);
    let default_port = match security {
        Security::Tls => 465,
        Security::StartTls => 587,
        Security::None => 25,
    };
    let port = s.port("port").unwrap_or(default_port);
    s.check_plaintext_host("security", &host, security);
    let ca_file = s.path("ca_file");
    let from = s.required_string("from");
    if let Some(f) = from.as_ref().filter(|f| !looks_like_address(f)) {
        s.problem("from", format!("expected a mail address, found {f:?}"));
    }
    let username = s.string("username");
    let password = if username.is_some() {
        s.secret("password_file", secrets, true)
    } else {
        s.secret("password_file", secrets, false)
    };
    let timeout = s.duration("timeout").unwrap_or(Duration::from_secs(30));
    Some(SmtpConfig {
        host,
        port,
        security,
        ca_file,
        from: from?,
        password: if username.is_some() { password } else { None },
        username,
        timeout,
    })
}

fn parse_notify(s: &mut Section) -> Option<NotifyConfig> {
    let language = match s.string("language").as_deref() {
        None | Some("en") => Language::En,
        Some("fr") => Language::Fr,
        Some(other) => {
            s.problem(
                "language",
                format!("expected \"en\" or \"fr\", found {other:?}"),
            );
            Language::En
        }
    };
    let admin_addresses = s.string_list("admin_addresses").unwrap_or_default();
    for a in &admin_addresses {
        if !looks_like_address(a) {
            s.problem("admin_addresses", format!("{a:?} is not a mail address"));
        }
    }
    Some(NotifyConfig {
        language,
        admin_addresses,
    })
}

fn parse_schedule(s: &mut Section) -> Option<ScheduleConfig> {
    let interval = match s.raw("interval") {
        Some(toml::Value::String(v)) if v == "off" || v == "never" => None,
        _ => Some(s.duration("interval").unwrap_or(Duration::from_secs(3600))),
    };
    if interval.is_some_and(|d| d < Duration::from_secs(60)) {
        s.problem("interval", "must be at least 1m");
    }
    let users = s.string_list("users").unwrap_or_default();
    let users_command = s.string("users_command");
    if !users.is_empty() && users_command.is_some() {
        s.problem(
            "users_command",
            "give either users or users_command, not both",
        );
    }
    let concurrency = s.integer("concurrency", 1, 64).unwrap_or(2) as usize;
    let default_spread = interval.map_or(Duration::from_secs(1800), |i| i / 2);
    let spread = s.duration("spread").unwrap_or(default_spread);
    if interval.is_some_and(|i| spread > i) {
        s.problem("spread", "must not be longer than the interval");
    }
    let first_round_after = s.duration("first_round_after").unwrap_or_else(|| {
        interval.map_or(Duration::from_secs(60), |i| i.min(Duration::from_secs(60)))
    });
    Some(ScheduleConfig {
        interval,
        users,
        users_command,
        concurrency,
        spread,
        first_round_after,
    })
}

fn parse_retention(s: &mut Section) -> Option<RetentionConfig> {
    let mut n = |key, default| s.integer(key, 0, 100_000).unwrap_or(default) as u32;
    Some(RetentionConfig {
        hourly: n("hourly", 24),
        daily: n("daily", 14),
        weekly: n("weekly", 8),
        monthly: n("monthly", 12),
    })
}

fn parse_restore(s: &mut Section) -> Option<RestoreConfig> {
    let folder_template = s
        .string("folder_template")
        .unwrap_or_else(|| "INBOX_%Y_%m_%d_%H%M".into());
    let sample = crate::time::Template::parse(&folder_template)
        .ok()
        .zip(crate::time::from_second(1_795_701_900))
        .map(|(t, at)| t.format(&at.with_timezone(&crate::time::UTC)));
    match sample {
        None => s.problem(
            "folder_template",
            format!("{folder_template:?} is not a valid strftime template"),
        ),
        Some(name) if name.is_empty() || name.contains(['/', '.', '*', '%']) || name.chars().any(char::is_control) => {
            s.problem(
                "folder_template",
                format!("expands to {name:?}: a folder name must be non-empty and hold no '/', '.', '*', '%' or control characters"),
            )
        }
        Some(_) => {}
    }
    Some(RestoreConfig { folder_template })
}

/// A plausible `local@domain` address (no spaces, no angle brackets, no line breaks).
pub fn looks_like_address(a: &str) -> bool {
    match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !a
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
        }
        None => false,
    }
}

/// Splits an `http://` or `https://` URL into (scheme, host, port).
pub fn parse_http_url(url: &str) -> Option<(&'static str, String, u16)> {
    let (scheme, rest, default_port) = if let Some(r) = url.strip_prefix("http://") {
        ("http", r, 80)
    } else if let Some(r) = url.strip_prefix("https://") {
        ("https", r, 443)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok().filter(|p| *p != 0)?,
        None => default_port,
    };
    (!host.is_empty()).then_some((scheme, host, port))
}

/// True for `localhost` and loopback addresses: the only places plain text may go.
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One table of the file: typed reads that record problems instead of stopping.
struct Section<'a> {
    prefix: String,
    table: &'a toml::Table,
    seen: BTreeSet<String>,
    problems: &'a mut Vec<String>,
}

impl<'a> Section<'a> {
    fn new(prefix: &str, table: &'a toml::Table, problems: &'a mut Vec<String>) -> Self {
        Section {
            prefix: prefix.to_string(),
            table,
            seen: BTreeSet::new(),
            problems,
        }
    }

    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn problem(&mut self, key: &str, what: impl fmt::Display) {
        let k = self.key(key);
        self.problems.push(format!("{k}: {what}"));
    }

    fn raw(&mut self, key: &str) -> Option<&'a toml::Value> {
        self.seen.insert(key.to_string());
        self.table.get(key)
    }

    fn wrong(&mut self, key: &str, expected: &str, found: &toml::Value) {
        let shown = match found {
            toml::Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        self.problem(key, format!("expected {expected}, found {shown}"));
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.raw(key)? {
            toml::Value::String(s) => Some(s.clone()),
            other => {
                self.wrong(key, "a string", other);
                None
            }
        }
    }

    fn required_string(&mut self, key: &str) -> Option<String> {
        let v = self.string(key);
        match &v {
            None if !self.table.contains_key(key) => self.problem(key, "is required"),
            Some(s) if s.trim().is_empty() => self.problem(key, "must not be empty"),
            _ => {}
        }
        v.filter(|s| !s.trim().is_empty())
    }

    fn path(&mut self, key: &str) -> Option<PathBuf> {
        let s = self.string(key)?;
        match expand_credentials_dir(&s) {
            Ok(p) if p.is_absolute() => Some(p),
            Ok(_) => {
                self.problem(key, format!("expected an absolute path, found {s:?}"));
                None
            }
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }

    fn integer(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        match self.raw(key)? {
            toml::Value::Integer(i) if (min..=max).contains(i) => Some(*i),
            other => {
                self.wrong(key, &format!("an integer from {min} to {max}"), other);
                None
            }
        }
    }

    fn port(&mut self, key: &str) -> Option<u16> {
        self.integer(key, 1, 65535).map(|p| p as u16)
    }

    fn duration(&mut self, key: &str) -> Option<Duration> {
        match self.raw(key)? {
            toml::Value::String(s) => {
                match humantime::parse_duration(s) {
                    Ok(d) if !d.is_zero() => Some(d),
                    _ => {
                        self.problem(
                        key,
                        format!("expected a duration such as \"90s\", \"15m\" or \"1h\", found {s:?}"),
                    );
                        None
                    }
                }
            }
            other => {
                self.wrong(key, "a duration string such as \"1h\"", other);
                None
            }
        }
    }

    fn security(&mut self, key: &str) -> Option<Security> {
        match self.string(key)?.as_str() {
            "none" => Some(Security::None),
            "starttls" => Some(Security::StartTls),
            "tls" => Some(Security::Tls),
            other => {
                self.problem(
                    key,
                    format!("expected \"none\", \"starttls\" or \"tls\", found {other:?}"),
                );
                None
            }
        }
    }

    fn check_plaintext_host(&mut self, key: &str, host: &str, security: Security) {
        if security == Security::None && !is_loopback_host(host) {
            self.problem(
                key,
                format!("plain text is only allowed to a loopback address, and {host:?} is not one: use \"starttls\" or \"tls\""),
            );
        }
    }

    fn timezone(&mut self, key: &str) -> Option<TimeZone> {
        match self.string(key) {
            None => Some(crate::time::system_zone()),
            Some(name) => match crate::time::zone(&name) {
                Some(tz) => Some(tz),
                None => {
                    self.problem(
                        key,
                        format!("unknown time zone {name:?} (expected an IANA name such as \"Europe/Paris\")"),
                    );
                    None
                }
            },
        }
    }

    fn string_list(&mut self, key: &str) -> Option<Vec<String>> {
        match self.raw(key)? {
            toml::Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(s) => out.push(s.clone()),
                        other => self.wrong(key, "a list of strings", other),
                    }
                }
                Some(out)
            }
            other => {
                self.wrong(key, "a list of strings", other);
                None
            }
        }
    }

    fn u32_list(&mut self, key: &str) -> Option<Vec<u32>> {
        match self.raw(key)? {
            toml::Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        toml::Value::Integer(i) if u32::try_from(*i).is_ok() => out.push(*i as u32),
                        other => self.wrong(key, "a list of uids (integers)", other),
                    }
                }
                Some(out)
            }
            other => {
                self.wrong(key, "a list of uids (integers)", other);
                None
            }
        }
    }

    fn secret(&mut self, key: &str, secrets: Secrets, required: bool) -> Option<Secret<String>> {
        let present = self.table.contains_key(key);
        let path = self.path(key);
        if !present {
            if required {
                self.problem(key, "is required");
            }
            return None;
        }
        let path = path?;
        match secrets {
            Secrets::Skip => Some(Secret::new(String::new())),
            Secrets::Read => match read_secret_file(&path) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.problem(key, e);
                    None
                }
            },
        }
    }

    fn sub_table(&mut self, name: &str) -> Option<&'a toml::Table> {
        match self.raw(name)? {
            toml::Value::Table(t) => Some(t),
            other => {
                self.wrong(name, "a table", other);
                None
            }
        }
    }

    /// An optional section whose keys all have defaults.
    fn section<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&mut Section) -> Option<T>,
    ) -> Option<T> {
        let empty = toml::Table::new();
        let table = self.sub_table(name).unwrap_or(&empty);
        let mut sub = Section::new(&self.key(name), table, self.problems);
        let out = parse(&mut sub);
        sub.finish();
        out
    }

    fn required_section<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&mut Section) -> Option<T>,
    ) -> Option<T> {
        if !self.table.contains_key(name) {
            self.problem(name, "the section is required");
            return None;
        }
        self.section(name, parse)
    }

    /// `Some(None)` when the section is absent, `None` when it has problems.
    fn optional_section<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&mut Section) -> Option<T>,
    ) -> Option<Option<T>> {
        if !self.table.contains_key(name) {
            return Some(None);
        }
        self.section(name, parse).map(Some)
    }

    /// Reports every key that no read asked for.
    fn finish(self) {
        for key in self.table.keys() {
            if !self.seen.contains(key) {
                let k = if self.prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.prefix)
                };
                self.problems.push(format!("{k}: unknown key"));
            }
        }
    }
}

/// Expands `$CREDENTIALS_DIRECTORY` / `${CREDENTIALS_DIRECTORY}` (systemd's
/// `LoadCredential=`) at the start of a path.
fn expand_credentials_dir(s: &str) -> Result<PathBuf, String> {
    for var in ["${CREDENTIALS_DIRECTORY}", "$CREDENTIALS_DIRECTORY"] {
        if let Some(rest) = s.strip_prefix(var) {
            return match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) => Ok(PathBuf::from(dir).join(rest.trim_start_matches('/'))),
                None => Err(format!(
                    "{s:?} uses $CREDENTIALS_DIRECTORY, which is not set (is LoadCredential= in the unit?)"
                )),
            };
        }
    }
    Ok(PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[imap]
master_user = "restore"
master_password_file = "/nonexistent/imap.secret"
"#;

    fn problems(text: &str) -> Vec<String> {
        Config::parse(text, Secrets::Skip).unwrap_err().problems
    }

    #[test]
    fn minimal_file_takes_defaults() {
        let c = Config::parse(MINIMAL, Secrets::Skip).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/mailrestore"));
        assert_eq!(c.api.socket, PathBuf::from("/run/mailrestore/api.sock"));
        assert_eq!(c.api.allowed_uids, vec![0]);
        assert_eq!(c.imap.port, 143);
        assert_eq!(c.imap.security, Security::None);
        assert_eq!(c.imap.login, MasterLogin::Separator("*".into()));
        assert_eq!(c.schedule.interval, Some(Duration::from_secs(3600)));
        assert_eq!(c.retention.hourly, 24);
        assert_eq!(c.restore.folder_template, "INBOX_%Y_%m_%d_%H%M");
        assert!(c.dav.is_none() && c.smtp.is_none());
    }

    #[test]
    fn the_contract_example_parses() {
        let text = r#"
state_dir = "/var/lib/mailrestore"
timezone = "Europe/Paris"
[api]
socket = "/run/mailrestore/api.sock"
allowed_uids = [0]
[imap]
host = "127.0.0.1"
port = 143
security = "none"
master_user = "restore"
master_password_file = "/etc/mailrestore/imap.secret"
[dav]
url = "http://127.0.0.1:5232"
principal = "/{user}/"
user = "restore"
password_file = "/etc/mailrestore/dav.secret"
[smtp]
host = "127.0.0.1"
port = 25
security = "none"
from = "restore@example.net"
[schedule]
interval = "1h"
users = ["alice@example.org"]
[retention]
hourly = 24
daily = 14
weekly = 8
monthly = 12
[restore]
folder_template = "INBOX_%Y_%m_%d_%H%M"
"#;
        let c = Config::parse(text, Secrets::Skip).unwrap();
        assert_eq!(c.timezone.name(), "Europe/Paris");
        assert_eq!(c.dav.unwrap().url, "http://127.0.0.1:5232");
        assert_eq!(c.smtp.unwrap().from, "restore@example.net");
        assert_eq!(c.schedule.users, vec!["alice@example.org"]);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let text = r#"
timezone = "Mars/Olympus"
bogus = 1
[api]
allowed_uids = ["root"]
[imap]
port = "x"
security = "tls-ish"
host = "mail.example.net"
extra = true
[schedule]
interval = "soon"
[restore]
folder_template = "a/%Y"
[dav]
url = "ftp://x"
"#;
        let p = problems(text);
        let want = [
            "timezone: unknown time zone",
            "bogus: unknown key",
            "api.allowed_uids: expected a list of uids",
            "imap.port: expected an integer from 1 to 65535, found \"x\"",
            "imap.security: expected \"none\", \"starttls\" or \"tls\"",
            "imap.extra: unknown key",
            "imap.master_user: is required",
            "imap.master_password_file: is required",
            "schedule.interval: expected a duration",
            "restore.folder_template: expands to \"a/2026\"",
            "dav.url: expected an http:// or https:// URL",
            "dav.user: is required",
        ];
        for w in want {
            assert!(
                p.iter().any(|x| x.starts_with(w)),
                "missing {w:?} in {p:#?}"
            );
        }
    }

    #[test]
    fn plain_text_only_to_loopback() {
        let text = MINIMAL.replace("[imap]", "[imap]\nhost = \"mail.example.net\"");
        let p = problems(&text);
        assert!(
            p[0].starts_with("imap.security: plain text is only allowed to a loopback"),
            "{p:?}"
        );
        let ok = MINIMAL.replace(
            "[imap]",
            "[imap]\nhost = \"mail.example.net\"\nsecurity = \"tls\"",
        );
        assert_eq!(Config::parse(&ok, Secrets::Skip).unwrap().imap.port, 993);
        for h in ["localhost", "127.0.0.2", "::1", "[::1]"] {
            assert!(is_loopback_host(h), "{h}");
        }
        assert!(!is_loopback_host("10.0.0.1"));
    }

    #[test]
    fn missing_imap_section_and_bad_toml() {
        assert_eq!(problems(""), vec!["imap: the section is required"]);
        assert!(problems("[imap")[0].starts_with("not valid TOML"));
    }

    #[test]
    fn secrets_are_read_and_checked_when_asked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("imap.secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = MINIMAL.replace("/nonexistent/imap.secret", secret.to_str().unwrap());
        let err = Config::parse(&text, Secrets::Read).unwrap_err();
        assert!(
            err.problems[0].contains("imap.master_password_file: secret file"),
            "{err}"
        );
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::parse(&text, Secrets::Read).unwrap();
        assert_eq!(c.imap.master_password.expose(), "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
