// End-to-end: the page's worker pool. An image's passes (test-time views) spread over several
// engine workers must give exactly the answer of one worker, with the model downloaded once.
//   node --test tests/e2e/pool.test.mjs      (tests/e2e/run.sh prepares everything first)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, startServer, launchBrowser, openPage } from './harness.mjs';

const IMAGES = ['ISIC_0024306.jpg', 'ISIC_0024307.jpg', 'ISIC_0024308.jpg'].map((name) => join(REPO, '../shared/data/ham10000/fullres_600x450', name));

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** The page's answer for the image at `path` (through window.skinlens.classify). */
function classify(page, path) {
  return page.evaluate(async (base64) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return window.skinlens.classify(new Blob([bytes], { type: 'image/jpeg' }));
  }, readFileSync(path).toString('base64'));
}

/** Open the page with `?backend=cpu&workers=N`, wait until an answer comes from N workers
 *  (helpers start after `ready`), classify IMAGES; resolves to the results and the model
 *  requests seen. */
async function classifyWith(workers) {
  const page = await browser.context.newPage();
  const modelRequests = [];
  page.on('request', (request) => {
    if (request.url().endsWith('.safetensors')) modelRequests.push(request.url());
  });
  try {
    const ready = await openPage(page, `${server.url}?backend=cpu&workers=${workers}`);
    // The pool deals passes by these counts (www/pool.js); each must be a real count.
    assert.ok(ready.members.length > 0 && ready.members.every((m) => Number.isInteger(m.multiplyAdds) && m.multiplyAdds > 1e6), JSON.stringify(ready.members));
    const deadline = Date.now() + 90_000;
    while ((await classify(page, IMAGES[0])).engineWorkers !== workers) {
      assert.ok(Date.now() < deadline, `no answer from ${workers} workers within 90 s`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const results = [];
    for (const path of IMAGES) results.push(await classify(page, path));
    return { results, modelRequests };
  } finally {
    await page.close();
  }
}

test('passes spread over two workers give exactly the one-worker answer; the model is downloaded once', async () => {
  const one = await classifyWith(1);
  const two = await classifyWith(2);
  for (let i = 0; i < IMAGES.length; i++) {
    assert.equal(one.results[i].engineWorkers, 1);
    assert.equal(two.results[i].engineWorkers, 2);
    assert.deepEqual(two.results[i].probabilities, one.results[i].probabilities, `${IMAGES[i]}: probabilities`);
    assert.deepEqual(two.results[i].logits, one.results[i].logits, `${IMAGES[i]}: logits`);
    assert.deepEqual(two.results[i].cam.values, one.results[i].cam.values, `${IMAGES[i]}: activation map`);
    assert.equal(two.results[i].top, one.results[i].top);
  }
  assert.equal(two.modelRequests.length, 1, `model requests: ${two.modelRequests.join(', ')}`);
});

test('a corrupt file is a clear error from the pool, and the next image is still answered', async () => {
  const page = await browser.context.newPage();
  try {
    await openPage(page, `${server.url}?backend=cpu&workers=2`);
    const outcome = await page.evaluate(async (base64) => {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      const bad = await window.skinlens.classify(new Blob([new Uint8Array([1, 2, 3, 4])])).then(() => 'accepted', (e) => e.message);
      const good = await window.skinlens.classify(new Blob([bytes], { type: 'image/jpeg' }));
      return { bad, goodTop: good.top };
    }, readFileSync(IMAGES[0]).toString('base64'));
    assert.match(outcome.bad, /could not be classified|not a supported image/);
    assert.ok(outcome.goodTop);
  } finally {
    await page.close();
  }
});
