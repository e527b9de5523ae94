//! RunService and WorkService over gRPC on 127.0.0.1:0: submit, get, list, cancel, watch,
//! one GRPO step driven through the worker protocol, and each error's status code.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::Coordinator;
use r1_coordinator::service::{Auth, Runs, serve};
use r1_coordinator::store::SystemClock;
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;
use r1_proto::v1::work_service_client::WorkServiceClient;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

fn spec_toml(data: &Path) -> String {
    format!(
        "name = 'svc'\nbase_model = 'm'\n[dataset]\npath = '{}'\nfields = {{prompt = 'q', answer = 'a'}}\n[[rewards]]\nname = 'acc'\nverifier = 'math'\nweight = 1.0\n[algorithm]\nkind = 'grpo'\n[schedule]\ntotal_steps = 5",
        data.display()
    )
}

async fn start(dir: &Path) -> (RunServiceClient<Channel>, tokio::sync::oneshot::Sender<()>) {
    let (runs, _, stop) = start_both(dir).await;
    (runs, stop)
}

async fn start_both(
    dir: &Path,
) -> (RunServiceClient<Channel>, WorkServiceClient<Channel>, tokio::sync::oneshot::Sender<()>) {
    let (runs, work, stop, _) = start_with(dir, LeaseTtl::default()).await;
    (runs, work, stop)
}

/// The coordinator with lease times `ttl`; also returns its URL.
async fn start_with(
    dir: &Path,
    ttl: LeaseTtl,
) -> (RunServiceClient<Channel>, WorkServiceClient<Channel>, tokio::sync::oneshot::Sender<()>, String) {
    let core =
        Coordinator::open(&dir.join("r1.db"), Arc::new(SystemClock), ttl).unwrap().with_run_folders(dir.join("runs"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runs = Runs::new(Arc::new(core), Duration::from_millis(20));
    tokio::spawn(serve(listener, runs, Auth::open(), async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    (RunServiceClient::new(channel.clone()), WorkServiceClient::new(channel), stop, format!("http://{addr}"))
}

fn submit(toml: &str) -> pb::SubmitRunRequest {
    pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(toml.into())) }
}

#[tokio::test]
async fn runs_are_submitted_listed_watched_and_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": \"2\"}\n{\"q\": \"2+2\", \"a\": 4}\n").unwrap();
    let (mut client, stop) = start(dir.path()).await;

    let run = client.submit(submit(&spec_toml(&data))).await.unwrap().into_inner();
    assert_eq!((run.name.as_str(), run.state, run.total_steps, run.step), ("svc", pb::RunState::Running as i32, 5, 0));
    assert!(run.spec_json.contains("\"group_size\":16"), "resolved spec: {}", run.spec_json);
    let json = pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Json(run.spec_json.clone())) };
    let second = client.submit(json).await.unwrap().into_inner();
    assert_eq!(second.id, run.id + 1);

    let listed: Vec<u64> =
        client.list(pb::ListRunsRequest {}).await.unwrap().into_inner().runs.iter().map(|r| r.id).collect();
    assert_eq!(listed, vec![second.id, run.id]);
    assert_eq!(client.get(pb::GetRunRequest { id: run.id }).await.unwrap().into_inner(), run);

    let mut watch = client.watch(pb::WatchRunRequest { id: run.id }).await.unwrap().into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.state, pb::RunState::Running as i32);
    let cancelled =
        client.cancel(pb::CancelRunRequest { id: run.id, reason: "by test".into() }).await.unwrap().into_inner();
    assert_eq!((cancelled.state, cancelled.message.as_str()), (pb::RunState::Cancelled as i32, "by test"));
    let last = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(last, cancelled, "the watch sends the change");
    assert!(
        tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().is_none(),
        "and ends with the run"
    );
    let _ = stop.send(());
}

#[tokio::test]
async fn errors_carry_the_code_a_client_can_act_on() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, "{\"q\": \"x\", \"a\": \"1\"}\n").unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"q\": \"x\"}\n").unwrap();
    let (mut client, stop) = start(dir.path()).await;
    let done = client.submit(submit(&spec_toml(&good))).await.unwrap().into_inner();
    client.cancel(pb::CancelRunRequest { id: done.id, reason: String::new() }).await.unwrap();

    // (what, the call's result, expected code, expected text)
    let cases: Vec<(&str, Result<(), tonic::Status>, Code, &str)> = vec![
        (
            "no spec",
            client.submit(pb::SubmitRunRequest { spec: None }).await.map(drop),
            Code::InvalidArgument,
            "no spec",
        ),
        ("bad TOML", client.submit(submit("name = ")).await.map(drop), Code::InvalidArgument, "run spec"),
        (
            "bad field",
            client.submit(submit(&spec_toml(&good).replace("total_steps = 5", "total_steps = 0"))).await.map(drop),
            Code::InvalidArgument,
            "schedule.total_steps",
        ),
        (
            "bad row",
            client.submit(submit(&spec_toml(&bad))).await.map(drop),
            Code::InvalidArgument,
            "row 1 field `answer`",
        ),
        (
            "missing file",
            client.submit(submit(&spec_toml(&dir.path().join("nope.jsonl")))).await.map(drop),
            Code::FailedPrecondition,
            "cannot read dataset",
        ),
        (
            "unknown run",
            client.get(pb::GetRunRequest { id: 77 }).await.map(drop),
            Code::NotFound,
            "run 77 does not exist",
        ),
        ("run id 0", client.get(pb::GetRunRequest { id: 0 }).await.map(drop), Code::InvalidArgument, "run id 0"),
        ("watch unknown run", client.watch(pb::WatchRunRequest { id: 77 }).await.map(drop), Code::NotFound, "run 77"),
        (
            "cancel twice",
            client.cancel(pb::CancelRunRequest { id: done.id, reason: String::new() }).await.map(drop),
            Code::FailedPrecondition,
            "is cancelled",
        ),
    ];
    for (what, got, code, text) in cases {
        let status = got.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(status.message().contains(text), "{what}: {}", status.message());
    }
    let _ = stop.send(());
}

fn sample(text: &str) -> pb::Sample {
    pb::Sample {
        text: text.into(),
        token_ids: vec![7, 8],
        logprobs: vec![-0.25, -1.5],
        truncated: false,
        generation_seconds: 0.0,
    }
}

#[tokio::test]
async fn one_grpo_step_through_the_worker_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": 2}\n").unwrap();
    let (mut runs, mut work, stop) = start_both(dir.path()).await;
    let toml = spec_toml(&data)
        .replace("total_steps = 5", "total_steps = 1")
        .replace("kind = 'grpo'", "kind = 'grpo'\ngroup_size = 2\nprompts_per_step = 1");
    let run = runs.submit(submit(&toml)).await.unwrap().into_inner().id;

    let lease = work
        .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "actor-0".into(), max_groups: 4 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((lease.groups.len(), lease.group_size, lease.policy_version), (1, 2, 0));
    let group = &lease.groups[0];
    let example = group.example.clone().unwrap();
    assert_eq!(example.prompt, Some(pb::example::Prompt::Text("1+1".into())));
    assert_eq!(example.answer.as_deref(), Some("2"));
    let renewed = work.renew(pb::RenewRequest { run_id: run, lease_id: lease.lease_id }).await.unwrap().into_inner();
    assert!(renewed.held && renewed.deadline_ms >= lease.deadline_ms);

    let samples = |key: &str, n: usize| pb::SubmitSamplesRequest {
        run_id: run,
        idempotency_key: key.into(),
        group_id: group.group_id,
        policy_version: 0,
        samples: (0..n).map(|i| sample(&format!("s{i}"))).collect(),
    };
    let accepted = pb::SubmitOutcome::Accepted as i32;
    for _ in 0..2 {
        let r = work.submit_samples(samples("gen-1", 2)).await.unwrap().into_inner();
        assert_eq!(r.outcome, accepted, "a retry with the same key returns the first outcome");
    }

    let jobs = work
        .lease_scoring(pb::LeaseScoringRequest { run_id: run, worker: "reward-0".into(), max_groups: 4 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jobs.groups[0].samples, vec![sample("s0"), sample("s1")]);
    let scores = pb::SubmitScoresRequest {
        run_id: run,
        idempotency_key: "score-1".into(),
        group_id: group.group_id,
        rewards: vec![1.0, 0.0],
        components: vec![],
    };
    assert_eq!(work.submit_scores(scores).await.unwrap().into_inner().outcome, accepted);

    let batch =
        work.lease_batch(pb::LeaseBatchRequest { run_id: run, worker: "learner-0".into() }).await.unwrap().into_inner();
    assert_eq!((batch.step, batch.groups.len()), (0, 1));
    assert_eq!(batch.groups[0].rewards, vec![1.0, 0.0]);
    let none =
        work.lease_batch(pb::LeaseBatchRequest { run_id: run, worker: "learner-1".into() }).await.unwrap().into_inner();
    assert!(none.groups.is_empty(), "one batch at a time");
    let step = pb::SubmitStepRequest {
        run_id: run,
        idempotency_key: "step-0".into(),
        lease_id: batch.lease_id,
        step: 0,
        metrics_json: r#"{"reward_mean": 0.5}"#.into(),
        unpublished: false,
    };
    for _ in 0..2 {
        let r = work.submit_step(step.clone()).await.unwrap().into_inner();
        assert_eq!(r.outcome, accepted);
    }
    let folder = dir.path().join("runs").join(run.to_string());
    let metrics = std::fs::read_to_string(folder.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let want = vec![
        serde_json::json!({"step": 1, "reward_mean": 0.5, "queue_generate": 0, "queue_score": 0, "queue_train": 0}),
    ];
    assert_eq!(lines, want, "one line per step, replays add none");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("spec.json")).unwrap()).unwrap();
    assert_eq!(spec["algorithm"]["group_size"], 2);

    // (step, path, Ok(()) or Err(code)): only the step the run stands at can be recorded.
    let cases =
        [(1, "ckpt/1", Ok(())), (0, "ckpt/0", Err(Code::FailedPrecondition)), (1, "", Err(Code::InvalidArgument))];
    for (step, path, want) in cases {
        let req = pb::RecordCheckpointRequest { run_id: run, step, path: path.into() };
        let got = work.record_checkpoint(req).await.map(drop).map_err(|s| s.code());
        assert_eq!(got, want, "checkpoint of step {step} at `{path}`");
    }
    let all = work.list_checkpoints(pb::ListCheckpointsRequest { run_id: run }).await.unwrap().into_inner().checkpoints;
    let got: Vec<_> = all.iter().map(|c| (c.step, c.path.as_str(), c.policy_version, c.epoch)).collect();
    assert_eq!(got, vec![(1, "ckpt/1", 1, 1)], "the checkpoint carries the progress of its step");

    let status = runs.get(pb::GetRunRequest { id: run }).await.unwrap().into_inner();
    let c = status.counters.unwrap();
    assert_eq!((status.state, status.step, status.policy_version), (pb::RunState::Completed as i32, 1, 1));
    let got = (c.prompts_drawn, c.groups_generated, c.groups_scored, c.groups_trained, c.replays);
    assert_eq!(got, (1, 1, 1, 1, 2));
    assert_eq!(status.queues.unwrap().done, 1);
    let _ = stop.send(());
}

#[tokio::test]
async fn worker_errors_carry_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": 2}\n{\"q\": \"2+2\", \"a\": 4}\n").unwrap();
    let (mut runs, mut work, stop) = start_both(dir.path()).await;
    let toml = spec_toml(&data).replace("kind = 'grpo'", "kind = 'grpo'\ngroup_size = 2");
    let run = runs.submit(submit(&toml)).await.unwrap().into_inner().id;
    let lease = work
        .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "a".into(), max_groups: 1 })
        .await
        .unwrap()
        .into_inner();
    let gid = lease.groups[0].group_id;
    let samples = |key: &str, group_id: u64, n: usize| pb::SubmitSamplesRequest {
        run_id: run,
        idempotency_key: key.into(),
        group_id,
        policy_version: 0,
        samples: (0..n).map(|_| sample("x")).collect(),
    };
    work.submit_samples(samples("k", gid, 2)).await.unwrap();
    // (what, the call's result, expected code, expected text)
    let mut cases: Vec<(&str, Result<(), tonic::Status>, Code, &str)> = vec![
        (
            "empty key",
            work.submit_samples(samples("", gid, 2)).await.map(drop),
            Code::InvalidArgument,
            "idempotency_key",
        ),
        ("key reused", work.submit_samples(samples("k", gid, 1)).await.map(drop), Code::AlreadyExists, "key `k`"),
        ("unknown group", work.submit_samples(samples("k2", 999, 2)).await.map(drop), Code::NotFound, "group 999"),
        (
            "wrong sample count",
            work.submit_samples(samples("k3", gid, 3)).await.map(drop),
            Code::InvalidArgument,
            "has 3 samples",
        ),
        (
            "unknown lease",
            work.renew(pb::RenewRequest { run_id: run, lease_id: 999 }).await.map(drop),
            Code::NotFound,
            "lease 999",
        ),
        (
            "unknown run",
            work.lease_batch(pb::LeaseBatchRequest { run_id: 999, worker: "l".into() }).await.map(drop),
            Code::NotFound,
            "run 999",
        ),
        (
            "bad metrics",
            work.submit_step(pb::SubmitStepRequest {
                run_id: run,
                idempotency_key: "s".into(),
                lease_id: 1,
                step: 0,
                metrics_json: "{".into(),
                unpublished: false,
            })
            .await
            .map(drop),
            Code::InvalidArgument,
            "metrics_json",
        ),
    ];
    let sft = spec_toml(&data).replace("kind = 'grpo'", "kind = 'sft'");
    let sft = runs.submit(submit(&sft)).await.unwrap().into_inner().id;
    cases.push((
        "generation for an SFT run",
        work.lease_prompts(pb::LeasePromptsRequest { run_id: sft, worker: "a".into(), max_groups: 1 }).await.map(drop),
        Code::FailedPrecondition,
        "is an SFT run",
    ));
    runs.cancel(pb::CancelRunRequest { id: run, reason: String::new() }).await.unwrap();
    cases.push((
        "cancelled run",
        work.lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "a".into(), max_groups: 1 }).await.map(drop),
        Code::FailedPrecondition,
        "is not running",
    ));
    for (what, got, code, text) in cases {
        let status = got.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(status.message().contains(text), "{what}: {}", status.message());
    }
    let _ = stop.send(());
}

/// One whole GRPO step of a run with one prompt per step and G = 2, through the wire.
async fn grpc_step(work: &mut WorkServiceClient<Channel>, run: u64, k: &str) {
    grpc_step_published(work, run, k, true).await
}

/// [`grpc_step`], saying whether the learner publishes the step's weights.
async fn grpc_step_published(work: &mut WorkServiceClient<Channel>, run: u64, k: &str, published: bool) {
    let lease = work
        .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "a".into(), max_groups: 1 })
        .await
        .unwrap()
        .into_inner();
    let group_id = lease.groups[0].group_id;
    work.submit_samples(pb::SubmitSamplesRequest {
        run_id: run,
        idempotency_key: format!("{k}-s"),
        group_id,
        policy_version: lease.policy_version,
        samples: vec![sample("2"), sample("3")],
    })
    .await
    .unwrap();
    work.lease_scoring(pb::LeaseScoringRequest { run_id: run, worker: "r".into(), max_groups: 1 }).await.unwrap();
    work.submit_scores(pb::SubmitScoresRequest {
        run_id: run,
        idempotency_key: format!("{k}-r"),
        group_id,
        rewards: vec![1.0, 0.0],
        components: vec![],
    })
    .await
    .unwrap();
    let batch = work.lease_batch(pb::LeaseBatchRequest { run_id: run, worker: "l".into() }).await.unwrap().into_inner();
    let r = work
        .submit_step(pb::SubmitStepRequest {
            run_id: run,
            idempotency_key: format!("{k}-t"),
            lease_id: batch.lease_id,
            step: batch.step,
            metrics_json: "{\"loss\": 1.0}".into(),
            unpublished: !published,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome, pb::SubmitOutcome::Accepted as i32, "{k}");
}

#[tokio::test]
async fn rollback_restores_a_checkpoint_and_its_refusals_carry_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": 2}\n".repeat(6)).unwrap();
    let (mut runs, mut work, stop) = start_both(dir.path()).await;
    let toml = spec_toml(&data)
        .replace("total_steps = 5", "total_steps = 3")
        .replace("kind = 'grpo'", "kind = 'grpo'\ngroup_size = 2\nprompts_per_step = 1");
    let run = runs.submit(submit(&toml)).await.unwrap().into_inner().id;
    grpc_step(&mut work, run, "1").await;
    work.record_checkpoint(pb::RecordCheckpointRequest { run_id: run, step: 1, path: "/ckpt/step-1".into() })
        .await
        .unwrap();
    grpc_step(&mut work, run, "2").await;
    let rollback =
        |run_id: u64, step: u64, key: &str| pb::RollbackRequest { run_id, step, idempotency_key: key.into() };

    // Refusals first: none of them changes anything.
    let refused: [(pb::RollbackRequest, Code, &str); 5] = [
        (rollback(0, 1, "k"), Code::InvalidArgument, "run id 0 is not valid"),
        (rollback(run, 1, ""), Code::InvalidArgument, "idempotency_key is empty"),
        (rollback(99, 1, "k"), Code::NotFound, "run 99 does not exist"),
        (rollback(run, 3, "k"), Code::FailedPrecondition, "cannot roll back forward to step 3"),
        (
            rollback(run, 2, "k"),
            Code::FailedPrecondition,
            "has no checkpoint of step 2 to roll back to; roll back to a recorded step",
        ),
    ];
    for (req, code, text) in refused {
        let e = work.rollback(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{}", e.message());
        assert!(e.message().contains(text), "`{}` lacks `{text}`", e.message());
    }
    assert_eq!(runs.get(pb::GetRunRequest { id: run }).await.unwrap().into_inner().step, 2);

    let done = work.rollback(rollback(run, 1, "k")).await.unwrap().into_inner();
    let c = done.checkpoint.clone().unwrap();
    assert_eq!((c.step, c.path.as_str(), c.policy_version, c.index), (1, "/ckpt/step-1", 1, 1));
    assert_eq!((done.from_step, done.groups_removed, done.groups_restored), (2, 1, 0));
    let again = work.rollback(rollback(run, 1, "k")).await.unwrap().into_inner();
    assert_eq!(again, done, "the same key gets the same answer");
    let e = work.rollback(rollback(run, 0, "k")).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{}", e.message());

    let s = runs.get(pb::GetRunRequest { id: run }).await.unwrap().into_inner();
    let counters = s.counters.unwrap();
    assert_eq!((s.step, s.policy_version, s.index), (1, 1, 1));
    assert_eq!((counters.prompts_drawn, counters.groups_trained, counters.replays, counters.rollbacks), (1, 1, 1, 1));
    let metrics = std::fs::read_to_string(dir.path().join("runs").join(run.to_string()).join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1, "the line of the undone step is gone: {metrics}");

    // The run goes on from the checkpoint to its end; then it cannot roll back any more.
    grpc_step(&mut work, run, "2b").await;
    grpc_step(&mut work, run, "3").await;
    let s = runs.get(pb::GetRunRequest { id: run }).await.unwrap().into_inner();
    assert_eq!((s.state, s.counters.unwrap().groups_trained), (pb::RunState::Completed as i32, 3));
    let e = work.rollback(rollback(run, 1, "k2")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(e.message().contains("is completed; only a running run can be rolled back"), "{}", e.message());
    let _ = stop.send(());
}

/// An actor that leased prompts at version 2 and is still waiting for those weights when the
/// learner rolls the run back to step 1 must hear that its lease is gone (version 2 may never
/// be published again), while renewals keep a live lease held past its time to live.
#[tokio::test]
async fn a_lease_undone_by_a_rollback_is_reported_lost_to_its_keep_alive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": 2}\n".repeat(6)).unwrap();
    let ttl = LeaseTtl { generate_ms: 600, score_ms: 600, train_ms: 600, ..LeaseTtl::default() };
    let (mut runs, mut work, stop, url) = start_with(dir.path(), ttl).await;
    let toml = spec_toml(&data).replace("kind = 'grpo'", "kind = 'grpo'\ngroup_size = 2\nprompts_per_step = 1");
    let run = runs.submit(submit(&toml)).await.unwrap().into_inner().id;
    grpc_step(&mut work, run, "1").await;
    work.record_checkpoint(pb::RecordCheckpointRequest { run_id: run, step: 1, path: "/ckpt/step-1".into() })
        .await
        .unwrap();
    grpc_step(&mut work, run, "2").await;

    let actor = r1_proto::client::connect(&r1_proto::client::ClientConfig::new(url)).await.unwrap();
    let mut actor = r1_proto::client::work_client(actor, 1 << 20);
    let lease = actor
        .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "a".into(), max_groups: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lease.policy_version, 2);
    let handle = tokio::runtime::Handle::current();
    let renew = r1_proto::client::keep_alive(&handle, actor.clone(), run, lease.lease_id, lease.deadline_ms);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!renew.is_lost(), "renewals hold the lease past its 600 ms");

    work.rollback(pb::RollbackRequest { run_id: run, step: 1, idempotency_key: "rb".into() }).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), renew.lost())
        .await
        .expect("the keep-alive reports the lease lost after the rollback");
    assert!(renew.is_lost());
    let next = actor
        .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "a".into(), max_groups: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.policy_version, 1, "the work is handed out again at the version the run is at");
    let _ = stop.send(());
}

/// A step the learner does not publish (publish_every > 1) advances the step but not the
/// version actors sample with; a checkpoint of it makes it a version (the learner serves a
/// checkpoint's weights when it resumes from it).
#[tokio::test]
async fn unpublished_steps_keep_the_policy_version_until_published_or_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": 2}\n".repeat(8)).unwrap();
    let (mut runs, mut work, stop) = start_both(dir.path()).await;
    let toml = spec_toml(&data)
        .replace("total_steps = 5", "total_steps = 4")
        .replace("kind = 'grpo'", "kind = 'grpo'\ngroup_size = 2\nprompts_per_step = 1");
    let run = runs.submit(submit(&toml)).await.unwrap().into_inner().id;
    let version = |s: pb::RunStatus| (s.step, s.policy_version);

    grpc_step_published(&mut work, run, "1", false).await;
    let s = runs.get(pb::GetRunRequest { id: run }).await.unwrap().into_inner();
    assert_eq!(version(s), (1, 0), "step 1 is not a version");
    let batch_version = |work: &mut WorkServiceClient<Channel>| {
        let mut work = work.clone();
        async move {
            let lease = work
                .lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "a".into(), max_groups: 8 })
                .await
                .unwrap()
                .into_inner();
            (lease.policy_version, lease.groups.len())
        }
    };
    let (v, _) = batch_version(&mut work).await;
    assert_eq!(v, 0, "actors keep sampling with version 0");

    work.record_checkpoint(pb::RecordCheckpointRequest { run_id: run, step: 1, path: "/ckpt/step-1".into() })
        .await
        .unwrap();
    let s = runs.get(pb::GetRunRequest { id: run }).await.unwrap().into_inner();
    assert_eq!(version(s), (1, 1), "a checkpointed step is a version");
    let cps = work.list_checkpoints(pb::ListCheckpointsRequest { run_id: run }).await.unwrap().into_inner();
    assert_eq!(cps.checkpoints[0].policy_version, 1, "and its record says so");

    let _ = stop.send(());
}
