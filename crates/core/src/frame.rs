use std::sync::Arc;
use std::time::Duration;

/// One decoded video frame, tightly packed RGB8 (`width * 3` bytes a row).
#[derive(Clone)]
pub struct Frame {
    /// Name of the camera (or replay input) the frame came from.
    pub camera: Arc<str>,
    /// Position of the frame among the frames delivered by its source, from 0.
    pub seq: u64,
    /// Presentation time from the start of the stream.
    pub pts: Duration,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Frame {
    /// Wraps packed RGB8 pixels.
    ///
    /// # Panics
    /// If `rgb` does not hold exactly `width * height * 3` bytes.
    pub fn new(
        camera: Arc<str>,
        seq: u64,
        pts: Duration,
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    ) -> Self {
        assert_eq!(
            rgb.len(),
            width as usize * height as usize * 3,
            "frame buffer does not match {width}x{height} RGB8"
        );
        Self {
            camera,
            seq,
            pts,
            width,
            height,
            rgb,
        }
    }

    pub fn pts_ms(&self) -> u64 {
        self.pts.as_millis() as u64
    }

    /// The `width` x `height` region whose top-left corner is at (`x`, `y`),
    /// as a frame of its own from `camera` (a virtual camera cut from a
    /// wider view), with the same sequence number and time. `None` when the
    /// region is empty or does not fit inside this frame.
    pub fn region(
        &self,
        camera: Arc<str>,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    ) -> Option<Frame> {
        let fits = |start: u32, len: u32, limit: u32| {
            len > 0 && start.checked_add(len).is_some_and(|end| end <= limit)
        };
        if !fits(x, width, self.width) || !fits(y, height, self.height) {
            return None;
        }
        let stride = self.width as usize * 3;
        let row = width as usize * 3;
        let mut rgb = Vec::with_capacity(row * height as usize);
        for line in y as usize..(y + height) as usize {
            let start = line * stride + x as usize * 3;
            rgb.extend_from_slice(&self.rgb[start..start + row]);
        }
        Some(Frame::new(camera, self.seq, self.pts, width, height, rgb))
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("camera", &self.camera)
            .field("seq", &self.seq)
            .field("pts", &self.pts)
            .field("size", &format_args!("{}x{}", self.width, self.height))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x3 frame whose pixel (x, y) is [x, y, 7].
    fn frame() -> Frame {
        let rgb = (0..3u8)
            .flat_map(|y| (0..4u8).flat_map(move |x| [x, y, 7]))
            .collect();
        Frame::new(Arc::from("wide"), 5, Duration::from_millis(500), 4, 3, rgb)
    }

    #[test]
    fn a_region_is_a_frame_of_its_own_with_the_same_time() {
        let r = frame().region(Arc::from("left"), 1, 1, 2, 2).unwrap();
        assert_eq!(
            (&*r.camera, r.seq, r.pts_ms(), r.width, r.height),
            ("left", 5, 500, 2, 2)
        );
        assert_eq!(r.rgb, [1, 1, 7, 2, 1, 7, 1, 2, 7, 2, 2, 7]);
    }

    #[test]
    fn regions_outside_the_frame_or_empty_are_refused() {
        let f = frame();
        assert!(f.region(Arc::from("c"), 0, 0, 4, 3).is_some());
        assert!(f.region(Arc::from("c"), 1, 0, 4, 3).is_none());
        assert!(f.region(Arc::from("c"), 0, 2, 4, 2).is_none());
        assert!(f.region(Arc::from("c"), 0, 0, 0, 3).is_none());
        assert!(f.region(Arc::from("c"), u32::MAX, 0, 2, 1).is_none());
    }
}
