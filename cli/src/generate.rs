//! `r1ctl generate`: sample completions with their per-token log-probabilities.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use r1_model::{PromptTemplate, SamplingParams, TextTokenizer};
use serde::Deserialize;

use crate::backend::{DeviceKind, with_backend};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Hugging Face model folder
    #[arg(long)]
    model: PathBuf,
    /// One prompt
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    prompt: Option<String>,
    /// JSONL prompts, one `{"prompt":"..."}` or `{"input_ids":[...]}` per line (`-` = stdin)
    #[arg(long)]
    input: Option<PathBuf>,
    /// Samples per prompt (G)
    #[arg(short = 'n', long, default_value_t = 1)]
    n: usize,
    /// How a text prompt is wrapped before tokenizing
    #[arg(long, value_enum, default_value_t = TemplateArg::Raw)]
    template: TemplateArg,
    /// Softmax temperature; 0 is greedy
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Nucleus sampling threshold (1 = off)
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep the k most likely tokens (0 = off)
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Most new tokens per sample
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Stop when the completion contains this string (repeatable)
    #[arg(long = "stop")]
    stop_strings: Vec<String>,
    /// Stop at this token id (repeatable); the model's EOS ids always stop unless --ignore-eos
    #[arg(long = "stop-token-id")]
    stop_token_ids: Vec<u32>,
    /// Do not stop at the model's end-of-sequence tokens
    #[arg(long)]
    ignore_eos: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most sequences decoded together
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// MiB for the KV cache (CPU): fewer sequences run together when `--max-batch` of them
    /// do not fit; a request of which not even one fits is refused at the start
    #[arg(long)]
    kv_budget_mib: Option<u64>,
    /// One JSON object per prompt instead of text
    #[arg(long)]
    json: bool,
    #[arg(long, value_enum, default_value_t)]
    device: DeviceKind,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TemplateArg {
    /// The prompt as given
    Raw,
    /// DeepSeek-R1-Zero's <think>/<answer> template
    R1,
    /// The model's chat template
    Chat,
}

impl From<TemplateArg> for PromptTemplate {
    fn from(t: TemplateArg) -> Self {
        match t {
            TemplateArg::Raw => Self::Raw,
            TemplateArg::R1 => Self::R1,
            TemplateArg::Chat => Self::Chat,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    prompt: Option<String>,
    input_ids: Option<Vec<u32>>,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    with_backend!(args.device, |B, device| generate::<B>(&args, &device))
}

fn generate<B: Backend>(args: &GenerateArgs, device: &B::Device) -> Result<()> {
    let lines: Vec<Line> = match (&args.prompt, &args.input) {
        (Some(p), None) => vec![Line { prompt: Some(p.clone()), input_ids: None }],
        (None, Some(path)) => crate::jsonl::read(path)?,
        _ => bail!("give --prompt or --input"),
    };
    let tokenizer_path = args.model.join("tokenizer.json");
    let tokenizer = if tokenizer_path.exists() { Some(TextTokenizer::from_dir(&args.model)?) } else { None };
    let mut prompts = Vec::with_capacity(lines.len());
    let mut texts = Vec::with_capacity(lines.len());
    for (i, l) in lines.into_iter().enumerate() {
        match (l.prompt, l.input_ids) {
            (Some(p), None) => {
                let tok = tokenizer.as_ref().with_context(|| {
                    format!("text prompts need {}; give input_ids instead", tokenizer_path.display())
                })?;
                let text = tok.render(args.template.into(), &p)?;
                prompts.push(tok.encode(&text)?);
                texts.push(Some(p));
            }
            (None, Some(ids)) => {
                prompts.push(ids);
                texts.push(None);
            }
            _ => bail!("record {}: give exactly one of `prompt` or `input_ids`", i + 1),
        }
    }

    let model = r1_model::load::<B>(&args.model, device).context("cannot load the model")?;
    let mut stop = args.stop_token_ids.clone();
    if !args.ignore_eos {
        stop.extend(&model.config().eos_token_ids);
        stop.extend(tokenizer.as_ref().and_then(|t| t.eos_token_id()));
    }
    stop.sort_unstable();
    stop.dedup();
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        max_new_tokens: args.max_new_tokens,
        stop_token_ids: stop,
        stop_strings: args.stop_strings.clone(),
        seed: args.seed,
        max_batch: args.max_batch,
        kv_budget_mib: args.kv_budget_mib,
    };
    let bar = crate::progress::tokens_bar((prompts.len() * args.n * args.max_new_tokens) as u64);
    let t0 = std::time::Instant::now();
    let mut generated = 0usize;
    let out = r1_model::sample::generate(&model, &prompts, args.n, &params, tokenizer.as_ref(), device, &mut |k| {
        generated += k;
        bar.inc(k as u64);
    })?;
    bar.finish_and_clear();
    tracing::info!(tokens = generated, secs = t0.elapsed().as_secs_f64(), "generated");

    let mut w = crate::jsonl::writer(None)?;
    for (i, samples) in out.iter().enumerate() {
        let decoded: Vec<Option<String>> = samples
            .iter()
            .map(|s| tokenizer.as_ref().map(|t| t.decode(&s.tokens)).transpose())
            .collect::<Result<_, _>>()?;
        if args.json {
            let samples: Vec<_> = samples
                .iter()
                .zip(&decoded)
                .map(|(s, text)| {
                    serde_json::json!({
                        "text": text, "tokens": s.tokens, "logprobs": s.logprobs, "finish_reason": s.finish,
                    })
                })
                .collect();
            let line = serde_json::json!({ "prompt_index": i, "prompt": texts[i], "prompt_ids": prompts[i], "samples": samples });
            serde_json::to_writer(&mut w, &line)?;
            writeln!(w)?;
        } else {
            for (j, (s, text)) in samples.iter().zip(&decoded).enumerate() {
                let mean_lp = s.logprobs.iter().sum::<f32>() / s.logprobs.len().max(1) as f32;
                writeln!(
                    w,
                    "=== prompt {i} sample {j} ({} tokens, {:?}, mean logprob {mean_lp:.3})",
                    s.tokens.len(),
                    s.finish
                )?;
                match text {
                    Some(t) => writeln!(w, "{t}")?,
                    None => writeln!(w, "{:?}", s.tokens)?,
                }
            }
        }
    }
    w.flush()?;
    eprintln!(
        "{generated} tokens in {:.2}s ({:.1} tokens/s)",
        t0.elapsed().as_secs_f64(),
        generated as f64 / t0.elapsed().as_secs_f64()
    );
    Ok(())
}
