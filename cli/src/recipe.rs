//! `r1ctl recipe prepare` (tasks, tokenizer and base model of the laptop recipe, see
//! `r1_recipe::prepare`) and `r1ctl sft` (supervised fine-tuning: cold start, distillation).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::backend::Autodiff;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use r1_model::{CausalLm, PromptTemplate, TextTokenizer};
use r1_recipe::data::{SftRecord, read_jsonl};
use r1_recipe::{Event, ModelShape, RecipeConfig, SftConfig, StepLog};

use crate::backend::{DeviceKind, with_backend};

#[derive(Subcommand, Debug)]
pub enum RecipeCommand {
    /// Make (or reuse, when the config is unchanged) the tasks, cold-start data, tokenizer and
    /// pretrained base model of the laptop recipe
    Prepare(PrepareArgs),
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Folder to write (stages already there with the same inputs are reused)
    #[arg(long, default_value = "./r1-recipe")]
    out: PathBuf,
    /// Recipe config (TOML; every key optional, unknown keys refused); default: the laptop preset
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides `seed` of the config
    #[arg(long)]
    seed: Option<u64>,
    /// Print what was made as one JSON object
    #[arg(long)]
    json: bool,
}

fn steps_bar(steps: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {bar:30} {pos}/{len} steps {msg}")
            .expect("static template"),
    );
    bar
}

fn show_step(bar: &ProgressBar, s: &StepLog) {
    bar.set_position(s.step);
    bar.set_message(format!("loss {:.3} lr {:.2e} ({:.0} tok/s)", s.loss, s.lr, s.tokens as f64 / s.seconds.max(1e-9)));
    if s.step.is_multiple_of(50) || s.step == s.steps {
        let line = format!(
            "step {}/{} loss {:.4} lr {:.2e} grad-norm {:.3} {:.0}s",
            s.step, s.steps, s.loss, s.lr, s.grad_norm, s.seconds
        );
        // Logged lines also reach a non-terminal stderr, where the bar is hidden.
        if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
    }
}

pub fn run(cmd: RecipeCommand) -> Result<()> {
    match cmd {
        RecipeCommand::Prepare(a) => prepare(a),
    }
}

/// The laptop preset with `file`'s keys laid over it: a key the file leaves out keeps the
/// preset's value (`[pretrain] steps = 100` keeps the preset's learning rate).
pub fn load_config(file: Option<&std::path::Path>) -> Result<RecipeConfig> {
    let mut f = figment::Figment::from(figment::providers::Serialized::defaults(RecipeConfig::default()));
    if let Some(path) = file {
        if !path.is_file() {
            anyhow::bail!("recipe config {} does not exist", path.display());
        }
        f = f.merge(<figment::providers::Toml as figment::providers::Format>::file_exact(path));
    }
    let cfg: RecipeConfig = f.extract().map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid recipe config: {e}",
            file.map_or("the preset".into(), |p| p.display().to_string())
        )
    })?;
    cfg.validate()?;
    Ok(cfg)
}

fn prepare(args: PrepareArgs) -> Result<()> {
    let mut cfg = load_config(args.config.as_deref())?;
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    let bar = steps_bar(cfg.pretrain.steps);
    bar.set_draw_target(ProgressDrawTarget::hidden());
    let prepared = r1_recipe::prepare_with(&args.out, &cfg, &mut |e| match e {
        Event::Stage { name, reused } => {
            if reused {
                eprintln!("{name}: up to date, reused");
            } else {
                eprintln!("{name}: making");
                if name == "base" {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                }
            }
        }
        Event::Pretrain(s) => show_step(&bar, s),
    })?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string(&prepared)?);
    } else {
        let r = &prepared.pretrain_report;
        println!("prepared {} in {:.1}s", prepared.dir.display(), prepared.seconds);
        println!("  train     {}", prepared.train_jsonl.display());
        println!("  eval      {}", prepared.eval_jsonl.display());
        println!("  coldstart {}", prepared.coldstart_jsonl.display());
        println!(
            "  base      {} (pretrained {} steps in {:.0}s, loss {:.3} -> {:.3})",
            prepared.base_model_dir.display(),
            r.steps,
            r.seconds,
            r.first_loss,
            r.final_loss
        );
        if !prepared.reused.is_empty() {
            println!("  reused    {}", prepared.reused.join(", "));
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct SftArgs {
    /// Starting checkpoint; its tokenizer is used, and its weights unless --fresh
    #[arg(long)]
    model: PathBuf,
    /// SFT data: JSONL `{"prompt","completion"}` (what `r1ctl sample` writes)
    #[arg(long)]
    dataset: PathBuf,
    /// Where to save the trained model (a Hugging Face folder)
    #[arg(long)]
    out: PathBuf,
    /// How prompts are wrapped: the R1 template, the model's chat template or as is
    #[arg(long, value_enum, default_value_t = crate::eval::Template::R1)]
    template: crate::eval::Template,
    /// Start from random weights (a student), shaped by the options below
    #[arg(long)]
    fresh: bool,
    /// Student hidden size (with --fresh; default: the model's)
    #[arg(long, requires = "fresh")]
    hidden_size: Option<usize>,
    /// Student layers (with --fresh)
    #[arg(long, requires = "fresh")]
    num_layers: Option<usize>,
    /// Student MLP size (with --fresh)
    #[arg(long, requires = "fresh")]
    intermediate_size: Option<usize>,
    /// Student attention heads (with --fresh)
    #[arg(long, requires = "fresh")]
    num_heads: Option<usize>,
    /// Student key/value heads (with --fresh)
    #[arg(long, requires = "fresh")]
    num_kv_heads: Option<usize>,
    #[arg(long, default_value_t = 200)]
    steps: u64,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Peak learning rate (warmup, then cosine to a tenth)
    #[arg(long, default_value_t = 5e-4)]
    lr: f64,
    #[arg(long, default_value_t = 10)]
    warmup_steps: u64,
    /// Also train on prompt tokens (pretraining-style)
    #[arg(long)]
    loss_on_prompt: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value_t)]
    device: DeviceKind,
    /// Print the training report as one JSON object
    #[arg(long)]
    json: bool,
}

pub fn sft(args: SftArgs) -> Result<()> {
    with_backend!(args.device, |B, device| sft_on::<Autodiff<B>>(&args, &device))
}

fn sft_on<B: burn::tensor::backend::AutodiffBackend>(args: &SftArgs, device: &B::Device) -> Result<()> {
    let tokenizer = TextTokenizer::from_dir(&args.model)?;
    let base =
        r1_model::load::<B>(&args.model, device).with_context(|| format!("cannot load {}", args.model.display()))?;
    let model = if args.fresh {
        let own = ModelShape::of(base.config());
        let shape = ModelShape {
            hidden_size: args.hidden_size.unwrap_or(own.hidden_size),
            num_layers: args.num_layers.unwrap_or(own.num_layers),
            intermediate_size: args.intermediate_size.unwrap_or(own.intermediate_size),
            num_heads: args.num_heads.unwrap_or(own.num_heads),
            num_kv_heads: args.num_kv_heads.unwrap_or(own.num_kv_heads),
            max_position_embeddings: own.max_position_embeddings,
        };
        let eos = base.config().eos_token_ids.first().copied().context("the model has no eos_token_id")?;
        let cfg = shape.config(base.config().vocab_size, eos)?;
        B::seed(device, args.seed);
        CausalLm::<B>::init(&cfg, device)
    } else {
        base
    };
    let eos = tokenizer
        .eos_token_id()
        .or_else(|| model.config().eos_token_ids.first().copied())
        .context("neither tokenizer_config.json nor config.json names an end-of-sequence token")?;
    let records: Vec<SftRecord> = read_jsonl(&args.dataset)?;
    let template = PromptTemplate::from(args.template);
    let examples =
        r1_recipe::train::encode(&records, &tokenizer, template, eos, model.config().max_position_embeddings)
            .with_context(|| format!("in {}", args.dataset.display()))?;
    if args.out == args.model {
        bail!("--out must differ from --model; the starting checkpoint is kept");
    }
    let cfg = SftConfig {
        steps: args.steps,
        batch_size: args.batch_size,
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        loss_on_prompt: args.loss_on_prompt,
        seed: args.seed,
        ..SftConfig::default()
    };
    let bar = steps_bar(cfg.steps);
    let (model, report) = r1_recipe::train::train(model, &examples, &cfg, device, &mut |s| show_step(&bar, s))?;
    bar.finish_and_clear();
    r1_recipe::model::save_hf(&model, &args.model, &args.out)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "trained {} steps on {} examples in {:.0}s: loss {:.3} -> {:.3}; saved {}",
            report.steps,
            report.examples,
            report.seconds,
            report.first_loss,
            report.final_loss,
            args.out.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_overrides_only_the_keys_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let preset = RecipeConfig::default();
        type Case<'a> = (&'a str, Result<(u64, f64, usize), &'a str>);
        let cases: &[Case] = &[
            ("", Ok((preset.pretrain.steps, preset.pretrain.lr, preset.model.num_layers))),
            ("[pretrain]\nsteps = 7\n", Ok((7, preset.pretrain.lr, preset.model.num_layers))),
            ("[model]\nnum_layers = 3\n", Ok((preset.pretrain.steps, preset.pretrain.lr, 3))),
            ("[pretrain]\nstep = 7\n", Err("unknown field")),
            ("[tasks]\nfamilies = []\n", Err("tasks.families")),
        ];
        for (text, want) in cases {
            let f = dir.path().join("r.toml");
            std::fs::write(&f, text).unwrap();
            match (load_config(Some(&f)), want) {
                (Ok(c), Ok(w)) => assert_eq!((c.pretrain.steps, c.pretrain.lr, c.model.num_layers), *w, "{text}"),
                (Err(e), Err(msg)) => assert!(format!("{e:#}").contains(msg), "{text}: {e:#}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        assert!(load_config(Some(&dir.path().join("missing.toml"))).is_err());
    }
}
