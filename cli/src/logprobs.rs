//! `r1ctl logprobs`: per-token log-probabilities of given sequences under a model.
//!
//! Contract (relied on outside the repository): each input line is `{"input_ids":[...]}` or
//! `{"text":"..."}`; each output line is `{"logprobs":[...]}`, in input order, where entry i
//! is log p(token i+1 | tokens 0..=i), computed in f32.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use serde::Deserialize;

use crate::backend::{DeviceKind, with_backend};

#[derive(Args, Debug)]
pub struct LogprobsArgs {
    /// Hugging Face model folder (config.json, safetensors, tokenizer.json for text input)
    #[arg(long)]
    model: PathBuf,
    /// JSONL input, one `{"input_ids":[...]}` or `{"text":"..."}` per line (`-` = stdin)
    #[arg(long)]
    input: PathBuf,
    /// Where to write the JSONL output (default: stdout)
    #[arg(long)]
    output: Option<PathBuf>,
    /// Sequences scored together
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Encode `text` without the tokenizer's special tokens (BOS/EOS post-processing)
    #[arg(long)]
    no_special_tokens: bool,
    #[arg(long, value_enum, default_value_t)]
    device: DeviceKind,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    input_ids: Option<Vec<u32>>,
    text: Option<String>,
}

pub fn run(args: LogprobsArgs) -> Result<()> {
    with_backend!(args.device, |B, device| score::<B>(&args, &device))
}

fn score<B: Backend>(args: &LogprobsArgs, device: &B::Device) -> Result<()> {
    let lines: Vec<Line> = crate::jsonl::read(&args.input)?;
    let needs_text = lines.iter().any(|l| l.text.is_some());
    let tokenizer = if needs_text {
        Some(
            tokenizers::Tokenizer::from_file(args.model.join("tokenizer.json"))
                .map_err(|e| anyhow::anyhow!("text input needs {}/tokenizer.json: {e}", args.model.display()))?,
        )
    } else {
        None
    };
    let mut seqs = Vec::with_capacity(lines.len());
    for (i, l) in lines.into_iter().enumerate() {
        seqs.push(match (l.input_ids, l.text) {
            (Some(ids), None) => ids,
            (None, Some(text)) => tokenizer
                .as_ref()
                .expect("loaded when any line has text")
                .encode(text, !args.no_special_tokens)
                .map_err(|e| anyhow::anyhow!("record {}: cannot tokenize: {e}", i + 1))?
                .get_ids()
                .to_vec(),
            _ => bail!("record {}: give exactly one of `input_ids` or `text`", i + 1),
        });
    }
    let model = r1_model::load::<B>(&args.model, device).context("cannot load the model")?;
    let out = r1_model::logprobs::score(&model, &seqs, args.batch_size, device)?;
    let mut w = crate::jsonl::writer(args.output.as_deref())?;
    for lp in out {
        serde_json::to_writer(&mut w, &serde_json::json!({ "logprobs": lp }))?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

use std::io::Write as _;
