//! Hostile and malformed answers: the verifier must return (never panic, never hang) within a
//! small time bound, and must not call them equal unless they are.

use std::time::{Duration, Instant};

use r1_reward::math::{extract, is_equivalent};

/// Generous even for an unoptimised build on a loaded machine; real cost is microseconds.
const BOUND: Duration = Duration::from_millis(250);

fn check(gold: &str, pred: &str, expected: bool) {
    let start = Instant::now();
    let got = is_equivalent(gold, pred);
    let took = start.elapsed();
    let show = |s: &str| s.chars().take(60).collect::<String>();
    assert!(took < BOUND, "`{}` vs `{}` took {took:?}", show(gold), show(pred));
    assert_eq!(got, expected, "`{}` vs `{}`", show(gold), show(pred));
}

#[test]
fn huge_powers_are_bounded() {
    check("2^{10^{10}}", "2^{10^{10}}+1", false);
    check("2^{10^{10}}", "2^{10^{10}}", true); // equal text
    check("10^{10^{10}}", "5", false);
    check("9^{9^{9^{9}}}", "9^{9^{9^{9}}}-1", false);
    check("2^{-10^{10}}", "0", false);
    check("1e99999", "1", false);
    check("(10^{1000})^{1000}", "10^{1000000}", false);
    check("2^{10000}", "2^{9999} \\cdot 2", true);
    check("x^{x^{x^{x^{x}}}}", "x^{x^{x^{x^{x}}}}+1", false);
}

#[test]
fn huge_factorials_and_binomials_are_bounded() {
    check("1000!", "1000 \\cdot 999!", true);
    check("(1000!)!", "1", false);
    check("\\binom{1000000}{500000}", "2", false);
    check("100000000000!", "3", false);
}

#[test]
fn division_by_zero_is_not_a_value() {
    check("\\frac{1}{0}", "\\frac{2}{0}", false);
    check("0^{-1}", "1", false);
    check("\\frac{x}{x-x}", "1", false);
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = |open: &str, mid: &str, close: &str, n: usize| format!("{}{mid}{}", open.repeat(n), close.repeat(n));
    check(&deep("(", "1", ")", 100_000), "1", false);
    check(&deep("(", "1", ")", 300), "1", false);
    check(&deep("(", "1", ")", 20), "1", true);
    check(&deep("\\frac{1}{", "2", "}", 200), "1", false);
    check(&deep("\\sqrt{", "4", "}", 100), "2", false);
    check(&deep("-", "1", "", 5000), "1", false);
    // Too long to parse, so compared as text without braces: still the right verdict.
    check(&deep("{", "7", "}", 50_000), "7", true);
    check(&deep("{", "7", "}", 50_000), "8", false);
    check(&"x^".repeat(300).to_string(), "x", false);
}

#[test]
fn long_and_odd_inputs_return() {
    check(&"1".repeat(5_000), &"1".repeat(5_000), true);
    check(&"9".repeat(900), &format!("{}+0", "9".repeat(900)), true);
    check(&"1+".repeat(400).to_string(), "400", false);
    check(&format!("{}1", "1+".repeat(300)), "301", true);
    let big_set = format!("\\{{{}\\}}", (0..300).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
    check(&big_set, &big_set.replace("\\{0,", "\\{0, "), true);
    let list = |n: usize, rev: bool| {
        let mut v: Vec<String> = (1..=n).map(|i| format!("x^{{2}}+{i}x")).collect();
        if rev {
            v.reverse();
        }
        v.join(", ")
    };
    check(&list(60, false), &list(60, true), true); // 60 symbolic items, matched order-free
    check(&list(60, false), &list(59, true), false);
    // Over the item cap (64): refused, even though the lists are equal as sets.
    let short = |n: usize| (1..=n).map(|i| format!("{i}x")).collect::<Vec<_>>();
    let (up, mut down) = (short(70), short(70));
    down.reverse();
    check(&up.join(","), &down.join(","), false);
    check(&short(64).join(","), &short(64).into_iter().rev().collect::<Vec<_>>().join(","), true);
    check("", "", true);
    check("", "5", false);
    check("\\", "\\", true);
    check("\\frac{", "5", false);
    check("}}}{{{", "5", false);
    check("\\begin{pmatrix}", "\\end{pmatrix}", false);
    check("\u{0}\u{7f}\u{feff}", "5", false);
    check("💥", "5", false);
    check("$$$$", "5", false);
}

#[test]
fn extraction_of_hostile_completions_is_linear() {
    let unclosed = "\\boxed{".repeat(200_000);
    let start = Instant::now();
    assert_eq!(extract::last_boxed(&unclosed), None);
    let closed_late = format!("{}\\boxed{{5}}{}", "x".repeat(1_000_000), "\\boxed{".repeat(50_000));
    assert_eq!(extract::last_boxed(&closed_late), None, "only the last boxes are tried");
    let tags = "<answer>".repeat(100_000);
    assert_eq!(extract::last_answer_tag(&tags), None);
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
}

/// A deterministic fuzz: strings glued from LaTeX fragments must never panic or hang.
#[test]
fn fuzzed_fragments_never_panic_or_hang() {
    const PARTS: &[&str] = &[
        "\\frac",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "\\{",
        "\\}",
        "1",
        "23",
        "0",
        ".",
        ",",
        "x",
        "y",
        "^",
        "_",
        "-",
        "+",
        "\\sqrt",
        "\\pi",
        "\\infty",
        "=",
        "<",
        "\\le",
        "\\pm",
        "\\cup",
        "\\text{cm}",
        "\\%",
        "!",
        "e",
        "10^{99}",
        "\\begin{pmatrix}",
        "\\end{pmatrix}",
        "&",
        "\\\\",
        "|",
        " ",
        "\\boxed{",
        "\\left(",
        "\\right)",
        "\\sin",
        "\\log_",
        "\\binom",
        "9^{9^{9}}",
        "/",
        "\\cdot",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let start = Instant::now();
    for _ in 0..3_000 {
        let len = (next() % 24) as usize;
        let a: String = (0..len).map(|_| PARTS[(next() % PARTS.len() as u64) as usize]).collect();
        let b: String = (0..len / 2 + 1).map(|_| PARTS[(next() % PARTS.len() as u64) as usize]).collect();
        let one = Instant::now();
        let _ = is_equivalent(&a, &b);
        let _ = is_equivalent(&a, &a);
        assert!(one.elapsed() < BOUND, "`{a}` vs `{b}` took {:?}", one.elapsed());
    }
    assert!(start.elapsed() < Duration::from_secs(20), "fuzz took {:?}", start.elapsed());
}

/// Real expressions cut short or with one character dropped: malformed in every way a truncated
/// generation can be. None may panic or hang.
#[test]
fn truncated_and_damaged_expressions_never_panic() {
    let text = concat!(include_str!("data/math/arith.jsonl"), include_str!("data/math/symbolic.jsonl"));
    let start = Instant::now();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = v.get("latex").or_else(|| v.get("a")).and_then(|s| s.as_str()).unwrap();
        let chars: Vec<char> = s.chars().collect();
        for cut in (1..chars.len()).step_by(7) {
            let prefix: String = chars[..cut].iter().collect();
            let damaged: String = chars.iter().enumerate().filter(|(i, _)| *i != cut).map(|(_, c)| c).collect();
            let _ = is_equivalent(&prefix, s);
            let _ = is_equivalent(s, &damaged);
        }
    }
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
}
