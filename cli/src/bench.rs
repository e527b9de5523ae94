//! `r1ctl bench`: throughput of batched generation and of a GRPO train step, on a model
//! folder or a named shape with random weights, so a fleet can be sized. The peer numbers
//! (PyTorch/transformers on the same shapes) come from `bench/peer/` and the comparison is
//! recorded in `docs/benchmarks.md`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use clap::{Args, Subcommand};
use r1_model::{CausalLm, SamplingParams};
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::backend::{DeviceKind, with_backend};
use crate::shapes::Shape;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Tokens/s of batched sampling (prompt prefill + fixed-length decode)
    Generate(GenArgs),
    /// Tokens/s of one GRPO optimizer step (forward, loss, backward, AdamW)
    TrainStep(TrainArgs),
    /// MB/s of the learner-to-actor weight stream against raw loopback TCP
    Weights(crate::weights_bench::WeightsArgs),
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Hugging Face model folder (default: random weights of --shape)
    #[arg(long, conflicts_with = "shape")]
    pub(crate) model: Option<PathBuf>,
    /// Model shape with random weights
    #[arg(long, value_enum, default_value_t = Shape::Small)]
    pub(crate) shape: Shape,
    #[arg(long, value_enum, default_value_t)]
    pub(crate) device: DeviceKind,
    /// Print one JSON object instead of a sentence
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Sequences decoded together
    #[arg(long, default_value_t = 16)]
    pub(crate) batch: usize,
    #[arg(long, default_value_t = 64)]
    pub(crate) prompt_len: usize,
    /// New tokens per sequence (no early stop)
    #[arg(long, default_value_t = 64)]
    pub(crate) new_tokens: usize,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Sequences per step
    #[arg(long, default_value_t = 4)]
    pub(crate) batch: usize,
    /// Tokens per sequence
    #[arg(long, default_value_t = 256)]
    pub(crate) seq_len: usize,
    /// Timed steps (after one warm-up step)
    #[arg(long, default_value_t = 3)]
    pub(crate) steps: usize,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Generate(a) => with_backend!(a.model.device, |B, device| generate::<B>(&a, &device)),
        BenchCommand::TrainStep(a) => with_backend!(a.model.device, |B, device| crate::train_bench::train_step::<B>(&a, &device)),
        BenchCommand::Weights(a) => crate::weights_bench::run(a),
    }
}

pub(crate) fn load_model<B: Backend>(m: &ModelArgs, device: &B::Device) -> Result<(CausalLm<B>, String)> {
    Ok(match &m.model {
        Some(dir) => (r1_model::load::<B>(dir, device).context("cannot load the model")?, dir.display().to_string()),
        None => (CausalLm::init(&m.shape.config(), device), m.shape.name().to_string()),
    })
}

pub(crate) fn random_ids(n: usize, len: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| (0..len).map(|_| rng.random_range(0..vocab as u32)).collect()).collect()
}

pub(crate) fn report(m: &ModelArgs, value: serde_json::Value, sentence: String) {
    if m.json {
        println!("{value}");
    } else {
        println!("{sentence}");
    }
}

fn generate<B: Backend>(a: &GenArgs, device: &B::Device) -> Result<()> {
    let (model, name) = load_model::<B>(&a.model, device)?;
    let prompts = random_ids(a.batch, a.prompt_len, model.config().vocab_size, 0);
    let params = SamplingParams { max_new_tokens: a.new_tokens, max_batch: a.batch, ..Default::default() };
    // Warm-up: allocations, thread pools, autotuning on GPU backends.
    let warm = SamplingParams { max_new_tokens: 2, ..params.clone() };
    r1_model::sample::generate(&model, &prompts, 1, &warm, None, device, &mut |_| {})?;
    let bar = crate::progress::tokens_bar((a.batch * a.new_tokens) as u64);
    let t0 = Instant::now();
    let out = r1_model::sample::generate(&model, &prompts, 1, &params, None, device, &mut |k| bar.inc(k as u64))?;
    let secs = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let tokens: usize = out.iter().flatten().map(|s| s.tokens.len()).sum();
    let tps = tokens as f64 / secs;
    report(
        &a.model,
        json!({"bench": "generate", "model": name, "device": format!("{:?}", a.model.device).to_lowercase(),
               "batch": a.batch, "prompt_len": a.prompt_len, "new_tokens": a.new_tokens,
               "seconds": secs, "tokens_per_s": tps}),
        format!("generate {name}: batch {} prompt {} new {}: {tokens} tokens in {secs:.2}s = {tps:.1} tokens/s",
            a.batch, a.prompt_len, a.new_tokens),
    );
    Ok(())
}
