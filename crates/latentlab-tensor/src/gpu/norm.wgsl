// Batch normalisation and the row-wise logsumexp.
//
// Rows hold `channels` planes of `plane` values (a batch of N×C×L laid out
// as PyTorch does). Reductions run one 256-thread workgroup per channel (or
// per row for logsumexp): strided partial sums in a fixed order, then a tree
// in workgroup memory, so results never depend on timing.

struct Params {
    rows: u32, channels: u32, plane: u32, flags: u32,
    eps: f32, _p0: f32, _p1: f32, _p2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> var_: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_a: array<f32>;
@group(0) @binding(6) var<storage, read> gamma: array<f32>;
@group(0) @binding(7) var<storage, read> beta: array<f32>;
@group(0) @binding(8) var<storage, read> gy: array<f32>;
@group(0) @binding(9) var<storage, read_write> out_b: array<f32>;

// flags: bit 0 γ present, bit 1 β present, bit 2 batch statistics (backward).
const HAS_GAMMA: u32 = 1u;
const HAS_BETA: u32 = 2u;
const BATCH_STATS: u32 = 4u;

var<workgroup> part: array<f32, 256>;
var<workgroup> part2: array<f32, 256>;

fn group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

// Element k (of rows·plane) of channel c.
fn at(c: u32, k: u32) -> u32 {
    let n = k / p.plane;
    return (n * p.channels + c) * p.plane + k % p.plane;
}

// Sums part[0..256] into part[0] (and part2 likewise when both).
fn tree(both: bool, li: u32) {
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w / 2u) {
        if (li < w) {
            part[li] += part[li + w];
            if (both) { part2[li] += part2[li + w]; }
        }
        workgroupBarrier();
    }
}

// mean[c] and the biased variance of channel c, two passes.
@compute @workgroup_size(256, 1, 1)
fn channel_moments(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let c = group(wg, nwg);
    let live = c < p.channels;
    let count = p.rows * p.plane;
    var s = 0.0;
    if (live) { for (var k = li; k < count; k += 256u) { s += x[at(c, k)]; } }
    part[li] = s;
    tree(false, li);
    let m = part[0] / f32(count);
    workgroupBarrier();
    var q = 0.0;
    if (live) {
        for (var k = li; k < count; k += 256u) { let d = x[at(c, k)] - m; q += d * d; }
    }
    part[li] = q;
    tree(false, li);
    if (li == 0u && live) {
        out[c] = m;
        out_a[c] = part[0] / f32(count);
    }
}

// y = (x − mean[c]) · rsqrt(var[c] + eps) · γ[c] + β[c], one thread per element.
@compute @workgroup_size(256, 1, 1)
fn batch_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = group(wg, nwg) * 256u + li;
    if (i >= p.rows * p.channels * p.plane) { return; }
    let c = (i / p.plane) % p.channels;
    var y = (x[i] - mean[c]) / sqrt(var_[c] + p.eps);
    if ((p.flags & HAS_GAMMA) != 0u) { y = y * gamma[c]; }
    if ((p.flags & HAS_BETA) != 0u) { y = y + beta[c]; }
    out[i] = y;
}

// ∂x (out), ∂γ (out_a) and ∂β (out_b) of channel c.
@compute @workgroup_size(256, 1, 1)
fn batch_norm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    let c = group(wg, nwg);
    let live = c < p.channels;
    let count = p.rows * p.plane;
    var m = 0.0;
    var inv = 0.0;
    var g = 1.0;
    if (live) {
        m = mean[c];
        inv = 1.0 / sqrt(var_[c] + p.eps);
        if ((p.flags & HAS_GAMMA) != 0u) { g = gamma[c]; }
    }
    var sb = 0.0;
    var sg = 0.0;
    if (live) {
        for (var k = li; k < count; k += 256u) {
            let j = at(c, k);
            sb += gy[j];
            sg += gy[j] * (x[j] - m) * inv;
        }
    }
    part[li] = sb;
    part2[li] = sg;
    tree(true, li);
    let db = part[0];
    let dg = part2[0];
    if (!live) { return; }
    if (li == 0u) {
        out_a[c] = dg;
        out_b[c] = db;
    }
    let a = g * inv;
    var b = 0.0;
    var k0 = 0.0;
    if ((p.flags & BATCH_STATS) != 0u) {
        b = -a * (dg / f32(count)) * inv;
        k0 = -a * (db / f32(count)) - b * m;
    }
    for (var k = li; k < count; k += 256u) {
        let j = at(c, k);
        out[j] = a * gy[j] + b * x[j] + k0;
    }
}

// IEEE classes from the bits (comparisons with NaN or infinity are not
// guaranteed in WGSL).
fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

fn is_nan(v: f32) -> bool {
    return non_finite(v) && (bitcast<u32>(v) & 0x007fffffu) != 0u;
}

// log Σ exp over each row of `x` (rows × plane), one workgroup per row.
@compute @workgroup_size(256, 1, 1)
fn logsumexp_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let r = group(wg, nwg);
    let live = r < p.rows;
    let cols = p.plane;
    let base = min(r, p.rows - 1u) * cols;
    // The row's maximum, and whether it holds a NaN.
    var mx = x[base];
    var nan = 0.0;
    if (live) {
        for (var j = li; j < cols; j += 256u) {
            let v = x[base + j];
            if (is_nan(v)) { nan = 1.0; } else if (is_nan(mx) || v > mx) { mx = v; }
        }
    }
    part[li] = mx;
    part2[li] = nan;
    workgroupBarrier();
    for (var w = 128u; w > 0u; w = w / 2u) {
        if (li < w) {
            if (is_nan(part[li]) || part[li + w] > part[li]) { part[li] = part[li + w]; }
            part2[li] = max(part2[li], part2[li + w]);
        }
        workgroupBarrier();
    }
    let m = part[0];
    let any_nan = part2[0] > 0.0;
    workgroupBarrier();
    let finite = !non_finite(m);
    var s = 0.0;
    if (live && finite) {
        for (var j = li; j < cols; j += 256u) { s += exp(x[base + j] - m); }
    }
    part[li] = s;
    tree(false, li);
    if (li == 0u && live) {
        if (any_nan) {
            // A quiet NaN built at run time (a constant NaN is a WGSL error).
            out[r] = bitcast<f32>(0x7fc00000u | (p.flags & 0u));
        } else if (finite) {
            out[r] = m + log(part[0]);
        } else {
            out[r] = m;
        }
    }
}

// ∂x[i, j] = ∂lse[i] · exp(x[i, j] − lse[i]); `mean` holds lse, `gy` ∂lse.
@compute @workgroup_size(256, 1, 1)
fn logsumexp_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let i = group(wg, nwg) * 256u + li;
    if (i >= p.rows * p.plane) { return; }
    let r = i / p.plane;
    out[i] = gy[r] * exp(x[i] - mean[r]);
}
