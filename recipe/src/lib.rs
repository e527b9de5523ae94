//! r1-recipe: everything the laptop-scale R1 recipe needs around the RL loop.
//!
//! From one seed and one [`RecipeConfig`], [`prepare`] makes, in a folder:
//! synthetic reasoning tasks with a held-out eval split ([`tasks`], [`data`]), cold-start
//! chain-of-thought examples in the R1 format, a byte-level BPE tokenizer trained on the
//! recipe's text ([`tokenizer`]), and a small Qwen2 base model pretrained from random weights
//! ([`model`], [`train`]), saved as a Hugging Face folder. Each stage is stamped with a hash of
//! its inputs and reused when they are unchanged, so `r1ctl up` can call [`prepare`] first
//! every time.
//!
//! Also here, as libraries behind `r1ctl eval`, `r1ctl sample` and `r1ctl sft`:
//! [`eval`] (pass@1 over k samples, unbiased pass@k, cons@k, format rate; rejection
//! sampling), [`benchmark`] (MATH-500, AIME, GSM8K and GPQA-Diamond as lighteval defines
//! them) and
//! [`train`] (plain SFT: cold start and distillation into a student), and [`stages`]: the
//! recipe's coordinator stages and the run spec each submits.
//!
//! Layout of a prepared folder:
//!
//! ```text
//! DIR/recipe.json                        the resolved config
//! DIR/data/{train,eval}.jsonl             {"prompt","answer","family","difficulty"}
//! DIR/data/coldstart.jsonl                {"prompt","completion","answer"} (R1 format)
//! DIR/data/pretrain.jsonl                 {"prompt","completion","answer"} (raw text)
//! DIR/tokenizer/tokenizer.json            + tokenizer_config.json
//! DIR/base/                               config.json, model.safetensors, tokenizer files,
//!                                         generation_config.json
//! DIR/<stage>/stamp.json                  the stage's input hash (and the pretraining report)
//! ```

pub mod benchmark;
pub mod data;
pub mod eval;
pub mod model;
pub mod stages;
pub mod tasks;
pub mod tokenizer;
pub mod train;

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use r1_learner::collective::{Collective, SingleRank};
use r1_model::{CausalLm, CpuTrainBackend, PromptTemplate, TextTokenizer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use data::{PretrainMix, SftRecord, TaskConfig, TaskItem};
pub use eval::{EvalReport, GenConfig};
pub use model::ModelShape;
pub use tokenizer::TokenizerConfig;
pub use train::{SftConfig, StepLog, TrainReport};

/// Bumped whenever a stage would produce different output for the same config, so that
/// [`prepare`] redoes it instead of reusing an old folder.
pub const RECIPE_VERSION: u32 = 1;

/// Errors of the recipe library.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("invalid recipe config: {0}")]
    Config(String),
    #[error("{0}")]
    Input(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} line {line}: {problem}")]
    Row { path: PathBuf, line: usize, problem: String },
    #[error("{path} line {line}: field `{field}` {problem}")]
    Field { path: PathBuf, line: usize, field: String, problem: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Model(#[from] r1_model::ModelError),
    #[error(transparent)]
    Learner(#[from] r1_learner::LearnerError),
    #[error("training diverged at step {step} (loss {loss}); lower the learning rate")]
    Diverged { step: u64, loss: f64 },
}

impl RecipeError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}

/// The whole recipe. Defaults are the laptop preset (see `docs/reproduction.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecipeConfig {
    pub seed: u64,
    pub tasks: TaskConfig,
    /// The pretraining corpus.
    pub corpus: PretrainMix,
    pub tokenizer: TokenizerConfig,
    pub model: ModelShape,
    /// Pretraining of the base model (`loss_on_prompt` is forced on).
    pub pretrain: SftConfig,
}

impl Default for RecipeConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            tasks: TaskConfig::default(),
            corpus: PretrainMix::default(),
            tokenizer: TokenizerConfig::default(),
            model: ModelShape::default(),
            // Small batches, many steps: the model learns to copy the question's numbers into
            // its steps only after a few thousand documents, and updates count more than
            // tokens per update here (docs/reproduction.md).
            pretrain: SftConfig {
                steps: 1200,
                batch_size: 12,
                lr: 4e-3,
                warmup_steps: 30,
                min_lr_ratio: 0.1,
                weight_decay: 0.01,
                max_grad_norm: 1.0,
                loss_on_prompt: true,
                seed: 0,
            },
        }
    }
}

impl RecipeConfig {
    /// A config small enough for tests: seconds, not minutes.
    pub fn tiny() -> Self {
        Self {
            tasks: TaskConfig { train: 64, eval: 16, coldstart: 16, ..TaskConfig::default() },
            corpus: PretrainMix { documents: 200, ..PretrainMix::default() },
            tokenizer: TokenizerConfig { vocab_size: 300, min_frequency: 2 },
            model: ModelShape {
                hidden_size: 32,
                intermediate_size: 64,
                num_layers: 1,
                num_heads: 2,
                num_kv_heads: 1,
                max_position_embeddings: 512,
            },
            pretrain: SftConfig { steps: 4, batch_size: 4, warmup_steps: 1, ..Self::default().pretrain },
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), RecipeError> {
        self.tasks.validate()?;
        self.corpus.validate()?;
        self.pretrain.validate()
    }
}

/// What [`prepare`] made, and what it reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    pub dir: PathBuf,
    pub train_jsonl: PathBuf,
    pub eval_jsonl: PathBuf,
    pub coldstart_jsonl: PathBuf,
    pub pretrain_jsonl: PathBuf,
    /// The folder holding `tokenizer.json`.
    pub tokenizer_dir: PathBuf,
    /// The pretrained base model (a Hugging Face folder).
    pub base_model_dir: PathBuf,
    /// Stages found up to date and reused: any of `data`, `tokenizer`, `base`.
    pub reused: Vec<String>,
    pub pretrain_report: TrainReport,
    /// Wall time of this call.
    pub seconds: f64,
}

/// Progress of [`prepare_with`].
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A stage starts (`reused` = it was up to date and is kept).
    Stage { name: &'static str, reused: bool },
    /// A pretraining step finished.
    Pretrain(&'a StepLog),
}

#[derive(Debug, Serialize, Deserialize)]
struct Stamp {
    key: String,
    #[serde(default)]
    report: Option<TrainReport>,
}

fn key(parts: &[&serde_json::Value]) -> String {
    let mut h = Sha256::new();
    h.update(RECIPE_VERSION.to_le_bytes());
    for p in parts {
        h.update(serde_json::to_vec(p).expect("json"));
        h.update([0]);
    }
    hex::encode(h.finalize())
}

fn read_stamp(dir: &Path) -> Option<Stamp> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("stamp.json")).ok()?).ok()
}

/// Builds one stage into the folder it is given, reporting events; `None` when the stage
/// trains nothing.
type StageBuild<'a> = dyn FnMut(&Path, &mut dyn FnMut(Event)) -> Result<Option<TrainReport>, RecipeError> + 'a;

/// Runs `build` into a temporary folder and moves it to `dir` with its stamp, unless `dir`
/// already carries the stamp `key` (then it is reused).
fn stage(
    dir: &Path,
    name: &'static str,
    key: &str,
    reused: &mut Vec<String>,
    on_event: &mut dyn FnMut(Event),
    build: &mut StageBuild<'_>,
) -> Result<Option<TrainReport>, RecipeError> {
    let out = dir.join(name);
    if let Some(s) = read_stamp(&out)
        && s.key == key
    {
        on_event(Event::Stage { name, reused: true });
        reused.push(name.to_string());
        return Ok(s.report);
    }
    on_event(Event::Stage { name, reused: false });
    let tmp = dir.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| RecipeError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| RecipeError::io(&tmp, e))?;
    let report = build(&tmp, on_event)?;
    let stamp = Stamp { key: key.to_string(), report: report.clone() };
    let path = tmp.join("stamp.json");
    std::fs::write(&path, serde_json::to_string_pretty(&stamp).expect("json") + "\n")
        .map_err(|e| RecipeError::io(&path, e))?;
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| RecipeError::io(&out, e))?;
    }
    std::fs::rename(&tmp, &out).map_err(|e| RecipeError::io(&out, e))?;
    Ok(report)
}

/// [`prepare_with`] without progress events.
pub fn prepare(dir: &Path, cfg: &RecipeConfig) -> Result<Prepared, RecipeError> {
    prepare_with(dir, cfg, &mut |_| {})
}

/// Makes (or reuses) the recipe's data, tokenizer and base model in `dir`.
pub fn prepare_with(dir: &Path, cfg: &RecipeConfig, on_event: &mut dyn FnMut(Event)) -> Result<Prepared, RecipeError> {
    prepare_with_peers(dir, cfg, on_event, &mut || Ok(Box::new(SingleRank)))
}

/// Opens the collective the base model's pretraining runs on (rank 0 of it is this process).
pub type Peers<'a> = dyn FnMut() -> Result<Box<dyn Collective>, RecipeError> + 'a;

/// [`prepare_with`], pretraining the base model data-parallel on the collective `peers`
/// opens (called only when the base has to be built; this process is its rank 0 and saves
/// the model). Each other rank runs [`pretrain_peer`] on this folder once the data and the
/// tokenizer are written, which they are before `peers` is called.
pub fn prepare_with_peers(
    dir: &Path,
    cfg: &RecipeConfig,
    on_event: &mut dyn FnMut(Event),
    peers: &mut Peers<'_>,
) -> Result<Prepared, RecipeError> {
    cfg.validate()?;
    let t0 = std::time::Instant::now();
    std::fs::create_dir_all(dir).map_err(|e| RecipeError::io(dir, e))?;
    let resolved = dir.join("recipe.json");
    std::fs::write(&resolved, serde_json::to_string_pretty(cfg).expect("json") + "\n")
        .map_err(|e| RecipeError::io(&resolved, e))?;
    // Each key hashes the stage's own config and the files it reads, so a stage is redone
    // exactly when its inputs changed (an upstream stage redone with the same result is not a
    // change).
    let data_key = key(&[&json(&cfg.seed), &json(&cfg.tasks), &json(&cfg.corpus)]);
    let data_dir = dir.join("data");
    let tokenizer_dir = dir.join("tokenizer");
    let mut reused = Vec::new();

    stage(dir, "data", &data_key, &mut reused, on_event, &mut |out, _| {
        let s = data::make_splits(&cfg.tasks, &cfg.corpus, cfg.seed)?;
        data::write_jsonl(&out.join("train.jsonl"), s.train.iter().map(data::TaskRecord::from))?;
        data::write_jsonl(&out.join("eval.jsonl"), s.eval.iter().map(data::TaskRecord::from))?;
        data::write_jsonl(&out.join("coldstart.jsonl"), s.coldstart.iter().map(data::coldstart_record))?;
        data::write_jsonl(&out.join("pretrain.jsonl"), &s.pretrain)?;
        Ok(None)
    })?;

    let tok_key = key(&[
        &files_hash(&[&data_dir.join("pretrain.jsonl"), &data_dir.join("coldstart.jsonl")])?,
        &json(&cfg.tokenizer),
    ]);
    stage(dir, "tokenizer", &tok_key, &mut reused, on_event, &mut |out, _| {
        let docs: Vec<SftRecord> = data::read_jsonl(&data_dir.join("pretrain.jsonl"))?;
        let cold: Vec<SftRecord> = data::read_jsonl(&data_dir.join("coldstart.jsonl"))?;
        let texts: Vec<String> = docs
            .iter()
            .map(|d| format!("{}{}", d.prompt, d.completion))
            .chain(cold.iter().map(|d| format!("{}{}", data::r1_prompt(&d.prompt), d.completion)))
            .collect();
        let tok = tokenizer::train(texts.iter().map(String::as_str), &cfg.tokenizer)?;
        tokenizer::save(&tok, out, cfg.model.max_position_embeddings)?;
        Ok(None)
    })?;

    let base_key = key(&[
        &files_hash(&[&data_dir.join("pretrain.jsonl"), &tokenizer_dir.join("tokenizer.json")])?,
        &json(&cfg.model),
        &json(&cfg.pretrain),
        &json(&cfg.seed),
    ]);
    let report = stage(dir, "base", &base_key, &mut reused, on_event, &mut |out, on_event| {
        let mut collective = peers()?;
        let (model, report) = pretrain(dir, cfg, collective.as_mut(), &mut |s| on_event(Event::Pretrain(s)))?;
        model::save_hf(&model, &tokenizer_dir, out)?;
        Ok(Some(report))
    })?;

    Ok(Prepared {
        dir: dir.to_path_buf(),
        train_jsonl: data_dir.join("train.jsonl"),
        eval_jsonl: data_dir.join("eval.jsonl"),
        coldstart_jsonl: data_dir.join("coldstart.jsonl"),
        pretrain_jsonl: data_dir.join("pretrain.jsonl"),
        tokenizer_dir,
        base_model_dir: dir.join("base"),
        reused,
        pretrain_report: report.ok_or_else(|| {
            RecipeError::Input("the base stage has no pretraining report; delete it and prepare again".into())
        })?,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The base model's pretraining from `dir`'s data and tokenizer, as one rank of `collective`.
fn pretrain(
    dir: &Path,
    cfg: &RecipeConfig,
    collective: &mut dyn Collective,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<(CausalLm<CpuTrainBackend>, TrainReport), RecipeError> {
    let tokenizer_dir = dir.join("tokenizer");
    let tok = TextTokenizer::from_dir(&tokenizer_dir)?;
    let eos =
        tok.eos_token_id().ok_or_else(|| RecipeError::Tokenizer(format!("the tokenizer has no {}", tokenizer::EOS)))?;
    let vocab = tok.inner().get_vocab_size(true);
    let model_cfg = cfg.model.config(vocab, eos)?;
    let device = Default::default();
    CpuTrainBackend::seed(&device, cfg.seed);
    let model = CausalLm::<CpuTrainBackend>::init(&model_cfg, &device);
    let docs: Vec<SftRecord> = data::read_jsonl(&dir.join("data").join("pretrain.jsonl"))?;
    let examples = train::encode(&docs, &tok, PromptTemplate::Raw, eos, model_cfg.max_position_embeddings)?;
    let train_cfg = SftConfig { loss_on_prompt: true, ..cfg.pretrain.clone() };
    train::train_ranked(model, &examples, &train_cfg, &device, collective, on_step)
}

/// A rank other than 0 of [`prepare_with_peers`]'s pretraining: trains its shard of every
/// batch from the data and tokenizer rank 0 wrote in `dir` (with the same `cfg`), and keeps
/// nothing; rank 0 saves the model, the same on every rank.
pub fn pretrain_peer(
    dir: &Path,
    cfg: &RecipeConfig,
    collective: &mut dyn Collective,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<TrainReport, RecipeError> {
    cfg.validate()?;
    Ok(pretrain(dir, cfg, collective, on_step)?.1)
}

/// SHA-256 of the files' bytes, as a JSON string.
fn files_hash(paths: &[&Path]) -> Result<serde_json::Value, RecipeError> {
    let mut h = Sha256::new();
    for p in paths {
        h.update(std::fs::read(p).map_err(|e| RecipeError::io(p, e))?);
        h.update([0]);
    }
    Ok(serde_json::Value::String(hex::encode(h.finalize())))
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("config serialises")
}

/// Loads a Hugging Face model folder onto the CPU backend with autodiff, for training.
pub fn load_for_training(dir: &Path) -> Result<CausalLm<CpuTrainBackend>, RecipeError> {
    Ok(r1_model::load::<CpuTrainBackend>(dir, &Default::default())?)
}

/// Loads a model folder for inference on backend `B`.
pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<CausalLm<B>, RecipeError> {
    Ok(r1_model::load::<B>(dir, device)?)
}
