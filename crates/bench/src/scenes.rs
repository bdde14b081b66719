//! Home-security scenes with known truth by construction.
//!
//! A [`Scene`] is a real photo (a catalogue image) with real people cut out
//! of the vtest footage pasted in where the scene says, a parcel or a car's
//! headlights if it says so, a lighting condition (day, night, infrared)
//! and a camera's timestamp overlay. What the picture shows is therefore
//! known exactly: the test asks the question the product exists for (how
//! urgent is this, should an alert go out) and the truth follows from how
//! the scene was made, not from anyone's reading of a photo.
//!
//! Everything here is a pure function of its input pixels: the caller
//! (the CLI) loads the photos and the footage frames.

use image::imageops::{self, FilterType};
use image::{GrayImage, Luma, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::vlm_images::{apply, Variant};

/// How a scene is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    /// Catalogue key of the photo the scene is built on.
    pub background: String,
    /// People pasted in, back to front.
    #[serde(default)]
    pub people: Vec<Person>,
    /// A cardboard parcel standing on the ground.
    #[serde(default)]
    pub parcel: Option<Parcel>,
    /// A car's headlights (a pair of lamps and the light they throw).
    #[serde(default)]
    pub headlights: Option<Headlights>,
    /// Lighting of the whole picture.
    #[serde(default)]
    pub light: Light,
    /// Where a night scene's one lamp (porch light, street light) shines
    /// from, in normalised coordinates; people near it stay visible.
    #[serde(default)]
    pub lamp: Option<[f64; 2]>,
    /// The camera's clock and name as its overlay prints them, top left
    /// (digits, capital letters, space, `-`, `:`, `/`, `.`).
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// A person cut out of a vtest frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Time of the vtest frame, seconds.
    pub time_s: f64,
    /// The person's box in that frame, `[x1, y1, x2, y2]` pixels.
    #[serde(rename = "box")]
    pub bbox: [u32; 4],
    /// Where their feet go (for someone lying down: the middle of their
    /// body on the ground), normalised `[x, y]` of the photo.
    pub at: [f64; 2],
    /// Their height (lying: their length) as a share of the photo's height.
    pub height: f64,
    /// Lying on the ground instead of standing.
    #[serde(default)]
    pub lying: bool,
}

/// A parcel on the ground: `at` is the middle of its bottom edge
/// (normalised), `width` a share of the photo's width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parcel {
    pub at: [f64; 2],
    pub width: f64,
}

/// A car's two headlights: `at` is the point between them (normalised),
/// `spacing` the distance between the lamps as a share of the photo's width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Headlights {
    pub at: [f64; 2],
    pub spacing: f64,
}

/// The scene's lighting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Light {
    /// The photo as it is.
    #[default]
    Day,
    /// Dark, blue-ish and noisy, lit only around the lamp.
    Night,
    /// The camera's infrared night mode: grey, flat, noisy.
    Ir,
}

/// A person cut out of a frame: colour and coverage (255 = person).
#[derive(Debug, Clone)]
pub struct Cutout {
    pub rgb: RgbImage,
    pub alpha: GrayImage,
}

impl Scene {
    /// Checks what can be checked without pixels: coordinates inside the
    /// photo, sizes that make sense, an overlay the font can print.
    pub fn validate(&self) -> Result<(), String> {
        let inside = |p: [f64; 2], what: &str| {
            if (0.0..=1.0).contains(&p[0]) && (0.0..=1.0).contains(&p[1]) {
                Ok(())
            } else {
                Err(format!("{what} {p:?} is outside the photo (0..1)"))
            }
        };
        for (i, p) in self.people.iter().enumerate() {
            inside(p.at, &format!("person {i}"))?;
            if !(0.02..=1.0).contains(&p.height) {
                return Err(format!("person {i}: height {} is not in 0.02..1", p.height));
            }
            let [x1, y1, x2, y2] = p.bbox;
            if x2 <= x1 + 4 || y2 <= y1 + 4 {
                return Err(format!("person {i}: box {:?} is empty", p.bbox));
            }
        }
        if let Some(parcel) = &self.parcel {
            inside(parcel.at, "parcel")?;
            if !(0.01..=0.5).contains(&parcel.width) {
                return Err(format!("parcel width {} is not in 0.01..0.5", parcel.width));
            }
        }
        if let Some(h) = &self.headlights {
            inside(h.at, "headlights")?;
        }
        if let Some(lamp) = self.lamp {
            inside(lamp, "lamp")?;
        }
        if let Some(text) = &self.timestamp {
            if let Some(c) = text.chars().find(|c| glyph(*c).is_none()) {
                return Err(format!("timestamp: the overlay font has no {c:?}"));
            }
        }
        Ok(())
    }
}

/// Cuts the person in `bbox` out of `frame`: a pixel belongs to them where
/// it differs from the empty scene (the footage's median), cleaned of
/// speckle and holes, with soft edges.
pub fn cut_out(frame: &RgbImage, empty: &RgbImage, bbox: [u32; 4]) -> Cutout {
    let [x1, y1, x2, y2] = bbox;
    let x2 = x2.min(frame.width()).min(empty.width());
    let y2 = y2.min(frame.height()).min(empty.height());
    let (w, h) = (x2.saturating_sub(x1), y2.saturating_sub(y1));
    let rgb = imageops::crop_imm(frame, x1, y1, w, h).to_image();
    let mut mask = GrayImage::from_fn(w, h, |x, y| {
        let a = frame.get_pixel(x1 + x, y1 + y);
        let b = empty.get_pixel(x1 + x, y1 + y);
        let diff = (0..3)
            .map(|c| a[c].abs_diff(b[c]))
            .max()
            .unwrap_or_default();
        Luma([if diff > 28 && !is_shadow(a, b) {
            255
        } else {
            0
        }])
    });
    // Close small holes (dilate, erode), then drop speckle (erode, dilate).
    mask = erode(&dilate(&mask));
    mask = dilate(&erode(&mask));
    let alpha = imageops::blur(&mask, 0.8);
    Cutout { rgb, alpha }
}

/// A cast shadow darkens the ground evenly in every channel; a person's
/// clothes change its colour or darken it far more.
fn is_shadow(pixel: &Rgb<u8>, empty: &Rgb<u8>) -> bool {
    let ratios: Vec<f64> = (0..3)
        .map(|c| (f64::from(pixel[c]) + 1.0) / (f64::from(empty[c]) + 1.0))
        .collect();
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    lo > 0.4 && hi < 0.95 && hi - lo < 0.1
}

fn morph(mask: &GrayImage, grow: bool) -> GrayImage {
    let (w, h) = mask.dimensions();
    GrayImage::from_fn(w, h, |x, y| {
        let mut hit = !grow;
        for dy in -1i64..=1 {
            for dx in -1i64..=1 {
                let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                let on = nx >= 0
                    && ny >= 0
                    && (nx as u32) < w
                    && (ny as u32) < h
                    && mask.get_pixel(nx as u32, ny as u32)[0] > 127;
                if grow && on {
                    hit = true;
                }
                if !grow && !on {
                    hit = false;
                }
            }
        }
        Luma([if hit { 255 } else { 0 }])
    })
}

fn dilate(mask: &GrayImage) -> GrayImage {
    morph(mask, true)
}

fn erode(mask: &GrayImage) -> GrayImage {
    morph(mask, false)
}

/// Builds the scene on `background`; `cutouts[i]` is `scene.people[i]`.
pub fn compose(scene: &Scene, background: &RgbImage, cutouts: &[Cutout]) -> RgbImage {
    let mut img = background.clone();
    let (bw, bh) = (f64::from(img.width()), f64::from(img.height()));
    if let Some(parcel) = &scene.parcel {
        draw_parcel(&mut img, parcel);
    }
    for (person, cut) in scene.people.iter().zip(cutouts) {
        let (rgb, alpha) = if person.lying {
            // Feet to the left, head to the right, on the ground.
            (
                imageops::rotate270(&cut.rgb),
                imageops::rotate270(&cut.alpha),
            )
        } else {
            (cut.rgb.clone(), cut.alpha.clone())
        };
        let long_side = f64::from(rgb.width().max(rgb.height()).max(1));
        let scale = person.height * bh / long_side;
        let w = ((f64::from(rgb.width()) * scale).round() as u32).max(1);
        let h = ((f64::from(rgb.height()) * scale).round() as u32).max(1);
        let rgb = imageops::resize(&rgb, w, h, FilterType::CatmullRom);
        let alpha = imageops::resize(&alpha, w, h, FilterType::Triangle);
        let left = (person.at[0] * bw - f64::from(w) / 2.0).round() as i64;
        let top = if person.lying {
            (person.at[1] * bh - f64::from(h) / 2.0).round() as i64
        } else {
            (person.at[1] * bh - f64::from(h)).round() as i64
        };
        let ground = if person.lying {
            top + i64::from(h) * 3 / 4
        } else {
            top + i64::from(h)
        };
        shadow(&mut img, left, ground, w);
        paste(&mut img, &rgb, &alpha, left, top);
    }
    match scene.light {
        Light::Day => {}
        Light::Night => night(&mut img, scene.lamp),
        Light::Ir => img = apply(Variant::NightIr, &img),
    }
    if let Some(h) = &scene.headlights {
        headlights(&mut img, h);
    }
    if let Some(text) = &scene.timestamp {
        overlay(&mut img, text);
    }
    img
}

fn paste(img: &mut RgbImage, rgb: &RgbImage, alpha: &GrayImage, left: i64, top: i64) {
    for (x, y, a) in alpha.enumerate_pixels() {
        let (tx, ty) = (left + i64::from(x), top + i64::from(y));
        if tx < 0 || ty < 0 || tx >= i64::from(img.width()) || ty >= i64::from(img.height()) {
            continue;
        }
        let a = u32::from(a[0]);
        if a == 0 {
            continue;
        }
        let src = rgb.get_pixel(x, y);
        let dst = img.get_pixel_mut(tx as u32, ty as u32);
        for c in 0..3 {
            dst[c] = ((u32::from(src[c]) * a + u32::from(dst[c]) * (255 - a)) / 255) as u8;
        }
    }
}

/// A soft dark ellipse where a figure meets the ground.
fn shadow(img: &mut RgbImage, left: i64, ground: i64, width: u32) {
    let rx = f64::from(width) * 0.6;
    let ry = (rx * 0.18).max(2.0);
    let cx = left as f64 + f64::from(width) / 2.0;
    darken_ellipse(img, cx, ground as f64, rx, ry, 0.45);
}

fn darken_ellipse(img: &mut RgbImage, cx: f64, cy: f64, rx: f64, ry: f64, strength: f64) {
    let (x0, x1) = ((cx - rx).floor().max(0.0), (cx + rx).ceil());
    let (y0, y1) = ((cy - ry).floor().max(0.0), (cy + ry).ceil());
    for y in y0 as u32..(y1 as u32).min(img.height()) {
        for x in x0 as u32..(x1 as u32).min(img.width()) {
            let d = ((f64::from(x) - cx) / rx).powi(2) + ((f64::from(y) - cy) / ry).powi(2);
            if d < 1.0 {
                let k = 1.0 - strength * (1.0 - d);
                let p = img.get_pixel_mut(x, y);
                for c in 0..3 {
                    p[c] = (f64::from(p[c]) * k) as u8;
                }
            }
        }
    }
}

/// A closed cardboard box seen slightly from above, with a tape strip.
fn draw_parcel(img: &mut RgbImage, parcel: &Parcel) {
    let (bw, bh) = (f64::from(img.width()), f64::from(img.height()));
    let w = parcel.width * bw;
    let front_h = w * 0.62;
    let top_h = w * 0.22;
    let cx = parcel.at[0] * bw;
    let bottom = parcel.at[1] * bh;
    let left = cx - w / 2.0;
    darken_ellipse(img, cx, bottom, w * 0.62, w * 0.1, 0.5);
    let front = Rgb([150u8, 108, 66]);
    let top = Rgb([186u8, 140, 92]);
    let tape = Rgb([205u8, 180, 128]);
    let edge = Rgb([92u8, 64, 38]);
    let slant = w * 0.12;
    for y in (bottom - front_h - top_h).max(0.0) as u32..(bottom as u32).min(img.height()) {
        let fy = f64::from(y);
        for x in (left.max(0.0) as u32)..((left + w + slant) as u32).min(img.width()) {
            let fx = f64::from(x);
            let colour = if fy >= bottom - front_h {
                // Front face.
                if fx > left + w {
                    continue;
                }
                let on_edge = fx - left < 1.5 || left + w - fx < 1.5 || bottom - fy < 1.5;
                if on_edge {
                    edge
                } else if (fx - cx).abs() < w * 0.06 && fy < bottom - front_h * 0.55 {
                    tape
                } else {
                    front
                }
            } else {
                // Top face: a parallelogram leaning right.
                let t = (bottom - front_h - fy) / top_h;
                let shift = t * slant;
                if fx < left + shift || fx > left + w + shift {
                    continue;
                }
                if (fx - (cx + shift)).abs() < w * 0.06 {
                    tape
                } else {
                    top
                }
            };
            img.put_pixel(x, y, colour);
        }
    }
}

/// Night: a dark, blue-ish, noisy picture, with the lamp's pool of light.
fn night(img: &mut RgbImage, lamp: Option<[f64; 2]>) {
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let mut noise = 0x9E37_79B9_u64;
    for (x, y, p) in img.enumerate_pixels_mut() {
        let lit = lamp.map_or(0.0, |[lx, ly]| {
            let d = ((f64::from(x) / w - lx).powi(2) + (f64::from(y) / h - ly).powi(2)).sqrt();
            (1.0 - d / 0.35).max(0.0).powf(1.5)
        });
        let gain = 0.16 + 0.6 * lit;
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        let n = (noise % 9) as f64 - 4.0;
        let tint = [0.85, 0.95, 1.25];
        for c in 0..3 {
            // Lamplight is warm, the rest of the night cold.
            let warm = [1.15, 1.0, 0.75][c];
            let k = tint[c] * (1.0 - lit) + warm * lit;
            p[c] = (f64::from(p[c]) * gain * k + n).clamp(0.0, 255.0) as u8;
        }
    }
}

/// Two bright lamps with glare and the light they throw on the ground.
fn headlights(img: &mut RgbImage, h: &Headlights) {
    let (w, ht) = (f64::from(img.width()), f64::from(img.height()));
    let half = h.spacing * w / 2.0;
    let (cx, cy) = (h.at[0] * w, h.at[1] * ht);
    let radius = (h.spacing * w * 0.09).max(2.0);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (fx, fy) = (f64::from(x), f64::from(y));
        let mut light = 0.0;
        for lx in [cx - half, cx + half] {
            let d = ((fx - lx).powi(2) + (fy - cy).powi(2)).sqrt() / radius;
            light += if d < 1.0 {
                1.0
            } else {
                (1.0 / (d * d)).min(1.0) * 0.9
            };
        }
        // The beam on the road below and in front of the car.
        if fy > cy {
            let spread = (fy - cy) * 1.6 + half;
            let across = ((fx - cx).abs() / spread).min(1.0);
            let along = ((fy - cy) / (ht - cy).max(1.0)).min(1.0);
            light += 0.35 * (1.0 - across) * (1.0 - along * 0.7);
        }
        let light = light.min(1.0);
        let lamp = [255.0, 250.0, 225.0];
        for c in 0..3 {
            p[c] = (f64::from(p[c]) * (1.0 - light) + lamp[c] * light) as u8;
        }
    }
}

/// Prints `text` top left in white with a black outline, as camera
/// overlays do, at a size that stays legible at the picture's width.
fn overlay(img: &mut RgbImage, text: &str) {
    let scale = (img.width() / 240).max(2);
    let (mut x, y) = (4 * scale, 4 * scale);
    for c in text.chars() {
        if let Some(rows) = glyph(c) {
            for (pass, colour) in [(true, Rgb([0u8, 0, 0])), (false, Rgb([255u8, 255, 255]))] {
                for (row, bits) in rows.iter().enumerate() {
                    for col in 0..5u32 {
                        if bits & (0x10 >> col) == 0 {
                            continue;
                        }
                        let (px, py) = (x + col * scale, y + row as u32 * scale);
                        let grow = u32::from(pass);
                        fill(
                            img,
                            px.saturating_sub(grow),
                            py.saturating_sub(grow),
                            scale + 2 * grow,
                            colour,
                        );
                    }
                }
            }
        }
        x += 6 * scale;
    }
}

fn fill(img: &mut RgbImage, x: u32, y: u32, size: u32, colour: Rgb<u8>) {
    for yy in y..(y + size).min(img.height()) {
        for xx in x..(x + size).min(img.width()) {
            img.put_pixel(xx, yy, colour);
        }
    }
}

/// A 5×7 bitmap glyph (one byte a row, the low five bits, left bit high).
fn glyph(c: char) -> Option<[u8; 7]> {
    Some(match c.to_ascii_uppercase() {
        ' ' => [0; 7],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grey "empty scene" and a frame with a red figure in it.
    /// A grey "empty scene" and a frame with a red figure in it, and the
    /// figure's shadow on the ground beside its feet.
    fn frame_and_empty() -> (RgbImage, RgbImage) {
        let empty = RgbImage::from_pixel(80, 60, Rgb([120, 120, 120]));
        let mut frame = empty.clone();
        for y in 10..50 {
            for x in 30..45 {
                frame.put_pixel(x, y, Rgb([200, 30, 30]));
            }
        }
        for y in 45..53 {
            for x in 45..50 {
                frame.put_pixel(x, y, Rgb([80, 80, 80]));
            }
        }
        (frame, empty)
    }

    fn scene(people: Vec<Person>) -> Scene {
        Scene {
            background: "bg".into(),
            people,
            parcel: None,
            headlights: None,
            light: Light::Day,
            lamp: None,
            timestamp: None,
        }
    }

    fn person(lying: bool) -> Person {
        Person {
            time_s: 0.0,
            bbox: [25, 5, 50, 55],
            at: [0.5, 0.9],
            height: 0.5,
            lying,
        }
    }

    fn red(p: &Rgb<u8>) -> bool {
        p[0] > 150 && p[1] < 80
    }

    #[test]
    fn the_cutout_is_the_changed_pixels_only() {
        let (frame, empty) = frame_and_empty();
        let cut = cut_out(&frame, &empty, [25, 5, 50, 55]);
        assert_eq!(cut.alpha.dimensions(), (25, 50));
        // Inside the figure: opaque; the box's margin: transparent.
        assert!(cut.alpha.get_pixel(12, 25)[0] > 250);
        assert_eq!(cut.alpha.get_pixel(1, 25)[0], 0);
        assert_eq!(cut.alpha.get_pixel(12, 1)[0], 0);
        // The shadow is ground, not person.
        assert_eq!(cut.alpha.get_pixel(23, 45)[0], 0);
    }

    #[test]
    fn a_pasted_person_stands_where_the_scene_says() {
        let (frame, empty) = frame_and_empty();
        let cut = cut_out(&frame, &empty, [25, 5, 50, 55]);
        let bg = RgbImage::from_pixel(200, 100, Rgb([40, 160, 40]));
        let img = compose(&scene(vec![person(false)]), &bg, std::slice::from_ref(&cut));
        // Standing: 50 px tall, feet at y = 90, centred at x = 100.
        assert!(red(img.get_pixel(100, 70)));
        assert!(!red(img.get_pixel(100, 30)));
        assert!(!red(img.get_pixel(20, 70)));
        // Lying: wider than tall, around y = 90.
        let img = compose(&scene(vec![person(true)]), &bg, &[cut]);
        let reds: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| red(p))
            .map(|(x, y, _)| (x, y))
            .collect();
        let (xs, ys): (Vec<u32>, Vec<u32>) = reds.iter().copied().unzip();
        let spread = |v: &[u32]| v.iter().max().unwrap() - v.iter().min().unwrap();
        assert!(
            spread(&xs) > 2 * spread(&ys),
            "lying figure is not horizontal"
        );
        assert!(ys.iter().all(|y| (75..=100).contains(y)));
    }

    #[test]
    fn night_darkens_except_near_the_lamp_and_headlights_shine() {
        let bg = RgbImage::from_pixel(200, 100, Rgb([150, 150, 150]));
        let mut s = scene(vec![]);
        s.light = Light::Night;
        s.lamp = Some([0.1, 0.5]);
        let img = compose(&s, &bg, &[]);
        let near = img.get_pixel(20, 50)[0];
        let far = img.get_pixel(190, 50)[0];
        assert!(far < 40 && near > 2 * far, "near {near}, far {far}");
        s.headlights = Some(Headlights {
            at: [0.75, 0.5],
            spacing: 0.2,
        });
        let img = compose(&s, &bg, &[]);
        assert!(img.get_pixel(130, 50)[0] > 240, "a lamp is not bright");
        assert!(img.get_pixel(190, 50)[0] > far);
    }

    #[test]
    fn parcel_and_overlay_draw_where_asked() {
        let bg = RgbImage::from_pixel(480, 200, Rgb([60, 60, 60]));
        let mut s = scene(vec![]);
        s.parcel = Some(Parcel {
            at: [0.5, 0.9],
            width: 0.1,
        });
        s.timestamp = Some("2026-03-14 23:15 FRONT DOOR".into());
        s.validate().unwrap();
        let img = compose(&s, &bg, &[]);
        let p = img.get_pixel(230, 170);
        assert!(
            p[0] > p[2] + 40,
            "no cardboard at the parcel's place: {p:?}"
        );
        let white = img
            .enumerate_pixels()
            .filter(|(x, y, p)| *x < 240 && *y < 30 && p[0] == 255 && p[2] == 255)
            .count();
        assert!(white > 100, "the overlay printed {white} white pixels");
        s.timestamp = Some("23:15 ½".into());
        assert!(s.validate().unwrap_err().contains('½'));
    }
}
