//! `r1ctl eval`: pass@1 averaged over k samples, cons@k and format rate of a model on a task
//! file, scored with the math and format verifiers (see `r1_recipe::eval`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use r1_model::{PromptTemplate, TextTokenizer};
use r1_recipe::data::{TaskItem, read_tasks};
use r1_recipe::eval::{GenConfig, Outcome, sample_and_score, summarize};

use crate::backend::{DeviceKind, with_backend};

/// Sampling options shared by `eval` and `sample`.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Hugging Face model folder (with tokenizer.json)
    #[arg(long)]
    pub model: PathBuf,
    /// JSONL task file, one question and reference answer per line
    #[arg(long)]
    pub dataset: PathBuf,
    /// Samples per question
    #[arg(short = 'k', long, default_value_t = 4)]
    pub k: usize,
    /// Field holding the question
    #[arg(long, default_value = "prompt")]
    pub prompt_field: String,
    /// Field holding the reference answer (string or number)
    #[arg(long, default_value = "answer")]
    pub answer_field: String,
    /// Use only the first N questions
    #[arg(long)]
    pub limit: Option<usize>,
    /// How a question is wrapped: the R1 template or as is
    #[arg(long, value_enum, default_value_t = Template::R1)]
    pub template: Template,
    /// Softmax temperature (the R1 paper evaluates pass@1 at 0.6; training samples at 1)
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Nucleus sampling threshold (1 = off)
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Most new tokens per sample
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most sequences decoded together
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceKind,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Template {
    /// DeepSeek-R1-Zero's <think>/<answer> template
    R1,
    /// The question as given
    Raw,
}

impl SamplingArgs {
    fn gen_config(&self) -> GenConfig {
        GenConfig {
            k: self.k,
            temperature: self.temperature,
            top_p: self.top_p,
            max_new_tokens: self.max_new_tokens,
            seed: self.seed,
            max_batch: self.max_batch,
            template: match self.template {
                Template::R1 => PromptTemplate::R1,
                Template::Raw => PromptTemplate::Raw,
            },
        }
    }

    fn items(&self) -> Result<Vec<TaskItem>> {
        if self.k == 0 {
            bail!("-k must be at least 1");
        }
        let mut items = read_tasks(&self.dataset, &self.prompt_field, &self.answer_field)?;
        if let Some(n) = self.limit {
            if n == 0 {
                bail!("--limit must be at least 1");
            }
            items.truncate(n);
        }
        Ok(items)
    }
}

/// Loads the model, samples k completions per question and scores them, with a progress bar.
pub fn sample_scored(args: &SamplingArgs) -> Result<Vec<Outcome>> {
    let items = args.items()?;
    with_backend!(args.device, |B, device| run_on::<B>(args, &items, &device))
}

fn run_on<B: Backend>(args: &SamplingArgs, items: &[TaskItem], device: &B::Device) -> Result<Vec<Outcome>> {
    let tokenizer = TextTokenizer::from_dir(&args.model)
        .with_context(|| format!("{} needs a tokenizer.json to render questions", args.model.display()))?;
    let model = r1_model::load::<B>(&args.model, device)
        .with_context(|| format!("cannot load the model in {}", args.model.display()))?;
    let cfg = args.gen_config();
    let bar = crate::progress::tokens_bar((items.len() * cfg.k * cfg.max_new_tokens) as u64);
    let out = sample_and_score(&model, &tokenizer, items, &cfg, device, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    Ok(out)
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Also write every sample with its verdicts to this JSONL file
    #[arg(long)]
    samples_out: Option<PathBuf>,
    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    let outcomes = sample_scored(&args.sampling)?;
    let report = summarize(&outcomes, args.sampling.k);
    let secs = t0.elapsed().as_secs_f64();
    if let Some(path) = &args.samples_out {
        let mut w = crate::jsonl::writer(Some(path))?;
        for o in &outcomes {
            serde_json::to_writer(&mut w, o)?;
            writeln!(w)?;
        }
        w.flush()?;
    }
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["model"] = serde_json::json!(args.sampling.model);
        v["dataset"] = serde_json::json!(args.sampling.dataset);
        v["temperature"] = serde_json::json!(args.sampling.temperature);
        v["seconds"] = serde_json::json!(secs);
        println!("{v}");
    } else {
        let k = report.k;
        println!(
            "{} questions x {k} samples at temperature {}: pass@1 {:.1}%  cons@{k} {:.1}%  format {:.1}%  answered {:.1}%  truncated {:.1}%  mean {:.1} tokens  ({secs:.1}s)",
            report.questions,
            args.sampling.temperature,
            100.0 * report.pass_at_1,
            100.0 * report.cons_at_k,
            100.0 * report.format_rate,
            100.0 * report.answer_rate,
            100.0 * report.truncated_rate,
            report.mean_completion_tokens,
        );
    }
    Ok(())
}
