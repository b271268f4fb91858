// The page: wires drop/pick/paste/camera to the engine worker and shows what comes back.
// Also the automation API for kiosks and tests, `window.skinlens` (documented in README.md).
// `?kiosk=1` (optionally `&idle=SECONDS`, default 120): large touch targets, the camera as the
// main input, results cleared after that long without a touch, no downloads.

import { BACKENDS, Engine, backendFromQuery } from './engine.js';
import { renderBars, drawPreview, drawOriginal, describeTimings } from './render.js';
import { drawHeatMap, drawLegend } from './heatmap.js';
import { resultReport } from './report.js';
import { renderCard } from './card.js';
import { coversIsic2018, toIsic2018Csv } from './csv.js';

const MODEL_URL = './models/skinlens.safetensors';
const CARD_URL = './models/skinlens.card.json';

const $ = (id) => document.getElementById(id);

/** Pixels of the model's view and heat map on screen (the model's own input is smaller). */
const DISPLAY_SIZE = 256;
const query = new URLSearchParams(location.search);
const kiosk = query.get('kiosk') === '1';
const idleSeconds = Number(query.get('idle')) > 0 ? Number(query.get('idle')) : 120;

/** Every image of the current drop, in order: {fileName, result} or {fileName, error}. */
let entries = [];
let selected = -1;
let backendLabel = '';

/** The short name of a backend id ('GPU · WebGPU', 'CPU · wasm SIMD'). */
const shortLabel = (id) => BACKENDS[id]?.label ?? id;

/**
 * The badge shows the backend the engine actually runs (`auto` picks one, a GPU can fall back)
 * in two or three words; the full story (adapter, or why not WebGPU) opens under it.
 */
function showBackend(id, label) {
  if (!label || !id) return;
  backendLabel = label;
  $('backend-badge').textContent = shortLabel(id);
  $('backend').dataset.backend = id;
  $('backend-detail').textContent = label === shortLabel(id)
    ? `${label}: the model runs on this device's processor, in a background worker; nothing is sent anywhere.`
    : label;
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
  for (const row of $('batch-table').tBodies[0].rows) {
    const chosen = Number(row.dataset.index) === index;
    row.classList.toggle('selected', chosen);
    row.querySelector('button')?.setAttribute('aria-pressed', String(chosen));
  }

  if (entry.error) {
    $('result-error').textContent = `${entry.fileName}: ${entry.error}`;
    $('result-error').hidden = false;
    $('result-body').hidden = true;
    $('ood-warning').hidden = true;
    return;
  }
  $('result-error').hidden = true;
  $('result-body').hidden = false;
  const { result } = entry;
  const unusual = result.familiarity?.unusual === true;
  $('ood-warning').hidden = !unusual;
  if (unusual) {
    $('ood-score').textContent = `unfamiliarity ${result.familiarity.score.toFixed(1)}, flagged above ${result.familiarity.threshold.toFixed(1)}`;
  }
  $('result-body').classList.toggle('unusual', unusual);
  drawPreview($('preview'), result.preview, DISPLAY_SIZE);
  $('preview-size').textContent = `${result.preview.width}×${result.preview.height}`;
  const shown = drawHeatMap($('cam-overlay'), result.cam, DISPLAY_SIZE);
  $('cam-class').textContent = result.ranked.find((r) => r.code === result.cam.class)?.name ?? result.cam.class;
  $('cam-note').textContent = shown
    ? `The model's own ${result.cam.width}×${result.cam.height} feature map, smoothly upsampled; colours are relative to the strongest cell (where, not how much).`
    : 'No part of this image holds positive evidence for the top class, so there is no heat map.';
  showHeatMap();
  renderBars($('bars'), result.ranked);
  $('timings').textContent = describeTimings(result.timings, shortLabel(result.backend) ?? backendLabel);
  $('original-size').textContent = `${result.original_width}×${result.original_height}`;
  const original = $('original');
  original.hidden = true;
  if (entry.file) {
    drawOriginal(original, entry.file).then((drawn) => {
      if (entries[selected] === entry) original.hidden = !drawn;
    });
  }
}

function showHeatMap() {
  $('cam-overlay').hidden = !$('cam-toggle').checked;
  $('cam-overlay').style.opacity = String(Number($('cam-opacity').value) / 100);
  $('cam-opacity').disabled = !$('cam-toggle').checked;
}

function clearResults() {
  entries = [];
  selected = -1;
  $('result').hidden = true;
  $('batch').hidden = true;
  $('bars').replaceChildren();
  for (const id of ['preview', 'cam-overlay', 'original']) $(id).getContext('2d').clearRect(0, 0, $(id).width, $(id).height);
  window.dispatchEvent(new CustomEvent('skinlens:cleared'));
}

async function saveReport() {
  const entry = entries[selected];
  if (kiosk || !entry?.result) return;
  const card = await cardLoaded;
  const name = card?.name ?? description?.metadata?.['skinlens.arch'] ?? 'skinlens model';
  const version = card?.version ? ` ${card.version}` : '';
  const blob = await resultReport({
    result: entry.result,
    fileName: entry.fileName,
    original: $('original').hidden ? null : $('original'),
    opacity: $('cam-toggle').checked ? Number($('cam-opacity').value) / 100 : 0,
    model: `${name}${version}`,
    date: new Date(),
  });
  const stem = entry.fileName.replace(/\.[^.]+$/, '').replace(/[^\w.-]+/g, '_') || 'image';
  download(blob, `skinlens-${stem}.png`);
}

function download(blob, fileName) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = fileName;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
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
      const cell = (text, className) => {
        const td = document.createElement('td');
        td.textContent = text;
        if (className) td.className = className;
        row.append(td);
        return td;
      };
      // The file name is a button: keyboard and screen-reader users select rows with it.
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'row-button';
      open.textContent = entry.fileName;
      open.setAttribute('aria-pressed', String(index === selected));
      open.addEventListener('click', (event) => {
        event.stopPropagation();
        showEntry(index);
      });
      cell('').append(open);
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
      return row;
    }),
  );
}

// ---- input -------------------------------------------------------------------------------------

let engine;
let description;
let cardLoaded;

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
  if (kiosk) return;
  const rows = entries.filter((e) => e.result);
  download(new Blob([toIsic2018Csv(rows)], { type: 'text/csv' }), 'skinlens-isic2018.csv');
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
  $('camera-input').addEventListener('change', (event) => {
    classifyFiles([...event.target.files]);
    event.target.value = '';
  });
  $('cam-toggle').addEventListener('change', showHeatMap);
  $('cam-opacity').addEventListener('input', showHeatMap);
  $('csv-download').addEventListener('click', downloadCsv);
  $('save-report').addEventListener('click', () => saveReport().catch((error) => showPageError(`The result could not be saved: ${error.message}`)));
  $('camera-start').addEventListener('click', () => startCamera());
  $('camera-stop').addEventListener('click', stopCamera);
  $('camera-capture').addEventListener('click', () => capturePhoto());
}

// ---- camera ------------------------------------------------------------------------------------

let cameraStream = null;

/** The viewfinder: the back camera where there is one. The frames stay in this page. */
async function startCamera() {
  $('camera-error').hidden = true;
  if (!navigator.mediaDevices?.getUserMedia) {
    showCameraError('this browser offers no camera to web pages (it needs a secure origin: https or localhost)');
    return false;
  }
  try {
    cameraStream ??= await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment', width: { ideal: 1280 }, height: { ideal: 960 } }, audio: false });
  } catch (error) {
    showCameraError(error.name === 'NotAllowedError' ? 'permission to use the camera was refused' : `no camera could be opened (${error.message || error.name})`);
    return false;
  }
  const video = $('viewfinder');
  video.srcObject = cameraStream;
  $('camera').hidden = false;
  document.body.classList.add('camera-on');
  await video.play().catch(() => {});
  $('camera-capture').focus();
  return true;
}

function showCameraError(reason) {
  $('camera').hidden = false;
  $('camera-error').textContent = `The camera cannot be used: ${reason}. Choose a file instead.`;
  $('camera-error').hidden = false;
}

function stopCamera() {
  cameraStream?.getTracks().forEach((track) => track.stop());
  cameraStream = null;
  $('viewfinder').srcObject = null;
  $('camera').hidden = true;
  document.body.classList.remove('camera-on');
  $('camera-start').focus();
}

/** One frame of the viewfinder, classified like a dropped file. */
async function capturePhoto() {
  const video = $('viewfinder');
  if (!cameraStream || !video.videoWidth) return;
  const frame = new OffscreenCanvas(video.videoWidth, video.videoHeight);
  frame.getContext('2d').drawImage(video, 0, 0);
  const blob = await frame.convertToBlob({ type: 'image/png' });
  const stamp = new Date().toTimeString().slice(0, 8).replaceAll(':', '-');
  if (!kiosk) stopCamera(); // in a kiosk the camera stays the main input
  await classifyFiles([new File([blob], `camera-${stamp}.png`, { type: 'image/png' })]);
}

// ---- kiosk -------------------------------------------------------------------------------------

let idleTimer = 0;

/** After `idleSeconds` without a touch, the last person's result goes, and a waiting update applies. */
function restartIdleTimer() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    if (entries.length) clearResults();
    if (waitingWorker) applyUpdate();
  }, idleSeconds * 1000);
}

function startKiosk() {
  document.body.classList.add('kiosk');
  for (const type of ['pointerdown', 'keydown', 'touchstart', 'wheel']) window.addEventListener(type, restartIdleTimer, { passive: true });
  window.addEventListener('skinlens:result', restartIdleTimer);
  restartIdleTimer();
}

// ---- updates -----------------------------------------------------------------------------------

let waitingWorker = null;
let reloadOnControllerChange = false;

function announceUpdate(worker) {
  waitingWorker = worker;
  $('update-notice').hidden = false;
  window.dispatchEvent(new CustomEvent('skinlens:update-ready'));
}

/** Let the new service worker take over, then reload into the new build. */
function applyUpdate() {
  if (!waitingWorker) return;
  reloadOnControllerChange = true;
  waitingWorker.postMessage({ type: 'skip-waiting' });
}

// ---- start -------------------------------------------------------------------------------------

/**
 * Offline support, and new deployments: a new build's service worker installs in the background
 * and waits; the page says an update is ready, and the update button (or, in a kiosk, the next
 * idle reset) lets it take over and reloads.
 */
async function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  let registration;
  try {
    // Scope is this directory, so the page works from any sub-path of a static host.
    registration = await navigator.serviceWorker.register('./sw.js');
  } catch (error) {
    console.warn(`offline mode unavailable: ${error.message}`);
    return;
  }
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    if (reloadOnControllerChange) location.reload();
  });
  const watch = (worker) => worker?.addEventListener('statechange', () => {
    if (worker.state === 'installed' && navigator.serviceWorker.controller) announceUpdate(worker);
  });
  if (registration.waiting && navigator.serviceWorker.controller) announceUpdate(registration.waiting);
  watch(registration.installing);
  registration.addEventListener('updatefound', () => watch(registration.installing));
  // Tabs and kiosks stay open for days: look for a new deployment every hour, not only on load.
  setInterval(() => registration.update().catch(() => {}), 3_600_000);
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
  $('backend').dataset.backend = backend;
  $('backend-detail').textContent = 'The engine is starting.';
  // The model card is open beside the results on wide screens, folded on phones and in kiosks.
  $('model-card').open = !kiosk && matchMedia('(min-width: 48rem)').matches;
  drawLegend($('cam-legend'));
  $('update-reload').addEventListener('click', applyUpdate);

  engine = new Engine({ backend, modelUrl: MODEL_URL, onProgress: setProgress });
  cardLoaded = fetchCard();
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
      /** The networks each answer averages: {name, arch, inputSize, weight, views, multiplyAdds, …}. */
      members: description.members ?? [],
      familiarity: description.familiarity ?? null,
      wasmSimd: description.wasmSimd ?? null,
      kiosk,
      card,
    };
  });
  if (kiosk) {
    startKiosk();
    ready.then(() => startCamera()).catch(() => {});
  }
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
      const entry = { fileName: image.name || 'image', file: image };
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
    /** Whether a new build is installed and waiting for a reload. */
    updateReady: () => waitingWorker !== null,
  };
  // Only once the engine is up (or has failed): the service worker's install downloads the
  // whole site again (engine builds and model, bypassing the HTTP cache), which must not compete
  // with the first visit's own downloads and compile.
  ready.catch(() => {}).then(registerServiceWorker);
}

start();
