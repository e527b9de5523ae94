//! `r1ctl sample`: rejection sampling. k samples per question from a checkpoint; the
//! verified-correct ones (in the R1 format unless `--allow-unformatted`) become an SFT
//! dataset, `{"prompt","completion","answer"}` per line, that `r1ctl sft` trains on.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use r1_recipe::eval::{accepted, summarize};

use crate::eval::{SamplingArgs, sample_scored};

#[derive(Args, Debug)]
pub struct SampleArgs {
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Where to write the accepted samples (JSONL)
    #[arg(long)]
    out: PathBuf,
    /// Keep at most this many distinct correct samples per question
    #[arg(long, default_value_t = 1)]
    per_question: usize,
    /// Keep correct samples even when they do not follow the R1 format
    #[arg(long)]
    allow_unformatted: bool,
    /// Print the summary as one JSON object
    #[arg(long)]
    json: bool,
}

pub fn run(args: SampleArgs) -> Result<()> {
    if args.per_question == 0 {
        bail!("--per-question must be at least 1");
    }
    let outcomes = sample_scored(&args.sampling)?;
    let records = accepted(&outcomes, args.per_question, !args.allow_unformatted);
    r1_recipe::data::write_jsonl(&args.out, &records)?;
    let report = summarize(&outcomes, args.sampling.k);
    let covered = outcomes.iter().filter(|o| records.iter().any(|r| r.prompt == o.prompt)).count();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "questions": outcomes.len(), "k": args.sampling.k, "accepted": records.len(),
                "questions_covered": covered, "pass_at_1": report.pass_at_1, "format_rate": report.format_rate,
                "out": args.out,
            })
        );
    } else {
        println!(
            "kept {} samples for {covered} of {} questions (pass@1 {:.1}%, format {:.1}%) -> {}",
            records.len(),
            outcomes.len(),
            100.0 * report.pass_at_1,
            100.0 * report.format_rate,
            args.out.display()
        );
    }
    Ok(())
}
