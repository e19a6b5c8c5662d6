//! A mailrestore configuration pointing at a [`Sandbox`]'s servers, with its
//! secret files, for tests, benches and the quickstart.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{RESTORE_ACCOUNT, Sandbox};

/// The files of a sandbox daemon: its configuration, secrets, state and socket.
#[derive(Debug, Clone)]
pub struct DaemonFiles {
    /// The directory holding everything below.
    pub dir: PathBuf,
    /// `config.toml`.
    pub config: PathBuf,
    /// The state directory (created by the daemon).
    pub state_dir: PathBuf,
    /// The API socket.
    pub socket: PathBuf,
}

/// Writes `config.toml` and the secret files (mode 0600) for a daemon using
/// `sandbox`'s Dovecot (required), and its Radicale and Postfix when started.
/// `extra` is appended to the file as is (more sections or keys).
pub fn write_config(sandbox: &Sandbox, dir: &Path, extra: &str) -> io::Result<DaemonFiles> {
    let dovecot = sandbox
        .dovecot()
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))?;
    std::fs::create_dir_all(dir)?;
    let secret = |name: &str, value: &str| -> io::Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, format!("{value}\n"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(path)
    };
    let imap_secret = secret("imap.secret", &dovecot.master_password)?;
    let state_dir = dir.join("state");
    let socket = dir.join("api.sock");
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    let mut text = format!(
        r#"state_dir = {state:?}
timezone = "Europe/Paris"

[api]
socket = {socket:?}
allowed_uids = [{uid}]

[imap]
host = {host:?}
port = {port}
security = "none"
master_user = {master:?}
master_password_file = {imap_secret:?}
"#,
        state = state_dir.display().to_string(),
        socket = socket.display().to_string(),
        host = dovecot.host,
        port = dovecot.imap_port,
        master = dovecot.master_user,
        imap_secret = imap_secret.display().to_string(),
    );
    if let Some(radicale) = &sandbox.radicale {
        let dav_secret = secret("dav.secret", &radicale.admin_password)?;
        text.push_str(&format!(
            "\n[dav]\nurl = {url:?}\nprincipal = \"/{{user}}/\"\nuser = {user:?}\npassword_file = {file:?}\n",
            url = radicale.url,
            user = RESTORE_ACCOUNT,
            file = dav_secret.display().to_string(),
        ));
    }
    if let Some(postfix) = &sandbox.postfix {
        text.push_str(&format!(
            "\n[smtp]\nhost = {host:?}\nport = {port}\nsecurity = \"none\"\nfrom = \"restore@{domain}\"\n",
            host = postfix.host,
            port = postfix.smtp_port,
            domain = postfix.domain,
        ));
    }
    text.push_str(extra);
    let config = dir.join("config.toml");
    std::fs::write(&config, text)?;
    Ok(DaemonFiles {
        dir: dir.to_owned(),
        config,
        state_dir,
        socket,
    })
}
