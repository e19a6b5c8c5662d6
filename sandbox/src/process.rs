//! Server child processes: spawned in their own process group, polled until
//! ready, and stopped as a whole group (Dovecot and Postfix fork workers).
//!
//! Invariant: every process a [`ServerProcess`] spawns is in the process group
//! it leads, and [`ServerProcess::stop`] returns only once that group is empty
//! (signalled, then reaped). The calling process becomes a child subreaper so
//! that workers orphaned by their master are reaped here, not left as zombies
//! for an init that may be slow to reap them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use super::SandboxError;

/// How long a group gets to exit on SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How often readiness and exit are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Lines of each log shown in errors.
const LOG_TAIL_LINES: usize = 40;

/// Makes this process the reaper of orphaned descendants (Linux
/// `PR_SET_CHILD_SUBREAPER`), once. Harmless if it fails: orphans then go to
/// init, and [`ServerProcess::stop`] waits until init has reaped them.
pub(crate) fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes integer arguments
        // only and changes no memory.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
    });
}

/// One running server: the leader of its own process group.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    server: &'static str,
    child: Child,
    /// Files whose tails explain a failure (the server's log, its stderr).
    logs: Vec<PathBuf>,
    /// How long the group gets to exit on SIGTERM before SIGKILL.
    grace: Duration,
    stopped: bool,
}

impl ServerProcess {
    /// Spawns `command` as the leader of a new process group, stdin from
    /// /dev/null and stdout/stderr appended to `output`. `logs` are the files
    /// shown (with `output`) when it fails.
    pub(crate) fn spawn(
        server: &'static str,
        mut command: Command,
        output: &Path,
        logs: Vec<PathBuf>,
    ) -> Result<ServerProcess, SandboxError> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(output)
            .map_err(|e| SandboxError::io(format!("open {}", output.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| SandboxError::io(format!("dup {}", output.display()), e))?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command
            .spawn()
            .map_err(|e| SandboxError::io(format!("spawn {server}: {command:?}"), e))?;
        let mut all_logs = vec![output.to_path_buf()];
        all_logs.extend(logs);
        Ok(ServerProcess {
            server,
            child,
            logs: all_logs,
            grace: TERM_GRACE,
            stopped: false,
        })
    }

    /// Polls `probe` until it says the server is ready, failing early when the
    /// process exits and after `timeout` otherwise. `what` names the probe in
    /// the error (e.g. `IMAP greeting on 127.0.0.1:1234`).
    pub(crate) fn wait_ready(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> bool,
    ) -> Result<(), SandboxError> {
        let started = Instant::now();
        loop {
            if probe() {
                return Ok(());
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(SandboxError::Exited {
                        server: self.server,
                        status: status.to_string(),
                        log_tail: self.log_tail(),
                    });
                }
                Ok(None) => {}
                Err(e) => return Err(SandboxError::io(format!("wait for {}", self.server), e)),
            }
            if started.elapsed() >= timeout {
                return Err(SandboxError::NotReady {
                    server: self.server,
                    what: what.to_owned(),
                    waited: started.elapsed(),
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The process group holding every process of the server (the id of the
    /// process the harness spawned).
    pub(crate) fn process_group(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of each log file, each under a header naming it.
    pub(crate) fn log_tail(&self) -> String {
        self.logs
            .iter()
            .map(|path| format!("==> {} <==\n{}", path.display(), tail(path, LOG_TAIL_LINES)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether a start failure was a port clash (another process took the
    /// free port between our probe and the server's bind): worth a retry.
    pub(crate) fn is_port_clash(error: &SandboxError) -> bool {
        match error {
            SandboxError::Exited { log_tail, .. } | SandboxError::NotReady { log_tail, .. } => {
                log_tail
                    .to_ascii_lowercase()
                    .contains("address already in use")
            }
            _ => false,
        }
    }

    /// Terminates the whole process group and reaps it: SIGTERM, then SIGKILL
    /// after [`TERM_GRACE`]. Idempotent.
    pub(crate) fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return; // A pid always fits pid_t; nothing to signal otherwise.
        };
        signal_group(pgid, libc::SIGTERM);
        if !reap_group(pgid, self.grace) {
            signal_group(pgid, libc::SIGKILL);
            reap_group(pgid, TERM_GRACE);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; a negative pid addresses the group
    // this ServerProcess created (pgid = leader pid, alive or a zombie until
    // reaped below, so the id cannot have been reused).
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Reaps members of the group until it is empty or `within` has passed;
/// returns whether it is empty.
fn reap_group(pgid: libc::pid_t, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        // Reap what has exited: the leader (our child) and, as subreaper,
        // orphaned workers. Only this group's members, so no other child's
        // status is taken.
        loop {
            let mut status = 0;
            // SAFETY: status is a valid out-pointer for the call.
            let reaped = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
            if reaped <= 0 {
                break;
            }
        }
        // SAFETY: signal 0 only checks whether the group has members.
        let alive = unsafe { libc::kill(-pgid, 0) } == 0;
        if !alive {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The last `lines` lines of a file (reading at most its last 64 KiB).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return "(no log file)".to_owned();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return "(unreadable log file)".to_owned();
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Finds an installed program: `path` itself when absolute, else in PATH and
/// the sbin directories (root's PATH on CI may lack them).
pub(crate) fn find_program(name: &str, package: &'static str) -> Result<PathBuf, SandboxError> {
    let missing = || SandboxError::MissingProgram {
        program: name.to_owned(),
        package,
    };
    if name.starts_with('/') {
        let path = PathBuf::from(name);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(missing())
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path_var)
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|path| is_executable(path))
        .ok_or_else(missing)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Fails unless this process runs as root.
pub(crate) fn require_root(server: &'static str) -> Result<(), SandboxError> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(SandboxError::NotRoot { server })
    }
}

/// A system user's uid and primary gid.
pub(crate) fn system_user(name: &str) -> Result<(u32, u32), SandboxError> {
    let missing = || SandboxError::MissingAccount {
        kind: "user",
        name: name.to_owned(),
    };
    let cname = std::ffi::CString::new(name).map_err(|_| missing())?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data; all-zero is a valid (empty) value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed;
    // the reentrant variant keeps concurrent lookups (parallel tests) apart.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(missing());
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}

/// A system group's gid.
pub(crate) fn system_group(name: &str) -> Result<u32, SandboxError> {
    let missing = || SandboxError::MissingAccount {
        kind: "group",
        name: name.to_owned(),
    };
    let cname = std::ffi::CString::new(name).map_err(|_| missing())?;
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    // SAFETY: group is plain data; all-zero is a valid (empty) value.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: as in system_user.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(missing());
    }
    Ok(grp.gr_gid)
}

/// Creates `path` (and parents) with `mode`, owned by `uid:gid`.
pub(crate) fn make_dir(
    path: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)
        .map_err(|e| SandboxError::io(format!("create {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| SandboxError::io(format!("chmod {}", path.display()), e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| SandboxError::io(format!("chown {}", path.display()), e))?;
    }
    Ok(())
}

/// Writes a file with `mode`.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents)
        .map_err(|e| SandboxError::io(format!("write {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| SandboxError::io(format!("chmod {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_kills_and_reaps_the_whole_group() {
        become_subreaper();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut command = Command::new("/bin/sh");
        // A leader that forks a worker and ignores SIGTERM, like a stubborn
        // master: the group must still be gone after stop().
        command.args(["-c", "trap '' TERM; sleep 300 & echo started; wait"]);
        let mut process = ServerProcess::spawn("sh", command, &out, vec![]).unwrap();
        process
            .wait_ready("output", Duration::from_secs(10), || {
                std::fs::read_to_string(&out).is_ok_and(|s| s.contains("started"))
            })
            .unwrap();
        let pgid = libc::pid_t::try_from(process.child.id()).unwrap();
        process.grace = Duration::from_millis(100);
        process.stop();
        // SAFETY: signal 0 only probes.
        assert_ne!(
            unsafe { libc::kill(-pgid, 0) },
            0,
            "group still has members"
        );
    }

    #[test]
    fn early_exit_reports_status_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "echo 'bind: Address already in use' >&2; exit 3"]);
        let mut process = ServerProcess::spawn("sh", command, &out, vec![]).unwrap();
        let error = process
            .wait_ready("nothing", Duration::from_secs(10), || false)
            .unwrap_err();
        assert!(matches!(&error, SandboxError::Exited { status, .. } if status.contains('3')));
        assert!(ServerProcess::is_port_clash(&error));
    }

    #[test]
    fn missing_program_names_the_package() {
        let error = find_program("no-such-server-xyz", "no-such-package").unwrap_err();
        assert!(error.to_string().contains("no-such-package"));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "1\n2\n3\n4\n").unwrap();
        assert_eq!(tail(&path, 2), "3\n4");
        assert_eq!(tail(&dir.path().join("none"), 2), "(no log file)");
    }
}
