// End-to-end: the WebGPU backend in headless Chromium. With --enable-unsafe-webgpu Chromium
// offers SwiftShader (a GPU emulated on the CPU, no GPU needed): the default page must pick
// WebGPU and give the CPU path's probabilities within 1e-4; a device loss mid-session must
// fall back to the CPU and still answer. Without the flag the page must run on the CPU and say why.
//   node --test tests/e2e/webgpu.test.mjs      (tests/e2e/run.sh prepares everything first)
// SwiftShader runs our kernels slowly (seconds per image), hence the few images and long timeouts.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, DIST, startServer, launchBrowser, openPage } from './harness.mjs';
import { writeFixtures } from './fixtures.mjs';

const TOLERANCE = 1e-4;
const SLOW = { timeout: 600_000 };

let server;
let fixtures;

before(async () => {
  assert.ok(existsSync(join(DIST, 'index.html')), 'dist/ is missing: run ./build.sh first');
  const dir = join(REPO, 'test-results/e2e-webgpu/fixtures');
  mkdirSync(dir, { recursive: true });
  // Two real lesions and the PNG with an alpha channel: enough to catch a wrong kernel, few
  // enough for an emulated GPU.
  fixtures = writeFixtures(dir, { hamCount: 2 }).filter((f) => f.kind === 'ham10000' || f.kind === 'alpha');
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

/** Classify `fixture` through the page's automation API. */
function classify(page, fixture) {
  return page.evaluate(async ({ base64, type }) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const result = await window.skinlens.classify(new Blob([bytes], { type }));
    delete result.preview; // large, and not what is compared here
    return result;
  }, { base64: readFileSync(fixture.path).toString('base64'), type: fixture.type });
}

function maxDifference(a, b) {
  assert.deepEqual(Object.keys(a.probabilities), Object.keys(b.probabilities), 'class order');
  return Math.max(...Object.keys(a.probabilities).map((code) => Math.abs(a.probabilities[code] - b.probabilities[code])));
}

test('with WebGPU: the default page runs on the GPU, matches the CPU path, and survives a device loss', SLOW, async () => {
  const browser = await launchBrowser({ extraFlags: ['--enable-unsafe-webgpu'] });
  try {
    const gpuPage = browser.page;
    const ready = await openPage(gpuPage, server.url, { timeout: 300_000 });
    assert.equal(ready.backend, 'webgpu', `backend: ${ready.backendLabel}`);
    assert.equal(ready.requestedBackend, 'auto');
    assert.match(ready.backendLabel, /^GPU · WebGPU \(.+\)$/);
    // The badge is short; the adapter is in the details one click away.
    assert.equal(await gpuPage.textContent('#backend-badge'), 'GPU · WebGPU');
    assert.equal(await gpuPage.textContent('#backend-detail'), ready.backendLabel);

    const cpuPage = await browser.context.newPage();
    const cpuReady = await openPage(cpuPage, `${server.url}?backend=cpu`);
    assert.equal(cpuReady.backend, 'cpu');

    for (const fixture of fixtures) {
      const onGpu = await classify(gpuPage, fixture);
      const onCpu = await classify(cpuPage, fixture);
      assert.equal(onGpu.backend, 'webgpu', fixture.name);
      const difference = maxDifference(onGpu, onCpu);
      console.log(`# ${fixture.name}: max |Δp| WebGPU vs CPU = ${difference.toExponential(2)}, inference ${onGpu.timings.inference_ms.toFixed(0)} ms (GPU) / ${onCpu.timings.inference_ms.toFixed(0)} ms (CPU)`);
      assert.ok(difference <= TOLERANCE, `${fixture.name}: max |Δp| ${difference}`);
      assert.equal(onGpu.top, onCpu.top, `${fixture.name}: top class`);
      assert.equal(onGpu.cam.values.length, onCpu.cam.values.length);
    }

    // Fault drill: lose the device inside the engine's worker; the next image must still be
    // answered (by the CPU path), and the badge must say so.
    const worker = gpuPage.workers().find((w) => w.url().endsWith('/worker.js'));
    assert.ok(worker, `engine worker not found among ${gpuPage.workers().map((w) => w.url()).join(', ')}`);
    await worker.evaluate(() => self.skinlensGpuDrill.loseDevice());
    const fixture = fixtures[0];
    const afterLoss = await classify(gpuPage, fixture);
    assert.equal(afterLoss.backend, 'cpu');
    assert.match(afterLoss.fallbackReason, /GPU failed during this session/);
    assert.ok(maxDifference(afterLoss, await classify(cpuPage, fixture)) <= TOLERANCE);
    assert.equal(await gpuPage.textContent('#backend-badge'), 'CPU · wasm SIMD');
    assert.match(await gpuPage.textContent('#backend-detail'), /^CPU · wasm SIMD — WebGPU unavailable: the GPU failed/);
    await cpuPage.close();
  } finally {
    await browser.close();
  }
});

test('without WebGPU: the default page falls back to the CPU and answers; ?backend=webgpu says why it cannot', SLOW, async () => {
  const browser = await launchBrowser();
  try {
    const ready = await openPage(browser.page, server.url);
    assert.equal(ready.backend, 'cpu');
    assert.match(ready.backendLabel, /^CPU · wasm SIMD — WebGPU unavailable: .+/);
    assert.equal(await browser.page.textContent('#backend-badge'), 'CPU · wasm SIMD');
    // The reason is one click away.
    assert.ok(await browser.page.isHidden('#backend-detail'));
    await browser.page.click('#backend summary');
    assert.equal(await browser.page.textContent('#backend-detail'), ready.backendLabel);
    assert.ok(await browser.page.isVisible('#backend-detail'));
    const result = await classify(browser.page, fixtures[0]);
    assert.equal(result.backend, 'cpu');
    const sum = Object.values(result.probabilities).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-5);

    const strict = await browser.context.newPage();
    await strict.goto(`${server.url}?backend=webgpu`);
    await strict.waitForSelector('#page-error:not([hidden])', { timeout: 120_000 });
    assert.match(await strict.textContent('#page-error'), /WebGPU unavailable/);
    await strict.close();
  } finally {
    await browser.close();
  }
});
