//! The CPU sampler: continuous batching over a preallocated KV cache, each group's prompt
//! prefilled once and shared by its samples, on the host kernels of [`crate::kernels`].
//!
//! Used by [`crate::sample`] when the model's weights live in host memory (Burn's NdArray
//! backend, r1's CPU backend); other backends take the Burn path. The weights are read in place, without
//! a copy, from the backend's buffers.
//!
//! - **Slots.** `slots` sample slots decode together, one token per step. When a sample
//!   finishes, its slot takes the next waiting sample in the next step, so the batch stays
//!   full until the queue runs dry (continuous batching).
//! - **Prefix sharing.** A prompt's keys and values are computed once, into a prompt slot,
//!   when its first sample is admitted; every sample of the group attends to that prompt slot
//!   and to its own slot for the tokens it generated. Prefill rows of new prompts and decode
//!   rows of running samples go through the network together, in one call.
//! - **Memory.** The cache is allocated once at the start: `slots` sample slots of
//!   `max_new_tokens - 1` positions and `min(slots, prompts)` prompt slots of the longest
//!   prompt's positions. With a budget ([`crate::SamplingParams::kv_budget_mib`]) the slot
//!   count is cut to what fits, and a request of which not even one sequence fits is refused
//!   before any work.
//!
//! A sample's numbers do not depend on what else is in the batch (see [`crate::kernels`]),
//! and its RNG is its own, so the tokens are the same whatever `max_batch` and the order in
//! which samples are admitted.

use std::any::Any;
use std::collections::VecDeque;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rayon::prelude::*;

use crate::config::ModelConfig;
use crate::decoder::CausalLm;
use crate::error::{ModelError, Result};
use crate::kernels::{self, Segment};

/// A weight in host memory: the backend's own buffer when it can be read in place, else a copy.
enum Host<B: Backend> {
    Shared(B::FloatTensorPrimitive),
    Owned(Vec<f32>),
}

/// The f32 slice behind a backend tensor, when the backend keeps it contiguous in host memory.
fn host_slice<B: Backend>(p: &B::FloatTensorPrimitive) -> Option<&[f32]> {
    let any = p as &dyn Any;
    if let Some(t) = any.downcast_ref::<burn::backend::ndarray::NdArrayTensor>() {
        return match t {
            burn::backend::ndarray::NdArrayTensor::F32(s) => s.view().to_slice(),
            _ => None,
        };
    }
    None
}

impl<B: Backend> Host<B> {
    fn of<const D: usize>(t: Tensor<B, D>) -> Self {
        let p = t.clone().into_primitive().tensor();
        if host_slice::<B>(&p).is_some() {
            Host::Shared(p)
        } else {
            Host::Owned(t.into_data().convert::<f32>().into_vec().expect("f32 data"))
        }
    }

    fn get(&self) -> &[f32] {
        match self {
            Host::Shared(p) => host_slice::<B>(p).expect("checked when made"),
            Host::Owned(v) => v,
        }
    }
}

struct Lin<B: Backend> {
    w: Host<B>,
    b: Option<Host<B>>,
    d_in: usize,
    d_out: usize,
}

impl<B: Backend> Lin<B> {
    fn of(l: &burn::nn::Linear<B>) -> Self {
        let w = l.weight.val();
        let [d_in, d_out] = w.dims();
        Self { w: Host::of(w), b: l.bias.as_ref().map(|b| Host::of(b.val())), d_in, d_out }
    }

    fn apply(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * self.d_out];
        kernels::matmul(x, m, self.d_in, self.w.get(), self.d_out, self.b.as_ref().map(|b| b.get()), &mut out);
        out
    }
}

struct LayerW<B: Backend> {
    ln1: Host<B>,
    q: Lin<B>,
    k: Lin<B>,
    v: Lin<B>,
    o: Lin<B>,
    /// Qwen3's per-head query and key norms, `[head_dim]`.
    q_norm: Option<Host<B>>,
    k_norm: Option<Host<B>>,
    ln2: Host<B>,
    gate: Lin<B>,
    up: Lin<B>,
    down: Lin<B>,
}

/// The model's weights, read in place.
pub(crate) struct HostModel<B: Backend> {
    cfg: ModelConfig,
    embed: Host<B>,
    layers: Vec<LayerW<B>>,
    norm: Host<B>,
    head: Option<Lin<B>>,
    inv_freq: Vec<f32>,
}

impl<B: Backend> HostModel<B> {
    pub(crate) fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// `None` when the backend does not keep its tensors in host memory (a GPU).
    pub(crate) fn of(model: &CausalLm<B>) -> Option<Self> {
        let embed = model.embed_tokens.weight.val();
        host_slice::<B>(&embed.clone().into_primitive().tensor())?;
        let layers = model
            .layers
            .iter()
            .map(|l| LayerW {
                ln1: Host::of(l.input_layernorm.gamma.val()),
                q: Lin::of(&l.self_attn.q_proj),
                k: Lin::of(&l.self_attn.k_proj),
                v: Lin::of(&l.self_attn.v_proj),
                o: Lin::of(&l.self_attn.o_proj),
                q_norm: l.self_attn.q_norm.as_ref().map(|n| Host::of(n.gamma.val())),
                k_norm: l.self_attn.k_norm.as_ref().map(|n| Host::of(n.gamma.val())),
                ln2: Host::of(l.post_attention_layernorm.gamma.val()),
                gate: Lin::of(&l.mlp.gate_proj),
                up: Lin::of(&l.mlp.up_proj),
                down: Lin::of(&l.mlp.down_proj),
            })
            .collect();
        Some(Self {
            cfg: model.config().clone(),
            embed: Host::of(embed),
            layers,
            norm: Host::of(model.norm.gamma.val()),
            head: model.lm_head.as_ref().map(Lin::of),
            inv_freq: crate::decoder::rope_inv_freq(model.config()),
        })
    }
}

/// Where a row's new key/value goes and what it attends to.
#[derive(Clone, Copy, Debug)]
struct Row {
    token: u32,
    pos: usize,
    /// (pool, slot, position in slot)
    dst: (usize, usize, usize),
    ctx: [Option<(usize, usize, usize)>; 2],
}

const PROMPT: usize = 0;
const SAMPLE: usize = 1;

/// The preallocated cache: per layer, per pool, `[slot, kv_head, position, head_dim]`.
struct Cache {
    keys: Vec<[Vec<f32>; 2]>,
    values: Vec<[Vec<f32>; 2]>,
    caps: [usize; 2],
    kv_heads: usize,
    head_dim: usize,
}

impl Cache {
    fn new(layers: usize, kv_heads: usize, head_dim: usize, slots: [usize; 2], caps: [usize; 2]) -> Self {
        let size = |p: usize| slots[p] * kv_heads * caps[p] * head_dim;
        let pools = || [vec![0.0f32; size(0)], vec![0.0f32; size(1)]];
        Self {
            keys: (0..layers).map(|_| pools()).collect(),
            values: (0..layers).map(|_| pools()).collect(),
            caps,
            kv_heads,
            head_dim,
        }
    }

    /// Offset of position `pos` of kv head 0 in `slot` of `pool`, and the kv-head stride.
    fn at(&self, pool: usize, slot: usize, pos: usize) -> (usize, usize) {
        let stride = self.caps[pool] * self.head_dim;
        (slot * self.kv_heads * stride + pos * self.head_dim, stride)
    }
}

/// Bytes of cache per position of one sequence.
pub(crate) fn kv_bytes_per_position(cfg: &ModelConfig) -> usize {
    cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * std::mem::size_of::<f32>()
}

impl<B: Backend> HostModel<B> {
    /// Runs `rows` through the network, writing their keys/values into `cache`, and returns
    /// the logits `[want.len(), vocab]` of the rows `want`.
    fn forward(&self, cache: &mut Cache, rows: &[Row], want: &[usize]) -> Vec<f32> {
        let cfg = &self.cfg;
        let (h, nh, nkv, hd) = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let m = rows.len();
        let embed = self.embed.get();
        let mut x = Vec::with_capacity(m * h);
        for r in rows {
            x.extend_from_slice(&embed[r.token as usize * h..(r.token as usize + 1) * h]);
        }
        let positions: Vec<usize> = rows.iter().map(|r| r.pos).collect();
        let mut xn = vec![0.0f32; m * h];
        let mut attn = vec![0.0f32; m * nh * hd];
        for (li, l) in self.layers.iter().enumerate() {
            kernels::rms_norm(&x, l.ln1.get(), cfg.rms_norm_eps, &mut xn);
            let mut q = l.q.apply(&xn, m);
            let mut k = l.k.apply(&xn, m);
            let v = l.v.apply(&xn, m);
            // Qwen3: RMSNorm over each head's `head_dim` values (the kernel normalises rows
            // of the gamma's length).
            for (x, norm) in [(&mut q, &l.q_norm), (&mut k, &l.k_norm)] {
                if let Some(g) = norm {
                    let mut normed = vec![0.0f32; x.len()];
                    kernels::rms_norm(x, g.get(), cfg.rms_norm_eps, &mut normed);
                    *x = normed;
                }
            }
            kernels::rope(&mut q, nh, hd, &positions, &self.inv_freq);
            kernels::rope(&mut k, nkv, hd, &positions, &self.inv_freq);
            for (i, r) in rows.iter().enumerate() {
                let (pool, slot, pos) = r.dst;
                let (base, stride) = cache.at(pool, slot, pos);
                for kh in 0..nkv {
                    let src = (i * nkv + kh) * hd;
                    let dst = base + kh * stride;
                    cache.keys[li][pool][dst..dst + hd].copy_from_slice(&k[src..src + hd]);
                    cache.values[li][pool][dst..dst + hd].copy_from_slice(&v[src..src + hd]);
                }
            }
            let contexts: Vec<[Option<Segment>; 2]> = rows
                .iter()
                .map(|r| {
                    r.ctx.map(|c| {
                        c.map(|(pool, slot, len)| {
                            let (base, head_stride) = cache.at(pool, slot, 0);
                            Segment { pool, base, head_stride, len }
                        })
                    })
                })
                .collect();
            let ks = [cache.keys[li][0].as_slice(), cache.keys[li][1].as_slice()];
            let vs = [cache.values[li][0].as_slice(), cache.values[li][1].as_slice()];
            kernels::attention(&q, &contexts, &ks, &vs, nh, nkv, hd, &mut attn);
            let o = l.o.apply(&attn, m);
            for (a, b) in x.iter_mut().zip(&o) {
                *a += b;
            }
            kernels::rms_norm(&x, l.ln2.get(), cfg.rms_norm_eps, &mut xn);
            let mut g = l.gate.apply(&xn, m);
            let u = l.up.apply(&xn, m);
            kernels::silu_mul(&mut g, &u);
            let d = l.down.apply(&g, m);
            for (a, b) in x.iter_mut().zip(&d) {
                *a += b;
            }
        }
        let mut last = Vec::with_capacity(want.len() * h);
        for &i in want {
            last.extend_from_slice(&x[i * h..(i + 1) * h]);
        }
        let mut normed = vec![0.0f32; last.len()];
        kernels::rms_norm(&last, self.norm.get(), cfg.rms_norm_eps, &mut normed);
        match &self.head {
            Some(head) => head.apply(&normed, want.len()),
            None => {
                let mut out = vec![0.0f32; want.len() * cfg.vocab_size];
                kernels::matmul_t(&normed, want.len(), h, embed, cfg.vocab_size, &mut out);
                out
            }
        }
    }
}

/// One sample being generated.
pub(crate) struct Running<S> {
    pub group: usize,
    pub sample: usize,
    pub state: S,
    pub tokens: Vec<u32>,
}

/// What the caller decides about each drawn token.
pub(crate) enum Next {
    Continue,
    Finished,
}

/// Picks a token from a row of logits for a running sample and says whether it is finished.
pub(crate) type Draw<'a, S> = dyn Fn(&mut Running<S>, &[f32]) -> Result<Next> + Sync + 'a;

/// Sizes the cache: the number of sample slots, refusing a budget that holds no sequence.
pub(crate) fn plan_slots(
    cfg: &ModelConfig,
    prompts: &[Vec<u32>],
    n: usize,
    max_new: usize,
    max_batch: usize,
    budget_mib: Option<u64>,
) -> Result<(usize, usize, usize)> {
    let prompt_cap = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let sample_cap = max_new.saturating_sub(1);
    let want = (prompts.len() * n).min(max_batch.max(1)).max(1);
    let per_seq = (prompt_cap + sample_cap) * kv_bytes_per_position(cfg);
    let slots = match budget_mib {
        None => want,
        Some(mib) => {
            let budget = mib as usize * (1 << 20);
            let fit = budget.checked_div(per_seq).unwrap_or(usize::MAX);
            if fit == 0 {
                return Err(ModelError::Input(format!(
                    "kv_budget_mib {mib} cannot hold one sequence: its longest prompt ({prompt_cap} tokens) plus \
                     max_new_tokens {max_new} needs {:.1} MiB of KV cache; raise the budget or shorten the request",
                    per_seq as f64 / (1 << 20) as f64
                )));
            }
            want.min(fit)
        }
    };
    Ok((slots, prompt_cap, sample_cap))
}

/// Runs continuous batching for `prompts` × `n` samples over `slots` slots. `draw` picks a
/// token from a row of logits for a running sample and says whether it is finished; `new`
/// makes a sample's state. `progress` gets the number of tokens drawn at each step.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<B: Backend, S: Send>(
    model: &HostModel<B>,
    prompts: &[Vec<u32>],
    n: usize,
    slots: usize,
    prompt_cap: usize,
    sample_cap: usize,
    new: &mut dyn FnMut(usize, usize) -> S,
    draw: &Draw<'_, S>,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Running<S>>> {
    let cfg = &model.cfg;
    let vocab = cfg.vocab_size;
    let prompt_slots = slots.min(prompts.len());
    let mut cache = Cache::new(
        cfg.num_layers,
        cfg.num_kv_heads,
        cfg.head_dim,
        [prompt_slots, slots],
        [prompt_cap, sample_cap.max(1)],
    );
    let mut pending: VecDeque<(usize, usize)> = (0..prompts.len()).flat_map(|g| (0..n).map(move |s| (g, s))).collect();
    // Per group: its prompt slot while resident, its prompt's logits while samples wait for
    // their first token, and how many samples are not finished.
    let mut resident: Vec<Option<usize>> = vec![None; prompts.len()];
    let mut prompt_logits: Vec<Option<Vec<f32>>> = vec![None; prompts.len()];
    let mut left: Vec<usize> = vec![n; prompts.len()];
    let mut free_prompt: Vec<usize> = (0..prompt_slots).rev().collect();
    let mut running: Vec<Option<Running<S>>> = (0..slots).map(|_| None).collect();
    let mut done: Vec<Running<S>> = Vec::with_capacity(prompts.len() * n);

    while !pending.is_empty() || running.iter().any(Option::is_some) {
        // Admit waiting samples into free slots; a group's first admitted sample prefills it.
        let mut rows: Vec<Row> = Vec::new();
        let mut prefill_last: Vec<(usize, usize)> = Vec::new(); // (group, row index)
        for slot in running.iter_mut() {
            if slot.is_some() {
                continue;
            }
            let Some((g, s)) = pending.pop_front() else { break };
            if resident[g].is_none() {
                let ps = free_prompt.pop().expect("a resident group holds at least one running sample");
                resident[g] = Some(ps);
                let p = &prompts[g];
                for (i, &t) in p.iter().enumerate() {
                    rows.push(Row { token: t, pos: i, dst: (PROMPT, ps, i), ctx: [Some((PROMPT, ps, i + 1)), None] });
                }
                prefill_last.push((g, rows.len() - 1));
            }
            *slot = Some(Running { group: g, sample: s, state: new(g, s), tokens: Vec::new() });
        }
        // Decode rows: every running sample whose last token is not yet in the cache.
        let mut decode: Vec<(usize, usize)> = Vec::new(); // (slot, row index)
        for (slot, r) in running.iter().enumerate() {
            let Some(r) = r else { continue };
            let Some(&last) = r.tokens.last() else { continue };
            let ps = resident[r.group].expect("running sample's group is resident");
            let plen = prompts[r.group].len();
            let t = r.tokens.len();
            rows.push(Row {
                token: last,
                pos: plen + t - 1,
                dst: (SAMPLE, slot, t - 1),
                ctx: [Some((PROMPT, ps, plen)), Some((SAMPLE, slot, t))],
            });
            decode.push((slot, rows.len() - 1));
        }
        let want: Vec<usize> = prefill_last.iter().map(|&(_, i)| i).chain(decode.iter().map(|&(_, i)| i)).collect();
        let logits = if rows.is_empty() { Vec::new() } else { model.forward(&mut cache, &rows, &want) };
        for (j, &(g, _)) in prefill_last.iter().enumerate() {
            prompt_logits[g] = Some(logits[j * vocab..(j + 1) * vocab].to_vec());
        }
        let mut row_of_slot: Vec<Option<usize>> = vec![None; slots];
        for (j, &(slot, _)) in decode.iter().enumerate() {
            row_of_slot[slot] = Some(prefill_last.len() + j);
        }
        // Draw one token for every running sample, in parallel (each has its own RNG).
        let outcomes: Vec<Result<Option<Next>>> = running
            .par_iter_mut()
            .enumerate()
            .map(|(slot, r)| {
                let Some(r) = r.as_mut() else { return Ok(None) };
                let row: &[f32] = match row_of_slot[slot] {
                    Some(j) => &logits[j * vocab..(j + 1) * vocab],
                    None => prompt_logits[r.group].as_deref().expect("a new sample's group was prefilled"),
                };
                draw(r, row).map(Some)
            })
            .collect();
        let mut drawn = 0;
        for (slot, o) in outcomes.into_iter().enumerate() {
            match o? {
                None => {}
                Some(next) => {
                    drawn += 1;
                    let finished = matches!(next, Next::Finished)
                        || running[slot].as_ref().is_some_and(|r| r.tokens.len() > sample_cap);
                    if finished {
                        let r = running[slot].take().expect("running");
                        let g = r.group;
                        left[g] -= 1;
                        if left[g] == 0 {
                            free_prompt.push(resident[g].take().expect("resident"));
                        }
                        done.push(r);
                    }
                }
            }
        }
        // A group's prompt logits are needed until its last sample has drawn its first token.
        // The queue is in group order: groups before its head have no waiting sample.
        let first_waiting = pending.front().map_or(prompts.len(), |&(g, _)| g);
        for l in prompt_logits.iter_mut().take(first_waiting) {
            *l = None;
        }
        progress(drawn);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_cut_to_the_budget_and_a_budget_without_room_for_one_sequence_is_refused() {
        let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/qwen2-tiny");
        let mut cfg = ModelConfig::from_dir(&dir).unwrap();
        // 64 layers × K and V × 2 kv heads × 16 × f32 = 16 KiB per position.
        cfg.num_layers = 64;
        assert_eq!(kv_bytes_per_position(&cfg), 16 << 10);
        let prompts = |lens: &[usize]| lens.iter().map(|&l| vec![1u32; l]).collect::<Vec<_>>();
        // (prompt lengths, n, max_new_tokens, max_batch, budget) → slots or error.
        type Case = (Vec<usize>, usize, usize, usize, Option<u64>, std::result::Result<usize, &'static str>);
        let cases: Vec<Case> = vec![
            (vec![10, 20], 4, 5, 64, None, Ok(8)),
            (vec![10, 20], 4, 5, 3, None, Ok(3)),
            // 20 + 4 positions = 384 KiB per sequence: 2 fit in 1 MiB, 5 in 2 MiB.
            (vec![10, 20], 4, 5, 64, Some(1), Ok(2)),
            (vec![10, 20], 4, 5, 64, Some(2), Ok(5)),
            (vec![10, 20], 4, 5, 64, Some(64), Ok(8)),
            // Exactly one sequence: 60 + 4 positions = 1 MiB.
            (vec![60], 1, 5, 64, Some(1), Ok(1)),
            (
                vec![61],
                1,
                5,
                64,
                Some(1),
                Err(
                    "kv_budget_mib 1 cannot hold one sequence: its longest prompt (61 tokens) plus max_new_tokens 5 needs 1.0 MiB",
                ),
            ),
        ];
        for (lens, n, max_new, max_batch, budget, want) in cases {
            let got = plan_slots(&cfg, &prompts(&lens), n, max_new, max_batch, budget).map(|(s, _, _)| s);
            match (got, want) {
                (Ok(s), Ok(w)) => assert_eq!(s, w, "{lens:?} n {n} budget {budget:?}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "`{e}` lacks `{w}`"),
                (got, want) => panic!("{lens:?} budget {budget:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
