//! Softmax, log-softmax and RMSNorm with exact, reproducible gradients.
//!
//! Burn 0.21's autodiff differentiates `a / b` and `log(b)` through `float_recip(b)`, and the
//! NdArray backend computes `float_recip` with the approximate SIMD reciprocal (`rcp`, about
//! 12 correct bits) on the part of a buffer that is aligned to the vector width and exactly
//! on the rest. Gradients through Burn's `softmax`, `log_softmax` and `RmsNorm` are then off
//! by up to ~5e-5 relatively, and by how much depends on where the allocator put each buffer,
//! so the same training run gave different weights every time (measured: the same batch
//! through the same model gave bitwise different gradients in 7 of 10 backward passes).
//!
//! These functions compute the same values without a division or a logarithm in the
//! differentiated path:
//!
//! - [`rms_norm`] multiplies by `(mean(x²) + eps)^-½` (as transformers does with `rsqrt`);
//! - [`softmax`] and [`log_softmax`] compute their value without tracking, then add a
//!   surrogate `s(x) − detach(s(x))` (exactly zero) whose Jacobian is the function's own:
//!   for softmax `s = p ⊙ (x − Σ p x)` (∂ = diag(p) − p pᵀ), for log-softmax `s = x − Σ p x`
//!   (∂ = I − 1 pᵀ), with `p` the detached softmax. Only products, sums and differences are
//!   differentiated, which Burn computes exactly and in a fixed order.
//!
//! On a backend without autodiff (sampling) the surrogate is skipped; the value is the same.

use burn::nn::RmsNorm;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Softmax along `dim`: the value is `exp(x − max) / Σ exp(x − max)`.
pub fn softmax<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    let tracked = B::ad_enabled(&x.device());
    let p = softmax_value(x.clone().detach(), dim);
    if !tracked {
        return p;
    }
    let s = p.clone() * (x.clone() - (x * p.clone()).sum_dim(dim));
    p + (s.clone() - s.detach())
}

/// Log-softmax along `dim`: the value is `(x − max) − log Σ exp(x − max)`.
pub fn log_softmax<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    let tracked = B::ad_enabled(&x.device());
    let v = x.clone().detach();
    let max = v.clone().max_dim(dim);
    let shifted = v - max;
    let value = shifted.clone() - shifted.clone().exp().sum_dim(dim).log();
    if !tracked {
        return value;
    }
    let p = value.clone().exp();
    let s = x.clone() - (x * p).sum_dim(dim);
    value + (s.clone() - s.detach())
}

/// `log_softmax(x, 2)` gathered at `targets` (`[B, T, V]` logits, `[B, T, 1]` targets →
/// `[B, T]`), and, when asked, the softmax's entropy at each position (a value: it carries
/// no gradient).
///
/// The same value as `log_softmax(x, 2).gather(2, targets)`, bit for bit, and the same
/// gradient, `g · (onehot(target) − p)`, without a `[B, T, V]` log-softmax in the graph: the
/// surrogate is `x[target] − Σ p x`, so the tracked work is one gather and one product with
/// the detached `p`. On a vocabulary-sized last dimension this is most of a small model's
/// step (docs/benchmarks.md).
pub fn log_softmax_gather<B: Backend>(
    x: Tensor<B, 3>,
    targets: Tensor<B, 3, burn::tensor::Int>,
    entropy: bool,
) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
    let [b, t, _] = x.dims();
    let tracked = B::ad_enabled(&x.device());
    let v = x.clone().detach();
    let max = v.clone().max_dim(2);
    let shifted = v - max;
    let log_sum = shifted.clone().exp().sum_dim(2).log();
    let value = shifted.clone().gather(2, targets.clone()) - log_sum.clone();
    // p = exp(log_softmax), as `log_softmax`'s surrogate uses it.
    let p = (tracked || entropy).then(|| (shifted.clone() - log_sum.clone()).exp());
    let ent = entropy.then(|| {
        let p = p.clone().expect("p is computed when entropy is asked for");
        // H = −Σ p log p = log Σ exp(x − max) − Σ p (x − max).
        (log_sum.clone() - (p * shifted).sum_dim(2)).reshape([b, t])
    });
    if !tracked {
        return (value.reshape([b, t]), ent);
    }
    let p = p.expect("p is computed when tracked");
    let s = x.clone().gather(2, targets) - (x * p).sum_dim(2);
    ((value + (s.clone() - s.detach())).reshape([b, t]), ent)
}

/// `norm`'s RMSNorm over the last dimension: `x · (mean(x²) + eps)^-½ · γ`.
pub fn rms_norm<B: Backend, const D: usize>(norm: &RmsNorm<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let inv = (x.clone().square().mean_dim(D - 1) + norm.epsilon).powf_scalar(-0.5);
    x * inv * norm.gamma.val().unsqueeze()
}

fn softmax_value<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    let e = (x.clone() - x.max_dim(dim)).exp();
    e.clone() / e.sum_dim(dim)
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::{Distribution, TensorData};

    use super::*;

    type A = Autodiff<NdArray<f32>>;

    /// Gradient of `sum(f(x) · w)` for the seeded `x` and `w` of shape `[4, 37, 61]`.
    fn grad(f: &dyn Fn(Tensor<A, 3>) -> Tensor<A, 3>, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let dev = Default::default();
        A::seed(&dev, seed);
        let x = Tensor::<A, 3>::random([4, 37, 61], Distribution::Normal(0.0, 3.0), &dev).require_grad();
        let w = Tensor::<A, 3>::random([4, 37, 61], Distribution::Normal(0.0, 1.0), &dev);
        // Through an operation first: the input is an inner node of the graph, as in a model.
        let y = f(x.clone().mul_scalar(1.0));
        let g = (y.clone() * w.clone()).sum().backward();
        let v = |t: Tensor<NdArray<f32>, 3>| t.into_data().to_vec::<f32>().unwrap();
        (v(y.inner()), v(x.grad(&g).expect("no gradient reached the input")), [x.inner(), w.inner()].map(v).concat())
    }

    /// The reference in f64 for one row: value and vector-Jacobian product with `w`.
    fn reference(kind: &str, x: &[f64], w: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let n = x.len() as f64;
        match kind {
            "softmax" | "log_softmax" => {
                let m = x.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = x.iter().map(|v| (v - m).exp()).sum();
                let p: Vec<f64> = x.iter().map(|v| (v - m).exp() / z).collect();
                if kind == "softmax" {
                    let pw: f64 = p.iter().zip(w).map(|(p, w)| p * w).sum();
                    (p.clone(), p.iter().zip(w).map(|(p, w)| p * (w - pw)).collect())
                } else {
                    let sw: f64 = w.iter().sum();
                    (x.iter().map(|v| v - m - z.ln()).collect(), w.iter().zip(&p).map(|(w, p)| w - p * sw).collect())
                }
            }
            _ => {
                // rms_norm with unit γ and eps 1e-6.
                let ms = x.iter().map(|v| v * v).sum::<f64>() / n + 1e-6;
                let r = ms.powf(-0.5);
                let xw: f64 = x.iter().zip(w).map(|(x, w)| x * w).sum();
                (
                    x.iter().map(|v| v * r).collect(),
                    x.iter().zip(w).map(|(x, w)| r * w - x * xw * r.powi(3) / n).collect(),
                )
            }
        }
    }

    #[test]
    fn values_and_gradients_match_an_f64_reference_and_repeat_bit_for_bit() {
        let norm = RmsNorm::<A> {
            gamma: burn::module::Param::from_tensor(Tensor::ones([61], &Default::default())),
            epsilon: 1e-6,
        };
        type Op = Box<dyn Fn(Tensor<A, 3>) -> Tensor<A, 3>>;
        let cases: [(&str, Op, f64); 3] = [
            ("softmax", Box::new(|x| softmax(x, 2)), 1e-6),
            ("log_softmax", Box::new(|x| log_softmax(x, 2)), 2e-6),
            ("rms_norm", Box::new(move |x| rms_norm(&norm, x)), 2e-6),
        ];
        for (kind, f, tol) in &cases {
            let (y, g, inputs) = grad(f.as_ref(), 7);
            let (x, w) = inputs.split_at(y.len());
            for row in 0..4 * 37 {
                let r = row * 61..(row + 1) * 61;
                let xs: Vec<f64> = x[r.clone()].iter().map(|&v| v as f64).collect();
                let ws: Vec<f64> = w[r.clone()].iter().map(|&v| v as f64).collect();
                let (ry, rg) = reference(kind, &xs, &ws);
                let scale = rg.iter().fold(1.0f64, |a, v| a.max(v.abs()));
                for i in 0..61 {
                    assert!(
                        (y[row * 61 + i] as f64 - ry[i]).abs() <= tol * ry[i].abs().max(1.0),
                        "{kind} value, row {row}"
                    );
                    assert!(
                        (g[row * 61 + i] as f64 - rg[i]).abs() <= tol * scale,
                        "{kind} gradient, row {row}: {} vs {}",
                        g[row * 61 + i],
                        rg[i]
                    );
                }
            }
            // Twenty more backward passes, with allocations in between that move the buffers.
            for rep in 0..20 {
                let _shift: Vec<Vec<f32>> = (0..rep).map(|k| vec![0.0; 1 + k * 3]).collect();
                let again = grad(f.as_ref(), 7);
                assert!(again.0 == y && again.1 == g, "{kind}: pass {rep} differs from the first");
            }
        }
    }

    /// The fused gather has log-softmax's value bit for bit and its gradient (to the last
    /// bits), the entropy of an f64 reference, and the same value without autodiff.
    #[test]
    fn log_softmax_gather_matches_log_softmax_then_gather() {
        let dev = Default::default();
        let (b, t, v) = (3, 11, 37);
        A::seed(&dev, 5);
        let x = Tensor::<A, 3>::random([b, t, v], Distribution::Normal(0.0, 4.0), &dev);
        let w = Tensor::<A, 2>::random([b, t], Distribution::Normal(0.0, 1.0), &dev);
        let ids: Vec<i64> = (0..b * t).map(|i| ((i * 13 + 5) % v) as i64).collect();
        let targets = Tensor::<A, 3, burn::tensor::Int>::from_data(TensorData::new(ids, [b, t, 1]), &dev);
        let run = |fused: bool| {
            let x = x.clone().require_grad();
            let y = x.clone().mul_scalar(1.0);
            let (lp, ent) = if fused {
                log_softmax_gather(y, targets.clone(), true)
            } else {
                (log_softmax(y, 2).gather(2, targets.clone()).reshape([b, t]), None)
            };
            let g = (lp.clone() * w.clone()).sum().backward();
            let vals = |t: Tensor<NdArray<f32>, 2>| t.into_data().to_vec::<f32>().unwrap();
            let grad = x.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
            (vals(lp.inner()), grad, ent.map(|e| vals(e.inner())))
        };
        let (fused, fused_grad, ent) = run(true);
        let (plain, plain_grad, _) = run(false);
        assert_eq!(fused, plain, "values");
        for (i, (a, b)) in fused_grad.iter().zip(&plain_grad).enumerate() {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "gradient {i}: {a} vs {b}");
        }
        let xs = x.clone().into_data().to_vec::<f32>().unwrap();
        for (row, h) in ent.expect("entropy was asked for").iter().enumerate() {
            let r: Vec<f64> = xs[row * v..(row + 1) * v].iter().map(|&a| a as f64).collect();
            let m = r.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = r.iter().map(|a| (a - m).exp()).sum();
            let want: f64 = -r.iter().map(|a| (a - m).exp() / z * (a - m - z.ln())).sum::<f64>();
            assert!((*h as f64 - want).abs() <= 1e-5 * want.max(1.0), "entropy row {row}: {h} vs {want}");
        }
        assert_eq!(fused_grad, run(true).1, "the gradient repeats bit for bit");
        let plain_x = Tensor::<NdArray<f32>, 3>::from_data(x.clone().into_data(), &dev);
        let plain_t = targets.clone().inner();
        let (lp, _) = log_softmax_gather(plain_x, plain_t, false);
        assert_eq!(lp.into_data().to_vec::<f32>().unwrap(), fused, "without autodiff");
    }

    #[test]
    fn without_autodiff_the_value_is_the_same() {
        let dev = Default::default();
        let data = TensorData::new((0..60).map(|i| ((i * 37) % 23) as f32 * 0.7 - 5.0).collect::<Vec<f32>>(), [3, 20]);
        let tracked = Tensor::<A, 2>::from_data(data.clone(), &dev).require_grad();
        let plain = Tensor::<NdArray<f32>, 2>::from_data(data, &dev);
        let v = |t: Tensor<NdArray<f32>, 2>| t.into_data().to_vec::<f32>().unwrap();
        assert_eq!(v(softmax(tracked.clone(), 1).inner()), v(softmax(plain.clone(), 1)));
        assert_eq!(v(log_softmax(tracked, 1).inner()), v(log_softmax(plain, 1)));
    }
}
