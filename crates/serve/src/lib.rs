//! The in-process model behind OpenAI- and Ollama-compatible HTTP
//! endpoints, so that tools which already speak those APIs (Home
//! Assistant's Ollama integration, benchmark harnesses, scripts) use the
//! model streamer holds for triage, without a second server or a second
//! copy of the weights.
//!
//! [`routes`] gives an axum router that `streamer serve` runs on its own and
//! `streamer run` merges into its `/health` and `/metrics` server when
//! `[http] serve_models = true`. Requests join the runtime's served lane
//! ([`streamer_reason::Lane::Served`]): bounded (a clear 503 when full),
//! cancelled when the client goes away, and paused between tokens whenever
//! camera work arrives.

mod error;
mod ollama;
mod openai;
mod parts;
mod think;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::Router;
use streamer_reason::{
    CancelToken, ChatBackend, ChatReply, ChatRequest, Lane, LlmRuntime, ModelInfo, ReasonError,
};
use tokio::sync::mpsc;

pub use error::{ApiError, Dialect};

/// What the endpoints serve, and who may call them.
pub struct ModelApi {
    runtime: Arc<LlmRuntime>,
    /// The name clients ask for (`GET /v1/models`, `/api/tags`).
    name: String,
    /// Other names accepted for it (the GGUF's file name and its own name).
    aliases: Vec<String>,
    token: Option<String>,
    size_bytes: u64,
    modified: SystemTime,
    info: ModelInfo,
    next_id: AtomicU64,
}

impl ModelApi {
    /// Serves `runtime` as `name`. With `token`, every request needs
    /// `Authorization: Bearer <token>`.
    pub fn new(runtime: Arc<LlmRuntime>, name: &str, token: Option<String>) -> Self {
        let path = runtime.path().to_path_buf();
        let meta = std::fs::metadata(&path).ok();
        let info = runtime.info().clone();
        let mut aliases = Vec::new();
        if let Some(stem) = path.file_stem() {
            aliases.push(stem.to_string_lossy().into_owned());
        }
        if let Some(own) = &info.name {
            aliases.push(own.clone());
        }
        Self {
            name: name.to_string(),
            aliases,
            token,
            size_bytes: meta.as_ref().map_or(0, |m| m.len()),
            modified: meta
                .and_then(|m| m.modified().ok())
                .unwrap_or(SystemTime::UNIX_EPOCH),
            info,
            runtime,
            next_id: AtomicU64::new(1),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the bearer token, when one is set.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }

    /// Whether `asked` names the served model (Ollama clients add `:tag`).
    fn check_model(&self, asked: &str) -> Result<(), ApiError> {
        let bare = asked.strip_suffix(":latest").unwrap_or(asked);
        if bare.is_empty() || bare == self.name || self.aliases.iter().any(|a| a == bare) {
            Ok(())
        } else {
            Err(ApiError::unknown_model(asked, &self.name))
        }
    }

    fn sees_images(&self) -> bool {
        self.runtime.sees_images()
    }

    fn context(&self) -> u32 {
        self.info.context_train
    }

    /// A fresh id for a completion or a tool call.
    fn id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{prefix}-{n}{nanos:08x}")
    }

    /// Starts `request` on the served lane. Text arrives on the returned
    /// channel as it is generated, then the reply (or the error). Dropping
    /// the returned guard (the client went away) cancels the request.
    fn start(self: &Arc<Self>, mut request: ChatRequest) -> (mpsc::Receiver<Piece>, CancelGuard) {
        let cancel = CancelToken::new();
        request.lane = Lane::Served;
        request.cancel = Some(cancel.clone());
        let (tx, rx) = mpsc::channel(256);
        let api = Arc::clone(self);
        let stop = cancel.clone();
        tokio::task::spawn_blocking(move || {
            let backend: &dyn ChatBackend = api.runtime.as_ref();
            let result = backend.chat(&request, &mut |text: &str| {
                if tx.blocking_send(Piece::Text(text.to_string())).is_err() {
                    stop.cancel();
                }
            });
            if let Err(ReasonError::Cancelled) = &result {
                tracing::debug!("served request cancelled (client gone)");
            }
            let _ = tx.blocking_send(Piece::Done(Box::new(result)));
        });
        (rx, CancelGuard(cancel))
    }

    /// Runs `request` to the end.
    async fn complete(self: &Arc<Self>, request: ChatRequest) -> Result<ChatReply, ApiError> {
        let (mut rx, _guard) = self.start(request);
        while let Some(piece) = rx.recv().await {
            if let Piece::Done(result) = piece {
                return result.map_err(ApiError::from);
            }
        }
        Err(ReasonError::WorkerGone.into())
    }
}

/// What a running request sends back.
enum Piece {
    Text(String),
    Done(Box<Result<ChatReply, ReasonError>>),
}

/// Cancels its request when dropped (a handler or a stream that ended
/// early because the client left).
struct CancelGuard(CancelToken);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The OpenAI- and Ollama-compatible routes over `api`.
pub fn routes(api: Arc<ModelApi>) -> Router {
    Router::new()
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/api/version", get(ollama::version))
        .route("/api/tags", get(ollama::tags))
        .route("/api/show", post(ollama::show))
        .route("/api/chat", post(ollama::chat))
        .with_state(api)
}

/// Why a listen address and token do not go together.
#[derive(Debug, thiserror::Error)]
pub enum ExposureError {
    #[error("{addr} is reachable from other machines, so the model endpoints need a bearer token: set the environment variable {env} (or listen on 127.0.0.1)")]
    TokenRequired { addr: SocketAddr, env: &'static str },
}

/// The environment variable holding the bearer token.
pub const TOKEN_ENV: &str = "STREAMER_API_TOKEN";

/// The token for serving on `addr`: optional on loopback, required on any
/// other address.
pub fn token_for(addr: SocketAddr) -> Result<Option<String>, ExposureError> {
    let token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(ExposureError::TokenRequired {
            addr,
            env: TOKEN_ENV,
        });
    }
    Ok(token)
}

/// A short model name from a GGUF path (its file stem).
pub fn name_from_path(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn a_token_is_required_off_loopback() {
        std::env::remove_var(TOKEN_ENV);
        assert!(token_for("127.0.0.1:9470".parse().unwrap())
            .unwrap()
            .is_none());
        assert!(token_for("[::1]:9470".parse().unwrap()).unwrap().is_none());
        let err = token_for("0.0.0.0:9470".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains(TOKEN_ENV), "{err}");
    }
}
