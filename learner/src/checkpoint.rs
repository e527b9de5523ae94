//! Atomic checkpoint folders.
//!
//! A checkpoint of step N is the folder `<dir>/step-N` holding
//! - the model weights, written by a caller-supplied function (the model crate writes
//!   Hugging Face safetensors, so a checkpoint is also a loadable model folder);
//! - `optimizer.mpk`: AdamW moments keyed by parameter path (Burn `NamedMpkFileRecorder`,
//!   full precision, so state round-trips bit for bit), and `optimizer.json` (steps taken);
//! - `trainer_state.json`: step, RNG state, data cursor, counters ([`TrainerState`]);
//! - `run_config.json`: the resolved run config (`config.json` is the model's HF config);
//! - `checksums.json`: the SHA-256 of every other file, written last, so that a damaged or
//!   truncated file is found ([`Checkpoint::verify`]) before anything is loaded from it.
//!
//! Everything is written into `<dir>/.tmp-step-N`, every file and the folder are fsynced,
//! then the folder is renamed to `step-N` and `<dir>` is fsynced. A crash leaves at most a
//! `.tmp-*` folder, which [`latest`] ignores and the next save of that step replaces.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder, RecorderError};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::LearnerError;
use crate::optim::{Optim, OptimState};

/// Errors while saving or loading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("writing model weights into {path} failed: {source}")]
    Weights { path: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
    #[error(
        "{path}: optimizer state: {source}; the file is damaged or from another Burn version, resume from an older step"
    )]
    Recorder { path: PathBuf, source: RecorderError },
    #[error("{path}: {source}; the file is damaged, resume from an older step")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("checkpoint {0} already exists; resume from it or remove it before saving this step again")]
    Exists(PathBuf),
    #[error(
        "checkpoint {dir} is damaged: {file} {why}; resume from an older checkpoint (remove this folder, or let the learner fall back to the one before it)"
    )]
    Damaged { dir: PathBuf, file: String, why: String },
    #[error(transparent)]
    Learner(#[from] LearnerError),
}

type Result<T> = std::result::Result<T, CheckpointError>;

/// Where the trainer is: everything besides weights and optimizer needed to resume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    pub step: u64,
    /// RNG state as words (e.g. a ChaCha seed and word position).
    pub rng: Vec<u64>,
    /// Position in the prompt dataset.
    pub data_cursor: u64,
    /// Anything else that counts: samples seen, tokens trained, policy version…
    pub counters: BTreeMap<String, u64>,
}

const OPTIMIZER: &str = "optimizer";
const OPTIMIZER_JSON: &str = "optimizer.json";
const TRAINER_STATE: &str = "trainer_state.json";
/// The resolved run config. Not `config.json`: that name belongs to the HF model config the
/// weights writer puts beside it, so a checkpoint folder loads as a Hugging Face model.
const CONFIG: &str = "run_config.json";
/// SHA-256 of every other file of the checkpoint, by path relative to its folder.
const CHECKSUMS: &str = "checksums.json";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Checksums {
    sha256: BTreeMap<String, String>,
}

/// Whether a checkpoint's files are the ones it was saved with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Every file has the checksum recorded when it was saved.
    Intact,
    /// Written before checkpoints carried checksums: nothing to check against.
    NoChecksums,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizerMeta {
    steps: u64,
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| CheckpointError::Io { path: path.to_path_buf(), source })
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text =
        serde_json::to_vec_pretty(value).map_err(|source| CheckpointError::Json { path: path.into(), source })?;
    io(path, fs::write(path, text))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = io(path, fs::read(path))?;
    serde_json::from_slice(&text).map_err(|source| CheckpointError::Json { path: path.into(), source })
}

/// Every file under `dir`, as paths relative to it, sorted.
fn files(dir: &Path, under: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in io(dir, fs::read_dir(dir))? {
        let p = io(dir, entry)?.path();
        if p.is_dir() {
            files(&p, under, out)?;
        } else {
            out.push(p.strip_prefix(under).unwrap_or(&p).to_path_buf());
        }
    }
    out.sort();
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = io(path, File::open(path))?;
    let mut hasher = Sha256::new();
    io(path, std::io::copy(&mut file, &mut hasher))?;
    Ok(hex::encode(hasher.finalize()))
}

/// fsync every file under `path`, then the folders themselves.
fn sync_tree(path: &Path) -> Result<()> {
    for entry in io(path, fs::read_dir(path))? {
        let p = io(path, entry)?.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else {
            io(&p, File::open(&p).and_then(|f| f.sync_all()))?;
        }
    }
    io(path, File::open(path).and_then(|f| f.sync_all()))
}

/// Writes checkpoint `step` into `dir` atomically and returns its folder.
pub fn save<B, M, C, E>(
    dir: &Path,
    step: u64,
    write_weights: impl FnOnce(&Path) -> std::result::Result<(), E>,
    optim: &Optim<B, M>,
    module: &M,
    state: &TrainerState,
    config: &C,
) -> Result<PathBuf>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    C: Serialize,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let done = dir.join(format!("step-{step}"));
    if done.exists() {
        return Err(CheckpointError::Exists(done));
    }
    let tmp = dir.join(format!(".tmp-step-{step}"));
    if tmp.exists() {
        io(&tmp, fs::remove_dir_all(&tmp))?;
    }
    io(&tmp, fs::create_dir_all(&tmp))?;

    write_weights(&tmp).map_err(|e| CheckpointError::Weights { path: tmp.clone(), source: e.into() })?;
    let OptimState { steps, adam } = optim.state(module);
    let opt_path = tmp.join(OPTIMIZER);
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
        .record(adam, opt_path.clone())
        .map_err(|source| CheckpointError::Recorder { path: opt_path, source })?;
    write_json(&tmp.join(OPTIMIZER_JSON), &OptimizerMeta { steps })?;
    write_json(&tmp.join(TRAINER_STATE), state)?;
    write_json(&tmp.join(CONFIG), config)?;
    let mut all = Vec::new();
    files(&tmp, &tmp, &mut all)?;
    let mut sha256 = BTreeMap::new();
    for f in all {
        sha256.insert(f.to_string_lossy().into_owned(), sha256_file(&tmp.join(&f))?);
    }
    write_json(&tmp.join(CHECKSUMS), &Checksums { sha256 })?;

    sync_tree(&tmp)?;
    io(&done, fs::rename(&tmp, &done))?;
    io(dir, File::open(dir).and_then(|f| f.sync_all()))?;
    Ok(done)
}

/// A complete checkpoint folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub step: u64,
    pub path: PathBuf,
}

/// The complete checkpoint with the highest step in `dir`, if any; temporary folders
/// from interrupted saves and unrelated entries are ignored. A missing `dir` has none.
pub fn latest(dir: &Path) -> Result<Option<Checkpoint>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut best: Option<Checkpoint> = None;
    for entry in io(dir, fs::read_dir(dir))? {
        let path = io(dir, entry)?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(step) = step.filter(|&s| path.is_dir() && best.as_ref().is_none_or(|b| s > b.step)) {
            best = Some(Checkpoint { step, path });
        }
    }
    Ok(best)
}

impl Checkpoint {
    /// Checks every file against `checksums.json`: a missing, truncated or altered file is
    /// [`CheckpointError::Damaged`], naming it. A checkpoint written before checksums existed
    /// is [`Verified::NoChecksums`].
    pub fn verify(&self) -> Result<Verified> {
        let damaged =
            |file: &str, why: String| CheckpointError::Damaged { dir: self.path.clone(), file: file.into(), why };
        let list = self.path.join(CHECKSUMS);
        if !list.exists() {
            return Ok(Verified::NoChecksums);
        }
        let sums: Checksums = read_json(&list).map_err(|e| damaged(CHECKSUMS, format!("does not parse ({e})")))?;
        for (file, want) in &sums.sha256 {
            let path = self.path.join(file);
            if !path.is_file() {
                return Err(damaged(file, "is missing".into()));
            }
            let got = sha256_file(&path)?;
            if &got != want {
                let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                return Err(damaged(
                    file,
                    format!("has SHA-256 {got} ({len} bytes), not the {want} it was saved with"),
                ));
            }
        }
        Ok(Verified::Intact)
    }

    pub fn trainer_state(&self) -> Result<TrainerState> {
        read_json(&self.path.join(TRAINER_STATE))
    }

    pub fn config<C: DeserializeOwned>(&self) -> Result<C> {
        read_json(&self.path.join(CONFIG))
    }

    /// Restores optimizer state onto `module` (load the weights into it first).
    pub fn load_optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        optim: &mut Optim<B, M>,
        module: &M,
        device: &B::Device,
    ) -> Result<()> {
        let meta: OptimizerMeta = read_json(&self.path.join(OPTIMIZER_JSON))?;
        let path = self.path.join(OPTIMIZER);
        let adam = NamedMpkFileRecorder::<FullPrecisionSettings>::new()
            .load(path.clone(), device)
            .map_err(|source| CheckpointError::Recorder { path, source })?;
        optim.load_state(module, OptimState { steps: meta.steps, adam })?;
        Ok(())
    }
}
