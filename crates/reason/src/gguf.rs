//! Loading GGUF files: the process-wide backend, a header check that turns
//! wrong files into clear errors, and model metadata.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::ReasonError;
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

/// The process-wide llama.cpp backend (llama.cpp allows one).
pub fn backend() -> Result<&'static LlamaBackend, ReasonError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            // llama.cpp and mtmd log to stderr by default; route them through
            // `tracing` only when asked (STREAMER_LLAMA_LOGS=1).
            let enabled = std::env::var_os("STREAMER_LLAMA_LOGS").is_some();
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(enabled),
            );
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| ReasonError::Backend(e.clone()))
}

/// A GGUF model loaded into memory.
pub struct LoadedModel {
    pub(crate) model: LlamaModel,
    path: PathBuf,
}

/// What a loaded model is, from its GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub name: Option<String>,
    pub architecture: Option<String>,
    pub parameters: u64,
    pub layers: u32,
    pub embedding_width: i32,
    pub context_train: u32,
    pub vocabulary: i32,
    pub chat_template: Option<String>,
    /// Whether a vision projector is loaded with the model.
    pub vision: bool,
}

impl LoadedModel {
    /// Loads a GGUF file after checking that it is one, so a wrong or
    /// damaged file gets a clear error rather than llama.cpp's null result.
    pub fn load(path: &Path) -> Result<Self, ReasonError> {
        check_gguf_header(path)?;
        let model = LlamaModel::load_from_file(backend()?, path, &LlamaModelParams::default())
            .map_err(|e| ReasonError::Load {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            model,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self) -> ModelInfo {
        let m = &self.model;
        ModelInfo {
            name: m.meta_val_str("general.name").ok(),
            architecture: m.meta_val_str("general.architecture").ok(),
            parameters: m.n_params(),
            layers: m.n_layer(),
            embedding_width: m.n_embd(),
            context_train: m.n_ctx_train(),
            vocabulary: m.n_vocab(),
            chat_template: m.chat_template(None).ok().and_then(|t| t.to_string().ok()),
            vision: false,
        }
    }
}

/// GGUF files start with the magic `GGUF` and a little-endian version (2 or 3).
pub(crate) fn check_gguf_header(path: &Path) -> Result<(), ReasonError> {
    let not_gguf = |reason: String| ReasonError::NotGguf {
        path: path.to_path_buf(),
        reason,
    };
    let mut header = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| not_gguf(e.to_string()))?;
    if &header[..4] != b"GGUF" {
        return Err(not_gguf(format!(
            "starts with {:02x?}, not \"GGUF\"",
            &header[..4]
        )));
    }
    let version = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(2..=3).contains(&version) {
        return Err(not_gguf(format!("unsupported GGUF version {version}")));
    }
    Ok(())
}
