//! The async IMAP driver: TCP, TLS and STARTTLS around the sans-I/O core.
//!
//! Owns: resolving and connecting (plain text only to loopback), the TLS
//! handshake, read/write timeouts, and moving bytes between the socket and
//! [`ClientCore`]. All protocol decisions (encoding, literals, capability
//! tracking, typed results) are made in `protocol::imap`; this file only
//! pumps bytes and awaits.
//!
//! A connection that failed in the middle of a command (I/O error, timeout,
//! malformed data, or a future dropped while writing) is poisoned and refuses
//! further use: open a new one. A refusal (`NO`/`BAD`) leaves it usable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tracing::{Instrument, debug, info_span};

use super::tls;
use crate::protocol::imap::ops::{
    self, Append, Capability, Create, Fetch, List, ListMode, Login, Logout, Lsub, MultiAppend,
    Noop, Operation, Select, StartTls, Status, Subscribe,
};
use crate::protocol::imap::{
    AppendMessage, AppendUid, AppendUids, Capabilities, ClientCore, ClientOptions, Event,
    FetchRequest, FetchedMessage, FramingLimits, ImapError, LoginMethod, MailboxEntry, MailboxName,
    MailboxStatus, Namespaces, SelectedMailbox, UserName,
};
use crate::secret::Secret;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Largest slice written under one I/O timeout (so the timeout means "idle").
const WRITE_SLICE: usize = 256 * 1024;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain text; only allowed when the host is (or resolves only to) loopback.
    None,
    /// Plain-text greeting, then STARTTLS before anything else is said.
    StartTls,
    /// TLS from the first byte (usually port 993).
    Tls,
}

/// Where and how to reach the IMAP server, and the master credentials.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host name or IP address (also the TLS server name).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Transport security.
    pub security: Security,
    /// Extra CA certificates (PEM) trusted besides the system store.
    pub ca_file: Option<PathBuf>,
    /// The master user's name.
    pub master_user: String,
    /// The master user's password.
    pub master_password: Secret<String>,
    /// How the master logs in for a user.
    pub login: LoginMethod,
    /// Limit for TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for any single read or write to stall.
    pub io_timeout: Duration,
    /// Limit for one whole response to arrive, plus 1 s per MiB it carries.
    pub response_timeout: Duration,
    /// Memory limits for server responses.
    pub limits: FramingLimits,
}

impl Endpoint {
    /// An endpoint with the default login method (`user*master`), 30 s
    /// connect and 120 s I/O timeouts, and default limits.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        security: Security,
        master_user: impl Into<String>,
        master_password: Secret<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            security,
            ca_file: None,
            master_user: master_user.into(),
            master_password,
            login: LoginMethod::default(),
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(120),
            response_timeout: Duration::from_secs(300),
            limits: FramingLimits::default(),
        }
    }
}

impl Endpoint {
    /// The endpoint of the configured live server (`[imap]`): its timeout is
    /// both the connect and the I/O timeout.
    pub fn from_config(config: &crate::config::ImapConfig) -> Self {
        Self {
            host: config.host.clone(),
            port: config.port,
            security: match config.security {
                crate::config::Security::None => Security::None,
                crate::config::Security::StartTls => Security::StartTls,
                crate::config::Security::Tls => Security::Tls,
            },
            ca_file: config.ca_file.clone(),
            master_user: config.master_user.clone(),
            master_password: config.master_password.clone(),
            login: login_method(&config.login),
            connect_timeout: config.timeout,
            io_timeout: config.timeout,
            response_timeout: config.response_timeout,
            limits: FramingLimits::default(),
        }
    }
}

/// The login method for the configured `login` setting.
pub fn login_method(login: &crate::config::MasterLogin) -> LoginMethod {
    match login {
        crate::config::MasterLogin::Separator(separator) => LoginMethod::MasterSeparator {
            separator: separator.clone(),
        },
        crate::config::MasterLogin::SaslPlain => LoginMethod::SaslPlain,
    }
}

/// The socket, plain or TLS.
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the plain stream is handed to the TLS handshake.
    Upgrading,
}

impl Transport {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::Tls(s) => s.read(buf).await,
            Self::Upgrading => Ok(0),
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(buf).await,
            Self::Tls(s) => s.write_all(buf).await,
            Self::Upgrading => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.flush().await,
            Self::Tls(s) => s.flush().await,
            Self::Upgrading => Ok(()),
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown().await,
            Self::Tls(s) => s.shutdown().await,
            Self::Upgrading => Ok(()),
        }
    }
}

/// Resolves the endpoint; for [`Security::None`] every address must be loopback.
async fn resolve(endpoint: &Endpoint) -> Result<Vec<SocketAddr>, ImapError> {
    let host = endpoint
        .host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&endpoint.host);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, endpoint.port))
        .await
        .map_err(|source| ImapError::Resolve {
            host: endpoint.host.clone(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ImapError::NoAddress {
            host: endpoint.host.clone(),
        });
    }
    if endpoint.security == Security::None && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(ImapError::InsecureRemote {
            host: endpoint.host.clone(),
        });
    }
    Ok(addrs)
}

async fn connect_tcp(host: &str, addrs: &[SocketAddr]) -> Result<TcpStream, ImapError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Commands are written whole; do not hold back small ones.
                stream.set_nodelay(true).ok();
                return Ok(stream);
            }
            Err(source) => {
                last = Some(ImapError::Connect {
                    addr: *addr,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| ImapError::NoAddress {
        host: host.to_owned(),
    }))
}

/// One IMAP connection, logged in or not.
pub struct ImapConnection {
    transport: Transport,
    core: ClientCore,
    read_buf: Box<[u8]>,
    io_timeout: Duration,
    connect_timeout: Duration,
    /// The deadline of one response (see [`Endpoint::response_timeout`]).
    response_timeout: Duration,
    /// When the bytes of the response now arriving started, and how many
    /// have come: reset at each complete response.
    response_started: Option<(tokio::time::Instant, u64)>,
    host: String,
    tls_config: Option<Arc<ClientConfig>>,
    master_user: String,
    master_password: Secret<String>,
    login_method: LoginMethod,
    /// Set while bytes of a command are being written; still set on entry
    /// means a future was dropped mid-write.
    writing: bool,
    /// Set when the connection's state is unknown after an error.
    poisoned: bool,
}

impl std::fmt::Debug for ImapConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapConnection")
            .field("host", &self.host)
            .field("tls", &matches!(self.transport, Transport::Tls(_)))
            .field("capabilities", self.core.capabilities())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl ImapConnection {
    /// Checks `user`, connects, and logs in as the master user for `user`.
    /// An unsafe user name is refused before any connection is made.
    pub async fn open(endpoint: &Endpoint, user: &str) -> Result<Self, ImapError> {
        let user = UserName::parse(user.as_bytes(), &endpoint.login)?;
        let mut connection = Self::connect(endpoint).await?;
        connection.login(&user).await?;
        Ok(connection)
    }

    /// Connects, reads the greeting, runs STARTTLS if configured, and learns
    /// the capabilities. Not logged in yet.
    pub async fn connect(endpoint: &Endpoint) -> Result<Self, ImapError> {
        let span = info_span!("imap", host = %endpoint.host, port = endpoint.port);
        Self::connect_inner(endpoint).instrument(span).await
    }

    async fn connect_inner(endpoint: &Endpoint) -> Result<Self, ImapError> {
        let tls_config = match endpoint.security {
            Security::None => None,
            Security::StartTls | Security::Tls => {
                tls::server_name(&endpoint.host)?;
                Some(tls::client_config(endpoint.ca_file.as_deref())?)
            }
        };
        let addrs = resolve(endpoint).await?;
        let connect = async {
            let tcp = connect_tcp(&endpoint.host, &addrs).await?;
            match (&tls_config, endpoint.security) {
                (Some(config), Security::Tls) => Ok(Transport::Tls(Box::new(
                    tls::handshake(config.clone(), &endpoint.host, tcp).await?,
                ))),
                _ => Ok(Transport::Plain(tcp)),
            }
        };
        let transport = timeout(endpoint.connect_timeout, connect)
            .await
            .map_err(|_| ImapError::ConnectTimeout {
                host: endpoint.host.clone(),
                after: endpoint.connect_timeout,
            })??;
        let mut connection = Self {
            transport,
            core: ClientCore::new(ClientOptions {
                limits: endpoint.limits,
            }),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            io_timeout: endpoint.io_timeout,
            connect_timeout: endpoint.connect_timeout,
            response_timeout: endpoint.response_timeout,
            response_started: None,
            host: endpoint.host.clone(),
            tls_config,
            master_user: endpoint.master_user.clone(),
            master_password: endpoint.master_password.clone(),
            login_method: endpoint.login.clone(),
            writing: false,
            poisoned: false,
        };
        connection.read_greeting().await?;
        if endpoint.security == Security::StartTls {
            connection.starttls().await?;
        }
        if connection.core.capabilities_stale() {
            connection.run(Capability::default()).await?;
        }
        debug!(capabilities = ?connection.core.capabilities(), "imap connected");
        Ok(connection)
    }

    async fn read_greeting(&mut self) -> Result<(), ImapError> {
        loop {
            match self.next_event()? {
                Some(Event::Greeting { preauth: false, .. }) => return Ok(()),
                Some(Event::Greeting {
                    preauth: true,
                    text,
                }) => {
                    self.poisoned = true;
                    return Err(ImapError::UnexpectedPreauth { text });
                }
                Some(_) => {
                    self.poisoned = true;
                    return Err(ImapError::Protocol {
                        expected: "a server greeting".into(),
                        got: "another response".into(),
                    });
                }
                None => self.fill().await?,
            }
        }
    }

    async fn starttls(&mut self) -> Result<(), ImapError> {
        if self.core.capabilities_stale() {
            self.run(Capability::default()).await?;
        }
        self.run(StartTls).await?;
        self.core
            .begin_tls()
            .inspect_err(|_| self.poisoned = true)?;
        let Transport::Plain(tcp) = std::mem::replace(&mut self.transport, Transport::Upgrading)
        else {
            self.poisoned = true;
            return Err(ImapError::Protocol {
                expected: "a plain-text connection before STARTTLS".into(),
                got: "TLS already".into(),
            });
        };
        let config = self.tls_config.clone().ok_or(ImapError::NoTrustAnchors)?;
        let handshake = timeout(
            self.connect_timeout,
            tls::handshake(config, &self.host, tcp),
        )
        .await;
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                self.poisoned = true;
                return Err(err);
            }
            Err(_) => {
                self.poisoned = true;
                return Err(ImapError::ConnectTimeout {
                    host: self.host.clone(),
                    after: self.connect_timeout,
                });
            }
        };
        self.transport = Transport::Tls(Box::new(stream));
        Ok(())
    }

    /// Logs in as the master user acting for `user`, then refreshes the
    /// capabilities if the server did not send them with its OK.
    pub async fn login(&mut self, user: &UserName) -> Result<(), ImapError> {
        let op = Login {
            user: user.clone(),
            master_user: self.master_user.clone(),
            master_password: self.master_password.clone(),
            method: self.login_method.clone(),
        };
        let span = info_span!("imap_login", host = %self.host, user = %user);
        async {
            self.run(op).await?;
            if self.core.capabilities_stale() {
                self.run(Capability::default()).await?;
            }
            debug!("imap logged in");
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// The capabilities as last announced.
    pub fn capabilities(&self) -> &Capabilities {
        self.core.capabilities()
    }

    /// Asks the server for its capabilities again.
    pub async fn refresh_capabilities(&mut self) -> Result<Capabilities, ImapError> {
        self.run(Capability::default()).await
    }

    /// `NOOP`.
    pub async fn noop(&mut self) -> Result<(), ImapError> {
        self.run(Noop).await
    }

    /// `NAMESPACE`; the first personal namespace is the user's own.
    pub async fn namespace(&mut self) -> Result<Namespaces, ImapError> {
        self.run(ops::Namespace::default()).await
    }

    /// Every mailbox with its attributes, `\Subscribed` and special uses:
    /// one `LIST ... RETURN (SUBSCRIBED CHILDREN SPECIAL-USE)` under LIST-EXTENDED,
    /// else `LIST` and `LSUB` merged.
    pub async fn list_mailboxes(&mut self) -> Result<Vec<MailboxEntry>, ImapError> {
        let mode = ListMode::for_capabilities(self.core.capabilities());
        let list = self.run(List::new(mode)).await?;
        match mode {
            ListMode::Extended { .. } => Ok(list),
            ListMode::Plain => {
                let lsub = self.run(Lsub::default()).await?;
                Ok(ops::merge_lsub(list, lsub))
            }
        }
    }

    /// `EXAMINE` (read-only; with CONDSTORE when offered).
    pub async fn examine(&mut self, mailbox: &MailboxName) -> Result<SelectedMailbox, ImapError> {
        self.run(Select::examine(mailbox.clone())).await
    }

    /// `SELECT` (with CONDSTORE when offered).
    pub async fn select(&mut self, mailbox: &MailboxName) -> Result<SelectedMailbox, ImapError> {
        self.run(Select::read_write(mailbox.clone())).await
    }

    /// `STATUS (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ])`.
    pub async fn status(&mut self, mailbox: &MailboxName) -> Result<MailboxStatus, ImapError> {
        self.run(Status::new(mailbox.clone())).await
    }

    /// `CREATE`; an existing mailbox is [`ImapError::Refused`] with
    /// [`ResponseCode::AlreadyExists`](crate::protocol::imap::ResponseCode::AlreadyExists).
    pub async fn create(&mut self, mailbox: &MailboxName) -> Result<(), ImapError> {
        self.run(Create(mailbox.clone())).await
    }

    /// `SUBSCRIBE`.
    pub async fn subscribe(&mut self, mailbox: &MailboxName) -> Result<(), ImapError> {
        self.run(Subscribe(mailbox.clone())).await
    }

    /// `APPEND` of one message; its APPENDUID under UIDPLUS.
    pub async fn append(
        &mut self,
        mailbox: &MailboxName,
        message: AppendMessage<'_>,
    ) -> Result<Option<AppendUid>, ImapError> {
        self.run(Append::new(mailbox.clone(), message)).await
    }

    /// `APPEND` of several messages in one command (MULTIAPPEND, all or
    /// nothing); their APPENDUIDs in order under UIDPLUS.
    pub async fn multiappend(
        &mut self,
        mailbox: &MailboxName,
        messages: &[AppendMessage<'_>],
    ) -> Result<Option<AppendUids>, ImapError> {
        self.run(MultiAppend::new(mailbox.clone(), messages)).await
    }

    /// Starts `UID FETCH` in the selected mailbox; messages are handed out
    /// one by one as they arrive by [`FetchStream::next`].
    pub async fn uid_fetch(&mut self, request: FetchRequest) -> Result<FetchStream<'_>, ImapError> {
        self.prepare().await?;
        let op = Fetch::new(request);
        let tag = self.core.enqueue(&op)?;
        Ok(FetchStream {
            connection: self,
            op: Some(op),
            tag,
        })
    }

    /// `LOGOUT`, then closes the connection. A server that hangs up right
    /// after its `BYE`, before the tagged OK, has logged out all the same.
    pub async fn logout(mut self) -> Result<(), ImapError> {
        match self.run(Logout).await {
            Ok(()) | Err(ImapError::ConnectionClosed { .. }) => {}
            Err(err) => return Err(err),
        }
        // The session is over; a failing close changes nothing for the caller.
        let _ = timeout(self.io_timeout, self.transport.shutdown()).await;
        Ok(())
    }

    /// Runs one operation to its tagged completion.
    pub async fn run<O: Operation>(&mut self, mut op: O) -> Result<O::Output, ImapError> {
        self.prepare().await?;
        let tag = self.core.enqueue(&op)?;
        loop {
            self.flush().await?;
            match self.next_event()? {
                Some(Event::Untagged(untagged)) => {
                    let result = op.on_untagged(untagged);
                    self.guard(|_| result)?;
                }
                Some(Event::Completed(completion)) if completion.tag == tag => {
                    return op.complete(completion);
                }
                Some(_) => {}
                None => self.fill().await?,
            }
        }
    }

    /// Refuses a poisoned connection and finishes commands a dropped
    /// [`FetchStream`] left running, discarding their responses.
    async fn prepare(&mut self) -> Result<(), ImapError> {
        if self.writing {
            self.poisoned = true;
        }
        if self.poisoned {
            return Err(ImapError::ConnectionPoisoned);
        }
        while self.core.has_in_flight() {
            self.flush().await?;
            if self.next_event()?.is_none() {
                self.fill().await?;
            }
        }
        Ok(())
    }

    /// Marks the connection poisoned when `f` fails.
    fn guard<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ImapError>,
    ) -> Result<T, ImapError> {
        let result = f(self);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// Writes everything the core has to send right now.
    async fn flush(&mut self) -> Result<(), ImapError> {
        let mut wrote = false;
        while let Some(bytes) = self.core.poll_transmit() {
            self.writing = true;
            for slice in bytes.chunks(WRITE_SLICE) {
                self.write_timed(slice, false).await?;
            }
            wrote = true;
        }
        if wrote {
            self.write_timed(&[], true).await?;
        }
        self.writing = false;
        Ok(())
    }

    async fn write_timed(&mut self, bytes: &[u8], flush: bool) -> Result<(), ImapError> {
        let write = async {
            if flush {
                self.transport.flush().await
            } else {
                self.transport.write_all(bytes).await
            }
        };
        match timeout(self.io_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => {
                self.poisoned = true;
                Err(ImapError::Io {
                    during: "sending a command".into(),
                    source,
                })
            }
            Err(_) => {
                self.poisoned = true;
                Err(ImapError::Timeout {
                    waiting_for: "the server to accept more of a command".into(),
                    after: self.io_timeout,
                })
            }
        }
    }

    /// The next complete response the core has, if any; a complete one
    /// starts the next response's deadline afresh.
    fn next_event(&mut self) -> Result<Option<Event>, ImapError> {
        let event = self.guard(|c| c.core.poll_event())?;
        if event.is_some() {
            self.response_started = None;
        }
        Ok(event)
    }

    /// How long the response now arriving may still take: its deadline is
    /// `response_timeout` plus 1 s per MiB received so far.
    fn response_time_left(&mut self) -> Result<Duration, ImapError> {
        let (started, bytes) = *self
            .response_started
            .get_or_insert((tokio::time::Instant::now(), 0));
        let allowed = self.response_timeout + Duration::from_secs(bytes >> 20);
        match allowed.checked_sub(started.elapsed()) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => {
                self.poisoned = true;
                Err(ImapError::Timeout {
                    waiting_for: format!("{} (the whole response)", self.core.waiting_for()),
                    after: allowed,
                })
            }
        }
    }

    /// Reads more bytes into the core, within the read timeout and the
    /// response's deadline.
    async fn fill(&mut self) -> Result<(), ImapError> {
        let limit = self.io_timeout.min(self.response_time_left()?);
        let read = timeout(limit, self.transport.read(&mut self.read_buf)).await;
        let n = match read {
            Ok(Ok(0)) => {
                self.poisoned = true;
                return Err(self.core.connection_closed());
            }
            Ok(Ok(n)) => n,
            Ok(Err(source)) => {
                self.poisoned = true;
                return Err(ImapError::Io {
                    during: format!("waiting for {}", self.core.waiting_for()),
                    source,
                });
            }
            Err(_) => {
                self.poisoned = true;
                self.response_time_left()?;
                return Err(ImapError::Timeout {
                    waiting_for: self.core.waiting_for(),
                    after: self.io_timeout,
                });
            }
        };
        if let Some((_, bytes)) = self.response_started.as_mut() {
            *bytes += n as u64;
        }
        self.core.receive(&self.read_buf[..n]);
        Ok(())
    }
}

/// A running `UID FETCH`. Dropping it early is safe: the next command on the
/// connection first reads (and discards) the rest of the answer.
#[derive(Debug)]
pub struct FetchStream<'c> {
    connection: &'c mut ImapConnection,
    op: Option<Fetch>,
    tag: String,
}

impl FetchStream<'_> {
    /// The next message, or `None` when the fetch completed.
    pub async fn next(&mut self) -> Result<Option<FetchedMessage>, ImapError> {
        loop {
            let Some(op) = self.op.as_mut() else {
                return Ok(None);
            };
            if let Some(message) = op.next_ready() {
                return Ok(Some(message));
            }
            self.connection.flush().await?;
            match self.connection.next_event()? {
                Some(Event::Untagged(untagged)) => {
                    let result = op.on_untagged(untagged);
                    self.connection.guard(|_| result)?;
                }
                Some(Event::Completed(completion)) if completion.tag == self.tag => {
                    if let Some(op) = self.op.take() {
                        op.complete(completion)?;
                    }
                }
                Some(_) => {}
                None => self.connection.fill().await?,
            }
        }
    }

    /// Reads all remaining messages into memory (small folders, tests).
    pub async fn collect(mut self) -> Result<Vec<FetchedMessage>, ImapError> {
        let mut out = Vec::new();
        while let Some(message) = self.next().await? {
            out.push(message);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(host: &str, security: Security) -> Endpoint {
        Endpoint::new(host, 1, security, "restore", Secret::new("pw".into()))
    }

    #[tokio::test]
    async fn plain_text_to_a_remote_address_is_refused_before_connecting() {
        // 192.0.2.0/24 is TEST-NET-1: nothing is ever there; no packet is sent
        // because the check happens before connecting.
        let err = resolve(&endpoint("192.0.2.10", Security::None))
            .await
            .unwrap_err();
        assert!(matches!(err, ImapError::InsecureRemote { .. }), "{err}");
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn plain_text_to_loopback_is_allowed() {
        for host in ["127.0.0.1", "::1", "[::1]", "localhost"] {
            let addrs = resolve(&endpoint(host, Security::None)).await.unwrap();
            assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{host}");
        }
    }

    #[tokio::test]
    async fn tls_to_a_remote_address_passes_the_check() {
        let addrs = resolve(&endpoint("192.0.2.10", Security::Tls))
            .await
            .unwrap();
        assert_eq!(addrs.len(), 1);
    }
}
