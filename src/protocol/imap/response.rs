//! What a server answers to a command, as operations see it: the tagged
//! [`Completion`] and the [`Untagged`] responses before it.
//!
//! A leaf of the IMAP core: the client connection ([`super::client`]) makes
//! these, the operations ([`super::ops`]) read them; neither needs the other.

use imap_codec::imap_types::response::{Code, Data};

use super::error::{ImapError, Refusal, ResponseCode};

/// How a tagged command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionStatus {
    /// `OK`
    Ok,
    /// `NO`
    No,
    /// `BAD`
    Bad,
}

/// The tagged completion of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The command's tag.
    pub tag: String,
    /// OK, NO or BAD.
    pub status: CompletionStatus,
    /// The response code, if any (and if it could be decoded).
    pub code: Option<Code<'static>>,
    /// The human-readable text.
    pub text: String,
}

impl Completion {
    /// The code as a [`ResponseCode`], for errors.
    pub fn response_code(&self) -> Option<ResponseCode> {
        self.code.as_ref().and_then(response_code)
    }

    /// `Ok(self)` for OK; [`ImapError::Refused`] for NO and BAD.
    pub fn into_ok(self, command: &'static str) -> Result<Self, ImapError> {
        let refusal = match self.status {
            CompletionStatus::Ok => return Ok(self),
            CompletionStatus::No => Refusal::No,
            CompletionStatus::Bad => Refusal::Bad,
        };
        Err(ImapError::Refused {
            command,
            refusal,
            code: self.response_code(),
            text: self.text,
        })
    }
}

/// Maps a decoded response code to the error vocabulary; `None` for codes
/// that carry data rather than a reason (UIDNEXT, CAPABILITY, ...).
pub(crate) fn response_code(code: &Code<'_>) -> Option<ResponseCode> {
    match code {
        Code::OverQuota => Some(ResponseCode::OverQuota),
        Code::TryCreate => Some(ResponseCode::TryCreate),
        Code::TooBig => Some(ResponseCode::TooBig),
        Code::Parse => Some(ResponseCode::Parse),
        Code::ReadOnly => Some(ResponseCode::ReadOnly),
        Code::Alert => Some(ResponseCode::Other("ALERT".into())),
        Code::Other(other) => {
            let raw = other.inner();
            let atom_end = raw.iter().position(|&b| b == b' ').unwrap_or(raw.len());
            Some(ResponseCode::from_atom(&String::from_utf8_lossy(
                &raw[..atom_end],
            )))
        }
        _ => None,
    }
}

/// An untagged response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untagged {
    /// Server data (`* LIST ...`, `* 3 EXISTS`, `* 1 FETCH ...`).
    Data(Data<'static>),
    /// `* OK`, `* NO` or `* BAD`, usually with a code such as `[UIDVALIDITY n]`.
    Status {
        /// OK, NO or BAD.
        status: CompletionStatus,
        /// The response code, if any.
        code: Option<Code<'static>>,
        /// The text.
        text: String,
    },
    /// A response imap-codec could not decode. An operation whose answer
    /// has this keyword must fail rather than skip it (a lost FETCH or LIST
    /// line would silently drop a message or a folder).
    Undecodable {
        /// The response keyword, upper-cased: `FETCH` for `* 3 FETCH ...`,
        /// `LIST` for `* LIST ...`.
        keyword: String,
        /// Its first line, escaped.
        excerpt: String,
    },
}

impl Untagged {
    /// For an undecodable response with this keyword, the error to fail with.
    pub fn undecodable_as(&self, wanted: &str) -> Option<ImapError> {
        match self {
            Self::Undecodable { keyword, excerpt } if keyword.eq_ignore_ascii_case(wanted) => {
                Some(ImapError::Protocol {
                    expected: format!("a {wanted} response that can be decoded"),
                    got: excerpt.clone(),
                })
            }
            _ => None,
        }
    }
}
