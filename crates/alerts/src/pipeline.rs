//! Two-stage alerts. [`AlertPipeline::visit_opened`] sends stage one at
//! once (camera, time, visit id, snapshot, detector labels, rule-based
//! urgency) and returns; stage two runs on its own thread: describe the
//! frame, triage the description, and publish the verdict as an update
//! under the same alert id. A deadline bounds stage two; when it expires,
//! or the model fails or answers nonsense, the rule-based verdict goes out
//! instead, marked `fallback` with the reason. A slow model therefore never
//! holds up stage one or the caller.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use streamer_core::Detection;
use streamer_reason::{ChatBackend, ImageInput, Scene};

use crate::alert::{Alert, Stage, Topics};
use crate::config::{camera_slug, AlertsConfig};
use crate::discovery::{camera_discovery, hub_discovery};
use crate::model_queue::{Job, Judged, ModelQueue, ModelQueueStats};
use crate::mqtt::{lock, on_off, DeliveryCounts, MqttPublisher, MqttSettings, Shared};
use crate::outbox::{NewMessage, Outbox};
use crate::policy::{decide, AlertCandidate, Decision, Policy, RoutingState};
use crate::rules::{rule_verdict, NightHours, RuleVerdict};
use crate::AlertsError;

/// A visit has opened: what stage one sends and stage two looks at.
#[derive(Clone, Debug)]
pub struct VisitOpened {
    /// Camera name.
    pub camera: String,
    /// The visit's id (from the identity stage).
    pub visit_id: String,
    /// Local time of the frame (with its UTC offset). Routing (quiet
    /// hours, cooldowns) judges the alert at this time.
    pub time: DateTime<FixedOffset>,
    /// Frame size, for placing boxes in the label description.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Detector output for the frame.
    pub detections: Vec<Detection>,
    /// The snapshot as JPEG (see [`encode_jpeg`]); published retained for
    /// Home Assistant's image entity.
    pub snapshot_jpeg: Option<Vec<u8>>,
    /// The frame a vision model should describe (default: the snapshot).
    pub image: Option<ImageInput>,
}

/// Per-camera health shown as Home Assistant diagnostic sensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CameraDiagnostics {
    /// Frames per second processed.
    pub fps: f64,
    /// Frames dropped so far.
    pub dropped_frames: u64,
    /// Source reconnections so far.
    pub reconnects: u64,
    /// Frames the motion gate kept from detection so far.
    pub frames_gated_out: u64,
    /// Describe + triage time of the last stage two, in ms.
    pub model_latency_ms: Option<u64>,
}

/// A camera's figures from the live pipeline, for
/// [`AlertPipeline::set_diagnostics`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LiveFigures {
    /// Frames per second processed.
    pub fps: f64,
    /// Frames dropped so far.
    pub dropped_frames: u64,
    /// Source reconnections so far.
    pub reconnects: u64,
    /// Frames the motion gate kept from detection so far.
    pub frames_gated_out: u64,
}

/// What `visit_opened` returns: stage one as sent, and a way to wait for
/// stage two.
#[derive(Debug)]
pub struct AlertReceipt {
    /// The alert as stage one sent it.
    pub initial: Alert,
    /// Time from the call to stage one being in the outbox.
    pub stage_one_latency: Duration,
    stage_two: mpsc::Receiver<Alert>,
}

impl AlertReceipt {
    /// The alert id shared by both stages.
    pub fn id(&self) -> &str {
        &self.initial.id
    }

    /// Waits up to `timeout` for stage two (stored in the outbox when it
    /// returns).
    pub fn wait_stage_two(&self, timeout: Duration) -> Option<Alert> {
        self.stage_two.recv_timeout(timeout).ok()
    }
}

/// How the pipeline is put together; built once from the config.
struct Inner {
    config: AlertsConfig,
    policy: Policy,
    topics: Topics,
    shared: Arc<Shared>,
    backend: Option<Arc<dyn ChatBackend>>,
    model_queue: Option<ModelQueue>,
    diagnostics: Mutex<BTreeMap<String, CameraDiagnostics>>,
    alert_counter: AtomicU64,
}

/// The alerts stage: routing, the outbox, MQTT delivery and two-stage
/// triage.
pub struct AlertPipeline {
    inner: Arc<Inner>,
    publisher: Option<MqttPublisher>,
    stage_two: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for AlertPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertPipeline")
            .field("topic_prefix", &self.inner.topics.prefix())
            .field(
                "backend",
                &self.inner.backend.as_ref().map(|b| b.describe()),
            )
            .finish_non_exhaustive()
    }
}

impl AlertPipeline {
    /// Opens the outbox, starts MQTT delivery (connecting in the
    /// background) and publishes discovery for the configured cameras.
    /// Without a `backend` stage two always sends the rule-based verdict.
    pub fn start(
        config: &AlertsConfig,
        backend: Option<Arc<dyn ChatBackend>>,
    ) -> Result<Self, AlertsError> {
        Self::start_with(config, backend, true)
    }

    /// The same stages without a broker: alerts are decided, journaled in
    /// the outbox and handed back through their receipts, but never sent;
    /// each message counts as done once journaled, so memory stays flat
    /// however long the run. Give `config.outbox_dir` a throwaway
    /// directory.
    pub fn start_without_broker(
        config: &AlertsConfig,
        backend: Option<Arc<dyn ChatBackend>>,
    ) -> Result<Self, AlertsError> {
        Self::start_with(config, backend, false)
    }

    fn start_with(
        config: &AlertsConfig,
        backend: Option<Arc<dyn ChatBackend>>,
        connect: bool,
    ) -> Result<Self, AlertsError> {
        config.validate()?;
        let settings = MqttSettings::from_config(config)?;
        let outbox = Outbox::open(&config.outbox_dir)?;
        let topics = Topics::new(&config.mqtt.topic_prefix, &config.mqtt.discovery_prefix);
        let policy = Policy::from_config(&config.routing, &config.mqtt.topic_prefix);
        let shared = Arc::new(Shared::new(
            outbox,
            RoutingState::new(config.routing.initial_mode.clone()),
            policy.mode_names(),
            topics.clone(),
        ));
        let (topic, payload) = hub_discovery(&topics, &policy.mode_names());
        shared.set_discovery(topic, payload.to_string().into_bytes());
        shared.publish_hub_states();
        let model_queue = match &backend {
            Some(backend) => Some(
                ModelQueue::start(Arc::clone(backend), config.triage.max_model_jobs)
                    .map_err(|e| AlertsError::Runtime(e.to_string()))?,
            ),
            None => None,
        };
        let inner = Arc::new(Inner {
            config: config.clone(),
            policy,
            topics,
            shared: Arc::clone(&shared),
            backend,
            model_queue,
            diagnostics: Mutex::new(BTreeMap::new()),
            alert_counter: AtomicU64::new(0),
        });
        for camera in config.cameras.keys() {
            inner.ensure_camera(camera);
        }
        if !connect {
            shared.set_no_broker();
        }
        let publisher = if connect {
            Some(MqttPublisher::start(settings, shared)?)
        } else {
            None
        };
        Ok(Self {
            inner,
            publisher,
            stage_two: Mutex::new(Vec::new()),
        })
    }

    /// Stage one now, stage two in the background. Returns once stage one
    /// is in the outbox (on disk); delivery follows as soon as the broker
    /// is reachable.
    pub fn visit_opened(&self, visit: VisitOpened) -> Result<AlertReceipt, AlertsError> {
        let started = Instant::now();
        let inner = &self.inner;
        inner.ensure_camera(&visit.camera);
        let labels = all_labels(&visit.detections);
        let verdict = inner.rules(&visit, &labels);
        let id = inner.alert_id(&visit);
        let mut initial = Alert {
            id,
            visit_id: visit.visit_id.clone(),
            camera: visit.camera.clone(),
            time: visit.time,
            stage: Stage::Initial,
            urgency: verdict.urgency,
            message: verdict.message.clone(),
            should_notify: verdict.should_notify,
            labels: unique(&labels),
            description: None,
            description_source: None,
            fallback_reason: None,
            injection_suspected: false,
            model_latency_ms: None,
            delivered_to: Vec::new(),
            suppressed: None,
            snapshot_topic: visit
                .snapshot_jpeg
                .as_ref()
                .map(|_| inner.topics.snapshot(&visit.camera)),
        };
        let decision = inner.route(&initial, None);
        initial.delivered_to = decision.deliver_to.clone();
        initial.suppressed = decision.suppressed.as_ref().map(|s| s.to_string());
        let mut messages = Vec::new();
        if let Some(jpeg) = &visit.snapshot_jpeg {
            messages.push(NewMessage {
                topic: inner.topics.snapshot(&visit.camera),
                payload: jpeg.clone(),
                retain: true,
            });
        }
        messages.extend(inner.alert_messages(&initial));
        inner.shared.enqueue(messages)?;
        if labels.iter().any(|l| l == crate::rules::PERSON_LABEL) {
            self.set_person_present(&visit.camera, true);
        }
        let stage_one_latency = started.elapsed();
        tracing::debug!(
            camera = %visit.camera,
            visit = %visit.visit_id,
            alert = %initial.id,
            urgency = %initial.urgency,
            delivered_to = ?initial.delivered_to,
            latency_us = stage_one_latency.as_micros() as u64,
            "Stage one stored"
        );

        // Queued here, on the caller's thread, so that a `visit_ended`
        // that follows always finds the job.
        let asked = inner.ask_model(&visit, started);
        let (tx, rx) = mpsc::channel();
        let stage_two_inner = Arc::clone(&self.inner);
        let first = initial.clone();
        let handle = thread::Builder::new()
            .name("alerts-stage2".into())
            .spawn(move || {
                let alert = stage_two_inner.stage_two(first, &visit, verdict, asked);
                let _ = tx.send(alert);
            })
            .map_err(|e| AlertsError::Runtime(e.to_string()))?;
        let mut handles = lock(&self.stage_two);
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
        Ok(AlertReceipt {
            initial,
            stage_one_latency,
            stage_two: rx,
        })
    }

    /// Sets the camera's person-present sensor (visit_opened sets it on
    /// when a person is in the frame; the caller sets it off when the
    /// visit closes).
    pub fn set_person_present(&self, camera: &str, present: bool) {
        self.inner.ensure_camera(camera);
        self.inner
            .shared
            .set_state(self.inner.topics.person(camera), on_off(present).into());
    }

    /// Sets the camera's connectivity sensor and its availability.
    pub fn set_connected(&self, camera: &str, connected: bool) {
        self.inner.ensure_camera(camera);
        self.inner.shared.set_state(
            self.inner.topics.connected(camera),
            on_off(connected).into(),
        );
        let availability = if connected {
            crate::alert::ONLINE
        } else {
            crate::alert::OFFLINE
        };
        self.inner.shared.set_state(
            self.inner.topics.camera_availability(camera),
            availability.into(),
        );
    }

    /// Updates the camera's live figures (the model latency comes from
    /// stage two and is kept).
    pub fn set_diagnostics(&self, camera: &str, live: LiveFigures) {
        self.inner.ensure_camera(camera);
        self.inner.update_diagnostics(camera, |d| {
            d.fps = live.fps;
            d.dropped_frames = live.dropped_frames;
            d.reconnects = live.reconnects;
            d.frames_gated_out = live.frames_gated_out;
        });
    }

    /// The routing state now (mode, switch, suspension).
    pub fn routing_state(&self) -> RoutingState {
        lock(&self.inner.shared.routing).clone()
    }

    /// Changes the routing mode (as Home Assistant's select does).
    pub fn set_mode(&self, mode: &str) -> Result<(), AlertsError> {
        if !self.inner.policy.modes.contains_key(mode) {
            return Err(AlertsError::Config(vec![format!(
                "mode `{mode}` is not one of {}",
                self.inner.policy.mode_names().join(", ")
            )]));
        }
        lock(&self.inner.shared.routing).mode = mode.to_string();
        self.inner.shared.publish_hub_states();
        Ok(())
    }

    /// Turns notifications on or off (as the hub switch does).
    pub fn set_notifications(&self, on: bool) {
        lock(&self.inner.shared.routing).notifications = on;
        self.inner.shared.publish_hub_states();
    }

    /// Holds non-critical alerts back until `until` (`None` resumes).
    pub fn suspend_until(&self, until: Option<DateTime<FixedOffset>>) {
        lock(&self.inner.shared.routing).suspended_until = until;
        self.inner.shared.publish_hub_states();
    }

    /// Delivery counters.
    pub fn delivery(&self) -> DeliveryCounts {
        self.inner.shared.counts()
    }

    /// Whether the broker connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.shared.is_connected()
    }

    /// Outbox messages not yet acknowledged by the broker.
    pub fn pending(&self) -> usize {
        self.inner.shared.pending()
    }

    /// Waits until the outbox is empty, up to `timeout`; true if it is.
    pub fn wait_delivered(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.pending() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The visit has ended: a stage two of it still waiting for the model
    /// is dropped (its alert keeps the rule-based verdict, with the reason)
    /// instead of spending a model call on someone who has left.
    pub fn visit_ended(&self, visit_id: &str) {
        if let Some(queue) = &self.inner.model_queue {
            queue.visit_ended(visit_id);
        }
    }

    /// What the stage-two model queue holds and has done; `None` without a
    /// model.
    pub fn model_queue(&self) -> Option<ModelQueueStats> {
        self.inner.model_queue.as_ref().map(ModelQueue::stats)
    }

    /// Clean exit: waits for running stage twos (each is bounded by the
    /// deadline), sends what is pending for up to `flush`, publishes
    /// `stopped` and disconnects. Returns the number of messages left in the
    /// outbox for the next start.
    pub fn shutdown(mut self, flush: Duration) -> usize {
        if let Some(queue) = &self.inner.model_queue {
            queue.stop();
        }
        let handles: Vec<_> = lock(&self.stage_two).drain(..).collect();
        for handle in handles {
            if handle.join().is_err() {
                tracing::error!("A stage-two thread panicked");
            }
        }
        match self.publisher.take() {
            Some(publisher) => publisher.shutdown(flush),
            None => self.pending(),
        }
    }
}

impl Inner {
    fn ensure_camera(&self, camera: &str) {
        let with_model = self.backend.is_some();
        let (topic, _) = camera_discovery(&self.topics, camera, camera, with_model);
        if self.shared.has_discovery(&topic) {
            return;
        }
        let display = self
            .config
            .cameras
            .get(camera)
            .and_then(|c| c.display_name.clone())
            .unwrap_or_else(|| camera.to_string());
        let (topic, payload) = camera_discovery(&self.topics, camera, &display, with_model);
        self.shared
            .set_discovery(topic, payload.to_string().into_bytes());
        self.publish_diagnostics(camera, CameraDiagnostics::default());
    }

    fn rules(&self, visit: &VisitOpened, labels: &[String]) -> RuleVerdict {
        rule_verdict(
            &visit.camera,
            labels,
            visit.time.time(),
            NightHours {
                start: self.config.triage.night_start,
                end: self.config.triage.night_end,
            },
        )
    }

    /// `<camera>-<yyyymmddThhmmss.mmm>-<n>`: unique across restarts (the
    /// time) and within one run (the counter).
    fn alert_id(&self, visit: &VisitOpened) -> String {
        let n = self.alert_counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}-{}-{n}",
            camera_slug(&visit.camera),
            visit.time.format("%Y%m%dT%H%M%S%.3f")
        )
    }

    /// Decides and records where an alert goes.
    fn route(&self, alert: &Alert, update_of: Option<&[String]>) -> Decision {
        let candidate = AlertCandidate {
            camera: &alert.camera,
            urgency: alert.urgency,
            update_of,
        };
        let mut state = lock(&self.shared.routing);
        let decision = decide(&self.policy, &state, &candidate, alert.time);
        state.record(&candidate, &decision, alert.time);
        decision
    }

    /// The HA event and one message per delivered channel.
    fn alert_messages(&self, alert: &Alert) -> Vec<NewMessage> {
        let mut messages = vec![NewMessage {
            topic: self.topics.event(&alert.camera),
            payload: alert.ha_event().to_string().into_bytes(),
            retain: false,
        }];
        let json = serde_json::to_vec(alert).expect("alerts serialise to JSON");
        for channel in &self.policy.channels {
            if alert.delivered_to.contains(&channel.name) {
                messages.push(NewMessage {
                    topic: channel.topic.clone(),
                    payload: json.clone(),
                    retain: false,
                });
            }
        }
        messages
    }

    fn stage_two(
        &self,
        initial: Alert,
        visit: &VisitOpened,
        rules: RuleVerdict,
        asked: Result<ModelAnswer, String>,
    ) -> Alert {
        let started = Instant::now();
        let mut alert = initial.clone();
        match asked.and_then(ModelAnswer::wait) {
            Ok(judged) => {
                alert.stage = Stage::Triaged;
                alert.urgency = judged.urgency;
                alert.message = judged.message;
                alert.should_notify = judged.should_notify;
                alert.description = Some(judged.description);
                alert.description_source = Some(judged.description_source);
                alert.injection_suspected = judged.injection_suspected;
            }
            Err(reason) => {
                // Without a model the rules are the configured verdict.
                if self.model_queue.is_some() {
                    tracing::warn!(
                        camera = %visit.camera,
                        visit = %visit.visit_id,
                        alert = %alert.id,
                        reason = %reason,
                        "Stage two fell back to the rule-based verdict"
                    );
                }
                alert.stage = Stage::Fallback;
                alert.urgency = rules.urgency;
                alert.message = rules.message;
                alert.should_notify = rules.should_notify;
                alert.fallback_reason = Some(reason);
            }
        }
        let latency = started.elapsed().as_millis() as u64;
        alert.model_latency_ms = Some(latency);
        let decision = self.route(&alert, Some(&initial.delivered_to));
        alert.delivered_to = decision.deliver_to;
        alert.suppressed = decision.suppressed.map(|s| s.to_string());
        if let Err(e) = self.shared.enqueue(self.alert_messages(&alert)) {
            // Stage one is out; only the update is lost.
            tracing::error!(alert = %alert.id, error = %e, "Could not store the stage-two update");
        }
        if alert.stage == Stage::Triaged {
            self.update_diagnostics(&alert.camera, |d| d.model_latency_ms = Some(latency));
        }
        tracing::debug!(
            camera = %alert.camera,
            alert = %alert.id,
            stage = alert.stage.as_str(),
            urgency = %alert.urgency,
            latency_ms = latency,
            "Stage two stored"
        );
        alert
    }

    /// Queues describe + triage for the model, due `triage.deadline_ms`
    /// after `started`.
    fn ask_model(&self, visit: &VisitOpened, started: Instant) -> Result<ModelAnswer, String> {
        let Some(queue) = &self.model_queue else {
            return Err("no model configured".into());
        };
        let deadline = Duration::from_millis(self.config.triage.deadline_ms);
        let (tx, rx) = mpsc::channel();
        let notes = self
            .config
            .cameras
            .get(&visit.camera)
            .map(|c| c.notes.clone())
            .unwrap_or_default();
        let scene = Scene {
            camera: visit.camera.clone(),
            time: visit.time.format("%a %Y-%m-%d %H:%M").to_string(),
            image: visit
                .image
                .clone()
                .or_else(|| visit.snapshot_jpeg.clone().map(ImageInput::Encoded)),
            width: visit.width,
            height: visit.height,
            detections: visit.detections.clone(),
        };
        queue.submit(Job {
            visit_id: visit.visit_id.clone(),
            camera: visit.camera.clone(),
            scene,
            camera_notes: notes,
            deadline: started + deadline,
            reply: tx,
        });
        Ok(ModelAnswer {
            reply: rx,
            started,
            deadline,
        })
    }

    fn update_diagnostics(&self, camera: &str, change: impl FnOnce(&mut CameraDiagnostics)) {
        let updated = {
            let mut all = lock(&self.diagnostics);
            let entry = all.entry(camera.to_string()).or_default();
            change(entry);
            *entry
        };
        self.publish_diagnostics(camera, updated);
    }

    fn publish_diagnostics(&self, camera: &str, diagnostics: CameraDiagnostics) {
        let payload = serde_json::to_vec(&diagnostics).expect("diagnostics serialise");
        self.shared
            .set_state(self.topics.diagnostics(camera), payload);
    }
}

/// A queued model job's answer, to be waited for.
struct ModelAnswer {
    reply: mpsc::Receiver<Result<Judged, String>>,
    started: Instant,
    deadline: Duration,
}

impl ModelAnswer {
    /// The verdict, or why there is none, by the deadline.
    fn wait(self) -> Result<Judged, String> {
        let expired = || format!("deadline of {} ms expired", self.deadline.as_millis());
        let left = self.deadline.saturating_sub(self.started.elapsed());
        match self.reply.recv_timeout(left) {
            Ok(Ok(judged)) => Ok(judged),
            // The worker's own expiry notice can beat this timeout by a
            // hair; either way the deadline is what expired.
            Ok(Err(_)) if self.started.elapsed() >= self.deadline => Err(expired()),
            Ok(Err(reason)) => Err(reason),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(expired()),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("the model worker stopped".into()),
        }
    }
}

/// Detector labels, one per detection.
fn all_labels(detections: &[Detection]) -> Vec<String> {
    detections.iter().map(|d| d.label.clone()).collect()
}

/// Sorted labels without repeats.
fn unique(labels: &[String]) -> Vec<String> {
    let mut unique = labels.to_vec();
    unique.sort();
    unique.dedup();
    unique
}

/// Encodes packed RGB8 pixels as a JPEG snapshot.
pub fn encode_jpeg(
    width: u32,
    height: u32,
    rgb: &[u8],
    quality: u8,
) -> Result<Vec<u8>, AlertsError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| AlertsError::Snapshot(e.to_string()))?;
    Ok(out)
}
