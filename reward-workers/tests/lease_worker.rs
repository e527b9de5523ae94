//! Reward workers leasing from a real coordinator over gRPC: groups are scored with the run's
//! reward spec, a worker that dies holding a lease loses nothing — the lease expires and
//! another worker scores the group, counted once — and a group that panics the verifier is
//! reported, retried and failed for good without ending the worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::Coordinator;
use r1_coordinator::service::{Auth, Runs, serve};
use r1_coordinator::store::SystemClock;
use r1_proto::client::ClientConfig;
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;
use r1_proto::v1::work_service_client::WorkServiceClient;
use r1_reward::lease_worker::LeaseWorker;
use tonic::transport::Channel;

const SPEC: &str = "name = 'lease'\nbase_model = 'm'\n[dataset]\npath = 'DATA'\nfields = {prompt = 'q', answer = 'a'}\n\
[[rewards]]\nname = 'accuracy'\nverifier = 'math'\nweight = 1.0\n[[rewards]]\nname = 'format'\nverifier = 'format'\nweight = 0.5\n\
[algorithm]\nkind = 'grpo'\ngroup_size = 2\nprompts_per_step = 2\n[schedule]\ntotal_steps = 1";

fn sample(text: &str) -> pb::Sample {
    pb::Sample {
        text: text.into(),
        token_ids: vec![7, 8, 9],
        logprobs: vec![-0.5; 3],
        truncated: false,
        generation_seconds: 0.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_score_leased_groups_and_a_dead_workers_lease_is_scored_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": \"2\"}\n{\"q\": \"3*3\", \"a\": \"9\"}\n").unwrap();
    let ttl = LeaseTtl { score_ms: 300, ..LeaseTtl::default() };
    let core = Coordinator::open(&dir.path().join("r1.db"), Arc::new(SystemClock), ttl).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, Runs::new(Arc::new(core), Duration::from_millis(20)), Auth::open(), async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let (mut runs, mut work) = (RunServiceClient::new(channel.clone()), WorkServiceClient::new(channel.clone()));
    let spec = SPEC.replace("DATA", &data.display().to_string());
    let run = runs
        .submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec)) })
        .await
        .unwrap()
        .into_inner()
        .id;

    // An actor samples both prompts: one right answer in the R1 format, one wrong without it.
    let prompts = work
        .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "actor".into(), max_groups: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(prompts.groups.len(), 2);
    for g in &prompts.groups {
        let answer = g.example.as_ref().unwrap().answer.clone().unwrap();
        let right = format!("<think>easy</think> <answer>{answer}</answer>");
        work.submit_samples(pb::SubmitSamplesRequest {
            run_id: run,
            idempotency_key: format!("gen-{}", g.group_id),
            group_id: g.group_id,
            policy_version: 0,
            samples: vec![sample(&right), sample("the answer is \\boxed{5}")],
        })
        .await
        .unwrap();
    }

    // A worker leases one group and dies without submitting.
    let dead = work
        .lease_scoring(pb::LeaseScoringRequest { run_id: run, worker: "dead".into(), max_groups: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dead.groups.len(), 1);

    // A live worker scores the other group now and the dead worker's once its lease expires.
    let cfg = ClientConfig::new(format!("http://{addr}"));
    let mut worker = LeaseWorker::connect(&cfg, run, "reward-0", 4).await.unwrap();
    assert_eq!(worker.step().await.unwrap(), 1);
    assert_eq!(worker.step().await.unwrap(), 0, "the dead worker's lease still holds");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(worker.step().await.unwrap(), 1);

    // The learner gets both groups, each scored once, with the composed rewards.
    let batch =
        work.lease_batch(pb::LeaseBatchRequest { run_id: run, worker: "learner".into() }).await.unwrap().into_inner();
    assert_eq!(batch.groups.len(), 2);
    for g in &batch.groups {
        assert_eq!(g.rewards, vec![1.5, 0.0], "group {}: right+formatted, then wrong+unformatted", g.group_id);
    }
    let counters = runs.get(pb::GetRunRequest { id: run }).await.unwrap().into_inner().counters.unwrap();
    assert_eq!((counters.groups_scored, counters.leases_expired), (2, 1));
}

/// A coordinator on a runtime of its own, so that [`Crashable::crash`] ends it the way a killed
/// process ends: every task and connection dropped at once.
struct Crashable {
    runtime: Option<tokio::runtime::Runtime>,
    addr: std::net::SocketAddr,
}

impl Crashable {
    fn start(addr: &str, db: &std::path::Path, token: &str) -> Crashable {
        let listener = std::net::TcpListener::bind(addr).expect("the port is free");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let core = Coordinator::open(db, Arc::new(SystemClock), LeaseTtl::default()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let auth = Auth::bearer(token);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve(listener, Runs::new(Arc::new(core), Duration::from_millis(20)), auth, std::future::pending()).await
        });
        Crashable { runtime: Some(runtime), addr }
    }

    fn crash(&mut self) {
        self.runtime.take().expect("running").shutdown_background();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_outlives_a_coordinator_crash_and_finishes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (db, data) = (dir.path().join("r1.db"), dir.path().join("d.jsonl"));
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": \"2\"}\n{\"q\": \"3*3\", \"a\": \"9\"}\n").unwrap();
    let mut coordinator = Crashable::start("127.0.0.1:0", &db, "t0ken");
    let addr = coordinator.addr;
    let cfg = ClientConfig::new(format!("http://{addr}")).with_token(Some("t0ken".into()));
    let channel = r1_proto::client::connect(&cfg).await.unwrap();
    let mut runs = r1_proto::client::run_client(channel.clone(), cfg.max_message_bytes);
    let work = r1_proto::client::work_client(channel, cfg.max_message_bytes);
    let spec = SPEC.replace("DATA", &data.display().to_string());
    let run = runs
        .submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec)) })
        .await
        .unwrap()
        .into_inner()
        .id;

    // A worker without the token is refused at once, not retried.
    let anonymous =
        LeaseWorker::connect(&ClientConfig::new(cfg.url.clone()), run, "anon", 4).await.err().expect("refused");
    assert!(anonymous.to_string().contains("Unauthenticated"), "{anonymous}");

    let mut worker = LeaseWorker::connect(&cfg, run, "reward-0", 4).await.unwrap();
    let scoring = tokio::spawn(async move { worker.run(Duration::from_millis(20)).await });

    // The actor samples both prompts but submits only the first before the crash.
    let prompts = work
        .clone()
        .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "actor".into(), max_groups: 2 })
        .await
        .unwrap()
        .into_inner();
    let submit = |g: &pb::Group| {
        let answer = g.example.as_ref().unwrap().answer.clone().unwrap();
        pb::SubmitSamplesRequest {
            run_id: run,
            idempotency_key: format!("gen-{}", g.group_id),
            group_id: g.group_id,
            policy_version: 0,
            samples: vec![sample(&format!("<think>easy</think> <answer>{answer}</answer>")), sample("no idea")],
        }
    };
    work.clone().submit_samples(submit(&prompts.groups[0])).await.unwrap();
    let scored = |runs: pb::RunStatus| runs.counters.unwrap().groups_scored;
    let deadline = Instant::now() + Duration::from_secs(10);
    while scored(runs.get(pb::GetRunRequest { id: run }).await.unwrap().into_inner()) < 1 {
        assert!(Instant::now() < deadline, "the worker never scored the first group");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The coordinator crashes while the worker polls, and is back 500 ms later.
    coordinator.crash();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!scoring.is_finished(), "the worker must survive the crash: {:?}", scoring.await);
    let mut coordinator =
        tokio::task::spawn_blocking(move || Crashable::start(&addr.to_string(), &db, "t0ken")).await.unwrap();

    // The actor's second group is scored by the same worker; the learner trains the step and
    // the run ends, which ends the worker.
    let policy = r1_proto::client::RetryPolicy::idempotent();
    let second = submit(&prompts.groups[1]);
    r1_proto::client::retry("SubmitSamples", &policy, || {
        let (mut work, second) = (work.clone(), second.clone());
        async move { work.submit_samples(second).await }
    })
    .await
    .unwrap();
    let batch = loop {
        let batch = work
            .clone()
            .lease_batch(pb::LeaseBatchRequest { run_id: run, worker: "learner".into() })
            .await
            .unwrap()
            .into_inner();
        if !batch.groups.is_empty() {
            break batch;
        }
        assert!(Instant::now() < deadline, "the second group was never scored after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(batch.groups.len(), 2);
    for g in &batch.groups {
        assert_eq!(g.rewards, vec![1.5, 0.0], "group {}", g.group_id);
    }
    work.clone()
        .submit_step(pb::SubmitStepRequest {
            run_id: run,
            idempotency_key: "step-0".into(),
            lease_id: batch.lease_id,
            step: 0,
            metrics_json: String::new(),
            unpublished: false,
        })
        .await
        .unwrap();
    let scored_by_worker = tokio::time::timeout(Duration::from_secs(10), scoring)
        .await
        .expect("the worker ends with the run")
        .unwrap()
        .unwrap();
    assert_eq!(scored_by_worker, 2);
    let status = runs.get(pb::GetRunRequest { id: run }).await.unwrap().into_inner();
    assert_eq!((status.state, status.counters.unwrap().groups_scored), (pb::RunState::Completed as i32, 2));
    coordinator.crash();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_panics_the_verifier_fails_and_the_worker_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": \"2\"}\n{\"q\": \"3*3\", \"a\": \"9\"}\n").unwrap();
    let ttl = LeaseTtl { max_attempts: 2, ..LeaseTtl::default() };
    let core = Coordinator::open(&dir.path().join("r1.db"), Arc::new(SystemClock), ttl).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, Runs::new(Arc::new(core), Duration::from_millis(20)), Auth::open(), async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let (mut runs, mut work) = (RunServiceClient::new(channel.clone()), WorkServiceClient::new(channel.clone()));
    let spec = SPEC.replace("DATA", &data.display().to_string());
    let run = runs
        .submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec)) })
        .await
        .unwrap()
        .into_inner()
        .id;
    // A scorer whose verifier panics on one completion: the poison.
    let scorer: r1_reward::lease_worker::SampleScorer = Arc::new(|job: &r1_reward::job::ScoreJob, _: Option<usize>| {
        if job.completion.contains("POISON") {
            panic!("verifier bug on {}", job.completion);
        }
        r1_reward::job::ScoreResult::new(&job.id, 1.0, r1_reward::job::Status::Ok, "fine")
    });
    let cfg = ClientConfig::new(format!("http://{addr}"));
    let mut worker = LeaseWorker::connect(&cfg, run, "reward-0", 4).await.unwrap().with_scorer(scorer);
    let mut poison = None;
    // Two attempts (max_attempts = 2): the actor samples the poison group again after the first.
    for attempt in 0..2 {
        let prompts = work
            .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "actor".into(), max_groups: 2 })
            .await
            .unwrap()
            .into_inner();
        for g in &prompts.groups {
            let text = if poison.is_none_or(|p| p == g.group_id)
                && g.example.as_ref().unwrap().answer.as_deref() == Some("2")
            {
                poison = Some(g.group_id);
                "POISON"
            } else {
                "fine"
            };
            work.submit_samples(pb::SubmitSamplesRequest {
                run_id: run,
                idempotency_key: format!("gen-{attempt}-{}", g.group_id),
                group_id: g.group_id,
                policy_version: 0,
                samples: vec![sample(text), sample(text)],
            })
            .await
            .unwrap();
        }
        // The worker reports the poison group and scores the rest; it does not stop.
        assert!(worker.step().await.unwrap() >= 1, "attempt {attempt}");
    }
    let status = runs.get(pb::GetRunRequest { id: run }).await.unwrap().into_inner();
    let counters = status.counters.unwrap();
    assert_eq!((counters.groups_scored, counters.groups_failed), (1, 1), "{counters:?}");
    assert_eq!(status.queues.unwrap().failed, 1);
    // The worker is still alive and answers.
    assert_eq!(worker.step().await.unwrap(), 0);
}
