//! The live pipeline: supervised camera sources → freshest-frame slots →
//! one inference thread (detect → identity → alerts) → observers.
//!
//! ```text
//! camera thread ─┐  freshest slot
//! camera thread ─┼─▶ (one per camera) ─round robin─▶ inference thread ─▶ alerts (MQTT, outbox)
//! camera thread ─┘   drops counted                   detector, embedder,    observer (terminal,
//!                                                    visit tracker          JSON lines)
//! ```
//! The stages themselves are the [`StageGraph`]'s, shared with replay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use streamer_alerts::{AlertPipeline, LiveFigures};
use streamer_core::Frame;
use streamer_identity::VisitEvent;

use crate::camera::{spawn_camera, CameraSpec};
use crate::graph::{FrameOutcome, StageGraph};
use crate::handoff::FreshestSlots;
use crate::telemetry::{CameraState, Event, Telemetry};
use crate::RunnerError;

/// What the pipeline tells whoever drives it, on the inference thread.
pub trait Observer: Send {
    /// A frame went through the stages.
    fn frame(&mut self, _frame: &Frame, _outcome: &FrameOutcome) {}
    /// Visits that ended while no frame came (live ticks, the end).
    fn visits(&mut self, _events: &[VisitEvent]) {}
}

/// What the inference thread owns.
pub struct Stages {
    /// Detect → identity → alerts.
    pub graph: StageGraph,
    /// Told about every frame and visit.
    pub observer: Box<dyn Observer>,
}

/// How often camera health goes to Home Assistant.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// A running live pipeline.
pub struct LiveRunner {
    telemetry: Arc<Telemetry>,
    stop: Arc<AtomicBool>,
    cameras: Vec<JoinHandle<()>>,
    inference: JoinHandle<Option<Arc<AlertPipeline>>>,
}

impl std::fmt::Debug for LiveRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRunner").finish_non_exhaustive()
    }
}

impl LiveRunner {
    /// Warms the models up (see [`StageGraph::warm_up`]), then starts one
    /// supervisor thread per camera and the inference thread.
    pub fn start(cameras: Vec<CameraSpec>, mut stages: Stages) -> Result<Self, RunnerError> {
        stages.graph.drop_model_work_of_ended_visits(true);
        stages.graph.warm_up().map_err(RunnerError::WarmUp)?;
        let telemetry = Arc::new(Telemetry::new(
            cameras
                .iter()
                .map(|c| (c.name.as_str(), c.input.redacted())),
        ));
        let slots = Arc::new(FreshestSlots::new(cameras.len()));
        let stop = Arc::new(AtomicBool::new(false));
        let names: Vec<String> = cameras.iter().map(|c| c.name.clone()).collect();
        let mut handles = Vec::new();
        for (index, spec) in cameras.into_iter().enumerate() {
            let (slots, telemetry, stop) = (slots.clone(), telemetry.clone(), stop.clone());
            handles.push(
                spawn_camera(spec, index, slots, telemetry, stop)
                    .map_err(|e| RunnerError::Thread(e.to_string()))?,
            );
        }
        let inference = {
            let (telemetry, stop) = (telemetry.clone(), stop.clone());
            thread::Builder::new()
                .name("inference".into())
                .spawn(move || Inference::new(stages, names, telemetry).run(&slots, &stop))
                .map_err(|e| RunnerError::Thread(e.to_string()))?
        };
        Ok(Self {
            telemetry,
            stop,
            cameras: handles,
            inference,
        })
    }

    /// Counters and per-camera stats, for `/health` and `/metrics`.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Stops the sources and the inference thread (the frame in flight is
    /// finished), then hands back the alerts stage for the caller to flush.
    pub fn stop(self) -> Option<Arc<AlertPipeline>> {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.cameras {
            let _ = handle.join();
        }
        self.inference.join().ok().flatten()
    }
}

struct Inference {
    stages: Stages,
    cameras: Vec<String>,
    telemetry: Arc<Telemetry>,
    last_report: Option<Instant>,
}

impl Inference {
    fn new(stages: Stages, cameras: Vec<String>, telemetry: Arc<Telemetry>) -> Self {
        Self {
            stages,
            cameras,
            telemetry,
            last_report: None,
        }
    }

    fn run(mut self, slots: &FreshestSlots, stop: &AtomicBool) -> Option<Arc<AlertPipeline>> {
        while !stop.load(Ordering::Relaxed) {
            if let Some(frame) = slots.take(Duration::from_millis(200)) {
                let taken = Instant::now();
                let detected = match self.stages.graph.process(&frame) {
                    Ok(outcome) => {
                        self.telemetry
                            .person_embeddings(outcome.embedded, outcome.embeddings_reused);
                        self.stages.observer.frame(&frame, &outcome);
                        outcome.gate.is_none_or(|g| g.passes())
                    }
                    Err(error) => {
                        self.telemetry.emit(Event::StageFailed {
                            stage: error.stage,
                            camera: &frame.camera,
                            error: &error.message,
                        });
                        true
                    }
                };
                self.telemetry.emit(Event::FrameProcessed {
                    camera: &frame.camera,
                    latency: taken.elapsed(),
                    detected,
                });
            }
            let ended = self.stages.graph.tick(now_ms());
            if !ended.is_empty() {
                self.stages.observer.visits(&ended);
            }
            for stats in self.telemetry.cameras() {
                stats.set_visit_open(self.stages.graph.person_present(&stats.name));
            }
            self.report();
            if let Some(queue) = self.stages.graph.alerts().and_then(|a| a.model_queue()) {
                self.telemetry.model_queue(&queue);
            }
        }
        let ended = self.stages.graph.finish(now_ms());
        self.stages.observer.visits(&ended);
        if let Some(alerts) = self.stages.graph.alerts() {
            for camera in &self.cameras {
                alerts.set_connected(camera, false);
            }
        }
        self.stages.graph.take_alerts()
    }

    /// Camera health to Home Assistant every few seconds.
    fn report(&mut self) {
        if self.last_report.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        self.last_report = Some(Instant::now());
        let Some(alerts) = self.stages.graph.alerts() else {
            return;
        };
        for stats in self.telemetry.cameras() {
            let h = stats.health();
            alerts.set_connected(&h.name, h.state == CameraState::Online);
            alerts.set_diagnostics(
                &h.name,
                LiveFigures {
                    fps: h.processed_fps,
                    dropped_frames: h.frames_dropped,
                    reconnects: h.reconnects,
                    frames_gated_out: h.frames_gated_out,
                },
            );
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
