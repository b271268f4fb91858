//! The JavaScript-facing WebGPU backend (wasm32 only): [`GpuSession`] behind promises.
//!
//! `WasmGpuClassifier.create(modelBytes, strict)` → `warmUp()` → `classify(imageBytes)`, each
//! returning a promise. Results have the CPU classifier's shape (see `browser.rs`) plus
//! `backendLabel` and, after a fallback, `fallbackReason`. Calls must not overlap; the page's
//! `backends/webgpu.js` queues them.

use std::rc::Rc;

use js_sys::{Promise, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::analysis::ClassLabel;
use crate::browser::{describe_familiarity, js_error, load_familiarity, preview_object, to_js, FamiliarityDescription, PerformanceClock};
use skinlens_core::familiarity::FamiliarityCheck;
use crate::gpu_session::GpuSession;

#[wasm_bindgen]
pub struct WasmGpuClassifier {
    session: Rc<GpuSession>,
    /// The model file's out-of-distribution check, when it carries one (runs on the CPU).
    familiarity: Rc<Option<FamiliarityCheck>>,
}

#[wasm_bindgen]
impl WasmGpuClassifier {
    /// Load the model, start WebGPU and self-check it against the CPU path. With `strict`
    /// (`?backend=webgpu`) a GPU that cannot be used rejects; otherwise the classifier runs on
    /// the CPU and `describe().backendLabel` says why. `adapter_name` (e.g. from
    /// `GPUAdapter.info`) names the adapter in the badge.
    pub async fn create(model_bytes: Vec<u8>, strict: bool, adapter_name: Option<String>) -> Result<WasmGpuClassifier, JsError> {
        let session =
            GpuSession::start(&model_bytes, strict, adapter_name.as_deref()).await.map_err(|e| JsError::new(&e))?;
        let familiarity = load_familiarity(&model_bytes)?;
        Ok(Self { session: Rc::new(session), familiarity: Rc::new(familiarity) })
    }

    /// As the CPU classifier's `describe()`, with the backend actually in use.
    pub fn describe(&self) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Description<'a> {
            backend: &'static str,
            backend_label: String,
            fallback_reason: Option<String>,
            classes: Vec<ClassLabel>,
            untrained: bool,
            temperature: f32,
            input_size: u32,
            /// Every network the answer averages (one for a plain model).
            members: Vec<crate::MemberDescription>,
            metadata: &'a std::collections::HashMap<String, String>,
            familiarity: Option<FamiliarityDescription>,
            wasm_simd: &'static str,
        }
        let classifier = self.session.classifier();
        let metadata = classifier.metadata();
        to_js(&Description {
            backend: self.session.backend(),
            backend_label: self.session.backend_label(),
            fallback_reason: self.session.fallback_reason(),
            classes: metadata.classes.iter().map(|c| ClassLabel::of(c)).collect(),
            untrained: classifier.untrained(),
            temperature: metadata.temperature,
            input_size: classifier.input_size(),
            members: crate::describe_members(classifier),
            metadata: &metadata.raw,
            familiarity: describe_familiarity(self.familiarity.as_ref().as_ref()),
            wasm_simd: crate::browser::wasm_simd(),
        })
    }

    /// Promise of the warm-up's duration in ms.
    #[wasm_bindgen(js_name = warmUp)]
    pub fn warm_up(&self) -> Promise {
        let session = Rc::clone(&self.session);
        future_to_promise(async move {
            let ms = session.warm_up(&PerformanceClock).await.map_err(|e| JsValue::from(JsError::new(&e)))?;
            Ok(JsValue::from_f64(ms))
        })
    }

    /// Promise of the result object for `image_bytes`.
    pub fn classify(&self, image_bytes: Vec<u8>) -> Promise {
        let session = Rc::clone(&self.session);
        let familiarity = Rc::clone(&self.familiarity);
        future_to_promise(async move {
            let failed = |e: skinlens_core::Error| JsValue::from(JsError::new(&format!("this image could not be classified: {e}")));
            let mut analysis = session.analyse(&image_bytes, &PerformanceClock).await.map_err(failed)?;
            analysis.assess_familiarity(familiarity.as_ref().as_ref()).map_err(failed)?;
            let result = to_js(&analysis).map_err(JsValue::from)?;
            let preview = preview_object(&analysis.model_view).map_err(JsValue::from)?;
            let set = |key: &str, value: &JsValue| Reflect::set(&result, &key.into(), value).map_err(|e| JsValue::from(js_error(e)));
            set("preview", &preview)?;
            set("backendLabel", &session.backend_label().into())?;
            if let Some(reason) = session.fallback_reason() {
                set("fallbackReason", &reason.into())?;
            }
            Ok(result)
        })
    }

    /// Release the GPU device as a device loss would: the next image falls back to the CPU.
    /// For fault drills and tests.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) {
        self.session.lose_device();
    }
}
