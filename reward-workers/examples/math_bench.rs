//! Accuracy and speed of the math verifier on labelled answer pairs.
//!
//! `cargo run --release -p r1-reward --example math_bench -- PAIRS.jsonl [VERDICTS.jsonl]`
//! reads lines `{"id", "gold", "completion", "label"}` (see `bench/reward/make_pairs.py`), scores
//! each completion with `math::score` on one thread, prints a JSON summary (agreement with the
//! labels, µs per answer over repeated passes in wall and thread CPU time), and writes per-pair
//! verdicts if asked.

use std::io::Write;
use std::time::Instant;

use r1_reward::job::{ScoreJob, Status};
use r1_reward::math;

#[derive(serde::Deserialize)]
struct Pair {
    id: serde_json::Value,
    #[serde(default)]
    kind: String,
    gold: String,
    completion: String,
    label: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: math_bench PAIRS.jsonl [VERDICTS.jsonl]")?;
    let out = args.next();
    let text = std::fs::read_to_string(&path)?;
    let pairs: Vec<Pair> =
        text.lines().filter(|l| !l.trim().is_empty()).map(serde_json::from_str).collect::<Result<_, _>>()?;
    let jobs: Vec<ScoreJob> = pairs
        .iter()
        .map(|p| ScoreJob {
            id: p.id.clone(),
            verifier: "math".into(),
            completion: p.completion.clone(),
            ground_truth: Some(p.gold.clone()),
            ..Default::default()
        })
        .collect();

    let verdicts: Vec<bool> = jobs.iter().map(|j| math::score(j).reward == 1.0).collect();
    let no_answer = jobs.iter().filter(|j| math::score(j).status == Status::NoAnswer).count();
    let correct = verdicts.iter().zip(&pairs).filter(|(v, p)| **v == p.label).count();

    // Repeat whole passes until at least ~1 s has been measured.
    let mut passes = 0u32;
    let (start, cpu_start) = (Instant::now(), thread_cpu_seconds());
    while passes < 3 || start.elapsed().as_secs_f64() < 1.0 {
        for j in &jobs {
            std::hint::black_box(math::score(std::hint::black_box(j)));
        }
        passes += 1;
    }
    let answers = passes as f64 * jobs.len() as f64;
    let us = start.elapsed().as_secs_f64() * 1e6 / answers;
    let us_cpu = (thread_cpu_seconds() - cpu_start) * 1e6 / answers;

    // Per kind of answer: one timed pass each, repeated like the whole set.
    let mut by_kind = serde_json::Map::new();
    let mut kinds: Vec<&str> = pairs.iter().map(|p| p.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let subset: Vec<&ScoreJob> = jobs.iter().zip(&pairs).filter(|(_, p)| p.kind == kind).map(|(j, _)| j).collect();
        let cpu = thread_cpu_seconds();
        for _ in 0..passes {
            for j in &subset {
                std::hint::black_box(math::score(std::hint::black_box(j)));
            }
        }
        let us = (thread_cpu_seconds() - cpu) * 1e6 / (passes as f64 * subset.len() as f64);
        by_kind.insert(kind.to_string(), ((us * 100.0).round() / 100.0).into());
    }

    if let Some(out) = out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
        for (p, v) in pairs.iter().zip(&verdicts) {
            writeln!(f, "{}", serde_json::json!({"id": p.id, "verdict": v}))?;
        }
    }
    let summary = serde_json::json!({
        "verifier": "r1-reward math",
        "pairs": pairs.len(),
        "agree_with_label": correct,
        "accuracy": correct as f64 / pairs.len() as f64,
        "no_answer": no_answer,
        "us_per_answer_wall": (us * 100.0).round() / 100.0,
        "us_per_answer_cpu": (us_cpu * 100.0).round() / 100.0,
        "us_per_answer_cpu_by_kind": by_kind,
        "passes": passes,
    });
    println!("{summary}");
    Ok(())
}

/// CPU time this thread has used, so a busy shared machine does not inflate the numbers.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant Linux supports.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
