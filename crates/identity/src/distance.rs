//! Cosine distance between unit vectors for hnsw_rs.
//!
//! anndists' `DistDot` asserts `1 - dot >= 0`, which rounding breaks for two
//! equal unit vectors (dot = 1.0000001), so the index uses this clamped
//! version. Eight accumulators let the compiler vectorise the loop.

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
    const LANES: usize = 8;
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
    fn dot_handles_lengths_that_are_not_multiples_of_eight() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(dot(&a, &a), 385.0);
    }
}
