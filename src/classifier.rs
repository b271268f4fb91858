//! The whole data path in one place: bytes → decode → each member's view → tensor → logits →
//! calibrated probabilities → the mean over views → the weighted mean over members.
//! No clocks here (wasm32 has no `Instant`): callers time the steps.

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::model::{EfficientNetLite, FoldedNetwork, ModelFile, ModelMetadata};
use crate::preprocess::{self, InputSpec, PreparedImage};
use crate::tta::TestTimeAugmentation;
use crate::{Error, Result};

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

/// One image as every member of a classifier sees it: one framed, resized (and, where a
/// member asks, colour-corrected) view per distinct input of the classifier.
#[derive(Debug, Clone)]
pub struct PreparedViews {
    /// Size of the decoded image after EXIF orientation.
    pub original_width: u32,
    pub original_height: u32,
    /// In the order of [`Classifier::input_specs`]; the first is what the first member sees.
    pub inputs: Vec<RgbImage>,
}

impl PreparedViews {
    /// What the first member sees (the page's preview).
    pub fn first(&self) -> &RgbImage {
        &self.inputs[0]
    }
}

/// One network of a loaded model, ready to run on the CPU.
#[derive(Debug, Clone)]
pub struct MemberClassifier {
    pub name: String,
    /// Its share of the answer (the shares of a classifier sum to 1).
    pub weight: f32,
    model: EfficientNetLite,
    metadata: ModelMetadata,
    /// Index into the classifier's input specs.
    input: usize,
    views: TestTimeAugmentation,
}

impl MemberClassifier {
    pub fn model(&self) -> &EfficientNetLite {
        &self.model
    }

    /// Its own metadata: temperature and colour constancy, plus the file-wide fields.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// The size it runs at.
    pub fn input_size(&self) -> u32 {
        self.model.config().input_size as u32
    }

    pub fn input_spec(&self) -> InputSpec {
        InputSpec { size: self.input_size(), colour: self.metadata.colour_constancy }
    }

    /// The views its answers average over.
    pub fn test_time_views(&self) -> TestTimeAugmentation {
        self.views
    }

    /// The views of `input` it runs, the input itself first.
    pub fn views(&self, input: &Tensor) -> Result<Vec<Tensor>> {
        self.views.views(input)
    }

    /// One pass of the network on exactly this input (no test-time views).
    pub fn classify_view(&self, input: &Tensor) -> Result<Vec<Classification>> {
        self.from_logits(&self.model.forward(input)?)
    }

    /// Its answers for `[N, 3, S, S]`, each the mean over its views, with the head features of
    /// the first view (the image itself) for the activation map.
    pub fn classify_with_features(&self, input: &Tensor) -> Result<(Vec<Classification>, Tensor)> {
        let views = self.views(input)?;
        let features = self.model.features(&views[0])?;
        let mut per_view = vec![self.from_logits(&self.model.classify_features(&features)?)?];
        for view in &views[1..] {
            per_view.push(self.classify_view(view)?);
        }
        let answers = (0..per_view[0].len())
            .map(|i| Classification::mean(&per_view.iter().map(|v| v[i].clone()).collect::<Vec<_>>()))
            .collect();
        Ok((answers, features))
    }

    /// Logits `[N, classes]` → calibrated probabilities (this member's temperature).
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
}

/// A loaded model on the CPU, ready to classify image bytes: one or more weighted members, each
/// with its input size, colour constancy, temperature and test-time views. Every front end
/// answers through [`combine`](Self::combine): the weighted mean over members of each member's
/// mean over its views of its calibrated probabilities.
#[derive(Debug, Clone)]
pub struct Classifier {
    members: Vec<MemberClassifier>,
    /// The distinct inputs the members need, in order of first use.
    specs: Vec<InputSpec>,
}

impl Classifier {
    /// A model file of either layout (one network, or several members).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        Self::from_model_file(&ModelFile::from_safetensors(bytes)?)
    }

    /// One network, the whole answer.
    pub fn from_network(net: &FoldedNetwork) -> Result<Self> {
        Self::from_model_file(&ModelFile::single(net.clone()))
    }

    pub fn from_model_file(file: &ModelFile) -> Result<Self> {
        let parts = file
            .members
            .iter()
            .map(|m| Ok((m.name.clone(), m.weight, EfficientNetLite::new(&m.network)?, m.network.metadata.clone())))
            .collect::<Result<Vec<_>>>()?;
        Self::assemble(parts)
    }

    /// Several classifiers as one (e.g. `predict --model a:0.6 --model b:0.4`): each one's
    /// members keep their views, their weights scaled by its share of the parts' total weight.
    pub fn merge(parts: Vec<(Classifier, f32)>) -> Result<Self> {
        let total: f32 = parts.iter().map(|p| p.1).sum();
        if parts.is_empty() || total.is_nan() || total <= 0.0 {
            return Err(Error::Model("an ensemble needs at least one model with a positive weight".into()));
        }
        let classes = parts[0].0.metadata().classes.clone();
        let mut members = Vec::new();
        for (i, (classifier, share)) in parts.into_iter().enumerate() {
            if classifier.metadata().classes != classes {
                return Err(Error::Model(format!("model {} has classes {:?}, the first {classes:?}: they cannot be averaged", i + 1, classifier.metadata().classes)));
            }
            for mut member in classifier.members {
                member.weight *= share / total;
                member.name = format!("{}.{}", i + 1, member.name);
                members.push(member);
            }
        }
        let parts = members.into_iter().map(|m| (m.name, m.weight, m.model, m.metadata, m.views)).collect();
        Self::assemble_with_views(parts)
    }

    fn assemble(parts: Vec<(String, f32, EfficientNetLite, ModelMetadata)>) -> Result<Self> {
        Self::assemble_with_views(parts.into_iter().map(|(n, w, model, meta)| { let views = meta.tta; (n, w, model, meta, views) }).collect())
    }

    fn assemble_with_views(parts: Vec<(String, f32, EfficientNetLite, ModelMetadata, TestTimeAugmentation)>) -> Result<Self> {
        if parts.is_empty() {
            return Err(Error::Model("a model needs at least one network".into()));
        }
        let mut specs: Vec<InputSpec> = Vec::new();
        let mut members = Vec::with_capacity(parts.len());
        for (name, weight, model, metadata, views) in parts {
            let spec = InputSpec { size: model.config().input_size as u32, colour: metadata.colour_constancy };
            let input = specs.iter().position(|s| *s == spec).unwrap_or_else(|| {
                specs.push(spec);
                specs.len() - 1
            });
            members.push(MemberClassifier { name, weight, model, metadata, input, views });
        }
        Ok(Self { members, specs })
    }

    pub fn members(&self) -> &[MemberClassifier] {
        &self.members
    }

    /// The first member's network (its features feed the activation map).
    pub fn model(&self) -> &EfficientNetLite {
        &self.members[0].model
    }

    /// The first member's metadata; classes, views and the untrained flag are file-wide.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.members[0].metadata
    }

    /// Any member with a head that was never trained.
    pub fn untrained(&self) -> bool {
        self.members.iter().any(|m| m.metadata.untrained)
    }

    /// The first member's input size (what the page previews).
    pub fn input_size(&self) -> u32 {
        self.members[0].input_size()
    }

    /// The distinct inputs the members need ([`PreparedViews::inputs`] follows this order).
    pub fn input_specs(&self) -> &[InputSpec] {
        &self.specs
    }

    /// Run every member on these views instead of the ones the file declares (`--tta`).
    pub fn set_views(&mut self, views: TestTimeAugmentation) {
        self.members.iter_mut().for_each(|m| m.views = views);
    }

    /// Passes of a network per image: Σ over members of their views.
    pub fn passes_per_image(&self) -> usize {
        self.members.iter().map(|m| m.views.view_count()).sum()
    }

    /// Decode an image and frame it for every member.
    pub fn prepare(&self, bytes: &[u8]) -> Result<PreparedViews> {
        Ok(self.prepare_decoded(&preprocess::decode_rgb8(bytes, &preprocess::DecodeLimits::default())?))
    }

    /// Frame a decoded image for every member (centre square, colour constancy, resize).
    pub fn prepare_decoded(&self, rgb: &RgbImage) -> PreparedViews {
        PreparedViews {
            original_width: rgb.width(),
            original_height: rgb.height(),
            inputs: self.specs.iter().map(|&spec| preprocess::prepare_decoded_as(rgb, spec).model_view).collect(),
        }
    }

    /// The normalised `[N, 3, S, S]` inputs of a batch, one tensor per input spec.
    pub fn input_tensors(&self, images: &[&PreparedViews]) -> Result<Vec<Tensor>> {
        (0..self.specs.len())
            .map(|k| preprocess::input_tensor(&images.iter().map(|p| &p.inputs[k]).collect::<Vec<_>>(), &Device::Cpu))
            .collect()
    }

    /// The normalised `[1, 3, S, S]` input of one prepared view (for one-pass comparisons of
    /// the first member, e.g. CPU against GPU).
    pub fn input(&self, image: &PreparedImage) -> Result<Tensor> {
        preprocess::input_tensor(&[&image.model_view], &Device::Cpu)
    }

    /// One pass of the first member's network on exactly this input (no test-time views).
    pub fn classify_view(&self, input: &Tensor) -> Result<Vec<Classification>> {
        self.members[0].classify_view(input)
    }

    /// Member `member`'s input among `inputs` (from [`input_tensors`](Self::input_tensors)).
    pub fn member_input<'a>(&self, member: usize, inputs: &'a [Tensor]) -> &'a Tensor {
        &inputs[self.members[member].input]
    }

    /// Member `member`'s views of one prepared image, flattened NCHW (for the GPU engine).
    pub fn member_view_inputs(&self, member: usize, image: &PreparedViews) -> Result<Vec<Vec<f32>>> {
        let m = &self.members[member];
        let input = preprocess::input_tensor(&[&image.inputs[m.input]], &Device::Cpu)?;
        Ok(m.views(&input)?.iter().map(|v| v.flatten_all()?.to_vec1::<f32>()).collect::<candle_core::Result<Vec<_>>>()?)
    }

    /// The model's answer from each member's own answer (in member order): the weighted mean of
    /// their probabilities and of their logits. The one place members are combined.
    pub fn combine(&self, member_answers: &[Classification]) -> Classification {
        let classes = self.metadata().classes.clone();
        let mut probabilities = vec![0f32; classes.len()];
        let mut logits = vec![0f32; classes.len()];
        for (member, answer) in self.members.iter().zip(member_answers) {
            probabilities.iter_mut().zip(&answer.probabilities).for_each(|(s, p)| *s += member.weight * p);
            logits.iter_mut().zip(&answer.logits).for_each(|(s, l)| *s += member.weight * l);
        }
        Classification { classes, probabilities, logits }
    }

    /// Each member's answers on a batch (`[member][image]`), each averaged over its views.
    pub fn classify_members(&self, inputs: &[Tensor]) -> Result<Vec<Vec<Classification>>> {
        self.members.iter().map(|m| Ok(m.classify_with_features(&inputs[m.input])?.0)).collect()
    }

    /// One answer per image of the batch `inputs` (from [`input_tensors`](Self::input_tensors)).
    pub fn classify_inputs(&self, inputs: &[Tensor]) -> Result<Vec<Classification>> {
        let per_member = self.classify_members(inputs)?;
        Ok(self.combine_batch(&per_member))
    }

    /// [`combine`](Self::combine) for every image of a batch (`[member][image]`).
    pub fn combine_batch(&self, per_member: &[Vec<Classification>]) -> Vec<Classification> {
        let images = per_member.first().map_or(0, Vec::len);
        (0..images).map(|i| self.combine(&per_member.iter().map(|m| m[i].clone()).collect::<Vec<_>>())).collect()
    }

    /// One answer per prepared image.
    pub fn classify(&self, images: &[&PreparedViews]) -> Result<Vec<Classification>> {
        self.classify_inputs(&self.input_tensors(images)?)
    }

    /// One image's answer, with the first member's head features of the image itself (for the
    /// activation map), from its inputs (`input_tensors` of one image).
    pub fn classify_with_features(&self, inputs: &[Tensor]) -> Result<(Classification, Tensor)> {
        let mut answers = Vec::with_capacity(self.members.len());
        let mut first_features = None;
        for m in &self.members {
            let (mut answer, features) = m.classify_with_features(&inputs[m.input])?;
            if answer.is_empty() {
                return Err(Error::Model("the model returned no result".into()));
            }
            first_features.get_or_insert(features);
            answers.push(answer.swap_remove(0));
        }
        let features = first_features.ok_or_else(|| Error::Model("the model has no network".into()))?;
        Ok((self.combine(&answers), features))
    }

    /// Bytes in, probabilities out.
    pub fn classify_bytes(&self, bytes: &[u8]) -> Result<Classification> {
        let image = self.prepare(bytes)?;
        let mut results = self.classify(&[&image])?;
        Ok(results.remove(0))
    }
}
