//! Finding the final answer in a completion, and scoring math jobs end to end.

use r1_reward::job::{ScoreJob, Status, score};
use r1_reward::math::extract::{AnswerSource, answer, last_answer_tag, last_boxed};
use r1_reward::math::{MathConfig, score_with};

#[test]
fn boxed_answers() {
    let cases: &[(&str, Option<&str>)] = &[
        ("so the answer is \\boxed{5}.", Some("5")),
        ("\\boxed{1} then \\boxed{2}", Some("2")),
        ("\\boxed{\\frac{1}{2}}", Some("\\frac{1}{2}")),
        ("\\boxed{\\{1, 2\\}}", Some("\\{1, 2\\}")),
        ("\\boxed{ {a}{b} }", Some("{a}{b}")),
        ("$\\boxed 5$", Some("5")),
        ("\\boxed 12.", Some("12")),
        ("\\fbox{7}", Some("7")),
        ("\\boxed{3} and finally \\fbox{4}", Some("4")),
        ("\\boxed{2} but then \\boxed{3", Some("2")),
        ("\\boxed{}", None),
        ("\\boxed{", None),
        ("\\boxedx", None),
        ("no box here", None),
        ("\\boxed{\\text{(B)}}", Some("\\text{(B)}")),
        ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", Some("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}")),
    ];
    for (text, want) in cases {
        assert_eq!(last_boxed(text), *want, "{text}");
    }
}

#[test]
fn answer_tags_and_order() {
    assert_eq!(last_answer_tag("<think>hm</think><answer> 42 </answer>"), Some("42"));
    assert_eq!(last_answer_tag("<answer>1</answer><answer>2</answer>"), Some("2"));
    assert_eq!(last_answer_tag("<answer>so $\\boxed{9}$</answer>"), Some("9"));
    assert_eq!(last_answer_tag("<answer></answer>"), None);
    assert_eq!(last_answer_tag("<answer>7"), None);
    assert_eq!(last_answer_tag("<answer>So $x = 5$.</answer>"), Some("x = 5"));
    assert_eq!(last_answer_tag("<answer>$1$ or rather $2$</answer>"), Some("2"));
    // FIXME: two currency dollars pair up as a math span.
    assert_eq!(last_answer_tag("<answer>costs $5 and $6</answer>"), Some("5 and"));
    assert_eq!(last_answer_tag("<answer>costs $5</answer>"), Some("costs $5"));
    let both = "\\boxed{1} <answer>2</answer>";
    assert_eq!(answer(both, &[AnswerSource::Boxed, AnswerSource::AnswerTag]), Some("1"));
    assert_eq!(answer(both, &[AnswerSource::AnswerTag, AnswerSource::Boxed]), Some("2"));
    assert_eq!(answer("<answer>3</answer>", &[AnswerSource::Boxed]), None);
}

fn job(completion: &str, gold: Option<&str>) -> ScoreJob {
    ScoreJob {
        id: 1.into(),
        verifier: "math".into(),
        completion: completion.into(),
        ground_truth: gold.map(Into::into),
        ..Default::default()
    }
}

#[test]
fn scoring_math_jobs() {
    let r = score(&job("<think>2+3</think><answer>\\boxed{5}</answer>", Some("5")));
    assert_eq!((r.reward, r.status), (1.0, Status::Ok), "{}", r.detail);
    assert_eq!(r.components.get("math"), Some(&1.0));

    let r = score(&job("\\boxed{6}", Some("5")));
    assert_eq!((r.reward, r.status), (0.0, Status::Ok));
    assert!(r.detail.contains("does not equal"), "{}", r.detail);

    // A MATH-style solution as ground truth: its box is the answer.
    let r = score(&job("\\boxed{\\frac12}", Some("Thus $x = \\boxed{0.5}$.")));
    assert_eq!(r.reward, 1.0, "{}", r.detail);

    let r = score(&job("I think it is 5", Some("5")));
    assert_eq!((r.reward, r.status), (0.0, Status::NoAnswer));

    let r = score(&job("\\boxed{5}", None));
    assert_eq!(r.status, Status::InvalidInput);
    assert!(r.detail.contains("ground_truth"), "{}", r.detail);

    let r = score(&job("\\boxed{5}", Some("  ")));
    assert_eq!(r.status, Status::InvalidInput);

    // R1-style answers are often sentences.
    for (completion, gold) in [
        ("<think>…</think><answer>The answer is 5.</answer>", "5"),
        ("<think>…</think><answer>The final answer is $\\frac{1}{2}$</answer>", "0.5"),
        ("<think>…</think><answer>Answer: (3, 4)</answer>", "(3,4)"),
        ("<think>…</think><answer>So $x = 7$.</answer>", "7"),
    ] {
        let r = score(&job(completion, Some(gold)));
        assert_eq!(r.reward, 1.0, "{completion}: {}", r.detail);
    }

    let cfg = MathConfig { sources: vec![AnswerSource::AnswerTag] };
    let r = score_with(&job("\\boxed{5}<answer>4</answer>", Some("4")), &cfg);
    assert_eq!(r.reward, 1.0, "{}", r.detail);
}

#[test]
fn math_config_rejects_unknown_fields() {
    let ok: MathConfig = serde_json::from_str(r#"{"sources": ["answer_tag", "boxed"]}"#).unwrap();
    assert_eq!(ok.sources, vec![AnswerSource::AnswerTag, AnswerSource::Boxed]);
    assert!(serde_json::from_str::<MathConfig>(r#"{"source": ["boxed"]}"#).is_err());
    assert!(serde_json::from_str::<MathConfig>(r#"{"sources": ["last_number"]}"#).is_err());
}
