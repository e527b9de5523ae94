//! Language consistency: proportion of chain-of-thought words in the target language's script.

use r1_reward::job::{ScoreJob, Status, score};
use r1_reward::language::{Script, count_words, scripts_for};

fn job(completion: &str, language: Option<&str>) -> ScoreJob {
    ScoreJob {
        id: "l".into(),
        verifier: "language".into(),
        completion: completion.into(),
        ground_truth: None,
        language: language.map(Into::into),
        ..Default::default()
    }
}

/// `(text, language, target words, all words)`.
const COUNTS: &[(&str, &str, usize, usize)] = &[
    ("Let us add the numbers", "en", 5, 5),
    ("Let a be 3", "en", 2, 2),
    ("我们先计算", "zh", 5, 5),
    ("First 我们 compute", "en", 2, 4),
    ("First 我们 compute", "zh", 2, 4),
    ("x + y = 3, so x = 1", "en", 1, 1),
    ("\\frac{a}{b} is the ratio", "en", 3, 3),
    ("Привет мир and hello", "ru", 2, 4),
    ("日本語とカタカナ", "ja", 8, 8),
    ("한국어 문장", "ko", 2, 2),
    ("123 + 456 = 579 !", "en", 0, 0),
    ("café naïve résumé", "fr", 3, 3),
    ("Ελληνικά words", "el", 1, 2),
];

#[test]
fn word_counts() {
    for (text, lang, hits, total) in COUNTS {
        let target = scripts_for(lang).unwrap();
        assert_eq!(count_words(text, target), (*hits, *total), "`{text}` in {lang}");
    }
}

#[test]
fn language_codes() {
    assert_eq!(scripts_for("en"), Some(&[Script::Latin][..]));
    assert_eq!(scripts_for("zh-CN"), Some(&[Script::Han][..]));
    assert_eq!(scripts_for("ZH_tw"), Some(&[Script::Han][..]));
    assert_eq!(scripts_for("klingon"), None);
}

#[test]
fn scoring_uses_the_think_block() {
    let r = score(&job("<think>First 我 compute it</think><answer>答案</answer>", Some("en")));
    assert_eq!(r.status, Status::Ok, "{}", r.detail);
    assert_eq!(r.reward, 0.75, "{}", r.detail);
    assert_eq!(r.components.get("language"), Some(&0.75));
    assert!(r.detail.contains("3 of 4 words in <think>"), "{}", r.detail);

    let r = score(&job("no tags at all here", Some("en")));
    assert_eq!((r.reward, r.status), (1.0, Status::Ok));
    assert!(r.detail.contains("no <think>"), "{}", r.detail);

    let r = score(&job("<think>unclosed 思考", Some("zh")));
    assert_eq!(r.reward, 2.0 / 3.0, "{}", r.detail);
}

#[test]
fn missing_or_unknown_language_is_invalid_input() {
    let r = score(&job("<think>hello</think>", None));
    assert_eq!(r.status, Status::InvalidInput);
    assert!(r.detail.contains("set it to the target language code"), "{}", r.detail);
    let r = score(&job("<think>hello</think>", Some("xx")));
    assert_eq!(r.status, Status::InvalidInput);
    assert!(r.detail.contains("unsupported language `xx`"), "{}", r.detail);
}

#[test]
fn no_words_is_no_answer_not_a_score() {
    let r = score(&job("<think>1 + 1 = 2</think><answer>2</answer>", Some("en")));
    assert_eq!((r.reward, r.status), (0.0, Status::NoAnswer));
}
