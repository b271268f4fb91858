// A result people can keep: one page (A4 portrait at 100 dpi, 827×1169 px) as a PNG, drawn in
// this browser from what the page shows — the image and heat map, the probabilities, the
// model and its version, the date, and that this is not a diagnosis. Nothing is uploaded.

import { heatMapImage } from './heatmap.js';

const WIDTH = 827;
const HEIGHT = 1169;
const MARGIN = 48;
const INK = '#1d2430';
const MUTED = '#4a5361';
const RED = '#b3261e';
const BLUE = '#2f6fb3';

/**
 * @param {object} options
 * @param {object} options.result      the engine's result for one image
 * @param {string} options.fileName
 * @param {HTMLCanvasElement|null} options.original  the page's drawing of the whole image (or null)
 * @param {number} options.opacity     heat-map opacity, 0–1 (0: no heat map)
 * @param {string} options.model       model name and version
 * @param {Date}   options.date
 * @returns {Promise<Blob>} image/png
 */
export async function resultReport({ result, fileName, original, opacity, model, date }) {
  const canvas = new OffscreenCanvas(WIDTH, HEIGHT);
  const g = canvas.getContext('2d');
  g.fillStyle = '#ffffff';
  g.fillRect(0, 0, WIDTH, HEIGHT);
  let y = MARGIN;
  const text = (value, { size = 16, weight = 400, colour = INK, x = MARGIN, maxWidth = WIDTH - 2 * MARGIN } = {}) => {
    g.font = `${weight} ${size}px system-ui, sans-serif`;
    g.fillStyle = colour;
    g.textBaseline = 'top';
    g.fillText(value, x, y, maxWidth);
  };

  /** Word-wrapped text from the current line down; leaves y under the last line. */
  const paragraph = (value, { size = 15, lineHeight = size * 1.35, maxWidth = WIDTH - 2 * MARGIN, ...style } = {}) => {
    g.font = `${style.weight ?? 400} ${size}px system-ui, sans-serif`;
    let line = '';
    for (const word of value.split(' ')) {
      const candidate = line ? `${line} ${word}` : word;
      if (line && g.measureText(candidate).width > maxWidth) {
        text(line, { size, maxWidth, ...style });
        y += lineHeight;
        line = word;
      } else {
        line = candidate;
      }
    }
    if (line) text(line, { size, maxWidth, ...style });
    y += lineHeight;
  };

  text('skinlens — one image\u2019s result', { size: 28, weight: 700 });
  y += 40;
  paragraph('NOT A DIAGNOSIS — SEE A CLINICIAN. A research demo that can be wrong; it has only seen dermoscopy images of seven kinds of lesion and must never decide whether someone sees a doctor.', { size: 15, weight: 700, colour: RED });
  y += 12;
  text(`Image: ${fileName}`, { size: 15, colour: MUTED });
  y += 22;
  text(`Model: ${model}`, { size: 15, colour: MUTED });
  y += 22;
  text(`Date: ${date.toLocaleString()} (${date.toISOString()})`, { size: 15, colour: MUTED });
  y += 34;

  if (result.familiarity?.unusual) {
    const warningTop = y;
    paragraph('This does not look like a dermoscopy image — the numbers below are not meaningful.', { size: 15, weight: 700, colour: '#7a4d00', x: MARGIN + 14, maxWidth: WIDTH - 2 * MARGIN - 14 });
    g.fillStyle = '#a66f00';
    g.fillRect(MARGIN, warningTop - 4, 5, y - warningTop);
    y += 12;
  }

  // The whole image (left) and the model's square with the heat map (right).
  const box = 340;
  const top = y;
  if (original && original.width > 0) {
    const scale = Math.min(box / original.width, box / original.height);
    g.drawImage(original, MARGIN, top, original.width * scale, original.height * scale);
  }
  const view = result.preview;
  const square = new OffscreenCanvas(view.width, view.height);
  square.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(view.rgba), view.width, view.height), 0, 0);
  const right = WIDTH - MARGIN - box;
  g.imageSmoothingQuality = 'high';
  g.drawImage(square, right, top, box, box);
  const heat = opacity > 0 ? heatMapImage(result.cam, box) : null;
  if (heat) {
    const layer = new OffscreenCanvas(box, box);
    layer.getContext('2d').putImageData(heat, 0, 0);
    g.globalAlpha = opacity;
    g.drawImage(layer, right, top);
    g.globalAlpha = 1;
  }
  y = top + box + 10;
  const captionTop = y;
  paragraph('Whole image; the outlined square is what the model looks at.', { size: 13, colour: MUTED, maxWidth: box });
  y = captionTop;
  const camName = result.ranked.find((r) => r.code === result.cam.class)?.name ?? result.cam.class;
  paragraph(heat ? `The model's view; heat map of where the evidence for ${camName} is (its ${result.cam.width}×${result.cam.height} feature map, smoothed; viridis, dark = none, yellow = strongest).` : 'The model\u2019s view.', { size: 13, colour: MUTED, x: right, maxWidth: box });
  y += 24;

  text('Probabilities (most probable first)', { size: 20, weight: 700 });
  y += 34;
  for (const { code, name, malignant, probability } of result.ranked) {
    const rowTop = y;
    paragraph(`${name} (${code})${malignant ? ' — malignant' : ''}`, { size: 16, lineHeight: 20, weight: malignant ? 700 : 400, colour: malignant ? RED : INK, maxWidth: 380 });
    const rowBottom = y;
    y = rowTop;
    const barX = MARGIN + 400;
    const barWidth = WIDTH - MARGIN - barX - 80;
    g.fillStyle = '#eef0f3';
    g.fillRect(barX, y + 2, barWidth, 16);
    g.fillStyle = malignant ? RED : BLUE;
    g.fillRect(barX, y + 2, barWidth * Math.max(0, Math.min(1, probability)), 16);
    text(`${(probability * 100).toFixed(1)} %`, { size: 16, x: WIDTH - MARGIN - 70, maxWidth: 70 });
    y = Math.max(rowBottom, rowTop + 20) + 10;
  }
  y = HEIGHT - MARGIN - 40;
  text('Made on this device by the skinlens page; nothing was uploaded.', { size: 13, colour: MUTED });
  y += 20;
  text('Not a diagnosis — see a clinician.', { size: 15, weight: 700, colour: RED });
  return canvas.convertToBlob({ type: 'image/png' });
}
