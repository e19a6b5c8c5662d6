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
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{Instrument, debug, info, info_span, warn};
use utoipa::{Modify, OpenApi};

use super::metrics::{Figures, SchedulerFigures};
use super::wire::{
    BackendHealth, ErrorBody, ErrorDetail, Health, JobCounts, JobList, JobView, PointList,
    PointView, PruneReportView, PruneRequest, RestoreRequest, SnapshotRequest,
};
use crate::config::Config;
use crate::error_code::ErrorCode;
use crate::index::Index;
use crate::jobs::{CancelError, JobFilter, JobId, JobSpec, Queue, RestoreSpec};
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
    pub store: crate::repo::Repository,
    /// When the daemon started.
    pub started: Instant,
}

/// What [`UserCheck::inbox_identity`] answers.
pub type InboxIdentityFuture<'a> = Pin<
    Box<dyn Future<Output = Result<Option<crate::manifest::MailboxIdentity>, String>> + Send + 'a>,
>;

/// Whether a user exists on the live mail server.
pub trait UserCheck: Send + Sync + 'static {
    /// `Ok(true)` when it exists, `Ok(false)` when the server says it does
    /// not, `Err` (a sentence) when the server cannot be asked.
    fn exists(&self, user: &str)
    -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + '_>>;
    /// The identity of the user's mailbox now (`Ok(None)`: no such
    /// mailbox), `Err` (a sentence) when the server cannot be asked.
    fn inbox_identity(&self, user: &str) -> InboxIdentityFuture<'_>;
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

/// One route: its method, its path and a function making its handler's
/// [`MethodRouter`] for that method.
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path, with `{name}` for a parameter (as axum and OpenAPI write it).
    pub path: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<Arc<ApiState>>,
}

/// Every route the daemon serves. The router is built from this table, and
/// a test checks that the OpenAPI document describes exactly these.
pub const ROUTES: &[Route] = &[
    route(Method::GET, "/v1/health", |m| on(m, health)),
    route(Method::GET, "/v1/jobs", |m| on(m, list_jobs)),
    route(Method::GET, "/v1/jobs/{id}", |m| on(m, get_job)),
    route(Method::DELETE, "/v1/jobs/{id}", |m| on(m, cancel_job)),
    route(Method::GET, "/v1/users/{user}/points", |m| {
        on(m, list_points)
    }),
    route(Method::POST, "/v1/snapshots", |m| on(m, post_snapshots)),
    route(Method::POST, "/v1/restores", |m| on(m, post_restores)),
    route(Method::POST, "/v1/prune", |m| on(m, post_prune)),
    route(Method::GET, "/v1/openapi.json", |m| on(m, openapi_json)),
    route(Method::GET, "/metrics", |m| on(m, metrics)),
];

/// One row of [`ROUTES`].
const fn route(
    method: Method,
    path: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<Arc<ApiState>>,
) -> Route {
    Route {
        method,
        path,
        handler,
    }
}

/// The routes of [`ROUTES`], without the fallbacks, limits and state.
fn routes() -> Router<Arc<ApiState>> {
    ROUTES.iter().fold(Router::new(), |router, r| {
        // Invariant: ROUTES holds only GET, POST and DELETE, which axum
        // routes (a test builds this router).
        let filter = MethodFilter::try_from(r.method.clone())
            .expect("every method of ROUTES has a MethodFilter");
        // A second method on a path already routed merges with the first.
        router.route(r.path, (r.handler)(filter))
    })
}

/// The routes.
pub fn router(state: Arc<ApiState>) -> Router {
    let max_body = state.config.api.max_body_bytes;
    routes()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The OpenAPI 3 description of the socket API, generated from the wire
/// types and the handlers' `#[utoipa::path]` attributes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mailrestore socket API",
        description = "HTTP/1.1 and JSON on the daemon's Unix socket (`api.socket`). \
            Only peers whose uid is in `api.allowed_uids` are served; any other gets \
            403 `forbidden` before its request is read. Errors are \
            `{\"error\": {\"code\", \"message\"}}` with a stable code; \
            docs/operations.md lists every code."
    ),
    servers((url = "http://localhost", description = "the Unix socket of `api.socket`")),
    paths(
        health,
        list_jobs,
        get_job,
        cancel_job,
        list_points,
        post_snapshots,
        post_restores,
        post_prune,
        openapi_json,
        metrics
    ),
    modifiers(&EveryRouteErrors)
)]
pub struct ApiDoc;

/// Adds the answers every route can give to each operation: 403 for a
/// peer that is not allowed (checked before routing) and 500 when the
/// daemon fails inside.
struct EveryRouteErrors;

impl Modify for EveryRouteErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                responses
                    .entry("403".into())
                    .or_insert_with(|| error("`forbidden`: the peer's uid is not allowed").into());
                responses
                    .entry("500".into())
                    .or_insert_with(|| error("`internal_error`").into());
            }
        }
    }
}

/// The OpenAPI document as JSON, made once.
fn openapi_document() -> Result<&'static str, &'static str> {
    static DOC: LazyLock<Result<String, String>> =
        LazyLock::new(|| ApiDoc::openapi().to_json().map_err(|e| e.to_string()));
    DOC.as_deref().map_err(String::as_str)
}

/// The OpenAPI 3 description of this API (this document).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document", body = Object, content_type = "application/json"))
)]
async fn openapi_json() -> Response {
    match openapi_document() {
        Ok(doc) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            doc,
        )
            .into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// Prometheus metrics.
///
/// Jobs by outcome, restored counts, store and index sizes, points per
/// user, the scheduler's counters.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain; version=0.0.4"))
)]
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

/// Is everything up.
///
/// Each backend's state, and the queue's counts.
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "health",
    responses((status = 200, description = "`ok`, or `degraded` when a configured backend is down", body = Health))
)]
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
    let (index, state_dir) = blocking(&st, |st| {
        let dir = &st.config.state_dir;
        (index_health(&st.index, dir), state_dir_health(dir))
    })
    .await?;
    backends.insert("index".to_string(), index);
    backends.insert("state_dir".to_string(), state_dir);
    let degraded = backends
        .values()
        .any(|b| matches!(b.state.as_str(), "down" | "damaged" | "full"));
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
            address: Some(address),
            latency_ms: Some(latency.as_millis() as u64),
            ..BackendHealth::new("up")
        },
        Err(e) => down(&address, &e.to_string()),
    }
}

fn down(address: &str, error: &str) -> BackendHealth {
    BackendHealth {
        address: Some(address.to_string()),
        error: Some(error.to_string()),
        ..BackendHealth::new("down")
    }
}

fn not_configured() -> BackendHealth {
    BackendHealth::new("not_configured")
}

/// The index answers a read; `damaged` when blobs were found damaged and
/// not fetched again since.
fn index_health(index: &Index, dir: &std::path::Path) -> BackendHealth {
    let address = Some(dir.join("index").display().to_string());
    match index.probe() {
        Ok(0) => BackendHealth {
            address,
            ..BackendHealth::new("up")
        },
        Ok(n) => BackendHealth {
            address,
            error: Some(format!(
                "{n} blobs were found damaged; the next snapshot fetches those still on the server (mailrestore verify --read-data tells which points they belong to)"
            )),
            ..BackendHealth::new("damaged")
        },
        Err(e) => down(&dir.join("index").display().to_string(), &e.to_string()),
    }
}

/// Free and total bytes of the state directory's file system; `full` when
/// less than 1% or 64 MiB is free.
fn state_dir_health(dir: &std::path::Path) -> BackendHealth {
    let address = dir.display().to_string();
    match crate::state::disk_space(dir) {
        Ok((free, total)) => {
            let full = free < (64 << 20).min(total / 10) || free < total / 100;
            BackendHealth {
                address: Some(address),
                free_bytes: Some(free),
                total_bytes: Some(total),
                error: full.then(|| "the state directory is (nearly) full".to_string()),
                ..BackendHealth::new(if full { "full" } else { "up" })
            }
        }
        Err(e) => down(&address, &e.to_string()),
    }
}

fn parse_job_id(id: &str) -> ApiResult<JobId> {
    id.parse()
        .map_err(|_| ApiError::new(ErrorCode::JobNotFound, format!("no job {id:?}")))
}

/// A job: state, target, progress, error.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id (`j` and digits)")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "`job_not_found`", body = ErrorBody)
    )
)]
async fn get_job(
    State(st): State<Arc<ApiState>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<axum::Json<JobView>> {
    let id = parse_job_id(&id)?;
    match blocking(&st, move |st| st.queue.get(id))
        .await?
        .map_err(ApiError::internal)?
    {
        Some(job) => Ok(axum::Json(JobView::from(&job))),
        None => Err(ApiError::new(
            ErrorCode::JobNotFound,
            format!("no job {id}"),
        )),
    }
}

/// Cancels a job.
///
/// A running restore stops between two batches and keeps what it made.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id (`j` and digits)")),
    responses(
        (status = 202, description = "The job, cancelling", body = JobView),
        (status = 404, description = "`job_not_found`", body = ErrorBody),
        (status = 409, description = "`job_finished`: it has already ended", body = ErrorBody)
    )
)]
async fn cancel_job(
    State(st): State<Arc<ApiState>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<(StatusCode, axum::Json<JobView>)> {
    let id = parse_job_id(&id)?;
    match blocking(&st, move |st| st.queue.cancel(id)).await? {
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

/// Jobs, newest first, filtered.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(
        ("user" = Option<String>, Query, description = "Only this user's jobs"),
        ("kind" = Option<String>, Query, description = "`snapshot` or `restore`"),
        ("state" = Option<String>, Query, description = "`queued`, `running`, `succeeded`, `failed` or `cancelled`")
    ),
    responses(
        (status = 200, description = "The jobs", body = JobList),
        (status = 400, description = "`bad_request`: an unknown parameter or value", body = ErrorBody)
    )
)]
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
    let jobs = blocking(&st, move |st| st.queue.list(&filter))
        .await?
        .map_err(ApiError::internal)?;
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
/// One RFC 5322 addr-spec (no display name, no list), as the notification
/// will send to it, at most 254 bytes (RFC 5321's path limit).
fn is_one_address(a: &str) -> bool {
    a.len() <= 254 && crate::config::looks_like_address(a) && a.parse::<lettre::Address>().is_ok()
}

fn check_user_name(st: &ApiState, user: &str) -> ApiResult<()> {
    crate::protocol::imap::UserName::parse(
        user.as_bytes(),
        &crate::net::imap::login_method(&st.config.imap.login),
    )
    .map(|_| ())
    .map_err(|e| ApiError::new(ErrorCode::InvalidUser, e.to_string()))
}

/// `409 mailbox_changed` when the point is of another mailbox than the
/// one that has the address now (a point without an identity passes).
async fn check_same_mailbox(
    st: &ApiState,
    user: &str,
    recorded: Option<crate::manifest::MailboxIdentity>,
) -> ApiResult<()> {
    let Some(recorded) = recorded else {
        return Ok(());
    };
    let live = st
        .users
        .inbox_identity(user)
        .await
        .map_err(|e| ApiError::new(ErrorCode::ServerDown, e))?;
    if live.as_ref() == Some(&recorded) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::MailboxChanged,
        format!(
            "the restore point is of another mailbox than the one {user:?} has now (point: {}, now: {}): the address was deleted and made again; send \"allow_mailbox_change\": true to restore into this mailbox anyway",
            recorded.id,
            live.map_or("no mailbox".to_string(), |l| l.id)
        ),
    ))
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

/// A user's restore points, newest first.
///
/// With `date`, that day's points, or the nearest before and after it when
/// the day has none.
#[utoipa::path(
    get,
    path = "/v1/users/{user}/points",
    tag = "points",
    params(
        ("user" = String, Path, description = "The mailbox, as Dovecot names it"),
        ("date" = Option<String>, Query, description = "A calendar day (`YYYY-MM-DD`) in the daemon's timezone")
    ),
    responses(
        (status = 200, description = "The points", body = PointList),
        (status = 400, description = "`invalid_user`, `bad_date`, `bad_request`", body = ErrorBody),
        (status = 404, description = "`unknown_user`", body = ErrorBody),
        (status = 503, description = "`server_down`", body = ErrorBody)
    )
)]
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
                date = Some(value.parse::<crate::time::Date>().map_err(|_| {
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
    let gens = generations(&st, &user).await?;
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

/// Takes a restore point now.
///
/// Of one user (`{"user": U}`), or of every user the schedule knows
/// (`{"all": true}`).
#[utoipa::path(
    post,
    path = "/v1/snapshots",
    tag = "jobs",
    request_body = SnapshotRequest,
    responses(
        (status = 202, description = "The snapshot jobs (an active one is returned, not doubled)", body = JobList),
        (status = 400, description = "`bad_request`, `invalid_user`", body = ErrorBody),
        (status = 404, description = "`unknown_user`", body = ErrorBody),
        (status = 408, description = "`request_timeout`", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 503, description = "`server_down`, `users_unavailable`", body = ErrorBody)
    )
)]
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
        let submitted = blocking(&st, move |st| st.queue.submit_snapshot_once(&user)).await?;
        jobs.push(submitted.map_err(ApiError::internal)?.0);
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(JobList {
            jobs: jobs.iter().map(JobView::from).collect(),
        }),
    ))
}

/// Applies the retention policy now.
///
/// An extension of the contract: the CLI's `prune` goes through the daemon
/// when one holds the state directory. `dry_run` shows what would go.
#[utoipa::path(
    post,
    path = "/v1/prune",
    tag = "points",
    request_body = PruneRequest,
    responses(
        (status = 200, description = "What the prune did, or would do", body = PruneReportView),
        (status = 400, description = "`bad_request`", body = ErrorBody),
        (status = 408, description = "`request_timeout`", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 500, description = "`store_damaged` (damaged packs were kept, the rest reclaimed), `prune_failed`, `internal_error`", body = ErrorBody)
    )
)]
async fn post_prune(
    State(st): State<Arc<ApiState>>,
    body: axum::body::Body,
) -> ApiResult<axum::Json<PruneReportView>> {
    let req: PruneRequest = read_json(&st, body).await?;
    let report = st.scheduler.prune(req.dry_run).await.map_err(|e| {
        let code = if e.is_damage() {
            ErrorCode::StoreDamaged
        } else {
            ErrorCode::PruneFailed
        };
        ApiError::new(code, e.to_string())
    })?;
    Ok(axum::Json(PruneReportView::from(&report)))
}

/// Restores a point into new dated folders.
///
/// `scope` `all` brings back every folder, calendar and address book,
/// `inbox` the INBOX's messages only; nothing existing is overwritten.
#[utoipa::path(
    post,
    path = "/v1/restores",
    tag = "jobs",
    request_body = RestoreRequest,
    responses(
        (status = 202, description = "The restore job", body = JobView),
        (status = 200, description = "The same restore (user, point, scope) is queued or running already: that job", body = JobView),
        (status = 400, description = "`bad_request`, `invalid_user`, `bad_scope`, `bad_requested_by`", body = ErrorBody),
        (status = 404, description = "`unknown_user`, `point_not_found`", body = ErrorBody),
        (status = 408, description = "`request_timeout`", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 503, description = "`server_down`", body = ErrorBody)
    )
)]
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
    if let Some(r) = req.requested_by.as_ref().filter(|r| !is_one_address(r)) {
        return Err(ApiError::new(
            ErrorCode::BadRequestedBy,
            format!("requested_by must be one mail address (local@domain), not {r:?}"),
        ));
    }
    let gens = generations(&st, &req.user).await?;
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
    if !req.allow_mailbox_change {
        let recorded = gens
            .iter()
            .find(|g| g.id == point)
            .and_then(|g| g.mailbox.clone());
        check_same_mailbox(&st, &req.user, recorded).await?;
    }
    let spec = JobSpec::Restore(RestoreSpec {
        point,
        scope,
        requested_by: req.requested_by,
        allow_mailbox_change: req.allow_mailbox_change,
    });
    let user = req.user;
    // The same restore sent twice (a double click, a retried request)
    // while the first is queued or running is that job, not a second one.
    let (job, new) = blocking(&st, move |st| st.queue.submit_once(&user, spec))
        .await?
        .map_err(ApiError::internal)?;
    let status = if new {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(JobView::from(&job))))
}

/// Runs index or queue work (sled reads, flushed writes) on the blocking
/// pool, so that a slow disk never stalls the async threads that serve the
/// other connections.
async fn blocking<T: Send + 'static>(
    st: &Arc<ApiState>,
    f: impl FnOnce(&ApiState) -> T + Send + 'static,
) -> ApiResult<T> {
    let st = st.clone();
    tokio::task::spawn_blocking(move || f(&st))
        .await
        .map_err(ApiError::internal)
}

/// The user's points, oldest first, read off the async threads.
async fn generations(
    st: &Arc<ApiState>,
    user: &str,
) -> ApiResult<Vec<crate::manifest::Generation>> {
    let user = user.to_string();
    blocking(st, move |st| st.index.generations(&user))
        .await?
        .map_err(ApiError::internal)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn document() -> serde_json::Value {
        serde_json::from_str(openapi_document().expect("the document serialises"))
            .expect("the document is JSON")
    }

    /// `(operation, path item)` for every operation of the document.
    fn operations(doc: &serde_json::Value) -> Vec<(String, String, &serde_json::Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                if METHODS.contains(&method.as_str()) {
                    out.push((method.to_uppercase(), path.clone(), op));
                }
            }
        }
        out
    }

    #[test]
    fn openapi_describes_exactly_the_routes_the_router_serves() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
        let documented: BTreeSet<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(method, path, _)| (method, path))
            .collect();
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(routed.len(), ROUTES.len(), "a route is listed twice");
        assert_eq!(documented, routed);
        // The table builds a router (no overlapping method on one path).
        let _ = routes();
    }

    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", serde_json::Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_schema_referenced_exists() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.contains(&"#/components/schemas/JobView"), "{found:?}");
        for r in found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r} points outside the document's schemas"));
            assert!(
                schemas.contains_key(name),
                "{r} is not in components.schemas"
            );
        }
    }

    #[test]
    fn every_operation_succeeds_somehow_and_fails_in_the_error_shape() {
        let doc = document();
        for (method, path, op) in operations(&doc) {
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} has no success answer"
            );
            for status in ["403", "500"] {
                assert!(responses.contains_key(status), "{method} {path}: {status}");
            }
            for (status, answer) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
                assert_eq!(
                    answer["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }

    #[test]
    fn every_error_code_is_in_the_documents_schema() {
        let doc = document();
        let codes: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("ErrorCode is a string enum")
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let all: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes, all);
    }
}
