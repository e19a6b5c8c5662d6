//! The demo mailbox of the quickstart: a few folders (nested, non-ASCII,
//! special-use), messages from `fixtures/demo/` (8-bit, attachment, malformed)
//! with flags, keywords and INTERNALDATEs, seeded over IMAP with the
//! independent [`RawImap`] client.

use super::raw_imap::{ImapError, RawImap};

/// One demo message: its folder, flags, INTERNALDATE and bytes.
#[derive(Debug, Clone, Copy)]
pub struct DemoMessage {
    /// Folder, with `/` as separator.
    pub folder: &'static str,
    /// Flags and keywords.
    pub flags: &'static [&'static str],
    /// INTERNALDATE.
    pub internaldate: &'static str,
    /// The message.
    pub bytes: &'static [u8],
}

/// Folders the demo creates (besides INBOX and the special-use ones Dovecot makes).
pub const DEMO_FOLDERS: &[&str] = &["Archive/2024", "Projets/Été 2025", "Projets/Réunions"];

/// The demo messages.
pub const DEMO_MESSAGES: &[DemoMessage] = &[
    DemoMessage {
        folder: "INBOX",
        flags: &["\\Seen"],
        internaldate: "03-Nov-2025 09:12:50 +0100",
        bytes: include_bytes!("../../fixtures/demo/01-report.eml"),
    },
    DemoMessage {
        folder: "INBOX",
        flags: &["\\Seen", "\\Answered", "$Label1"],
        internaldate: "18-Nov-2025 17:40:09 +0100",
        bytes: include_bytes!("../../fixtures/demo/02-reunion-8bit.eml"),
    },
    DemoMessage {
        folder: "INBOX",
        flags: &[],
        internaldate: "01-Nov-2025 06:00:04 +0000",
        bytes: include_bytes!("../../fixtures/demo/03-invoice-attachment.eml"),
    },
    DemoMessage {
        folder: "INBOX",
        flags: &["\\Flagged", "urgent"],
        internaldate: "26-Nov-2025 10:00:01 +0100",
        bytes: include_bytes!("../../fixtures/demo/08-flagged-lunch.eml"),
    },
    DemoMessage {
        folder: "INBOX",
        flags: &["\\Seen"],
        internaldate: "25-Nov-2025 23:59:59 +0000",
        bytes: include_bytes!("../../fixtures/demo/07-malformed.eml"),
    },
    DemoMessage {
        folder: "Sent",
        flags: &["\\Seen"],
        internaldate: "20-Jul-2025 21:03:11 +0200",
        bytes: include_bytes!("../../fixtures/demo/04-sent-reply.eml"),
    },
    DemoMessage {
        folder: "Archive/2024",
        flags: &["\\Seen", "$Label2"],
        internaldate: "14-Mar-2024 11:22:40 +0000",
        bytes: include_bytes!("../../fixtures/demo/05-archive-2024.eml"),
    },
    DemoMessage {
        folder: "Projets/Été 2025",
        flags: &["\\Seen", "\\Flagged"],
        internaldate: "18-Nov-2025 17:41:00 +0100",
        bytes: include_bytes!("../../fixtures/demo/02-reunion-8bit.eml"),
    },
    DemoMessage {
        folder: "Trash",
        flags: &["\\Seen", "\\Deleted"],
        internaldate: "28-Nov-2025 07:00:02 +0000",
        bytes: include_bytes!("../../fixtures/demo/06-trash-newsletter.eml"),
    },
];

/// Creates the demo folders (subscribed) and appends the demo messages into
/// the mailbox `imap` is logged in to. `separator` is the server's hierarchy
/// separator; folder names are sent as modified UTF-7 by [`RawImap`].
pub fn seed(imap: &mut RawImap, separator: char) -> Result<usize, ImapError> {
    let name = |f: &str| f.replace('/', &separator.to_string());
    let mut existing: Vec<String> = imap.list()?.into_iter().map(|m| m.name).collect();
    for folder in DEMO_FOLDERS {
        let mut path = String::new();
        for part in folder.split('/') {
            if !path.is_empty() {
                path.push(separator);
            }
            path.push_str(part);
            if !existing.contains(&path) {
                imap.create(&path)?;
                imap.subscribe(&path)?;
                existing.push(path.clone());
            }
        }
    }
    for m in DEMO_MESSAGES {
        imap.append(&name(m.folder), m.flags, Some(m.internaldate), m.bytes)?;
    }
    Ok(DEMO_MESSAGES.len())
}

/// The demo calendar's objects: a weekly meeting with a moved occurrence,
/// an alarm and attendees; a lunch; a task.
pub const DEMO_EVENTS: &[(&str, &[u8])] = &[
    (
        "reunion-hebdo.ics",
        include_bytes!("../../fixtures/demo/reunion-hebdo.ics"),
    ),
    (
        "dejeuner.ics",
        include_bytes!("../../fixtures/demo/dejeuner.ics"),
    ),
    (
        "tache-devis.ics",
        include_bytes!("../../fixtures/demo/tache-devis.ics"),
    ),
];

/// The demo address book: a vCard 3.0 and a vCard 4.0 with a photo.
pub const DEMO_CARDS: &[(&str, &[u8])] = &[
    ("bob.vcf", include_bytes!("../../fixtures/demo/bob.vcf")),
    ("zoe.vcf", include_bytes!("../../fixtures/demo/zoe.vcf")),
];

/// Creates the demo calendar `travail/` and address book `contacts/` under
/// `home` (e.g. `/alice%40example.org/`) and fills them; returns the number
/// of items the server accepted.
pub fn seed_dav(
    http: &super::raw_http::RawHttp,
    home: &str,
) -> Result<usize, super::raw_http::HttpError> {
    use super::dav_seed::{SeedItem, make_addressbook, make_calendar, put_items};
    let items = |list: &[(&str, &[u8])]| -> Vec<SeedItem> {
        list.iter()
            .map(|(name, bytes)| SeedItem {
                name: (*name).to_string(),
                bytes: bytes.to_vec(),
            })
            .collect()
    };
    let cal = format!("{home}travail/");
    let book = format!("{home}contacts/");
    make_calendar(http, &cal, "Travail", "#e66100ff")?;
    make_addressbook(http, &book, "Contacts")?;
    let n = put_items(
        http,
        &cal,
        "text/calendar; charset=utf-8",
        &items(DEMO_EVENTS),
    )?
    .len()
        + put_items(http, &book, "text/vcard; charset=utf-8", &items(DEMO_CARDS))?.len();
    Ok(n)
}
