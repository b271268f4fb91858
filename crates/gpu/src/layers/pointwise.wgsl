// 1×1 convolution as a tiled matrix multiply with folded bias and optional ReLU6:
//   output[C_out, P] = weight[C_out, C_in] × input[C_in, P] + bias,   P = H·W.
// A 16×16 workgroup computes a 64×64 output tile, each invocation a 4×4 block of it, stepping
// through C_in 16 at a time with both operand tiles staged in workgroup memory. Edges are
// handled by zero-filling the tiles and masking the stores, so any shape works.

struct Params {
    out_channels: u32,  // M
    in_channels: u32,   // K
    pixels: u32,        // N
    relu6: u32,
}

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
const BLOCK: u32 = 4u;
const THREADS: u32 = 256u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

// Both tiles stored k-major: [TILE_K][TILE].
var<workgroup> weight_tile: array<f32, 1024>;
var<workgroup> input_tile: array<f32, 1024>;

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) thread: u32,
) {
    let m_count = params.out_channels;
    let k_count = params.in_channels;
    let n_count = params.pixels;
    let row0 = group.y * TILE;
    let col0 = group.x * TILE;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }

    for (var k0 = 0u; k0 < k_count; k0 += TILE_K) {
        // 1024 values per tile, four per invocation.
        for (var step = 0u; step < 4u; step++) {
            let e = thread + step * THREADS;
            // Weight rows are contiguous along k: consecutive invocations read consecutive k.
            let wm = e / TILE_K;
            let wk = e % TILE_K;
            var w = 0.0;
            if (row0 + wm < m_count && k0 + wk < k_count) {
                w = weight[(row0 + wm) * k_count + k0 + wk];
            }
            weight_tile[wk * TILE + wm] = w;
            // Input rows are contiguous along pixels.
            let xk = e / TILE;
            let xn = e % TILE;
            var x = 0.0;
            if (k0 + xk < k_count && col0 + xn < n_count) {
                x = input[(k0 + xk) * n_count + col0 + xn];
            }
            input_tile[xk * TILE + xn] = x;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < BLOCK; i++) {
                a[i] = weight_tile[kk * TILE + local.y * BLOCK + i];
                b[i] = input_tile[kk * TILE + local.x * BLOCK + i];
            }
            for (var i = 0u; i < BLOCK; i++) {
                for (var j = 0u; j < BLOCK; j++) {
                    acc[i * BLOCK + j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < BLOCK; i++) {
        let m = row0 + local.y * BLOCK + i;
        if (m >= m_count) {
            continue;
        }
        for (var j = 0u; j < BLOCK; j++) {
            let n = col0 + local.x * BLOCK + j;
            if (n >= n_count) {
                continue;
            }
            var y = acc[i * BLOCK + j] + bias[m];
            if (params.relu6 != 0u) {
                y = clamp(y, 0.0, 6.0);
            }
            output[m * n_count + n] = y;
        }
    }
}
