// Browser benchmark of the page (a report, not a test), in the same headless Chromium as the
// peer (ONNX Runtime Web, ../shared/peers), run back to back with it.
//
// Reports: cold start (fresh profile: open → window.skinlens.ready), median inference_ms over
// ITERS warm runs, wasm / JS / weight sizes raw and gzip, the peer's single-threaded wasm
// figures from the same go, and the ratios. Writes bench-results/web-<time>.json.
//
// env: ITERS (50), WARMUP (5), COLD_RUNS (3), PEER (1 = run ../shared/peers/run.sh), IMAGE.

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { REPO, DIST, startServer, launchBrowser, openPage } from '../../tests/e2e/harness.mjs';

const ITERS = Number(process.env.ITERS ?? 50);
const WARMUP = Number(process.env.WARMUP ?? 5);
const COLD_RUNS = Number(process.env.COLD_RUNS ?? 3);
const RUN_PEER = (process.env.PEER ?? '1') !== '0';
const IMAGE = process.env.IMAGE ?? join(REPO, '../shared/data/ham10000/fullres_600x450/ISIC_0024306.jpg');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const round = (x, digits = 1) => Number(x.toFixed(digits));

function sizes() {
  const entry = (path) => {
    const bytes = readFileSync(join(DIST, path));
    return { path, raw: statSync(join(DIST, path)).size, gzip: gzipSync(bytes, { level: 9 }).length };
  };
  return [entry('pkg/skinlens_web_bg.wasm'), entry('pkg/skinlens_web.js'), entry('models/skinlens.safetensors')];
}

/** Fresh browser and profile each time, so nothing is cached: what a first visit costs. */
async function coldStart(url) {
  const browser = await launchBrowser();
  try {
    const t0 = Date.now();
    const ready = await openPage(browser.page, url);
    return { wallMs: Date.now() - t0, pageMs: ready.coldStartMs, loadTimings: ready.loadTimings, untrained: ready.untrained };
  } finally {
    await browser.close();
  }
}

async function warmSeries(url) {
  const browser = await launchBrowser();
  try {
    await openPage(browser.page, url);
    const base64 = readFileSync(IMAGE).toString('base64');
    return await browser.page.evaluate(async ({ base64, warmup, iters }) => {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const image = new Blob([bytes], { type: 'image/jpeg' });
      const series = [];
      for (let i = 0; i < warmup + iters; i++) {
        const { timings } = await window.skinlens.classify(image);
        if (i >= warmup) series.push(timings);
      }
      return { series, userAgent: navigator.userAgent };
    }, { base64, warmup: WARMUP, iters: ITERS });
  } finally {
    await browser.close();
  }
}

function runPeer() {
  const script = join(REPO, '../shared/peers/run.sh');
  const run = spawnSync(script, [], {
    env: { ...process.env, VARIANTS: 'wasm-1t', ITERS: String(ITERS) },
    encoding: 'utf8',
    timeout: 330_000,
  });
  process.stderr.write(run.stderr ?? '');
  const line = (run.stdout ?? '').split('\n').find((l) => l.startsWith('{'));
  if (!line) return { ok: false, error: `peer run.sh exited ${run.status} without a result` };
  const record = JSON.parse(line);
  const ms = record.ms ?? {};
  return {
    ok: record.ok,
    error: record.error,
    coldMs: ms.cold, // fetch of the model + InferenceSession.create (wasm compile, graph optimisation)
    // Like our open → ready, which includes loading the runtime and one (warm-up) inference.
    coldInclImportAndFirstMs: ms.coldInclImport + ms.first,
    firstMs: ms.first,
    warmMedianMs: ms.warm?.median,
    raw: record,
  };
}

const server = await startServer();
const report = { startedAt: new Date().toISOString(), image: IMAGE, iters: ITERS, warmup: WARMUP, loadavgAtStart: loadavg().map((x) => round(x, 2)) };
try {
  report.sizes = sizes();
  const colds = [];
  for (let i = 0; i < COLD_RUNS; i++) colds.push(await coldStart(server.url));
  report.cold = { runs: colds, medianPageMs: round(median(colds.map((c) => c.pageMs))), medianWallMs: round(median(colds.map((c) => c.wallMs))) };
  const warm = await warmSeries(server.url);
  const inference = warm.series.map((t) => t.inference_ms);
  report.userAgent = warm.userAgent;
  report.warm = {
    n: inference.length,
    inferenceMedianMs: round(median(inference), 2),
    inferenceMinMs: round(Math.min(...inference), 2),
    inferenceP90Ms: round(quantile(inference, 0.9), 2),
    decodeMedianMs: round(median(warm.series.map((t) => t.decode_ms)), 2),
    preprocessMedianMs: round(median(warm.series.map((t) => t.preprocess_ms)), 2),
    inferenceMs: inference.map((x) => round(x, 2)),
  };
} finally {
  await server.stop();
}
report.loadavgAfterOurs = loadavg().map((x) => round(x, 2));
if (RUN_PEER) {
  report.peer = runPeer();
  report.loadavgAfterPeer = loadavg().map((x) => round(x, 2));
  if (report.peer.ok) {
    report.ratio = {
      warmMedian: round(report.warm.inferenceMedianMs / report.peer.warmMedianMs, 2),
      // open → ready vs import + create + first run: both include one inference.
      coldLikeForLike: round(report.cold.medianPageMs / report.peer.coldInclImportAndFirstMs, 2),
    };
  }
}

mkdirSync(join(REPO, 'bench-results'), { recursive: true });
const out = join(REPO, 'bench-results', `web-${report.startedAt.replace(/[:.]/g, '-')}.json`);
writeFileSync(out, JSON.stringify(report, null, 1));

const kb = (b) => `${(b / 1024).toFixed(0)} KiB`;
console.log(`# skinlens page, ${report.userAgent}`);
console.log(`# cold start (open → ready, fresh profile), median of ${COLD_RUNS}: ${report.cold.medianPageMs} ms in-page, ${report.cold.medianWallMs} ms wall`);
console.log(`# warm inference_ms over ${report.warm.n} runs: median ${report.warm.inferenceMedianMs}, min ${report.warm.inferenceMinMs}, p90 ${report.warm.inferenceP90Ms} (decode ${report.warm.decodeMedianMs}, preprocess ${report.warm.preprocessMedianMs})`);
for (const s of report.sizes) console.log(`# ${s.path}: ${kb(s.raw)} raw, ${kb(s.gzip)} gzip`);
if (report.peer) {
  if (report.peer.ok) {
    console.log(`# peer ONNX Runtime Web wasm-1t, same run: cold (fetch+create) ${round(report.peer.coldMs)} ms, import+create+first run ${round(report.peer.coldInclImportAndFirstMs)} ms, warm median ${round(report.peer.warmMedianMs, 2)} ms`);
    console.log(`# ratio skinlens / ORT Web (below 1 = skinlens faster): warm median ${report.ratio.warmMedian}, cold start ${report.ratio.coldLikeForLike} (ours open→ready vs its import+create+first run)`);
  } else {
    console.log(`# peer failed: ${report.peer.error}`);
  }
}
console.log(`# loadavg start ${report.loadavgAtStart.join(' ')}, after ours ${report.loadavgAfterOurs.join(' ')}${report.loadavgAfterPeer ? `, after peer ${report.loadavgAfterPeer.join(' ')}` : ''}`);
console.log(`# full report: ${out}`);
