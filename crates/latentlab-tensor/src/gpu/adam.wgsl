// One Adam (AdamW when weight decay > 0) update in place.

struct Params {
    len: u32, _p0: u32, _p1: u32, _p2: u32,
    lr: f32, beta1: f32, beta2: f32, eps: f32,
    bc1: f32, bc2: f32, decay: f32, _p3: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn adam(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * 256u + li;
    if (i >= p.len) { return; }
    let g = grad[i];
    let mm = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vv = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mm;
    v[i] = vv;
    let mhat = mm / p.bc1;
    let vhat = vv / p.bc2;
    param[i] = param[i] * p.decay - p.lr * mhat / (sqrt(vhat) + p.eps);
}
