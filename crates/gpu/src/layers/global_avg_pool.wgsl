// Global average pooling: [C, H·W] → [C]. One workgroup per channel sums its plane with a
// strided loop and a tree reduction in workgroup memory, then divides by H·W.

struct Params {
    channels: u32,
    pixels: u32,
    _unused0: u32,
    _unused1: u32,
}

const THREADS: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) thread: u32) {
    let channel = group.x;
    let base = channel * params.pixels;
    var sum = 0.0;
    for (var i = thread; i < params.pixels; i += THREADS) {
        sum += input[base + i];
    }
    partial[thread] = sum;
    workgroupBarrier();
    for (var half = THREADS / 2u; half > 0u; half /= 2u) {
        if (thread < half) {
            partial[thread] += partial[thread + half];
        }
        workgroupBarrier();
    }
    if (thread == 0u) {
        output[channel] = partial[0] / f32(params.pixels);
    }
}
