//! Greedy per-class non-maximum suppression.

use streamer_core::Detection;

/// Keeps, for each class, the highest-scoring boxes and drops any box that
/// overlaps an already kept box of the same class by more than `iou`.
/// Returns the survivors sorted by descending score.
pub fn per_class(mut detections: Vec<Detection>, iou: f32) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(detections.len());
    for d in detections {
        let suppressed = kept
            .iter()
            .any(|k| k.class_id == d.class_id && k.bbox.iou(&d.bbox) > iou);
        if !suppressed {
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamer_core::BBox;

    fn det(class_id: u32, score: f32, x: f32) -> Detection {
        Detection {
            label: format!("c{class_id}"),
            class_id,
            score,
            bbox: BBox::new(x, 0.0, x + 10.0, 10.0),
        }
    }

    #[test]
    fn overlapping_boxes_of_one_class_collapse_to_the_best() {
        let out = per_class(
            vec![det(0, 0.5, 0.0), det(0, 0.9, 1.0), det(0, 0.7, 2.0)],
            0.5,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 0.9);
    }

    #[test]
    fn other_classes_and_distant_boxes_survive() {
        let out = per_class(
            vec![det(0, 0.9, 0.0), det(2, 0.8, 0.0), det(0, 0.6, 50.0)],
            0.5,
        );
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.8, 0.6]);
    }
}
