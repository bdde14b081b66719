//! Frame → input tensor: resize (stretch or letterbox, bilinear, separable:
//! each source row the output needs is resized across once), normalise and
//! lay out as NHWC or NCHW, writing straight into the tensor buffer.

use streamer_core::layout::{ImageInput, Resize, TensorOrder};
use streamer_core::BBox;

/// Grey used by Ultralytics to pad letterboxed inputs.
const LETTERBOX_PAD: f32 = 114.0;

/// How frame coordinates map to input-tensor coordinates:
/// `input = frame * scale + pad`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
}

impl Transform {
    /// The mapping that fits a `frame_w x frame_h` frame into the input.
    pub fn fit(frame_w: u32, frame_h: u32, input: &ImageInput) -> Self {
        let (fw, fh) = (frame_w as f32, frame_h as f32);
        let (iw, ih) = (input.width as f32, input.height as f32);
        match input.resize {
            Resize::Stretch => Self {
                scale_x: iw / fw,
                scale_y: ih / fh,
                pad_x: 0.0,
                pad_y: 0.0,
            },
            Resize::Letterbox => {
                let s = (iw / fw).min(ih / fh);
                // Content size rounded like the resize, padding split evenly.
                let (cw, ch) = ((fw * s).round(), (fh * s).round());
                Self {
                    scale_x: s,
                    scale_y: s,
                    pad_x: ((iw - cw) / 2.0).floor(),
                    pad_y: ((ih - ch) / 2.0).floor(),
                }
            }
        }
    }

    /// Maps a box from input-tensor coordinates back to the frame.
    pub fn to_frame(&self, b: BBox) -> BBox {
        BBox::new(
            (b.x1 - self.pad_x) / self.scale_x,
            (b.y1 - self.pad_y) / self.scale_y,
            (b.x2 - self.pad_x) / self.scale_x,
            (b.y2 - self.pad_y) / self.scale_y,
        )
    }
}

/// Writes `rgb` (packed RGB8, `width x height`) into `out`, resized and
/// normalised for `input`. `out` is resized to `3 * input.width * input.height`.
pub fn fill_tensor(
    rgb: &[u8],
    width: u32,
    height: u32,
    input: &ImageInput,
    out: &mut Vec<f32>,
) -> Transform {
    let (iw, ih) = (input.width as usize, input.height as usize);
    out.resize(3 * iw * ih, 0.0);
    let full = Crop {
        x: 0,
        y: 0,
        width,
        height,
    };
    fill_crop(rgb, width, full, input, out)
}

/// A rectangle of whole pixels inside a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Crop {
    /// The pixels covered by `bbox` grown by `margin` (a fraction of the box
    /// size on every side), limited to a `frame_w x frame_h` frame and at
    /// least one pixel in each direction.
    pub fn around(bbox: BBox, margin: f32, frame_w: u32, frame_h: u32) -> Self {
        let (mx, my) = (bbox.width() * margin, bbox.height() * margin);
        let clampf = |v: f32, hi: u32| (v.max(0.0) as u32).min(hi);
        let x0 = clampf((bbox.x1 - mx).floor(), frame_w - 1);
        let y0 = clampf((bbox.y1 - my).floor(), frame_h - 1);
        let x1 = clampf((bbox.x2 + mx).ceil(), frame_w).max(x0 + 1);
        let y1 = clampf((bbox.y2 + my).ceil(), frame_h).max(y0 + 1);
        Self {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
        }
    }
}

/// Writes the `crop` of `rgb` (packed RGB8, `width` pixels a row) into
/// `out`, resized and normalised for `input`. `out` must hold exactly
/// `3 * input.width * input.height` values (one image of a batch). The
/// returned transform maps crop coordinates to input coordinates.
///
/// # Panics
/// If `crop` is empty or reaches outside the frame, or `out` has the wrong
/// length.
pub fn fill_crop(
    rgb: &[u8],
    width: u32,
    crop: Crop,
    input: &ImageInput,
    out: &mut [f32],
) -> Transform {
    let t = Transform::fit(crop.width, crop.height, input);
    let (iw, ih) = (input.width as usize, input.height as usize);
    assert_eq!(
        out.len(),
        3 * iw * ih,
        "tensor slice does not fit the input"
    );
    assert!(
        crop.width > 0
            && crop.height > 0
            && crop.x + crop.width <= width
            && (crop.y + crop.height) as usize * width as usize * 3 <= rgb.len(),
        "crop {crop:?} is outside the {width}-pixel-wide frame"
    );

    // value = pixel * gain[c] + bias[c]
    let gain: [f32; 3] = std::array::from_fn(|c| input.scale / input.std[c]);
    let bias: [f32; 3] = std::array::from_fn(|c| -input.mean[c] / input.std[c]);
    let pad: [f32; 3] = std::array::from_fn(|c| LETTERBOX_PAD * gain[c] + bias[c]);

    // The content rectangle inside the input, in whole pixels.
    let x0 = t.pad_x as usize;
    let y0 = t.pad_y as usize;
    let cw = ((crop.width as f32 * t.scale_x).round() as usize).min(iw - x0);
    let ch = ((crop.height as f32 * t.scale_y).round() as usize).min(ih - y0);

    let cols = sample_positions(crop.width as usize, cw, crop.x as usize);
    let rows = sample_positions(crop.height as usize, ch, crop.y as usize);
    let stride = width as usize * 3;
    let plane = iw * ih;

    // Padding: every value outside the content rectangle.
    for y in 0..ih {
        let padded = if (y0..y0 + ch).contains(&y) {
            [0..x0, x0 + cw..iw]
        } else {
            [0..iw, 0..0]
        };
        for x in padded.into_iter().flatten() {
            match input.order {
                TensorOrder::Nhwc => {
                    let i = (y * iw + x) * 3;
                    out[i..i + 3].copy_from_slice(&pad);
                }
                TensorOrder::Nchw => {
                    let i = y * iw + x;
                    for (k, v) in pad.iter().enumerate() {
                        out[k * plane + i] = *v;
                    }
                }
            }
        }
    }

    // Content, separably: each source row the output needs is resized
    // horizontally once (into one plane a channel), and each output row
    // blends two such rows. Neighbouring output rows mostly share source
    // rows, so a row is kept until no longer needed. The arithmetic is the
    // per-pixel bilinear formula's, in the same order, so results do not
    // depend on the pass order.
    let horizontal = |src_row: usize, dst: &mut [f32]| {
        let line = &rgb[src_row * stride..];
        for (i, c) in cols.iter().enumerate() {
            let (lo, hi) = (c.lo * 3, c.hi * 3);
            for k in 0..3 {
                let a = line[lo + k] as f32;
                let b = line[hi + k] as f32;
                dst[k * cw + i] = a + (b - a) * c.w;
            }
        }
    };
    let mut upper = vec![0.0f32; 3 * cw];
    let mut lower = vec![0.0f32; 3 * cw];
    let (mut upper_row, mut lower_row) = (None, None);
    for (j, r) in rows.iter().enumerate() {
        if upper_row != Some(r.lo) {
            if lower_row == Some(r.lo) {
                std::mem::swap(&mut upper, &mut lower);
                std::mem::swap(&mut upper_row, &mut lower_row);
            } else {
                horizontal(r.lo, &mut upper);
                upper_row = Some(r.lo);
            }
        }
        if lower_row != Some(r.hi) {
            horizontal(r.hi, &mut lower);
            lower_row = Some(r.hi);
        }
        let y = y0 + j;
        for k in 0..3 {
            let (u, l) = (&upper[k * cw..(k + 1) * cw], &lower[k * cw..(k + 1) * cw]);
            let value = |i: usize| (u[i] + (l[i] - u[i]) * r.w) * gain[k] + bias[k];
            match input.order {
                TensorOrder::Nchw => {
                    let start = k * plane + y * iw + x0;
                    for (i, v) in out[start..start + cw].iter_mut().enumerate() {
                        *v = value(i);
                    }
                }
                TensorOrder::Nhwc => {
                    let start = (y * iw + x0) * 3;
                    for (i, px) in out[start..start + 3 * cw].chunks_exact_mut(3).enumerate() {
                        px[k] = value(i);
                    }
                }
            }
        }
    }
    t
}

/// Two neighbouring source indices and the weight of the second.
#[derive(Clone, Copy)]
struct Sample {
    lo: usize,
    hi: usize,
    w: f32,
}

/// Bilinear sample positions (pixel centres aligned) for resizing `src`
/// pixels, starting at pixel `offset`, to `dst` pixels along one axis.
fn sample_positions(src: usize, dst: usize, offset: usize) -> Vec<Sample> {
    let ratio = src as f32 / dst.max(1) as f32;
    (0..dst)
        .map(|i| {
            let pos = ((i as f32 + 0.5) * ratio - 0.5).clamp(0.0, (src - 1) as f32);
            let lo = pos.floor() as usize;
            Sample {
                lo: offset + lo,
                hi: offset + (lo + 1).min(src - 1),
                w: pos - lo as f32,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(resize: Resize, order: TensorOrder, w: u32, h: u32) -> ImageInput {
        ImageInput {
            name: None,
            order,
            width: w,
            height: h,
            resize,
            scale: 1.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    #[test]
    fn letterbox_pads_the_short_side_and_maps_back() {
        let spec = input(Resize::Letterbox, TensorOrder::Nchw, 640, 640);
        let t = Transform::fit(1280, 720, &spec);
        assert_eq!(t.scale_x, 0.5);
        assert_eq!(t.pad_x, 0.0);
        assert_eq!(t.pad_y, 140.0); // (640 - 360) / 2
        let b = t.to_frame(BBox::new(100.0, 240.0, 300.0, 440.0));
        assert_eq!(b, BBox::new(200.0, 200.0, 600.0, 600.0));
    }

    #[test]
    fn stretch_scales_axes_independently() {
        let spec = input(Resize::Stretch, TensorOrder::Nhwc, 512, 512);
        let t = Transform::fit(768, 576, &spec);
        let b = t.to_frame(BBox::new(256.0, 256.0, 512.0, 512.0));
        assert_eq!(b, BBox::new(384.0, 288.0, 768.0, 576.0));
    }

    #[test]
    fn fill_normalises_pads_and_orders_channels() {
        // 2x1 frame: red pixel, blue pixel; letterboxed into 4x4.
        let rgb = [255, 0, 0, 0, 0, 255];
        let mut spec = input(Resize::Letterbox, TensorOrder::Nchw, 4, 4);
        spec.scale = 1.0 / 255.0;
        let mut out = Vec::new();
        let t = fill_tensor(&rgb, 2, 1, &spec, &mut out);
        assert_eq!((t.scale_x, t.pad_y), (2.0, 1.0));
        let at = |c: usize, y: usize, x: usize| out[c * 16 + y * 4 + x];
        // Padding row is grey 114/255 in every channel.
        assert!((at(1, 0, 0) - 114.0 / 255.0).abs() < 1e-6);
        // Leftmost content pixel is pure red, rightmost pure blue.
        assert!((at(0, 1, 0) - 1.0).abs() < 1e-6 && at(2, 1, 0).abs() < 1e-6);
        assert!((at(2, 2, 3) - 1.0).abs() < 1e-6 && at(0, 2, 3).abs() < 1e-6);
    }

    #[test]
    fn crops_sample_only_their_rectangle() {
        // 4x2 frame: left half black, right half white; crop the right half.
        let mut rgb = vec![0u8; 4 * 2 * 3];
        for y in 0..2 {
            for x in 2..4 {
                let i = (y * 4 + x) * 3;
                rgb[i..i + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let spec = input(Resize::Stretch, TensorOrder::Nchw, 3, 3);
        let mut out = vec![0.0; 27];
        let crop = Crop {
            x: 2,
            y: 0,
            width: 2,
            height: 2,
        };
        fill_crop(&rgb, 4, crop, &spec, &mut out);
        assert!(out.iter().all(|&v| v == 255.0), "{out:?}");
    }

    #[test]
    fn crop_around_a_box_adds_the_margin_and_stays_inside_the_frame() {
        let c = Crop::around(BBox::new(10.0, 20.0, 30.0, 60.0), 0.1, 100, 100);
        assert_eq!((c.x, c.y, c.width, c.height), (8, 16, 24, 48));
        let c = Crop::around(BBox::new(90.0, 95.0, 100.0, 100.0), 0.5, 100, 100);
        assert_eq!((c.x, c.y, c.width, c.height), (85, 92, 15, 8));
        let c = Crop::around(BBox::new(100.0, 100.0, 100.0, 100.0), 0.0, 100, 100);
        assert_eq!((c.width, c.height), (1, 1));
    }

    /// The plain per-pixel bilinear resize that `fill_crop` computes in two
    /// passes, kept as the reference it must match exactly.
    fn fill_crop_pixel_by_pixel(
        rgb: &[u8],
        width: u32,
        crop: Crop,
        input: &ImageInput,
        out: &mut [f32],
    ) {
        let t = Transform::fit(crop.width, crop.height, input);
        let (iw, ih) = (input.width as usize, input.height as usize);
        let gain: [f32; 3] = std::array::from_fn(|c| input.scale / input.std[c]);
        let bias: [f32; 3] = std::array::from_fn(|c| -input.mean[c] / input.std[c]);
        let pad: [f32; 3] = std::array::from_fn(|c| LETTERBOX_PAD * gain[c] + bias[c]);
        let (x0, y0) = (t.pad_x as usize, t.pad_y as usize);
        let cw = ((crop.width as f32 * t.scale_x).round() as usize).min(iw - x0);
        let ch = ((crop.height as f32 * t.scale_y).round() as usize).min(ih - y0);
        let cols = sample_positions(crop.width as usize, cw, crop.x as usize);
        let rows = sample_positions(crop.height as usize, ch, crop.y as usize);
        let stride = width as usize * 3;
        for y in 0..ih {
            for x in 0..iw {
                let inside = (y0..y0 + ch).contains(&y) && (x0..x0 + cw).contains(&x);
                let px: [f32; 3] = if inside {
                    let (r, c) = (rows[y - y0], cols[x - x0]);
                    std::array::from_fn(|k| {
                        let at = |row: usize, col: usize| rgb[row * stride + col * 3 + k] as f32;
                        let upper = at(r.lo, c.lo) + (at(r.lo, c.hi) - at(r.lo, c.lo)) * c.w;
                        let lower = at(r.hi, c.lo) + (at(r.hi, c.hi) - at(r.hi, c.lo)) * c.w;
                        (upper + (lower - upper) * r.w) * gain[k] + bias[k]
                    })
                } else {
                    pad
                };
                for (k, v) in px.into_iter().enumerate() {
                    match input.order {
                        TensorOrder::Nhwc => out[(y * iw + x) * 3 + k] = v,
                        TensorOrder::Nchw => out[k * iw * ih + y * iw + x] = v,
                    }
                }
            }
        }
    }

    #[test]
    fn two_pass_resize_matches_the_per_pixel_formula_exactly() {
        // A noisy 97x61 frame; crops that shrink, grow, stretch and
        // letterbox, touching the frame's edges.
        let (w, h) = (97u32, 61u32);
        let mut state = 12345u32;
        let rgb: Vec<u8> = (0..w * h * 3)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) as u8
            })
            .collect();
        let crops = [
            Crop {
                x: 0,
                y: 0,
                width: w,
                height: h,
            },
            Crop {
                x: 90,
                y: 50,
                width: 7,
                height: 11,
            },
            Crop {
                x: 13,
                y: 4,
                width: 30,
                height: 55,
            },
            Crop {
                x: 40,
                y: 20,
                width: 1,
                height: 1,
            },
        ];
        for resize in [Resize::Stretch, Resize::Letterbox] {
            for order in [TensorOrder::Nchw, TensorOrder::Nhwc] {
                for (iw, ih) in [(32, 64), (64, 48), (200, 150)] {
                    let mut spec = input(resize, order, iw, ih);
                    spec.scale = 1.0 / 255.0;
                    spec.mean = [0.485, 0.456, 0.406];
                    spec.std = [0.229, 0.224, 0.225];
                    for crop in crops {
                        let n = 3 * iw as usize * ih as usize;
                        let (mut fast, mut slow) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                        fill_crop(&rgb, w, crop, &spec, &mut fast);
                        fill_crop_pixel_by_pixel(&rgb, w, crop, &spec, &mut slow);
                        let same = fast
                            .iter()
                            .zip(&slow)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{resize:?} {order:?} {iw}x{ih} {crop:?} differ");
                    }
                }
            }
        }
    }

    #[test]
    fn nhwc_keeps_pixels_interleaved() {
        let rgb = [10, 20, 30];
        let spec = input(Resize::Stretch, TensorOrder::Nhwc, 2, 2);
        let mut out = Vec::new();
        fill_tensor(&rgb, 1, 1, &spec, &mut out);
        assert_eq!(out, [10.0, 20.0, 30.0].repeat(4));
    }
}
