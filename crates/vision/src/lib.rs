//! Vision models over ONNX Runtime: the person detector and the person
//! embedder, with the pre- and post-processing that turns frames into
//! tensors and tensors into [`Detection`](streamer_core::Detection)s and
//! L2-normalised embedding vectors.

pub mod colour;
mod detector;
mod embedder;
mod error;
pub mod nms;
pub mod preprocess;
mod runtime;

pub use colour::{colour_signature, COLOUR_DIM};
pub use detector::{Detector, DetectorTimings, RawOutput};
pub use embedder::{
    calibration_path, centred, normalised, Calibration, Embedder, DEFAULT_MARGIN, MAX_BATCH,
};
pub use error::VisionError;
pub use preprocess::Transform;
pub use runtime::{default_threads, OrtRuntime};
