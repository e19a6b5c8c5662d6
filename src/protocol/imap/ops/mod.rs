//! One type per IMAP command: how it is encoded, and how its untagged data
//! and tagged completion turn into a typed result.
//!
//! An [`Operation`] is pure: it sees the capabilities and the responses, and
//! never a socket. The driver (`net::imap`) or a transcript test feeds it.

mod append;
mod fetch;
mod mailbox;
mod session;
#[cfg(test)]
pub(crate) mod transcript;

pub use append::{Append, MultiAppend};
pub use fetch::Fetch;
pub use mailbox::{Create, List, ListMode, Lsub, Namespace, Select, Status, Subscribe, merge_lsub};
pub use session::{Capability, Login, Logout, Noop, StartTls};

use imap_codec::imap_types::core::Tag;

use super::capabilities::Capabilities;
use super::error::ImapError;
use super::request::Request;
use super::response::{Completion, Untagged};

/// A command and the collection of its answer.
pub trait Operation {
    /// The typed result.
    type Output;

    /// The command's name for errors and logs (`LOGIN`, `UID FETCH`).
    fn command_name(&self) -> &'static str;

    /// Encodes the command under `tag`, using what the server offers.
    fn encode(&self, tag: &Tag<'static>, capabilities: &Capabilities)
    -> Result<Request, ImapError>;

    /// Takes one untagged response that arrived while the command ran.
    fn on_untagged(&mut self, untagged: Untagged) -> Result<(), ImapError> {
        let _ = untagged;
        Ok(())
    }

    /// Turns the tagged completion into the result.
    fn complete(self, completion: Completion) -> Result<Self::Output, ImapError>;

    /// Whether the server's capabilities may change (login, STARTTLS).
    fn invalidates_capabilities(&self) -> bool {
        false
    }

    /// Whether this is LOGOUT (a `BYE` is then expected).
    fn is_logout(&self) -> bool {
        false
    }
}
