use std::path::PathBuf;

/// Errors from loading or running a vision model.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("cannot load the ONNX Runtime library {path}: {message}. Run `streamer models fetch onnxruntime`, or point ORT_DYLIB_PATH at a libonnxruntime >= 1.22")]
    Runtime { path: PathBuf, message: String },

    #[error("cannot load model {path}: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },

    #[error("model {path} does not match its layout: {message}")]
    Layout { path: PathBuf, message: String },

    #[error("embedder calibration {path}: {message}. Run `streamer models calibrate --embedder NAME` (or `make models`) to write it")]
    Calibration { path: PathBuf, message: String },

    #[error("inference failed: {0}")]
    Inference(#[from] ort::Error),

    #[error("unexpected model output: {0}")]
    Output(String),
}
