// Images that are not dermoscopy, made here rather than downloaded: flat colours, gradients,
// rendered text, and screenshots of user interfaces taken with Chromium. The e2e tests use a few
// of them; `node tests/e2e/unusual-images.mjs DIR` writes the full set (one folder per kind) for
// measuring the familiarity check's detection rate (`skinlens fit-familiarity --outliers`).

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodePng } from './fixtures.mjs';

/** A deterministic generator: tests must be repeatable. */
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const WORDS = 'the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part'.split(' ');

/** Solid colours, skin tones among them: [name, png]. */
export function flatColours(count = 30, seed = 1) {
  const next = random(seed);
  const colours = [[224, 172, 150], [198, 134, 66], [141, 85, 36], [255, 255, 255], [0, 0, 0], [128, 128, 128]];
  while (colours.length < count) colours.push([0, 0, 0].map(() => Math.floor(next() * 256)));
  return colours.map(([r, g, b], i) => [`flat-${String(i).padStart(2, '0')}.png`, encodePng(60, 45, () => [r, g, b, 255])]);
}

/** Linear gradients between two random colours: [name, png]. */
export function gradients(count = 10, seed = 2) {
  const next = random(seed);
  return Array.from({ length: count }, (_, i) => {
    const a = [0, 0, 0].map(() => next() * 255);
    const b = [0, 0, 0].map(() => next() * 255);
    const vertical = i % 2 === 0;
    return [`gradient-${String(i).padStart(2, '0')}.png`, encodePng(120, 90, (x, y) => {
      const t = vertical ? y / 89 : x / 119;
      return [...a.map((c, k) => Math.round(c + (b[k] - c) * t)), 255];
    })];
  });
}

function paragraph(next, words) {
  return Array.from({ length: words }, () => WORDS[Math.floor(next() * WORDS.length)]).join(' ');
}

/** HTML pages of rendered text, in varied sizes, fonts and colours. */
export function textPages(count = 20, seed = 3) {
  const next = random(seed);
  const fonts = ['serif', 'sans-serif', 'monospace'];
  return Array.from({ length: count }, (_, i) => {
    const size = 12 + Math.floor(next() * 36);
    const dark = next() < 0.3;
    const html = `<body style="margin:16px;font:${size}px ${fonts[i % 3]};background:${dark ? '#1e1e1e' : '#fff'};color:${dark ? '#ddd' : '#222'}">` +
      `<h1>${paragraph(next, 3)}</h1><p>${paragraph(next, 120)}</p></body>`;
    return [`text-${String(i).padStart(2, '0')}.png`, html];
  });
}

/** HTML pages that look like application screens: forms, tables, lists, code. */
export function interfacePages(count = 12, seed = 4) {
  const next = random(seed);
  const pick = () => paragraph(next, 2);
  const kinds = [
    () => `<form style="display:grid;gap:10px;max-width:420px">${Array.from({ length: 6 }, () => `<label>${pick()} <input value="${pick()}"></label>`).join('')}<button>${pick()}</button></form>`,
    () => `<table border="1" cellpadding="6" style="border-collapse:collapse">${Array.from({ length: 10 }, () => `<tr>${Array.from({ length: 4 }, () => `<td>${pick()}</td>`).join('')}</tr>`).join('')}</table>`,
    () => `<nav style="background:#24292f;color:#fff;padding:12px">${pick()} · ${pick()} · ${pick()}</nav><ul>${Array.from({ length: 12 }, () => `<li><a href="#">${pick()}</a> ${pick()}</li>`).join('')}</ul>`,
    () => `<pre style="background:#f6f8fa;padding:12px;font:14px monospace">${Array.from({ length: 18 }, () => `fn ${WORDS[Math.floor(next() * WORDS.length)]}(x: u32) -> u32 { x + ${Math.floor(next() * 99)} }`).join('\n')}</pre>`,
  ];
  return Array.from({ length: count }, (_, i) => [`screen-${String(i).padStart(2, '0')}.png`, `<body style="margin:0;padding:12px;font:16px system-ui">${kinds[i % kinds.length]()}</body>`]);
}

/** Screenshot each [name, html] at 600×450 with a Playwright page: [name, png]. */
export async function screenshots(page, pages) {
  await page.setViewportSize({ width: 600, height: 450 });
  const out = [];
  for (const [name, html] of pages) {
    await page.setContent(html);
    out.push([name, await page.screenshot({ type: 'png' })]);
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: node tests/e2e/unusual-images.mjs DIR');
  const { launchBrowser } = await import('./harness.mjs');
  const browser = await launchBrowser();
  try {
    const sets = {
      flat: [...flatColours(), ...gradients()],
      text: await screenshots(browser.page, textPages()),
      screens: await screenshots(browser.page, interfacePages()),
    };
    for (const [kind, images] of Object.entries(sets)) {
      mkdirSync(join(dir, kind), { recursive: true });
      for (const [name, bytes] of images) writeFileSync(join(dir, kind, name), bytes);
      console.log(`${join(dir, kind)}: ${images.length} images`);
    }
  } finally {
    await browser.close();
  }
}
