//! `r1ctl eval`: pass@1 averaged over k samples, unbiased pass@k, cons@k and format rate of a
//! model on a task file or a published benchmark file (`--benchmark`, see
//! `r1_recipe::benchmark`), scored with the math and format verifiers (`r1_recipe::eval`).
//! JSONL or Parquet in, a line or a JSON report (`--json`) out; nothing is fetched.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use r1_coordinator::spec::{AnswerKind, DatasetFormat};
use r1_model::{PromptTemplate, TextTokenizer};
use r1_recipe::benchmark::Benchmark;
use r1_recipe::data::TaskItem;
use r1_recipe::eval::{GenConfig, Outcome, sample_and_score, summarize};
use r1_reward::math::AnswerSource;

use crate::backend::{DeviceKind, with_backend};

/// Sampling options shared by `eval` and `sample`.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Hugging Face model folder (with tokenizer.json)
    #[arg(long)]
    pub model: PathBuf,
    /// Task file, JSONL or Parquet (by extension): one question and reference answer per row
    #[arg(long)]
    pub dataset: PathBuf,
    /// A published benchmark file: its own columns, prompt and answer rule (lighteval's);
    /// one of math500, aime24, aime25, gsm8k, gpqa-diamond
    #[arg(long, value_parser = clap::value_parser!(BenchArg))]
    pub benchmark: Option<BenchArg>,
    /// Samples per question
    #[arg(short = 'k', long, default_value_t = 4)]
    pub k: usize,
    /// Field holding the question (without --benchmark)
    #[arg(long, default_value = "prompt")]
    pub prompt_field: String,
    /// Field holding the reference answer, a string or number (without --benchmark)
    #[arg(long, default_value = "answer")]
    pub answer_field: String,
    /// How the answer field holds the gold answer (without --benchmark): plain, gsm8k
    /// (`#### 72`), boxed (a solution's last \boxed{}), choice (a letter)
    #[arg(long, default_value = "plain", value_parser = clap::value_parser!(KindArg))]
    pub answer_kind: KindArg,
    /// Where a completion's answer is looked for, in order (repeat the flag): boxed,
    /// answer_tag, hashes (`#### n`), answer_is ("answer is n"), last_number; default boxed
    /// then answer_tag (a run's accuracy reward), or the benchmark's own
    #[arg(long = "answer-source", value_parser = parse_source)]
    pub answer_sources: Vec<AnswerSource>,
    /// Use only the first N questions
    #[arg(long)]
    pub limit: Option<usize>,
    /// How a question is wrapped: r1 (DeepSeek-R1-Zero's template), chat (the model's own chat
    /// template) or raw; default chat with --benchmark (as lighteval --use-chat-template), else r1
    #[arg(long, value_enum)]
    pub template: Option<Template>,
    /// A system message before each question (with the chat template)
    #[arg(long)]
    pub system: Option<String>,
    /// Start each completion with "<think>\n" (DeepSeek-R1-Distill models' cards ask for it)
    /// unless the chat template already does
    #[arg(long)]
    pub think: bool,
    /// Softmax temperature (the R1 paper evaluates pass@1 at 0.6; training samples at 1)
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Nucleus sampling threshold (1 = off)
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Most new tokens per sample
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Seeds the samples and GPQA's choice order
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most sequences decoded together
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    #[arg(long, value_enum, default_value_t)]
    pub device: DeviceKind,
}

fn parse_source(s: &str) -> Result<AnswerSource, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("unknown answer source `{s}`; use boxed, answer_tag, hashes, answer_is or last_number"))
}

/// `--benchmark`, parsed by `r1_recipe::benchmark::Benchmark`'s names.
#[derive(Debug, Clone, Copy)]
pub struct BenchArg(pub Benchmark);

impl std::str::FromStr for BenchArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(BenchArg)
    }
}

/// `--answer-kind`, parsed by `r1_spec::AnswerKind`'s names.
#[derive(Debug, Clone, Copy)]
pub struct KindArg(pub AnswerKind);

impl std::str::FromStr for KindArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(KindArg)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// DeepSeek-R1-Zero's <think>/<answer> template
    R1,
    /// The model's chat template (tokenizer_config.json or chat_template.jinja)
    Chat,
    /// The question as given
    Raw,
}

impl From<Template> for PromptTemplate {
    fn from(t: Template) -> Self {
        match t {
            Template::R1 => PromptTemplate::R1,
            Template::Chat => PromptTemplate::Chat,
            Template::Raw => PromptTemplate::Raw,
        }
    }
}

impl SamplingArgs {
    fn template(&self) -> Template {
        self.template.unwrap_or(if self.benchmark.is_some() { Template::Chat } else { Template::R1 })
    }

    fn gen_config(&self) -> GenConfig {
        GenConfig {
            k: self.k,
            temperature: self.temperature,
            top_p: self.top_p,
            max_new_tokens: self.max_new_tokens,
            seed: self.seed,
            max_batch: self.max_batch,
            template: self.template().into(),
            system: self.system.clone(),
            think_prefill: self.think,
            answer_sources: match self.benchmark {
                _ if !self.answer_sources.is_empty() => self.answer_sources.clone(),
                Some(BenchArg(b)) => b.answer_sources(),
                None => GenConfig::default().answer_sources,
            },
        }
    }

    fn items(&self) -> Result<Vec<TaskItem>> {
        if self.k == 0 {
            bail!("-k must be at least 1");
        }
        if self.limit == Some(0) {
            bail!("--limit must be at least 1");
        }
        if self.system.is_some() && self.template() != Template::Chat {
            bail!("--system needs the chat template; pass --template chat");
        }
        let path = &self.dataset;
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "json" | "ndjson") => DatasetFormat::Jsonl,
            Some("parquet") => DatasetFormat::Parquet,
            _ => bail!("{} is neither .jsonl nor .parquet; give the dataset one of those extensions", path.display()),
        };
        let rows = r1_coordinator::dataset::read_rows(path, format)?;
        let mut items = Vec::new();
        let mut bad = Vec::new();
        for (line, row) in rows {
            if self.limit.is_some_and(|n| items.len() >= n) {
                break;
            }
            let item = row.map_err(|p| ("row".to_string(), p)).and_then(|v| self.item(&v, line));
            match item {
                Ok(it) => items.push(it),
                Err((col, problem)) => bad.push(format!("row {line} field `{col}` {problem}")),
            }
        }
        if !bad.is_empty() {
            let n = bad.len();
            bad.truncate(5);
            bail!("{} has {n} bad rows: {}", path.display(), bad.join("; "));
        }
        Ok(items)
    }

    fn item(&self, row: &serde_json::Value, line: u64) -> Result<TaskItem, (String, String)> {
        if let Some(BenchArg(b)) = self.benchmark {
            let it = b.item(row, line, self.seed)?;
            return Ok(TaskItem { prompt: it.prompt, answer: it.answer });
        }
        let field = |col: &str, what: &str| -> Result<String, (String, String)> {
            match row.get(col) {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) if what == "answer" => Ok(n.to_string()),
                Some(serde_json::Value::String(_)) => Err((col.into(), "is empty".into())),
                Some(other) => Err((col.into(), format!("must be text, got {other}"))),
                None => Err((col.into(), format!("is missing; name the {what} column with --{what}-field"))),
            }
        };
        let prompt = field(&self.prompt_field, "prompt")?;
        let raw = field(&self.answer_field, "answer")?;
        let answer = self.answer_kind.0.gold(&raw).map_err(|e| (self.answer_field.clone(), e))?;
        Ok(TaskItem { prompt, answer })
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
        let a = &args.sampling;
        let mut v = serde_json::to_value(&report)?;
        let extra = serde_json::json!({
            "benchmark": a.benchmark.map(|b| b.0.name()),
            "model": a.model,
            "dataset": a.dataset,
            "template": PromptTemplate::from(a.template()).name(),
            "system": a.system,
            "think_prefill": a.think,
            "answer_kind": a.benchmark.is_none().then(|| a.answer_kind.0.name()),
            "answer_sources": a.gen_config().answer_sources,
            "temperature": a.temperature,
            "top_p": a.top_p,
            "max_new_tokens": a.max_new_tokens,
            "seed": a.seed,
            "seconds": secs,
        });
        for (key, value) in extra.as_object().expect("an object literal") {
            v[key] = value.clone();
        }
        println!("{v}");
    } else {
        let k = report.k;
        let pass_k: Vec<String> = report
            .pass_at_k
            .iter()
            .filter(|(kk, _)| **kk > 1)
            .map(|(kk, p)| format!("pass@{kk} {:.1}%", 100.0 * p))
            .collect();
        let name = args.sampling.benchmark.map_or(String::new(), |b| format!("{}: ", b.0.name()));
        println!(
            "{name}{} questions x {k} samples at temperature {}: pass@1 {:.1}%  {}  cons@{k} {:.1}%  format {:.1}%  answered {:.1}%  truncated {:.1}%  mean {:.1} tokens  ({secs:.1}s)",
            report.questions,
            args.sampling.temperature,
            100.0 * report.pass_at_1,
            pass_k.join("  "),
            100.0 * report.cons_at_k,
            100.0 * report.format_rate,
            100.0 * report.answer_rate,
            100.0 * report.truncated_rate,
            report.mean_completion_tokens,
        );
    }
    Ok(())
}
