//! Shared by the GPU tests: the device (or a clear failure), random tensors, comparisons and
//! the files in `../shared` (beside the project, on CI too).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use skinlens_gpu::GpuContext;

/// One device for the whole test binary (opening lavapipe takes a moment).
pub fn gpu() -> &'static GpuContext {
    static CONTEXT: OnceLock<GpuContext> = OnceLock::new();
    CONTEXT.get_or_init(|| match pollster::block_on(GpuContext::new()) {
        Ok(ctx) => {
            let info = ctx.adapter_info();
            eprintln!("GPU adapter: {} ({:?}, {:?}, driver {})", info.name, info.backend, info.device_type, info.driver_info);
            ctx
        }
        // Deliberately a failure, not a skip: these tests are the GPU path's only native check.
        Err(e) => panic!(
            "{e}\nThe GPU tests need a Vulkan driver. With no GPU, install Mesa's CPU driver: \
             `apt-get install -y mesa-vulkan-drivers libvulkan1`."
        ),
    })
}

pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

pub fn read_bytes(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (tests need ../shared beside the project)", path.display()))
}

pub fn randn(shape: &[usize]) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu).expect("randn")
}

pub fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("tensor values")
}

pub fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0f32, |m, v| m.max(v.abs()))
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Activations agree when max|Δ| ≤ 1e-4 × the reference's abs-max (ARCH.md's bound for f32
/// reorderings), with a floor for all-zero outputs. A wrong tap or pad is off by O(1).
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f32]) -> f32 {
    assert!(gpu.iter().all(|v| v.is_finite()), "{what}: non-finite GPU output");
    let diff = max_abs_diff(gpu, cpu);
    let bound = 1e-4 * max_abs(cpu).max(1e-2);
    println!("{what:>40}: max|Δ| = {diff:.3e}  (bound {bound:.3e})");
    assert!(diff <= bound, "{what}: max|Δ| {diff:.3e} > {bound:.3e}");
    diff
}

/// Upload `values` as an activation buffer.
pub fn upload(values: &[f32]) -> wgpu::Buffer {
    let buffer = gpu().activation("test input", values.len());
    gpu().write(&buffer, values);
    buffer
}

/// Run one recorded dispatch and read `len` values of `output` back.
pub fn run_and_read(dispatch: &skinlens_gpu::Dispatch, output: &wgpu::Buffer, len: usize) -> Vec<f32> {
    pollster::block_on(async {
        gpu().run(&[dispatch]).await.expect("dispatch");
        gpu().read(output, len).await.expect("read back")
    })
}
