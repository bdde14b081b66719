//! `/health` (JSON) and `/metrics` (Prometheus text) over HTTP, on axum.
//! Runs on its own small tokio runtime so that no camera or model work can
//! delay it, and so a later `serve` command can add routes to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::oneshot;

use crate::telemetry::Telemetry;
use crate::RunnerError;

/// What `/health` adds to the cameras' figures (model, broker, outbox).
pub type HealthExtra = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

#[derive(Clone)]
struct AppState {
    telemetry: Arc<Telemetry>,
    extra: HealthExtra,
}

/// The running HTTP server.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl HttpServer {
    /// Binds `addr` (an error at once if it is taken) and serves in the
    /// background.
    pub fn start(
        addr: SocketAddr,
        telemetry: Arc<Telemetry>,
        extra: HealthExtra,
    ) -> Result<Self, RunnerError> {
        Self::start_with(addr, telemetry, extra, Router::new())
    }

    /// [`start`](Self::start) with more routes beside `/health` and
    /// `/metrics` (the model endpoints of `streamer serve`).
    pub fn start_with(
        addr: SocketAddr,
        telemetry: Arc<Telemetry>,
        extra: HealthExtra,
        routes: Router,
    ) -> Result<Self, RunnerError> {
        let listener = std::net::TcpListener::bind(addr).map_err(|e| RunnerError::Listen {
            addr,
            message: e.to_string(),
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| RunnerError::Listen {
                addr,
                message: e.to_string(),
            })?;
        let bound = listener.local_addr().unwrap_or(addr);
        let (tx, rx) = oneshot::channel::<()>();
        let state = AppState { telemetry, extra };
        let thread = thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                // Model requests run on tokio's blocking pool; this thread
                // only moves bytes.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("cannot start the HTTP runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("cannot serve HTTP: {e}");
                            return;
                        }
                    };
                    let app = Router::new()
                        .route("/health", get(health))
                        .route("/metrics", get(metrics))
                        .with_state(state)
                        .merge(routes);
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = rx.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!("HTTP server failed: {e}");
                    }
                });
            })
            .map_err(|e| RunnerError::Thread(e.to_string()))?;
        tracing::debug!("health and metrics on http://{bound}/health and /metrics");
        Ok(Self {
            addr: bound,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let cameras: Vec<_> = state.telemetry.cameras().map(|c| c.health()).collect();
    let mut body = serde_json::json!({ "cameras": cameras });
    if let (Some(obj), serde_json::Value::Object(extra)) = (body.as_object_mut(), (state.extra)()) {
        obj.extend(extra);
    }
    Json(body)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.telemetry.encode_metrics(),
    )
}
