//! The whole data path in one place: bytes → decode → model view → tensor → logits →
//! calibrated probabilities. No clocks here (wasm32 has no `Instant`): callers time the steps.

use candle_core::{Device, Tensor};

use crate::model::{EfficientNetLite, FoldedNetwork, ModelMetadata};
use crate::preprocess::{self, PreparedImage};
use crate::tta::TestTimeAugmentation;
use crate::Result;

/// One image's answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Classification {
    /// Class codes in the model's order.
    pub classes: Vec<String>,
    /// Softmax probabilities (temperature applied), same order as `classes`; they sum to 1.
    pub probabilities: Vec<f32>,
    pub logits: Vec<f32>,
}

impl Classification {
    /// Index of the most probable class (first one on a tie).
    pub fn top(&self) -> usize {
        let mut best = 0;
        for (i, p) in self.probabilities.iter().enumerate() {
            if *p > self.probabilities[best] {
                best = i;
            }
        }
        best
    }

    /// The average answer over views of one image: mean probabilities (they still sum to 1)
    /// and mean logits. `answers` must not be empty and must share their class list.
    pub fn mean(answers: &[Classification]) -> Classification {
        let n = answers.len() as f32;
        let average = |pick: fn(&Classification) -> &[f32]| -> Vec<f32> {
            let mut sum = vec![0f32; pick(&answers[0]).len()];
            for a in answers {
                sum.iter_mut().zip(pick(a)).for_each(|(s, v)| *s += v);
            }
            sum.into_iter().map(|s| s / n).collect()
        };
        Classification { classes: answers[0].classes.clone(), probabilities: average(|a| &a.probabilities), logits: average(|a| &a.logits) }
    }

    /// `(class, probability)` from most to least probable.
    pub fn ranked(&self) -> Vec<(&str, f32)> {
        let mut ranked: Vec<_> = self.classes.iter().map(String::as_str).zip(self.probabilities.iter().copied()).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked
    }
}

/// A loaded model on the CPU, ready to classify image bytes.
#[derive(Debug, Clone)]
pub struct Classifier {
    model: EfficientNetLite,
    metadata: ModelMetadata,
    device: Device,
}

impl Classifier {
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        Self::from_network(&FoldedNetwork::from_safetensors(bytes)?)
    }

    pub fn from_network(net: &FoldedNetwork) -> Result<Self> {
        Ok(Self { model: EfficientNetLite::new(net)?, metadata: net.metadata.clone(), device: Device::Cpu })
    }

    pub fn model(&self) -> &EfficientNetLite {
        &self.model
    }

    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    pub fn input_size(&self) -> u32 {
        self.model.config().input_size as u32
    }

    /// Decode and frame an image as the model sees it.
    pub fn prepare(&self, bytes: &[u8]) -> Result<PreparedImage> {
        preprocess::prepare(bytes, self.input_size())
    }

    /// The normalised `[1, 3, S, S]` input of a prepared image.
    pub fn input(&self, image: &PreparedImage) -> Result<Tensor> {
        preprocess::input_tensor(&[&image.model_view], &self.device)
    }

    /// The views the model's test-time augmentation runs for `input`, the input itself first.
    pub fn views(&self, input: &Tensor) -> Result<Vec<Tensor>> {
        self.metadata.tta.views(input)
    }

    /// Input tensor `[N, 3, S, S]` → one classification per image, averaged over the model's
    /// test-time views.
    pub fn classify_tensor(&self, input: &Tensor) -> Result<Vec<Classification>> {
        self.classify_with_views(input, self.metadata.tta)
    }

    /// As [`classify_tensor`](Self::classify_tensor), averaged over the given views instead of
    /// the model's own (e.g. `predict --tta=none`).
    pub fn classify_with_views(&self, input: &Tensor, views: TestTimeAugmentation) -> Result<Vec<Classification>> {
        let per_view = views.views(input)?.iter().map(|view| self.classify_view(view)).collect::<Result<Vec<_>>>()?;
        let images = per_view[0].len();
        Ok((0..images).map(|i| Classification::mean(&per_view.iter().map(|v| v[i].clone()).collect::<Vec<_>>())).collect())
    }

    /// One pass of the network on exactly this input (no test-time views).
    pub fn classify_view(&self, input: &Tensor) -> Result<Vec<Classification>> {
        self.from_logits(&self.model.forward(input)?)
    }

    /// Logits `[N, classes]` → calibrated probabilities.
    pub fn from_logits(&self, logits: &Tensor) -> Result<Vec<Classification>> {
        let scaled = (logits / f64::from(self.metadata.temperature))?;
        let probabilities = candle_nn::ops::softmax_last_dim(&scaled)?.to_vec2::<f32>()?;
        let logits = logits.to_vec2::<f32>()?;
        Ok(logits
            .into_iter()
            .zip(probabilities)
            .map(|(logits, probabilities)| Classification { classes: self.metadata.classes.clone(), probabilities, logits })
            .collect())
    }

    /// Bytes in, probabilities out.
    pub fn classify_bytes(&self, bytes: &[u8]) -> Result<Classification> {
        let image = self.prepare(bytes)?;
        let mut results = self.classify_tensor(&self.input(&image)?)?;
        Ok(results.remove(0))
    }
}
