//! A module's gradients as one flat `f32` buffer, and back: how the data-parallel learner
//! sums gradients over ranks with a [`Collective`] in one call.
//!
//! Parameters are visited in the module's own order (the same on every rank), each shared
//! parameter once. A parameter without a gradient on this rank (unused by its shard)
//! contributes zeros, so every rank's buffer has the same layout. The buffer is staged
//! through host memory: the simple, backend-independent first version.

use std::collections::HashSet;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

use crate::collective::{Collective, CollectiveError};

struct Gather<'a> {
    grads: &'a mut GradientsParams,
    seen: HashSet<ParamId>,
    buf: Vec<f32>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !self.seen.insert(param.id) {
            return;
        }
        match self.grads.remove::<B::InnerBackend, D>(param.id) {
            Some(g) => self.buf.extend(g.into_data().convert::<f32>().into_vec::<f32>().expect("f32 gradient")),
            None => self.buf.extend(std::iter::repeat_n(0.0, param.val().shape().num_elements())),
        }
    }
}

struct Scatter<'a> {
    grads: &'a mut GradientsParams,
    seen: HashSet<ParamId>,
    buf: &'a [f32],
    offset: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scatter<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !self.seen.insert(param.id) {
            return;
        }
        let value = param.val();
        let shape = value.shape();
        let n = shape.num_elements();
        let data = TensorData::new(self.buf[self.offset..self.offset + n].to_vec(), shape);
        self.offset += n;
        let grad = Tensor::<B::InnerBackend, D>::from_data(data, &value.device());
        self.grads.register::<B::InnerBackend, D>(param.id, grad);
    }
}

/// Takes every gradient of `module` out of `grads` into one buffer.
pub fn gather<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: &mut GradientsParams) -> Vec<f32> {
    let mut v = Gather { grads, seen: HashSet::new(), buf: Vec::new() };
    module.visit(&mut v);
    v.buf
}

/// Builds gradients for `module` from a buffer made by [`gather`].
pub fn scatter<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, buf: &[f32]) -> GradientsParams {
    let mut grads = GradientsParams::new();
    let mut v = Scatter { grads: &mut grads, seen: HashSet::new(), buf, offset: 0 };
    module.visit(&mut v);
    assert_eq!(v.offset, buf.len(), "gradient buffer does not match the module's parameters");
    grads
}

/// Sums `grads` over every rank of `collective` (each rank passes its own shard's gradients,
/// computed with the whole batch's loss normalisation) and returns the sum.
pub fn all_reduce_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    mut grads: GradientsParams,
    collective: &mut dyn Collective,
) -> Result<GradientsParams, CollectiveError> {
    if collective.world_size() == 1 {
        return Ok(grads);
    }
    let mut buf = gather::<B, M>(module, &mut grads);
    collective.all_reduce_sum(&mut buf)?;
    Ok(scatter::<B, M>(module, &buf))
}
