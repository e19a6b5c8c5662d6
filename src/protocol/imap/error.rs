//! The one error type of the IMAP boundary, and the server's response codes.
//!
//! Every variant says what was expected and what arrived, and answers
//! [`ImapError::is_transient`] so a job knows whether to retry with backoff
//! (connection trouble, timeouts, a server `BYE`) or to fail and notify
//! (bad credentials, over quota, malformed server data).
//!
//! The sans-I/O core produces the protocol variants; the socket driver in
//! `net::imap` adds the transport ones. Only std types are carried as sources,
//! so this module stays free of any I/O library.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A response code (`[CODE ...]`) that a server attached to a `NO` or `BAD`,
/// from RFC 3501, RFC 4315, RFC 5530 and RFC 9208.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseCode {
    /// `[OVERQUOTA]`: the user's quota does not allow the operation.
    OverQuota,
    /// `[TRYCREATE]`: the target mailbox does not exist but could be created.
    TryCreate,
    /// `[LIMIT]`: a server limit (mailbox count, size, ...) was reached.
    Limit,
    /// `[TOOBIG]`: the message is larger than the server accepts.
    TooBig,
    /// `[ALREADYEXISTS]`: the mailbox to create exists already.
    AlreadyExists,
    /// `[NONEXISTENT]`: the named mailbox does not exist.
    NonExistent,
    /// `[AUTHENTICATIONFAILED]`: wrong credentials (or unknown user).
    AuthenticationFailed,
    /// `[AUTHORIZATIONFAILED]`: the credentials are right but may not act for that user.
    AuthorizationFailed,
    /// `[EXPIRED]`: the credentials have expired.
    Expired,
    /// `[PRIVACYREQUIRED]`: the operation needs an encrypted connection.
    PrivacyRequired,
    /// `[CONTACTADMIN]`: the user should contact the administrator.
    ContactAdmin,
    /// `[NOPERM]`: access control forbids the operation.
    NoPerm,
    /// `[INUSE]`: the object is in use by another session; worth retrying.
    InUse,
    /// `[EXPUNGEISSUED]`: messages were expunged meanwhile; worth retrying.
    ExpungeIssued,
    /// `[CORRUPTION]`: the server found corrupted data.
    Corruption,
    /// `[SERVERBUG]`: an internal server error (often a passing lock or I/O problem).
    ServerBug,
    /// `[CLIENTBUG]`: the server thinks this client misbehaved.
    ClientBug,
    /// `[CANNOT]`: the operation can never succeed (e.g. an invalid name).
    Cannot,
    /// `[UNAVAILABLE]`: a backend the server needs is unavailable right now.
    Unavailable,
    /// `[PARSE]`: the server could not parse a message.
    Parse,
    /// `[READ-ONLY]`: the mailbox is read-only.
    ReadOnly,
    /// Any other code, as the server spelled it (first atom, upper-cased).
    Other(String),
}

impl ResponseCode {
    /// Maps a code atom (`OVERQUOTA`, `ALREADYEXISTS`, ...) to its variant.
    pub fn from_atom(atom: &str) -> Self {
        match atom.to_ascii_uppercase().as_str() {
            "OVERQUOTA" => Self::OverQuota,
            "TRYCREATE" => Self::TryCreate,
            "LIMIT" => Self::Limit,
            "TOOBIG" => Self::TooBig,
            "ALREADYEXISTS" => Self::AlreadyExists,
            "NONEXISTENT" => Self::NonExistent,
            "AUTHENTICATIONFAILED" => Self::AuthenticationFailed,
            "AUTHORIZATIONFAILED" => Self::AuthorizationFailed,
            "EXPIRED" => Self::Expired,
            "PRIVACYREQUIRED" => Self::PrivacyRequired,
            "CONTACTADMIN" => Self::ContactAdmin,
            "NOPERM" => Self::NoPerm,
            "INUSE" => Self::InUse,
            "EXPUNGEISSUED" => Self::ExpungeIssued,
            "CORRUPTION" => Self::Corruption,
            "SERVERBUG" => Self::ServerBug,
            "CLIENTBUG" => Self::ClientBug,
            "CANNOT" => Self::Cannot,
            "UNAVAILABLE" => Self::Unavailable,
            "PARSE" => Self::Parse,
            "READ-ONLY" => Self::ReadOnly,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Whether an operation refused with this code may succeed when retried later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::InUse | Self::ExpungeIssued | Self::ServerBug | Self::Unavailable
        )
    }
}

impl std::fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let atom = match self {
            Self::OverQuota => "OVERQUOTA",
            Self::TryCreate => "TRYCREATE",
            Self::Limit => "LIMIT",
            Self::TooBig => "TOOBIG",
            Self::AlreadyExists => "ALREADYEXISTS",
            Self::NonExistent => "NONEXISTENT",
            Self::AuthenticationFailed => "AUTHENTICATIONFAILED",
            Self::AuthorizationFailed => "AUTHORIZATIONFAILED",
            Self::Expired => "EXPIRED",
            Self::PrivacyRequired => "PRIVACYREQUIRED",
            Self::ContactAdmin => "CONTACTADMIN",
            Self::NoPerm => "NOPERM",
            Self::InUse => "INUSE",
            Self::ExpungeIssued => "EXPUNGEISSUED",
            Self::Corruption => "CORRUPTION",
            Self::ServerBug => "SERVERBUG",
            Self::ClientBug => "CLIENTBUG",
            Self::Cannot => "CANNOT",
            Self::Unavailable => "UNAVAILABLE",
            Self::Parse => "PARSE",
            Self::ReadOnly => "READ-ONLY",
            Self::Other(other) => other,
        };
        f.write_str(atom)
    }
}

/// How the server refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `NO`: the command was understood but failed.
    No,
    /// `BAD`: the server did not accept the command's syntax or state.
    Bad,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::No => "NO",
            Self::Bad => "BAD",
        })
    }
}

/// Shows an optional response code as ` [CODE]` in messages.
struct CodeSuffix<'a>(&'a Option<ResponseCode>);

impl std::fmt::Display for CodeSuffix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(code) => write!(f, " [{code}]"),
            None => Ok(()),
        }
    }
}

/// Explains the ambiguous `[UNAVAILABLE]` answer to a master login.
struct AuthHint<'a>(&'a Option<ResponseCode>);

impl std::fmt::Display for AuthHint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ResponseCode::Unavailable) => f.write_str(
                " (with a master user, Dovecot answers this when the user does not exist \
                 in its userdb, or when its authentication backend is down)",
            ),
            _ => Ok(()),
        }
    }
}

/// Everything that can go wrong talking IMAP to a server.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    // ----- refused before anything is sent (permanent) -----
    /// The user name could be abused to log in as someone else, so nothing was sent.
    #[error("refusing user name {user:?}: {reason}; nothing was sent to the server")]
    InvalidUserName {
        /// The name, escaped for display.
        user: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The master password cannot be sent (it contains NUL).
    #[error("the master password cannot be sent over IMAP: it contains a NUL byte")]
    InvalidPassword,
    /// A mailbox name that cannot be expressed in IMAP.
    #[error("invalid mailbox name {name:?}: {reason}")]
    InvalidMailboxName {
        /// The name, escaped for display.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A flag or keyword that is not a valid IMAP atom.
    #[error("invalid message flag {flag:?}: expected `\\System` or a keyword atom")]
    InvalidFlag {
        /// The flag as given.
        flag: String,
    },
    /// An INTERNALDATE that IMAP cannot express.
    #[error("INTERNALDATE {unix_seconds} (offset {offset_seconds} s) cannot be expressed in IMAP")]
    InvalidInternalDate {
        /// Seconds since the epoch.
        unix_seconds: i64,
        /// UTC offset in seconds.
        offset_seconds: i32,
    },
    /// The message holds NUL bytes, which only a BINARY literal can carry.
    #[error("the message contains NUL bytes and the server does not offer BINARY to carry them")]
    MessageHasNul,
    /// An APPEND of zero messages was asked for.
    #[error("nothing to append: MULTIAPPEND needs at least one message")]
    NothingToAppend,
    /// The server lacks an extension the operation needs.
    #[error("the server does not offer {capability}, which {needed_for} needs")]
    MissingCapability {
        /// The capability atom.
        capability: &'static str,
        /// The operation that needs it.
        needed_for: &'static str,
    },
    /// Plain-text IMAP (`security = none`) to a non-loopback address.
    #[error(
        "refusing plain-text IMAP to {host}: security `none` is only allowed to loopback \
         addresses, use `tls` or `starttls`"
    )]
    InsecureRemote {
        /// The configured host.
        host: String,
    },

    // ----- set-up (permanent) -----
    /// The extra CA file could not be used.
    #[error("cannot use CA file {path}: {reason}")]
    CaFile {
        /// The configured path.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// No trust anchors at all: neither the system store nor a CA file gave one.
    #[error("no trusted CA certificates: the system store is empty and no CA file is configured")]
    NoTrustAnchors,
    /// The host cannot be used as a TLS server name.
    #[error("{host:?} is not a valid TLS server name")]
    InvalidServerName {
        /// The configured host.
        host: String,
    },
    /// The server's certificate was not accepted.
    #[error("the certificate of {host} was not accepted: {reason}")]
    Certificate {
        /// The configured host.
        host: String,
        /// The verifier's verdict.
        reason: String,
    },

    // ----- connection trouble (transient) -----
    /// The host name could not be resolved.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The configured host.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The host name resolved to no address.
    #[error("{host} resolved to no address")]
    NoAddress {
        /// The configured host.
        host: String,
    },
    /// The TCP connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried last.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// Connecting (TCP and TLS) took longer than the connect timeout.
    #[error("connecting to {host} took longer than {after:?}")]
    ConnectTimeout {
        /// The configured host.
        host: String,
        /// The connect timeout.
        after: Duration,
    },
    /// The TLS handshake failed for another reason than the certificate.
    #[error("TLS handshake with {host} failed: {source}")]
    TlsHandshake {
        /// The configured host.
        host: String,
        /// The handshake error.
        source: io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("connection error while {during}: {source}")]
    Io {
        /// What the client was doing.
        during: String,
        /// The socket error.
        source: io::Error,
    },
    /// The server sent nothing for longer than the I/O timeout.
    #[error("the server sent nothing for {after:?} while the client waited for {waiting_for}")]
    Timeout {
        /// What the client waited for.
        waiting_for: String,
        /// The I/O timeout.
        after: Duration,
    },
    /// The server closed the connection.
    #[error("the server closed the connection while the client waited for {waiting_for}")]
    ConnectionClosed {
        /// What the client waited for.
        waiting_for: String,
    },
    /// The server said `BYE` outside of LOGOUT.
    #[error("the server ended the session (BYE{code}): {text}", code = CodeSuffix(code))]
    Bye {
        /// The code the server gave, if any.
        code: Option<ResponseCode>,
        /// The server's text.
        text: String,
    },
    /// A previous operation was abandoned half-way while writing a command,
    /// so the connection's state is unknown.
    #[error("the connection was abandoned in the middle of a command and cannot be used any more")]
    ConnectionPoisoned,

    // ----- the server misbehaved (permanent) -----
    /// The server sent something the protocol does not allow here.
    #[error("IMAP protocol error: expected {expected}, got {got}")]
    Protocol {
        /// What the client expected.
        expected: String,
        /// What arrived (escaped, at most one line, never message content).
        got: String,
    },
    /// The server announced a literal larger than the configured limit.
    #[error(
        "the server announced a {announced}-byte literal, more than the limit of {limit} bytes"
    )]
    LiteralTooLarge {
        /// The announced size.
        announced: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The server sent a line longer than the configured limit.
    #[error("the server sent a line longer than {limit} bytes")]
    LineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// The greeting said PREAUTH: the connection is logged in as someone the
    /// client did not choose, so it cannot act for the requested user.
    #[error("the server greeted with PREAUTH (already logged in as an unknown user): {text}")]
    UnexpectedPreauth {
        /// The server's text.
        text: String,
    },
    /// Bytes followed the STARTTLS answer in plain text (a known injection attack).
    #[error("the server sent data after its STARTTLS answer, before the TLS handshake")]
    StartTlsInjection,

    // ----- refusals -----
    /// The server refused the greeting (`* BYE` instead of `* OK`).
    #[error("the server refused the connection (BYE{code}): {text}", code = CodeSuffix(code))]
    GreetingBye {
        /// The code the server gave, if any.
        code: Option<ResponseCode>,
        /// The server's text.
        text: String,
    },
    /// The server refuses plain-text login on this connection.
    #[error("the server refuses LOGIN here (LOGINDISABLED); use TLS or SASL PLAIN")]
    LoginDisabled,
    /// The master login for a user failed. Always permanent: Dovecot answers
    /// `[UNAVAILABLE]` both for a user missing from its userdb and for a
    /// broken auth backend, and a missing user must fail the job.
    #[error(
        "login as master user for {user} failed ({refusal}{code}): {text}{hint}",
        code = CodeSuffix(code),
        hint = AuthHint(code)
    )]
    AuthenticationFailed {
        /// The user the master tried to act for.
        user: String,
        /// NO or BAD.
        refusal: Refusal,
        /// The code the server gave, if any.
        code: Option<ResponseCode>,
        /// The server's text.
        text: String,
    },
    /// The server refused a command.
    #[error("the server refused {command} ({refusal}{code}): {text}", code = CodeSuffix(code))]
    Refused {
        /// The command (e.g. `CREATE`).
        command: &'static str,
        /// NO or BAD.
        refusal: Refusal,
        /// The code the server gave, if any.
        code: Option<ResponseCode>,
        /// The server's text.
        text: String,
    },
}

impl ImapError {
    /// Whether retrying later (on a new connection) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Resolve { .. }
            | Self::NoAddress { .. }
            | Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::TlsHandshake { .. }
            | Self::Io { .. }
            | Self::Timeout { .. }
            | Self::ConnectionClosed { .. }
            | Self::Bye { .. }
            | Self::GreetingBye { .. }
            | Self::ConnectionPoisoned => true,
            Self::Refused { code, .. } => code.as_ref().is_some_and(ResponseCode::is_transient),
            Self::InvalidUserName { .. }
            | Self::InvalidPassword
            | Self::InvalidMailboxName { .. }
            | Self::InvalidFlag { .. }
            | Self::MessageHasNul
            | Self::InvalidInternalDate { .. }
            | Self::NothingToAppend
            | Self::MissingCapability { .. }
            | Self::InsecureRemote { .. }
            | Self::CaFile { .. }
            | Self::NoTrustAnchors
            | Self::InvalidServerName { .. }
            | Self::Certificate { .. }
            | Self::Protocol { .. }
            | Self::LiteralTooLarge { .. }
            | Self::LineTooLong { .. }
            | Self::UnexpectedPreauth { .. }
            | Self::StartTlsInjection
            | Self::LoginDisabled
            | Self::AuthenticationFailed { .. } => false,
        }
    }

    /// The response code of a refusal, if the server gave one.
    pub fn response_code(&self) -> Option<&ResponseCode> {
        match self {
            Self::Refused { code, .. }
            | Self::AuthenticationFailed { code, .. }
            | Self::Bye { code, .. }
            | Self::GreetingBye { code, .. } => code.as_ref(),
            _ => None,
        }
    }

    /// Builds a [`ImapError::Protocol`] from what was expected and the raw bytes that arrived.
    pub(crate) fn protocol(expected: impl Into<String>, got: &[u8]) -> Self {
        Self::Protocol {
            expected: expected.into(),
            got: excerpt(got),
        }
    }
}

/// The first line of `bytes`, escaped and cut to a readable length, for errors
/// and logs. Literal contents never appear since they follow the first line.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 120;
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let shown = &line[..line.len().min(MAX)];
    let mut out = String::with_capacity(shown.len() + 8);
    out.push('`');
    out.extend(shown.escape_ascii().map(char::from));
    if line.len() > MAX {
        out.push_str("...");
    }
    out.push('`');
    if bytes.is_empty() {
        return "nothing".to_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_from_atoms_case_insensitively() {
        let cases = [
            ("OVERQUOTA", ResponseCode::OverQuota),
            ("alreadyexists", ResponseCode::AlreadyExists),
            ("NonExistent", ResponseCode::NonExistent),
            ("LIMIT", ResponseCode::Limit),
            ("X-FOO", ResponseCode::Other("X-FOO".into())),
        ];
        for (atom, code) in cases {
            assert_eq!(ResponseCode::from_atom(atom), code, "{atom}");
        }
    }

    #[test]
    fn transience_follows_the_kind_of_failure() {
        let closed = ImapError::ConnectionClosed {
            waiting_for: "x".into(),
        };
        assert!(closed.is_transient());
        let bye = ImapError::Bye {
            code: None,
            text: "shutting down".into(),
        };
        assert!(bye.is_transient());
        let quota = ImapError::Refused {
            command: "APPEND",
            refusal: Refusal::No,
            code: Some(ResponseCode::OverQuota),
            text: "Quota exceeded".into(),
        };
        assert!(!quota.is_transient());
        let in_use = ImapError::Refused {
            command: "SELECT",
            refusal: Refusal::No,
            code: Some(ResponseCode::InUse),
            text: "locked".into(),
        };
        assert!(in_use.is_transient());
        let auth = ImapError::AuthenticationFailed {
            user: "alice".into(),
            refusal: Refusal::No,
            code: Some(ResponseCode::AuthenticationFailed),
            text: "Authentication failed.".into(),
        };
        assert!(!auth.is_transient());
    }

    #[test]
    fn excerpt_shows_only_the_first_line_escaped() {
        assert_eq!(
            excerpt(b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n"),
            "`* 1 FETCH (BODY[] {5}`"
        );
        assert_eq!(excerpt(b"\x00\xff\r\n"), "`\\x00\\xff`");
        assert_eq!(excerpt(b""), "nothing");
        let long = vec![b'a'; 500];
        assert!(excerpt(&long).ends_with("...`"));
    }
}
