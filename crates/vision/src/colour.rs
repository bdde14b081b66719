//! Clothing colour: a cheap appearance cue that a generic ImageNet
//! embedder blurs. A person box is split into an upper-body and a
//! lower-body band (the middle of the box across, so the background at the
//! sides weighs less), and each band becomes a histogram over HSV cells:
//! hue and saturation for coloured pixels, brightness alone for grey and
//! black ones, where hue is noise.
//!
//! Each band's histogram is square-rooted, so the dot product of two
//! signatures is the mean Bhattacharyya coefficient of their bands: 1 for
//! the same colours, 0 for colours that share no cell.

use streamer_core::{BBox, Frame};

/// Hue sectors for coloured pixels.
const HUE_BINS: usize = 8;
/// Saturation levels for coloured pixels (above [`GREY_SATURATION`]).
const SATURATION_BINS: usize = 2;
/// Brightness levels for grey pixels, the darkest being "black".
const GREY_BINS: usize = 4;
/// Cells per band.
const BAND_BINS: usize = HUE_BINS * SATURATION_BINS + GREY_BINS;
/// Values in one signature: two bands.
pub const COLOUR_DIM: usize = 2 * BAND_BINS;

/// Below this saturation (0–1) a pixel counts as grey.
const GREY_SATURATION: f32 = 0.25;
/// Below this brightness (0–1) a pixel counts as grey whatever its hue:
/// dark pixels' hue is sensor noise.
const DARK_VALUE: f32 = 0.2;

/// The bands, as fractions of the box: `(top, bottom)` of the upper and
/// lower body, and the middle fraction of its width they cover.
const UPPER: (f32, f32) = (0.15, 0.5);
const LOWER: (f32, f32) = (0.5, 0.9);
const ACROSS: (f32, f32) = (0.25, 0.75);

/// Pixels sampled per band side at most: a large box is read sparsely.
const SAMPLES_PER_SIDE: u32 = 24;

/// The colour signature of the person in `bbox` (frame pixels): two
/// square-rooted band histograms, each scaled by 1/√2, so the whole has
/// unit length. A box with no pixels in the frame gives all zeros.
pub fn colour_signature(frame: &Frame, bbox: &BBox) -> Vec<f32> {
    let mut out = Vec::with_capacity(COLOUR_DIM);
    for band in [UPPER, LOWER] {
        let mut histogram = [0f32; BAND_BINS];
        let counted = fill_band(frame, bbox, band, &mut histogram);
        let scale = if counted > 0 {
            1.0 / (counted as f32 * 2.0)
        } else {
            0.0
        };
        out.extend(histogram.iter().map(|n| (n * scale).sqrt()));
    }
    out
}

/// Adds the band's sampled pixels to `histogram`; returns how many.
fn fill_band(frame: &Frame, bbox: &BBox, (top, bottom): (f32, f32), histogram: &mut [f32]) -> u32 {
    let b = bbox.clamp(frame.width as f32, frame.height as f32);
    let (w, h) = (b.width(), b.height());
    let x0 = (b.x1 + ACROSS.0 * w) as u32;
    let x1 = ((b.x1 + ACROSS.1 * w) as u32).min(frame.width);
    let y0 = (b.y1 + top * h) as u32;
    let y1 = ((b.y1 + bottom * h) as u32).min(frame.height);
    if x1 <= x0 || y1 <= y0 {
        return 0;
    }
    let step_x = ((x1 - x0) / SAMPLES_PER_SIDE).max(1);
    let step_y = ((y1 - y0) / SAMPLES_PER_SIDE).max(1);
    let mut counted = 0;
    for y in (y0..y1).step_by(step_y as usize) {
        let row = (y * frame.width) as usize * 3;
        for x in (x0..x1).step_by(step_x as usize) {
            let p = row + x as usize * 3;
            let rgb = [frame.rgb[p], frame.rgb[p + 1], frame.rgb[p + 2]];
            histogram[cell(rgb)] += 1.0;
            counted += 1;
        }
    }
    counted
}

/// The histogram cell of one pixel.
fn cell([r, g, b]: [u8; 3]) -> usize {
    let (r, g, b) = (r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let value = max;
    let saturation = if max > 0.0 { (max - min) / max } else { 0.0 };
    if value < DARK_VALUE || saturation < GREY_SATURATION {
        let level = ((value * GREY_BINS as f32) as usize).min(GREY_BINS - 1);
        return HUE_BINS * SATURATION_BINS + level;
    }
    let chroma = max - min;
    let hue = if max == r {
        ((g - b) / chroma).rem_euclid(6.0)
    } else if max == g {
        (b - r) / chroma + 2.0
    } else {
        (r - g) / chroma + 4.0
    } / 6.0;
    let h = ((hue * HUE_BINS as f32) as usize).min(HUE_BINS - 1);
    let s = (((saturation - GREY_SATURATION) / (1.0 - GREY_SATURATION) * SATURATION_BINS as f32)
        as usize)
        .min(SATURATION_BINS - 1);
    h * SATURATION_BINS + s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// A 40×80 frame: a person in `shirt` over `trousers`, on grey.
    fn person(shirt: [u8; 3], trousers: [u8; 3]) -> Frame {
        let (w, h) = (40u32, 80u32);
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for _ in 0..w {
                let px = if y < h / 2 { shirt } else { trousers };
                rgb.extend_from_slice(&px);
            }
        }
        Frame::new(Arc::from("cam"), 0, Duration::ZERO, w, h, rgb)
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    const WHOLE: BBox = BBox::new(0.0, 0.0, 40.0, 80.0);

    #[test]
    fn signatures_have_unit_length_and_match_the_same_clothes() {
        let red_blue = colour_signature(&person([200, 30, 30], [30, 30, 200]), &WHOLE);
        assert_eq!(red_blue.len(), COLOUR_DIM);
        assert!((dot(&red_blue, &red_blue) - 1.0).abs() < 1e-5);
        let again = colour_signature(&person([190, 40, 35], [35, 40, 190]), &WHOLE);
        assert!(dot(&red_blue, &again) > 0.99);
    }

    #[test]
    fn a_different_shirt_halves_the_match_and_swapped_bands_share_nothing() {
        let red_blue = colour_signature(&person([200, 30, 30], [30, 30, 200]), &WHOLE);
        let green_blue = colour_signature(&person([30, 200, 30], [30, 30, 200]), &WHOLE);
        let blue_red = colour_signature(&person([30, 30, 200], [200, 30, 30]), &WHOLE);
        assert!((dot(&red_blue, &green_blue) - 0.5).abs() < 1e-3);
        assert!(dot(&red_blue, &blue_red) < 1e-3);
    }

    #[test]
    fn dark_clothes_are_grey_whatever_their_hue_noise() {
        let black = colour_signature(&person([20, 5, 5], [5, 5, 20]), &WHOLE);
        let black_too = colour_signature(&person([5, 20, 5], [20, 5, 5]), &WHOLE);
        assert!(dot(&black, &black_too) > 0.99);
    }

    #[test]
    fn a_box_outside_the_frame_gives_zeros() {
        let frame = person([200, 30, 30], [30, 30, 200]);
        let outside = colour_signature(&frame, &BBox::new(100.0, 100.0, 140.0, 180.0));
        assert!(outside.iter().all(|x| *x == 0.0));
    }
}
