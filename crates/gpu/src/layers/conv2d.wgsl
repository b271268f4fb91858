// Dense k×k convolution with TensorFlow 'SAME' padding, folded bias and optional ReLU6
// (the stem: 3 → 32 channels, 3×3, stride 2). One invocation per output value; the input
// has few channels, so the k·k·C_in loop is short.
//
// KERNEL is a pipeline constant (3 and 5 get pipelines of their own, 0 = read `params.kernel`)
// so the tap loops have fixed bounds and unroll; taps outside the image read a clamped address
// and are masked to zero instead of branching, which keeps neighbouring invocations in step.

struct Params {
    in_channels: u32,
    in_height: u32,
    in_width: u32,
    out_channels: u32,
    out_height: u32,
    out_width: u32,
    kernel: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    relu6: u32,
    _unused: u32,
}

override KERNEL: u32 = 0u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
// [C_out, C_in, k, k], BatchNorm folded in.
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    // The grid may be two-dimensional when one row of workgroups is not enough.
    let index = id.y * groups.x * 64u + id.x;
    let plane = params.out_height * params.out_width;
    if (index >= params.out_channels * plane) {
        return;
    }
    let oc = index / plane;
    let oy = (index % plane) / params.out_width;
    let ox = index % params.out_width;
    let k = select(params.kernel, KERNEL, KERNEL != 0u);
    // Unsigned wrap-around: a row or column before the image becomes huge and fails the same
    // `<` test as one past its end.
    let y0 = oy * params.stride - params.pad_top;
    let x0 = ox * params.stride - params.pad_left;

    var sum = bias[oc];
    for (var ic = 0u; ic < params.in_channels; ic++) {
        let input_plane = ic * params.in_height;
        let taps = (oc * params.in_channels + ic) * k * k;
        for (var ky = 0u; ky < k; ky++) {
            let iy = y0 + ky;
            let row = (input_plane + min(iy, params.in_height - 1u)) * params.in_width;
            for (var kx = 0u; kx < k; kx++) {
                let ix = x0 + kx;
                let x = input[row + min(ix, params.in_width - 1u)];
                let inside = iy < params.in_height && ix < params.in_width;
                sum += weight[taps + ky * k + kx] * select(0.0, x, inside);
            }
        }
    }
    if (params.relu6 != 0u) {
        sum = clamp(sum, 0.0, 6.0);
    }
    output[index] = sum;
}
