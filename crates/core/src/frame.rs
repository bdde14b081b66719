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
