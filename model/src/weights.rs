//! Hugging Face checkpoints: `config.json` + `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`; f32, bf16 and f16 on disk.
//!
//! Loading checks every tensor's name, dtype and shape against the config and names the
//! offending tensor and file when one is wrong, missing or unexpected. Saving writes what
//! transformers writes (the same names, `[out, in]` layouts, an index for sharded
//! checkpoints), so a checkpoint saved by r1 loads with `from_pretrained`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::config::ModelConfig;
use crate::decoder::{Attention, CausalLm, Layer, Mlp};
use crate::error::{ModelError, Result};

/// On-disk element type of saved weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveDtype {
    F32,
    Bf16,
    F16,
}

impl SaveDtype {
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::Bf16 => "bfloat16",
            Self::F16 => "float16",
        }
    }

    fn safetensors(self) -> Dtype {
        match self {
            Self::F32 => Dtype::F32,
            Self::Bf16 => Dtype::BF16,
            Self::F16 => Dtype::F16,
        }
    }
}

impl std::str::FromStr for SaveDtype {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "f16" | "float16" => Ok(Self::F16),
            other => Err(ModelError::Input(format!("unknown dtype `{other}`; use f32, bf16 or f16"))),
        }
    }
}

/// A host copy of one tensor in Hugging Face layout.
struct HostTensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Reads all tensors of a checkpoint folder into host memory as f32, by name.
fn read_checkpoint(dir: &Path) -> Result<BTreeMap<String, (HostTensor, PathBuf)>> {
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ModelError::Json { path: index.clone(), source })?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ModelError::checkpoint(&index, "has no `weight_map` object"))?;
        let set: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
        set.into_iter().map(|f| dir.join(f)).collect()
    } else {
        let single = dir.join("model.safetensors");
        if !single.exists() {
            return Err(ModelError::checkpoint(
                dir,
                "has neither model.safetensors nor model.safetensors.index.json; is it a Hugging Face model folder?",
            ));
        }
        vec![single]
    };
    let mut out = BTreeMap::new();
    for file in files {
        let bytes = std::fs::read(&file).map_err(|e| ModelError::io(&file, e))?;
        read_safetensors(&bytes, &file, &mut out)?;
    }
    Ok(out)
}

/// Adds the tensors of one safetensors file (`origin` names it in errors) to `out`.
fn read_safetensors(bytes: &[u8], origin: &Path, out: &mut BTreeMap<String, (HostTensor, PathBuf)>) -> Result<()> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| ModelError::checkpoint(origin, format!("is not a valid safetensors file: {e}")))?;
    for (name, view) in st.tensors() {
        let data = to_f32(view.dtype(), view.data())
            .map_err(|m| ModelError::checkpoint(origin, format!("tensor `{name}`: {m}")))?;
        let t = HostTensor { shape: view.shape().to_vec(), data };
        out.insert(name, (t, origin.to_path_buf()));
    }
    Ok(())
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let chunks = |n: usize| bytes.chunks_exact(n);
    Ok(match dtype {
        Dtype::F32 => chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::BF16 => chunks(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F16 => chunks(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(format!("dtype {other:?} is not supported; weights must be F32, BF16 or F16")),
    })
}

/// Takes tensors out of the checkpoint map, checking shapes.
struct Loader<'a, B: Backend> {
    tensors: BTreeMap<String, (HostTensor, PathBuf)>,
    dir: &'a Path,
    device: &'a B::Device,
}

impl<B: Backend> Loader<'_, B> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (t, file) = self.tensors.remove(name).ok_or_else(|| {
            ModelError::checkpoint(self.dir, format!("tensor `{name}` is missing; does config.json match the weights?"))
        })?;
        if t.shape != shape {
            return Err(ModelError::checkpoint(
                file,
                format!("tensor `{name}` has shape {:?}, config.json implies {shape:?}", t.shape),
            ));
        }
        Ok(t.data)
    }

    fn vector(&mut self, name: &str, n: usize) -> Result<Param<Tensor<B, 1>>> {
        let data = self.take(name, &[n])?;
        Ok(Param::from_tensor(Tensor::from_data(TensorData::new(data, [n]), self.device)))
    }

    /// An HF `[out, in]` matrix, as a Burn `[in, out]` `Linear`.
    fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear<B>> {
        let w = self.take(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let w = transpose(&w, d_out, d_in);
        let weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [d_in, d_out]), self.device));
        let bias = if bias { Some(self.vector(&format!("{prefix}.bias"), d_out)?) } else { None };
        Ok(Linear { weight, bias })
    }

    fn norm(&mut self, name: &str, d: usize, eps: f64) -> Result<RmsNorm<B>> {
        Ok(RmsNorm { gamma: self.vector(name, d)?, epsilon: eps })
    }
}

fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = w[r * cols + c];
        }
    }
    out
}

/// Loads a model folder (`config.json` and safetensors weights).
pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<CausalLm<B>> {
    let cfg = ModelConfig::from_dir(dir)?;
    load_with_config(dir, cfg, device)
}

/// Loads weights for an already parsed config.
pub fn load_with_config<B: Backend>(dir: &Path, cfg: ModelConfig, device: &B::Device) -> Result<CausalLm<B>> {
    build(read_checkpoint(dir)?, dir, cfg, device)
}

/// Builds a model from one in-memory safetensors file (what [`to_safetensors_bytes`] makes),
/// e.g. weights streamed from the learner. `origin` names the source in errors.
pub fn from_safetensors_bytes<B: Backend>(
    bytes: &[u8],
    origin: &str,
    cfg: ModelConfig,
    device: &B::Device,
) -> Result<CausalLm<B>> {
    let origin = Path::new(origin);
    let mut tensors = BTreeMap::new();
    read_safetensors(bytes, origin, &mut tensors)?;
    build(tensors, origin, cfg, device)
}

/// All weights as one safetensors file in memory, in Hugging Face naming and layout.
pub fn to_safetensors_bytes<B: Backend>(model: &CausalLm<B>, dtype: SaveDtype) -> Result<Vec<u8>> {
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> =
        hf_tensors(model).into_iter().map(|(n, s, d)| (n, s, encode(dtype, &d))).collect();
    let views = tensors.iter().map(|(n, s, b)| {
        let view = safetensors::tensor::TensorView::new(dtype.safetensors(), s.clone(), b).expect("shape matches data");
        (n.clone(), view)
    });
    safetensors::serialize(views, None).map_err(|e| ModelError::Input(format!("cannot serialize weights: {e}")))
}

fn build<B: Backend>(
    tensors: BTreeMap<String, (HostTensor, PathBuf)>,
    dir: &Path,
    cfg: ModelConfig,
    device: &B::Device,
) -> Result<CausalLm<B>> {
    let mut l = Loader::<B> { tensors, dir, device };
    let (h, q, kv, eps) =
        (cfg.hidden_size, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim, cfg.rms_norm_eps);
    let embed = l.take("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
    let embed_tokens = Embedding {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(embed, [cfg.vocab_size, h]), device)),
    };
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = format!("model.layers.{i}");
        layers.push(Layer {
            input_layernorm: l.norm(&format!("{p}.input_layernorm.weight"), h, eps)?,
            self_attn: Attention {
                q_proj: l.linear(&format!("{p}.self_attn.q_proj"), h, q, cfg.qkv_bias)?,
                k_proj: l.linear(&format!("{p}.self_attn.k_proj"), h, kv, cfg.qkv_bias)?,
                v_proj: l.linear(&format!("{p}.self_attn.v_proj"), h, kv, cfg.qkv_bias)?,
                o_proj: l.linear(&format!("{p}.self_attn.o_proj"), q, h, cfg.o_bias)?,
                q_norm: cfg
                    .qk_norm
                    .then(|| l.norm(&format!("{p}.self_attn.q_norm.weight"), cfg.head_dim, eps))
                    .transpose()?,
                k_norm: cfg
                    .qk_norm
                    .then(|| l.norm(&format!("{p}.self_attn.k_norm.weight"), cfg.head_dim, eps))
                    .transpose()?,
            },
            post_attention_layernorm: l.norm(&format!("{p}.post_attention_layernorm.weight"), h, eps)?,
            mlp: Mlp {
                gate_proj: l.linear(&format!("{p}.mlp.gate_proj"), h, cfg.intermediate_size, cfg.mlp_bias)?,
                up_proj: l.linear(&format!("{p}.mlp.up_proj"), h, cfg.intermediate_size, cfg.mlp_bias)?,
                down_proj: l.linear(&format!("{p}.mlp.down_proj"), cfg.intermediate_size, h, cfg.mlp_bias)?,
            },
        });
    }
    let norm = l.norm("model.norm.weight", h, eps)?;
    let lm_head = if cfg.tie_word_embeddings {
        // Some tied checkpoints store the head anyway; it must equal the embedding, so drop it.
        l.tensors.remove("lm_head.weight");
        None
    } else {
        Some(l.linear("lm_head", h, cfg.vocab_size, false)?)
    };
    // Old checkpoints carry precomputed rotary tables; r1 recomputes them.
    l.tensors.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
    if let Some((name, (_, file))) = l.tensors.iter().next() {
        return Err(ModelError::checkpoint(
            file,
            format!(
                "has {} tensor(s) r1's {} model does not use, e.g. `{name}`; is `architectures` in config.json right?",
                l.tensors.len(),
                cfg.architecture.hf_name()
            ),
        ));
    }
    Ok(CausalLm {
        embed_tokens,
        layers,
        norm,
        lm_head,
        inv_freq: CausalLm::<B>::inv_freq_tensor(&cfg, device),
        config: cfg,
    })
}

type Named = Vec<(String, Vec<usize>, Vec<f32>)>;

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> (Vec<usize>, Vec<f32>) {
    let dims = t.dims().to_vec();
    (dims, t.into_data().convert::<f32>().into_vec::<f32>().expect("f32 data"))
}

fn push_vec<B: Backend>(out: &mut Named, name: String, t: Tensor<B, 1>) {
    let (dims, data) = host(t);
    out.push((name, dims, data));
}

/// A Burn `[in, out]` linear as HF's `[out, in]` weight (and bias).
fn push_linear<B: Backend>(out: &mut Named, name: &str, l: &Linear<B>) {
    let (dims, data) = host(l.weight.val());
    let (d_in, d_out) = (dims[0], dims[1]);
    out.push((format!("{name}.weight"), vec![d_out, d_in], transpose(&data, d_in, d_out)));
    if let Some(b) = &l.bias {
        push_vec(out, format!("{name}.bias"), b.val());
    }
}

/// All weights in Hugging Face naming and layout, in file order.
fn hf_tensors<B: Backend>(model: &CausalLm<B>) -> Named {
    let mut out = Named::new();
    let (dims, data) = host(model.embed_tokens.weight.val());
    out.push(("model.embed_tokens.weight".into(), dims, data));
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        push_vec(&mut out, format!("{p}.input_layernorm.weight"), layer.input_layernorm.gamma.val());
        let a = &layer.self_attn;
        for (n, l) in [("q_proj", &a.q_proj), ("k_proj", &a.k_proj), ("v_proj", &a.v_proj), ("o_proj", &a.o_proj)] {
            push_linear(&mut out, &format!("{p}.self_attn.{n}"), l);
        }
        for (n, norm) in [("q_norm", &a.q_norm), ("k_norm", &a.k_norm)] {
            if let Some(norm) = norm {
                push_vec(&mut out, format!("{p}.self_attn.{n}.weight"), norm.gamma.val());
            }
        }
        push_vec(&mut out, format!("{p}.post_attention_layernorm.weight"), layer.post_attention_layernorm.gamma.val());
        let m = &layer.mlp;
        for (n, l) in [("gate_proj", &m.gate_proj), ("up_proj", &m.up_proj), ("down_proj", &m.down_proj)] {
            push_linear(&mut out, &format!("{p}.mlp.{n}"), l);
        }
    }
    push_vec(&mut out, "model.norm.weight".into(), model.norm.gamma.val());
    if let Some(head) = &model.lm_head {
        push_linear(&mut out, "lm_head", head);
    }
    out
}

fn encode(dtype: SaveDtype, data: &[f32]) -> Vec<u8> {
    match dtype {
        SaveDtype::F32 => data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        SaveDtype::Bf16 => data.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect(),
        SaveDtype::F16 => data.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect(),
    }
}

/// Options for [`save`].
#[derive(Debug, Clone)]
pub struct SaveOptions {
    pub dtype: SaveDtype,
    /// Split into shards of at most this many bytes (with an index), as transformers does.
    pub max_shard_bytes: Option<usize>,
}

impl Default for SaveOptions {
    fn default() -> Self {
        Self { dtype: SaveDtype::F32, max_shard_bytes: None }
    }
}

/// Writes `config.json` and the weights into `dir` (created if needed).
pub fn save<B: Backend>(model: &CausalLm<B>, dir: &Path, opts: &SaveOptions) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let config = model.config.to_hf_json(opts.dtype.hf_name());
    let cfg_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&config).expect("json value");
    std::fs::write(&cfg_path, text + "\n").map_err(|e| ModelError::io(&cfg_path, e))?;

    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> =
        hf_tensors(model).into_iter().map(|(n, s, d)| (n, s, encode(opts.dtype, &d))).collect();
    let mut shards: Vec<Vec<usize>> = vec![vec![]];
    let mut size = 0usize;
    for (i, (_, _, bytes)) in tensors.iter().enumerate() {
        if let Some(max) = opts.max_shard_bytes
            && size > 0
            && size + bytes.len() > max
        {
            shards.push(vec![]);
            size = 0;
        }
        shards.last_mut().expect("non-empty").push(i);
        size += bytes.len();
    }
    let meta = Some(std::collections::HashMap::from([("format".to_string(), "pt".to_string())]));
    let write = |file: &Path, idx: &[usize]| -> Result<()> {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = idx
            .iter()
            .map(|&i| {
                let (n, s, b) = &tensors[i];
                let view = safetensors::tensor::TensorView::new(opts.dtype.safetensors(), s.clone(), b)
                    .expect("shape matches data");
                (n.clone(), view)
            })
            .collect();
        safetensors::serialize_to_file(views, meta.clone(), file)
            .map_err(|e| ModelError::checkpoint(file, format!("cannot write: {e}")))
    };
    // Stale files from an earlier save with another layout would confuse loaders.
    for stale in ["model.safetensors", "model.safetensors.index.json"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    if shards.len() == 1 {
        return write(&dir.join("model.safetensors"), &shards[0]);
    }
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0usize;
    for (k, idx) in shards.iter().enumerate() {
        let name = format!("model-{:05}-of-{n:05}.safetensors", k + 1);
        write(&dir.join(&name), idx)?;
        for &i in idx {
            total += tensors[i].2.len();
            weight_map.insert(tensors[i].0.clone(), serde_json::Value::String(name.clone()));
        }
    }
    let index = serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
    let path = dir.join("model.safetensors.index.json");
    std::fs::write(&path, serde_json::to_string_pretty(&index).expect("json") + "\n")
        .map_err(|e| ModelError::io(&path, e))
}
