//! `r1ctl`: the r1 command line.
//!
//! Each subcommand lives in its own module and is a thin edge over a library crate:
//! `logprobs`, `generate` and `bench` drive `r1-model`/`r1-learner`, `reward` drives
//! `r1-reward`. No business logic lives here.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod reward;

/// Train language models to reason with reinforcement learning (GRPO, SFT, distillation).
#[derive(Parser, Debug)]
#[command(name = "r1ctl", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Score completions offline with the reward verifiers (math, format, language, code)
    #[command(subcommand)]
    Reward(reward::RewardCommand),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("R1_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Reward(cmd) => reward::run(cmd),
    }
}
