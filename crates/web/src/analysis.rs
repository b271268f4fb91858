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
    let all: Vec<usize> = (0..pass_count(classifier)).collect();
    begin_analysis(classifier, bytes, &all, clock)?.finish(classifier, Vec::new(), clock)
}

/// How many network passes one image costs: every member's test-time views. The page's worker
/// pool spreads them over workers: each pass is one network run on one view.
pub fn pass_count(classifier: &Classifier) -> usize {
    classifier.members().iter().map(|m| m.test_time_views().view_count()).sum()
}

/// Pass `pass` as (member, view): member 0's views first, then member 1's, and so on.
fn member_view(classifier: &Classifier, pass: usize) -> skinlens_core::Result<(usize, usize)> {
    let mut rest = pass;
    for (member, m) in classifier.members().iter().enumerate() {
        let views = m.test_time_views().view_count();
        if rest < views {
            return Ok((member, rest));
        }
        rest -= views;
    }
    Err(unknown_pass(pass, pass_count(classifier)))
}

/// One pass's answer, computed by whichever worker ran it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PassAnswer {
    pub pass: usize,
    pub probabilities: Vec<f32>,
    pub logits: Vec<f32>,
}

/// An image decoded and framed for every member, with each member's views made when first asked.
struct ImageInputs {
    prepared: PreparedViews,
    inputs: Vec<Tensor>,
    views: Vec<Option<Vec<Tensor>>>,
}

impl ImageInputs {
    fn new(classifier: &Classifier, bytes: &[u8]) -> skinlens_core::Result<Self> {
        Self::from_decoded(classifier, decode_rgb8(bytes, &DecodeLimits::default())?)
    }

    fn from_decoded(classifier: &Classifier, decoded: image::RgbImage) -> skinlens_core::Result<Self> {
        let prepared = classifier.prepare_decoded(&decoded);
        drop(decoded);
        let inputs = classifier.input_tensors(&[&prepared])?;
        Ok(Self { prepared, inputs, views: vec![None; classifier.members().len()] })
    }

    fn view(&mut self, classifier: &Classifier, member: usize, view: usize) -> skinlens_core::Result<&Tensor> {
        if self.views[member].is_none() {
            let input = classifier.member_input(member, &self.inputs);
            self.views[member] = Some(classifier.members()[member].views(input)?);
        }
        Ok(&self.views[member].as_ref().expect("made above")[view])
    }

    /// Pass `pass`'s answer (the same arithmetic as the core's `classify_with_features`).
    fn run_pass(&mut self, classifier: &Classifier, pass: usize) -> skinlens_core::Result<PassAnswer> {
        let (member, view) = member_view(classifier, pass)?;
        let input = self.view(classifier, member, view)?.clone();
        let answer = first(classifier.members()[member].classify_view(&input)?)?;
        Ok(PassAnswer { pass, probabilities: answer.probabilities, logits: answer.logits })
    }
}

/// The passes `passes` of one image, without the activation map: what a helper worker of the
/// page's pool computes. Each pass is the same arithmetic as in [`analyse`], so an answer
/// assembled from several workers equals the single-worker one bit for bit.
pub fn classify_passes(classifier: &Classifier, bytes: &[u8], passes: &[usize]) -> skinlens_core::Result<Vec<PassAnswer>> {
    let mut image = ImageInputs::new(classifier, bytes)?;
    passes.iter().map(|&pass| image.run_pass(classifier, pass)).collect()
}

/// An image whose own passes are done (pass 0, the first member on the image itself, always
/// among them: its head features feed the activation map and the familiarity check) and which
/// waits for the other passes' answers, if any, to finish.
pub struct PendingAnalysis {
    prepared: PreparedViews,
    features: Tensor,
    answers: Vec<PassAnswer>,
    decode_ms: f64,
    preprocess_ms: f64,
    inference_started_ms: f64,
}

/// Decode and frame `bytes`, then run pass 0 and `passes` (the others come to
/// [`PendingAnalysis::finish`]).
pub fn begin_analysis(
    classifier: &Classifier,
    bytes: &[u8],
    passes: &[usize],
    clock: &impl Clock,
) -> skinlens_core::Result<PendingAnalysis> {
    let t0 = clock.now_ms();
    let decoded = decode_rgb8(bytes, &DecodeLimits::default())?;
    let t1 = clock.now_ms();
    let mut image = ImageInputs::from_decoded(classifier, decoded)?;
    let t2 = clock.now_ms();
    // Pass 0 through features → head, so its features also serve the activation map.
    let first_member = &classifier.members()[0];
    let features = first_member.model().features(image.view(classifier, 0, 0)?)?;
    let own = first(first_member.from_logits(&first_member.model().classify_features(&features)?)?)?;
    let mut answers = vec![PassAnswer { pass: 0, probabilities: own.probabilities, logits: own.logits }];
    for &pass in passes.iter().filter(|&&p| p != 0) {
        answers.push(image.run_pass(classifier, pass)?);
    }
    Ok(PendingAnalysis {
        prepared: image.prepared,
        features,
        answers,
        decode_ms: t1 - t0,
        preprocess_ms: t2 - t1,
        inference_started_ms: t2,
    })
}

impl PendingAnalysis {
    /// Add the other workers' answers, average each member's passes in view order and combine
    /// the members (as the core does in one worker), and explain the result. Every pass must be
    /// answered exactly once.
    pub fn finish(self, classifier: &Classifier, others: Vec<PassAnswer>, clock: &impl Clock) -> skinlens_core::Result<Analysis> {
        let pass_count = pass_count(classifier);
        let mut by_pass: Vec<Option<PassAnswer>> = vec![None; pass_count];
        for answer in self.answers.into_iter().chain(others) {
            let pass = answer.pass;
            let slot = by_pass.get_mut(pass).ok_or_else(|| unknown_pass(pass, pass_count))?;
            if slot.is_some() {
                return Err(skinlens_core::Error::Model(format!("pass {pass} was answered twice")));
            }
            *slot = Some(answer);
        }
        let classes = &classifier.metadata().classes;
        let mut per_member: Vec<Vec<Classification>> = vec![Vec::new(); classifier.members().len()];
        for (pass, answer) in by_pass.into_iter().enumerate() {
            let answer = answer.ok_or_else(|| skinlens_core::Error::Model(format!("pass {pass} was never answered")))?;
            if answer.probabilities.len() != classes.len() || answer.logits.len() != classes.len() {
                return Err(skinlens_core::Error::Model(format!("pass {pass} answered for a different class list")));
            }
            let (member, _) = member_view(classifier, pass)?;
            per_member[member].push(Classification { classes: classes.clone(), probabilities: answer.probabilities, logits: answer.logits });
        }
        let member_answers: Vec<Classification> = per_member.iter().map(|views| Classification::mean(views)).collect();
        let classification = classifier.combine(&member_answers);
        let t3 = clock.now_ms();
        let cam = activation_map(classifier, &self.features, classification.top(), &classification)?;
        let t4 = clock.now_ms();
        let timings = Timings {
            decode_ms: self.decode_ms,
            preprocess_ms: self.preprocess_ms,
            inference_ms: t3 - self.inference_started_ms,
            cam_ms: t4 - t3,
        };
        Analysis::assemble(BACKEND_ID, classification, self.prepared, cam, timings).with_features(&self.features)
    }
}

fn unknown_pass(pass: usize, count: usize) -> skinlens_core::Error {
    skinlens_core::Error::Model(format!("pass {pass} asked for, but this model runs {count} per image"))
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

/// One network pass per member on a flat grey image, so the first real image does not pay for
/// first-touch allocations or the engine's first compile of the kernels. The other test-time
/// views run the same layers at the same sizes, so they would only lengthen the cold start.
/// Returns how long it took.
pub fn warm_up(classifier: &Classifier, clock: &impl Clock) -> skinlens_core::Result<f64> {
    let size = classifier.input_size();
    let grey = image::RgbImage::from_pixel(size, size, image::Rgb([127, 127, 127]));
    let prepared = classifier.prepare_decoded(&grey);
    let t0 = clock.now_ms();
    let inputs = classifier.input_tensors(&[&prepared])?;
    for (m, member) in classifier.members().iter().enumerate() {
        member.classify_view(classifier.member_input(m, &inputs))?;
    }
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

fn first(mut batch: Vec<Classification>) -> skinlens_core::Result<Classification> {
    if batch.is_empty() {
        return Err(skinlens_core::Error::Model("the model returned no result".into()));
    }
    Ok(batch.swap_remove(0))
}
