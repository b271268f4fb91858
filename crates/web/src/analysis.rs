//! One image through the classifier, timed step by step, in plain Rust (no JS types), so the
//! browser API stays a thin wrapper and this part can be tested natively.

use candle_core::Tensor;
use serde::ser::{Serialize, SerializeMap, Serializer};
use skinlens_core::labels::class_info;
use skinlens_core::preprocess::{decode_rgb8, DecodeLimits};
use skinlens_core::familiarity::{pooled_features, Familiarity, FamiliarityCheck};
use skinlens_core::{Classification, Classifier, PreparedViews};

/// Identifies the engine that computed a result; the page's backend registry uses the same id.
pub const BACKEND_ID: &str = "cpu";
/// What the page's badge says for this engine.
pub const BACKEND_LABEL: &str = "CPU · wasm SIMD";

/// Milliseconds since an arbitrary origin; the browser passes `performance.now`.
pub trait Clock {
    fn now_ms(&self) -> f64;
}

/// A class code with what a person should read next to it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassLabel {
    pub code: String,
    pub name: String,
    pub malignant: bool,
}

impl ClassLabel {
    pub fn of(code: &str) -> Self {
        match class_info(code) {
            Some(info) => Self { code: code.to_string(), name: info.name.to_string(), malignant: info.malignant },
            // A model with classes skinlens does not know: show the code, flag nothing.
            None => Self { code: code.to_string(), name: code.to_string(), malignant: false },
        }
    }
}

/// `{code: probability}` in the model's class order (a JS object keeps insertion order).
#[derive(Debug, Clone)]
pub struct ByClass(pub Vec<(String, f32)>);

impl Serialize for ByClass {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (code, value) in &self.0 {
            map.serialize_entry(code, value)?;
        }
        map.end()
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Timings {
    pub decode_ms: f64,
    /// Centre square, resize and normalisation into the input tensor.
    pub preprocess_ms: f64,
    /// Input tensor in → probabilities out.
    pub inference_ms: f64,
    /// The class-activation map, computed after the probabilities (not part of inference).
    pub cam_ms: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RankedClass {
    #[serde(flatten)]
    pub label: ClassLabel,
    pub probability: f32,
}

/// The class-activation map of the top class: the linear head's weights applied to each of the
/// last feature map's positions, at the feature map's own size (input size / 32: 4×4 at 128 px,
/// 7×7 at 224 px). Raw values; the page decides how to colour and smooth them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActivationMap {
    pub class: String,
    pub width: usize,
    pub height: usize,
    /// Row-major, `height × width`.
    pub values: Vec<f32>,
}

/// Everything the page shows about one image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Analysis {
    pub probabilities: ByClass,
    pub top: String,
    pub backend: &'static str,
    pub timings: Timings,
    /// Most to least probable, with full names and the malignant flag.
    pub ranked: Vec<RankedClass>,
    pub logits: ByClass,
    /// Size of the decoded image (after EXIF orientation), before cropping.
    pub original_width: u32,
    pub original_height: u32,
    pub cam: ActivationMap,
    /// Whether the image looks like the training data; `None` when the model file has no check.
    pub familiarity: Option<Familiarity>,
    /// The pooled head features of the first view, which the familiarity check reads.
    #[serde(skip)]
    pub pooled_features: Vec<f32>,
    /// The square the model saw, `size × size` RGB; the wrapper hands it to JS as RGBA pixels.
    #[serde(skip)]
    pub model_view: image::RgbImage,
}

/// Decode, frame, classify and explain `bytes`, timing each step with `clock`.
pub fn analyse(classifier: &Classifier, bytes: &[u8], clock: &impl Clock) -> skinlens_core::Result<Analysis> {
    let t0 = clock.now_ms();
    let decoded = decode_rgb8(bytes, &DecodeLimits::default())?;
    let t1 = clock.now_ms();
    let prepared = classifier.prepare_decoded(&decoded);
    drop(decoded);
    let inputs = classifier.input_tensors(&[&prepared])?;
    let t2 = clock.now_ms();
    // The core's members × views, keeping the first member's head features of the image itself
    // for the activation map (no second pass).
    let (classification, features) = classifier.classify_with_features(&inputs)?;
    let t3 = clock.now_ms();
    let cam = activation_map(classifier, &features, classification.top(), &classification)?;
    let t4 = clock.now_ms();
    let timings = Timings { decode_ms: t1 - t0, preprocess_ms: t2 - t1, inference_ms: t3 - t2, cam_ms: t4 - t3 };
    Ok(Analysis::assemble(BACKEND_ID, classification, prepared, cam, timings).with_features(&features)?)
}

impl Analysis {
    /// The answer one backend produced, in the shape the page shows (shared by CPU and GPU).
    pub(crate) fn assemble(
        backend: &'static str,
        classification: Classification,
        mut prepared: PreparedViews,
        cam: ActivationMap,
        timings: Timings,
    ) -> Self {
        Analysis {
            probabilities: by_class(&classification, &classification.probabilities),
            top: classification.classes[classification.top()].clone(),
            backend,
            timings,
            ranked: classification
                .ranked()
                .into_iter()
                .map(|(code, probability)| RankedClass { label: ClassLabel::of(code), probability })
                .collect(),
            logits: by_class(&classification, &classification.logits),
            original_width: prepared.original_width,
            original_height: prepared.original_height,
            cam,
            familiarity: None,
            pooled_features: Vec::new(),
            // What the first member saw (its features drew the activation map).
            model_view: prepared.inputs.swap_remove(0),
        }
    }

    /// Keep the pooled head features `[1, C, h, w]` → `C` for the familiarity check.
    pub(crate) fn with_features(mut self, features: &Tensor) -> skinlens_core::Result<Self> {
        self.pooled_features = pooled_features(features)?;
        Ok(self)
    }

    /// Run the model file's familiarity check, when it has one, on this image's features.
    pub fn assess_familiarity(&mut self, check: Option<&FamiliarityCheck>) -> skinlens_core::Result<()> {
        self.familiarity = check.map(|check| check.check(&self.pooled_features)).transpose()?;
        Ok(())
    }
}

/// One pass on a flat grey image, so the first real image does not pay for first-touch
/// allocations. Returns how long it took.
pub fn warm_up(classifier: &Classifier, clock: &impl Clock) -> skinlens_core::Result<f64> {
    let size = classifier.input_size();
    let grey = image::RgbImage::from_pixel(size, size, image::Rgb([127, 127, 127]));
    let prepared = classifier.prepare_decoded(&grey);
    let t0 = clock.now_ms();
    classifier.classify(&[&prepared])?;
    Ok(clock.now_ms() - t0)
}

fn by_class(classification: &Classification, values: &[f32]) -> ByClass {
    ByClass(classification.classes.iter().cloned().zip(values.iter().copied()).collect())
}

pub(crate) fn activation_map(
    classifier: &Classifier,
    features: &Tensor,
    class: usize,
    classification: &Classification,
) -> skinlens_core::Result<ActivationMap> {
    let map = classifier.model().class_activation_map(features, class)?;
    let (height, width) = map.dims2()?;
    Ok(ActivationMap {
        class: classification.classes[class].clone(),
        width,
        height,
        values: map.flatten_all()?.to_vec1()?,
    })
}
