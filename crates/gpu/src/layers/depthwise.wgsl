// Depthwise k×k convolution (one filter per channel), stride 1 or 2, TensorFlow 'SAME'
// padding (stride 2 puts the extra row/column at the bottom/right), folded bias and optional
// ReLU6. One invocation per output value.
//
// KERNEL is a pipeline constant (3 and 5 get pipelines of their own, 0 = read `params.kernel`)
// so the tap loops have fixed bounds and unroll; taps outside the image read a clamped address
// and are masked to zero instead of branching, which keeps neighbouring invocations in step.

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

override KERNEL: u32 = 0u;

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
    let k = select(params.kernel, KERNEL, KERNEL != 0u);
    let input_plane = c * params.in_height * params.in_width;
    let taps = c * k * k;
    // Unsigned wrap-around: a row or column before the image becomes huge and fails the same
    // `<` test as one past its end.
    let y0 = oy * params.stride - params.pad_top;
    let x0 = ox * params.stride - params.pad_left;

    var sum = bias[c];
    for (var ky = 0u; ky < k; ky++) {
        let iy = y0 + ky;
        let row = input_plane + min(iy, params.in_height - 1u) * params.in_width;
        for (var kx = 0u; kx < k; kx++) {
            let ix = x0 + kx;
            let x = input[row + min(ix, params.in_width - 1u)];
            let inside = iy < params.in_height && ix < params.in_width;
            sum += weight[taps + ky * k + kx] * select(0.0, x, inside);
        }
    }
    if (params.relu6 != 0u) {
        sum = clamp(sum, 0.0, 6.0);
    }
    output[index] = sum;
}
