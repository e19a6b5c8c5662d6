//! Shared by the integration tests: a varied mailbox to seed, and readers of
//! a restore point that go through the store, compared with raw IMAP FETCH.
#![allow(dead_code)]

pub mod daemon;
pub mod dav;

use std::collections::BTreeMap;
use std::path::Path;

use mailrestore::manifest::{FolderManifest, Generation, RootManifest};
use mailrestore::repo::Repository;
use mailrestore_sandbox::Dovecot;

pub const ALICE: &str = "alice@example.org";

/// Folders of the varied mailbox besides INBOX and the special-use ones.
pub const FOLDERS: &[&str] = &[
    "Archive/2024/Q1",
    "Projets/Été 2025",
    "日本語/メール",
    "Quotes \"and\" backslash \\ here",
    "Percent % and ampersand & co",
    "Empty",
    "Unsubscribed",
];

/// A 20 MB message with 8-bit bytes in its body.
pub fn big_message() -> Vec<u8> {
    let mut m = b"From: big@example.net\r\nTo: alice@example.org\r\nSubject: 20 MB\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    let mut x: u32 = 12345;
    while m.len() < 20 * 1024 * 1024 {
        let mut line = Vec::with_capacity(78);
        for _ in 0..76 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            // Any byte but CR, LF and NUL: a real 8-bit body.
            let b = ((x >> 16) % 253) as u8 + 1;
            line.push(if b == b'\r' || b == b'\n' { b'x' } else { b });
        }
        line.extend_from_slice(b"\r\n");
        m.extend_from_slice(&line);
    }
    m
}

/// Seeds alice's mailbox: the demo messages plus nested, non-ASCII and
/// hostile folder names, an empty and an unsubscribed folder, every flag,
/// keywords, a 1-byte and a 20 MB message.
pub fn seed_varied(d: &Dovecot) -> usize {
    let mut imap = d.login_master(ALICE).expect("master login");
    let mut n = mailrestore_sandbox::demo::seed(&mut imap, d.separator).expect("demo seed");
    let sep = d.separator.to_string();
    for f in FOLDERS {
        let name = f.replace('/', &sep);
        let mut path = String::new();
        for part in name.split(d.separator) {
            if !path.is_empty() {
                path.push(d.separator);
            }
            path.push_str(part);
            let _ = imap.create(&path);
            if !f.starts_with("Unsubscribed") {
                imap.subscribe(&path).expect("subscribe");
            }
        }
    }
    let q1 = format!("Archive{sep}2024{sep}Q1");
    let all_flags = [
        "\\Seen",
        "\\Answered",
        "\\Flagged",
        "\\Deleted",
        "\\Draft",
        "$Forwarded",
        "$MDNSent",
        "Junk",
        "custom_kw",
    ];
    imap.append(&q1, &all_flags, Some("01-Jan-2024 00:00:00 +0000"), b"x")
        .expect("1-byte message");
    imap.append(
        &q1,
        &[],
        Some("29-Feb-2024 12:34:56 -0930"),
        b"Subject: no flags\r\n\r\nbody\r\n",
    )
    .expect("append");
    imap.append(&format!("日本語{sep}メール"), &["\\Seen"], Some("05-May-2025 05:05:05 +0900"), "Subject: =?UTF-8?B?5pel5pys6Kqe?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n日本語のメール\r\n".as_bytes()).expect("append");
    imap.append(
        "Quotes \"and\" backslash \\ here",
        &["\\Flagged"],
        None,
        b"Subject: quoted\r\n\r\nq\r\n",
    )
    .expect("append");
    imap.append(
        "INBOX",
        &[],
        Some("26-Nov-2025 08:00:00 +0100"),
        &big_message(),
    )
    .expect("20 MB");
    n += 5;
    imap.logout().expect("logout");
    n
}

/// One message as a comparison sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Msg {
    pub flags: Vec<String>,
    pub internal_date: i64,
    pub body_hash: String,
    pub size: usize,
}

/// INTERNALDATE text to Unix seconds.
pub fn parse_date(s: &str) -> i64 {
    let t = s.trim();
    let z = jiff::fmt::strtime::parse("%d-%b-%Y %H:%M:%S %z", t)
        .and_then(|p| p.to_timestamp())
        .unwrap_or_else(|e| panic!("bad INTERNALDATE {s:?}: {e}"));
    z.as_second()
}

fn flags_of(flags: &[String]) -> Vec<String> {
    let mut v: Vec<String> = flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .cloned()
        .collect();
    v.sort();
    v
}

/// The live mailbox through raw IMAP FETCH: folder → UID → message.
pub fn live(d: &Dovecot, user: &str) -> BTreeMap<String, BTreeMap<u32, Msg>> {
    let mut imap = d.login_master(user).expect("master login");
    let mut out = BTreeMap::new();
    for f in imap.list().expect("LIST") {
        if f.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        }) {
            continue;
        }
        let msgs = imap.fetch_all(&f.name).expect("FETCH");
        let m = msgs
            .into_iter()
            .map(|m| {
                (
                    m.uid,
                    Msg {
                        flags: flags_of(&m.flags),
                        internal_date: parse_date(&m.internaldate),
                        body_hash: blake3::hash(&m.body).to_hex().to_string(),
                        size: m.body.len(),
                    },
                )
            })
            .collect();
        out.insert(f.name, m);
    }
    imap.logout().expect("logout");
    out
}

/// A point's folders: name → (manifest, UID → message).
pub type PointFolders = BTreeMap<String, (FolderManifest, BTreeMap<u32, Msg>)>;

/// A restore point read back from the store: folder → UID → message.
pub fn point(store: &Repository, g: &Generation) -> (RootManifest, PointFolders) {
    let root: RootManifest = mailrestore::snapshot::read_manifest(store, &g.root).expect("root");
    let mut out = BTreeMap::new();
    for f in &root.folders {
        let folder: FolderManifest =
            mailrestore::snapshot::read_manifest(store, &f.manifest).expect("folder");
        let mut msgs = BTreeMap::new();
        {
            for e in
                mailrestore::snapshot::folder_messages(store, &folder).expect("folder messages")
            {
                let body = store.get(&e.blob).expect("blob");
                let mut flags = e.flags.clone();
                flags.extend(e.keywords.clone());
                msgs.insert(
                    e.uid,
                    Msg {
                        flags: flags_of(&flags),
                        internal_date: parse_date(&e.internal_date),
                        body_hash: blake3::hash(&body).to_hex().to_string(),
                        size: body.len(),
                    },
                );
            }
        }
        out.insert(folder.name.clone(), (folder, msgs));
    }
    (root, out)
}

/// Bytes under a directory.
pub fn du(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                total += du(&p);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}

/// `n` bytes that zstd cannot shrink.
pub fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out =
        b"Subject: big attachment\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = (x % 94 + 33) as u8; // printable, no CR/LF
        out.push(b);
        if out.len().is_multiple_of(78) {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Messages as a multiset, UIDs aside (what a restore must reproduce).
pub fn content(m: &BTreeMap<u32, Msg>) -> Vec<Msg> {
    let mut v: Vec<Msg> = m.values().cloned().collect();
    v.sort();
    v
}
