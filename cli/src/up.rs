//! `r1ctl up`: the whole system in one process. The training loop is not built yet; this
//! command says so rather than pretending.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Run configuration file (TOML)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where SQLite and run folders live
    #[arg(long, default_value = "./r1-data")]
    data_dir: PathBuf,
}

pub fn run(_args: UpArgs) -> Result<()> {
    bail!(
        "`r1ctl up` (coordinator + actor + reward pool + learner in one process) is not built yet: \
         it lands with the training-system issue. Today r1ctl can generate, score log-probs, \
         score rewards and benchmark: see `r1ctl --help`"
    )
}
