//! Helpers shared by the unit tests.

use crate::index::HnswParams;

/// Small graphs with 1-second buckets.
pub const PARAMS: HnswParams = HnswParams {
    m: 16,
    ef_construction: 100,
    ef_search: 64,
    bucket_span_ms: 1_000,
    capacity_hint: 64,
};

/// A deterministic pseudo-random unit vector; different seeds are nearly
/// orthogonal in high dimensions.
pub fn unit(dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let v: Vec<f32> = (0..dim)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = crate::distance::dot(&v, &v).sqrt();
    v.iter().map(|x| x / norm).collect()
}

/// `a` moved towards `b` by `t`, renormalised.
pub fn blend(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let v: Vec<f32> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x * (1.0 - t) + y * t)
        .collect();
    let norm = crate::distance::dot(&v, &v).sqrt();
    v.iter().map(|x| x / norm).collect()
}
