//! `UID FETCH`, handing out each message as soon as its response is complete.

use std::collections::VecDeque;

use imap_codec::imap_types::{
    command::{Command, CommandBody, FetchModifier},
    core::{NString8, Tag},
    fetch::{MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName},
    flag::FlagFetch,
    response::Data,
};

use super::Operation;
use crate::protocol::imap::capabilities::Capabilities;
use crate::protocol::imap::error::ImapError;
use crate::protocol::imap::request::Request;
use crate::protocol::imap::response::{Completion, Untagged};
use crate::protocol::imap::types::{
    BodySection, FetchItems, FetchRequest, FetchedMessage, Flag, InternalDate, ModSeq, Uid,
};

/// `UID FETCH uids (...)`; read messages with [`Fetch::next_ready`] while
/// the command runs.
#[derive(Debug)]
pub struct Fetch {
    request: FetchRequest,
    ready: VecDeque<FetchedMessage>,
}

impl Fetch {
    /// A fetch of `request`.
    pub fn new(request: FetchRequest) -> Self {
        Self {
            request,
            ready: VecDeque::new(),
        }
    }

    /// The next complete message, if one arrived.
    pub fn next_ready(&mut self) -> Option<FetchedMessage> {
        self.ready.pop_front()
    }

    fn item_names(
        &self,
        caps: &Capabilities,
    ) -> Result<Vec<MessageDataItemName<'static>>, ImapError> {
        let mut items = vec![MessageDataItemName::Uid, MessageDataItemName::Flags];
        if let FetchItems::Full(section) = self.request.items {
            items.push(MessageDataItemName::InternalDate);
            items.push(MessageDataItemName::Rfc822Size);
            items.push(match section {
                BodySection::Body => MessageDataItemName::BodyExt {
                    section: None,
                    partial: None,
                    peek: true,
                },
                BodySection::Binary => {
                    if !caps.binary() {
                        return Err(ImapError::MissingCapability {
                            capability: "BINARY",
                            needed_for: "fetching BINARY.PEEK[]",
                        });
                    }
                    MessageDataItemName::Binary {
                        section: Vec::new(),
                        partial: None,
                        peek: true,
                    }
                }
            });
        }
        if caps.condstore() {
            items.push(MessageDataItemName::ModSeq);
        }
        Ok(items)
    }

    fn message(&self, seq: u32, items: Vec<MessageDataItem<'static>>) -> Option<FetchedMessage> {
        let mut uid = None;
        let mut flags = None;
        let mut recent = false;
        let mut internal_date = None;
        let mut size = None;
        let mut modseq = None;
        let mut body = None;
        for item in items {
            match item {
                MessageDataItem::Uid(u) => uid = Some(Uid::from(u)),
                MessageDataItem::Flags(list) => {
                    let mut kept = Vec::with_capacity(list.len());
                    for flag in &list {
                        match flag {
                            FlagFetch::Flag(f) => kept.push(Flag::from_wire(f)),
                            FlagFetch::Recent => recent = true,
                        }
                    }
                    flags = Some(kept);
                }
                MessageDataItem::InternalDate(date) => {
                    internal_date = Some(InternalDate::from_wire(&date));
                }
                MessageDataItem::Rfc822Size(n) => size = Some(n),
                MessageDataItem::ModSeq(m) => modseq = Some(ModSeq::from(m)),
                MessageDataItem::BodyExt {
                    section: None,
                    origin: None,
                    data,
                } if self.request.items == FetchItems::Full(BodySection::Body) => {
                    body = Some(data.into_option().map(|c| c.into_owned()));
                }
                MessageDataItem::Binary { section, value }
                    if section.is_empty()
                        && self.request.items == FetchItems::Full(BodySection::Binary) =>
                {
                    body = Some(match value {
                        NString8::NString(n) => n.into_option().map(|c| c.into_owned()),
                        NString8::Literal8(l) => Some(l.data.into_owned()),
                    });
                }
                _ => {}
            }
        }
        // A response without the requested data is an unsolicited update
        // (e.g. flags changed by another session), not an answer.
        let complete = match self.request.items {
            FetchItems::Full(_) => body.is_some(),
            FetchItems::FlagsOnly => flags.is_some(),
        };
        if !complete {
            return None;
        }
        Some(FetchedMessage {
            seq,
            uid: uid?,
            flags: flags.unwrap_or_default(),
            recent,
            internal_date,
            size,
            modseq,
            body: body.flatten(),
        })
    }
}

impl Operation for Fetch {
    type Output = ();

    fn command_name(&self) -> &'static str {
        "UID FETCH"
    }

    fn encode(&self, tag: &Tag<'static>, caps: &Capabilities) -> Result<Request, ImapError> {
        let mut modifiers = Vec::new();
        if let Some(modseq) = self.request.changed_since {
            if !caps.condstore() {
                return Err(ImapError::MissingCapability {
                    capability: "CONDSTORE",
                    needed_for: "UID FETCH with CHANGEDSINCE",
                });
            }
            modifiers.push(FetchModifier::ChangedSince(modseq.non_zero()));
        }
        let body = CommandBody::Fetch {
            sequence_set: self.request.uids.to_wire(),
            macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(
                self.item_names(caps)?,
            ),
            uid: true,
            modifiers,
        };
        Ok(Request::from_command(&Command {
            tag: tag.clone(),
            body,
        }))
    }

    fn on_untagged(&mut self, untagged: Untagged) -> Result<(), ImapError> {
        match untagged {
            Untagged::Data(Data::Fetch { seq, items }) => {
                if let Some(message) = self.message(seq.get(), items.into_inner()) {
                    self.ready.push_back(message);
                }
                Ok(())
            }
            // Skipping it would silently lose a message from the snapshot.
            other => match other.undecodable_as("FETCH") {
                Some(err) => Err(err),
                None => Ok(()),
            },
        }
    }

    fn complete(self, completion: Completion) -> Result<(), ImapError> {
        completion.into_ok("UID FETCH").map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::imap::ops::transcript::Transcript;
    use crate::protocol::imap::types::{UidRange, UidSet};

    const CAPS: &str = "* OK [CAPABILITY IMAP4rev1 CONDSTORE BINARY] hi\r\n";

    fn request(items: FetchItems, changed_since: Option<u64>) -> FetchRequest {
        FetchRequest {
            uids: UidSet::new(vec![UidRange::from(Uid::new(1).unwrap())]).unwrap(),
            items,
            changed_since: changed_since.and_then(ModSeq::new),
        }
    }

    fn run(
        t: &mut Transcript,
        req: FetchRequest,
        server: &[u8],
    ) -> (String, Result<Vec<FetchedMessage>, ImapError>) {
        struct Collect(Fetch, Vec<FetchedMessage>);
        impl Operation for Collect {
            type Output = Vec<FetchedMessage>;
            fn command_name(&self) -> &'static str {
                self.0.command_name()
            }
            fn encode(
                &self,
                tag: &Tag<'static>,
                caps: &Capabilities,
            ) -> Result<Request, ImapError> {
                self.0.encode(tag, caps)
            }
            fn on_untagged(&mut self, u: Untagged) -> Result<(), ImapError> {
                self.0.on_untagged(u)?;
                while let Some(m) = self.0.next_ready() {
                    self.1.push(m);
                }
                Ok(())
            }
            fn complete(self, c: Completion) -> Result<Vec<FetchedMessage>, ImapError> {
                self.0.complete(c)?;
                Ok(self.1)
            }
        }
        let (sent, result) = t.run_bytes(Collect(Fetch::new(req), Vec::new()), server);
        (String::from_utf8(sent).unwrap(), result)
    }

    #[test]
    fn full_fetch_streams_messages_with_8bit_bodies() {
        let mut t = Transcript::greeted(CAPS);
        let mut server = Vec::new();
        server.extend_from_slice(
            b"* 1 FETCH (UID 4 FLAGS (\\Seen $Forwarded \\Recent) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 10 MODSEQ (12) BODY[] {10}\r\nA: \xe4\xf6\r\n\r\nx)\r\n",
        );
        // An unsolicited flag update in between is not a message.
        server.extend_from_slice(b"* 1 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (13))\r\n");
        server.extend_from_slice(
            b"* 2 FETCH (UID 7 FLAGS () INTERNALDATE \"01-Jan-2024 00:00:00 +0000\" RFC822.SIZE 0 MODSEQ (3) BODY[] {0}\r\n)\r\n",
        );
        server.extend_from_slice(b"M1 OK Fetch completed.\r\n");
        let (sent, result) = run(
            &mut t,
            request(FetchItems::Full(BodySection::Body), None),
            &server,
        );
        assert_eq!(
            sent,
            "M1 UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[] MODSEQ)\r\n"
        );
        let messages = result.unwrap();
        assert_eq!(messages.len(), 2);
        let first = &messages[0];
        assert_eq!(first.uid.get(), 4);
        assert_eq!(first.seq, 1);
        assert_eq!(
            first.flags.iter().map(Flag::as_str).collect::<Vec<_>>(),
            vec!["\\Seen", "$Forwarded"]
        );
        assert!(first.recent);
        assert_eq!(first.size, Some(10));
        assert_eq!(first.modseq.map(ModSeq::get), Some(12));
        assert_eq!(first.body.as_deref(), Some(&b"A: \xe4\xf6\r\n\r\nx"[..]));
        assert_eq!(
            first.internal_date.unwrap().to_imap_string(),
            "17-Jul-1996 02:44:25 -0700"
        );
        assert_eq!(messages[1].body.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn binary_fetch_accepts_literal8_with_nul() {
        let mut t = Transcript::greeted(CAPS);
        let server = b"* 1 FETCH (UID 9 FLAGS () INTERNALDATE \"01-Jan-2024 00:00:00 +0000\" RFC822.SIZE 5 MODSEQ (1) BINARY[] ~{5}\r\na\0b\0c)\r\nM1 OK done\r\n";
        let (sent, result) = run(
            &mut t,
            request(FetchItems::Full(BodySection::Binary), None),
            server,
        );
        assert!(sent.contains("BINARY.PEEK[]"), "{sent}");
        assert_eq!(result.unwrap()[0].body.as_deref(), Some(&b"a\0b\0c"[..]));
    }

    #[test]
    fn flags_only_since_modseq() {
        let mut t = Transcript::greeted(CAPS);
        let server = b"* 3 FETCH (UID 10 FLAGS (\\Answered) MODSEQ (20))\r\nM1 OK done\r\n";
        let (sent, result) = run(&mut t, request(FetchItems::FlagsOnly, Some(15)), server);
        assert_eq!(
            sent,
            "M1 UID FETCH 1:* (UID FLAGS MODSEQ) (CHANGEDSINCE 15)\r\n"
        );
        let messages = result.unwrap();
        assert_eq!(messages[0].uid.get(), 10);
        assert_eq!(messages[0].body, None);
    }

    #[test]
    fn changedsince_needs_condstore() {
        let t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1] hi\r\n");
        let err = t
            .encode(&Fetch::new(request(FetchItems::FlagsOnly, Some(1))))
            .unwrap_err();
        assert!(matches!(
            err,
            ImapError::MissingCapability {
                capability: "CONDSTORE",
                ..
            }
        ));
    }

    #[test]
    fn undecodable_fetch_fails_instead_of_losing_a_message() {
        let mut t = Transcript::greeted(CAPS);
        let server = b"* 1 FETCH (UID 4 BODY[] {3}\r\na\0b)\r\nM1 OK done\r\n";
        let (_, result) = run(
            &mut t,
            request(FetchItems::Full(BodySection::Body), None),
            server,
        );
        assert!(
            matches!(result, Err(ImapError::Protocol { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn connection_cut_mid_literal_is_transient() {
        let mut t = Transcript::greeted(CAPS);
        let server = b"* 1 FETCH (UID 4 BODY[] {100}\r\nonly a part";
        let (_, result) = run(
            &mut t,
            request(FetchItems::Full(BodySection::Body), None),
            server,
        );
        let err = result.unwrap_err();
        assert!(matches!(err, ImapError::ConnectionClosed { .. }), "{err}");
        assert!(err.is_transient());
        assert!(err.to_string().contains("100-byte literal"), "{err}");
    }
}
