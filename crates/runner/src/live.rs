//! The live pipeline: supervised camera sources → freshest-frame slots →
//! inference workers (detect → identity → alerts) → observers.
//!
//! ```text
//! camera thread ─┐  freshest slot                     inference worker(s) ─▶ alerts (MQTT, outbox)
//! camera thread ─┼─▶ (one per camera) ─round robin─▶ detector, embedder     observer (terminal,
//! camera thread ─┘   drops counted                   each; visits shared    JSON lines)
//! ```
//! One worker by default; more run their own ONNX Runtime sessions side by
//! side (on a small CPU two single-threaded sessions get through more
//! frames than one on two threads), sharing visits and alerts. A camera's
//! frames are never in two workers at once, so identity sees each camera
//! in order. The stages themselves are the [`StageGraph`]'s, shared with
//! replay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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

/// What the pipeline tells whoever drives it, from the inference workers
/// (one call at a time).
pub trait Observer: Send {
    /// A frame went through the stages.
    fn frame(&mut self, _frame: &Frame, _outcome: &FrameOutcome) {}
    /// Visits that ended while no frame came (live ticks, the end).
    fn visits(&mut self, _events: &[VisitEvent]) {}
}

/// What the inference workers own.
pub struct Stages {
    /// Detect → identity → alerts: the first worker's.
    pub graph: StageGraph,
    /// Further workers, each from [`StageGraph::worker`] (models of their
    /// own, visits shared), a thread each. Empty: one worker.
    pub more_workers: Vec<StageGraph>,
    /// Told about every frame and visit.
    pub observer: Box<dyn Observer>,
}

/// How often camera health goes to Home Assistant.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// A running live pipeline. Dropping it stops it as [`LiveRunner::stop`]
/// does, so an early return (a port already taken) never leaves camera or
/// inference threads running while the process ends.
pub struct LiveRunner {
    telemetry: Arc<Telemetry>,
    stop: Arc<AtomicBool>,
    cameras: Vec<JoinHandle<()>>,
    /// `None` once stopped.
    inference: Option<JoinHandle<Option<Arc<AlertPipeline>>>>,
}

impl std::fmt::Debug for LiveRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRunner").finish_non_exhaustive()
    }
}

impl LiveRunner {
    /// Warms the models up (see [`StageGraph::warm_up`]), then starts one
    /// supervisor thread per camera and the inference workers.
    pub fn start(cameras: Vec<CameraSpec>, mut stages: Stages) -> Result<Self, RunnerError> {
        stages.graph.drop_model_work_of_ended_visits(true);
        stages.graph.warm_up().map_err(RunnerError::WarmUp)?;
        for worker in &mut stages.more_workers {
            worker.warm_up().map_err(RunnerError::WarmUp)?;
        }
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
        let observer = Arc::new(Mutex::new(stages.observer));
        let mut helpers = Vec::new();
        for (k, graph) in stages.more_workers.into_iter().enumerate() {
            let mut worker = Worker {
                graph,
                observer: Arc::clone(&observer),
                telemetry: telemetry.clone(),
            };
            let (slots, stop) = (slots.clone(), stop.clone());
            helpers.push(
                thread::Builder::new()
                    .name(format!("inference-{}", k + 1))
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            worker.next_frame(&slots);
                        }
                    })
                    .map_err(|e| RunnerError::Thread(e.to_string()))?,
            );
        }
        let inference = {
            let worker = Worker {
                graph: stages.graph,
                observer,
                telemetry: telemetry.clone(),
            };
            let stop = stop.clone();
            thread::Builder::new()
                .name("inference".into())
                .spawn(move || Inference::new(worker, names, helpers).run(&slots, &stop))
                .map_err(|e| RunnerError::Thread(e.to_string()))?
        };
        Ok(Self {
            telemetry,
            stop,
            cameras: handles,
            inference: Some(inference),
        })
    }

    /// Counters and per-camera stats, for `/health` and `/metrics`.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Stops the sources and the inference thread (the frame in flight is
    /// finished), then hands back the alerts stage for the caller to flush.
    pub fn stop(mut self) -> Option<Arc<AlertPipeline>> {
        self.halt()
    }

    fn halt(&mut self) -> Option<Arc<AlertPipeline>> {
        self.stop.store(true, Ordering::Relaxed);
        let cameras = self.cameras.len();
        for handle in self.cameras.drain(..) {
            let _ = handle.join();
        }
        let pipeline = self.inference.take()?.join().ok().flatten();
        tracing::info!(cameras, "Live pipeline stopped");
        pipeline
    }
}

impl Drop for LiveRunner {
    fn drop(&mut self) {
        if self.inference.is_some() {
            self.halt();
        }
    }
}

/// One inference worker: takes the next camera's freshest frame and runs
/// it through its graph.
struct Worker {
    graph: StageGraph,
    observer: Arc<Mutex<Box<dyn Observer>>>,
    telemetry: Arc<Telemetry>,
}

impl Worker {
    fn observer(&self) -> MutexGuard<'_, Box<dyn Observer>> {
        self.observer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Processes one frame, if one comes within a short wait (so that the
    /// caller sees the stop flag).
    fn next_frame(&mut self, slots: &FreshestSlots) {
        let Some(frame) = slots.take(Duration::from_millis(200)) else {
            return;
        };
        let taken = Instant::now();
        let detected = match self.graph.process(&frame) {
            Ok(outcome) => {
                self.telemetry
                    .person_embeddings(outcome.embedded, outcome.embeddings_reused);
                self.observer().frame(&frame, &outcome);
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
}

/// The first worker, which also keeps time: visits end without frames,
/// camera health goes out, and at the stop it waits for the other workers
/// before ending every visit.
struct Inference {
    worker: Worker,
    cameras: Vec<String>,
    helpers: Vec<JoinHandle<()>>,
    last_report: Option<Instant>,
}

impl Inference {
    fn new(worker: Worker, cameras: Vec<String>, helpers: Vec<JoinHandle<()>>) -> Self {
        Self {
            worker,
            cameras,
            helpers,
            last_report: None,
        }
    }

    fn run(mut self, slots: &FreshestSlots, stop: &AtomicBool) -> Option<Arc<AlertPipeline>> {
        while !stop.load(Ordering::Relaxed) {
            self.worker.next_frame(slots);
            let ended = self.worker.graph.tick(now_ms());
            if !ended.is_empty() {
                self.worker.observer().visits(&ended);
            }
            for stats in self.worker.telemetry.cameras() {
                stats.set_visit_open(self.worker.graph.person_present(&stats.name));
            }
            self.report();
            if let Some(queue) = self.worker.graph.alerts().and_then(|a| a.model_queue()) {
                self.worker.telemetry.model_queue(&queue);
            }
        }
        for helper in std::mem::take(&mut self.helpers) {
            let _ = helper.join();
        }
        let ended = self.worker.graph.finish(now_ms());
        self.worker.observer().visits(&ended);
        if let Some(alerts) = self.worker.graph.alerts() {
            for camera in &self.cameras {
                alerts.set_connected(camera, false);
            }
        }
        self.worker.graph.take_alerts()
    }

    /// Camera health to Home Assistant every few seconds.
    fn report(&mut self) {
        if self.last_report.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        self.last_report = Some(Instant::now());
        let Some(alerts) = self.worker.graph.alerts() else {
            return;
        };
        for stats in self.worker.telemetry.cameras() {
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
