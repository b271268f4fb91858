// Shared by the e2e tests and the browser benchmark: the site server, a fresh headless
// Chromium, and a record of every network request.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
// SKINLENS_DIST: test another build of the site (default: dist/).
export const DIST = process.env.SKINLENS_DIST ?? join(REPO, 'dist');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

// DEVELOPERS.md § Headless Chromium.
export const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

/** Start crates/web/serve.mjs on a free 127.0.0.1 port. Resolves to {url, logFile, stop()}. */
export async function startServer({ dir = DIST, logFile = null } = {}) {
  const args = [join(REPO, 'crates/web/serve.mjs'), '--dir', dir, '--port', '0'];
  if (logFile) args.push('--log', logFile);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolveUrl, reject) => {
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const match = output.match(/LISTENING (\S+)/);
      if (match) resolveUrl(match[1]);
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code} before listening`)));
  });
  return {
    url,
    logFile,
    /** Every request the server saw: [{method, path, query, bodyBytes, status}]. */
    requests: () => (logFile && existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []),
    stop: () => new Promise((done) => {
      child.once('exit', done);
      child.kill('SIGTERM');
    }),
  };
}

/**
 * A fresh Chromium with an empty profile (cold caches) and a log of every request the page,
 * its workers and its service worker make. Resolves to {context, page, requests, close()}.
 */
export async function launchBrowser({ extraFlags = [] } = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM)`);
  const profile = mkdtempSync(join(tmpdir(), 'skinlens-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: false, // --headless is in the flags, as DEVELOPERS.md prescribes
    args: [...CHROMIUM_FLAGS, ...extraFlags],
    ignoreDefaultArgs: ['--enable-unsafe-swiftshader'],
    viewport: { width: 1100, height: 1000 },
    acceptDownloads: true,
    timeout: 60_000,
  });
  const requests = [];
  context.on('request', (request) => {
    requests.push({
      url: request.url(),
      method: request.method(),
      resourceType: request.resourceType(),
      bodyBytes: request.postDataBuffer()?.length ?? 0,
      fromServiceWorker: Boolean(request.serviceWorker()),
    });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleLines = [];
  page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => consoleLines.push(`pageerror: ${error.message}`));
  return {
    context,
    page,
    requests,
    consoleLines,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Open the page and wait for window.skinlens.ready; resolves to what `ready` resolved to. */
export async function openPage(page, url, { timeout = 120_000 } = {}) {
  await page.goto(url);
  return waitForReady(page, { timeout });
}

/**
 * What the page's `window.skinlens.ready` resolves to (throws its error's message if it rejects).
 * The outcome is recorded in the page and polled for: awaiting the page's promise over the
 * DevTools protocol failed now and then with the 1.3.0 model on the CPU path ("Resulting promise
 * was garbage collected"), though `ready` resolves.
 */
export async function waitForReady(page, { timeout = 120_000 } = {}) {
  await page.waitForFunction(() => window.skinlens !== undefined, null, { timeout });
  await page.evaluate(() => {
    window.skinlens.ready.then(
      (value) => { window.__skinlensReadyOutcome = { value }; },
      (error) => { window.__skinlensReadyOutcome = { error: String(error?.message ?? error) }; },
    );
  });
  const outcome = await (await page.waitForFunction(() => window.__skinlensReadyOutcome, null, { timeout, polling: 50 })).jsonValue();
  if (outcome.error !== undefined) throw new Error(outcome.error);
  return outcome.value;
}
