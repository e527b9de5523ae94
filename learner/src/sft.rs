//! Supervised fine-tuning loss: masked next-token cross-entropy on completion tokens.
//!
//! Used for R1's cold start (a little SFT on curated long chains of thought) and for
//! distillation (SFT of a small model on a large model's verified traces).
//!
//! ```text
//! L = − Σ_{b,t} mask_bt · log p_θ(target_bt | tokens_b,≤t) / N
//! ```
//!
//! `targets` are already shifted: `targets[b][t]` is the token that follows position t,
//! so it lines up with `logits[b][t]`. `mask` is 1 where that target is a completion
//! token (prompt and padding are 0). N is the number of masked tokens of this batch, or
//! of the whole optimizer batch when given (so micro-batch losses add up).

use burn::tensor::{Int, Tensor, backend::Backend};
use r1_model::ops::log_softmax_gather;

use crate::LearnerError;
use crate::grpo::ScalarExt;

/// log p(target) at every position: `[B, T, V]` logits and `[B, T]` targets → `[B, T]`.
pub fn token_logprobs<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    log_softmax_gather(logits, targets.unsqueeze_dim(2), false).0
}

/// Masked next-token cross-entropy from logits. `tokens` = `None` normalises by this
/// batch's masked-token count.
pub fn sft_loss<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
    tokens: Option<usize>,
) -> Result<Tensor<B, 1>, LearnerError> {
    let [b, t, _] = logits.dims();
    if targets.dims() != [b, t] {
        return Err(LearnerError::Shape { name: "targets", got: targets.dims().to_vec(), expected: vec![b, t] });
    }
    sft_loss_from_logprobs(token_logprobs(logits, targets), mask, tokens)
}

/// Masked negative mean of per-token log-probs already gathered at the targets.
pub fn sft_loss_from_logprobs<B: Backend>(
    logp: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    tokens: Option<usize>,
) -> Result<Tensor<B, 1>, LearnerError> {
    if mask.dims() != logp.dims() {
        return Err(LearnerError::Shape { name: "mask", got: mask.dims().to_vec(), expected: logp.dims().to_vec() });
    }
    let n = tokens.unwrap_or_else(|| mask.clone().sum().into_scalar_f64().round() as usize);
    let pad = mask.clone().lower_equal_elem(0.0);
    Ok((logp.mask_fill(pad, 0.0) * mask).sum().neg().div_scalar(n.max(1) as f64))
}
