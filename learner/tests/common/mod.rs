//! Helpers shared by the learner's integration tests: the test backend, tensors from
//! golden JSON, a tolerance checker that reports every mismatch at once, and a toy module.
#![allow(dead_code)]

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use serde_json::Value;

pub type B = Autodiff<NdArray<f32>>;
pub type Inner = NdArray<f32>;

pub fn device() -> burn::tensor::Device<B> {
    Default::default()
}

pub fn golden(name: &str) -> Value {
    let path =
        format!("{}/tests/data/{name}", std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}; run learner/reference/grpo_reference.py"));
    serde_json::from_str(&text).unwrap()
}

/// Shape and row-major values of a nested JSON array of numbers.
pub fn flat(v: &Value) -> (Vec<usize>, Vec<f64>) {
    match v {
        Value::Array(items) => {
            let mut shape = vec![items.len()];
            let mut out = vec![];
            let mut inner = vec![];
            for it in items {
                let (s, vals) = flat(it);
                inner = s;
                out.extend(vals);
            }
            shape.extend(inner);
            (shape, out)
        }
        Value::Number(n) => (vec![], vec![n.as_f64().unwrap()]),
        other => panic!("expected numbers, got {other}"),
    }
}

pub fn tensor<BK: Backend, const D: usize>(v: &Value) -> Tensor<BK, D> {
    let (shape, vals) = flat(v);
    let shape: [usize; D] = shape.try_into().expect("rank");
    let vals: Vec<f32> = vals.into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(vals, shape), &Default::default())
}

pub fn values<BK: Backend, const D: usize>(t: Tensor<BK, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// Collects mismatches over a whole table of cases, then fails listing them all.
#[derive(Default)]
pub struct Checker {
    failures: Vec<String>,
    checked: usize,
}

impl Checker {
    pub fn check(&mut self, what: &str, got: &[f64], want: &[f64], tol: f64) {
        self.checked += 1;
        if got.len() != want.len() {
            self.failures.push(format!("{what}: {} values, expected {}", got.len(), want.len()));
            return;
        }
        if let Some((i, (g, w))) =
            got.iter().zip(want).enumerate().find(|(_, (g, w))| (*g - *w).abs().is_nan() || (*g - *w).abs() > tol)
        {
            self.failures.push(format!("{what}[{i}]: got {g}, expected {w} (tol {tol})"));
        }
    }

    pub fn finish(self) -> usize {
        assert!(
            self.failures.is_empty(),
            "{} of {} checks failed:\n{}",
            self.failures.len(),
            self.checked,
            self.failures.join("\n")
        );
        self.checked
    }
}

/// A two-parameter module: y = x·w + b.
#[derive(Module, Debug)]
pub struct Toy<B: Backend> {
    pub w: Param<Tensor<B, 2>>,
    pub b: Param<Tensor<B, 1>>,
}

impl<B: Backend> Toy<B> {
    pub fn new(w: Tensor<B, 2>, b: Tensor<B, 1>) -> Self {
        Self { w: Param::from_tensor(w), b: Param::from_tensor(b) }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(self.w.val()) + self.b.val().unsqueeze_dim(0)
    }

    /// 3 · mean((x·w + b − y)²), the loss the optimizer golden uses.
    pub fn loss(&self, x: Tensor<B, 2>, y: Tensor<B, 2>) -> Tensor<B, 1> {
        (self.forward(x) - y).square().mean().mul_scalar(3.0)
    }
}
