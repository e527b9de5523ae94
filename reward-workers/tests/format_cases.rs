//! The format verifier on the R1 template and on a custom pattern.

use r1_reward::format::{FormatConfig, FormatVerifier};

/// `(completion, expected error fragment or None for well-formed)`.
const DEFAULT_TEMPLATE: &[(&str, Option<&str>)] = &[
    ("<think>2+2 is 4</think><answer>4</answer>", None),
    ("<think>\nreasoning\n</think>\n<answer>\n4\n</answer>\n", None),
    ("  <think></think> <answer>x</answer>  ", None),
    ("<think>a</think><answer>$\\boxed{4}$</answer>", None),
    ("<answer>4</answer>", Some("no `<think>` tag")),
    ("<think>a<answer>4</answer>", Some("no `</think>` tag")),
    ("<think>a</think>4", Some("no `<answer>` tag")),
    ("<think>a</think><answer>4", Some("no `</answer>` tag")),
    ("Sure! <think>a</think><answer>4</answer>", Some("text before `<think>`")),
    ("<think>a</think>so: <answer>4</answer>", Some("text between `</think>` and `<answer>`")),
    ("<think>a</think><answer>4</answer> hope this helps", Some("text after `</answer>`")),
    ("<think>a</think><answer>  </answer>", Some("`<answer>` is empty")),
    ("<think>a</think><think>b</think><answer>4</answer>", Some("`<think>` appears 2 times")),
    ("<think>a</think><answer>4</answer><answer>5</answer>", Some("`<answer>` appears 2 times")),
    ("</think>a<think><answer>4</answer>", Some("`</think>` comes before `<think>`")),
    ("<think>a<answer>4</answer></think>", Some("`<answer>` comes before `</think>`")),
    ("<think>a</think></answer>4<answer>", Some("`</answer>` comes before `<answer>`")),
    ("", Some("no `<think>` tag")),
];

#[test]
fn default_template() {
    let v = FormatVerifier::new(&FormatConfig::default()).unwrap();
    for (text, want) in DEFAULT_TEMPLATE {
        match (v.check(text), want) {
            (Ok(()), None) => {}
            (Err(why), Some(frag)) => assert!(why.contains(frag), "`{text}`: got `{why}`, want `{frag}`"),
            (got, _) => panic!("`{text}`: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn custom_pattern_is_the_whole_rule() {
    let cfg = FormatConfig { pattern: r"(?s)\A<reasoning>.+</reasoning>\s*Final: \S+\z".into() };
    let v = FormatVerifier::new(&cfg).unwrap();
    assert_eq!(v.check("<reasoning>hm</reasoning>\nFinal: 4"), Ok(()));
    let err = v.check("<think>hm</think><answer>4</answer>").unwrap_err();
    assert!(err.contains("does not match the format pattern"), "{err}");
}

#[test]
fn bad_pattern_is_an_error_that_says_what_to_fix() {
    let err = FormatVerifier::new(&FormatConfig { pattern: "(<think>".into() }).unwrap_err();
    assert!(err.to_string().contains("fix `pattern` in the reward spec"), "{err}");
}

#[test]
fn hostile_completions_are_linear() {
    let v = FormatVerifier::new(&FormatConfig::default()).unwrap();
    let big = format!("<think>{}</think><answer>4</answer>", "<think".repeat(200_000));
    let start = std::time::Instant::now();
    assert_eq!(v.check(&big), Ok(()));
    assert!(v.check(&"<think>".repeat(100_000)).is_err());
    assert!(start.elapsed() < std::time::Duration::from_secs(2), "took {:?}", start.elapsed());
}
