// The page's handle on the engine worker: loading with progress, one promise per image,
// and a fresh worker if the engine ever crashes, so one bad moment does not end the session.

/** Backends this page can load, by the id used in `?backend=` and in results. */
export const BACKENDS = {
  cpu: { label: 'CPU · wasm SIMD' },
  // Our WGSL kernels through wgpu (crates/gpu); `auto` tries them, else the CPU (backends/auto.js).
  webgpu: { label: 'GPU · WebGPU' },
  auto: { label: 'WebGPU if available, else CPU' },
};
export const DEFAULT_BACKEND = 'auto';

/** The backend asked for in the page's query string, or the default. Unknown ids are an error. */
export function backendFromQuery(search) {
  const asked = new URLSearchParams(search).get('backend');
  if (asked === null || asked === '') return DEFAULT_BACKEND;
  if (!Object.hasOwn(BACKENDS, asked)) {
    throw new Error(`unknown backend "${asked}"; this page knows: ${Object.keys(BACKENDS).join(', ')}`);
  }
  return asked;
}

export class Engine {
  /**
   * @param {object} options
   * @param {string} options.backend      an id from BACKENDS
   * @param {string|URL} options.modelUrl safetensors model
   * @param {(loaded: number, total: number) => void} [options.onProgress]
   */
  constructor({ backend, modelUrl, onProgress = () => {} }) {
    this.backend = backend;
    this.modelUrl = new URL(modelUrl, document.baseURI).href;
    this.onProgress = onProgress;
    this.pending = new Map();
    this.nextId = 1;
    this.restarts = 0;
    /** Resolves to {description, timings} once the model is loaded and warmed up. */
    this.ready = this.start();
  }

  start() {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    const ready = new Promise((resolve, reject) => {
      this.worker.onmessage = ({ data }) => this.handle(data, resolve, reject);
      this.worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error(`the engine failed to start: ${event.message || 'worker error'}`));
      };
    });
    this.worker.postMessage({ type: 'load', backend: this.backend, modelUrl: this.modelUrl });
    return ready;
  }

  handle(message, resolveReady, rejectReady) {
    switch (message.type) {
      case 'progress':
        this.onProgress(message.loaded, message.total);
        break;
      case 'ready':
        resolveReady({ description: message.description, timings: message.timings });
        break;
      case 'failed':
        rejectReady(new Error(message.message));
        break;
      case 'result':
        this.settle(message.id, (request) => request.resolve(message.result));
        break;
      case 'error':
        this.settle(message.id, (request) => request.reject(new Error(message.message)));
        if (message.fatal) this.restart();
        break;
    }
  }

  settle(id, action) {
    const request = this.pending.get(id);
    if (!request) return;
    this.pending.delete(id);
    action(request);
  }

  /** Replace a crashed worker; requests already sent to it fail with a clear message. */
  restart() {
    this.worker.terminate();
    for (const request of this.pending.values()) {
      request.reject(new Error('the engine restarted before this image was classified; please try again'));
    }
    this.pending.clear();
    this.restarts += 1;
    this.ready = this.start();
  }

  /** Image Blob or File → the result object of the backend (probabilities, top, backend, timings…). */
  async classify(image) {
    if (!(image instanceof Blob)) throw new TypeError('classify() takes a Blob or File');
    await this.ready;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'classify', id, image });
    });
  }
}
