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

impl DeviceKind {
    /// `--device`'s name for this backend.
    pub fn name(self) -> String {
        self.to_possible_value().expect("no variant is skipped").get_name().to_string()
    }

    /// When this build lacks the backend: what it is and the command that builds it in.
    pub fn missing(self) -> Option<(&'static str, &'static str)> {
        match self {
            DeviceKind::Cpu => None,
            DeviceKind::Cuda if cfg!(feature = "cuda") => None,
            DeviceKind::Cuda => Some(("CUDA", "cargo build --release -p r1ctl --features cuda")),
            DeviceKind::CpuFlex if cfg!(feature = "flex") => None,
            DeviceKind::CpuFlex => Some(("the Flex backend", "cargo build --release -p r1ctl --features flex")),
            DeviceKind::CpuTorch if cfg!(feature = "tch") => None,
            DeviceKind::CpuTorch => {
                Some(("the LibTorch backend", "LIBTORCH_USE_PYTORCH=1 cargo build --release -p r1ctl --features tch"))
            }
        }
    }

    /// The error of a command run with a `--device` this build lacks.
    pub fn missing_error(self) -> anyhow::Error {
        let (what, build) = self.missing().expect("called for a backend this build lacks");
        anyhow::anyhow!("this r1ctl was built without {what}; rebuild with `{build}`")
    }
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
            $crate::backend::DeviceKind::Cuda => return Err($crate::backend::DeviceKind::Cuda.missing_error()),
            #[cfg(feature = "flex")]
            $crate::backend::DeviceKind::CpuFlex => {
                type $B = r1_model::FlexBackend;
                let $device = Default::default();
                $body
            }
            #[cfg(not(feature = "flex"))]
            $crate::backend::DeviceKind::CpuFlex => return Err($crate::backend::DeviceKind::CpuFlex.missing_error()),
            #[cfg(feature = "tch")]
            $crate::backend::DeviceKind::CpuTorch => {
                type $B = r1_model::TorchBackend;
                let $device = Default::default();
                $body
            }
            #[cfg(not(feature = "tch"))]
            $crate::backend::DeviceKind::CpuTorch => return Err($crate::backend::DeviceKind::CpuTorch.missing_error()),
        }
    }};
}
pub(crate) use with_backend;
