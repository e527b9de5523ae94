//! Batched sampling with a KV cache: the actor's engine and `r1ctl generate`'s.
//!
//! Prompts of different lengths are left-padded into one batch and prefilled once; the cache
//! is then forked into the G samples of each prompt, and all rows decode together, one token
//! per step. A finished row is dropped from the batch (and the cache) at once, so the batch
//! only ever holds rows that still generate.
//!
//! Sampling (temperature, top-k, top-p) runs on the host from the step's logits. Each sample
//! draws from its own ChaCha RNG seeded by (seed, prompt index, sample index), so a sample does
//! not depend on what else was in the batch. Temperature 0 is greedy decoding.
//!
//! Every sampled token comes back with its log-probability under the distribution it was
//! drawn from: softmax(logits / T), T the temperature (T = 1 for greedy decoding, see
//! [`logprob_temperature`]), before top-k or top-p truncation. That is π_old in the GRPO
//! ratio, and the learner scores its policy at the same T
//! ([`crate::logprobs::token_logprobs_at`]), so on-policy samples have ratio 1 at any T (the
//! rule TRL adopted after its issue 4159: a ratio of π₁ against samples from π_T is off
//! policy by construction). [`crate::logprobs::score_at`] gives the same numbers for the same
//! tokens.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::batch::{PaddedBatch, decode_bias};
use crate::decoder::{CausalLm, KvCache};
use crate::error::{ModelError, Result};
use crate::tokenizer::TextTokenizer;

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Most tokens generated per sample.
    pub max_new_tokens: usize,
    /// Token ids that end a sample (kept as its last token).
    pub stop_token_ids: Vec<u32>,
    /// Strings that end a sample once its decoded text contains one (kept in the text).
    pub stop_strings: Vec<String>,
    pub seed: u64,
    /// Most rows decoded together (the sampler's slots).
    pub max_batch: usize,
    /// Memory for the KV cache, in MiB (CPU sampler). The cache is allocated at the start;
    /// fewer slots are used when `max_batch` of them do not fit, and a request of which not
    /// even one sequence fits is refused before any work. `None`: as much as `max_batch` needs.
    pub kv_budget_mib: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 256,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            seed: 0,
            max_batch: 64,
            kv_budget_mib: None,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Input(m));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature {} must be a finite number >= 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return bad("stop strings must not be empty".into());
        }
        if self.kv_budget_mib == Some(0) {
            return bad("kv_budget_mib must be at least 1 (or unset for no limit)".into());
        }
        Ok(())
    }
}

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token was sampled.
    Stop,
    /// The decoded text reached a stop string.
    StopString,
    /// `max_new_tokens` was reached.
    Length,
}

/// One sampled completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub tokens: Vec<u32>,
    /// log π_T(token), one per token: the log-probability under softmax(logits / T) the token
    /// was drawn from (T = 1 for greedy decoding).
    pub logprobs: Vec<f32>,
    pub finish: FinishReason,
}

struct Row {
    prompt: usize,
    rng: ChaCha8Rng,
    pad: usize,
    prompt_len: usize,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    finish: Option<FinishReason>,
}

/// SplitMix64: decorrelates the per-sample seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn sample_rng(seed: u64, key: u64, sample: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(mix(seed) ^ key) ^ sample as u64))
}

/// The temperature log-probabilities are taken at: the sampling temperature, or 1 for greedy
/// decoding (temperature 0), whose point-mass distribution has no useful log-probabilities.
/// The sampler and the learner both use it, so they agree on every token.
pub fn logprob_temperature(temperature: f32) -> f32 {
    if temperature < GREEDY_BELOW { 1.0 } else { temperature }
}

/// Temperatures below this decode greedily.
const GREEDY_BELOW: f32 = 1e-6;

/// Draws a token from `logits` and returns it with its log-probability under
/// softmax(logits / [`logprob_temperature`]).
fn draw(logits: &[f32], p: &SamplingParams, rng: &mut ChaCha8Rng) -> (u32, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lt = logprob_temperature(p.temperature) as f64;
    // log Σ exp((x - max) / T): the log-partition of the tempered distribution, shifted by max/T.
    let lse = logits.iter().map(|&x| ((x as f64 - max) / lt).exp()).sum::<f64>().ln();
    let logprob = |i: usize| ((logits[i] as f64 - max) / lt - lse) as f32;
    let pick = if p.temperature < GREEDY_BELOW {
        // First maximum, as torch.argmax.
        logits.iter().enumerate().fold(0, |best, (i, &x)| if x > logits[best] { i } else { best })
    } else {
        let t = p.temperature as f64;
        if p.top_k == 0 && p.top_p >= 1.0 {
            // Every token is a candidate, in index order: the same sums as the general path
            // below, without building the candidate list.
            let weight = |x: f32| ((x as f64 - max) / t).exp();
            let total: f64 = logits.iter().map(|&x| weight(x)).sum();
            let mut u = rng.random::<f64>() * total;
            let mut chosen = logits.len() - 1;
            for (i, &x) in logits.iter().enumerate() {
                let w = weight(x);
                if u < w {
                    chosen = i;
                    break;
                }
                u -= w;
            }
            return (chosen as u32, logprob(chosen));
        }
        let mut cand: Vec<(usize, f64)> =
            logits.iter().enumerate().map(|(i, &x)| (i, ((x as f64 - max) / t).exp())).collect();
        if p.top_k > 0 || p.top_p < 1.0 {
            cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            if p.top_k > 0 {
                cand.truncate(p.top_k);
            }
            if p.top_p < 1.0 {
                let total: f64 = cand.iter().map(|c| c.1).sum();
                let mut acc = 0.0;
                let keep = cand
                    .iter()
                    .position(|c| {
                        acc += c.1 / total;
                        acc >= p.top_p as f64
                    })
                    .map_or(cand.len(), |i| i + 1);
                cand.truncate(keep);
            }
        }
        let total: f64 = cand.iter().map(|c| c.1).sum();
        let mut u = rng.random::<f64>() * total;
        let mut chosen = cand.last().expect("non-empty vocabulary").0;
        for &(i, w) in &cand {
            if u < w {
                chosen = i;
                break;
            }
            u -= w;
        }
        chosen
    };
    (pick as u32, logprob(pick))
}

/// Samples `n` completions for every prompt. `tokenizer` is needed only for stop strings.
/// `progress` is called with the number of tokens generated at each step.
pub fn generate<B: Backend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    n: usize,
    params: &SamplingParams,
    tokenizer: Option<&TextTokenizer>,
    device: &B::Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<Sample>>> {
    let keys: Vec<u64> = (0..prompts.len() as u64).collect();
    generate_keyed(model, prompts, &keys, n, params, tokenizer, device, progress)
}

/// As [`generate`], with each prompt's samples seeded by `(params.seed, keys[i], sample)`
/// instead of its position, so a prompt samples the same way in any batch (an actor keys
/// prompts by group id). [`generate`] is this with `keys = 0, 1, 2, ...`.
#[allow(clippy::too_many_arguments)]
pub fn generate_keyed<B: Backend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    keys: &[u64],
    n: usize,
    params: &SamplingParams,
    tokenizer: Option<&TextTokenizer>,
    device: &B::Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<Sample>>> {
    check_request(model.config(), prompts, keys, n, params, tokenizer)?;
    if let Some(host) = crate::engine::HostModel::of(model) {
        return generate_host(&host, prompts, keys, n, params, tokenizer, progress);
    }
    generate_burn(model, prompts, keys, n, params, tokenizer, device, progress)
}

/// The backend-generic sampler (any Burn backend, e.g. CUDA): prompts in chunks of
/// `max_batch / n`, each chunk left-padded, prefilled once, forked into its samples and
/// decoded until every row is done, dropping finished rows. [`generate_keyed`] uses it when
/// the weights are not in host memory; on the CPU it gives the same tokens as the CPU sampler
/// (which `model/tests/sampling.rs` checks).
#[allow(clippy::too_many_arguments)]
pub fn generate_burn<B: Backend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    keys: &[u64],
    n: usize,
    params: &SamplingParams,
    tokenizer: Option<&TextTokenizer>,
    device: &B::Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<Sample>>> {
    check_request(model.config(), prompts, keys, n, params, tokenizer)?;
    let per_chunk = (params.max_batch / n).max(1);
    let mut out = Vec::with_capacity(prompts.len());
    for (chunk, keys) in prompts.chunks(per_chunk).zip(keys.chunks(per_chunk)) {
        out.extend(generate_chunk(model, chunk, keys, n, params, tokenizer, device, progress)?);
    }
    Ok(out)
}

/// Refuses a request that cannot be served, naming what is wrong.
fn check_request(
    cfg: &crate::ModelConfig,
    prompts: &[Vec<u32>],
    keys: &[u64],
    n: usize,
    params: &SamplingParams,
    tokenizer: Option<&TextTokenizer>,
) -> Result<()> {
    params.validate()?;
    if keys.len() != prompts.len() {
        return Err(ModelError::Input(format!(
            "{} seed keys for {} prompts; pass one per prompt",
            keys.len(),
            prompts.len()
        )));
    }
    if n == 0 {
        return Err(ModelError::Input("n (samples per prompt) must be at least 1".into()));
    }
    if !params.stop_strings.is_empty() && tokenizer.is_none() {
        return Err(ModelError::Input("stop strings need a tokenizer to decode text".into()));
    }
    crate::batch::check_sequences(prompts, cfg.vocab_size, "prompt")?;
    for (i, p) in prompts.iter().enumerate() {
        if p.len() + params.max_new_tokens > cfg.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "prompt {i} has {} tokens; with max_new_tokens {} it exceeds the model's {} positions",
                p.len(),
                params.max_new_tokens,
                cfg.max_position_embeddings
            )));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn generate_chunk<B: Backend>(
    model: &CausalLm<B>,
    prompts: &[Vec<u32>],
    keys: &[u64],
    n: usize,
    params: &SamplingParams,
    tokenizer: Option<&TextTokenizer>,
    device: &B::Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<Sample>>> {
    let vocab = model.config().vocab_size;
    let refs: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
    let batch = PaddedBatch::new(&refs, 0);
    let mut cache = KvCache::new(model.config().num_layers);
    let hidden =
        model.forward(batch.tokens(device), batch.positions(device), batch.causal_bias(device), Some(&mut cache));
    let last = hidden.narrow(1, batch.len - 1, 1);
    // Host logits of the current step and, for each active slot, where its row starts.
    let mut logits = host_logits(model, last);

    let mut rows: Vec<Row> = (0..prompts.len())
        .flat_map(|p| (0..n).map(move |s| (p, s)))
        .map(|(p, s)| Row {
            prompt: p,
            rng: sample_rng(params.seed, keys[p], s),
            pad: batch.pads[p],
            prompt_len: prompts[p].len(),
            tokens: Vec::new(),
            logprobs: Vec::new(),
            finish: None,
        })
        .collect();
    // Fork each prompt's cache into its n samples.
    let fork: Vec<i64> = rows.iter().map(|r| r.prompt as i64).collect();
    let mut cache = cache.select_rows(Tensor::from_data(TensorData::new(fork, [rows.len()]), device));
    let mut active: Vec<usize> = (0..rows.len()).collect();
    let mut offsets: Vec<usize> = rows.iter().map(|r| r.prompt * vocab).collect();
    let mut total = batch.len;

    for step in 0..params.max_new_tokens {
        for (slot, &r) in active.iter().enumerate() {
            let row = &mut rows[r];
            let (tok, lp) = draw(&logits[offsets[slot]..offsets[slot] + vocab], params, &mut row.rng);
            row.tokens.push(tok);
            row.logprobs.push(lp);
            if params.stop_token_ids.contains(&tok) {
                row.finish = Some(FinishReason::Stop);
            } else if let Some(t) = tokenizer
                && !params.stop_strings.is_empty()
            {
                let text = t.decode(&row.tokens)?;
                if params.stop_strings.iter().any(|s| text.contains(s.as_str())) {
                    row.finish = Some(FinishReason::StopString);
                }
            }
        }
        progress(active.len());
        if step + 1 == params.max_new_tokens {
            break;
        }
        let keep: Vec<usize> = (0..active.len()).filter(|&s| rows[active[s]].finish.is_none()).collect();
        if keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            let idx: Vec<i64> = keep.iter().map(|&s| s as i64).collect();
            cache = cache.select_rows(Tensor::from_data(TensorData::new(idx, [keep.len()]), device));
            active = keep.iter().map(|&s| active[s]).collect();
        }
        let a = active.len();
        let toks: Vec<i64> = active.iter().map(|&r| *rows[r].tokens.last().expect("sampled") as i64).collect();
        let pos: Vec<i64> = active.iter().map(|&r| (rows[r].prompt_len + rows[r].tokens.len() - 1) as i64).collect();
        let pads: Vec<usize> = active.iter().map(|&r| rows[r].pad).collect();
        total += 1;
        let hidden = model.forward(
            Tensor::from_data(TensorData::new(toks, [a, 1]), device),
            Tensor::from_data(TensorData::new(pos, [a, 1]), device),
            decode_bias(&pads, total, device),
            Some(&mut cache),
        );
        logits = host_logits(model, hidden);
        offsets = (0..a).map(|s| s * vocab).collect();
    }

    let mut out: Vec<Vec<Sample>> = (0..prompts.len()).map(|_| Vec::with_capacity(n)).collect();
    for row in rows {
        out[row.prompt].push(Sample {
            tokens: row.tokens,
            logprobs: row.logprobs,
            finish: row.finish.unwrap_or(FinishReason::Length),
        });
    }
    Ok(out)
}

/// A running sample's own state in the CPU sampler.
struct HostState {
    rng: ChaCha8Rng,
    logprobs: Vec<f32>,
    finish: Option<FinishReason>,
}

/// The CPU sampler ([`crate::engine`]): continuous batching over `max_batch` slots, each
/// prompt prefilled once and shared by its `n` samples.
fn generate_host<B: Backend>(
    host: &crate::engine::HostModel<B>,
    prompts: &[Vec<u32>],
    keys: &[u64],
    n: usize,
    params: &SamplingParams,
    tokenizer: Option<&TextTokenizer>,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Vec<Sample>>> {
    use crate::engine::{Next, Running};
    let (slots, prompt_cap, sample_cap) = crate::engine::plan_slots(
        host.config(),
        prompts,
        n,
        params.max_new_tokens,
        params.max_batch,
        params.kv_budget_mib,
    )?;
    let mut new =
        |g: usize, s: usize| HostState { rng: sample_rng(params.seed, keys[g], s), logprobs: Vec::new(), finish: None };
    let draw_one = |r: &mut Running<HostState>, logits: &[f32]| -> Result<Next> {
        let (tok, lp) = draw(logits, params, &mut r.state.rng);
        r.tokens.push(tok);
        r.state.logprobs.push(lp);
        if params.stop_token_ids.contains(&tok) {
            r.state.finish = Some(FinishReason::Stop);
        } else if let Some(t) = tokenizer
            && !params.stop_strings.is_empty()
        {
            let text = t.decode(&r.tokens)?;
            if params.stop_strings.iter().any(|s| text.contains(s.as_str())) {
                r.state.finish = Some(FinishReason::StopString);
            }
        }
        Ok(if r.state.finish.is_some() || r.tokens.len() >= params.max_new_tokens {
            Next::Finished
        } else {
            Next::Continue
        })
    };
    let done = crate::engine::run(host, prompts, n, slots, prompt_cap, sample_cap, &mut new, &draw_one, progress)?;
    let mut out: Vec<Vec<Option<Sample>>> = (0..prompts.len()).map(|_| (0..n).map(|_| None).collect()).collect();
    for r in done {
        out[r.group][r.sample] = Some(Sample {
            tokens: r.tokens,
            logprobs: r.state.logprobs,
            finish: r.state.finish.unwrap_or(FinishReason::Length),
        });
    }
    Ok(out.into_iter().map(|g| g.into_iter().map(|s| s.expect("every sample finishes")).collect()).collect())
}

/// Logits of `hidden` `[rows, 1, hidden]` as a host vector `[rows * vocab]`, in f32.
fn host_logits<B: Backend>(model: &CausalLm<B>, hidden: Tensor<B, 3>) -> Vec<f32> {
    model.logits(hidden).into_data().convert::<f32>().into_vec().expect("f32 data")
}
