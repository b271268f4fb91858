//! The JavaScript-facing API (wasm32 only).

use std::sync::Mutex;

use js_sys::{Reflect, Uint8ClampedArray};
use serde::Serialize;
use skinlens_core::familiarity::FamiliarityCheck;
use skinlens_core::Classifier;
use wasm_bindgen::prelude::*;

use crate::analysis::{self, ClassLabel, Clock, BACKEND_ID, BACKEND_LABEL};

#[wasm_bindgen]
extern "C" {
    // `performance` is a global in both windows and workers, so no web-sys scope lookup needed.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

pub(crate) struct PerformanceClock;

impl Clock for PerformanceClock {
    fn now_ms(&self) -> f64 {
        performance_now()
    }
}

/// The last panic's message: a panic aborts the wasm instance with a bare
/// `RuntimeError: unreachable`, so the worker asks for the reason afterwards.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

#[wasm_bindgen(start)]
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut slot) = LAST_PANIC.lock() {
            *slot = Some(info.to_string());
        }
    }));
}

/// Why the engine died, if it died of a panic.
#[wasm_bindgen(js_name = lastPanic)]
pub fn last_panic() -> Option<String> {
    LAST_PANIC.lock().ok().and_then(|slot| slot.clone())
}

/// Whether this build was compiled for wasm SIMD (the page checks the browser before loading it).
#[wasm_bindgen(js_name = simdBuild)]
pub fn simd_build() -> bool {
    cfg!(target_feature = "simd128")
}

/// Which of the two modules this is: `"relaxed"` (SIMD128 + relaxed SIMD, fused multiply-adds)
/// or `"simd128"` (the fallback); the page picks one by feature detection (`www/backends/cpu.js`).
#[wasm_bindgen(js_name = wasmSimd)]
pub fn wasm_simd_name() -> String {
    wasm_simd().into()
}

pub(crate) fn wasm_simd() -> &'static str {
    if cfg!(target_feature = "relaxed-simd") {
        "relaxed"
    } else {
        "simd128"
    }
}

#[wasm_bindgen]
pub struct WasmClassifier {
    inner: Classifier,
    /// The model file's out-of-distribution check, when it carries one.
    familiarity: Option<FamiliarityCheck>,
}

#[wasm_bindgen]
impl WasmClassifier {
    /// Load a model from safetensors bytes (folded or raw, f32 or f16).
    #[wasm_bindgen(constructor)]
    pub fn new(model_bytes: &[u8]) -> Result<WasmClassifier, JsError> {
        let inner = Classifier::from_safetensors(model_bytes)
            .map_err(|e| JsError::new(&format!("the model could not be loaded: {e}")))?;
        let familiarity = load_familiarity(model_bytes)?;
        Ok(Self { inner, familiarity })
    }

    /// What the model file says about itself: `{backend, backendLabel, classes: [{code, name,
    /// malignant}], untrained, temperature, inputSize, members: [{name, arch, inputSize,
    /// trainSize, weight, temperature, colourConstancy, views}], metadata: {key: value}}`
    /// (temperature and inputSize: the first member's).
    pub fn describe(&self) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Description<'a> {
            backend: &'static str,
            backend_label: &'static str,
            classes: Vec<ClassLabel>,
            untrained: bool,
            temperature: f32,
            input_size: u32,
            /// Every network the answer averages (one for a plain model).
            members: Vec<crate::MemberDescription>,
            metadata: &'a std::collections::HashMap<String, String>,
            familiarity: Option<FamiliarityDescription>,
            /// The module's SIMD flavour ([`wasm_simd`]).
            wasm_simd: &'static str,
        }
        let metadata = self.inner.metadata();
        to_js(&Description {
            backend: BACKEND_ID,
            backend_label: BACKEND_LABEL,
            classes: metadata.classes.iter().map(|c| ClassLabel::of(c)).collect(),
            untrained: self.inner.untrained(),
            temperature: metadata.temperature,
            input_size: self.inner.input_size(),
            members: crate::describe_members(&self.inner),
            metadata: &metadata.raw,
            familiarity: describe_familiarity(self.familiarity.as_ref()),
            wasm_simd: wasm_simd(),
        })
    }

    /// One inference on a grey image; returns its duration in ms.
    #[wasm_bindgen(js_name = warmUp)]
    pub fn warm_up(&self) -> Result<f64, JsError> {
        analysis::warm_up(&self.inner, &PerformanceClock).map_err(|e| JsError::new(&format!("warm-up failed: {e}")))
    }

    /// Image bytes (JPEG, PNG, WebP, BMP, GIF, TIFF) → `{probabilities: {code: p}, top, backend,
    /// timings: {decode_ms, preprocess_ms, inference_ms, cam_ms}, ranked, logits,
    /// original_width, original_height, cam: {class, width, height, values},
    /// familiarity: {score, threshold, unusual} | null,
    /// preview: {width, height, rgba: Uint8ClampedArray}}`.
    pub fn classify(&self, image_bytes: &[u8]) -> Result<JsValue, JsError> {
        self.result_object(analysis::analyse(&self.inner, image_bytes, &PerformanceClock))
    }

    /// An image's analysis (from one worker or assembled from several) → the page's result
    /// object: the familiarity check applied, the model's view attached as `preview`.
    fn result_object(&self, analysis: skinlens_core::Result<analysis::Analysis>) -> Result<JsValue, JsError> {
        let unclassifiable = |e: skinlens_core::Error| JsError::new(&format!("this image could not be classified: {e}"));
        let mut analysis = analysis.map_err(unclassifiable)?;
        analysis.assess_familiarity(self.familiarity.as_ref()).map_err(unclassifiable)?;
        let result = to_js(&analysis)?;
        let preview = preview_object(&analysis.model_view)?;
        Reflect::set(&result, &"preview".into(), &preview).map_err(js_error)?;
        Ok(result)
    }
}

/// What `describe()` says about the familiarity check: `{threshold, summary}`.
#[derive(Serialize)]
pub(crate) struct FamiliarityDescription {
    threshold: f32,
    summary: String,
}

pub(crate) fn describe_familiarity(check: Option<&FamiliarityCheck>) -> Option<FamiliarityDescription> {
    check.map(|c| FamiliarityDescription { threshold: c.threshold, summary: c.summary.clone() })
}

/// The familiarity check stored in the model file, if any; a damaged one is an error, not a
/// silent absence (the page would otherwise stop warning about unusual images).
pub(crate) fn load_familiarity(model_bytes: &[u8]) -> Result<Option<FamiliarityCheck>, JsError> {
    FamiliarityCheck::from_safetensors(model_bytes).map_err(|e| JsError::new(&format!("the model could not be loaded: {e}")))
}

#[wasm_bindgen]
impl WasmClassifier {
    /// How many network passes one image costs; the page's worker pool spreads them.
    #[wasm_bindgen(js_name = passCount)]
    pub fn pass_count(&self) -> usize {
        analysis::pass_count(&self.inner)
    }

    /// A helper worker's share of one image: the answers `[{pass, probabilities, logits}]` of
    /// the passes asked for.
    #[wasm_bindgen(js_name = classifyPasses)]
    pub fn classify_passes(&self, image_bytes: &[u8], passes: Vec<u32>) -> Result<JsValue, JsError> {
        let passes: Vec<usize> = passes.into_iter().map(|p| p as usize).collect();
        let answers = analysis::classify_passes(&self.inner, image_bytes, &passes)
            .map_err(|e| JsError::new(&format!("this image could not be classified: {e}")))?;
        to_js(&answers)
    }

    /// The lead worker's share of one image: pass 0 and `passes`; the rest are handed to
    /// `finish` by the page once the helpers have answered.
    #[wasm_bindgen(js_name = beginAnalysis)]
    pub fn begin_analysis(&self, image_bytes: &[u8], passes: Vec<u32>) -> Result<WasmPendingAnalysis, JsError> {
        let passes: Vec<usize> = passes.into_iter().map(|p| p as usize).collect();
        let inner = analysis::begin_analysis(&self.inner, image_bytes, &passes, &PerformanceClock)
            .map_err(|e| JsError::new(&format!("this image could not be classified: {e}")))?;
        Ok(WasmPendingAnalysis { inner })
    }
}

/// One image waiting for the passes other workers run (see `WasmClassifier.beginAnalysis`).
#[wasm_bindgen]
pub struct WasmPendingAnalysis {
    inner: analysis::PendingAnalysis,
}

#[wasm_bindgen]
impl WasmPendingAnalysis {
    /// The other passes' answers (as `classifyPasses` returned them) → the same result object
    /// as `WasmClassifier.classify`.
    pub fn finish(self, classifier: &WasmClassifier, answers: JsValue) -> Result<JsValue, JsError> {
        let answers: Vec<analysis::PassAnswer> = serde_wasm_bindgen::from_value(answers)
            .map_err(|e| JsError::new(&format!("internal error: a worker's answer could not be read: {e}")))?;
        classifier.result_object(self.inner.finish(&classifier.inner, answers, &PerformanceClock))
    }
}

/// The model's view as `{width, height, rgba}`, ready for `new ImageData(rgba, width, height)`.
pub(crate) fn preview_object(view: &image::RgbImage) -> Result<JsValue, JsError> {
    let mut rgba = Vec::with_capacity(view.as_raw().len() / 3 * 4);
    for px in view.pixels() {
        rgba.extend_from_slice(&[px[0], px[1], px[2], 255]);
    }
    let object = js_sys::Object::new();
    Reflect::set(&object, &"width".into(), &view.width().into()).map_err(js_error)?;
    Reflect::set(&object, &"height".into(), &view.height().into()).map_err(js_error)?;
    Reflect::set(&object, &"rgba".into(), &Uint8ClampedArray::from(rgba.as_slice())).map_err(js_error)?;
    Ok(object.into())
}

pub(crate) fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    // Plain objects, not `Map`s: the page and automation scripts index them by key.
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    value.serialize(&serializer).map_err(|e| JsError::new(&format!("internal error: could not build the result: {e}")))
}

pub(crate) fn js_error(value: JsValue) -> JsError {
    JsError::new(&format!("internal error: {value:?}"))
}
