// The CPU backend: the core classifier compiled to wasm with SIMD128 (crates/web).
// Runs inside the worker. Interface shared by every backend: id, label, checkSupport(),
// initialise(), create(modelBytes) → {describe, warmUp, classify, diagnose}; this one also
// takes part in the worker pool (passCount, classifyPasses, beginAnalysis).

import init, { WasmClassifier, lastPanic } from '../pkg/skinlens_web.js';

export const id = 'cpu';
export const label = 'CPU · wasm SIMD';

// The smallest module that uses a SIMD instruction: () -> v128 { i32x4.splat(i32.const 0) }.
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b,       // type section: () -> v128
  0x03, 0x02, 0x01, 0x00,                         // function section: one function of type 0
  0x0a, 0x08, 0x01, 0x06, 0x00,                   // code section: one body of 6 bytes, no locals
  0x41, 0x00, 0xfd, 0x11, 0x0b,                   // i32.const 0; i32x4.splat; end
]);

export async function checkSupport() {
  if (typeof WebAssembly !== 'object') {
    return { ok: false, reason: 'this browser cannot run WebAssembly, which skinlens needs' };
  }
  if (!WebAssembly.validate(SIMD_PROBE)) {
    return {
      ok: false,
      reason: 'this browser does not support WebAssembly SIMD, which the skinlens engine is built for. ' +
        'Use a current Chrome, Edge, Firefox or Safari (16.4 or later).',
    };
  }
  return { ok: true };
}

/** Compile and instantiate the engine (streaming from the network, while the model downloads). */
export async function initialise() {
  const url = new URL('../pkg/skinlens_web_bg.wasm', import.meta.url);
  // Fetched here rather than by init() so that a missing file reads as such, not as a
  // "CompileError: expected magic word" about whatever error page came back instead.
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the engine could not be downloaded (${url.pathname}: HTTP ${response.status})`);
  try {
    await init({ module_or_path: response });
  } catch (error) {
    throw new Error(`the engine (${url.pathname}) could not be started: ${error.message}`);
  }
}

/** The engine for one model; `initialise()` must have resolved. */
export async function create(modelBytes) {
  const classifier = new WasmClassifier(modelBytes);
  return {
    describe: () => classifier.describe(),
    warmUp: () => classifier.warmUp(),
    classify: (bytes) => classifier.classify(bytes),
    // The worker pool's share of an image (see ../worker.js): passes are network runs.
    passCount: () => classifier.passCount(),
    classifyPasses: (bytes, passes) => classifier.classifyPasses(bytes, Uint32Array.from(passes)),
    beginAnalysis: (bytes, passes) => {
      const pending = classifier.beginAnalysis(bytes, Uint32Array.from(passes));
      return { finish: (answers) => pending.finish(classifier, answers), free: () => pending.free() };
    },
    diagnose: () => {
      try {
        return lastPanic() ?? null;
      } catch {
        return null; // the instance is gone; nothing more to learn
      }
    },
  };
}
