//! `skinlens --version`: the binary's own version and the version of the model built into it
//! (they move independently: a retrained model ships without a code change).

use std::sync::LazyLock;

/// The shipped model's card, built in beside the weights (`model_file::SHIPPED_MODEL`).
const SHIPPED_CARD: &str = include_str!("../../../models/skinlens.card.json");

/// E.g. `0.1.0 (built-in model 1.1.0)`, or for a CUDA build `0.1.0 (built-in model 1.1.0;
/// built with CUDA 13.0 for compute capability 9.0)`; clap prefixes the program name.
pub static VERSION_TEXT: LazyLock<String> = LazyLock::new(|| {
    let model = serde_json::from_str::<serde_json::Value>(SHIPPED_CARD)
        .ok()
        .and_then(|card| card.get("version").and_then(|v| v.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown (the card has no version)".into());
    let cuda = skinlens_train::train::device::cuda_build().map(|c| format!("; {c}")).unwrap_or_default();
    format!("{} (built-in model {model}{cuda})", env!("CARGO_PKG_VERSION"))
});
