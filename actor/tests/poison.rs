//! A group that crashes generation (here a prompt longer than the model's context) is
//! reported to the coordinator, retried, and failed for good after `leases.max_attempts`;
//! the actor goes on sampling the other groups and never stops for it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use r1_actor::{Actor, ActorSettings};
use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::Coordinator;
use r1_coordinator::service::{Auth, Runs, serve};
use r1_coordinator::store::SystemClock;
use r1_proto::client::ClientConfig;
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;

fn fixture() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/qwen2-tiny")
        .canonicalize()
        .unwrap()
}

#[test]
fn a_group_that_crashes_generation_fails_and_the_actor_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let data = dir.path().join("d.jsonl");
    let long = "12 + 34 = ? ".repeat(200);
    std::fs::write(&data, format!("{{\"q\": \"1+1\", \"a\": \"2\"}}\n{{\"q\": \"{long}\", \"a\": \"46\"}}\n")).unwrap();
    let spec = format!(
        "name = 'poison'\nbase_model = '{}'\n[dataset]\npath = '{}'\nfields = {{prompt = 'q', answer = 'a'}}\n\
         [[rewards]]\nname = 'acc'\nverifier = 'math'\nweight = 1.0\n\
         [algorithm]\nkind = 'grpo'\ngroup_size = 2\nprompts_per_step = 2\n\
         [algorithm.sampling]\ntemplate = 'raw'\nmax_new_tokens = 4\n[schedule]\ntotal_steps = 1",
        fixture().display(),
        data.display()
    );
    let ttl = LeaseTtl { max_attempts: 2, ..LeaseTtl::default() };
    let core = Coordinator::open(&dir.path().join("r1.db"), Arc::new(SystemClock), ttl).unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(serve(
        listener,
        Runs::new(Arc::new(core), Duration::from_millis(20)),
        Auth::open(),
        std::future::pending(),
    ));
    let mut runs = rt.block_on(async {
        RunServiceClient::new(tonic::transport::Channel::from_shared(url.clone()).unwrap().connect().await.unwrap())
    });
    let submit = pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec)) };
    let run = rt.block_on(runs.submit(submit)).unwrap().into_inner().id;

    let mut settings = ActorSettings::new(ClientConfig::new(url), run);
    settings.max_groups = 2;
    let handle = rt.handle().clone();
    let report = std::thread::spawn(move || {
        let mut actor = Actor::<r1_model::CpuBackend>::connect(settings, handle, Default::default()).unwrap();
        // Both groups together: the batch fails, each is tried alone, the long one fails.
        assert!(actor.step().unwrap());
        // The coordinator hands the failed group out again; its second failure is its last.
        assert!(actor.step().unwrap());
        // Nothing is left to sample, and the actor is still there to say so.
        assert!(!actor.step().unwrap());
        actor.report().clone()
    })
    .join()
    .unwrap();
    assert_eq!((report.groups, report.failed), (1, 2), "{report:?}");
    let status = rt.block_on(runs.get(pb::GetRunRequest { id: run })).unwrap().into_inner();
    let (c, q) = (status.counters.unwrap(), status.queues.unwrap());
    assert_eq!((c.groups_generated, c.groups_failed, q.failed), (1, 1, 1), "{c:?}");
}
