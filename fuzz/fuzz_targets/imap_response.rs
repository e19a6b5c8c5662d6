//! The IMAP client core fed arbitrary server bytes while one operation runs.
//!
//! Input: `selector split server-bytes...`.
//! - `selector & 0x3f` picks the operation in flight (see [`OPS`]);
//!   `0x40` pipelines a NOOP before it (two tags in flight);
//!   `0x80` uses the daemon's default framing limits instead of small ones.
//! - `split` seeds how the server bytes are cut into reads (0: all at once),
//!   so the framer sees responses split at every possible place.
//! - The server bytes start with the greeting (its capabilities decide how
//!   the command is encoded), then whatever the server answers.
//!
//! Nothing a server sends may panic the core or an operation, and memory
//! stays bounded by the framing limits (run with `-rss_limit_mb` and
//! `-malloc_limit_mb`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailrestore::protocol::imap::ops::{
    Append, Capability, Create, Fetch, List, ListMode, Login, Logout, Lsub, MultiAppend, Namespace,
    Noop, Operation, Select, StartTls, Status, Subscribe,
};
use mailrestore::protocol::imap::{
    AppendMessage, BodySection, ClientCore, ClientOptions, Event, FetchItems, FetchRequest, Flag,
    FramingLimits, InternalDate, LoginMethod, MailboxName, ModSeq, UidSet, UserName,
};
use mailrestore::secret::Secret;

/// The operations, by `selector & 0x3f` modulo their number.
const OPS: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "STARTTLS",
    "LOGOUT",
    "LOGIN",
    "AUTHENTICATE PLAIN",
    "NAMESPACE",
    "LIST extended special-use",
    "LIST plain",
    "LIST as the capabilities say",
    "LSUB",
    "EXAMINE",
    "SELECT",
    "STATUS",
    "CREATE",
    "SUBSCRIBE",
    "UID FETCH full BODY.PEEK[] CHANGEDSINCE",
    "UID FETCH full BINARY.PEEK[]",
    "UID FETCH flags",
    "APPEND",
    "MULTIAPPEND",
];

/// Cuts the server bytes into reads of pseudo-random sizes.
struct Feed<'a> {
    rest: &'a [u8],
    state: u32,
}

impl<'a> Feed<'a> {
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let take = if self.state == 0 {
            self.rest.len()
        } else {
            // xorshift32
            self.state ^= self.state << 13;
            self.state ^= self.state >> 17;
            self.state ^= self.state << 5;
            let max = if self.state & 0x100 == 0 {
                16
            } else {
                self.rest.len()
            };
            1 + (self.state as usize >> 9) % max.min(self.rest.len())
        };
        let (chunk, rest) = self.rest.split_at(take);
        self.rest = rest;
        Some(chunk)
    }
}

/// Runs `op` to its completion the way `net::imap` does; `drain` is called
/// after every untagged response (FETCH hands messages out as they come).
fn drive<O: Operation>(
    core: &mut ClientCore,
    feed: &mut Feed<'_>,
    mut op: O,
    mut drain: impl FnMut(&mut O),
) -> bool {
    let tag = match core.enqueue(&op) {
        Ok(tag) => tag,
        Err(err) => {
            let _ = (err.to_string(), err.is_transient());
            return false;
        }
    };
    loop {
        while let Some(bytes) = core.poll_transmit() {
            std::hint::black_box(bytes);
        }
        match core.poll_event() {
            Err(err) => {
                let _ = (err.to_string(), err.is_transient(), core.waiting_for());
                return false;
            }
            Ok(Some(Event::Untagged(untagged))) => {
                if let Some(err) = untagged.undecodable_as("FETCH") {
                    let _ = err.to_string();
                }
                if let Err(err) = op.on_untagged(untagged) {
                    let _ = err.to_string();
                    return false;
                }
                drain(&mut op);
            }
            Ok(Some(Event::Completed(completion))) if completion.tag == tag => {
                let _ = completion.response_code();
                return match op.complete(completion) {
                    Ok(out) => {
                        std::hint::black_box(out);
                        true
                    }
                    Err(err) => {
                        let _ = (err.to_string(), err.is_transient(), err.response_code());
                        false
                    }
                };
            }
            Ok(Some(_)) => {}
            Ok(None) => match feed.next() {
                Some(chunk) => core.receive(chunk),
                None => {
                    let _ = core.connection_closed().to_string();
                    return false;
                }
            },
        }
    }
}

fn mailbox() -> MailboxName {
    // A constant, valid name.
    MailboxName::from_utf8("Restored/Été 2024").expect("a valid mailbox name")
}

fn login(method: LoginMethod) -> Login {
    Login {
        user: UserName::parse(b"alice@example.org", &method).expect("a valid user name"),
        master_user: "backup".into(),
        master_password: Secret::new("secret".into()),
        method,
    }
}

fn fetch(items: FetchItems, changed_since: Option<ModSeq>) -> Fetch {
    Fetch::new(FetchRequest {
        uids: UidSet::all(),
        items,
        changed_since,
    })
}

/// No messages to hand out.
fn none<O>(_: &mut O) {}

fn drain_fetch(op: &mut Fetch) {
    while let Some(message) = op.next_ready() {
        std::hint::black_box(message);
    }
}

fn run_op(core: &mut ClientCore, feed: &mut Feed<'_>, which: usize) {
    let flags = [
        Flag::new("\\Seen").expect("a valid flag"),
        Flag::new("$Label1").expect("a valid flag"),
    ];
    let message = |content: &'static [u8]| AppendMessage {
        content,
        flags: &flags,
        internal_date: InternalDate::new(1_700_000_000, 3600),
    };
    match which {
        0 => {
            drive(core, feed, Capability::default(), none);
        }
        1 => {
            drive(core, feed, Noop, none);
        }
        2 => {
            if drive(core, feed, StartTls, none) && core.begin_tls().is_ok() {
                drive(core, feed, Capability::default(), none);
            }
        }
        3 => {
            drive(core, feed, Logout, none);
        }
        4 => {
            drive(core, feed, login(LoginMethod::default()), none);
        }
        5 => {
            drive(core, feed, login(LoginMethod::SaslPlain), none);
        }
        6 => {
            drive(core, feed, Namespace::default(), none);
        }
        7 => {
            drive(
                core,
                feed,
                List::new(ListMode::Extended { special_use: true }),
                none,
            );
        }
        8 => {
            drive(core, feed, List::new(ListMode::Plain), none);
        }
        9 => {
            let mode = ListMode::for_capabilities(core.capabilities());
            drive(core, feed, List::new(mode), none);
        }
        10 => {
            drive(core, feed, Lsub::default(), none);
        }
        11 => {
            drive(core, feed, Select::examine(mailbox()), none);
        }
        12 => {
            drive(core, feed, Select::read_write(mailbox()), none);
        }
        13 => {
            drive(core, feed, Status::new(mailbox()), none);
        }
        14 => {
            drive(core, feed, Create(mailbox()), none);
        }
        15 => {
            drive(core, feed, Subscribe(mailbox()), none);
        }
        16 => {
            let op = fetch(FetchItems::Full(BodySection::Body), ModSeq::new(5));
            drive(core, feed, op, drain_fetch);
        }
        17 => {
            let op = fetch(FetchItems::Full(BodySection::Binary), None);
            drive(core, feed, op, drain_fetch);
        }
        18 => {
            let op = fetch(FetchItems::FlagsOnly, ModSeq::new(1));
            drive(core, feed, op, drain_fetch);
        }
        19 => {
            let op = Append::new(mailbox(), message(b"Subject: one\r\n\r\nhello\r\n"));
            drive(core, feed, op, none);
        }
        _ => {
            let messages = [
                message(b"Subject: one\r\n\r\nhello\r\n"),
                message(b"Subject: two\r\n\r\n\0binary\r\n"),
                message(b""),
            ];
            drive(core, feed, MultiAppend::new(mailbox(), &messages), none);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, split, server @ ..] = data else {
        return;
    };
    let limits = if selector & 0x80 != 0 {
        FramingLimits::default()
    } else {
        FramingLimits {
            max_literal: 4096,
            max_line: 1024,
            max_response: 16 << 10,
        }
    };
    let mut core = ClientCore::new(ClientOptions { limits });
    let mut feed = Feed {
        rest: server,
        state: u32::from(*split) * 0x0101_0101,
    };

    // The greeting.
    loop {
        match core.poll_event() {
            Ok(Some(Event::Greeting { .. })) => break,
            Ok(Some(_)) => {}
            Ok(None) => match feed.next() {
                Some(chunk) => core.receive(chunk),
                None => return,
            },
            Err(err) => {
                let _ = err.to_string();
                return;
            }
        }
    }
    let _ = (core.capabilities_stale(), core.capabilities().is_empty());

    if selector & 0x40 != 0 {
        let _ = core.enqueue(&Noop);
    }
    run_op(
        &mut core,
        &mut feed,
        usize::from(selector & 0x3f) % OPS.len(),
    );

    // Whatever else the server sends afterwards (unsolicited data, a BYE).
    loop {
        while core.poll_transmit().is_some() {}
        match core.poll_event() {
            Ok(Some(_)) => {}
            Ok(None) => match feed.next() {
                Some(chunk) => core.receive(chunk),
                None => break,
            },
            Err(_) => break,
        }
    }
    let _ = (core.has_in_flight(), core.is_closed(), core.waiting_for());
});
