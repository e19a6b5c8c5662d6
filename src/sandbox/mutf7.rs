//! Modified UTF-7 (RFC 3501 §5.1.3), the encoding of IMAP mailbox names
//! when UTF8=ACCEPT is not enabled.

use super::base64;

/// Encodes a mailbox name for the wire: printable ASCII stays (`&` becomes
/// `&-`), every other run becomes `&` + modified base64 of UTF-16BE + `-`.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut run, &mut out);
    out
}

fn flush(run: &mut Vec<u16>, out: &mut String) {
    if run.is_empty() {
        return;
    }
    let bytes: Vec<u8> = run.iter().flat_map(|unit| unit.to_be_bytes()).collect();
    out.push('&');
    out.push_str(&base64::encode_imap(&bytes));
    out.push('-');
    run.clear();
}

/// Decodes a wire mailbox name; `None` when it is not valid modified UTF-7.
pub fn decode(wire: &str) -> Option<String> {
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('-')?;
        if end == 0 {
            out.push('&');
        } else {
            let bytes = base64::decode_imap(&after[..end])?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_examples() {
        let cases = [
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("A&B", "A&-B"),
            ("INBOX", "INBOX"),
            ("😀", "&2D3eAA-"),
        ];
        for (name, wire) in cases {
            assert_eq!(encode(name), wire, "encode {name}");
            assert_eq!(decode(wire).as_deref(), Some(name), "decode {wire}");
        }
    }

    #[test]
    fn rejects_broken_input() {
        assert_eq!(decode("&U,BTFw"), None);
        assert_eq!(decode("&!!-"), None);
    }
}
