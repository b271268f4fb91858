// The model card: what the model is, what it was trained and measured on, and its licence.
// Fields come from models/skinlens.card.json (written by `skinlens export`) and, where the card
// is missing or silent, from the safetensors metadata the engine read.

/** First present value among `keys` of `object` (cards spell some fields more than one way). */
function pick(object, ...keys) {
  for (const key of keys) {
    const value = object?.[key];
    if (value !== undefined && value !== null && value !== '') return value;
  }
  return undefined;
}

function describeMetric(card) {
  const metric = pick(card, 'metric', 'metrics', 'evaluation');
  if (metric === undefined) return undefined;
  if (typeof metric !== 'object') return String(metric);
  const list = Array.isArray(metric) ? metric : [metric];
  return list
    .map((m) => {
      if (typeof m !== 'object') return String(m);
      const name = pick(m, 'name', 'metric') ?? 'metric';
      const value = pick(m, 'value', 'score');
      const split = pick(m, 'split', 'dataset', 'measured_on');
      const shown = typeof value === 'number' ? value.toFixed(3) : value;
      return [`${name}${shown !== undefined ? ` ${shown}` : ''}`, split ? `on ${split}` : ''].filter(Boolean).join(' ');
    })
    .join('; ');
}

/** [[term, text]] rows for the card, in reading order, skipping what nobody wrote down. */
export function cardRows(card, description) {
  const meta = description?.metadata ?? {};
  const text = (value) => (value === undefined ? undefined : typeof value === 'object' ? JSON.stringify(value) : String(value));
  const rows = [
    ['Model', text(pick(card, 'name', 'model') ?? meta['skinlens.name'] ?? meta['skinlens.arch'])],
    ['Version', text(pick(card, 'version') ?? meta['skinlens.version'])],
    ['Architecture', text(pick(card, 'architecture', 'arch') ?? meta['skinlens.arch'])],
    ['Status', description?.untrained ? 'untrained classification head — demo only, the probabilities mean nothing' : undefined],
    ['Training data', text(pick(card, 'training_data', 'data', 'dataset'))],
    ['Measured', describeMetric(card)],
    ['Split', text(pick(card, 'split'))],
    ['Calibration', description && description.temperature !== 1 ? `softmax temperature ${description.temperature}` : undefined],
    ['Licence', text(pick(card, 'licence', 'license') ?? meta['skinlens.licence'] ?? meta['skinlens.license'])],
    ['Base weights', text(pick(card, 'base_weights', 'weights_licence', 'weights_license'))],
    ['Intended use', text(pick(card, 'intended_use'))],
    ['Limitations', text(pick(card, 'limitations'))],
  ];
  return rows.filter(([, value]) => value !== undefined);
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
