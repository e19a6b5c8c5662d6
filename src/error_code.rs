//! Every stable `error.code` the API answers or a job carries, in one enum.
//!
//! A code is a contract: the panel and scripts branch on it, so its spelling
//! never changes once shipped, and each has the HTTP status it answers with
//! as an API error. The table in `docs/operations.md` §6 is kept equal to
//! this one by a test.
//!
//! This module is a leaf: it depends on nothing else of the crate, so the
//! API, the jobs, the engines and the notification can all name codes
//! without depending on each other.

use std::fmt;
use std::str::FromStr;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Declares the enum and its table once: variant, spelling, status, and
/// whether a retry can help. The spelling is also what serde writes
/// (`rename_all = "snake_case"`); a test checks that the two agree.
macro_rules! error_codes {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $code:literal, $status:ident, retry: $retry:literal;
    )+) => {
        /// A stable snake_case error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the order of `docs/operations.md`.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The wire spelling (`over_quota`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The HTTP status the API answers this code with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)+
                }
            }

            /// Whether the same request or job, repeated later unchanged, may
            /// succeed without anybody acting first (a server back up, a
            /// connection that holds).
            pub fn retry_can_help(self) -> bool {
                match self {
                    $(ErrorCode::$variant => $retry,)+
                }
            }

            /// One line saying what the code means (its doc line).
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => concat!($($doc),+).trim_ascii(),)+
                }
            }
        }
    };
}

error_codes! {
    // --- Requests the API refuses ---
    /// The request is malformed: bad JSON, an unknown field or query parameter.
    BadRequest = "bad_request", BAD_REQUEST, retry: false;
    /// The user name could log in as somebody else (master-user separator, white space, control characters).
    InvalidUser = "invalid_user", BAD_REQUEST, retry: false;
    /// A restore's `scope` is neither `all` nor `inbox`.
    BadScope = "bad_scope", BAD_REQUEST, retry: false;
    /// `?date=` is not a calendar day (`YYYY-MM-DD`).
    BadDate = "bad_date", BAD_REQUEST, retry: false;
    /// `requested_by` is not a mail address.
    BadRequestedBy = "bad_requested_by", BAD_REQUEST, retry: false;
    /// A selection names message, collection or item ids the point does not hold.
    UnknownId = "unknown_id", BAD_REQUEST, retry: false;
    /// The peer's uid is not in `api.allowed_uids`.
    Forbidden = "forbidden", FORBIDDEN, retry: false;
    /// The mail server has no such mailbox.
    UnknownUser = "unknown_user", NOT_FOUND, retry: false;
    /// The user has no restore point of that id.
    PointNotFound = "point_not_found", NOT_FOUND, retry: false;
    /// There is no job of that id.
    JobNotFound = "job_not_found", NOT_FOUND, retry: false;
    /// There is no such endpoint.
    NotFound = "not_found", NOT_FOUND, retry: false;
    /// The endpoint does not take that method.
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED, retry: false;
    /// The request body did not arrive within `api.request_timeout`.
    RequestTimeout = "request_timeout", REQUEST_TIMEOUT, retry: true;
    /// The job has already ended, so it cannot be cancelled.
    JobFinished = "job_finished", CONFLICT, retry: false;
    /// The mailbox is not the one the point was taken of (the address was re-created).
    MailboxChanged = "mailbox_changed", CONFLICT, retry: false;
    /// The request body exceeds `api.max_body_bytes`.
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE, retry: false;
    /// The mail server cannot be reached.
    ServerDown = "server_down", SERVICE_UNAVAILABLE, retry: true;
    /// The schedule's user list cannot be read (`users_command` failed).
    UsersUnavailable = "users_unavailable", SERVICE_UNAVAILABLE, retry: true;
    /// Prune stopped: the store or the index failed, or the task died (the next prune finishes the work).
    PruneFailed = "prune_failed", INTERNAL_SERVER_ERROR, retry: true;
    /// A bug or an unexpected failure inside the daemon (a job that panicked, a code this version does not know).
    InternalError = "internal_error", INTERNAL_SERVER_ERROR, retry: false;

    // --- Why a job failed ---
    /// The mailbox or the DAV storage is full (IMAP `[OVERQUOTA]`, DAV 507).
    OverQuota = "over_quota", INSUFFICIENT_STORAGE, retry: false;
    /// The mail server refused the master login.
    LoginFailed = "login_failed", BAD_GATEWAY, retry: false;
    /// The connection to the mail server broke during the job.
    ConnectionLost = "connection_lost", SERVICE_UNAVAILABLE, retry: true;
    /// The mail server refused a message as too large (`[TOOBIG]`).
    MessageTooBig = "message_too_big", BAD_GATEWAY, retry: false;
    /// The mail server hit one of its limits (`[LIMIT]`).
    ServerLimit = "server_limit", BAD_GATEWAY, retry: false;
    /// A folder vanished while the job used it (`[TRYCREATE]`, `[NONEXISTENT]`).
    FolderMissing = "folder_missing", CONFLICT, retry: true;
    /// The TLS handshake failed or the server's certificate is not trusted.
    TlsError = "tls_error", BAD_GATEWAY, retry: false;
    /// The state directory's file system is full.
    DiskFull = "disk_full", INSUFFICIENT_STORAGE, retry: false;
    /// The restore point cannot be read back whole from the store.
    PointDamaged = "point_damaged", INTERNAL_SERVER_ERROR, retry: false;
    /// Someone else changed a folder or collection the restore made (its UIDVALIDITY, its items) before it ended.
    TargetChanged = "target_changed", CONFLICT, retry: false;
    /// The job was stopped on request.
    Cancelled = "cancelled", CONFLICT, retry: false;
    /// The mail server refused a command for another reason.
    ImapError = "imap_error", BAD_GATEWAY, retry: false;
    /// The blob store or the index failed during a snapshot.
    StoreError = "store_error", INTERNAL_SERVER_ERROR, retry: false;
    /// The index could not record the job's result.
    IndexError = "index_error", INTERNAL_SERVER_ERROR, retry: false;
    /// This daemon runs no jobs of that kind.
    NotSupported = "not_supported", NOT_IMPLEMENTED, retry: false;
    /// The CalDAV/CardDAV server cannot be reached.
    DavServerDown = "dav_server_down", SERVICE_UNAVAILABLE, retry: true;
    /// The DAV server refused the account's credentials (401).
    DavLoginFailed = "dav_login_failed", BAD_GATEWAY, retry: false;
    /// The DAV server forbade a request the job needs (403).
    DavForbidden = "dav_forbidden", BAD_GATEWAY, retry: false;
    /// The DAV server answered something else unexpected.
    DavError = "dav_error", BAD_GATEWAY, retry: false;
    /// The point holds calendars or contacts but `[dav]` is not configured.
    DavNotConfigured = "dav_not_configured", NOT_IMPLEMENTED, retry: false;
    /// An operation refuses to act on damage it found in the store (e.g. prune).
    StoreDamaged = "store_damaged", INTERNAL_SERVER_ERROR, retry: false;
    /// The object store cannot be reached.
    StoreUnavailable = "store_unavailable", SERVICE_UNAVAILABLE, retry: true;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is no code of [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCode(s.to_string()))
    }
}

/// Compares with the wire spelling, so `assert_eq!(e.code, "over_quota")` reads.
impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};

    #[test]
    fn spelling_is_serdes_and_round_trips() {
        for &code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()), "{code:?}");
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            assert_eq!(code.to_string(), code.as_str());
            assert!(!code.meaning().is_empty(), "{code:?}");
        }
        assert_eq!(
            "overquota".parse::<ErrorCode>(),
            Err(UnknownCode("overquota".into()))
        );
    }

    #[test]
    fn codes_are_unique_snake_case_and_errors() {
        let mut seen = HashSet::new();
        for &code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && !s.starts_with('_')
                    && !s.ends_with('_'),
                "{s}"
            );
            let status = code.status();
            assert!(status.is_client_error() || status.is_server_error(), "{s}");
        }
    }

    /// The rows of the table in `docs/operations.md` §6: code → (status, retry).
    fn documented_codes() -> BTreeMap<String, (u16, bool)> {
        let doc = include_str!("../docs/operations.md");
        let mut lines = doc
            .lines()
            .skip_while(|l| !l.starts_with("| code | HTTP status | meaning | retry can help |"));
        assert!(
            lines.next().is_some(),
            "no code table in docs/operations.md"
        );
        let mut rows = BTreeMap::new();
        for line in lines.skip(1).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let [code, status, meaning, retry] = cells[..] else {
                panic!("a row of the code table has {} cells: {line}", cells.len());
            };
            let code = code.trim_matches('`').to_string();
            let status = status
                .parse()
                .unwrap_or_else(|_| panic!("status of {code}: {status}"));
            let retry = match retry {
                "yes" => true,
                "no" => false,
                _ => panic!("retry of {code} is {retry:?}, not yes or no"),
            };
            assert!(!meaning.is_empty(), "{code} has no meaning");
            assert!(
                rows.insert(code.clone(), (status, retry)).is_none(),
                "{code} twice"
            );
        }
        rows
    }

    #[test]
    fn operations_doc_lists_exactly_the_codes() {
        let documented = documented_codes();
        let code: BTreeMap<String, (u16, bool)> = ErrorCode::ALL
            .iter()
            .map(|c| {
                (
                    c.as_str().to_string(),
                    (c.status().as_u16(), c.retry_can_help()),
                )
            })
            .collect();
        let missing: Vec<_> = code
            .keys()
            .filter(|c| !documented.contains_key(*c))
            .collect();
        let unknown: Vec<_> = documented
            .keys()
            .filter(|c| !code.contains_key(*c))
            .collect();
        assert!(
            missing.is_empty(),
            "codes missing from docs/operations.md: {missing:?}"
        );
        assert!(
            unknown.is_empty(),
            "docs/operations.md lists codes the enum lacks: {unknown:?}"
        );
        for (c, want) in &code {
            assert_eq!(
                &documented[c], want,
                "{c}: docs/operations.md says (status, retry) {:?}, the code {want:?}",
                documented[c]
            );
        }
    }

    #[test]
    fn statuses_of_codes_in_use_stay() {
        for (code, status) in [
            (ErrorCode::BadRequest, 400),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::UnknownUser, 404),
            (ErrorCode::JobFinished, 409),
            (ErrorCode::BodyTooLarge, 413),
            (ErrorCode::InternalError, 500),
            (ErrorCode::ServerDown, 503),
            (ErrorCode::UnknownId, 400),
            (ErrorCode::MailboxChanged, 409),
        ] {
            assert_eq!(code.status().as_u16(), status, "{code}");
        }
    }
}
