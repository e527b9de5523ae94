//! A scored group the learner cannot train (here a sample holding a token id outside the
//! model's vocabulary, as a buggy or hostile actor could submit) is reported to the
//! coordinator and failed; the learner trains the rest of the batch and finishes the run.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::Coordinator;
use r1_coordinator::service::{Auth, Runs, serve};
use r1_coordinator::store::SystemClock;
use r1_learner::collective::SingleRank;
use r1_learner::service::{LearnerSettings, lead};
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

#[test]
fn a_group_the_learner_cannot_train_fails_and_the_step_trains_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"1+1\", \"a\": \"2\"}\n{\"q\": \"2+2\", \"a\": \"4\"}\n").unwrap();
    let spec = format!(
        "name = 'poison'\nbase_model = '{}'\n[dataset]\npath = '{}'\nfields = {{prompt = 'q', answer = 'a'}}\n\
         [[rewards]]\nname = 'acc'\nverifier = 'math'\nweight = 1.0\n\
         [algorithm]\nkind = 'grpo'\ngroup_size = 2\nprompts_per_step = 2\n\
         [algorithm.sampling]\ntemplate = 'raw'\nmax_new_tokens = 4\n[schedule]\ntotal_steps = 1",
        fixture().display(),
        data.display()
    );
    let core = Coordinator::open(&dir.path().join("r1.db"), Arc::new(SystemClock), LeaseTtl::default()).unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(serve(
        listener,
        Runs::new(Arc::new(core), Duration::from_millis(20)),
        Auth::open(),
        std::future::pending(),
    ));
    let (mut runs, mut work) = rt.block_on(async {
        let channel = tonic::transport::Channel::from_shared(url.clone()).unwrap().connect().await.unwrap();
        (RunServiceClient::new(channel.clone()), WorkServiceClient::new(channel))
    });
    let submit = pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec)) };
    let run = rt.block_on(runs.submit(submit)).unwrap().into_inner().id;

    // Play actor and reward worker by hand: two groups, the second with a token id the
    // model's vocabulary does not have.
    let lease = rt
        .block_on(work.lease_prompts(pb::LeasePromptsRequest { run_id: run, worker: "hand".into(), max_groups: 2 }))
        .unwrap()
        .into_inner();
    assert_eq!(lease.groups.len(), 2);
    for (k, g) in lease.groups.iter().enumerate() {
        let bad_token = if k == 1 { 1_000_000 } else { 7 };
        let samples = (0..2)
            .map(|i| pb::Sample {
                text: format!("sample {i}"),
                token_ids: vec![5, bad_token, 9],
                logprobs: vec![-1.0, -2.0, -0.5],
                ..Default::default()
            })
            .collect();
        let req = pb::SubmitSamplesRequest {
            run_id: run,
            idempotency_key: format!("s{k}"),
            group_id: g.group_id,
            policy_version: lease.policy_version,
            samples,
        };
        rt.block_on(work.submit_samples(req)).unwrap();
    }
    let scoring = rt
        .block_on(work.lease_scoring(pb::LeaseScoringRequest { run_id: run, worker: "hand".into(), max_groups: 2 }))
        .unwrap()
        .into_inner();
    assert_eq!(scoring.groups.len(), 2);
    for g in &scoring.groups {
        let req = pb::SubmitScoresRequest {
            run_id: run,
            idempotency_key: format!("r{}", g.group_id),
            group_id: g.group_id,
            rewards: vec![1.0, 0.0],
            components: vec![],
        };
        rt.block_on(work.submit_scores(req)).unwrap();
    }

    let settings = LearnerSettings::new(ClientConfig::new(url), run, dir.path().join("ckpt"));
    let report = lead::<r1_model::CpuTrainBackend>(
        &settings,
        &mut SingleRank,
        None,
        rt.handle(),
        Default::default(),
        Arc::new(AtomicBool::new(false)),
    )
    .expect("the learner finishes the run despite the poison group");
    assert_eq!((report.steps, report.step, report.failed_groups), (1, 1, 1), "{report:?}");
    let status = rt.block_on(runs.get(pb::GetRunRequest { id: run })).unwrap().into_inner();
    let (c, q) = (status.counters.unwrap(), status.queues.unwrap());
    assert_eq!((status.step, c.groups_failed, q.failed), (1, 1, 1), "{c:?} {q:?}");
}
