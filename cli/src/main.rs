//! `r1ctl`: the r1 command line.
//!
//! Each subcommand lives in its own module and is a thin edge over a library crate: `up`,
//! `submit-run`, `runs`, `status`, `cancel` and `logs` drive a run through the coordinator
//! (`r1-coordinator`, `r1-spec`); `serve` runs the coordinator, an actor or a learner;
//! `reward` drives `r1-reward`; `logprobs`, `generate`, `convert`, `eval` and `bench` drive
//! `r1-model`/`r1-learner`/`r1-recipe`. No business logic lives here.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod backend;
mod bench;
mod check;
mod convert;
mod eval;
mod generate;
mod jsonl;
mod logprobs;
mod pool;
mod progress;
mod recipe;
mod recipe_up;
mod report;
mod reward;
mod runs;
mod sample;
mod serve;
mod shapes;
mod train_bench;
mod up;
mod weights_bench;

/// Train language models to reason with reinforcement learning (GRPO, SFT, distillation).
#[derive(Parser, Debug)]
#[command(name = "r1ctl", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run coordinator, learner, actors and reward workers in one process, one run to its end
    Up(up::UpArgs),
    /// Sample completions (with per-token log-probs) from a model
    Generate(generate::GenerateArgs),
    /// Per-token log-probabilities of sequences under a model
    Logprobs(logprobs::LogprobsArgs),
    /// Rewrite a checkpoint in another dtype or shard size
    Convert(convert::ConvertArgs),
    /// Measure generation and training throughput
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Score completions offline with the reward verifiers (math, format, language, code)
    #[command(subcommand)]
    Reward(reward::RewardCommand),
    /// Submit a run spec to the coordinator
    SubmitRun(runs::SubmitArgs),
    /// Show one run
    Status(runs::RunArgs),
    /// List runs
    Runs(runs::Remote),
    /// Cancel a run
    Cancel(runs::CancelArgs),
    /// List the workers the coordinator knows (role, name, run, last call) and learner fleets' run claims
    Workers(runs::Remote),
    /// Show a run's status, or follow its changes with --follow
    Logs(runs::LogsArgs),
    /// pass@1 (averaged over k samples), cons@k and format rate of a model on a task file
    Eval(eval::EvalArgs),
    /// Rejection sampling: keep a model's verified-correct samples as an SFT dataset
    Sample(sample::SampleArgs),
    /// Supervised fine-tuning on prompt/completion pairs (cold start, distillation)
    Sft(recipe::SftArgs),
    /// The laptop recipe's tasks, tokenizer and base model
    #[command(subcommand)]
    Recipe(recipe::RecipeCommand),
    /// Run a service on its own (for a cluster)
    #[command(subcommand)]
    Serve(runs::ServeCommand),
}

fn main() -> Result<()> {
    // Logs to stderr by R1_LOG; spans to OTEL_EXPORTER_OTLP_ENDPOINT when set. Kept to the end.
    let _telemetry = r1_telemetry::init(&r1_telemetry::TelemetryConfig::from_env("r1ctl"))?;
    match Cli::parse().command {
        Command::Up(a) => up::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Logprobs(a) => logprobs::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Bench(c) => bench::run(c),
        Command::Reward(c) => reward::run(c),
        Command::SubmitRun(a) => runs::submit(a),
        Command::Status(a) => runs::status(a),
        Command::Runs(r) => runs::list(r),
        Command::Cancel(a) => runs::cancel(a),
        Command::Workers(r) => runs::workers(r),
        Command::Logs(a) => runs::logs(a),
        Command::Serve(c) => runs::serve(c),
        Command::Eval(a) => eval::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Sft(a) => recipe::sft(a),
        Command::Recipe(c) => recipe::run(c),
    }
}
