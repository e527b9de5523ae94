//! Evaluating scalar [`Node`]s: exactly over rationals when the value is rational, otherwise as
//! `f64` at given values of the variables.
//!
//! Both evaluators are total and bounded: an exact result wider than [`MAX_BITS`], an exponent
//! above [`MAX_EXP`], a factorial above [`MAX_FACTORIAL`], division by zero or a non-finite float
//! yields `None` ("cannot say"), never a hang or a panic. `2^{10^{10}}` is `None` in both.

use std::collections::BTreeSet;

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use super::parse::{Func, Node};

/// Widest numerator or denominator, in bits, an exact computation may produce.
pub const MAX_BITS: u64 = 20_000;
/// Largest integer exponent applied exactly.
pub const MAX_EXP: u64 = 10_000;
/// Largest `n!` computed.
pub const MAX_FACTORIAL: u64 = 1_000;

fn bits(r: &BigRational) -> u64 {
    r.numer().bits().max(r.denom().bits())
}

fn bounded(r: BigRational) -> Option<BigRational> {
    (bits(&r) <= MAX_BITS).then_some(r)
}

/// The exact rational value, if the node is a rational constant we can compute.
pub fn exact(n: &Node) -> Option<BigRational> {
    match n {
        Node::Num(r) => Some(r.clone()),
        Node::Neg(a) => Some(-exact(a)?),
        Node::Add(a, b) => bounded(exact(a)? + exact(b)?),
        Node::Mul(a, b) => bounded(exact(a)? * exact(b)?),
        Node::Div(a, b) => {
            let d = exact(b)?;
            if d.is_zero() { None } else { bounded(exact(a)? / d) }
        }
        Node::Pow(a, b) => pow(&exact(a)?, &exact(b)?),
        Node::Percent(a) => Some(exact(a)? / BigRational::from_integer(100.into())),
        Node::Func(Func::Sqrt, a) => root(&exact(a)?, 2),
        Node::Func(Func::Abs, a) => Some(exact(a)?.abs()),
        Node::Func(Func::Floor, a) => Some(exact(a)?.floor()),
        Node::Func(Func::Ceil, a) => Some(exact(a)?.ceil()),
        Node::Func(Func::Factorial, a) => {
            let k = small_uint(&exact(a)?, MAX_FACTORIAL)?;
            bounded(BigRational::from_integer((1..=k).map(BigInt::from).product()))
        }
        Node::Binom(a, b) => {
            let n = small_uint(&exact(a)?, MAX_FACTORIAL)?;
            let k = small_uint(&exact(b)?, MAX_FACTORIAL)?;
            if k > n {
                return Some(BigRational::zero());
            }
            let mut acc = BigInt::one();
            for i in 0..k {
                acc = acc * BigInt::from(n - i) / BigInt::from(i + 1);
            }
            bounded(BigRational::from_integer(acc))
        }
        _ => None,
    }
}

fn small_uint(r: &BigRational, max: u64) -> Option<u64> {
    if !r.is_integer() || r.is_negative() {
        return None;
    }
    r.to_integer().to_u64().filter(|k| *k <= max)
}

fn pow(base: &BigRational, exp: &BigRational) -> Option<BigRational> {
    let q = exp.denom().to_u64()?;
    let p = exp.numer();
    let mag = p.abs().to_u64().filter(|m| *m <= MAX_EXP)?;
    if base.is_zero() {
        return if p.is_positive() { Some(BigRational::zero()) } else { None };
    }
    let base = if q == 1 { base.clone() } else { root(base, u32::try_from(q).ok().filter(|q| *q <= 64)?)? };
    if bits(&base).saturating_mul(mag) > MAX_BITS {
        return None;
    }
    let r = num_traits::pow(base, mag as usize);
    Some(if p.is_negative() { r.recip() } else { r })
}

/// The exact `q`-th root of a rational, when it is rational.
fn root(r: &BigRational, q: u32) -> Option<BigRational> {
    if r.is_negative() && q.is_multiple_of(2) {
        return None;
    }
    let (n, d) = (r.numer().nth_root(q), r.denom().nth_root(q));
    let cand = BigRational::new(n, d);
    (num_traits::pow(cand.clone(), q as usize) == *r).then_some(cand)
}

/// The variables a node mentions.
pub fn vars<'a>(n: &'a Node, out: &mut BTreeSet<&'a str>) {
    match n {
        Node::Var(v) => {
            out.insert(v);
        }
        Node::Neg(a) | Node::Func(_, a) | Node::Percent(a) => vars(a, out),
        Node::Add(a, b) | Node::Mul(a, b) | Node::Div(a, b) | Node::Pow(a, b) | Node::Binom(a, b) => {
            vars(a, out);
            vars(b, out);
        }
        _ => {}
    }
}

/// The float value with variables bound by `env`. `\infty` is only a value on its own or negated
/// (interval ends); inside arithmetic it, and any overflow, give `None`.
pub fn numeric(n: &Node, env: &dyn Fn(&str) -> Option<f64>) -> Option<f64> {
    match n {
        Node::Inf => Some(f64::INFINITY),
        Node::Neg(a) if matches!(**a, Node::Inf) => Some(f64::NEG_INFINITY),
        _ => finite(n, env),
    }
}

fn finite(n: &Node, env: &dyn Fn(&str) -> Option<f64>) -> Option<f64> {
    let f = |x: &Node| finite(x, env);
    let v = match n {
        Node::Num(r) => r.to_f64()?,
        Node::Var(v) => env(v)?,
        Node::Pi => std::f64::consts::PI,
        Node::E => std::f64::consts::E,
        Node::Neg(a) => -f(a)?,
        Node::Add(a, b) => f(a)? + f(b)?,
        Node::Mul(a, b) => f(a)? * f(b)?,
        Node::Div(a, b) => {
            let d = f(b)?;
            if d == 0.0 {
                return None;
            }
            f(a)? / d
        }
        Node::Pow(a, b) => {
            if let Some(r) = exact(n) {
                return r.to_f64().filter(|x| x.is_finite());
            }
            let (x, y) = (f(a)?, f(b)?);
            // Odd roots of negatives, as `(-8)^{1/3}` = -2 means.
            let odd_root = x < 0.0 && exact(b).is_some_and(|e| e.denom().is_odd() && !e.is_integer());
            let v = if odd_root { -(-x).powf(y) } else { x.powf(y) };
            if v == 0.0 && x != 0.0 {
                return None; // underflow: tiny, not zero
            }
            v
        }
        Node::Percent(a) => f(a)? / 100.0,
        Node::Binom(..) => exact(n)?.to_f64()?,
        Node::Func(func, a) => {
            if *func == Func::Factorial {
                return exact(n)?.to_f64().filter(|x| x.is_finite());
            }
            let x = f(a)?;
            match func {
                Func::Sqrt => x.sqrt(),
                Func::Sin => x.sin(),
                Func::Cos => x.cos(),
                Func::Tan => x.tan(),
                Func::Sec => 1.0 / x.cos(),
                Func::Csc => 1.0 / x.sin(),
                Func::Cot => 1.0 / x.tan(),
                Func::Asin => x.asin(),
                Func::Acos => x.acos(),
                Func::Atan => x.atan(),
                Func::Ln => x.ln(),
                Func::Log10 => x.log10(),
                Func::Exp => x.exp(),
                Func::Abs => x.abs(),
                Func::Floor => x.floor(),
                Func::Ceil => x.ceil(),
                Func::Factorial => unreachable!("handled above"),
            }
        }
        _ => return None,
    };
    v.is_finite().then_some(v)
}
