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
    /// New tokens per sequence (the most, with --stop-every)
    #[arg(long, default_value_t = 64)]
    pub(crate) new_tokens: usize,
    /// Samples per prompt (a GRPO group); --batch counts prompts × samples
    #[arg(long, default_value_t = 1)]
    pub(crate) group: usize,
    /// Shortest prompt: prompt lengths are spread evenly from this to --prompt-len
    #[arg(long)]
    pub(crate) min_prompt_len: Option<usize>,
    /// Every token id divisible by N ends a sample, so samples stop at mixed lengths
    /// (0: none, every sample runs to --new-tokens)
    #[arg(long, default_value_t = 0)]
    pub(crate) stop_every: u32,
    /// Which sampler: the CPU engine (`auto`, continuous batching) or the backend-generic
    /// Burn path (`burn`, the sampler before the CPU engine)
    #[arg(long, value_enum, default_value_t)]
    pub(crate) sampler: SamplerKind,
    /// MiB for the KV cache (see `r1ctl generate --kv-budget-mib`)
    #[arg(long)]
    pub(crate) kv_budget_mib: Option<u64>,
    /// Also write every sample's tokens and log-probs here (JSONL, one sample a line), to
    /// compare two samplers or backends token by token
    #[arg(long, value_name = "FILE")]
    pub(crate) tokens_out: Option<std::path::PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SamplerKind {
    /// The CPU engine when the weights are in host memory, else the Burn path
    #[default]
    Auto,
    /// The backend-generic Burn path
    Burn,
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
        BenchCommand::TrainStep(a) => {
            with_backend!(a.model.device, |B, device| crate::train_bench::train_step::<B>(&a, &device))
        }
        BenchCommand::Weights(a) => crate::weights_bench::run(a),
    }
}

pub(crate) fn load_model<B: Backend>(m: &ModelArgs, device: &B::Device) -> Result<(CausalLm<B>, String)> {
    Ok(match &m.model {
        Some(dir) => (r1_model::load::<B>(dir, device).context("cannot load the model")?, dir.display().to_string()),
        None => {
            // Seeded, so that two runs (two samplers, two backends) time the same weights.
            B::seed(device, 0);
            (CausalLm::init(&m.shape.config(), device), m.shape.name().to_string())
        }
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
    anyhow::ensure!(
        a.group >= 1 && a.batch.is_multiple_of(a.group),
        "--batch {} must be a multiple of --group {}",
        a.batch,
        a.group
    );
    let n_prompts = a.batch / a.group;
    let vocab = model.config().vocab_size;
    let mut prompts = random_ids(n_prompts, a.prompt_len, vocab, 0);
    if let Some(min) = a.min_prompt_len {
        anyhow::ensure!((1..=a.prompt_len).contains(&min), "--min-prompt-len {min} must be in 1..=--prompt-len");
        for (i, p) in prompts.iter_mut().enumerate() {
            let span = a.prompt_len - min;
            p.truncate(min + if n_prompts > 1 { span * i / (n_prompts - 1) } else { span });
        }
    }
    let stop: Vec<u32> =
        if a.stop_every == 0 { Vec::new() } else { (0..vocab as u32).filter(|t| t % a.stop_every == 0).collect() };
    let params = SamplingParams {
        max_new_tokens: a.new_tokens,
        max_batch: a.batch,
        stop_token_ids: stop,
        kv_budget_mib: a.kv_budget_mib,
        ..Default::default()
    };
    let keys: Vec<u64> = (0..prompts.len() as u64).collect();
    let run = |p: &SamplingParams, progress: &mut dyn FnMut(usize)| match a.sampler {
        SamplerKind::Auto => {
            r1_model::sample::generate_keyed(&model, &prompts, &keys, a.group, p, None, device, progress)
        }
        SamplerKind::Burn => {
            r1_model::sample::generate_burn(&model, &prompts, &keys, a.group, p, None, device, progress)
        }
    };
    // Warm-up: allocations, thread pools, autotuning on GPU backends.
    run(&SamplingParams { max_new_tokens: 2, ..params.clone() }, &mut |_| {})?;
    let bar = crate::progress::tokens_bar((a.batch * a.new_tokens) as u64);
    let t0 = Instant::now();
    let out = run(&params, &mut |k| bar.inc(k as u64))?;
    let secs = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let tokens: usize = out.iter().flatten().map(|s| s.tokens.len()).sum();
    let tps = tokens as f64 / secs;
    if let Some(path) = &a.tokens_out {
        let mut text = String::new();
        for (g, samples) in out.iter().enumerate() {
            for (s, x) in samples.iter().enumerate() {
                let line = json!({"prompt": g, "sample": s, "tokens": x.tokens, "logprobs": x.logprobs});
                text.push_str(&format!("{line}\n"));
            }
        }
        std::fs::write(path, text).with_context(|| format!("cannot write --tokens-out {}", path.display()))?;
    }
    report(
        &a.model,
        json!({"bench": "generate", "model": name, "device": format!("{:?}", a.model.device).to_lowercase(),
               "batch": a.batch, "group": a.group, "prompt_len": a.prompt_len, "min_prompt_len": a.min_prompt_len,
               "new_tokens": a.new_tokens, "stop_every": a.stop_every, "sampler": format!("{:?}", a.sampler).to_lowercase(),
               "tokens": tokens, "seconds": secs, "tokens_per_s": tps}),
        format!(
            "generate {name}: batch {} (group {}) prompt {} new {}: {tokens} tokens in {secs:.2}s = {tps:.1} tokens/s",
            a.batch, a.group, a.prompt_len, a.new_tokens
        ),
    );
    Ok(())
}
