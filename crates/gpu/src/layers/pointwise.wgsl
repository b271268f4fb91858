// 1×1 convolution as a tiled matrix multiply with folded bias and optional ReLU6:
//   output[C_out, P] = weight[C_out, C_in] × input[C_in, P] + bias,   P = H·W.
// A 16×16 workgroup computes a 64×64 output tile, each invocation a 4×4 block of it, stepping
// through C_in 16 at a time with both operand tiles staged in workgroup memory. Edges are
// handled by zero-filling the tiles and masking the stores, so any shape works.
//
// Both tiles hold vec4s (4 output rows of the weights, 4 pixels of the input), so the inner
// loop is four vec4 multiply-adds on registers with no dynamic indexing: that maps to wide
// ALUs on GPUs and to SIMD on CPU-emulated ones (lavapipe, SwiftShader).

struct Params {
    out_channels: u32,  // M
    in_channels: u32,   // K
    pixels: u32,        // N
    relu6: u32,
}

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
// vec4s per tile row: TILE / 4.
const GROUPS: u32 = 16u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

// [TILE_K][TILE / 4]: weight_tile[k * 16 + g] = rows 4g..4g+3 at depth k.
var<workgroup> weight_tile: array<vec4<f32>, 256>;
// [TILE_K][TILE / 4]: input_tile[k * 16 + g] = pixels 4g..4g+3 at depth k.
var<workgroup> input_tile: array<vec4<f32>, 256>;

fn weight_at(m: u32, k: u32) -> f32 {
    if (m < params.out_channels && k < params.in_channels) {
        return weight[m * params.in_channels + k];
    }
    return 0.0;
}

fn input_at(k: u32, n: u32) -> f32 {
    if (k < params.in_channels && n < params.pixels) {
        return input[k * params.pixels + n];
    }
    return 0.0;
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) thread: u32,
) {
    let row0 = group.y * TILE;
    let col0 = group.x * TILE;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    // Which vec4 of each tile this invocation loads: for the weights, consecutive invocations
    // take consecutive k (weight rows are contiguous along k); for the input, consecutive
    // pixel groups (input rows are contiguous along pixels).
    let w_k = thread % TILE_K;
    let w_m = row0 + (thread / TILE_K) * 4u;
    let x_k = thread / GROUPS;
    let x_n = col0 + (thread % GROUPS) * 4u;

    for (var k0 = 0u; k0 < params.in_channels; k0 += TILE_K) {
        let wk = k0 + w_k;
        weight_tile[w_k * GROUPS + thread / TILE_K] =
            vec4<f32>(weight_at(w_m, wk), weight_at(w_m + 1u, wk), weight_at(w_m + 2u, wk), weight_at(w_m + 3u, wk));
        let xk = k0 + x_k;
        input_tile[thread] = vec4<f32>(input_at(xk, x_n), input_at(xk, x_n + 1u), input_at(xk, x_n + 2u), input_at(xk, x_n + 3u));
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let a = weight_tile[kk * GROUPS + local.y];
            let b = input_tile[kk * GROUPS + local.x];
            acc0 += a.x * b;
            acc1 += a.y * b;
            acc2 += a.z * b;
            acc3 += a.w * b;
        }
        workgroupBarrier();
    }

    let m0 = row0 + local.y * 4u;
    let n0 = col0 + local.x * 4u;
    store_row(m0, n0, acc0);
    store_row(m0 + 1u, n0, acc1);
    store_row(m0 + 2u, n0, acc2);
    store_row(m0 + 3u, n0, acc3);
}

// Bias, activation and the masked store of four outputs of row `m`.
fn store_row(m: u32, n0: u32, acc: vec4<f32>) {
    if (m >= params.out_channels) {
        return;
    }
    var y = acc + vec4<f32>(bias[m]);
    if (params.relu6 != 0u) {
        y = clamp(y, vec4<f32>(0.0), vec4<f32>(6.0));
    }
    let base = m * params.pixels;
    for (var j = 0u; j < 4u; j++) {
        if (n0 + j < params.pixels) {
            output[base + n0 + j] = y[j];
        }
    }
}
