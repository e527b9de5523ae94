//! The labelled answer pairs of the benchmark (`bench/reward/math_pairs.jsonl`, built by
//! `bench/reward/make_pairs.py`) as a golden test: every verdict of `math::score` must match
//! its label. Only correctness is checked here; the speed comparison is the bench's job.

use r1_reward::job::ScoreJob;

#[derive(serde::Deserialize)]
struct Pair {
    id: u64,
    gold: String,
    completion: String,
    label: bool,
}

#[test]
fn benchmark_pairs_match_their_labels() {
    let path = format!(
        "{}/../bench/reward/math_pairs.jsonl",
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).expect("bench/reward/math_pairs.jsonl is committed");
    let pairs: Vec<Pair> = text.lines().map(|l| serde_json::from_str(l).expect("valid pair line")).collect();
    assert!(pairs.len() >= 500, "only {} pairs", pairs.len());
    let wrong: Vec<String> = pairs
        .iter()
        .filter(|p| {
            let job = ScoreJob {
                id: p.id.into(),
                verifier: "math".into(),
                completion: p.completion.clone(),
                ground_truth: Some(p.gold.clone()),
                ..Default::default()
            };
            (r1_reward::math::score(&job).reward == 1.0) != p.label
        })
        .map(|p| format!("#{} gold `{}` completion `{}` label {}", p.id, p.gold, p.completion, p.label))
        .collect();
    assert!(wrong.is_empty(), "{} of {} pairs wrong:\n{}", wrong.len(), pairs.len(), wrong.join("\n"));
}
