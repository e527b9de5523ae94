//! The coordinator's limits at their boundaries, over gRPC on 127.0.0.1:0: message size (at the
//! limit passes, one byte over is OUT_OF_RANGE on both services), concurrency (N requests in
//! flight, the N+1th waits or is refused as configured) and deadlines (a request whose
//! `grpc-timeout` passes before its transaction starts is DEADLINE_EXCEEDED and applies
//! nothing). Requests are held in flight by holding the store's lock from the test.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::Coordinator;
use r1_coordinator::service::{Auth, Limits, Runs, WhenBusy, serve};
use r1_coordinator::store::SystemClock;
use r1_proto::client::{self, AuthChannel, ClientConfig};
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;
use r1_proto::v1::work_service_client::WorkServiceClient;
use tonic::Code;

struct Server {
    core: Arc<Coordinator>,
    runs: RunServiceClient<AuthChannel>,
    work: WorkServiceClient<AuthChannel>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(dir: &Path, limits: Limits) -> Server {
    let core = Arc::new(Coordinator::open(&dir.join("r1.db"), Arc::new(SystemClock), LeaseTtl::default()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runs = Runs::with_limits(core.clone(), Duration::from_millis(20), limits);
    tokio::spawn(serve(listener, runs, Auth::open(), async move {
        let _ = stopped.await;
    }));
    // The client accepts far more than the server, so that only the server's limit applies.
    let cfg = ClientConfig { max_message_bytes: 64 << 20, ..ClientConfig::new(format!("http://{addr}")) };
    let channel = client::connect(&cfg).await.unwrap();
    Server {
        core,
        runs: client::run_client(channel.clone(), cfg.max_message_bytes),
        work: client::work_client(channel, cfg.max_message_bytes),
        _stop: stop,
    }
}

fn spec(data: &Path, padding: usize) -> String {
    format!(
        "name = 'limits'\nbase_model = 'm'\n[dataset]\npath = '{}'\nfields = {{prompt = 'q', answer = 'a'}}\n[[rewards]]\nname = 'acc'\nverifier = 'math'\nweight = 1.0\n[algorithm]\nkind = 'grpo'\ngroup_size = 2\nprompts_per_step = 1\n[schedule]\ntotal_steps = 5\n#{}\n",
        data.display(),
        "x".repeat(padding)
    )
}

fn dataset(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": \"2\"}\n{\"q\": \"2+2\", \"a\": \"4\"}\n").unwrap();
    data
}

fn code<T>(r: &Result<T, tonic::Status>) -> Code {
    r.as_ref().map_or_else(|s| s.code(), |_| Code::Ok)
}

/// Holds the store's lock on a thread of its own until the returned sender is dropped or sent.
fn hold_store(core: &Arc<Coordinator>) -> std::sync::mpsc::Sender<()> {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (held, is_held) = std::sync::mpsc::channel::<()>();
    let core = core.clone();
    std::thread::spawn(move || {
        core.with_store_locked(|_| {
            held.send(()).unwrap();
            let _ = released.recv();
        })
    });
    is_held.recv().unwrap();
    release
}

fn with_timeout<T>(message: T, timeout: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("grpc-timeout", timeout.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_size_at_the_limit_passes_and_one_byte_over_is_out_of_range() {
    const LIMIT: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let s = start(dir.path(), Limits { max_message_bytes: LIMIT, ..Limits::default() }).await;
    let base = pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec(&data, 0))) }.encoded_len();
    // A request of exactly `size` encoded bytes (the string's length prefix is one byte longer past 16 KiB).
    let sized = |size: usize| {
        let padding = size - base - 1;
        let request = pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec(&data, padding))) };
        assert_eq!(request.encoded_len(), size);
        request
    };
    // (encoded size, expected code)
    let cases =
        [(LIMIT - 1, Code::Ok), (LIMIT, Code::Ok), (LIMIT + 1, Code::OutOfRange), (2 * LIMIT, Code::OutOfRange)];
    for (size, want) in cases {
        let got = s.runs.clone().submit(sized(size)).await;
        assert_eq!(code(&got), want, "RunService.Submit of {size} bytes: {got:?}");
        if let Err(status) = got {
            assert!(status.message().contains("too large"), "{}", status.message());
        }
    }

    // WorkService has the same limit.
    let run = s.runs.clone().list(pb::ListRunsRequest {}).await.unwrap().into_inner().runs[0].id;
    let samples = |size: usize| pb::SubmitSamplesRequest {
        run_id: run,
        idempotency_key: "k".into(),
        group_id: 1,
        policy_version: 0,
        samples: vec![pb::Sample { text: "y".repeat(size), ..Default::default() }],
    };
    let over = samples(LIMIT).encoded_len() - LIMIT;
    for (size, want) in [(LIMIT - over, Code::NotFound), (LIMIT - over + 1, Code::OutOfRange)] {
        // Within the limit the handler runs: the group was never leased, so NOT_FOUND.
        let request = samples(size);
        let got = s.work.clone().submit_samples(request.clone()).await;
        assert_eq!(code(&got), want, "WorkService.SubmitSamples of {} bytes: {got:?}", request.encoded_len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_request_past_the_concurrency_limit_waits_or_is_refused() {
    // (when_busy, grpc-timeout of the extra request, expected code, whether it answers before the
    // held requests are released)
    let cases = [
        (WhenBusy::Reject, None, Code::ResourceExhausted, true),
        (WhenBusy::Wait, Some("300m"), Code::DeadlineExceeded, true),
        (WhenBusy::Wait, None, Code::Ok, false),
    ];
    for (when_busy, timeout, want, answers_while_held) in cases {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(dir.path());
        let s = start(dir.path(), Limits { max_concurrent_requests: 2, when_busy, ..Limits::default() }).await;
        let run = s
            .runs
            .clone()
            .submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec(&data, 0))) })
            .await
            .unwrap()
            .into_inner()
            .id;

        // Two requests, one per service, take both slots and wait for the store.
        let release = hold_store(&s.core);
        let (mut runs, mut work) = (s.runs.clone(), s.work.clone());
        let get = tokio::spawn(async move { runs.get(pb::GetRunRequest { id: run }).await });
        let lease = tokio::spawn(async move {
            work.lease_scoring(pb::LeaseScoringRequest { run_id: run, worker: "w".into(), max_groups: 1 }).await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut runs = s.runs.clone();
        let started = Instant::now();
        let extra = tokio::spawn(async move {
            let request = match timeout {
                Some(t) => with_timeout(pb::ListRunsRequest {}, t),
                None => tonic::Request::new(pb::ListRunsRequest {}),
            };
            let r = runs.list(request).await;
            (r, started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(extra.is_finished(), answers_while_held, "{when_busy:?} {timeout:?}");
        release.send(()).unwrap();
        let (got, took) = extra.await.unwrap();
        assert_eq!(code(&got), want, "{when_busy:?} {timeout:?}: {got:?}");
        match want {
            Code::ResourceExhausted => {
                assert!(took < Duration::from_millis(500), "refused at once, not after {took:?}");
                assert!(got.unwrap_err().message().contains("limits.max_concurrent_requests"));
            }
            Code::DeadlineExceeded => {
                assert!((Duration::from_millis(250)..Duration::from_millis(1000)).contains(&took), "{took:?}");
                assert!(got.unwrap_err().message().contains("nothing was applied"));
            }
            _ => assert!(took >= Duration::from_millis(1000), "it waited for a slot: {took:?}"),
        }
        assert_eq!(code(&get.await.unwrap()), Code::Ok);
        assert_eq!(code(&lease.await.unwrap()), Code::Ok);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deadline_that_passes_before_the_transaction_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let s = start(dir.path(), Limits::default()).await;
    let run = s
        .runs
        .clone()
        .submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec(&data, 0))) })
        .await
        .unwrap()
        .into_inner()
        .id;
    let lease = s
        .work
        .clone()
        .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "actor".into(), max_groups: 1 })
        .await
        .unwrap()
        .into_inner();
    let group = lease.groups[0].group_id;
    let submission = pb::SubmitSamplesRequest {
        run_id: run,
        idempotency_key: "gen-1".into(),
        group_id: group,
        policy_version: 0,
        samples: vec![
            pb::Sample {
                text: "a".into(),
                token_ids: vec![1],
                logprobs: vec![-0.1],
                truncated: false,
                generation_seconds: 0.0,
            },
            pb::Sample {
                text: "b".into(),
                token_ids: vec![2],
                logprobs: vec![-0.2],
                truncated: false,
                generation_seconds: 0.0,
            },
        ],
    };

    // The store is busy for 1.5 s; the submission allows 300 ms.
    let release = hold_store(&s.core);
    let started = Instant::now();
    let got = s.work.clone().submit_samples(with_timeout(submission.clone(), "300m")).await;
    let took = started.elapsed();
    assert_eq!(code(&got), Code::DeadlineExceeded, "{got:?}");
    assert!(took < Duration::from_millis(1200), "answered at its deadline, not when the store was free: {took:?}");
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed())).await;
    release.send(()).unwrap();

    // The transaction never ran, even once the store was free: no group generated, and the
    // same submission is new to the coordinator (not a replay); sent again, it is a replay.
    let counters = |s: pb::RunStatus| {
        let c = s.counters.unwrap();
        (c.groups_generated, c.replays)
    };
    let status = s.runs.clone().get(pb::GetRunRequest { id: run }).await.unwrap().into_inner();
    assert_eq!(counters(status), (0, 0));
    for replays in [0, 1] {
        let outcome = s.work.clone().submit_samples(submission.clone()).await.unwrap().into_inner().outcome;
        assert_eq!(outcome, pb::SubmitOutcome::Accepted as i32);
        let status = s.runs.clone().get(pb::GetRunRequest { id: run }).await.unwrap().into_inner();
        assert_eq!(counters(status), (1, replays));
    }
}

#[test]
fn grpc_timeout_headers() {
    // (header, the handler's deadline from now, or None when the header is malformed)
    let cases = [
        ("1S", Some(Duration::from_millis(950))),
        ("300m", Some(Duration::from_millis(285))),
        ("2M", Some(Duration::from_millis(119_950))),
        ("10H", Some(Duration::from_millis(36_000_000 - 50))),
        ("100000u", Some(Duration::from_millis(95))),
        ("5", None),
        ("S", None),
        ("123456789S", None),
        ("1x", None),
    ];
    for (header, want) in cases {
        let request = with_timeout((), header);
        let now = tokio::time::Instant::now();
        let got = r1_coordinator::service::deadline_of(&request).map(|d| d - now);
        match (got, want) {
            (Some(got), Some(want)) => {
                assert!(got.abs_diff(want) < Duration::from_millis(5), "{header}: {got:?} vs {want:?}")
            }
            (None, None) => {}
            _ => panic!("{header}: {got:?} vs {want:?}"),
        }
    }
}

/// Regression: a 10 MB run name was stored and `r1ctl runs` printed it. Names are bounded at
/// `MAX_NAME_BYTES` (the boundary is tested in `tests/runs.rs`); past it Submit is
/// `INVALID_ARGUMENT` naming the limit, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_run_name_is_refused_with_its_limit() {
    use r1_coordinator::runs::MAX_NAME_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let s = start(dir.path(), Limits::default()).await;
    // (name, expected code)
    let cases = [
        ("n".repeat(MAX_NAME_BYTES), Code::Ok),
        ("n".repeat(MAX_NAME_BYTES + 1), Code::InvalidArgument),
        ("n".repeat(10 << 20), Code::InvalidArgument),
    ];
    for (name, want) in cases {
        let text = spec(&data, 0).replace("name = 'limits'", &format!("name = '{name}'"));
        let got =
            s.runs.clone().submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(text)) }).await;
        assert_eq!(code(&got), want, "a name of {} bytes", name.len());
        if let Err(status) = got {
            let limit = format!("the limit is {MAX_NAME_BYTES} bytes");
            assert!(status.message().contains(&limit), "{}", status.message());
        }
    }
    let runs = s.runs.clone().list(pb::ListRunsRequest {}).await.unwrap().into_inner().runs;
    assert_eq!(runs.len(), 1, "only the name at the limit is stored");
}
