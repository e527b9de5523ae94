//! `r1ctl reward score` end to end: the JSONL contract, one output line per input line
//! (malformed ones included), parallel jobs, output to a file or stdout.

use std::process::Command;

use serde_json::{Value, json};

/// (input line, expected status, text the detail must contain)
const CASES: &[(&str, &str, &str)] = &[
    (
        r#"{"id": 1, "verifier": "code", "completion": "```python\ndef f(x):\n    return x + 1\n```", "test": "assert f(1) == 2"}"#,
        "ok",
        "",
    ),
    (
        r#"{"id": "io", "verifier": "code", "completion": "print(sum(map(int, input().split())))", "tests": [{"stdin": "1 2", "stdout": "3\n"}], "timeout_s": 5, "memory_mb": 256}"#,
        "ok",
        "",
    ),
    (
        r#"{"id": "early", "verifier": "code", "completion": "import sys\nsys.exit(0)", "test": "assert False"}"#,
        "exited_early",
        "",
    ),
    (
        r#"{"id": "wrong", "verifier": "code", "completion": "def f(x):\n    return x", "test": "assert f(1) == 2"}"#,
        "failed",
        "AssertionError",
    ),
    ("not json at all", "invalid_input", "line 6"),
    (
        r#"{"id": 6, "verifier": "code", "completion": "x", "surprise": true}"#,
        "invalid_input",
        "line 7: unknown field `surprise`",
    ),
    (r#"{"verifier": "code", "completion": "x"}"#, "invalid_input", "line 8: missing field `id`"),
    (r#"{"id": 8, "verifier": "no-such-verifier", "completion": "x"}"#, "invalid_input", "line 9: unknown verifier"),
    (r#"{"id": 9, "verifier": "code", "completion": "print(1)"}"#, "invalid_input", "line 10: "),
    (
        r#"{"id": 10, "verifier": "code", "completion": "print(1)", "test": "pass", "timeout_s": 0}"#,
        "invalid_input",
        "timeout_s",
    ),
];

fn r1ctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_r1ctl"))
}

fn check_output(text: &str) {
    let results: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("every output line is JSON")).collect();
    assert_eq!(results.len(), CASES.len(), "one output line per input line:\n{text}");
    for r in &results {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["components", "detail", "id", "reward", "status"], "the output contract");
    }
    for (i, (line, status, detail)) in CASES.iter().enumerate() {
        let id = serde_json::from_str::<Value>(line).ok().and_then(|v| v.get("id").cloned()).unwrap_or(Value::Null);
        let found = results
            .iter()
            .find(|r| r["id"] == id && r["status"] == *status && r["detail"].as_str().unwrap().contains(detail));
        let r = found.unwrap_or_else(|| {
            panic!("case {} ({line}): no result with status {status} and detail ~ {detail:?} in\n{text}", i + 1)
        });
        let reward = if *status == "ok" { 1.0 } else { 0.0 };
        assert_eq!(r["reward"], json!(reward), "case {}", i + 1);
    }
}

fn input_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::new();
    for (i, (line, _, _)) in CASES.iter().enumerate() {
        if i == 4 {
            text.push_str("   \n"); // a blank line is skipped, but still counts in line numbers
        }
        text.push_str(line);
        text.push('\n');
    }
    let path = dir.join("in.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn scores_every_line_to_a_file_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(dir.path());
    let output = dir.path().join("out.jsonl");
    let run = r1ctl()
        .args(["reward", "score", "--jobs", "3", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    check_output(&std::fs::read_to_string(&output).unwrap());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains(&format!("scored {} jobs", CASES.len())), "{stderr}");
}

#[test]
fn scores_to_stdout_with_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(dir.path());
    let run = r1ctl().args(["reward", "score", "-j", "1", "-i"]).arg(&input).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    check_output(&String::from_utf8_lossy(&run.stdout));
}

#[test]
fn a_missing_input_file_is_an_error_that_says_what_to_do() {
    let run = r1ctl().args(["reward", "score", "--input", "/nonexistent/in.jsonl"]).output().unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("cannot open /nonexistent/in.jsonl; pass an existing JSONL file"), "{stderr}");
}

/// Regression: one line that is not UTF-8 made `reward score` exit 1 with no output at all.
#[test]
fn a_line_that_is_not_utf8_is_invalid_input_and_every_other_line_is_scored() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(
        b"{\"id\": 1, \"verifier\": \"math\", \"completion\": \"<answer>4</answer>\", \"ground_truth\": \"4\"}\n",
    );
    bytes.extend_from_slice(
        b"{\"id\": 2, \"verifier\": \"math\", \"completion\": \"caf\xe9\", \"ground_truth\": \"4\"}\n",
    );
    bytes.extend_from_slice(
        b"{\"id\": 3, \"verifier\": \"math\", \"completion\": \"<answer>5</answer>\", \"ground_truth\": \"4\"}\r\n",
    );
    std::fs::write(&input, bytes).unwrap();
    let run = r1ctl().args(["reward", "score", "-j", "2", "-i"]).arg(&input).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let results: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(results.len(), 3, "one output line per input line:\n{stdout}");
    let bad: Vec<&Value> = results.iter().filter(|r| r["status"] == "invalid_input").collect();
    assert_eq!(bad.len(), 1, "{stdout}");
    let detail = bad[0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("line 2: not UTF-8 (invalid byte at offset 48)"), "{detail}");
    for id in [1, 3] {
        assert!(
            results.iter().any(|r| r["id"] == id && r["status"] != "invalid_input"),
            "line {id} is scored:\n{stdout}"
        );
    }
}
