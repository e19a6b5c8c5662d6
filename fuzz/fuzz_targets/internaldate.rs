//! INTERNALDATE (`protocol::imap::InternalDate`): the IMAP text form as
//! servers send it and manifests store it, and dates built from numbers.
//!
//! - `parse_imap` never panics; a date it accepts formats to the 26-byte
//!   IMAP form, which parses back to the same date;
//! - a date `new` accepts (from the first 12 bytes: i64 seconds, i32
//!   offset, little-endian) formats and parses back the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailrestore::protocol::imap::InternalDate;

fn round_trip(date: InternalDate) {
    let text = date.to_imap_string();
    // date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
    assert_eq!(text.len(), 26, "{text:?} is not the IMAP form");
    assert_eq!(InternalDate::parse_imap(&text), Some(date), "{text:?}");
    assert_eq!(
        InternalDate::new(date.unix_seconds(), date.offset_seconds()),
        Some(date)
    );
    assert_eq!(date.to_string(), text);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(date) = InternalDate::parse_imap(text)
    {
        round_trip(date);
    }
    if let Some((secs, rest)) = data.split_first_chunk::<8>()
        && let Some((offset, _)) = rest.split_first_chunk::<4>()
        && let Some(date) =
            InternalDate::new(i64::from_le_bytes(*secs), i32::from_le_bytes(*offset))
    {
        round_trip(date);
    }
});
