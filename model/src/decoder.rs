//! The decoder: a Qwen2/Llama-family causal language model in Burn, generic over the backend.
//!
//! Token embedding → N × [RMSNorm → grouped-query attention with Hugging Face-style rotary
//! embeddings ("rotate half") → residual → RMSNorm → SwiGLU MLP → residual] → RMSNorm → LM head
//! (tied to the embedding or not). Biases follow the checkpoint: Qwen2 has them on q/k/v,
//! Qwen3 and Llama on q/k/v/o when `attention_bias` is set. Qwen3 normalises each head's
//! queries and keys (RMSNorm over `head_dim`, weights `q_norm`/`k_norm`) before the rotary
//! embedding.
//!
//! Every call takes explicit per-token positions and an additive attention bias, so one code
//! path serves left-padded batches of prompts of different lengths, KV-cached decoding and
//! training. Grouped-query attention folds the query heads of each key/value head into one
//! matrix product instead of repeating K and V.
//!
//! Weights are stored as Burn `Linear` modules, i.e. `[d_in, d_out]`; `weights.rs` transposes
//! from and to Hugging Face's `[d_out, d_in]`.

use burn::module::{Module, Param};
use burn::nn::{Embedding, Initializer, Linear, LinearConfig, RmsNorm};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::{ModelConfig, RopeScaling};
use crate::ops::{rms_norm, softmax};

/// Additive attention bias value for masked positions. Finite, so that a row whose keys are
/// all masked (a padding query) gives a uniform distribution instead of NaN.
pub const MASKED: f32 = -1.0e9;

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    /// Per-head RMSNorm on queries and keys (Qwen3), `[head_dim]` each.
    pub q_norm: Option<RmsNorm<B>>,
    pub k_norm: Option<RmsNorm<B>>,
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

#[derive(Module, Debug)]
pub struct Layer<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub self_attn: Attention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

/// The causal language model.
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<Layer<B>>,
    pub norm: RmsNorm<B>,
    /// `None` when the head is tied to `embed_tokens`.
    pub lm_head: Option<Linear<B>>,
    /// Rotary inverse frequencies, `[head_dim / 2]`, scaling already applied. Not trained.
    pub inv_freq: Tensor<B, 1>,
    #[module(skip)]
    pub config: ModelConfig,
}

/// Keys and values of every layer for the tokens seen so far, `[batch, kv_heads, len, head_dim]`.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![None; num_layers] }
    }

    /// Number of cached positions (0 before the first call).
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps (and repeats) batch rows: row `i` of the result is row `rows[i]` of `self`. This is
    /// how a prefilled prompt is forked into its G samples and how finished rows are dropped.
    pub fn select_rows(&self, rows: Tensor<B, 1, Int>) -> Self {
        let layers = self
            .layers
            .iter()
            .map(|l| l.as_ref().map(|(k, v)| (k.clone().select(0, rows.clone()), v.clone().select(0, rows.clone()))))
            .collect();
        Self { layers }
    }
}

/// HF-style rotary inverse frequencies with the configured scaling applied.
pub fn rope_inv_freq(cfg: &ModelConfig) -> Vec<f32> {
    let d = cfg.head_dim as f64;
    (0..cfg.head_dim / 2)
        .map(|i| {
            let f = 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / d);
            let f = match cfg.rope_scaling {
                RopeScaling::Default => f,
                RopeScaling::Linear { factor } => f / factor,
                RopeScaling::Llama3 {
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_max_position_embeddings: old,
                } => {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    let (low_wl, high_wl) = (old / low_freq_factor, old / high_freq_factor);
                    if wavelen < high_wl {
                        f
                    } else if wavelen > low_wl {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                }
            };
            f as f32
        })
        .collect()
}

impl<B: Backend> CausalLm<B> {
    /// A freshly initialised model (normal(0, 0.02) weights, zero biases, unit norms), as
    /// transformers initialises one, for pretraining from scratch.
    pub fn init(cfg: &ModelConfig, device: &B::Device) -> Self {
        let init = Initializer::Normal { mean: 0.0, std: 0.02 };
        let linear = |i: usize, o: usize, bias: bool| {
            let mut l = LinearConfig::new(i, o).with_bias(bias).with_initializer(init.clone()).init(device);
            if let Some(b) = l.bias.take() {
                l.bias = Some(Param::from_tensor(b.val().zeros_like()));
            }
            l
        };
        let norm =
            |d: usize| RmsNorm { gamma: Param::from_tensor(Tensor::ones([d], device)), epsilon: cfg.rms_norm_eps };
        let (h, q, kv) = (cfg.hidden_size, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim);
        let layers = (0..cfg.num_layers)
            .map(|_| Layer {
                input_layernorm: norm(h),
                self_attn: Attention {
                    q_proj: linear(h, q, cfg.qkv_bias),
                    k_proj: linear(h, kv, cfg.qkv_bias),
                    v_proj: linear(h, kv, cfg.qkv_bias),
                    o_proj: linear(q, h, cfg.o_bias),
                    q_norm: cfg.qk_norm.then(|| norm(cfg.head_dim)),
                    k_norm: cfg.qk_norm.then(|| norm(cfg.head_dim)),
                },
                post_attention_layernorm: norm(h),
                mlp: Mlp {
                    gate_proj: linear(h, cfg.intermediate_size, cfg.mlp_bias),
                    up_proj: linear(h, cfg.intermediate_size, cfg.mlp_bias),
                    down_proj: linear(cfg.intermediate_size, h, cfg.mlp_bias),
                },
            })
            .collect();
        let embed = init.init_with([cfg.vocab_size, h], Some(h), Some(cfg.vocab_size), device);
        Self {
            embed_tokens: Embedding { weight: embed },
            layers,
            norm: norm(h),
            lm_head: (!cfg.tie_word_embeddings).then(|| linear(h, cfg.vocab_size, false)),
            inv_freq: Self::inv_freq_tensor(cfg, device),
            config: cfg.clone(),
        }
    }

    pub(crate) fn inv_freq_tensor(cfg: &ModelConfig, device: &B::Device) -> Tensor<B, 1> {
        let f = rope_inv_freq(cfg);
        let n = f.len();
        Tensor::from_data(TensorData::new(f, [n]), device)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Runs the decoder over `tokens` `[batch, len]` at `positions` `[batch, len]`, with an
    /// additive attention `bias` `[batch, 1, len, cache_len + len]` (0 = attend, [`MASKED`] =
    /// don't). With a cache, the new keys/values are appended to it. Returns the final
    /// normalised hidden states `[batch, len, hidden]`.
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        bias: Tensor<B, 4>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let (cos, sin) = self.rope_tables(positions);
        let mut x = self.embed_tokens.forward(tokens);
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            let h = layer.self_attn.forward(
                rms_norm(&layer.input_layernorm, x.clone()),
                &cos,
                &sin,
                bias.clone(),
                slot,
                &self.config,
            );
            x = x + h;
            let h = layer.mlp.forward(rms_norm(&layer.post_attention_layernorm, x.clone()));
            x = x + h;
        }
        rms_norm(&self.norm, x)
    }

    /// Projects hidden states to vocabulary logits.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            // Tied head: multiply by the [vocab, hidden] embedding as stored, E · hᵀ, and
            // transpose the small result, instead of transposing the large embedding (which
            // CPU backends copy: 0.5 GB per call for a 150k vocabulary).
            None => {
                let [b, t, h] = hidden.dims();
                let vocab = self.config.vocab_size;
                let x = hidden.reshape([b * t, h]);
                self.embed_tokens.weight.val().matmul(x.transpose()).transpose().reshape([b, t, vocab])
            }
        }
    }

    /// `cos` and `sin` tables `[batch, 1, len, head_dim]` for the given positions.
    fn rope_tables(&self, positions: Tensor<B, 2, Int>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, t] = positions.dims();
        let half = self.inv_freq.dims()[0];
        let freqs = positions.float().reshape([b, t, 1]) * self.inv_freq.clone().reshape([1, 1, half]);
        let emb = Tensor::cat(vec![freqs.clone(), freqs], 2).unsqueeze_dim::<4>(1);
        (emb.clone().cos(), emb.sin())
    }
}

fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.narrow(3, d / 2, d / 2);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

impl<B: Backend> Attention<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        bias: Tensor<B, 4>,
        cache: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
        cfg: &ModelConfig,
    ) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let groups = nh / nkv;
        let heads = |y: Tensor<B, 3>, n: usize| y.reshape([b, t, n, hd]).swap_dims(1, 2);
        let q = heads(self.q_proj.forward(x.clone()), nh);
        let k = heads(self.k_proj.forward(x.clone()), nkv);
        let v = heads(self.v_proj.forward(x), nkv);
        let q = match &self.q_norm {
            Some(n) => rms_norm(n, q),
            None => q,
        };
        let k = match &self.k_norm {
            Some(n) => rms_norm(n, k),
            None => k,
        };
        let q = q.clone() * cos.clone() + rotate_half(q) * sin.clone();
        let k = k.clone() * cos.clone() + rotate_half(k) * sin.clone();
        let (k, v) = match cache {
            Some(slot) => {
                let kv = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
                    None => (k, v),
                };
                *slot = Some(kv.clone());
                kv
            }
            None => (k, v),
        };
        // Fold each kv head's query group into the row dimension: [b, nkv, groups * t, hd].
        let q = q.reshape([b, nkv, groups * t, hd]);
        let scale = (hd as f64).powf(-0.5);
        let tk = k.dims()[2];
        // The bias broadcasts over the query groups instead of being repeated.
        let scores =
            (q.matmul(k.swap_dims(2, 3)) * scale).reshape([b, nkv, groups, t, tk]) + bias.unsqueeze_dim::<5>(2);
        let probs = softmax(scores, 4).reshape([b, nkv, groups * t, tk]);
        let out = probs.matmul(v).reshape([b, nh, t, hd]).swap_dims(1, 2).reshape([b, t, nh * hd]);
        self.o_proj.forward(out)
    }
}

impl<B: Backend> Mlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
