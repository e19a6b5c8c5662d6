//! Modified UTF-7 (RFC 3501 section 5.1.3), the encoding of IMAP mailbox names.
//!
//! Printable ASCII except `&` stands for itself, `&` is written `&-`, and any
//! other run of characters is written `&` + base64 of its UTF-16BE form (with
//! `,` in place of `/`, no padding) + `-`. Decoding is strict: a name that is
//! not canonical modified UTF-7 is reported, so the caller can keep its raw
//! bytes instead of guessing.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mutf7Error {
    /// A byte outside printable ASCII appeared outside a shifted run.
    #[error("byte 0x{byte:02x} at offset {offset} is not printable ASCII")]
    NotPrintable {
        /// The byte.
        byte: u8,
        /// Its offset in the name.
        offset: usize,
    },
    /// A shifted run (`&...-`) is broken: bad base64, missing `-`, odd bits,
    /// unpaired surrogates, or characters that should not have been encoded.
    #[error("malformed shifted run starting at offset {offset}")]
    BadShift {
        /// Offset of the `&` that starts the run.
        offset: usize,
    },
}

/// Base64 as modified UTF-7 writes it: the `,` alphabet, no padding, and
/// (the crate's default) no stray bits after the last byte.
const MODIFIED_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Encodes a UTF-8 name as modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush_shifted(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut units));
        }
    }
    flush_shifted(&mut pending, &mut out);
    out
}

fn flush_shifted(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
    MODIFIED_BASE64.encode_string(bytes, out);
    out.push('-');
    units.clear();
}

/// Decodes a modified UTF-7 name into UTF-8.
pub fn decode(raw: &[u8]) -> Result<String, Mutf7Error> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        if byte == b'&' {
            let start = i;
            let end = raw[start + 1..]
                .iter()
                .position(|&b| b == b'-')
                .map(|p| start + 1 + p)
                .ok_or(Mutf7Error::BadShift { offset: start })?;
            if end == start + 1 {
                out.push('&');
            } else {
                decode_shifted(&raw[start + 1..end], &mut out)
                    .ok_or(Mutf7Error::BadShift { offset: start })?;
            }
            i = end + 1;
        } else if (0x20..=0x7e).contains(&byte) {
            out.push(char::from(byte));
            i += 1;
        } else {
            return Err(Mutf7Error::NotPrintable { byte, offset: i });
        }
    }
    Ok(out)
}

fn decode_shifted(run: &[u8], out: &mut String) -> Option<()> {
    // Strict: the modified alphabet only, no padding, no stray bits, and a
    // whole number of UTF-16 units.
    let bytes = MODIFIED_BASE64.decode(run).ok()?;
    if !bytes.len().is_multiple_of(2) || bytes.is_empty() {
        return None;
    }
    let units = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    for ch in char::decode_utf16(units) {
        let ch = ch.ok()?;
        // Printable ASCII must be written directly, never shifted.
        if (' '..='~').contains(&ch) {
            return None;
        }
        out.push(ch);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_round_trip() {
        let cases = [
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("Ärger", "&AMQ-rger"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("📧 Post", "&2D3c5w- Post"),
            ("", ""),
        ];
        for (utf8, wire) in cases {
            assert_eq!(encode(utf8), wire, "encode {utf8}");
            assert_eq!(
                decode(wire.as_bytes()).as_deref(),
                Ok(utf8),
                "decode {wire}"
            );
        }
    }

    #[test]
    fn malformed_names_are_reported() {
        for bad in [
            &b"&AMQ"[..],   // no closing dash
            b"&A-",         // too few bits
            b"&AGE-",       // encodes printable 'a'
            b"&2D0-",       // lone high surrogate
            b"&AM!-",       // bad base64 character
            b"&AMR-",       // stray bits after the last byte
            b"&AMQ=-",      // padding
            b"&U/BTFw-",    // standard base64's '/' for modified ','
            b"caf\xc3\xa9", // raw UTF-8
        ] {
            assert!(decode(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn random_names_round_trip_and_random_bytes_never_panic() {
        const POOL: &[char] = &[
            'a',
            'Z',
            ' ',
            '&',
            '-',
            '/',
            '.',
            '~',
            'ä',
            'ß',
            '€',
            '日',
            '本',
            '\u{1F4E7}',
            '\u{7f}',
            '\t',
            '+',
            ',',
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..5000 {
            let len = next(12);
            let name: String = (0..len).map(|_| POOL[next(POOL.len())]).collect();
            let wire = encode(&name);
            assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{wire}");
            assert_eq!(decode(wire.as_bytes()).as_deref(), Ok(name.as_str()));
            let garbage: Vec<u8> = (0..len).map(|_| next(256) as u8).collect();
            let _ = decode(&garbage);
        }
    }

    #[test]
    fn every_encoding_decodes_back() {
        let samples = [
            "a",
            "ä",
            "&",
            "&&ä&",
            "x\u{7f}y",
            "\u{10ffff}",
            "tab\there",
            "日本",
            "ab日c本d",
        ];
        for s in samples {
            assert_eq!(decode(encode(s).as_bytes()).as_deref(), Ok(s), "{s:?}");
        }
    }
}
