//! The dashboard on the coordinator's port (HTTP/1, beside gRPC): a JSON API under `/api/`
//! that the pages use and people can `curl`, the pages themselves, and `GET /metrics` for
//! Prometheus ([`crate::metrics`]).
//!
//! API (every answer is JSON; an error is `{"error": "..."}` with its HTTP status):
//! - `GET /api/runs[?state=running]`: every run, newest first, with its progress, counters,
//!   queue depths, latest metrics line and latest evaluation.
//! - `GET /api/runs/{id}`: one run, plus its spec as submitted, its checkpoints and the steps
//!   with kept samples.
//! - `GET /api/runs/{id}/metrics[?since=STEP]`: the `metrics.jsonl` lines after `STEP` (all
//!   without it), every evaluation so far, and the run's state and step: a page polls it with
//!   the last step it has to grow its curves.
//! - `GET /api/runs/{id}/samples[?step=N]`: the groups kept of step N (the latest without
//!   it) and the steps that have some ([`crate::samples`]).
//! - `GET /api/workers`: the fleet ([`crate::workers`]).
//! - `POST /api/runs/{id}/cancel` with a JSON body (`{"reason": "..."}` or `{}`): cancels the
//!   run. When the coordinator has a token this needs `authorization: Bearer <token>`:
//!   without one it is refused with 401, with a wrong one with 403. The JSON content type is
//!   required so that a plain cross-site form cannot post it.
//!
//! Pages (`/`, `/runs/{id}`, `/runs/{id}/samples`, `/workers`) are one HTML shell, a script
//! and a style sheet compiled into the binary (`assets/`), no CDN and no build step. The
//! script builds the DOM with text nodes only, never HTML from data, and every page is
//! served with a Content-Security-Policy that allows only these assets, so a run name or a
//! completion holding `<script>` shows as text and cannot run. Curves are SVG drawn by the
//! script (one `circle` per point), fed by polling `metrics?since=`.
//!
//! Limits: reads are not behind the token (they show runs, metrics and samples, never
//! credentials); each request reads the store (a few small queries per run).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::runs::{Coordinator, RunStatus, RunsError};
use crate::service::{Auth, status_of};
use crate::store::{RunId, RunState};

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// What pages may load: only this server's own script, styles and API.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Clone)]
struct Dash {
    core: Arc<Coordinator>,
    auth: Auth,
}

/// The dashboard's routes (pages, assets, `/api/`, `/metrics`) over `core`; mutations need
/// `auth`'s token when it has one.
pub fn router(core: Arc<Coordinator>, auth: Auth) -> axum::Router {
    axum::Router::new()
        .route("/", get(page))
        .route("/runs/{id}", get(page))
        .route("/runs/{id}/samples", get(page))
        .route("/workers", get(page))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .route("/metrics", get(prometheus))
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(one_run))
        .route("/api/runs/{id}/metrics", get(metrics))
        .route("/api/runs/{id}/samples", get(samples))
        .route("/api/runs/{id}/cancel", post(cancel))
        .route("/api/workers", get(workers))
        .route("/api/{*rest}", get(no_such_api).post(no_such_api))
        .with_state(Dash { core, auth })
}

/// An API error: its status and a message saying what to do.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

impl From<RunsError> for ApiError {
    /// The gRPC mapping ([`status_of`]) decides, so both front doors agree.
    fn from(e: RunsError) -> ApiError {
        let s = status_of(e);
        let status = match s.code() {
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists => StatusCode::CONFLICT,
            tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, s.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &json!({ "error": self.message }))
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("a JSON value serialises");
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response()
}

type ApiResult = Result<Response, ApiError>;

/// Runs `f` with the coordinator on the blocking pool (SQLite and file reads).
async fn blocking<T: Send + 'static>(
    core: &Arc<Coordinator>,
    f: impl FnOnce(&Coordinator) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let core = core.clone();
    tokio::task::spawn_blocking(move || f(&core))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("coordinator task failed: {e}")))?
}

/// A run id from the path: a positive integer.
fn run_id(text: &str) -> Result<RunId, ApiError> {
    match text.parse::<RunId>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("run `{text}` does not exist; run ids are positive integers, see GET /api/runs"),
        )),
    }
}

/// The value of query parameter `name`, if present.
fn query<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Query parameter `name` as a step number, if present.
fn step_param(uri: &Uri, name: &str) -> Result<Option<u64>, ApiError> {
    query(uri, name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("query parameter `{name}` is `{v}`; use a step number (0, 1, 2, ...)"),
                )
            })
        })
        .transpose()
}

/// Checks the bearer token of a request that changes something: allowed when the
/// coordinator has no token, 401 without a token, 403 with a wrong one. The check is the
/// gRPC services' own ([`Auth`]).
pub fn authorize(auth: &Auth, headers: &HeaderMap) -> Result<(), ApiError> {
    use tonic::service::Interceptor;
    let sent = headers.get(header::AUTHORIZATION);
    let mut request = tonic::Request::new(());
    if let Some(v) = sent.and_then(|v| v.to_str().ok()?.parse().ok()) {
        request.metadata_mut().insert("authorization", v);
    }
    match auth.clone().call(request) {
        Ok(_) => Ok(()),
        Err(s) if sent.is_none() => Err(ApiError::new(StatusCode::UNAUTHORIZED, s.message())),
        Err(s) => Err(ApiError::new(StatusCode::FORBIDDEN, s.message())),
    }
}

/// The latest metrics line of a run (the last learner step's), if any.
fn latest_line(core: &Coordinator, id: RunId) -> Result<Option<Value>, ApiError> {
    core.with_store_locked(|store| {
        use rusqlite::OptionalExtension;
        store
            .conn
            .query_row(
                "SELECT step, metrics FROM step_metrics WHERE run_id = ?1 ORDER BY step DESC LIMIT 1",
                [id],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
    })
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    .map(|row| {
        row.and_then(|(step, text)| {
            let mut v: Value = serde_json::from_str(&text).ok()?;
            v.as_object_mut()?.insert("step".into(), (step + 1).into());
            Some(v)
        })
    })
}

/// A run as the API shows it.
fn run_json(s: &RunStatus, latest: Option<Value>, now: i64) -> Value {
    let kind = match s.run.spec.algorithm {
        crate::spec::Algorithm::Grpo(_) => "grpo",
        crate::spec::Algorithm::Sft(_) => "sft",
    };
    json!({
        "id": s.run.id,
        "name": s.run.spec.name,
        "kind": kind,
        "state": s.run.state,
        "message": s.run.message,
        "created_ms": s.run.created_ms,
        "updated_ms": s.run.updated_ms,
        "age_s": (now - s.run.created_ms).max(0) as f64 / 1000.0,
        "step": s.progress.step,
        "total_steps": s.run.spec.schedule.total_steps,
        "policy_version": s.progress.policy_version,
        "cursor": s.progress.cursor,
        "counters": s.progress.counters,
        "queues": s.stages,
        "last_eval": s.last_eval.map(|(step, accuracy)| json!({"step": step, "accuracy": accuracy})),
        "latest": latest,
    })
}

async fn list_runs(State(d): State<Dash>, uri: Uri) -> ApiResult {
    let state = match query(&uri, "state") {
        None | Some("") => None,
        Some(s) => Some(RunState::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("query parameter `state` is `{s}`; use pending, running, completed, failed or cancelled"),
            )
        })?),
    };
    let runs = blocking(&d.core, move |core| {
        let now = core.now();
        core.list()?
            .into_iter()
            .filter(|s| state.is_none_or(|want| s.run.state == want))
            .map(|s| Ok(run_json(&s, latest_line(core, s.run.id)?, now)))
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(json_response(StatusCode::OK, &json!({ "runs": runs })))
}

async fn one_run(State(d): State<Dash>, Path(id): Path<String>) -> ApiResult {
    let id = run_id(&id)?;
    let run = blocking(&d.core, move |core| {
        let s = core.get(id)?;
        let mut v = run_json(&s, latest_line(core, id)?, core.now());
        let checkpoints: Vec<Value> = core
            .checkpoints(id)?
            .into_iter()
            .map(|c| json!({"step": c.step, "path": c.path, "created_ms": c.created_ms, "policy_version": c.progress.policy_version}))
            .collect();
        let dir = core.run_dir(id);
        let m = v.as_object_mut().expect("a run is an object");
        m.insert("spec".into(), json!(s.run.spec));
        m.insert("checkpoints".into(), checkpoints.into());
        m.insert(
            "sample_steps".into(),
            json!(dir.as_deref().map(crate::samples::steps).unwrap_or_default()),
        );
        m.insert(
            "run_dir".into(),
            json!(dir.map(|d| d.display().to_string())),
        );
        Ok(v)
    })
    .await?;
    Ok(json_response(StatusCode::OK, &run))
}

async fn metrics(State(d): State<Dash>, Path(id): Path<String>, uri: Uri) -> ApiResult {
    let id = run_id(&id)?;
    let since = step_param(&uri, "since")?;
    let body = blocking(&d.core, move |core| {
        let s = core.get(id)?;
        let lines: Vec<Value> = core.metric_lines(id, since)?.into_iter().map(Value::Object).collect();
        let evals: Vec<Value> = core
            .with_store_locked(|st| st.evals(id))
            .map_err(RunsError::from)?
            .into_iter()
            .filter_map(|(step, _, a)| Some(json!({"step": step, "accuracy": a?})))
            .collect();
        Ok(json!({
            "run": id,
            "state": s.run.state,
            "step": s.progress.step,
            "total_steps": s.run.spec.schedule.total_steps,
            "since": since,
            "lines": lines,
            "evals": evals,
        }))
    })
    .await?;
    Ok(json_response(StatusCode::OK, &body))
}

async fn samples(State(d): State<Dash>, Path(id): Path<String>, uri: Uri) -> ApiResult {
    let id = run_id(&id)?;
    let step = step_param(&uri, "step")?;
    let body = blocking(&d.core, move |core| {
        core.get(id)?;
        let dir = core.run_dir(id);
        let steps = dir.as_deref().map(crate::samples::steps).unwrap_or_default();
        let Some(step) = step.or(steps.last().copied()) else {
            return Ok(json!({"run": id, "steps": steps, "step": null, "groups_trained": 0, "groups": []}));
        };
        let kept = match &dir {
            Some(dir) => crate::samples::read(dir, step)?,
            None => None,
        };
        let Some(kept) = kept else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("run {id} has no samples kept for step {step}; steps with samples: {steps:?}"),
            ));
        };
        Ok(json!({
            "run": id,
            "steps": steps,
            "step": kept.step,
            "groups_trained": kept.groups_trained,
            "groups": kept.groups,
        }))
    })
    .await?;
    Ok(json_response(StatusCode::OK, &body))
}

async fn workers(State(d): State<Dash>) -> ApiResult {
    let now = d.core.now();
    let registry = d.core.workers();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "now_ms": now,
            "gone_after_ms": registry.gone_after_ms(),
            "workers": registry.list(now),
        }),
    ))
}

async fn cancel(State(d): State<Dash>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request with `content-type: application/json` and a JSON body such as {}",
        ));
    }
    authorize(&d.auth, &headers)?;
    let id = run_id(&id)?;
    let request: Value = match body.is_empty() {
        true => json!({}),
        false => serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON ({e}); send {{}} or {{\"reason\": \"...\"}}"),
            )
        })?,
    };
    let reason = match request.get("reason") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(r)) => r.clone(),
        Some(other) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("`reason` is {other}; send a string")));
        }
    };
    let run = blocking(&d.core, move |core| {
        let s = core.cancel(id, &reason)?;
        Ok(run_json(&s, latest_line(core, id)?, core.now()))
    })
    .await?;
    Ok(json_response(StatusCode::OK, &run))
}

async fn no_such_api(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no API at {}; see docs/operations.md for the endpoints", uri.path()))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    r
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The Prometheus page; a store failure is a 500 with the error's message.
async fn prometheus(State(d): State<Dash>) -> Response {
    let page = blocking(&d.core, |core| Ok(crate::metrics::render(&core.list()?))).await;
    match page {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (e.status, e.message).into_response(),
    }
}
