//! A slice of HumanEval (5 problems × 4 variants, made by `bench/humaneval/make_jobs.py
//! fixture.jsonl --tasks 0,12,32,38,55`): canonical solutions score 1, broken variants 0
//! with the status that says why. The full 164-problem check is `bench/humaneval/run.sh`.

use r1_reward::job::{ScoreJob, Status, score};

const FIXTURE: &str = include_str!("../../bench/humaneval/fixture.jsonl");

fn expected(variant: &str) -> (f64, Status) {
    match variant {
        "canonical" => (1.0, Status::Ok),
        "pass_body" | "off_by_one" => (0.0, Status::Failed),
        "early_exit" => (0.0, Status::ExitedEarly),
        other => panic!("unknown variant {other}"),
    }
}

#[test]
fn humaneval_slice_canonical_pass_and_broken_fail() {
    let jobs: Vec<ScoreJob> = FIXTURE.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(jobs.len(), 20);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> =
            jobs.chunks(5).map(|chunk| s.spawn(move || chunk.iter().map(score).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut wrong = Vec::new();
    for (job, result) in jobs.iter().zip(&results) {
        let id = job.id.as_str().unwrap();
        let want = expected(id.rsplit('/').next().unwrap());
        if (result.reward, result.status) != want {
            wrong.push(format!("{id}: want {want:?}, got ({}, {:?}): {}", result.reward, result.status, result.detail));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
