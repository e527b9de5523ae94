//! Serving both gRPC services, `GET /metrics` and the dashboard on one port. Every HTTP
//! route (`/`, `/metrics`, and whatever is added under `/api/`) is behind
//! [`Auth::check_read`]: add routes to [`http_routes`] and they are too.

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

use super::{Auth, Runs, Work, rpc_span};
use crate::runs::Coordinator;

#[derive(Debug, thiserror::Error)]
#[error("cannot serve the coordinator on {addr}: {source}; check that the address is free")]
pub struct ServeError {
    addr: String,
    source: tonic::transport::Error,
}

/// Serves RunService and WorkService on `listener` behind `auth`, and `GET /metrics` (HTTP/1
/// on the same port), until `shutdown` completes, one `rpc` span per call.
pub async fn serve(
    listener: tokio::net::TcpListener,
    runs: Runs,
    auth: Auth,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let addr = listener
        .local_addr()
        .map(|a: SocketAddr| a.to_string())
        .unwrap_or_default();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let work = Work {
        core: runs.core.clone(),
        limits: runs.limits.clone(),
        gate: runs.gate.clone(),
    }
    .into_server();
    let core = runs.core.clone();
    let mut routes = Routes::new(InterceptedService::new(runs.into_server(), auth.clone()))
        .add_service(InterceptedService::new(work, auth.clone()));
    let router = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = router.merge(http_routes(core, auth));
    tonic::transport::Server::builder()
        .accept_http1(true)
        .trace_fn(rpc_span)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|source| ServeError { addr, source })
}

/// The HTTP pages, each behind `auth`'s read check.
pub fn http_routes(core: Arc<Coordinator>, auth: Auth) -> axum::Router {
    let page = core.clone();
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || metrics_page(core.clone())),
        )
        .route(
            "/",
            axum::routing::get(move || dashboard_page(page.clone())),
        )
        .route("/api/{*rest}", axum::routing::get(api_not_found))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let auth = auth.clone();
                async move {
                    match auth.check_read(request.headers()) {
                        Ok(()) => next.run(request).await,
                        Err(refused) => axum::response::IntoResponse::into_response(refused),
                    }
                }
            },
        ))
}

/// Nothing is served under `/api/` yet; the path is reserved (and read-checked) for it.
async fn api_not_found() -> (axum::http::StatusCode, &'static str) {
    (
        axum::http::StatusCode::NOT_FOUND,
        "no such API path; see docs/operations.md for the coordinator's HTTP paths",
    )
}

/// The Prometheus page; a store failure is a 500 with the error's message.
async fn metrics_page(core: Arc<Coordinator>) -> (axum::http::StatusCode, String) {
    let page =
        tokio::task::spawn_blocking(move || core.list().map(|runs| crate::metrics::render(&runs)))
            .await;
    match page {
        Ok(Ok(text)) => (axum::http::StatusCode::OK, text),
        Ok(Err(e)) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The dashboard: an HTML table of every run, refreshed by the browser.
async fn dashboard_page(
    core: Arc<Coordinator>,
) -> (axum::http::StatusCode, axum::response::Html<String>) {
    let page = tokio::task::spawn_blocking(move || {
        core.list().map(|runs| crate::metrics::dashboard(&runs))
    })
    .await;
    match page {
        Ok(Ok(html)) => (axum::http::StatusCode::OK, axum::response::Html(html)),
        Ok(Err(e)) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::response::Html(e.to_string()),
        ),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::response::Html(e.to_string()),
        ),
    }
}
