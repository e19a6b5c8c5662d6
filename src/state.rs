//! The state directory: created with owner-only access, and locked so that
//! one daemon (or one offline `prune`/`verify`) holds it at a time.
//!
//! Layout (see FORMAT.md): `lock`, `index/` (sled), and the blob store.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the state directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process holds the lock.
    #[error(
        "the state directory {dir} is in use by another mailrestore process{pid} (one daemon per state directory)"
    )]
    Busy {
        /// The directory.
        dir: PathBuf,
        /// ` (pid N)` when known.
        pid: String,
    },
    /// The directory or its lock file could not be made or opened.
    #[error("cannot open the state directory {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// An open, locked state directory. The lock is held until this is dropped.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates `dir` if needed (mode 0700) and takes its lock.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        let io_err = |source| StateError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err)?;
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("lock"))
            .map_err(io_err)?;
        lock.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_err)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = lock.read_to_string(&mut text);
                let pid = text
                    .trim()
                    .parse::<u32>()
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default();
                return Err(StateError::Busy {
                    dir: dir.to_owned(),
                    pid,
                });
            }
            return Err(io_err(err));
        }
        lock.set_len(0).map_err(io_err)?;
        lock.rewind().map_err(io_err)?;
        write!(lock, "{}", std::process::id()).map_err(io_err)?;
        Ok(StateDir {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where the blob store lives.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Where the sled index lives.
    pub fn index_dir(&self) -> PathBuf {
        self.dir.join("index")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let sd = dir.path().join("state");
        let first = StateDir::open(&sd).unwrap();
        let mode = std::fs::metadata(&sd).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let err = StateDir::open(&sd).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("in use by another mailrestore process"),
            "{text}"
        );
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        StateDir::open(&sd).unwrap();
    }
}
