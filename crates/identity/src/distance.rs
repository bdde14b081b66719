//! Cosine distance between unit vectors for hnsw_rs.
//!
//! anndists' `DistDot` asserts `1 - dot >= 0`, which rounding breaks for two
//! equal unit vectors (dot = 1.0000001), so the index uses this clamped
//! version. Sixteen accumulators let the compiler vectorise the loop; on
//! x86-64 CPUs with AVX2 the same loop is compiled a second time for 256-bit
//! registers and picked at run time (the build targets baseline x86-64).

use hnsw_rs::anndists::dist::Distance;

/// `1 - a·b`, at least 0, for L2-normalised `a` and `b`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Dot product of two equally long slices.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Writes `v` as 8-bit codes, `v[i] ≈ codes[i] * scale`, and returns the
/// scale (the largest magnitude maps to ±127).
pub(crate) fn quantise(v: &[f32], codes: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        codes.fill(0);
        return 0.0;
    }
    let scale = max / 127.0;
    let inverse = 127.0 / max;
    for (c, x) in codes.iter_mut().zip(v) {
        // Round half away from zero without a libm call per value.
        let y = x * inverse;
        *c = (y + 0.5f32.copysign(y)) as i8;
    }
    scale
}

/// Dot product of two equally long slices of codes in [-127, 127] (what
/// [`quantise`] writes). Exact: products are at most 127² and an `i32` holds
/// the sum of over 100 000 of them.
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { dot_i8_avx2(a, b) };
    }
    dot_i8_portable(a, b)
}

fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_si256();
    let mut i = 0;
    while i + 32 <= n {
        let x = _mm256_loadu_si256(a.as_ptr().add(i) as *const __m256i);
        let y = _mm256_loadu_si256(b.as_ptr().add(i) as *const __m256i);
        // maddubs multiplies unsigned by signed bytes and adds pairs into
        // 16-bit lanes: give it |x| and y with x's sign. Pairs of codes in
        // [-127, 127] sum to at most 32 258, so nothing saturates.
        let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(x), _mm256_sign_epi8(y, x));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
        i += 32;
    }
    let mut lanes = [0i32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc);
    lanes.iter().sum::<i32>() + dot_i8_portable(&a[i..n], &b[i..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_unit_vectors_are_at_distance_zero_even_with_rounding() {
        let v: Vec<f32> = (0..1280).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let norm = dot(&v, &v).sqrt();
        let u: Vec<f32> = v.iter().map(|x| x / norm).collect();
        assert_eq!(CosineDistance.eval(&u, &u), 0.0_f32.max(1.0 - dot(&u, &u)));
        assert!(CosineDistance.eval(&u, &u) < 1e-5);
        let neg: Vec<f32> = u.iter().map(|x| -x).collect();
        assert!((CosineDistance.eval(&u, &neg) - 2.0).abs() < 1e-4);
    }

    #[test]
    fn dot_handles_lengths_that_are_not_multiples_of_the_lanes() {
        let a: Vec<f32> = (1..=21).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), 3311.0);
        assert_eq!(dot(&a[..10], &a[..10]), 385.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn quantised_dot_is_exact_on_codes_and_close_on_unit_vectors() {
        let a: Vec<i8> = (0..1283).map(|i| ((i * 37) % 255 - 127) as i8).collect();
        let b: Vec<i8> = (0..1283).map(|i| ((i * 11) % 251 - 125) as i8).collect();
        assert_eq!(dot_i8(&a, &b), dot_i8_portable(&a, &b));
        assert_eq!(dot_i8(&a[..7], &b[..7]), dot_i8_portable(&a[..7], &b[..7]));

        let unit = |seed: usize| {
            let v: Vec<f32> = (0..1280)
                .map(|i| (((i + seed) * 7919) % 1009) as f32 / 1009.0 - 0.5)
                .collect();
            let n = dot(&v, &v).sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<_>>()
        };
        let (u, v) = (unit(1), unit(2));
        let (mut cu, mut cv) = (vec![0i8; 1280], vec![0i8; 1280]);
        let (su, sv) = (quantise(&u, &mut cu), quantise(&v, &mut cv));
        let approx = dot_i8(&cu, &cv) as f32 * su * sv;
        assert!(
            (approx - dot(&u, &v)).abs() < 0.01,
            "{approx} vs {}",
            dot(&u, &v)
        );
        assert_eq!(quantise(&[0.0; 4], &mut [1; 4]), 0.0);
    }

    #[test]
    fn the_dispatched_dot_agrees_with_the_portable_one() {
        let a: Vec<f32> = (0..1283).map(|i| ((i * 31) % 17) as f32 - 8.0).collect();
        let b: Vec<f32> = (0..1283).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot(&a, &b), dot_lanes(&a, &b));
        assert!((dot(&a, &b) - plain).abs() <= 1e-3 * plain.abs().max(1.0));
    }
}
