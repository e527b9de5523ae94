//! Sampling k completions per question and scoring them with the reward verifiers: the
//! evaluation the R1 paper reports, and rejection sampling for distillation.
//!
//! - **pass@1** (averaged over k samples, the R1 paper's "pass@1" with k responses at a
//!   non-zero temperature): `1/N Σ_i c_i / k`, c_i the number of correct samples of question i.
//! - **cons@k**: majority vote over the k extracted answers of each question; answers are
//!   grouped by `r1_reward::math` equivalence (so `0.5` and `1/2` vote together), the largest
//!   group wins, ties go to the group whose first member came first, and samples with no
//!   extractable answer do not vote. A question is right when the winner equals the reference.
//! - **pass@k** for every power of two up to k (and k): the unbiased estimator of Chen et al.
//!   (2021), `1 − C(n−c, k) / C(n, k)` per question with n samples of which c are correct,
//!   computed as the product `1 − Π_{i=n−c+1}^{n} (1 − k/i)` ([`pass_at_k`]); pass@1 is the
//!   same number as pass@1 over k.
//! - **format rate**: the share of samples that pass `r1_reward::format` (the R1 template).
//!
//! Correctness is `r1_reward::math` with the answer sources of [`GenConfig::answer_sources`]
//! (by default the last `\boxed{}`, else `<answer>…</answer>`: exactly what the accuracy
//! reward of a run computes; a benchmark names its own, see [`crate::benchmark`]).
//!
//! The end-of-sequence token that stopped a sample is not part of its text (it is a special
//! token, and the format rule allows nothing after `</answer>`). When the rendered prompt ends
//! in an open `<think>` (DeepSeek-R1-Distill's chat template adds one, and
//! [`GenConfig::think_prefill`] adds one as its model card asks), the scored text starts with
//! that `<think>\n`: it is what the model said, though the prompt said it.

use burn::tensor::backend::Backend;
use r1_model::tokenizer::Message;
use r1_model::{CausalLm, FinishReason, Prompt, PromptTemplate, SamplingParams, TextTokenizer};
use r1_reward::format::FormatVerifier;
use r1_reward::job::ScoreJob;
use r1_reward::math::{self, Answer, AnswerSource, MathConfig};
use serde::{Deserialize, Serialize};

use crate::RecipeError;
use crate::data::{SftRecord, TaskItem};

/// How questions are sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenConfig {
    /// Samples per question.
    pub k: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub max_new_tokens: usize,
    pub seed: u64,
    /// Most sequences decoded together.
    pub max_batch: usize,
    pub template: PromptTemplate,
    /// A system message before each question (needs the chat template).
    pub system: Option<String>,
    /// Start every completion with `<think>\n` (DeepSeek-R1-Distill's model card) unless the
    /// rendered prompt already ends in an open `<think>`.
    pub think_prefill: bool,
    /// Where a completion's answer is looked for, first match wins.
    pub answer_sources: Vec<AnswerSource>,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            k: 4,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 96,
            seed: 0,
            max_batch: 64,
            template: PromptTemplate::R1,
            system: None,
            think_prefill: false,
            answer_sources: MathConfig::default().sources,
        }
    }
}

/// One scored sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub text: String,
    pub tokens: usize,
    pub finish: FinishReason,
    /// The answer the math verifier extracted, if any.
    pub extracted: Option<String>,
    pub correct: bool,
    pub formatted: bool,
}

/// One question with its k samples and its vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub prompt: String,
    pub answer: String,
    pub samples: Vec<Scored>,
    /// The majority answer (cons@k), if any sample had an answer.
    pub vote: Option<String>,
    pub vote_correct: bool,
}

/// The numbers of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub questions: usize,
    pub k: usize,
    /// pass@1 averaged over k samples.
    pub pass_at_1: f64,
    /// Unbiased pass@k (Chen et al. 2021) for k = 1, 2, 4, ... up to the samples per question.
    pub pass_at_k: std::collections::BTreeMap<usize, f64>,
    /// Majority vote over k.
    pub cons_at_k: f64,
    /// Share of samples in the R1 format.
    pub format_rate: f64,
    /// Share of samples with an answer the math verifier could extract.
    pub answer_rate: f64,
    /// Share of samples cut at `max_new_tokens`.
    pub truncated_rate: f64,
    pub mean_completion_tokens: f64,
}

/// Samples `cfg.k` completions for each question and scores them. `progress` gets the number
/// of tokens generated at each decoding step.
pub fn sample_and_score<B: Backend>(
    model: &CausalLm<B>,
    tokenizer: &TextTokenizer,
    items: &[TaskItem],
    cfg: &GenConfig,
    device: &B::Device,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Outcome>, RecipeError> {
    if cfg.k == 0 {
        return Err(RecipeError::Config("k (samples per question) must be at least 1".into()));
    }
    let rendered: Vec<String> = items.iter().map(|it| render(tokenizer, cfg, &it.prompt)).collect::<Result<_, _>>()?;
    let prompts: Vec<Vec<u32>> = rendered.iter().map(|text| tokenizer.encode(text)).collect::<Result<_, _>>()?;
    let mut stop: Vec<u32> = model.config().eos_token_ids.clone();
    stop.extend(tokenizer.eos_token_id());
    stop.sort_unstable();
    stop.dedup();
    if stop.is_empty() {
        return Err(RecipeError::Input(
            "the model names no end-of-sequence token (config.json `eos_token_id` or tokenizer_config.json `eos_token`), so samples would never stop".into(),
        ));
    }
    let params = SamplingParams {
        temperature: cfg.temperature,
        top_p: cfg.top_p,
        top_k: 0,
        max_new_tokens: cfg.max_new_tokens,
        stop_token_ids: stop.clone(),
        stop_strings: Vec::new(),
        seed: cfg.seed,
        max_batch: cfg.max_batch,
        kv_budget_mib: None,
    };
    let out = r1_model::sample::generate(model, &prompts, cfg.k, &params, None, device, progress)?;
    let format = FormatVerifier::new(&Default::default()).expect("the default format compiles");
    let math_cfg = MathConfig { sources: cfg.answer_sources.clone() };
    items
        .iter()
        .zip(out)
        .zip(&rendered)
        .map(|((item, samples), prompt)| {
            let prefill = if open_think(prompt) { "<think>\n" } else { "" };
            let scored = samples
                .iter()
                .map(|s| {
                    let mut toks = s.tokens.as_slice();
                    if s.finish == FinishReason::Stop {
                        toks = &toks[..toks.len() - 1];
                    }
                    let text = format!("{prefill}{}", tokenizer.decode(toks)?);
                    Ok(score_text(text, s.tokens.len(), s.finish, &item.answer, &format, &math_cfg))
                })
                .collect::<Result<Vec<_>, RecipeError>>()?;
            let vote = majority(&scored);
            let vote_correct = vote.as_deref().is_some_and(|v| math::is_equivalent(&item.answer, v));
            Ok(Outcome {
                prompt: item.prompt.clone(),
                answer: item.answer.clone(),
                samples: scored,
                vote,
                vote_correct,
            })
        })
        .collect()
}

/// The prompt text of a question: the template, with the system message and the `<think>`
/// prefill when asked for.
pub fn render(tokenizer: &TextTokenizer, cfg: &GenConfig, question: &str) -> Result<String, RecipeError> {
    let prompt = match &cfg.system {
        None => Prompt::Text(question.to_string()),
        Some(system) => Prompt::Chat(vec![
            Message { role: "system".into(), content: system.clone() },
            Message { role: "user".into(), content: question.to_string() },
        ]),
    };
    let mut text = tokenizer.render_prompt(cfg.template, &prompt)?;
    if cfg.think_prefill && !open_think(&text) {
        text.push_str("<think>\n");
    }
    Ok(text)
}

/// Whether a rendered prompt ends inside a `<think>` block the model is to continue.
fn open_think(prompt: &str) -> bool {
    prompt.trim_end().ends_with("<think>")
}

/// The unbiased pass@k estimator of Chen et al. (2021) for one question with `n` samples of
/// which `c` are correct: `1 − C(n−c, k) / C(n, k)`, as the numerically stable product
/// `1 − Π_{i=n−c+1}^{n} (1 − k/i)`. `k` must be at most `n`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    assert!(k >= 1 && k <= n && c <= n, "pass@k needs 1 <= k <= n and c <= n (n {n}, c {c}, k {k})");
    if n - c < k {
        return 1.0;
    }
    1.0 - ((n - c + 1)..=n).map(|i| 1.0 - k as f64 / i as f64).product::<f64>()
}

/// The k the report gives pass@k for: powers of two below `n`, and `n`.
pub fn report_ks(n: usize) -> Vec<usize> {
    let mut ks: Vec<usize> = std::iter::successors(Some(1usize), |k| k.checked_mul(2)).take_while(|&k| k < n).collect();
    if n > 0 {
        ks.push(n);
    }
    ks
}

/// Scores one completion text against `gold`.
pub fn score_text(
    text: String,
    tokens: usize,
    finish: FinishReason,
    gold: &str,
    format: &FormatVerifier,
    math_cfg: &MathConfig,
) -> Scored {
    let job = ScoreJob {
        verifier: "math".into(),
        completion: text.clone(),
        ground_truth: Some(gold.to_string()),
        ..Default::default()
    };
    let correct = math::score_with(&job, math_cfg).reward == 1.0;
    let formatted = format.check(&text).is_ok();
    let extracted = math::extract::answer(&text, &math_cfg.sources).map(|a| a.into_owned());
    Scored { text, tokens, finish, extracted, correct, formatted }
}

/// The majority answer among the samples' extracted answers (see the module doc for ties).
pub fn majority(samples: &[Scored]) -> Option<String> {
    let mut groups: Vec<(Answer, String, usize)> = Vec::new();
    for a in samples.iter().filter_map(|s| s.extracted.as_deref()) {
        let parsed = Answer::parse(a);
        match groups.iter_mut().find(|(g, _, _)| math::answers_match(g, &parsed)) {
            Some(g) => g.2 += 1,
            None => groups.push((parsed, a.to_string(), 1)),
        }
    }
    let best = groups.iter().map(|g| g.2).max()?;
    groups.into_iter().find(|g| g.2 == best).map(|g| g.1)
}

/// pass@1, cons@k and the rates over all outcomes.
pub fn summarize(outcomes: &[Outcome], k: usize) -> EvalReport {
    let n = outcomes.len().max(1) as f64;
    let samples: Vec<&Scored> = outcomes.iter().flat_map(|o| &o.samples).collect();
    let m = samples.len().max(1) as f64;
    let rate = |f: &dyn Fn(&Scored) -> bool| samples.iter().filter(|s| f(s)).count() as f64 / m;
    let pass_at_k = report_ks(k)
        .into_iter()
        .map(|kk| {
            let total: f64 = outcomes
                .iter()
                .filter(|o| o.samples.len() >= kk)
                .map(|o| pass_at_k(o.samples.len(), o.samples.iter().filter(|s| s.correct).count(), kk))
                .sum();
            (kk, total / n)
        })
        .collect();
    EvalReport {
        questions: outcomes.len(),
        k,
        pass_at_k,
        pass_at_1: outcomes
            .iter()
            .map(|o| o.samples.iter().filter(|s| s.correct).count() as f64 / o.samples.len().max(1) as f64)
            .sum::<f64>()
            / n,
        cons_at_k: outcomes.iter().filter(|o| o.vote_correct).count() as f64 / n,
        format_rate: rate(&|s| s.formatted),
        answer_rate: rate(&|s| s.extracted.is_some()),
        truncated_rate: rate(&|s| s.finish == FinishReason::Length),
        mean_completion_tokens: samples.iter().map(|s| s.tokens as f64).sum::<f64>() / m,
    }
}

/// Rejection sampling: the verified-correct samples of each question (and, with
/// `require_format`, only those in the R1 format), distinct texts, at most `per_question`
/// each, as SFT records.
pub fn accepted(outcomes: &[Outcome], per_question: usize, require_format: bool) -> Vec<SftRecord> {
    let mut out = Vec::new();
    for o in outcomes {
        let mut kept: Vec<&str> = Vec::new();
        for s in &o.samples {
            if kept.len() >= per_question {
                break;
            }
            if s.correct && (s.formatted || !require_format) && !kept.contains(&s.text.trim()) {
                kept.push(s.text.trim());
                out.push(SftRecord {
                    prompt: o.prompt.clone(),
                    completion: s.text.trim().to_string(),
                    answer: Some(o.answer.clone()),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str, gold: &str) -> Scored {
        let format = FormatVerifier::new(&Default::default()).unwrap();
        score_text(text.to_string(), 3, FinishReason::Stop, gold, &format, &MathConfig::default())
    }

    #[test]
    fn samples_are_scored_like_the_rewards() {
        // (completion, gold, extracted, correct, formatted)
        let cases = [
            ("<think> 2 + 2 = 4. </think> <answer> 4 </answer>", "4", Some("4"), true, true),
            ("<think> 2 + 2 = 5. </think> <answer> 5 </answer>", "4", Some("5"), false, true),
            ("The answer is 4.", "4", None, false, false),
            ("<think> x </think> The answer is 4.", "4", None, false, false),
            ("<answer> 4 </answer>", "4", Some("4"), true, false),
            ("<think> a </think> <answer> 1/2 </answer>", "0.5", Some("1/2"), true, true),
        ];
        for (text, gold, extracted, correct, formatted) in cases {
            let got = s(text, gold);
            assert_eq!(
                (got.extracted.as_deref(), got.correct, got.formatted),
                (extracted, correct, formatted),
                "{text}"
            );
        }
    }

    #[test]
    fn majority_vote_groups_equivalent_answers_and_breaks_ties_by_order() {
        let a = |x: &str| s(&format!("<answer> {x} </answer>"), "0");
        let none = s("no answer here", "0");
        // (samples, winner)
        let cases: Vec<(Vec<Scored>, Option<&str>)> = vec![
            (vec![a("3"), a("5"), a("5")], Some("5")),
            (vec![a("0.5"), a("7"), a("1/2")], Some("0.5")),
            (vec![a("7"), a("3")], Some("7")),
            (vec![none.clone(), none.clone(), a("9")], Some("9")),
            (vec![none.clone()], None),
            (vec![], None),
        ];
        for (samples, want) in cases {
            assert_eq!(
                majority(&samples).as_deref(),
                want,
                "{:?}",
                samples.iter().map(|s| &s.text).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn summary_is_pass_at_1_over_k_and_cons_at_k() {
        let q = |gold: &str, texts: &[&str]| {
            let samples: Vec<Scored> = texts.iter().map(|t| s(t, gold)).collect();
            let vote = majority(&samples);
            let vote_correct = vote.as_deref().is_some_and(|v| math::is_equivalent(gold, v));
            Outcome { prompt: "q".into(), answer: gold.into(), samples, vote, vote_correct }
        };
        let right = "<think> ok </think> <answer> 4 </answer>";
        let wrong = "<think> ok </think> <answer> 5 </answer>";
        let bare = "4";
        let outcomes = [q("4", &[right, wrong, right, bare]), q("4", &[wrong, wrong, right, bare])];
        let r = summarize(&outcomes, 4);
        assert!((r.pass_at_1 - (2.0 / 4.0 + 1.0 / 4.0) / 2.0).abs() < 1e-12, "{r:?}");
        assert!((r.cons_at_k - 0.5).abs() < 1e-12, "{r:?}");
        assert!((r.format_rate - 6.0 / 8.0).abs() < 1e-12, "{r:?}");
        assert!((r.answer_rate - 6.0 / 8.0).abs() < 1e-12, "{r:?}");
        // pass@2 and pass@4 per question: 1 − C(4−c, k)/C(4, k) with c = 2 and 1.
        let want2 = ((1.0 - 1.0 / 6.0) + (1.0 - 3.0 / 6.0)) / 2.0;
        assert!((r.pass_at_k[&2] - want2).abs() < 1e-12, "{r:?}");
        assert_eq!(r.pass_at_k[&4], 1.0);
        assert!((r.pass_at_k[&1] - r.pass_at_1).abs() < 1e-12);
    }

    /// pass@k against the closed form 1 − C(n−c, k)/C(n, k) on hand-made counts.
    #[test]
    fn pass_at_k_is_the_unbiased_estimator() {
        fn choose(n: u64, k: u64) -> f64 {
            if k > n {
                return 0.0;
            }
            (0..k).map(|i| (n - i) as f64 / (i + 1) as f64).product()
        }
        // (n, c, k)
        let cases =
            [(5, 2, 2), (10, 3, 1), (10, 3, 4), (16, 0, 8), (16, 16, 1), (16, 1, 16), (64, 5, 8), (4, 1, 3), (3, 1, 3)];
        for (n, c, k) in cases {
            let closed = 1.0 - choose((n - c) as u64, k as u64) / choose(n as u64, k as u64);
            let got = pass_at_k(n, c, k);
            assert!((got - closed).abs() < 1e-12, "n {n} c {c} k {k}: {got} vs {closed}");
        }
        assert!((pass_at_k(5, 2, 2) - 0.7).abs() < 1e-12);
        assert!((pass_at_k(10, 3, 1) - 0.3).abs() < 1e-12, "pass@1 is c/n");
        assert_eq!(report_ks(16), [1, 2, 4, 8, 16]);
        assert_eq!(report_ks(6), [1, 2, 4, 6]);
        assert_eq!(report_ks(1), [1]);
    }

    #[test]
    fn rejection_keeps_distinct_correct_formatted_samples_up_to_the_cap() {
        let o = Outcome {
            prompt: "Compute 2 + 2".into(),
            answer: "4".into(),
            samples: vec![
                s("<think> a </think> <answer> 4 </answer>", "4"),
                s("<think> a </think> <answer> 4 </answer>", "4"),
                s("<answer> 4 </answer>", "4"),
                s("<think> b </think> <answer> 5 </answer>", "4"),
                s("<think> c </think> <answer> 4 </answer>", "4"),
                s("<think> d </think> <answer> 4 </answer>", "4"),
            ],
            vote: None,
            vote_correct: false,
        };
        // (cap, require_format, kept completions)
        let cases: [(usize, bool, &[&str]); 3] = [
            (
                5,
                true,
                &[
                    "<think> a </think> <answer> 4 </answer>",
                    "<think> c </think> <answer> 4 </answer>",
                    "<think> d </think> <answer> 4 </answer>",
                ],
            ),
            (2, true, &["<think> a </think> <answer> 4 </answer>", "<think> c </think> <answer> 4 </answer>"]),
            (2, false, &["<think> a </think> <answer> 4 </answer>", "<answer> 4 </answer>"]),
        ];
        for (cap, fmt, want) in cases {
            let got: Vec<String> =
                accepted(std::slice::from_ref(&o), cap, fmt).into_iter().map(|r| r.completion).collect();
            assert_eq!(got, want, "cap {cap}, require_format {fmt}");
        }
    }
}
