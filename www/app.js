// The page: wires drop/pick/paste to the engine worker and shows what comes back.
// Also the automation API for kiosks and tests, `window.skinlens` (documented in README.md).

import { BACKENDS, Engine, backendFromQuery } from './engine.js';
import { renderBars, drawPreview, drawActivationMap, describeTimings } from './render.js';
import { renderCard } from './card.js';
import { coversIsic2018, toIsic2018Csv } from './csv.js';

const MODEL_URL = './models/skinlens.safetensors';
const CARD_URL = './models/skinlens.card.json';

const $ = (id) => document.getElementById(id);

/** Every image of the current drop, in order: {fileName, result} or {fileName, error}. */
let entries = [];
let selected = -1;
let backendLabel = '';

/** The badge shows the backend the engine actually runs: `auto` picks one, and a GPU can fall back. */
function showBackend(id, label) {
  if (!label) return;
  backendLabel = label;
  $('backend-badge').textContent = label;
  $('backend-badge').dataset.backend = id;
}

function showPageError(message) {
  const box = $('page-error');
  box.textContent = message;
  box.hidden = false;
}

function setProgress(loaded, total) {
  const bar = $('model-progress');
  const mb = (bytes) => (bytes / 1e6).toFixed(1);
  if (total > 0) {
    bar.max = total;
    bar.value = loaded;
    $('model-progress-text').textContent = `${mb(loaded)} / ${mb(total)} MB`;
  } else {
    bar.removeAttribute('value'); // indeterminate
    $('model-progress-text').textContent = `${mb(loaded)} MB`;
  }
  if (total > 0 && loaded >= total) $('loading-label').textContent = 'Preparing the model…';
}

async function fetchCard() {
  try {
    const response = await fetch(CARD_URL);
    return response.ok ? await response.json() : null;
  } catch {
    return null; // the card is informative; the page works without it
  }
}

// ---- one result ------------------------------------------------------------------------------

function showEntry(index) {
  selected = index;
  const entry = entries[index];
  $('result').hidden = false;
  $('result-title').textContent = entry.fileName;
  for (const row of $('batch-table').tBodies[0].rows) row.classList.toggle('selected', Number(row.dataset.index) === index);

  if (entry.error) {
    $('result-error').textContent = `${entry.fileName}: ${entry.error}`;
    $('result-error').hidden = false;
    $('result-body').hidden = true;
    return;
  }
  $('result-error').hidden = true;
  $('result-body').hidden = false;
  const { result } = entry;
  drawPreview($('preview'), result.preview);
  $('preview-size').textContent = `${result.preview.width}×${result.preview.height}`;
  drawActivationMap($('cam-overlay'), result.cam, result.preview.width);
  $('cam-overlay').hidden = !$('cam-toggle').checked;
  renderBars($('bars'), result.ranked);
  $('timings').textContent = describeTimings(result.timings, result.backendLabel ?? backendLabel);
}

// ---- several results ---------------------------------------------------------------------------

function renderTable(classCodes) {
  const table = $('batch-table');
  const head = document.createElement('tr');
  for (const title of ['File', 'Top', ...classCodes]) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = title;
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(
    ...entries.map((entry, index) => {
      const row = document.createElement('tr');
      row.dataset.index = String(index);
      row.tabIndex = 0;
      const cell = (text, className) => {
        const td = document.createElement('td');
        td.textContent = text;
        if (className) td.className = className;
        row.append(td);
        return td;
      };
      cell(entry.fileName);
      if (entry.error) {
        cell('error', 'error-cell').title = entry.error;
        const message = cell(entry.error, 'error-cell');
        message.colSpan = classCodes.length;
      } else if (!entry.result) {
        cell('…');
      } else {
        const top = entry.result.ranked[0];
        cell(top.malignant ? `${top.code} (malignant)` : top.code, top.malignant ? 'malignant-cell' : '');
        for (const code of classCodes) cell((entry.result.probabilities[code] * 100).toFixed(1));
      }
      row.addEventListener('click', () => showEntry(index));
      row.addEventListener('keydown', (event) => event.key === 'Enter' && showEntry(index));
      return row;
    }),
  );
}

// ---- input -------------------------------------------------------------------------------------

let engine;
let description;

async function classifyFiles(files) {
  if (files.length === 0) return;
  entries = files.map((file) => ({ fileName: file.name || 'pasted image', file }));
  const batch = entries;
  const multiple = files.length > 1;
  $('batch').hidden = !multiple;
  $('csv-download').disabled = true;
  const classCodes = description.classes.map((c) => c.code);
  if (multiple) renderTable(classCodes);
  let shown = false;
  for (const [index, entry] of batch.entries()) {
    try {
      entry.result = await engine.classify(entry.file);
    } catch (error) {
      entry.error = error.message;
    }
    if (batch !== entries) return; // a newer drop replaced this one
    if (multiple) renderTable(classCodes);
    if (!shown || index === selected) {
      showEntry(index);
      shown = true;
    }
    window.dispatchEvent(new CustomEvent('skinlens:result', { detail: publicEntry(entry) }));
  }
  $('csv-download').disabled = !coversIsic2018(classCodes) || !batch.some((e) => e.result);
}

function publicEntry({ fileName, result, error }) {
  return error ? { fileName, error } : { fileName, result };
}

function downloadCsv() {
  const rows = entries.filter((e) => e.result);
  const blob = new Blob([toIsic2018Csv(rows)], { type: 'text/csv' });
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = 'skinlens-isic2018.csv';
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

function wireInputs() {
  const zone = $('drop-zone');
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  // The zone is focusable; from the keyboard it opens the file picker.
  zone.addEventListener('keydown', (event) => {
    if (event.target === zone && (event.key === 'Enter' || event.key === ' ')) {
      event.preventDefault();
      $('file-input').click();
    }
  });
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('dragging');
    classifyFiles([...event.dataTransfer.files]);
  });
  // A file dropped next to the zone must not navigate away from the page.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
  $('file-input').addEventListener('change', (event) => {
    classifyFiles([...event.target.files]);
    event.target.value = '';
  });
  document.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.files ?? [])].filter((f) => f.type.startsWith('image/'));
    if (files.length) classifyFiles(files);
  });
  $('cam-toggle').addEventListener('change', (event) => {
    $('cam-overlay').hidden = !event.target.checked;
  });
  $('csv-download').addEventListener('click', downloadCsv);
}

// ---- start -------------------------------------------------------------------------------------

function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  // Scope is this directory, so the page works from any sub-path of a static host.
  navigator.serviceWorker.register('./sw.js').catch((error) => {
    console.warn(`offline mode unavailable: ${error.message}`);
  });
}

function start() {
  let backend;
  try {
    backend = backendFromQuery(location.search);
  } catch (error) {
    showPageError(error.message);
    window.skinlens = { ready: Promise.reject(error), classify: () => Promise.reject(error) };
    window.skinlens.ready.catch(() => {});
    return;
  }
  backendLabel = BACKENDS[backend].label;
  $('backend-badge').textContent = backendLabel;
  $('backend-badge').dataset.backend = backend;

  engine = new Engine({ backend, modelUrl: MODEL_URL, onProgress: setProgress });
  const cardLoaded = fetchCard();
  cardLoaded.then((card) => description || renderCard($('card-fields'), card, null));
  const ready = Promise.all([engine.ready, cardLoaded]).then(([loaded, card]) => {
    description = loaded.description;
    showBackend(description.backend, description.backendLabel);
    renderCard($('card-fields'), card, description);
    $('untrained-warning').hidden = !description.untrained;
    $('loading').hidden = true;
    document.body.classList.add('ready');
    return {
      backend: description.backend ?? backend,
      requestedBackend: backend,
      backendLabel,
      coldStartMs: performance.now(),
      loadTimings: loaded.timings,
      classes: description.classes,
      untrained: description.untrained,
      inputSize: description.inputSize,
      card,
    };
  });
  ready.catch((error) => {
    $('loading').hidden = true;
    showPageError(`The classifier could not start: ${error.message}`);
  });
  wireInputs();
  window.addEventListener('skinlens:result', ({ detail }) => showBackend(detail.result?.backend, detail.result?.backendLabel));

  window.skinlens = {
    /** Resolves once the model is loaded and warmed up: {backend, backendLabel, coldStartMs, …}. */
    ready,
    /** Blob or File → the result the page shows; the page displays it too. */
    async classify(image) {
      if (!(image instanceof Blob)) throw new TypeError('skinlens.classify() takes a Blob or File');
      await ready;
      const entry = { fileName: image.name || 'image' };
      try {
        entry.result = await engine.classify(image);
      } catch (error) {
        entry.error = error.message;
      }
      entries = [entry];
      $('batch').hidden = true;
      showEntry(0);
      window.dispatchEvent(new CustomEvent('skinlens:result', { detail: publicEntry(entry) }));
      if (entry.error) throw new Error(entry.error);
      return entry.result;
    },
    /** What the page currently shows, one {fileName, result | error} per image. */
    results: () => entries.map(publicEntry),
  };
  registerServiceWorker();
}

start();
