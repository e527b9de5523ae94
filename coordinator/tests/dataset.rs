//! Datasets: row mapping and bad-row reports, the eval split, seeded per-epoch orders,
//! the resumable cursor, and Parquet files written here with the parquet crate.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use r1_coordinator::dataset::{Cursor, Dataset, DatasetError, MAX_REPORTED, Prompt};
use r1_coordinator::spec::{DatasetSpec, FieldMap};

fn spec(path: &Path, fields: FieldMap) -> DatasetSpec {
    DatasetSpec {
        path: path.into(),
        format: None,
        fields,
        eval_fraction: 0.0,
        eval_path: None,
        answer_kind: None,
        system_prompt: None,
        seed: 0,
        shuffle: true,
        epochs: 1,
    }
}

fn fields(prompt: &str, answer: Option<&str>, tests: Option<&str>) -> FieldMap {
    FieldMap { prompt: prompt.into(), answer: answer.map(Into::into), tests: tests.map(Into::into), language: None }
}

fn write_jsonl(dir: &Path, lines: &[&str]) -> PathBuf {
    let path = dir.join("d.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    path
}

/// Either the (row, prompt text or first chat message, answer) of each example, or the
/// (row, field) of each reported bad row.
type Expected = Result<Vec<(u64, &'static str, Option<&'static str>)>, Vec<(u64, &'static str)>>;

fn check(name: &str, lines: &[&str], map: FieldMap, expected: Expected) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_jsonl(dir.path(), lines);
    match (Dataset::load(&spec(&path, map)), expected) {
        (Ok(ds), Ok(want)) => {
            let got: Vec<_> = ds
                .train()
                .iter()
                .map(|x| {
                    let prompt = match &x.prompt {
                        Prompt::Text(t) => t.clone(),
                        Prompt::Chat(m) => m[0].content.clone(),
                    };
                    (x.row, prompt, x.answer.clone())
                })
                .collect();
            let want: Vec<_> = want.iter().map(|(r, p, a)| (*r, p.to_string(), a.map(String::from))).collect();
            assert_eq!(got, want, "{name}");
        }
        (Err(DatasetError::BadRows { rows, count, .. }), Err(want)) => {
            let got: Vec<_> = rows.iter().map(|r| (r.row, r.field.as_str())).collect();
            assert_eq!(got, want, "{name}");
            assert_eq!(count, want.len(), "{name}");
        }
        (got, want) => panic!("{name}: expected {want:?}, got {got:?}"),
    }
}

#[test]
fn rows_map_to_examples_or_name_row_and_field() {
    let qa = || fields("q", Some("a"), None);
    let cases: Vec<(&str, Vec<&str>, FieldMap, Expected)> = vec![
        ("text and answer", vec![r#"{"q": "1+1?", "a": "2"}"#], qa(), Ok(vec![(1, "1+1?", Some("2"))])),
        (
            "numeric answers",
            vec![r#"{"q": "x", "a": 42}"#, r#"{"q": "y", "a": 0.5}"#],
            qa(),
            Ok(vec![(1, "x", Some("42")), (2, "y", Some("0.5"))]),
        ),
        ("no answer mapped", vec![r#"{"q": "x"}"#], fields("q", None, None), Ok(vec![(1, "x", None)])),
        ("extra columns ignored", vec![r#"{"q": "x", "a": "1", "z": [1]}"#], qa(), Ok(vec![(1, "x", Some("1"))])),
        (
            "blank lines keep line numbers",
            vec![r#"{"q": "x", "a": "1"}"#, "", "  ", r#"{"q": "y", "a": "2"}"#],
            qa(),
            Ok(vec![(1, "x", Some("1")), (4, "y", Some("2"))]),
        ),
        (
            "dotted path into nested object",
            vec![r#"{"q": "x", "reward_model": {"ground_truth": "7"}}"#],
            fields("q", Some("reward_model.ground_truth"), None),
            Ok(vec![(1, "x", Some("7"))]),
        ),
        (
            "exact name wins over a path",
            vec![r#"{"q": "x", "a.b": "1", "a": {"b": "2"}}"#],
            fields("q", Some("a.b"), None),
            Ok(vec![(1, "x", Some("1"))]),
        ),
        (
            "chat prompt",
            vec![r#"{"q": [{"role": "user", "content": "hi"}], "a": "1"}"#],
            qa(),
            Ok(vec![(1, "hi", Some("1"))]),
        ),
        (
            "tests any JSON",
            vec![r#"{"q": "x", "t": [{"stdin": "1", "stdout": "1"}]}"#],
            fields("q", None, Some("t")),
            Ok(vec![(1, "x", None)]),
        ),
        ("missing answer", vec![r#"{"q": "x", "a": "1"}"#, r#"{"q": "y"}"#], qa(), Err(vec![(2, "answer")])),
        ("null answer", vec![r#"{"q": "x", "a": null}"#], qa(), Err(vec![(1, "answer")])),
        ("bool answer", vec![r#"{"q": "x", "a": true}"#], qa(), Err(vec![(1, "answer")])),
        ("missing prompt column", vec![r#"{"question": "x", "a": "1"}"#], qa(), Err(vec![(1, "prompt")])),
        ("empty prompt", vec![r#"{"q": " ", "a": "1"}"#], qa(), Err(vec![(1, "prompt")])),
        ("numeric prompt", vec![r#"{"q": 3, "a": "1"}"#], qa(), Err(vec![(1, "prompt")])),
        ("chat prompt without content", vec![r#"{"q": [{"role": "user"}], "a": "1"}"#], qa(), Err(vec![(1, "prompt")])),
        ("empty chat prompt", vec![r#"{"q": [], "a": "1"}"#], qa(), Err(vec![(1, "prompt")])),
        ("null tests", vec![r#"{"q": "x", "t": null}"#], fields("q", None, Some("t")), Err(vec![(1, "tests")])),
        ("invalid JSON", vec![r#"{"q": "x", "a": "1"}"#, r#"{"q": "#], qa(), Err(vec![(2, "row")])),
        ("not an object", vec![r#"["x", "1"]"#], qa(), Err(vec![(1, "row")])),
        (
            "every bad row is counted",
            vec![r#"{"q": "x"}"#, r#"{"a": "1"}"#, r#"{"q": "ok", "a": "1"}"#, "nope"],
            qa(),
            Err(vec![(1, "answer"), (2, "prompt"), (4, "row")]),
        ),
    ];
    for (name, lines, map, expected) in cases {
        check(name, &lines, map, expected);
    }
}

#[test]
fn bad_rows_are_listed_up_to_the_limit_and_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..MAX_REPORTED + 5).map(|i| format!(r#"{{"q": "{i}"}}"#)).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let path = write_jsonl(dir.path(), &lines);
    let err = Dataset::load(&spec(&path, fields("q", Some("a"), None))).unwrap_err();
    let DatasetError::BadRows { count, rows, .. } = &err else { panic!("{err}") };
    assert_eq!((*count, rows.len()), (MAX_REPORTED + 5, MAX_REPORTED));
    let msg = err.to_string();
    assert!(msg.contains("25 bad rows") && msg.contains("row 1 field `answer`"), "{msg}");
    assert!(msg.ends_with("fix the rows or `dataset.fields`"), "{msg}");
}

#[test]
fn unreadable_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write_jsonl(dir.path(), &["", " "]);
    let not_parquet = dir.path().join("x.parquet");
    std::fs::write(&not_parquet, b"{\"q\": 1}\n").unwrap();
    let cases: &[(&Path, &str)] = &[
        (&empty, "has no rows"),
        (Path::new("/nonexistent/d.jsonl"), "cannot read dataset /nonexistent/d.jsonl"),
        (&not_parquet, "cannot read Parquet file"),
        (Path::new("/nonexistent/d.csv"), "dataset.format"),
    ];
    for (path, want) in cases {
        let err = Dataset::load(&spec(path, fields("q", None, None))).unwrap_err().to_string();
        assert!(err.contains(want), "{path:?}: {err}");
    }
}

fn numbered(n: usize) -> Vec<serde_json::Value> {
    (0..n).map(|i| serde_json::json!({"q": format!("p{i}")})).collect()
}

fn split_spec(fraction: f64, seed: u64, shuffle: bool, epochs: u32) -> DatasetSpec {
    DatasetSpec {
        eval_fraction: fraction,
        seed,
        shuffle,
        epochs,
        ..spec(Path::new("x.jsonl"), fields("q", None, None))
    }
}

fn rows(xs: &[r1_coordinator::dataset::Example]) -> Vec<u64> {
    xs.iter().map(|x| x.row).collect()
}

#[test]
fn eval_split_is_seeded_disjoint_and_in_file_order() {
    // (rows, fraction, expected eval size)
    let cases = [(100, 0.1, 10), (100, 0.0, 0), (10, 0.01, 1), (10, 0.25, 3), (3, 0.5, 2)];
    for (n, fraction, want) in cases {
        let a = Dataset::from_records(numbered(n), &split_spec(fraction, 7, true, 1)).unwrap();
        let b = Dataset::from_records(numbered(n), &split_spec(fraction, 7, true, 1)).unwrap();
        assert_eq!(a.eval().len(), want, "{n} rows at {fraction}");
        assert_eq!((rows(a.train()), rows(a.eval())), (rows(b.train()), rows(b.eval())), "same seed, same split");
        let mut all = [rows(a.train()), rows(a.eval())].concat();
        assert!(rows(a.train()).is_sorted() && rows(a.eval()).is_sorted());
        all.sort();
        assert_eq!(all, (1..=n as u64).collect::<Vec<_>>());
    }
    let other = Dataset::from_records(numbered(100), &split_spec(0.1, 8, true, 1)).unwrap();
    let first = Dataset::from_records(numbered(100), &split_spec(0.1, 7, true, 1)).unwrap();
    assert_ne!(rows(other.eval()), rows(first.eval()), "another seed picks other rows");
    let err = Dataset::from_records(numbered(1), &split_spec(0.5, 0, true, 1)).unwrap_err();
    assert!(matches!(err, DatasetError::NoTrainRows { .. }), "{err}");
}

#[test]
fn epoch_orders_are_seeded_permutations() {
    let ds = Dataset::from_records(numbered(10), &split_spec(0.0, 7, true, 3)).unwrap();
    // The shuffle must never change: a resumed run depends on it. Seed 7, epoch 0, as
    // computed by a separate Python transcription of SplitMix64 + Fisher–Yates.
    assert_eq!(*ds.order(0), vec![9, 3, 2, 8, 1, 5, 6, 4, 0, 7]);
    for epoch in 0..3 {
        let mut sorted = ds.order(epoch).to_vec();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<u32>>(), "epoch {epoch} is a permutation");
    }
    assert_ne!(ds.order(0), ds.order(1), "each epoch has its own order");
    let again = Dataset::from_records(numbered(10), &split_spec(0.0, 7, true, 3)).unwrap();
    assert_eq!(again.order(1), ds.order(1));
    let plain = Dataset::from_records(numbered(10), &split_spec(0.0, 7, false, 3)).unwrap();
    assert_eq!(*plain.order(2), (0..10).collect::<Vec<u32>>(), "shuffle off keeps file order");
}

#[test]
fn cursor_visits_every_row_once_per_epoch_and_resumes_exactly() {
    let ds = Arc::new(Dataset::from_records(numbered(7), &split_spec(0.0, 3, true, 2)).unwrap());
    let mut cursor = Cursor::default();
    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    while let Some((idx, next)) = ds.next(cursor) {
        cursors.push(cursor);
        seen.push(idx);
        cursor = next;
    }
    assert_eq!(cursor, Cursor { epoch: 2, index: 0 });
    assert!(ds.is_exhausted(cursor));
    assert_eq!(seen.len(), 14);
    for epoch in seen.chunks(7) {
        let mut e = epoch.to_vec();
        e.sort();
        assert_eq!(e, (0..7).collect::<Vec<_>>());
    }
    assert_eq!(cursors[7], Cursor { epoch: 1, index: 0 }, "the epoch rolls over after its last row");
    // A fresh load resumed at any cursor continues with the same rows.
    for (i, &c) in cursors.iter().enumerate() {
        let fresh = Dataset::from_records(numbered(7), &split_spec(0.0, 3, true, 2)).unwrap();
        assert_eq!(fresh.next(c).unwrap().0, seen[i], "resume at {c:?}");
    }
}

/// Writes `question` (string) and `answer` (optional int64) columns; `None` is a null.
fn write_parquet(path: &Path, questions: &[&str], answers: &[Option<i64>], compression: Compression) {
    let schema = Arc::new(
        parse_message_type("message row { REQUIRED BYTE_ARRAY question (UTF8); OPTIONAL INT64 answer; }").unwrap(),
    );
    let props = Arc::new(WriterProperties::builder().set_compression(compression).build());
    let mut writer = SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    let qs: Vec<ByteArray> = questions.iter().map(|q| ByteArray::from(*q)).collect();
    col.typed::<ByteArrayType>().write_batch(&qs, None, None).unwrap();
    col.close().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    let values: Vec<i64> = answers.iter().flatten().copied().collect();
    let defs: Vec<i16> = answers.iter().map(|a| a.is_some() as i16).collect();
    col.typed::<Int64Type>().write_batch(&values, Some(&defs), None).unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_files_read_like_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let map = || fields("question", Some("answer"), None);
    // (compression, answers, Ok(answers as text) or Err(bad rows))
    type Case = (Compression, Vec<Option<i64>>, Result<Vec<&'static str>, Vec<(u64, &'static str)>>);
    let cases: Vec<Case> = vec![
        (Compression::UNCOMPRESSED, vec![Some(1), Some(2), Some(3)], Ok(vec!["1", "2", "3"])),
        (Compression::SNAPPY, vec![Some(4), Some(-5), Some(6)], Ok(vec!["4", "-5", "6"])),
        (Compression::ZSTD(Default::default()), vec![Some(7), Some(8), Some(9)], Ok(vec!["7", "8", "9"])),
        (Compression::SNAPPY, vec![Some(1), None, None], Err(vec![(2, "answer"), (3, "answer")])),
    ];
    for (i, (compression, answers, expected)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("{i}.parquet"));
        write_parquet(&path, &["a", "b", "c"], &answers, compression);
        match (Dataset::load(&spec(&path, map())), expected) {
            (Ok(ds), Ok(want)) => {
                let got: Vec<_> = ds.train().iter().map(|x| (x.row, x.answer.clone().unwrap())).collect();
                let want: Vec<_> = want.iter().enumerate().map(|(r, a)| (r as u64 + 1, a.to_string())).collect();
                assert_eq!(got, want, "{compression:?}");
                assert_eq!(ds.train()[1].prompt, Prompt::Text("b".into()));
            }
            (Err(DatasetError::BadRows { rows, .. }), Err(want)) => {
                let got: Vec<_> = rows.iter().map(|r| (r.row, r.field.as_str())).collect();
                assert_eq!(got, want);
            }
            (got, want) => panic!("{compression:?}: expected {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn fingerprint_follows_the_file_and_eval_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let train = write_jsonl(dir.path(), &[r#"{"q": "x"}"#, r#"{"q": "y"}"#]);
    let eval = dir.path().join("e.parquet");
    write_parquet(&eval, &["e1"], &[Some(1)], Compression::SNAPPY);
    let s = DatasetSpec { eval_path: Some(eval), ..spec(&train, fields("q", None, None)) };
    let with_eval = Dataset::load(&DatasetSpec { fields: fields("q", None, None), ..s.clone() });
    // The eval file has no `q` column: it is checked with the same mapping.
    let err = with_eval.unwrap_err().to_string();
    assert!(err.contains("e.parquet") && err.contains("row 1 field `prompt`"), "{err}");
    let before = Dataset::load(&spec(&train, fields("q", None, None))).unwrap();
    assert_eq!(before.fingerprint().len(), 64);
    assert_eq!(before.fingerprint(), Dataset::load(&spec(&train, fields("q", None, None))).unwrap().fingerprint());
    write_jsonl(dir.path(), &[r#"{"q": "x"}"#, r#"{"q": "z"}"#]);
    assert_ne!(before.fingerprint(), Dataset::load(&spec(&train, fields("q", None, None))).unwrap().fingerprint());
}

#[test]
fn published_answers_become_gold_answers_and_a_row_without_one_is_named() {
    use r1_coordinator::spec::AnswerKind;
    let dir = tempfile::tempdir().unwrap();
    // GSM8K's schema: {question, answer}, the answer a worked solution ending in `#### n`.
    let path = write_jsonl(
        dir.path(),
        &[
            r#####"{"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?", "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"}"#####,
            r#####"{"question": "A house costs $1,000 a month. What does a year cost?", "answer": "12*1,000 = <<12*1000=12000>>12,000\n####  12,000"}"#####,
            r#####"{"question": "q3", "answer": "no final line here"}"#####,
        ],
    );
    let gsm8k =
        DatasetSpec { answer_kind: Some(AnswerKind::Gsm8k), ..spec(&path, fields("question", Some("answer"), None)) };
    let err = Dataset::load(&gsm8k).unwrap_err().to_string();
    assert!(
        err.contains("d.jsonl")
            && err.contains("1 bad rows")
            && err.contains("row 3 field `answer` has no `#### <answer>` line"),
        "{err}"
    );
    // Without the kind, a GSM8K solution is refused rather than compared whole (reward 0).
    let plain = DatasetSpec { answer_kind: Some(AnswerKind::Plain), ..gsm8k.clone() };
    let err = Dataset::load(&plain).unwrap_err().to_string();
    assert!(err.contains("row 1 field `answer`") && err.contains("answer_kind = \"gsm8k\""), "{err}");

    let lines = std::fs::read_to_string(&path).unwrap();
    let two: Vec<&str> = lines.lines().take(2).collect();
    let path = write_jsonl(dir.path(), &two);
    let ds = Dataset::load(&DatasetSpec { path: path.clone(), ..gsm8k.clone() }).unwrap();
    let golds: Vec<Option<&str>> = ds.train().iter().map(|x| x.answer.as_deref()).collect();
    assert_eq!(golds, [Some("72"), Some("12000")]);
    // No kind (SFT): the column as written.
    let raw = Dataset::load(&DatasetSpec { answer_kind: None, ..gsm8k.clone() }).unwrap();
    assert!(raw.train()[0].answer.as_deref().unwrap().ends_with("#### 72"));

    // A system prompt turns text into a conversation and leaves a row's own system turn alone.
    let path = write_jsonl(
        dir.path(),
        &[
            r#####"{"question": "2+2?", "answer": "#### 4"}"#####,
            r#####"{"question": [{"role": "system", "content": "own"}, {"role": "user", "content": "3+3?"}], "answer": "#### 6"}"#####,
            r#####"{"question": [{"role": "user", "content": "4+4?"}], "answer": "#### 8"}"#####,
        ],
    );
    let ds = Dataset::load(&DatasetSpec { path, system_prompt: Some("Reason step by step.".into()), ..gsm8k }).unwrap();
    let turns: Vec<Vec<(String, String)>> = ds
        .train()
        .iter()
        .map(|x| match &x.prompt {
            Prompt::Chat(m) => m.iter().map(|m| (m.role.clone(), m.content.clone())).collect(),
            Prompt::Text(t) => panic!("still text: {t}"),
        })
        .collect();
    let pair = |r: &str, c: &str| (r.to_string(), c.to_string());
    assert_eq!(
        turns,
        [
            vec![pair("system", "Reason step by step."), pair("user", "2+2?")],
            vec![pair("system", "own"), pair("user", "3+3?")],
            vec![pair("system", "Reason step by step."), pair("user", "4+4?")],
        ]
    );
}
