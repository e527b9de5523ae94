//! `r1ctl bench train-step`: one GRPO optimizer step — forward, per-token log-probs, clipped
//! surrogate loss, backward, global-norm clipping, AdamW — timed the way the PyTorch peer
//! (`bench/peer/peer_torch.py`) times its step: on-policy ratio, no reference-model forward.

use std::time::Instant;

use anyhow::Result;
use burn::backend::Autodiff;
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use r1_learner::grpo::{GrpoBatch, GrpoConfig, grpo_loss};
use r1_learner::optim::{Optim, OptimConfig};
use r1_model::CausalLm;
use r1_model::batch::PaddedBatch;
use serde_json::json;

use crate::bench::{TrainArgs, load_model, random_ids, report};

pub fn train_step<B: Backend>(a: &TrainArgs, device: &B::Device) -> Result<()> {
    type AB<B> = Autodiff<B>;
    let (model, name) = load_model::<AB<B>>(&a.model, device)?;
    let vocab = model.config().vocab_size;
    let seqs = random_ids(a.batch, a.seq_len, vocab, 1);
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let batch = PaddedBatch::new(&refs, 0);
    let t = a.seq_len - 1;
    // Completion = the second half of each sequence.
    let mask: Vec<f32> = (0..a.batch * t).map(|i| if i % t >= t / 2 { 1.0 } else { 0.0 }).collect();
    let adv: Vec<f32> = (0..a.batch).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let cfg = GrpoConfig { beta: 0.0, ..Default::default() };
    let mut optim = Optim::<AB<B>, CausalLm<AB<B>>>::new(OptimConfig { lr: 1e-6, ..Default::default() })?;

    let mut model = model;
    let mut step = |model: CausalLm<AB<B>>| -> Result<CausalLm<AB<B>>> {
        let logp = r1_model::logprobs::token_logprobs(&model, &batch, device);
        let out = grpo_loss(
            GrpoBatch::on_policy(
                logp,
                Tensor::from_data(TensorData::new(adv.clone(), [a.batch]), device),
                Tensor::from_data(TensorData::new(mask.clone(), [a.batch, t]), device),
            ),
            &cfg,
            None,
        )?;
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        let (model, _) = optim.step(model, grads);
        // Wait for the device: the next step (or the clock) must see the update done.
        let _ = model.norm.gamma.val().into_data();
        Ok(model)
    };
    model = step(model)?; // warm-up
    let t0 = Instant::now();
    for _ in 0..a.steps {
        model = step(model)?;
    }
    let secs = t0.elapsed().as_secs_f64() / a.steps as f64;
    let tps = (a.batch * a.seq_len) as f64 / secs;
    report(
        &a.model,
        json!({"bench": "train-step", "model": name, "device": format!("{:?}", a.model.device).to_lowercase(),
               "batch": a.batch, "seq_len": a.seq_len, "seconds_per_step": secs, "tokens_per_s": tps}),
        format!("train-step {name}: {} x {} tokens: {:.3}s/step = {tps:.1} tokens/s", a.batch, a.seq_len, secs),
    );
    drop(model);
    Ok(())
}
