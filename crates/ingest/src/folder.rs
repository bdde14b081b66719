use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use streamer_core::Frame;

use crate::pipeline::{Pipeline, IMAGE_TEMPLATE};
use crate::{Fps, FrameSource, IngestError};

const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "webp"];

/// A folder of still images, read in file-name order; image `i` is stamped
/// `i / fps` seconds, as if a camera had taken one every `1 / fps` s.
/// Each image is decoded by its own short GStreamer pipeline, so images of
/// different formats and sizes can share a folder.
pub struct ImageFolderSource {
    images: Vec<PathBuf>,
    camera: Arc<str>,
    seq: u64,
    fps: Fps,
}

impl ImageFolderSource {
    pub fn open(dir: &Path, camera: Arc<str>, fps: Fps) -> Result<Self, IngestError> {
        let unreadable = |e: std::io::Error| IngestError::Unreadable {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(unreadable)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        if images.is_empty() {
            return Err(IngestError::EmptyFolder {
                path: dir.to_path_buf(),
            });
        }
        images.sort();
        Ok(Self {
            images,
            camera,
            seq: 0,
            fps,
        })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

impl FrameSource for ImageFolderSource {
    fn next_frame(&mut self) -> Result<Frame, IngestError> {
        let Some(path) = self.images.get(self.seq as usize) else {
            return Err(IngestError::EndOfStream);
        };
        let location = path.to_str().ok_or_else(|| IngestError::Unreadable {
            path: path.clone(),
            message: "path is not valid UTF-8".into(),
        })?;
        let pipeline = Pipeline::launch(IMAGE_TEMPLATE, None, "location", location)?;
        let (_, width, height, rgb) = pipeline.pull().map_err(|e| match e {
            IngestError::EndOfStream => IngestError::Unreadable {
                path: path.clone(),
                message: "decoder produced no image".into(),
            },
            other => other,
        })?;
        let pts = Duration::from_secs_f64(self.seq as f64 / self.fps.as_f64());
        let frame = Frame::new(self.camera.clone(), self.seq, pts, width, height, rgb);
        self.seq += 1;
        Ok(frame)
    }

    fn camera(&self) -> &Arc<str> {
        &self.camera
    }
}
