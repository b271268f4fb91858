// Drawing one result: the user's image, the model's view, and the seven bars (heat map: heatmap.js).

const percent = (p) => `${(p * 100).toFixed(1)} %`;

/** "Melanoma (mel)" and a visible flag for the malignant classes, most probable first. */
export function renderBars(list, ranked) {
  list.replaceChildren(
    ...ranked.map(({ code, name, malignant, probability }, index) => {
      const item = document.createElement('li');
      item.className = index === 0 ? 'bar top' : 'bar';
      item.dataset.class = code;

      const label = document.createElement('span');
      label.className = 'bar-label';
      label.textContent = `${name} (${code})`;
      if (malignant) {
        const flag = document.createElement('span');
        flag.className = 'malignant-flag';
        flag.textContent = 'malignant';
        label.append(' ', flag);
        item.classList.add('malignant');
      }

      const track = document.createElement('span');
      track.className = 'bar-track';
      track.setAttribute('role', 'meter');
      track.setAttribute('aria-valuemin', '0');
      track.setAttribute('aria-valuemax', '1');
      track.setAttribute('aria-valuenow', String(probability));
      track.setAttribute('aria-valuetext', percent(probability));
      track.setAttribute('aria-label', `${name}${malignant ? ' (malignant)' : ''}: probability`);
      const fill = document.createElement('span');
      fill.className = 'bar-fill';
      // CSSOM writes are allowed under the page's CSP (style attributes in markup are not).
      fill.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
      track.append(fill);

      const value = document.createElement('span');
      value.className = 'bar-value';
      value.textContent = percent(probability);

      item.append(label, track, value);
      return item;
    }),
  );
}

/** The square the model saw, drawn at `displaySize` with smooth scaling (its pixels are `preview.width`). */
export function drawPreview(canvas, preview, displaySize) {
  const pixels = new ImageData(new Uint8ClampedArray(preview.rgba), preview.width, preview.height);
  const small = new OffscreenCanvas(preview.width, preview.height);
  small.getContext('2d').putImageData(pixels, 0, 0);
  canvas.width = displaySize;
  canvas.height = displaySize;
  const context = canvas.getContext('2d');
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = 'high';
  context.drawImage(small, 0, 0, displaySize, displaySize);
}

/**
 * The image the user gave, whole, with the model's square outlined: the largest centred square,
 * as the engine crops it (x0 = ⌊(W − s)/2⌋, y0 = ⌊(H − s)/2⌋, s = min(W, H)). Returns false when
 * this browser cannot decode the file itself (e.g. TIFF); the engine decodes on its own.
 */
export async function drawOriginal(canvas, image, { longSide = 512 } = {}) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(image); // EXIF orientation applied, as the engine does
  } catch {
    return false;
  }
  const { width, height } = bitmap;
  const scale = longSide / Math.max(width, height);
  canvas.width = Math.max(1, Math.round(width * scale));
  canvas.height = Math.max(1, Math.round(height * scale));
  const context = canvas.getContext('2d');
  context.imageSmoothingQuality = 'high';
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  const side = Math.min(width, height);
  const square = [Math.floor((width - side) / 2), Math.floor((height - side) / 2), side, side].map((v) => v * scale);
  // A light line over a dark one: visible on any skin tone or background.
  context.lineWidth = Math.max(3, canvas.width / 120);
  context.strokeStyle = 'rgba(0, 0, 0, 0.75)';
  context.strokeRect(...square);
  context.setLineDash([context.lineWidth * 3, context.lineWidth * 2]);
  context.strokeStyle = '#ffffff';
  context.strokeRect(...square);
  return true;
}

export function describeTimings({ decode_ms, preprocess_ms, inference_ms }, shortBackendLabel) {
  const ms = (v) => `${v.toFixed(1)} ms`;
  return `Decode ${ms(decode_ms)} · preprocess ${ms(preprocess_ms)} · inference ${ms(inference_ms)} — ${shortBackendLabel}, on this device`;
}
