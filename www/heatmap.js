// The class-activation map as a heat map people can read: the model's own feature-map grid
// (input size / 32: 4×4 at 128 px), bilinearly interpolated between cell centres, coloured with
// viridis (perceptually uniform, readable in grey and by most colour-blind people).

// Viridis at nine evenly spaced points (matplotlib's published values); linear in between.
const VIRIDIS = [
  [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [110, 206, 88], [253, 231, 37],
];

/** t in [0, 1] → [r, g, b]. */
export function viridis(t) {
  const x = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + (VIRIDIS[i + 1][k] - c) * f));
}

/**
 * Positive evidence only (as in the original CAM paper), relative to the strongest cell, so the
 * map says "where", not "how much". Returns null when no cell has positive evidence.
 */
export function normalisedEvidence(cam) {
  const peak = Math.max(0, ...cam.values);
  if (!(peak > 0)) return null;
  return cam.values.map((v) => Math.max(0, v) / peak);
}

/**
 * A `width × height` grid upsampled to `size × size`: cell (i, j)'s value sits at the centre of
 * its receptive field, ((i + ½)·size/width, (j + ½)·size/height); bilinear in between, and held
 * flat beyond the outer centres.
 */
export function upsample(values, width, height, size) {
  const out = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    const gy = Math.max(0, Math.min(height - 1, ((y + 0.5) * height) / size - 0.5));
    const y0 = Math.floor(gy);
    const y1 = Math.min(height - 1, y0 + 1);
    const fy = gy - y0;
    for (let x = 0; x < size; x++) {
      const gx = Math.max(0, Math.min(width - 1, ((x + 0.5) * width) / size - 0.5));
      const x0 = Math.floor(gx);
      const x1 = Math.min(width - 1, x0 + 1);
      const fx = gx - x0;
      const top = values[y0 * width + x0] * (1 - fx) + values[y0 * width + x1] * fx;
      const bottom = values[y1 * width + x0] * (1 - fx) + values[y1 * width + x1] * fx;
      out[y * size + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

/** The heat map as opaque pixels (`size × size` ImageData); opacity is the canvas's CSS. */
export function heatMapImage(cam, size) {
  const evidence = normalisedEvidence(cam);
  if (!evidence) return null;
  const smooth = upsample(evidence, cam.width, cam.height, size);
  const image = new ImageData(size, size);
  for (let i = 0; i < smooth.length; i++) {
    const [r, g, b] = viridis(smooth[i]);
    image.data.set([r, g, b, 255], i * 4);
  }
  return image;
}

/** Draw the heat map on `canvas` (resized to `size`); false when there is nothing to show. */
export function drawHeatMap(canvas, cam, size) {
  canvas.width = size;
  canvas.height = size;
  const context = canvas.getContext('2d');
  context.clearRect(0, 0, size, size);
  const image = heatMapImage(cam, size);
  if (image) context.putImageData(image, 0, 0);
  return Boolean(image);
}

/** The colour scale, left (none) to right (strongest). */
export function drawLegend(canvas) {
  const context = canvas.getContext('2d');
  const image = context.createImageData(canvas.width, canvas.height);
  for (let x = 0; x < canvas.width; x++) {
    const [r, g, b] = viridis(x / (canvas.width - 1));
    for (let y = 0; y < canvas.height; y++) image.data.set([r, g, b, 255], (y * canvas.width + x) * 4);
  }
  context.putImageData(image, 0, 0);
}
