//! GStreamer sources that turn video files, image folders and live cameras
//! (RTSP, or any GStreamer source description) into RGB
//! [`Frame`](streamer_core::Frame)s at a sampling rate. Live cameras hand
//! over each decoded [`Picture`] first (YUV, before colour conversion), so
//! that a motion gate can keep a picture from detection without it ever
//! being converted.
//!
//! Each source is one GStreamer pipeline built from a template in
//! `pipelines/`, ending in an appsink. End of stream and pipeline errors come
//! back as [`IngestError`]s carrying GStreamer's own message.

mod error;
mod folder;
mod live;
mod pipeline;
mod video;

use std::path::Path;
use std::sync::Arc;

pub use error::IngestError;
pub use folder::ImageFolderSource;
pub use live::{LiveInput, LiveSettings, LiveSource, Picture, Transport, DEFAULT_MAX_WIDTH};
pub use video::VideoFileSource;

use streamer_core::Frame;

/// Sampling rate as a fraction, e.g. 2/1 or 1/2 frames per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fps {
    pub num: u32,
    pub den: u32,
}

impl Fps {
    /// The closest fraction to `fps` with a denominator up to 1000.
    pub fn from_f64(fps: f64) -> Result<Self, IngestError> {
        if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
            return Err(IngestError::Config(format!(
                "sampling fps must be between 0 and 1000, got {fps}"
            )));
        }
        let den = 1000;
        let num = (fps * den as f64).round() as u32;
        if num == 0 {
            // Below 1/1000 the fraction rounds to zero frames per second.
            return Err(IngestError::Config(format!(
                "sampling fps must be at least 0.001, got {fps}"
            )));
        }
        let g = gcd(num, den);
        Ok(Self {
            num: num / g,
            den: den / g,
        })
    }

    pub fn as_f64(&self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Anything that yields frames until the end of its stream.
pub trait FrameSource: Send {
    /// The next frame; `Err(IngestError::EndOfStream)` when the input is done.
    fn next_frame(&mut self) -> Result<Frame, IngestError>;

    /// The camera name frames are tagged with.
    fn camera(&self) -> &Arc<str>;
}

/// Opens `path` as a video file or, for a directory, an image folder.
pub fn open(path: &Path, camera: Arc<str>, fps: Fps) -> Result<Box<dyn FrameSource>, IngestError> {
    let meta = std::fs::metadata(path).map_err(|e| IngestError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if meta.is_dir() {
        Ok(Box::new(ImageFolderSource::open(path, camera, fps)?))
    } else {
        Ok(Box::new(VideoFileSource::open(path, camera, fps)?))
    }
}

/// Iterates a source's frames, ending cleanly at end of stream.
pub fn frames(
    mut source: Box<dyn FrameSource>,
) -> impl Iterator<Item = Result<Frame, IngestError>> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match source.next_frame() {
            Err(IngestError::EndOfStream) => {
                done = true;
                None
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
            ok => Some(ok),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fps_fractions() {
        assert_eq!(Fps::from_f64(2.0).unwrap(), Fps { num: 2, den: 1 });
        assert_eq!(Fps::from_f64(0.5).unwrap(), Fps { num: 1, den: 2 });
        assert_eq!(Fps::from_f64(12.5).unwrap(), Fps { num: 25, den: 2 });
        assert!(Fps::from_f64(0.0).is_err());
        assert!(Fps::from_f64(f64::NAN).is_err());
        // Rounds to 0/1000: an error, not a NaN frame duration later.
        assert!(Fps::from_f64(0.0004).is_err());
        assert_eq!(Fps::from_f64(0.001).unwrap(), Fps { num: 1, den: 1000 });
    }
}
