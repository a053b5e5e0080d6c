// Philox4x32-10 and Box–Muller, bit-compatible with src/philox.rs.
// One thread makes the four draws of one Philox block.

struct Params { len: u32, seed_lo: u32, seed_hi: u32, stream_lo: u32, stream_hi: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> mu: array<f32>;
@group(0) @binding(2) var<storage, read> logvar: array<f32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;
@group(0) @binding(4) var<storage, read_write> eps: array<f32>;

// (hi, lo) of the 64-bit product a·b, from 16-bit halves.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox(ctr_in: vec4<u32>, key_in: vec2<u32>) -> vec4<u32> {
    var c = ctr_in;
    var k = key_in;
    for (var r = 0u; r < 10u; r++) {
        if (r > 0u) { k = vec2<u32>(k.x + 0x9E3779B9u, k.y + 0xBB67AE85u); }
        let p0 = mulhilo(0xD2511F53u, c.x);
        let p1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

fn to_unit(w: u32) -> f32 {
    return (f32(w >> 9u) + 0.5) * (1.0 / 8388608.0);
}

fn normals(g: u32) -> vec4<f32> {
    let w = philox(vec4<u32>(g, 0u, p.stream_lo, p.stream_hi), vec2<u32>(p.seed_lo, p.seed_hi));
    let r0 = sqrt(-2.0 * log(to_unit(w.x)));
    let t0 = 6.2831853071795865 * to_unit(w.y) - 3.1415926535897932;
    let r1 = sqrt(-2.0 * log(to_unit(w.z)));
    let t1 = 6.2831853071795865 * to_unit(w.w) - 3.1415926535897932;
    return vec4<f32>(r0 * cos(t0), r0 * sin(t0), r1 * cos(t1), r1 * sin(t1));
}

fn block_index(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + li;
}

@compute @workgroup_size(256, 1, 1)
fn randn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let g = block_index(wg, nwg, li);
    if (g * 4u >= p.len) { return; }
    let n = normals(g);
    for (var l = 0u; l < 4u; l++) {
        let i = g * 4u + l;
        if (i < p.len) { eps[i] = n[l]; }
    }
}

@compute @workgroup_size(256, 1, 1)
fn reparameterize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let g = block_index(wg, nwg, li);
    if (g * 4u >= p.len) { return; }
    let n = normals(g);
    for (var l = 0u; l < 4u; l++) {
        let i = g * 4u + l;
        if (i < p.len) {
            eps[i] = n[l];
            z[i] = mu[i] + exp(0.5 * logvar[i]) * n[l];
        }
    }
}
