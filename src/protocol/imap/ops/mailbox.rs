//! Mailbox commands: NAMESPACE, LIST (extended or with LSUB), SELECT/EXAMINE,
//! STATUS, CREATE, SUBSCRIBE.

use std::borrow::Cow;
use std::collections::HashMap;

use imap_codec::imap_types::{
    command::{Command, CommandBody, SelectParameter},
    core::Tag,
    extensions::namespace::Namespace as WireNamespace,
    flag::{FlagNameAttribute, FlagPerm},
    mailbox::{ListMailbox, Mailbox},
    response::{Code, Data},
    status::{StatusDataItem, StatusDataItemName},
};

use super::Operation;
use crate::protocol::imap::capabilities::Capabilities;
use crate::protocol::imap::error::ImapError;
use crate::protocol::imap::request::Request;
use crate::protocol::imap::response::{Completion, Untagged};
use crate::protocol::imap::types::{
    Flag, MailboxAttribute, MailboxEntry, MailboxName, MailboxStatus, ModSeq, Namespace as Ns,
    Namespaces, SelectedMailbox, Uid, UidValidity,
};

fn request(tag: &Tag<'static>, body: CommandBody<'_>) -> Request {
    Request::from_command(&Command {
        tag: tag.clone(),
        body,
    })
}

fn namespaces(list: &[WireNamespace<'_>]) -> Vec<Ns> {
    list.iter()
        .map(|ns| Ns {
            prefix: MailboxName::from_raw(ns.prefix.as_ref().to_vec()),
            delimiter: ns.delimiter.as_ref().map(|d| d.inner()),
        })
        .collect()
}

/// `NAMESPACE` (RFC 2342).
#[derive(Debug, Default)]
pub struct Namespace {
    seen: Option<Namespaces>,
}

impl Operation for Namespace {
    type Output = Namespaces;

    fn command_name(&self) -> &'static str {
        "NAMESPACE"
    }

    fn encode(&self, tag: &Tag<'static>, caps: &Capabilities) -> Result<Request, ImapError> {
        if !caps.namespace() {
            return Err(ImapError::MissingCapability {
                capability: "NAMESPACE",
                needed_for: "NAMESPACE",
            });
        }
        Ok(request(tag, CommandBody::Namespace))
    }

    fn on_untagged(&mut self, untagged: Untagged) -> Result<(), ImapError> {
        if let Untagged::Data(Data::Namespace {
            personal,
            other,
            shared,
        }) = untagged
        {
            self.seen = Some(Namespaces {
                personal: namespaces(&personal),
                other_users: namespaces(&other),
                shared: namespaces(&shared),
            });
        }
        Ok(())
    }

    fn complete(self, completion: Completion) -> Result<Namespaces, ImapError> {
        completion.into_ok("NAMESPACE")?;
        self.seen.ok_or_else(|| ImapError::Protocol {
            expected: "an untagged NAMESPACE response".into(),
            got: "only the tagged OK".into(),
        })
    }
}

/// How to list mailboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMode {
    /// `LIST "" "*" RETURN (SUBSCRIBED CHILDREN [SPECIAL-USE])` (RFC 5258, RFC 6154).
    Extended {
        /// Whether to ask for special-use attributes too.
        special_use: bool,
    },
    /// Plain `LIST "" "*"`; subscriptions come from [`Lsub`] and [`merge_lsub`].
    Plain,
}

impl ListMode {
    /// The best mode the server offers.
    pub fn for_capabilities(caps: &Capabilities) -> Self {
        if caps.list_extended() {
            Self::Extended {
                special_use: caps.special_use(),
            }
        } else {
            Self::Plain
        }
    }
}

fn entry(
    items: &[FlagNameAttribute<'_>],
    delimiter: Option<char>,
    mailbox: &Mailbox,
) -> MailboxEntry {
    MailboxEntry {
        name: MailboxName::from_wire(mailbox),
        delimiter,
        attributes: items
            .iter()
            .map(|a| MailboxAttribute::parse(&a.to_string()))
            .collect(),
    }
}

/// `LIST "" "*"`, all mailboxes of the user.
#[derive(Debug)]
pub struct List {
    mode: ListMode,
    entries: Vec<MailboxEntry>,
}

impl List {
    /// A LIST in the given mode.
    pub fn new(mode: ListMode) -> Self {
        Self {
            mode,
            entries: Vec::new(),
        }
    }
}

impl Operation for List {
    type Output = Vec<MailboxEntry>;

    fn command_name(&self) -> &'static str {
        "LIST"
    }

    fn encode(&self, tag: &Tag<'static>, _: &Capabilities) -> Result<Request, ImapError> {
        let body = CommandBody::List {
            reference: Mailbox::try_from("").map_err(|_| ImapError::InvalidMailboxName {
                name: String::new(),
                reason: "empty LIST reference",
            })?,
            mailbox_wildcard: ListMailbox::try_from("*").map_err(|_| {
                ImapError::InvalidMailboxName {
                    name: "*".into(),
                    reason: "LIST pattern",
                }
            })?,
        };
        let mut req = request(tag, body);
        if let ListMode::Extended { special_use } = self.mode {
            let options: &[u8] = if special_use {
                b" RETURN (SUBSCRIBED CHILDREN SPECIAL-USE)\r\n"
            } else {
                b" RETURN (SUBSCRIBED CHILDREN)\r\n"
            };
            if !req.strip_final_crlf() {
                return Err(ImapError::Protocol {
                    expected: "imap-codec to end LIST with CRLF".into(),
                    got: "another ending".into(),
                });
            }
            req.push_bytes(options);
        }
        Ok(req)
    }

    fn on_untagged(&mut self, untagged: Untagged) -> Result<(), ImapError> {
        // Skipping a LIST line would silently leave a folder out of a snapshot.
        if let Some(err) = untagged.undecodable_as("LIST") {
            return Err(err);
        }
        if let Untagged::Data(Data::List {
            items,
            delimiter,
            mailbox,
        }) = &untagged
        {
            self.entries
                .push(entry(items, delimiter.as_ref().map(|d| d.inner()), mailbox));
        }
        Ok(())
    }

    fn complete(self, completion: Completion) -> Result<Vec<MailboxEntry>, ImapError> {
        completion.into_ok("LIST")?;
        Ok(self.entries)
    }
}

/// `LSUB "" "*"`, the subscribed names (for servers without LIST-EXTENDED).
#[derive(Debug, Default)]
pub struct Lsub {
    entries: Vec<MailboxEntry>,
}

impl Operation for Lsub {
    type Output = Vec<MailboxEntry>;

    fn command_name(&self) -> &'static str {
        "LSUB"
    }

    fn encode(&self, tag: &Tag<'static>, _: &Capabilities) -> Result<Request, ImapError> {
        let body = CommandBody::Lsub {
            reference: Mailbox::try_from("").map_err(|_| ImapError::InvalidMailboxName {
                name: String::new(),
                reason: "empty LSUB reference",
            })?,
            mailbox_wildcard: ListMailbox::try_from("*").map_err(|_| {
                ImapError::InvalidMailboxName {
                    name: "*".into(),
                    reason: "LSUB pattern",
                }
            })?,
        };
        Ok(request(tag, body))
    }

    fn on_untagged(&mut self, untagged: Untagged) -> Result<(), ImapError> {
        if let Some(err) = untagged.undecodable_as("LSUB") {
            return Err(err);
        }
        if let Untagged::Data(Data::Lsub {
            items,
            delimiter,
            mailbox,
        }) = &untagged
        {
            self.entries
                .push(entry(items, delimiter.as_ref().map(|d| d.inner()), mailbox));
        }
        Ok(())
    }

    fn complete(self, completion: Completion) -> Result<Vec<MailboxEntry>, ImapError> {
        completion.into_ok("LSUB")?;
        Ok(self.entries)
    }
}

/// Marks LIST entries `\Subscribed` when LSUB named them, and adds subscribed
/// names that LIST did not show as `\NonExistent \Subscribed`, as LIST-EXTENDED
/// would have.
pub fn merge_lsub(mut list: Vec<MailboxEntry>, lsub: Vec<MailboxEntry>) -> Vec<MailboxEntry> {
    let index: HashMap<Vec<u8>, usize> = list
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.raw().to_vec(), i))
        .collect();
    for sub in lsub {
        match index.get(sub.name.raw()) {
            Some(&i) => {
                if !list[i].is_subscribed() {
                    list[i].attributes.push(MailboxAttribute::Subscribed);
                }
            }
            None => list.push(MailboxEntry {
                name: sub.name,
                delimiter: sub.delimiter,
                attributes: vec![MailboxAttribute::NonExistent, MailboxAttribute::Subscribed],
            }),
        }
    }
    list
}

/// `SELECT` or `EXAMINE` (read-only), with `(CONDSTORE)` when offered.
#[derive(Debug)]
pub struct Select {
    mailbox: MailboxName,
    read_only: bool,
    uid_validity: Option<UidValidity>,
    uid_next: Option<Uid>,
    exists: Option<u32>,
    highest_modseq: Option<ModSeq>,
    flags: Vec<Flag>,
    permanent_flags: Vec<Flag>,
    can_create_keywords: bool,
}

impl Select {
    /// `EXAMINE mailbox`: nothing in the mailbox changes, not even `\Recent`.
    pub fn examine(mailbox: MailboxName) -> Self {
        Self::new(mailbox, true)
    }

    /// `SELECT mailbox`.
    pub fn read_write(mailbox: MailboxName) -> Self {
        Self::new(mailbox, false)
    }

    fn new(mailbox: MailboxName, read_only: bool) -> Self {
        Self {
            mailbox,
            read_only,
            uid_validity: None,
            uid_next: None,
            exists: None,
            highest_modseq: None,
            flags: Vec::new(),
            permanent_flags: Vec::new(),
            can_create_keywords: false,
        }
    }

    fn on_code(&mut self, code: &Code<'_>) {
        match code {
            Code::UidValidity(v) => self.uid_validity = Some(UidValidity::from(*v)),
            Code::UidNext(n) => self.uid_next = Some(Uid::from(*n)),
            Code::HighestModSeq(m) => self.highest_modseq = Some(ModSeq::from(*m)),
            Code::NoModSeq => self.highest_modseq = None,
            Code::PermanentFlags(perms) => {
                self.permanent_flags.clear();
                for perm in perms {
                    match perm {
                        FlagPerm::Flag(flag) => self.permanent_flags.push(Flag::from_wire(flag)),
                        FlagPerm::Asterisk => self.can_create_keywords = true,
                    }
                }
            }
            _ => {}
        }
    }
}

impl Operation for Select {
    type Output = SelectedMailbox;

    fn command_name(&self) -> &'static str {
        if self.read_only { "EXAMINE" } else { "SELECT" }
    }

    fn encode(&self, tag: &Tag<'static>, caps: &Capabilities) -> Result<Request, ImapError> {
        let mailbox = self.mailbox.to_wire()?;
        let parameters = if caps.condstore() {
            vec![SelectParameter::CondStore]
        } else {
            Vec::new()
        };
        let body = if self.read_only {
            CommandBody::Examine {
                mailbox,
                parameters,
            }
        } else {
            CommandBody::Select {
                mailbox,
                parameters,
            }
        };
        Ok(request(tag, body))
    }

    fn on_untagged(&mut self, untagged: Untagged) -> Result<(), ImapError> {
        match untagged {
            Untagged::Data(Data::Exists(n)) => self.exists = Some(n),
            Untagged::Data(Data::Flags(flags)) => {
                self.flags = flags.iter().map(Flag::from_wire).collect();
            }
            Untagged::Status {
                code: Some(code), ..
            } => self.on_code(&code),
            _ => {}
        }
        Ok(())
    }

    fn complete(mut self, completion: Completion) -> Result<SelectedMailbox, ImapError> {
        let name = self.command_name();
        let completion = completion.into_ok(name)?;
        let read_only = match &completion.code {
            Some(Code::ReadOnly) => true,
            Some(Code::ReadWrite) => false,
            Some(code) => {
                self.on_code(code);
                self.read_only
            }
            None => self.read_only,
        };
        let uid_validity = self.uid_validity.ok_or_else(|| ImapError::Protocol {
            expected: format!("an [UIDVALIDITY n] code in the answer to {name}"),
            got: "none".into(),
        })?;
        Ok(SelectedMailbox {
            uid_validity,
            uid_next: self.uid_next,
            exists: self.exists.unwrap_or(0),
            highest_modseq: self.highest_modseq,
            flags: self.flags,
            permanent_flags: self.permanent_flags,
            can_create_keywords: self.can_create_keywords,
            read_only,
        })
    }
}

/// `STATUS mailbox (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ])`.
#[derive(Debug)]
pub struct Status {
    mailbox: MailboxName,
    messages: Option<u32>,
    uid_next: Option<Uid>,
    uid_validity: Option<UidValidity>,
    highest_modseq: Option<ModSeq>,
}

impl Status {
    /// STATUS of `mailbox`.
    pub fn new(mailbox: MailboxName) -> Self {
        Self {
            mailbox,
            messages: None,
            uid_next: None,
            uid_validity: None,
            highest_modseq: None,
        }
    }
}

impl Operation for Status {
    type Output = MailboxStatus;

    fn command_name(&self) -> &'static str {
        "STATUS"
    }

    fn encode(&self, tag: &Tag<'static>, caps: &Capabilities) -> Result<Request, ImapError> {
        let mut items = vec![
            StatusDataItemName::Messages,
            StatusDataItemName::UidNext,
            StatusDataItemName::UidValidity,
        ];
        if caps.condstore() {
            items.push(StatusDataItemName::HighestModSeq);
        }
        let body = CommandBody::Status {
            mailbox: self.mailbox.to_wire()?,
            item_names: Cow::Owned(items),
        };
        Ok(request(tag, body))
    }

    fn on_untagged(&mut self, untagged: Untagged) -> Result<(), ImapError> {
        if let Some(err) = untagged.undecodable_as("STATUS") {
            return Err(err);
        }
        if let Untagged::Data(Data::Status { mailbox, items }) = untagged {
            if MailboxName::from_wire(&mailbox).raw() != self.mailbox.raw()
                && !(self.mailbox.is_inbox() && matches!(mailbox, Mailbox::Inbox))
            {
                return Ok(());
            }
            for item in items.iter() {
                match item {
                    StatusDataItem::Messages(n) => self.messages = Some(*n),
                    StatusDataItem::UidNext(n) => self.uid_next = Some(Uid::from(*n)),
                    StatusDataItem::UidValidity(v) => {
                        self.uid_validity = Some(UidValidity::from(*v));
                    }
                    StatusDataItem::HighestModSeq(m) => self.highest_modseq = ModSeq::new(*m),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn complete(self, completion: Completion) -> Result<MailboxStatus, ImapError> {
        completion.into_ok("STATUS")?;
        let missing = |item: &str| ImapError::Protocol {
            expected: format!("{item} in the STATUS answer for {}", self.mailbox),
            got: "no such item".into(),
        };
        Ok(MailboxStatus {
            messages: self.messages.ok_or_else(|| missing("MESSAGES"))?,
            uid_next: self.uid_next.ok_or_else(|| missing("UIDNEXT"))?,
            uid_validity: self.uid_validity.ok_or_else(|| missing("UIDVALIDITY"))?,
            highest_modseq: self.highest_modseq,
        })
    }
}

/// `CREATE mailbox`.
#[derive(Debug)]
pub struct Create(pub MailboxName);

impl Operation for Create {
    type Output = ();

    fn command_name(&self) -> &'static str {
        "CREATE"
    }

    fn encode(&self, tag: &Tag<'static>, _: &Capabilities) -> Result<Request, ImapError> {
        Ok(request(
            tag,
            CommandBody::Create {
                mailbox: self.0.to_wire()?,
            },
        ))
    }

    fn complete(self, completion: Completion) -> Result<(), ImapError> {
        completion.into_ok("CREATE").map(drop)
    }
}

/// `SUBSCRIBE mailbox`.
#[derive(Debug)]
pub struct Subscribe(pub MailboxName);

impl Operation for Subscribe {
    type Output = ();

    fn command_name(&self) -> &'static str {
        "SUBSCRIBE"
    }

    fn encode(&self, tag: &Tag<'static>, _: &Capabilities) -> Result<Request, ImapError> {
        Ok(request(
            tag,
            CommandBody::Subscribe {
                mailbox: self.0.to_wire()?,
            },
        ))
    }

    fn complete(self, completion: Completion) -> Result<(), ImapError> {
        completion.into_ok("SUBSCRIBE").map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::imap::error::{Refusal, ResponseCode};
    use crate::protocol::imap::ops::transcript::Transcript;
    use crate::protocol::imap::types::SpecialUse;

    const DOVECOT: &str = "* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE \
        IDLE SORT SORT=DISPLAY THREAD=REFERENCES MULTIAPPEND URL-PARTIAL CATENATE UNSELECT \
        CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT \
        SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY \
        PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE] Logged in\r\n";

    fn name(raw: &[u8]) -> MailboxName {
        MailboxName::from_raw(raw.to_vec())
    }

    #[test]
    fn extended_list_with_special_use_and_mutf7() {
        let mut t = Transcript::greeted(DOVECOT);
        let server = concat!(
            "* LIST (\\HasChildren \\Subscribed) \"/\" INBOX\r\n",
            "* LIST (\\HasNoChildren \\Subscribed \\Sent) \"/\" Sent\r\n",
            "* LIST (\\HasNoChildren) \"/\" \"Projekte/&AMQ-rger\"\r\n",
            "* LIST (\\Subscribed \\NonExistent) \"/\" gone\r\n",
            "* LIST (\\Noselect \\HasChildren) \"/\" {8}\r\nweird\"\\x\r\n",
            "M1 OK List completed (0.001 + 0.000 secs).\r\n"
        );
        let mode = ListMode::for_capabilities(t.core.capabilities());
        let (sent, result) = t.run(List::new(mode), server);
        assert_eq!(
            sent,
            "M1 LIST \"\" * RETURN (SUBSCRIBED CHILDREN SPECIAL-USE)\r\n"
        );
        let entries = result.unwrap();
        assert_eq!(entries.len(), 5);
        assert!(entries[0].name.is_inbox() && entries[0].is_subscribed());
        assert_eq!(entries[0].delimiter, Some('/'));
        assert_eq!(
            entries[1].special_uses().collect::<Vec<_>>(),
            vec![&SpecialUse::Sent]
        );
        assert_eq!(entries[2].name.raw(), b"Projekte/&AMQ-rger");
        assert_eq!(entries[2].name.as_str(), "Projekte/Ärger");
        assert!(!entries[2].is_subscribed());
        assert!(!entries[3].is_selectable() && entries[3].is_subscribed());
        assert_eq!(entries[4].name.raw(), b"weird\"\\x");
        assert!(!entries[4].is_selectable());
    }

    #[test]
    fn undecodable_list_line_fails_the_list() {
        let mut t = Transcript::greeted(DOVECOT);
        let (_, result) = t.run(
            List::new(ListMode::Plain),
            "* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (((broken\r\nM1 OK done\r\n",
        );
        assert!(
            matches!(result, Err(ImapError::Protocol { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn plain_list_merges_lsub() {
        let mut t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1] hi\r\n");
        assert_eq!(
            ListMode::for_capabilities(t.core.capabilities()),
            ListMode::Plain
        );
        let (sent, list) = t.run(
            List::new(ListMode::Plain),
            "* LIST () \".\" INBOX\r\n* LIST () \".\" INBOX.Work\r\nM1 OK done\r\n",
        );
        assert_eq!(sent, "M1 LIST \"\" *\r\n");
        let (sent, lsub) = t.run(
            Lsub::default(),
            "* LSUB () \".\" INBOX.Work\r\n* LSUB () \".\" INBOX.Old\r\nM2 OK done\r\n",
        );
        assert_eq!(sent, "M2 LSUB \"\" *\r\n");
        let merged = merge_lsub(list.unwrap(), lsub.unwrap());
        assert_eq!(merged.len(), 3);
        assert!(!merged[0].is_subscribed());
        assert!(merged[1].is_subscribed() && merged[1].is_selectable());
        assert_eq!(merged[2].name.raw(), b"INBOX.Old");
        assert!(merged[2].is_subscribed() && !merged[2].is_selectable());
    }

    #[test]
    fn namespace_personal_prefix() {
        let mut t = Transcript::greeted(DOVECOT);
        let (sent, result) = t.run(
            Namespace::default(),
            "* NAMESPACE ((\"\" \"/\")) ((\"~\" \"/\")) NIL\r\nM1 OK Namespace completed.\r\n",
        );
        assert_eq!(sent, "M1 NAMESPACE\r\n");
        let ns = result.unwrap();
        assert_eq!(ns.personal.len(), 1);
        assert_eq!(ns.personal[0].prefix.raw(), b"");
        assert_eq!(ns.personal[0].delimiter, Some('/'));
        assert_eq!(ns.other_users[0].prefix.raw(), b"~");
        assert!(ns.shared.is_empty());
    }

    #[test]
    fn examine_with_condstore() {
        let mut t = Transcript::greeted(DOVECOT);
        let server = concat!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded)\r\n",
            "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n",
            "* 3 EXISTS\r\n",
            "* 0 RECENT\r\n",
            "* OK [UIDVALIDITY 1700000000] UIDs valid\r\n",
            "* OK [UIDNEXT 4] Predicted next UID\r\n",
            "* OK [HIGHESTMODSEQ 7] Highest\r\n",
            "M1 OK [READ-ONLY] Examine completed (0.001 + 0.000 secs).\r\n"
        );
        let (sent, result) = t.run(Select::examine(name(b"Sent")), server);
        assert_eq!(sent, "M1 EXAMINE Sent (CONDSTORE)\r\n");
        let selected = result.unwrap();
        assert_eq!(selected.uid_validity.get(), 1_700_000_000);
        assert_eq!(selected.uid_next.map(Uid::get), Some(4));
        assert_eq!(selected.exists, 3);
        assert_eq!(selected.highest_modseq.map(ModSeq::get), Some(7));
        assert_eq!(selected.flags.len(), 6);
        assert!(selected.permanent_flags.is_empty());
        assert!(selected.read_only);
    }

    #[test]
    fn select_without_condstore_and_with_keywords() {
        let mut t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1] hi\r\n");
        let server = concat!(
            "* OK [PERMANENTFLAGS (\\Seen \\Deleted \\*)] Limited\r\n",
            "* 0 EXISTS\r\n",
            "* OK [UIDVALIDITY 42] UIDs valid\r\n",
            "M1 OK [READ-WRITE] Select completed.\r\n"
        );
        let (sent, result) = t.run(Select::read_write(name(b"INBOX")), server);
        assert_eq!(sent, "M1 SELECT INBOX\r\n");
        let selected = result.unwrap();
        assert!(!selected.read_only);
        assert!(selected.can_create_keywords);
        assert_eq!(selected.permanent_flags.len(), 2);
        assert_eq!(selected.highest_modseq, None);
        assert_eq!(selected.uid_next, None);
    }

    #[test]
    fn select_without_uidvalidity_is_a_protocol_error() {
        let mut t = Transcript::greeted("* OK [CAPABILITY IMAP4rev1] hi\r\n");
        let (_, result) = t.run(
            Select::examine(name(b"INBOX")),
            "* 0 EXISTS\r\nM1 OK [READ-ONLY] done\r\n",
        );
        assert!(matches!(result, Err(ImapError::Protocol { .. })));
    }

    #[test]
    fn examine_of_missing_mailbox() {
        let mut t = Transcript::greeted(DOVECOT);
        let (_, result) = t.run(
            Select::examine(name(b"nope")),
            "M1 NO [NONEXISTENT] Mailbox doesn't exist: nope\r\n",
        );
        let err = result.unwrap_err();
        assert_eq!(err.response_code(), Some(&ResponseCode::NonExistent));
        assert!(!err.is_transient());
    }

    #[test]
    fn status_items() {
        let mut t = Transcript::greeted(DOVECOT);
        let (sent, result) = t.run(
            Status::new(MailboxName::from_utf8("Ärger").unwrap()),
            "* STATUS &AMQ-rger (MESSAGES 2 UIDNEXT 9 UIDVALIDITY 77 HIGHESTMODSEQ 5)\r\n\
             M1 OK Status completed.\r\n",
        );
        assert_eq!(
            sent,
            "M1 STATUS &AMQ-rger (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n"
        );
        let status = result.unwrap();
        assert_eq!(status.messages, 2);
        assert_eq!(status.uid_next.get(), 9);
        assert_eq!(status.uid_validity.get(), 77);
        assert_eq!(status.highest_modseq.map(ModSeq::get), Some(5));
    }

    #[test]
    fn create_existing_is_already_exists() {
        let mut t = Transcript::greeted(DOVECOT);
        let (sent, result) = t.run(
            Create(MailboxName::from_utf8("Restore 2024/Sent").unwrap()),
            "M1 NO [ALREADYEXISTS] Mailbox already exists\r\n",
        );
        assert_eq!(sent, "M1 CREATE \"Restore 2024/Sent\"\r\n");
        match result.unwrap_err() {
            ImapError::Refused {
                command: "CREATE",
                refusal: Refusal::No,
                code: Some(ResponseCode::AlreadyExists),
                ..
            } => {}
            other => panic!("{other}"),
        }
    }

    #[test]
    fn subscribe_sends_the_raw_name() {
        let mut t = Transcript::greeted(DOVECOT);
        let (sent, result) = t.run(
            Subscribe(name(b"Projekte/&AMQ-rger")),
            "M1 OK Subscribe completed.\r\n",
        );
        assert_eq!(sent, "M1 SUBSCRIBE Projekte/&AMQ-rger\r\n");
        result.unwrap();
    }
}
