//! Reward composition from a spec, and the DAPO overlong penalty it can include.

use r1_reward::compose::{Reward, RewardSpec, SpecError};
use r1_reward::job::{ScoreJob, Status, score};
use r1_reward::length::{OverlongConfig, overlong_penalty};

fn job(completion: &str, gold: Option<&str>) -> ScoreJob {
    ScoreJob {
        id: 7.into(),
        verifier: "composite".into(),
        completion: completion.into(),
        ground_truth: gold.map(Into::into),
        language: Some("en".into()),
        ..Default::default()
    }
}

fn spec(toml_text: &str) -> RewardSpec {
    #[derive(serde::Deserialize)]
    struct RunConfig {
        reward: RewardSpec,
    }
    toml::from_str::<RunConfig>(toml_text).expect("spec parses").reward
}

const R1: &str = r#"reward = [
    {name = "accuracy", verifier = "math", weight = 1.0},
    {name = "format", verifier = "format", weight = 0.5},
    {name = "lang", verifier = "language", weight = 0.1},
]"#;

#[test]
fn weighted_sum_with_each_component_reported() {
    let reward = Reward::new(&spec(R1)).unwrap();
    let r = reward.score(&job("<think>two plus two</think><answer>\\boxed{4}</answer>", Some("4")), None);
    assert_eq!(r.status, Status::Ok, "{}", r.detail);
    assert_eq!(r.reward, 1.6);
    assert_eq!(r.components.get("accuracy"), Some(&1.0));
    assert_eq!(r.components.get("format"), Some(&1.0));
    assert_eq!(r.components.get("lang"), Some(&1.0));
    assert!(r.detail.contains("accuracy: answer `4` equals"), "{}", r.detail);

    let r = reward.score(&job("The answer is \\boxed{5}", Some("4")), None);
    assert_eq!(r.status, Status::Ok, "{}", r.detail);
    assert_eq!((r.components["accuracy"], r.components["format"]), (0.0, 0.0));
    assert_eq!(r.reward, 0.1);

    // No answer is a verdict (reward 0), not an error.
    let r = reward.score(&job("<think>hmm</think><answer>I give up</answer>", Some("4")), None);
    assert_eq!(r.status, Status::Ok, "{}", r.detail);
    assert_eq!(r.components["accuracy"], 0.0);
}

#[test]
fn erroring_component_is_an_error_never_a_silent_zero() {
    let reward = Reward::new(&spec(R1)).unwrap();
    let r = reward.score(&job("<think>a</think><answer>4</answer>", None), None);
    assert_eq!(r.status, Status::InvalidInput);
    assert!(r.detail.contains("component `accuracy`") && r.detail.contains("ground_truth"), "{}", r.detail);
    assert!(!r.components.contains_key("accuracy"));
}

#[test]
fn spec_errors_say_what_to_fix() {
    let bad = |text: &str| Reward::new(&spec(text)).unwrap_err();
    let e = bad(r#"reward = [{name = "acc", verifier = "maths", weight = 1.0}]"#);
    assert!(matches!(e, SpecError::UnknownVerifier { .. }), "{e}");
    assert!(e.to_string().contains("use one of math, format"), "{e}");
    assert!(matches!(bad("reward = []"), SpecError::Empty));
    let e = bad(
        r#"reward = [{name = "a", verifier = "math", weight = 1.0}, {name = "a", verifier = "format", weight = 1.0}]"#,
    );
    assert!(matches!(e, SpecError::DuplicateName(_)), "{e}");
    let e = bad(r#"reward = [{name = "a", verifier = "math", weight = nan}]"#);
    assert!(matches!(e, SpecError::BadWeight { .. }), "{e}");
    let e = bad(r#"reward = [{name = "a", verifier = "math", weight = 1.0, options = {source = ["boxed"]}}]"#);
    assert!(matches!(e, SpecError::BadOptions { .. }) && e.to_string().contains("unknown field"), "{e}");
    let e = bad(r#"reward = [{name = "a", verifier = "language", weight = 1.0, options = {lang = "en"}}]"#);
    assert!(matches!(e, SpecError::BadOptions { .. }), "{e}");
    let e = bad(r#"reward = [{name = "f", verifier = "format", weight = 1.0, options = {pattern = "(<think>"}}]"#);
    assert!(matches!(e, SpecError::Format { .. }), "{e}");
    let e = bad(
        r#"reward = [{name = "o", verifier = "overlong", weight = 1.0, options = {max_len = 100, cache_len = 200}}]"#,
    );
    assert!(matches!(e, SpecError::Length { .. }), "{e}");
    let e = bad(r#"reward = [{name = "o", verifier = "overlong", weight = 1.0, options = {max_len = 100}}]"#);
    assert!(e.to_string().contains("missing field `cache_len`"), "{e}");
}

#[test]
fn spec_fields_are_checked_when_parsing() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct RunConfig {
        reward: RewardSpec,
    }
    let missing = toml::from_str::<RunConfig>(r#"reward = [{name = "a", verifier = "math"}]"#).unwrap_err();
    assert!(missing.to_string().contains("missing field `weight`"), "{missing}");
    let unknown = toml::from_str::<RunConfig>(r#"reward = [{name = "a", verifier = "math", weight = 1.0, scale = 2}]"#)
        .unwrap_err();
    assert!(unknown.to_string().contains("unknown field `scale`"), "{unknown}");
}

#[test]
fn options_reach_the_verifiers() {
    let text = r#"reward = [
        {name = "acc", verifier = "math", weight = 1.0, options = {sources = ["answer_tag"]}},
        {name = "fmt", verifier = "format", weight = 1.0, options = {pattern = '(?s)\A<answer>.*</answer>\z'}},
    ]"#;
    let reward = Reward::new(&spec(text)).unwrap();
    let r = reward.score(&job("<answer>\\boxed{3} or 4</answer>", Some("3")), None);
    assert_eq!((r.components["acc"], r.components["fmt"]), (1.0, 1.0), "{}", r.detail);
    let r = reward.score(&job("\\boxed{3} <answer>4</answer>", Some("3")), None);
    assert_eq!((r.components["acc"], r.components["fmt"]), (0.0, 0.0), "{}", r.detail);
}

#[test]
fn overlong_component_needs_the_token_count() {
    let text = r#"reward = [
        {name = "acc", verifier = "math", weight = 1.0},
        {name = "len", verifier = "overlong", weight = 1.0, options = {max_len = 1000, cache_len = 200}},
    ]"#;
    let reward = Reward::new(&spec(text)).unwrap();
    let j = job("\\boxed{4}", Some("4"));
    assert_eq!(reward.score(&j, Some(500)).reward, 1.0);
    let r = reward.score(&j, Some(900));
    assert_eq!((r.reward, r.components["len"]), (0.5, -0.5));
    assert_eq!(reward.score(&j, Some(5000)).reward, 0.0);
    let r = reward.score(&j, None);
    assert_eq!(r.status, Status::InvalidInput);
    assert!(r.detail.contains("pass the generated token count"), "{}", r.detail);
}

#[test]
fn overlong_penalty_at_its_boundaries() {
    // L_max = 100, L_cache = 20: free up to 80, linear to -1 at 100, -1 beyond.
    let table = [
        (0, 0.0),
        (79, 0.0),
        (80, 0.0),
        (81, -0.05),
        (90, -0.5),
        (99, -0.95),
        (100, -1.0),
        (101, -1.0),
        (10_000, -1.0),
    ];
    for (len, want) in table {
        let got = overlong_penalty(len, 100, 20);
        assert!((got - want).abs() < 1e-12, "len {len}: {got} != {want}");
    }
    // A zero cache is a hard cut.
    assert_eq!((overlong_penalty(100, 100, 0), overlong_penalty(101, 100, 0)), (0.0, -1.0));
    let cfg = OverlongConfig { max_len: 100, cache_len: 20 };
    assert_eq!(cfg.validate(), Ok(()));
    assert_eq!(cfg.penalty(90), -0.5);
    assert!(OverlongConfig { max_len: 0, cache_len: 0 }.validate().is_err());
    let e = OverlongConfig { max_len: 10, cache_len: 11 }.validate().unwrap_err();
    assert!(e.to_string().contains("make cache_len at most max_len"), "{e}");
}

#[test]
fn dispatcher_routes_by_verifier_name() {
    let mut j = job("<think>two plus two</think><answer>\\boxed{4}</answer>", Some("4"));
    for (verifier, component) in [("math", "math"), ("format", "format"), ("language", "language")] {
        j.verifier = verifier.into();
        let r = score(&j);
        assert_eq!((r.reward, r.status), (1.0, Status::Ok), "{verifier}: {}", r.detail);
        assert_eq!(r.components.get(component), Some(&1.0), "{verifier}");
    }
    j.verifier = "maths".into();
    let r = score(&j);
    assert_eq!((r.reward, r.status), (0.0, Status::InvalidInput));
    assert!(r.detail.contains("unknown verifier `maths`; use one of"), "{}", r.detail);
}
