//! Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
//! 3", SC 2011) and the Box–Muller transform: the counter-based generator
//! every backend implements identically.
//!
//! Layout: normal draw `i` (row-major index) of `(key, stream)` comes from
//! Philox block `g = i / 4` with counter `[g_lo, g_hi, stream_lo, stream_hi]`
//! and key `[key_lo, key_hi]`. latentlab's keys are hashed from the run's
//! seed and the draws' purpose ([`crate::stream_key`]), never the seed itself.
//! The four 32-bit words `w` of a block become
//! uniforms `u = ((w >> 9) + ½) · 2⁻²³ ∈ (0, 1)` (exact in `f32`), and the pairs
//! `(u0, u1)`, `(u2, u3)` become `r·cos θ, r·sin θ` and the next two draws, with
//! `r = √(−2 ln u_a)` and `θ = 2π u_b − π` (an angle in `[−π, π)`, where
//! GPU `sin`/`cos` are most accurate). The integer part is bit-identical on
//! every backend; the transcendental part agrees to float rounding.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline]
fn round(c: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let p0 = u64::from(M0) * u64::from(c[0]);
    let p1 = u64::from(M1) * u64::from(c[2]);
    [
        (p1 >> 32) as u32 ^ c[1] ^ k[0],
        p1 as u32,
        (p0 >> 32) as u32 ^ c[3] ^ k[1],
        p0 as u32,
    ]
}

/// Philox4x32 with 10 rounds on one counter block.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = round(counter, key);
    let mut k = key;
    for _ in 1..10 {
        k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        c = round(c, k);
    }
    c
}

/// The uniform in `(0, 1)` made from one 32-bit word (23 bits, centred: every
/// value and the sum are exact in `f32`).
#[inline]
pub fn to_unit(w: u32) -> f32 {
    ((w >> 9) as f32 + 0.5) * (1.0 / 8_388_608.0)
}

/// The Philox block behind normal draws `4g .. 4g + 4`.
#[inline]
pub fn block(key: u64, stream: u64, g: u64) -> [u32; 4] {
    philox4x32_10(
        [
            g as u32,
            (g >> 32) as u32,
            stream as u32,
            (stream >> 32) as u32,
        ],
        [key as u32, (key >> 32) as u32],
    )
}

/// Box–Muller in `f32` on two uniforms.
#[inline]
pub fn box_muller(ua: f32, ub: f32) -> (f32, f32) {
    let r = (-2.0 * ua.ln()).sqrt();
    let theta = std::f32::consts::TAU * ub - std::f32::consts::PI;
    (r * theta.cos(), r * theta.sin())
}

/// Fills `out` with normal draws `offset .. offset + out.len()` of `(key, stream)`.
pub fn fill_normal(key: u64, stream: u64, offset: u64, out: &mut [f32]) {
    for (j, o) in out.iter_mut().enumerate() {
        let i = offset + j as u64;
        let w = block(key, stream, i / 4);
        let lane = (i % 4) as usize;
        let pair = lane / 2;
        let (a, b) = box_muller(to_unit(w[2 * pair]), to_unit(w[2 * pair + 1]));
        *o = if lane.is_multiple_of(2) { a } else { b };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123's `kat_vectors` for philox4x32_10.
    #[test]
    fn known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn uniforms_are_open_interval() {
        assert!(to_unit(0) > 0.0);
        assert!(to_unit(u32::MAX) < 1.0);
    }

    #[test]
    fn normals_have_unit_moments() {
        let mut x = vec![0f32; 200_000];
        fill_normal(7, 3, 0, &mut x);
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        // Standard errors: 1/√n ≈ 0.0022 for the mean, √(2/n) ≈ 0.0032 for the variance.
        assert!(mean.abs() < 0.011, "mean {mean}");
        assert!((var - 1.0).abs() < 0.016, "var {var}");
    }

    #[test]
    fn offsets_and_streams() {
        let mut a = vec![0f32; 10];
        fill_normal(1, 0, 0, &mut a);
        let mut b = vec![0f32; 7];
        fill_normal(1, 0, 3, &mut b);
        assert_eq!(&a[3..], &b[..]);
        let mut c = vec![0f32; 10];
        fill_normal(1, 1, 0, &mut c);
        assert_ne!(a, c);
    }
}
