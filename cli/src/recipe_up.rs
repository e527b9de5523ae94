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
//!    format rate), overall and by task family and level, in `report/report.md`, with the RL
//!    curves in `report/curves.png` (the last panel: the response length on the hardest
//!    `long_chain` level through training).
//!
//! Two processes share the work, one core each (a training uses about one core, and two
//! trainings in one process wait on each other): this one runs the teacher's pretraining,
//! the cold start, R1, the rejection sampling and the distillation; a side process it starts
//! (`r1ctl up --side-of ROOT`, its own coordinator and runs in `ROOT/side/`, its log in
//! `ROOT/side/up.log`) pretrains the student's base, trains the student with RL alone and,
//! once the teacher's base is written, runs R1-Zero. They meet through small JSON files in
//! `ROOT`: `teacher-ready.json`, `student-ready.json` and the side's results in `side.json`.
//!
//! Runs are named after their stage; re-running `up` resumes an unfinished run and skips a
//! finished one (in both processes), so an interrupted recipe carries on where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use r1_learner::collective::tcp::{RingConfig, TcpRing};
use r1_recipe::stages::{DistillStage, RlStage, SftStage};
use r1_recipe::tasks::Family;
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
        let steps = 3;
        let mut r = Self::default();
        r.prepare = RecipeConfig::tiny();
        r.rl = RlStage {
            steps,
            group_size: 4,
            prompts_per_step: 2,
            eval_every: 3,
            max_new_tokens: 24,
            micro_batch: 8,
            // Set, not `None`: `load` round-trips the recipe through figment, where an unset
            // option takes the full recipe's default.
            steps_after_cold_start: Some(steps),
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
    /// The same evaluation split by `(family, difficulty)`.
    cells: BTreeMap<(Family, u8), EvalReport>,
}

pub fn run(local: &Local, recipe_file: Option<&Path>, quick: bool) -> Result<()> {
    let started = Instant::now();
    let recipe = UpRecipe::load(recipe_file, quick)?;
    let root = local.data_dir().join(if quick { "recipe-quick" } else { "recipe" });
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("up-recipe.json"), serde_json::to_string_pretty(&recipe)? + "\n")?;
    // R1-Zero and the student's stages need nothing of R1's: they run in a second process
    // beside this one, on the other core (one training uses about one core, and two in one
    // process wait on each other: docs/reproduction.md).
    let mut side = SideLane::start(&root, recipe_file, quick)?;
    let side_log = side.log.clone();

    eprintln!("== 1/5 prepare: tasks, tokenizer and base model in {}", root.display());
    // The teacher's pretraining, the longest stage, runs on both processes: this one is
    // rank 0 and saves the model, the side process rank 1.
    let prepared = prepare_on(&root.join("teacher"), &recipe.prepare, &mut || {
        let master = crate::up::free_addr().map_err(|e| r1_recipe::RecipeError::Input(e.to_string()))?;
        write_json(&root.join(PRETRAIN_PEER), &PeerInvite { master: master.clone() })
            .map_err(|e| r1_recipe::RecipeError::Input(format!("{e:#}")))?;
        eprintln!("   pretraining data-parallel: this process and the side process, one rank each");
        let ring = TcpRing::join(&peer_ring(0, master)).map_err(|e| {
            r1_recipe::RecipeError::Input(format!(
                "the side process did not join the pretraining ({e}); see {}",
                side_log.display()
            ))
        })?;
        Ok(Box::new(ring))
    })?;
    let (train, eval) = (&prepared.train_jsonl, &prepared.eval_jsonl);
    write_json(
        &root.join(TEACHER_READY),
        &TeacherReady { base: prepared.base_model_dir.clone(), train: train.clone(), eval: eval.clone() },
    )?;
    eprintln!("== 2/5 R1-Zero: GRPO from the base model, in the side process (log: {})", side.log.display());

    eprintln!("== 3/5 R1: cold-start SFT, then GRPO");
    let cold = finished(local.run(&recipe.cold_start.run_spec(
        "cold-start",
        &prepared.base_model_dir,
        &prepared.coldstart_jsonl,
    ))?)?;
    let rl = &recipe.rl;
    let r1_rl = rl.after_cold_start();
    let r1 = finished(local.run(&r1_rl.run_spec("r1", &cold.final_checkpoint(), train, eval, rl.eval_all_runs))?)?;

    let mut student_runs = Vec::new();
    let mut skipped: Vec<&str> = Vec::new();
    if recipe.distill.enabled {
        eprintln!(
            "== 4/5 distillation: rejection sampling from R1, SFT of a smaller student (its base and its RL-only \
             twin come from the side process)"
        );
        let d = &recipe.distill;
        let traces = root.join("traces.jsonl");
        let kept = rejection_sample(&r1.final_checkpoint(), train, d, &recipe.eval, &traces)?;
        eprintln!("   kept {kept} verified-correct traces in {}", traces.display());
        let student: StudentReady = side.wait_for(STUDENT_READY, &local.interrupted)?;
        student_runs.push(("student base", student.base.clone()));
        if kept == 0 {
            // Nothing to distil: said loudly here and in the report, not papered over.
            eprintln!(
                "   WARNING: the R1 model solved none of the {} sampled prompts; skipping the distillation SFT",
                d.prompts
            );
            skipped.push("student + distillation: skipped, rejection sampling kept no verified-correct trace");
        } else {
            let distilled = finished(local.run(&d.sft.run_spec("student-distill", &student.base, &traces))?)?;
            student_runs.push(("student + distillation", distilled.final_checkpoint()));
        }
    }
    eprintln!("   waiting for the side process (log: {})", side.log.display());
    let side_result: SideResult = side.finish(&local.interrupted)?;
    if let Some(s) = &side_result.student_rl {
        student_runs.push(("student + RL", s.checkpoint.clone()));
    }

    eprintln!("== 5/5 report: every model evaluated on the same eval split");
    let eval_rows: Vec<r1_recipe::data::TaskRecord> = r1_recipe::data::read_jsonl(eval)?;
    let eval_items = r1_recipe::data::read_tasks(eval, "prompt", "answer")?;
    let models: Vec<(&'static str, PathBuf)> = [
        ("base", prepared.base_model_dir.clone()),
        ("R1-Zero (GRPO)", side_result.zero.checkpoint.clone()),
        ("cold start (SFT)", cold.final_checkpoint()),
        ("R1 (cold start + GRPO)", r1.final_checkpoint()),
    ]
    .into_iter()
    .chain(student_runs)
    .collect();
    let mut rows = Vec::new();
    for (label, model) in models {
        let outcomes = evaluate(&model, &eval_items, &recipe.eval)?;
        let report = r1_recipe::eval::summarize(&outcomes, recipe.eval.k);
        eprintln!(
            "   {label:<24} pass@1 {:.1}%  cons@{} {:.1}%  format {:.1}%",
            report.pass_at_1 * 100.0,
            report.k,
            report.cons_at_k * 100.0,
            report.format_rate * 100.0
        );
        let cells = per_cell(&eval_rows, &outcomes, recipe.eval.k);
        rows.push(Row { label, model, report, cells });
    }
    let out = root.join("report");
    std::fs::create_dir_all(&out)?;
    let hard = hard_cell(&recipe.prepare.tasks);
    let train_rows: Vec<r1_recipe::data::TaskRecord> = r1_recipe::data::read_jsonl(train)?;
    let mut curves =
        vec![Curves::read("R1-Zero", &side_result.zero.metrics)?, Curves::read("R1 (after cold start)", &r1.metrics)?];
    if let Some(cell) = hard {
        for c in &mut curves {
            let samples = c.source.parent().map(|p| p.join("samples")).unwrap_or_default();
            let points = cell_lengths(&samples, &train_rows, cell, HARD_WINDOW)?;
            c.add_series(report::HARD_LENGTH, &points);
        }
    }
    let hard_title = hard.map(|(f, d)| format!("response length, {} {d} ({HARD_WINDOW}-step mean)", f.name()));
    report::plot(&curves, hard_title.as_deref(), &out.join("curves.png"))?;
    let mut text = render(&rows, &curves, &recipe, hard, started.elapsed().as_secs_f64());
    for s in skipped {
        text.push_str(&format!("\n**{s}.**\n"));
    }
    std::fs::write(out.join("report.md"), &text)?;
    println!("{text}");
    println!("report: {}\ncurves: {}", out.join("report.md").display(), out.join("curves.png").display());
    Ok(())
}

/// The side process of [`run`] (`r1ctl up --side-of ROOT`, started by it): the student's
/// base model and its RL-only run, then, once the main process has written the teacher's
/// base, R1-Zero. Its coordinator keeps these runs in `ROOT/side/`; what it made goes to
/// `ROOT/side.json` for the main process's report.
pub fn run_side(local: &Local, recipe_file: Option<&Path>, quick: bool, root: &Path) -> Result<()> {
    let recipe = UpRecipe::load(recipe_file, quick)?;
    let rl = &recipe.rl;
    let parent = std::os::unix::process::parent_id();
    let gone = || -> Result<()> {
        if std::os::unix::process::parent_id() != parent {
            bail!("the main `r1ctl up` process is gone; stopping");
        }
        if local.interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    };
    // Rank 1 of the teacher's pretraining, if the main process has it to do (it says so
    // before it starts; a base that is up to date is reused without it).
    let invite: Option<PeerInvite> = poll(|| {
        if let Some(invite) = read_json(&root.join(PRETRAIN_PEER))? {
            return Ok(Some(Some(invite)));
        }
        if root.join(TEACHER_READY).exists() {
            return Ok(Some(None));
        }
        gone().map(|()| None)
    })?;
    if let Some(invite) = invite {
        eprintln!("== side: rank 1 of the teacher's pretraining");
        let mut ring = TcpRing::join(&peer_ring(1, invite.master))?;
        let bar = crate::progress::bar(recipe.prepare.pretrain.steps, "pretraining steps");
        let report = r1_recipe::pretrain_peer(&root.join("teacher"), &recipe.prepare, &mut ring, &mut |s| {
            bar.set_position(s.step)
        })?;
        bar.finish_and_clear();
        eprintln!("   {} steps in {:.0} s", report.steps, report.seconds);
    }
    let mut student_rl = None;
    if recipe.distill.enabled {
        eprintln!("== side: the student's base model, then the student with RL alone");
        let d = &recipe.distill;
        let student_cfg = RecipeConfig {
            model: d.student.clone(),
            pretrain: r1_recipe::SftConfig { steps: d.pretrain_steps, ..recipe.prepare.pretrain.clone() },
            ..recipe.prepare.clone()
        };
        let student = prepare(&root.join("student"), &student_cfg)?;
        write_json(&root.join(STUDENT_READY), &StudentReady { base: student.base_model_dir.clone() })?;
        let f = finished(local.run(&rl.run_spec(
            "student-rl",
            &student.base_model_dir,
            &student.train_jsonl,
            &student.eval_jsonl,
            rl.eval_all_runs,
        ))?)?;
        student_rl = Some(RunOut { checkpoint: f.final_checkpoint(), metrics: f.metrics.clone() });
    }
    eprintln!("== side: waiting for the teacher's base model");
    let teacher: TeacherReady = poll(|| match read_json(&root.join(TEACHER_READY))? {
        Some(t) => Ok(Some(t)),
        None => gone().map(|()| None),
    })?;
    eprintln!("== side: R1-Zero, GRPO from the base model");
    let zero = finished(local.run(&rl.run_spec("r1-zero", &teacher.base, &teacher.train, &teacher.eval, true))?)?;
    let result = SideResult { zero: RunOut { checkpoint: zero.final_checkpoint(), metrics: zero.metrics }, student_rl };
    write_json(&root.join(SIDE_RESULT), &result)
}

/// Written by the main process when the teacher's base model is ready.
#[derive(Debug, Serialize, Deserialize)]
struct TeacherReady {
    base: PathBuf,
    train: PathBuf,
    eval: PathBuf,
}

/// Written by the side process when the student's base model is ready.
#[derive(Debug, Serialize, Deserialize)]
struct StudentReady {
    base: PathBuf,
}

/// A finished run of the side process.
#[derive(Debug, Serialize, Deserialize)]
struct RunOut {
    checkpoint: PathBuf,
    metrics: PathBuf,
}

/// What the side process made.
#[derive(Debug, Serialize, Deserialize)]
struct SideResult {
    zero: RunOut,
    student_rl: Option<RunOut>,
}

/// Written by the main process when it needs the side process as rank 1 of the pretraining.
#[derive(Debug, Serialize, Deserialize)]
struct PeerInvite {
    /// Rank 0's rendezvous address.
    master: String,
}

/// The two-rank ring of the teacher's pretraining.
fn peer_ring(rank: usize, master: String) -> RingConfig {
    RingConfig {
        rank,
        world_size: 2,
        master_addr: master,
        bind_addr: "127.0.0.1:0".into(),
        timeout: std::time::Duration::from_secs(120),
    }
}

const PRETRAIN_PEER: &str = "pretrain-peer.json";
const TEACHER_READY: &str = "teacher-ready.json";
const STUDENT_READY: &str = "student-ready.json";
const SIDE_RESULT: &str = "side.json";
const POLL: std::time::Duration = std::time::Duration::from_millis(300);

/// Calls `step` every [`POLL`] until it gives a value (or fails).
fn poll<T>(mut step: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    loop {
        if let Some(v) = step()? {
            return Ok(v);
        }
        std::thread::sleep(POLL);
    }
}

/// Writes `value` as JSON through a temporary file, so a reader never sees half of it.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The JSON in `path`, or `None` if there is no such file yet.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The side process, seen from the main one. Dropped before it finished (an error or Ctrl-C
/// in the main process), it is asked to stop (SIGTERM: it checkpoints its run) and killed if
/// it has not within a minute.
struct SideLane {
    child: Option<std::process::Child>,
    root: PathBuf,
    log: PathBuf,
}

impl SideLane {
    fn start(root: &Path, recipe_file: Option<&Path>, quick: bool) -> Result<SideLane> {
        for f in [PRETRAIN_PEER, TEACHER_READY, STUDENT_READY, SIDE_RESULT] {
            let p = root.join(f);
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("cannot remove the stale {}", p.display()))?;
            }
        }
        let dir = root.join("side");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("up.log");
        let out = std::fs::File::create(&log).with_context(|| format!("cannot write {}", log.display()))?;
        let listen = crate::up::free_addr()?;
        let exe = std::env::current_exe().context("cannot find this program to start the side process")?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("up").arg("--data-dir").arg(&dir).arg("--listen").arg(&listen).arg("--side-of").arg(root);
        if let Some(f) = recipe_file {
            cmd.arg("--recipe").arg(std::path::absolute(f)?);
        }
        if quick {
            cmd.arg("--quick");
        }
        cmd.stdin(std::process::Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let child = cmd.spawn().context("cannot start the side process")?;
        eprintln!(
            "   side process {} (R1-Zero and the student's base and RL): dashboard http://{listen}/, log {}",
            child.id(),
            log.display()
        );
        Ok(SideLane { child: Some(child), root: root.to_path_buf(), log })
    }

    /// Waits until the side process has written `file`; fails with the end of its log if it
    /// stops first.
    fn wait_for<T: serde::de::DeserializeOwned>(&mut self, file: &str, interrupted: &AtomicBool) -> Result<T> {
        let path = self.root.join(file);
        poll(|| {
            if let Some(v) = read_json(&path)? {
                return Ok(Some(v));
            }
            if interrupted.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let child = self.child.as_mut().context("the side process was already waited for")?;
            if let Some(status) = child.try_wait()? {
                if let Some(v) = read_json(&path)? {
                    return Ok(Some(v));
                }
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
                bail!(
                    "the side process (R1-Zero and the student's runs) stopped ({status}) before writing {}; \
                     the end of {}:\n{}",
                    path.display(),
                    self.log.display(),
                    tail.join("\n")
                );
            }
            Ok(None)
        })
    }

    /// Waits for the side process's result and its exit.
    fn finish(mut self, interrupted: &AtomicBool) -> Result<SideResult> {
        let result = self.wait_for(SIDE_RESULT, interrupted)?;
        if let Some(mut child) = self.child.take() {
            let status = child.wait()?;
            if !status.success() {
                bail!("the side process wrote its result but exited with {status}; see {}", self.log.display());
            }
        }
        Ok(result)
    }
}

impl Drop for SideLane {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SAFETY: `kill` with a pid this process spawned and has not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The `(family, difficulty)` whose response length the report follows: `long_chain` at its
/// highest level (one more step per level), if the tasks have it.
fn hard_cell(tasks: &r1_recipe::TaskConfig) -> Option<(Family, u8)> {
    tasks.families.contains(&Family::LongChain).then_some((Family::LongChain, tasks.max_difficulty))
}

/// Steps averaged in the hard cell's length curve (a step samples one or two of its groups).
const HARD_WINDOW: usize = 10;

/// Mean response length (tokens) of a run's training samples of one `(family, difficulty)`,
/// at every step, over the last `window` steps: from the run's `samples/<step>.json` files,
/// whose `row` is the prompt's line in the train file.
fn cell_lengths(
    samples: &Path,
    train: &[r1_recipe::data::TaskRecord],
    cell: (Family, u8),
    window: usize,
) -> Result<Vec<(f64, f64)>> {
    #[derive(Deserialize)]
    struct Step {
        step: u64,
        groups: Vec<Group>,
    }
    #[derive(Deserialize)]
    struct Group {
        row: usize,
        completions: Vec<Completion>,
    }
    #[derive(Deserialize)]
    struct Completion {
        tokens: u64,
    }
    let mut per_step: Vec<(u64, u64, u64)> = Vec::new();
    let entries = match std::fs::read_dir(samples) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", samples.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let step: Step =
            serde_json::from_str(&text).with_context(|| format!("{} is not a samples file", path.display()))?;
        let (mut tokens, mut n) = (0, 0);
        for g in &step.groups {
            // Dataset rows count from 1 (the file's line number).
            let rec = g.row.checked_sub(1).and_then(|i| train.get(i)).with_context(|| {
                format!("{}: row {} is not a line of the train file (lines 1–{})", path.display(), g.row, train.len())
            })?;
            if (rec.family, rec.difficulty) == cell {
                tokens += g.completions.iter().map(|c| c.tokens).sum::<u64>();
                n += g.completions.len() as u64;
            }
        }
        per_step.push((step.step, tokens, n));
    }
    per_step.sort_unstable();
    let window = window.max(1);
    Ok((0..per_step.len())
        .filter_map(|i| {
            let w = &per_step[i.saturating_sub(window - 1)..=i];
            let (t, n) = w.iter().fold((0, 0), |(t, n), s| (t + s.1, n + s.2));
            (n > 0).then(|| (per_step[i].0 as f64, t as f64 / n as f64))
        })
        .collect())
}

/// pass@1 and mean length of one model on each `(family, difficulty)` of the eval split.
fn per_cell(
    rows: &[r1_recipe::data::TaskRecord],
    outcomes: &[r1_recipe::eval::Outcome],
    k: usize,
) -> BTreeMap<(Family, u8), EvalReport> {
    let mut groups: BTreeMap<(Family, u8), Vec<r1_recipe::eval::Outcome>> = BTreeMap::new();
    for (r, o) in rows.iter().zip(outcomes) {
        groups.entry((r.family, r.difficulty)).or_default().push(o.clone());
    }
    groups.into_iter().map(|(cell, os)| (cell, r1_recipe::eval::summarize(&os, k))).collect()
}

fn finished(f: Finished) -> Result<Finished> {
    if !f.completed() {
        bail!("{}\nthe run did not complete; run `r1ctl up` again to resume it", f.summary);
    }
    eprintln!("   {}", f.summary.lines().next().unwrap_or_default());
    Ok(f)
}

fn prepare(dir: &Path, cfg: &RecipeConfig) -> Result<r1_recipe::Prepared> {
    prepare_on(dir, cfg, &mut || Ok(Box::new(r1_learner::collective::SingleRank)))
}

/// [`prepare`], pretraining on the collective `peers` opens when the base must be built.
fn prepare_on(dir: &Path, cfg: &RecipeConfig, peers: &mut r1_recipe::Peers<'_>) -> Result<r1_recipe::Prepared> {
    let bar = crate::progress::bar(cfg.pretrain.steps, "pretraining steps");
    let prepared = r1_recipe::prepare_with_peers(
        dir,
        cfg,
        &mut |e| match e {
            r1_recipe::Event::Stage { name, reused } => {
                // A hidden bar (stderr not a terminal) prints nothing itself.
                bar.suspend(|| eprintln!("   {name}: {}", if reused { "up to date, reused" } else { "building" }));
            }
            r1_recipe::Event::Pretrain(log) => bar.set_position(log.step),
        },
        peers,
    )?;
    bar.finish_and_clear();
    Ok(prepared)
}

fn load_model(dir: &Path) -> Result<(r1_model::CausalLm<r1_model::CpuBackend>, r1_model::TextTokenizer)> {
    let tok = r1_model::TextTokenizer::from_dir(dir).with_context(|| format!("tokenizer of {}", dir.display()))?;
    let model = r1_model::load::<r1_model::CpuBackend>(dir, &Default::default())
        .with_context(|| format!("model {}", dir.display()))?;
    Ok((model, tok))
}

fn evaluate(model_dir: &Path, items: &[TaskItem], cfg: &GenConfig) -> Result<Vec<r1_recipe::eval::Outcome>> {
    let (model, tok) = load_model(model_dir)?;
    Ok(r1_recipe::eval::sample_and_score(&model, &tok, items, cfg, &Default::default(), &mut |_| {})?)
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

fn render(rows: &[Row], curves: &[Curves], recipe: &UpRecipe, hard: Option<(Family, u8)>, seconds: f64) -> String {
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
    s.push_str(&cells_table(rows));
    if let Some(cell) = hard {
        s.push_str(&hard_summary(rows, cell));
    }
    s.push_str("\n## RL curves (from each run's metrics.jsonl)\n\n");
    s.push_str(&report::table(curves));
    s.push_str(&format!("\nWall time: {:.1} minutes.\n", seconds / 60.0));
    s
}

/// One row per model, one column per `(family, difficulty)`: pass@1 and mean length.
fn cells_table(rows: &[Row]) -> String {
    let cells: Vec<(Family, u8)> = rows.first().map(|r| r.cells.keys().copied().collect()).unwrap_or_default();
    if cells.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n## By family and level (pass@1, mean tokens)\n\n| model |");
    for (f, d) in &cells {
        s.push_str(&format!(" {} {d} |", f.name()));
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|".repeat(cells.len()));
    s.push('\n');
    for r in rows {
        s.push_str(&format!("| {} |", r.label));
        for c in &cells {
            match r.cells.get(c) {
                Some(e) => s.push_str(&format!(" {:.0}% ({:.0}) |", e.pass_at_1 * 100.0, e.mean_completion_tokens)),
                None => s.push_str(" — |"),
            }
        }
        s.push('\n');
    }
    s
}

/// The hard cell from the base to R1-Zero: accuracy and length, and how much the length grew.
fn hard_summary(rows: &[Row], cell: (Family, u8)) -> String {
    let get = |label: &str| rows.iter().find(|r| r.label == label).and_then(|r| r.cells.get(&cell));
    let (Some(base), Some(zero)) = (get("base"), get("R1-Zero (GRPO)")) else { return String::new() };
    let growth = (zero.mean_completion_tokens / base.mean_completion_tokens.max(1e-9) - 1.0) * 100.0;
    format!(
        "\nOn {} level {} (the most steps), R1-Zero goes from {:.0}% to {:.0}% pass@1 and its answers from {:.1} to \
         {:.1} tokens ({growth:+.0}%); the last panel of `curves.png` follows that length through training.\n",
        cell.0.name(),
        cell.1,
        base.pass_at_1 * 100.0,
        zero.pass_at_1 * 100.0,
        base.mean_completion_tokens,
        zero.mean_completion_tokens
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hard cell's length curve reads each sample's train row (counted from 1, as the
    /// dataset numbers them) and averages the completions of that cell over a window of steps.
    #[test]
    fn cell_lengths_follow_the_rows_of_the_cell() {
        let rec = |family, difficulty| r1_recipe::data::TaskRecord {
            prompt: String::new(),
            answer: String::new(),
            family,
            difficulty,
        };
        let train = [rec(Family::LongChain, 3), rec(Family::Solve, 1), rec(Family::LongChain, 3)];
        let cell = (Family::LongChain, 3);
        let group = |row: usize, tokens: &[u64]| serde_json::json!({"row": row, "completions": tokens.iter().map(|t| serde_json::json!({"tokens": t})).collect::<Vec<_>>()});
        type Case<'a> = (&'a str, Vec<(u64, Vec<serde_json::Value>)>, usize, Result<Vec<(f64, f64)>, &'a str>);
        let cases: Vec<Case> = vec![
            // Row 2 is the other cell: only rows 1 and 3 count.
            (
                "one step",
                vec![(1, vec![group(1, &[10, 20]), group(2, &[99]), group(3, &[30])])],
                1,
                Ok(vec![(1.0, 20.0)]),
            ),
            (
                "a window of two steps",
                vec![(1, vec![group(1, &[10])]), (2, vec![group(3, &[30, 50])]), (3, vec![group(2, &[7])])],
                2,
                Ok(vec![(1.0, 10.0), (2.0, 30.0), (3.0, 40.0)]),
            ),
            ("the last row is a row", vec![(1, vec![group(3, &[8])])], 1, Ok(vec![(1.0, 8.0)])),
            (
                "row 0 does not exist",
                vec![(1, vec![group(0, &[8])])],
                1,
                Err("row 0 is not a line of the train file (lines 1–3)"),
            ),
            ("past the end", vec![(1, vec![group(4, &[8])])], 1, Err("row 4 is not a line")),
        ];
        for (name, steps, window, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            for (step, groups) in &steps {
                let text = serde_json::json!({"step": step, "groups": groups}).to_string();
                std::fs::write(dir.path().join(format!("{step}.json")), text).unwrap();
            }
            match (cell_lengths(dir.path(), &train, cell, window), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(e), Err(msg)) => assert!(format!("{e:#}").contains(msg), "{name}: {e:#}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        // No samples folder (a run that kept none): no curve, no error.
        assert_eq!(cell_lengths(Path::new("/nonexistent/samples"), &train, cell, 1).unwrap(), vec![]);
    }

    #[test]
    fn recipe_config_layers_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        type Case<'a> = (&'a str, Result<(u64, u32), &'a str>);
        let cases: &[Case] = &[
            ("", Ok((80, 8))),
            ("[rl]\nsteps = 7\ngroup_size = 4\n", Ok((7, 4))),
            ("[rl]\nstep = 7\n", Err("unknown field: found `step`")),
            ("[rl]\ngroup_size = 1\n", Err("group_size at least 2")),
            ("[distill]\npretrain_steps = 0\n", Err("pretrain_steps is 0")),
            ("[distill]\npretrain_steps = 1\n", Ok((80, 8))),
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
        // `--quick` keeps every RL run short, R1's included (the full recipe gives R1 its own
        // step count).
        let q = UpRecipe::load(None, true).unwrap();
        assert_eq!(q, UpRecipe::quick(), "loading keeps every knob of --quick");
        assert_eq!((q.rl.steps, q.rl.after_cold_start().steps), (3, 3));
    }
}
