//! How good a crop is as a visit's snapshot: bigger and sharper is better.

use streamer_core::{BBox, Frame};

/// Sharpness is estimated on at most this many samples per axis.
const SHARPNESS_SAMPLES: u32 = 64;

/// Boxes touching the frame's edge show part of a person: their score is
/// scaled by this.
const EDGE_PENALTY: f32 = 0.5;

/// Pixels from the edge within which a box counts as touching it.
const EDGE_PX: f32 = 2.0;

/// Snapshot quality of `bbox` in `frame`: its area (pixels) times the mean
/// absolute Laplacian of its luma (a sharpness estimate, grey levels), halved
/// when the box touches the frame's edge.
pub fn snapshot_quality(frame: &Frame, bbox: &BBox) -> f32 {
    let b = bbox.clamp(frame.width as f32, frame.height as f32);
    let area = b.area();
    if area <= 0.0 {
        return 0.0;
    }
    let (x0, y0) = (b.x1 as u32, b.y1 as u32);
    let (x1, y1) = (
        (b.x2 as u32).min(frame.width),
        (b.y2 as u32).min(frame.height),
    );
    let step_x = ((x1 - x0) / SHARPNESS_SAMPLES).max(1);
    let step_y = ((y1 - y0) / SHARPNESS_SAMPLES).max(1);
    let luma = |x: u32, y: u32| {
        let i = (y as usize * frame.width as usize + x as usize) * 3;
        let p = &frame.rgb[i..i + 3];
        0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
    };
    let (mut sum, mut n) = (0.0f32, 0u32);
    let mut y = y0 + 1;
    while y + 1 < y1 {
        let mut x = x0 + 1;
        while x + 1 < x1 {
            let lap = luma(x - 1, y) + luma(x + 1, y) + luma(x, y - 1) + luma(x, y + 1)
                - 4.0 * luma(x, y);
            sum += lap.abs();
            n += 1;
            x += step_x;
        }
        y += step_y;
    }
    let sharpness = if n == 0 { 0.0 } else { sum / n as f32 };
    let penalty = if touches_edge(frame, bbox) {
        EDGE_PENALTY
    } else {
        1.0
    };
    area * sharpness * penalty
}

/// Whether `bbox` touches the edge of `frame` (within two pixels): the
/// frame cuts the person.
pub fn touches_edge(frame: &Frame, bbox: &BBox) -> bool {
    let (fw, fh) = (frame.width as f32, frame.height as f32);
    bbox.x1 <= EDGE_PX || bbox.y1 <= EDGE_PX || bbox.x2 >= fw - EDGE_PX || bbox.y2 >= fh - EDGE_PX
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn frame(rgb: Vec<u8>) -> Frame {
        Frame::new(Arc::from("a"), 0, Duration::ZERO, 64, 64, rgb)
    }

    #[test]
    fn sharp_crops_beat_flat_ones_and_edges_are_penalised() {
        let flat = frame(vec![128; 64 * 64 * 3]);
        let checker: Vec<u8> = (0..64 * 64)
            .flat_map(|i| {
                let v = if (i % 64 + i / 64) % 2 == 0 { 0 } else { 255 };
                [v, v, v]
            })
            .collect();
        let sharp = frame(checker);
        let inner = BBox::new(10.0, 10.0, 40.0, 40.0);
        assert_eq!(snapshot_quality(&flat, &inner), 0.0);
        let q = snapshot_quality(&sharp, &inner);
        assert!(q > 0.0);
        let edge = BBox::new(0.0, 10.0, 30.0, 40.0);
        assert!(snapshot_quality(&sharp, &edge) < q);
        let bigger = BBox::new(5.0, 5.0, 50.0, 50.0);
        assert!(snapshot_quality(&sharp, &bigger) > q);
    }
}
