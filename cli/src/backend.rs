//! Which Burn backend a command runs on: `--device cpu` (NdArray, always built) or
//! `--device cuda` (built with `--features cuda`).

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum DeviceKind {
    /// The CPU (Burn's NdArray backend, multi-threaded)
    #[default]
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`)
    Cuda,
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
        }
    }};
}
pub(crate) use with_backend;
