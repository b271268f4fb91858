// The default backend: WebGPU when navigator.gpu yields an adapter and the engine's self-check
// agrees with the CPU path; otherwise the CPU engine, with the reason in the badge.

import * as webgpu from './webgpu.js';

export const id = 'auto';
export const label = 'WebGPU if available, else CPU';
export const checkSupport = webgpu.checkSupport;
export const initialise = webgpu.initialise;
export const create = (modelBytes) => webgpu.create(modelBytes, { strict: false });
