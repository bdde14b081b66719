//! The stages every frame goes through, in order, whoever drives them:
//! detect → identity (embed, visits) → alerts. `streamer run` feeds it from
//! live cameras ([`crate::live`]), `streamer replay` from files
//! ([`crate::replay`]); neither decides the order itself.
//!
//! In front of detection sits the optional motion gate
//! ([`streamer_motion::MotionGate`]): a frame without motion skips
//! detection, though time still passes for identity (visits end).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use streamer_alerts::{encode_jpeg, AlertPipeline, AlertReceipt, VisitOpened};
use streamer_core::{BBox, Detection, Frame};
use streamer_identity::{EmbeddingPlan, EventKind, Sighting, VisitEvent, VisitTracker};
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
    /// Doubtful person boxes next to nothing followed: dropped by identity
    /// before embedding (see `VisitTracker::plan_embeddings`).
    pub dropped_unembedded: usize,
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

/// Detect → identity → alerts. One graph serves one thread; more threads
/// each get a graph of their own from [`StageGraph::worker`], with models of
/// their own (ONNX Runtime sessions run side by side) and the rest shared:
/// motion gate, visits, presence and alerts sit behind one lock, taken
/// only between model calls.
pub struct StageGraph {
    detector: Detector,
    embedder: Option<Embedder>,
    shared: Arc<Mutex<Shared>>,
    alerts: Option<Arc<AlertPipeline>>,
    clock: Clock,
}

/// What every worker of a graph sees the same.
struct Shared {
    gate: Option<MotionGate>,
    tracker: Option<VisitTracker>,
    alerts: Option<Arc<AlertPipeline>>,
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
        let (embedder, tracker) = match identity {
            Some(IdentityStage { embedder, tracker }) => (Some(embedder), Some(tracker)),
            None => (None, None),
        };
        Self {
            detector,
            embedder,
            shared: Arc::new(Mutex::new(Shared {
                gate: None,
                tracker,
                alerts: alerts.clone(),
                last_person: BTreeMap::new(),
                present: BTreeMap::new(),
                drop_ended_model_work: false,
            })),
            alerts,
            clock,
        }
    }

    /// Another worker on the same visits, gate and alerts, with models of
    /// its own: two threads then detect and embed side by side. It needs an
    /// embedder when this graph embeds (identity runs).
    pub fn worker(
        &self,
        detector: Detector,
        embedder: Option<Embedder>,
    ) -> Result<StageGraph, StageError> {
        let embedder = match (self.embedder.is_some(), embedder) {
            (true, None) => {
                return Err(failed("embed")(
                    "identity runs, so another worker needs an embedder of its own".into(),
                ))
            }
            (true, e) => e,
            (false, _) => None,
        };
        Ok(StageGraph {
            detector,
            embedder,
            shared: Arc::clone(&self.shared),
            alerts: self.alerts.clone(),
            clock: self.clock.clone(),
        })
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts the motion gate in front of detection.
    pub fn with_motion_gate(self, gate: MotionGate) -> Self {
        self.shared().gate = Some(gate);
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
        if let Some(embedder) = self.embedder.as_mut() {
            embedder
                .warm_up()
                .map_err(|e| failed("embed")(e.to_string()))?;
        }
        Ok(())
    }

    /// Whether somebody was seen on `camera` within a visit's end time.
    pub fn person_present(&self, camera: &str) -> bool {
        self.shared().present.get(camera).copied().unwrap_or(false)
    }

    /// What the motion gate did on a camera (`None` without a gate).
    pub fn gate_counts(&self, camera: &str) -> Option<GateCounts> {
        self.shared().gate.as_ref().map(|g| g.counts(camera))
    }

    /// Live: when a visit ends, its stage two still waiting for the model
    /// is dropped (the person has left; the rules' verdict stands). Off for
    /// replay, where footage time runs far ahead of the model.
    pub fn drop_model_work_of_ended_visits(&mut self, on: bool) {
        self.shared().drop_ended_model_work = on;
    }

    /// The alerts stage, if any.
    pub fn alerts(&self) -> Option<&Arc<AlertPipeline>> {
        self.alerts.as_ref()
    }

    /// Hands the alerts stage back (for shutdown).
    pub fn take_alerts(&mut self) -> Option<Arc<AlertPipeline>> {
        self.shared().alerts = None;
        self.alerts.take()
    }

    /// Runs one frame through every stage.
    pub fn process(&mut self, frame: &Frame) -> Result<FrameOutcome, StageError> {
        let started = Instant::now();
        let mut outcome = self.run_stages(frame)?;
        outcome.elapsed = started.elapsed();
        Ok(outcome)
    }

    fn run_stages(&mut self, frame: &Frame) -> Result<FrameOutcome, StageError> {
        let now = frame.pts_ms();
        let gate = {
            let mut guard = self.shared();
            let s = &mut *guard;
            let gate = s.gate.as_mut().map(|gate| {
                let visit_open = s.present.get(&*frame.camera).copied().unwrap_or(false);
                gate.judge(frame, visit_open)
            });
            if gate.is_some_and(|g| !g.passes()) {
                s.update_presence(&frame.camera, now);
                let events = s.tick_tracker(now);
                return Ok(FrameOutcome {
                    gate,
                    events,
                    ..FrameOutcome::default()
                });
            }
            gate
        };
        // The models run without the lock: another worker may detect or
        // embed meanwhile.
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
        let plans = {
            let mut s = self.shared();
            if !boxes.is_empty() {
                s.last_person.insert(frame.camera.to_string(), now);
            }
            s.update_presence(&frame.camera, now);
            match s.tracker.as_mut() {
                None => return Ok(outcome),
                Some(tracker) => tracker.plan_embeddings(&frame.camera, now, &boxes, &scores),
            }
        };
        let to_embed: Vec<BBox> = boxes
            .iter()
            .zip(&plans)
            .filter(|(_, p)| **p == EmbeddingPlan::Measure)
            .map(|(b, _)| *b)
            .collect();
        let mut measured = match self.embedder.as_mut() {
            Some(embedder) if !to_embed.is_empty() => {
                let t = Instant::now();
                let embeddings = embedder
                    .embed(frame, &to_embed)
                    .map_err(|e| failed("embed")(e.to_string()))?;
                outcome.embed_time = t.elapsed();
                embeddings
            }
            _ => Vec::new(),
        }
        .into_iter();
        outcome.embedded = to_embed.len();
        let mut sightings = Vec::with_capacity(boxes.len());
        for ((b, plan), score) in boxes.into_iter().zip(plans).zip(scores) {
            let sighting = match plan {
                EmbeddingPlan::Drop => {
                    outcome.dropped_unembedded += 1;
                    continue;
                }
                EmbeddingPlan::Reuse(e) => {
                    outcome.embeddings_reused += 1;
                    Sighting::from_frame(frame, b, e).with_reused_embedding()
                }
                EmbeddingPlan::Measure => {
                    let e = measured.next().ok_or_else(|| {
                        failed("embed")("the embedder returned fewer embeddings than boxes".into())
                    })?;
                    Sighting::from_frame(frame, b, e)
                }
            };
            sightings.push(sighting.with_score(score));
        }
        {
            let mut s = self.shared();
            if let Some(tracker) = s.tracker.as_mut() {
                // No person left (or none seen): time still passes.
                outcome.events = if sightings.is_empty() {
                    tracker.tick(now)
                } else {
                    tracker
                        .observe(&sightings)
                        .map_err(|e| failed("identity")(e.to_string()))?
                        .events
                };
            }
            s.visits_ended(&outcome.events);
        }
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
        Ok(outcome)
    }

    /// Time passes without frames (live): visits end, and the occupancy
    /// sensor of a camera with nobody for a visit's end time turns off.
    pub fn tick(&mut self, now_ms: u64) -> Vec<VisitEvent> {
        let mut s = self.shared();
        s.update_all_presence(now_ms);
        s.tick_tracker(now_ms)
    }

    /// The end: every open visit ends, every person sensor turns off.
    pub fn finish(&mut self, now_ms: u64) -> Vec<VisitEvent> {
        let mut s = self.shared();
        s.last_person.clear();
        s.update_all_presence(now_ms);
        let events = match s.tracker.as_mut() {
            Some(tracker) => tracker.finish(now_ms),
            None => Vec::new(),
        };
        s.visits_ended(&events);
        events
    }

    /// Identity's summary (persons, visits, joins), if identity runs.
    pub fn identity_summary(&self) -> Option<streamer_identity::IdentitySummary> {
        self.shared().tracker.as_ref().map(VisitTracker::summary)
    }
}

impl Shared {
    /// Time passes for identity: visits whose people are gone end.
    fn tick_tracker(&mut self, now_ms: u64) -> Vec<VisitEvent> {
        let events = match self.tracker.as_mut() {
            Some(tracker) => tracker.tick(now_ms),
            None => Vec::new(),
        };
        self.visits_ended(&events);
        events
    }

    /// Tells the alerts stage which visits ended (see
    /// [`StageGraph::drop_model_work_of_ended_visits`]).
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

    /// The identity settings' visit end time, in ms.
    fn visit_end_after_ms(&self) -> u64 {
        self.tracker
            .as_ref()
            .map_or(30_000, |t| t.config().visit_end_after_ms)
    }

    fn update_all_presence(&mut self, now_ms: u64) {
        let cameras: Vec<String> = self.present.keys().cloned().collect();
        for camera in cameras {
            self.update_presence(&camera, now_ms);
        }
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
}
