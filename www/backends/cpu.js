// The CPU backend: the core classifier compiled to wasm with SIMD128 (crates/web).
// Runs inside the worker. Interface shared by every backend: id, label, checkSupport(),
// initialise({simd}), create(modelBytes) → {describe, warmUp, classify, diagnose}; this one also
// takes part in the worker pool (passCount, classifyPasses, beginAnalysis).
//
// Two builds of the same engine: ../pkg-relaxed (SIMD128 + relaxed SIMD: fused multiply-adds in
// the convolution kernels) where the browser validates a relaxed-SIMD instruction, else ../pkg
// (SIMD128 alone). Their answers agree to ~1e-6 (only FMA rounding differs). `?simd=plain`
// on the page forces the plain one (tests, comparisons).

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

// The smallest module that uses a relaxed-SIMD instruction:
// () -> v128 { f32x4.relaxed_madd(i32x4.splat(0), i32x4.splat(0), i32x4.splat(0)) }.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b,       // type section: () -> v128
  0x03, 0x02, 0x01, 0x00,                         // function section: one function of type 0
  0x0a, 0x13, 0x01, 0x11, 0x00,                   // code section: one body of 17 bytes, no locals
  0x41, 0x00, 0xfd, 0x11, 0x41, 0x00, 0xfd, 0x11, 0x41, 0x00, 0xfd, 0x11, // 3 × i32x4.splat(0)
  0xfd, 0x85, 0x02, 0x0b,                         // f32x4.relaxed_madd (0xfd 0x105); end
]);

/** Whether this browser runs relaxed SIMD (the faster of the two engine builds). */
export function hasRelaxedSimd() {
  try {
    return WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
}

/** The engine build for `simd`: 'relaxed', 'plain', or 'auto' (relaxed where the browser has it). */
export function buildFor(simd = 'auto') {
  if (simd === 'plain') return 'pkg';
  if (simd === 'relaxed' || (simd === 'auto' && hasRelaxedSimd())) return 'pkg-relaxed';
  return 'pkg';
}

/** The wasm-bindgen module of the engine build in use, once `initialise()` has resolved. */
let engine = null;

export function wasmModule() {
  if (!engine) throw new Error('the engine is not initialised');
  return engine;
}

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

/** Compile and instantiate the engine (streaming from the network, while the model downloads).
 *  Resolves to the wasm-bindgen module (also used by ./webgpu.js: both engines are in it). */
export async function initialise({ simd = 'auto' } = {}) {
  if (engine) return engine;
  const build = buildFor(simd);
  const url = new URL(`../${build}/skinlens_web_bg.wasm`, import.meta.url);
  // Fetched here rather than by init() so that a missing file reads as such, not as a
  // "CompileError: expected magic word" about whatever error page came back instead.
  // The module's JS glue loads at the same time.
  const [glue, response] = await Promise.all([import(`../${build}/skinlens_web.js`), fetch(url)]);
  if (!response.ok) throw new Error(`the engine could not be downloaded (${url.pathname}: HTTP ${response.status})`);
  try {
    await glue.default({ module_or_path: response });
  } catch (error) {
    throw new Error(`the engine (${url.pathname}) could not be started: ${error.message}`);
  }
  engine = glue;
  return engine;
}

/** The engine for one model; `initialise()` must have resolved. */
export async function create(modelBytes) {
  const { WasmClassifier, lastPanic } = wasmModule();
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
