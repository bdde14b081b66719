use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReasonError {
    #[error("cannot start the llama.cpp backend: {0}")]
    Backend(String),

    #[error("{path} is not a GGUF model file ({reason}). Fix: run `streamer models verify` and `streamer models fetch --force NAME`, or point the config at a .gguf file")]
    NotGguf { path: PathBuf, reason: String },

    #[error("llama.cpp could not load {path}: {reason}. The file may be truncated or from an unsupported architecture; run `streamer models verify`")]
    Load { path: PathBuf, reason: String },

    #[error("the model has no usable chat template: {0}")]
    ChatTemplate(String),

    #[error("prompt of {tokens} tokens does not fit the context of {context} tokens")]
    PromptTooLong { tokens: usize, context: u32 },

    #[error("invalid grammar or JSON schema: {0}")]
    Grammar(String),

    #[error("llama.cpp failed while generating: {0}")]
    Generation(String),

    /// The model answered, but not in the required shape. Callers fall back.
    #[error("model output is not valid {expected}: {message}; output was {raw:?}")]
    InvalidOutput {
        expected: String,
        message: String,
        raw: String,
    },

    #[error("this model cannot see images: configure a vision projector (mmproj GGUF) next to the text model")]
    NoVision,

    #[error("bad image input: {0}")]
    Image(String),

    #[error("endpoint {url} failed: {message}")]
    Endpoint { url: String, message: String },

    #[error("the model runtime is closed (shutting down)")]
    Closed,

    #[error("the model is busy: {waiting} served requests are already waiting or running; retry shortly")]
    Busy { waiting: usize },

    #[error("the cameras kept the model busy for {waited_s} s; retry later")]
    CamerasBusy { waited_s: u64 },

    #[error("the request was cancelled")]
    Cancelled,

    #[error("the request's deadline passed before the model finished")]
    DeadlineExpired,

    #[error("the model worker has stopped")]
    WorkerGone,
}
