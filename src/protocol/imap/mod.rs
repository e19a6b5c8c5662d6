//! The IMAP client core, sans I/O.
//!
//! Owns: framing the server's byte stream into responses (literals of any
//! size in O(n)), encoding commands with imap-codec into chunks that honour
//! synchronising, LITERAL+ and BINARY literals, tags, capability tracking,
//! and one [`ops::Operation`] per command that turns untagged data and the
//! tagged completion into typed results or an [`ImapError`].
//!
//! Must not: open sockets, spawn tasks, read clocks or sleep. The async
//! driver in `net::imap` only moves bytes between a socket and
//! [`ClientCore`]; everything here is tested by replaying transcripts.
//! Nothing a server sends may panic: malformed input becomes an error.

pub mod capabilities;
pub mod client;
pub mod error;
pub mod framing;
pub mod login;
pub mod mutf7;
pub mod ops;
pub mod request;
pub mod response;
pub mod types;

pub use capabilities::Capabilities;
pub use client::{ClientCore, ClientOptions, Event};
pub use error::{ImapError, Refusal, ResponseCode};
pub use framing::FramingLimits;
pub use login::{LoginMethod, UserName};
pub use response::{Completion, CompletionStatus, Untagged};
pub use types::{
    AppendMessage, AppendUid, AppendUids, BodySection, FetchItems, FetchRequest, FetchedMessage,
    Flag, InternalDate, MailboxAttribute, MailboxEntry, MailboxName, MailboxStatus, ModSeq,
    Namespace, Namespaces, SelectedMailbox, SpecialUse, Uid, UidRange, UidSet, UidValidity,
};
