use std::path::PathBuf;

/// Everything that can go wrong with a model file. Each message names the
/// file involved and, where there is one, the command that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model {name:?}; known models: {known}")]
    Unknown { name: String, known: String },

    #[error(
        "model {name} is missing: {path} does not exist. Fix: run `streamer models fetch {name}`"
    )]
    Missing { name: String, path: PathBuf },

    #[error("model {name} is corrupt: {path} has sha256 {actual}, expected {expected}. Fix: run `streamer models fetch --force {name}`")]
    Corrupt {
        name: String,
        path: PathBuf,
        actual: String,
        expected: String,
    },

    #[error("model {name} has no checksum to verify against ({path} was not fetched by streamer). Fix: run `streamer models fetch --force {name}`")]
    Unrecorded { name: String, path: PathBuf },

    #[error("checksum mismatch for {what}: got {actual}, expected {expected}")]
    Checksum {
        what: String,
        actual: String,
        expected: String,
    },

    #[error("invalid model manifest {origin}: {message}")]
    Manifest { origin: String, message: String },

    #[error("`{command}` failed: {message}")]
    Tool { command: String, message: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("download of {url} failed: {message}")]
    Http { url: String, message: String },

    #[error("{0}")]
    Other(String),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
        let path = path.into();
        move |source| ModelError::Io { path, source }
    }
}
