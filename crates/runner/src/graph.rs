//! The stages every frame goes through, in order, whoever drives them:
//! detect → identity (embed, visits) → alerts. `streamer run` feeds it from
//! live cameras ([`crate::live`]), `streamer replay` from files
//! ([`crate::replay`]); neither decides the order itself.
//!
//! In front of detection sits the optional motion gate
//! ([`streamer_motion::MotionGate`]): a frame without motion skips
//! detection, though time still passes for identity (visits end).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamer_alerts::{encode_jpeg, AlertPipeline, AlertReceipt, VisitOpened};
use streamer_core::{BBox, Detection, Frame};
use streamer_identity::{EventKind, Sighting, VisitEvent, VisitTracker};
use streamer_motion::{GateCounts, GateDecision, MotionGate};
use streamer_vision::{Detector, DetectorTimings, Embedder};

use crate::clock::Clock;

/// Embeds person boxes and follows visits across cameras.
pub struct IdentityStage {
    /// The person embedder.
    pub embedder: Embedder,
    /// Visits over the HNSW index.
    pub tracker: VisitTracker,
}

/// What one frame produced.
#[derive(Debug, Default)]
pub struct FrameOutcome {
    /// The motion gate's decision (`None` without a gate). A frame it
    /// closed on was not detected: no detections, no timings.
    pub gate: Option<GateDecision>,
    /// Detector output.
    pub detections: Vec<Detection>,
    /// Time in each part of detection.
    pub timings: DetectorTimings,
    /// Time embedding person crops.
    pub embed_time: Duration,
    /// Person boxes embedded on this frame.
    pub embedded: usize,
    /// Person boxes that reused their track's embedding instead.
    pub embeddings_reused: usize,
    /// Visits opened, changed or ended by this frame.
    pub events: Vec<VisitEvent>,
    /// Stage one of each alert this frame opened, with a way to wait for
    /// stage two.
    pub alerts: Vec<AlertReceipt>,
    /// Time in all the stages together (gate, detect, embed, identity,
    /// alerts' stage one).
    pub elapsed: Duration,
}

/// A stage failed on a frame.
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct StageError {
    /// `detect`, `embed`, `identity` or `alert`.
    pub stage: &'static str,
    /// What went wrong.
    pub message: String,
}

fn failed(stage: &'static str) -> impl Fn(String) -> StageError {
    move |message| StageError { stage, message }
}

/// Detect → identity → alerts, owned by one thread (every stage is
/// `&mut self`).
pub struct StageGraph {
    gate: Option<MotionGate>,
    detector: Detector,
    identity: Option<IdentityStage>,
    alerts: Option<Arc<AlertPipeline>>,
    clock: Clock,
    /// Last frame time with a person, per camera (ms on the frame clock).
    last_person: BTreeMap<String, u64>,
    present: BTreeMap<String, bool>,
    drop_ended_model_work: bool,
}

impl StageGraph {
    /// The graph over these stages. Without `identity` there are no visits,
    /// so no alerts either.
    pub fn new(
        detector: Detector,
        identity: Option<IdentityStage>,
        alerts: Option<Arc<AlertPipeline>>,
        clock: Clock,
    ) -> Self {
        Self {
            gate: None,
            detector,
            identity,
            alerts,
            clock,
            last_person: BTreeMap::new(),
            present: BTreeMap::new(),
            drop_ended_model_work: false,
        }
    }

    /// Puts the motion gate in front of detection.
    pub fn with_motion_gate(mut self, gate: MotionGate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Runs the detector and the embedder once on blank input, so that
    /// their buffers reach full size before the first camera frame: memory
    /// then stays level from the start, and no camera's first frame pays
    /// for the runtime's first run.
    pub fn warm_up(&mut self) -> Result<(), StageError> {
        self.detector
            .warm_up()
            .map_err(|e| failed("detect")(e.to_string()))?;
        if let Some(identity) = self.identity.as_mut() {
            identity
                .embedder
                .warm_up()
                .map_err(|e| failed("embed")(e.to_string()))?;
        }
        Ok(())
    }

    /// Whether somebody was seen on `camera` within a visit's end time.
    pub fn person_present(&self, camera: &str) -> bool {
        self.present.get(camera).copied().unwrap_or(false)
    }

    /// What the motion gate did on a camera (`None` without a gate).
    pub fn gate_counts(&self, camera: &str) -> Option<GateCounts> {
        self.gate.as_ref().map(|g| g.counts(camera))
    }

    /// Live: when a visit ends, its stage two still waiting for the model
    /// is dropped (the person has left; the rules' verdict stands). Off for
    /// replay, where footage time runs far ahead of the model.
    pub fn drop_model_work_of_ended_visits(&mut self, on: bool) {
        self.drop_ended_model_work = on;
    }

    /// Tells the alerts stage which visits ended (see
    /// [`Self::drop_model_work_of_ended_visits`]).
    fn visits_ended(&self, events: &[VisitEvent]) {
        if !self.drop_ended_model_work {
            return;
        }
        let Some(alerts) = &self.alerts else {
            return;
        };
        for event in events.iter().filter(|e| e.kind == EventKind::End) {
            alerts.visit_ended(&event.visit_id.to_string());
        }
    }

    /// The alerts stage, if any.
    pub fn alerts(&self) -> Option<&Arc<AlertPipeline>> {
        self.alerts.as_ref()
    }

    /// Hands the alerts stage back (for shutdown).
    pub fn take_alerts(&mut self) -> Option<Arc<AlertPipeline>> {
        self.alerts.take()
    }

    /// The identity settings' visit end time, in ms.
    fn visit_end_after_ms(&self) -> u64 {
        self.identity
            .as_ref()
            .map_or(30_000, |i| i.tracker.config().visit_end_after_ms)
    }

    /// Runs one frame through every stage.
    pub fn process(&mut self, frame: &Frame) -> Result<FrameOutcome, StageError> {
        let started = Instant::now();
        let mut outcome = self.run_stages(frame)?;
        outcome.elapsed = started.elapsed();
        Ok(outcome)
    }

    fn run_stages(&mut self, frame: &Frame) -> Result<FrameOutcome, StageError> {
        let gate = self.gate.as_mut().map(|gate| {
            let visit_open = self.present.get(&*frame.camera).copied().unwrap_or(false);
            gate.judge(frame, visit_open)
        });
        if gate.is_some_and(|g| !g.passes()) {
            self.update_presence(&frame.camera, frame.pts_ms());
            let events = match self.identity.as_mut() {
                Some(identity) => identity.tracker.tick(frame.pts_ms()),
                None => Vec::new(),
            };
            self.visits_ended(&events);
            return Ok(FrameOutcome {
                gate,
                events,
                ..FrameOutcome::default()
            });
        }
        let (detections, timings) = self
            .detector
            .detect_timed(frame)
            .map_err(|e| failed("detect")(e.to_string()))?;
        let mut outcome = FrameOutcome {
            gate,
            detections,
            timings,
            ..FrameOutcome::default()
        };
        let (boxes, scores): (Vec<_>, Vec<_>) = outcome
            .detections
            .iter()
            .filter(|d| d.is_person())
            .map(|d| (d.bbox, d.score))
            .unzip();
        if !boxes.is_empty() {
            self.last_person
                .insert(frame.camera.to_string(), frame.pts_ms());
        }
        self.update_presence(&frame.camera, frame.pts_ms());
        let Some(identity) = self.identity.as_mut() else {
            return Ok(outcome);
        };
        outcome.events = if boxes.is_empty() {
            identity.tracker.tick(frame.pts_ms())
        } else {
            let reuse = identity
                .tracker
                .reusable_embeddings(&frame.camera, frame.pts_ms(), &boxes);
            let to_embed: Vec<BBox> = boxes
                .iter()
                .zip(&reuse)
                .filter(|(_, r)| r.is_none())
                .map(|(b, _)| *b)
                .collect();
            let mut measured = if to_embed.is_empty() {
                Vec::new()
            } else {
                let t = Instant::now();
                let embeddings = identity
                    .embedder
                    .embed(frame, &to_embed)
                    .map_err(|e| failed("embed")(e.to_string()))?;
                outcome.embed_time = t.elapsed();
                embeddings
            }
            .into_iter();
            outcome.embedded = to_embed.len();
            outcome.embeddings_reused = boxes.len() - to_embed.len();
            let mut sightings = Vec::with_capacity(boxes.len());
            for ((b, reused), score) in boxes.into_iter().zip(reuse).zip(scores) {
                let sighting = match reused {
                    Some(e) => Sighting::from_frame(frame, b, e).with_reused_embedding(),
                    None => {
                        let e = measured.next().ok_or_else(|| {
                            failed("embed")(
                                "the embedder returned fewer embeddings than boxes".into(),
                            )
                        })?;
                        Sighting::from_frame(frame, b, e)
                    }
                };
                sightings.push(sighting.with_score(score));
            }
            identity
                .tracker
                .observe(&sightings)
                .map_err(|e| failed("identity")(e.to_string()))?
                .events
        };
        if let Some(alerts) = &self.alerts {
            // One snapshot for every visit this frame opens (a group
            // walking in opens several at once).
            let mut snapshot = None;
            for event in outcome.events.iter().filter(|e| e.kind == EventKind::New) {
                let snapshot = match &snapshot {
                    Some(jpeg) => Vec::clone(jpeg),
                    None => {
                        let jpeg = encode_jpeg(frame.width, frame.height, &frame.rgb, 80)
                            .map_err(|e| failed("alert")(e.to_string()))?;
                        snapshot.insert(jpeg).clone()
                    }
                };
                let receipt = alerts
                    .visit_opened(VisitOpened {
                        camera: frame.camera.to_string(),
                        visit_id: event.visit_id.to_string(),
                        time: self.clock.local_time(frame.pts),
                        width: frame.width,
                        height: frame.height,
                        detections: outcome.detections.clone(),
                        snapshot_jpeg: Some(snapshot),
                        image: None,
                    })
                    .map_err(|e| failed("alert")(e.to_string()))?;
                outcome.alerts.push(receipt);
            }
        }
        self.visits_ended(&outcome.events);
        Ok(outcome)
    }

    /// Time passes without frames (live): visits end, and the occupancy
    /// sensor of a camera with nobody for a visit's end time turns off.
    pub fn tick(&mut self, now_ms: u64) -> Vec<VisitEvent> {
        let cameras: Vec<String> = self.present.keys().cloned().collect();
        for camera in cameras {
            self.update_presence(&camera, now_ms);
        }
        let events = match self.identity.as_mut() {
            Some(identity) => identity.tracker.tick(now_ms),
            None => Vec::new(),
        };
        self.visits_ended(&events);
        events
    }

    /// The end: every open visit ends, every person sensor turns off.
    pub fn finish(&mut self, now_ms: u64) -> Vec<VisitEvent> {
        self.last_person.clear();
        let cameras: Vec<String> = self.present.keys().cloned().collect();
        for camera in cameras {
            self.update_presence(&camera, now_ms);
        }
        let events = match self.identity.as_mut() {
            Some(identity) => identity.tracker.finish(now_ms),
            None => Vec::new(),
        };
        self.visits_ended(&events);
        events
    }

    /// The person sensor: on while somebody was seen within a visit's end
    /// time (on the frame clock), off after.
    fn update_presence(&mut self, camera: &str, now_ms: u64) {
        let end_after = self.visit_end_after_ms();
        let present = self
            .last_person
            .get(camera)
            .is_some_and(|t| now_ms.saturating_sub(*t) < end_after);
        if self.present.get(camera) == Some(&present) {
            return;
        }
        self.present.insert(camera.to_string(), present);
        if let Some(alerts) = &self.alerts {
            alerts.set_person_present(camera, present);
        }
    }

    /// Identity's summary (persons, visits, joins), if identity runs.
    pub fn identity_summary(&self) -> Option<streamer_identity::IdentitySummary> {
        self.identity.as_ref().map(|i| i.tracker.summary())
    }
}
