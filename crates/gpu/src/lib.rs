//! skinlens-gpu: the skinlens network on the GPU, as WGSL compute kernels dispatched through
//! wgpu — WebGPU in the browser, Vulkan natively (Mesa lavapipe in CI).
//!
//! It reads the same [`FoldedNetwork`](skinlens_core::FoldedNetwork) as the CPU path (BatchNorm
//! folded at load, TF 'SAME' padding, ReLU6) and is tested to give the same probabilities.
//! Everything is allocated once in [`GpuEngine::new`]; [`GpuEngine::classify`] only writes the
//! input, replays the recorded dispatches and maps one small result buffer.
//!
//! ```no_run
//! # async fn demo(bytes: &[u8], input: &[f32]) -> Result<(), Box<dyn std::error::Error>> {
//! let net = skinlens_core::FoldedNetwork::from_safetensors(bytes)?;
//! let engine = skinlens_gpu::GpuEngine::new(&net).await?;
//! let output = engine.classify(input).await?;
//! println!("{:?}", output.probabilities);
//! # Ok(()) }
//! ```

mod context;
mod dispatch;
mod engine;
mod error;
pub mod layers;
mod readback;

pub use context::GpuContext;
pub use dispatch::Dispatch;
pub use engine::{self_check_input, GpuEngine, GpuOutput, GpuTrace};
pub use error::{GpuError, Result};
