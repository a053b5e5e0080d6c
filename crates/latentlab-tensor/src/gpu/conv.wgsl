// Convolution lowering: im2col, its adjoint col2im, the per-row transpose
// that moves a batch between N×L×C and N×C×L, and the per-channel bias add.
// One thread per output element; every output is written by one thread,
// gathering its inputs in a fixed order (no atomics, deterministic).

struct Geometry {
    n: u32, c: u32, h: u32, w: u32,
    oh: u32, ow: u32, kh: u32, kw: u32,
    sh: u32, sw: u32, ph: u32, pw: u32,
    dh: u32, dw: u32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> g: Geometry;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn index(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + li;
}

// out[(n·OH·OW + oy·OW + ox) · K + (c·kh + ky)·kw + kx] = x[n, c, iy, ix]
@compute @workgroup_size(256, 1, 1)
fn im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    let k = g.c * g.kh * g.kw;
    let l = g.oh * g.ow;
    if (i >= g.n * l * k) { return; }
    let j = i % k;
    let row = i / k;
    let pos = row % l;
    let n = row / l;
    let kx = j % g.kw;
    let ky = (j / g.kw) % g.kh;
    let c = j / (g.kw * g.kh);
    let oy = pos / g.ow;
    let ox = pos % g.ow;
    // Signed arithmetic: the tap may fall in the padding.
    let iy = i32(oy * g.sh + ky * g.dh) - i32(g.ph);
    let ix = i32(ox * g.sw + kx * g.dw) - i32(g.pw);
    var v = 0.0;
    if (iy >= 0 && iy < i32(g.h) && ix >= 0 && ix < i32(g.w)) {
        v = x[((n * g.c + c) * g.h + u32(iy)) * g.w + u32(ix)];
    }
    out[i] = v;
}

// out[n, c, iy, ix] = Σ over taps (ky, kx) and output positions (oy, ox)
// with oy·sh + ky·dh − ph = iy (and likewise for x) of cols[row, column].
@compute @workgroup_size(256, 1, 1)
fn col2im(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= g.n * g.c * g.h * g.w) { return; }
    let ix = i % g.w;
    let iy = (i / g.w) % g.h;
    let c = (i / (g.w * g.h)) % g.c;
    let n = i / (g.w * g.h * g.c);
    let k = g.c * g.kh * g.kw;
    var s = 0.0;
    for (var ky = 0u; ky < g.kh; ky++) {
        let ty = i32(iy + g.ph) - i32(ky * g.dh);
        if (ty < 0 || (u32(ty) % g.sh) != 0u) { continue; }
        let oy = u32(ty) / g.sh;
        if (oy >= g.oh) { continue; }
        for (var kx = 0u; kx < g.kw; kx++) {
            let tx = i32(ix + g.pw) - i32(kx * g.dw);
            if (tx < 0 || (u32(tx) % g.sw) != 0u) { continue; }
            let ox = u32(tx) / g.sw;
            if (ox >= g.ow) { continue; }
            let row = (n * g.oh + oy) * g.ow + ox;
            s += x[row * k + (c * g.kh + ky) * g.kw + kx];
        }
    }
    out[i] = s;
}

// Each row of x (n rows of p·q) read as p×q and transposed: uses g.n = rows,
// g.c = p, g.h = q.
@compute @workgroup_size(256, 1, 1)
fn batch_transpose(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    let pq = g.c * g.h;
    if (i >= g.n * pq) { return; }
    let r = i / pq;
    let o = i % pq;
    // Output element (j, i') of the q×p result reads (i', j) of the input.
    let j = o / g.c;
    let ii = o % g.c;
    out[i] = x[r * pq + ii * g.h + j];
}

// x (g.n rows of g.c planes of g.h values) plus bias[c] on plane c.
@compute @workgroup_size(256, 1, 1)
fn add_channel_bias(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= g.n * g.c * g.h) { return; }
    out[i] = x[i] + bias[(i / g.h) % g.c];
}
