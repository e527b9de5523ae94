//! The RunService over gRPC on 127.0.0.1:0: submit, get, list, cancel, watch, and each
//! error's status code.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::Coordinator;
use r1_coordinator::service::{Runs, serve};
use r1_coordinator::store::SystemClock;
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;
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
    let core = Coordinator::open(
        &dir.join("r1.db"),
        Arc::new(SystemClock),
        LeaseTtl::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runs = Runs::new(Arc::new(core), Duration::from_millis(20));
    tokio::spawn(serve(listener, runs, async move {
        let _ = stopped.await;
    }));
    let client = RunServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (client, stop)
}

fn submit(toml: &str) -> pb::SubmitRunRequest {
    pb::SubmitRunRequest {
        spec: Some(pb::submit_run_request::Spec::Toml(toml.into())),
    }
}

#[tokio::test]
async fn runs_are_submitted_listed_watched_and_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(
        &data,
        "{\"q\": \"1+1\", \"a\": \"2\"}\n{\"q\": \"2+2\", \"a\": 4}\n",
    )
    .unwrap();
    let (mut client, stop) = start(dir.path()).await;

    let run = client
        .submit(submit(&spec_toml(&data)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (run.name.as_str(), run.state, run.total_steps, run.step),
        ("svc", pb::RunState::Running as i32, 5, 0)
    );
    assert!(
        run.spec_json.contains("\"group_size\":16"),
        "resolved spec: {}",
        run.spec_json
    );
    let json = pb::SubmitRunRequest {
        spec: Some(pb::submit_run_request::Spec::Json(run.spec_json.clone())),
    };
    let second = client.submit(json).await.unwrap().into_inner();
    assert_eq!(second.id, run.id + 1);

    let listed: Vec<u64> = client
        .list(pb::ListRunsRequest {})
        .await
        .unwrap()
        .into_inner()
        .runs
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec![second.id, run.id]);
    assert_eq!(
        client
            .get(pb::GetRunRequest { id: run.id })
            .await
            .unwrap()
            .into_inner(),
        run
    );

    let mut watch = client
        .watch(pb::WatchRunRequest { id: run.id })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.state, pb::RunState::Running as i32);
    let cancelled = client
        .cancel(pb::CancelRunRequest {
            id: run.id,
            reason: "by test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (cancelled.state, cancelled.message.as_str()),
        (pb::RunState::Cancelled as i32, "by test")
    );
    let last = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(last, cancelled, "the watch sends the change");
    assert!(
        tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .is_none(),
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
    let done = client
        .submit(submit(&spec_toml(&good)))
        .await
        .unwrap()
        .into_inner();
    client
        .cancel(pb::CancelRunRequest {
            id: done.id,
            reason: String::new(),
        })
        .await
        .unwrap();

    let sft = spec_toml(&good).replace("kind = 'grpo'", "kind = 'sft'");
    // (what, the call's result, expected code, expected text)
    let cases: Vec<(&str, Result<(), tonic::Status>, Code, &str)> = vec![
        (
            "no spec",
            client
                .submit(pb::SubmitRunRequest { spec: None })
                .await
                .map(drop),
            Code::InvalidArgument,
            "no spec",
        ),
        (
            "bad TOML",
            client.submit(submit("name = ")).await.map(drop),
            Code::InvalidArgument,
            "run spec",
        ),
        (
            "bad field",
            client
                .submit(submit(
                    &spec_toml(&good).replace("total_steps = 5", "total_steps = 0"),
                ))
                .await
                .map(drop),
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
            client
                .submit(submit(&spec_toml(&dir.path().join("nope.jsonl"))))
                .await
                .map(drop),
            Code::FailedPrecondition,
            "cannot read dataset",
        ),
        (
            "sft",
            client.submit(submit(&sft)).await.map(drop),
            Code::Unimplemented,
            "SFT",
        ),
        (
            "unknown run",
            client.get(pb::GetRunRequest { id: 77 }).await.map(drop),
            Code::NotFound,
            "run 77 does not exist",
        ),
        (
            "run id 0",
            client.get(pb::GetRunRequest { id: 0 }).await.map(drop),
            Code::InvalidArgument,
            "run id 0",
        ),
        (
            "watch unknown run",
            client.watch(pb::WatchRunRequest { id: 77 }).await.map(drop),
            Code::NotFound,
            "run 77",
        ),
        (
            "cancel twice",
            client
                .cancel(pb::CancelRunRequest {
                    id: done.id,
                    reason: String::new(),
                })
                .await
                .map(drop),
            Code::FailedPrecondition,
            "is cancelled",
        ),
    ];
    for (what, got, code, text) in cases {
        let status = got.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains(text),
            "{what}: {}",
            status.message()
        );
    }
    let _ = stop.send(());
}
