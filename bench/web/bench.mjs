// Browser benchmark of the page (a report, not a test), in the same headless Chromium as the
// peer (ONNX Runtime Web, ../shared/peers), run back to back with it.
//
// Reports: cold start (fresh profile: open → window.skinlens.ready), median inference_ms over
// ITERS warm runs, wasm / JS / weight sizes raw and gzip, the peer's single-threaded wasm
// figures from the same go, and the ratios. Writes bench-results/web-<time>.json.
//
// env: ITERS (50), WARMUP (5), COLD_RUNS (3), ROUNDS (3: ours then the peer, alternating),
//      PEER (1 = run ../shared/peers/run.sh), PEER_VARIANTS (wasm-1t; wasm-2t-coi for two
//      threads), BACKEND (cpu: the page's ?backend=), WORKERS (the page's ?workers=; default
//      one per core), SITE (folder to serve, default dist/), IMAGE.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { REPO, DIST, startServer, launchBrowser, openPage } from '../../tests/e2e/harness.mjs';

const ITERS = Number(process.env.ITERS ?? 50);
const WARMUP = Number(process.env.WARMUP ?? 5);
const COLD_RUNS = Number(process.env.COLD_RUNS ?? 3);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const RUN_PEER = (process.env.PEER ?? '1') !== '0';
// The CPU path is what the peer's single-threaded wasm is compared with.
const BACKEND = process.env.BACKEND ?? 'cpu';
const WORKERS = process.env.WORKERS ?? '';
const SITE = process.env.SITE ?? DIST;
const PEER_VARIANTS = process.env.PEER_VARIANTS ?? 'wasm-1t';
const COMPARE_PLAIN = process.env.PLAIN === '1';
const IMAGE = process.env.IMAGE ?? join(REPO, '../shared/data/ham10000/fullres_600x450/ISIC_0024306.jpg');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const round = (x, digits = 1) => Number(x.toFixed(digits));

function sizes() {
  const entry = (path) => {
    const bytes = readFileSync(join(SITE, path));
    return { path, raw: statSync(join(SITE, path)).size, gzip: gzipSync(bytes, { level: 9 }).length };
  };
  const wasm = ['pkg/skinlens_web_bg.wasm', 'pkg-relaxed/skinlens_web_bg.wasm'].filter((path) => existsSync(join(SITE, path)));
  return [...wasm.map(entry), entry('pkg/skinlens_web.js'), entry('models/skinlens.safetensors')];
}

/** Fresh browser and profile each time, so nothing is cached: what a first visit costs. */
async function coldStart(url) {
  const browser = await launchBrowser();
  try {
    const t0 = Date.now();
    const ready = await openPage(browser.page, url);
    return { wallMs: Date.now() - t0, pageMs: ready.coldStartMs, backend: ready.backend, backendLabel: ready.backendLabel, wasmSimd: ready.wasmSimd, loadTimings: ready.loadTimings, untrained: ready.untrained };
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
    env: { ...process.env, VARIANTS: PEER_VARIANTS, ITERS: String(ITERS) },
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
    warmMinMs: ms.warm?.min,
    raw: record,
  };
}

/** One round: COLD_RUNS fresh-profile cold starts, then WARMUP + ITERS classifications. */
async function measureOurs(url) {
  const colds = [];
  for (let i = 0; i < COLD_RUNS; i++) colds.push(await coldStart(url));
  const warm = await warmSeries(url);
  const inference = warm.series.map((t) => t.inference_ms);
  return {
    userAgent: warm.userAgent,
    cold: { runs: colds, medianPageMs: round(median(colds.map((c) => c.pageMs))), medianWallMs: round(median(colds.map((c) => c.wallMs))) },
    warm: {
      n: inference.length,
      inferenceMedianMs: round(median(inference), 2),
      inferenceMinMs: round(Math.min(...inference), 2),
      inferenceP90Ms: round(quantile(inference, 0.9), 2),
      decodeMedianMs: round(median(warm.series.map((t) => t.decode_ms)), 2),
      preprocessMedianMs: round(median(warm.series.map((t) => t.preprocess_ms)), 2),
      inferenceMs: inference.map((x) => round(x, 2)),
    },
  };
}

// Ours and the peer alternate, ROUNDS times, so both see the same background load (this
// machine is shared; one run's median can move by half when another job takes a core).
const report = { startedAt: new Date().toISOString(), image: IMAGE, site: SITE, workers: WORKERS || 'one per core', peerVariants: PEER_VARIANTS, iters: ITERS, warmup: WARMUP, roundCount: ROUNDS, sizes: sizes(), rounds: [] };
const server = await startServer({ dir: SITE });
const pageUrl = `${server.url}?backend=${encodeURIComponent(BACKEND)}${WORKERS ? `&workers=${encodeURIComponent(WORKERS)}` : ''}`;
try {
  for (let round_ = 0; round_ < ROUNDS; round_++) {
    const entry = { loadavgAtStart: loadavg().map((x) => round(x, 2)) };
    entry.ours = await measureOurs(pageUrl);
    if (COMPARE_PLAIN) entry.oursPlain = await measureOurs(`${pageUrl}&simd=plain`);
    if (RUN_PEER) entry.peer = runPeer();
    entry.loadavgAtEnd = loadavg().map((x) => round(x, 2));
    report.rounds.push(entry);
    const peer = entry.peer?.ok ? `; peer warm median ${round(entry.peer.warmMedianMs, 2)} min ${round(entry.peer.warmMinMs, 2)}` : '';
    const plain = entry.oursPlain ? `; plain SIMD128 warm median ${entry.oursPlain.warm.inferenceMedianMs} min ${entry.oursPlain.warm.inferenceMinMs}, cold ${entry.oursPlain.cold.medianPageMs}` : '';
    console.log(`# round ${round_ + 1}: ours (${entry.ours.cold.runs[0].wasmSimd ?? 'simd128'}) warm median ${entry.ours.warm.inferenceMedianMs} min ${entry.ours.warm.inferenceMinMs}, cold ${entry.ours.cold.medianPageMs}${plain}${peer} (loadavg ${entry.loadavgAtStart[0]})`);
  }
} finally {
  await server.stop();
}
const rounds = report.rounds;
report.userAgent = rounds[0].ours.userAgent;
report.summary = {
  oursWarmMedianMs: round(median(rounds.map((r) => r.ours.warm.inferenceMedianMs)), 2),
  oursWarmMinMs: round(Math.min(...rounds.map((r) => r.ours.warm.inferenceMinMs)), 2),
  oursColdMs: round(median(rounds.map((r) => r.ours.cold.medianPageMs))),
};
if (COMPARE_PLAIN) {
  Object.assign(report.summary, {
    plainWarmMedianMs: round(median(rounds.map((r) => r.oursPlain.warm.inferenceMedianMs)), 2),
    plainWarmMinMs: round(Math.min(...rounds.map((r) => r.oursPlain.warm.inferenceMinMs)), 2),
    plainColdMs: round(median(rounds.map((r) => r.oursPlain.cold.medianPageMs))),
  });
}
const peers = rounds.map((r) => r.peer).filter((p) => p?.ok);
if (peers.length) {
  Object.assign(report.summary, {
    peerWarmMedianMs: round(median(peers.map((p) => p.warmMedianMs)), 2),
    peerWarmMinMs: round(Math.min(...peers.map((p) => p.warmMinMs)), 2),
    peerColdMs: round(median(peers.map((p) => p.coldMs))),
    peerColdInclImportAndFirstMs: round(median(peers.map((p) => p.coldInclImportAndFirstMs))),
  });
  const s = report.summary;
  report.ratio = {
    warmMedian: round(s.oursWarmMedianMs / s.peerWarmMedianMs, 2),
    warmMin: round(s.oursWarmMinMs / s.peerWarmMinMs, 2),
    // open → ready vs import + create + first run: both include one inference.
    coldLikeForLike: round(s.oursColdMs / s.peerColdInclImportAndFirstMs, 2),
  };
}

mkdirSync(join(REPO, 'bench-results'), { recursive: true });
const out = join(REPO, 'bench-results', `web-${report.startedAt.replace(/[:.]/g, '-')}.json`);
writeFileSync(out, JSON.stringify(report, null, 1));

const kb = (b) => `${(b / 1024).toFixed(0)} KiB`;
const s = report.summary;
console.log(`# skinlens page (?backend=${BACKEND}: ${rounds[0].ours.cold.runs[0].backendLabel}; workers ${report.workers}; ${SITE}), ${report.userAgent}; ${ROUNDS} round(s), medians across rounds; load average ${rounds.map((r) => r.loadavgAtStart[0]).join(', ')}`);
console.log(`# cold start (open → ready, fresh profile; includes wasm compile, model download, one warm-up inference): ${s.oursColdMs} ms`);
console.log(`# warm inference_ms (${ITERS} runs per round): median ${s.oursWarmMedianMs}, best ${s.oursWarmMinMs}`);
for (const size of report.sizes) console.log(`# ${size.path}: ${kb(size.raw)} raw, ${kb(size.gzip)} gzip`);
if (COMPARE_PLAIN) {
  console.log(`# the same page with ?simd=plain (SIMD128 build): warm median ${s.plainWarmMedianMs}, best ${s.plainWarmMinMs}, cold ${s.plainColdMs} ms; default build / plain: warm median ${round(s.oursWarmMedianMs / s.plainWarmMedianMs, 2)}, best ${round(s.oursWarmMinMs / s.plainWarmMinMs, 2)}`);
  if (report.ratio) console.log(`# ratio plain / ORT Web: warm median ${round(s.plainWarmMedianMs / s.peerWarmMedianMs, 2)}, best ${round(s.plainWarmMinMs / s.peerWarmMinMs, 2)}`);
}
if (report.ratio) {
  console.log(`# peer ONNX Runtime Web ${PEER_VARIANTS}, same rounds: cold (fetch+create) ${s.peerColdMs} ms, import+create+first run ${s.peerColdInclImportAndFirstMs} ms, warm median ${s.peerWarmMedianMs}, best ${s.peerWarmMinMs}`);
  console.log(`# ratio skinlens / ORT Web (below 1 = skinlens faster): warm median ${report.ratio.warmMedian}, best ${report.ratio.warmMin}, cold start ${report.ratio.coldLikeForLike} (ours open→ready vs its import+create+first run)`);
} else if (RUN_PEER) {
  console.log(`# peer failed: ${rounds.map((r) => r.peer?.error).filter(Boolean).join('; ')}`);
}
console.log(`# full report: ${out}`);
