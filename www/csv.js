// Results as an ISIC 2018 Task 3 submission: image,MEL,NV,BCC,AKIEC,BKL,DF,VASC.

export const ISIC2018_COLUMNS = ['MEL', 'NV', 'BCC', 'AKIEC', 'BKL', 'DF', 'VASC'];

/** "ISIC_0024306.jpg" → "ISIC_0024306": ISIC rows name the image, not the file. */
export function imageId(fileName) {
  const base = fileName.split(/[\\/]/).pop();
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(0, dot) : base;
}

/** Whether a model's classes cover the seven ISIC columns (case-insensitively). */
export function coversIsic2018(classCodes) {
  const upper = new Set(classCodes.map((c) => c.toUpperCase()));
  return ISIC2018_COLUMNS.every((column) => upper.has(column));
}

/**
 * `rows`: [{fileName, result}] for successfully classified images. Probabilities are looked up
 * by class code, so the model's own class order does not matter.
 */
export function toIsic2018Csv(rows) {
  const lines = [['image', ...ISIC2018_COLUMNS].join(',')];
  for (const { fileName, result } of rows) {
    const byUpper = Object.fromEntries(
      Object.entries(result.probabilities).map(([code, p]) => [code.toUpperCase(), p]),
    );
    lines.push([csvField(imageId(fileName)), ...ISIC2018_COLUMNS.map((c) => byUpper[c].toFixed(6))].join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

function csvField(text) {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
