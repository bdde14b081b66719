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
    fn the_dispatched_dot_agrees_with_the_portable_one() {
        let a: Vec<f32> = (0..1283).map(|i| ((i * 31) % 17) as f32 - 8.0).collect();
        let b: Vec<f32> = (0..1283).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot(&a, &b), dot_lanes(&a, &b));
        assert!((dot(&a, &b) - plain).abs() <= 1e-3 * plain.abs().max(1.0));
    }
}
