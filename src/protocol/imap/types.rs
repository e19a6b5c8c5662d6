//! The typed values the IMAP layer hands out and takes in.
//!
//! These are the crate's own types, so callers never see imap-codec's
//! borrowed, alpha-versioned types. Conversions to and from imap-types live
//! here too, crate-private.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};

use chrono::{DateTime as ChronoDateTime, FixedOffset};
use imap_codec::imap_types::{
    core::{AString, Vec1},
    datetime::DateTime,
    flag::Flag as WireFlag,
    mailbox::Mailbox,
    sequence::{SeqOrUid, Sequence, SequenceSet},
};

use super::error::ImapError;
use super::mutf7;

/// A message's unique identifier within one UIDVALIDITY epoch of a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(NonZeroU32);

impl Uid {
    /// `None` for 0, which is never a UID.
    pub fn new(value: u32) -> Option<Self> {
        NonZeroU32::new(value).map(Self)
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl From<NonZeroU32> for Uid {
    fn from(value: NonZeroU32) -> Self {
        Self(value)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A mailbox's UIDVALIDITY: when it changes, all earlier UIDs are void.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UidValidity(NonZeroU32);

impl UidValidity {
    /// `None` for 0, which is never a UIDVALIDITY.
    pub fn new(value: u32) -> Option<Self> {
        NonZeroU32::new(value).map(Self)
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl From<NonZeroU32> for UidValidity {
    fn from(value: NonZeroU32) -> Self {
        Self(value)
    }
}

impl fmt::Display for UidValidity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A CONDSTORE modification sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModSeq(NonZeroU64);

impl ModSeq {
    /// `None` for 0, which is never sent as a mod-sequence here.
    pub fn new(value: u64) -> Option<Self> {
        NonZeroU64::new(value).map(Self)
    }

    /// The numeric value.
    pub fn get(self) -> u64 {
        self.0.get()
    }

    pub(crate) fn non_zero(self) -> NonZeroU64 {
        self.0
    }
}

impl From<NonZeroU64> for ModSeq {
    fn from(value: NonZeroU64) -> Self {
        Self(value)
    }
}

impl fmt::Display for ModSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A message flag as the server spells it: `\Seen`, `\Answered`, or a
/// keyword such as `$Forwarded` or `Work`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flag(String);

impl Flag {
    /// Parses a flag; refuses anything that is not `\Atom` or a keyword atom.
    pub fn new(flag: impl Into<String>) -> Result<Self, ImapError> {
        let flag = flag.into();
        match WireFlag::try_from(flag.as_str()) {
            Ok(_) => Ok(Self(flag)),
            Err(_) => Err(ImapError::InvalidFlag { flag }),
        }
    }

    /// The flag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `\Recent`, which only the server sets.
    pub fn is_recent(&self) -> bool {
        self.0.eq_ignore_ascii_case("\\Recent")
    }

    /// `\Seen`.
    pub fn is_seen(&self) -> bool {
        self.0.eq_ignore_ascii_case("\\Seen")
    }

    pub(crate) fn to_wire(&self) -> Result<WireFlag<'_>, ImapError> {
        WireFlag::try_from(self.0.as_str()).map_err(|_| ImapError::InvalidFlag {
            flag: self.0.clone(),
        })
    }

    pub(crate) fn from_wire(flag: &WireFlag<'_>) -> Self {
        Self(flag.to_string())
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message's INTERNALDATE: an instant plus the UTC offset it was given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InternalDate {
    unix_seconds: i64,
    offset_seconds: i32,
}

impl InternalDate {
    /// A date from seconds since the epoch and a UTC offset (whole minutes,
    /// within ±24 h, years 0..=9999 as IMAP can express).
    pub fn new(unix_seconds: i64, offset_seconds: i32) -> Option<Self> {
        let date = Self {
            unix_seconds,
            offset_seconds,
        };
        let chrono = date.to_chrono()?;
        (offset_seconds % 60 == 0 && DateTime::try_from(chrono).is_ok()).then_some(date)
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.unix_seconds
    }

    /// The UTC offset in seconds.
    pub fn offset_seconds(self) -> i32 {
        self.offset_seconds
    }

    /// The IMAP form, e.g. `17-Jul-1996 02:44:25 -0700`.
    pub fn to_imap_string(self) -> String {
        match self.to_chrono() {
            Some(dt) => dt.format("%d-%b-%Y %H:%M:%S %z").to_string(),
            // `new` and `from_wire` only build dates chrono can represent.
            None => String::new(),
        }
    }

    /// Parses the IMAP form (`17-Jul-1996 02:44:25 -0700`, day possibly
    /// space-padded), as stored in manifests or sent by servers.
    pub fn parse_imap(text: &str) -> Option<Self> {
        let text = text.trim();
        let padded;
        let text = if text.as_bytes().get(1) == Some(&b'-') {
            padded = format!("0{text}");
            padded.as_str()
        } else {
            text
        };
        let dt = ChronoDateTime::parse_from_str(text, "%d-%b-%Y %H:%M:%S %z").ok()?;
        Self::new(dt.timestamp(), dt.offset().local_minus_utc())
    }

    fn to_chrono(self) -> Option<ChronoDateTime<FixedOffset>> {
        let offset = FixedOffset::east_opt(self.offset_seconds)?;
        Some(ChronoDateTime::from_timestamp(self.unix_seconds, 0)?.with_timezone(&offset))
    }

    pub(crate) fn to_wire(self) -> Option<DateTime> {
        DateTime::try_from(self.to_chrono()?).ok()
    }

    pub(crate) fn from_wire(date: &DateTime) -> Self {
        let dt: &ChronoDateTime<FixedOffset> = date.as_ref();
        Self {
            unix_seconds: dt.timestamp(),
            offset_seconds: dt.offset().local_minus_utc(),
        }
    }
}

impl fmt::Display for InternalDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_imap_string())
    }
}

/// One element of a UID set: a single UID or an inclusive range; an open end
/// (`n:*`) means "up to the highest UID".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    /// The first UID.
    pub first: Uid,
    /// The last UID (inclusive); `None` means `*`.
    pub last: Option<Uid>,
}

impl UidRange {
    /// A single UID.
    pub fn single(uid: Uid) -> Self {
        Self {
            first: uid,
            last: Some(uid),
        }
    }

    /// `first:last`.
    pub fn new(first: Uid, last: Uid) -> Self {
        Self {
            first: first.min(last),
            last: Some(first.max(last)),
        }
    }

    /// `first:*`.
    pub fn from(first: Uid) -> Self {
        Self { first, last: None }
    }

    fn to_wire(self) -> Sequence {
        match self.last {
            Some(last) if last == self.first => Sequence::Single(SeqOrUid::Value(self.first.0)),
            Some(last) => Sequence::Range(SeqOrUid::Value(self.first.0), SeqOrUid::Value(last.0)),
            None => Sequence::Range(SeqOrUid::Value(self.first.0), SeqOrUid::Asterisk),
        }
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last {
            Some(last) if last == self.first => write!(f, "{}", self.first),
            Some(last) => write!(f, "{}:{}", self.first, last),
            None => write!(f, "{}:*", self.first),
        }
    }
}

/// A non-empty set of UIDs, as in `1:5,7,9:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidSet(Vec<UidRange>);

impl UidSet {
    /// A set of the given ranges; `None` if there are none.
    pub fn new(ranges: Vec<UidRange>) -> Option<Self> {
        (!ranges.is_empty()).then_some(Self(ranges))
    }

    /// The set of everything: `1:*`.
    pub fn all() -> Self {
        Self(vec![UidRange::from(Uid(NonZeroU32::MIN))])
    }

    /// The ranges.
    pub fn ranges(&self) -> &[UidRange] {
        &self.0
    }

    /// Parses the `uid-set` syntax of RFC 4315 (`3955:3960,3962`); `*` is not
    /// allowed there and is refused.
    pub fn parse(text: &str) -> Option<Self> {
        let ranges = text
            .split(',')
            .map(|part| match part.split_once(':') {
                Some((a, b)) => Some(UidRange::new(
                    Uid::new(a.parse().ok()?)?,
                    Uid::new(b.parse().ok()?)?,
                )),
                None => Some(UidRange::single(Uid::new(part.parse().ok()?)?)),
            })
            .collect::<Option<Vec<_>>>()?;
        Self::new(ranges)
    }

    /// How many UIDs the set holds, counted from its ranges (nothing is
    /// expanded); `None` if it has an open end.
    pub fn count(&self) -> Option<u64> {
        self.0.iter().try_fold(0u64, |n, r| {
            let last = r.last?;
            Some(n + u64::from(last.get().abs_diff(r.first.get())) + 1)
        })
    }

    /// The UIDs in order of appearance (RFC 4315 keeps the APPEND order);
    /// `None` if the set has an open end or holds more than `at_most` UIDs.
    /// The count is checked before anything is allocated: a server that
    /// answers `1:4294967295` costs nothing.
    pub fn expand(&self, at_most: usize) -> Option<Vec<Uid>> {
        if self.count()? > at_most as u64 {
            return None;
        }
        let mut out = Vec::new();
        for range in &self.0 {
            let last = range.last?;
            out.extend((range.first.get()..=last.get()).filter_map(Uid::new));
        }
        Some(out)
    }

    pub(crate) fn to_wire(&self) -> SequenceSet {
        SequenceSet(Vec1::unvalidated(
            self.0.iter().map(|r| r.to_wire()).collect(),
        ))
    }
}

impl fmt::Display for UidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, range) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            range.fmt(f)?;
        }
        Ok(())
    }
}

/// A mailbox name: the bytes on the wire (modified UTF-7, or UTF-8 on servers
/// that send it) and the decoded UTF-8 text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MailboxName {
    raw: Vec<u8>,
    decoded: String,
}

impl MailboxName {
    /// A name given as UTF-8 text, encoded to modified UTF-7 for the wire.
    pub fn from_utf8(name: &str) -> Result<Self, ImapError> {
        if name.is_empty() {
            return Err(ImapError::InvalidMailboxName {
                name: String::new(),
                reason: "empty",
            });
        }
        if name.chars().any(|c| c == '\0' || c == '\r' || c == '\n') {
            return Err(ImapError::InvalidMailboxName {
                name: name.escape_debug().to_string(),
                reason: "contains NUL, CR or LF",
            });
        }
        Ok(Self {
            raw: mutf7::encode(name).into_bytes(),
            decoded: name.to_owned(),
        })
    }

    /// A name exactly as the server sent it; decoded as modified UTF-7, else
    /// as UTF-8 (servers with UTF8=ACCEPT), else lossily for display.
    pub fn from_raw(raw: Vec<u8>) -> Self {
        let decoded = match mutf7::decode(&raw) {
            Ok(text) => text,
            Err(_) => String::from_utf8_lossy(&raw).into_owned(),
        };
        Self { raw, decoded }
    }

    /// The wire bytes (send these back to the server unchanged).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The decoded text for people and for building new names.
    pub fn as_str(&self) -> &str {
        &self.decoded
    }

    /// Whether this is the INBOX (case-insensitive, as IMAP defines).
    pub fn is_inbox(&self) -> bool {
        self.raw.eq_ignore_ascii_case(b"INBOX")
    }

    pub(crate) fn to_wire(&self) -> Result<Mailbox<'_>, ImapError> {
        if self.raw.is_empty() || self.raw.contains(&0) {
            return Err(ImapError::InvalidMailboxName {
                name: self.decoded.escape_debug().to_string(),
                reason: "empty or contains NUL",
            });
        }
        let astring =
            AString::try_from(self.raw.as_slice()).map_err(|_| ImapError::InvalidMailboxName {
                name: self.decoded.escape_debug().to_string(),
                reason: "cannot be sent as an IMAP string",
            })?;
        Ok(Mailbox::from(astring))
    }

    pub(crate) fn from_wire(mailbox: &Mailbox<'_>) -> Self {
        match mailbox {
            Mailbox::Inbox => Self::from_raw(b"INBOX".to_vec()),
            Mailbox::Other(other) => Self::from_raw(other.as_ref().to_vec()),
        }
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.decoded)
    }
}

/// A special use of a mailbox (RFC 6154).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    /// `\All`
    All,
    /// `\Archive`
    Archive,
    /// `\Drafts`
    Drafts,
    /// `\Flagged`
    Flagged,
    /// `\Junk`
    Junk,
    /// `\Sent`
    Sent,
    /// `\Trash`
    Trash,
    /// `\Important` (RFC 8457)
    Important,
}

impl SpecialUse {
    /// The attribute as on the wire, e.g. `\Sent`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::All => "\\All",
            Self::Archive => "\\Archive",
            Self::Drafts => "\\Drafts",
            Self::Flagged => "\\Flagged",
            Self::Junk => "\\Junk",
            Self::Sent => "\\Sent",
            Self::Trash => "\\Trash",
            Self::Important => "\\Important",
        }
    }
}

/// A mailbox attribute from a LIST answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MailboxAttribute {
    /// `\Noinferiors`: no children can exist.
    NoInferiors,
    /// `\Noselect`: the name cannot be selected.
    NoSelect,
    /// `\NonExistent` (RFC 5258): the name does not exist (e.g. only subscribed).
    NonExistent,
    /// `\Subscribed` (RFC 5258, or derived from LSUB).
    Subscribed,
    /// `\HasChildren`.
    HasChildren,
    /// `\HasNoChildren`.
    HasNoChildren,
    /// `\Marked`.
    Marked,
    /// `\Unmarked`.
    Unmarked,
    /// `\Remote`.
    Remote,
    /// A special-use attribute.
    SpecialUse(SpecialUse),
    /// Anything else, as the server spelled it (with its backslash).
    Other(String),
}

impl MailboxAttribute {
    /// Parses an attribute such as `\Noselect` (case-insensitive).
    pub fn parse(text: &str) -> Self {
        match text.to_ascii_lowercase().as_str() {
            "\\noinferiors" => Self::NoInferiors,
            "\\noselect" => Self::NoSelect,
            "\\nonexistent" => Self::NonExistent,
            "\\subscribed" => Self::Subscribed,
            "\\haschildren" => Self::HasChildren,
            "\\hasnochildren" => Self::HasNoChildren,
            "\\marked" => Self::Marked,
            "\\unmarked" => Self::Unmarked,
            "\\remote" => Self::Remote,
            "\\all" => Self::SpecialUse(SpecialUse::All),
            "\\archive" => Self::SpecialUse(SpecialUse::Archive),
            "\\drafts" => Self::SpecialUse(SpecialUse::Drafts),
            "\\flagged" => Self::SpecialUse(SpecialUse::Flagged),
            "\\junk" => Self::SpecialUse(SpecialUse::Junk),
            "\\sent" => Self::SpecialUse(SpecialUse::Sent),
            "\\trash" => Self::SpecialUse(SpecialUse::Trash),
            "\\important" => Self::SpecialUse(SpecialUse::Important),
            _ => Self::Other(text.to_owned()),
        }
    }
}

/// One mailbox from LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxEntry {
    /// The name, raw and decoded.
    pub name: MailboxName,
    /// The hierarchy delimiter, `None` for a flat name space.
    pub delimiter: Option<char>,
    /// The attributes, as listed.
    pub attributes: Vec<MailboxAttribute>,
}

impl MailboxEntry {
    /// Whether the mailbox can be selected (exists and is not `\Noselect`).
    pub fn is_selectable(&self) -> bool {
        !self.attributes.iter().any(|a| {
            matches!(
                a,
                MailboxAttribute::NoSelect | MailboxAttribute::NonExistent
            )
        })
    }

    /// Whether the user subscribed to it.
    pub fn is_subscribed(&self) -> bool {
        self.attributes.contains(&MailboxAttribute::Subscribed)
    }

    /// The special uses marked on it.
    pub fn special_uses(&self) -> impl Iterator<Item = &SpecialUse> {
        self.attributes.iter().filter_map(|a| match a {
            MailboxAttribute::SpecialUse(s) => Some(s),
            _ => None,
        })
    }
}

/// One namespace from NAMESPACE (RFC 2342).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The prefix, e.g. `""` or `INBOX.`.
    pub prefix: MailboxName,
    /// The hierarchy delimiter.
    pub delimiter: Option<char>,
}

/// The NAMESPACE answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// The user's own namespaces (the first is the one to use).
    pub personal: Vec<Namespace>,
    /// Other users' namespaces.
    pub other_users: Vec<Namespace>,
    /// Shared namespaces.
    pub shared: Vec<Namespace>,
}

/// What SELECT or EXAMINE reported about a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedMailbox {
    /// The UIDVALIDITY.
    pub uid_validity: UidValidity,
    /// The predicted next UID, if the server said.
    pub uid_next: Option<Uid>,
    /// The number of messages.
    pub exists: u32,
    /// The highest mod-sequence (CONDSTORE), unless the mailbox has none.
    pub highest_modseq: Option<ModSeq>,
    /// The flags defined in the mailbox.
    pub flags: Vec<Flag>,
    /// The flags that can be changed permanently.
    pub permanent_flags: Vec<Flag>,
    /// Whether new keywords can be created (`\*` in PERMANENTFLAGS).
    pub can_create_keywords: bool,
    /// Whether the mailbox was opened read-only.
    pub read_only: bool,
}

/// What STATUS reported about a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStatus {
    /// The number of messages.
    pub messages: u32,
    /// The predicted next UID.
    pub uid_next: Uid,
    /// The UIDVALIDITY.
    pub uid_validity: UidValidity,
    /// The highest mod-sequence, when CONDSTORE is offered and the server said.
    pub highest_modseq: Option<ModSeq>,
}

/// Which section of the message to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySection {
    /// `BODY.PEEK[]`: the message as stored (NUL bytes may come back altered).
    Body,
    /// `BINARY.PEEK[]` (RFC 3516): the message without transfer decoding
    /// issues for NUL bytes; requires BINARY.
    Binary,
}

/// What to fetch for each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchItems {
    /// UID, FLAGS, INTERNALDATE, RFC822.SIZE and the full message (and MODSEQ
    /// under CONDSTORE).
    Full(BodySection),
    /// UID and FLAGS (and MODSEQ under CONDSTORE), e.g. for a flags-only resync.
    FlagsOnly,
}

/// A UID FETCH request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The UIDs to fetch.
    pub uids: UidSet,
    /// The items to fetch.
    pub items: FetchItems,
    /// Only messages whose mod-sequence is higher (CONDSTORE `CHANGEDSINCE`).
    pub changed_since: Option<ModSeq>,
}

/// One message from UID FETCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    /// The message sequence number at the time of the answer.
    pub seq: u32,
    /// The UID.
    pub uid: Uid,
    /// The flags without `\Recent` (which cannot be restored).
    pub flags: Vec<Flag>,
    /// Whether `\Recent` was set.
    pub recent: bool,
    /// The INTERNALDATE, when fetched.
    pub internal_date: Option<InternalDate>,
    /// The RFC822.SIZE, when fetched.
    pub size: Option<u32>,
    /// The mod-sequence, under CONDSTORE.
    pub modseq: Option<ModSeq>,
    /// The message bytes, when fetched (`None` also for a NIL body).
    pub body: Option<Vec<u8>>,
}

/// One message to APPEND.
#[derive(Debug, Clone, Copy)]
pub struct AppendMessage<'a> {
    /// The exact message bytes.
    pub content: &'a [u8],
    /// The flags to set (`\Recent` is dropped: only the server sets it).
    pub flags: &'a [Flag],
    /// The INTERNALDATE to set; the server's clock if `None`.
    pub internal_date: Option<InternalDate>,
}

/// The APPENDUID of one appended message (UIDPLUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendUid {
    /// The UIDVALIDITY of the target mailbox.
    pub uid_validity: UidValidity,
    /// The new message's UID.
    pub uid: Uid,
}

/// The APPENDUID of a MULTIAPPEND (UIDPLUS): one UID per message, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendUids {
    /// The UIDVALIDITY of the target mailbox.
    pub uid_validity: UidValidity,
    /// The new UIDs, in the order the messages were sent.
    pub uids: Vec<Uid>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_parse_and_expand() {
        let set = UidSet::parse("3955:3957,3960,3962:3961").expect("valid");
        assert_eq!(set.to_string(), "3955:3957,3960,3961:3962");
        let uids: Vec<u32> = set.expand(6).unwrap().into_iter().map(Uid::get).collect();
        assert_eq!(uids, vec![3955, 3956, 3957, 3960, 3961, 3962]);
        assert_eq!(set.count(), Some(6));
        assert_eq!(set.expand(5), None, "more UIDs than asked for");
        let huge = UidSet::parse("1:4294967295").unwrap();
        assert_eq!(huge.count(), Some(4_294_967_295));
        assert_eq!(huge.expand(1000), None, "counted, never built");
        for bad in ["", "0", "1:*", "a", "1,,2", "1:2:3"] {
            assert_eq!(UidSet::parse(bad), None, "{bad:?}");
        }
        assert_eq!(UidSet::all().to_string(), "1:*");
        assert_eq!(UidSet::all().expand(usize::MAX), None);
    }

    #[test]
    fn flags_are_validated() {
        assert!(Flag::new("\\Seen").unwrap().is_seen());
        assert!(Flag::new("$Forwarded").is_ok());
        assert!(Flag::new("\\Recent").unwrap().is_recent());
        for bad in ["", "two words", "a(b", "\\", "x\r\n"] {
            assert!(Flag::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn internal_date_keeps_its_offset() {
        // 1996-07-17 09:44:25 UTC, written at -07:00.
        let date = InternalDate::new(837_596_665, -7 * 3600).expect("valid");
        assert_eq!(date.to_imap_string(), "17-Jul-1996 02:44:25 -0700");
        let back = InternalDate::from_wire(&date.to_wire().unwrap());
        assert_eq!(back, date);
        assert_eq!(
            InternalDate::new(0, 30),
            None,
            "offset must be whole minutes"
        );
        assert_eq!(
            InternalDate::parse_imap("17-Jul-1996 02:44:25 -0700"),
            Some(date)
        );
        assert_eq!(
            InternalDate::parse_imap(" 1-Jan-2024 00:00:00 +0000").map(InternalDate::unix_seconds),
            Some(1_704_067_200)
        );
        assert_eq!(InternalDate::parse_imap("yesterday"), None);
    }

    #[test]
    fn mailbox_names_keep_raw_bytes() {
        let name = MailboxName::from_raw(b"&AMQ-rger".to_vec());
        assert_eq!(name.as_str(), "Ärger");
        assert_eq!(name.raw(), b"&AMQ-rger");
        let made = MailboxName::from_utf8("Restored/Ärger").unwrap();
        assert_eq!(made.raw(), b"Restored/&AMQ-rger");
        let utf8 = MailboxName::from_raw("Grüße".as_bytes().to_vec());
        assert_eq!(utf8.as_str(), "Grüße");
        assert!(MailboxName::from_utf8("").is_err());
        assert!(MailboxName::from_utf8("a\nb").is_err());
        assert!(MailboxName::from_raw(b"inbox".to_vec()).is_inbox());
    }

    #[test]
    fn attributes_parse_case_insensitively() {
        assert_eq!(
            MailboxAttribute::parse("\\SENT"),
            MailboxAttribute::SpecialUse(SpecialUse::Sent)
        );
        assert_eq!(
            MailboxAttribute::parse("\\NoSelect"),
            MailboxAttribute::NoSelect
        );
        assert_eq!(
            MailboxAttribute::parse("\\X-Thing"),
            MailboxAttribute::Other("\\X-Thing".into())
        );
    }
}
