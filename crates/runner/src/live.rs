//! The live pipeline: supervised camera sources → freshest-frame slots →
//! one inference thread (detect → identity → alerts) → observers.
//!
//! ```text
//! camera thread ─┐  freshest slot
//! camera thread ─┼─▶ (one per camera) ─round robin─▶ inference thread ─▶ alerts (MQTT, outbox)
//! camera thread ─┘   drops counted                   detector, embedder,    observer (terminal,
//!                                                    visit tracker          JSON lines)
//! ```
//! [motion gate: a later stage slots in between the slots and detection]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use streamer_alerts::{encode_jpeg, AlertPipeline, VisitOpened};
use streamer_core::{Detection, Frame};
use streamer_identity::{EventKind, Sighting, VisitEvent, VisitTracker};
use streamer_vision::{Detector, Embedder};

use crate::camera::{supervise, CameraSpec};
use crate::clock::Clock;
use crate::handoff::FreshestSlots;
use crate::telemetry::{CameraState, Event, Telemetry};
use crate::RunnerError;

/// Embeds person boxes and follows visits across cameras.
pub struct IdentityStage {
    /// The person embedder.
    pub embedder: Embedder,
    /// Visits over the HNSW index.
    pub tracker: VisitTracker,
}

/// What the pipeline tells whoever runs it, on the inference thread.
pub trait Observer: Send {
    /// A frame went through detection.
    fn frame(&mut self, _frame: &Frame, _detections: &[Detection]) {}
    /// A visit opened, changed or ended.
    fn visit(&mut self, _event: &VisitEvent) {}
    /// Stage one of an alert went into the outbox.
    fn alert_sent(&mut self, _camera: &str, _visit_id: &str, _alert_id: &str) {}
}

/// The stages the inference thread owns.
pub struct Stages {
    /// The person detector.
    pub detector: Detector,
    /// Embedding and visits (`None`: detections only).
    pub identity: Option<IdentityStage>,
    /// Alerts (`None`: no broker configured).
    pub alerts: Option<Arc<AlertPipeline>>,
    /// Told about frames, visits and alerts.
    pub observer: Box<dyn Observer>,
    /// Turns frame times into local time for routing (quiet hours).
    pub clock: Clock,
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
    /// Starts one supervisor thread per camera and the inference thread.
    pub fn start(cameras: Vec<CameraSpec>, stages: Stages) -> Result<Self, RunnerError> {
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
            let name = format!("camera-{}", spec.name);
            handles.push(
                thread::Builder::new()
                    .name(name)
                    .spawn(move || supervise(spec, index, slots, telemetry, stop))
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
    /// Last time a person was seen, per camera (epoch ms).
    last_person: BTreeMap<String, u64>,
    present: BTreeMap<String, bool>,
    last_report: Option<Instant>,
}

impl Inference {
    fn new(stages: Stages, cameras: Vec<String>, telemetry: Arc<Telemetry>) -> Self {
        Self {
            stages,
            cameras,
            telemetry,
            last_person: BTreeMap::new(),
            present: BTreeMap::new(),
            last_report: None,
        }
    }

    fn run(mut self, slots: &FreshestSlots, stop: &AtomicBool) -> Option<Arc<AlertPipeline>> {
        while !stop.load(Ordering::Relaxed) {
            if let Some(frame) = slots.take(Duration::from_millis(200)) {
                let decoded_at = Instant::now();
                if let Err(error) = self.process(&frame) {
                    self.telemetry.emit(Event::StageFailed {
                        stage: error.0,
                        camera: &frame.camera,
                        error: &error.1,
                    });
                }
                self.telemetry.emit(Event::FrameProcessed {
                    camera: &frame.camera,
                    latency: decoded_at.elapsed(),
                });
            }
            self.housekeeping();
        }
        if let Some(identity) = self.stages.identity.as_mut() {
            for event in identity.tracker.finish(now_ms()) {
                self.stages.observer.visit(&event);
            }
        }
        if let Some(alerts) = &self.stages.alerts {
            for camera in &self.cameras {
                alerts.set_person_present(camera, false);
                alerts.set_connected(camera, false);
            }
        }
        self.stages.alerts.take()
    }

    fn process(&mut self, frame: &Frame) -> Result<(), (&'static str, String)> {
        let detections = self
            .stages
            .detector
            .detect(frame)
            .map_err(|e| ("detect", e.to_string()))?;
        self.stages.observer.frame(frame, &detections);
        let boxes: Vec<_> = detections
            .iter()
            .filter(|d| d.is_person())
            .map(|d| d.bbox)
            .collect();
        if !boxes.is_empty() {
            self.last_person
                .insert(frame.camera.to_string(), frame.pts_ms());
            self.set_present(&frame.camera, true);
        }
        let Some(identity) = self.stages.identity.as_mut() else {
            return Ok(());
        };
        let events = if boxes.is_empty() {
            identity.tracker.tick(frame.pts_ms())
        } else {
            let embeddings = identity
                .embedder
                .embed(frame, &boxes)
                .map_err(|e| ("embed", e.to_string()))?;
            let sightings: Vec<Sighting> = boxes
                .into_iter()
                .zip(embeddings)
                .map(|(b, e)| Sighting::from_frame(frame, b, e))
                .collect();
            identity
                .tracker
                .observe(&sightings)
                .map_err(|e| ("identity", e.to_string()))?
                .events
        };
        for event in &events {
            self.stages.observer.visit(event);
            if event.kind == EventKind::New {
                self.alert(frame, &detections, event)?;
            }
        }
        Ok(())
    }

    fn alert(
        &mut self,
        frame: &Frame,
        detections: &[Detection],
        event: &VisitEvent,
    ) -> Result<(), (&'static str, String)> {
        let Some(alerts) = &self.stages.alerts else {
            return Ok(());
        };
        let snapshot = encode_jpeg(frame.width, frame.height, &frame.rgb, 80)
            .map_err(|e| ("alert", e.to_string()))?;
        let receipt = alerts
            .visit_opened(VisitOpened {
                camera: frame.camera.to_string(),
                visit_id: event.visit_id.to_string(),
                time: self.stages.clock.local_time(frame.pts),
                width: frame.width,
                height: frame.height,
                detections: detections.to_vec(),
                snapshot_jpeg: Some(snapshot),
                image: None,
            })
            .map_err(|e| ("alert", e.to_string()))?;
        self.stages
            .observer
            .alert_sent(&frame.camera, &event.visit_id.to_string(), receipt.id());
        Ok(())
    }

    fn set_present(&mut self, camera: &str, present: bool) {
        if self.present.get(camera) == Some(&present) {
            return;
        }
        self.present.insert(camera.to_string(), present);
        if let Some(alerts) = &self.stages.alerts {
            alerts.set_person_present(camera, present);
        }
    }

    /// Occupancy off once nobody was seen for a visit's end time; camera
    /// health to Home Assistant every few seconds.
    fn housekeeping(&mut self) {
        let now = now_ms();
        let end_after = self
            .stages
            .identity
            .as_ref()
            .map_or(30_000, |i| i.tracker.config().visit_end_after_ms);
        let gone: Vec<String> = self
            .last_person
            .iter()
            .filter(|(_, t)| now.saturating_sub(**t) >= end_after)
            .map(|(c, _)| c.clone())
            .collect();
        for camera in gone {
            self.last_person.remove(&camera);
            self.set_present(&camera, false);
        }
        if let Some(identity) = self.stages.identity.as_mut() {
            for event in identity.tracker.tick(now) {
                self.stages.observer.visit(&event);
            }
        }
        if self.last_report.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        self.last_report = Some(Instant::now());
        let Some(alerts) = &self.stages.alerts else {
            return;
        };
        for stats in self.telemetry.cameras() {
            let h = stats.health();
            alerts.set_connected(&h.name, h.state == CameraState::Online);
            alerts.set_diagnostics(&h.name, h.processed_fps, h.frames_dropped, h.reconnects);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
