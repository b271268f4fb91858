// The MBConv residual connection, in place: output += skip. No activation follows it.

struct Params {
    count: u32,
    _unused0: u32,
    _unused1: u32,
    _unused2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> skip: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = id.y * groups.x * 64u + id.x;
    if (index >= params.count) {
        return;
    }
    output[index] = output[index] + skip[index];
}
