//! The recipe's datasets: task splits, pretraining documents and cold-start examples, and the
//! JSONL files they live in.
//!
//! Files (one JSON object per line):
//! - task files (`train.jsonl`, `eval.jsonl`): `{"prompt", "answer", "family", "difficulty"}`,
//!   read by the coordinator with `fields.prompt = "prompt"`, `fields.answer = "answer"`;
//! - SFT files (`coldstart.jsonl`, `pretrain.jsonl`, what `r1ctl sample` writes):
//!   `{"prompt", "completion", "answer"?}`. In a cold-start or distillation file the prompt is
//!   the bare question (the R1 template is applied at training time) and the completion is
//!   `<think> … </think> <answer> … </answer>`; in `pretrain.jsonl` the prompt is the whole
//!   text before the completion (template included) and training sees it raw.
//!
//! The eval split is held out by problem, not by wording: no problem in any other split has
//! the [`Problem::key`] of an eval problem.
//!
//! The pretraining mix imitates a web-scale base model's data: plain question/answer text,
//! worked solutions, and documents that show the R1 template followed either by a
//! `<think>`/`<answer>` completion (a fraction [`PretrainMix::r1_format_fraction`] of them) or
//! by an unformatted answer (at once, or with the steps in prose or inside `<think>`). That fraction is what makes the base model follow the
//! template some of the time, and what RL with a format reward then raises.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::RecipeError;
use crate::tasks::{self, Family, Problem};

/// The R1-Zero template (the same text `r1_model` renders).
pub use r1_model::tokenizer::R1_TEMPLATE;

/// Which problems the splits are drawn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// Families, drawn uniformly.
    pub families: Vec<Family>,
    /// Difficulty range, drawn uniformly (1 to [`tasks::MAX_DIFFICULTY`]).
    pub min_difficulty: u8,
    pub max_difficulty: u8,
    /// Problems in the RL train split.
    pub train: usize,
    /// Problems in the held-out eval split (distinct problems).
    pub eval: usize,
    /// Cold-start chain-of-thought examples.
    pub coldstart: usize,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            // Multi-step families only: with one-digit operands, `add` and `sub` have fewer
            // than 100 distinct problems, so holding out the eval split would leave most of
            // them unseen facts rather than problems to reason through. `long_chain` needs one
            // more step per level, so its hard instances are the ones worth thinking longer
            // on; levels 1–3 leave the cold-start model headroom (docs/reproduction.md).
            families: vec![Family::LongChain, Family::Solve],
            min_difficulty: 1,
            max_difficulty: 3,
            train: 4000,
            eval: 200,
            coldstart: 300,
        }
    }
}

impl TaskConfig {
    pub fn validate(&self) -> Result<(), RecipeError> {
        if self.families.is_empty() {
            return Err(RecipeError::Config(
                "`tasks.families` is empty; list at least one of add, sub, mul, chain, solve, long_chain".into(),
            ));
        }
        tasks::check_difficulty(self.min_difficulty)?;
        tasks::check_difficulty(self.max_difficulty)?;
        if self.min_difficulty > self.max_difficulty {
            return Err(RecipeError::Config(format!(
                "`tasks.min_difficulty` {} is above `tasks.max_difficulty` {}",
                self.min_difficulty, self.max_difficulty
            )));
        }
        if self.eval == 0 || self.train == 0 {
            return Err(RecipeError::Config("`tasks.train` and `tasks.eval` must be at least 1".into()));
        }
        Ok(())
    }
}

/// What the pretraining documents look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainMix {
    /// Number of documents.
    pub documents: usize,
    /// Share of documents that show the R1 template (the rest are plain or worked Q/A text).
    pub r1_fraction: f64,
    /// Share of the R1-template documents whose completion follows the format.
    pub r1_format_fraction: f64,
    /// Share of those formatted completions that skip the steps and answer at once
    /// (`<think> </think> <answer> 12 </answer>`: well-formed, so only the accuracy reward
    /// tells them from worked ones). Meant to give R1-Zero a reason to think longer where
    /// one jump fails; measured, it does the opposite: at 0.5 R1-Zero collapsed onto the
    /// terse answers (29 → 9.5 tokens, recipe/ablations/README.md), so keep it at 0.
    /// Left out of the config's JSON at 0, so folders made before it existed stay valid.
    #[serde(skip_serializing_if = "is_zero")]
    pub r1_terse_fraction: f64,
    /// Share of the unformatted completions that answer at once (`The answer is 12.`); the
    /// rest show the steps, half in prose and half inside `<think>`. Direct answers are what
    /// R1-Zero unlearns on the hard instances, where they are mostly wrong: the base starts
    /// short there and RL makes it think longer (docs/reproduction.md).
    pub r1_direct_fraction: f64,
    /// Problems in one plain document (an exercise sheet: question, answer, blank line, ...).
    pub problems_per_plain_document: usize,
    /// Share of an exercise sheet's problems shown with a worked solution (the rest with the
    /// answer alone).
    pub worked_fraction: f64,
}

impl Default for PretrainMix {
    fn default() -> Self {
        Self {
            documents: 6000,
            r1_fraction: 0.25,
            r1_format_fraction: 0.35,
            r1_terse_fraction: 0.0,
            r1_direct_fraction: 0.5,
            // Six: with four (1.5x cheaper steps) the two-layer base never learned to copy
            // the question's numbers into its steps (docs/reproduction.md).
            problems_per_plain_document: 6,
            worked_fraction: 1.0,
        }
    }
}

impl PretrainMix {
    pub fn validate(&self) -> Result<(), RecipeError> {
        for (name, v) in [
            ("r1_fraction", self.r1_fraction),
            ("r1_format_fraction", self.r1_format_fraction),
            ("r1_terse_fraction", self.r1_terse_fraction),
            ("r1_direct_fraction", self.r1_direct_fraction),
            ("worked_fraction", self.worked_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(RecipeError::Config(format!("`corpus.{name}` is {v}; use a fraction in [0, 1]")));
            }
        }
        if self.documents == 0 || self.problems_per_plain_document == 0 {
            return Err(RecipeError::Config(
                "`corpus.documents` and `corpus.problems_per_plain_document` must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// One line of a task file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub prompt: String,
    pub answer: String,
    pub family: Family,
    pub difficulty: u8,
}

impl From<&Problem> for TaskRecord {
    fn from(p: &Problem) -> Self {
        Self { prompt: p.prompt.clone(), answer: p.answer.clone(), family: p.family, difficulty: p.difficulty }
    }
}

/// One line of an SFT file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftRecord {
    pub prompt: String,
    pub completion: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// The R1-format completion of a problem: its worked steps in `<think>`, its answer in
/// `<answer>`, spaced as the template's own example is.
pub fn r1_completion(p: &Problem) -> String {
    format!("<think> {} </think> <answer> {} </answer>", p.reasoning(), p.answer)
}

/// The R1 template around a question.
pub fn r1_prompt(question: &str) -> String {
    R1_TEMPLATE.replace("{prompt}", question)
}

/// The problems of every split.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Vec<Problem>,
    pub eval: Vec<Problem>,
    pub coldstart: Vec<Problem>,
    pub pretrain: Vec<SftRecord>,
}

/// An RNG for one named stream of a seed, so that changing one split's size never changes
/// another split's problems.
pub fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    ChaCha8Rng::seed_from_u64(seed ^ h)
}

fn draw(cfg: &TaskConfig, rng: &mut ChaCha8Rng) -> Result<Problem, RecipeError> {
    let family = cfg.families[rng.random_range(0..cfg.families.len())];
    let d = rng.random_range(cfg.min_difficulty..=cfg.max_difficulty);
    tasks::generate(family, d, rng)
}

/// Draws `n` problems whose keys are not in `exclude`; with `distinct`, also distinct from
/// each other (and added to `exclude`).
fn draw_many(
    cfg: &TaskConfig,
    rng: &mut ChaCha8Rng,
    n: usize,
    exclude: &mut HashSet<String>,
    distinct: bool,
    split: &str,
) -> Result<Vec<Problem>, RecipeError> {
    let mut out = Vec::with_capacity(n);
    let mut misses = 0usize;
    while out.len() < n {
        let p = draw(cfg, rng)?;
        if exclude.contains(&p.key) {
            misses += 1;
            if misses > 50 * n + 1000 {
                return Err(RecipeError::Config(format!(
                    "found only {} of {n} {split} problems outside the held-out ones; the families and difficulties \
                     allow too few distinct problems: raise `tasks.max_difficulty` or lower `tasks.eval`",
                    out.len()
                )));
            }
            continue;
        }
        if distinct {
            exclude.insert(p.key.clone());
        }
        out.push(p);
    }
    Ok(out)
}

/// Generates every split from `seed`.
pub fn make_splits(cfg: &TaskConfig, mix: &PretrainMix, seed: u64) -> Result<Splits, RecipeError> {
    cfg.validate()?;
    mix.validate()?;
    let mut held_out = HashSet::new();
    let eval = draw_many(cfg, &mut stream(seed, "eval"), cfg.eval, &mut held_out, true, "eval")?;
    let train = draw_many(cfg, &mut stream(seed, "train"), cfg.train, &mut held_out, false, "train")?;
    let coldstart = draw_many(cfg, &mut stream(seed, "coldstart"), cfg.coldstart, &mut held_out, false, "cold-start")?;
    let mut rng = stream(seed, "pretrain");
    let mut pretrain = Vec::with_capacity(mix.documents);
    for _ in 0..mix.documents {
        let problems = draw_many(cfg, &mut rng, mix.problems_per_plain_document, &mut held_out, false, "pretraining")?;
        pretrain.push(pretrain_document(&problems, mix, &mut rng));
    }
    Ok(Splits { train, eval, coldstart, pretrain })
}

/// One pretraining document, its kind drawn from the mix: a plain exercise sheet of all the
/// `problems` (each answered directly or with a worked solution), or an R1-template document
/// of the first problem.
pub fn pretrain_document(problems: &[Problem], mix: &PretrainMix, rng: &mut impl Rng) -> SftRecord {
    let p = &problems[0];
    let answer = Some(p.answer.clone());
    if !rng.random_bool(mix.r1_fraction) {
        let mut text = String::new();
        for (i, q) in problems.iter().enumerate() {
            if i > 0 {
                text.push_str("\n\n");
            }
            if rng.random_bool(1.0 - mix.worked_fraction) {
                text.push_str(&format!("Question: {}\nAnswer: {}", q.prompt, q.answer));
            } else {
                text.push_str(&format!(
                    "Question: {}\nSolution: {} The answer is {}.",
                    q.prompt,
                    q.reasoning(),
                    q.answer
                ));
            }
        }
        // The split point does not matter for pretraining (every token is trained on); it is
        // after the first question so the record reads like the others.
        let cut = text.find('\n').expect("a question line") + 1;
        let (prompt, completion) = text.split_at(cut);
        return SftRecord { prompt: prompt.to_string(), completion: completion.to_string(), answer };
    }
    let completion = if rng.random_bool(mix.r1_format_fraction) {
        // No draw at 0, so the documents of a mix without terse answers are what they were.
        if mix.r1_terse_fraction > 0.0 && rng.random_bool(mix.r1_terse_fraction) {
            format!("<think> </think> <answer> {} </answer>", p.answer)
        } else {
            r1_completion(p)
        }
    } else if rng.random_bool(mix.r1_direct_fraction) {
        format!("The answer is {}.", p.answer)
    } else if rng.random_bool(0.5) {
        format!("{} So the answer is {}.", p.reasoning(), p.answer)
    } else {
        format!("<think> {} </think> The answer is {}.", p.reasoning(), p.answer)
    };
    SftRecord { prompt: r1_prompt(&p.prompt), completion, answer }
}

/// The cold-start example of a problem: bare question, R1-format completion.
pub fn coldstart_record(p: &Problem) -> SftRecord {
    SftRecord { prompt: p.prompt.clone(), completion: r1_completion(p), answer: Some(p.answer.clone()) }
}

/// Writes `rows` to `path` as JSON Lines.
pub fn write_jsonl<T: Serialize>(path: &Path, rows: impl IntoIterator<Item = T>) -> Result<(), RecipeError> {
    let f = std::fs::File::create(path).map_err(|e| RecipeError::io(path, e))?;
    let mut w = BufWriter::new(f);
    for r in rows {
        serde_json::to_writer(&mut w, &r).map_err(|e| RecipeError::io(path, e.into()))?;
        w.write_all(b"\n").map_err(|e| RecipeError::io(path, e))?;
    }
    w.flush().map_err(|e| RecipeError::io(path, e))
}

/// Reads every non-blank line of `path` as a `T`; a bad line is an error naming its number.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, RecipeError> {
    let f = std::fs::File::open(path).map_err(|e| RecipeError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| RecipeError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(&line).map_err(|e| RecipeError::Row {
            path: path.to_path_buf(),
            line: i + 1,
            problem: e.to_string(),
        })?;
        out.push(row);
    }
    if out.is_empty() {
        return Err(RecipeError::Row { path: path.to_path_buf(), line: 0, problem: "the file has no rows".into() });
    }
    Ok(out)
}

/// A question with its reference answer, as evaluation and rejection sampling read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskItem {
    pub prompt: String,
    pub answer: String,
}

/// Reads a task file with the prompt and answer in the named fields (the answer may be a
/// string or a number); a row without them is an error naming its line and field.
pub fn read_tasks(path: &Path, prompt_field: &str, answer_field: &str) -> Result<Vec<TaskItem>, RecipeError> {
    let rows: Vec<serde_json::Value> = read_jsonl(path)?;
    let mut out = Vec::with_capacity(rows.len());
    // Line numbers: read_jsonl skips blank lines, so count them again for the error.
    let text = std::fs::read_to_string(path).map_err(|e| RecipeError::io(path, e))?;
    let lines: Vec<usize> =
        text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, _)| i + 1).collect();
    for (row, line) in rows.iter().zip(lines) {
        let bad = |field: &str, problem: String| RecipeError::Field {
            path: path.to_path_buf(),
            line,
            field: field.to_string(),
            problem,
        };
        let prompt = match row.get(prompt_field) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(serde_json::Value::String(_)) => return Err(bad(prompt_field, "is empty".into())),
            Some(other) => return Err(bad(prompt_field, format!("must be a string, got {other}"))),
            None => return Err(bad(prompt_field, "is missing; name the prompt column with --prompt-field".into())),
        };
        let answer = match row.get(answer_field) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::String(_)) => return Err(bad(answer_field, "is empty".into())),
            Some(other) => return Err(bad(answer_field, format!("must be a string or a number, got {other}"))),
            None => return Err(bad(answer_field, "is missing; name the answer column with --answer-field".into())),
        };
        out.push(TaskItem { prompt, answer });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> TaskConfig {
        TaskConfig { train: 300, eval: 50, coldstart: 40, ..TaskConfig::default() }
    }

    #[test]
    fn eval_problems_appear_in_no_other_split() {
        let s = make_splits(&small(), &PretrainMix { documents: 500, ..Default::default() }, 1).unwrap();
        let eval: HashSet<&str> = s.eval.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(eval.len(), s.eval.len(), "eval problems are distinct");
        for p in s.train.iter().chain(&s.coldstart) {
            assert!(!eval.contains(p.key.as_str()), "{p:?} leaks into training");
        }
        for d in &s.pretrain {
            let text = format!("{}{}", d.prompt, d.completion);
            let questions: Vec<&str> = match text.split("User: ").nth(1) {
                Some(rest) => vec![rest.split(". Assistant:").next().unwrap()],
                None => text.lines().filter_map(|l| l.strip_prefix("Question: ")).collect(),
            };
            assert!(!questions.is_empty(), "{d:?}");
            for question in questions {
                let key = ["Compute ", "What is ", "Find x if ", "Solve "]
                    .iter()
                    .find_map(|p| question.strip_prefix(p))
                    .unwrap()
                    .trim_end_matches(" for x");
                assert!(!eval.contains(key), "eval problem {key} in {d:?}");
            }
        }
    }

    #[test]
    fn splits_are_a_function_of_the_seed_and_independent_of_other_sizes() {
        let mix = PretrainMix { documents: 100, ..Default::default() };
        let a = make_splits(&small(), &mix, 9).unwrap();
        let b = make_splits(&small(), &mix, 9).unwrap();
        assert_eq!(a.train, b.train);
        assert_eq!(a.pretrain, b.pretrain);
        let bigger = make_splits(&TaskConfig { train: 600, ..small() }, &mix, 9).unwrap();
        assert_eq!(a.eval, bigger.eval, "eval does not depend on the train size");
        assert_eq!(a.train[..], bigger.train[..300], "train is a prefix of a longer train");
        let other = make_splits(&small(), &mix, 10).unwrap();
        assert_ne!(a.eval, other.eval);
    }

    #[test]
    fn pretraining_mix_follows_its_fractions() {
        let mix = PretrainMix {
            documents: 4000,
            r1_fraction: 0.5,
            r1_format_fraction: 0.25,
            worked_fraction: 0.3,
            ..Default::default()
        };
        let s = make_splits(&small(), &mix, 2).unwrap();
        let sheets: String = s
            .pretrain
            .iter()
            .filter(|d| !d.prompt.starts_with("A conversation"))
            .map(|d| format!("{}{}", d.prompt, d.completion))
            .collect();
        let (worked, direct) = (sheets.matches("\nSolution: ").count(), sheets.matches("\nAnswer: ").count());
        let worked_share = worked as f64 / (worked + direct) as f64;
        assert!((worked_share - 0.3).abs() < 0.02, "worked share {worked_share}");
        let r1: Vec<&SftRecord> = s.pretrain.iter().filter(|d| d.prompt.starts_with("A conversation")).collect();
        let formatted = r1
            .iter()
            .filter(|d| {
                r1_reward::format::FormatVerifier::new(&Default::default()).unwrap().check(&d.completion).is_ok()
            })
            .count();
        let share = r1.len() as f64 / 4000.0;
        let fmt = formatted as f64 / r1.len() as f64;
        assert!((share - 0.5).abs() < 0.03, "R1 share {share}");
        assert!((fmt - 0.25).abs() < 0.04, "formatted share {fmt}");
    }

    #[test]
    fn terse_answers_are_well_formed_and_follow_their_fraction() {
        let mix = PretrainMix { documents: 4000, r1_fraction: 0.5, r1_format_fraction: 0.5, ..Default::default() };
        let terse = PretrainMix { r1_terse_fraction: 0.4, ..mix.clone() };
        let format = r1_reward::format::FormatVerifier::new(&Default::default()).unwrap();
        let formatted = |m: &PretrainMix| -> Vec<String> {
            let s = make_splits(&small(), m, 4).unwrap();
            s.pretrain
                .into_iter()
                .filter(|d| d.prompt.starts_with("A conversation") && format.check(&d.completion).is_ok())
                .map(|d| d.completion)
                .collect()
        };
        let (plain, with_terse) = (formatted(&mix), formatted(&terse));
        assert!(plain.iter().all(|c| !c.starts_with("<think> </think>")), "no terse answer at 0");
        let share = with_terse.iter().filter(|c| c.starts_with("<think> </think> <answer>")).count() as f64
            / with_terse.len() as f64;
        assert!((share - 0.4).abs() < 0.05, "terse share {share}");
        // At 0 the key is left out of the JSON that stamps the data stage: old folders stay valid.
        assert!(!serde_json::to_string(&mix).unwrap().contains("terse"));
        assert!(serde_json::to_string(&terse).unwrap().contains("\"r1_terse_fraction\":0.4"));
        let err = PretrainMix { r1_terse_fraction: -0.1, ..mix }.validate().unwrap_err().to_string();
        assert!(err.contains("corpus.r1_terse_fraction"), "{err}");
    }

    #[test]
    fn coldstart_completions_pass_both_verifiers() {
        let s = make_splits(&small(), &PretrainMix { documents: 10, ..Default::default() }, 3).unwrap();
        let format = r1_reward::format::FormatVerifier::new(&Default::default()).unwrap();
        for p in &s.coldstart {
            let r = coldstart_record(p);
            format.check(&r.completion).unwrap_or_else(|e| panic!("{e}: {}", r.completion));
            let job = r1_reward::job::ScoreJob {
                verifier: "math".into(),
                completion: r.completion.clone(),
                ground_truth: Some(p.answer.clone()),
                ..Default::default()
            };
            assert_eq!(r1_reward::math::score(&job).reward, 1.0, "{}", r.completion);
        }
    }

    #[test]
    fn impossible_split_sizes_are_refused() {
        // Difficulty 1 addition has 81 distinct problems.
        let cfg = TaskConfig { families: vec![Family::Add], max_difficulty: 1, eval: 82, ..small() };
        let err = make_splits(&cfg, &PretrainMix::default(), 0).unwrap_err().to_string();
        assert!(err.contains("found only 81 of 82 eval problems"), "{err}");
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases: [(TaskConfig, &str); 3] = [
            (TaskConfig { families: vec![], ..small() }, "tasks.families"),
            (TaskConfig { min_difficulty: 3, max_difficulty: 2, ..small() }, "tasks.min_difficulty"),
            (TaskConfig { max_difficulty: 6, ..small() }, "difficulty 6"),
        ];
        for (cfg, want) in cases {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err} should name {want}");
        }
        let err = PretrainMix { r1_fraction: 1.5, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(err.contains("corpus.r1_fraction"), "{err}");
    }

    #[test]
    fn task_files_name_the_bad_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("{\"prompt\":\"Compute 1 + 1\",\"answer\":2}\n", Ok(("Compute 1 + 1", "2"))),
            ("{\"prompt\":\"a\",\"answer\":\"3\"}\n\n{\"prompt\":\"b\"}\n", Err("line 3: field `answer` is missing")),
            ("{\"question\":\"a\",\"answer\":\"3\"}\n", Err("line 1: field `prompt` is missing")),
            ("{\"prompt\":7,\"answer\":\"3\"}\n", Err("line 1: field `prompt` must be a string")),
            ("{\"prompt\":\"a\",\"answer\":\"3\"}\nnot json\n", Err("line 2")),
            ("\n", Err("no rows")),
        ];
        for (i, (text, want)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("{i}.jsonl"));
            std::fs::write(&path, text).unwrap();
            match (read_tasks(&path, "prompt", "answer"), want) {
                (Ok(items), Ok((p, a))) => assert_eq!((items[0].prompt.as_str(), items[0].answer.as_str()), (p, a)),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "case {i}: `{e}` should contain `{w}`"),
                (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
            }
        }
    }
}
