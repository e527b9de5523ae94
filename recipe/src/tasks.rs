//! Synthetic reasoning tasks with verifiable integer answers, generated from a seed.
//!
//! Six families, each with difficulty levels 1..=[`MAX_DIFFICULTY`]:
//!
//! | family | example prompt (difficulty 2) | worked steps |
//! |---|---|---|
//! | `add` | `Compute 47 + 8` | add the second number one place value at a time |
//! | `sub` | `What is 52 - 7` | subtract it one place value at a time |
//! | `mul` | `Compute 23 * 4` | multiply each place value of the first number, then add |
//! | `chain` | `Compute 12 + 7 - 5` | one operation at a time, left to right |
//! | `solve` | `Find x if 3 * x + 4 = 19` | undo the constant, then the coefficient (Countdown-style inverse) |
//! | `long_chain` | `Compute 3 + 7 - 5 + 8` | one operation at a time, left to right |
//!
//! `long_chain` is the family whose difficulty is the number of steps alone: level d has
//! d + 2 one-digit terms (d + 1 steps) and a running total that never goes negative, so a
//! harder instance asks for more intermediate steps of the same one-digit arithmetic, not
//! for bigger numbers (`chain` grows both at once).
//!
//! Every answer is an integer written in decimal, which `r1_reward::math` checks exactly.
//! Each problem also carries its worked steps, in the same arithmetic the answer comes from,
//! so chain-of-thought text is correct by construction (the tests re-evaluate every step).
//!
//! Prompts carry no final punctuation because the R1 template appends a period after the
//! question (`User: {prompt}. Assistant:`).
//!
//! Not covered: free-form Countdown ("make 24 from these numbers") needs a verifier that checks
//! which numbers an expression uses; the math verifier only checks its value, so a model could
//! answer with the target itself. `solve` is the inverse-arithmetic puzzle that the math
//! verifier can check.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::RecipeError;

/// Highest difficulty level.
pub const MAX_DIFFICULTY: u8 = 5;

/// A task family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Add,
    Sub,
    Mul,
    Chain,
    Solve,
    LongChain,
}

impl Family {
    pub const ALL: [Family; 6] =
        [Family::Add, Family::Sub, Family::Mul, Family::Chain, Family::Solve, Family::LongChain];

    pub fn name(self) -> &'static str {
        match self {
            Family::Add => "add",
            Family::Sub => "sub",
            Family::Mul => "mul",
            Family::Chain => "chain",
            Family::Solve => "solve",
            Family::LongChain => "long_chain",
        }
    }
}

/// One generated problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub family: Family,
    pub difficulty: u8,
    /// The question, without the template.
    pub prompt: String,
    /// The integer answer, in decimal.
    pub answer: String,
    /// The problem itself without its phrasing (`47 + 8`, `3 * x + 4 = 19`): two prompts with
    /// the same key are the same problem, which is what keeps the eval split held out.
    pub key: String,
    /// Worked steps, each an equation such as `47 + 30 = 77`.
    pub steps: Vec<String>,
}

impl Problem {
    /// The worked steps as one line of reasoning: `47 + 30 = 77, 77 + 8 = 85.`
    pub fn reasoning(&self) -> String {
        format!("{}.", self.steps.join(", "))
    }
}

/// Checks a difficulty level.
pub fn check_difficulty(d: u8) -> Result<(), RecipeError> {
    if (1..=MAX_DIFFICULTY).contains(&d) {
        Ok(())
    } else {
        Err(RecipeError::Config(format!("difficulty {d} is out of range; use 1 to {MAX_DIFFICULTY}")))
    }
}

/// Generates one problem of `family` at `difficulty`.
pub fn generate(family: Family, difficulty: u8, rng: &mut impl Rng) -> Result<Problem, RecipeError> {
    check_difficulty(difficulty)?;
    let d = difficulty as usize - 1;
    let (key, answer, steps) = match family {
        Family::Add => {
            let (da, db) = [(1, 1), (2, 1), (2, 2), (3, 2), (3, 3)][d];
            let (a, b) = (number(rng, da), number(rng, db));
            let (answer, steps) = place_value_steps(a, '+', b);
            (format!("{a} + {b}"), answer, steps)
        }
        Family::Sub => {
            let (da, db) = [(1, 1), (2, 1), (2, 2), (3, 2), (3, 3)][d];
            let (mut a, mut b) = (number(rng, da), number(rng, db));
            // Negative answers only from difficulty 3 on.
            if difficulty < 3 && a < b {
                std::mem::swap(&mut a, &mut b);
            }
            let (answer, steps) = place_value_steps(a, '-', b);
            (format!("{a} - {b}"), answer, steps)
        }
        Family::Mul => {
            let (da, db) = [(1, 1), (2, 1), (3, 1), (2, 2), (3, 2)][d];
            let (a, b) = (number(rng, da), number(rng, db));
            let (answer, steps) = mul_steps(a, b);
            (format!("{a} * {b}"), answer, steps)
        }
        Family::Chain => {
            let (terms, digits) = [(3, 1), (3, 2), (4, 2), (5, 2), (5, 3)][d];
            let first = number(rng, digits);
            let mut expr = first.to_string();
            let mut acc = first;
            let mut steps = Vec::new();
            for _ in 1..terms {
                let width = rng.random_range(1..=digits);
                let n = number(rng, width);
                // Keep early levels non-negative.
                let op = if rng.random_bool(0.5) || (difficulty < 3 && acc < n) { '+' } else { '-' };
                let next = if op == '+' { acc + n } else { acc - n };
                steps.push(format!("{acc} {op} {n} = {next}"));
                expr.push_str(&format!(" {op} {n}"));
                acc = next;
            }
            (expr, acc.to_string(), steps)
        }
        Family::LongChain => {
            let first = number(rng, 1);
            let mut expr = first.to_string();
            let mut acc = first;
            let mut steps = Vec::new();
            for _ in 0..=difficulty {
                let n = number(rng, 1);
                // Subtract only what the running total holds: one-digit arithmetic at every level.
                let op = if rng.random_bool(0.5) || acc < n { '+' } else { '-' };
                let next = if op == '+' { acc + n } else { acc - n };
                steps.push(format!("{acc} {op} {n} = {next}"));
                expr.push_str(&format!(" {op} {n}"));
                acc = next;
            }
            (expr, acc.to_string(), steps)
        }
        Family::Solve => {
            let x = rng.random_range(1..=5 * difficulty as i64);
            let a = rng.random_range(2..=difficulty as i64 + 2);
            let b = rng.random_range(1..=10 * difficulty as i64);
            let plus = rng.random_bool(0.5);
            let (eq, undo) = if plus {
                let c = a * x + b;
                (format!("{a} * x + {b} = {c}"), format!("{a} * x = {c} - {b} = {}", c - b))
            } else {
                let c = a * x - b;
                (format!("{a} * x - {b} = {c}"), format!("{a} * x = {c} + {b} = {}", c + b))
            };
            let steps = vec![undo, format!("x = {} / {a} = {x}", a * x)];
            (eq, x.to_string(), steps)
        }
    };
    let prompt = match family {
        Family::Solve if rng.random_bool(0.5) => format!("Find x if {key}"),
        Family::Solve => format!("Solve {key} for x"),
        _ if rng.random_bool(0.5) => format!("Compute {key}"),
        _ => format!("What is {key}"),
    };
    Ok(Problem { family, difficulty, prompt, answer, key, steps })
}

/// A uniform number with exactly `digits` digits (1..=9 for one digit).
fn number(rng: &mut impl Rng, digits: usize) -> i64 {
    let lo = 10i64.pow(digits as u32 - 1);
    rng.random_range(lo..lo * 10)
}

/// The non-zero place values of `n` > 0, largest first: 305 → [300, 5].
pub fn place_values(n: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut scale = 1;
    let mut m = n;
    while m > 0 {
        let digit = m % 10;
        if digit != 0 {
            out.push(digit * scale);
        }
        m /= 10;
        scale *= 10;
    }
    out.reverse();
    if out.is_empty() {
        out.push(0);
    }
    out
}

/// `a op b` by adding or subtracting `b` one place value at a time.
fn place_value_steps(a: i64, op: char, b: i64) -> (String, Vec<String>) {
    let mut acc = a;
    let mut steps = Vec::new();
    for p in place_values(b) {
        let next = if op == '+' { acc + p } else { acc - p };
        steps.push(format!("{acc} {op} {p} = {next}"));
        acc = next;
    }
    (acc.to_string(), steps)
}

/// `a * b` by multiplying each place value of `a`, then adding the products.
fn mul_steps(a: i64, b: i64) -> (String, Vec<String>) {
    let parts = place_values(a);
    let mut steps: Vec<String> = parts.iter().map(|p| format!("{p} * {b} = {}", p * b)).collect();
    let mut acc = parts[0] * b;
    for p in &parts[1..] {
        steps.push(format!("{acc} + {} = {}", p * b, acc + p * b));
        acc += p * b;
    }
    (acc.to_string(), steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Evaluates `l op r` for the integer steps the generator writes.
    fn eval_step(step: &str) -> (i64, i64) {
        let (lhs, rhs) = step.rsplit_once(" = ").expect("a step is an equation");
        let toks: Vec<&str> = lhs.split(' ').collect();
        let num = |s: &str| s.parse::<i64>().unwrap_or_else(|_| panic!("`{s}` in `{step}` is not a number"));
        // The value is the last operation: `47 + 30`, `3 * x = 19 - 4`, `x = 15 / 3`.
        let value = match toks.as_slice() {
            [.., a, "+", b] => num(a) + num(b),
            [.., a, "-", b] => num(a) - num(b),
            [.., a, "*", b] => num(a) * num(b),
            [.., a, "/", b] => {
                assert_eq!(num(a) % num(b), 0, "inexact division in `{step}`");
                num(a) / num(b)
            }
            other => panic!("unexpected step shape {other:?}"),
        };
        (value, num(rhs))
    }

    #[test]
    fn every_step_is_true_and_the_last_gives_the_answer() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for family in Family::ALL {
            for d in 1..=MAX_DIFFICULTY {
                for _ in 0..200 {
                    let p = generate(family, d, &mut rng).unwrap();
                    for s in &p.steps {
                        let (lhs, rhs) = eval_step(s);
                        assert_eq!(lhs, rhs, "{family:?} d{d}: false step `{s}` in {p:?}");
                    }
                    let last = p.steps.last().unwrap().rsplit_once(" = ").unwrap().1;
                    assert_eq!(last, p.answer, "{p:?}");
                    assert!(r1_reward::math::is_equivalent(&p.answer, &p.answer));
                }
            }
        }
    }

    #[test]
    fn answers_match_the_prompt_arithmetic() {
        // Evaluate the prompt's expression independently of the steps.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for family in [Family::Add, Family::Sub, Family::Mul, Family::Chain, Family::LongChain] {
            for d in 1..=MAX_DIFFICULTY {
                let p = generate(family, d, &mut rng).unwrap();
                let expr = p.prompt.trim_start_matches("Compute ").trim_start_matches("What is ");
                let toks: Vec<&str> = expr.split(' ').collect();
                let mut acc: i64 = toks[0].parse().unwrap();
                for pair in toks[1..].chunks(2) {
                    let n: i64 = pair[1].parse().unwrap();
                    acc = match pair[0] {
                        "+" => acc + n,
                        "-" => acc - n,
                        "*" => acc * n,
                        op => panic!("op {op}"),
                    };
                }
                assert_eq!(acc.to_string(), p.answer, "{p:?}");
            }
        }
    }

    #[test]
    fn difficulty_sets_the_size_of_the_numbers() {
        // (family, difficulty, largest operand digits)
        let cases = [
            (Family::Add, 1, 1),
            (Family::Add, 3, 2),
            (Family::Add, 5, 3),
            (Family::Mul, 2, 2),
            (Family::Chain, 1, 1),
            (Family::Chain, 5, 3),
            (Family::LongChain, 1, 1),
            (Family::LongChain, 5, 1),
        ];
        for (family, d, digits) in cases {
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let widest = (0..100)
                .map(|_| generate(family, d, &mut rng).unwrap())
                .flat_map(|p| {
                    p.prompt
                        .split(' ')
                        .filter_map(|t| t.parse::<i64>().ok())
                        .map(|n| n.to_string().len())
                        .collect::<Vec<_>>()
                })
                .max()
                .unwrap();
            assert_eq!(widest, digits, "{family:?} at difficulty {d}");
        }
    }

    #[test]
    fn difficulty_is_checked_at_its_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for (d, ok) in [(0, false), (1, true), (MAX_DIFFICULTY, true), (MAX_DIFFICULTY + 1, false)] {
            assert_eq!(generate(Family::Add, d, &mut rng).is_ok(), ok, "difficulty {d}");
        }
    }

    #[test]
    fn early_levels_never_go_negative() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (family, levels) in [(Family::Sub, 2), (Family::Chain, 2), (Family::LongChain, MAX_DIFFICULTY)] {
            for d in 1..=levels {
                for _ in 0..300 {
                    let p = generate(family, d, &mut rng).unwrap();
                    assert!(!p.answer.starts_with('-'), "{p:?}");
                }
            }
        }
    }

    #[test]
    fn long_chain_difficulty_is_the_number_of_steps() {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        for d in 1..=MAX_DIFFICULTY {
            for _ in 0..50 {
                let p = generate(Family::LongChain, d, &mut rng).unwrap();
                assert_eq!(p.steps.len(), d as usize + 1, "{p:?}");
                assert_eq!(p.key.split(' ').count(), 2 * (d as usize + 2) - 1, "{p:?}");
            }
        }
    }

    #[test]
    fn place_values_of_numbers() {
        for (n, want) in
            [(0, vec![0]), (7, vec![7]), (40, vec![40]), (305, vec![300, 5]), (1234, vec![1000, 200, 30, 4])]
        {
            assert_eq!(place_values(n), want, "{n}");
        }
    }
}
