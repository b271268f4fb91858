#!/usr/bin/env node
// A dependency-free static server for the built site (dist/), used by `./build.sh --serve`,
// the e2e tests and the benchmark. Listens on 127.0.0.1 only.
//
//   node crates/web/serve.mjs [--dir dist] [--port 8080] [--log requests.jsonl]
//
// --port 0 picks a free port. Prints `LISTENING http://127.0.0.1:PORT/` once it accepts
// connections. --log appends one JSON line per request (method, path, body bytes, status):
// the e2e tests read it to prove that no request carries an image.

import { createServer } from 'node:http';
import { appendFileSync, createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : fallback;
};
const root = resolve(option('--dir', 'dist'));
const port = Number(option('--port', process.env.PORT ?? 8080));
const logFile = option('--log', null);

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm', // required for WebAssembly.instantiateStreaming
  '.safetensors': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
};

// The same policy as the page's <meta> tag; as a header it also covers the worker scripts.
const CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; " +
  "img-src 'self' blob: data:; style-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function log(entry) {
  if (logFile) appendFileSync(logFile, `${JSON.stringify({ time: new Date().toISOString(), ...entry })}\n`);
}

const server = createServer(async (request, response) => {
  let bodyBytes = 0;
  request.on('data', (chunk) => { bodyBytes += chunk.length; });
  await new Promise((done) => request.on('end', done));

  const url = new URL(request.url, 'http://127.0.0.1');
  const finish = (status, headers = {}, stream = null) => {
    response.writeHead(status, { 'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-cache', ...headers });
    log({ method: request.method, path: url.pathname, query: url.search, bodyBytes, status });
    if (stream) stream.pipe(response);
    else response.end();
  };
  if (request.method !== 'GET' && request.method !== 'HEAD') return finish(405, { Allow: 'GET, HEAD' });

  let path = resolve(join(root, decodeURIComponent(url.pathname)));
  if (path !== root && !path.startsWith(root + sep)) return finish(403);
  try {
    let info = await stat(path);
    if (info.isDirectory()) {
      path = join(path, 'index.html');
      info = await stat(path);
    }
    const headers = { 'Content-Type': MIME[extname(path)] ?? 'application/octet-stream', 'Content-Length': info.size };
    finish(200, headers, request.method === 'GET' ? createReadStream(path) : null);
  } catch {
    finish(404);
  }
});

server.listen(port, '127.0.0.1', () => {
  console.log(`LISTENING http://127.0.0.1:${server.address().port}/`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
