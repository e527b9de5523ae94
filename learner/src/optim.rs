//! AdamW with a learning-rate schedule and global-norm clipping, as one optimizer step.
//!
//! The update is Burn's `AdamW`, which is PyTorch's `torch.optim.AdamW`: bias-corrected
//! moments and decoupled weight decay, θ ← θ(1 − lr·wd) − lr · m̂ / (√v̂ + eps), applied to
//! every parameter with a gradient. Before it, gradients are clipped to a global L2 norm
//! ([`crate::clip`]); the learning rate of step k is `lr · schedule.factor(k)`.
//! The golden test checks a few steps of all three against PyTorch.
//!
//! Optimizer state is keyed by each parameter's *path* in the module (`layers.3.mlp.weight`),
//! not by Burn's `ParamId`: a model reloaded from safetensors gets fresh ids, and its
//! AdamW moments must still find their parameters ([`Optim::state`], [`Optim::load_state`]).

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Tensor, backend::AutodiffBackend, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::LearnerError;
use crate::clip::clip_grad_norm;
use crate::schedule::ScheduleConfig;

/// Optimizer settings. Defaults: R1-Zero's lr 3e-6, DeepSeek's betas (0.9, 0.95),
/// PyTorch's eps 1e-8, weight decay 0.01, clipping at global norm 1.0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global-norm clipping threshold; `None` disables clipping.
    pub max_grad_norm: Option<f64>,
    pub schedule: ScheduleConfig,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 3e-6,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
            schedule: ScheduleConfig::default(),
        }
    }
}

/// What one optimizer step did, for logging.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StepStats {
    /// Learning rate used by this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Whether clipping scaled the gradients down.
    pub clipped: bool,
}

type AdamRecord<B, M> = <OptimizerAdaptor<AdamW, M, B> as Optimizer<M, B>>::Record;

/// Optimizer state detached from `ParamId`s: AdamW moments keyed by parameter path
/// (stored as a path hash, see [`path_id`]) and the number of steps taken.
pub struct OptimState<B: AutodiffBackend, M: AutodiffModule<B>> {
    pub steps: u64,
    pub adam: AdamRecord<B, M>,
}

/// AdamW + schedule + global-norm clipping over the parameters of a module `M`.
pub struct Optim<B: AutodiffBackend, M: AutodiffModule<B>> {
    cfg: OptimConfig,
    adam: OptimizerAdaptor<AdamW, M, B>,
    steps: u64,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Optim<B, M> {
    pub fn new(cfg: OptimConfig) -> Result<Self, LearnerError> {
        // Each check is written so that NaN fails it.
        let checks = [
            (cfg.lr > 0.0, format!("optimizer lr is {}; use a positive learning rate", cfg.lr)),
            (
                (0.0..1.0).contains(&cfg.beta1) && (0.0..1.0).contains(&cfg.beta2),
                format!("betas ({}, {}) must lie in [0, 1)", cfg.beta1, cfg.beta2),
            ),
            (cfg.eps > 0.0, format!("optimizer eps is {}; use a small positive value such as 1e-8", cfg.eps)),
            (
                cfg.max_grad_norm.is_none_or(|n| n > 0.0),
                "max_grad_norm must be positive; omit it to disable clipping".into(),
            ),
        ];
        if let Some((_, msg)) = checks.into_iter().find(|(ok, _)| !ok) {
            return Err(LearnerError::Config(msg));
        }
        let adam = AdamWConfig::new()
            .with_beta_1(cfg.beta1 as f32)
            .with_beta_2(cfg.beta2 as f32)
            .with_epsilon(cfg.eps as f32)
            .with_weight_decay(cfg.weight_decay as f32)
            .init();
        Ok(Self { cfg, adam, steps: 0 })
    }

    /// Steps taken so far (the schedule's position).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Learning rate the next step will use.
    pub fn lr(&self) -> f64 {
        self.cfg.lr * self.cfg.schedule.factor(self.steps)
    }

    /// Clips `grads`, applies one AdamW step at the scheduled learning rate.
    pub fn step(&mut self, module: M, grads: GradientsParams) -> (M, StepStats) {
        let lr = self.lr();
        let (grads, grad_norm, clipped) = match self.cfg.max_grad_norm {
            Some(max) => {
                let (g, n) = clip_grad_norm::<B, M>(&module, grads, max);
                (g, n, n > max)
            }
            None => {
                let mut g = grads;
                let n = crate::clip::global_grad_norm::<B, M>(&module, &mut g);
                (g, n, false)
            }
        };
        let module = self.adam.step(lr, module, grads);
        self.steps += 1;
        (module, StepStats { lr, grad_norm, clipped })
    }

    /// The state to checkpoint, keyed by parameter path in `module`.
    pub fn state(&self, module: &M) -> OptimState<B, M> {
        let to_path: std::collections::HashMap<ParamId, ParamId> =
            param_paths(module).into_iter().map(|(path, id)| (id, path_id(&path))).collect();
        let adam = self.adam.to_record().into_iter().filter_map(|(id, r)| Some((*to_path.get(&id)?, r))).collect();
        OptimState { steps: self.steps, adam }
    }

    /// Restores state saved by [`Optim::state`] onto `module`'s current parameter ids.
    pub fn load_state(&mut self, module: &M, state: OptimState<B, M>) -> Result<(), LearnerError> {
        let mut adam = state.adam;
        let mut record: AdamRecord<B, M> = Default::default();
        for (path, id) in param_paths(module) {
            if let Some(r) = adam.remove(&path_id(&path)) {
                record.insert(id, r);
            }
        }
        if !adam.is_empty() {
            return Err(LearnerError::Config(format!(
                "optimizer state holds {} tensors that match no parameter of this model; resume with the model architecture the checkpoint was made with",
                adam.len()
            )));
        }
        let fresh = Self::new(self.cfg.clone())?;
        self.adam = fresh.adam.load_record(record);
        self.steps = state.steps;
        Ok(())
    }
}

/// Every float parameter of `module` with its dotted path, in visiting order.
pub fn param_paths<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, ParamId)> {
    struct Paths {
        stack: Vec<String>,
        out: Vec<(String, ParamId)>,
    }
    impl<B: Backend> ModuleVisitor<B> for Paths {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.out.push((self.stack.join("."), param.id));
        }
    }
    let mut v = Paths { stack: vec![], out: vec![] };
    module.visit(&mut v);
    v.out
}

/// A stable id for a parameter path (64-bit FNV-1a), used as the key of saved state.
pub fn path_id(path: &str) -> ParamId {
    let h = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    ParamId::from(h)
}
