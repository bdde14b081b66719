//! 4-bit codes of stored vectors, which the graph walk compares queries with.
//!
//! A 1280-d `f32` vector is 5 KB; its codes are 640 bytes, so a walk that
//! scores a few hundred neighbours reads an eighth of the memory (and 10 000
//! rows fit in a desktop CPU's last-level cache). Each stored value becomes
//! `round(x / scale) + 8`, in 1..=15, with one scale per vector (its largest
//! magnitude maps to ±7). The query stays at 8 bits, so a comparison costs
//! one unsigned-by-signed multiply-add per value. The estimate is within a
//! few hundredths of the exact cosine (tested below); callers re-score their
//! final answers exactly.

/// Values per block: one block is 16 bytes of codes, low nibbles holding
/// values 0..16 and high nibbles values 16..32.
const BLOCK: usize = 32;
/// Code of a zero value.
const ZERO: i32 = 8;

/// Bytes of one row of codes for vectors of `dim` values.
pub(crate) fn row_bytes(dim: usize) -> usize {
    dim.div_ceil(BLOCK) * BLOCK / 2
}

/// Writes `v` as a row of 4-bit codes (`row_bytes(v.len())` bytes) and
/// returns its scale.
pub(crate) fn encode(v: &[f32], row: &mut [u8]) -> f32 {
    row.fill(0x88); // zeros, including the padding of the last block
    let Some(max) = largest_magnitude(v) else {
        return 0.0;
    };
    let inverse = 7.0 / max;
    for (i, x) in v.iter().enumerate() {
        let code = (round(x * inverse) + ZERO) as u8;
        let (block, at) = (i / BLOCK, i % BLOCK);
        let byte = &mut row[block * BLOCK / 2 + at % 16];
        *byte = if at < 16 {
            (*byte & 0xF0) | code
        } else {
            (*byte & 0x0F) | (code << 4)
        };
    }
    max / 7.0
}

/// The largest `|x|` in `v`, if it is positive and finite.
fn largest_magnitude(v: &[f32]) -> Option<f32> {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    (max > 0.0 && max.is_finite()).then_some(max)
}

/// Rounds half away from zero, without a libm call per value.
fn round(y: f32) -> i32 {
    (y + 0.5f32.copysign(y)) as i32
}

/// A query as 8-bit values, ready to compare with rows of codes.
pub(crate) struct QueryCodes {
    values: Vec<i8>,
    scale: f32,
    /// `ZERO` times the sum of `values`: what the codes' offset adds.
    offset: i32,
}

impl QueryCodes {
    pub fn new(v: &[f32]) -> Self {
        let mut values = vec![0i8; row_bytes(v.len()) * 2];
        let Some(max) = largest_magnitude(v) else {
            return Self {
                values,
                scale: 0.0,
                offset: 0,
            };
        };
        let inverse = 127.0 / max;
        for (q, x) in values.iter_mut().zip(v) {
            *q = round(x * inverse) as i8;
        }
        let offset = ZERO * values.iter().map(|&q| q as i32).sum::<i32>();
        Self {
            values,
            scale: max / 127.0,
            offset,
        }
    }

    /// Estimated dot product with the vector coded as `row`, `scale`.
    pub fn dot(&self, row: &[u8], scale: f32) -> f32 {
        (dot_codes(row, &self.values) - self.offset) as f32 * self.scale * scale
    }
}

/// `Σ code[i] · q[i]` over a row of codes and 8-bit values in [-127, 127].
fn dot_codes(row: &[u8], q: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { dot_codes_avx2(row, q) };
    }
    dot_codes_portable(row, q)
}

fn dot_codes_portable(row: &[u8], q: &[i8]) -> i32 {
    row.chunks_exact(BLOCK / 2)
        .zip(q.chunks_exact(BLOCK))
        .map(|(bytes, q)| {
            bytes
                .iter()
                .enumerate()
                .map(|(j, &b)| (b & 0x0F) as i32 * q[j] as i32 + (b >> 4) as i32 * q[j + 16] as i32)
                .sum::<i32>()
        })
        .sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_codes_avx2(row: &[u8], q: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    let blocks = (row.len() / (BLOCK / 2)).min(q.len() / BLOCK);
    let nibble = _mm_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_si256();
    for b in 0..blocks {
        let bytes = _mm_loadu_si128(row.as_ptr().add(b * BLOCK / 2) as *const __m128i);
        let low = _mm_and_si128(bytes, nibble);
        let high = _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble);
        let codes = _mm256_set_m128i(high, low);
        let values = _mm256_loadu_si256(q.as_ptr().add(b * BLOCK) as *const __m256i);
        // Unsigned codes (at most 15) times signed values (at most 127 in
        // magnitude), pairs summed into 16 bits: no saturation.
        let pairs = _mm256_maddubs_epi16(codes, values);
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
    }
    let mut lanes = [0i32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc);
    lanes.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::dot;
    use crate::testutil::{blend, unit};

    #[test]
    fn the_dispatched_kernel_agrees_with_the_portable_one() {
        let row: Vec<u8> = (0..640).map(|i| ((i * 37) % 256) as u8).collect();
        let q: Vec<i8> = (0..1280).map(|i| ((i * 11) % 255 - 127) as i8).collect();
        assert_eq!(dot_codes(&row, &q), dot_codes_portable(&row, &q));
    }

    #[test]
    fn codes_estimate_the_cosine_closely() {
        for dim in [1280, 512, 77] {
            let row_len = row_bytes(dim);
            assert_eq!(row_len % 16, 0);
            let mut worst = 0.0f32;
            for seed in 0..50 {
                let a = unit(dim, seed);
                let b = blend(&a, &unit(dim, 100 + seed), seed as f32 / 50.0);
                let mut row = vec![0u8; row_len];
                let scale = encode(&b, &mut row);
                let estimate = QueryCodes::new(&a).dot(&row, scale);
                worst = worst.max((estimate - dot(&a, &b)).abs());
            }
            assert!(worst < 0.03, "{dim}-d: worst error {worst}");
        }
    }

    #[test]
    fn zero_vectors_code_as_zero() {
        let mut row = vec![0u8; row_bytes(40)];
        assert_eq!(encode(&[0.0; 40], &mut row), 0.0);
        assert!(row.iter().all(|&b| b == 0x88));
        assert_eq!(QueryCodes::new(&unit(40, 1)).dot(&row, 1.0), 0.0);
    }
}
