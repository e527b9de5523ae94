//! An actor waiting for the weights its lease names gives the lease up when a rollback undoes
//! the step that made them, instead of waiting for a version nobody will publish again.
//! The real coordinator and weight service run in-process; the policy is the qwen2-tiny
//! fixture.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use r1_actor::weights::FetchPolicy;
use r1_actor::{Actor, ActorSettings};
use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::Coordinator;
use r1_coordinator::service::{Auth, Runs, serve};
use r1_coordinator::store::SystemClock;
use r1_learner::publish::Publisher;
use r1_proto::client::ClientConfig;
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;
use r1_proto::v1::work_service_client::WorkServiceClient;

fn fixture() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/qwen2-tiny")
        .canonicalize()
        .unwrap()
}

fn sample() -> pb::Sample {
    pb::Sample {
        text: "2".into(),
        token_ids: vec![7, 8],
        logprobs: vec![-0.25, -1.5],
        truncated: false,
        generation_seconds: 0.0,
    }
}

#[test]
fn a_lease_undone_while_waiting_for_its_weights_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": \"2\"}\n".repeat(6)).unwrap();
    let spec = format!(
        "name = 'lost'\nbase_model = '{}'\n[dataset]\npath = '{}'\nfields = {{prompt = 'q', answer = 'a'}}\n\
         [[rewards]]\nname = 'acc'\nverifier = 'math'\nweight = 1.0\n\
         [algorithm]\nkind = 'grpo'\ngroup_size = 2\nprompts_per_step = 1\n\
         [algorithm.sampling]\ntemplate = 'raw'\nmax_new_tokens = 4\n[schedule]\ntotal_steps = 3",
        fixture().display(),
        data.display()
    );

    // The coordinator, with leases that must be renewed several times a second.
    let ttl = LeaseTtl { generate_ms: 600, score_ms: 600, train_ms: 600, ..LeaseTtl::default() };
    let core = Coordinator::open(&dir.path().join("r1.db"), Arc::new(SystemClock), ttl).unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(serve(
        listener,
        Runs::new(Arc::new(core), Duration::from_millis(20)),
        Auth::open(),
        std::future::pending(),
    ));
    // A weight service that has published nothing: the learner that made version 1 is gone.
    let publisher = Publisher::new(1, 2, 1000);
    let weights = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let weights_url = format!("http://{}", weights.local_addr().unwrap());
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(publisher.service())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(weights)),
    );

    // Step 1 through the worker protocol, so the run's policy version is 1.
    let (run, mut work) = rt.block_on(async {
        let channel = tonic::transport::Channel::from_shared(url.clone()).unwrap().connect().await.unwrap();
        let mut runs = RunServiceClient::new(channel.clone());
        let mut work = WorkServiceClient::new(channel);
        let submit = pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec)) };
        let run = runs.submit(submit).await.unwrap().into_inner().id;
        let lease = work
            .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "w".into(), max_groups: 1 })
            .await
            .unwrap()
            .into_inner();
        let group_id = lease.groups[0].group_id;
        let samples = pb::SubmitSamplesRequest {
            run_id: run,
            idempotency_key: "s".into(),
            group_id,
            policy_version: 0,
            samples: vec![sample(), sample()],
        };
        work.submit_samples(samples).await.unwrap();
        work.lease_scoring(pb::LeaseScoringRequest { run_id: run, worker: "r".into(), max_groups: 1 }).await.unwrap();
        let scores = pb::SubmitScoresRequest {
            run_id: run,
            idempotency_key: "r".into(),
            group_id,
            rewards: vec![1.0, 0.0],
            components: vec![],
        };
        work.submit_scores(scores).await.unwrap();
        let batch =
            work.lease_batch(pb::LeaseBatchRequest { run_id: run, worker: "l".into() }).await.unwrap().into_inner();
        let step = pb::SubmitStepRequest {
            run_id: run,
            idempotency_key: "t".into(),
            lease_id: batch.lease_id,
            step: 0,
            metrics_json: String::new(),
            unpublished: false,
        };
        work.submit_step(step).await.unwrap();
        (run, work)
    });

    let mut settings = ActorSettings::new(ClientConfig::new(url), run);
    settings.learner = Some(weights_url);
    settings.max_groups = 1;
    // Far longer than the test waits: only the lost lease can end the wait.
    settings.fetch = FetchPolicy { wait: Duration::from_secs(120), ..FetchPolicy::default() };
    let handle = rt.handle().clone();
    let actor = std::thread::spawn(move || {
        let mut actor = Actor::<r1_model::CpuBackend>::connect(settings, handle, Default::default()).unwrap();
        let leased = actor.step().unwrap();
        (leased, actor.report().clone(), actor.version())
    });

    // The actor has leased at version 1 and is waiting for it; the learner's replacement
    // rolls the run back to the base model.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!actor.is_finished(), "the actor waits for version 1 while its lease is held");
    rt.block_on(work.rollback(pb::RollbackRequest { run_id: run, step: 0, idempotency_key: "rb".into() })).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !actor.is_finished() {
        assert!(std::time::Instant::now() < deadline, "the actor still waits for version 1 after the rollback");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (leased, report, version) = actor.join().unwrap();
    assert!(leased, "the actor had a lease");
    assert_eq!((report.abandoned, report.groups, version), (1, 0, 0), "{report:?}");
}
