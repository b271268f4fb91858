// The model card: what the model is, what it was trained and measured on, and its licences.
// Fields come from models/skinlens.card.json (written with the model) and, where the card is
// missing or silent, from the metadata inside the safetensors file the engine read.
// Cards are read leniently (a field may be a string or an object, spelt licence or license),
// because the page must show whatever an exported card says rather than break on it.

const isMissing = (value) => value === undefined || value === null || value === '';

/** First present value among `keys` of `object`. */
function pick(object, ...keys) {
  for (const key of keys) {
    if (object && !isMissing(object[key])) return object[key];
  }
  return undefined;
}

/**
 * A card value as one line of text. Nested objects are summarised by their plain fields only:
 * a card may carry whole training histories, which belong in the JSON, not on the page.
 */
function asText(value, depth = 0) {
  if (isMissing(value)) return undefined;
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toFixed(3);
  if (typeof value !== 'object') return String(value);
  if (depth > 0) return undefined;
  if (Array.isArray(value)) return value.map((v) => asText(v, depth + 1)).filter(Boolean).join(' ');
  const fields = Object.entries(value)
    .map(([k, v]) => [k, asText(v, depth + 1)])
    .filter(([, text]) => text !== undefined)
    .map(([k, text]) => `${k.replaceAll('_', ' ')}: ${text}`);
  return fields.length ? fields.join('; ') : undefined;
}

/** "0.712 (95% CI 0.680–0.745)" from a number and an optional {low, high} interval. */
function withInterval(estimate, interval) {
  if (typeof estimate !== 'number') return undefined;
  const ci = interval && typeof interval.low === 'number' ? ` (95% CI ${interval.low.toFixed(3)}–${interval.high.toFixed(3)})` : '';
  return `${estimate.toFixed(3)}${ci}`;
}

/**
 * The headline metric. `skinlens export` writes `metrics.test` as an evaluation
 * ({images, metrics: {balanced_accuracy, macro_auc, …}, confidence_intervals: {…}});
 * other cards may give plain fields.
 */
function describeMetrics(metrics) {
  if (isMissing(metrics)) return undefined;
  const evaluation = metrics.test ?? metrics;
  const scores = evaluation?.metrics ?? evaluation;
  const intervals = evaluation?.confidence_intervals ?? {};
  const parts = [];
  const balanced = withInterval(scores?.balanced_accuracy, intervals.balanced_accuracy);
  if (balanced) parts.push(`balanced multiclass accuracy ${balanced}`);
  const auc = withInterval(scores?.macro_auc, intervals.macro_auc);
  if (auc) parts.push(`macro ROC AUC ${auc}`);
  const images = evaluation?.images ?? scores?.images;
  if (parts.length && typeof images === 'number') parts.push(`${images} images`);
  return parts.length ? parts.join(', ') : asText(metrics);
}

/** The familiarity check's measured rates, as `skinlens fit-familiarity` writes them into the card. */
function describeFamiliarity(familiarity, description) {
  if (!description?.familiarity && !familiarity) return undefined;
  const rate = familiarity?.false_alarm_rate;
  const detection = familiarity?.detection_rate_non_dermoscopy;
  const parts = ['warns when an image does not look like dermoscopy (a check on the network\u2019s own features)'];
  if (typeof rate?.test === 'number') parts.push(`false alarms on the held-out test split ${(rate.test * 100).toFixed(1)} % (${rate.test_flagged} of ${rate.test_images})`);
  if (typeof detection?.rate === 'number') parts.push(`flags ${(detection.rate * 100).toFixed(1)} % of ${detection.images} non-dermoscopy images (photos, screenshots, text, flat colours)`);
  return parts.join('; ');
}

/** [[term, text]] rows in reading order. */
export function cardRows(card, description) {
  const meta = description?.metadata ?? {};
  const untrained = description?.untrained ?? card?.untrained === true;
  const training = card?.training;
  const metrics = pick(card, 'metrics', 'metric', 'evaluation');
  const weights = card?.weights;
  const licences = card?.licences ?? card?.licenses;
  const unstated = 'not stated in the model card';
  const rows = [
    ['Model', asText(pick(card, 'name', 'model')) ?? meta['skinlens.arch']],
    ['Version', asText(pick(card, 'version'))],
    ['Status', untrained ? 'UNTRAINED classification head — demo only, the probabilities mean nothing' : undefined],
    ['About', asText(pick(card, 'summary', 'description'))],
    ['Architecture', asText(pick(card, 'architecture', 'arch')) ?? meta['skinlens.arch']],
    ['Training data', asText(typeof training === 'object' ? pick(training, 'data', 'dataset', 'training_data') : training)
      ?? asText(pick(card, 'training_data', 'data', 'dataset'))
      ?? meta['skinlens.trained_on']
      ?? (untrained ? 'none (the head was never trained)' : unstated)],
    ['Measured', describeMetrics(metrics) ?? (untrained ? 'not measured (untrained)' : unstated)],
    ['On', asText(pick(metrics, 'split', 'measured_on'))],
    ['Calibration', description && description.temperature !== 1 ? `softmax temperature ${description.temperature.toFixed(3)}` : undefined],
    ['Views', meta['skinlens.tta'] === 'flips' ? 'each answer averages the image and its three mirror images (4 passes)' : undefined],
    ['Unusual images', describeFamiliarity(card?.familiarity, description)],
    ['Weights', asText(pick(weights, 'base', 'source'))],
    ['Licence', asText(pick(licences, 'data', 'model')) ?? asText(pick(card, 'licence', 'license')) ?? meta['skinlens.licence']],
    ['Weights licence', asText(pick(licences, 'base_weights') ?? pick(weights, 'licence', 'license'))],
    ['Cite', asText(pick(licences, 'citation'))],
    ['Intended use', asText(pick(card, 'intended_use'))],
    ['Limits', asText(pick(card, 'limits', 'limitations'))],
    ['Disclaimer', asText(pick(card, 'disclaimer'))],
  ];
  return rows.filter(([, value]) => !isMissing(value));
}

export function renderCard(list, card, description) {
  const rows = cardRows(card, description);
  if (!card) rows.push(['Card', 'models/skinlens.card.json was not found; showing what the model file says']);
  list.replaceChildren(
    ...rows.flatMap(([term, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = term;
      const dd = document.createElement('dd');
      dd.textContent = value;
      return [dt, dd];
    }),
  );
}
