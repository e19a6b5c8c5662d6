//! The composition root of `mailrestore serve`: opens the state directory and
//! the index, builds the job queue with its runners, binds the API socket,
//! tells systemd it is ready, and shuts everything down in order on SIGTERM or
//! SIGINT (stop accepting, let running jobs reach a resumable point, flush).

mod runners;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::server::{self, ApiState, UserCheck};
use crate::config::Config;
use crate::index::Index;
use crate::jobs::{JobKind, Queue, Runner};
use crate::restore::Restorer;
use crate::scheduler::Scheduler;
use runners::{Notifier, RestoreRunner, SnapshotRunner};

use crate::net::imap::{Endpoint, ImapConnection};
use crate::protocol::imap::ImapError;
use crate::repo::Repository;
use crate::snapshot::Snapshotter;
use crate::snapshot::is_unknown_user;
use crate::state::StateDir;
use std::future::Future;
use std::pin::Pin;

/// How long running jobs get to reach a resumable point at shutdown.
const JOB_GRACE: Duration = Duration::from_secs(20);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signals = watch_signals(shutdown.clone())?;
    let daemon = Daemon::start(config).await?;
    let result = daemon.wait(shutdown).await;
    signals.abort();
    result
}

/// A started daemon; [`Daemon::wait`] runs it until shutdown.
pub struct Daemon {
    config: Arc<Config>,
    _state: StateDir,
    queue: Queue,
    index: Index,
    store: Repository,
    listener: tokio::net::UnixListener,
}

impl Daemon {
    /// Opens everything and binds the socket; nothing runs yet.
    pub async fn start(config: Config) -> anyhow::Result<Daemon> {
        let state = StateDir::open(&config.state_dir)?;
        let index = Index::open(&state.index_dir())
            .with_context(|| format!("opening the index in {}", state.index_dir().display()))?;
        let forgotten = index.forget_jobs_before::<crate::jobs::Job>(
            crate::time::now() - crate::time::TimeDelta::hours(24 * 90),
        )?;
        if forgotten > 0 {
            info!(
                jobs = forgotten,
                "forgot jobs that ended more than 90 days ago"
            );
        }
        let store = Repository::open(&state.store_dir(), index.clone())?;
        if let Err(e) = crate::state::hold_reserve(&config.state_dir) {
            warn!(error = %e, "cannot set aside the state directory's reserve (the disk is full); the next prune tries again");
        }
        let endpoint = Endpoint::from_config(&config.imap);
        let dav = config
            .dav
            .as_ref()
            .map(crate::net::dav::DavClient::from_config)
            .transpose()
            .context("setting up the DAV client")?;
        let mut snapshotter =
            Snapshotter::new(store.clone(), endpoint.clone(), config.imap.connections);
        if let Some(client) = &dav {
            snapshotter = snapshotter.with_dav(client.clone());
        }
        let mut runners: HashMap<JobKind, Arc<dyn Runner>> = HashMap::new();
        runners.insert(JobKind::Snapshot, SnapshotRunner::new(snapshotter));
        let restorer = Restorer::new(
            store.clone(),
            endpoint.clone(),
            config.imap.connections,
            config.restore.folder_template.clone(),
            config.timezone,
        );
        let restorer = match &dav {
            Some(client) => restorer.with_dav(client.clone()),
            None => restorer,
        };
        let notifier = Notifier {
            smtp: config.smtp.clone(),
            notify: config.notify.clone(),
            timezone: config.timezone,
            index: index.clone(),
        };
        runners.insert(JobKind::Restore, RestoreRunner::new(restorer, notifier));
        let limits = HashMap::from([
            (JobKind::Snapshot, config.schedule.concurrency),
            (JobKind::Restore, 2),
        ]);
        let queue = Queue::open(index.clone(), runners, limits)?;
        let listener = server::bind(&config.api.socket, config.api.socket_mode)
            .with_context(|| format!("binding the API socket {}", config.api.socket.display()))?;
        if let Some(group) = &config.api.socket_group {
            set_group(&config.api.socket, group)?;
        }
        Ok(Daemon {
            config: Arc::new(config),
            _state: state,
            queue,
            index,
            store,
            listener,
        })
    }

    /// Serves until `shutdown` fires.
    pub async fn wait(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let scheduler = Scheduler::new(self.config.clone(), self.queue.clone(), self.store.clone());
        let rounds = tokio::spawn(scheduler.clone().run(shutdown.clone()));
        let api_state = Arc::new(ApiState {
            scheduler,
            store: self.store.clone(),
            config: self.config.clone(),
            queue: self.queue.clone(),
            index: self.index.clone(),
            users: Arc::new(ImapUserCheck(Endpoint::from_config(&self.config.imap))),
            started: Instant::now(),
        });
        let jobs = tokio::spawn(self.queue.clone().run(shutdown.clone(), JOB_GRACE));
        let api = tokio::spawn(server::serve(self.listener, api_state, shutdown.clone()));
        info!(
            socket = %self.config.api.socket.display(),
            state_dir = %self.config.state_dir.display(),
            version = env!("CARGO_PKG_VERSION"),
            "mailrestore ready"
        );
        if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
            warn!(error = %e, "could not notify systemd");
        }
        shutdown.cancelled().await;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        info!("shutting down");
        let _ = api.await;
        let _ = rounds.await;
        let _ = jobs.await;
        let _ = std::fs::remove_file(&self.config.api.socket);
        info!("stopped");
        Ok(())
    }
}

fn watch_signals(shutdown: CancellationToken) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
        shutdown.cancel();
    }))
}

fn set_group(path: &std::path::Path, group: &str) -> anyhow::Result<()> {
    let name = std::ffi::CString::new(group).context("api.socket_group holds a NUL byte")?;
    // SAFETY: getgrnam reads a NUL-terminated name and returns a pointer into
    // static storage that we read at once, before any other getgr* call.
    let gid = unsafe {
        let gr = libc::getgrnam(name.as_ptr());
        if gr.is_null() {
            anyhow::bail!("api.socket_group: no group named {group:?}");
        }
        (*gr).gr_gid
    };
    std::os::unix::fs::chown(path, None, Some(gid))
        .with_context(|| format!("giving {} to group {group}", path.display()))
}

/// Asks Dovecot whether a user exists: a master login for the user.
struct ImapUserCheck(Endpoint);

impl UserCheck for ImapUserCheck {
    fn inbox_identity(&self, user: &str) -> crate::api::server::InboxIdentityFuture<'_> {
        let user = user.to_string();
        Box::pin(async move {
            let mut conn = match ImapConnection::open(&self.0, &user).await {
                Ok(conn) => conn,
                Err(e) if is_unknown_user(&e) => return Ok(None),
                Err(e) => return Err(format!("cannot ask the IMAP server about {user:?}: {e}")),
            };
            let status = conn
                .status(
                    &crate::protocol::imap::MailboxName::from_utf8("INBOX")
                        .map_err(|e| e.to_string())?,
                )
                .await
                .map_err(|e| format!("STATUS INBOX of {user:?}: {e}"))?;
            let _ = conn.logout().await;
            Ok(Some(crate::manifest::MailboxIdentity::of_inbox(
                status.uid_validity.get(),
            )))
        })
    }

    fn exists(
        &self,
        user: &str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + '_>> {
        let user = user.to_string();
        Box::pin(async move {
            // Dovecot sometimes closes the connection instead of answering a
            // master login for a missing user: ask again before giving up.
            let mut last = String::new();
            for attempt in 0..4u64 {
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                match ImapConnection::open(&self.0, &user).await {
                    Ok(conn) => {
                        let _ = conn.logout().await;
                        return Ok(true);
                    }
                    Err(e) if is_unknown_user(&e) => return Ok(false),
                    Err(e @ ImapError::ConnectionClosed { .. }) => last = e.to_string(),
                    Err(e) => {
                        return Err(format!(
                            "cannot ask the IMAP server whether {user:?} exists: {e}"
                        ));
                    }
                }
            }
            // Dovecot 2.3, asked for a master login of a user missing from
            // its userdb, closes the connection without an answer most of
            // the time (the mail process fails the lookup after the login
            // process said OK). Every try ended that way at LOGIN: that
            // is the answer for a missing user; a server that is down
            // refuses the connection instead.
            if last.contains("LOGIN") || last.contains("AUTHENTICATE") {
                return Ok(false);
            }
            Err(format!(
                "cannot ask the IMAP server whether {user:?} exists: {last}"
            ))
        })
    }
}
