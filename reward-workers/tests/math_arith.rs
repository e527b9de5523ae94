//! Exact arithmetic against a reference: `tests/data/math/arith.jsonl` holds random LaTeX
//! expressions and their values computed with Python's `fractions` (`make_arith.py` beside it).
//! Each expression must equal its value and must not equal the value plus 1/q.

use r1_reward::math::is_equivalent;

#[derive(serde::Deserialize)]
struct Case {
    latex: String,
    value: String,
}

#[test]
fn expressions_equal_their_reference_values() {
    let text = include_str!("data/math/arith.jsonl");
    let cases: Vec<Case> = text.lines().map(|l| serde_json::from_str(l).expect("valid case line")).collect();
    assert_eq!(cases.len(), 300);
    let mut wrong = Vec::new();
    for c in &cases {
        let (p, q) = c.value.split_once('/').expect("value is p/q");
        let (p, q): (i128, i128) = (p.parse().unwrap(), q.parse().unwrap());
        let value = format!("\\frac{{{p}}}{{{q}}}");
        let off = format!("\\frac{{{}}}{{{q}}}", p + 1);
        if !is_equivalent(&c.latex, &value) {
            wrong.push(format!("`{}` should equal {value}", c.latex));
        }
        if is_equivalent(&c.latex, &off) {
            wrong.push(format!("`{}` should not equal {off}", c.latex));
        }
    }
    assert!(wrong.is_empty(), "{} wrong:\n{}", wrong.len(), wrong.join("\n"));
}
