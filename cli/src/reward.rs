//! `r1ctl reward ...`: offline scoring through the reward-worker code.

use anyhow::{Result, bail};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum RewardCommand {
    /// Score a JSONL file of completions
    Score,
}

pub fn run(cmd: RewardCommand) -> Result<()> {
    match cmd {
        RewardCommand::Score => bail!("`r1ctl reward score` is not built yet"),
    }
}
