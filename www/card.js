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

/** A card value as one line of text: objects become "key: value; key: value". */
function asText(value) {
  if (isMissing(value)) return undefined;
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toFixed(4).replace(/0+$/, '');
  if (Array.isArray(value)) return value.map(asText).filter(Boolean).join('; ');
  if (typeof value === 'object') {
    return Object.entries(value)
      .filter(([, v]) => !isMissing(v))
      .map(([k, v]) => `${k.replaceAll('_', ' ')}: ${asText(v)}`)
      .join('; ');
  }
  return String(value);
}

/** [[term, text]] rows in reading order. */
export function cardRows(card, description) {
  const meta = description?.metadata ?? {};
  const untrained = description?.untrained ?? card?.untrained === true;
  const training = card?.training;
  const metrics = pick(card, 'metrics', 'metric', 'evaluation');
  const weights = card?.weights;
  const unstated = 'not stated in the model card';
  const rows = [
    ['Model', asText(pick(card, 'name', 'model')) ?? meta['skinlens.arch']],
    ['Version', asText(pick(card, 'version'))],
    ['Status', untrained ? 'UNTRAINED classification head — demo only, the probabilities mean nothing' : undefined],
    ['About', asText(pick(card, 'summary', 'description'))],
    ['Architecture', asText(pick(card, 'architecture', 'arch')) ?? meta['skinlens.arch']],
    ['Training data', asText(typeof training === 'object' ? pick(training, 'data', 'dataset', 'training_data') ?? training : training)
      ?? asText(pick(card, 'training_data', 'data', 'dataset'))
      ?? (untrained ? 'none (the head was never trained)' : unstated)],
    ['Measured', asText(metrics) ?? (untrained ? 'not measured (untrained)' : unstated)],
    ['Split', asText(pick(metrics, 'split', 'measured_on') ?? pick(training, 'split', 'validation'))],
    ['Calibration', description && description.temperature !== 1 ? `softmax temperature ${description.temperature}` : undefined],
    ['Weights', asText(pick(weights, 'base', 'source'))],
    ['Weights licence', asText(pick(weights, 'licence', 'license'))],
    ['Licence', asText(pick(card, 'licence', 'license', 'model_licence', 'model_license'))],
    ['Data licence', asText(pick(training, 'licence', 'license', 'data_licence', 'data_license'))],
    ['Intended use', asText(pick(card, 'intended_use'))],
    ['Limitations', asText(pick(card, 'limitations'))],
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
