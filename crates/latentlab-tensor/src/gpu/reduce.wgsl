// Reductions of a rows × cols matrix.
// sum_rows: column sums (1 × cols), one thread per column, rows in order.
// sum_cols: row sums (rows × 1), one 256-thread workgroup per row, strided
// partial sums and a tree in workgroup memory.

struct Params { rows: u32, cols: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn sum_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let j = (wg.y * nwg.x + wg.x) * 256u + li;
    if (j >= p.cols) { return; }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) { s += x[r * p.cols + j]; }
    out[j] = s;
}

@compute @workgroup_size(256, 1, 1)
fn sum_cols(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let r = wg.y * nwg.x + wg.x;   // uniform across the workgroup
    var s = 0.0;
    if (r < p.rows) {
        for (var j = li; j < p.cols; j += 256u) { s += x[r * p.cols + j]; }
    }
    partial[li] = s;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w / 2u) {
        if (li < w) { partial[li] += partial[li + w]; }
        workgroupBarrier();
    }
    if (li == 0u && r < p.rows) { out[r] = partial[0]; }
}
