//! A power-loss filesystem for tests: a FUSE passthrough that remembers
//! which of its changes a real disk would have made durable, and at a
//! [`Mounted::cut`] writes out the tree that would be left after the power
//! went. Test support only: nothing here reaches the shipped binary.
//!
//! [`PowerLossFs::mount`] mounts it on a directory, served by a background
//! thread of the calling process; any process (the daemon under test runs as
//! a child and keeps its state dir inside the mountpoint) sees an ordinary
//! POSIX filesystem. The live view is kept in the backing directory: one file
//! per inode (`live/<ino>`), the durable copy of each synced inode
//! (`durable/<ino>`) and a journal of write payloads; names and attributes
//! live in memory.
//!
//! # The durability model
//!
//! Strict POSIX, like ext4 with no luck at all:
//!
//! - A file's **data** (writes, truncates, fallocate growth, chmod/chown)
//!   becomes durable only when that file is fsynced (`fsync` or `fdatasync`
//!   on any descriptor of it). `close`, `sync_file_range` and `msync` without
//!   an fsync make nothing durable.
//! - A directory **entry** (create, mkdir, link, unlink, rmdir, rename)
//!   becomes durable only when its directory is fsynced. A directory's entry
//!   changes reach the disk in order, so the fsync also makes every earlier
//!   entry change of that directory durable; a rename touches two
//!   directories and is atomic, so it becomes durable with an fsync of either,
//!   which then also makes the other directory's earlier entry changes
//!   durable. A file whose data was fsynced but whose name never was is lost.
//! - Inodes are tracked, not paths: a file renamed after it was synced keeps
//!   its durable bytes under whatever names are durable, and an unlinked file
//!   whose unlink was not durable comes back with its durable bytes.
//!
//! Every change that is not yet durable stays in an ordered log. At the cut,
//! [`Cut::All`] drops the whole log (the disk wrote nothing it was not told
//! to sync) and [`Cut::Prefix`] keeps, in order, a seeded-random prefix of it
//! on top of the durable state (the disk wrote some of its queue in order
//! before the power went). The same seed always keeps the same prefix of the
//! same log.
//!
//! # Limits
//!
//! - Only regular files and directories: no symlinks, fifos or device nodes
//!   (`EPERM`), no xattrs (`EOPNOTSUPP`), no `RENAME_EXCHANGE`.
//! - Each logged operation is atomic: no torn writes, no reordering inside
//!   the log (a real disk may do both), and a prefix cut never splits a write.
//! - `sync_file_range(2)` never reaches a FUSE filesystem and makes nothing
//!   durable here (nor, by POSIX, on a disk): sled 0.34 ends its log writes
//!   with it, so its `flush` alone is not durable; the index's extra fsyncs
//!   are (`src/index/durable.rs`).
//! - Times are live only: the cut tree's files carry the time of the cut.
//!   `fdatasync` is treated as `fsync` (metadata becomes durable too).
//! - Locks (`flock`, `fcntl`) are the kernel's local locks: the filesystem
//!   does not implement them, which is correct for processes of one machine.
//! - The journal keeps every byte ever written, so a test writes at most
//!   what fits in the backing directory's filesystem.
//! - One request at a time (one FUSE thread, one lock): fine for tests, not
//!   for benchmarks.
//!
//! Unmounting never waits for a stuck client: the mount is detached lazily
//! (`umount2(MNT_DETACH)` as root, `fusermount3 -u -z` otherwise), every
//! later request fails with `EIO`, and a session still held open by a
//! straggler is left to end with its last descriptor (or aborted through
//! `/sys/fs/fuse/connections` when that is mounted).

mod fs;
mod live;
mod model;
mod store;
#[cfg(test)]
mod tests;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use live::State;
use model::Meta;
use store::Store;

/// `f_type` of a FUSE mount in statfs(2).
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// How long a new mount may take to answer statfs.
const READY_WAIT: Duration = Duration::from_secs(10);

/// How long an unmount waits for the session to end by itself, and then
/// after aborting the connection.
const SESSION_END_WAIT: Duration = Duration::from_secs(2);
const ABORT_WAIT: Duration = Duration::from_secs(1);

/// How often a wait above looks again.
const POLL: Duration = Duration::from_millis(2);

/// The filesystem served to the kernel; [`PowerLossFs::mount`] starts it.
pub struct PowerLossFs {
    state: Arc<Mutex<State>>,
}

/// Which not-yet-durable operations survive a [`Mounted::cut`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// None: the tree holds exactly what was made durable.
    All,
    /// A prefix of the pending log, of a length drawn from `seed`.
    Prefix {
        /// Picks the prefix length, uniformly in `0..=pending`.
        seed: u64,
    },
}

/// What a cut did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutReport {
    /// Operations that were not yet durable at the cut.
    pub pending: usize,
    /// Of those, how many the cut kept (always 0 for [`Cut::All`]).
    pub kept: usize,
    /// Of those, how many it dropped (`pending - kept`).
    pub dropped: usize,
    /// Regular files written to the output (a hard-linked file once).
    pub files: usize,
    /// Directories written to the output, the root not counted.
    pub dirs: usize,
}

/// Why the power-loss filesystem could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PowerLossError {
    /// The backing directory could not be laid out (it must not hold an
    /// earlier store).
    #[error("set up the backing directory {}: {source}", .path.display())]
    Backing {
        /// The backing directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The kernel refused the mount.
    #[error(
        "mount the power-loss filesystem on {}: {source} (needs /dev/fuse, and root or \
         fusermount3 from the Debian package `fuse3`)",
        .mountpoint.display()
    )]
    Mount {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The mount did not show up as a FUSE filesystem in time.
    #[error("the power-loss filesystem on {} was not ready within {waited:?}", .mountpoint.display())]
    NotReady {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// How long it was polled.
        waited: Duration,
    },
    /// The lazy unmount failed.
    #[error("unmount {}: {detail}", .mountpoint.display())]
    Unmount {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// What umount2 or fusermount3 said.
        detail: String,
    },
    /// The cut tree could not be written.
    #[error("write the cut tree into {}: {source}", .out.display())]
    Cut {
        /// The output directory.
        out: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A filesystem callback panicked while holding the state.
    #[error("the power-loss filesystem's state is poisoned (a callback panicked)")]
    Poisoned,
}

impl PowerLossFs {
    /// Mounts an empty power-loss filesystem on `mountpoint` (an existing
    /// empty directory), keeping its live view in `backing` (created if
    /// missing; must not hold an earlier store). Returns once the mount
    /// answers statfs as a FUSE filesystem.
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<Mounted, PowerLossError> {
        let store = Store::create(backing).map_err(|source| PowerLossError::Backing {
            path: backing.to_path_buf(),
            source,
        })?;
        let mount_error = |source| PowerLossError::Mount {
            mountpoint: mountpoint.to_path_buf(),
            source,
        };
        let mountpoint = mountpoint.canonicalize().map_err(mount_error)?;
        // SAFETY: geteuid and getegid only read the process's credentials.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let root = Meta {
            perm: 0o755,
            uid,
            gid,
        };
        let state = Arc::new(Mutex::new(State::new(store, root)));
        let fs = PowerLossFs {
            state: Arc::clone(&state),
        };
        let session =
            fuser::spawn_mount(fs, &mountpoint, &mount_config(uid == 0)).map_err(mount_error)?;
        let mut mounted = Mounted {
            mountpoint,
            state,
            session: Some(session),
            connection: None,
        };
        // On an error `mounted` drops here, which unmounts.
        mounted.connection = Some(wait_ready(&mounted.mountpoint)?);
        Ok(mounted)
    }
}

fn mount_config(root: bool) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("powerloss".into()),
        MountOption::Subtype("powerloss".into()),
        MountOption::DefaultPermissions,
    ];
    // Children that drop privileges must reach the state dir too; only root
    // may allow other users without /etc/fuse.conf's user_allow_other.
    config.acl = if root {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config
}

/// Polls statfs until `mountpoint` is a FUSE mount; returns its device
/// number (which names its connection in /sys/fs/fuse/connections).
fn wait_ready(mountpoint: &Path) -> Result<u64, PowerLossError> {
    let deadline = Instant::now() + READY_WAIT;
    loop {
        if statfs_type(mountpoint) == Some(FUSE_SUPER_MAGIC)
            && let Ok(meta) = std::fs::metadata(mountpoint)
        {
            return Ok(meta.dev());
        }
        if Instant::now() > deadline {
            return Err(PowerLossError::NotReady {
                mountpoint: mountpoint.to_path_buf(),
                waited: READY_WAIT,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The filesystem type statfs(2) reports for `path`, if it answers.
fn statfs_type(path: &Path) -> Option<i64> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and outlives the call; `buf` is a
    // valid, writable statfs.
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut buf) };
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    (rc == 0).then_some(buf.f_type as i64)
}

/// A mounted power-loss filesystem. Dropping it unmounts (lazily) and
/// discards everything; [`Mounted::cut`] first writes out what survives.
pub struct Mounted {
    mountpoint: PathBuf,
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
    connection: Option<u64>,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted")
            .field("mountpoint", &self.mountpoint)
            .field("mounted", &self.session.is_some())
            .finish_non_exhaustive()
    }
}

impl Mounted {
    /// Where the filesystem is mounted (canonical).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// How many operations are not yet durable.
    pub fn pending_ops(&self) -> usize {
        self.state.lock().map_or(0, |state| state.pending())
    }

    /// The power cut: freezes the filesystem (every later request fails with
    /// EIO), unmounts it, and writes into `out` (created if missing; must not
    /// hold the names the tree holds) the tree the disk would hold. Kill the
    /// processes using the mount first; one that still holds a descriptor
    /// does not delay the cut.
    pub fn cut(mut self, mode: Cut, out: &Path) -> Result<CutReport, PowerLossError> {
        let unmounted = self.detach();
        let mut state = self.state.lock().map_err(|_| PowerLossError::Poisoned)?;
        let seed = match mode {
            Cut::All => None,
            Cut::Prefix { seed } => Some(seed),
        };
        let report = state.cut(seed, out).map_err(|source| PowerLossError::Cut {
            out: out.to_path_buf(),
            source,
        })?;
        unmounted.map(|()| report)
    }

    /// A clean end: unmounts and discards the filesystem.
    pub fn unmount(mut self) -> Result<(), PowerLossError> {
        self.detach()
    }

    /// Freezes the state, detaches the mount and lets the session end; never
    /// waits longer than [`SESSION_END_WAIT`] + [`ABORT_WAIT`].
    fn detach(&mut self) -> Result<(), PowerLossError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .frozen = true;
        let unmounted = lazy_unmount(&self.mountpoint);
        if !wait_finished(&session, SESSION_END_WAIT) {
            abort_connection(self.connection);
            wait_finished(&session, ABORT_WAIT);
        }
        if session.guard.is_finished() {
            // The session's own end (an error reading /dev/fuse after the
            // unmount) says nothing about the filesystem.
            let _ = session.join();
        }
        // Otherwise dropping the session detaches its thread, which answers
        // EIO until the last descriptor of the mount is closed.
        unmounted
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; the mount is detached anyway.
        let _ = self.detach();
    }
}

/// Detaches the mount at once, even while descriptors are open in it.
fn lazy_unmount(mountpoint: &Path) -> Result<(), PowerLossError> {
    let error = |detail: String| PowerLossError::Unmount {
        mountpoint: mountpoint.to_path_buf(),
        detail,
    };
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } == 0 {
        let path =
            CString::new(mountpoint.as_os_str().as_bytes()).map_err(|e| error(e.to_string()))?;
        // SAFETY: `path` is NUL-terminated and outlives the call.
        let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        let err = io::Error::last_os_error();
        return match (rc, err.raw_os_error()) {
            (0, _) => Ok(()),
            // Not a mountpoint any more: someone unmounted it already.
            (_, Some(libc::EINVAL)) => Ok(()),
            _ => Err(error(format!("umount2(MNT_DETACH): {err}"))),
        };
    }
    let output = Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mountpoint)
        .output()
        .map_err(|e| error(format!("run fusermount3 (Debian package `fuse3`): {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(error(format!("fusermount3 -u -z: {}", stderr.trim())))
    }
}

/// Whether the session thread ended within `within`.
fn wait_finished(session: &BackgroundSession, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while !session.guard.is_finished() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Best effort: aborts the FUSE connection through fusectl, when it is
/// mounted, so that a straggler's descriptors fail with ENOTCONN and the
/// session ends.
fn abort_connection(device: Option<u64>) {
    let Some(device) = device else { return };
    // A FUSE mount's device has major 0, so the connection id is its minor.
    let id = libc::minor(device);
    let abort = format!("/sys/fs/fuse/connections/{id}/abort");
    let _ = std::fs::write(abort, "1");
}
