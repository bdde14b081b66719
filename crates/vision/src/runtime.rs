use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use crate::VisionError;

/// The process-wide ONNX Runtime environment.
///
/// ONNX Runtime allows one environment per process, so every session shares
/// this one; it is created on first use from the given shared library.
#[derive(Clone)]
pub struct OrtRuntime {
    env: Environment,
    library: PathBuf,
}

static RUNTIME: OnceLock<OrtRuntime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

impl OrtRuntime {
    /// Loads `libonnxruntime` from `library` (first call only; later calls
    /// return the runtime already loaded, whatever path they pass).
    pub fn init(library: &Path) -> Result<&'static OrtRuntime, VisionError> {
        if let Some(rt) = RUNTIME.get() {
            return Ok(rt);
        }
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rt) = RUNTIME.get() {
            return Ok(rt);
        }
        let runtime_err = |message: String| VisionError::Runtime {
            path: library.to_path_buf(),
            message,
        };
        if !library.is_file() {
            return Err(runtime_err("no such file".into()));
        }
        let env = ort::init_from(library)
            .map_err(|e| runtime_err(e.to_string()))?
            .with_name("streamer")
            .with_telemetry(false)
            .build()
            .map_err(|e| runtime_err(e.to_string()))?;
        tracing::debug!(library = %library.display(), "ONNX Runtime loaded");
        Ok(RUNTIME.get_or_init(|| OrtRuntime {
            env,
            library: library.to_path_buf(),
        }))
    }

    /// Opens the ONNX model at `path` as a session with `threads` intra-op
    /// threads; failures name the file.
    ///
    /// The threads sleep when idle instead of spinning (ONNX Runtime's
    /// default): the detector, the embedder and the decoders share a small
    /// machine, and a spinning pool burns the cores the next stage needs.
    pub fn session(
        &self,
        path: &Path,
        threads: usize,
    ) -> Result<ort::session::Session, VisionError> {
        let load_err = |source| VisionError::Load {
            path: path.to_path_buf(),
            source,
        };
        ort::session::Session::builder(self.environment())
            .map_err(load_err)?
            .with_intra_threads(threads)
            .map_err(|e| load_err(e.into()))?
            .with_intra_op_spinning(false)
            .map_err(|e| load_err(e.into()))?
            .commit_from_file(path)
            .map_err(load_err)
    }

    pub fn environment(&self) -> &Environment {
        &self.env
    }

    pub fn library(&self) -> &Path {
        &self.library
    }
}

/// Intra-op threads for a session: every core the process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
