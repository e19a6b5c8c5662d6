//! Base64 for the test clients: standard (SASL PLAIN, HTTP Basic) and the
//! modified alphabet of IMAP mailbox names (RFC 3501 §5.1.3: `,` for `/`,
//! no padding). Kept here so the test clients share no code with the daemon.

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const IMAP: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Standard base64 with padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    encode_with(bytes, STANDARD, true)
}

/// The modified base64 of IMAP mailbox names (no padding).
pub(crate) fn encode_imap(bytes: &[u8]) -> String {
    encode_with(bytes, IMAP, false)
}

/// Decodes the modified base64 of IMAP mailbox names; `None` on a character
/// outside the alphabet or a dangling partial byte with non-zero bits.
pub(crate) fn decode_imap(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = IMAP.iter().position(|&c| c == byte)?;
        acc = (acc << 6) | u32::try_from(value).ok()?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    let leftover = acc & ((1 << bits) - 1);
    (leftover == 0).then_some(out)
}

fn encode_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(encode(plain.as_bytes()), encoded);
        }
        assert_eq!(encode(b"\0alice\0pw"), "AGFsaWNlAHB3");
    }

    #[test]
    fn imap_round_trip() {
        for bytes in [&b""[..], b"\x00", b"\xff\xfe", b"\x65\xe5\x67\x2c\x8a\x9e"] {
            assert_eq!(decode_imap(&encode_imap(bytes)).unwrap(), bytes);
        }
        assert_eq!(decode_imap("a/b"), None);
    }
}
