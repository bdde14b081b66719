//! Deterministic challenging-condition variants of a base image.
//!
//! Security cameras see night infrared, fog, rain, glare, dim light, motion
//! blur and lenses partly covered by a leaf or a hand. Each [`Variant`] is a
//! pure function of the input pixels: the same input gives the same bytes on
//! every machine (integer arithmetic where it matters, a fixed-seed PRNG).

use std::fmt;
use std::str::FromStr;

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

/// A challenging condition applied to a base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Night infrared: greyscale with a green-ish tint, low contrast, sensor noise.
    NightIr,
    /// Fog: blended towards grey, denser towards the top of the frame.
    Fog,
    /// Rain: slanted bright streaks over a slightly darkened frame.
    Rain,
    /// Glare: a radial bright blob as from a low sun or headlight.
    Glare,
    /// Low light: darkened by a gamma curve, with noise.
    LowLight,
    /// Motion blur: horizontal box blur.
    MotionBlur,
    /// Lens partly covered: an opaque dark blob over the lower-left part.
    LensCovered,
}

impl Variant {
    /// Every variant, in a fixed order.
    pub const ALL: [Variant; 7] = [
        Variant::NightIr,
        Variant::Fog,
        Variant::Rain,
        Variant::Glare,
        Variant::LowLight,
        Variant::MotionBlur,
        Variant::LensCovered,
    ];

    /// The name used in data files, e.g. `night_ir`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::NightIr => "night_ir",
            Variant::Fog => "fog",
            Variant::Rain => "rain",
            Variant::Glare => "glare",
            Variant::LowLight => "low_light",
            Variant::MotionBlur => "motion_blur",
            Variant::LensCovered => "lens_covered",
        }
    }

    fn seed(self) -> u64 {
        0x5EED_0000 + self as u64
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown variant name.
#[derive(Debug, thiserror::Error)]
#[error("unknown image variant {0:?} (known: night_ir, fog, rain, glare, low_light, motion_blur, lens_covered)")]
pub struct UnknownVariant(pub String);

impl FromStr for Variant {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| UnknownVariant(s.to_string()))
    }
}

/// SplitMix64: a small, well-mixed, fixed-seed generator.
struct Prng(u64);

impl Prng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// Uniform integer noise in `-amp..=amp`.
    fn noise(&mut self, amp: i32) -> i32 {
        self.below((2 * amp + 1) as u32) as i32 - amp
    }
}

fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Integer luma (BT.601), 0..=255.
fn luma(p: &Rgb<u8>) -> i32 {
    (299 * i32::from(p[0]) + 587 * i32::from(p[1]) + 114 * i32::from(p[2])) / 1000
}

/// Applies a variant to an image; pure and deterministic.
pub fn apply(variant: Variant, img: &RgbImage) -> RgbImage {
    match variant {
        Variant::NightIr => night_ir(img, variant.seed()),
        Variant::Fog => fog(img),
        Variant::Rain => rain(img, variant.seed()),
        Variant::Glare => glare(img),
        Variant::LowLight => low_light(img, variant.seed()),
        Variant::MotionBlur => motion_blur(img, 7),
        Variant::LensCovered => lens_covered(img, variant.seed()),
    }
}

fn night_ir(img: &RgbImage, seed: u64) -> RgbImage {
    let mut rng = Prng(seed);
    let mut out = RgbImage::new(img.width(), img.height());
    for (o, p) in out.pixels_mut().zip(img.pixels()) {
        // Contrast squeezed into 40..180, then sensor noise.
        let v = 40 + luma(p) * 140 / 255 + rng.noise(12);
        let g = clamp_u8(v);
        let rb = clamp_u8(v * 85 / 100);
        *o = Rgb([rb, g, clamp_u8(v * 90 / 100)]);
    }
    out
}

fn fog(img: &RgbImage) -> RgbImage {
    let h = img.height().max(1) as i32;
    let mut out = img.clone();
    for (_, y, p) in out.enumerate_pixels_mut() {
        // Fog strength (per mille): 800 at the top row down to 450 at the bottom.
        let a = 800 - 350 * y as i32 / h;
        for c in 0..3 {
            let v = i32::from(p[c]);
            p[c] = clamp_u8((v * (1000 - a) + 205 * a) / 1000);
        }
    }
    out
}

fn rain(img: &RgbImage, seed: u64) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in 0..3 {
            p[c] = clamp_u8(i32::from(p[c]) * 80 / 100);
        }
    }
    if w == 0 || h == 0 {
        return out;
    }
    let mut rng = Prng(seed);
    let streaks = (u64::from(w) * u64::from(h) / 500).max(1);
    for _ in 0..streaks {
        let x0 = rng.below(w) as i32;
        let y0 = rng.below(h) as i32;
        let len = 10 + rng.below(20) as i32;
        for t in 0..len {
            // Slanted: one pixel left every four down.
            let x = x0 - t / 4;
            let y = y0 + t;
            if x < 0 || y >= h as i32 {
                break;
            }
            let p = out.get_pixel_mut(x as u32, y as u32);
            for c in 0..3 {
                p[c] = clamp_u8((i32::from(p[c]) + 215) / 2 + 10);
            }
        }
    }
    out
}

fn glare(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (cx, cy) = (w * 7 / 10, h * 3 / 10);
    let r = (w.min(h) * 45 / 100).max(1);
    let mut out = img.clone();
    for (x, y, p) in out.enumerate_pixels_mut() {
        let (dx, dy) = (x as i64 - cx, y as i64 - cy);
        let d2 = dx * dx + dy * dy;
        if d2 >= r * r {
            continue;
        }
        // Intensity (per mille) falls off as (1 - d²/r²)^2, full at the centre.
        let f = 1000 - d2 * 1000 / (r * r);
        let k = f * f / 1000;
        for c in 0..3 {
            let v = i64::from(p[c]);
            p[c] = (v + (255 - v) * k / 1000).clamp(0, 255) as u8;
        }
    }
    out
}

fn low_light(img: &RgbImage, seed: u64) -> RgbImage {
    // v' = 255 * (v/255)^2.2 * 0.45, tabulated once.
    let table: Vec<i32> = (0..256)
        .map(|v| (255.0 * (f64::from(v) / 255.0).powf(2.2) * 0.45).round() as i32)
        .collect();
    let mut rng = Prng(seed);
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let n = rng.noise(5);
        for c in 0..3 {
            p[c] = clamp_u8(table[usize::from(p[c])] + n);
        }
    }
    out
}

fn motion_blur(img: &RgbImage, radius: i32) -> RgbImage {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let mut out = RgbImage::new(img.width(), img.height());
    let n = 2 * radius + 1;
    for y in 0..h {
        for x in 0..w {
            let mut sum = [0i32; 3];
            for dx in -radius..=radius {
                let sx = (x + dx).clamp(0, w - 1);
                let p = img.get_pixel(sx as u32, y as u32);
                for c in 0..3 {
                    sum[c] += i32::from(p[c]);
                }
            }
            out.put_pixel(
                x as u32,
                y as u32,
                Rgb([
                    clamp_u8((sum[0] + n / 2) / n),
                    clamp_u8((sum[1] + n / 2) / n),
                    clamp_u8((sum[2] + n / 2) / n),
                ]),
            );
        }
    }
    out
}

fn lens_covered(img: &RgbImage, seed: u64) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    // An ellipse centred low-left, covering roughly a third of the frame.
    let (cx, cy) = (w * 22 / 100, h * 78 / 100);
    let (rx, ry) = ((w * 45 / 100).max(1), (h * 55 / 100).max(1));
    let mut rng = Prng(seed);
    let mut out = img.clone();
    for (x, y, p) in out.enumerate_pixels_mut() {
        let (dx, dy) = (x as i64 - cx, y as i64 - cy);
        // Normalised radius squared, per mille.
        let q = dx * dx * 1000 / (rx * rx) + dy * dy * 1000 / (ry * ry);
        if q >= 1000 {
            continue;
        }
        let base = 14 + rng.noise(4);
        if q < 850 {
            *p = Rgb([clamp_u8(base + 4), clamp_u8(base + 2), clamp_u8(base)]);
        } else {
            // Soft edge: blend from cover to image over the outer band.
            let a = (1000 - q) * 1000 / 150; // 1000 at q=850, 0 at q=1000
            for c in 0..3 {
                let v = i64::from(p[c]);
                p[c] = ((v * (1000 - a) + i64::from(base) * a) / 1000).clamp(0, 255) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic test picture: gradients plus a checker pattern.
    fn sample() -> RgbImage {
        RgbImage::from_fn(160, 120, |x, y| {
            let checker = if (x / 10 + y / 10) % 2 == 0 { 60 } else { 0 };
            Rgb([
                (x * 255 / 160) as u8 / 2 + checker,
                (y * 255 / 120) as u8 / 2 + checker,
                120 + checker,
            ])
        })
    }

    fn lumas(img: &RgbImage) -> Vec<f64> {
        img.pixels().map(|p| f64::from(luma(p))).collect()
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    fn std(v: &[f64]) -> f64 {
        let m = mean(v);
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
    }

    /// Mean absolute difference between horizontal neighbours (sharpness).
    fn h_energy(img: &RgbImage) -> f64 {
        let mut s = 0.0;
        let mut n = 0.0;
        for y in 0..img.height() {
            for x in 1..img.width() {
                s += (luma(img.get_pixel(x, y)) - luma(img.get_pixel(x - 1, y))).abs() as f64;
                n += 1.0;
            }
        }
        s / n
    }

    #[test]
    fn every_variant_is_deterministic_and_changes_the_image() {
        let img = sample();
        for v in Variant::ALL {
            let a = apply(v, &img);
            let b = apply(v, &img);
            assert_eq!(a.as_raw(), b.as_raw(), "{v} not deterministic");
            assert_eq!(a.dimensions(), img.dimensions());
            assert_ne!(a.as_raw(), img.as_raw(), "{v} changed nothing");
            assert_eq!(v.name().parse::<Variant>().unwrap(), v);
        }
        assert!("snow".parse::<Variant>().is_err());
    }

    #[test]
    fn night_ir_is_tinted_grey_and_flatter() {
        let img = sample();
        let out = apply(Variant::NightIr, &img);
        assert!(std(&lumas(&out)) < std(&lumas(&img)));
        for p in out.pixels() {
            assert!(p[1] >= p[0] && p[1] >= p[2], "green should dominate: {p:?}");
            assert!(p[0].abs_diff(p[2]) <= 8, "near grey: {p:?}");
        }
    }

    #[test]
    fn fog_lowers_contrast_and_is_denser_on_top() {
        let img = sample();
        let out = apply(Variant::Fog, &img);
        assert!(std(&lumas(&out)) < 0.6 * std(&lumas(&img)));
        let row_std = |im: &RgbImage, y: u32| {
            std(&(0..im.width())
                .map(|x| f64::from(luma(im.get_pixel(x, y))))
                .collect::<Vec<_>>())
        };
        assert!(row_std(&out, 2) < row_std(&out, 117));
    }

    #[test]
    fn rain_adds_bright_streaks_on_a_darker_frame() {
        let img = RgbImage::from_pixel(200, 150, Rgb([100, 100, 100]));
        let out = apply(Variant::Rain, &img);
        let bright = out.pixels().filter(|p| p[0] > 150).count();
        let total = (200 * 150) as usize;
        assert!(bright > total / 50 && bright < total / 2, "{bright}");
        assert!(out.pixels().filter(|p| p[0] == 80).count() > total / 2);
    }

    #[test]
    fn glare_brightens_a_blob() {
        let img = sample();
        let out = apply(Variant::Glare, &img);
        let centre = out.get_pixel(112, 36);
        assert!(centre.0.iter().all(|&c| c >= 250), "{centre:?}");
        assert!(mean(&lumas(&out)) > mean(&lumas(&img)) + 10.0);
        assert_eq!(out.get_pixel(0, 119), img.get_pixel(0, 119));
    }

    #[test]
    fn low_light_darkens() {
        let img = sample();
        let out = apply(Variant::LowLight, &img);
        assert!(mean(&lumas(&out)) < 0.5 * mean(&lumas(&img)));
    }

    #[test]
    fn motion_blur_smooths_horizontally_only() {
        let img = sample();
        let out = apply(Variant::MotionBlur, &img);
        assert!(h_energy(&out) < 0.5 * h_energy(&img));
        // A horizontally constant image is unchanged.
        let stripes = RgbImage::from_fn(50, 40, |_, y| Rgb([(y * 6) as u8, 0, 0]));
        assert_eq!(
            apply(Variant::MotionBlur, &stripes).as_raw(),
            stripes.as_raw()
        );
    }

    #[test]
    fn lens_covered_has_a_large_dark_region() {
        let img = RgbImage::from_pixel(200, 150, Rgb([180, 180, 180]));
        let out = apply(Variant::LensCovered, &img);
        let dark = out.pixels().filter(|p| luma(p) < 30).count();
        let total = 200 * 150;
        assert!(dark > total / 5 && dark < total * 6 / 10, "{dark}");
        assert!(luma(out.get_pixel(44, 117)) < 30);
        assert_eq!(out.get_pixel(199, 0), img.get_pixel(199, 0));
    }
}
