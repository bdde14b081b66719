//! Vision models over ONNX Runtime: the person detector (and, later, the
//! embedder), with the pre- and post-processing that turns frames into
//! tensors and tensors into [`Detection`](streamer_core::Detection)s.

mod detector;
mod error;
pub mod nms;
pub mod preprocess;
mod runtime;

pub use detector::{Detector, DetectorTimings, RawOutput};
pub use error::VisionError;
pub use preprocess::Transform;
pub use runtime::{default_threads, OrtRuntime};
