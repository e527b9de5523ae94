//! `r1ctl eval --benchmark`: published benchmark files (small hand-made rows in each set's
//! real schema, `tests/data/benchmarks/`) through the real binary, JSONL and Parquet alike,
//! and bad files named with their row and column.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::Value;

fn here(rel: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join(rel)
}

/// The Qwen3 parity fixture with room for the benchmarks' long prompts (its own config says
/// 256 positions; RoPE has no limit of its own), copied once per test process.
fn model() -> String {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let src = here("../model/tests/fixtures/qwen3-tiny");
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        let cfg_path = dir.path().join("config.json");
        let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg["max_position_embeddings"] = 2048.into();
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        dir
    });
    dir.path().to_str().unwrap().to_string()
}

fn r1ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_r1ctl")).args(args).output().unwrap()
}

fn eval(benchmark: &str, dataset: &Path, extra: &[&str]) -> Value {
    let model = model();
    let mut args = vec![
        "eval",
        "--model",
        &model,
        "--benchmark",
        benchmark,
        "--dataset",
        dataset.to_str().unwrap(),
        "-k",
        "3",
        "--max-new-tokens",
        "4",
        "--seed",
        "5",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = r1ctl(&args);
    assert!(out.status.success(), "{benchmark}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_benchmark_reads_its_published_schema_and_reports_pass_at_k() {
    // (benchmark, file, questions, answer sources)
    let cases = [
        ("gsm8k", "gsm8k.jsonl", 3, vec!["boxed", "answer_tag", "hashes", "answer_is", "last_number"]),
        ("math500", "math500.jsonl", 2, vec!["boxed", "answer_tag", "answer_is"]),
        ("aime24", "aime24.jsonl", 2, vec!["boxed", "answer_tag", "answer_is", "last_number"]),
        ("aime25", "aime25.jsonl", 2, vec!["boxed", "answer_tag", "answer_is", "last_number"]),
        ("gpqa-diamond", "gpqa_diamond.jsonl", 2, vec!["answer_is", "boxed", "answer_tag"]),
    ];
    for (bench, file, n, sources) in cases {
        let r = eval(bench, &here(&format!("tests/data/benchmarks/{file}")), &[]);
        assert_eq!(r["benchmark"], bench);
        assert_eq!(r["questions"], n, "{bench}");
        assert_eq!(r["k"], 3, "{bench}");
        assert_eq!(r["template"], "chat", "{bench}: benchmarks default to the chat template");
        assert_eq!(r["answer_sources"], serde_json::json!(sources), "{bench}");
        let keys: Vec<&String> = r["pass_at_k"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["1", "2", "3"], "{bench}");
        let p1 = r["pass_at_k"]["1"].as_f64().unwrap();
        assert!((p1 - r["pass_at_1"].as_f64().unwrap()).abs() < 1e-12, "{bench}: pass@1 is pass@1 over k");
        for key in ["cons_at_k", "format_rate", "answer_rate", "truncated_rate", "mean_completion_tokens", "seconds"] {
            assert!(r[key].is_number(), "{bench}: {key} in {r}");
        }
    }
}

/// Writes JSONL rows of string values as a Parquet file with one UTF8 column per key.
fn to_parquet(jsonl: &Path, out: &Path) {
    let rows: Vec<serde_json::Map<String, Value>> =
        std::fs::read_to_string(jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let keys: Vec<String> = rows[0].keys().cloned().collect();
    let fields: String = keys.iter().map(|k| format!("REQUIRED BYTE_ARRAY {k} (UTF8); ")).collect();
    let schema = Arc::new(parse_message_type(&format!("message row {{ {fields}}}")).unwrap());
    let props = Arc::new(WriterProperties::builder().build());
    let mut writer = SerializedFileWriter::new(std::fs::File::create(out).unwrap(), schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    for k in &keys {
        let mut col = group.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = rows.iter().map(|r| ByteArray::from(r[k].as_str().unwrap())).collect();
        col.typed::<ByteArrayType>().write_batch(&values, None, None).unwrap();
        col.close().unwrap();
    }
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_and_jsonl_of_the_same_rows_give_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = here("tests/data/benchmarks/aime25.jsonl");
    let parquet = dir.path().join("aime25.parquet");
    to_parquet(&jsonl, &parquet);
    let strip = |mut v: Value| {
        for k in ["dataset", "seconds"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    let a = strip(eval("aime25", &jsonl, &["--temperature", "0.7"]));
    let b = strip(eval("aime25", &parquet, &["--temperature", "0.7"]));
    assert_eq!(a, b);
}

#[test]
fn bad_files_and_flags_are_named() {
    let bench = |f: &str| here(&format!("tests/data/benchmarks/{f}")).to_str().unwrap().to_string();
    let m = model();
    // (args, fragments the error must contain)
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["--benchmark".into(), "gsm8k".into(), "--dataset".into(), bench("gsm8k_bad.jsonl")],
            vec!["gsm8k_bad.jsonl has 1 bad rows", "row 2 field `answer` has no `#### <answer>` line"],
        ),
        (
            vec!["--benchmark".into(), "math500".into(), "--dataset".into(), bench("gsm8k.jsonl")],
            vec!["row 1 field `problem` is missing", "a math500 row has this column"],
        ),
        (
            vec!["--dataset".into(), bench("gsm8k.jsonl"), "--prompt-field".into(), "question".into()],
            vec!["row 1 field `answer` holds a `####` line", "answer_kind = \"gsm8k\""],
        ),
        (
            vec!["--benchmark".into(), "math-500".into(), "--dataset".into(), bench("gsm8k.jsonl")],
            vec!["unknown benchmark `math-500`"],
        ),
        (
            vec!["--dataset".into(), bench("gsm8k.jsonl"), "--answer-kind".into(), "hashes".into()],
            vec!["unknown answer kind `hashes`"],
        ),
        (
            vec!["--dataset".into(), bench("gsm8k.jsonl"), "--system".into(), "be brief".into()],
            vec!["--system needs the chat template"],
        ),
        (vec!["--dataset".into(), here("Cargo.toml").to_str().unwrap().into()], vec!["neither .jsonl nor .parquet"]),
    ];
    for (args, want) in cases {
        let mut full = vec![
            "eval".to_string(),
            "--model".into(),
            m.clone(),
            "-k".into(),
            "1".into(),
            "--max-new-tokens".into(),
            "2".into(),
        ];
        full.extend(args.iter().cloned());
        let out = r1ctl(&full.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        for w in want {
            assert!(err.contains(w), "{args:?}: `{w}` not in {err}");
        }
    }
    // The same GSM8K file with its answer kind is fine, and the custom path reads it.
    let out = r1ctl(&[
        "eval",
        "--model",
        &m,
        "-k",
        "2",
        "--max-new-tokens",
        "2",
        "--dataset",
        &bench("gsm8k.jsonl"),
        "--prompt-field",
        "question",
        "--answer-kind",
        "gsm8k",
        "--template",
        "chat",
        "--system",
        "Be brief.",
        "--think",
        "--answer-source",
        "hashes",
        "--answer-source",
        "last_number",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["questions"].as_u64(), r["answer_kind"].as_str(), r["think_prefill"].as_bool()),
        (Some(3), Some("gsm8k"), Some(true))
    );
    assert_eq!(r["answer_sources"], serde_json::json!(["hashes", "last_number"]));
    let out = r1ctl(&["eval", "--model", &m, "--dataset", &bench("gsm8k.jsonl"), "--answer-source", "first_number"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown answer source `first_number`"));
}
