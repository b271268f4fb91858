// Draws the page's app icons (www/icons/*.png, committed) from a few shapes, without any image
// library: a lens ring over a lesion-brown dot on the page's blue, anti-aliased by 4×4
// supersampling. Re-run after changing the design:   node crates/web/make-icons.mjs
import { crc32, deflateSync } from 'node:zlib';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const OUT = join(dirname(fileURLToPath(import.meta.url)), '../../www/icons');

function png(size, rgba) {
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(4 + body.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 4 + body.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA
  const rows = Buffer.alloc(size * (1 + size * 4));
  for (let y = 0; y < size; y++) rgba.copy(rows, y * (1 + size * 4) + 1, y * size * 4, (y + 1) * size * 4);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('IDAT', deflateSync(rows, { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}

const BLUE = [29, 79, 134];
const WHITE = [255, 255, 255];
const LESION = [122, 74, 48];

/** Colour at (u, v) in [0, 1]²; `maskable` fills the square (the OS crops it), else a rounded tile. */
function shade(u, v, maskable) {
  const dx = u - 0.5;
  const dy = v - 0.5;
  if (!maskable) {
    const corner = 0.2; // rounded-square tile with transparent corners
    const qx = Math.max(Math.abs(dx) - (0.5 - corner), 0);
    const qy = Math.max(Math.abs(dy) - (0.5 - corner), 0);
    if (Math.hypot(qx, qy) > corner) return null;
  }
  // Maskable icons keep their drawing inside the central 80 % safe zone.
  const scale = maskable ? 0.8 : 1;
  const r = Math.hypot(dx, dy) / scale;
  if (r > 0.27 && r < 0.35) return WHITE; // the lens
  const handle = Math.abs((dx - dy) / Math.SQRT2) < 0.045 * scale && dx + dy > 0.48 * scale && dx + dy < 0.85 * scale;
  if (handle) return WHITE;
  if (Math.hypot(dx + 0.02 * scale, dy - 0.01 * scale) / scale < 0.15 + 0.02 * Math.sin(7 * Math.atan2(dy, dx))) return LESION;
  return BLUE;
}

function draw(size, maskable) {
  const samples = 4;
  const rgba = Buffer.alloc(size * size * 4);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let [r, g, b, a] = [0, 0, 0, 0];
      for (let sy = 0; sy < samples; sy++) {
        for (let sx = 0; sx < samples; sx++) {
          const colour = shade((x + (sx + 0.5) / samples) / size, (y + (sy + 0.5) / samples) / size, maskable);
          if (!colour) continue;
          r += colour[0];
          g += colour[1];
          b += colour[2];
          a += 1;
        }
      }
      const i = (y * size + x) * 4;
      if (a > 0) rgba.set([Math.round(r / a), Math.round(g / a), Math.round(b / a), Math.round((255 * a) / samples ** 2)], i);
    }
  }
  return png(size, rgba);
}

mkdirSync(OUT, { recursive: true });
for (const [name, size, maskable] of [['icon-192.png', 192, false], ['icon-512.png', 512, false], ['icon-maskable-512.png', 512, true]]) {
  writeFileSync(join(OUT, name), draw(size, maskable));
  console.log(`${join(OUT, name)}`);
}
