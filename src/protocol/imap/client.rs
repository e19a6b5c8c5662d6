//! The sans-I/O client connection: bytes in, events out; commands in, bytes out.
//!
//! [`ClientCore`] owns the framer, the tag counter, the capability list and the
//! queue of outgoing command chunks. It never touches a socket: the driver
//! feeds it with [`ClientCore::receive`], writes what [`ClientCore::poll_transmit`]
//! hands out, and pulls [`Event`]s with [`ClientCore::poll_event`].
//!
//! Invariants:
//! - a continuation request (`+`) is consumed here and only releases the chunks
//!   of the command that waits for it; one that nobody waits for is an error;
//! - a tagged completion drops whatever its command had not sent yet (the
//!   server refused a synchronising literal, so its bytes must not follow);
//! - capabilities are updated from every `CAPABILITY` response and
//!   `[CAPABILITY ...]` code, wherever it appears;
//! - a `BYE` outside LOGOUT ends the session with [`ImapError::Bye`].

use std::collections::VecDeque;

use bytes::Bytes;
use imap_codec::{
    GreetingCodec, ResponseCodec,
    decode::Decoder,
    imap_types::{
        IntoStatic,
        core::Tag,
        response::{Code, Data, GreetingKind, Response, Status, StatusKind},
    },
};
use tracing::debug;

use super::capabilities::Capabilities;
use super::error::{ImapError, excerpt};
use super::framing::{FramingLimits, ResponseFramer};
use super::ops::Operation;
use super::request::{Chunk, Request};
use super::response::{Completion, CompletionStatus, Untagged, response_code};

/// Tunables of the client core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// Memory limits for server responses.
    pub limits: FramingLimits,
}

/// What the server said, one response at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The greeting (OK or PREAUTH; a BYE greeting is an error).
    Greeting {
        /// Whether the server said PREAUTH.
        preauth: bool,
        /// The greeting text.
        text: String,
    },
    /// An untagged response.
    Untagged(Untagged),
    /// A tagged completion.
    Completed(Completion),
    /// A continuation request released more of a command: write what
    /// [`ClientCore::poll_transmit`] hands out before polling again.
    Continued,
    /// The `BYE` that LOGOUT asked for.
    LoggedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Greeting,
    Running,
    LoggingOut,
    Closed,
}

/// The client side of one IMAP connection, without I/O.
#[derive(Debug)]
pub struct ClientCore {
    framer: ResponseFramer,
    phase: Phase,
    next_tag: u64,
    capabilities: Capabilities,
    capabilities_stale: bool,
    /// Commands whose chunks are not all handed out yet, in sending order.
    sending: VecDeque<(String, Request)>,
    /// Set while the front command waits for `+`.
    awaiting_continuation: bool,
    /// (tag, command name) of commands sent (or being sent) and not completed.
    in_flight: Vec<(String, &'static str)>,
}

impl ClientCore {
    /// A core for a fresh connection, waiting for the greeting.
    pub fn new(options: ClientOptions) -> Self {
        Self {
            framer: ResponseFramer::new(options.limits),
            phase: Phase::Greeting,
            next_tag: 1,
            capabilities: Capabilities::default(),
            capabilities_stale: true,
            sending: VecDeque::new(),
            awaiting_continuation: false,
            in_flight: Vec::new(),
        }
    }

    /// Feeds bytes read from the connection.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
    }

    /// The capabilities as last announced.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Whether the capabilities must be asked for again (none known yet, or
    /// invalidated by STARTTLS or login without a new announcement).
    pub fn capabilities_stale(&self) -> bool {
        self.capabilities_stale
    }

    /// Whether commands are still waiting for their completion.
    pub fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Describes what a read is waiting for, for timeout and EOF errors.
    pub fn waiting_for(&self) -> String {
        let what = self.framer.waiting_for();
        match (self.phase, self.in_flight.last()) {
            (Phase::Greeting, _) => "the server greeting".into(),
            (_, Some((tag, name))) if self.awaiting_continuation => {
                format!("a continuation request (+) for {name} (tag {tag})")
            }
            (_, Some((tag, name))) => format!("{what} to {name} (tag {tag})"),
            (_, None) => what,
        }
    }

    /// Encodes `op` with a fresh tag and queues it for sending.
    pub fn enqueue<O: Operation + ?Sized>(&mut self, op: &O) -> Result<String, ImapError> {
        if self.phase == Phase::Closed {
            return Err(ImapError::ConnectionClosed {
                waiting_for: format!("a chance to send {}", op.command_name()),
            });
        }
        let tag = format!("M{}", self.next_tag);
        self.next_tag += 1;
        let request = op.encode(&Tag::unvalidated(tag.clone()), &self.capabilities)?;
        debug!(tag = %tag, command = op.command_name(), "imap command");
        if op.invalidates_capabilities() {
            self.capabilities_stale = true;
        }
        if op.is_logout() {
            self.phase = Phase::LoggingOut;
        }
        self.sending.push_back((tag.clone(), request));
        self.in_flight.push((tag.clone(), op.command_name()));
        Ok(tag)
    }

    /// The next bytes to write, or `None` if nothing can be sent now.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        loop {
            if self.awaiting_continuation {
                return None;
            }
            let (_, request) = self.sending.front_mut()?;
            match request.pop() {
                Some(Chunk::Data(data)) => return Some(data),
                Some(Chunk::AwaitContinuation) => self.awaiting_continuation = true,
                None => {
                    self.sending.pop_front();
                }
            }
        }
    }

    /// Prepares for the TLS handshake after a successful STARTTLS: anything
    /// already received in plain text is an injection attempt.
    pub fn begin_tls(&mut self) -> Result<(), ImapError> {
        if self.framer.has_partial() {
            return Err(ImapError::StartTlsInjection);
        }
        self.capabilities = Capabilities::default();
        self.capabilities_stale = true;
        Ok(())
    }

    /// The error to report when the server closed the connection.
    pub fn connection_closed(&mut self) -> ImapError {
        let waiting_for = self.waiting_for();
        self.phase = Phase::Closed;
        ImapError::ConnectionClosed { waiting_for }
    }

    /// Whether LOGOUT finished (the server may now close the connection).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Decodes the next complete response, or `None` if more bytes are needed.
    pub fn poll_event(&mut self) -> Result<Option<Event>, ImapError> {
        loop {
            if self.phase == Phase::Closed {
                return Ok(None);
            }
            let Some(frame) = self.framer.next_frame()? else {
                return Ok(None);
            };
            if self.phase == Phase::Greeting {
                let decoded = match GreetingCodec::default().decode(frame) {
                    Ok(([], greeting)) => Ok(greeting.into_static()),
                    _ => Err(ImapError::protocol("a server greeting", frame)),
                };
                return self.on_greeting(decoded?).map(Some);
            }
            let decoded = match ResponseCodec::default().decode(frame) {
                Ok(([], response)) => Ok(response.into_static()),
                _ => Err(Fallback::classify(frame)),
            };
            let event = match decoded {
                Ok(response) => self.on_response(response)?,
                Err(fallback) => self.on_undecodable(fallback)?,
            };
            if let Some(event) = event {
                return Ok(Some(event));
            }
        }
    }

    fn on_greeting(
        &mut self,
        greeting: imap_codec::imap_types::response::Greeting<'static>,
    ) -> Result<Event, ImapError> {
        self.phase = Phase::Running;
        if let Some(code) = &greeting.code {
            self.note_code(code);
        }
        let text = greeting.text.to_string();
        match greeting.kind {
            GreetingKind::Ok => Ok(Event::Greeting {
                preauth: false,
                text,
            }),
            GreetingKind::PreAuth => Ok(Event::Greeting {
                preauth: true,
                text,
            }),
            GreetingKind::Bye => {
                self.phase = Phase::Closed;
                Err(ImapError::GreetingBye {
                    code: greeting.code.as_ref().and_then(response_code),
                    text,
                })
            }
        }
    }

    fn on_response(&mut self, response: Response<'static>) -> Result<Option<Event>, ImapError> {
        match response {
            Response::CommandContinuationRequest(_) => {
                self.on_continuation()?;
                Ok(Some(Event::Continued))
            }
            Response::Status(Status::Tagged(tagged)) => {
                if let Some(code) = &tagged.body.code {
                    self.note_code(code);
                }
                let completion = Completion {
                    tag: tagged.tag.inner().to_owned(),
                    status: status_of(tagged.body.kind),
                    code: tagged.body.code,
                    text: tagged.body.text.to_string(),
                };
                self.on_completion(completion).map(Some)
            }
            Response::Status(Status::Untagged(body)) => {
                if let Some(code) = &body.code {
                    self.note_code(code);
                }
                Ok(Some(Event::Untagged(Untagged::Status {
                    status: status_of(body.kind),
                    code: body.code,
                    text: body.text.to_string(),
                })))
            }
            Response::Status(Status::Bye(bye)) => {
                if self.phase == Phase::LoggingOut {
                    Ok(Some(Event::LoggedOut))
                } else {
                    self.phase = Phase::Closed;
                    Err(ImapError::Bye {
                        code: bye.code.as_ref().and_then(response_code),
                        text: bye.text.to_string(),
                    })
                }
            }
            Response::Data(data) => {
                if let Data::Capability(caps) = &data {
                    self.capabilities = Capabilities::from_decoded(caps.as_ref());
                    self.capabilities_stale = false;
                }
                Ok(Some(Event::Untagged(Untagged::Data(data))))
            }
        }
    }

    fn on_continuation(&mut self) -> Result<(), ImapError> {
        if !self.awaiting_continuation {
            return Err(ImapError::Protocol {
                expected: "no continuation request (nothing waits for one)".into(),
                got: "`+`".into(),
            });
        }
        self.awaiting_continuation = false;
        Ok(())
    }

    fn on_completion(&mut self, completion: Completion) -> Result<Event, ImapError> {
        let Some(index) = self
            .in_flight
            .iter()
            .position(|(t, _)| *t == completion.tag)
        else {
            let tags: Vec<&str> = self.in_flight.iter().map(|(t, _)| t.as_str()).collect();
            return Err(ImapError::Protocol {
                expected: format!("a completion for one of {tags:?}"),
                got: format!("a completion for tag {:?}", completion.tag),
            });
        };
        self.in_flight.remove(index);
        if let Some(pos) = self.sending.iter().position(|(t, _)| *t == completion.tag) {
            // The server answered before taking all of the command (e.g. it
            // refused a synchronising literal): its remaining bytes must not
            // be sent.
            self.sending.remove(pos);
            if pos == 0 {
                self.awaiting_continuation = false;
            }
        }
        if self.phase == Phase::LoggingOut && self.in_flight.is_empty() {
            self.phase = Phase::Closed;
        }
        Ok(Event::Completed(completion))
    }

    fn on_undecodable(&mut self, fallback: Fallback) -> Result<Option<Event>, ImapError> {
        match fallback {
            Fallback::Continuation => {
                self.on_continuation()?;
                Ok(Some(Event::Continued))
            }
            Fallback::Tagged(completion) => self.on_completion(completion).map(Some),
            Fallback::Untagged { keyword, excerpt } => {
                debug!(response = %excerpt, "undecodable untagged response");
                Ok(Some(Event::Untagged(Untagged::Undecodable {
                    keyword,
                    excerpt,
                })))
            }
            Fallback::Garbage(excerpt) => Err(ImapError::Protocol {
                expected: "an IMAP response".into(),
                got: excerpt,
            }),
        }
    }

    fn note_code(&mut self, code: &Code<'_>) {
        if let Code::Capability(caps) = code {
            self.capabilities = Capabilities::from_decoded(caps.as_ref());
            self.capabilities_stale = false;
        }
    }
}

fn status_of(kind: StatusKind) -> CompletionStatus {
    match kind {
        StatusKind::Ok => CompletionStatus::Ok,
        StatusKind::No => CompletionStatus::No,
        StatusKind::Bad => CompletionStatus::Bad,
    }
}

/// What can still be learnt from a response imap-codec could not decode.
#[derive(Debug)]
enum Fallback {
    Continuation,
    Tagged(Completion),
    Untagged { keyword: String, excerpt: String },
    Garbage(String),
}

impl Fallback {
    fn classify(frame: &[u8]) -> Self {
        if frame.starts_with(b"+") {
            return Self::Continuation;
        }
        if let Some(rest) = frame.strip_prefix(b"* ") {
            let line_end = rest
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(rest.len());
            let mut words = rest[..line_end].splitn(3, |&b| b == b' ');
            let first = words.next().unwrap_or_default();
            let numbered = !first.is_empty() && first.iter().all(u8::is_ascii_digit);
            let keyword = if numbered {
                words.next().unwrap_or_default()
            } else {
                first
            };
            return Self::Untagged {
                keyword: String::from_utf8_lossy(keyword).to_ascii_uppercase(),
                excerpt: excerpt(frame),
            };
        }
        match parse_tagged_line(frame) {
            Some(completion) => Self::Tagged(completion),
            None => Self::Garbage(excerpt(frame)),
        }
    }
}

/// Reads `tag SP (OK|NO|BAD) [SP text]` from a line whose code or text
/// imap-codec refused, so a command still completes.
fn parse_tagged_line(frame: &[u8]) -> Option<Completion> {
    let line = frame.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let tag = parts.next()?;
    Tag::validate(tag).ok()?;
    let status = match parts.next()?.to_ascii_uppercase().as_slice() {
        b"OK" => CompletionStatus::Ok,
        b"NO" => CompletionStatus::No,
        b"BAD" => CompletionStatus::Bad,
        _ => return None,
    };
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    Some(Completion {
        tag: String::from_utf8_lossy(tag).into_owned(),
        status,
        code: None,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::imap::ResponseCode;
    use crate::protocol::imap::ops::Noop;

    fn greeted(greeting: &[u8]) -> ClientCore {
        let mut core = ClientCore::new(ClientOptions::default());
        core.receive(greeting);
        match core.poll_event().unwrap() {
            Some(Event::Greeting { preauth: false, .. }) => core,
            other => panic!("expected greeting, got {other:?}"),
        }
    }

    #[test]
    fn greeting_capabilities_are_taken() {
        let core = greeted(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN] ready\r\n");
        assert!(core.capabilities().literal_plus());
        assert!(core.capabilities().sasl_ir());
        assert!(!core.capabilities_stale());
    }

    #[test]
    fn greeting_without_capabilities_leaves_them_stale() {
        let core = greeted(b"* OK ready\r\n");
        assert!(core.capabilities_stale());
    }

    #[test]
    fn bye_greeting_is_a_transient_error() {
        let mut core = ClientCore::new(ClientOptions::default());
        core.receive(b"* BYE Too many connections\r\n");
        let err = core.poll_event().unwrap_err();
        assert!(matches!(err, ImapError::GreetingBye { .. }), "{err}");
        assert!(err.is_transient());
    }

    #[test]
    fn garbage_greeting_is_a_protocol_error() {
        let mut core = ClientCore::new(ClientOptions::default());
        core.receive(b"HTTP/1.1 400 Bad Request\r\n");
        assert!(matches!(core.poll_event(), Err(ImapError::Protocol { .. })));
    }

    #[test]
    fn unsolicited_bye_ends_the_session() {
        let mut core = greeted(b"* OK ready\r\n");
        core.enqueue(&Noop).unwrap();
        while core.poll_transmit().is_some() {}
        core.receive(b"* BYE [UNAVAILABLE] Server shutting down.\r\n");
        let err = core.poll_event().unwrap_err();
        assert!(matches!(err, ImapError::Bye { .. }), "{err}");
        assert!(err.is_transient());
        assert_eq!(err.response_code(), Some(&ResponseCode::Unavailable));
    }

    #[test]
    fn unexpected_continuation_is_an_error() {
        let mut core = greeted(b"* OK ready\r\n");
        core.receive(b"+ go ahead\r\n");
        assert!(matches!(core.poll_event(), Err(ImapError::Protocol { .. })));
    }

    #[test]
    fn unknown_tag_is_an_error() {
        let mut core = greeted(b"* OK ready\r\n");
        core.receive(b"X9 OK done\r\n");
        assert!(matches!(core.poll_event(), Err(ImapError::Protocol { .. })));
    }

    #[test]
    fn undecodable_tagged_line_still_completes() {
        let mut core = greeted(b"* OK ready\r\n");
        let tag = core.enqueue(&Noop).unwrap();
        core.receive(format!("{tag} NO [BROKEN-CODE \x01] oops\r\n").as_bytes());
        match core.poll_event().unwrap() {
            Some(Event::Completed(c)) => {
                assert_eq!(c.tag, tag);
                assert_eq!(c.status, CompletionStatus::No);
            }
            other => panic!("{other:?}"),
        }
        assert!(!core.has_in_flight());
    }

    #[test]
    fn undecodable_fetch_is_flagged() {
        let mut core = greeted(b"* OK ready\r\n");
        core.receive(b"* 3 FETCH (UID 5 X-WEIRD (((\r\n");
        match core.poll_event().unwrap() {
            Some(Event::Untagged(u @ Untagged::Undecodable { .. })) => {
                assert!(u.undecodable_as("FETCH").is_some(), "{u:?}");
                assert!(u.undecodable_as("LIST").is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    /// A small deterministic generator, so the test needs no extra crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn hostile_input_never_panics() {
        const PIECES: &[&[u8]] = &[
            b"* ",
            b"M1 ",
            b"M2 ",
            b"+ ",
            b"OK ",
            b"NO ",
            b"BAD ",
            b"BYE ",
            b"PREAUTH ",
            b"[",
            b"]",
            b"(",
            b")",
            b"{",
            b"}",
            b"{5}",
            b"{0}\r\n",
            b"~{3}",
            b"{4294967295}",
            b"\r\n",
            b"\n",
            b"\r",
            b"\0",
            b"\xff",
            b"\"",
            b"\\",
            b"FETCH ",
            b"1 ",
            b"0 ",
            b"UID ",
            b"BODY[] ",
            b"FLAGS ",
            b"LIST ",
            b"STATUS ",
            b"CAPABILITY ",
            b"EXISTS",
            b"APPENDUID 1 1:3",
            b"UIDVALIDITY ",
            b"NIL ",
            b"INTERNALDATE ",
            b"x",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2000 {
            let mut core = ClientCore::new(ClientOptions {
                limits: FramingLimits {
                    max_literal: 1 << 16,
                    max_line: 1 << 12,
                    max_response: 1 << 17,
                },
            });
            let _ = core.enqueue(&Noop);
            let _ = core.enqueue(&Noop);
            let mut input = b"* OK hi\r\n".to_vec();
            for _ in 0..rng.below(40) {
                input.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
            let mut rest = input.as_slice();
            'feed: while !rest.is_empty() {
                let take = 1 + rng.below(rest.len());
                core.receive(&rest[..take]);
                rest = &rest[take..];
                while core.poll_transmit().is_some() {}
                loop {
                    match core.poll_event() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }
    }

    #[test]
    fn starttls_refuses_buffered_plaintext() {
        let mut core = greeted(b"* OK ready\r\n");
        core.receive(b"* OK injected");
        assert!(matches!(
            core.begin_tls(),
            Err(ImapError::StartTlsInjection)
        ));
    }
}
