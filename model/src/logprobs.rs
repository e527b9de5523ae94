//! Teacher-forced log-probabilities: log p(t[i+1] | t[..=i]) for every position of a sequence.
//!
//! [`token_logprobs`] is the differentiable form the learner trains through; [`score`] is the
//! inference form behind `r1ctl logprobs`, batched and computed in f32. The `_at` forms take
//! a temperature: log-probs under softmax(logits / T), the distribution the sampler draws
//! from at T (the rule is in [`crate::sample`]).

use crate::ops::log_softmax_gather;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::batch::PaddedBatch;
use crate::decoder::CausalLm;
use crate::error::Result;

/// Log-probabilities `[batch, len - 1]` of each next token of a padded batch; column `j` is
/// log p(token at column j+1 | columns ..=j). Columns inside a row's padding are meaningless
/// and must be masked by the caller.
pub fn token_logprobs<B: Backend>(model: &CausalLm<B>, batch: &PaddedBatch, device: &B::Device) -> Tensor<B, 2> {
    let (lp, _) = token_logprobs_and_entropy(model, batch, device, false);
    lp
}

/// As [`token_logprobs`], plus the policy's entropy at each position when `entropy` is set
/// (a value: it carries no gradient).
pub fn token_logprobs_and_entropy<B: Backend>(
    model: &CausalLm<B>,
    batch: &PaddedBatch,
    device: &B::Device,
    entropy: bool,
) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
    token_logprobs_at(model, batch, device, 1.0, entropy)
}

/// As [`token_logprobs_and_entropy`], under softmax(logits / `temperature`): the distribution
/// the sampler draws from at that temperature (pass
/// [`crate::sample::logprob_temperature`] of the sampling temperature). The entropy is that
/// distribution's too.
pub fn token_logprobs_at<B: Backend>(
    model: &CausalLm<B>,
    batch: &PaddedBatch,
    device: &B::Device,
    temperature: f32,
    entropy: bool,
) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
    token_logprobs_tail(model, batch, device, temperature, entropy, batch.len - 1)
}

/// As [`token_logprobs_at`], for the last `last` columns only (`[batch, last]`): column `j`
/// is column `len − 1 − last + j` of the full result, the same value bit for bit.
///
/// Rows are padded on the left, so the completions of a batch of `prompt ++ completion`
/// rows are its last columns: a trainer that needs log-probs of completion tokens only asks
/// for the longest completion's worth and skips the LM head and softmax on the prompts
/// (two thirds of a GRPO or distillation row at laptop scale).
pub fn token_logprobs_tail<B: Backend>(
    model: &CausalLm<B>,
    batch: &PaddedBatch,
    device: &B::Device,
    temperature: f32,
    entropy: bool,
    last: usize,
) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
    let (b, t) = (batch.batch, batch.len);
    assert!(
        (1..t).contains(&last),
        "asked for the last {last} log-probs of a {t}-column batch; 1 ..= {} are there",
        t.saturating_sub(1)
    );
    let skip = t - 1 - last;
    let tokens = batch.tokens::<B>(device);
    let hidden = model.forward(tokens.clone(), batch.positions(device), batch.causal_bias(device), None);
    let hidden = hidden.narrow(1, skip, last);
    let mut logits = model.logits(hidden);
    if temperature != 1.0 {
        logits = logits / temperature as f64;
    }
    let targets: Tensor<B, 3, Int> = tokens.narrow(1, skip + 1, last).reshape([b, last, 1]);
    log_softmax_gather(logits, targets, entropy)
}

/// Per-token log-probs of each sequence (length `len - 1` each; empty for a 1-token
/// sequence), in batches of at most `max_batch` sequences.
pub fn score<B: Backend>(
    model: &CausalLm<B>,
    seqs: &[Vec<u32>],
    max_batch: usize,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>> {
    score_at(model, seqs, max_batch, 1.0, device)
}

/// As [`score`], under softmax(logits / `temperature`).
pub fn score_at<B: Backend>(
    model: &CausalLm<B>,
    seqs: &[Vec<u32>],
    max_batch: usize,
    temperature: f32,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>> {
    crate::batch::check_sequences(seqs, model.config().vocab_size, "sequence")?;
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(max_batch.max(1)) {
        let refs: Vec<&[u32]> = chunk.iter().map(|s| s.as_slice()).collect();
        let batch = PaddedBatch::new(&refs, 0);
        if batch.len < 2 {
            out.extend(chunk.iter().map(|_| Vec::new()));
            continue;
        }
        let (lp, _) = token_logprobs_at(model, &batch, device, temperature, false);
        let w = batch.len - 1;
        let host: Vec<f32> = lp.into_data().convert::<f32>().into_vec().expect("f32 data");
        for (r, s) in chunk.iter().enumerate() {
            let pad = batch.pads[r];
            out.push(host[r * w + pad..r * w + pad + s.len() - 1].to_vec());
        }
    }
    Ok(out)
}
