//! An independent, blocking IMAP test client: seeds mailboxes and reads them
//! back byte-exactly with raw `FETCH`, to check the daemon from outside.
//!
//! It deliberately shares no code with the daemon's IMAP stack (no
//! imap-codec): a bug there cannot hide itself by being on both sides of a
//! comparison. It reads any response line, with literals (`{n}` and the
//! `~{n}` of BINARY) of any size collected as raw bytes, and parses only what
//! its helpers need (FETCH, LIST/LSUB, STATUS, SELECT data). Mailbox names are
//! given and returned as UTF-8 and travel as modified UTF-7.
//!
//! Test support only: it trusts the server enough to allocate what a literal
//! announces (up to [`MAX_LITERAL`]).

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Encodes a mailbox name in modified UTF-7 (RFC 3501 §5.1.3), by the
/// `utf7-imap` crate: an oracle independent of mailrestore's own codec.
pub fn encode_mailbox_name(name: &str) -> String {
    utf7_imap::encode_utf7_imap(name.to_owned())
}

/// Decodes a modified UTF-7 mailbox name (see [`encode_mailbox_name`]).
pub fn decode_mailbox_name(wire: &str) -> String {
    utf7_imap::decode_utf7_imap(wire.to_owned())
}

/// The largest literal the client accepts from a server.
pub const MAX_LITERAL: usize = 1 << 30;
/// Socket read/write timeout: a hung server fails the test instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// The status of a tagged response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`.
    Ok,
    /// `NO`.
    No,
    /// `BAD`.
    Bad,
}

/// One untagged response (`* …`), without the `* ` and the final CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untagged {
    /// The response text; each literal is left as its `{n}` announcement,
    /// followed directly by the text after the literal.
    pub text: Vec<u8>,
    /// The literals' bytes, in order.
    pub literals: Vec<Vec<u8>>,
}

impl Untagged {
    /// The text as (lossy) UTF-8, for assertions and messages.
    pub fn text_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.text)
    }
}

/// The complete answer to one command.
#[derive(Debug, Clone)]
pub struct Response {
    /// The tagged status.
    pub status: Status,
    /// The tagged text after the status, response code included
    /// (e.g. `[APPENDUID 38505 3955] Append completed.`).
    pub text: String,
    /// The untagged responses that came before it.
    pub untagged: Vec<Untagged>,
}

impl Response {
    /// The response code of the tagged line, without brackets
    /// (e.g. `APPENDUID 38505 3955`, `OVERQUOTA`).
    pub fn code(&self) -> Option<&str> {
        let rest = self.text.strip_prefix('[')?;
        rest.find(']').map(|end| &rest[..end])
    }

    /// The `(uidvalidity, uid)` of an `[APPENDUID v uid]` code (the first UID
    /// when the server answered a set).
    pub fn append_uid(&self) -> Option<(u32, u32)> {
        let mut words = self.code()?.split(' ');
        if !words.next()?.eq_ignore_ascii_case("APPENDUID") {
            return None;
        }
        let validity = words.next()?.parse().ok()?;
        let first = words.next()?.split([':', ',']).next()?.parse().ok()?;
        Some((validity, first))
    }
}

/// A message as read back by [`RawImap::fetch_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    /// Its UID.
    pub uid: u32,
    /// Its flags and keywords as the server spells them, without the
    /// session-specific `\Recent`.
    pub flags: Vec<String>,
    /// The INTERNALDATE string, e.g. `17-Jul-1996 02:44:25 -0700`.
    pub internaldate: String,
    /// The exact bytes of `BODY[]`.
    pub body: Vec<u8>,
}

/// One line of a LIST or LSUB answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMailbox {
    /// Name attributes and special-use flags, e.g. `\HasNoChildren`, `\Sent`.
    pub attributes: Vec<String>,
    /// The hierarchy delimiter, `None` for `NIL`.
    pub delimiter: Option<char>,
    /// The name, decoded from modified UTF-7 (left as sent if not valid).
    pub name: String,
}

/// What SELECT or EXAMINE reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectedMailbox {
    /// `* n EXISTS`.
    pub exists: u32,
    /// `[UIDVALIDITY n]`.
    pub uid_validity: Option<u32>,
    /// `[UIDNEXT n]`.
    pub uid_next: Option<u32>,
}

/// Why a raw IMAP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The connection failed.
    #[error("IMAP connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered NO or BAD.
    #[error("IMAP `{command}` answered {status:?}: {text}")]
    Rejected {
        /// The command (credentials masked).
        command: String,
        /// NO or BAD.
        status: Status,
        /// The tagged text, response code included.
        text: String,
    },
    /// The server sent something this client cannot read.
    #[error("IMAP protocol: expected {expected}, got {got:?}")]
    Protocol {
        /// What the client expected.
        expected: &'static str,
        /// What arrived (possibly cut short).
        got: String,
    },
    /// An argument cannot be sent as an IMAP quoted string.
    #[error("cannot send {0:?} as an IMAP quoted string (CR, LF, NUL or non-ASCII)")]
    Unquotable(String),
    /// A polled condition did not come true in time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// The condition.
        what: String,
        /// How long the client polled.
        waited: Duration,
    },
}

/// A line read from the server.
enum ServerLine {
    Tagged {
        tag: String,
        status: Status,
        text: String,
    },
    Untagged(Untagged),
    Continuation,
}

/// A blocking IMAP connection (plaintext: the sandbox listens on loopback).
#[derive(Debug)]
pub struct RawImap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_tag: u32,
    greeting: String,
}

impl RawImap {
    /// Connects and reads the greeting, which must be `* OK`.
    pub fn connect(host: &str, port: u16) -> Result<RawImap, ImapError> {
        let stream = TcpStream::connect((host, port))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut imap = RawImap {
            reader: BufReader::with_capacity(256 * 1024, stream),
            writer,
            next_tag: 1,
            greeting: String::new(),
        };
        match imap.read_line()? {
            ServerLine::Untagged(line) if line.text.starts_with(b"OK") => {
                imap.greeting = line.text_lossy().into_owned();
                Ok(imap)
            }
            _ => Err(ImapError::Protocol {
                expected: "a `* OK` greeting",
                got: "another first line".to_owned(),
            }),
        }
    }

    /// The greeting's text after `* ` (e.g. `OK [CAPABILITY …] Dovecot ready.`).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// Sends one command line (`tag` + `line` + CRLF) and reads until its
    /// tagged answer. NO and BAD are returned, not errors; see
    /// [`RawImap::command_ok`]. For commands with literals use the helpers.
    pub fn command(&mut self, line: &str) -> Result<Response, ImapError> {
        let tag = self.tag();
        self.writer
            .write_all(format!("{tag} {line}\r\n").as_bytes())?;
        self.read_response(&tag)
    }

    /// Like [`RawImap::command`], but NO and BAD are errors.
    pub fn command_ok(&mut self, line: &str) -> Result<Response, ImapError> {
        let response = self.command(line)?;
        ok(response, line)
    }

    /// `LOGIN user password`.
    pub fn login(&mut self, user: &str, password: &str) -> Result<Response, ImapError> {
        let line = format!("LOGIN {} {}", quote(user)?, quote(password)?);
        let response = self.command(&line)?;
        ok(response, &format!("LOGIN {user} ***"))
    }

    /// Logs in as `user` through a master user: `LOGIN user*master password`
    /// (Dovecot's `auth_master_user_separator = *`).
    pub fn login_master(
        &mut self,
        user: &str,
        master: &str,
        password: &str,
    ) -> Result<Response, ImapError> {
        self.login(&format!("{user}*{master}"), password)
    }

    /// `AUTHENTICATE PLAIN` with an initial response (SASL-IR): authorization
    /// identity `authzid` (who to be; empty for oneself), authentication
    /// identity `authcid`, password.
    pub fn authenticate_plain(
        &mut self,
        authzid: &str,
        authcid: &str,
        password: &str,
    ) -> Result<Response, ImapError> {
        let blob = STANDARD.encode(format!("{authzid}\0{authcid}\0{password}"));
        let response = self.command(&format!("AUTHENTICATE PLAIN {blob}"))?;
        ok(
            response,
            &format!("AUTHENTICATE PLAIN {authzid} {authcid} ***"),
        )
    }

    /// `CREATE mailbox`.
    pub fn create(&mut self, mailbox: &str) -> Result<Response, ImapError> {
        self.command_ok(&format!("CREATE {}", quote_mailbox(mailbox)))
    }

    /// `SUBSCRIBE mailbox`.
    pub fn subscribe(&mut self, mailbox: &str) -> Result<Response, ImapError> {
        self.command_ok(&format!("SUBSCRIBE {}", quote_mailbox(mailbox)))
    }

    /// `SELECT mailbox` (read-write).
    pub fn select(&mut self, mailbox: &str) -> Result<SelectedMailbox, ImapError> {
        let response = self.command_ok(&format!("SELECT {}", quote_mailbox(mailbox)))?;
        Ok(selected(&response))
    }

    /// `EXAMINE mailbox` (read-only: flags and `\Recent` stay as they are).
    pub fn examine(&mut self, mailbox: &str) -> Result<SelectedMailbox, ImapError> {
        let response = self.command_ok(&format!("EXAMINE {}", quote_mailbox(mailbox)))?;
        Ok(selected(&response))
    }

    /// `APPEND mailbox (flags) ["internaldate"] {n}` with a synchronizing
    /// literal: waits for the server's `+` before sending `message`, which
    /// is sent byte for byte. `internaldate` is the bare date-time, e.g.
    /// `17-Jul-1996 02:44:25 -0700`. NO (e.g. `[OVERQUOTA]`) is an error
    /// whose text carries the response code.
    pub fn append(
        &mut self,
        mailbox: &str,
        flags: &[&str],
        internaldate: Option<&str>,
        message: &[u8],
    ) -> Result<Response, ImapError> {
        let tag = self.tag();
        let date = match internaldate {
            Some(date) => format!("{} ", quote(date)?),
            None => String::new(),
        };
        let display = format!(
            "APPEND {} ({}) {date}{{{}}}",
            quote_mailbox(mailbox),
            flags.join(" "),
            message.len()
        );
        self.writer
            .write_all(format!("{tag} {display}\r\n").as_bytes())?;
        let mut untagged = Vec::new();
        loop {
            match self.read_line()? {
                ServerLine::Continuation => break,
                ServerLine::Untagged(line) => untagged.push(line),
                ServerLine::Tagged {
                    tag: got,
                    status,
                    text,
                } if got == tag => {
                    // Refused before the literal (e.g. too big, no such mailbox).
                    return ok(
                        Response {
                            status,
                            text,
                            untagged,
                        },
                        &display,
                    );
                }
                ServerLine::Tagged { tag: got, .. } => return Err(unexpected_tag(&got)),
            }
        }
        self.writer.write_all(message)?;
        self.writer.write_all(b"\r\n")?;
        let mut response = self.read_response(&tag)?;
        untagged.append(&mut response.untagged);
        response.untagged = untagged;
        ok(response, &display)
    }

    /// `LIST "" "*"`: every mailbox.
    pub fn list(&mut self) -> Result<Vec<ListedMailbox>, ImapError> {
        let response = self.command_ok(r#"LIST "" "*""#)?;
        listed(&response, b"LIST")
    }

    /// `LSUB "" "*"`: every subscribed mailbox.
    pub fn lsub(&mut self) -> Result<Vec<ListedMailbox>, ImapError> {
        let response = self.command_ok(r#"LSUB "" "*""#)?;
        listed(&response, b"LSUB")
    }

    /// `STATUS mailbox (MESSAGES)`.
    pub fn message_count(&mut self, mailbox: &str) -> Result<u32, ImapError> {
        let response = self.command_ok(&format!("STATUS {} (MESSAGES)", quote_mailbox(mailbox)))?;
        for line in &response.untagged {
            let tokens = tokenize(line)?;
            let [Token::Atom(kind), _name, Token::Open, rest @ ..] = tokens.as_slice() else {
                continue;
            };
            if !kind.eq_ignore_ascii_case(b"STATUS") {
                continue;
            }
            for pair in rest.windows(2) {
                match pair {
                    [Token::Atom(key), Token::Atom(value)]
                        if key.eq_ignore_ascii_case(b"MESSAGES") =>
                    {
                        return number(value);
                    }
                    _ => {}
                }
            }
        }
        Err(ImapError::Protocol {
            expected: "a STATUS response with MESSAGES",
            got: response.text,
        })
    }

    /// Every message of `mailbox`, by `EXAMINE` and
    /// `UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])`, sorted by UID;
    /// bodies are read byte-exactly from their literals.
    pub fn fetch_all(&mut self, mailbox: &str) -> Result<Vec<FetchedMessage>, ImapError> {
        self.examine(mailbox)?;
        let response = self.command_ok("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")?;
        let mut messages = Vec::new();
        for line in &response.untagged {
            if let Some(message) = fetched(line)? {
                messages.push(message);
            }
        }
        messages.sort_by_key(|m| m.uid);
        Ok(messages)
    }

    /// Polls `STATUS` until `mailbox` holds at least `count` messages, then
    /// returns them all ([`RawImap::fetch_all`]); fails after `within`.
    pub fn wait_for_messages(
        &mut self,
        mailbox: &str,
        count: u32,
        within: Duration,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        let started = Instant::now();
        while self.message_count(mailbox)? < count {
            if started.elapsed() >= within {
                return Err(ImapError::Timeout {
                    what: format!("{count} message(s) in {mailbox:?}"),
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.fetch_all(mailbox)
    }

    /// `LOGOUT`; the connection is closed afterwards.
    pub fn logout(mut self) -> Result<(), ImapError> {
        self.command_ok("LOGOUT").map(drop)
    }

    fn tag(&mut self) -> String {
        let tag = format!("T{:04}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    fn read_response(&mut self, tag: &str) -> Result<Response, ImapError> {
        let mut untagged = Vec::new();
        loop {
            match self.read_line()? {
                ServerLine::Untagged(line) => untagged.push(line),
                ServerLine::Tagged {
                    tag: got,
                    status,
                    text,
                } if got == tag => {
                    return Ok(Response {
                        status,
                        text,
                        untagged,
                    });
                }
                ServerLine::Tagged { tag: got, .. } => return Err(unexpected_tag(&got)),
                ServerLine::Continuation => {
                    return Err(ImapError::Protocol {
                        expected: "no continuation request for a command without literals",
                        got: "+".to_owned(),
                    });
                }
            }
        }
    }

    /// Reads one response line, with the literals it announces.
    fn read_line(&mut self) -> Result<ServerLine, ImapError> {
        let mut text = Vec::new();
        let mut literals = Vec::new();
        loop {
            let start = text.len();
            let n = self.reader.read_until(b'\n', &mut text)?;
            if n == 0 || !text.ends_with(b"\r\n") {
                return Err(ImapError::Protocol {
                    expected: "a CRLF-terminated line",
                    got: format!(
                        "end of stream after {:?}",
                        String::from_utf8_lossy(&text[start..])
                    ),
                });
            }
            text.truncate(text.len() - 2);
            let Some(len) = literal_at_end(&text[start..]) else {
                break;
            };
            if len > MAX_LITERAL {
                return Err(ImapError::Protocol {
                    expected: "a literal of at most 1 GiB",
                    got: format!("{{{len}}}"),
                });
            }
            let mut literal = vec![0; len];
            self.reader.read_exact(&mut literal)?;
            literals.push(literal);
        }
        Ok(classify(text, literals))
    }
}

fn classify(text: Vec<u8>, literals: Vec<Vec<u8>>) -> ServerLine {
    if let Some(rest) = text.strip_prefix(b"* ") {
        return ServerLine::Untagged(Untagged {
            text: rest.to_vec(),
            literals,
        });
    }
    if text.starts_with(b"+") {
        return ServerLine::Continuation;
    }
    let line = String::from_utf8_lossy(&text);
    let mut parts = line.splitn(3, ' ');
    let tag = parts.next().unwrap_or_default().to_owned();
    let status = match parts
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
        .as_str()
    {
        "OK" => Status::Ok,
        "NO" => Status::No,
        _ => Status::Bad,
    };
    let text = parts.next().unwrap_or_default().to_owned();
    ServerLine::Tagged { tag, status, text }
}

/// The length of a literal announced at the end of a line segment:
/// `{n}`, `{n+}` or `~{n}`, outside a quoted string.
fn literal_at_end(segment: &[u8]) -> Option<usize> {
    let inner = segment.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = inner[open + 1..]
        .strip_suffix(b"+")
        .unwrap_or(&inner[open + 1..]);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || in_quotes(&segment[..open]) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether the end of `text` is inside a quoted string.
fn in_quotes(text: &[u8]) -> bool {
    let (mut quoted, mut escaped) = (false, false);
    for &b in text {
        match (quoted, escaped, b) {
            (true, false, b'\\') => escaped = true,
            (true, true, _) => escaped = false,
            (_, _, b'"') => quoted = !quoted,
            _ => {}
        }
    }
    quoted
}

fn ok(response: Response, command: &str) -> Result<Response, ImapError> {
    match response.status {
        Status::Ok => Ok(response),
        status => Err(ImapError::Rejected {
            command: command.to_owned(),
            status,
            text: response.text,
        }),
    }
}

fn unexpected_tag(tag: &str) -> ImapError {
    ImapError::Protocol {
        expected: "the tag of the command in flight",
        got: tag.to_owned(),
    }
}

/// An IMAP quoted string.
fn quote(text: &str) -> Result<String, ImapError> {
    if !text.is_ascii() || text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(ImapError::Unquotable(text.to_owned()));
    }
    Ok(format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// A mailbox name in modified UTF-7, quoted (always printable ASCII).
fn quote_mailbox(name: &str) -> String {
    let wire = encode_mailbox_name(name);
    format!("\"{}\"", wire.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A token of a response line, enough for FETCH, LIST and STATUS data.
#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    Open,
    Close,
    /// An atom or number, `NIL`, a flag, or `BODY[…]`.
    Atom(&'a [u8]),
    Quoted(Vec<u8>),
    Literal(&'a [u8]),
}

fn tokenize(line: &Untagged) -> Result<Vec<Token<'_>>, ImapError> {
    let text = &line.text;
    let mut literals = line.literals.iter();
    let mut tokens = Vec::new();
    let mut i = 0;
    let malformed = |expected| ImapError::Protocol {
        expected,
        got: String::from_utf8_lossy(text).chars().take(200).collect(),
    };
    while i < text.len() {
        match text[i] {
            b' ' => i += 1,
            b'(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            b'"' => {
                let mut value = Vec::new();
                i += 1;
                loop {
                    match text.get(i) {
                        None => return Err(malformed("a closing quote")),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            value.push(
                                *text
                                    .get(i + 1)
                                    .ok_or_else(|| malformed("an escaped character"))?,
                            );
                            i += 2;
                        }
                        Some(&b) => {
                            value.push(b);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Quoted(value));
                i += 1;
            }
            b'{' | b'~' => {
                let close = text[i..]
                    .iter()
                    .position(|&b| b == b'}')
                    .ok_or_else(|| malformed("a literal announcement"))?;
                let literal = literals
                    .next()
                    .ok_or_else(|| malformed("the announced literal"))?;
                tokens.push(Token::Literal(literal));
                i += close + 1;
            }
            _ => {
                let start = i;
                while i < text.len() && !matches!(text[i], b' ' | b'(' | b')') {
                    if text[i] == b'[' {
                        // `BODY[HEADER.FIELDS (A B)]`: spaces and parens inside.
                        let close = text[i..]
                            .iter()
                            .position(|&b| b == b']')
                            .ok_or_else(|| malformed("a closing bracket"))?;
                        i += close;
                    }
                    i += 1;
                }
                tokens.push(Token::Atom(&text[start..i]));
            }
        }
    }
    Ok(tokens)
}

fn number(bytes: &[u8]) -> Result<u32, ImapError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ImapError::Protocol {
            expected: "a number",
            got: String::from_utf8_lossy(bytes).into_owned(),
        })
}

/// A string value: atom, quoted string or literal (`NIL` is empty).
fn string_value(token: &Token<'_>) -> Option<Vec<u8>> {
    match token {
        Token::Atom(b"NIL") => Some(Vec::new()),
        Token::Atom(atom) => Some(atom.to_vec()),
        Token::Quoted(value) => Some(value.clone()),
        Token::Literal(bytes) => Some(bytes.to_vec()),
        Token::Open | Token::Close => None,
    }
}

fn selected(response: &Response) -> SelectedMailbox {
    let mut mailbox = SelectedMailbox {
        exists: 0,
        uid_validity: None,
        uid_next: None,
    };
    for line in &response.untagged {
        let text = line.text_lossy();
        let words: Vec<&str> = text
            .split([' ', '[', ']'])
            .filter(|w| !w.is_empty())
            .collect();
        match words.as_slice() {
            [n, kind, ..] if kind.eq_ignore_ascii_case("EXISTS") => {
                mailbox.exists = n.parse().unwrap_or(0)
            }
            ["OK", code, n, ..] if code.eq_ignore_ascii_case("UIDVALIDITY") => {
                mailbox.uid_validity = n.parse().ok()
            }
            ["OK", code, n, ..] if code.eq_ignore_ascii_case("UIDNEXT") => {
                mailbox.uid_next = n.parse().ok()
            }
            _ => {}
        }
    }
    mailbox
}

fn listed(response: &Response, kind: &[u8]) -> Result<Vec<ListedMailbox>, ImapError> {
    let mut mailboxes = Vec::new();
    for line in &response.untagged {
        let tokens = tokenize(line)?;
        let [Token::Atom(first), Token::Open, rest @ ..] = tokens.as_slice() else {
            continue;
        };
        if !first.eq_ignore_ascii_case(kind) {
            continue;
        }
        let Some(close) = rest.iter().position(|t| *t == Token::Close) else {
            return Err(ImapError::Protocol {
                expected: "a LIST attribute list",
                got: line.text_lossy().into_owned(),
            });
        };
        let attributes = rest[..close]
            .iter()
            .filter_map(|t| match t {
                Token::Atom(a) => Some(String::from_utf8_lossy(a).into_owned()),
                _ => None,
            })
            .collect();
        let (Some(delimiter), Some(name)) = (rest.get(close + 1), rest.get(close + 2)) else {
            return Err(ImapError::Protocol {
                expected: "a LIST delimiter and name",
                got: line.text_lossy().into_owned(),
            });
        };
        let delimiter = match delimiter {
            Token::Quoted(d) => d.first().map(|&b| char::from(b)),
            _ => None,
        };
        let wire = String::from_utf8_lossy(&string_value(name).unwrap_or_default()).into_owned();
        let name = decode_mailbox_name(&wire);
        mailboxes.push(ListedMailbox {
            attributes,
            delimiter,
            name,
        });
    }
    Ok(mailboxes)
}

/// A FETCH response with UID, FLAGS, INTERNALDATE and BODY[]; `None` for
/// other untagged lines and for FETCH responses lacking a body (e.g. a flag
/// update the server volunteers).
fn fetched(line: &Untagged) -> Result<Option<FetchedMessage>, ImapError> {
    let tokens = tokenize(line)?;
    let [
        Token::Atom(_seq),
        Token::Atom(kind),
        Token::Open,
        items @ ..,
    ] = tokens.as_slice()
    else {
        return Ok(None);
    };
    if !kind.eq_ignore_ascii_case(b"FETCH") {
        return Ok(None);
    }
    let (mut uid, mut flags, mut internaldate, mut body) = (None, Vec::new(), None, None);
    let mut i = 0;
    while i < items.len() {
        let Token::Atom(key) = &items[i] else {
            break; // The closing paren.
        };
        let key = key.to_ascii_uppercase();
        i += 1;
        match key.as_slice() {
            b"UID" => {
                uid = match items.get(i) {
                    Some(Token::Atom(n)) => Some(number(n)?),
                    _ => None,
                };
                i += 1;
            }
            b"FLAGS" => {
                i += 1; // The opening paren.
                while let Some(Token::Atom(flag)) = items.get(i) {
                    if !flag.eq_ignore_ascii_case(b"\\Recent") {
                        flags.push(String::from_utf8_lossy(flag).into_owned());
                    }
                    i += 1;
                }
                i += 1; // The closing paren.
            }
            b"INTERNALDATE" => {
                internaldate = items.get(i).and_then(string_value);
                i += 1;
            }
            b"BODY[]" => {
                body = items.get(i).and_then(string_value);
                i += 1;
            }
            _ => i = skip_value(items, i),
        }
    }
    match (uid, internaldate, body) {
        (Some(uid), Some(date), Some(body)) => Ok(Some(FetchedMessage {
            uid,
            flags,
            internaldate: String::from_utf8_lossy(&date).into_owned(),
            body,
        })),
        _ => Ok(None),
    }
}

/// The index after the value starting at `i` (a token or a parenthesized list).
fn skip_value(items: &[Token<'_>], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(token) = items.get(i) {
        i += 1;
        match token {
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 {
            break;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_names_follow_rfc3501() {
        let cases = [
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("A&B", "A&-B"),
            ("INBOX", "INBOX"),
            ("Projets/Été 2025", "Projets/&AMk-t&AOk- 2025"),
            ("😀", "&2D3eAA-"),
        ];
        for (name, wire) in cases {
            assert_eq!(encode_mailbox_name(name), wire, "encode {name}");
            assert_eq!(decode_mailbox_name(wire), name, "decode {wire}");
        }
    }

    fn untagged(text: &[u8], literals: &[&[u8]]) -> Untagged {
        Untagged {
            text: text.to_vec(),
            literals: literals.iter().map(|l| l.to_vec()).collect(),
        }
    }

    #[test]
    fn literal_announcements() {
        let cases: [(&[u8], Option<usize>); 7] = [
            (b"* 1 FETCH (BODY[] {12}", Some(12)),
            (b"* 1 FETCH (BINARY[] ~{3}", Some(3)),
            (b"A1 APPEND x {5+}", Some(5)),
            (b"* OK done", None),
            (b"* LIST () \"/\" \"a {3}", None),
            (b"* OK {}", None),
            (b"* OK {1a}", None),
        ];
        for (line, expected) in cases {
            assert_eq!(
                literal_at_end(line),
                expected,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn parses_a_fetch_with_a_binary_literal() {
        let body: &[u8] = b"Subject: x\r\n\r\n\x00\xff)\r\n";
        let line = untagged(
            b"3 FETCH (UID 7 FLAGS (\\Seen \\Recent $Label) INTERNALDATE \"01-Feb-2024 10:00:00 +0000\" BODY[] {19})",
            &[body],
        );
        let message = fetched(&line).unwrap().unwrap();
        assert_eq!(message.uid, 7);
        assert_eq!(message.flags, ["\\Seen", "$Label"]);
        assert_eq!(message.internaldate, "01-Feb-2024 10:00:00 +0000");
        assert_eq!(message.body, body);
    }

    #[test]
    fn skips_fetch_items_it_does_not_need() {
        let line = untagged(
            b"1 FETCH (MODSEQ (12) UID 2 BODY[HEADER.FIELDS (FROM)] {3} FLAGS () INTERNALDATE \"x\" BODY[] \"hi\")",
            &[b"a\r\n"],
        );
        let message = fetched(&line).unwrap().unwrap();
        assert_eq!((message.uid, message.body.as_slice()), (2, &b"hi"[..]));
        let flags_only = untagged(b"1 FETCH (FLAGS (\\Seen))", &[]);
        assert_eq!(fetched(&flags_only).unwrap(), None);
    }

    #[test]
    fn parses_list_lines() {
        let response = Response {
            status: Status::Ok,
            text: "done".into(),
            untagged: vec![
                untagged(b"LIST (\\HasNoChildren \\Sent) \"/\" Sent", &[]),
                untagged(b"LIST (\\Noselect) NIL \"Entw&APw-rfe\"", &[]),
                untagged(b"LIST () \".\" {5}", &[b"a\"b c"]),
                untagged(b"CAPABILITY IMAP4rev1", &[]),
            ],
        };
        let listed = listed(&response, b"LIST").unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].attributes, ["\\HasNoChildren", "\\Sent"]);
        assert_eq!(
            (listed[0].delimiter, listed[0].name.as_str()),
            (Some('/'), "Sent")
        );
        assert_eq!(
            (listed[1].delimiter, listed[1].name.as_str()),
            (None, "Entwürfe")
        );
        assert_eq!(listed[2].name, "a\"b c");
    }

    #[test]
    fn response_codes() {
        let response = Response {
            status: Status::Ok,
            text: "[APPENDUID 38505 3955:3960] Append completed.".into(),
            untagged: vec![],
        };
        assert_eq!(response.code(), Some("APPENDUID 38505 3955:3960"));
        assert_eq!(response.append_uid(), Some((38505, 3955)));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert!(quote("a\r\nb").is_err());
        assert_eq!(quote_mailbox("Entwürfe"), "\"Entw&APw-rfe\"");
    }
}
