// Depthwise k×k convolution (one filter per channel), stride 1 or 2, TensorFlow 'SAME'
// padding (stride 2 puts the extra row/column at the bottom/right), folded bias and optional
// ReLU6. One invocation per output value.

struct Params {
    channels: u32,
    in_height: u32,
    in_width: u32,
    out_height: u32,
    out_width: u32,
    kernel: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    relu6: u32,
    _unused0: u32,
    _unused1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
// [C, k, k], BatchNorm folded in.
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = id.y * groups.x * 64u + id.x;
    let plane = params.out_height * params.out_width;
    if (index >= params.channels * plane) {
        return;
    }
    let c = index / plane;
    let oy = (index % plane) / params.out_width;
    let ox = index % params.out_width;
    let k = params.kernel;
    let input_plane = c * params.in_height * params.in_width;
    let taps = c * k * k;

    var sum = bias[c];
    for (var ky = 0u; ky < k; ky++) {
        // Unsigned wrap-around: a row above the image becomes huge and fails the same test
        // as a row below it.
        let iy = oy * params.stride + ky - params.pad_top;
        if (iy >= params.in_height) {
            continue;
        }
        let row = input_plane + iy * params.in_width;
        for (var kx = 0u; kx < k; kx++) {
            let ix = ox * params.stride + kx - params.pad_left;
            if (ix >= params.in_width) {
                continue;
            }
            sum += weight[taps + ky * k + kx] * input[row + ix];
        }
    }
    if (params.relu6 != 0u) {
        sum = clamp(sum, 0.0, 6.0);
    }
    output[index] = sum;
}
