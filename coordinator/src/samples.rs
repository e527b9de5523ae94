//! Samples kept for people to read: after each learner step the coordinator writes a few of
//! the groups that step trained on to the run folder, `<run>/samples/<step>.json`, with
//! each group's prompt, its G completions and, per completion, its reward, reward
//! components, advantage, length in tokens and whether the length limit cut it.
//!
//! - **Bounded.** At most `samples_per_step` groups per step (the coordinator config's key;
//!   0 keeps none), spread evenly over the batch in group order, and each completion's text
//!   cut at [`MAX_TEXT_BYTES`] (`text_cut` says so). Steps are numbered as in
//!   `metrics.jsonl`: the samples of step N are the batch the N-th update trained on.
//! - **Advantage** as GRPO computes it from the group's rewards: (r − mean) / (std + 1e-6),
//!   or r − mean when the run's `[algorithm.learner] std_normalize = false` (Dr. GRPO).
//! - **Rollback** removes the files of the steps it undid; retraining writes them again.
//!
//! Limits: evaluation groups and dropped groups are not kept; the texts are the completions
//! as the actors sent them (the prompt is the dataset's, before the template).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::dataset::Prompt;
use crate::lease::{Sample, ScoresSubmission};
use crate::runs::{Coordinator, RunsError};
use crate::spec::{Algorithm, RunSpec};
use crate::store::{RunId, StoreError};

/// Longest completion text kept, in bytes (cut at a character boundary).
pub const MAX_TEXT_BYTES: usize = 32 << 10;

/// The kept samples of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSamples {
    /// The step as `metrics.jsonl` numbers it (1 = the first update).
    pub step: u64,
    /// Groups the step trained on; `groups` holds at most `samples_per_step` of them.
    pub groups_trained: u64,
    pub groups: Vec<KeptGroup>,
}

/// One scored group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptGroup {
    pub group_id: i64,
    /// The example's row in its dataset file (1-based).
    pub row: u64,
    pub prompt: Prompt,
    pub answer: Option<String>,
    /// The policy version that sampled the group.
    pub policy_version: u64,
    pub completions: Vec<KeptCompletion>,
}

/// One completion with its scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptCompletion {
    pub text: String,
    /// The text was longer than [`MAX_TEXT_BYTES`] and was cut.
    pub text_cut: bool,
    pub reward: f64,
    pub components: BTreeMap<String, f64>,
    pub advantage: f64,
    /// Length in tokens.
    pub tokens: usize,
    /// Stopped by the length limit.
    pub truncated: bool,
}

/// `k` of `n` indices spread evenly, in order (all of them when `k >= n`).
pub fn spread(n: usize, k: usize) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    (0..k).map(|i| i * n / k).collect()
}

/// GRPO advantages of one group's rewards; see the module doc.
pub fn advantages(rewards: &[f64], std_normalize: bool) -> Vec<f64> {
    let n = rewards.len().max(1) as f64;
    let mean = rewards.iter().sum::<f64>() / n;
    let std = (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    rewards
        .iter()
        .map(|r| match std_normalize {
            true => (r - mean) / (std + 1e-6),
            false => r - mean,
        })
        .collect()
}

/// Whether the run's learner divides advantages by the group's std (the learner's default).
fn std_normalize(spec: &RunSpec) -> bool {
    match &spec.algorithm {
        Algorithm::Grpo(g) => g.learner.grpo.std_normalize,
        Algorithm::Sft(_) => true,
    }
}

fn cut(text: &str) -> (String, bool) {
    if text.len() <= MAX_TEXT_BYTES {
        return (text.to_string(), false);
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_string(), true)
}

fn folder(run_dir: &Path) -> PathBuf {
    run_dir.join("samples")
}

fn file(run_dir: &Path, step: u64) -> PathBuf {
    folder(run_dir).join(format!("{step}.json"))
}

/// Steps with kept samples in `run_dir`, ascending.
pub fn steps(run_dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(folder(run_dir)) else {
        return Vec::new();
    };
    let mut steps: Vec<u64> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            name.to_str()?.strip_suffix(".json")?.parse().ok()
        })
        .collect();
    steps.sort_unstable();
    steps
}

/// The kept samples of `step`; `None` when none were kept.
pub fn read(run_dir: &Path, step: u64) -> Result<Option<StepSamples>, RunsError> {
    let path = file(run_dir, step);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RunsError::RunFolder { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}; delete the file", path.display())).into())
}

/// Removes the kept samples of steps after `step` (a rollback to `step`).
pub fn remove_after(run_dir: &Path, step: u64) -> Result<(), RunsError> {
    for s in steps(run_dir).into_iter().filter(|&s| s > step) {
        let path = file(run_dir, s);
        std::fs::remove_file(&path).map_err(|source| RunsError::RunFolder { path, source })?;
    }
    Ok(())
}

impl Coordinator {
    /// Keeps up to `samples_per_step` groups of the batch that made step `step` (1-based, as
    /// in `metrics.jsonl`) in the run folder. Nothing without run folders or with 0.
    pub fn keep_samples(&self, id: RunId, step: u64) -> Result<(), RunsError> {
        let keep = self.samples_per_step() as usize;
        if keep == 0 || step == 0 {
            return Ok(());
        }
        let Some(dir) = self.run_folder(id)? else {
            return Ok(());
        };
        let sched = self.scheduler(id)?;
        type Row = (i64, i64, Option<i64>, Option<String>, Option<String>);
        let (spec, rows) = self.with_store_locked(|store| -> Result<_, StoreError> {
            let spec = store.run(id)?.spec;
            let mut stmt = store.conn.prepare(
                "SELECT id, example, policy_version, samples, rewards FROM groups
                 WHERE run_id = ?1 AND step = ?2 AND stage = 'done' AND eval_version IS NULL ORDER BY id",
            )?;
            let rows: Vec<Row> = stmt
                .query_map(params![id, step as i64 - 1], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<_, _>>()?;
            Ok((spec, rows))
        })?;
        let normalize = std_normalize(&spec);
        let mut groups = Vec::new();
        for i in spread(rows.len(), keep) {
            let (group_id, example, version, samples, rewards) = &rows[i];
            let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("group {group_id}: {e}"));
            let samples: Vec<Sample> = serde_json::from_str(samples.as_deref().unwrap_or("[]")).map_err(corrupt)?;
            let scores: Option<ScoresSubmission> =
                rewards.as_deref().map(serde_json::from_str::<ScoresSubmission>).transpose().map_err(corrupt)?;
            let (rewards, components) = scores.map(|s| (s.rewards, s.components)).unwrap_or_default();
            let Some(x) = sched.dataset().train().get(*example as usize) else {
                return Err(StoreError::Corrupt(format!(
                    "group {group_id} names example {example} beyond the dataset"
                ))
                .into());
            };
            let adv = advantages(&rewards, normalize);
            let completions = samples
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    let (text, text_cut) = cut(&s.text);
                    KeptCompletion {
                        text,
                        text_cut,
                        reward: rewards.get(j).copied().unwrap_or(f64::NAN),
                        components: components.get(j).cloned().unwrap_or_default(),
                        advantage: adv.get(j).copied().unwrap_or(0.0),
                        tokens: s.token_ids.len(),
                        truncated: s.truncated,
                    }
                })
                .collect();
            groups.push(KeptGroup {
                group_id: *group_id,
                row: x.row,
                prompt: x.prompt.clone(),
                answer: x.answer.clone(),
                policy_version: version.unwrap_or(0) as u64,
                completions,
            });
        }
        let kept = StepSamples { step, groups_trained: rows.len() as u64, groups };
        let path = file(&dir, step);
        std::fs::create_dir_all(folder(&dir)).map_err(|source| RunsError::RunFolder { path: folder(&dir), source })?;
        let json = serde_json::to_vec(&kept).expect("kept samples serialise");
        crate::runs::write_atomic(&path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_evenly_and_all_when_few() {
        for (n, k, want) in [
            (8, 2, vec![0, 4]),
            (8, 3, vec![0, 2, 5]),
            (3, 4, vec![0, 1, 2]),
            (3, 3, vec![0, 1, 2]),
            (0, 2, vec![]),
            (5, 0, vec![]),
        ] {
            assert_eq!(spread(n, k), want, "spread({n}, {k})");
        }
    }

    #[test]
    fn advantages_follow_grpo_and_dr_grpo() {
        let r = [1.0, 0.0, 0.0, 1.0];
        let a = advantages(&r, true);
        for (got, want) in a.iter().zip([1.0, -1.0, -1.0, 1.0]) {
            assert!((got - want).abs() < 1e-5, "{a:?}");
        }
        assert_eq!(advantages(&r, false), vec![0.5, -0.5, -0.5, 0.5]);
        assert_eq!(advantages(&[2.0, 2.0], true), vec![0.0, 0.0], "equal rewards: no signal");
    }

    /// The kept samples' advantages follow the resolved learner table: a `dr_grpo` preset
    /// turns std division off without naming `std_normalize` (a lookup of the key alone
    /// missed it), and a key next to a preset overrides it.
    #[test]
    fn std_normalize_follows_the_resolved_learner_table() {
        let example = include_str!("../examples/run.toml");
        for (learner_lines, want) in [
            ("", true),
            ("preset = \"dr_grpo\"\n", false),
            ("preset = \"dr_grpo\"\nstd_normalize = true\n", true),
            ("std_normalize = false\n", false),
        ] {
            let text = example.replacen("[algorithm.learner]", &format!("[algorithm.learner]\n{learner_lines}"), 1);
            let spec = RunSpec::from_toml(&text).unwrap_or_else(|e| panic!("{learner_lines:?}: {e}"));
            assert_eq!(std_normalize(&spec), want, "{learner_lines:?}");
        }
    }

    #[test]
    fn text_is_cut_at_the_limit_on_a_character_boundary() {
        let at = "a".repeat(MAX_TEXT_BYTES);
        assert_eq!(cut(&at), (at.clone(), false));
        let over = format!("{}é", "a".repeat(MAX_TEXT_BYTES - 1));
        let (text, was_cut) = cut(&over);
        assert!(was_cut);
        assert_eq!(text.len(), MAX_TEXT_BYTES - 1, "é straddles the limit and goes whole");
    }
}
