// The engine's home: a module Web Worker, so decoding and inference never block the page.
//
// Protocol (all messages are plain objects):
//   in:  {type: 'load', backend, modelUrl}      → progress*, then ready | failed
//        {type: 'classify', id, image: Blob}    → result | error   (in the order received)
//   out: {type: 'progress', loaded, total}       model download (total = 0 when unknown)
//        {type: 'ready', description, timings}   description from the backend (classes, metadata…)
//        {type: 'failed', message}               the engine cannot start (fatal)
//        {type: 'result', id, result}
//        {type: 'error', id, message, fatal}     fatal: the engine is broken; start a new worker
//
// Backends are modules in ./backends/<id>.js exporting `id`, `label`, `checkSupport()`,
// `initialise()` (compile the engine) and `create(modelBytes)`; see ./backends/cpu.js.
// Model download lives here, shared by all backends.

let engineReady = null;

self.onmessage = (event) => {
  const message = event.data;
  if (message.type === 'load') {
    engineReady = load(message).catch((error) => {
      self.postMessage({ type: 'failed', message: messageOf(error) });
      return null;
    });
  } else if (message.type === 'classify') {
    classify(message);
  }
};

async function load({ backend: backendId, modelUrl }) {
  const t0 = performance.now();
  const backend = await import(`./backends/${backendId}.js`);
  const support = await backend.checkSupport();
  if (!support.ok) throw new Error(support.reason);
  // Compiling the engine and downloading the model don't depend on each other: overlap them.
  const timings = {};
  const since = (start) => performance.now() - start;
  const tStart = performance.now();
  const [, modelBytes] = await Promise.all([
    backend.initialise().then(() => { timings.engine_init_ms = since(tStart); }),
    download(modelUrl).then((bytes) => { timings.model_download_ms = since(tStart); return bytes; }),
  ]);
  const tCreate = performance.now();
  const engine = await backend.create(modelBytes);
  timings.model_load_ms = since(tCreate);
  // Warm-up during load: the first real image then runs at full speed.
  timings.warm_up_ms = await engine.warmUp(); // a promise on the WebGPU backend
  timings.total_ms = since(t0);
  self.postMessage({ type: 'ready', description: engine.describe(), timings });
  return engine;
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
    // A trap (RuntimeError) means the wasm instance aborted: nothing in it can be trusted now.
    const fatal = error instanceof WebAssembly.RuntimeError;
    const detail = fatal ? engine.diagnose?.() : null;
    const message = fatal
      ? `internal error in the engine${detail ? `: ${detail}` : ` (${messageOf(error)})`}; restarting it`
      : messageOf(error);
    self.postMessage({ type: 'error', id, message, fatal });
  }
}

/** Fetch the model, reporting progress; the service worker answers from its cache when offline. */
async function download(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the model could not be downloaded (${url}: HTTP ${response.status})`);
  const total = Number(response.headers.get('content-length')) || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    self.postMessage({ type: 'progress', loaded, total });
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

function messageOf(error) {
  return error instanceof Error ? error.message : String(error);
}
