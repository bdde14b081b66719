use serde::{Deserialize, Serialize};

/// An axis-aligned box in pixel coordinates: `(x1, y1)` top left, `(x2, y2)`
/// bottom right.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "[f32; 4]", from = "[f32; 4]")]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub const fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }

    /// A box from its centre and size, as YOLO heads emit them.
    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
    }

    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Intersection over union; 0 when either box is empty.
    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let iy = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// The box limited to `[0, width] x [0, height]`.
    pub fn clamp(&self, width: f32, height: f32) -> Self {
        Self::new(
            self.x1.clamp(0.0, width),
            self.y1.clamp(0.0, height),
            self.x2.clamp(0.0, width),
            self.y2.clamp(0.0, height),
        )
    }
}

impl From<BBox> for [f32; 4] {
    fn from(b: BBox) -> Self {
        [b.x1, b.y1, b.x2, b.y2]
    }
}

impl From<[f32; 4]> for BBox {
    fn from([x1, y1, x2, y2]: [f32; 4]) -> Self {
        Self::new(x1, y1, x2, y2)
    }
}

/// One object found in a frame, in that frame's pixel coordinates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub label: String,
    pub class_id: u32,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: BBox,
}

impl Detection {
    pub fn is_person(&self) -> bool {
        self.label == "person"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox::new(20.0, 20.0, 30.0, 30.0)), 0.0);
        // 50 shared of 150 total.
        let b = BBox::new(5.0, 0.0, 15.0, 10.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(BBox::new(1.0, 1.0, 1.0, 5.0).iou(&a), 0.0);
    }

    #[test]
    fn clamp_keeps_boxes_inside_the_frame() {
        let b = BBox::new(-5.0, 3.0, 700.0, 900.0).clamp(640.0, 480.0);
        assert_eq!(b, BBox::new(0.0, 3.0, 640.0, 480.0));
    }

    #[test]
    fn detection_serialises_box_as_array() {
        let d = Detection {
            label: "person".into(),
            class_id: 0,
            score: 0.5,
            bbox: BBox::new(1.0, 2.0, 3.0, 4.0),
        };
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["box"], serde_json::json!([1.0, 2.0, 3.0, 4.0]));
        let back: Detection = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
    }
}
