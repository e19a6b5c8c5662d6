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

/// Free and total bytes of the file system holding `dir` (free: what an
/// unprivileged writer may still use).
pub fn disk_space(dir: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs(3) writes only into the zeroed struct we pass.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string, `st` a valid buffer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let block = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * block, st.f_blocks as u64 * block))
}

/// Space held back in the state directory (`reserve`, FORMAT.md) so that
/// prune, which frees space, can still run when snapshots have filled the
/// disk: prune releases it first and takes it back after.
pub const RESERVE_BYTES: u64 = 16 << 20;

fn reserve_path(state_dir: &Path) -> PathBuf {
    state_dir.join("reserve")
}

/// Takes the reserve back if it is not held (best effort: on a disk that
/// is still full it stays released and the next prune tries again).
pub fn hold_reserve(state_dir: &Path) -> io::Result<()> {
    let path = reserve_path(state_dir);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
        return Ok(());
    }
    let result = (|| {
        let f = File::create(&path)?;
        // Real blocks, not a sparse file: write them.
        let zeros = vec![0u8; 1 << 20];
        let mut w = io::BufWriter::new(&f);
        for _ in 0..RESERVE_BYTES / zeros.len() as u64 {
            w.write_all(&zeros)?;
        }
        w.flush()?;
        drop(w);
        f.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    result
}

/// Frees the reserve; true when it was held.
pub fn release_reserve(state_dir: &Path) -> io::Result<bool> {
    match std::fs::remove_file(reserve_path(state_dir)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
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
