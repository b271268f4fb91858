// A two-member model file made from the shipped file's (first) network, in the layout of
// src/model/members.rs: the same tensors twice under `a/` and `b/`, member b run 32 px larger
// with Shades of Gray colour constancy and another temperature, weights 0.6 / 0.4, one view
// each (cheap on an emulated GPU). Written here so the e2e tests need no extra Rust tool.

import { readFileSync, writeFileSync } from 'node:fs';

/** Reads a safetensors file: {metadata, tensors: [[name, {dtype, shape, bytes}]]}. */
function readSafetensors(path) {
  const bytes = readFileSync(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  const data = bytes.subarray(8 + headerLength);
  const metadata = header.__metadata__ ?? {};
  delete header.__metadata__;
  const tensors = Object.entries(header).map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, bytes: data.subarray(t.data_offsets[0], t.data_offsets[1]) }]);
  return { metadata, tensors };
}

function writeSafetensors(path, metadata, tensors) {
  const header = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // keep the data aligned
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(path, Buffer.concat([length, Buffer.from(json), ...tensors.map(([, t]) => t.bytes)]));
}

/**
 * The shipped file's network: the file itself when it holds one, else its first member (its
 * tensors without the `NAME/` prefix, its own size, temperature and architecture).
 */
function firstNetwork({ metadata, tensors }) {
  if (metadata['skinlens.arch'] !== 'ensemble') {
    return { arch: metadata['skinlens.arch'] ?? 'efficientnet-lite0', size: Number(metadata['skinlens.input_size']), temperature: metadata['skinlens.temperature'] ?? '1', tensors };
  }
  const first = metadata['skinlens.members'].split(',')[0];
  const key = (leaf) => metadata[`skinlens.member.${first}.${leaf}`];
  const prefix = `${first}/`;
  return {
    arch: key('arch'),
    size: Number(key('input_size')),
    temperature: key('temperature') ?? '1',
    tensors: tensors.filter(([name]) => name.startsWith(prefix)).map(([name, t]) => [name.slice(prefix.length), t]),
  };
}

/**
 * Writes a model file to `out` whose members are all the shipped network, each with its own
 * `{name, weight, sizeDelta, temperature, colourConstancy}` (size = shipped size + sizeDelta;
 * temperature defaults to the shipped one). Returns the members with their input sizes.
 */
export function writeMemberModel(shippedPath, out, members, { tta = 'none' } = {}) {
  const shipped = readSafetensors(shippedPath);
  const { metadata } = shipped;
  const { arch, size, temperature, tensors } = firstNetwork(shipped);
  const resolved = members.map((m) => ({ ...m, inputSize: size + (m.sizeDelta ?? 0), temperature: m.temperature ?? temperature }));
  const meta = {
    'skinlens.arch': 'ensemble',
    'skinlens.members': resolved.map((m) => m.name).join(','),
    'skinlens.classes': metadata['skinlens.classes'],
    'skinlens.batchnorm': 'folded',
    'skinlens.untrained': 'false',
    'skinlens.tta': tta,
  };
  for (const m of resolved) {
    const key = (leaf) => `skinlens.member.${m.name}.${leaf}`;
    meta[key('arch')] = arch;
    meta[key('input_size')] = String(m.inputSize);
    meta[key('temperature')] = m.temperature;
    meta[key('weight')] = m.weight;
    if (m.colourConstancy) meta[key('colour_constancy')] = m.colourConstancy;
  }
  writeSafetensors(out, meta, resolved.flatMap((m) => tensors.map(([name, t]) => [`${m.name}/${name}`, t])));
  return resolved;
}

/** The e2e test's file: member b 32 px larger, colour constancy, temperature 1.7; 0.6 / 0.4. */
export function writeTwoMemberModel(shippedPath, out) {
  return writeMemberModel(shippedPath, out, [
    { name: 'a', weight: '0.6' },
    { name: 'b', weight: '0.4', sizeDelta: 32, temperature: '1.7', colourConstancy: 'shades_of_gray:6' },
  ]);
}
