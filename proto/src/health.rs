//! The standard gRPC health protocol (`grpc.health.v1.Health`, Check and Watch) for every r1
//! process, so Kubernetes' gRPC probes (and `grpc_health_probe`) can ask any of them whether
//! it is up.
//!
//! The coordinator and learner rank 0 add [`Health::service`] to the server they already run
//! (their status is SERVING once their database or weight stream is ready). Workers that
//! serve nothing else (actors, pull reward workers, learner ranks other than 0) start a
//! small server of their own with [`Health::serve`] on the address given by their
//! `--health-listen` flag. The empty service name `""` is the process as a whole: it is
//! SERVING while the process does its work and NOT_SERVING once it is stopping (SIGTERM),
//! so a readiness probe takes a stopping pod out of its Service at once.
//!
//! The health service never asks for the bearer token: kubelet's probes carry none, and the
//! answer says nothing but up or down.

use std::net::SocketAddr;

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
pub use tonic_health::ServingStatus;

use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

/// The status a process reports; cheap to clone, every clone sets the same status.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    service: HealthServer<HealthService>,
}

/// `--health-listen` could not be served.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot listen on {addr} for the gRPC health service: {source}; pick a free --health-listen")]
    Bind { addr: String, source: std::io::Error },
}

impl Health {
    /// A health service whose whole-process status (`""`) starts NOT_SERVING.
    pub fn new() -> Health {
        let reporter = HealthReporter::new();
        let service = HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
        let h = Health { reporter, service };
        h.set("", ServingStatus::NotServing);
        h
    }

    /// Sets the status of `service` (`""`: the whole process).
    pub fn set(&self, service: &str, status: ServingStatus) {
        // HealthReporter's setter is async only to take a tokio RwLock for a moment (no I/O):
        // wait for it right here, so statuses are set in the order they are called.
        block_on(self.reporter.set_service_status(service, status));
    }

    /// SERVING for `""` and each of `services` (fully qualified names, `r1.v1.WorkService`).
    pub fn serving(&self, services: &[&str]) {
        self.set("", ServingStatus::Serving);
        for s in services {
            self.set(s, ServingStatus::Serving);
        }
    }

    /// NOT_SERVING for `""`: the process is stopping.
    pub fn stopping(&self) {
        self.set("", ServingStatus::NotServing);
    }

    /// The `grpc.health.v1.Health` service, to add to a server the process already runs.
    pub fn service(&self) -> HealthServer<HealthService> {
        self.service.clone()
    }

    /// Serves the health service alone on `addr` in the background of `rt`, for processes that
    /// serve nothing else; answers with the local address (useful with port 0).
    pub fn serve(&self, rt: &tokio::runtime::Handle, addr: &str) -> Result<SocketAddr, HealthError> {
        let bind = |source| HealthError::Bind { addr: addr.to_string(), source };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        std_listener.set_nonblocking(true).map_err(bind)?;
        let local = std_listener.local_addr().map_err(bind)?;
        let service = self.service.clone();
        let _guard = rt.enter();
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind)?;
        rt.spawn(async move {
            let incoming = crate::incoming(listener);
            if let Err(e) = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await
            {
                tracing::error!("gRPC health service stopped: {e}");
            }
        });
        Ok(local)
    }
}

/// Asks the health service at `url` (`http://host:port`) for the status of `service` (`""`:
/// the whole process), as a probe does; `Ok(true)` when SERVING.
pub async fn check(url: &str, service: &str) -> Result<bool, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| tonic::Status::invalid_argument(format!("`{url}` is not a URL: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("cannot reach {url}: {e}")))?;
    let reply = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
        .await?;
    Ok(reply.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

/// Wakes the thread that waits in [`block_on`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future that waits on nothing but a lock held for a moment (HealthReporter's) to its
/// end on this thread, inside a runtime or not.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_the_status_it_was_set_to_last() {
        let h = Health::new();
        let addr = h.serve(&tokio::runtime::Handle::current(), "127.0.0.1:0").unwrap();
        let url = format!("http://{addr}");
        let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
        let mut c = HealthClient::new(channel);
        let check = |service: &str| HealthCheckRequest { service: service.into() };
        let status = |r: tonic_health::pb::HealthCheckResponse| r.status;
        use tonic_health::pb::health_check_response::ServingStatus as Wire;
        assert_eq!(
            status(c.check(check("")).await.unwrap().into_inner()),
            Wire::NotServing as i32,
            "not serving until ready"
        );
        h.serving(&["r1.v1.WorkService"]);
        assert_eq!(status(c.check(check("")).await.unwrap().into_inner()), Wire::Serving as i32);
        assert_eq!(status(c.check(check("r1.v1.WorkService")).await.unwrap().into_inner()), Wire::Serving as i32);
        let unknown = c.check(check("r1.v1.Nothing")).await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        assert!(super::check(&url, "").await.unwrap(), "as a probe sees it");
        h.stopping();
        assert_eq!(
            status(c.check(check("")).await.unwrap().into_inner()),
            Wire::NotServing as i32,
            "a stopping process says so"
        );
        assert!(!super::check(&url, "").await.unwrap());
    }

    #[test]
    fn a_busy_address_names_the_flag() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let e = Health::new().serve(rt.handle(), &addr).unwrap_err().to_string();
        assert!(e.contains(&addr) && e.contains("--health-listen"), "{e}");
    }
}
