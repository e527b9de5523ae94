//! `r1ctl generate`, `logprobs` and `convert` as a user runs them: real processes, real files.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures")
        .join(name)
}

fn r1ctl(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_r1ctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "r1ctl failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn generated_logprobs_equal_r1ctl_logprobs() {
    let model = fixture("llama-tiny");
    let m = model.to_str().unwrap();
    let generated = r1ctl(
        &[
            "generate",
            "--model",
            m,
            "--input",
            "-",
            "-n",
            "3",
            "--max-new-tokens",
            "10",
            "--seed",
            "3",
            "--json",
            "--ignore-eos",
        ],
        "{\"input_ids\": [5, 17, 33, 2, 90]}\n{\"prompt\": \"What is 12 + 35?\"}\n",
    );
    let lines = json_lines(&generated);
    assert_eq!(lines.len(), 2);
    let mut input = String::new();
    let mut expected: Vec<Vec<f64>> = Vec::new();
    for line in &lines {
        let prompt: Vec<u64> = serde_json::from_value(line["prompt_ids"].clone()).unwrap();
        let samples = line["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 3);
        for s in samples {
            let toks: Vec<u64> = serde_json::from_value(s["tokens"].clone()).unwrap();
            assert_eq!(toks.len(), 10);
            assert_eq!(s["finish_reason"], "length");
            let ids: Vec<u64> = prompt.iter().chain(&toks).copied().collect();
            input += &format!("{}\n", serde_json::json!({ "input_ids": ids }));
            expected.push(serde_json::from_value(s["logprobs"].clone()).unwrap());
        }
    }
    let lp = json_lines(&r1ctl(&["logprobs", "--model", m, "--input", "-"], &input));
    assert_eq!(lp.len(), expected.len());
    for (got, want) in lp.iter().zip(&expected) {
        let got: Vec<f64> = serde_json::from_value(got["logprobs"].clone()).unwrap();
        let tail = &got[got.len() - want.len()..];
        for (a, b) in tail.iter().zip(want) {
            assert!((a - b).abs() <= 1e-4, "sampled {b} vs logprobs {a}");
        }
    }
}

#[test]
fn logprobs_contract() {
    let m = fixture("qwen2-tiny");
    let out = r1ctl(
        &["logprobs", "--model", m.to_str().unwrap(), "--input", "-"],
        "{\"input_ids\": [1, 2, 3, 4]}\n\n{\"input_ids\": [7]}\n{\"text\": \"Hello world\"}\n",
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "one output line per non-blank input line");
    assert_eq!(lines[0]["logprobs"].as_array().unwrap().len(), 3);
    assert_eq!(lines[1]["logprobs"].as_array().unwrap().len(), 0);
    assert!(lines[2]["logprobs"].as_array().unwrap().iter().all(|x| x.as_f64().unwrap() < 0.0));
    assert_eq!(lines[0].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["logprobs"]);
}

#[test]
fn bad_input_names_the_line_and_writes_nothing() {
    let m = fixture("qwen2-tiny");
    let m = m.to_str().unwrap();
    let cases = [
        ("{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, \n", "line 2"),
        ("{\"input_ids\": [1, 2], \"text\": \"x\"}\n", "record 1: give exactly one of `input_ids` or `text`"),
        ("{\"ids\": [1]}\n", "unknown field `ids`"),
        ("{\"input_ids\": [1, 999999]}\n", "outside the model's vocabulary of 320"),
        ("{\"input_ids\": []}\n", "sequence 0 is empty"),
    ];
    for (input, frag) in cases {
        let out = r1ctl(&["logprobs", "--model", m, "--input", "-"], input);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(frag), "{input:?}: {err}");
        assert!(out.stdout.is_empty(), "{input:?}: partial output");
    }
    let out = r1ctl(&["logprobs", "--model", "/nonexistent", "--input", "-"], "{\"input_ids\": [1, 2]}\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load the model"));
}

#[test]
fn up_refuses_bad_input_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bad_recipe = dir.path().join("recipe.toml");
    std::fs::write(&bad_recipe, "[rl]\nstepz = 3\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let d = data.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["up", "--config", "/nonexistent/run.toml", "--data-dir", d, "--listen", &listen],
            "/nonexistent/run.toml",
        ),
        (vec!["up", "--recipe", bad_recipe.to_str().unwrap(), "--data-dir", d, "--listen", &listen], "stepz"),
        (vec!["up", "--config", "run.toml", "--quick"], "cannot be used with"),
    ];
    for (args, frag) in cases {
        let out = r1ctl(&args, "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(frag), "{args:?}: {err}");
    }
}
