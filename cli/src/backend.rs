//! Which Burn backend a command runs on: `--device cpu` (NdArray, always built),
//! `--device cuda` (built with `--features cuda`), `--device cpu-flex` (Burn's Flex CPU
//! backend, built with `--features flex`) or `--device cpu-torch` (Burn's LibTorch backend,
//! built with `--features tch`); the last two are benchmark candidates.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DeviceKind {
    /// The CPU (Burn's NdArray backend, multi-threaded)
    #[default]
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`)
    Cuda,
    /// The CPU through Burn's Flex backend (needs a build with `--features flex`; a
    /// benchmark candidate, see docs/benchmarks.md)
    CpuFlex,
    /// The CPU through Burn's LibTorch backend (needs a build with `--features tch`; a
    /// benchmark candidate, see docs/benchmarks.md)
    CpuTorch,
}

/// Runs `$body` with `$B` bound to the backend type and `$device` to its device.
macro_rules! with_backend {
    ($kind:expr, |$B:ident, $device:ident| $body:expr) => {{
        match $kind {
            $crate::backend::DeviceKind::Cpu => {
                type $B = r1_model::CpuBackend;
                let $device = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::DeviceKind::Cuda => {
                type $B = r1_model::CudaBackend;
                let $device = Default::default();
                $body
            }
            #[cfg(not(feature = "cuda"))]
            $crate::backend::DeviceKind::Cuda => anyhow::bail!(
                "this r1ctl was built without CUDA; rebuild with `cargo build --release -p r1ctl --features cuda`"
            ),
            #[cfg(feature = "flex")]
            $crate::backend::DeviceKind::CpuFlex => {
                type $B = r1_model::FlexBackend;
                let $device = Default::default();
                $body
            }
            #[cfg(not(feature = "flex"))]
            $crate::backend::DeviceKind::CpuFlex => anyhow::bail!(
                "this r1ctl was built without the Flex backend; rebuild with `cargo build --release -p r1ctl --features flex`"
            ),
            #[cfg(feature = "tch")]
            $crate::backend::DeviceKind::CpuTorch => {
                type $B = r1_model::TorchBackend;
                let $device = Default::default();
                $body
            }
            #[cfg(not(feature = "tch"))]
            $crate::backend::DeviceKind::CpuTorch => anyhow::bail!(
                "this r1ctl was built without the LibTorch backend; rebuild with `LIBTORCH_USE_PYTORCH=1 cargo build --release -p r1ctl --features tch` (see docs/benchmarks.md)"
            ),
        }
    }};
}
pub(crate) use with_backend;
