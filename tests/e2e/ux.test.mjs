// End-to-end: the page for the people who use it, in headless Chromium with a fake camera —
// layout from 320 px to desktop, axe-core (WCAG 2.1 A/AA) on the desktop and phone layouts,
// keyboard-only use, the heat map, the "not a dermoscopy image" warning, the saved result,
// the web app manifest, the camera, kiosk mode, and a new deployment announced by the page.
//   node --test tests/e2e/ux.test.mjs      (tests/e2e/run.sh prepares everything first)
// Screenshots in test-results/e2e-ux/: desktop.png, phone.png, kiosk.png, report.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO, DIST, startServer, launchBrowser, openPage, waitForReady } from './harness.mjs';
import { pickHam10000Images } from './fixtures.mjs';
import { flatColours, screenshots, textPages } from './unusual-images.mjs';

const ARTEFACTS = join(REPO, 'test-results/e2e-ux');
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const NOT_DERMOSCOPY = 'This does not look like a dermoscopy image — the numbers below are not meaningful.';

let server;
let browser;
let page;
let ready;
/** [{name, path, type}] */
const lesions = pickHam10000Images(2).map((path) => ({ name: path.split('/').pop(), path, type: 'image/jpeg' }));
let unusual;

before(async () => {
  assert.ok(existsSync(join(DIST, 'index.html')), 'dist/ is missing: run ./build.sh first');
  rmSync(ARTEFACTS, { recursive: true, force: true });
  mkdirSync(ARTEFACTS, { recursive: true });
  server = await startServer();
  // Chromium's fake camera: a moving test pattern, and permission granted without a prompt.
  browser = await launchBrowser({ extraFlags: ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'] });
  page = browser.page;
  // Not dermoscopy: a flat skin tone and a page of text, made here.
  const [flat] = flatColours(1);
  const [text] = await screenshots(page, textPages(1));
  unusual = [flat, text].map(([name, bytes]) => {
    const path = join(ARTEFACTS, name);
    writeFileSync(path, bytes);
    return { name, path, type: 'image/png' };
  });
  await page.setViewportSize(DESKTOP);
  ready = await openPage(page, server.url);
});

after(async () => {
  if (browser) {
    writeFileSync(join(ARTEFACTS, 'console.log'), browser.consoleLines.join('\n'));
    await browser.close();
  }
  await server?.stop();
});

async function pick(files) {
  await page.setInputFiles('#file-input', files.map((f) => f.path));
  await page.waitForFunction((count) => {
    const shown = window.skinlens.results();
    return shown.length === count && shown.every((e) => e.result || e.error);
  }, files.length, { timeout: 120_000 });
  return page.evaluate(() => window.skinlens.results());
}

/** Serious and critical axe-core violations of WCAG 2.1 A/AA on the page as it is now. */
async function seriousViolations() {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const outcome = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return outcome.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

const overflowsHorizontally = () => page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth);

test('the familiarity check ships in the model and flags images that are not dermoscopy', async () => {
  assert.ok(ready.familiarity, 'the shipped model carries no familiarity check: run `skinlens fit-familiarity` (models/TRAINING.md)');
  assert.ok(ready.familiarity.threshold > 0);
  const shown = await pick([...lesions, ...unusual]);
  for (const entry of shown) {
    const { familiarity } = entry.result;
    assert.ok(familiarity && Number.isFinite(familiarity.score), `${entry.fileName}: no familiarity verdict`);
    console.log(`# ${entry.fileName}: unfamiliarity ${familiarity.score.toFixed(2)} (threshold ${familiarity.threshold.toFixed(2)})`);
    const expected = !lesions.some((l) => l.name === entry.fileName);
    assert.equal(familiarity.unusual, expected, `${entry.fileName}: unusual should be ${expected}`);
  }
  // The warning shows with the result of an unusual image, and only then.
  await page.click(`#batch-table .row-button >> text=${unusual[0].name}`);
  assert.ok(await page.isVisible('#ood-warning'));
  assert.match(await page.textContent('#ood-warning'), new RegExp(NOT_DERMOSCOPY));
  await page.click(`#batch-table .row-button >> text=${lesions[0].name}`);
  assert.ok(await page.isHidden('#ood-warning'));
});

test('desktop 1280: whole image with the square marked, a readable heat map, short badge, no serious axe violation', async () => {
  await pick([lesions[0]]);
  // The heat map is drawn at the model's own feature-map size (input / 32), smoothly upsampled.
  const result = (await page.evaluate(() => window.skinlens.results()))[0].result;
  assert.equal(result.cam.width, Math.ceil(ready.inputSize / 32));
  assert.equal(result.cam.height, Math.ceil(ready.inputSize / 32));
  assert.match(await page.textContent('#cam-note'), new RegExp(`${result.cam.width}×${result.cam.height} feature map`));
  const heat = await page.evaluate(() => {
    const canvas = document.getElementById('cam-overlay');
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    for (let i = 0; i < data.length; i += 4 * 7) colours.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
    return { size: canvas.width, colours: colours.size, opacity: getComputedStyle(canvas).opacity };
  });
  assert.equal(heat.size, 256);
  // Bilinear smoothing gives many distinct colours, where 16 blocky cells would give at most 16.
  assert.ok(heat.colours > 100, `heat map has only ${heat.colours} colours`);
  assert.equal(heat.opacity, '0.55');
  // The opacity control: from the keyboard, arrows move it by 5 %.
  await page.focus('#cam-opacity');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await page.evaluate(() => getComputedStyle(document.getElementById('cam-overlay')).opacity), '0.5');
  // The whole image, in its own aspect ratio (600×450), with the square outlined.
  assert.ok(await page.isVisible('#original'));
  const original = await page.evaluate(() => ({ w: document.getElementById('original').width, h: document.getElementById('original').height }));
  assert.ok(Math.abs(original.w / original.h - 600 / 450) < 0.01, `original drawn ${original.w}×${original.h}`);
  assert.match(await page.textContent('#original-size'), /600×450/);
  // A short badge; the detail one click away.
  assert.equal(await page.textContent('#backend-badge'), 'CPU · wasm SIMD');
  assert.ok(await page.isHidden('#backend-detail'));
  await page.click('#backend summary');
  assert.ok(await page.isVisible('#backend-detail'));
  await page.click('#backend summary');
  // The model card is open beside the results on a wide screen.
  assert.equal(await page.evaluate(() => document.getElementById('model-card').open), true);
  assert.equal(await overflowsHorizontally(), false);
  await page.screenshot({ path: join(ARTEFACTS, 'desktop.png'), fullPage: true });
  assert.deepEqual(await seriousViolations(), []);
});

test('phone 390 and 320: one column, model card folded, no sideways scrolling, no serious axe violation', async () => {
  await page.setViewportSize(PHONE);
  await page.reload();
  await waitForReady(page);
  assert.equal(await page.evaluate(() => document.getElementById('model-card').open), false);
  await pick([unusual[1]]);
  assert.ok(await page.isVisible('#ood-warning'));
  assert.equal(await overflowsHorizontally(), false);
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  console.log(`# phone page height with one result: ${height} px`);
  await page.screenshot({ path: join(ARTEFACTS, 'phone.png'), fullPage: true });
  assert.deepEqual(await seriousViolations(), []);
  // The card opens from its summary.
  await page.click('#model-card summary');
  assert.ok(await page.isVisible('#card-fields'));
  await page.setViewportSize({ width: 320, height: 640 });
  assert.equal(await overflowsHorizontally(), false, 'the page scrolls sideways at 320 px');
  await page.setViewportSize(DESKTOP);
});

test('keyboard only: choose files, select a row, switch the heat map, save the result', async () => {
  await page.reload();
  await waitForReady(page);
  // Tab from the top of the page to the file input (the OS file dialog itself is outside the page).
  let reached = false;
  for (let i = 0; i < 12 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.id === 'file-input');
  }
  assert.ok(reached, 'the file input cannot be reached with Tab');
  await pick(lesions);
  // Rows are selected with buttons: Tab to the second, Enter.
  await page.focus('#batch-table tbody tr:nth-child(2) .row-button');
  await page.keyboard.press('Enter');
  assert.equal(await page.textContent('#result-title'), lesions[1].name);
  assert.equal(await page.getAttribute('#batch-table tbody tr:nth-child(2) .row-button', 'aria-pressed'), 'true');
  await page.focus('#cam-toggle');
  await page.keyboard.press('Space');
  assert.ok(await page.isHidden('#cam-overlay'));
  await page.keyboard.press('Space');
  assert.ok(await page.isVisible('#cam-overlay'));
  // Bars and table speak: each bar is a meter with its name and value.
  const meters = await page.locator('#bars [role=meter]').evaluateAll((nodes) => nodes.map((n) => [n.getAttribute('aria-label'), n.getAttribute('aria-valuetext')]));
  assert.equal(meters.length, 7);
  for (const [label, value] of meters) {
    assert.match(label, /: probability$/);
    assert.match(value, /^\d+\.\d %$/);
  }
  assert.match(await page.textContent('#batch-table caption'), /one row per image/);

  // Save the result: a one-page PNG, made in the browser.
  await page.focus('#save-report');
  const [download] = await Promise.all([page.waitForEvent('download'), page.keyboard.press('Enter')]);
  const path = join(ARTEFACTS, 'report.png');
  await download.saveAs(path);
  const png = readFileSync(path);
  assert.equal(png.subarray(1, 4).toString('ascii'), 'PNG');
  assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [827, 1169]);
  assert.match(download.suggestedFilename(), /^skinlens-.+\.png$/);
});

test('installable: a web app manifest with icons, display standalone, no installability errors', async () => {
  const cdp = await browser.context.newCDPSession(page);
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  assert.deepEqual(installabilityErrors, [], JSON.stringify(installabilityErrors));
  const { url, data, errors: parseErrors } = await cdp.send('Page.getAppManifest');
  assert.deepEqual(parseErrors, []);
  assert.ok(url.endsWith('/manifest.webmanifest'));
  const manifest = JSON.parse(data);
  assert.equal(manifest.display, 'standalone');
  const sizes = manifest.icons.map((i) => i.sizes);
  assert.ok(sizes.includes('192x192') && sizes.includes('512x512'));
  for (const icon of manifest.icons) {
    const png = readFileSync(join(DIST, icon.src));
    const [w, h] = icon.sizes.split('x').map(Number);
    assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [w, h], `${icon.src} is not ${icon.sizes}`);
  }
  await cdp.detach();
});

test('camera: viewfinder, capture, the photo is classified here; the phone input asks for the camera', async () => {
  assert.equal(await page.getAttribute('#camera-input', 'capture'), 'environment');
  await page.click('#camera-start');
  await page.waitForFunction(() => document.getElementById('viewfinder').videoWidth > 0, null, { timeout: 30_000 });
  assert.ok(await page.isVisible('#camera'));
  await page.click('#camera-capture');
  await page.waitForFunction(() => window.skinlens.results()[0]?.fileName.startsWith('camera-') && window.skinlens.results()[0].result, null, { timeout: 120_000 });
  const [entry] = await page.evaluate(() => window.skinlens.results());
  assert.equal(entry.result.probabilities && Object.keys(entry.result.probabilities).length, 7);
  assert.ok(entry.result.familiarity, 'no familiarity verdict for the photo');
  console.log(`# fake camera frame: unfamiliarity ${entry.result.familiarity.score.toFixed(2)}, flagged ${entry.result.familiarity.unusual}`);
  // Outside a kiosk the camera closes after the photo.
  assert.ok(await page.isHidden('#camera'));
});

test('kiosk: camera first, large touch targets, no downloads, results cleared after inactivity', async () => {
  const kioskPage = await browser.context.newPage();
  await kioskPage.setViewportSize({ width: 1080, height: 1300 });
  try {
    await kioskPage.goto(`${server.url}?kiosk=1&idle=3`);
    await kioskPage.waitForFunction(() => window.skinlens !== undefined);
    const info = await waitForReady(kioskPage);
    assert.equal(info.kiosk, true);
    await kioskPage.waitForFunction(() => document.getElementById('viewfinder').videoWidth > 0, null, { timeout: 30_000 });
    assert.ok(await kioskPage.isHidden('#drop-zone'), 'the camera is the main input');
    const capture = await kioskPage.locator('#camera-capture').boundingBox();
    assert.ok(capture.height >= 56 && capture.width >= 56, `capture button ${capture.width}×${capture.height}`);
    await kioskPage.click('#camera-capture');
    await kioskPage.waitForFunction(() => window.skinlens.results()[0]?.result, null, { timeout: 120_000 });
    assert.ok(await kioskPage.isVisible('#result'));
    assert.ok(await kioskPage.isVisible('#viewfinder'), 'the camera stays on');
    for (const id of ['#save-report', '#csv-download']) assert.ok(await kioskPage.isHidden(id), `${id} shows in a kiosk`);
    await kioskPage.screenshot({ path: join(ARTEFACTS, 'kiosk.png'), fullPage: true });
    // Nobody touches it: after 3 s the result is gone.
    await kioskPage.waitForFunction(() => window.skinlens.results().length === 0, null, { timeout: 15_000 });
    assert.ok(await kioskPage.isHidden('#result'));
  } finally {
    await kioskPage.close();
  }
});

test('a new deployment is picked up: the page says an update is ready, and reloading shows it', async () => {
  // A copy of the site, "rebuilt with a change" by the same stamping step build.sh runs.
  const site = join(tmpdir(), `skinlens-deploy-${process.pid}`);
  rmSync(site, { recursive: true, force: true });
  cpSync(DIST, site, { recursive: true });
  const deploy = await startServer({ dir: site });
  const other = await browser.context.newPage();
  try {
    await openPage(other, deploy.url);
    await other.evaluate(() => navigator.serviceWorker.ready);
    await other.reload();
    await waitForReady(other);
    assert.ok(await other.evaluate(() => navigator.serviceWorker.controller !== null));
    assert.ok(await other.isHidden('#update-notice'));

    const index = readFileSync(join(site, 'index.html'), 'utf8');
    writeFileSync(join(site, 'index.html'), index.replace('<head>', '<head>\n  <meta name="skinlens-deployment" content="second">'));
    cpSync(join(REPO, 'www/sw.js'), join(site, 'sw.js'));
    execFileSync(process.execPath, [join(REPO, 'crates/web/stamp-sw.mjs'), site]);

    // The old build still serves this load (from its cache) and notices the new one.
    await other.reload();
    await waitForReady(other);
    await other.waitForSelector('#update-notice:not([hidden])', { timeout: 60_000 });
    assert.equal(await other.evaluate(() => document.querySelector('meta[name=skinlens-deployment]')), null);
    await Promise.all([other.waitForEvent('load', { timeout: 60_000 }), other.click('#update-reload')]);
    await other.waitForFunction(() => document.querySelector('meta[name=skinlens-deployment]')?.content === 'second', null, { timeout: 60_000 });
    await waitForReady(other);
    assert.ok(await other.isHidden('#update-notice'));
  } finally {
    await other.close();
    await deploy.stop();
    rmSync(site, { recursive: true, force: true });
  }
});
