// The engine's home: a module Web Worker, so decoding and inference never block the page.
//
// Protocol (all messages are plain objects):
//   in:  {type: 'load', backend, modelUrl, share, simd} → progress*, then ready | failed
//        {type: 'load', backend, modelBytes, simd} the same, from bytes another worker fetched
//                                                 simd: which wasm build ('auto', 'plain', 'relaxed')
//        {type: 'classify', id, image: Blob}      → result | error   (in the order received)
//   out: {type: 'progress', loaded, total}        model download (total = 0 when unknown)
//        {type: 'ready', description, timings, passCount, pooled, modelBytes?}
//                                                 description from the backend (classes, metadata…);
//                                                 pooled: this worker can share images with others;
//                                                 modelBytes (an ArrayBuffer copy) when `share` asked
//        {type: 'failed', message}                the engine cannot start (fatal)
//        {type: 'result', id, result}
//        {type: 'error', id, message, fatal}      fatal: the engine is broken; start a new worker
// The worker pool (./engine.js, ./pool.js) also sends, to CPU engines only:
//        {type: 'passes', id, image, passes}      → result: [{pass, probabilities, logits}]
//        {type: 'begin', id, image, passes}       runs pass 0 and `passes`, then waits for
//        {type: 'finish', id, answers}            the other passes' answers → result (as classify)
//        {type: 'cancel', id}                     or for this, which drops the image
//
// Backends are modules in ./backends/<id>.js exporting `id`, `label`, `checkSupport()`,
// `initialise()` (compile the engine) and `create(modelBytes)`; see ./backends/cpu.js.
// Model download lives here, shared by all backends.

let engineReady = null;
/** The CPU engine for the pool's messages: the engine itself, or, when `auto` found no GPU,
 *  a CPU engine beside it. Null when this worker cannot take part in a pool. */
let poolEngineReady = Promise.resolve(null);
/** Images begun and waiting for their other passes, by request id. */
const begun = new Map();

self.onmessage = (event) => {
  const message = event.data;
  switch (message.type) {
    case 'load': {
      const loading = load(message);
      engineReady = loading.then(({ engine }) => engine);
      poolEngineReady = loading.then(({ poolEngine }) => poolEngine);
      loading.catch((error) => {
        self.postMessage({ type: 'failed', message: messageOf(error) });
      });
      engineReady = engineReady.catch(() => null);
      poolEngineReady = poolEngineReady.catch(() => null);
      break;
    }
    case 'classify':
      classify(message);
      break;
    case 'passes':
      pooled(message, (engine, bytes) => engine.classifyPasses(bytes, message.passes));
      break;
    case 'begin':
      begin(message);
      break;
    case 'finish':
      finish(message);
      break;
    case 'cancel':
      begun.get(message.id)?.then((pending) => pending?.free());
      begun.delete(message.id);
      break;
  }
};

async function load({ backend: backendId, modelUrl, modelBytes: givenBytes, share, simd }) {
  const t0 = performance.now();
  const timings = {};
  const since = (start) => performance.now() - start;
  // Compiling the engine and downloading the model don't depend on each other: overlap them,
  // the download starting first (before the backend's module is even loaded).
  const fetched = givenBytes ? Promise.resolve(new Uint8Array(givenBytes)) : download(modelUrl);
  fetched.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile
  const backend = await import(`./backends/${backendId}.js`);
  const support = await backend.checkSupport();
  if (!support.ok) throw new Error(support.reason);
  const [, modelBytes] = await Promise.all([
    backend.initialise({ simd }).then(() => { timings.engine_init_ms = since(t0); }),
    fetched.then((bytes) => { timings.model_download_ms = since(t0); return bytes; }),
  ]);
  const tCreate = performance.now();
  const engine = await backend.create(modelBytes);
  timings.model_load_ms = since(tCreate);
  // Warm-up during load: the first real image then runs at full speed.
  timings.warm_up_ms = await engine.warmUp(); // a promise on the WebGPU backend
  timings.total_ms = since(t0);
  const description = engine.describe();
  const poolEngine = await cpuEngineFor(engine, description, modelBytes);
  const ready = { type: 'ready', description, timings, pooled: poolEngine !== null, passCount: poolEngine?.passCount() ?? 1 };
  const transfer = [];
  if (share && poolEngine) {
    ready.modelBytes = modelBytes.slice().buffer;
    transfer.push(ready.modelBytes);
  }
  self.postMessage(ready, transfer);
  return { engine, poolEngine };
}

/** The engine that answers the pool's messages, if this worker computes on the CPU. */
async function cpuEngineFor(engine, description, modelBytes) {
  if (engine.beginAnalysis) return engine;
  if (description.backend !== 'cpu') return null; // a GPU engine: one worker drives the GPU
  // `auto` without a usable GPU: the answers are the CPU engine's either way.
  const cpu = await import('./backends/cpu.js'); // already initialised by the backend
  return cpu.create(modelBytes);
}

/** Run `work(engine, imageBytes)` on the pool engine and answer request `id` with its result. */
async function pooled({ id, image }, work) {
  const engine = await poolEngineReady;
  if (!engine) {
    self.postMessage({ type: 'error', id, message: 'this engine cannot share images with other workers', fatal: true });
    return;
  }
  try {
    const bytes = new Uint8Array(await image.arrayBuffer());
    self.postMessage({ type: 'result', id, result: work(engine, bytes) });
  } catch (error) {
    reportError(id, error, engine);
  }
}

function begin(message) {
  const { id, image, passes } = message;
  const started = (async () => {
    const engine = await poolEngineReady;
    if (!engine) throw new Error('this engine cannot share images with other workers');
    const bytes = new Uint8Array(await image.arrayBuffer());
    return engine.beginAnalysis(bytes, passes);
  })();
  begun.set(id, started.catch(async (error) => {
    begun.delete(id);
    reportError(id, error, await poolEngineReady);
    return null;
  }));
}

async function finish({ id, answers }) {
  const pending = await begun.get(id);
  begun.delete(id);
  if (!pending) return; // it failed at `begin` (already reported) or was cancelled
  try {
    const result = pending.finish(answers);
    self.postMessage({ type: 'result', id, result }, [result.preview.rgba.buffer]);
  } catch (error) {
    reportError(id, error, await poolEngineReady);
  }
}

async function classify({ id, image }) {
  const engine = await engineReady;
  if (!engine) {
    self.postMessage({ type: 'error', id, message: 'the model is not loaded', fatal: true });
    return;
  }
  try {
    const bytes = new Uint8Array(await image.arrayBuffer());
    const result = await engine.classify(bytes);
    self.postMessage({ type: 'result', id, result }, [result.preview.rgba.buffer]);
  } catch (error) {
    reportError(id, error, engine);
  }
}

function reportError(id, error, engine) {
  // A trap (RuntimeError) means the wasm instance aborted: nothing in it can be trusted now.
  const fatal = error instanceof WebAssembly.RuntimeError;
  const detail = fatal ? engine?.diagnose?.() : null;
  const message = fatal
    ? `internal error in the engine${detail ? `: ${detail}` : ` (${messageOf(error)})`}; restarting it`
    : messageOf(error);
  self.postMessage({ type: 'error', id, message, fatal });
}

/** Fetch the model, reporting progress; the service worker answers from its cache when offline. */
async function download(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the model could not be downloaded (${url}: HTTP ${response.status})`);
  const total = Number(response.headers.get('content-length')) || 0;
  const reader = response.body.getReader();
  // With a length (no content encoding), the chunks go straight into one buffer of that size;
  // otherwise they are kept and joined at the end.
  let bytes = total > 0 && !response.headers.get('content-encoding') ? new Uint8Array(total) : null;
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (bytes && loaded + value.byteLength <= bytes.length) {
      bytes.set(value, loaded);
    } else {
      if (bytes) chunks.push(bytes.subarray(0, loaded)); // longer than announced
      bytes = null;
      chunks.push(value);
    }
    loaded += value.byteLength;
    self.postMessage({ type: 'progress', loaded, total });
  }
  if (bytes) return loaded === bytes.length ? bytes : bytes.subarray(0, loaded);
  const joined = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return joined;
}

function messageOf(error) {
  return error instanceof Error ? error.message : String(error);
}
