//! r1-model: the policy model every part of r1 runs.
//!
//! A Qwen2/Llama-family decoder in Burn, generic over the backend, that loads and saves
//! Hugging Face checkpoints and reproduces transformers' numbers.
//!
//! - [`config`]: `config.json` (Qwen2 and Llama, old and new layouts) → [`ModelConfig`].
//! - [`decoder`]: the network ([`CausalLm`]) and its KV cache.
//! - [`weights`]: safetensors load/save (single file or sharded; f32, bf16, f16).
//! - [`batch`]: left-padded batches with positions and attention bias.
//! - [`logprobs`]: teacher-forced per-token log-probabilities (training and `r1ctl logprobs`).
//! - [`ops`]: softmax, log-softmax and RMSNorm whose gradients are exact and reproducible on
//!   the CPU backend.
//! - [`sample`]: batched KV-cached sampling with group forking and per-token log-probs.
//! - [`tokenizer`]: `tokenizer.json`, the R1 template and chat templates.
//!
//! The model knows nothing of gRPC, rewards or training: `r1-learner` trains it, `r1-actor`
//! serves it.

pub mod batch;
pub mod config;
pub mod decoder;
mod engine;
pub mod error;
pub mod kernels;
pub mod logprobs;
pub mod ops;
pub mod sample;
pub mod tokenizer;
pub mod weights;

pub use config::{Architecture, ModelConfig};
pub use decoder::{CausalLm, KvCache};
pub use error::{ModelError, Result};
pub use sample::{FinishReason, Sample, SamplingParams};
pub use tokenizer::{Prompt, PromptTemplate, TextTokenizer};

/// The CPU backend r1 runs on by default.
pub type CpuBackend = burn::backend::NdArray<f32>;
/// The CPU backend with autodiff, for training.
pub type CpuTrainBackend = burn::backend::Autodiff<CpuBackend>;

/// Loads a Hugging Face model folder onto a device.
pub fn load<B: burn::tensor::backend::Backend>(dir: &std::path::Path, device: &B::Device) -> Result<CausalLm<B>> {
    weights::load(dir, device)
}

/// Burn's Flex CPU backend (build with `--features flex`): a benchmark candidate.
#[cfg(feature = "flex")]
pub type FlexBackend = burn::backend::Flex<f32>;

/// Burn's LibTorch backend on the CPU (build with `--features tch`): a benchmark candidate.
#[cfg(feature = "tch")]
pub type TorchBackend = burn::backend::LibTorch<f32>;

/// The CUDA backend (build with `--features cuda`; CUDA is loaded at run time).
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda<f32>;
