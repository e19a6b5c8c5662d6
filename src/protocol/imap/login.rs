//! Master-user login: who the master acts for, and how that is said on the wire.
//!
//! Security: Dovecot splits `user*master` at the master separator, and SASL
//! PLAIN splits at NUL. A user name carrying the separator, white space,
//! control characters (NUL included) or nothing at all could make the master
//! log in as somebody else, so [`UserName::parse`] refuses it before any byte
//! is sent.

use super::error::ImapError;

/// How the master user logs in for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginMethod {
    /// `LOGIN "user<separator>master" password` (Dovecot's
    /// `auth_master_user_separator`).
    MasterSeparator {
        /// The separator, `*` by default.
        separator: String,
    },
    /// `AUTHENTICATE PLAIN` with authzid = user, authcid = master (SASL-IR
    /// when the server offers it).
    SaslPlain,
}

impl Default for LoginMethod {
    fn default() -> Self {
        Self::MasterSeparator {
            separator: "*".to_owned(),
        }
    }
}

impl LoginMethod {
    /// The separator that must never appear in a user name. For SASL PLAIN
    /// the server's master separator is unknown, so Dovecot's default `*` is
    /// refused too.
    fn forbidden_separator(&self) -> &str {
        match self {
            Self::MasterSeparator { separator } => separator,
            Self::SaslPlain => "*",
        }
    }
}

/// A user name that is safe to put into a master login.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName(String);

/// The longest user name accepted (bytes): longer than any mail address
/// (RFC 5321 allows 254) and than Dovecot's own limit.
pub const MAX_USER_NAME: usize = 255;

impl UserName {
    /// Checks a user name for use with `method`.
    pub fn parse(raw: &[u8], method: &LoginMethod) -> Result<Self, ImapError> {
        let refuse = |reason| ImapError::InvalidUserName {
            user: raw.escape_ascii().to_string(),
            reason,
        };
        let name = std::str::from_utf8(raw).map_err(|_| refuse("not valid UTF-8"))?;
        if name.is_empty() {
            return Err(refuse("empty"));
        }
        if name.len() > MAX_USER_NAME {
            return Err(refuse("longer than 255 bytes"));
        }
        if name.chars().any(char::is_control) {
            return Err(refuse("contains a control character"));
        }
        if name.chars().any(char::is_whitespace) {
            return Err(refuse("contains white space"));
        }
        let separator = method.forbidden_separator();
        if separator.is_empty() {
            return Err(refuse("the configured master separator is empty"));
        }
        if name.contains(separator) {
            return Err(refuse("contains the master user separator"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        let method = LoginMethod::default();
        for ok in [
            "alice@example.org",
            "bob",
            "jürgen@example.org",
            "a.b-c_d+e",
        ] {
            assert_eq!(
                UserName::parse(ok.as_bytes(), &method).unwrap().as_str(),
                ok
            );
        }
    }

    #[test]
    fn dangerous_names_are_refused() {
        let star = LoginMethod::default();
        let hash = LoginMethod::MasterSeparator {
            separator: "#".into(),
        };
        let sasl = LoginMethod::SaslPlain;
        let cases: [(&[u8], &LoginMethod); 14] = [
            (b"", &star),
            (b"bob*restore", &star),
            (b"*", &star),
            (b"bob#restore", &hash),
            (b"bob*x", &sasl),
            (b"bob\0admin", &sasl),
            (b"bob admin", &star),
            (b"bob\tadmin", &star),
            (b"bob\r\nA1 LOGIN x y", &star),
            (b"bob\x7f", &star),
            (b"\xff\xfe", &star),
            ("bob\u{a0}x".as_bytes(), &star),
            ("bob\u{2028}".as_bytes(), &star),
            (
                b"bob",
                &LoginMethod::MasterSeparator {
                    separator: String::new(),
                },
            ),
        ];
        for (raw, method) in cases {
            let err = UserName::parse(raw, method).expect_err("must be refused");
            assert!(
                matches!(err, ImapError::InvalidUserName { .. }),
                "{raw:?}: {err}"
            );
            assert!(!err.is_transient());
        }
    }
}
