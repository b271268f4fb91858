// ONNX Runtime Web doing the shipped model's work per image: one pass of each member of
// models/skinlens.safetensors (exported by bench/web/onnx_members.py), one after the other, in
// the same headless Chromium as bench/web/bench.mjs. The page spreads its members over two web
// workers; the peer's counterpart is ORT's wasm EP with 2 threads (needs a cross-origin
// isolated page), and 1 thread for reference. A report, not a test.
//
//   ~/.cache/skinlens-bench-venv/bin/python bench/web/onnx_members.py   # once per model file
//   (cd bench/web && npm ci) && node bench/web/peer_members.mjs
//
// Per variant, a fresh browser and profile: cold = fetch both .onnx + create both sessions,
// then the first run of each (reported apart and together); then WARMUP untimed and ITERS timed
// images, each = member 1 then member 2 on 1×3×S×S f32, outputs read back; median etc.
// The first run's logits are checked against the project's own (manifest.json, tolerance 1e-3).
// Prints one JSON line per variant and round, writes bench-results/peer-members-<time>.json.
//
// env: ITERS (40), WARMUP (5), ROUNDS (1; variants alternate within a round),
//      VARIANTS (wasm-1t,wasm-2t-coi; also wasm-1t-coi), MEMBERS_DIR (target/onnx-members),
//      TIMEOUT_S (600 per variant), CHROMIUM (see tests/e2e/harness.mjs).

import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { loadavg } from 'node:os';
import { extname, join, resolve, sep } from 'node:path';
import { REPO, launchBrowser } from '../../tests/e2e/harness.mjs';

const ITERS = Number(process.env.ITERS ?? 40);
const WARMUP = Number(process.env.WARMUP ?? 5);
const ROUNDS = Number(process.env.ROUNDS ?? 1);
const TIMEOUT_S = Number(process.env.TIMEOUT_S ?? 600);
const MEMBERS_DIR = resolve(process.env.MEMBERS_DIR ?? join(REPO, 'target/onnx-members'));
const ORT_DIST = join(REPO, 'bench/web/node_modules/onnxruntime-web/dist');

// `coi`: served with COOP/COEP, so the page is crossOriginIsolated (SharedArrayBuffer, threads).
const VARIANTS = {
  'wasm-1t': { threads: 1, coi: false },
  'wasm-1t-coi': { threads: 1, coi: true }, // separates the headers' effect from the threads'
  'wasm-2t-coi': { threads: 2, coi: true },
};
const NAMES = (process.env.VARIANTS ?? 'wasm-1t,wasm-2t-coi').split(',').filter(Boolean);
for (const name of NAMES) if (!VARIANTS[name]) throw new Error(`unknown variant ${name}; known: ${Object.keys(VARIANTS)}`);

// --- inputs: the exported members, and a check that they are the current model's
const manifestPath = join(MEMBERS_DIR, 'manifest.json');
if (!existsSync(manifestPath)) {
  console.error(`no ${manifestPath}: run ~/.cache/skinlens-bench-venv/bin/python bench/web/onnx_members.py first`);
  process.exit(2);
}
const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
if (!manifest.ok) throw new Error(`${manifestPath}: the export failed its parity check`);
if (existsSync(manifest.model) && createHash('sha256').update(readFileSync(manifest.model)).digest('hex') !== manifest.modelSha256) {
  console.error(`${manifest.model} changed since the export: rerun bench/web/onnx_members.py`);
  process.exit(2);
}
if (!existsSync(join(ORT_DIST, 'ort.wasm.min.mjs'))) {
  console.error('onnxruntime-web is not installed: (cd bench/web && npm ci)');
  process.exit(2);
}

// --- a static server: the project's crates/web/serve.mjs sends no COOP/COEP, which 2 threads need
const MIME = { '.html': 'text/html; charset=utf-8', '.mjs': 'text/javascript', '.js': 'text/javascript',
  '.wasm': 'application/wasm', '.json': 'application/json' };
const PAGE = '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>ORT Web, skinlens members</title>';
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin' };

function serve(request, response) {
  let path = new URL(request.url, 'http://127.0.0.1').pathname;
  // Every sub-resource (the ORT worker script included) needs the headers too, so /coi/ covers all.
  const coi = path.startsWith('/coi/');
  if (coi) path = path.slice(4);
  const headers = { 'Cache-Control': 'no-store', ...(coi ? ISOLATION : {}) };
  if (path === '/') {
    response.writeHead(200, { ...headers, 'Content-Type': MIME['.html'] });
    return response.end(PAGE);
  }
  const roots = { '/ort/': ORT_DIST, '/members/': MEMBERS_DIR };
  const prefix = Object.keys(roots).find((p) => path.startsWith(p));
  const file = prefix && resolve(roots[prefix], decodeURIComponent(path.slice(prefix.length)));
  if (!file || !file.startsWith(roots[prefix] + sep) || !existsSync(file) || !statSync(file).isFile()) {
    response.writeHead(404, headers);
    return response.end();
  }
  response.writeHead(200, { ...headers, 'Content-Type': MIME[extname(file)] ?? 'application/octet-stream', 'Content-Length': statSync(file).size });
  createReadStream(file).pipe(response);
}

/**
 * Runs in the page (serialised by Playwright, so it uses nothing from this module). Starts the
 * benchmark and returns at once; the outcome lands in window.__peerMembers (awaiting a long
 * promise over the DevTools protocol is what harness.waitForReady avoids too).
 */
function startInPage({ prefix, threads, iters, warmup, members }) {
  const now = () => performance.now();
  const fetchBytes = async (url) => {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return r.arrayBuffer();
  };
  async function run() {
    const result = { crossOriginIsolated: self.crossOriginIsolated, hardwareConcurrency: navigator.hardwareConcurrency,
      userAgent: navigator.userAgent };
    // Inputs first: not part of the peer's cold start.
    const inputs = await Promise.all(members.map(async (m) => new Float32Array(await fetchBytes(`${prefix}/members/${m.input}`))));

    const t0 = now();
    const ort = await import(`${prefix}/ort/ort.wasm.min.mjs`);
    ort.env.wasm.wasmPaths = `${location.origin}${prefix}/ort/`;
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.proxy = false;
    const tImported = now();
    const sessions = [];
    for (const m of members) {
      const bytes = new Uint8Array(await fetchBytes(`${prefix}/members/${m.onnx}`));
      sessions.push(await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' }));
    }
    const tCreated = now();
    // ORT writes back the thread count it really uses (1 when the page is not isolated).
    result.numThreadsEffective = ort.env.wasm.numThreads;
    result.ortVersion = ort.env.versions;

    const feeds = members.map((m, i) => ({ [sessions[i].inputNames[0]]: new ort.Tensor('float32', inputs[i], [1, 3, m.inputSize, m.inputSize]) }));
    // One image = each member in turn, its output read back (the default location is the CPU).
    const image = async (memberMs) => {
      const outputs = [];
      for (let i = 0; i < sessions.length; i++) {
        const t = now();
        const out = await sessions[i].run(feeds[i]);
        outputs.push(Array.from(out[sessions[i].outputNames[0]].data));
        memberMs?.[i].push(now() - t);
      }
      return outputs;
    };
    const first = await image();
    const tFirst = now();
    result.parity = members.map((m, i) => {
      const got = first[i], want = m.projectLogits;
      const argmax = (xs) => xs.indexOf(Math.max(...xs));
      const maxAbsDiff = Math.max(...got.map((v, c) => Math.abs(v - want[c])));
      return { member: m.name, maxAbsDiff, argmaxMatch: argmax(got) === argmax(want) };
    });

    for (let i = 0; i < warmup; i++) await image();
    const memberMs = members.map(() => []);
    const imageMs = [];
    for (let i = 0; i < iters; i++) {
      const t = now();
      await image(memberMs);
      imageMs.push(now() - t);
    }
    for (const s of sessions) await s.release();
    result.ms = { importOrt: tImported - t0, fetchAndCreate: tCreated - tImported, first: tFirst - tCreated };
    result.imageMs = imageMs;
    result.memberMs = memberMs;
    return result;
  }
  window.__peerMembers = null;
  run().then((r) => { window.__peerMembers = r; }, (e) => { window.__peerMembers = { error: String(e?.stack ?? e) }; });
}

const round = (x, digits = 2) => Number(x.toFixed(digits));
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { n: s.length, median: round(median), min: round(s[0]), p90: round(s[Math.min(s.length - 1, Math.ceil(0.9 * s.length) - 1)]),
    max: round(s[s.length - 1]), mean: round(s.reduce((a, b) => a + b, 0) / s.length) };
};
const median = (xs) => stats(xs).median;

async function runVariant(name, origin) {
  const v = VARIANTS[name];
  const record = { variant: name, threads: v.threads, members: manifest.members.map((m) => m.name), iters: ITERS, warmup: WARMUP,
    loadavgAtStart: loadavg().map((x) => round(x)) };
  const browser = await launchBrowser();
  try {
    const prefix = v.coi ? '/coi' : '';
    await browser.page.goto(`${origin}${prefix}/`);
    await browser.page.evaluate(startInPage, { prefix, threads: v.threads, iters: ITERS, warmup: WARMUP, members: manifest.members });
    const handle = await browser.page.waitForFunction(() => window.__peerMembers, null, { timeout: TIMEOUT_S * 1000, polling: 250 });
    const r = await handle.jsonValue();
    if (r.error) throw new Error(r.error);
    // Threads ORT started: each is a dedicated worker of the page (the main thread is the first).
    record.workers = browser.page.workers().length;
    const ms = r.ms;
    Object.assign(record, {
      crossOriginIsolated: r.crossOriginIsolated, numThreadsEffective: r.numThreadsEffective, hardwareConcurrency: r.hardwareConcurrency,
      ortVersion: r.ortVersion?.web, userAgent: r.userAgent,
      ms: {
        importOrt: round(ms.importOrt), fetchAndCreate: round(ms.fetchAndCreate), first: round(ms.first),
        coldCreateAndFirst: round(ms.fetchAndCreate + ms.first), // the brief's "cold": both sessions + first run
        coldInclImport: round(ms.importOrt + ms.fetchAndCreate + ms.first), // like the page's open → ready
        warm: stats(r.imageMs),
        warmPerMember: Object.fromEntries(manifest.members.map((m, i) => [m.name, stats(r.memberMs[i])])),
      },
      parity: r.parity,
      imageMs: r.imageMs.map((x) => round(x)),
    });
    const problems = [];
    if (!r.parity.every((p) => p.argmaxMatch && p.maxAbsDiff <= manifest.tolerance)) problems.push(`logits differ from the project's: ${JSON.stringify(r.parity)}`);
    if (v.coi && !r.crossOriginIsolated) problems.push('page is not crossOriginIsolated');
    if (r.numThreadsEffective !== v.threads) problems.push(`ORT uses ${r.numThreadsEffective} thread(s), not ${v.threads}`);
    record.ok = problems.length === 0;
    if (problems.length) record.error = problems.join('; ');
  } catch (e) {
    record.ok = false;
    record.error = String(e?.message ?? e).split('\n')[0];
  } finally {
    const notable = browser.consoleLines.filter((l) => !/^(log|debug|info):/.test(l));
    if (notable.length) record.console = notable.slice(0, 10);
    await browser.close();
    record.loadavgAtEnd = loadavg().map((x) => round(x));
  }
  return record;
}

const server = createServer(serve);
await new Promise((done) => server.listen(0, '127.0.0.1', done));
const origin = `http://127.0.0.1:${server.address().port}`;
const report = { startedAt: new Date().toISOString(), model: manifest.model, modelSha256: manifest.modelSha256, membersDir: MEMBERS_DIR,
  exportParity: manifest.members.map((m) => ({ member: m.name, arch: m.arch, inputSize: m.inputSize, maxAbsLogitDiff: m.maxAbsLogitDiff })),
  iters: ITERS, warmup: WARMUP, rounds: ROUNDS, variants: NAMES, records: [] };
try {
  for (let r = 0; r < ROUNDS; r++) {
    for (const name of NAMES) {
      const record = { round: r + 1, ...(await runVariant(name, origin)) };
      report.records.push(record);
      const { imageMs, ...line } = record;
      console.log(JSON.stringify(line));
    }
  }
} finally {
  server.close();
}

// Medians across rounds, per variant.
report.summary = Object.fromEntries(NAMES.map((name) => {
  const ok = report.records.filter((r) => r.variant === name && r.ok);
  if (!ok.length) return [name, { ok: false }];
  return [name, { ok: ok.length === ROUNDS, rounds: ok.length, warmMedianMs: median(ok.map((r) => r.ms.warm.median)),
    warmMinMs: Math.min(...ok.map((r) => r.ms.warm.min)), coldCreateAndFirstMs: median(ok.map((r) => r.ms.coldCreateAndFirst)),
    coldInclImportMs: median(ok.map((r) => r.ms.coldInclImport)) }];
}));
mkdirSync(join(REPO, 'bench-results'), { recursive: true });
const out = join(REPO, 'bench-results', `peer-members-${report.startedAt.replace(/[:.]/g, '-')}.json`);
writeFileSync(out, JSON.stringify(report, null, 1));

const any = report.records.find((r) => r.ortVersion);
console.log(`# ONNX Runtime Web ${any?.ortVersion ?? '?'}, ${manifest.members.map((m) => `${m.name} (${m.arch} @${m.inputSize})`).join(' then ')} per image; ` +
  `${ROUNDS} round(s) × ${WARMUP} warm-up + ${ITERS} images; ms, medians across rounds`);
for (const [name, s] of Object.entries(report.summary)) {
  console.log(s.rounds ? `# ${name}: warm median ${s.warmMedianMs}, best ${s.warmMinMs}; cold (create both + first run) ${s.coldCreateAndFirstMs}, incl. ORT import ${s.coldInclImportMs}${s.ok ? '' : ' (some rounds failed)'}`
    : `# ${name}: FAILED`);
}
for (const r of report.records) if (!r.ok) console.log(`# FAIL ${r.variant} round ${r.round}: ${r.error}`);
console.log(`# full report: ${out}`);
process.exitCode = report.records.every((r) => r.ok) ? 0 : 1;
