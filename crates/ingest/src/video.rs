use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use streamer_core::Frame;

use crate::pipeline::{Pipeline, FILE_TEMPLATE};
use crate::{Fps, FrameSource, IngestError};

/// A video file decoded by GStreamer and sampled to a fixed frame rate.
pub struct VideoFileSource {
    pipeline: Pipeline,
    camera: Arc<str>,
    seq: u64,
    fps: Fps,
}

impl VideoFileSource {
    pub fn open(path: &Path, camera: Arc<str>, fps: Fps) -> Result<Self, IngestError> {
        if !path.is_file() {
            return Err(IngestError::Unreadable {
                path: path.to_path_buf(),
                message: "no such file".into(),
            });
        }
        let location = path.to_str().ok_or_else(|| IngestError::Unreadable {
            path: path.to_path_buf(),
            message: "path is not valid UTF-8".into(),
        })?;
        Ok(Self {
            pipeline: Pipeline::launch(FILE_TEMPLATE, Some(fps), "location", location)?,
            camera,
            seq: 0,
            fps,
        })
    }
}

impl FrameSource for VideoFileSource {
    fn next_frame(&mut self) -> Result<Frame, IngestError> {
        let (pts, width, height, rgb) = self.pipeline.pull()?;
        // videorate stamps every output buffer; fall back to the frame index.
        let pts =
            pts.unwrap_or_else(|| Duration::from_secs_f64(self.seq as f64 / self.fps.as_f64()));
        let frame = Frame::new(self.camera.clone(), self.seq, pts, width, height, rgb);
        self.seq += 1;
        Ok(frame)
    }

    fn camera(&self) -> &Arc<str> {
        &self.camera
    }
}
