//! Not a test: `cargo test -p streamer-identity --test label_helper -- --ignored`
//! writes full-frame person tracks of vtest.avi and crop strips to
//! /tmp/identity-label, to label ground truth by looking at them.
//! `LABEL_FROM_S` and `LABEL_TO_S` pick the stretch (default 0 to 30 s,
//! the tuning set; the held-out set is 45 to 75 s, the validation set 30
//! to 45 s).

use std::sync::Arc;

use image::{Rgb, RgbImage};
use streamer_core::BBox;
use streamer_models::ModelCache;
use streamer_vision::{Detector, OrtRuntime};

fn seconds(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{var}: not whole seconds"))
        })
        .unwrap_or(default)
}

#[test]
#[ignore]
fn dump_tracks_for_labelling() {
    let out = std::path::Path::new("/tmp/identity-label");
    std::fs::create_dir_all(out).unwrap();
    let cache = ModelCache::from_env();
    let rt = OrtRuntime::init(&cache.require("onnxruntime").unwrap()).unwrap();
    let mut det = Detector::load(
        rt,
        &cache.require("centernet").unwrap(),
        cache.entry("centernet").unwrap().detector.clone().unwrap(),
        2,
    )
    .unwrap();
    let fps = streamer_ingest::Fps::from_f64(10.0).unwrap();
    let mut src =
        streamer_ingest::open(&cache.require("vtest").unwrap(), Arc::from("v"), fps).unwrap();
    // tracks: id -> list of (t, box, crop)
    let mut tracks: Vec<Vec<(u64, BBox)>> = Vec::new();
    let mut last: Vec<(usize, BBox, u64)> = Vec::new();
    let mut crops: Vec<Vec<RgbImage>> = Vec::new();
    let mut lines = String::new();
    let (from_ms, to_ms) = (
        seconds("LABEL_FROM_S", 0) * 1000,
        seconds("LABEL_TO_S", 30) * 1000,
    );
    while let Ok(frame) = src.next_frame() {
        let t = frame.pts_ms();
        if t < from_ms {
            continue;
        }
        if t >= to_ms {
            break;
        }
        let img = RgbImage::from_raw(frame.width, frame.height, frame.rgb.clone()).unwrap();
        let boxes: Vec<BBox> = det
            .detect(&frame)
            .unwrap()
            .into_iter()
            .filter(|d| d.is_person())
            .map(|d| d.bbox)
            .collect();
        let mut now = Vec::new();
        let mut used = vec![false; last.len()];
        for b in boxes {
            let best = last
                .iter()
                .enumerate()
                .filter(|(i, l)| !used[*i] && t - l.2 <= 400)
                .map(|(i, l)| (i, l.1.iou(&b)))
                .max_by(|a, c| a.1.total_cmp(&c.1));
            let id = match best {
                Some((i, iou)) if iou > 0.3 => {
                    used[i] = true;
                    last[i].0
                }
                _ => {
                    tracks.push(Vec::new());
                    crops.push(Vec::new());
                    tracks.len() - 1
                }
            };
            tracks[id].push((t, b));
            if tracks[id].len() % 8 == 1 {
                let (x, y) = (b.x1 as u32, b.y1 as u32);
                let (w, h) = ((b.width() as u32).max(1), (b.height() as u32).max(1));
                let c = image::imageops::crop_imm(&img, x, y, w, h).to_image();
                crops[id].push(image::imageops::resize(
                    &c,
                    48,
                    112,
                    image::imageops::FilterType::Triangle,
                ));
            }
            lines.push_str(&format!(
                "{t} {id} {:.0} {:.0} {:.0} {:.0}\n",
                b.x1, b.y1, b.x2, b.y2
            ));
            now.push((id, b, t));
        }
        // keep unmatched recent tracks
        for (i, l) in last.iter().enumerate() {
            if !used[i] && t - l.2 <= 400 && !now.iter().any(|n| n.0 == l.0) {
                now.push(*l);
            }
        }
        last = now;
        if t % 2000 == 0 {
            let mut canvas = img.clone();
            for (id, b, _) in &last {
                draw_rect(&mut canvas, b, *id);
            }
            canvas.save(out.join(format!("frame-{t:06}.png"))).unwrap();
        }
    }
    std::fs::write(out.join("tracks.txt"), lines).unwrap();
    // One strip per track: crops side by side.
    let ids: Vec<usize> = (0..tracks.len())
        .filter(|&i| tracks[i].len() >= 4)
        .collect();
    for (page, chunk) in ids.chunks(6).enumerate() {
        let mut sheet = RgbImage::new(12 * 50, 114 * chunk.len() as u32);
        for (row, &id) in chunk.iter().enumerate() {
            let n = crops[id].len();
            for k in 0..12.min(n) {
                let c = &crops[id][k * n / 12.min(n)];
                image::imageops::overlay(&mut sheet, c, k as i64 * 50, row as i64 * 114);
            }
        }
        sheet.save(out.join(format!("sheet-{page}.png"))).unwrap();
    }
    let mut rows = String::new();
    for (row, &id) in ids.iter().enumerate() {
        rows.push_str(&format!(
            "sheet {} row {}: track {id}: {} sightings, {}..{} ms, first {:?} last {:?}\n",
            row / 6,
            row % 6,
            tracks[id].len(),
            tracks[id][0].0,
            tracks[id].last().unwrap().0,
            tracks[id][0].1,
            tracks[id].last().unwrap().1
        ));
    }
    eprint!("{rows}");
    std::fs::write(out.join("rows.txt"), rows).unwrap();
}

fn draw_rect(img: &mut RgbImage, b: &BBox, id: usize) {
    let colors = [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [255, 0, 255],
        [0, 255, 255],
    ];
    let c = Rgb(colors[id % colors.len()]);
    let (w, h) = img.dimensions();
    let x1 = (b.x1 as u32).min(w - 1);
    let x2 = (b.x2 as u32).min(w - 1);
    let y1 = (b.y1 as u32).min(h - 1);
    let y2 = (b.y2 as u32).min(h - 1);
    for x in x1..=x2 {
        img.put_pixel(x, y1, c);
        img.put_pixel(x, y2, c);
    }
    for y in y1..=y2 {
        img.put_pixel(x1, y, c);
        img.put_pixel(x2, y, c);
    }
}
