//! Public benchmarks as open-r1's lighteval tasks define them: which columns of the published
//! file hold the question and the gold answer, the prompt the question is put in, how the gold
//! answer is read from its column and where a completion's answer is looked for.
//!
//! | benchmark | published set (schema) | prompt | gold | completion's answer |
//! |---|---|---|---|---|
//! | `math500` | HuggingFaceH4/MATH-500 (`problem`, `solution`, `answer`) | [`MATH_QUERY_TEMPLATE`] | last `\boxed{}` of `solution` (else `answer`) | `\boxed{}`, `<answer>`, "answer is" |
//! | `aime24`, `aime25` | HuggingFaceH4/aime_2024, yentinglin/aime_2025 (`problem`, `answer`) | [`MATH_QUERY_TEMPLATE`] | `answer` | `\boxed{}`, `<answer>`, "answer is", last number |
//! | `gsm8k` | openai/gsm8k (`question`, `answer` ending `#### n`) | `Question: …\nAnswer:` | after `####` | `\boxed{}`, `<answer>`, `####`, "answer is", last number |
//! | `gpqa-diamond` | Idavidrein/gpqa `gpqa_diamond` (`Question`, `Correct Answer`, `Incorrect Answer 1..3`) | [`GPQA_QUERY_TEMPLATE`], choices shuffled | the correct answer's letter | "Answer: X", `\boxed{}`, `<answer>` |
//!
//! Answers are compared by `r1_reward::math` (numbers, LaTeX expressions, letters), the rule
//! the accuracy reward of a run uses. lighteval draws GPQA's choice order with Python's
//! unseeded `random`; r1 shuffles with a seeded permutation per row ([`shuffle_choices`]),
//! so a report names the order it was measured on (its seed).

use r1_reward::math::AnswerSource;
use r1_spec::AnswerKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The MATH prompt of lighteval and open-r1 (from simple-evals), used for MATH-500 and AIME.
pub const MATH_QUERY_TEMPLATE: &str = "Solve the following math problem efficiently and clearly.  The last line of your response should be of the following format: 'Therefore, the final answer is: $\\boxed{ANSWER}$. I hope it is correct' (without quotes) where ANSWER is just the final number or expression that solves the problem. Think step by step before answering.\n\n{Question}";

/// The GPQA prompt of lighteval and open-r1 (from simple-evals).
pub const GPQA_QUERY_TEMPLATE: &str = "Answer the following multiple choice question. The last line of your response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before answering.\n\n{Question}\n\nA) {A}\nB) {B}\nC) {C}\nD) {D}";

/// A benchmark r1 knows the published format, prompt and answer rule of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Benchmark {
    Math500,
    Aime24,
    Aime25,
    Gsm8k,
    GpqaDiamond,
}

/// One question ready to sample: its prompt text and gold answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchItem {
    pub prompt: String,
    pub answer: String,
}

impl Benchmark {
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::Math500 => "math500",
            Benchmark::Aime24 => "aime24",
            Benchmark::Aime25 => "aime25",
            Benchmark::Gsm8k => "gsm8k",
            Benchmark::GpqaDiamond => "gpqa-diamond",
        }
    }

    /// Where a completion's answer is looked for, first match wins.
    pub fn answer_sources(self) -> Vec<AnswerSource> {
        use AnswerSource::*;
        match self {
            Benchmark::Math500 => vec![Boxed, AnswerTag, AnswerIs],
            Benchmark::Aime24 | Benchmark::Aime25 => vec![Boxed, AnswerTag, AnswerIs, LastNumber],
            Benchmark::Gsm8k => vec![Boxed, AnswerTag, Hashes, AnswerIs, LastNumber],
            Benchmark::GpqaDiamond => vec![AnswerIs, Boxed, AnswerTag],
        }
    }

    /// The question and gold answer of one published row (`line` is 1-based, and with `seed`
    /// picks GPQA's choice order); an error names the column and what is wrong with it.
    pub fn item(self, row: &Value, line: u64, seed: u64) -> Result<BenchItem, (String, String)> {
        let text = |col: &str| -> Result<String, (String, String)> {
            match row.get(col) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                Some(Value::String(_)) => Err((col.to_string(), "is empty".into())),
                Some(other) => Err((col.to_string(), format!("must be text or a number, got {other}"))),
                None => Err((
                    col.to_string(),
                    format!("is missing; a {} row has this column (is this the right file?)", self.name()),
                )),
            }
        };
        let gold = |kind: AnswerKind, col: &str| -> Result<String, (String, String)> {
            kind.gold(&text(col)?).map_err(|e| (col.to_string(), e))
        };
        let math = |q: String| MATH_QUERY_TEMPLATE.replace("{Question}", &q);
        Ok(match self {
            Benchmark::Math500 => {
                let prompt = math(text("problem")?);
                let answer = if row.get("solution").is_some() {
                    gold(AnswerKind::Boxed, "solution")?
                } else {
                    gold(AnswerKind::Plain, "answer")?
                };
                BenchItem { prompt, answer }
            }
            Benchmark::Aime24 | Benchmark::Aime25 => {
                BenchItem { prompt: math(text("problem")?), answer: gold(AnswerKind::Plain, "answer")? }
            }
            Benchmark::Gsm8k => BenchItem {
                prompt: format!("Question: {}\nAnswer:", text("question")?),
                answer: gold(AnswerKind::Gsm8k, "answer")?,
            },
            Benchmark::GpqaDiamond => {
                let correct = text("Correct Answer")?.trim().to_string();
                let mut choices = vec![correct.clone()];
                for i in 1..=3 {
                    choices.push(text(&format!("Incorrect Answer {i}"))?.trim().to_string());
                }
                let order = shuffle_choices(seed, line);
                let shown: Vec<&str> = order.iter().map(|&i| choices[i].as_str()).collect();
                let gold_at = order.iter().position(|&i| i == 0).expect("a permutation");
                let prompt = GPQA_QUERY_TEMPLATE
                    .replace("{Question}", text("Question")?.trim())
                    .replace("{A}", shown[0])
                    .replace("{B}", shown[1])
                    .replace("{C}", shown[2])
                    .replace("{D}", shown[3]);
                BenchItem { prompt, answer: ["A", "B", "C", "D"][gold_at].to_string() }
            }
        })
    }
}

impl std::str::FromStr for Benchmark {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Benchmark::Math500, Benchmark::Aime24, Benchmark::Aime25, Benchmark::Gsm8k, Benchmark::GpqaDiamond]
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown benchmark `{s}`; use math500, aime24, aime25, gsm8k or gpqa-diamond"))
    }
}

/// The order GPQA's four choices are shown in for row `line`: `order[k]` is the index (0 =
/// the correct answer, 1..=3 the incorrect ones) shown as letter k. A seeded Fisher–Yates
/// (SplitMix64), written here so that a report's seed names the same order in every version.
pub fn shuffle_choices(seed: u64, line: u64) -> [usize; 4] {
    let mut state = seed ^ line.wrapping_mul(0xA076_1D64_78BD_642F);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order = [0, 1, 2, 3];
    for i in (1..4).rev() {
        let j = ((next() as u128 * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn published_rows_become_prompts_and_golds() {
        let gsm8k = json!({"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
            "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"});
        let math500 = json!({"problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.",
            "solution": "We have that $r = \\sqrt{0^2 + 3^2} = 3.$ ... \\[\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.\\]",
            "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2, "unique_id": "test/precalculus/807.json"});
        let aime = json!({"id": 60, "problem": "Find the number of ...", "solution": "...", "answer": "204", "url": "https://...", "year": "2024"});
        let aime_int =
            json!({"id": 0, "problem": "Find the sum ...", "answer": 70, "url": "https://...", "year": 2025});
        // (benchmark, row, prompt starts with, prompt ends with, gold)
        let cases = [
            (Benchmark::Gsm8k, &gsm8k, "Question: Natalia sold", "in April and May?\nAnswer:", "72"),
            (
                Benchmark::Math500,
                &math500,
                "Solve the following math problem efficiently and clearly.  The last line",
                "\n\nConvert the point $(0,3)$ in rectangular coordinates to polar coordinates.",
                "\\left( 3, \\frac{\\pi}{2} \\right)",
            ),
            (Benchmark::Aime24, &aime, "Solve the following", "\n\nFind the number of ...", "204"),
            (Benchmark::Aime25, &aime_int, "Solve the following", "\n\nFind the sum ...", "70"),
        ];
        for (b, row, start, end, gold) in cases {
            let item = b.item(row, 1, 0).unwrap();
            assert!(item.prompt.starts_with(start) && item.prompt.ends_with(end), "{b:?}: {}", item.prompt);
            assert_eq!(item.answer, gold, "{b:?}");
        }
        // A file of another benchmark: the missing column is named.
        let (col, problem) = Benchmark::Math500.item(&gsm8k, 1, 0).unwrap_err();
        assert_eq!(col, "problem");
        assert!(problem.contains("is missing"), "{problem}");
        let (col, problem) = Benchmark::Gsm8k.item(&json!({"question": "q", "answer": "72"}), 1, 0).unwrap_err();
        assert_eq!(col, "answer");
        assert!(problem.contains("no `#### <answer>` line"), "{problem}");
    }

    #[test]
    fn gpqa_choices_are_shuffled_by_seed_and_row_and_the_gold_letter_follows() {
        let row = json!({"Question": " Which is heaviest? ", "Correct Answer": "lead\n", "Incorrect Answer 1": "air",
            "Incorrect Answer 2": "water", "Incorrect Answer 3": "wood", "Record ID": "rec1", "Subdomain": "Physics"});
        let mut letters = std::collections::BTreeSet::new();
        for line in 1..=40 {
            let item = Benchmark::GpqaDiamond.item(&row, line, 7).unwrap();
            assert!(item.prompt.starts_with("Answer the following multiple choice question."), "{}", item.prompt);
            assert!(item.prompt.contains("\n\nWhich is heaviest?\n\nA) "), "{}", item.prompt);
            let shown = format!("{}) lead\n", item.answer);
            assert!(
                item.prompt.contains(&shown) || item.prompt.ends_with(shown.trim_end()),
                "{} in {}",
                item.answer,
                item.prompt
            );
            assert_eq!(item, Benchmark::GpqaDiamond.item(&row, line, 7).unwrap(), "seeded");
            letters.insert(item.answer);
        }
        assert_eq!(letters.len(), 4, "the gold answer lands on every letter: {letters:?}");
        let orders: std::collections::BTreeSet<[usize; 4]> = (0..8).map(|s| shuffle_choices(s, 1)).collect();
        assert!(orders.len() > 1, "the seed changes the order");
        for s in 0..50 {
            let mut o = shuffle_choices(s, 3);
            o.sort_unstable();
            assert_eq!(o, [0, 1, 2, 3]);
        }
    }

    #[test]
    fn names_round_trip() {
        for b in [Benchmark::Math500, Benchmark::Aime24, Benchmark::Aime25, Benchmark::Gsm8k, Benchmark::GpqaDiamond] {
            assert_eq!(b.name().parse::<Benchmark>(), Ok(b));
            assert_eq!(serde_json::to_value(b).unwrap(), json!(b.name()));
        }
        assert!("math-500".parse::<Benchmark>().unwrap_err().contains("gpqa-diamond"));
    }
}
