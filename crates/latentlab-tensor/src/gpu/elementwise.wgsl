// Elementwise ops: activations and their backward passes, axpy, scale,
// multiply, bias add. One thread per element; the grid may be 2-D when there
// are more than 65,535 workgroups.

struct Params {
    len: u32, cols: u32, kind: u32, _pad: u32,
    alpha: f32, _p1: f32, _p2: f32, _p3: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn index(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + li;
}

fn sigmoid(v: f32) -> f32 {
    if (v >= 0.0) { return 1.0 / (1.0 + exp(-v)); }
    let e = exp(v);
    return e / (1.0 + e);
}

// tanh through exp(−2|v|): finite for every finite v.
fn stable_tanh(v: f32) -> f32 {
    let e = exp(-2.0 * abs(v));
    let t = (1.0 - e) / (1.0 + e);
    return select(-t, t, v >= 0.0);
}

fn expm1(v: f32) -> f32 {
    if (abs(v) < 1e-3) { return v + 0.5 * v * v + v * v * v / 6.0; }
    return exp(v) - 1.0;
}

fn act(kind: u32, a: f32, v: f32) -> f32 {
    switch kind {
        case 0u: { return max(v, 0.0); }
        case 1u: { return select(a * v, v, v > 0.0); }
        case 2u: { return select(a * expm1(v), v, v > 0.0); }
        case 3u: { return stable_tanh(v); }
        case 4u: { return sigmoid(v); }
        default: { return max(v, 0.0) + log(1.0 + exp(-abs(v))); }
    }
}

fn act_grad(kind: u32, a: f32, v: f32, o: f32, gy: f32) -> f32 {
    switch kind {
        case 0u: { return select(0.0, gy, v > 0.0); }
        case 1u: { return select(a * gy, gy, v > 0.0); }
        case 2u: { return select(gy * (o + a), gy, v > 0.0); }
        case 3u: { return gy * (1.0 - o * o); }
        case 4u: { return gy * o * (1.0 - o); }
        default: { return gy * sigmoid(v); }
    }
}

@compute @workgroup_size(256, 1, 1)
fn act_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.len) { return; }
    out[i] = act(p.kind, p.alpha, x[i]);
}

@compute @workgroup_size(256, 1, 1)
fn act_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.len) { return; }
    out[i] = act_grad(p.kind, p.alpha, x[i], y[i], g[i]);
}

// out ← out + alpha · x
@compute @workgroup_size(256, 1, 1)
fn axpy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.len) { return; }
    out[i] = fma(p.alpha, x[i], out[i]);
}

@compute @workgroup_size(256, 1, 1)
fn scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.len) { return; }
    out[i] = p.alpha * x[i];
}

@compute @workgroup_size(256, 1, 1)
fn mul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.len) { return; }
    out[i] = x[i] * y[i];
}

// out = x + y[col]  (y is a 1 × cols row)
@compute @workgroup_size(256, 1, 1)
fn add_row(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.len) { return; }
    out[i] = x[i] + y[i % p.cols];
}

// exp (kind 0) or log (kind 1).
@compute @workgroup_size(256, 1, 1)
fn unary_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.len) { return; }
    if (p.kind == 0u) { out[i] = exp(x[i]); } else { out[i] = log(x[i]); }
}

// ∂L/∂x from x, y = op(x) and ∂L/∂y: g·y for exp, g / x for log.
@compute @workgroup_size(256, 1, 1)
fn unary_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let i = index(wg, nwg, li);
    if (i >= p.len) { return; }
    if (p.kind == 0u) { out[i] = g[i] * y[i]; } else { out[i] = g[i] / x[i]; }
}
