//! skinlens in the browser: the core [`Classifier`] behind a small wasm-bindgen API.
//!
//! The page runs this module inside a Web Worker (see `www/backends/cpu.js`):
//! `new WasmClassifier(modelBytes)` → `warmUp()` → `classify(imageBytes)` per image.
//! Every failure reaches JavaScript as a thrown `Error` with a message meant for a person;
//! bad input never panics. Should a bug panic anyway, the hook below keeps its message so
//! the worker can report it (`lastPanic()`) before it is replaced by a fresh one.

mod analysis;
mod members;

pub use analysis::{
    analyse, begin_analysis, classify_passes, pass_count, warm_up, Analysis, Clock, PassAnswer, PendingAnalysis, BACKEND_ID,
    BACKEND_LABEL,
};
pub use members::{describe_members, MemberDescription};

#[cfg(target_arch = "wasm32")]
mod browser;

// The WebGPU backend: the session logic (native-testable) and its JS wrapper.
pub mod gpu_session;
#[cfg(target_arch = "wasm32")]
mod gpu_browser;
