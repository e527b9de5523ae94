//! `r1ctl serve coordinator` as a real process, driven by `r1ctl submit-run`, `runs`,
//! `status` and `cancel`.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn r1ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_r1ctl"))
        .args(args)
        .env_remove("R1_COORDINATOR")
        .env_remove("R1_TOKEN")
        .output()
        .unwrap()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &std::path::Path) -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_r1ctl"))
        .args(["serve", "coordinator", "--listen", &listen, "--data-dir", data.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(Instant::now() < deadline, "the coordinator did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Server(child), format!("http://{listen}"))
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "r1ctl failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn submit_list_status_cancel() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train.jsonl"),
        "{\"question\": \"1+1\", \"answer\": \"2\"}\n{\"question\": \"2+3\", \"answer\": \"5\"}\n",
    )
    .unwrap();
    let spec = dir.path().join("run.toml");
    // Relative paths: r1ctl resolves them against the spec's folder.
    std::fs::write(
        &spec,
        "name = 'cli'\nbase_model = 'model'\n[dataset]\npath = 'train.jsonl'\nfields = {prompt = 'question', answer = 'answer'}\n\
         [[rewards]]\nname = 'accuracy'\nverifier = 'math'\nweight = 1.0\n[algorithm]\nkind = 'grpo'\ngroup_size = 2\nprompts_per_step = 1\n\
         [schedule]\ntotal_steps = 3\n",
    )
    .unwrap();
    let (_server, url) = start(&dir.path().join("data"));
    let c = ["--coordinator", url.as_str(), "--json"];

    let run = json(&r1ctl(&[&["submit-run", spec.to_str().unwrap()][..], &c].concat()));
    assert_eq!((run["name"].as_str(), run["total_steps"].as_u64()), (Some("cli"), Some(3)));
    let id = run["id"].as_u64().unwrap().to_string();
    let all = json(&r1ctl(&[&["runs"][..], &c].concat()));
    assert_eq!(all.as_array().unwrap().len(), 1);
    let one = json(&r1ctl(&[&["status", id.as_str()][..], &c].concat()));
    assert_eq!(one["id"], run["id"]);
    let cancelled = json(&r1ctl(&[&["cancel", id.as_str()][..], &c].concat()));
    assert_eq!(cancelled["state"], "cancelled");

    // Errors say what is wrong and exit non-zero.
    let cases: Vec<(Vec<&str>, &str)> =
        vec![(vec!["status", "999"], "999"), (vec!["submit-run", "/nonexistent.toml"], "/nonexistent.toml")];
    for (args, frag) in cases {
        let out = r1ctl(&[&args[..], &c].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(frag), "{args:?}: {err}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = 'x'\nbase_model = 'm'\nsurprise = 1\n").unwrap();
    let out = r1ctl(&[&["submit-run", bad.to_str().unwrap()][..], &c].concat());
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("surprise"));
    let out = r1ctl(&["runs", "--coordinator", "http://127.0.0.1:1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the coordinator"));
}
