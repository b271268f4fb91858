// End-to-end: a model file with two members (different input sizes, one with colour constancy)
// on the page's CPU path and its WebGPU path (SwiftShader), against `skinlens predict` with the
// same file; every answer within 1e-4. The site is dist/ with the model file swapped.
//   node --test tests/e2e/ensemble.test.mjs      (tests/e2e/run.sh prepares everything first)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, DIST, startServer, launchBrowser, openPage } from './harness.mjs';
import { writeFixtures } from './fixtures.mjs';
import { writeTwoMemberModel } from './ensemble-model.mjs';

const TOLERANCE = 1e-4;
const CLI = join(REPO, 'target/release/skinlens');
const WORK = join(REPO, 'test-results/e2e-ensemble');

let server;
let fixtures;
let model;
let members;

function predict(args) {
  const stdout = execFileSync(CLI, ['predict', '--json', ...args, ...fixtures.map((f) => f.path)], { encoding: 'utf8' });
  return new Map(stdout.trim().split('\n').map((line) => JSON.parse(line)).map((r) => [r.file.split('/').pop(), r]));
}

function classify(page, fixture) {
  return page.evaluate(async ({ base64, type }) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const result = await window.skinlens.classify(new Blob([bytes], { type }));
    delete result.preview;
    return result;
  }, { base64: readFileSync(fixture.path).toString('base64'), type: fixture.type });
}

function maxDifference(page, cli) {
  return Math.max(...Object.keys(cli.probabilities).map((code) => Math.abs(page.probabilities[code] - cli.probabilities[code])));
}

before(() => {
  assert.ok(existsSync(join(DIST, 'index.html')), 'dist/ is missing: run ./build.sh first');
  assert.ok(existsSync(CLI), `${CLI} is missing: cargo build --release first`);
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  // One real lesion (an emulated GPU takes seconds per pass).
  fixtures = writeFixtures(join(WORK, 'fixtures'), { hamCount: 1 }).filter((f) => f.kind === 'ham10000');
  const site = join(WORK, 'site');
  cpSync(DIST, site, { recursive: true });
  model = join(site, 'models/skinlens.safetensors');
  members = writeTwoMemberModel(join(DIST, 'models/skinlens.safetensors'), model);
  return startServer({ dir: site }).then((s) => { server = s; });
});

after(async () => {
  await server?.stop();
});

test('a two-member model: the page on CPU and on WebGPU gives `skinlens predict`\'s answer', { timeout: 600_000 }, async () => {
  const native = predict(['--model', model]);
  const firstAlone = predict(['--model', join(DIST, 'models/skinlens.safetensors'), '--tta=none']);
  const browser = await launchBrowser({ extraFlags: ['--enable-unsafe-webgpu'] });
  try {
    const cpuPage = browser.page;
    const cpuReady = await openPage(cpuPage, `${server.url}?backend=cpu`);
    assert.equal(cpuReady.backend, 'cpu');
    assert.equal(cpuReady.inputSize, members[0].inputSize, 'the preview is the first member\'s');
    const gpuPage = await browser.context.newPage();
    const gpuReady = await openPage(gpuPage, `${server.url}?backend=webgpu`, { timeout: 300_000 });
    assert.equal(gpuReady.backend, 'webgpu', gpuReady.backendLabel);
    for (const fixture of fixtures) {
      const cli = native.get(fixture.name);
      assert.ok(cli?.probabilities, `the CLI did not answer ${fixture.name}`);
      const onCpu = await classify(cpuPage, fixture);
      const onGpu = await classify(gpuPage, fixture);
      assert.equal(onGpu.backend, 'webgpu');
      const [cpuDiff, gpuDiff] = [maxDifference(onCpu, cli), maxDifference(onGpu, cli)];
      console.log(`# ${fixture.name}: max |Δp| vs CLI: CPU ${cpuDiff.toExponential(2)}, WebGPU ${gpuDiff.toExponential(2)}; inference ${onCpu.timings.inference_ms.toFixed(0)} ms (CPU, 2 members)`);
      assert.ok(cpuDiff <= TOLERANCE, `${fixture.name}: CPU page vs CLI ${cpuDiff}`);
      assert.ok(gpuDiff <= TOLERANCE, `${fixture.name}: WebGPU page vs CLI ${gpuDiff}`);
      assert.equal(onCpu.top, cli.top);
      // The second member counts: the answer is not the first network's alone.
      assert.ok(maxDifference(onCpu, firstAlone.get(fixture.name)) > 1e-3, 'two members answer as one');
    }
  } finally {
    await browser.close();
  }
});

test('a two-member model: passes (member × view) spread over two workers give exactly the one-worker answer', { timeout: 300_000 }, async () => {
  const browser = await launchBrowser();
  try {
    const answerWith = async (workers) => {
      const page = await browser.context.newPage();
      try {
        await openPage(page, `${server.url}?backend=cpu&workers=${workers}`);
        // Helpers start after `ready`: wait until an answer really came from `workers` workers.
        const deadline = Date.now() + 90_000;
        let result;
        while ((result = await classify(page, fixtures[0])).engineWorkers !== workers) {
          assert.ok(Date.now() < deadline, `no answer from ${workers} workers within 90 s`);
          await new Promise((r) => setTimeout(r, 250));
        }
        return result;
      } finally {
        await page.close();
      }
    };
    const one = await answerWith(1);
    const two = await answerWith(2);
    assert.deepEqual(two.probabilities, one.probabilities);
    assert.deepEqual(two.logits, one.logits);
    assert.deepEqual(two.cam.values, one.cam.values);
    assert.deepEqual(two.familiarity, one.familiarity);
    const cli = predict(['--model', model]).get(fixtures[0].name);
    assert.ok(maxDifference(two, cli) <= TOLERANCE, `two workers vs CLI ${maxDifference(two, cli)}`);
  } finally {
    await browser.close();
  }
});
