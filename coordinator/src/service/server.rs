//! Serving both gRPC services and, over HTTP/1, the dashboard and `GET /metrics`
//! ([`crate::dashboard`]) on one port. Every HTTP path that carries data (`/metrics` and
//! everything under `/api/`) is behind [`Auth::check_read`] ([`read_checked`]); the dashboard's
//! page shell and its static assets carry none and stay public, so a browser can load them and
//! then send the token with its API calls.

use std::net::SocketAddr;

use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

use super::{Auth, Runs, Work, rpc_span};

#[derive(Debug, thiserror::Error)]
#[error("cannot serve the coordinator on {addr}: {source}; check that the address is free")]
pub struct ServeError {
    addr: String,
    source: tonic::transport::Error,
}

/// Serves RunService and WorkService on `listener` behind `auth`, `grpc.health.v1` (open, for
/// probes), and the dashboard and
/// `GET /metrics` ([`crate::dashboard`], HTTP/1 on the same port), until `shutdown`
/// completes, one `rpc` span per call.
pub async fn serve(
    listener: tokio::net::TcpListener,
    runs: Runs,
    auth: Auth,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map(|a: SocketAddr| a.to_string()).unwrap_or_default();
    let incoming = r1_proto::incoming(listener);
    let work = Work { core: runs.core.clone(), limits: runs.limits.clone(), gate: runs.gate.clone() }.into_server();
    let dashboard = crate::dashboard::router(runs.core.clone(), auth.clone());
    // grpc.health.v1 without the token (kubelet's probes carry none): the database is open
    // by now, so both services are SERVING.
    let health = r1_proto::health::Health::new();
    health.serving(&["r1.v1.RunService", "r1.v1.WorkService"]);
    let mut routes = Routes::new(InterceptedService::new(runs.into_server(), auth.clone()))
        .add_service(InterceptedService::new(work, auth.clone()))
        .add_service(health.service());
    let router = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = router.merge(read_checked(dashboard, auth));
    tonic::transport::Server::builder()
        .accept_http1(true)
        .trace_fn(rpc_span)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|source| ServeError { addr, source })
}

/// `routes` with [`Auth::check_read`] in front of every path that carries data: `/metrics`
/// and everything under `/api/`.
pub fn read_checked(routes: axum::Router, auth: Auth) -> axum::Router {
    routes.layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
        let auth = auth.clone();
        async move {
            let path = request.uri().path();
            let data = path == "/metrics" || path.starts_with("/api/") || path == "/api";
            match data.then(|| auth.check_read(request.headers())) {
                Some(Err(refused)) => axum::response::IntoResponse::into_response(*refused),
                _ => next.run(request).await,
            }
        }
    }))
}
