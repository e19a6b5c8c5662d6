//! Smoke tests of the sandbox: each real server starts, answers as the
//! harness promises, and is gone after drop. A missing server fails here
//! (with the Debian package to install), it is never skipped.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use mailrestore_sandbox::raw_imap::RawImap;
use mailrestore_sandbox::{Sandbox, SandboxOptions};

/// How long a test waits for a delivery to show up over IMAP.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn start(opts: SandboxOptions) -> Sandbox {
    match Sandbox::start(opts) {
        Ok(sandbox) => sandbox,
        Err(error) => panic!("sandbox did not start: {error}"),
    }
}

/// A message with every byte value in its body, CRLF line ends and a line
/// of 2,000 characters.
fn binary_message() -> Vec<u8> {
    let mut message = b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\n\
Subject: round trip\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\r\n"
        .to_vec();
    message.extend(
        (0..=255u8)
            .cycle()
            .take(4096)
            .filter(|&b| b != b'\r' && b != b'\n' && b != 0),
    );
    message.extend_from_slice(b"\r\n");
    message.extend(std::iter::repeat_n(b'x', 2000));
    message.extend_from_slice(b"\r\nend\r\n");
    message
}

#[test]
fn dovecot_logs_in_users_and_master_and_round_trips_bytes() {
    let sandbox = start(SandboxOptions::default());
    let dovecot = sandbox.dovecot().unwrap();
    let alice = "alice@example.org";

    let mut imap = RawImap::connect(&dovecot.host, dovecot.imap_port).unwrap();
    assert!(
        imap.greeting().starts_with("OK"),
        "greeting {:?}",
        imap.greeting()
    );
    imap.login(alice, &dovecot.user_password(alice)).unwrap();
    let listed = imap.list().unwrap();
    let sent = listed
        .iter()
        .find(|m| m.name == "Sent")
        .expect("a Sent folder");
    assert!(sent.attributes.iter().any(|a| a == "\\Sent"), "{sent:?}");
    assert_eq!(sent.delimiter, Some('/'));
    assert!(imap.lsub().unwrap().iter().any(|m| m.name == "Archive"));
    imap.create("Projekte/Entwürfe").unwrap();
    assert!(
        imap.list()
            .unwrap()
            .iter()
            .any(|m| m.name == "Projekte/Entwürfe")
    );

    let message = binary_message();
    // Maildir keeps INTERNALDATE as the file's mtime: the instant survives,
    // the zone does not (it reads back in the server's zone, UTC here).
    let date = "01-Feb-2024 10:11:12 +0000";
    let appended = imap
        .append(
            "Projekte/Entwürfe",
            &["\\Seen", "$Label1"],
            Some(date),
            &message,
        )
        .unwrap();
    let (_, uid) = appended.append_uid().expect("APPENDUID");
    imap.logout().unwrap();

    // Read back through the master user: `alice*restore`.
    let mut master = RawImap::connect(&dovecot.host, dovecot.imap_port).unwrap();
    master
        .login_master(alice, &dovecot.master_user, &dovecot.master_password)
        .unwrap();
    let fetched = master.fetch_all("Projekte/Entwürfe").unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].uid, uid);
    assert_eq!(fetched[0].internaldate, date);
    assert_eq!(fetched[0].flags, ["\\Seen", "$Label1"]);
    assert!(
        fetched[0].body == message,
        "body differs after the round trip"
    );
    master.logout().unwrap();

    // And SASL PLAIN with an authorization identity.
    let mut sasl = RawImap::connect(&dovecot.host, dovecot.imap_port).unwrap();
    sasl.authenticate_plain(alice, &dovecot.master_user, &dovecot.master_password)
        .unwrap();
    assert_eq!(sasl.message_count("Projekte/Entwürfe").unwrap(), 1);
    sasl.logout().unwrap();

    // A wrong password is refused.
    let mut wrong = RawImap::connect(&dovecot.host, dovecot.imap_port).unwrap();
    assert!(wrong.login(alice, "not-the-password").is_err());

    // Maildir with LAYOUT=fs: one directory per level, names in modified UTF-7.
    assert!(
        dovecot
            .mail_dir(alice)
            .join("Projekte/Entw&APw-rfe/cur")
            .is_dir()
    );
    let listing = dovecot.doveadm(&["mailbox", "list", "-u", alice]).unwrap();
    assert!(
        listing.lines().any(|l| l == "INBOX"),
        "doveadm said {listing:?}"
    );
}

#[test]
fn dovecot_round_trips_a_large_literal_in_a_courier_layout_with_quota() {
    let sandbox = start(SandboxOptions {
        quota: Some("30M".to_owned()),
        ..SandboxOptions::courier()
    });
    let dovecot = sandbox.dovecot().unwrap();
    let mut imap = dovecot.login("bob@example.org").unwrap();
    let listed = imap.list().unwrap();
    assert!(
        listed
            .iter()
            .any(|m| m.name == "INBOX.Sent" && m.delimiter == Some('.')),
        "{listed:?}"
    );

    let mut big = b"Subject: big\r\n\r\n".to_vec();
    big.extend((0..20 * 1024 * 1024).map(|i: u32| b"0123456789abcdef\r\n"[(i % 18) as usize]));
    imap.append("INBOX", &[], None, &big).unwrap();
    let fetched = imap.fetch_all("INBOX").unwrap();
    assert_eq!(fetched.len(), 1);
    assert!(fetched[0].body == big, "20 MB body differs");

    // Over the 30M quota now: the next big APPEND is refused with OVERQUOTA.
    let refused = imap.append("INBOX", &[], None, &big).unwrap_err();
    assert!(refused.to_string().contains("OVERQUOTA"), "{refused}");
    imap.logout().unwrap();
}

#[test]
fn postfix_delivers_into_dovecot_over_lmtp() {
    let sandbox = start(SandboxOptions {
        postfix: true,
        ..SandboxOptions::default()
    });
    let postfix = sandbox.postfix().unwrap();
    // The mailbox exists before mail arrives, as a provisioned one does:
    // when an IMAP login and an LMTP delivery both create a fresh INBOX at
    // the same instant, Dovecot 2.3's LMTP can panic on the list index lock
    // (EDEADLK) and the IMAP STATUS answers NO [ALREADYEXISTS].
    let dovecot = sandbox.dovecot().unwrap();
    let mut provision = dovecot.login("alice@example.org").unwrap();
    provision.select("INBOX").unwrap();
    provision.logout().unwrap();
    let message = "From: notify@example.org\r\nTo: alice@example.org\r\n\
Subject: restore finished\r\nMessage-ID: <smoke@sandbox>\r\n\r\nAll good.\r\n";
    send_smtp(
        &postfix.host,
        postfix.smtp_port,
        "notify@example.org",
        "alice@example.org",
        message,
    );

    let mut imap = dovecot.login("alice@example.org").unwrap();
    let delivered = match imap.wait_for_messages("INBOX", 1, DELIVERY_TIMEOUT) {
        Ok(messages) => messages,
        Err(error) => panic!("{error}\n{}", sandbox.log_tail()),
    };
    let body = String::from_utf8_lossy(&delivered[0].body);
    assert!(body.contains("Subject: restore finished"), "{body}");
    assert!(body.contains("All good."), "{body}");
    imap.logout().unwrap();
}

#[test]
fn radicale_serves_the_restore_account_and_stores_events() {
    let sandbox = start(SandboxOptions {
        dovecot: false,
        radicale: true,
        ..SandboxOptions::default()
    });
    let radicale = sandbox.radicale().unwrap();
    let admin = radicale.admin_client();
    let propfind = r#"<?xml version="1.0" encoding="utf-8"?>
<propfind xmlns="DAV:"><prop><resourcetype/><current-user-principal/></prop></propfind>"#;
    let home = radicale.principal("alice@example.org");
    let response = admin.propfind(&home, "1", propfind).unwrap();
    assert_eq!(response.status, 207, "{}", response.text());

    let calendar = format!("{home}work/");
    let mkcalendar = r#"<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
<D:set><D:prop><D:displayname>Work</D:displayname></D:prop></D:set></C:mkcalendar>"#;
    let xml = [("Content-Type", "application/xml; charset=utf-8")];
    let response = admin
        .request("MKCALENDAR", &calendar, &xml, mkcalendar.as_bytes())
        .unwrap();
    assert_eq!(response.status, 201, "{}", response.text());

    let event = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailrestore//smoke//EN\r\n\
BEGIN:VEVENT\r\nUID:smoke-1@example.org\r\nDTSTAMP:20240201T100000Z\r\n\
DTSTART:20240202T090000Z\r\nDTEND:20240202T100000Z\r\nSUMMARY:Standup\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n";
    let item = format!("{calendar}smoke-1.ics");
    let ics = [("Content-Type", "text/calendar; charset=utf-8")];
    let response = admin.request("PUT", &item, &ics, event.as_bytes()).unwrap();
    assert_eq!(response.status, 201, "{}", response.text());

    // Alice sees what the restore account wrote into her calendar.
    let response = radicale
        .user_client("alice@example.org")
        .request("GET", &item, &[], b"")
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response.text().contains("UID:smoke-1@example.org"),
        "{}",
        response.text()
    );

    // Bob may not read Alice's calendar; a wrong password is refused.
    let bob = radicale.user_client("bob@example.org");
    assert_eq!(bob.request("GET", &item, &[], b"").unwrap().status, 403);
    let intruder = mailrestore_sandbox::raw_http::RawHttp::new("127.0.0.1", radicale.port)
        .with_basic_auth("alice@example.org", "wrong");
    assert_eq!(intruder.propfind(&home, "0", propfind).unwrap().status, 401);
}

#[test]
fn xandikos_answers_propfind() {
    let sandbox = start(SandboxOptions {
        dovecot: false,
        xandikos: true,
        ..SandboxOptions::default()
    });
    let xandikos = sandbox.xandikos().unwrap();
    let propfind = r#"<?xml version="1.0" encoding="utf-8"?>
<propfind xmlns="DAV:"><prop><resourcetype/></prop></propfind>"#;
    let calendars = format!("{}calendars/", xandikos.principal);
    let response = xandikos
        .client()
        .propfind(&calendars, "1", propfind)
        .unwrap();
    assert_eq!(response.status, 207, "{}", response.text());
}

#[test]
fn a_dropped_sandbox_leaves_no_process_behind() {
    let sandbox = start(SandboxOptions::all());
    let root = sandbox.root().to_path_buf();
    let ports = [
        sandbox.dovecot().unwrap().imap_port,
        sandbox.postfix().unwrap().smtp_port,
        sandbox.radicale().unwrap().port,
        sandbox.xandikos().unwrap().port,
    ];
    let groups = [
        sandbox.dovecot().unwrap().process_group(),
        sandbox.postfix().unwrap().process_group(),
        sandbox.radicale().unwrap().process_group(),
        sandbox.xandikos().unwrap().process_group(),
    ];
    // Dovecot and Postfix run worker processes in their groups.
    assert!(
        processes_in_groups(&groups).len() > 4,
        "{:?}",
        processes_in_groups(&groups)
    );
    drop(sandbox);
    assert!(!root.exists(), "temp dir {} left behind", root.display());
    for port in ports {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "something still listens on {port}"
        );
    }
    let leftovers = processes_in_groups(&groups);
    assert!(
        leftovers.is_empty(),
        "processes left behind (zombies included): {leftovers:?}"
    );
}

/// `/proc/PID/stat` lines of the processes (zombies included) whose process
/// group is one of `groups`.
fn processes_in_groups(groups: &[u32]) -> Vec<String> {
    let entries = std::fs::read_dir("/proc").expect("/proc is readable");
    entries
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // `pid (comm) state ppid pgrp …`; comm may hold spaces and parens.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace()
                .collect();
            fields
                .get(2)
                .and_then(|pgrp| pgrp.parse().ok())
                .is_some_and(|pgrp: u32| groups.contains(&pgrp))
        })
        .collect()
}

/// A minimal SMTP dialogue; panics on any unexpected reply.
fn send_smtp(host: &str, port: u16, from: &str, to: &str, message: &str) {
    let stream = TcpStream::connect((host, port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut expect = |code: &str| {
        // Multi-line replies: `250-…` lines, then `250 …`.
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "expected {code}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    };
    expect("220");
    let mut send = |line: &str, code: &str| {
        writer.write_all(line.as_bytes()).unwrap();
        expect(code);
    };
    send("EHLO sandbox.test\r\n", "250");
    send(&format!("MAIL FROM:<{from}>\r\n"), "250");
    send(&format!("RCPT TO:<{to}>\r\n"), "250");
    send("DATA\r\n", "354");
    send(&format!("{message}.\r\n"), "250");
    send("QUIT\r\n", "221");
}
