//! The DAV client: HTTP/1.1 (reqwest over rustls, certificates always
//! verified) with Basic authentication as `dav.user`, the methods a
//! snapshot and a restore need, bounded bodies, and retries of requests
//! that are safe to repeat.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode, header};
use url::Url;

use crate::config::DavConfig;
use crate::error_code::ErrorCode;
use crate::protocol::dav::{self, DavParseError, HrefError, Multistatus};
use crate::secret::Secret;

/// Largest body read from the server: an item with big attachments, or the
/// listing of a very large collection.
pub const MAX_BODY: usize = 256 * 1024 * 1024;
/// Tries of an idempotent request that failed on the way (connection,
/// timeout, 502/503/504).
const TRIES: u32 = 4;

/// Why a DAV exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum DavError {
    /// The client could not be set up (TLS, URL).
    #[error("DAV client set-up: {0}")]
    Setup(String),
    /// Connection refused, reset or timed out.
    #[error("DAV server {url} unreachable: {why}")]
    Unreachable {
        /// The request URL.
        url: String,
        /// What happened.
        why: String,
    },
    /// The server refused our credentials.
    #[error("DAV server refused the login of {user} ({status}) on {url}")]
    Unauthorized {
        /// The account.
        user: String,
        /// 401 or 403.
        status: u16,
        /// The request URL.
        url: String,
    },
    /// The server forbids the account something (403).
    #[error("DAV server forbids {user} {method} {url} (403)")]
    Forbidden {
        /// The account.
        user: String,
        /// The method.
        method: String,
        /// The request URL.
        url: String,
    },
    /// An unexpected status.
    #[error("DAV {method} {url} answered {status}: {body}")]
    Status {
        /// The method.
        method: String,
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A body was not what it should be.
    #[error("DAV {method} {url}: {why}")]
    Body {
        /// The method.
        method: String,
        /// The request URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// An href we refuse to follow.
    #[error(transparent)]
    Href(#[from] HrefError),
}

impl DavError {
    /// Worth another try later (server down or overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            DavError::Unreachable { .. } => true,
            DavError::Status { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// A stable job error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            DavError::Unreachable { .. } => ErrorCode::DavServerDown,
            DavError::Unauthorized { .. } => ErrorCode::DavLoginFailed,
            DavError::Forbidden { .. } => ErrorCode::DavForbidden,
            DavError::Status { status: 507, .. } => ErrorCode::OverQuota,
            _ => ErrorCode::DavError,
        }
    }
}

/// A response: status, the headers we use, the body.
#[derive(Debug, Clone)]
pub struct DavResponse {
    /// The status.
    pub status: u16,
    /// `ETag`, if any.
    pub etag: Option<String>,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl DavResponse {
    /// The start of the body, for error messages.
    pub fn snippet(&self) -> String {
        snippet(&self.body)
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a `PUT` with `If-None-Match: *` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Created.
    Created,
    /// Something is already at that href (412 without a UID precondition).
    Exists,
    /// The server refuses the item because its UID is used elsewhere.
    UidConflict {
        /// The status (403, 409, 412…).
        status: u16,
        /// The body's start.
        body: String,
    },
    /// The user's storage is full (507): nothing more fits.
    OverQuota {
        /// The body's start.
        body: String,
    },
    /// The server refuses this item (malformed, too large, …).
    Refused {
        /// The status.
        status: u16,
        /// The body's start.
        body: String,
    },
}

/// A DAV client for one server and account. Cheap to clone.
#[derive(Clone)]
pub struct DavClient {
    http: reqwest::Client,
    base: Url,
    principal: String,
    user: String,
    password: Secret<String>,
}

impl DavClient {
    /// A client for `[dav]`.
    pub fn from_config(cfg: &DavConfig) -> Result<DavClient, DavError> {
        let base = Url::parse(&format!("{}/", cfg.url.trim_end_matches('/')))
            .map_err(|e| DavError::Setup(format!("dav.url {:?}: {e}", cfg.url)))?;
        let tls = crate::net::tls::client_config(cfg.ca_file.as_deref())
            .map_err(|e| DavError::Setup(e.to_string()))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            // Per read, not for the whole exchange: a big listing or item
            // may take longer than `timeout` to arrive, steadily.
            .read_timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(30)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(8)
            .user_agent(concat!("mailrestore/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DavError::Setup(e.to_string()))?;
        Ok(DavClient {
            http,
            base,
            principal: cfg.principal.clone(),
            user: cfg.user.clone(),
            password: cfg.password.clone(),
        })
    }

    /// The principal URL of `user`.
    pub fn principal_url(&self, user: &str) -> Result<Url, DavError> {
        Ok(dav::href::principal_url(&self.base, &self.principal, user)?)
    }

    /// Sends one request; retries one that failed on the way. Every request
    /// the daemon sends is safe to repeat: PROPFIND, REPORT and GET read,
    /// and a repeated PUT (`If-None-Match: *`) or MKCALENDAR/MKCOL finds its
    /// first attempt, which the callers settle.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<(&str, Bytes)>,
    ) -> Result<DavResponse, DavError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(&method, url, headers, body.clone()).await {
                Err(e) if e.is_transient() && attempt < TRIES => {
                    tracing::debug!(%url, %method, error = %e, attempt, "retrying a DAV request");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Ok(r) if matches!(r.status, 502..=504) && attempt < TRIES => {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<(&str, Bytes)>,
    ) -> Result<DavResponse, DavError> {
        // Our credentials go to the configured server only, whatever an
        // href said.
        if !dav::href::same_origin(url, &self.base) {
            return Err(DavError::Href(HrefError::OtherServer(url.to_string())));
        }
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .basic_auth(&self.user, Some(self.password.expose()));
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        if let Some((content_type, bytes)) = body {
            req = req.header(header::CONTENT_TYPE, content_type).body(bytes);
        }
        let unreachable = |e: reqwest::Error| DavError::Unreachable {
            url: url.to_string(),
            why: error_chain(&e),
        };
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(DavError::Unauthorized {
                user: self.user.clone(),
                status: status.as_u16(),
                url: url.to_string(),
            });
        }
        let text = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = text(header::ETAG);
        let content_type = text(header::CONTENT_TYPE);
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(DavError::Body {
                method: method.to_string(),
                url: url.to_string(),
                why: format!("the body is larger than {MAX_BODY} bytes"),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(DavError::Body {
                    method: method.to_string(),
                    url: url.to_string(),
                    why: format!("the body is larger than {MAX_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(DavResponse {
            status: status.as_u16(),
            etag,
            content_type,
            body: body.into(),
        })
    }

    fn status_error(method: &str, url: &Url, r: &DavResponse) -> DavError {
        DavError::Status {
            method: method.to_string(),
            url: url.to_string(),
            status: r.status,
            body: r.snippet(),
        }
    }

    /// PROPFIND with `depth`; `Ok(None)` when the resource does not exist.
    pub async fn propfind(
        &self,
        url: &Url,
        depth: &str,
        body: String,
    ) -> Result<Option<Multistatus>, DavError> {
        let method = Method::from_bytes(b"PROPFIND").expect("a valid method");
        let r = self
            .send(
                method,
                url,
                &[("Depth", depth.to_string())],
                Some(("application/xml; charset=utf-8", body.into())),
            )
            .await?;
        match r.status {
            207 => {
                let ms = self.multistatus("PROPFIND", url, &r)?;
                // Xandikos answers a missing resource with a 207 whose only
                // response says 404.
                let missing = !ms.responses.is_empty()
                    && ms
                        .responses
                        .iter()
                        .all(|r| matches!(r.status, Some(404 | 410)));
                Ok((!missing).then_some(ms))
            }
            404 | 410 => Ok(None),
            403 => Err(DavError::Forbidden {
                user: self.user.clone(),
                method: "PROPFIND".into(),
                url: url.to_string(),
            }),
            _ => Err(Self::status_error("PROPFIND", url, &r)),
        }
    }

    /// REPORT sync-collection since `token`: `Ok(None)` when the token is
    /// no longer valid or the server does not do sync-collection.
    pub async fn sync_collection(
        &self,
        url: &Url,
        token: &str,
    ) -> Result<Option<Multistatus>, DavError> {
        let method = Method::from_bytes(b"REPORT").expect("a valid method");
        let r = self
            .send(
                method,
                url,
                &[("Depth", "0".into())],
                Some((
                    "application/xml; charset=utf-8",
                    dav::sync_collection(token).into(),
                )),
            )
            .await?;
        match r.status {
            207 => Ok(Some(self.multistatus("REPORT", url, &r)?)),
            // RFC 6578 §3.2: an invalid token is 403/409 with
            // `valid-sync-token`; servers without the report say 400/403/
            // 405/501. Either way: fall back to ETags.
            // A server error on the report: the listing may still work.
            400 | 403 | 405 | 409 | 412 | 415 | 500..=599 => Ok(None),
            _ => Err(Self::status_error("REPORT", url, &r)),
        }
    }

    fn multistatus(
        &self,
        method: &str,
        url: &Url,
        r: &DavResponse,
    ) -> Result<Multistatus, DavError> {
        dav::parse_multistatus(&r.body).map_err(|e: DavParseError| DavError::Body {
            method: method.to_string(),
            url: url.to_string(),
            why: e.to_string(),
        })
    }

    /// GET an item: `Ok(None)` when it is gone.
    pub async fn get(&self, url: &Url) -> Result<Option<DavResponse>, DavError> {
        let r = self.send(Method::GET, url, &[], None).await?;
        match r.status {
            200 => Ok(Some(r)),
            404 | 410 => Ok(None),
            _ => Err(Self::status_error("GET", url, &r)),
        }
    }

    /// PUT a new item with `If-None-Match: *` (never over an existing one).
    pub async fn put_new(
        &self,
        url: &Url,
        content_type: &str,
        body: Bytes,
    ) -> Result<PutOutcome, DavError> {
        let r = self
            .send(
                Method::PUT,
                url,
                &[
                    ("If-None-Match", "*".into()),
                    // RFC 6638 §8.1: no scheduling message for this change,
                    // where the server honours it (see docs/operations.md).
                    ("Schedule-Reply", "F".into()),
                ],
                Some((content_type, body)),
            )
            .await?;
        Ok(match r.status {
            200..=299 => PutOutcome::Created,
            _ if dav::is_uid_conflict(&r.body) => PutOutcome::UidConflict {
                status: r.status,
                body: r.snippet(),
            },
            412 => PutOutcome::Exists,
            507 => PutOutcome::OverQuota { body: r.snippet() },
            400 | 403 | 409 | 413 | 415 | 422 => PutOutcome::Refused {
                status: r.status,
                body: r.snippet(),
            },
            _ => return Err(Self::status_error("PUT", url, &r)),
        })
    }

    /// MKCALENDAR or extended MKCOL: `Ok(None)` when created, else the
    /// refusal (405 from SabreDAV-style servers, 409 from Radicale and 403
    /// from Cyrus when something is already there; 4xx for a property the
    /// server does not take).
    pub async fn make_collection(
        &self,
        url: &Url,
        kind: dav::CollectionKind,
        props: &dav::NewCollection,
    ) -> Result<Option<DavResponse>, DavError> {
        let (method, body) = match kind {
            dav::CollectionKind::Calendar => ("MKCALENDAR", dav::mkcalendar(props)),
            dav::CollectionKind::Addressbook => ("MKCOL", dav::mkcol_addressbook(props)),
        };
        let r = self
            .send(
                Method::from_bytes(method.as_bytes()).expect("a valid method"),
                url,
                &[],
                Some(("application/xml; charset=utf-8", body.into())),
            )
            .await?;
        match r.status {
            200..=299 => Ok(None),
            400..=499 => Ok(Some(r)),
            _ => Err(Self::status_error(method, url, &r)),
        }
    }

    /// The message for a refused MKCALENDAR/MKCOL.
    pub fn refused(method: &str, url: &Url, r: &DavResponse) -> DavError {
        Self::status_error(method, url, r)
    }
}

/// A reqwest error with its causes (reqwest's own text says little).
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
