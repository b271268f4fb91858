// The WebGPU backend: skinlens' own WGSL kernels through wgpu (crates/gpu), in the same wasm
// module as the CPU engine. Runs inside the worker; same interface as ./cpu.js, except that
// warmUp() and classify() return promises (GPU work and buffer mapping are asynchronous).
//
// create() starts WebGPU and self-checks it against the CPU path on a built-in input. Here
// (`?backend=webgpu`) a GPU that cannot be used is an error; ./auto.js falls back to the CPU
// instead. Either way, a GPU failure during the session moves to the CPU and still answers the
// image in hand; results then carry `backend: 'cpu'` and `fallbackReason`.

import * as cpu from './cpu.js';

export const id = 'webgpu';
export const label = 'GPU · WebGPU';

// The CPU engine runs the self-check and is the fallback, so it must be able to run too.
export const checkSupport = cpu.checkSupport;
export const initialise = cpu.initialise;

export async function create(modelBytes, { strict = true } = {}) {
  // The engine build ./cpu.js chose (relaxed SIMD or plain): the GPU engine is in both.
  const { WasmGpuClassifier, lastPanic } = cpu.wasmModule();
  const classifier = await WasmGpuClassifier.create(modelBytes, strict, await adapterName());
  // One image at a time: the engine maps one result buffer per image.
  let queue = Promise.resolve();
  const serially = (task) => {
    const run = queue.then(task, task);
    queue = run.catch(() => {});
    return run;
  };
  // Fault drill for tests (Playwright can evaluate in the worker): lose the GPU device now.
  self.skinlensGpuDrill = { loseDevice: () => serially(() => classifier.loseDevice()) };
  return {
    describe: () => classifier.describe(),
    warmUp: () => serially(() => classifier.warmUp()),
    classify: (bytes) => serially(() => classifier.classify(bytes)),
    diagnose: () => {
      try {
        return lastPanic() ?? null;
      } catch {
        return null;
      }
    },
  };
}

/** "vendor architecture" from GPUAdapter.info (e.g. "google swiftshader"), for the badge; wgpu
 *  passes on only the description, which browsers usually leave empty. */
async function adapterName() {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    const info = adapter?.info ?? {};
    const name = [info.vendor, info.architecture].filter(Boolean).join(' ') || info.description || '';
    return [name, adapter?.info?.isFallbackAdapter ? 'software' : ''].filter(Boolean).join(', ') || undefined;
  } catch {
    return undefined; // only a label; the engine finds its own adapter
  }
}
