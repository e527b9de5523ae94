//! The coordinator the dashboard's browser test (`tests/dashboard/`) looks at: a real
//! coordinator (gRPC and HTTP on one loopback port, bearer token, run folders) with three
//! runs driven by the scripted fleet of `tests/support/fleet.rs` over the real WorkService:
//!
//! - `demo`: running, `STEPS` steps done, one more each time the test asks;
//! - a run whose name, prompts and completions hold HTML and script, 2 steps done;
//! - `done`: completed after its single step.
//!
//! It also tells the registry about a worker last heard from 10 minutes ago, so the fleet
//! page shows one gone.
//!
//! Usage: `dashboard_fixture <data dir> [STEPS]`. It prints one JSON line,
//! `{"url", "token", "runs": {"demo", "xss", "done"}}`, then reads commands from stdin:
//! `step <run>` drives one learner step of that run and prints `{"run", "step"}`; `quit` or
//! the end of input stops it.

#[path = "../tests/support/fleet.rs"]
mod fleet;

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet::{Bearer, Fleet};
use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::Coordinator;
use r1_coordinator::service::{Auth, Runs, serve};
use r1_coordinator::store::{Clock, SystemClock};
use r1_coordinator::workers::Role;
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;
use r1_proto::v1::work_service_client::WorkServiceClient;

const TOKEN: &str = "e2e-token";
/// Script that must never run: every place a run's text shows up carries some.
pub const XSS_NAME: &str = "<img src=x onerror=\"window.__xss='name-img'\"><script>window.__xss='name'</script> xss";
const XSS_PROMPT: &str = "<script>window.__xss='prompt'</script>";
const XSS_COMPLETION: &str =
    "<script>window.__xss='completion'</script><img src=x onerror=\"window.__xss='completion-img'\">";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect("usage: dashboard_fixture <data dir> [STEPS]"));
    let steps: u64 = args.get(2).map_or(3, |s| s.parse().expect("STEPS is a number"));
    std::fs::create_dir_all(&dir).unwrap();

    let core = Coordinator::open(&dir.join("r1.db"), Arc::new(SystemClock), LeaseTtl::default())
        .unwrap()
        .with_run_folders(dir.join("runs"))
        .with_samples_per_step(2)
        .with_worker_gone_after(60_000);
    let core = Arc::new(core);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        Runs::new(core.clone(), Duration::from_millis(100)),
        Auth::bearer(TOKEN),
        std::future::pending(),
    ));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let bearer = Bearer(Some(TOKEN.into()));
    let mut runs = RunServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let work = WorkServiceClient::with_interceptor(channel, bearer);

    let mut submit = async |name: &str, prompt_extra: &str, total: u64, eval_every: u64| {
        let data = dir.join(format!("data-{}.jsonl", name.len()));
        fleet::write_dataset(&data, 20, prompt_extra);
        let spec = fleet::spec(name, &data, total, eval_every);
        runs.submit(pb::SubmitRunRequest { spec: Some(pb::submit_run_request::Spec::Toml(spec)) })
            .await
            .unwrap()
            .into_inner()
            .id
    };
    let done = submit("done", "", 1, 0).await;
    let xss = submit(XSS_NAME, XSS_PROMPT, 10, 0).await;
    let demo = submit("gsm-demo", "", 40, 4).await;
    let mut fleets = [
        Fleet::new(work.clone(), done, ""),
        Fleet::new(work.clone(), xss, XSS_COMPLETION),
        Fleet::new(work.clone(), demo, ""),
    ];
    fleets[0].step().await;
    for _ in 0..2 {
        fleets[1].step().await;
    }
    for _ in 0..steps {
        fleets[2].step().await;
    }
    let ten_minutes_ago = SystemClock.now() - 600_000;
    core.workers().leased(Role::Actor, "actor-1", demo as i64, None, Some(0), ten_minutes_ago);

    println!(
        "{}",
        serde_json::json!({"url": format!("http://{addr}"), "token": TOKEN, "runs": {"demo": demo, "xss": xss, "done": done}})
    );

    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["step", run] => {
                let run: u64 = run.parse().expect("step <run id>");
                let fleet = fleets.iter_mut().find(|f| f.run == run).expect("a run of this fixture");
                let step = fleet.step().await;
                println!("{}", serde_json::json!({"run": run, "step": step}));
            }
            ["quit"] => break,
            _ => eprintln!("unknown command `{line}`; use `step <run>` or `quit`"),
        }
    }
}
