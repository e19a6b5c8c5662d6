//! Modified UTF-7 mailbox names (`protocol::imap::mutf7`).
//!
//! - `decode` never panics on any bytes; what it accepts re-encodes to a
//!   name that decodes to the same text;
//! - for any UTF-8 text, `encode` writes printable ASCII only and
//!   `decode(encode(s)) == s`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailrestore::protocol::imap::mutf7::{decode, encode};

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(name) => {
            let again = encode(&name);
            assert_eq!(decode(again.as_bytes()).as_deref(), Ok(name.as_str()));
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let encoded = encode(text);
        assert!(
            encoded.bytes().all(|b| (0x20..=0x7e).contains(&b)),
            "{encoded:?} is not printable ASCII"
        );
        assert_eq!(
            decode(encoded.as_bytes()).as_deref(),
            Ok(text),
            "{encoded:?}"
        );
    }
});
