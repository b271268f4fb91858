// The classifier head: logits[j] = Σ_k weight[j, k] · features[k] + bias[j].
// One workgroup per output; its 64 invocations split the dot product and reduce it in
// workgroup memory (with 7 classes, one invocation per class would leave the GPU idle).

struct Params {
    out_features: u32,
    in_features: u32,
    _unused0: u32,
    _unused1: u32,
}

const THREADS: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
// [out_features, in_features]
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) thread: u32) {
    let row = group.x;
    let base = row * params.in_features;
    var sum = 0.0;
    for (var k = thread; k < params.in_features; k += THREADS) {
        sum += weight[base + k] * input[k];
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
        output[row] = partial[0] + bias[row];
    }
}
