//! Secrets: values that must never reach a log line, a `Debug` dump or an API answer.
//!
//! A [`Secret`] only hands its value out through [`Secret::expose`], so every use
//! is visible in the code. Secret files are read by [`read_secret_file`], which
//! refuses files that anyone but the owner may read.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A value that prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value itself; call only where it is sent to a peer.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a secret file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Group or others may read or write the file.
    #[error(
        "secret file {path} has mode {mode:04o}: group and others must have no access (chmod 600 {path})"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is empty (after the one trailing newline is removed).
    #[error("secret file {path} is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The secret is not UTF-8 or holds a line break inside.
    #[error("secret file {path} must hold the secret alone on one line of UTF-8 text")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// Reads a secret file: the secret alone, one trailing newline ignored.
///
/// Files readable or writable by group or others are refused: a secret that
/// other local users can read is no longer a secret.
pub fn read_secret_file(path: &Path) -> Result<Secret<String>, SecretFileError> {
    let read_err = |source| SecretFileError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let mut text = String::from_utf8(bytes).map_err(|_| SecretFileError::Malformed {
        path: path.to_owned(),
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.contains(['\n', '\r']) {
        return Err(SecretFileError::Malformed {
            path: path.to_owned(),
        });
    }
    if text.is_empty() {
        return Err(SecretFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, body: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn reads_and_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a", b"pw with spaces\n", 0o600);
        assert_eq!(read_secret_file(&p).unwrap().expose(), "pw with spaces");
        let p = write(dir.path(), "b", b"pw", 0o400);
        assert_eq!(read_secret_file(&p).unwrap().expose(), "pw");
    }

    #[test]
    fn refuses_open_modes_empty_and_multiline() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644] {
            let p = write(dir.path(), "open", b"pw\n", mode);
            let err = read_secret_file(&p).unwrap_err();
            assert!(matches!(err, SecretFileError::TooOpen { .. }), "{mode:o}");
            assert!(err.to_string().contains("chmod 600"));
        }
        let p = write(dir.path(), "empty", b"\n", 0o600);
        assert!(matches!(
            read_secret_file(&p),
            Err(SecretFileError::Empty { .. })
        ));
        let p = write(dir.path(), "two", b"a\nb\n", 0o600);
        assert!(matches!(
            read_secret_file(&p),
            Err(SecretFileError::Malformed { .. })
        ));
        assert!(matches!(
            read_secret_file(&dir.path().join("missing")),
            Err(SecretFileError::Read { .. })
        ));
    }
}
