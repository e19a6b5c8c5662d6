//! The server's capability list, as last announced.
//!
//! Capabilities are kept as upper-cased atoms, so extensions that imap-codec
//! has no variant for (MULTIAPPEND, SPECIAL-USE, ...) are handled alike.

use std::collections::BTreeSet;

use imap_codec::imap_types::response::Capability;

/// A set of capability atoms (`IMAP4REV1`, `LITERAL+`, `AUTH=PLAIN`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    atoms: BTreeSet<String>,
}

impl Capabilities {
    /// Builds the set from imap-codec's decoded capabilities.
    pub(crate) fn from_decoded<'a>(caps: impl IntoIterator<Item = &'a Capability<'a>>) -> Self {
        Self::from_atoms(caps.into_iter().map(ToString::to_string))
    }

    /// Builds the set from atoms, as the server spelled them.
    pub fn from_atoms<S: AsRef<str>>(atoms: impl IntoIterator<Item = S>) -> Self {
        Self {
            atoms: atoms
                .into_iter()
                .map(|a| a.as_ref().to_ascii_uppercase())
                .collect(),
        }
    }

    /// Whether the server announced `atom` (case-insensitive).
    pub fn has(&self, atom: &str) -> bool {
        self.atoms.contains(&atom.to_ascii_uppercase())
    }

    /// Whether nothing is known (before the first announcement, or after STARTTLS).
    pub fn is_empty(&self) -> bool {
        self.atoms.is_empty()
    }

    /// The atoms, upper-cased and sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.atoms.iter().map(String::as_str)
    }

    /// RFC 7888 `LITERAL+`: non-synchronising literals of any size.
    pub fn literal_plus(&self) -> bool {
        self.has("LITERAL+")
    }

    /// RFC 7888 `LITERAL-`: non-synchronising literals up to 4096 bytes.
    pub fn literal_minus(&self) -> bool {
        self.has("LITERAL-")
    }

    /// Whether a literal of `len` bytes may be sent without waiting for `+`.
    pub fn non_sync_literal_allowed(&self, len: usize) -> bool {
        self.literal_plus() || (self.literal_minus() && len <= 4096)
    }

    /// RFC 3516 `BINARY`: `~{n}` literals and `BINARY[]` fetches.
    pub fn binary(&self) -> bool {
        self.has("BINARY")
    }

    /// RFC 3502 `MULTIAPPEND`.
    pub fn multiappend(&self) -> bool {
        self.has("MULTIAPPEND")
    }

    /// RFC 4315 `UIDPLUS`: `APPENDUID` codes.
    pub fn uidplus(&self) -> bool {
        self.has("UIDPLUS")
    }

    /// RFC 7162 `CONDSTORE` (also implied by `QRESYNC`).
    pub fn condstore(&self) -> bool {
        self.has("CONDSTORE") || self.has("QRESYNC")
    }

    /// RFC 6154 `SPECIAL-USE`.
    pub fn special_use(&self) -> bool {
        self.has("SPECIAL-USE")
    }

    /// RFC 5258 `LIST-EXTENDED`.
    pub fn list_extended(&self) -> bool {
        self.has("LIST-EXTENDED")
    }

    /// RFC 2342 `NAMESPACE`.
    pub fn namespace(&self) -> bool {
        self.has("NAMESPACE")
    }

    /// RFC 4959 `SASL-IR`: the first SASL response goes with the command.
    pub fn sasl_ir(&self) -> bool {
        self.has("SASL-IR")
    }

    /// `AUTH=PLAIN`.
    pub fn auth_plain(&self) -> bool {
        self.has("AUTH=PLAIN")
    }

    /// `STARTTLS`.
    pub fn starttls(&self) -> bool {
        self.has("STARTTLS")
    }

    /// `LOGINDISABLED`: LOGIN is refused on this connection.
    pub fn login_disabled(&self) -> bool {
        self.has("LOGINDISABLED")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case() {
        let caps = Capabilities::from_atoms(["IMAP4rev1", "literal+", "AUTH=PLAIN", "MultiAppend"]);
        assert!(caps.literal_plus());
        assert!(caps.auth_plain());
        assert!(caps.multiappend());
        assert!(!caps.binary());
        assert!(caps.non_sync_literal_allowed(1 << 20));
    }

    #[test]
    fn literal_minus_only_covers_small_literals() {
        let caps = Capabilities::from_atoms(["LITERAL-"]);
        assert!(caps.non_sync_literal_allowed(4096));
        assert!(!caps.non_sync_literal_allowed(4097));
    }

    #[test]
    fn qresync_implies_condstore() {
        assert!(Capabilities::from_atoms(["QRESYNC"]).condstore());
    }
}
