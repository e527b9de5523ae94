//! `r1_proto::client` against a real coordinator that crashes and comes back on the same port:
//! one channel, made once, carries calls before the crash and after the restart, with
//! `client::retry` bridging the gap; the token travels on every call.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::Coordinator;
use r1_coordinator::service::{Auth, Runs, serve};
use r1_coordinator::store::SystemClock;
use r1_proto::client::{self, ClientConfig, RetryPolicy};
use r1_proto::v1 as pb;
use tonic::Code;

/// A coordinator on a runtime of its own, so that [`Crashable::crash`] ends it the way a killed
/// process ends: every task and connection dropped at once, nothing shut down gracefully.
struct Crashable {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
}

impl Crashable {
    fn start(addr: &str, db: &Path, token: &str) -> Crashable {
        let listener = std::net::TcpListener::bind(addr).expect("the port is free");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let core = Coordinator::open(db, Arc::new(SystemClock), LeaseTtl::default()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let auth = Auth::bearer(token);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let runs = Runs::new(Arc::new(core), Duration::from_millis(20));
            serve(listener, runs, auth, std::future::pending()).await
        });
        Crashable { runtime: Some(runtime), addr }
    }

    fn crash(&mut self) {
        self.runtime.take().expect("running").shutdown_background();
    }
}

fn spec(data: &Path) -> pb::SubmitRunRequest {
    let toml = format!(
        "name = 'restart'\nbase_model = 'm'\n[dataset]\npath = '{}'\nfields = {{prompt = 'q', answer = 'a'}}\n[[rewards]]\nname = 'acc'\nverifier = 'math'\nweight = 1.0\n[algorithm]\nkind = 'grpo'\n[schedule]\ntotal_steps = 5",
        data.display()
    );
    pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(toml)) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_channel_outlives_a_coordinator_crash_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (db, data) = (dir.path().join("r1.db"), dir.path().join("d.jsonl"));
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": \"2\"}\n").unwrap();
    let mut coordinator = Crashable::start("127.0.0.1:0", &db, "s3cret");
    let addr = coordinator.addr;
    let cfg = ClientConfig::new(format!("http://{addr}")).with_token(Some("s3cret".into()));
    let channel = client::connect(&cfg).await.unwrap();
    let runs = client::run_client(channel, cfg.max_message_bytes);
    let run = runs.clone().submit(spec(&data)).await.unwrap().into_inner().id;

    coordinator.crash();
    // Without retry the call fails, with a code retry treats as transient.
    let err = runs.clone().get(pb::GetRunRequest { id: run }).await.unwrap_err();
    assert!(client::is_transient(&err, false), "a crashed coordinator answers {err:?}");

    // The coordinator comes back on the same port 400 ms later, from the same database.
    let restarted = tokio::task::spawn_blocking({
        let db = db.clone();
        move || {
            std::thread::sleep(Duration::from_millis(400));
            Crashable::start(&addr.to_string(), &db, "s3cret")
        }
    });
    let start = Instant::now();
    let policy = RetryPolicy { max_elapsed: Duration::from_secs(20), ..RetryPolicy::idempotent() };
    let status = client::retry("Get", &policy, || {
        let mut runs = runs.clone();
        async move { runs.get(pb::GetRunRequest { id: run }).await }
    })
    .await
    .expect("the same channel reaches the restarted coordinator")
    .into_inner();
    assert!(start.elapsed() >= Duration::from_millis(300), "the call cannot succeed before the restart");
    assert_eq!((status.id, status.name.as_str()), (run, "restart"));
    let mut coordinator = restarted.await.unwrap();

    // Later calls need no retry, and the token still travels on each of them.
    let listed = runs.clone().list(pb::ListRunsRequest {}).await.unwrap().into_inner().runs;
    assert_eq!(listed.len(), 1);
    coordinator.crash();
}

#[tokio::test]
async fn the_token_travels_through_the_connector() {
    let dir = tempfile::tempdir().unwrap();
    let mut coordinator = Crashable::start("127.0.0.1:0", &dir.path().join("r1.db"), "s3cret");
    let url = format!("http://{}", coordinator.addr);
    // (token sent, expected code)
    let cases = [(None, Code::Unauthenticated), (Some("wrong"), Code::Unauthenticated), (Some("s3cret"), Code::Ok)];
    for (token, want) in cases {
        let cfg = ClientConfig::new(url.clone()).with_token(token.map(String::from));
        let mut runs = client::run_client(client::connect(&cfg).await.unwrap(), cfg.max_message_bytes);
        // UNAUTHENTICATED is not transient: retry answers at once.
        let got = client::retry("List", &RetryPolicy::idempotent(), || {
            let mut runs = runs.clone();
            async move { runs.list(pb::ListRunsRequest {}).await }
        })
        .await
        .map_or_else(|s| s.code(), |_| Code::Ok);
        assert_eq!(got, want, "token {token:?}");
        let direct = runs.list(pb::ListRunsRequest {}).await.map_or_else(|s| s.code(), |_| Code::Ok);
        assert_eq!(direct, want, "token {token:?}");
    }
    coordinator.crash();
}
