//! Global-norm gradient clipping and gradient accumulation over micro-batches.
//!
//! Burn's built-in `GradientClipping::Norm` clips each tensor by its own norm; training
//! recipes (and PyTorch's `clip_grad_norm_`) clip by the L2 norm of *all* gradients
//! together, which keeps the update's direction. [`clip_grad_norm`] does the latter:
//!
//! ```text
//! n = sqrt(Σ_p ‖g_p‖²);   if n > max_norm:  g_p ← g_p · max_norm / (n + 1e-6)
//! ```
//!
//! A parameter shared by two modules (a tied LM head) is counted once.

use std::collections::HashSet;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Tensor, backend::AutodiffBackend};

use crate::grpo::ScalarExt;

/// Visits each distinct float parameter of `module` that has a gradient in `grads`.
struct EachGrad<'a, B: AutodiffBackend, F> {
    grads: &'a mut GradientsParams,
    seen: HashSet<ParamId>,
    f: F,
    _b: std::marker::PhantomData<B>,
}

/// What to do with one gradient: it is taken out and the returned tensor put back.
trait GradFn<B: AutodiffBackend> {
    fn apply<const D: usize>(&mut self, grad: Tensor<B::InnerBackend, D>) -> Tensor<B::InnerBackend, D>;
}

impl<B: AutodiffBackend, F: GradFn<B>> ModuleVisitor<B> for EachGrad<'_, B, F> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !self.seen.insert(param.id) {
            return;
        }
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let g = self.f.apply(g);
            self.grads.register::<B::InnerBackend, D>(param.id, g);
        }
    }
}

fn for_each_grad<B: AutodiffBackend, M: AutodiffModule<B>, F: GradFn<B>>(
    module: &M,
    grads: &mut GradientsParams,
    f: F,
) -> F {
    let mut v = EachGrad::<B, F> { grads, seen: HashSet::new(), f, _b: std::marker::PhantomData };
    module.visit(&mut v);
    v.f
}

struct SumSquares<B: AutodiffBackend>(Option<Tensor<B::InnerBackend, 1>>);

impl<B: AutodiffBackend> GradFn<B> for SumSquares<B> {
    fn apply<const D: usize>(&mut self, g: Tensor<B::InnerBackend, D>) -> Tensor<B::InnerBackend, D> {
        let s = g.clone().square().sum();
        self.0 = Some(match self.0.take() {
            Some(acc) => acc + s,
            None => s,
        });
        g
    }
}

struct Scale(f64);

impl<B: AutodiffBackend> GradFn<B> for Scale {
    fn apply<const D: usize>(&mut self, g: Tensor<B::InnerBackend, D>) -> Tensor<B::InnerBackend, D> {
        g.mul_scalar(self.0)
    }
}

/// L2 norm of all gradients of `module` taken together.
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: &mut GradientsParams) -> f64 {
    let SumSquares(total) = for_each_grad::<B, M, _>(module, grads, SumSquares::<B>(None));
    total.map_or(0.0, |t| t.into_scalar_f64().sqrt())
}

/// Multiplies every gradient of `module` by `factor`.
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    mut grads: GradientsParams,
    factor: f64,
) -> GradientsParams {
    for_each_grad::<B, M, _>(module, &mut grads, Scale(factor));
    grads
}

/// Clips all gradients together to global L2 norm `max_norm`; returns them and the
/// norm before clipping (log it: spikes are the first sign of a diverging run).
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f64) {
    let norm = global_grad_norm::<B, M>(module, &mut grads);
    if norm > max_norm {
        grads = scale_grads::<B, M>(module, grads, max_norm / (norm + 1e-6));
    }
    (grads, norm)
}

/// Sums gradients over micro-batches, for one optimizer step on the whole batch.
///
/// Make the micro-batch losses add up to the full-batch loss (normalise by the full
/// batch's [`crate::grpo::Denominators`]) and use [`GradAccumulator::sum`]; or normalise
/// each micro-batch by its own size, all sizes equal, and use [`GradAccumulator::mean`].
pub struct GradAccumulator<M> {
    inner: GradientsAccumulator<M>,
    micro_batches: usize,
}

impl<M> Default for GradAccumulator<M> {
    fn default() -> Self {
        Self { inner: GradientsAccumulator::new(), micro_batches: 0 }
    }
}

impl<M> GradAccumulator<M> {
    /// Adds one micro-batch's gradients.
    pub fn add<B: AutodiffBackend>(&mut self, module: &M, grads: GradientsParams)
    where
        M: AutodiffModule<B>,
    {
        self.inner.accumulate(module, grads);
        self.micro_batches += 1;
    }

    /// Micro-batches added so far.
    pub fn micro_batches(&self) -> usize {
        self.micro_batches
    }

    /// The sum of the gradients added.
    pub fn sum(mut self) -> GradientsParams {
        self.inner.grads()
    }

    /// The mean of the gradients added.
    pub fn mean<B: AutodiffBackend>(self, module: &M) -> GradientsParams
    where
        M: AutodiffModule<B>,
    {
        let n = self.micro_batches.max(1) as f64;
        scale_grads::<B, M>(module, self.sum(), 1.0 / n)
    }
}
