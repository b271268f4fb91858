// End-to-end: the built page (dist/) in real headless Chromium, compared with the native CLI.
//   node --test tests/e2e/page.test.mjs      (tests/e2e/run.sh prepares everything first)
// Artefacts (screenshot, request logs, CSV) go to test-results/e2e/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO, DIST, startServer, launchBrowser, openPage, waitForReady } from './harness.mjs';
import { writeFixtures } from './fixtures.mjs';

const ARTEFACTS = join(REPO, 'test-results/e2e');
const CLI = join(REPO, 'target/release/skinlens');
const TOLERANCE = 1e-4;

let server;
let browser;
let page;
let fixtures;
let ready;
/** `skinlens predict --json` on the fixtures, by file name. */
let native;

/** Every file of the built site, as URL paths ('/' is index.html). */
function siteFiles() {
  const files = new Set(['/']);
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else files.add(`/${relative(DIST, path).split('\\').join('/')}`);
    }
  };
  walk(DIST);
  return files;
}

function runNativeCli(paths) {
  assert.ok(existsSync(CLI), `${CLI} is missing: build it first (cargo build --release)`);
  let stdout;
  try {
    // stderr is captured, not shown: the corrupt fixture's error is expected and checked here.
    stdout = execFileSync(CLI, ['predict', '--json', ...paths], {
      encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    // A non-zero exit is expected when a fixture is corrupt; it must name that file.
    const expected = fixtures.filter((f) => f.expectError).map((f) => f.name);
    if (!error.stdout || expected.length === 0) throw error;
    for (const name of expected) assert.match(error.stderr, new RegExp(`${name.replace('.', '\\.')}: `));
    stdout = error.stdout;
  }
  const byName = new Map();
  for (const line of stdout.trim().split('\n')) {
    const record = JSON.parse(line);
    byName.set(record.file.split('/').pop(), record);
  }
  return byName;
}

/** Drop files onto the drop zone the way a browser does: one DataTransfer with File objects. */
async function dropFiles(list) {
  const files = list.map((f) => ({ name: f.name, type: f.type, base64: readFileSync(f.path).toString('base64') }));
  const dataTransfer = await page.evaluateHandle((files) => {
    const transfer = new DataTransfer();
    for (const { name, type, base64 } of files) {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      transfer.items.add(new File([bytes], name, { type }));
    }
    return transfer;
  }, files);
  await page.dispatchEvent('#drop-zone', 'drop', { dataTransfer });
  await page.waitForFunction(
    (count) => {
      const shown = window.skinlens.results();
      return shown.length === count && shown.every((e) => e.result || e.error);
    },
    list.length,
    { timeout: 120_000 },
  );
  return page.evaluate(() => window.skinlens.results());
}

function assertMatchesNative(name, result) {
  const expected = native.get(name);
  assert.ok(expected, `the CLI printed nothing for ${name}`);
  assert.equal(expected.error, undefined, `the CLI failed on ${name}: ${expected.error}`);
  const codes = Object.keys(expected.probabilities);
  assert.deepEqual(Object.keys(result.probabilities).sort(), [...codes].sort(), `${name}: class sets differ`);
  const sum = Object.values(result.probabilities).reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(sum - 1) < 1e-5, `${name}: probabilities sum to ${sum}`);
  for (const code of codes) {
    const difference = Math.abs(result.probabilities[code] - expected.probabilities[code]);
    assert.ok(difference <= TOLERANCE, `${name}: ${code} page ${result.probabilities[code]} vs CLI ${expected.probabilities[code]} (|Δ| ${difference})`);
  }
  assert.equal(result.top, expected.top, `${name}: top class`);
}

before(async () => {
  assert.ok(existsSync(join(DIST, 'index.html')), 'dist/ is missing: run ./build.sh first');
  rmSync(ARTEFACTS, { recursive: true, force: true });
  mkdirSync(ARTEFACTS, { recursive: true });
  fixtures = writeFixtures(join(ARTEFACTS, 'fixtures'));
  native = runNativeCli(fixtures.map((f) => f.path));
  server = await startServer({ logFile: join(ARTEFACTS, 'server-requests.jsonl') });
  browser = await launchBrowser();
  page = browser.page;
  ready = await openPage(page, server.url);
});

after(async () => {
  if (browser) {
    writeFileSync(join(ARTEFACTS, 'browser-requests.json'), JSON.stringify(browser.requests, null, 1));
    writeFileSync(join(ARTEFACTS, 'console.log'), browser.consoleLines.join('\n'));
    await browser.close();
  }
  await server?.stop();
});

test('the page loads the model, says where it runs and that it is not a diagnosis', async () => {
  // The default backend takes WebGPU when the browser offers it; this Chromium runs without
  // --enable-unsafe-webgpu, so the engine must be, and say it is, the wasm SIMD CPU path.
  assert.equal(ready.backend, 'cpu');
  assert.match(ready.backendLabel, /^CPU · wasm SIMD/);
  assert.equal(await page.textContent('#backend-badge'), 'CPU · wasm SIMD');
  assert.match(await page.textContent('#backend-detail'), /^CPU · wasm SIMD/);
  assert.ok(ready.coldStartMs > 0);
  assert.deepEqual(ready.classes.map((c) => c.code).sort(), ['akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc']);
  assert.ok(Number.isInteger(ready.inputSize) && ready.inputSize >= 32, `inputSize ${ready.inputSize}`);
  if (ready.card?.input?.size) assert.equal(ready.inputSize, ready.card.input.size, 'the card and the weights agree on the input size');
  assert.match(await page.textContent('.disclaimer'), /not a diagnosis — see a clinician/i);
  assert.ok(await page.isVisible('.disclaimer'));
  assert.ok(await page.isVisible('#model-card'));
  // The untrained banner shows exactly when the model file says so.
  assert.equal(await page.isVisible('#untrained-warning'), ready.untrained);
  assert.ok(await page.isHidden('#loading'));
  // The model card: what the model is, what it was trained and measured on, under which licence.
  const terms = await page.locator('#card-fields dt').allTextContents();
  for (const term of ['Model', 'Version', 'Training data', 'Measured']) assert.ok(terms.includes(term), `card lacks ${term}: ${terms}`);
  if (!ready.untrained) for (const term of ['On', 'Licence']) assert.ok(terms.includes(term), `card lacks ${term}: ${terms}`);
  // The download reported its progress up to the model's full size.
  const progress = await page.evaluate(() => ({ value: document.getElementById('model-progress').value, max: document.getElementById('model-progress').max }));
  assert.equal(progress.max, statSync(join(DIST, 'models/skinlens.safetensors')).size);
  assert.equal(progress.value, progress.max);
});

test('dropped images get the same probabilities as `skinlens predict`, errors stay per file', async () => {
  const shown = await dropFiles(fixtures);
  assert.equal(shown.length, fixtures.length);
  for (const [i, fixture] of fixtures.entries()) {
    const entry = shown[i];
    assert.equal(entry.fileName, fixture.name);
    if (fixture.expectError) {
      assert.ok(entry.error, `${fixture.name} should fail`);
      assert.match(entry.error, /could not be classified/);
      assert.ok(native.get(fixture.name)?.error, `the CLI should reject ${fixture.name} too`);
      continue;
    }
    assert.ok(entry.result, `${fixture.name}: ${entry.error}`);
    assertMatchesNative(fixture.name, entry.result);
    const { timings, backend, ranked, preview, cam } = entry.result;
    assert.equal(backend, 'cpu');
    for (const key of ['decode_ms', 'preprocess_ms', 'inference_ms']) assert.ok(timings[key] >= 0, `${key} = ${timings[key]}`);
    assert.equal(ranked.length, 7);
    assert.ok(ranked.every((r, j) => j === 0 || ranked[j - 1].probability >= r.probability), 'ranked is sorted');
    const size = ready.inputSize; // the model's input, as its metadata says
    assert.deepEqual([preview.width, preview.height, preview.rgba.length], [size, size, size * size * 4]);
    assert.equal(cam.values.length, cam.width * cam.height);
  }
  // The table lists every file, the corrupt one with its message.
  assert.equal(await page.locator('#batch-table tbody tr').count(), fixtures.length);
  const corruptRow = page.locator('#batch-table tbody tr', { hasText: 'corrupt.jpg' });
  assert.match(await corruptRow.textContent(), /could not be classified/);
  await corruptRow.click();
  assert.ok(await page.isVisible('#result-error'));
  assert.match(await page.textContent('#result-error'), /corrupt\.jpg: this image could not be classified/);
});

test('after a corrupt file the page keeps working, and the automation API answers', async () => {
  const corrupt = fixtures.find((f) => f.expectError);
  const real = fixtures.find((f) => f.kind === 'ham10000');
  const [failed] = await dropFiles([corrupt]);
  assert.ok(failed.error);
  assert.ok(await page.isVisible('#result-error'));

  const result = await page.evaluate(async (base64) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return window.skinlens.classify(new Blob([bytes], { type: 'image/jpeg' }));
  }, readFileSync(real.path).toString('base64'));
  assertMatchesNative(real.name, result);
  assert.ok(await page.isHidden('#result-error'));
  assert.equal(await page.locator('#bars li').count(), 7);

  const rejection = await page.evaluate(() => window.skinlens.classify(new Blob([new Uint8Array(10)])).then(() => null, (e) => e.message));
  assert.match(rejection ?? '', /could not be classified/);
  const typeError = await page.evaluate(() => window.skinlens.classify('not a blob').then(() => null, (e) => e.message));
  assert.match(typeError ?? '', /Blob or File/);
});

test('one image: full names, malignant flags, activation-map toggle; screenshot', async () => {
  const real = fixtures.filter((f) => f.kind === 'ham10000');
  await dropFiles(real);
  await page.locator('#batch-table tbody tr').first().click();
  const labels = await page.locator('#bars .bar-label').allTextContents();
  assert.ok(labels.some((l) => l.startsWith('Melanoma (mel)')), labels.join(' | '));
  const flagged = await page.locator('#bars li.malignant').evaluateAll((items) => items.map((li) => li.dataset.class).sort());
  assert.deepEqual(flagged, ['akiec', 'bcc', 'mel']);
  // Bars are sorted by probability.
  const values = await page.locator('#bars .bar-track').evaluateAll((tracks) => tracks.map((t) => Number(t.getAttribute('aria-valuenow'))));
  assert.ok(values.every((v, i) => i === 0 || values[i - 1] >= v));
  // The preview shows real pixels, not an empty canvas.
  const previewSpread = await page.evaluate(() => {
    const canvas = document.getElementById('preview');
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let min = 255, max = 0;
    for (let i = 0; i < data.length; i += 4) { min = Math.min(min, data[i]); max = Math.max(max, data[i]); }
    return max - min;
  });
  assert.ok(previewSpread > 20, `preview looks blank (red channel spread ${previewSpread})`);

  assert.ok(await page.isVisible('#cam-overlay'));
  await page.uncheck('#cam-toggle');
  assert.ok(await page.isHidden('#cam-overlay'));
  await page.check('#cam-toggle');
  assert.ok(await page.isVisible('#cam-overlay'));

  await page.screenshot({ path: join(ARTEFACTS, 'page.png'), fullPage: true });
});

test('the file picker and pasting an image work like a drop', async () => {
  const [first, second] = fixtures.filter((f) => f.kind === 'ham10000');
  await page.setInputFiles('#file-input', [first.path, second.path]);
  await page.waitForFunction(() => {
    const shown = window.skinlens.results();
    return shown.length === 2 && shown.every((e) => e.result || e.error);
  });
  const picked = await page.evaluate(() => window.skinlens.results());
  assert.deepEqual(picked.map((e) => e.fileName), [first.name, second.name]);
  picked.forEach((e) => assertMatchesNative(e.fileName, e.result));

  await page.evaluate(async (base64) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const clipboard = new DataTransfer();
    clipboard.items.add(new File([bytes], 'pasted.jpg', { type: 'image/jpeg' }));
    document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: clipboard }));
  }, readFileSync(first.path).toString('base64'));
  await page.waitForFunction(() => window.skinlens.results()[0]?.fileName === 'pasted.jpg' && window.skinlens.results()[0].result);
  const [pasted] = await page.evaluate(() => window.skinlens.results());
  assertMatchesNative(first.name, pasted.result);

  // From the keyboard: Enter and Space on the focused drop zone open the file picker. This
  // launch mode (--headless among the flags) never raises Playwright's 'filechooser' event, so
  // the test watches for the click on the file input that opens the picker, and cancels it.
  await page.evaluate(() => {
    window.pickerOpenings = 0;
    document.getElementById('file-input').addEventListener('click', (event) => {
      window.pickerOpenings += 1;
      event.preventDefault();
    });
  });
  await page.focus('#drop-zone');
  await page.keyboard.press('Enter');
  await page.keyboard.press(' ');
  assert.equal(await page.evaluate(() => window.pickerOpenings), 2);
});

test('several files: CSV download in ISIC 2018 format', async () => {
  const images = fixtures.filter((f) => !f.expectError);
  const shown = await dropFiles(images);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv-download')]);
  const csvPath = join(ARTEFACTS, 'results.csv');
  await download.saveAs(csvPath);
  const lines = readFileSync(csvPath, 'utf8').trim().split(/\r?\n/);
  assert.equal(lines[0], 'image,MEL,NV,BCC,AKIEC,BKL,DF,VASC');
  assert.equal(lines.length, 1 + images.length);
  for (const [i, line] of lines.slice(1).entries()) {
    const [image, ...cells] = line.split(',');
    assert.equal(image, images[i].name.replace(/\.[^.]+$/, ''));
    const probabilities = shown[i].result.probabilities;
    ['mel', 'nv', 'bcc', 'akiec', 'bkl', 'df', 'vasc'].forEach((code, c) => {
      assert.ok(Math.abs(Number(cells[c]) - probabilities[code]) <= 5e-7, `${image} ${code}`);
    });
  }
});

test('Chromium gets the relaxed-SIMD engine; ?simd=plain gets the SIMD128 one, with the same answers', async () => {
  // Chromium has relaxed SIMD (fused multiply-adds), so feature detection must pick that build.
  assert.equal(ready.wasmSimd, 'relaxed');
  const other = await browser.context.newPage();
  try {
    const plainReady = await openPage(other, `${server.url}?simd=plain`);
    assert.equal(plainReady.wasmSimd, 'simd128');
    assert.equal(plainReady.backend, 'cpu');
    const classify = (target, path) => target.evaluate(async (base64) => {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      return window.skinlens.classify(new Blob([bytes], { type: 'image/jpeg' }));
    }, readFileSync(path).toString('base64'));
    for (const fixture of fixtures.filter((f) => f.kind === 'ham10000').slice(0, 2)) {
      const [relaxed, plain] = [await classify(page, fixture.path), await classify(other, fixture.path)];
      for (const code of Object.keys(relaxed.probabilities)) {
        const difference = Math.abs(relaxed.probabilities[code] - plain.probabilities[code]);
        assert.ok(difference <= TOLERANCE, `${fixture.name}: ${code} relaxed ${relaxed.probabilities[code]} vs plain ${plain.probabilities[code]}`);
      }
      assertMatchesNative(fixture.name, relaxed);
      assertMatchesNative(fixture.name, plain);
    }
  } finally {
    await other.close();
  }
});

test('an engine that crashes is replaced: a clear message, then the next image is answered', async () => {
  const real = fixtures.find((f) => f.kind === 'ham10000');
  // One engine worker per core (the pool); all of them are broken at once.
  const engines = page.workers().filter((w) => w.url().endsWith('/worker.js'));
  assert.ok(engines.length >= 1, 'expected an engine worker');
  // Fault drill without a hook in the product: scribble over the engine's wasm memory from
  // inside its worker, so its next call traps, as a bug that corrupts memory would make it.
  for (const worker of engines) {
    await worker.evaluate(async () => {
      const cpu = await import('./backends/cpu.js'); // the worker's own instance of the module
      const exports = await cpu.wasmModule().default(); // already initialised: the live instance
      new Uint8Array(exports.memory.buffer).fill(0xff);
    });
  }
  const classify = () => page.evaluate(async (base64) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return window.skinlens.classify(new Blob([bytes], { type: 'image/jpeg' })).then((result) => ({ result }), (e) => ({ error: e.message }));
  }, readFileSync(real.path).toString('base64'));

  const crashed = await classify();
  assert.match(crashed.error ?? '', /internal error in the engine .*restarting it/);
  assert.match(await page.textContent('#result-error'), /internal error in the engine/);
  const recovered = await classify();
  assert.ok(recovered.result, recovered.error);
  assertMatchesNative(real.name, recovered.result);
});

test('an unknown ?backend= is refused with a clear message', async () => {
  const other = await browser.context.newPage();
  await other.goto(`${server.url}?backend=quantum`);
  await other.waitForSelector('#page-error:not([hidden])');
  assert.match(await other.textContent('#page-error'), /unknown backend "quantum"/);
  await other.close();
});

test('an engine that cannot start says so, and a browser without wasm SIMD is told why', async () => {
  const fresh = await launchBrowser(); // no service worker yet, so the routed failure is real
  try {
    await fresh.context.route(/\/pkg(-relaxed)?\/skinlens_web_bg\.wasm$/, (route) => route.fulfill({ status: 404, body: 'gone' }));
    await fresh.page.goto(server.url);
    await fresh.page.waitForSelector('#page-error:not([hidden])', { timeout: 60_000 });
    assert.match(await fresh.page.textContent('#page-error'), /^The classifier could not start: the engine could not be downloaded \(\/pkg-relaxed\/skinlens_web_bg.wasm: HTTP 404\)/);
    assert.ok(await fresh.page.isHidden('#loading'));
    const rejected = await waitForReady(fresh.page).then(() => null, (e) => e.message);
    assert.ok(rejected, 'ready should reject');

    // WebAssembly SIMD cannot be switched off in Chromium, so stand in for such a browser by
    // making WebAssembly.validate refuse: the backend's own check must then explain itself.
    const verdicts = await fresh.page.evaluate(async () => {
      const cpu = await import('./backends/cpu.js');
      const withSimd = await cpu.checkSupport();
      WebAssembly.validate = () => false;
      return { withSimd, withoutSimd: await cpu.checkSupport() };
    });
    assert.deepEqual(verdicts.withSimd, { ok: true });
    assert.equal(verdicts.withoutSimd.ok, false);
    assert.match(verdicts.withoutSimd.reason, /does not support WebAssembly SIMD/);
  } finally {
    await fresh.close();
  }
});

test('offline: the service worker serves page, engine and model with the network gone', async () => {
  await page.evaluate(async () => {
    await navigator.serviceWorker.ready;
  });
  // The first visit was not controlled; a reload is, and from then on the cache answers.
  await page.reload();
  await waitForReady(page);
  assert.ok(await page.evaluate(() => navigator.serviceWorker.controller !== null), 'page is not controlled by the service worker');
  await browser.context.setOffline(true);
  try {
    const offlineReady = await openPage(page, server.url);
    assert.equal(offlineReady.backend, 'cpu');
    const real = fixtures.find((f) => f.kind === 'ham10000');
    const [entry] = await dropFiles([real]);
    assertMatchesNative(real.name, entry.result);
  } finally {
    await browser.context.setOffline(false);
  }
});

test('no request leaves the page\'s own assets, and none carries an image', async () => {
  const assets = siteFiles();
  const origin = new URL(server.url).origin;
  assert.ok(browser.requests.length > 0, 'no requests recorded');
  for (const request of browser.requests) {
    const url = new URL(request.url);
    assert.equal(url.origin, origin, `request off the page's origin: ${request.url}`);
    assert.equal(request.method, 'GET', `${request.method} ${request.url}`);
    assert.equal(request.bodyBytes, 0, `request with a body: ${request.url}`);
    assert.ok(assets.has(url.pathname), `not one of the page's assets: ${url.pathname}`);
  }
  const seen = server.requests();
  assert.ok(seen.length > 0, 'the server logged no requests');
  for (const request of seen) {
    assert.equal(request.method, 'GET', `${request.method} ${request.path}`);
    assert.equal(request.bodyBytes, 0, `request with a body: ${request.path}`);
    assert.ok(assets.has(request.path), `not one of the page's assets: ${request.path}`);
  }
  // Nothing was blocked by the Content-Security-Policy and no script error went unhandled.
  const problems = browser.consoleLines.filter((line) => /^pageerror|Content Security Policy|Refused to/.test(line));
  assert.deepEqual(problems, []);
  const imageNames = fixtures.map((f) => f.name.replace(/\.[^.]+$/, ''));
  for (const { url } of browser.requests) {
    for (const name of imageNames) assert.ok(!url.includes(name), `${url} names an image`);
  }
});
