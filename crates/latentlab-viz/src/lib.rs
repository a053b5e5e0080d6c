//! `latentlab-viz`: pictures a person can read at a glance.
//!
//! - [`png`]: a small PNG encoder (greyscale and RGB, zlib through flate2)
//!   and [`grid`] images of many decoded samples with labelled rows.
//! - [`chart`]: SVG charts with titles, axes, ticks and legends: the latent
//!   map coloured by label, bars (KL per dimension), lines (training curves,
//!   norm profiles against the √d shell).
//! - [`html`]: a self-contained HTML page with every image embedded.
//!
//! Hand-written rather than through a plotting crate: the report must build
//! on a bare machine without font or system graphics libraries, and SVG text
//! is rendered by the browser with its own fonts.

pub mod chart;
pub mod grid;
pub mod html;
pub mod png;

/// Base64 (standard alphabet, padded), for data URIs.
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

/// Escapes text for HTML and SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
