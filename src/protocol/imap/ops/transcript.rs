//! Test support: replays a server transcript against one operation and
//! records the bytes the client sent.

use super::Operation;
use crate::protocol::imap::client::{ClientCore, ClientOptions, Event};
use crate::protocol::imap::error::ImapError;
use crate::protocol::imap::request::Request;
use imap_codec::imap_types::core::Tag;

/// A core that has seen its greeting.
pub(crate) struct Transcript {
    pub core: ClientCore,
}

impl Transcript {
    /// A core after `greeting`.
    pub fn greeted(greeting: &str) -> Self {
        let mut core = ClientCore::new(ClientOptions::default());
        core.receive(greeting.as_bytes());
        match core.poll_event() {
            Ok(Some(Event::Greeting { .. })) => Self { core },
            other => panic!("expected a greeting, got {other:?}"),
        }
    }

    /// Encodes `op` as tag `M1` with the current capabilities.
    pub fn encode<O: Operation>(&self, op: &O) -> Result<Request, ImapError> {
        op.encode(&Tag::unvalidated("M1"), self.core.capabilities())
    }

    /// Runs `op` against the server bytes; returns what was sent (lossy text).
    pub fn run<O: Operation>(
        &mut self,
        op: O,
        server: &str,
    ) -> (String, Result<O::Output, ImapError>) {
        let (sent, result) = self.run_bytes(op, server.as_bytes());
        (String::from_utf8_lossy(&sent).into_owned(), result)
    }

    /// Runs `op` against the server bytes; returns the exact bytes sent.
    pub fn run_bytes<O: Operation>(
        &mut self,
        mut op: O,
        server: &[u8],
    ) -> (Vec<u8>, Result<O::Output, ImapError>) {
        let mut sent = Vec::new();
        let tag = match self.core.enqueue(&op) {
            Ok(tag) => tag,
            Err(err) => return (sent, Err(err)),
        };
        let mut fed = false;
        loop {
            while let Some(bytes) = self.core.poll_transmit() {
                sent.extend_from_slice(&bytes);
            }
            match self.core.poll_event() {
                Err(err) => return (sent, Err(err)),
                Ok(Some(Event::Untagged(untagged))) => {
                    if let Err(err) = op.on_untagged(untagged) {
                        return (sent, Err(err));
                    }
                }
                Ok(Some(Event::Completed(completion))) if completion.tag == tag => {
                    return (sent, op.complete(completion));
                }
                Ok(Some(_)) => {}
                Ok(None) if !fed => {
                    self.core.receive(server);
                    fed = true;
                }
                Ok(None) => return (sent, Err(self.core.connection_closed())),
            }
        }
    }
}
