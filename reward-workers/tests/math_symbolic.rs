//! Symbolic equality against a reference: `tests/data/math/symbolic.jsonl` holds pairs of
//! `sympy.latex` forms of one expression (expanded, factored, simplified) that sympy calls
//! equal, and perturbed pairs it calls different (`make_symbolic.py` beside it).

use r1_reward::math::is_equivalent;

#[derive(serde::Deserialize)]
struct Case {
    a: String,
    b: String,
    equal: bool,
}

#[test]
fn sympy_forms_compare_as_sympy_says() {
    let text = include_str!("data/math/symbolic.jsonl");
    let cases: Vec<Case> = text.lines().map(|l| serde_json::from_str(l).expect("valid case line")).collect();
    assert_eq!(cases.len(), 300);
    let wrong: Vec<String> = cases
        .iter()
        .filter(|c| is_equivalent(&c.a, &c.b) != c.equal)
        .map(|c| format!("`{}` vs `{}`: expected {}", c.a, c.b, c.equal))
        .collect();
    assert!(wrong.is_empty(), "{} of {} wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}
