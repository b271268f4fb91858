// Calibrated probabilities: softmax(logits / temperature), numerically stable (the maximum
// is subtracted before exp). A single workgroup handles the whole vector.

struct Params {
    count: u32,
    // The temperature's f32 bits; uniform structs here carry only u32 so that one
    // upload path serves every kernel.
    temperature_bits: u32,
    _unused0: u32,
    _unused1: u32,
}

const THREADS: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> probabilities: array<f32>;

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) thread: u32) {
    let n = params.count;
    let temperature = bitcast<f32>(params.temperature_bits);

    // Seeded with element 0 (there is always one) rather than a "lowest float" literal.
    var local_max = logits[0] / temperature;
    for (var i = thread; i < n; i += THREADS) {
        local_max = max(local_max, logits[i] / temperature);
    }
    partial[thread] = local_max;
    workgroupBarrier();
    for (var half = THREADS / 2u; half > 0u; half /= 2u) {
        if (thread < half) {
            partial[thread] = max(partial[thread], partial[thread + half]);
        }
        workgroupBarrier();
    }
    let shift = partial[0];
    workgroupBarrier();

    var local_sum = 0.0;
    for (var i = thread; i < n; i += THREADS) {
        local_sum += exp(logits[i] / temperature - shift);
    }
    partial[thread] = local_sum;
    workgroupBarrier();
    for (var half = THREADS / 2u; half > 0u; half /= 2u) {
        if (thread < half) {
            partial[thread] += partial[thread + half];
        }
        workgroupBarrier();
    }
    let total = partial[0];

    for (var i = thread; i < n; i += THREADS) {
        probabilities[i] = exp(logits[i] / temperature - shift) / total;
    }
}
