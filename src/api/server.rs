//! The API server: a Unix-socket listener, the peer check, and the routes.
//!
//! Each accepted connection is checked with SO_PEERCRED first; a peer whose
//! uid is not allowed gets a canned 403 and the connection is closed before
//! any of its bytes are read. Requests are bounded (header read time, body
//! size, connections at once) so a slow or hostile client cannot stall the
//! daemon.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{Instrument, debug, info, info_span, warn};

use super::metrics::{Figures, SchedulerFigures};
use super::wire::{
    BackendHealth, ErrorBody, ErrorDetail, Health, JobCounts, JobList, JobView, PointList,
    PointView, RestoreRequest, SnapshotRequest,
};
use crate::config::Config;
use crate::error_code::ErrorCode;
use crate::index::Index;
use crate::jobs::{CancelError, JobFilter, JobId, JobKind, JobRequest, Queue};
use std::future::Future;
use std::pin::Pin;

/// Most connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

/// What the handlers share.
pub struct ApiState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The job queue.
    pub queue: Queue,
    /// The index (restore points).
    pub index: Index,
    /// Answers whether a user exists on the mail server.
    pub users: Arc<dyn UserCheck>,
    /// Rounds and prune.
    pub scheduler: crate::scheduler::Scheduler,
    /// The blob store (its size for metrics).
    pub store: crate::store::Store,
    /// When the daemon started.
    pub started: Instant,
}

/// Whether a user exists on the live mail server.
pub trait UserCheck: Send + Sync + 'static {
    /// `Ok(true)` when it exists, `Ok(false)` when the server says it does
    /// not, `Err` (a sentence) when the server cannot be asked.
    fn exists(&self, user: &str)
    -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + '_>>;
}

/// An error answer: a stable code (which gives the status) and a sentence.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// Builds an error answer; its HTTP status is the code's.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::InternalError, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.code.status(), axum::Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The routes.
pub fn router(state: Arc<ApiState>) -> Router {
    let max_body = state.config.api.max_body_bytes;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/v1/users/{user}/points", get(list_points))
        .route("/v1/snapshots", axum::routing::post(post_snapshots))
        .route("/v1/restores", axum::routing::post(post_restores))
        .route("/v1/prune", axum::routing::post(post_prune))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn metrics(State(st): State<Arc<ApiState>>) -> Response {
    // Sled scans and the walk of the pack directory block: off the async
    // workers, so a scrape of a large index never stalls other requests.
    let figures = tokio::task::spawn_blocking(move || gather_figures(&st)).await;
    match figures {
        Ok(Ok(figures)) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            super::metrics::render(&figures),
        )
            .into_response(),
        Ok(Err(e)) => ApiError::internal(e).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// Reads what `/metrics` shows; blocks (index scans, the pack directory).
fn gather_figures(st: &ApiState) -> Result<Figures, crate::index::IndexError> {
    let jobs = st.index.jobs()?;
    let store_bytes = st.store.size_on_disk().unwrap_or(0);
    let index_bytes = st.index.size_on_disk().unwrap_or(0);
    let mut points: BTreeMap<String, u64> = BTreeMap::new();
    for g in st.index.all_generations()? {
        *points.entry(g.user).or_default() += 1;
    }
    let s = &st.scheduler.stats;
    let scheduler = SchedulerFigures {
        lag_ms: s.lag_ms.load(Ordering::Relaxed),
        rounds: s.rounds.load(Ordering::Relaxed),
        queued: s.queued.load(Ordering::Relaxed),
        skipped: s.skipped.load(Ordering::Relaxed),
        prunes: s.prunes.load(Ordering::Relaxed),
    };
    let (queued, running) = st.queue.counts();
    Ok(Figures {
        jobs,
        store_bytes,
        index_bytes,
        points,
        scheduler,
        queued,
        running,
    })
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this endpoint does not take that method",
    )
}

async fn health(State(st): State<Arc<ApiState>>) -> ApiResult<axum::Json<Health>> {
    let c = &st.config;
    let timeout = Duration::from_secs(2);
    let imap = probe(&c.imap.host, c.imap.port, timeout);
    let dav = async {
        match &c.dav {
            Some(d) => match crate::config::parse_http_url(&d.url) {
                Some((_, host, port)) => probe(&host, port, timeout).await,
                None => down(&d.url, "cannot read host and port from the URL"),
            },
            None => not_configured(),
        }
    };
    let smtp = async {
        match &c.smtp {
            Some(s) => probe(&s.host, s.port, timeout).await,
            None => not_configured(),
        }
    };
    let (imap, dav, smtp) = tokio::join!(imap, dav, smtp);
    let mut backends = std::collections::BTreeMap::new();
    backends.insert("imap".to_string(), imap);
    backends.insert("dav".to_string(), dav);
    backends.insert("smtp".to_string(), smtp);
    backends.insert(
        "index".to_string(),
        BackendHealth {
            state: "up".into(),
            address: Some(c.state_dir.display().to_string()),
            latency_ms: None,
            error: None,
        },
    );
    let degraded = backends.values().any(|b| b.state == "down");
    let (queued, running) = st.queue.counts();
    Ok(axum::Json(Health {
        status: if degraded { "degraded" } else { "ok" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: st.started.elapsed().as_secs(),
        backends,
        jobs: JobCounts { queued, running },
    }))
}

async fn probe(host: &str, port: u16, timeout: Duration) -> BackendHealth {
    let address = format!("{host}:{port}");
    match crate::net::probe::tcp(host, port, timeout).await {
        Ok(latency) => BackendHealth {
            state: "up".into(),
            address: Some(address),
            latency_ms: Some(latency.as_millis() as u64),
            error: None,
        },
        Err(e) => down(&address, &e.to_string()),
    }
}

fn down(address: &str, error: &str) -> BackendHealth {
    BackendHealth {
        state: "down".into(),
        address: Some(address.to_string()),
        latency_ms: None,
        error: Some(error.to_string()),
    }
}

fn not_configured() -> BackendHealth {
    BackendHealth {
        state: "not_configured".into(),
        address: None,
        latency_ms: None,
        error: None,
    }
}

fn parse_job_id(id: &str) -> ApiResult<JobId> {
    id.parse()
        .map_err(|_| ApiError::new(ErrorCode::JobNotFound, format!("no job {id:?}")))
}

async fn get_job(
    State(st): State<Arc<ApiState>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<JobView>> {
    let id = parse_job_id(&id)?;
    match st.queue.get(id).map_err(ApiError::internal)? {
        Some(job) => Ok(axum::Json(JobView::from(&job))),
        None => Err(ApiError::new(
            ErrorCode::JobNotFound,
            format!("no job {id}"),
        )),
    }
}

async fn cancel_job(
    State(st): State<Arc<ApiState>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<(StatusCode, axum::Json<JobView>)> {
    let id = parse_job_id(&id)?;
    match st.queue.cancel(id) {
        Ok(job) => Ok((StatusCode::ACCEPTED, axum::Json(JobView::from(&job)))),
        Err(CancelError::NotFound(id)) => Err(ApiError::new(
            ErrorCode::JobNotFound,
            format!("no job {id}"),
        )),
        Err(CancelError::AlreadyEnded(job)) => Err(ApiError::new(
            ErrorCode::JobFinished,
            format!("job {} has already ended ({})", job.id, job.state.as_str()),
        )),
        Err(CancelError::Index(e)) => Err(ApiError::internal(e)),
    }
}

async fn list_jobs(
    State(st): State<Arc<ApiState>>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<axum::Json<JobList>> {
    let mut filter = JobFilter::default();
    for (key, value) in params {
        match key.as_str() {
            "user" => filter.user = Some(value),
            "kind" => filter.kind = Some(value.parse().map_err(ApiError::bad_request)?),
            "state" => filter.state = Some(value.parse().map_err(ApiError::bad_request)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?} (expected user, kind or state)"
                )));
            }
        }
    }
    let jobs = st.queue.list(&filter).map_err(ApiError::internal)?;
    Ok(axum::Json(JobList {
        jobs: jobs.iter().map(JobView::from).collect(),
    }))
}

/// Reads a JSON body within the request timeout; every failure is a 400
/// in the contract's error shape.
async fn read_json<T: serde::de::DeserializeOwned>(
    st: &ApiState,
    body: axum::body::Body,
) -> ApiResult<T> {
    let limit = st.config.api.max_body_bytes;
    let bytes = tokio::time::timeout(
        st.config.api.request_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        )
    })?
    .map_err(|_| {
        ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("the request body exceeds {limit} bytes"),
        )
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

/// A user name the daemon may act for: refused before anything is sent to a
/// server when it could log in as somebody else.
fn check_user_name(st: &ApiState, user: &str) -> ApiResult<()> {
    crate::protocol::imap::UserName::parse(
        user.as_bytes(),
        &crate::net::imap::login_method(&st.config.imap.login),
    )
    .map(|_| ())
    .map_err(|e| ApiError::new(ErrorCode::InvalidUser, e.to_string()))
}

async fn ensure_user_exists(st: &ApiState, user: &str) -> ApiResult<()> {
    check_user_name(st, user)?;
    match st.users.exists(user).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::new(
            ErrorCode::UnknownUser,
            format!("no mailbox {user:?} on the mail server"),
        )),
        Err(e) => Err(ApiError::new(ErrorCode::ServerDown, e)),
    }
}

async fn list_points(
    State(st): State<Arc<ApiState>>,
    UrlPath(user): UrlPath<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<axum::Json<PointList>> {
    check_user_name(&st, &user)?;
    let mut date = None;
    for (key, value) in &params {
        match key.as_str() {
            "date" => {
                date = Some(value.parse::<jiff::civil::Date>().map_err(|_| {
                    ApiError::new(
                        ErrorCode::BadDate,
                        format!("date must be YYYY-MM-DD, not {value:?}"),
                    )
                })?)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?} (expected date)"
                )));
            }
        }
    }
    let gens = st.index.generations(&user).map_err(ApiError::internal)?;
    if gens.is_empty() {
        ensure_user_exists(&st, &user).await?;
    }
    let mut chosen = match date {
        None => gens,
        Some(day) => {
            crate::points::on_day(gens, day, &st.config.timezone).map_err(ApiError::internal)?
        }
    };
    chosen.reverse();
    Ok(axum::Json(PointList {
        user,
        points: chosen.iter().map(PointView::from).collect(),
    }))
}

async fn post_snapshots(
    State(st): State<Arc<ApiState>>,
    body: axum::body::Body,
) -> ApiResult<(StatusCode, axum::Json<JobList>)> {
    let req: SnapshotRequest = read_json(&st, body).await?;
    let users = match (req.user, req.all) {
        (Some(user), false) => {
            ensure_user_exists(&st, &user).await?;
            vec![user]
        }
        (None, true) => crate::schedule::users(&st.config.schedule)
            .await
            .map_err(|e| ApiError::new(ErrorCode::UsersUnavailable, e.to_string()))?,
        _ => {
            return Err(ApiError::bad_request(
                "give either {\"user\": U} or {\"all\": true}",
            ));
        }
    };
    let mut jobs = Vec::new();
    for user in users {
        if let Err(e) = check_user_name(&st, &user) {
            warn!(user = %user, error = %e.message, "skipping a user name the schedule lists");
            continue;
        }
        jobs.push(
            st.queue
                .submit_snapshot_once(&user)
                .map_err(ApiError::internal)?
                .0,
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(JobList {
            jobs: jobs.iter().map(JobView::from).collect(),
        }),
    ))
}

/// `POST /v1/prune {"dry_run": bool}` (an extension of the contract: the
/// CLI's `prune` goes through the daemon when one holds the state directory).
async fn post_prune(
    State(st): State<Arc<ApiState>>,
    body: axum::body::Body,
) -> ApiResult<axum::Json<crate::prune::PruneReport>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PruneRequest {
        #[serde(default)]
        dry_run: bool,
    }
    let req: PruneRequest = read_json(&st, body).await?;
    let report = st
        .scheduler
        .prune(req.dry_run)
        .await
        .map_err(|e| ApiError::new(ErrorCode::PruneFailed, e.to_string()))?;
    Ok(axum::Json(report))
}

async fn post_restores(
    State(st): State<Arc<ApiState>>,
    body: axum::body::Body,
) -> ApiResult<(StatusCode, axum::Json<JobView>)> {
    let req: RestoreRequest = read_json(&st, body).await?;
    check_user_name(&st, &req.user)?;
    let scope = match req.scope.as_deref() {
        None => crate::jobs::Scope::All,
        Some(s) => s
            .parse()
            .map_err(|e: String| ApiError::new(ErrorCode::BadScope, e))?,
    };
    if let Some(r) = req
        .requested_by
        .as_ref()
        .filter(|r| !crate::config::looks_like_address(r))
    {
        return Err(ApiError::new(
            ErrorCode::BadRequestedBy,
            format!("requested_by must be a mail address, not {r:?}"),
        ));
    }
    let gens = st
        .index
        .generations(&req.user)
        .map_err(ApiError::internal)?;
    if gens.is_empty() {
        ensure_user_exists(&st, &req.user).await?;
    }
    let point = req
        .point
        .parse::<crate::manifest::GenerationId>()
        .ok()
        .filter(|id| gens.iter().any(|g| &g.id == id))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::PointNotFound,
                format!("{} has no restore point {:?}", req.user, req.point),
            )
        })?;
    let job = st
        .queue
        .submit(JobRequest {
            kind: JobKind::Restore,
            user: req.user,
            point: Some(point.to_string()),
            scope: Some(scope),
            requested_by: req.requested_by,
        })
        .map_err(ApiError::internal)?;
    Ok((StatusCode::ACCEPTED, axum::Json(JobView::from(&job))))
}

/// Binds the socket: refuses when a live daemon already answers on it,
/// replaces a stale one, and sets its mode (and group, when configured).
pub fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                ),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another process already serves {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // The process umask (022 by default) keeps the socket unwritable by group
    // and others between bind and chmod, so no one can connect in between.
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Serves the API on `listener` until `shutdown` fires, then lets open
/// requests finish for a short grace period.
pub async fn serve(listener: UnixListener, state: Arc<ApiState>, shutdown: CancellationToken) {
    let allowed = state.config.api.allowed_uids.clone();
    let header_timeout = state.config.api.request_timeout;
    let app = router(state);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(e) => {
                warn!(error = %e, "cannot read the peer's credentials; closing");
                continue;
            }
        };
        if !allowed.contains(&uid) {
            warn!(uid, "refused a peer whose uid is not in api.allowed_uids");
            tokio::spawn(refuse(stream, uid));
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            warn!("too many API connections; closing a new one");
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req| app.clone().oneshot(req));
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(
            async move {
                if let Err(e) = conn.await {
                    debug!(error = %e, "API connection ended with an error");
                }
                drop(permit);
            }
            .instrument(info_span!("api", uid)),
        );
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => {
            warn!("API connections still open after 5s; closing them");
        }
    }
    info!("API stopped");
}

async fn refuse(mut stream: UnixStream, uid: u32) {
    let code = ErrorCode::Forbidden;
    let body = serde_json::to_string(&ErrorBody {
        error: ErrorDetail {
            code,
            message: format!("uid {uid} is not allowed to use this socket (api.allowed_uids)"),
        },
    })
    .unwrap_or_default();
    let status = code.status();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}
