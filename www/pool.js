// One engine worker seen from the page: its load, and one promise per request. The Engine
// (./engine.js) runs one of these, or several: the page's worker pool.
//
// Why a pool: one image costs several network passes (the model's test-time views), and a
// wasm instance runs on one core. Workers are the one way to use more cores that needs no
// special headers from the host (wasm threads need SharedArrayBuffer, hence cross-origin
// isolation). The model is downloaded once, by the first worker, and copied to the others.

let nextWorkerId = 1;

/** What a request gets when its worker is stopped (e.g. replaced after another one crashed). */
export class WorkerStopped extends Error {}

export class EngineWorker {
  /**
   * @param {object} options
   * @param {(loaded: number, total: number) => void} [options.onProgress] model download
   * @param {() => void} [options.onFatal] the engine in this worker is broken (after the
   *        request that found out has been rejected with the reason)
   */
  constructor({ onProgress = () => {}, onFatal = () => {} } = {}) {
    this.name = `engine-${nextWorkerId++}`;
    this.onProgress = onProgress;
    this.onFatal = onFatal;
    this.pending = new Map();
    this.nextId = 1;
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: this.name });
    this.loaded = new Promise((resolve, reject) => {
      this.resolveLoad = resolve;
      this.rejectLoad = reject;
    });
    this.worker.onmessage = ({ data }) => this.handle(data);
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.rejectLoad(new Error(`the engine failed to start: ${event.message || 'worker error'}`));
    };
  }

  /** Resolves to the worker's `ready` message: {description, timings, passCount, pooled, modelBytes?}. */
  load(message, transfer = []) {
    this.worker.postMessage({ type: 'load', ...message }, transfer);
    return this.loaded;
  }

  /** Requests in flight (a lead's begun image counts until it is finished). */
  get busy() {
    return this.pending.size;
  }

  /** Send `message` with a fresh id; resolves with the worker's result for it. */
  request(message) {
    const id = this.nextId++;
    const result = new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
    });
    this.worker.postMessage({ ...message, id });
    return { id, result };
  }

  /** A message that expects no answer of its own (finish/cancel refer to an earlier id). */
  post(message) {
    this.worker.postMessage(message);
  }

  handle(message) {
    switch (message.type) {
      case 'progress':
        this.onProgress(message.loaded, message.total);
        break;
      case 'ready':
        this.resolveLoad(message);
        break;
      case 'failed':
        this.rejectLoad(new Error(message.message));
        break;
      case 'result':
        this.settle(message.id, (request) => request.resolve(message.result));
        break;
      case 'error':
        this.settle(message.id, (request) => request.reject(new Error(message.message)));
        if (message.fatal) this.onFatal();
        break;
    }
  }

  settle(id, action) {
    const request = this.pending.get(id);
    if (!request) return;
    this.pending.delete(id);
    action(request);
  }

  /** Stop the worker; what was still asked of it fails with `reason`. */
  terminate(reason) {
    this.worker.terminate();
    this.rejectLoad(new WorkerStopped(reason));
    for (const request of this.pending.values()) request.reject(new WorkerStopped(reason));
    this.pending.clear();
  }
}

/**
 * One image's passes dealt to `workers` workers by cost (`costs[p]`: pass p's relative cost).
 * Pass 0, whose features explain the answer, goes to the lead (worker 0); then each other pass,
 * costliest first, to the worker with the least work so far. Dealt in turn instead, 1.5.0's lead
 * got its Lite0 and its Lite2 at 344 px, about 80 % of the work. Returns each worker's passes in
 * ascending order; equal costs give the in-turn deal.
 */
export function dealPasses(costs, workers) {
  const shares = Array.from({ length: workers }, () => []);
  if (costs.length === 0) return shares;
  const load = new Array(workers).fill(0);
  shares[0].push(0);
  load[0] = costs[0];
  const rest = costs.map((cost, pass) => ({ cost, pass })).slice(1).sort((a, b) => b.cost - a.cost || a.pass - b.pass);
  for (const { cost, pass } of rest) {
    const worker = load.indexOf(Math.min(...load));
    shares[worker].push(pass);
    load[worker] += cost;
  }
  return shares.map((share) => share.sort((a, b) => a - b));
}

/**
 * Each pass's relative cost, in pass order (member 0's views first, then member 1's, …), from
 * `describe().members`: each member's multiply-adds per pass, counted by the core from its
 * network's block table at the size it runs at.
 */
export function passCosts(members) {
  return members.flatMap(({ multiplyAdds, views }) => new Array(views).fill(multiplyAdds));
}
