// WebGPU latency in headless Chromium (a report, not a test), back to back with ONNX Runtime
// Web's WebGPU execution provider on the same model (../shared/peers, VARIANTS=webgpu). Without
// a GPU, Chromium's WebGPU is SwiftShader, a GPU emulated on the CPU: the figures say how the
// engine runs there, not on a real GPU.
//
//   node bench/gpu/browser.mjs        (needs dist/ from ./build.sh and tests/e2e's npm packages)
// The page serves whatever model dist/ was built with; the peer always runs the 224-px 7-class
// reference. For a like-for-like comparison build with that model first:
//   SKINLENS_MODEL=../shared/peers/models/effnet_lite0_7cls.safetensors ./build.sh
// (then rebuild plainly, or the e2e tests see the wrong model).
// env: ITERS (10, ours and the peer's), WARMUP (1), PEER (1 = run the peer), IMAGE.
// Prints a summary and writes bench-results/gpu-browser-<time>.json.

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { REPO, startServer, launchBrowser, openPage } from '../../tests/e2e/harness.mjs';

const ITERS = Number(process.env.ITERS ?? 10);
const WARMUP = Number(process.env.WARMUP ?? 1);
const RUN_PEER = (process.env.PEER ?? '1') !== '0';
const IMAGE = process.env.IMAGE ?? join(REPO, '../shared/data/ham10000/fullres_600x450/ISIC_0024306.jpg');

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => {
  const s = sorted(xs);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const round = (x) => Math.round(x * 10) / 10;

async function measureOurs(url) {
  const browser = await launchBrowser({ extraFlags: ['--enable-unsafe-webgpu'] });
  try {
    const t0 = Date.now();
    const ready = await openPage(browser.page, url, { timeout: 600_000 });
    const openToReadyMs = Date.now() - t0;
    if (ready.backend !== 'webgpu') throw new Error(`the page did not pick WebGPU: ${ready.backendLabel}`);
    const base64 = readFileSync(IMAGE).toString('base64');
    const series = await browser.page.evaluate(async ({ base64, warmup, iters }) => {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const image = new Blob([bytes], { type: 'image/jpeg' });
      const times = [];
      for (let i = 0; i < warmup + iters; i++) {
        const result = await window.skinlens.classify(image);
        if (result.backend !== 'webgpu') throw new Error(`fell back to ${result.backend}: ${result.fallbackReason}`);
        if (i >= warmup) times.push(result.timings.inference_ms);
      }
      return times;
    }, { base64, warmup: WARMUP, iters: ITERS });
    return {
      backendLabel: ready.backendLabel,
      openToReadyMs,
      loadTimings: ready.loadTimings,
      inference: { n: series.length, medianMs: round(median(series)), minMs: round(Math.min(...series)), maxMs: round(Math.max(...series)), ms: series.map(round) },
    };
  } finally {
    await browser.close();
  }
}

function runPeer() {
  const run = spawnSync(join(REPO, '../shared/peers/run.sh'), [], {
    env: { ...process.env, VARIANTS: 'webgpu', ITERS: String(ITERS) },
    encoding: 'utf8',
    timeout: 600_000,
  });
  process.stderr.write(run.stderr ?? '');
  const line = (run.stdout ?? '').split('\n').find((l) => l.startsWith('{'));
  if (!line) return { ok: false, error: `peer run.sh exited ${run.status} without a result` };
  const record = JSON.parse(line);
  const ms = record.ms ?? {};
  return { ok: record.ok, error: record.error, adapter: record.adapter ?? record.webgpuAdapter, coldMs: ms.cold, firstMs: ms.first, warm: ms.warm && { n: ms.warm.n ?? ms.warmTimes?.length, medianMs: ms.warm.median, minMs: ms.warm.min, maxMs: ms.warm.max }, raw: record };
}

const report = { startedAt: new Date().toISOString(), image: IMAGE, iters: ITERS, warmup: WARMUP, loadavgAtStart: loadavg() };
const server = await startServer();
try {
  report.ours = await measureOurs(server.url);
} finally {
  await server.stop();
}
report.loadavgAfterOurs = loadavg();
if (RUN_PEER) report.peer = runPeer();
report.loadavgAtEnd = loadavg();

mkdirSync(join(REPO, 'bench-results'), { recursive: true });
const file = join(REPO, 'bench-results', `gpu-browser-${report.startedAt.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify(report, null, 1));
console.log(`skinlens WebGPU (${report.ours.backendLabel}): open → ready ${report.ours.openToReadyMs} ms, ` +
  `inference median ${report.ours.inference.medianMs} ms (min ${report.ours.inference.minMs}, n ${report.ours.inference.n})`);
if (report.peer) {
  const p = report.peer;
  console.log(p.ok === false && !p.warm
    ? `peer: ${p.error}`
    : `ONNX Runtime Web WebGPU EP: first ${p.firstMs} ms, warm median ${p.warm?.medianMs} ms (min ${p.warm?.minMs}, n ${p.warm?.n})`);
}
console.log(`loadavg: start ${report.loadavgAtStart.map((x) => x.toFixed(1)).join(' ')}, end ${report.loadavgAtEnd.map((x) => x.toFixed(1)).join(' ')}; ${file}`);
