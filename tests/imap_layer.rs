//! The IMAP connection layer against a real Dovecot (started by the sandbox
//! harness), checked through the independent raw client `RawImap`, plus fake
//! servers on loopback for failures a real server does not produce on demand
//! (a connection cut in a literal, a stall, an unsolicited BYE, TLS).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mailrestore::net::imap::{Endpoint, ImapConnection, Security};
use mailrestore::protocol::imap::{
    AppendMessage, BodySection, FetchItems, FetchRequest, FetchedMessage, Flag, ImapError,
    InternalDate, LoginMethod, MailboxAttribute, MailboxName, Refusal, ResponseCode, SpecialUse,
    UidSet,
};
use mailrestore::secret::Secret;
use mailrestore_sandbox::raw_imap::RawImap;
use mailrestore_sandbox::{Dovecot, Sandbox, SandboxOptions};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const ALICE: &str = "alice@example.org";

fn start() -> Sandbox {
    Sandbox::start(SandboxOptions::default()).expect("sandbox with Dovecot starts")
}

fn dovecot(sandbox: &Sandbox) -> &Dovecot {
    sandbox
        .dovecot()
        .expect("Dovecot is part of the default sandbox")
}

fn endpoint(d: &Dovecot) -> Endpoint {
    Endpoint::new(
        d.host.clone(),
        d.imap_port,
        Security::None,
        d.master_user.clone(),
        Secret::new(d.master_password.clone()),
    )
}

async fn open(d: &Dovecot, user: &str) -> ImapConnection {
    ImapConnection::open(&endpoint(d), user)
        .await
        .expect("master login")
}

fn raw(d: &Dovecot) -> RawImap {
    d.login_master(ALICE).expect("raw master login")
}

fn mailbox(name: &str) -> MailboxName {
    MailboxName::from_utf8(name).expect("valid mailbox name")
}

fn flags(list: &[&str]) -> Vec<Flag> {
    list.iter()
        .map(|f| Flag::new(*f).expect("valid flag"))
        .collect()
}

/// The instant of an INTERNALDATE string. Dovecot's Maildir keeps the
/// instant, not the UTC offset it was given in.
fn instant(date: &str) -> i64 {
    InternalDate::parse_imap(date)
        .unwrap_or_else(|| panic!("bad INTERNALDATE {date:?}"))
        .unix_seconds()
}

async fn fetch_all(conn: &mut ImapConnection, name: &MailboxName) -> Vec<FetchedMessage> {
    conn.examine(name).await.expect("examine");
    conn.uid_fetch(FetchRequest {
        uids: UidSet::all(),
        items: FetchItems::Full(BodySection::Body),
        changed_since: None,
    })
    .await
    .expect("fetch starts")
    .collect()
    .await
    .expect("fetch completes")
}

fn sorted_flags(flags: &[Flag]) -> Vec<String> {
    let mut out: Vec<String> = flags.iter().map(|f| f.as_str().to_owned()).collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ----- login -------------------------------------------------------------------------------------

#[tokio::test]
async fn master_login_with_separator_and_with_sasl_plain() {
    let sandbox = start();
    let d = dovecot(&sandbox);

    let mut conn = open(d, ALICE).await;
    assert!(conn.capabilities().multiappend(), "{conn:?}");
    assert!(conn.capabilities().uidplus());
    let ns = conn.namespace().await.expect("namespace");
    assert_eq!(ns.personal[0].prefix.raw(), b"");
    assert_eq!(ns.personal[0].delimiter, Some('/'));
    let status = conn.status(&mailbox("INBOX")).await.expect("status");
    assert_eq!(status.messages, 0);
    conn.logout().await.expect("logout");

    let mut sasl = endpoint(d);
    sasl.login = LoginMethod::SaslPlain;
    let mut conn = ImapConnection::open(&sasl, "bob@example.org")
        .await
        .expect("SASL PLAIN master login");
    conn.create(&mailbox("only-bob")).await.expect("create");
    conn.logout().await.expect("logout");
    // The folder landed in bob's account, not in the master's or alice's.
    let mut bob = d.login_master("bob@example.org").expect("raw login");
    assert!(bob.list().unwrap().iter().any(|m| m.name == "only-bob"));
    let mut alice = raw(d);
    assert!(!alice.list().unwrap().iter().any(|m| m.name == "only-bob"));
}

#[tokio::test]
async fn invalid_user_names_are_refused_without_connecting() {
    // A listener that would record any connection; the user name check
    // happens before connecting, so nothing may arrive.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ep = Endpoint::new(
        "127.0.0.1",
        port,
        Security::None,
        "restore",
        Secret::new("pw".into()),
    );
    for user in [
        "",
        "bob*restore",
        "*",
        "bob restore",
        "bob\trestore",
        "bob\r\nM1 LOGIN x y",
        "bob\0admin",
        "bob\u{7f}",
    ] {
        let err = ImapConnection::open(&ep, user)
            .await
            .expect_err("must be refused");
        assert!(
            matches!(err, ImapError::InvalidUserName { .. }),
            "{user:?}: {err}"
        );
        assert!(!err.is_transient());
    }
    let mut sasl = ep.clone();
    sasl.login = LoginMethod::SaslPlain;
    let err = ImapConnection::open(&sasl, "bob\0admin").await.unwrap_err();
    assert!(matches!(err, ImapError::InvalidUserName { .. }), "{err}");

    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("a connection from {peer} was made"),
        Err(e) => panic!("accept failed: {e}"),
    }
}

#[tokio::test]
async fn wrong_master_password_is_a_permanent_authentication_error() {
    let sandbox = start();
    let d = dovecot(&sandbox);
    let mut ep = endpoint(d);
    ep.master_password = Secret::new("wrong".into());
    for method in [LoginMethod::default(), LoginMethod::SaslPlain] {
        ep.login = method;
        let err = ImapConnection::open(&ep, ALICE).await.unwrap_err();
        assert!(
            matches!(err, ImapError::AuthenticationFailed { .. }),
            "{err}"
        );
        assert!(!err.is_transient(), "{err}");
        assert!(!err.to_string().contains("wrong"), "password leaked: {err}");
    }
}

#[tokio::test]
async fn unknown_user_is_a_clear_error() {
    let sandbox = start();
    let d = dovecot(&sandbox);
    let err = ImapConnection::open(&endpoint(d), "nobody@example.org")
        .await
        .unwrap_err();
    // Dovecot answers a master login for a user missing from its userdb with
    // NO [UNAVAILABLE] ("Internal login failure" in its log), and now and
    // then closes the connection without any answer: its login process
    // races the mail process that failed the userdb lookup.
    match &err {
        ImapError::AuthenticationFailed { user, code, .. } => {
            assert_eq!(user, "nobody@example.org");
            assert_eq!(code, &Some(ResponseCode::Unavailable));
            assert!(err.to_string().contains("does not exist"), "{err}");
            assert!(!err.is_transient());
        }
        ImapError::ConnectionClosed { waiting_for } => {
            assert!(waiting_for.contains("LOGIN"), "{err}");
            assert!(err.is_transient());
        }
        other => panic!("expected an authentication error, got {other}"),
    }
    // The same connection settings work for a user that exists.
    open(d, ALICE).await.logout().await.expect("logout");
}

#[tokio::test]
async fn plain_text_to_a_non_loopback_address_is_refused() {
    let ep = Endpoint::new(
        "192.0.2.1",
        143,
        Security::None,
        "restore",
        Secret::new("pw".into()),
    );
    let err = ImapConnection::open(&ep, ALICE).await.unwrap_err();
    assert!(matches!(err, ImapError::InsecureRemote { .. }), "{err}");
    assert!(!err.is_transient());
}

// ----- mailboxes ---------------------------------------------------------------------------------

#[tokio::test]
async fn list_shows_nested_non_ascii_special_use_and_subscriptions() {
    let sandbox = start();
    let d = dovecot(&sandbox);
    let mut seed = raw(d);
    seed.create("Projekte").unwrap();
    seed.create("Projekte/Ärger").unwrap();
    seed.create("Projekte/Ärger/2023 Q1").unwrap();
    seed.create("日本語").unwrap();
    seed.subscribe("Projekte/Ärger").unwrap();

    let mut conn = open(d, ALICE).await;
    let list = conn.list_mailboxes().await.expect("list");
    let find = |name: &str| {
        list.iter()
            .find(|e| e.name.as_str() == name)
            .unwrap_or_else(|| panic!("{name} not in {list:#?}"))
    };
    let inbox = find("INBOX");
    assert!(inbox.name.is_inbox() && inbox.is_selectable());
    let aerger = find("Projekte/Ärger");
    assert_eq!(aerger.name.raw(), b"Projekte/&AMQ-rger");
    assert_eq!(aerger.delimiter, Some('/'));
    assert!(aerger.is_subscribed());
    assert!(aerger.attributes.contains(&MailboxAttribute::HasChildren));
    let nested = find("Projekte/Ärger/2023 Q1");
    assert!(!nested.is_subscribed());
    assert_eq!(find("日本語").name.raw(), b"&ZeVnLIqe-");
    let sent = find("Sent");
    assert_eq!(
        sent.special_uses().collect::<Vec<_>>(),
        vec![&SpecialUse::Sent]
    );
    assert!(sent.is_subscribed());
    assert!(
        find("Trash")
            .special_uses()
            .any(|s| *s == SpecialUse::Trash)
    );

    // Cross-check the names with the independent client.
    let raw_names: Vec<String> = seed.list().unwrap().into_iter().map(|m| m.name).collect();
    for entry in list.iter().filter(|e| e.is_selectable()) {
        assert!(
            raw_names.contains(&entry.name.as_str().to_owned()),
            "{entry:?}"
        );
    }
}

#[tokio::test]
async fn create_subscribe_status_and_existing_folder() {
    let sandbox = start();
    let d = dovecot(&sandbox);
    let mut conn = open(d, ALICE).await;
    let name = mailbox("Restored 2024-05-01/Entwürfe");
    conn.create(&name).await.expect("create");
    conn.subscribe(&name).await.expect("subscribe");
    let err = conn.create(&name).await.expect_err("exists");
    assert_eq!(
        err.response_code(),
        Some(&ResponseCode::AlreadyExists),
        "{err}"
    );
    assert!(!err.is_transient());
    // The refusal left the connection usable.
    let status = conn.status(&name).await.expect("status");
    assert_eq!(status.messages, 0);
    assert!(status.uid_next.get() >= 1);

    // Dovecot 2.3 gives no [NONEXISTENT] code here, just NO.
    let missing = conn.examine(&mailbox("nope")).await.unwrap_err();
    assert!(
        matches!(
            missing,
            ImapError::Refused {
                command: "EXAMINE",
                refusal: Refusal::No,
                ..
            }
        ),
        "{missing}"
    );
    conn.noop().await.expect("still usable");

    let mut check = raw(d);
    let listed = check.lsub().unwrap();
    assert!(
        listed
            .iter()
            .any(|m| m.name == "Restored 2024-05-01/Entwürfe"),
        "{listed:?}"
    );
}

// ----- fetch -------------------------------------------------------------------------------------

#[tokio::test]
async fn examine_and_fetch_leave_seen_alone() {
    let sandbox = start();
    let d = dovecot(&sandbox);
    let mut seed = raw(d);
    seed.append("INBOX", &[], None, b"Subject: unread\r\n\r\nbody\r\n")
        .unwrap();
    seed.append(
        "INBOX",
        &["$Work"],
        None,
        b"Subject: also unread\r\n\r\nx\r\n",
    )
    .unwrap();

    let mut conn = open(d, ALICE).await;
    let selected = conn.examine(&mailbox("INBOX")).await.expect("examine");
    assert!(selected.read_only);
    assert_eq!(selected.exists, 2);
    assert!(
        selected.highest_modseq.is_some(),
        "CONDSTORE is enabled by EXAMINE"
    );
    let messages = fetch_all(&mut conn, &mailbox("INBOX")).await;
    assert_eq!(messages.len(), 2);
    assert!(messages.iter().all(|m| !m.flags.iter().any(Flag::is_seen)));
    assert!(
        messages
            .iter()
            .all(|m| m.modseq.is_some() && m.size.is_some())
    );
    conn.logout().await.expect("logout");

    let after = raw(d).fetch_all("INBOX").unwrap();
    for message in after {
        assert!(!message.flags.iter().any(|f| f == "\\Seen"), "{message:?}");
    }
}

#[tokio::test]
async fn large_8bit_and_nul_messages_are_fetched_byte_exact() {
    let sandbox = start();
    let d = dovecot(&sandbox);
    let mut seed = raw(d);

    let mut big = b"Subject: big\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    while big.len() < 20 << 20 {
        big.extend_from_slice(b"0123456789abcdefghijklmnopqrstuvwxyz \xe4\xf6\xfc\r\n");
    }
    let eight_bit =
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nGr\xc3\xbc\xc3\x9fe \xff\xfe\r\n".to_vec();
    seed.append(
        "INBOX",
        &["\\Seen"],
        Some("17-Jul-1996 02:44:25 -0700"),
        &big,
    )
    .unwrap();
    seed.append("INBOX", &["$Label1"], None, &eight_bit)
        .unwrap();

    // A message with NUL bytes travels as a BINARY literal.
    let mut conn = open(d, ALICE).await;
    let with_nul = b"Subject: nul\r\n\r\na\0b\0c\r\n".to_vec();
    conn.append(
        &mailbox("INBOX"),
        AppendMessage {
            content: &with_nul,
            flags: &[],
            internal_date: None,
        },
    )
    .await
    .expect("append with NUL");

    let ours = fetch_all(&mut conn, &mailbox("INBOX")).await;
    let theirs = raw(d).fetch_all("INBOX").unwrap();
    assert_eq!(ours.len(), 3);
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.uid.get(), b.uid);
        assert!(
            a.body.as_deref() == Some(b.body.as_slice()),
            "body of UID {}",
            b.uid
        );
        assert_eq!(sorted_flags(&a.flags), sorted(b.flags.clone()));
        assert_eq!(
            a.internal_date.map(InternalDate::unix_seconds),
            Some(instant(&b.internaldate))
        );
        assert_eq!(a.size.map(|s| s as usize), Some(b.body.len()));
    }
    assert_eq!(ours[0].body.as_deref(), Some(big.as_slice()));
    assert_eq!(ours[1].body.as_deref(), Some(eight_bit.as_slice()));

    // BINARY.PEEK[] gives the NUL bytes back as stored.
    conn.examine(&mailbox("INBOX")).await.unwrap();
    let binary = conn
        .uid_fetch(FetchRequest {
            uids: UidSet::new(vec![mailrestore::protocol::imap::UidRange::single(
                ours[2].uid,
            )])
            .unwrap(),
            items: FetchItems::Full(BodySection::Binary),
            changed_since: None,
        })
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(binary[0].body.as_deref(), Some(with_nul.as_slice()));
}

#[tokio::test]
async fn fetch_streams_and_a_dropped_stream_leaves_the_connection_usable() {
    let sandbox = start();
    let d = dovecot(&sandbox);
    let mut seed = raw(d);
    for i in 0..5 {
        seed.append(
            "INBOX",
            &[],
            None,
            format!("Subject: {i}\r\n\r\n{i}\r\n").as_bytes(),
        )
        .unwrap();
    }
    let mut conn = open(d, ALICE).await;
    let selected = conn.examine(&mailbox("INBOX")).await.unwrap();
    let modseq = selected.highest_modseq.expect("CONDSTORE");
    {
        let mut stream = conn
            .uid_fetch(FetchRequest {
                uids: UidSet::all(),
                items: FetchItems::Full(BodySection::Body),
                changed_since: None,
            })
            .await
            .unwrap();
        let first = stream.next().await.unwrap().expect("one message");
        assert_eq!(first.body.as_deref(), Some(&b"Subject: 0\r\n\r\n0\r\n"[..]));
        // The stream is dropped with four messages unread.
    }
    let status = conn.status(&mailbox("INBOX")).await.expect("still usable");
    assert_eq!(status.messages, 5);

    // Flags-only resync: nothing changed since the highest mod-sequence.
    seed.select("INBOX").unwrap();
    seed.command_ok("UID STORE 2 +FLAGS (\\Flagged)").unwrap();
    conn.examine(&mailbox("INBOX")).await.unwrap();
    let changed = conn
        .uid_fetch(FetchRequest {
            uids: UidSet::all(),
            items: FetchItems::FlagsOnly,
            changed_since: Some(modseq),
        })
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].uid.get(), 2);
    assert_eq!(sorted_flags(&changed[0].flags), vec!["\\Flagged"]);
    assert_eq!(changed[0].body, None);
}

// ----- append ------------------------------------------------------------------------------------

#[tokio::test]
async fn append_and_multiappend_keep_flags_keywords_and_dates() {
    let sandbox = start();
    let d = dovecot(&sandbox);
    let mut conn = open(d, ALICE).await;
    let target = mailbox("Restored/Ärger");
    conn.create(&target).await.unwrap();

    let one_flags = flags(&["\\Seen", "\\Answered", "$Forwarded", "Work", "\\Recent"]);
    let one_date = InternalDate::new(837_596_665, -7 * 3600).unwrap();
    let uid = conn
        .append(
            &target,
            AppendMessage {
                content: b"Subject: one\r\n\r\n\xe4\r\n",
                flags: &one_flags,
                internal_date: Some(one_date),
            },
        )
        .await
        .expect("append")
        .expect("UIDPLUS gives APPENDUID");

    let f2 = flags(&["\\Flagged"]);
    let f3 = flags(&["\\Draft", "$Label2"]);
    let bodies: [&[u8]; 3] = [
        b"Subject: two\r\n\r\n2\r\n",
        b"Subject: three\r\n\r\n3\0\r\n",
        b"Subject: four\r\n\r\n4\r\n",
    ];
    let messages = [
        AppendMessage {
            content: bodies[0],
            flags: &f2,
            internal_date: InternalDate::new(1_700_000_000, 3600),
        },
        AppendMessage {
            content: bodies[1],
            flags: &f3,
            internal_date: InternalDate::new(1_600_000_000, 0),
        },
        AppendMessage {
            content: bodies[2],
            flags: &[],
            internal_date: None,
        },
    ];
    let uids = conn
        .multiappend(&target, &messages)
        .await
        .expect("multiappend")
        .expect("APPENDUID");
    assert_eq!(uids.uid_validity, uid.uid_validity);
    assert_eq!(uids.uids.len(), 3);
    conn.logout().await.unwrap();

    let stored = raw(d).fetch_all("Restored/Ärger").unwrap();
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[0].uid, uid.uid.get());
    assert_eq!(
        sorted(stored[0].flags.clone()),
        vec!["$Forwarded", "Work", "\\Answered", "\\Seen"]
    );
    assert_eq!(instant(&stored[0].internaldate), one_date.unix_seconds());
    assert_eq!(stored[0].body, b"Subject: one\r\n\r\n\xe4\r\n");
    let got: Vec<u32> = stored[1..].iter().map(|m| m.uid).collect();
    let want: Vec<u32> = uids.uids.iter().map(|u| u.get()).collect();
    assert_eq!(got, want);
    assert_eq!(stored[1].flags, vec!["\\Flagged"]);
    assert_eq!(instant(&stored[1].internaldate), 1_700_000_000);
    assert_eq!(sorted(stored[2].flags.clone()), vec!["$Label2", "\\Draft"]);
    assert_eq!(instant(&stored[2].internaldate), 1_600_000_000);
    assert_eq!(stored[1].body, bodies[0]);
    assert_eq!(stored[3].body, bodies[2]);
    assert!(stored[3].flags.is_empty());
}

#[tokio::test]
async fn append_to_a_missing_folder_says_trycreate() {
    let sandbox = start();
    let d = dovecot(&sandbox);
    let mut conn = open(d, ALICE).await;
    let err = conn
        .append(
            &mailbox("does-not-exist"),
            AppendMessage {
                content: b"Subject: x\r\n\r\n",
                flags: &[],
                internal_date: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.response_code(), Some(&ResponseCode::TryCreate), "{err}");
    conn.noop().await.expect("connection still usable");
}

#[tokio::test]
async fn append_over_quota_is_permanent() {
    let sandbox = Sandbox::start(SandboxOptions {
        quota: Some("1M".into()),
        ..SandboxOptions::default()
    })
    .expect("sandbox with quota");
    let d = dovecot(&sandbox);
    let mut conn = open(d, ALICE).await;
    let big = vec![b'x'; 2 << 20];
    let err = conn
        .append(
            &mailbox("INBOX"),
            AppendMessage {
                content: &big,
                flags: &[],
                internal_date: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.response_code(), Some(&ResponseCode::OverQuota), "{err}");
    assert!(!err.is_transient());
}

// ----- fake servers ------------------------------------------------------------------------------

/// Reads one command line (without CRLF) and returns it with its tag.
async fn read_command<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> (String, String) {
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("read command");
    let line = line.trim_end().to_owned();
    let tag = line.split(' ').next().unwrap_or_default().to_owned();
    (tag, line)
}

/// Greets, accepts the master LOGIN, and hands the connection to `rest`.
async fn greet_and_login<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> BufReader<S> {
    let mut conn = BufReader::new(stream);
    conn.get_mut()
        .write_all(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] fake ready\r\n")
        .await
        .unwrap();
    let (tag, line) = read_command(&mut conn).await;
    assert!(line.contains("LOGIN"), "{line}");
    conn.get_mut()
        .write_all(format!("{tag} OK [CAPABILITY IMAP4rev1 LITERAL+] Logged in\r\n").as_bytes())
        .await
        .unwrap();
    conn
}

/// Answers the EXAMINE of a one-message INBOX, then reads the UID FETCH
/// that follows it.
async fn answer_examine_then_await_fetch<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
) {
    let (tag, _) = read_command(conn).await;
    conn.get_mut()
        .write_all(
            format!("* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n{tag} OK [READ-ONLY] done\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let (_, line) = read_command(conn).await;
    assert!(line.contains("UID FETCH"), "{line}");
}

fn fake_endpoint(port: u16) -> Endpoint {
    Endpoint::new(
        "127.0.0.1",
        port,
        Security::None,
        "restore",
        Secret::new("pw".into()),
    )
}

#[tokio::test]
async fn connection_cut_in_the_middle_of_a_literal_is_transient() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = greet_and_login(stream).await;
        answer_examine_then_await_fetch(&mut conn).await;
        conn.get_mut()
            .write_all(b"* 1 FETCH (UID 1 BODY[] {100000}\r\nonly the first part")
            .await
            .unwrap();
        // Dropping the stream closes the connection mid-literal.
    });
    let mut conn = ImapConnection::open(&fake_endpoint(port), ALICE)
        .await
        .unwrap();
    conn.examine(&mailbox("INBOX")).await.unwrap();
    let mut stream = conn
        .uid_fetch(FetchRequest {
            uids: UidSet::all(),
            items: FetchItems::Full(BodySection::Body),
            changed_since: None,
        })
        .await
        .unwrap();
    let err = stream.next().await.unwrap_err();
    assert!(matches!(err, ImapError::ConnectionClosed { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("100000-byte literal"), "{err}");
    drop(stream);
    assert!(matches!(
        conn.noop().await,
        Err(ImapError::ConnectionPoisoned)
    ));
    server.await.unwrap();
}

#[tokio::test]
async fn a_response_of_endless_small_literals_is_refused_at_its_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = greet_and_login(stream).await;
        answer_examine_then_await_fetch(&mut conn).await;
        // Every line and literal is small; the response never ends. Writing
        // stops when the client closes the connection.
        let out = conn.get_mut();
        if out.write_all(b"* 1 FETCH (UID 1 X {10}\r\n").await.is_ok() {
            while out.write_all(b"0123456789 X {10}\r\n").await.is_ok() {}
        }
    });
    let mut ep = fake_endpoint(port);
    ep.limits.max_response = 64 * 1024;
    let mut conn = ImapConnection::open(&ep, ALICE).await.unwrap();
    conn.examine(&mailbox("INBOX")).await.unwrap();
    let mut stream = conn
        .uid_fetch(FetchRequest {
            uids: UidSet::all(),
            items: FetchItems::Full(BodySection::Body),
            changed_since: None,
        })
        .await
        .unwrap();
    let err = stream.next().await.unwrap_err();
    assert!(matches!(err, ImapError::Protocol { .. }), "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("at most 65536 bytes"), "{err}");
    drop(stream);
    assert!(matches!(
        conn.noop().await,
        Err(ImapError::ConnectionPoisoned)
    ));
    drop(conn);
    server.await.unwrap();
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = greet_and_login(stream).await;
        let _ = read_command(&mut conn).await;
        // Never answer; keep the connection open until the client gave up.
        let _ = done_rx.await;
    });
    let mut ep = fake_endpoint(port);
    ep.io_timeout = Duration::from_secs(1);
    let mut conn = ImapConnection::open(&ep, ALICE).await.unwrap();
    let err = conn.noop().await.unwrap_err();
    assert!(matches!(err, ImapError::Timeout { .. }), "{err}");
    assert!(err.is_transient());
    done_tx.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn unsolicited_bye_is_a_transient_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = greet_and_login(stream).await;
        let _ = read_command(&mut conn).await;
        conn.get_mut()
            .write_all(b"* BYE Server shutting down.\r\n")
            .await
            .unwrap();
    });
    let mut conn = ImapConnection::open(&fake_endpoint(port), ALICE)
        .await
        .unwrap();
    let err = conn.noop().await.unwrap_err();
    assert!(matches!(err, ImapError::Bye { .. }), "{err}");
    assert!(err.is_transient());
    server.await.unwrap();
}

#[tokio::test]
async fn greeting_bye_and_preauth_are_refused() {
    for (greeting, transient) in [
        (&b"* BYE Too many connections\r\n"[..], true),
        (b"* PREAUTH [CAPABILITY IMAP4rev1] welcome back\r\n", false),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(greeting).await.unwrap();
        });
        let err = ImapConnection::open(&fake_endpoint(port), ALICE)
            .await
            .unwrap_err();
        assert_eq!(err.is_transient(), transient, "{err}");
        server.await.unwrap();
    }
}

// ----- TLS ---------------------------------------------------------------------------------------

struct TestCert {
    _dir: tempfile::TempDir,
    /// The CA certificate (what the client trusts).
    cert: PathBuf,
    /// The server's key.
    key: PathBuf,
    /// The server's certificate.
    leaf: PathBuf,
}

/// A test CA and a server certificate it signed for `localhost` and
/// 127.0.0.1 (openssl CLI). `cert` is the CA to trust.
fn test_cert() -> TestCert {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian package `openssl`) is installed");
        assert!(status.success(), "openssl {args:?} failed");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=Test CA"],
        ]
        .concat()
        .iter()
        .chain(&["-keyout", "ca.key", "-out", "ca.pem"])
        .copied()
        .collect::<Vec<_>>(),
    );
    openssl(
        &[&["req"][..], &ec, &["-subj", "/CN=localhost"]]
            .concat()
            .iter()
            .chain(&["-keyout", "key.pem", "-out", "leaf.csr"])
            .copied()
            .collect::<Vec<_>>(),
    );
    std::fs::write(
        path("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.pem",
    ]);
    TestCert {
        cert: path("ca.pem"),
        key: path("key.pem"),
        leaf: path("leaf.pem"),
        _dir: dir,
    }
}

fn acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).unwrap(),
    ))
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).unwrap(),
    ))
    .unwrap()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn implicit_tls_verifies_the_certificate() {
    let cert = test_cert();
    let tls = acceptor(&cert.leaf, &cert.key);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        // Clients that do not trust the certificate fail the handshake (or,
        // without any system CA, never connect); serve the one that does.
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let Ok(stream) = tls.accept(stream).await else {
                continue;
            };
            let mut conn = greet_and_login(stream).await;
            let (tag, _) = read_command(&mut conn).await;
            conn.get_mut()
                .write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes())
                .await
                .unwrap();
            return;
        }
    });
    let mut ep = fake_endpoint(port);
    ep.host = "localhost".into();
    ep.security = Security::Tls;
    let err = ImapConnection::open(&ep, ALICE).await.unwrap_err();
    assert!(
        matches!(
            err,
            ImapError::Certificate { .. } | ImapError::NoTrustAnchors
        ),
        "{err}"
    );
    assert!(!err.is_transient());

    ep.ca_file = Some(cert.cert.clone());
    let conn = ImapConnection::open(&ep, ALICE).await.expect("TLS login");
    conn.logout().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn starttls_upgrades_before_login_and_refreshes_capabilities() {
    let cert = test_cert();
    let tls = acceptor(&cert.leaf, &cert.key);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut plain = BufReader::new(stream);
        plain
            .get_mut()
            .write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] plain\r\n")
            .await
            .unwrap();
        let (tag, line) = read_command(&mut plain).await;
        assert!(
            line.ends_with("STARTTLS"),
            "first command must be STARTTLS: {line}"
        );
        plain
            .get_mut()
            .write_all(format!("{tag} OK Begin TLS negotiation now.\r\n").as_bytes())
            .await
            .unwrap();
        let stream = tls.accept(plain.into_inner()).await.unwrap();
        let mut conn = BufReader::new(stream);
        let (tag, line) = read_command(&mut conn).await;
        assert!(
            line.ends_with("CAPABILITY"),
            "capabilities are asked again: {line}"
        );
        conn.get_mut()
            .write_all(
                format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\n{tag} OK done\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let (tag, line) = read_command(&mut conn).await;
        assert!(
            line.contains("LOGIN \"alice@example.org*restore\" pw"),
            "{line}"
        );
        conn.get_mut()
            .write_all(format!("{tag} OK [CAPABILITY IMAP4rev1 MULTIAPPEND] in\r\n").as_bytes())
            .await
            .unwrap();
    });
    let mut ep = fake_endpoint(port);
    ep.security = Security::StartTls;
    ep.ca_file = Some(cert.cert.clone());
    let conn = ImapConnection::open(&ep, ALICE)
        .await
        .expect("STARTTLS login");
    assert!(conn.capabilities().multiappend());
    server.await.unwrap();
}

/// A CA and a leaf it signed for `names`, valid over the given days (rcgen,
/// to make certificates openssl's CLI cannot: expired ones).
fn rcgen_cert(names: &[&str], valid: ((i32, u8, u8), (i32, u8, u8))) -> TestCert {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, date_time_ymd};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let ((y1, m1, d1), (y2, m2, d2)) = valid;
    leaf.not_before = date_time_ymd(y1, m1, d1);
    leaf.not_after = date_time_ymd(y2, m2, d2);
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("leaf.pem"), leaf.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    TestCert {
        cert: path("ca.pem"),
        key: path("key.pem"),
        leaf: path("leaf.pem"),
        _dir: dir,
    }
}

/// Connects over implicit TLS to a server showing `cert`'s leaf, trusting
/// its CA; the error.
async fn tls_refusal(cert: &TestCert) -> ImapError {
    let tls = acceptor(&cert.leaf, &cert.key);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = tls.accept(stream).await;
    });
    let mut ep = fake_endpoint(port);
    ep.host = "localhost".into();
    ep.security = Security::Tls;
    ep.ca_file = Some(cert.cert.clone());
    let err = ImapConnection::open(&ep, ALICE).await.unwrap_err();
    server.await.unwrap();
    err
}

#[tokio::test]
async fn a_certificate_for_another_host_or_expired_is_refused() {
    let other_host = rcgen_cert(&["mail.other.example"], ((2025, 1, 1), (2035, 1, 1)));
    let err = tls_refusal(&other_host).await;
    assert!(matches!(err, ImapError::Certificate { .. }), "{err}");
    assert!(!err.is_transient(), "{err}");
    let expired = rcgen_cert(&["localhost"], ((2020, 1, 1), (2020, 1, 2)));
    let err = tls_refusal(&expired).await;
    assert!(matches!(err, ImapError::Certificate { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("expired"), "{err}");
    // The same host and dates, valid: accepted (the refusals are for cause).
    let good = rcgen_cert(&["localhost"], ((2025, 1, 1), (2035, 1, 1)));
    let err = tls_refusal(&good).await;
    assert!(!matches!(err, ImapError::Certificate { .. }), "{err}");
}
