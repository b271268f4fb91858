// Drawing one result: the model's view, its class-activation map, and the seven bars.

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
      track.setAttribute('aria-label', `${name} probability`);
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

/** The square the model saw, at its input size. */
export function drawPreview(canvas, preview) {
  canvas.width = preview.width;
  canvas.height = preview.height;
  const pixels = new ImageData(new Uint8ClampedArray(preview.rgba), preview.width, preview.height);
  canvas.getContext('2d').putImageData(pixels, 0, 0);
}

/**
 * The top class's activation map over the preview. Only positive evidence is shown (as in the
 * original CAM paper), scaled to its own maximum, so the overlay says "where", not "how much":
 * transparent where the class has no support, through yellow to red at the strongest cell.
 * The 7×7 grid is smoothed bilinearly up to the preview's size.
 */
export function drawActivationMap(canvas, cam, size) {
  canvas.width = size;
  canvas.height = size;
  const context = canvas.getContext('2d');
  context.clearRect(0, 0, size, size);
  const peak = Math.max(0, ...cam.values);
  if (!(peak > 0)) return; // no positive evidence anywhere: nothing to point at

  const grid = new ImageData(cam.width, cam.height);
  cam.values.forEach((value, i) => {
    const t = Math.max(0, value) / peak;
    grid.data.set([255, Math.round(230 * (1 - t)), 0, Math.round(200 * t)], i * 4);
  });
  const small = new OffscreenCanvas(cam.width, cam.height);
  small.getContext('2d').putImageData(grid, 0, 0);
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = 'high';
  // Cell i's centre lands on pixel (i + ½)·size/width, which is where the network's receptive
  // field for that cell is centred; the browser's bilinear filter fills in between.
  context.drawImage(small, 0, 0, size, size);
}

export function describeTimings({ decode_ms, preprocess_ms, inference_ms }, backendLabel) {
  const ms = (v) => `${v.toFixed(1)} ms`;
  return `Decode ${ms(decode_ms)} · preprocess ${ms(preprocess_ms)} · inference ${ms(inference_ms)} — ${backendLabel}, on this device`;
}
