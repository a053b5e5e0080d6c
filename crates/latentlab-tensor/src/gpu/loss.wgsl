// Likelihood and KL terms, elementwise, with their gradients.

struct Params { len: u32, cols: u32, shared_lv: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> o1: array<f32>;
@group(0) @binding(5) var<storage, read_write> o2: array<f32>;
@group(0) @binding(6) var<storage, read_write> o3: array<f32>;

const HALF_LOG_2PI: f32 = 0.91893853320467274;

fn index(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + li;
}

fn sigmoid(v: f32) -> f32 {
    if (v >= 0.0) { return 1.0 / (1.0 + exp(-v)); }
    let e = exp(v);
    return e / (1.0 + e);
}

// a = logits, b = targets → o1 = loss, o2 = ∂loss/∂logits
@compute @workgroup_size(256, 1, 1)
fn bce_logits(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.len) { return; }
    let l = a[i];
    let t = b[i];
    o1[i] = max(l, 0.0) - l * t + log(1.0 + exp(-abs(l)));
    o2[i] = sigmoid(l) - t;
}

// a = x, b = mean, c = logvar (elementwise or one shared row)
// → o1 = nll, o2 = ∂/∂mean, o3 = ∂/∂logvar
@compute @workgroup_size(256, 1, 1)
fn gaussian_nll(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.len) { return; }
    let lv = c[select(i, i % p.cols, p.shared_lv != 0u)];
    let inv = exp(-lv);
    let d = a[i] - b[i];
    let q = d * d * inv;
    o1[i] = HALF_LOG_2PI + 0.5 * (lv + q);
    o2[i] = -d * inv;
    o3[i] = 0.5 * (1.0 - q);
}

fn expm1(v: f32) -> f32 {
    if (abs(v) < 1e-3) { return v + 0.5 * v * v + v * v * v / 6.0; }
    return exp(v) - 1.0;
}

// a = mu, b = logvar → o1 = KL, o2 = ∂/∂mu, o3 = ∂/∂logvar
@compute @workgroup_size(256, 1, 1)
fn kl_normal(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.len) { return; }
    let m = a[i];
    let lv = b[i];
    let em1 = expm1(lv);
    o1[i] = 0.5 * (m * m + em1 - lv);
    o2[i] = m;
    o3[i] = 0.5 * em1;
}
