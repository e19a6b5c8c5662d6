//! `APPEND` of one message and `MULTIAPPEND` (RFC 3502) of many.
//!
//! imap-codec's `CommandBody::Append` carries one message, so MULTIAPPEND
//! encodes the command head and first message with the library and writes
//! each further ` [(flags)] ["date"] {n+}` part itself. Literals are
//! non-synchronising when LITERAL+ (or LITERAL- for small ones) is offered,
//! and BINARY literals (`~{n}`) when a message contains NUL.

use std::borrow::Cow;

use imap_codec::imap_types::{
    command::{Command, CommandBody},
    core::{Literal, LiteralMode, Tag},
    extensions::binary::{Literal8, LiteralOrLiteral8},
    response::Code,
};

use super::Operation;
use crate::protocol::imap::capabilities::Capabilities;
use crate::protocol::imap::error::ImapError;
use crate::protocol::imap::request::Request;
use crate::protocol::imap::response::Completion;
use crate::protocol::imap::types::{
    AppendMessage, AppendUid, AppendUids, InternalDate, MailboxName, Uid, UidSet, UidValidity,
};

fn literal_mode(caps: &Capabilities, len: usize) -> LiteralMode {
    if caps.non_sync_literal_allowed(len) {
        LiteralMode::NonSync
    } else {
        LiteralMode::Sync
    }
}

/// Whether the message needs a BINARY literal; refuses if the server has none.
fn needs_binary(caps: &Capabilities, content: &[u8]) -> Result<bool, ImapError> {
    if !content.contains(&0) {
        return Ok(false);
    }
    if caps.binary() {
        Ok(true)
    } else {
        Err(ImapError::MessageHasNul)
    }
}

fn wire_date(date: InternalDate) -> Result<imap_codec::imap_types::datetime::DateTime, ImapError> {
    date.to_wire().ok_or(ImapError::InvalidInternalDate {
        unix_seconds: date.unix_seconds(),
        offset_seconds: date.offset_seconds(),
    })
}

/// Encodes `APPEND mailbox [flags] [date] literal` for one message with imap-codec.
fn encode_first(
    tag: &Tag<'static>,
    caps: &Capabilities,
    mailbox: &MailboxName,
    message: &AppendMessage<'_>,
) -> Result<Request, ImapError> {
    let flags = message
        .flags
        .iter()
        .filter(|f| !f.is_recent())
        .map(|f| f.to_wire())
        .collect::<Result<Vec<_>, _>>()?;
    let date = message.internal_date.map(wire_date).transpose()?;
    let mode = literal_mode(caps, message.content.len());
    let literal = if needs_binary(caps, message.content)? {
        LiteralOrLiteral8::Literal8(Literal8 {
            data: Cow::Borrowed(message.content),
            mode,
        })
    } else {
        let mut literal =
            Literal::try_from(message.content).map_err(|_| ImapError::MessageHasNul)?;
        literal.set_mode(mode);
        LiteralOrLiteral8::Literal(literal)
    };
    let body = CommandBody::Append {
        mailbox: mailbox.to_wire()?,
        flags,
        date,
        message: literal,
    };
    Ok(Request::from_command(&Command {
        tag: tag.clone(),
        body,
    }))
}

/// Appends ` [(flags)] ["date"] {n}` + message for a further MULTIAPPEND part.
fn push_part(
    request: &mut Request,
    caps: &Capabilities,
    message: &AppendMessage<'_>,
) -> Result<(), ImapError> {
    let mut head = String::new();
    let flags = message
        .flags
        .iter()
        .filter(|f| !f.is_recent())
        .map(|f| f.to_wire().map(|w| w.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    if !flags.is_empty() {
        head.push_str(" (");
        head.push_str(&flags.join(" "));
        head.push(')');
    }
    if let Some(date) = message.internal_date {
        wire_date(date)?;
        head.push_str(" \"");
        head.push_str(&date.to_imap_string());
        head.push('"');
    }
    let binary = needs_binary(caps, message.content)?;
    let mode = literal_mode(caps, message.content.len());
    head.push_str(if binary { " ~{" } else { " {" });
    head.push_str(&message.content.len().to_string());
    head.push_str(match mode {
        LiteralMode::NonSync => "+}\r\n",
        LiteralMode::Sync => "}\r\n",
    });
    request.push_bytes(head.into_bytes());
    if mode == LiteralMode::Sync {
        request.await_continuation();
    }
    request.push_bytes(message.content.to_vec());
    Ok(())
}

/// The `[APPENDUID validity uid-set]` of a completion, decoded by imap-codec
/// for one UID and from the raw code for a set (RFC 4315).
fn append_uids(code: Option<&Code<'_>>) -> Option<(UidValidity, UidSet)> {
    match code? {
        Code::AppendUid { uid_validity, uid } => Some((
            UidValidity::from(*uid_validity),
            UidSet::new(vec![crate::protocol::imap::types::UidRange::single(
                Uid::from(*uid),
            )])?,
        )),
        Code::Other(other) => {
            let text = std::str::from_utf8(other.inner()).ok()?;
            let mut words = text.split(' ');
            if !words.next()?.eq_ignore_ascii_case("APPENDUID") {
                return None;
            }
            let validity = UidValidity::new(words.next()?.parse().ok()?)?;
            let set = UidSet::parse(words.next()?)?;
            words.next().is_none().then_some((validity, set))
        }
        _ => None,
    }
}

/// `APPEND` of one message; answers its APPENDUID under UIDPLUS.
#[derive(Debug)]
pub struct Append<'a> {
    mailbox: MailboxName,
    message: AppendMessage<'a>,
}

impl<'a> Append<'a> {
    /// Appends `message` to `mailbox`.
    pub fn new(mailbox: MailboxName, message: AppendMessage<'a>) -> Self {
        Self { mailbox, message }
    }
}

impl Operation for Append<'_> {
    type Output = Option<AppendUid>;

    fn command_name(&self) -> &'static str {
        "APPEND"
    }

    fn encode(&self, tag: &Tag<'static>, caps: &Capabilities) -> Result<Request, ImapError> {
        encode_first(tag, caps, &self.mailbox, &self.message)
    }

    fn complete(self, completion: Completion) -> Result<Option<AppendUid>, ImapError> {
        let completion = completion.into_ok("APPEND")?;
        let Some((uid_validity, set)) = append_uids(completion.code.as_ref()) else {
            return Ok(None);
        };
        match set.expand(1).as_deref() {
            Some([uid]) => Ok(Some(AppendUid {
                uid_validity,
                uid: *uid,
            })),
            _ => Err(ImapError::Protocol {
                expected: "one UID in the APPENDUID of a single APPEND".into(),
                got: format!("APPENDUID {uid_validity} {set}"),
            }),
        }
    }
}

/// `APPEND` of several messages in one command (RFC 3502): all or none are
/// stored. Answers the APPENDUID UIDs in message order under UIDPLUS.
#[derive(Debug)]
pub struct MultiAppend<'a> {
    mailbox: MailboxName,
    messages: &'a [AppendMessage<'a>],
}

impl<'a> MultiAppend<'a> {
    /// Appends `messages` to `mailbox` in one command.
    pub fn new(mailbox: MailboxName, messages: &'a [AppendMessage<'a>]) -> Self {
        Self { mailbox, messages }
    }
}

impl Operation for MultiAppend<'_> {
    type Output = Option<AppendUids>;

    fn command_name(&self) -> &'static str {
        "APPEND (MULTIAPPEND)"
    }

    fn encode(&self, tag: &Tag<'static>, caps: &Capabilities) -> Result<Request, ImapError> {
        let Some((first, rest)) = self.messages.split_first() else {
            return Err(ImapError::NothingToAppend);
        };
        if !rest.is_empty() && !caps.multiappend() {
            return Err(ImapError::MissingCapability {
                capability: "MULTIAPPEND",
                needed_for: "appending several messages in one command",
            });
        }
        let mut request = encode_first(tag, caps, &self.mailbox, first)?;
        if rest.is_empty() {
            return Ok(request);
        }
        if !request.strip_final_crlf() {
            return Err(ImapError::Protocol {
                expected: "imap-codec to end APPEND with CRLF".into(),
                got: "another ending".into(),
            });
        }
        for message in rest {
            push_part(&mut request, caps, message)?;
        }
        request.push_bytes(&b"\r\n"[..]);
        Ok(request)
    }

    fn complete(self, completion: Completion) -> Result<Option<AppendUids>, ImapError> {
        let completion = completion.into_ok("APPEND")?;
        let Some((uid_validity, set)) = append_uids(completion.code.as_ref()) else {
            return Ok(None);
        };
        match set.expand(self.messages.len()) {
            Some(uids) if uids.len() == self.messages.len() => {
                Ok(Some(AppendUids { uid_validity, uids }))
            }
            _ => Err(ImapError::Protocol {
                expected: format!(
                    "{} UIDs in the APPENDUID of a MULTIAPPEND",
                    self.messages.len()
                ),
                got: format!("APPENDUID {uid_validity} {set}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::imap::error::ResponseCode;
    use crate::protocol::imap::ops::transcript::Transcript;
    use crate::protocol::imap::request::Chunk;
    use crate::protocol::imap::types::Flag;

    const FULL: &str = "* OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND UIDPLUS BINARY] hi\r\n";
    const BARE: &str = "* OK [CAPABILITY IMAP4rev1 MULTIAPPEND] hi\r\n";

    fn flags(list: &[&str]) -> Vec<Flag> {
        list.iter().map(|f| Flag::new(*f).unwrap()).collect()
    }

    fn inbox() -> MailboxName {
        MailboxName::from_utf8("Restored/Ärger").unwrap()
    }

    #[test]
    fn append_with_literal_plus_and_appenduid() {
        let mut t = Transcript::greeted(FULL);
        let f = flags(&["\\Seen", "$Work", "\\Recent"]);
        let message = AppendMessage {
            content: b"Subject: x\r\n\r\n\xe4",
            flags: &f,
            internal_date: InternalDate::new(837_596_665, -7 * 3600),
        };
        let (sent, result) = t.run_bytes(
            Append::new(inbox(), message),
            b"M1 OK [APPENDUID 38505 3955] Append completed.\r\n",
        );
        assert_eq!(
            sent,
            b"M1 APPEND Restored/&AMQ-rger (\\Seen $Work) \"17-Jul-1996 02:44:25 -0700\" {15+}\r\nSubject: x\r\n\r\n\xe4\r\n"
        );
        let uid = result.unwrap().unwrap();
        assert_eq!((uid.uid_validity.get(), uid.uid.get()), (38505, 3955));
    }

    #[test]
    fn append_waits_for_continuation_without_literal_plus() {
        let t = Transcript::greeted(BARE);
        let message = AppendMessage {
            content: b"hello",
            flags: &[],
            internal_date: None,
        };
        let request = t.encode(&Append::new(inbox(), message)).unwrap();
        let chunks: Vec<_> = request.chunks().cloned().collect();
        assert_eq!(
            chunks,
            vec![
                Chunk::Data(b"M1 APPEND Restored/&AMQ-rger {5}\r\n".to_vec().into()),
                Chunk::AwaitContinuation,
                Chunk::Data(b"hello\r\n".to_vec().into()),
            ]
        );
    }

    #[test]
    fn refused_sync_literal_is_never_sent() {
        let mut t = Transcript::greeted(BARE);
        let message = AppendMessage {
            content: b"hello",
            flags: &[],
            internal_date: None,
        };
        let (sent, result) = t.run(
            Append::new(inbox(), message),
            "M1 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n",
        );
        assert_eq!(sent, "M1 APPEND Restored/&AMQ-rger {5}\r\n");
        let err = result.unwrap_err();
        assert_eq!(err.response_code(), Some(&ResponseCode::OverQuota));
        assert!(!err.is_transient());
    }

    #[test]
    fn nul_bytes_use_a_binary_literal() {
        let mut t = Transcript::greeted(FULL);
        let message = AppendMessage {
            content: b"a\0b",
            flags: &[],
            internal_date: None,
        };
        let (sent, result) = t.run_bytes(Append::new(inbox(), message), b"M1 OK done\r\n");
        assert_eq!(sent, b"M1 APPEND Restored/&AMQ-rger ~{3+}\r\na\0b\r\n");
        assert_eq!(result.unwrap(), None, "no APPENDUID was given");
    }

    #[test]
    fn nul_bytes_without_binary_are_refused() {
        let t = Transcript::greeted(BARE);
        let message = AppendMessage {
            content: b"a\0b",
            flags: &[],
            internal_date: None,
        };
        assert!(matches!(
            t.encode(&Append::new(inbox(), message)),
            Err(ImapError::MessageHasNul)
        ));
    }

    #[test]
    fn multiappend_writes_further_parts_and_parses_the_uid_set() {
        let mut t = Transcript::greeted(FULL);
        let seen = flags(&["\\Seen"]);
        let kw = flags(&["$Label1", "\\Flagged"]);
        let messages = [
            AppendMessage {
                content: b"one",
                flags: &seen,
                internal_date: InternalDate::new(0, 0),
            },
            AppendMessage {
                content: b"two\0",
                flags: &kw,
                internal_date: InternalDate::new(86_400, 3600),
            },
            AppendMessage {
                content: b"three",
                flags: &[],
                internal_date: None,
            },
        ];
        let (sent, result) = t.run_bytes(
            MultiAppend::new(inbox(), &messages),
            b"M1 OK [APPENDUID 38505 3955:3957] Append completed.\r\n",
        );
        assert_eq!(
            String::from_utf8_lossy(&sent),
            "M1 APPEND Restored/&AMQ-rger (\\Seen) \"01-Jan-1970 00:00:00 +0000\" {3+}\r\none \
             ($Label1 \\Flagged) \"02-Jan-1970 01:00:00 +0100\" ~{4+}\r\ntwo\0 {5+}\r\nthree\r\n"
        );
        let uids = result.unwrap().unwrap();
        assert_eq!(uids.uid_validity.get(), 38505);
        assert_eq!(
            uids.uids.iter().map(|u| u.get()).collect::<Vec<_>>(),
            vec![3955, 3956, 3957]
        );
    }

    #[test]
    fn multiappend_with_sync_literals_waits_for_each() {
        let mut t = Transcript::greeted(BARE);
        let messages = [
            AppendMessage {
                content: b"one",
                flags: &[],
                internal_date: None,
            },
            AppendMessage {
                content: b"two",
                flags: &[],
                internal_date: None,
            },
        ];
        let (sent, result) = t.run(
            MultiAppend::new(inbox(), &messages),
            "+ OK\r\n+ OK\r\nM1 OK Append completed.\r\n",
        );
        assert_eq!(
            sent,
            "M1 APPEND Restored/&AMQ-rger {3}\r\none {3}\r\ntwo\r\n"
        );
        assert_eq!(result.unwrap(), None);
    }

    #[test]
    fn multiappend_uid_count_must_match() {
        let mut t = Transcript::greeted(FULL);
        let messages = [
            AppendMessage {
                content: b"one",
                flags: &[],
                internal_date: None,
            },
            AppendMessage {
                content: b"two",
                flags: &[],
                internal_date: None,
            },
        ];
        let (_, result) = t.run(
            MultiAppend::new(inbox(), &messages),
            "M1 OK [APPENDUID 1 5] Append completed.\r\n",
        );
        assert!(matches!(result, Err(ImapError::Protocol { .. })));
    }

    #[test]
    fn multiappend_needs_the_capability_and_a_message() {
        let t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n");
        let two = [AppendMessage {
            content: b"a",
            flags: &[],
            internal_date: None,
        }; 2];
        assert!(matches!(
            t.encode(&MultiAppend::new(inbox(), &two)),
            Err(ImapError::MissingCapability {
                capability: "MULTIAPPEND",
                ..
            })
        ));
        assert!(matches!(
            t.encode(&MultiAppend::new(inbox(), &[])),
            Err(ImapError::NothingToAppend)
        ));
    }
}
