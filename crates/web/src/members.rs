//! What the page is told about a model's members (`describe().members`), in plain Rust.

use serde::Serialize;
use skinlens_core::Classifier;

/// One member of the loaded model: what it runs and its share of the answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberDescription {
    pub name: String,
    pub arch: String,
    /// The size it runs at (its declared test-time size).
    pub input_size: u32,
    pub train_size: Option<usize>,
    pub weight: f32,
    pub temperature: f32,
    pub colour_constancy: String,
    /// Passes of its network per image (its test-time views).
    pub views: usize,
    /// Multiply-adds of one pass at its input size (the page deals passes to workers by it).
    pub multiply_adds: u64,
}

pub fn describe_members(classifier: &Classifier) -> Vec<MemberDescription> {
    classifier
        .members()
        .iter()
        .map(|m| MemberDescription {
            name: m.name.clone(),
            arch: m.model().config().name.clone(),
            input_size: m.input_size(),
            train_size: m.metadata().train_size,
            weight: m.weight,
            temperature: m.metadata().temperature,
            colour_constancy: m.metadata().colour_constancy.as_string(),
            views: m.test_time_views().view_count(),
            multiply_adds: m.model().config().multiply_adds(m.input_size() as usize),
        })
        .collect()
}
