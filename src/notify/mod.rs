//! The notification mail sent when a restore ends: built here (pure: the
//! report, the language and the time zone in, a `lettre` message out) and
//! sent over SMTP by [`send`].
//!
//! Header injection is impossible: addresses are parsed as mailboxes (a
//! string with a line break or two addresses is refused), and every value put
//! in the subject has its control characters removed before lettre encodes it.

use std::time::Duration;

use crate::time::TimeZone;
use crate::time::Timestamp;
use lettre::message::{Mailbox, Message, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{Language, Security, SmtpConfig};
use crate::error_code::ErrorCode;

/// How a restore ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything came back.
    Succeeded,
    /// It failed; the job error's code and sentence.
    Failed {
        /// Stable code.
        code: ErrorCode,
        /// Sentence.
        message: String,
    },
    /// An administrator stopped it.
    Cancelled,
}

/// What the mail says.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The mailbox restored.
    pub user: String,
    /// Who asked.
    pub requested_by: Option<String>,
    /// The restore point's id.
    pub point: String,
    /// When the point was taken.
    pub point_taken_at: Option<Timestamp>,
    /// `all` or `inbox`.
    pub scope: String,
    /// The new folder.
    pub folder: Option<String>,
    /// New calendars.
    pub calendars: Vec<String>,
    /// New address books.
    pub addressbooks: Vec<String>,
    /// Messages restored.
    pub messages: u64,
    /// Messages in the point's scope.
    pub messages_total: u64,
    /// Messages and items skipped because the store could not give them
    /// back (each is named in `warnings`).
    pub skipped: u64,
    /// Bytes restored.
    pub bytes: u64,
    /// Calendar and contact items restored.
    pub items: u64,
    /// How long it took.
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// Problems that did not stop it (skipped messages…).
    pub warnings: Vec<String>,
    /// The point was of an earlier mailbox with this address, restored on
    /// request (`allow_mailbox_change`).
    pub mailbox_change_allowed: bool,
}

/// Why a notification could not be built or sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// An address is not a single valid mailbox.
    #[error("{what} {address:?} is not a valid mail address")]
    Address {
        /// Which address.
        what: &'static str,
        /// The text.
        address: String,
    },
    /// No recipient at all.
    #[error("no recipient for the notification")]
    NoRecipient,
    /// lettre could not build the message.
    #[error("cannot build the notification: {0}")]
    Build(String),
    /// The SMTP exchange failed.
    #[error("cannot send the notification through {relay}: {reason}")]
    Send {
        /// host:port.
        relay: String,
        /// What failed.
        reason: String,
    },
}

/// Removes control characters (CR, LF, NUL…) from text bound for a header.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn mailbox(what: &'static str, address: &str) -> Result<Mailbox, NotifyError> {
    if address.chars().any(char::is_control) || address.contains(',') {
        return Err(NotifyError::Address {
            what,
            address: address.to_string(),
        });
    }
    address
        .parse::<Mailbox>()
        .map_err(|_| NotifyError::Address {
            what,
            address: address.to_string(),
        })
}

/// Builds the notification from `from` to the user, `requested_by` and
/// `admins` (each once). A user name that is not a mail address gets no copy.
pub fn build(
    report: &RestoreReport,
    from: &str,
    admins: &[String],
    language: Language,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<Message, NotifyError> {
    let mut recipients: Vec<Mailbox> = Vec::new();
    let mut add = |m: Mailbox| {
        if !recipients.iter().any(|r| r.email == m.email) {
            recipients.push(m);
        }
    };
    if let Ok(m) = mailbox("user", &report.user) {
        add(m);
    }
    if let Some(r) = &report.requested_by {
        add(mailbox("requested_by", r)?);
    }
    for a in admins {
        add(mailbox("admin address", a)?);
    }
    if recipients.is_empty() {
        return Err(NotifyError::NoRecipient);
    }
    let (subject, body) = text(report, language, tz);
    let mut builder = Message::builder()
        .from(mailbox("smtp.from", from)?)
        .subject(header_safe(&subject))
        .date(
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(now.timestamp().max(0) as u64),
        )
        .header(ContentType::TEXT_PLAIN);
    for r in recipients {
        builder = builder.to(r);
    }
    builder
        .body(body)
        .map_err(|e| NotifyError::Build(e.to_string()))
}

fn when(t: Option<Timestamp>, tz: &TimeZone) -> String {
    t.map(|t| t.with_timezone(tz).format("%Y-%m-%d %H:%M %Z").to_string())
        .unwrap_or_else(|| "?".into())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Subject and body in the configured language.
pub fn text(r: &RestoreReport, language: Language, tz: &TimeZone) -> (String, String) {
    let w = words(language);
    let folder = r.folder.clone().unwrap_or_else(|| "-".into());
    let subject = match &r.outcome {
        Outcome::Succeeded => w.subject_succeeded.replace("{folder}", &folder),
        Outcome::Failed { .. } => w.subject_failed.to_string(),
        Outcome::Cancelled => w.subject_cancelled.to_string(),
    }
    .replace("{user}", &r.user);
    (subject, body(r, w, &folder, tz))
}

/// The body of the mail, in the language of `w`.
fn body(r: &RestoreReport, w: &Words, folder: &str, tz: &TimeZone) -> String {
    let taken = when(r.point_taken_at, tz);
    let minutes = r.duration.as_secs().div_ceil(60).max(1);
    let scope = if r.scope == "inbox" {
        w.scope_inbox
    } else {
        w.scope_all
    };
    let mut body = w.opening.replace("{user}", &r.user);
    body.push_str(match &r.outcome {
        Outcome::Succeeded => w.succeeded,
        Outcome::Failed { .. } => w.failed,
        Outcome::Cancelled => w.cancelled,
    });
    body.push_str(&format!("{}{taken} ({})\n", w.point, r.point));
    body.push_str(&format!("{}{scope}\n", w.restored));
    body.push_str(&format!("{}{folder}\n", w.folder));
    for c in &r.calendars {
        body.push_str(&format!("{}{c}\n", w.calendar));
    }
    for a in &r.addressbooks {
        body.push_str(&format!("{}{a}\n", w.addressbook));
    }
    let (done, total, size) = (r.messages, r.messages_total, mb(r.bytes));
    body.push_str(&format!("{}{done} {} {total} ({size})\n", w.messages, w.of));
    if r.skipped > 0 {
        body.push_str(&w.skipped.replace("{n}", &r.skipped.to_string()));
    }
    if r.items > 0 {
        body.push_str(&format!("{}{}\n", w.items, r.items));
    }
    body.push_str(&w.duration.replace("{minutes}", &minutes.to_string()));
    if let Some(who) = &r.requested_by {
        body.push_str(&format!("{}{who}\n", w.requested_by));
    }
    if r.mailbox_change_allowed {
        body.push_str(w.mailbox_changed);
    }
    if let Outcome::Failed { code, message } = &r.outcome {
        body.push_str(&format!("{}{message} ({code})\n", w.why));
        body.push_str(w.kept);
    }
    if !r.warnings.is_empty() {
        body.push_str(&w.warnings.replace("{n}", &r.warnings.len().to_string()));
        for warning in r.warnings.iter().take(20) {
            body.push_str(&format!("- {warning}\n"));
        }
    }
    if r.outcome == Outcome::Succeeded {
        body.push_str(w.where_it_is);
    }
    body
}

/// The sentences of the notification in one language. `{user}`,
/// `{folder}`, `{minutes}` and `{n}` are filled in; labels carry their own
/// punctuation (French puts a space before a colon).
struct Words {
    subject_succeeded: &'static str,
    subject_failed: &'static str,
    subject_cancelled: &'static str,
    opening: &'static str,
    succeeded: &'static str,
    failed: &'static str,
    cancelled: &'static str,
    point: &'static str,
    restored: &'static str,
    scope_inbox: &'static str,
    scope_all: &'static str,
    folder: &'static str,
    calendar: &'static str,
    addressbook: &'static str,
    messages: &'static str,
    skipped: &'static str,
    mailbox_changed: &'static str,
    of: &'static str,
    items: &'static str,
    duration: &'static str,
    requested_by: &'static str,
    why: &'static str,
    kept: &'static str,
    warnings: &'static str,
    where_it_is: &'static str,
}

fn words(language: Language) -> &'static Words {
    match language {
        Language::En => &EN,
        Language::Fr => &FR,
    }
}

const EN: Words = Words {
    subject_succeeded: "Restore of {user} completed: {folder}",
    subject_failed: "Restore of {user} failed",
    subject_cancelled: "Restore of {user} cancelled",
    opening: "Hello,\n\nThe restore of the mailbox {user} ",
    succeeded: "is complete.\n\n",
    failed: "did not complete.\n\n",
    cancelled: "was cancelled by an administrator.\n\n",
    point: "Restore point: ",
    restored: "Restored: ",
    scope_inbox: "the INBOX only",
    scope_all: "all folders, calendars and contacts",
    folder: "Folder: ",
    calendar: "Calendar: ",
    addressbook: "Address book: ",
    messages: "Messages: ",
    skipped: "{n} message(s) or item(s) could not be read back from the restore point and were skipped (listed below).\n",
    mailbox_changed: "The restore point was taken of an earlier mailbox with this address; it was restored into the current one on request (allow_mailbox_change).\n",
    of: "of",
    items: "Calendar and contact items: ",
    duration: "Duration: about {minutes} min\n",
    requested_by: "Requested by: ",
    why: "\nWhy: ",
    kept: "What was restored before the failure is kept in the folder above; nothing else was changed. The restore can be started again once the cause is fixed.\n",
    warnings: "\n{n} item(s) could not be restored:\n",
    where_it_is: "\nThe restored data is in a new folder next to your current mail; nothing you have today was changed. In webmail it is visible at once. In Outlook, Thunderbird or a phone, the folder is already subscribed: refresh the folder list if it does not show.\n",
};

const FR: Words = Words {
    subject_succeeded: "Restauration de {user} terminée : {folder}",
    subject_failed: "Échec de la restauration de {user}",
    subject_cancelled: "Restauration de {user} annulée",
    opening: "Bonjour,\n\nLa restauration de la boîte {user} ",
    succeeded: "est terminée.\n\n",
    failed: "n'a pas pu aboutir.\n\n",
    cancelled: "a été annulée par un administrateur.\n\n",
    point: "Point de restauration : ",
    restored: "Restauré : ",
    scope_inbox: "l'INBOX uniquement",
    scope_all: "tous les dossiers (calendriers et contacts compris)",
    folder: "Dossier : ",
    calendar: "Calendrier : ",
    addressbook: "Carnet d'adresses : ",
    messages: "Messages : ",
    skipped: "{n} message(s) ou élément(s) n'ont pas pu être relus dans le point de restauration et ont été ignorés (liste ci-dessous).\n",
    mailbox_changed: "Le point de restauration a été pris d'une boîte précédente ayant cette adresse ; il a été restauré dans la boîte actuelle à la demande (allow_mailbox_change).\n",
    of: "sur",
    items: "Éléments de calendrier et contacts : ",
    duration: "Durée : environ {minutes} min\n",
    requested_by: "Demandée par : ",
    why: "\nCause : ",
    kept: "Ce qui a été restauré avant l'erreur est conservé dans le dossier ci-dessus ; rien d'autre n'a été modifié. La restauration peut être relancée une fois la cause corrigée.\n",
    warnings: "\n{n} élément(s) n'ont pas pu être restaurés :\n",
    where_it_is: "\nLes données restaurées se trouvent dans un nouveau sous-dossier, à côté de vos messages actuels ; rien de ce que vous avez aujourd'hui n'a été modifié. Le dossier est visible dans le webmail ; il est déjà abonné pour Outlook, Thunderbird et les autres clients de messagerie : actualisez la liste des dossiers s'il n'apparaît pas.\n",
};

/// Sends a message through the configured relay.
pub async fn send(smtp: &SmtpConfig, message: Message) -> Result<(), NotifyError> {
    let relay = format!("{}:{}", smtp.host, smtp.port);
    let err = |reason: String| NotifyError::Send {
        relay: relay.clone(),
        reason,
    };
    let builder = match smtp.security {
        Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| err(e.to_string()))?,
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
            .map_err(|e| err(e.to_string()))?,
    };
    let mut builder = builder.port(smtp.port).timeout(Some(smtp.timeout));
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.clone(),
            password.expose().clone(),
        ));
    }
    builder
        .build()
        .send(message)
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome) -> RestoreReport {
        RestoreReport {
            user: "alice@example.org".into(),
            requested_by: Some("admin@example.org".into()),
            point: "20261126T130500Z".into(),
            point_taken_at: Some("2026-11-26T13:05:00Z".parse().unwrap()),
            scope: "all".into(),
            folder: Some("INBOX_2026_11_26_1405".into()),
            calendars: vec![],
            addressbooks: vec![],
            messages: 120,
            messages_total: 500,
            skipped: 0,
            bytes: 12_000_000,
            items: 0,
            duration: Duration::from_secs(95),
            outcome,
            warnings: vec![],
            mailbox_change_allowed: false,
        }
    }

    fn paris() -> TimeZone {
        crate::time::zone("Europe/Paris").unwrap()
    }

    fn formatted(m: &Message) -> String {
        String::from_utf8(m.formatted()).unwrap()
    }

    #[test]
    fn success_in_english_and_french() {
        let now = crate::time::from_second(1_764_165_900).unwrap();
        let m = build(
            &report(Outcome::Succeeded),
            "restore@example.net",
            &[],
            Language::En,
            &paris(),
            now,
        )
        .unwrap();
        let text = formatted(&m);
        assert!(
            text.contains("To: alice@example.org, admin@example.org"),
            "{text}"
        );
        assert!(text.contains("INBOX_2026_11_26_1405"));
        let (subject, body) = super::text(&report(Outcome::Succeeded), Language::Fr, &paris());
        assert_eq!(
            subject,
            "Restauration de alice@example.org terminée : INBOX_2026_11_26_1405"
        );
        assert!(
            body.contains("Point de restauration : 2026-11-26 14:05 CET"),
            "{body}"
        );
        assert!(body.contains("Messages : 120 sur 500 (12.0 MB)"));
        assert!(body.contains("sous-dossier"));
    }

    #[test]
    fn failure_says_why_and_what_was_kept() {
        let r = report(Outcome::Failed {
            code: ErrorCode::OverQuota,
            message: "the server refused APPEND (NO [OVERQUOTA])".into(),
        });
        let (subject, body) = super::text(&r, Language::En, &paris());
        assert_eq!(subject, "Restore of alice@example.org failed");
        assert!(body.contains("Why: the server refused APPEND (NO [OVERQUOTA]) (over_quota)"));
        assert!(body.contains("kept in the folder above"));
    }

    #[test]
    fn header_injection_is_impossible() {
        let now = Timestamp::UNIX_EPOCH;
        let mut r = report(Outcome::Succeeded);
        r.requested_by = Some("x@example.org\r\nBcc: victim@example.com".into());
        assert!(matches!(
            build(&r, "restore@example.net", &[], Language::En, &paris(), now),
            Err(NotifyError::Address { .. })
        ));
        r.requested_by = Some("a@example.org, b@example.org".into());
        assert!(build(&r, "restore@example.net", &[], Language::En, &paris(), now).is_err());
        let mut r = report(Outcome::Succeeded);
        r.folder = Some("INBOX_x\r\nBcc: victim@example.com".into());
        let text =
            formatted(&build(&r, "restore@example.net", &[], Language::En, &paris(), now).unwrap());
        let headers = text.split("\r\n\r\n").next().unwrap();
        assert!(!headers.lines().any(|l| l.starts_with("Bcc:")), "{headers}");
        // A user name that is not an address gets no copy, the others do.
        let mut r = report(Outcome::Succeeded);
        r.user = "alice".into();
        let text = formatted(
            &build(
                &r,
                "restore@example.net",
                &["ops@example.net".into()],
                Language::En,
                &paris(),
                now,
            )
            .unwrap(),
        );
        assert!(
            text.contains("To: admin@example.org, ops@example.net"),
            "{text}"
        );
    }
}
