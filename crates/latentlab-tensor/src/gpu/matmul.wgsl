// C = op(A) · op(B), tiled through workgroup memory.
// Each workgroup computes a 64×64 tile of C with 16×16 threads, each thread a
// 4×4 block (rows lid.y + 16·i, columns lid.x + 16·j, so reads from the tiles
// are broadcast or consecutive and writes to C are coalesced). K advances in
// slices of 16. Transposes are strides: op(A)[i, k] = a[i·a_rs + k·a_cs].

struct Params {
    m: u32, n: u32, k: u32, a_rs: u32,
    a_cs: u32, b_rs: u32, b_cs: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TM: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> As: array<f32, 1024>; // [TK][TM], k-major
var<workgroup> Bs: array<f32, 1024>; // [TK][TM], k-major

@compute @workgroup_size(16, 16, 1)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let row0 = wg.y * TM;
    let col0 = wg.x * TM;
    var acc: array<f32, 16>;
    for (var t = 0u; t < 16u; t++) { acc[t] = 0.0; }

    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var l = 0u; l < 4u; l++) {
            let e = li + l * 256u;
            // A tile: consecutive threads walk k (contiguous when A is not transposed).
            let ai = e / TK;
            let ak = e % TK;
            let gi = row0 + ai;
            let gk = k0 + ak;
            var av = 0.0;
            if (gi < p.m && gk < p.k) { av = a[gi * p.a_rs + gk * p.a_cs]; }
            As[ak * TM + ai] = av;
            // B tile: consecutive threads walk n.
            let bk = e / TM;
            let bj = e % TM;
            let gk2 = k0 + bk;
            let gj = col0 + bj;
            var bv = 0.0;
            if (gk2 < p.k && gj < p.n) { bv = b[gk2 * p.b_rs + gj * p.b_cs]; }
            Bs[bk * TM + bj] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var x = 0u; x < 4u; x++) {
                ar[x] = As[kk * TM + lid.y + 16u * x];
                br[x] = Bs[kk * TM + lid.x + 16u * x];
            }
            for (var x = 0u; x < 4u; x++) {
                for (var y = 0u; y < 4u; y++) {
                    acc[x * 4u + y] = fma(ar[x], br[y], acc[x * 4u + y]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var x = 0u; x < 4u; x++) {
        let r = row0 + lid.y + 16u * x;
        for (var y = 0u; y < 4u; y++) {
            let col = col0 + lid.x + 16u * y;
            if (r < p.m && col < p.n) { c[r * p.n + col] = acc[x * 4u + y]; }
        }
    }
}
