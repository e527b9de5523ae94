//! `r1ctl convert`: rewrite a checkpoint in another dtype or shard size, through r1's own
//! loader and writer (also how r1's checkpoints are checked against transformers).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use r1_model::weights::{SaveDtype, SaveOptions};

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Hugging Face model folder to read
    #[arg(long)]
    model: PathBuf,
    /// Folder to write (must not exist or be empty)
    #[arg(long)]
    out: PathBuf,
    /// Element type on disk: f32, bf16 or f16
    #[arg(long, default_value = "bf16")]
    dtype: SaveDtype,
    /// Largest shard in MiB (default: one file)
    #[arg(long)]
    shard_mib: Option<usize>,
}

pub fn run(a: ConvertArgs) -> Result<()> {
    if a.out.exists() && std::fs::read_dir(&a.out)?.next().is_some() {
        bail!("{} is not empty; choose a new folder", a.out.display());
    }
    let device = Default::default();
    let model = r1_model::load::<r1_model::CpuBackend>(&a.model, &device).context("cannot load the model")?;
    let opts = SaveOptions { dtype: a.dtype, max_shard_bytes: a.shard_mib.map(|m| m << 20) };
    r1_model::weights::save(&model, &a.out, &opts)?;
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"] {
        let src = a.model.join(f);
        if src.exists() {
            std::fs::copy(&src, a.out.join(f)).with_context(|| format!("cannot copy {}", src.display()))?;
        }
    }
    eprintln!("wrote {} ({})", a.out.display(), a.dtype.hf_name());
    Ok(())
}
