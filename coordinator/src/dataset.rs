//! Prompt datasets: JSONL and Parquet files mapped to [`Example`]s, split into train and
//! eval, and read through a deterministic [`Cursor`].
//!
//! [`Dataset::load`] reads and checks the whole file before a run starts: every bad row is
//! counted and the first [`MAX_REPORTED`] are reported with their row number (the line
//! number for JSONL, 1-based) and the field at fault. A column is named by
//! `dataset.fields`; a dotted name (`reward_model.ground_truth`) reaches into nested objects
//! when no column has that exact name. A prompt is a string or a list of chat messages
//! (`{role, content}`); an answer is a string or a number; tests are any JSON value. With
//! `dataset.answer_kind` each answer becomes its gold answer (`r1_spec::answer`: `#### 72`
//! → `72` for GSM8K, the last `\boxed{}` of a MATH solution, ...), and a row without one is
//! a bad row; `dataset.system_prompt` puts a system message before every prompt.
//!
//! Order: the eval split (when `eval_fraction` > 0) is picked by `seed`, and each epoch's
//! order is a permutation seeded by (`seed`, epoch), so a [`Cursor`] (epoch, index) names
//! the same example every time the same file is loaded with the same spec. The shuffle is
//! written here (SplitMix64 + Fisher–Yates) rather than taken from a crate, so that an
//! upgrade can never change the order of a run being resumed. [`Dataset::fingerprint`]
//! (SHA-256 of the file) lets the coordinator refuse to resume on a changed file.
//!
//! Limits: the whole dataset is held in memory (fine for the 10k–1M-row sets used for
//! reasoning RL; not for web-scale corpora). Parquet files may use no compression, Snappy
//! or Zstd.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::spec::{DatasetFormat, DatasetSpec, FieldMap, SpecError};

/// How many bad rows an error lists; the rest are counted.
pub const MAX_REPORTED: usize = 20;

/// One chat message of a prompt given as a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A prompt: plain text (wrapped in the R1 template by the actor) or a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Chat(Vec<ChatMessage>),
}

/// One row, mapped to the fields r1 uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Row number in its file, 1-based (the line number for JSONL).
    pub row: u64,
    pub prompt: Prompt,
    pub answer: Option<String>,
    pub tests: Option<Value>,
    pub language: Option<String>,
}

/// Where the next training example comes from: pass `epoch`, position `index` in its order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cursor {
    pub epoch: u32,
    pub index: u64,
}

/// A bad row: where, which field, what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub row: u64,
    /// The r1 field (`prompt`, `answer`, ...) or `row` when the row itself is unreadable.
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row {} field `{}` {}", self.row, self.field, self.problem)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("cannot read dataset {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot read Parquet file {path}: {source}; check that it is Parquet (uncompressed, Snappy or Zstd)")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("dataset {path} has {count} bad rows: {}; fix the rows or `dataset.fields`", list(.rows))]
    BadRows { path: PathBuf, count: usize, rows: Vec<RowError> },
    #[error("dataset {path} has no rows; point dataset.path at a file with data")]
    Empty { path: PathBuf },
    #[error("dataset.eval_fraction {fraction} leaves no training rows out of {rows}; lower it")]
    NoTrainRows { fraction: f64, rows: usize },
}

fn list(rows: &[RowError]) -> String {
    rows.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; ")
}

/// A loaded, checked dataset with its split and its per-epoch orders.
#[derive(Debug)]
pub struct Dataset {
    train: Vec<Example>,
    eval: Vec<Example>,
    seed: u64,
    shuffle: bool,
    epochs: u32,
    fingerprint: String,
    /// The last epoch's order, so that drawing in sequence costs O(1) per example.
    order_cache: Mutex<Option<(u32, Arc<Vec<u32>>)>>,
}

impl Dataset {
    /// Reads, maps and checks the whole dataset (and the eval file, if any).
    pub fn load(spec: &DatasetSpec) -> Result<Dataset, DatasetError> {
        let (rows, mut fingerprint) = read_file(&spec.path, spec.resolved_format(&spec.path)?)?;
        let mut all = map_rows(&spec.path, rows, spec)?;
        let eval = match &spec.eval_path {
            Some(path) => {
                let (rows, fp) = read_file(path, spec.resolved_format(path)?)?;
                fingerprint = format!("{fingerprint}+{fp}");
                map_rows(path, rows, spec)?
            }
            None => split_off_eval(&mut all, spec.eval_fraction, spec.seed)?,
        };
        Ok(Dataset::new(all, eval, spec, fingerprint))
    }

    /// Builds a dataset from rows already in memory (row numbers count from 1), for tests
    /// and for callers that produce rows themselves. `eval_path` is ignored.
    pub fn from_records(records: Vec<Value>, spec: &DatasetSpec) -> Result<Dataset, DatasetError> {
        let rows = records.into_iter().enumerate().map(|(i, v)| (i as u64 + 1, Ok(v))).collect();
        let mut all = map_rows(Path::new("<memory>"), rows, spec)?;
        let eval = split_off_eval(&mut all, spec.eval_fraction, spec.seed)?;
        Ok(Dataset::new(all, eval, spec, String::new()))
    }

    fn new(train: Vec<Example>, eval: Vec<Example>, spec: &DatasetSpec, fingerprint: String) -> Dataset {
        Dataset {
            train,
            eval,
            seed: spec.seed,
            shuffle: spec.shuffle,
            epochs: spec.epochs,
            fingerprint,
            order_cache: Mutex::new(None),
        }
    }

    /// Training examples in file order; [`Dataset::next`] yields indices into this slice.
    pub fn train(&self) -> &[Example] {
        &self.train
    }

    /// Held-out examples in file order.
    pub fn eval(&self) -> &[Example] {
        &self.eval
    }

    /// SHA-256 of the file(s) read, hex; empty for [`Dataset::from_records`].
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn epochs(&self) -> u32 {
        self.epochs
    }

    /// True once every epoch has been drawn.
    pub fn is_exhausted(&self, cursor: Cursor) -> bool {
        cursor.epoch >= self.epochs
    }

    /// The training index at `cursor` and the cursor after it, or `None` when exhausted.
    pub fn next(&self, cursor: Cursor) -> Option<(usize, Cursor)> {
        if self.is_exhausted(cursor) || cursor.index >= self.train.len() as u64 {
            return None;
        }
        let order = self.order(cursor.epoch);
        let idx = order[cursor.index as usize] as usize;
        let mut after = Cursor { epoch: cursor.epoch, index: cursor.index + 1 };
        if after.index == self.train.len() as u64 {
            after = Cursor { epoch: cursor.epoch + 1, index: 0 };
        }
        Some((idx, after))
    }

    /// The order of training indices in `epoch`: a seeded permutation, or file order when
    /// `shuffle` is off.
    pub fn order(&self, epoch: u32) -> Arc<Vec<u32>> {
        let mut cache = self.order_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((e, order)) = cache.as_ref()
            && *e == epoch
        {
            return order.clone();
        }
        let mut order: Vec<u32> = (0..self.train.len() as u32).collect();
        if self.shuffle {
            shuffle(&mut order, mix(self.seed, 1 + epoch as u64));
        }
        let order = Arc::new(order);
        *cache = Some((epoch, order.clone()));
        order
    }
}

/// Moves a seeded `fraction` of the rows (rounded, at least one when > 0) into a new list;
/// both lists stay in file order.
fn split_off_eval(all: &mut Vec<Example>, fraction: f64, seed: u64) -> Result<Vec<Example>, DatasetError> {
    if fraction <= 0.0 {
        return Ok(Vec::new());
    }
    let n = all.len();
    let n_eval = ((n as f64 * fraction).round() as usize).max(1);
    if n_eval >= n {
        return Err(DatasetError::NoTrainRows { fraction, rows: n });
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    shuffle(&mut order, mix(seed, 0));
    let mut is_eval = vec![false; n];
    for &i in &order[..n_eval] {
        is_eval[i as usize] = true;
    }
    let (eval, train): (Vec<_>, Vec<_>) = std::mem::take(all).into_iter().zip(is_eval).partition(|(_, e)| *e);
    *all = train.into_iter().map(|(x, _)| x).collect();
    Ok(eval.into_iter().map(|(x, _)| x).collect())
}

type RawRow = (u64, Result<Value, String>);

/// Every row of a JSONL or Parquet file as a JSON value (or the problem with a row that is
/// not), numbered from 1 (the line number for JSONL), for readers outside a run such as
/// `r1ctl eval`.
pub fn read_rows(path: &Path, format: DatasetFormat) -> Result<Vec<RawRow>, DatasetError> {
    read_file(path, format).map(|(rows, _)| rows)
}

/// Reads every row of a file as JSON values (or a per-row parse problem), and its SHA-256.
fn read_file(path: &Path, format: DatasetFormat) -> Result<(Vec<RawRow>, String), DatasetError> {
    let io = |source| DatasetError::Io { path: path.into(), source };
    let mut hasher = Sha256::new();
    std::io::copy(&mut File::open(path).map_err(io)?, &mut hasher).map_err(io)?;
    let fingerprint = hex::encode(hasher.finalize());
    let file = File::open(path).map_err(io)?;
    let rows = match format {
        DatasetFormat::Jsonl => {
            let mut rows = Vec::new();
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(io)?;
                if line.trim().is_empty() {
                    continue;
                }
                let parsed = serde_json::from_str(&line).map_err(|e| format!("is not valid JSON ({e})"));
                rows.push((i as u64 + 1, parsed));
            }
            rows
        }
        DatasetFormat::Parquet => {
            use parquet::file::reader::{FileReader, SerializedFileReader};
            let pq = |source| DatasetError::Parquet { path: path.into(), source };
            let reader = SerializedFileReader::new(file).map_err(pq)?;
            let mut rows = Vec::new();
            for (i, row) in reader.get_row_iter(None).map_err(pq)?.enumerate() {
                rows.push((i as u64 + 1, Ok(row.map_err(pq)?.to_json_value())));
            }
            rows
        }
    };
    if rows.is_empty() {
        return Err(DatasetError::Empty { path: path.into() });
    }
    Ok((rows, fingerprint))
}

/// Maps raw rows to examples, collecting every bad row.
fn map_rows(path: &Path, rows: Vec<RawRow>, spec: &DatasetSpec) -> Result<Vec<Example>, DatasetError> {
    if rows.is_empty() {
        return Err(DatasetError::Empty { path: path.into() });
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut bad = Vec::new();
    let mut count = 0;
    for (row, value) in rows {
        let mapped = match value {
            Ok(v) => map_row(row, v, spec).map_err(|e| (e.field.to_string(), e.problem)),
            Err(problem) => Err(("row".to_string(), problem)),
        };
        match mapped {
            Ok(x) => out.push(x),
            Err((field, problem)) => {
                count += 1;
                if bad.len() < MAX_REPORTED {
                    bad.push(RowError { row, field, problem });
                }
            }
        }
    }
    if count > 0 {
        return Err(DatasetError::BadRows { path: path.into(), count, rows: bad });
    }
    Ok(out)
}

struct FieldProblem {
    field: &'static str,
    problem: String,
}

fn map_row(row: u64, value: Value, spec: &DatasetSpec) -> Result<Example, FieldProblem> {
    let fields: &FieldMap = &spec.fields;
    let Value::Object(obj) = value else {
        return Err(FieldProblem { field: "row", problem: "is not a JSON object".into() });
    };
    let problem = |field, problem: String| FieldProblem { field, problem };
    let prompt = match lookup(&obj, &fields.prompt) {
        None | Some(Value::Null) => {
            return Err(problem(
                "prompt",
                format!("is missing (column `{}`); set dataset.fields.prompt", fields.prompt),
            ));
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(problem("prompt", "is empty".into()));
        }
        Some(Value::String(s)) => Prompt::Text(s.clone()),
        Some(v @ Value::Array(_)) => match serde_json::from_value::<Vec<ChatMessage>>(v.clone()) {
            Ok(msgs) if !msgs.is_empty() => Prompt::Chat(msgs),
            _ => {
                return Err(problem("prompt", "is a list but not of {role, content} messages".into()));
            }
        },
        Some(_) => {
            return Err(problem("prompt", "is neither text nor a list of chat messages".into()));
        }
    };
    let required = |field: &'static str, col: &Option<String>| -> Result<Option<Value>, FieldProblem> {
        let Some(col) = col else { return Ok(None) };
        match lookup(&obj, col) {
            None | Some(Value::Null) => Err(problem(field, format!("is missing (column `{col}`)"))),
            Some(v) => Ok(Some(v.clone())),
        }
    };
    let answer = match required("answer", &fields.answer)? {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(problem("answer", "is neither text nor a number".into())),
    };
    // The gold answer, extracted by the dataset's answer kind (`r1_spec::answer`).
    let answer = match (answer, spec.answer_kind) {
        (Some(raw), Some(kind)) => Some(kind.gold(&raw).map_err(|e| problem("answer", e))?),
        (answer, _) => answer,
    };
    let prompt = match (prompt, &spec.system_prompt) {
        (prompt, None) => prompt,
        (Prompt::Chat(msgs), Some(_)) if msgs[0].role == "system" => Prompt::Chat(msgs),
        (prompt, Some(system)) => {
            let mut msgs = vec![ChatMessage { role: "system".into(), content: system.clone() }];
            match prompt {
                Prompt::Text(text) => msgs.push(ChatMessage { role: "user".into(), content: text }),
                Prompt::Chat(turns) => msgs.extend(turns),
            }
            Prompt::Chat(msgs)
        }
    };
    let tests = required("tests", &fields.tests)?;
    let language = match required("language", &fields.language)? {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(problem("language", "is not text".into())),
    };
    Ok(Example { row, prompt, answer, tests, language })
}

/// A column by exact name, else by a dotted path into nested objects.
fn lookup<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if let Some(v) = obj.get(key) {
        return Some(v);
    }
    let mut parts = key.split('.');
    let mut cur = obj.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// Mixes a seed and a stream number into one SplitMix64 state.
fn mix(seed: u64, stream: u64) -> u64 {
    splitmix(&mut (seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F)))
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fisher–Yates with SplitMix64; the output for a given seed must never change.
fn shuffle(xs: &mut [u32], seed: u64) {
    let mut state = seed;
    for i in (1..xs.len()).rev() {
        let j = ((splitmix(&mut state) as u128 * (i as u128 + 1)) >> 64) as usize;
        xs.swap(i, j);
    }
}
