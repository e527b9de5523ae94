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
    assert_eq!(answer(both, &[AnswerSource::Boxed, AnswerSource::AnswerTag]).as_deref(), Some("1"));
    assert_eq!(answer(both, &[AnswerSource::AnswerTag, AnswerSource::Boxed]).as_deref(), Some("2"));
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
    assert!(serde_json::from_str::<MathConfig>(r#"{"sources": ["first_number"]}"#).is_err());
}

/// The sources benchmarks and GSM8K-style completions need, with their traps: thousands
/// commas, `####` with spaces, units after the number, currency signs.
#[test]
fn hashes_answer_phrases_and_last_numbers() {
    use AnswerSource::*;
    let cases: &[(&[AnswerSource], &str, Option<&str>)] = &[
        (&[Hashes], "48/2 = 24\n48+24 = 72\n#### 72", Some("72")),
        (&[Hashes], "so\n####    1,000  ", Some("1000")),
        (&[Hashes], "####18 dollars", Some("18")),
        (&[Hashes], "#### $1,250.50", Some("1250.50")),
        (&[Hashes], "#### \\frac{1}{2}", Some("\\frac{1}{2}")),
        (&[Hashes], "no hashes, 72", None),
        (&[Hashes], "####   ", None),
        (&[AnswerIs], "Therefore, the final answer is 5. I hope it is correct", Some("5")),
        (&[AnswerIs], "Thus the answer is 18 dollars.", Some("18")),
        (&[AnswerIs], "The answer is: $1,000.", Some("1000")),
        (&[AnswerIs], "The answer is $\\frac{3}{4}$.", Some("\\frac{3}{4}")),
        (&[AnswerIs], "Let me think.\nAnswer: C", Some("C")),
        (&[AnswerIs], "answer: B) 12 apples", Some("B) 12 apples")),
        (&[AnswerIs], "The answer is 4 km/h", Some("4")),
        (&[AnswerIs], "no phrase here", None),
        (&[LastNumber], "She had 3 apples and bought 1,200 more: 1,203 in all.", Some("1203")),
        (&[LastNumber], "The change is -4.5 degrees", Some("-4.5")),
        (&[LastNumber], "a 12,34 b", Some("34")),
        (&[LastNumber], "nothing numeric", None),
        (&[Boxed, Hashes, LastNumber], "#### 7 but \\boxed{8}", Some("8")),
        (&[Hashes, LastNumber], "I get 7, then 9", Some("9")),
    ];
    for (order, text, want) in cases {
        assert_eq!(answer(text, order).as_deref(), *want, "{order:?} {text:?}");
    }
}

/// GSM8K completions scored against golds extracted from published rows.
#[test]
fn gsm8k_completions_score_against_extracted_golds() {
    let cfg: MathConfig = serde_json::from_value(
        serde_json::json!({"sources": ["boxed", "answer_tag", "hashes", "answer_is", "last_number"]}),
    )
    .unwrap();
    let gold = |row: &str| r1_spec::AnswerKind::Gsm8k.gold(row).unwrap();
    // (completion, published answer column, reward)
    let cases = [
        ("Natalia sold 24 in May, 72 in all.\n#### 72", "...\n#### 72", 1.0),
        ("The total is 1,000 dollars.\n#### 1,000", "...\n#### 1000", 1.0),
        ("#### 1000", "...\n####  1,000", 1.0),
        ("So the answer is $18.", "...\n#### 18", 1.0),
        ("The answer is 18 dollars.", "...\n#### 18", 1.0),
        ("<answer> 18 </answer>", "...\n#### 18", 1.0),
        ("I think 17 then.", "...\n#### 18", 0.0),
        ("#### 180", "...\n#### 18", 0.0),
        ("\\boxed{0.5}", "...\n#### 1/2", 1.0),
    ];
    for (completion, row, want) in cases {
        let r = score_with(&job(completion, Some(&gold(row))), &cfg);
        assert_eq!(r.reward, want, "{completion:?} vs {row:?}: {}", r.detail);
    }
}
