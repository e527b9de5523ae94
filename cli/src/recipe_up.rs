//! `r1ctl up` without `--config`: DeepSeek-R1's recipe at laptop scale, every training run
//! going through the real coordinator, actors, reward workers and learner.
//!
//! 1. **Prepare** (`r1_recipe::prepare`): synthetic arithmetic tasks with train/eval splits,
//!    a BPE tokenizer and a small Qwen2 base model pretrained by r1 — reused when unchanged.
//! 2. **R1-Zero**: GRPO from the base model with the R1 template and accuracy + format
//!    rewards, evaluated on the eval split at step 0 and every `eval_every` steps.
//! 3. **R1**: cold-start SFT on a few hundred chain-of-thought examples, then the same GRPO.
//!    (This run and the student's RL are not evaluated while they train unless
//!    `[rl] eval_all_runs` is set: their start and end models are in the final table anyway,
//!    and each evaluation samples the whole eval split G times.)
//! 4. **Distillation**: rejection sampling from the R1 model (k samples per train prompt,
//!    the verified-correct ones kept), SFT of a smaller student on them, against the same
//!    student trained with GRPO alone.
//! 5. **Report**: every final model evaluated the same way (pass@1 over k samples, cons@k,
//!    format rate) in `report/report.md`, with the RL curves in `report/curves.png`.
//!
//! Runs are named after their stage; re-running `up` resumes an unfinished run and skips a
//! finished one, so an interrupted recipe carries on where it stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use r1_recipe::stages::{DistillStage, RlStage, SftStage};
use r1_recipe::{EvalReport, GenConfig, ModelShape, RecipeConfig, TaskItem};
use serde::{Deserialize, Serialize};

use crate::report::{self, Curves};
use crate::up::{Finished, Local};

/// The recipe's knobs: `r1ctl up --recipe FILE` (TOML) overrides any of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpRecipe {
    /// Data, tokenizer and base model (see `r1_recipe::RecipeConfig`).
    pub prepare: RecipeConfig,
    pub rl: RlStage,
    pub cold_start: SftStage,
    pub distill: DistillStage,
    /// How every final model is evaluated for the report.
    pub eval: GenConfig,
}

impl Default for UpRecipe {
    fn default() -> Self {
        Self {
            prepare: RecipeConfig::default(),
            rl: RlStage::default(),
            cold_start: SftStage::default(),
            distill: DistillStage::default(),
            eval: GenConfig { k: 4, max_new_tokens: 64, ..GenConfig::default() },
        }
    }
}

impl UpRecipe {
    /// A few minutes end to end: checks that every stage runs, not that it learns.
    pub fn quick() -> Self {
        let mut r = Self::default();
        r.prepare = RecipeConfig::tiny();
        r.rl = RlStage {
            steps: 3,
            group_size: 4,
            prompts_per_step: 2,
            eval_every: 3,
            max_new_tokens: 24,
            micro_batch: 8,
            ..r.rl
        };
        r.cold_start = SftStage { steps: 2, batch_size: 4, ..r.cold_start };
        r.distill = DistillStage {
            prompts: 8,
            k: 2,
            student: ModelShape {
                hidden_size: 16,
                intermediate_size: 32,
                num_layers: 1,
                num_heads: 1,
                num_kv_heads: 1,
                ..r.prepare.model.clone()
            },
            pretrain_steps: r.prepare.pretrain.steps,
            sft: SftStage { steps: 2, batch_size: 4, ..r.distill.sft },
            ..r.distill
        };
        r.eval = GenConfig { k: 2, max_new_tokens: 24, ..r.eval };
        r
    }

    fn load(file: Option<&Path>, quick: bool) -> Result<Self> {
        let base = if quick { Self::quick() } else { Self::default() };
        let mut f = Figment::from(Serialized::defaults(base));
        if let Some(file) = file {
            f = f.merge(Toml::file_exact(file));
        }
        let r: UpRecipe = f.extract().map_err(|e| anyhow::anyhow!("recipe config: {e}; fix or remove that key"))?;
        r.prepare.validate()?;
        if r.rl.steps == 0 || r.rl.group_size < 2 || r.rl.prompts_per_step == 0 {
            bail!("recipe config [rl]: steps and prompts_per_step must be at least 1 and group_size at least 2");
        }
        // Checked now, not after the teacher's stages have run for minutes.
        if r.distill.enabled && r.distill.pretrain_steps == 0 {
            bail!(
                "recipe config [distill]: pretrain_steps is 0; the student's base needs at least 1 step (or set enabled = false)"
            );
        }
        Ok(r)
    }
}

/// One row of the final table.
struct Row {
    label: &'static str,
    model: PathBuf,
    report: EvalReport,
}

pub fn run(local: &Local, recipe_file: Option<&Path>, quick: bool) -> Result<()> {
    let started = Instant::now();
    let recipe = UpRecipe::load(recipe_file, quick)?;
    let root = local.data_dir().join(if quick { "recipe-quick" } else { "recipe" });
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("up-recipe.json"), serde_json::to_string_pretty(&recipe)? + "\n")?;

    eprintln!("== 1/5 prepare: tasks, tokenizer and base model in {}", root.display());
    let prepared = prepare(&root.join("teacher"), &recipe.prepare)?;
    let rl = &recipe.rl;
    let (train, eval) = (&prepared.train_jsonl, &prepared.eval_jsonl);

    eprintln!("== 2/5 R1-Zero: GRPO from the base model");
    let zero = finished(local.run(&rl.run_spec("r1-zero", &prepared.base_model_dir, train, eval, true))?)?;

    eprintln!("== 3/5 R1: cold-start SFT, then GRPO");
    let cold = finished(local.run(&recipe.cold_start.run_spec(
        "cold-start",
        &prepared.base_model_dir,
        &prepared.coldstart_jsonl,
    ))?)?;
    let r1_rl = rl.after_cold_start();
    let r1 = finished(local.run(&r1_rl.run_spec("r1", &cold.final_checkpoint(), train, eval, rl.eval_all_runs))?)?;

    let mut rows = Vec::new();
    let mut student_runs = Vec::new();
    let mut skipped: Vec<&str> = Vec::new();
    if recipe.distill.enabled {
        eprintln!(
            "== 4/5 distillation: rejection sampling from R1, SFT of a smaller student, vs the student with RL alone"
        );
        let d = &recipe.distill;
        let student_cfg = RecipeConfig {
            model: d.student.clone(),
            pretrain: r1_recipe::SftConfig { steps: d.pretrain_steps, ..recipe.prepare.pretrain.clone() },
            ..recipe.prepare.clone()
        };
        let student = prepare(&root.join("student"), &student_cfg)?;
        let traces = root.join("traces.jsonl");
        let kept = rejection_sample(&r1.final_checkpoint(), train, d, &recipe.eval, &traces)?;
        eprintln!("   kept {kept} verified-correct traces in {}", traces.display());
        student_runs.push(("student base", student.base_model_dir.clone()));
        if kept == 0 {
            // Nothing to distil: said loudly here and in the report, not papered over.
            eprintln!(
                "   WARNING: the R1 model solved none of the {} sampled prompts; skipping the distillation SFT",
                d.prompts
            );
            skipped.push("student + distillation: skipped, rejection sampling kept no verified-correct trace");
        } else {
            let distilled =
                finished(local.run(&d.sft.run_spec("student-distill", &student.base_model_dir, &traces))?)?;
            student_runs.push(("student + distillation", distilled.final_checkpoint()));
        }
        let student_rl =
            finished(local.run(&rl.run_spec("student-rl", &student.base_model_dir, train, eval, rl.eval_all_runs))?)?;
        student_runs.push(("student + RL", student_rl.final_checkpoint()));
    }

    eprintln!("== 5/5 report: every model evaluated on the same eval split");
    let eval_items = r1_recipe::data::read_tasks(eval, "prompt", "answer")?;
    let models: Vec<(&'static str, PathBuf)> = [
        ("base", prepared.base_model_dir.clone()),
        ("R1-Zero (GRPO)", zero.final_checkpoint()),
        ("cold start (SFT)", cold.final_checkpoint()),
        ("R1 (cold start + GRPO)", r1.final_checkpoint()),
    ]
    .into_iter()
    .chain(student_runs)
    .collect();
    for (label, model) in models {
        let report = evaluate(&model, &eval_items, &recipe.eval)?;
        eprintln!(
            "   {label:<24} pass@1 {:.1}%  cons@{} {:.1}%  format {:.1}%",
            report.pass_at_1 * 100.0,
            report.k,
            report.cons_at_k * 100.0,
            report.format_rate * 100.0
        );
        rows.push(Row { label, model, report });
    }
    let out = root.join("report");
    std::fs::create_dir_all(&out)?;
    let curves = vec![Curves::read("R1-Zero", &zero.metrics)?, Curves::read("R1 (after cold start)", &r1.metrics)?];
    report::plot(&curves, &out.join("curves.png"))?;
    let mut text = render(&rows, &curves, &recipe, started.elapsed().as_secs_f64());
    for s in skipped {
        text.push_str(&format!("\n**{s}.**\n"));
    }
    std::fs::write(out.join("report.md"), &text)?;
    println!("{text}");
    println!("report: {}\ncurves: {}", out.join("report.md").display(), out.join("curves.png").display());
    Ok(())
}

fn finished(f: Finished) -> Result<Finished> {
    if !f.completed() {
        bail!("{}\nthe run did not complete; run `r1ctl up` again to resume it", f.summary);
    }
    eprintln!("   {}", f.summary.lines().next().unwrap_or_default());
    Ok(f)
}

fn prepare(dir: &Path, cfg: &RecipeConfig) -> Result<r1_recipe::Prepared> {
    let bar = crate::progress::bar(cfg.pretrain.steps, "pretraining steps");
    let prepared = r1_recipe::prepare_with(dir, cfg, &mut |e| match e {
        r1_recipe::Event::Stage { name, reused } => {
            // A hidden bar (stderr not a terminal) prints nothing itself.
            bar.suspend(|| eprintln!("   {name}: {}", if reused { "up to date, reused" } else { "building" }));
        }
        r1_recipe::Event::Pretrain(log) => bar.set_position(log.step),
    })?;
    bar.finish_and_clear();
    Ok(prepared)
}

fn load_model(dir: &Path) -> Result<(r1_model::CausalLm<r1_model::CpuBackend>, r1_model::TextTokenizer)> {
    let tok = r1_model::TextTokenizer::from_dir(dir).with_context(|| format!("tokenizer of {}", dir.display()))?;
    let model = r1_model::load::<r1_model::CpuBackend>(dir, &Default::default())
        .with_context(|| format!("model {}", dir.display()))?;
    Ok((model, tok))
}

fn evaluate(model_dir: &Path, items: &[TaskItem], cfg: &GenConfig) -> Result<EvalReport> {
    let (model, tok) = load_model(model_dir)?;
    let outcomes = r1_recipe::eval::sample_and_score(&model, &tok, items, cfg, &Default::default(), &mut |_| {})?;
    Ok(r1_recipe::eval::summarize(&outcomes, cfg.k))
}

/// Samples the teacher on the first `d.prompts` train prompts and writes the verified-correct,
/// well-formatted samples (one per prompt at most) as `{prompt, completion}` rows.
fn rejection_sample(teacher: &Path, train: &Path, d: &DistillStage, eval: &GenConfig, out: &Path) -> Result<usize> {
    let (model, tok) = load_model(teacher)?;
    let mut items = r1_recipe::data::read_tasks(train, "prompt", "answer")?;
    items.truncate(d.prompts);
    let cfg = GenConfig { k: d.k, ..eval.clone() };
    let outcomes = r1_recipe::eval::sample_and_score(&model, &tok, &items, &cfg, &Default::default(), &mut |_| {})?;
    let kept = r1_recipe::eval::accepted(&outcomes, 1, true);
    r1_recipe::data::write_jsonl(out, &kept)?;
    Ok(kept.len())
}

fn render(rows: &[Row], curves: &[Curves], recipe: &UpRecipe, seconds: f64) -> String {
    let mut s = String::from("# r1ctl up: the R1 recipe at laptop scale\n\n");
    s.push_str(&format!(
        "Every model below is evaluated the same way: {} questions of the held-out eval split, k = {} samples each \
         at temperature {}, the R1 template. pass@1 is averaged over the k samples; cons@{} is the majority vote.\n\n",
        rows.first().map_or(0, |r| r.report.questions),
        recipe.eval.k,
        recipe.eval.temperature,
        recipe.eval.k
    ));
    s.push_str(&format!(
        "| model | pass@1 | cons@{} | format rate | mean length | folder |\n|---|---:|---:|---:|---:|---|\n",
        recipe.eval.k
    ));
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.1}% | {:.1}% | {:.1}% | {:.0} | `{}` |\n",
            r.label,
            r.report.pass_at_1 * 100.0,
            r.report.cons_at_k * 100.0,
            r.report.format_rate * 100.0,
            r.report.mean_completion_tokens,
            r.model.display()
        ));
    }
    s.push_str("\n## RL curves (from each run's metrics.jsonl)\n\n");
    s.push_str(&report::table(curves));
    s.push_str(&format!("\nWall time: {:.1} minutes.\n", seconds / 60.0));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_config_layers_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        type Case<'a> = (&'a str, Result<(u64, u32), &'a str>);
        let cases: &[Case] = &[
            ("", Ok((30, 8))),
            ("[rl]\nsteps = 7\ngroup_size = 4\n", Ok((7, 4))),
            ("[rl]\nstep = 7\n", Err("unknown field: found `step`")),
            ("[rl]\ngroup_size = 1\n", Err("group_size at least 2")),
            ("[distill]\npretrain_steps = 0\n", Err("pretrain_steps is 0")),
            ("[distill]\npretrain_steps = 1\n", Ok((30, 8))),
        ];
        for (text, want) in cases {
            let f = dir.path().join("r.toml");
            std::fs::write(&f, text).unwrap();
            match (UpRecipe::load(Some(&f), false), want) {
                (Ok(r), Ok((steps, g))) => assert_eq!((r.rl.steps, r.rl.group_size), (*steps, *g)),
                (Err(e), Err(msg)) => assert!(format!("{e:#}").contains(msg), "{text}: {e:#}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        // The specs it makes are valid run specs.
        let r = UpRecipe::default();
        let p = Path::new("/x.jsonl");
        for (evaluate, every) in [(true, r.rl.eval_every), (false, 0)] {
            let spec = r.rl.run_spec("a", p, p, p, evaluate);
            spec.validate().unwrap();
            assert_eq!(spec.schedule.eval_every, every, "evaluate = {evaluate}");
        }
        r.cold_start.run_spec("b", p, p).validate().unwrap();
    }
}
