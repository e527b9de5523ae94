//! Whether a predicted answer tree equals the gold one. The gold answer decides what counts:
//!
//! - scalars: exact rational equality when both sides are rational (so a rounded decimal is not
//!   the fraction: `0.333` ≠ `\frac13`, but `0.\overline{3}` = `\frac13`); otherwise float equality
//!   (relative 1e-9) at deterministic pseudo-random points in (0.5, 3.5) for every variable, at
//!   least three points defined on both sides and none disagreeing;
//! - `x%` equals both x/100 and x (on either side): `10\%` = `0.1` = `10`;
//! - an assignment `x = 5` (or `x \in S`) on either side is compared by its right-hand side,
//!   so gold `5` accepts `x = 5`; two equations are equal when the differences of their sides are
//!   proportional (`y = 2x+3` = `2y - 4x = 6`);
//! - inequalities in one variable equal the interval they describe (`x > 3` = `(3, \infty)`);
//! - tuples and intervals are ordered and their brackets must match (`(1,2)` ≠ `[1,2]`);
//!   sets, unions and top-level answer lists are compared as multisets, order-free;
//! - matrices compare cell by cell; a column or row vector equals a parenthesised tuple, and a
//!   tuple accepts assignments in the same order (`(2, 3)` = `x = 2, y = 3`);
//! - a one-element set equals its element; word answers compare case-insensitively.

use std::collections::BTreeSet;

use super::eval::{exact, numeric, vars};
use super::parse::Node;

/// Largest list or set compared element-wise (the matching is quadratic); larger ones are
/// never equal unless their text is.
pub const MAX_ITEMS: usize = 64;

pub fn equivalent(gold: &Node, pred: &Node) -> bool {
    use Node::*;
    match (gold, pred) {
        (Text(a), Text(b)) => same_text(a, b),
        (Text(_), _) | (_, Text(_)) => false,
        (Rel { .. }, Rel { .. }) => rel_eq(gold, pred),
        (Rel { .. }, _) => match assignment(gold) {
            Some(rhs) => equivalent(rhs, pred),
            None => as_interval(gold).is_some_and(|iv| equivalent(&iv, pred)),
        },
        (_, Rel { .. }) => match assignment(pred) {
            Some(rhs) => equivalent(gold, rhs),
            None => as_interval(pred).is_some_and(|iv| equivalent(gold, &iv)),
        },
        (List(a) | Set(a), List(b) | Set(b)) => unordered(a, b),
        (Union(a), Union(b)) => unordered(a, b),
        (Union(a), List(b)) => intervals(b).is_some_and(|b| unordered(a, &b)),
        (Set(a), _) if a.len() == 1 => equivalent(&a[0], pred),
        (_, Set(b)) if b.len() == 1 && !matches!(gold, List(_)) => equivalent(gold, &b[0]),
        // `x = 2, y = 3` for the point `(2, 3)`: the values in the order given.
        (Seq { open: '(', close: ')', items }, List(b)) if b.iter().all(|n| assignment(n).is_some()) => {
            items.len() == b.len() && items.iter().zip(b).all(|(x, y)| assignment(y).is_some_and(|v| equivalent(x, v)))
        }
        (Seq { open: o1, close: c1, items: a }, Seq { open: o2, close: c2, items: b }) => {
            o1 == o2 && c1 == c2 && ordered(a, b)
        }
        (Matrix(a), Matrix(b)) => a.len() == b.len() && a.iter().zip(b).all(|(r, s)| ordered(r, s)),
        (Matrix(m), Seq { open: '(', close: ')', items }) | (Seq { open: '(', close: ')', items }, Matrix(m)) => {
            vector(m).is_some_and(|v| ordered(&v, items))
        }
        _ => scalar(gold, pred),
    }
}

fn same_text(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect::<String>();
    norm(a) == norm(b)
}

fn ordered(a: &[Node], b: &[Node]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| equivalent(x, y))
}

fn unordered(a: &[Node], b: &[Node]) -> bool {
    if a.len() != b.len() || a.len() > MAX_ITEMS {
        return false;
    }
    let mut used = vec![false; b.len()];
    a.iter().all(|x| {
        let hit = (0..b.len()).find(|&j| !used[j] && equivalent(x, &b[j]));
        hit.map(|j| used[j] = true).is_some()
    })
}

/// A matrix with one row or one column, as a list.
fn vector(m: &[Vec<Node>]) -> Option<Vec<Node>> {
    if m.len() == 1 {
        Some(m[0].clone())
    } else if m.iter().all(|r| r.len() == 1) {
        Some(m.iter().map(|r| r[0].clone()).collect())
    } else {
        None
    }
}

/// The right-hand side of `x = …` / `x \in …` (or the left of `… = x`).
fn assignment(n: &Node) -> Option<&Node> {
    let Node::Rel { items, ops } = n else { return None };
    // `f(x) = …` parses as the product f·x; as a left-hand side it names a function.
    let named = |n: &Node| match n {
        Node::Var(_) => true,
        Node::Mul(f, x) => matches!((&**f, &**x), (Node::Var(_), Node::Var(_))),
        _ => false,
    };
    match (items.as_slice(), ops.as_slice()) {
        ([lhs, rhs], ['=' | '∈']) if named(lhs) => Some(rhs),
        ([lhs, Node::Var(_)], ['=']) => Some(lhs),
        _ => None,
    }
}

fn flip(op: char) -> char {
    match op {
        '<' => '>',
        '>' => '<',
        '≤' => '≥',
        '≥' => '≤',
        other => other,
    }
}

fn rel_eq(g: &Node, p: &Node) -> bool {
    let (Node::Rel { items: a, ops: oa }, Node::Rel { items: b, ops: ob }) = (g, p) else { return false };
    if oa == ob && ordered(a, b) {
        return true;
    }
    let flipped: Vec<char> = ob.iter().rev().map(|&o| flip(o)).collect();
    if a.len() == b.len() && *oa == flipped && a.iter().zip(b.iter().rev()).all(|(x, y)| equivalent(x, y)) {
        return true;
    }
    if oa == &['='] && ob == &['='] {
        let diff = |v: &[Node]| Node::Add(Box::new(v[0].clone()), Box::new(Node::Neg(Box::new(v[1].clone()))));
        return proportional(&diff(a), &diff(b));
    }
    match (as_interval(g), as_interval(p)) {
        (Some(x), Some(y)) => equivalent(&x, &y),
        _ => false,
    }
}

/// The interval a one-variable inequality (or chain `a < x \le b`) describes.
fn as_interval(n: &Node) -> Option<Node> {
    let Node::Rel { items, ops } = n else { return None };
    let strict = |o: char| o == '<' || o == '>';
    let seq = |open, close, lo: &Node, hi: &Node| Node::Seq { open, close, items: vec![lo.clone(), hi.clone()] };
    let inf = Node::Inf;
    let ninf = Node::Neg(Box::new(Node::Inf));
    match (items.as_slice(), ops.as_slice()) {
        ([Node::Var(_), a], [op]) => match op {
            '<' | '≤' => Some(seq('(', if strict(*op) { ')' } else { ']' }, &ninf, a)),
            '>' | '≥' => Some(seq(if strict(*op) { '(' } else { '[' }, ')', a, &inf)),
            _ => None,
        },
        ([a, v @ Node::Var(_)], [op]) => {
            as_interval(&Node::Rel { items: vec![v.clone(), a.clone()], ops: vec![flip(*op)] })
        }
        ([a, Node::Var(_), c], [o1, o2]) => {
            let (lo, hi, ol, oh) = match (o1, o2) {
                ('<' | '≤', '<' | '≤') => (a, c, *o1, *o2),
                ('>' | '≥', '>' | '≥') => (c, a, flip(*o2), flip(*o1)),
                _ => return None,
            };
            Some(seq(if strict(ol) { '(' } else { '[' }, if strict(oh) { ')' } else { ']' }, lo, hi))
        }
        _ => None,
    }
}

/// `x < 1, x > 2` as intervals, for comparison with a union.
fn intervals(items: &[Node]) -> Option<Vec<Node>> {
    items.iter().map(|n| if matches!(n, Node::Seq { .. }) { Some(n.clone()) } else { as_interval(n) }).collect()
}

fn is_scalar(n: &Node) -> bool {
    !matches!(
        n,
        Node::Seq { .. }
            | Node::Set(_)
            | Node::Union(_)
            | Node::Matrix(_)
            | Node::Rel { .. }
            | Node::List(_)
            | Node::Text(_)
    )
}

fn scalar(g: &Node, p: &Node) -> bool {
    if !is_scalar(g) || !is_scalar(p) {
        return false;
    }
    let variants = |n: &Node| match n {
        Node::Percent(x) => vec![n.clone(), (**x).clone()],
        _ => vec![n.clone()],
    };
    let (gv, pv) = (variants(g), variants(p));
    gv.iter().any(|x| pv.iter().any(|y| value_eq(x, y)))
}

fn close(x: f64, y: f64) -> bool {
    if x.is_infinite() || y.is_infinite() {
        return x == y;
    }
    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) + 1e-12
}

/// Pseudo-random test points for variable `i` at round `k`, in (0.5, 3.5).
fn point(k: u64, i: u64) -> f64 {
    let mut z = k.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i.wrapping_mul(0xBF58_476D_1CE4_E5B9)) ^ 0x94D0_49BB;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    0.5 + 3.0 * (z >> 11) as f64 / (1u64 << 53) as f64
}

const ROUNDS: u64 = 8;

/// Evaluates both sides at the test points; `None` at a point means undefined there.
fn samples(a: &Node, b: &Node) -> Vec<(Option<f64>, Option<f64>)> {
    let mut set = BTreeSet::new();
    vars(a, &mut set);
    vars(b, &mut set);
    let names: Vec<&str> = set.into_iter().collect();
    let rounds = if names.is_empty() { 1 } else { ROUNDS };
    (0..rounds)
        .map(|k| {
            let env = |v: &str| names.iter().position(|n| *n == v).map(|i| point(k, i as u64));
            (numeric(a, &env), numeric(b, &env))
        })
        .collect()
}

fn value_eq(a: &Node, b: &Node) -> bool {
    if a == b {
        return true; // also settles expressions undefined at every test point, like `(-1)^n`
    }
    if let (Some(x), Some(y)) = (exact(a), exact(b)) {
        return x == y;
    }
    let pts = samples(a, b);
    let needed = if pts.len() == 1 { 1 } else { 3 };
    let mut agree = 0;
    for (x, y) in pts {
        match (x, y) {
            (Some(x), Some(y)) if close(x, y) => agree += 1,
            (Some(_), Some(_)) => return false,
            _ => {}
        }
    }
    agree >= needed
}

/// Whether `b = c·a` for a constant c ≠ 0 at every test point (equal equations up to scaling).
fn proportional(a: &Node, b: &Node) -> bool {
    let mut ratio = None;
    let mut agree = 0;
    for (x, y) in samples(a, b) {
        let (Some(x), Some(y)) = (x, y) else { continue };
        if x.abs() < 1e-12 || y.abs() < 1e-12 {
            if x.abs() < 1e-12 && y.abs() < 1e-12 {
                continue;
            }
            return false;
        }
        let r = y / x;
        match ratio {
            None => ratio = Some(r),
            Some(r0) if close(r0, r) => {}
            Some(_) => return false,
        }
        agree += 1;
    }
    agree >= 3
}
