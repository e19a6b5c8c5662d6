//! Outgoing commands as a queue of byte chunks and continuation waits.
//!
//! A synchronising literal (`{n}`), and each step of a SASL exchange, must
//! wait for the server's `+` before the next bytes go out; a LITERAL+ literal
//! (`{n+}`, `~{n+}`) does not. A [`Request`] records this as
//! [`Chunk::AwaitContinuation`] markers between byte chunks, so the driver
//! needs no knowledge of literals.

use std::collections::VecDeque;

use bytes::Bytes;
use imap_codec::{
    CommandCodec,
    encode::{Encoder, Fragment},
    imap_types::{command::Command, core::LiteralMode},
};

/// Byte chunks smaller than this are merged with their neighbours, so small
/// pieces of a command go out in one write.
const MERGE_BELOW: usize = 64 * 1024;

/// One step of sending a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Bytes to write now.
    Data(Bytes),
    /// Wait for a `+` continuation request before the next chunk.
    AwaitContinuation,
}

/// The bytes of one tagged command, in sending order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    chunks: VecDeque<Chunk>,
}

impl Request {
    /// An empty request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes a command with imap-codec, honouring each literal's mode.
    pub fn from_command(command: &Command<'_>) -> Self {
        let mut request = Self::new();
        request.push_encoded(command);
        request
    }

    /// Appends the fragments of an imap-codec command encoding.
    pub fn push_encoded(&mut self, command: &Command<'_>) {
        for fragment in CommandCodec::default().encode(command) {
            match fragment {
                Fragment::Line { data } => self.push_bytes(data),
                Fragment::Literal { data, mode } => {
                    if mode == LiteralMode::Sync {
                        self.await_continuation();
                    }
                    self.push_bytes(data);
                }
            }
        }
    }

    /// Appends bytes to send.
    pub fn push_bytes(&mut self, data: impl Into<Bytes>) {
        let data: Bytes = data.into();
        if data.is_empty() {
            return;
        }
        if let Some(Chunk::Data(last)) = self.chunks.back_mut()
            && last.len() < MERGE_BELOW
            && data.len() < MERGE_BELOW
        {
            let mut merged = Vec::with_capacity(last.len() + data.len());
            merged.extend_from_slice(last);
            merged.extend_from_slice(&data);
            *last = Bytes::from(merged);
            return;
        }
        self.chunks.push_back(Chunk::Data(data));
    }

    /// Appends a wait for the server's `+`.
    pub fn await_continuation(&mut self) {
        self.chunks.push_back(Chunk::AwaitContinuation);
    }

    /// Removes the trailing CRLF of the last line so more arguments can follow.
    /// Returns `false` (and changes nothing) if the request does not end in CRLF.
    pub fn strip_final_crlf(&mut self) -> bool {
        let Some(Chunk::Data(last)) = self.chunks.back_mut() else {
            return false;
        };
        if !last.ends_with(b"\r\n") {
            return false;
        }
        last.truncate(last.len() - 2);
        if last.is_empty() {
            self.chunks.pop_back();
        }
        true
    }

    /// Takes the next chunk.
    pub(crate) fn pop(&mut self) -> Option<Chunk> {
        self.chunks.pop_front()
    }

    /// Whether all chunks were taken.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// All bytes, ignoring continuation waits (for tests and logs).
    pub fn concat(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in &self.chunks {
            if let Chunk::Data(data) = chunk {
                out.extend_from_slice(data);
            }
        }
        out
    }

    /// The chunks, for inspection in tests.
    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.chunks.iter()
    }
}

#[cfg(test)]
mod tests {
    use imap_codec::imap_types::command::CommandBody;

    use super::*;

    #[test]
    fn sync_literals_wait_for_continuation() {
        let command = Command::new("A1", CommandBody::login("alice", "pa\"ss\r").unwrap()).unwrap();
        let request = Request::from_command(&command);
        let chunks: Vec<_> = request.chunks().cloned().collect();
        assert_eq!(
            chunks,
            vec![
                Chunk::Data(Bytes::from_static(b"A1 LOGIN alice {6}\r\n")),
                Chunk::AwaitContinuation,
                Chunk::Data(Bytes::from_static(b"pa\"ss\r\r\n")),
            ]
        );
    }

    #[test]
    fn strip_final_crlf_allows_extending_the_line() {
        let command = Command::new("A2", CommandBody::Noop).unwrap();
        let mut request = Request::from_command(&command);
        assert!(request.strip_final_crlf());
        request.push_bytes(&b" X\r\n"[..]);
        assert_eq!(request.concat(), b"A2 NOOP X\r\n");
        assert!(!Request::new().strip_final_crlf());
    }
}
