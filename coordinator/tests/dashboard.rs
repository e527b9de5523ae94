//! The dashboard's JSON API against a live coordinator (gRPC and HTTP on one port) with a run
//! in progress, driven step by step by a scripted fleet over the real WorkService: each
//! endpoint's shape, `since` paging, kept samples (bounded, removed by a rollback), the
//! worker registry (a silent worker goes gone just past its limit), cancel with and without
//! the token, errors as JSON, and the pages with their Content-Security-Policy.

#[path = "support/fleet.rs"]
mod fleet;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use fleet::{Bearer, Fleet, Work};
use r1_coordinator::lease::LeaseTtl;
use r1_coordinator::runs::Coordinator;
use r1_coordinator::service::{Auth, Runs, serve};
use r1_coordinator::store::{Clock, Millis, SystemClock};
use r1_proto::v1 as pb;
use r1_proto::v1::run_service_client::RunServiceClient;
use r1_proto::v1::work_service_client::WorkServiceClient;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "s3cret";

type Headers<'a> = &'a [(&'a str, &'a str)];
const GONE_AFTER_MS: Millis = 5_000;

/// The wall clock plus an offset a test moves forward.
#[derive(Default)]
struct Later(AtomicI64);

impl Clock for Later {
    fn now(&self) -> Millis {
        SystemClock.now() + self.0.load(Ordering::SeqCst)
    }
}

struct Live {
    addr: String,
    clock: Arc<Later>,
    runs: RunServiceClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>>,
    work: Work,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A coordinator with the token, run folders under `dir` and `keep` samples per step.
async fn start(dir: &Path, keep: u32) -> Live {
    let clock = Arc::new(Later::default());
    let core = Coordinator::open(&dir.join("r1.db"), clock.clone(), LeaseTtl::default())
        .unwrap()
        .with_run_folders(dir.join("runs"))
        .with_samples_per_step(keep)
        .with_worker_gone_after(GONE_AFTER_MS);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runs = Runs::new(Arc::new(core), Duration::from_millis(20));
    tokio::spawn(serve(listener, runs, Auth::bearer(TOKEN), async move {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let bearer = Bearer(Some(TOKEN.into()));
    Live {
        addr,
        clock,
        runs: RunServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        work: WorkServiceClient::with_interceptor(channel, bearer),
        _stop: stop,
    }
}

impl Live {
    /// Submits a run of `total_steps` over a fresh dataset and returns its fleet.
    async fn submit(&mut self, dir: &Path, name: &str, total_steps: u64) -> Fleet {
        let data = dir.join(format!("{}.jsonl", name.len()));
        fleet::write_dataset(&data, 10, "");
        let run = self
            .runs
            .submit(pb::SubmitRunRequest {
                spec: Some(pb::submit_run_request::Spec::Toml(fleet::spec(name, &data, total_steps, 2))),
            })
            .await
            .unwrap()
            .into_inner();
        Fleet::new(self.work.clone(), run.id, "")
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = http(&self.addr, "GET", path, &[], "").await;
        (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
    }

    async fn cancel(&self, run: u64, headers: &[(&str, &str)]) -> (u16, Value) {
        let (status, _, body) = http(&self.addr, "POST", &format!("/api/runs/{run}/cancel"), headers, "{}").await;
        (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("cancel: {e}: {body}")))
    }
}

/// One HTTP/1.1 request; returns the status, the headers (lower-case names) and the body.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    (status, headers, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

fn steps_of(lines: &Value) -> Vec<u64> {
    lines.as_array().unwrap().iter().map(|l| l["step"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn runs_and_one_run_have_their_shape() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = start(dir.path(), 2).await;
    let mut fleet = live.submit(dir.path(), "demo", 6).await;
    assert_eq!(fleet.step().await, 1);
    assert_eq!(fleet.step().await, 2);

    let (status, all) = live.get("/api/runs").await;
    assert_eq!(status, 200, "{all}");
    let runs = all["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(
        (r["id"].as_u64(), r["name"].as_str(), r["state"].as_str(), r["kind"].as_str()),
        (Some(fleet.run), Some("demo"), Some("running"), Some("grpo"))
    );
    assert_eq!(
        (r["step"].as_u64(), r["total_steps"].as_u64(), r["policy_version"].as_u64()),
        (Some(2), Some(6), Some(2))
    );
    assert_eq!(r["counters"]["groups_trained"].as_u64(), Some(4), "{r}");
    for q in ["generate", "score", "train", "done"] {
        assert!(r["queues"][q].is_u64(), "queues.{q}: {r}");
    }
    assert_eq!(r["latest"]["step"].as_u64(), Some(2), "the latest line is step 2's: {r}");
    assert!(r["latest"]["reward_mean"].is_f64(), "{r}");
    assert_eq!(r["last_eval"]["step"].as_u64(), Some(0), "the evaluation of the base model is in: {r}");
    assert!(r["age_s"].as_f64().unwrap() >= 0.0);

    for (query, want) in [("running", 1), ("completed", 0), ("", 1)] {
        let (status, v) = live.get(&format!("/api/runs?state={query}")).await;
        assert_eq!((status, v["runs"].as_array().unwrap().len()), (200, want), "state={query}");
    }
    let (status, v) = live.get("/api/runs?state=bogus").await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("`state` is `bogus`"), "{v}");

    let (status, one) = live.get(&format!("/api/runs/{}", fleet.run)).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["spec"]["name"].as_str(), Some("demo"));
    assert_eq!(one["spec"]["algorithm"]["group_size"].as_u64(), Some(u64::from(fleet::GROUP_SIZE)), "{one}");
    let ckpt = &one["checkpoints"][0];
    assert_eq!(
        (ckpt["step"].as_u64(), ckpt["path"].as_str()),
        (Some(2), Some(format!("/data/checkpoints/run-{}/step-2", fleet.run).as_str()))
    );
    assert_eq!(one["sample_steps"], serde_json::json!([1, 2]));
    assert!(one["run_dir"].as_str().unwrap().ends_with(&format!("runs/{}", fleet.run)));
}

#[tokio::test]
async fn metrics_page_by_since_and_grow_when_a_step_lands() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = start(dir.path(), 2).await;
    let mut fleet = live.submit(dir.path(), "demo", 6).await;
    fleet.step().await;
    fleet.step().await;
    let run = fleet.run;
    let path = |since: &str| format!("/api/runs/{run}/metrics{since}");

    let (status, all) = live.get(&path("")).await;
    assert_eq!(status, 200, "{all}");
    // Step 0 holds only the base model's evaluation.
    assert_eq!(steps_of(&all["lines"]), vec![0, 1, 2], "{all}");
    assert_eq!(
        (all["state"].as_str(), all["step"].as_u64(), all["total_steps"].as_u64()),
        (Some("running"), Some(2), Some(6))
    );
    assert!(all["lines"][1]["reward_mean"].is_f64() && all["lines"][1]["queue_generate"].is_u64(), "{all}");
    assert_eq!(all["evals"].as_array().unwrap().len(), 1, "{all}");
    for (since, want) in [("?since=0", vec![1, 2]), ("?since=1", vec![2]), ("?since=2", vec![]), ("?since=99", vec![])]
    {
        let (status, v) = live.get(&path(since)).await;
        assert_eq!((status, steps_of(&v["lines"])), (200, want), "{since}");
    }
    for bad in ["?since=-1", "?since=x", "?since="] {
        let (status, v) = live.get(&path(bad)).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"].as_str().unwrap().contains("`since`"), "{v}");
    }

    assert_eq!(fleet.step().await, 3);
    let (_, v) = live.get(&path("?since=2")).await;
    assert_eq!(steps_of(&v["lines"]), vec![3], "the next step is the one new line: {v}");
    let evals: Vec<u64> = v["evals"].as_array().unwrap().iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(evals, vec![0, 2], "the evaluation of step 2 finished with step 3's sampling: {v}");
}

#[tokio::test]
async fn samples_are_kept_bounded_read_by_step_and_removed_by_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = start(dir.path(), 1).await;
    let mut fleet = live.submit(dir.path(), "demo", 6).await;
    for _ in 0..3 {
        fleet.step().await;
    }
    let run = fleet.run;
    let path = |q: &str| format!("/api/runs/{run}/samples{q}");

    let (status, s) = live.get(&path("?step=1")).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!((s["step"].as_u64(), s["groups_trained"].as_u64()), (Some(1), Some(u64::from(fleet::PROMPTS_PER_STEP))));
    assert_eq!(s["steps"], serde_json::json!([1, 2, 3]));
    let groups = s["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "samples_per_step = 1 keeps one of the batch's two groups");
    let g = &groups[0];
    assert!(g["prompt"].as_str().unwrap().starts_with("What is "), "{g}");
    assert!(g["answer"].is_string() && g["row"].is_u64(), "{g}");
    assert_eq!(g["policy_version"].as_u64(), Some(0));
    let completions = g["completions"].as_array().unwrap();
    assert_eq!(completions.len(), fleet::GROUP_SIZE as usize);
    let rewards: Vec<f64> = completions.iter().map(|c| c["reward"].as_f64().unwrap()).collect();
    assert_eq!(rewards, vec![1.2, 0.2, 1.2, 0.0]);
    let mean = rewards.iter().sum::<f64>() / 4.0;
    let std = (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
    for (c, r) in completions.iter().zip(&rewards) {
        let want = (r - mean) / (std + 1e-6);
        assert!((c["advantage"].as_f64().unwrap() - want).abs() < 1e-9, "{c}");
        assert!(c["text"].as_str().unwrap().contains("<think>Step 1"), "{c}");
        assert!(c["components"]["accuracy"].is_f64() && c["tokens"].is_u64() && c["truncated"].is_boolean(), "{c}");
    }
    assert_eq!(completions[3]["truncated"], Value::Bool(true));

    let (status, latest) = live.get(&path("")).await;
    assert_eq!((status, latest["step"].as_u64()), (200, Some(3)), "no step: the latest");
    let (status, v) = live.get(&path("?step=9")).await;
    assert_eq!(status, 404);
    assert!(v["error"].as_str().unwrap().contains("no samples kept for step 9"), "{v}");

    // A rollback to the checkpoint of step 2 removes step 3's samples.
    live.work.rollback(pb::RollbackRequest { run_id: fleet.run, step: 2, idempotency_key: "rb".into() }).await.unwrap();
    let (_, v) = live.get(&path("")).await;
    assert_eq!((v["steps"].clone(), v["step"].as_u64()), (serde_json::json!([1, 2]), Some(2)), "{v}");
}

#[tokio::test]
async fn no_samples_are_kept_with_zero_and_a_whole_batch_at_its_size() {
    for (keep, want) in [(0, 0), (2, 2), (3, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let mut live = start(dir.path(), keep).await;
        let mut fleet = live.submit(dir.path(), "demo", 6).await;
        fleet.step().await;
        let (status, v) = live.get(&format!("/api/runs/{}/samples", fleet.run)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["groups"].as_array().unwrap().len(), want, "samples_per_step = {keep}: {v}");
        if keep == 0 {
            assert_eq!((v["steps"].clone(), v["step"].clone()), (serde_json::json!([]), Value::Null));
        }
    }
}

#[tokio::test]
async fn workers_are_listed_by_role_and_go_gone_just_past_their_silence() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = start(dir.path(), 2).await;
    let mut fleet = live.submit(dir.path(), "demo", 6).await;
    fleet.step().await;
    fleet.step().await;

    let (status, v) = live.get("/api/workers").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["gone_after_ms"].as_i64(), Some(GONE_AFTER_MS));
    let workers = v["workers"].as_array().unwrap();
    let names: Vec<(&str, &str)> =
        workers.iter().map(|w| (w["role"].as_str().unwrap(), w["name"].as_str().unwrap())).collect();
    assert_eq!(names, vec![("actor", fleet::ACTOR), ("reward", fleet::REWARD), ("learner", fleet::LEARNER)]);
    for w in workers {
        assert_eq!((w["run"].as_u64(), w["gone"].as_bool()), (Some(fleet.run), Some(false)), "{w}");
        assert!(w["done"].as_u64().unwrap() > 0 && w["throughput"].as_f64().unwrap() > 0.0, "{w}");
    }
    let actor = &workers[0];
    // Two steps of 2 groups × 4 samples of 3, 5, 7 and 9 tokens, plus the evaluations' samples.
    assert!(actor["done"].as_u64().unwrap() >= 2 * 2 * (3 + 5 + 7 + 9), "{actor}");
    // Its latest lease was for the second step's samples, made by policy version 1; the
    // learner's latest batch trained on top of version 1 too.
    assert_eq!((actor["unit"].as_str(), actor["policy_version"].as_u64()), (Some("tokens/s"), Some(1)), "{actor}");
    assert_eq!(workers[2]["policy_version"].as_u64(), Some(1), "{}", workers[2]);
    assert_eq!(workers[1]["policy_version"], Value::Null, "reward workers hold no policy");

    // Silent for exactly the limit: still live; a little longer: gone.
    let last = workers.iter().map(|w| w["last_seen_ms"].as_i64().unwrap()).max().unwrap();
    let now = live.clock.now();
    live.clock.0.store(last + GONE_AFTER_MS - now - 50, Ordering::SeqCst);
    let (_, v) = live.get("/api/workers").await;
    assert!(v["workers"].as_array().unwrap().iter().any(|w| w["gone"] == Value::Bool(false)), "{v}");
    live.clock.0.fetch_add(GONE_AFTER_MS, Ordering::SeqCst);
    let (_, v) = live.get("/api/workers").await;
    assert!(v["workers"].as_array().unwrap().iter().all(|w| w["gone"] == Value::Bool(true)), "{v}");
}

#[tokio::test]
async fn cancel_needs_json_and_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = start(dir.path(), 2).await;
    let fleet = live.submit(dir.path(), "demo", 6).await;
    let run = fleet.run;
    let json = ("content-type", "application/json");
    let bearer = format!("Bearer {TOKEN}");
    let cases: [(Headers, u16, &str); 4] = [
        (&[], 415, "content-type: application/json"),
        (&[json], 401, "requires a bearer token"),
        (&[json, ("authorization", "Bearer wrong")], 403, "bearer token is wrong"),
        (&[json, ("authorization", "Basic s3cret")], 403, "requires a bearer token"),
    ];
    for (headers, status, message) in cases {
        let (got, v) = live.cancel(run, headers).await;
        assert_eq!(got, status, "{headers:?}: {v}");
        assert!(v["error"].as_str().unwrap().contains(message), "{headers:?}: {v}");
        let (_, r) = live.get(&format!("/api/runs/{run}")).await;
        assert_eq!(r["state"].as_str(), Some("running"), "a refused cancel changes nothing");
    }
    let (status, v) = live.cancel(run, &[json, ("authorization", bearer.as_str())]).await;
    assert_eq!((status, v["state"].as_str()), (200, Some("cancelled")), "{v}");
    let (status, v) = live.cancel(run, &[json, ("authorization", bearer.as_str())]).await;
    assert_eq!(status, 409, "a cancelled run cannot be cancelled again: {v}");
    let (status, v) = live.cancel(999, &[json, ("authorization", bearer.as_str())]).await;
    assert_eq!(status, 404, "{v}");
}

#[tokio::test]
async fn bad_ids_and_unknown_paths_are_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let live = start(dir.path(), 2).await;
    for path in [
        "/api/runs/999",
        "/api/runs/999/metrics",
        "/api/runs/999/samples",
        "/api/runs/0",
        "/api/runs/abc",
        "/api/runs/abc/metrics",
        "/api/nope",
        "/api/runs/1/nope",
    ] {
        let (status, headers, body) = http(&live.addr, "GET", path, &[], "").await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(header(&headers, "content-type"), "application/json", "{path}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {body}");
    }
    let (_, v) = live.get("/api/runs/999").await;
    assert!(v["error"].as_str().unwrap().contains("run 999 does not exist"), "{v}");
}

#[tokio::test]
async fn pages_and_assets_are_served_with_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let live = start(dir.path(), 2).await;
    for (path, kind, holds) in [
        ("/", "text/html", "/assets/app.js"),
        ("/runs/7", "text/html", "/assets/app.js"),
        ("/runs/7/samples", "text/html", "/assets/app.js"),
        ("/workers", "text/html", "/assets/app.js"),
        ("/assets/app.js", "text/javascript", "textContent"),
        ("/assets/app.css", "text/css", "figure.chart"),
    ] {
        let (status, headers, body) = http(&live.addr, "GET", path, &[], "").await;
        assert_eq!(status, 200, "{path}");
        assert!(header(&headers, "content-type").starts_with(kind), "{path}: {headers:?}");
        assert_eq!(header(&headers, "content-security-policy"), r1_coordinator::dashboard::CSP, "{path}");
        assert!(body.contains(holds), "{path}");
    }
    // No page builds HTML from strings: the script never uses innerHTML and its kin.
    let (_, _, js) = http(&live.addr, "GET", "/assets/app.js", &[], "").await;
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }
    let (status, _, text) = http(&live.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE r1_run_step gauge"), "{text}");
}
