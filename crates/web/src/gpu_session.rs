//! The WebGPU backend in plain Rust (no JS types), so its choices can be tested natively:
//! start one GPU engine per member of the model, self-check each against the CPU path on a
//! built-in input, classify on the GPU, and fall back to the CPU path — for the image in hand
//! too — the moment the GPU fails. The CPU classifier is always loaded: it runs the self-check,
//! is the fallback, and supplies the member views and their combination (the core's), so both
//! paths assemble an answer the same way.

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::{Device, Tensor};
use skinlens_core::preprocess::{decode_rgb8, DecodeLimits};
use skinlens_core::{Classification, Classifier, MemberClassifier, ModelFile};
use skinlens_gpu::{self_check_input, GpuContext, GpuEngine};

use crate::analysis::{self, Analysis, Clock, Timings};

/// Identifies results computed on the GPU; the page's backend registry uses the same id.
pub const GPU_BACKEND_ID: &str = "webgpu";

/// Largest probability difference the start-up self-check accepts between GPU and CPU.
pub const SELF_CHECK_TOLERANCE: f32 = 1e-4;

/// A loaded model with the GPU engine when it works, and the CPU classifier always.
pub struct GpuSession {
    classifier: Classifier,
    /// One engine per member, in member order; `None` once the GPU is unavailable or has
    /// failed; never taken back.
    gpu: RefCell<Option<Rc<Vec<GpuEngine>>>>,
    adapter: String,
    /// Why the CPU path answers, when it does.
    fallback: RefCell<Option<String>>,
}

impl GpuSession {
    /// Load `model_bytes` on the CPU, then try the GPU. With `strict`, a GPU that cannot be used
    /// is an error (`?backend=webgpu`); without, the session runs on the CPU and says why.
    /// `adapter_name` names the adapter in the badge when the caller knows better than wgpu
    /// (browsers report vendor and architecture, which wgpu does not pass on).
    pub async fn start(model_bytes: &[u8], strict: bool, adapter_name: Option<&str>) -> Result<Self, String> {
        let file = ModelFile::from_safetensors(model_bytes).map_err(|e| format!("the model could not be loaded: {e}"))?;
        let classifier = Classifier::from_model_file(&file).map_err(|e| format!("the model could not be loaded: {e}"))?;
        let gpu = Self::start_gpu(&file, &classifier).await;
        let (gpu, adapter, fallback) = match gpu {
            Ok((engines, adapter)) => {
                let adapter = adapter_name.map(str::trim).filter(|name| !name.is_empty()).map_or(adapter, str::to_string);
                (Some(Rc::new(engines)), adapter, None)
            }
            Err(reason) if strict => return Err(format!("WebGPU unavailable: {reason}")),
            Err(reason) => (None, String::new(), Some(reason)),
        };
        Ok(Self { classifier, gpu: RefCell::new(gpu), adapter, fallback: RefCell::new(fallback) })
    }

    /// One engine per member on one device, each self-checked against its CPU member.
    async fn start_gpu(file: &ModelFile, classifier: &Classifier) -> Result<(Vec<GpuEngine>, String), String> {
        let ctx = GpuContext::new().await.map_err(|e| e.to_string())?;
        let adapter = ctx.adapter_name();
        let mut engines = Vec::with_capacity(file.members.len());
        for (member, cpu) in file.members.iter().zip(classifier.members()) {
            let engine = GpuEngine::with_context(ctx.clone(), &member.network).await.map_err(|e| e.to_string())?;
            let diff = self_check(&engine, cpu).await?;
            if diff.is_nan() || diff > SELF_CHECK_TOLERANCE {
                let which = if file.members.len() > 1 { format!(" for member {}", member.name) } else { String::new() };
                return Err(format!(
                    "the self-check on {adapter} disagreed with the CPU path{which} (max |Δp| = {diff:.1e}, allowed {SELF_CHECK_TOLERANCE:.0e})"
                ));
            }
            engines.push(engine);
        }
        Ok((engines, adapter))
    }

    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// `"webgpu"` while the GPU answers, `"cpu"` after a fallback.
    pub fn backend(&self) -> &'static str {
        if self.gpu.borrow().is_some() {
            GPU_BACKEND_ID
        } else {
            analysis::BACKEND_ID
        }
    }

    /// What the page's badge says: `GPU · WebGPU (adapter)` or `CPU · wasm SIMD — WebGPU unavailable: reason`.
    pub fn backend_label(&self) -> String {
        match &*self.fallback.borrow() {
            None => format!("GPU · WebGPU ({})", self.adapter),
            Some(reason) => format!("{} — WebGPU unavailable: {reason}", analysis::BACKEND_LABEL),
        }
    }

    /// Why the CPU answers, if it does.
    pub fn fallback_reason(&self) -> Option<String> {
        self.fallback.borrow().clone()
    }

    fn engines(&self) -> Option<Rc<Vec<GpuEngine>>> {
        self.gpu.borrow().clone()
    }

    fn fall_back(&self, reason: String) {
        self.gpu.borrow_mut().take();
        self.fallback.borrow_mut().get_or_insert(reason);
    }

    /// Make the first real image run at full speed; returns how long that took. On the GPU the
    /// start-up self-check has already run every pipeline once (the browser compiles them on
    /// first use), so a second pass would only add one more inference to the cold start.
    pub async fn warm_up(&self, clock: &impl Clock) -> Result<f64, String> {
        if self.engines().is_some() {
            return Ok(0.0);
        }
        analysis::warm_up(&self.classifier, clock).map_err(|e| format!("warm-up failed: {e}"))
    }

    /// Decode, frame, classify and explain `bytes`: on the GPU while it works, else on the CPU.
    pub async fn analyse(&self, bytes: &[u8], clock: &impl Clock) -> skinlens_core::Result<Analysis> {
        let Some(engines) = self.engines() else {
            return analysis::analyse(&self.classifier, bytes, clock);
        };
        match analyse_on_gpu(&engines, &self.classifier, bytes, clock).await? {
            Ok(analysis) => Ok(analysis),
            Err(gpu_error) => {
                // This image is answered by the CPU path, and so is every later one.
                self.fall_back(format!("the GPU failed during this session: {gpu_error}"));
                analysis::analyse(&self.classifier, bytes, clock)
            }
        }
    }

    /// Release the GPU device, as a device loss would (tests and the page's fault drill).
    pub fn lose_device(&self) {
        if let Some(engines) = self.engines() {
            // They share one device.
            if let Some(engine) = engines.first() {
                engine.context().destroy();
            }
        }
    }
}

/// Max |Δp| between a member's GPU engine and its CPU network on the built-in input.
async fn self_check(engine: &GpuEngine, classifier: &MemberClassifier) -> Result<f32, String> {
    let size = engine.input_size();
    let input = self_check_input(size);
    let tensor = Tensor::from_vec(input.clone(), (1, 3, size, size), &Device::Cpu).map_err(|e| e.to_string())?;
    // One pass each: the engines are compared, not the model's test-time views.
    let cpu = classifier.classify_view(&tensor).map_err(|e| format!("CPU self-check failed: {e}"))?;
    let cpu = cpu.first().ok_or("CPU self-check gave no result")?;
    let gpu = engine.classify(&input).await.map_err(|e| e.to_string())?;
    if gpu.probabilities.len() != cpu.probabilities.len() {
        return Err("the GPU returned a different number of classes".into());
    }
    Ok(gpu.probabilities.iter().zip(&cpu.probabilities).fold(0f32, |m, (g, c)| {
        let d = (g - c).abs();
        if d.is_nan() { f32::NAN } else { m.max(d) }
    }))
}

/// The GPU's analysis of one image: the core's member views, each member's views on its engine,
/// each member's mean over its views, the core's combination. The outer `Result` is about the
/// image (it cannot be decoded: no point in retrying on the CPU); the inner one is about the GPU.
async fn analyse_on_gpu(
    engines: &[GpuEngine],
    classifier: &Classifier,
    bytes: &[u8],
    clock: &impl Clock,
) -> skinlens_core::Result<Result<Analysis, skinlens_gpu::GpuError>> {
    let t0 = clock.now_ms();
    let decoded = decode_rgb8(bytes, &DecodeLimits::default())?;
    let t1 = clock.now_ms();
    let prepared = classifier.prepare_decoded(&decoded);
    drop(decoded);
    let inputs = (0..engines.len()).map(|m| classifier.member_view_inputs(m, &prepared)).collect::<skinlens_core::Result<Vec<_>>>()?;
    let t2 = clock.now_ms();
    let classes = &classifier.metadata().classes;
    let as_answer = |output: skinlens_gpu::GpuOutput| Classification { classes: classes.clone(), probabilities: output.probabilities, logits: output.logits };
    let mut member_answers = Vec::with_capacity(engines.len());
    let mut first_features = None;
    for (engine, views) in engines.iter().zip(&inputs) {
        let mut answers = Vec::with_capacity(views.len());
        for (v, view) in views.iter().enumerate() {
            // The first member's first view (the image itself) also yields the activation map's features.
            let outcome = if first_features.is_none() && v == 0 {
                engine.classify_with_features(view).await.map(|(output, features)| {
                    first_features = Some(features);
                    output
                })
            } else {
                engine.classify(view).await
            };
            match outcome {
                Ok(output) => answers.push(as_answer(output)),
                Err(e) => return Ok(Err(e)),
            }
        }
        member_answers.push(Classification::mean(&answers));
    }
    let classification = classifier.combine(&member_answers);
    let t3 = clock.now_ms();
    let shape = engines[0].head_shape();
    let features = first_features.unwrap_or_default();
    let features = Tensor::from_vec(features, (1, shape.channels, shape.height, shape.width), &Device::Cpu)?;
    let cam = analysis::activation_map(classifier, &features, classification.top(), &classification)?;
    let t4 = clock.now_ms();
    let timings = Timings { decode_ms: t1 - t0, preprocess_ms: t2 - t1, inference_ms: t3 - t2, cam_ms: t4 - t3 };
    Ok(Ok(Analysis::assemble(GPU_BACKEND_ID, classification, prepared, cam, timings).with_features(&features)?))
}
