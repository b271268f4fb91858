// The page's handle on the engine: loading with progress, one promise per image, the worker
// pool that spreads an image's passes over the cores (./pool.js), and fresh workers if the
// engine ever crashes, so one bad moment does not end the session.

import { EngineWorker, WorkerStopped, dealPasses, passCosts } from './pool.js';

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

/** Workers the page runs: `?workers=N` if given (1 turns the pool off), else one per core. */
export function workerCountFromQuery(search) {
  const asked = Number(new URLSearchParams(search).get('workers'));
  if (Number.isInteger(asked) && asked >= 1) return Math.min(asked, 16);
  return Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 16));
}

/** The wasm build the CPU engine uses: `?simd=plain` forces the SIMD128-only module,
 *  `?simd=relaxed` the relaxed-SIMD one; by default (`auto`) the worker picks by feature detection. */
export function simdFromQuery(search) {
  const asked = new URLSearchParams(search).get('simd');
  return asked === 'plain' || asked === 'relaxed' ? asked : 'auto';
}

export class Engine {
  /**
   * @param {object} options
   * @param {string} options.backend      an id from BACKENDS
   * @param {string|URL} options.modelUrl safetensors model
   * @param {(loaded: number, total: number) => void} [options.onProgress]
   * @param {number} [options.workers]    engine workers; more than one only helps the CPU engine
   * @param {string} [options.simd]       the CPU engine's wasm build: 'auto', 'plain' or 'relaxed'
   */
  constructor({ backend, modelUrl, onProgress = () => {}, workers = workerCountFromQuery(location.search), simd = simdFromQuery(location.search) }) {
    this.backend = backend;
    this.simd = simd;
    this.modelUrl = new URL(modelUrl, document.baseURI).href;
    this.onProgress = onProgress;
    this.workerCount = workers;
    this.generation = 0;
    this.restarts = 0;
    /** Resolves to {description, timings} once the model is loaded and warmed up. */
    this.ready = this.start();
  }

  /**
   * The lead worker loads the requested backend and the model (the page is ready when it is).
   * If it runs the CPU engine and there are cores to spare, helpers start afterwards from a
   * copy of the same model bytes; images use them as they become ready.
   */
  start() {
    const generation = ++this.generation;
    const onFatal = () => this.restart(generation);
    this.lead = new EngineWorker({ onProgress: this.onProgress, onFatal });
    this.helpers = [];
    const share = this.workerCount > 1;
    const loaded = this.lead.load({ backend: this.backend, modelUrl: this.modelUrl, share, simd: this.simd });
    return loaded.then((ready) => {
      this.passCount = ready.passCount ?? 1;
      const members = ready.description?.members ?? [];
      const costs = passCosts(members);
      // Equal costs (dealt in turn) if the description does not account for every pass.
      const counted = costs.length === this.passCount && costs.every((cost) => cost > 0);
      this.passCosts = counted ? costs : new Array(this.passCount).fill(1);
      this.pooled = Boolean(ready.pooled);
      if (share && this.pooled) this.startHelpers(generation, ready.modelBytes, onFatal);
      return { description: ready.description, timings: ready.timings };
    });
  }

  /** `workerCount − 1` CPU helpers (no more than the passes of one image, when there are several). */
  startHelpers(generation, modelBytes, onFatal) {
    const wanted = Math.min(this.workerCount, this.passCount > 1 ? this.passCount : this.workerCount) - 1;
    for (let i = 0; i < wanted; i++) {
      const helper = new EngineWorker({ onFatal });
      // Each helper gets its own copy (structured clone); the lead's copy stays with the page.
      helper.load({ backend: 'cpu', modelBytes, simd: this.simd }).then(
        () => {
          if (generation === this.generation) this.helpers.push(helper);
        },
        (error) => console.warn(`skinlens: a helper engine did not start (${error.message}); continuing without it`),
      );
    }
  }

  /** Replace crashed workers; requests already sent to them fail with a clear message. */
  restart(generation) {
    if (generation !== this.generation) return; // this generation was already replaced
    const reason = 'the engine restarted before this image was classified; please try again';
    for (const worker of [this.lead, ...this.helpers]) worker.terminate(reason);
    this.restarts += 1;
    this.ready = this.start();
  }

  /** Image Blob or File → the result object of the backend (probabilities, top, backend, timings…),
   *  plus `engineWorkers`: how many workers computed it. */
  async classify(image) {
    if (!(image instanceof Blob)) throw new TypeError('classify() takes a Blob or File');
    await this.ready;
    const workers = [this.lead, ...this.helpers];
    if (workers.length > 1 && this.passCount > 1) return this.classifySpread(image, workers);
    // One pass per image: whole images go to the least busy worker.
    const worker = workers.reduce((best, w) => (w.busy < best.busy ? w : best));
    const result = await worker.request({ type: 'classify', image }).result;
    return Object.assign(result, { engineWorkers: 1 });
  }

  /**
   * One image's passes dealt over the workers: the lead runs pass 0 (whose features explain
   * the answer) and its share, the helpers theirs; then the lead averages all of them in pass
   * order, exactly as one worker would.
   */
  async classifySpread(image, [lead, ...helpers]) {
    const shares = dealPasses(this.passCosts, 1 + helpers.length);
    const begun = lead.request({ type: 'begin', image, passes: shares[0] });
    begun.result.catch(() => {}); // awaited below; an early failure must not go unhandled
    let answers;
    try {
      const parts = await Promise.all(helpers.map((helper, i) => helper.request({ type: 'passes', image, passes: shares[i + 1] }).result));
      answers = parts.flat();
    } catch (error) {
      lead.post({ type: 'cancel', id: begun.id });
      // The reason to show is the one that is not "stopped because another worker crashed".
      const leadError = await begun.result.then(() => null, (e) => e);
      throw [leadError, error].find((e) => e && !(e instanceof WorkerStopped)) ?? error;
    }
    lead.post({ type: 'finish', id: begun.id, answers });
    return Object.assign(await begun.result, { engineWorkers: 1 + helpers.length });
  }
}
