//! What can go wrong on the GPU path, in words a user (or the page's badge) can show.

/// Everything the GPU engine can fail with. None of these are fatal to the app: the caller
/// falls back to the CPU engine and says why.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("the GPU device could not be created: {0}")]
    Device(String),
    #[error("the GPU rejected the model while loading: {0}")]
    Load(String),
    #[error("the GPU reported an error while classifying: {0}")]
    Run(String),
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("reading the result back from the GPU failed: {0}")]
    Readback(String),
    #[error("the input has {found} values; the model expects {expected} (1×3×{size}×{size}, NCHW)")]
    InputLength { found: usize, expected: usize, size: usize },
    #[error("the GPU engine is still busy with the previous image")]
    Busy,
    #[error("this GPU's limits are too small for the model: {0}")]
    Limits(String),
    #[error("model weights: {0}")]
    Weights(String),
}

pub type Result<T> = std::result::Result<T, GpuError>;
