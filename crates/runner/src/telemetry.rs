//! One place that both logs and counts what happens in the pipeline.
//!
//! Every noteworthy thing is an [`Event`]; [`Telemetry::emit`] writes its one
//! log line and updates its metric, so logs, `/metrics` and `/health` never
//! disagree. Per-camera figures that `/health` and Home Assistant show
//! (state, fps, drops, reconnects in the last hour) live in
//! [`CameraStats`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;
use streamer_alerts::ModelQueueStats;

/// Connection state of a camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    /// A pipeline is starting and no frame has arrived yet.
    Connecting,
    /// Frames are arriving.
    Online,
    /// The last attempt failed or stalled; waiting to retry.
    Offline,
}

impl CameraState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => CameraState::Online,
            2 => CameraState::Offline,
            _ => CameraState::Connecting,
        }
    }
}

/// Something that happened, to be logged once and counted once.
#[derive(Debug)]
#[allow(missing_docs)]
pub enum Event<'a> {
    /// A camera's pipeline is being started.
    SourceConnecting { camera: &'a str, attempt: u64 },
    /// The first frame of a connection arrived. `reconnect` is false only for
    /// the first connection since start.
    SourceOnline {
        camera: &'a str,
        reconnect: bool,
        waited: Duration,
    },
    /// The pipeline failed (error or end of stream); it is retried after
    /// `retry_in`.
    SourceFailed {
        camera: &'a str,
        error: &'a str,
        retry_in: Duration,
    },
    /// No frame for `silent_for`: the pipeline is torn down and retried.
    SourceStalled {
        camera: &'a str,
        silent_for: Duration,
        retry_in: Duration,
    },
    /// A frame replaced one that detection had not taken yet.
    FrameDropped { camera: &'a str },
    /// The stages finished a frame, `latency` after it was decoded.
    /// `detected` is false when the motion gate kept it from detection.
    FrameProcessed {
        camera: &'a str,
        latency: Duration,
        detected: bool,
    },
    /// A stage failed on one frame; the pipeline goes on.
    StageFailed {
        stage: &'static str,
        camera: &'a str,
        error: &'a str,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CameraLabel {
    camera: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    camera: String,
    stage: String,
}

/// Live figures of one camera, shared by its supervisor, the scheduler,
/// `/health` and the Home Assistant diagnostics.
#[derive(Debug)]
pub struct CameraStats {
    /// Camera name.
    pub name: String,
    /// The camera's input, credentials redacted.
    pub input: String,
    state: AtomicU8,
    /// Frames that came out of the camera's pipeline.
    pub frames_in: AtomicU64,
    /// Frames replaced before detection took them.
    pub frames_dropped: AtomicU64,
    /// Frames the stages finished (detected or gated out).
    pub frames_processed: AtomicU64,
    /// Frames the motion gate kept from detection.
    pub frames_gated_out: AtomicU64,
    /// Somebody was seen on this camera recently (the inference thread
    /// sets it; the camera's motion gate re-checks while it is set).
    visit_open: AtomicBool,
    /// Successful reconnections since start.
    pub reconnects: AtomicU64,
    /// Stalls since start.
    pub stalls: AtomicU64,
    recent: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    last_frame: Option<Instant>,
    frames_in: VecDeque<Instant>,
    processed: VecDeque<Instant>,
    reconnects: VecDeque<Instant>,
    stalls: VecDeque<Instant>,
}

/// Window over which fps is measured.
const FPS_WINDOW: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);

fn trim(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q.front().is_some_and(|t| now.duration_since(*t) > window) {
        q.pop_front();
    }
}

/// What `/health` shows for a camera.
#[derive(Clone, Debug, Serialize)]
#[allow(missing_docs)]
pub struct CameraHealth {
    pub name: String,
    pub input: String,
    pub state: CameraState,
    pub input_fps: f64,
    pub processed_fps: f64,
    pub frames_in: u64,
    pub frames_processed: u64,
    /// Frames the motion gate kept from detection.
    pub frames_gated_out: u64,
    pub frames_dropped: u64,
    pub reconnects: u64,
    pub stalls: u64,
    pub reconnects_last_hour: usize,
    pub stalls_last_hour: usize,
    /// Seconds since the last frame arrived (`null` before the first).
    pub last_frame_age_s: Option<f64>,
}

impl CameraStats {
    fn new(name: &str, input: &str) -> Self {
        Self {
            name: name.to_string(),
            input: input.to_string(),
            state: AtomicU8::new(0),
            frames_in: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            frames_processed: AtomicU64::new(0),
            frames_gated_out: AtomicU64::new(0),
            visit_open: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            recent: Mutex::new(Recent::default()),
        }
    }

    /// Whether somebody was seen on the camera recently.
    pub fn visit_open(&self) -> bool {
        self.visit_open.load(Ordering::Relaxed)
    }

    pub(crate) fn set_visit_open(&self, open: bool) {
        self.visit_open.store(open, Ordering::Relaxed);
    }

    /// The camera's state now.
    pub fn state(&self) -> CameraState {
        CameraState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub(crate) fn set_state(&self, state: CameraState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a frame out of the pipeline.
    pub(crate) fn frame_in(&self) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut r = self.recent();
        r.last_frame = Some(now);
        r.frames_in.push_back(now);
        trim(&mut r.frames_in, now, FPS_WINDOW);
    }

    /// A snapshot for `/health`.
    pub fn health(&self) -> CameraHealth {
        let now = Instant::now();
        let mut r = self.recent();
        trim(&mut r.frames_in, now, FPS_WINDOW);
        trim(&mut r.processed, now, FPS_WINDOW);
        trim(&mut r.reconnects, now, HOUR);
        trim(&mut r.stalls, now, HOUR);
        let fps = |q: &VecDeque<Instant>| q.len() as f64 / FPS_WINDOW.as_secs_f64();
        CameraHealth {
            name: self.name.clone(),
            input: self.input.clone(),
            state: self.state(),
            input_fps: fps(&r.frames_in),
            processed_fps: fps(&r.processed),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_processed: self.frames_processed.load(Ordering::Relaxed),
            frames_gated_out: self.frames_gated_out.load(Ordering::Relaxed),
            frames_dropped: self.frames_dropped.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            stalls: self.stalls.load(Ordering::Relaxed),
            reconnects_last_hour: r.reconnects.len(),
            stalls_last_hour: r.stalls.len(),
            last_frame_age_s: r.last_frame.map(|t| now.duration_since(t).as_secs_f64()),
        }
    }
}

struct Metrics {
    frames_in: Family<CameraLabel, Counter>,
    frames_dropped: Family<CameraLabel, Counter>,
    frames_processed: Family<CameraLabel, Counter>,
    frames_gated: Family<CameraLabel, Counter>,
    reconnects: Family<CameraLabel, Counter>,
    stalls: Family<CameraLabel, Counter>,
    source_failures: Family<CameraLabel, Counter>,
    online: Family<CameraLabel, Gauge>,
    stage_errors: Family<StageLabel, Counter>,
    latency: Histogram,
    model_jobs: Family<OutcomeLabel, Counter>,
    model_queue_waiting: Gauge,
    model_queue_running: Gauge,
    person_embeddings: Family<OutcomeLabel, Counter>,
}

/// The pipeline's log-and-count hub, shared by every stage.
pub struct Telemetry {
    registry: Registry,
    metrics: Metrics,
    cameras: BTreeMap<String, Arc<CameraStats>>,
    /// The model queue's totals as last copied into the metrics.
    model_queue: Mutex<ModelQueueStats>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("cameras", &self.cameras.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Telemetry for these cameras: `(name, redacted input)`.
    pub fn new<'a>(cameras: impl IntoIterator<Item = (&'a str, String)>) -> Self {
        let metrics = Metrics {
            frames_in: Family::default(),
            frames_dropped: Family::default(),
            frames_processed: Family::default(),
            frames_gated: Family::default(),
            reconnects: Family::default(),
            stalls: Family::default(),
            source_failures: Family::default(),
            online: Family::default(),
            stage_errors: Family::default(),
            latency: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            model_jobs: Family::default(),
            model_queue_waiting: Gauge::default(),
            model_queue_running: Gauge::default(),
            person_embeddings: Family::default(),
        };
        let mut registry = Registry::with_prefix("streamer");
        let m = &metrics;
        registry.register(
            "camera_frames",
            "Frames out of the camera pipeline",
            m.frames_in.clone(),
        );
        registry.register(
            "camera_frames_dropped",
            "Frames replaced by a fresher one before detection took them",
            m.frames_dropped.clone(),
        );
        registry.register(
            "camera_frames_processed",
            "Frames detection finished",
            m.frames_processed.clone(),
        );
        registry.register(
            "camera_frames_gated",
            "Frames the motion gate kept from detection",
            m.frames_gated.clone(),
        );
        registry.register(
            "camera_reconnects",
            "Reconnections after a failure or stall",
            m.reconnects.clone(),
        );
        registry.register(
            "camera_stalls",
            "Streams that stopped sending frames",
            m.stalls.clone(),
        );
        registry.register(
            "camera_failures",
            "Pipeline errors and ends of stream",
            m.source_failures.clone(),
        );
        registry.register("camera_online", "1 while frames arrive", m.online.clone());
        registry.register(
            "stage_errors",
            "Frames a stage failed on",
            m.stage_errors.clone(),
        );
        registry.register(
            "frame_latency_seconds",
            "From decode to the end of detection and identity",
            m.latency.clone(),
        );
        registry.register(
            "model_jobs",
            "Stage-two model jobs by outcome: answered, failed, expired (deadline \
             passed), visit_ended (dropped before the model got to it), \
             rejected_busy (queue full)",
            m.model_jobs.clone(),
        );
        registry.register(
            "model_queue_waiting",
            "Stage-two jobs waiting for the model",
            m.model_queue_waiting.clone(),
        );
        registry.register(
            "model_queue_running",
            "Stage-two jobs on the model",
            m.model_queue_running.clone(),
        );
        registry.register(
            "person_embeddings",
            "Person boxes embedded (computed) or continuing a track with its \
             embedding (reused)",
            m.person_embeddings.clone(),
        );
        for outcome in ["computed", "reused"] {
            let _ = m.person_embeddings.get_or_create(&OutcomeLabel { outcome });
        }
        let cameras = cameras
            .into_iter()
            .map(|(name, input)| {
                // Every camera shows in /metrics from the start, at zero.
                let label = CameraLabel {
                    camera: name.to_string(),
                };
                for family in [
                    &m.frames_in,
                    &m.frames_dropped,
                    &m.frames_processed,
                    &m.frames_gated,
                    &m.reconnects,
                    &m.stalls,
                ] {
                    let _ = family.get_or_create(&label);
                }
                let _ = m.online.get_or_create(&label);
                (name.to_string(), Arc::new(CameraStats::new(name, &input)))
            })
            .collect();
        Self {
            registry,
            metrics,
            cameras,
            model_queue: Mutex::new(ModelQueueStats::default()),
        }
    }

    /// Copies the stage-two model queue's figures into the metrics (the
    /// alerts stage logs each drop itself).
    pub fn model_queue(&self, now: &ModelQueueStats) {
        let m = &self.metrics;
        m.model_queue_waiting.set(now.waiting as i64);
        m.model_queue_running.set(now.running as i64);
        let mut last = self.model_queue.lock().unwrap_or_else(|p| p.into_inner());
        for (outcome, total, before) in [
            ("answered", now.answered, last.answered),
            ("failed", now.failed, last.failed),
            ("expired", now.expired, last.expired),
            ("visit_ended", now.visit_ended, last.visit_ended),
            ("rejected_busy", now.rejected_busy, last.rejected_busy),
        ] {
            let counter = m.model_jobs.get_or_create(&OutcomeLabel { outcome });
            counter.inc_by(total.saturating_sub(before));
        }
        *last = *now;
    }

    /// Counts the person boxes of a frame: embedded, or reusing their
    /// track's embedding.
    pub fn person_embeddings(&self, computed: usize, reused: usize) {
        let family = &self.metrics.person_embeddings;
        for (outcome, n) in [("computed", computed), ("reused", reused)] {
            if n > 0 {
                family
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc_by(n as u64);
            }
        }
    }

    /// The stats of a camera given to [`new`](Self::new).
    pub fn camera(&self, name: &str) -> Option<&Arc<CameraStats>> {
        self.cameras.get(name)
    }

    /// All cameras' stats, by name.
    pub fn cameras(&self) -> impl Iterator<Item = &Arc<CameraStats>> {
        self.cameras.values()
    }

    /// Logs the event and counts it.
    pub fn emit(&self, event: Event<'_>) {
        let label = |camera: &str| CameraLabel {
            camera: camera.to_string(),
        };
        let stats = |camera: &str| self.cameras.get(camera);
        let m = &self.metrics;
        match event {
            Event::SourceConnecting { camera, attempt } => {
                tracing::debug!(camera, attempt, "connecting");
                if let Some(s) = stats(camera) {
                    s.set_state(CameraState::Connecting);
                }
            }
            Event::SourceOnline {
                camera,
                reconnect,
                waited,
            } => {
                let waited_ms = waited.as_millis() as u64;
                if reconnect {
                    tracing::info!(camera, waited_ms, "camera reconnected");
                    m.reconnects.get_or_create(&label(camera)).inc();
                } else {
                    tracing::info!(camera, waited_ms, "camera online");
                }
                m.online.get_or_create(&label(camera)).set(1);
                if let Some(s) = stats(camera) {
                    s.set_state(CameraState::Online);
                    if reconnect {
                        s.reconnects.fetch_add(1, Ordering::Relaxed);
                        s.recent().reconnects.push_back(Instant::now());
                    }
                }
            }
            Event::SourceFailed {
                camera,
                error,
                retry_in,
            } => {
                tracing::warn!(
                    camera,
                    retry_in_ms = retry_in.as_millis() as u64,
                    "camera failed: {error}"
                );
                m.source_failures.get_or_create(&label(camera)).inc();
                m.online.get_or_create(&label(camera)).set(0);
                if let Some(s) = stats(camera) {
                    s.set_state(CameraState::Offline);
                }
            }
            Event::SourceStalled {
                camera,
                silent_for,
                retry_in,
            } => {
                tracing::warn!(
                    camera,
                    silent_ms = silent_for.as_millis() as u64,
                    retry_in_ms = retry_in.as_millis() as u64,
                    "camera stalled: no frame"
                );
                m.stalls.get_or_create(&label(camera)).inc();
                m.online.get_or_create(&label(camera)).set(0);
                if let Some(s) = stats(camera) {
                    s.set_state(CameraState::Offline);
                    s.stalls.fetch_add(1, Ordering::Relaxed);
                    s.recent().stalls.push_back(Instant::now());
                }
            }
            Event::FrameDropped { camera } => {
                tracing::trace!(camera, "frame dropped");
                m.frames_dropped.get_or_create(&label(camera)).inc();
                if let Some(s) = stats(camera) {
                    s.frames_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::FrameProcessed {
                camera,
                latency,
                detected,
            } => {
                tracing::trace!(
                    camera,
                    latency_ms = latency.as_millis() as u64,
                    detected,
                    "frame processed"
                );
                m.frames_processed.get_or_create(&label(camera)).inc();
                if detected {
                    m.latency.observe(latency.as_secs_f64());
                } else {
                    m.frames_gated.get_or_create(&label(camera)).inc();
                }
                if let Some(s) = stats(camera) {
                    if !detected {
                        s.frames_gated_out.fetch_add(1, Ordering::Relaxed);
                    }
                    s.frames_processed.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    let mut r = s.recent();
                    r.processed.push_back(now);
                    trim(&mut r.processed, now, FPS_WINDOW);
                }
            }
            Event::StageFailed {
                stage,
                camera,
                error,
            } => {
                tracing::warn!(camera, stage, "stage failed on a frame: {error}");
                m.stage_errors
                    .get_or_create(&StageLabel {
                        camera: camera.to_string(),
                        stage: stage.to_string(),
                    })
                    .inc();
            }
        }
    }

    /// Counts a frame out of a camera's pipeline (not logged: many a second).
    pub(crate) fn frame_in(&self, camera: &str) {
        self.metrics
            .frames_in
            .get_or_create(&CameraLabel {
                camera: camera.to_string(),
            })
            .inc();
        if let Some(s) = self.cameras.get(camera) {
            s.frame_in();
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn encode_metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_queue_totals_become_counters_without_double_counting() {
        let telemetry = Telemetry::new([("porch", "rtsp://cam/1".to_string())]);
        let mut stats = ModelQueueStats {
            capacity: 2,
            waiting: 1,
            running: 1,
            answered: 4,
            expired: 2,
            ..ModelQueueStats::default()
        };
        telemetry.model_queue(&stats);
        stats.expired = 3;
        stats.visit_ended = 1;
        stats.waiting = 0;
        telemetry.model_queue(&stats);
        telemetry.model_queue(&stats);
        let text = telemetry.encode_metrics();
        for line in [
            "streamer_model_jobs_total{outcome=\"answered\"} 4",
            "streamer_model_jobs_total{outcome=\"expired\"} 3",
            "streamer_model_jobs_total{outcome=\"visit_ended\"} 1",
            "streamer_model_jobs_total{outcome=\"rejected_busy\"} 0",
            "streamer_model_queue_waiting 0",
            "streamer_model_queue_running 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn person_boxes_count_as_computed_or_reused() {
        let telemetry = Telemetry::new([("porch", "rtsp://cam/1".to_string())]);
        let before = telemetry.encode_metrics();
        assert!(before.contains("streamer_person_embeddings_total{outcome=\"reused\"} 0"));
        telemetry.person_embeddings(3, 0);
        telemetry.person_embeddings(1, 2);
        let text = telemetry.encode_metrics();
        for line in [
            "streamer_person_embeddings_total{outcome=\"computed\"} 4",
            "streamer_person_embeddings_total{outcome=\"reused\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
