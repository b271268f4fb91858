// Test images, made at test time: real HAM10000 originals from ../shared, a PNG with an alpha
// channel, a tiny PNG, and a corrupt file. Written to a directory so the native CLI reads the
// very same bytes the page is given.

import { deflateSync } from 'node:zlib';
import { mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './harness.mjs';

export const HAM10000 = join(REPO, '../shared/data/ham10000');

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** An 8-bit RGBA PNG; `pixel(x, y)` returns [r, g, b, a]. */
export function encodePng(width, height, pixel) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 6, 0, 0, 0], 8); // bit depth 8, colour type 6 (RGBA), deflate, no filter, no interlace
  const rows = Buffer.alloc(height * (1 + width * 4));
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 4); // filter byte 0 (none), then the pixels
    for (let x = 0; x < width; x++) rows.set(pixel(x, y), row + 1 + x * 4);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** One original per diagnosis present in fullres_600x450 (first listed), up to `count`. */
export function pickHam10000Images(count) {
  const labels = readFileSync(join(HAM10000, 'fullres_600x450_labels.csv'), 'utf8').trim().split('\n');
  const columns = labels[0].split(',');
  const idColumn = columns.indexOf('image_id');
  const dxColumn = columns.indexOf('dx');
  if (idColumn < 0 || dxColumn < 0) throw new Error(`unexpected header in fullres_600x450_labels.csv: ${labels[0]}`);
  const firstPerClass = new Map();
  for (const line of labels.slice(1)) {
    const fields = line.split(',');
    if (!firstPerClass.has(fields[dxColumn])) firstPerClass.set(fields[dxColumn], fields[idColumn]);
  }
  return [...firstPerClass.values()].slice(0, count).map((id) => join(HAM10000, 'fullres_600x450', `${id}.jpg`));
}

/**
 * Writes every fixture into `dir`; returns [{name, path, type, kind, expectError}].
 * The corrupt file starts like a JPEG (so it is routed to the JPEG decoder) and then is noise.
 */
export function writeFixtures(dir, { hamCount = 4 } = {}) {
  mkdirSync(dir, { recursive: true });
  const fixtures = [];
  for (const source of pickHam10000Images(hamCount)) {
    const name = source.split('/').pop();
    copyFileSync(source, join(dir, name));
    fixtures.push({ name, path: join(dir, name), type: 'image/jpeg', kind: 'ham10000', expectError: false });
  }
  // A lesion-coloured disc on a transparent background, semi-transparent at its rim:
  // exercises the decoder's alpha compositing, which page and CLI must do identically.
  const alpha = encodePng(320, 240, (x, y) => {
    const r = Math.hypot(x - 160, y - 120);
    const a = r < 80 ? 255 : r < 110 ? Math.round(255 * (110 - r) / 30) : 0;
    return [150 + (x % 50), 90 + (y % 40), 60, a];
  });
  const tiny = encodePng(3, 2, (x, y) => [40 * x + 100, 60 * y + 80, 120, 255]);
  const seed = [0x1f, 0x8b, 0x3c]; // deterministic noise: tests must be repeatable
  const noise = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131 + seed[i % 3]) & 0xff));
  const corrupt = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), noise]);
  for (const [name, bytes, type, kind, expectError] of [
    ['alpha-disc.png', alpha, 'image/png', 'alpha', false],
    ['tiny-3x2.png', tiny, 'image/png', 'tiny', false],
    ['corrupt.jpg', corrupt, 'image/jpeg', 'corrupt', true],
  ]) {
    writeFileSync(join(dir, name), bytes);
    fixtures.push({ name, path: join(dir, name), type, kind, expectError });
  }
  return fixtures;
}
