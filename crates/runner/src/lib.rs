//! The stage graph of streamer, built by both `streamer run` (live cameras)
//! and `streamer replay` (files): they differ only in sources and pacing.
//!
//! ```text
//! source (GStreamer, supervised) ─freshest─▶ [motion gate] ─▶ detect ─▶ identity ─▶ alerts
//! ```
//! [`StageGraph`] runs the stages of one frame in order. Live
//! ([`LiveRunner`]): each camera runs on its own thread under a supervisor that restarts it
//! with backoff ([`camera`]); frames cross to the inference worker(s)
//! through freshest-frame slots ([`handoff`]), served round-robin; every
//! event is logged and counted in one place ([`telemetry`]); `/health` and
//! `/metrics` are served over HTTP ([`http`]). Replay ([`ReplayRunner`]):
//! each input decodes on its own thread behind a small bounded channel that
//! blocks instead of dropping (lossless), and frames are taken in timestamp
//! order across inputs, as fast as decoding allows.

#![warn(missing_docs)]

pub mod backoff;
pub mod camera;
pub mod clock;
pub mod graph;
pub mod handoff;
pub mod http;
pub mod live;
pub mod replay;
pub mod telemetry;

use std::net::SocketAddr;

pub use backoff::Backoff;
pub use camera::CameraSpec;
pub use clock::{Clock, Zone};
pub use graph::{FrameOutcome, IdentityStage, StageError, StageGraph};
pub use http::HttpServer;
pub use live::{LiveRunner, Observer, Stages};
pub use replay::{ReplayInput, ReplayRunner};
pub use telemetry::{CameraHealth, CameraState, Event, Telemetry};

/// What can go wrong starting the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A thread could not be started.
    #[error("cannot start a pipeline thread: {0}")]
    Thread(String),
    /// A model failed on its warm-up run, before any camera started.
    #[error("the models' warm-up run failed: {0}")]
    WarmUp(StageError),
    /// The HTTP address cannot be bound.
    #[error("cannot listen on {addr}: {message} (set [http] listen to a free HOST:PORT)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        message: String,
    },
}
