//! Left-padded batches: token ids, per-token positions and the additive attention bias.
//!
//! Rows of different lengths are padded on the left so that every row's next token lands in
//! the same column, which is what batched decoding needs. Positions count real tokens only
//! (a row's first real token is at position 0), and padding columns are masked as keys, so a
//! padded row computes exactly what it would compute alone.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::decoder::MASKED;
use crate::error::{ModelError, Result};

/// Checks that every sequence is non-empty and inside the vocabulary; `what` names a
/// sequence in the error ("prompt", "sequence").
pub fn check_sequences(seqs: &[Vec<u32>], vocab: usize, what: &str) -> Result<()> {
    for (i, s) in seqs.iter().enumerate() {
        if s.is_empty() {
            return Err(ModelError::Input(format!("{what} {i} is empty; give at least one token")));
        }
        if let Some(bad) = s.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::Input(format!(
                "{what} {i} has token id {bad}, outside the model's vocabulary of {vocab}"
            )));
        }
    }
    Ok(())
}

/// A left-padded batch on the host.
#[derive(Debug, Clone)]
pub struct PaddedBatch {
    /// Rows.
    pub batch: usize,
    /// Columns (the longest row).
    pub len: usize,
    /// Leading padding columns of each row.
    pub pads: Vec<usize>,
    tokens: Vec<i64>,
    positions: Vec<i64>,
}

impl PaddedBatch {
    /// Pads `seqs` on the left with `pad_id` (any valid id: padding is masked out).
    pub fn new(seqs: &[&[u32]], pad_id: u32) -> Self {
        Self::padded_to(seqs, pad_id, 0)
    }

    /// As [`PaddedBatch::new`], at least `min_len` columns wide. Shards of one batch padded to
    /// the same width compute bit-identical rows, which data-parallel training relies on.
    pub fn padded_to(seqs: &[&[u32]], pad_id: u32, min_len: usize) -> Self {
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(min_len);
        let mut tokens = Vec::with_capacity(seqs.len() * len);
        let mut positions = Vec::with_capacity(seqs.len() * len);
        let mut pads = Vec::with_capacity(seqs.len());
        for s in seqs {
            let pad = len - s.len();
            pads.push(pad);
            tokens.extend(std::iter::repeat_n(pad_id as i64, pad).chain(s.iter().map(|&t| t as i64)));
            positions.extend(std::iter::repeat_n(0, pad).chain(0..s.len() as i64));
        }
        Self { batch: seqs.len(), len, pads, tokens, positions }
    }

    pub fn tokens<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        Tensor::from_data(TensorData::new(self.tokens.clone(), [self.batch, self.len]), device)
    }

    pub fn positions<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2, Int> {
        Tensor::from_data(TensorData::new(self.positions.clone(), [self.batch, self.len]), device)
    }

    /// Causal bias `[batch, 1, len, len]` that also hides padding keys.
    pub fn causal_bias<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        let t = self.len;
        let mut bias = vec![0.0f32; self.batch * t * t];
        for (r, &pad) in self.pads.iter().enumerate() {
            for q in 0..t {
                for k in 0..t {
                    if k < pad || k > q {
                        bias[(r * t + q) * t + k] = MASKED;
                    }
                }
            }
        }
        Tensor::from_data(TensorData::new(bias, [self.batch, 1, t, t]), device)
    }
}

/// Bias `[rows, 1, 1, total]` for one decoding step: each row sees every column but its own
/// leading padding.
pub fn decode_bias<B: Backend>(pads: &[usize], total: usize, device: &B::Device) -> Tensor<B, 4> {
    let mut bias = vec![0.0f32; pads.len() * total];
    for (r, &pad) in pads.iter().enumerate() {
        bias[r * total..r * total + pad].fill(MASKED);
    }
    Tensor::from_data(TensorData::new(bias, [pads.len(), 1, 1, total]), device)
}
