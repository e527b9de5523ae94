//! Run-agnostic pools as real processes: a coordinator, one learner fleet of two ranks, one
//! actor and one reward worker, every worker started without `--run` (as the Helm chart
//! starts them). Two runs submitted one after the other both complete with exact counters,
//! served by the same processes, which then wait for a third; `r1ctl workers` shows who
//! served what, the learner fleet's claim is released at each run's end, every worker
//! answers grpc.health.v1, and SIGTERM stops every pool cleanly.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::{Proc, Watch, fail_with_logs, fixture, free_addr, json, wait_listening};

const STEPS: u64 = 3;
const PROMPTS_PER_STEP: u64 = 2;

/// A run spec named `name` with its own dataset and its own copy of the base model (so the
/// second run's model is another folder, which the fleet must load).
fn write_run(dir: &Path, name: &str) -> PathBuf {
    let base = dir.join(format!("base-{name}"));
    std::fs::create_dir_all(&base).unwrap();
    for f in std::fs::read_dir(fixture()).unwrap().flatten() {
        if f.path().is_file() {
            std::fs::copy(f.path(), base.join(f.file_name())).unwrap();
        }
    }
    std::fs::write(dir.join(format!("{name}.jsonl")), common::digit_sums(24)).unwrap();
    let spec = dir.join(format!("{name}.toml"));
    std::fs::write(
        &spec,
        format!(
            "name = '{name}'\nbase_model = '{}'\n\
             [dataset]\npath = '{name}.jsonl'\nfields = {{prompt = 'question', answer = 'answer'}}\n\
             [[rewards]]\nname = 'accuracy'\nverifier = 'math'\nweight = 1.0\n\
             [algorithm]\nkind = 'grpo'\ngroup_size = 4\nprompts_per_step = {PROMPTS_PER_STEP}\n\
             [algorithm.sampling]\ntemplate = 'raw'\nmax_new_tokens = 8\n\
             [algorithm.learner]\nlr = 1e-3\nmicro_batch = 4\n\
             [schedule]\ntotal_steps = {STEPS}\ncheckpoint_every = 1\neval_every = 0\n",
            base.display()
        ),
    )
    .unwrap();
    spec
}

fn healthy(addr: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(r1_proto::health::check(&format!("http://{addr}"), "")).unwrap_or(false)
}

#[test]
fn one_pool_of_each_role_serves_two_runs_one_after_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listen = free_addr();
    let url = format!("http://{listen}");
    let data = d.join("data");
    let coordinator = Proc::spawn(
        d,
        "coordinator",
        &["serve", "coordinator", "--listen", &listen, "--data-dir", data.to_str().unwrap()],
        &[("R1_COORDINATOR_RUN_CLAIM_MS", "6000")],
    );
    wait_listening(&listen, 30);
    let (master, weights, ckpt) = (free_addr(), free_addr(), d.join("checkpoints"));
    let health: Vec<String> = (0..4).map(|_| free_addr()).collect();
    let mut pools = Vec::new();
    for (rank, health) in health.iter().take(2).enumerate() {
        let rank_s = rank.to_string();
        let args = [
            "serve",
            "learner",
            "--coordinator",
            &url,
            "--rank",
            &rank_s,
            "--world-size",
            "2",
            "--master-addr",
            &master,
            "--weights-listen",
            &weights,
            "--checkpoints",
            ckpt.to_str().unwrap(),
            "--health-listen",
            health,
        ];
        pools.push(Proc::spawn(
            d,
            &format!("learner-{rank}"),
            &args,
            &[("R1_LEARNER_WORKER", &format!("fleet-rank{rank}"))],
        ));
    }
    let weights_url = format!("http://{weights}");
    let actor = [
        "serve",
        "actor",
        "--coordinator",
        &url,
        "--learner",
        &weights_url,
        "--name",
        "actor-pool",
        "--max-groups",
        "1",
        "--health-listen",
        &health[2],
    ];
    pools.push(Proc::spawn(d, "actor", &actor, &[]));
    let reward = [
        "reward",
        "work",
        "--coordinator",
        &url,
        "--worker",
        "reward-pool",
        "--max-groups",
        "1",
        "--idle-ms",
        "100",
        "--health-listen",
        &health[3],
    ];
    pools.push(Proc::spawn(d, "reward", &reward, &[]));

    // Every pool is up and healthy before any run exists, and the coordinator knows it idle.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !health.iter().all(|h| healthy(h)) {
        if std::time::Instant::now() > deadline {
            fail_with_logs(d, "the pools did not answer their health checks as SERVING");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let idle = loop {
        let w = json(&url, None, &["workers"]).unwrap();
        let names: Vec<&str> = w["workers"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
        if ["actor-pool", "reward-pool", "fleet-rank0"].iter().all(|n| names.contains(n)) {
            break w;
        }
        if std::time::Instant::now() > deadline {
            fail_with_logs(d, &format!("the idle pools never called the coordinator: {w}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        idle["workers"].as_array().unwrap().iter().all(|w| w["run"] == 0 && w["gone"] == false),
        "idle, serving no run: {idle}"
    );

    let mut procs = pools;
    let mut finished = Vec::new();
    let mut done = std::collections::HashMap::new();
    for name in ["first", "second"] {
        let spec = write_run(d, name);
        let submitted = json(&url, None, &["submit-run", spec.to_str().unwrap()]).expect("submit-run");
        let run = submitted["id"].as_u64().unwrap();
        let watch = Watch { dir: d, url: &url, token: None };
        let status = watch
            .wait_run(run, &mut procs, &format!("run {run} ({name}) to complete"), 300, |s| s["state"] == "completed");
        common::check_counters(&status, STEPS, PROMPTS_PER_STEP);
        assert_eq!(status["counters"]["leases_expired"].as_u64(), Some(0), "nothing died, nothing expired: {status}");
        finished.push(run);
        // The fleet releases its claim once the run is over; every pool did work for it (the
        // run each serves now is 0 again: they asked for the next one).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let w = json(&url, None, &["workers"]).unwrap();
            if w["claims"].as_array().unwrap().is_empty() {
                let ckpt_dir = ckpt.join(format!("run-{run}")).join(format!("step-{STEPS}"));
                assert!(
                    ckpt_dir.join("model.safetensors").exists(),
                    "run {run}'s final checkpoint at {}",
                    ckpt_dir.display()
                );
                for who in ["actor-pool", "reward-pool", "fleet-rank0"] {
                    let me = w["workers"].as_array().unwrap().iter().find(|x| x["name"] == who).unwrap();
                    let before = done.insert(who, me["done"].as_u64().unwrap()).unwrap_or(0);
                    assert!(me["done"].as_u64().unwrap() > before, "{who} did work for run {run}: {me}");
                }
                break;
            }
            if std::time::Instant::now() > deadline {
                fail_with_logs(d, &format!("the claim on run {run} was not released: {w}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert_eq!(finished, vec![1, 2]);
    // Each pool says it served both runs (each notices a run's end on its own schedule).
    let log = |name: &str| std::fs::read_to_string(d.join(format!("{name}.log"))).unwrap();
    for run in &finished {
        for (name, words) in [
            ("learner-0", format!("claimed run {run}")),
            ("learner-1", format!("done with run {run}")),
            ("actor", format!("done with run {run}")),
            ("reward", format!("run {run} has ended")),
        ] {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !log(name).contains(&words) {
                if std::time::Instant::now() > deadline {
                    fail_with_logs(d, &format!("{name} never said `{words}`"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // The same processes served both runs and are still waiting for the next.
    for p in procs.iter_mut() {
        assert!(p.exited().is_none(), "{} is a pool and must outlive its runs", p.name);
    }
    // SIGTERM (a pod stopped) ends every pool cleanly; the fleet's rank 0 takes rank 1 along.
    for p in &procs {
        p.term();
    }
    for p in procs.iter_mut() {
        match p.wait_exit(60) {
            Some(code) => assert!(code.success(), "{} exited with {code} after SIGTERM", p.name),
            None => fail_with_logs(d, &format!("{} did not stop after SIGTERM", p.name)),
        }
    }
    drop(coordinator);
}
