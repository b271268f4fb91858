//! Where training runs (`--device`), and which training-step path each device takes.
//!
//! The CPU runs fused kernels with a hand-written backward pass (`backprop.rs`); every other
//! device runs the same network in plain candle ops with candle's autograd. The portable path
//! is tested on the CPU against the fused one (`portable_path_test.rs`), so a GPU run has
//! nothing untested but the device itself.

use anyhow::Result;
use candle_core::Device;

/// `--device` (a `clap::ValueEnum` with the `clap` feature).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DeviceKind {
    #[default]
    Cpu,
    /// The first CUDA GPU (a build with the `cuda` feature: crates/cli/scripts/build-cuda.sh).
    Cuda,
}

/// How a training step computes its gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepPath {
    /// CPU only: fused BatchNorm and depthwise kernels, backward pass written out by hand.
    Fused,
    /// Any device: candle ops (`batch_norm_portable`, `depthwise_portable`) and autograd.
    Portable,
}

impl StepPath {
    pub fn for_device(device: &Device) -> Self {
        if device.is_cpu() {
            StepPath::Fused
        } else {
            StepPath::Portable
        }
    }
}

/// The device for `kind`, or an error that says why there is none (checked before any work).
pub fn open(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda => open_cuda(),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda() -> Result<Device> {
    // The driver's answer only: candle appends a backtrace when RUST_BACKTRACE is set.
    Device::new_cuda(0).map_err(|e| {
        let reason = e.to_string();
        anyhow::anyhow!("--device cuda: no usable CUDA GPU (NVIDIA driver and GPU needed): {}", reason.lines().next().unwrap_or_default())
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> Result<Device> {
    anyhow::bail!("--device cuda: this skinlens was built without CUDA; build one with crates/cli/scripts/build-cuda.sh")
}

/// For a CUDA build, what it was built with (`--version` shows it); `None` for the CPU build.
pub fn cuda_build() -> Option<String> {
    if !cfg!(feature = "cuda") {
        return None;
    }
    // Both are set by build-cuda.sh; CUDA_COMPUTE_CAP is what candle's kernel build read.
    let toolkit = option_env!("SKINLENS_CUDA_VERSION").unwrap_or("(toolkit version not recorded)");
    let capability = match option_env!("CUDA_COMPUTE_CAP") {
        Some(cap) => compute_capability(cap),
        None => "of the build machine's GPU".to_string(),
    };
    Some(format!("built with CUDA {toolkit} for compute capability {capability}"))
}

/// `90` or `9.0` → `9.0` (candle's kernel build takes either spelling).
fn compute_capability(cap: &str) -> String {
    let cap = cap.trim();
    match cap.parse::<u32>() {
        Ok(n) if n >= 10 => format!("{}.{}", n / 10, n % 10),
        _ => cap.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_capability_is_written_major_dot_minor() {
        assert_eq!(compute_capability("90"), "9.0");
        assert_eq!(compute_capability("86"), "8.6");
        assert_eq!(compute_capability("120"), "12.0");
        assert_eq!(compute_capability("9.0"), "9.0");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_cuda_build_fails_with_its_remedy() {
        let message = format!("{:#}", open(DeviceKind::Cuda).unwrap_err());
        assert!(message.contains("built without CUDA") && message.contains("build-cuda.sh"), "{message}");
        assert_eq!(cuda_build(), None, "--version of the CPU build names no CUDA");
    }
}
