use std::path::PathBuf;

/// Errors from a frame source.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The input has no more frames (not a failure).
    #[error("end of stream")]
    EndOfStream,

    #[error("cannot initialise GStreamer: {0}")]
    Init(String),

    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },

    #[error("{path} contains no images (looked for .jpg, .jpeg, .png, .bmp, .webp)")]
    EmptyFolder { path: PathBuf },

    #[error("bad pipeline template {template}: {message}")]
    Template {
        template: &'static str,
        message: String,
    },

    /// An error posted on the pipeline's bus, with GStreamer's own message.
    #[error("GStreamer error from {element} while reading {input}: {message}{}", debug.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Pipeline {
        input: String,
        element: String,
        message: String,
        debug: Option<String>,
    },

    #[error("unexpected frame format from {input}: {message}")]
    Format { input: String, message: String },

    #[error("invalid source settings: {0}")]
    Config(String),
}
