//! The stage-two model queue: one worker thread owns the model and takes
//! jobs in order from a bounded queue. Work that has gone stale is
//! discarded, not run: a job whose deadline passed while it waited (its
//! alert has already gone out with the rule-based verdict), or whose visit
//! ended before the model got to it. Everything is counted
//! ([`ModelQueueStats`]), and nothing grows: a job that would exceed the
//! bound is refused at once and its visit gets the rule-based verdict.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Serialize;
use streamer_reason::{
    triage_until, CancelToken, ChatBackend, Describer, ReasonError, Scene, TriageInput,
};

use crate::mqtt::lock;

/// A verdict from the model.
pub(crate) struct Judged {
    pub urgency: streamer_core::Urgency,
    pub message: String,
    pub should_notify: bool,
    pub description: String,
    pub description_source: String,
    pub injection_suspected: bool,
}

/// Why the model gave no verdict; the text becomes the alert's
/// `fallback_reason`.
pub(crate) type Refusal = String;

/// What the queue has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ModelQueueStats {
    /// Jobs allowed waiting or running at once (`triage.max_model_jobs`).
    pub capacity: usize,
    /// Jobs waiting for the model now.
    pub waiting: usize,
    /// Jobs on the model now (0 or 1).
    pub running: usize,
    /// Model calls begun.
    pub started: u64,
    /// Verdicts delivered within their deadline.
    pub answered: u64,
    /// Model calls that failed or answered nonsense.
    pub failed: u64,
    /// Jobs dropped because their deadline passed (while waiting, or
    /// during the call: the late answer is thrown away).
    pub expired: u64,
    /// Jobs dropped because their visit ended before the model got to them.
    pub visit_ended: u64,
    /// Jobs refused because the queue was full.
    pub rejected_busy: u64,
}

#[derive(Default)]
struct Counters {
    waiting: AtomicUsize,
    running: AtomicUsize,
    started: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    expired: AtomicU64,
    visit_ended: AtomicU64,
    rejected_busy: AtomicU64,
}

/// One stage two's request to the model.
pub(crate) struct Job {
    pub visit_id: String,
    pub camera: String,
    pub scene: Scene,
    pub camera_notes: String,
    /// After this the answer is no use: stage two has fallen back.
    pub deadline: Instant,
    pub reply: mpsc::Sender<Result<Judged, Refusal>>,
}

struct Queued {
    job: Job,
    visit_ended: Arc<AtomicBool>,
}

/// State the worker and the submitters share.
struct Shared {
    counters: Counters,
    /// Cancel flags of queued and running jobs by visit id (at most
    /// `capacity` entries).
    by_visit: Mutex<HashMap<String, Vec<Arc<AtomicBool>>>>,
    closing: AtomicBool,
    /// Cancelled when the queue stops: the call on the model ends at its
    /// next check (between two prompt batches or two tokens).
    stop: CancelToken,
}

/// The queue in front of the model. [`ModelQueue::stop`] (or dropping it)
/// cuts the running call short, refuses what waits, and waits for the
/// worker, so no model work outlives the queue.
pub(crate) struct ModelQueue {
    capacity: usize,
    /// `None` once stopped.
    sender: Mutex<Option<Sender<Queued>>>,
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl ModelQueue {
    /// Starts the worker thread that owns `backend`.
    pub fn start(backend: Arc<dyn ChatBackend>, capacity: usize) -> std::io::Result<Self> {
        let capacity = capacity.max(1);
        // The channel holds waiting jobs; the one running is off it.
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            by_visit: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
            stop: CancelToken::new(),
        });
        let worker_shared = Arc::clone(&shared);
        let worker = thread::Builder::new()
            .name("alerts-model".into())
            .spawn(move || work(&*backend, &receiver, &worker_shared))?;
        Ok(Self {
            capacity,
            sender: Mutex::new(Some(sender)),
            shared,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Queues a job, or refuses it at once when `capacity` jobs are
    /// already waiting or running (the refusal is sent on its reply).
    pub fn submit(&self, job: Job) {
        let c = &self.shared.counters;
        let in_flight = c.waiting.load(Ordering::SeqCst) + c.running.load(Ordering::SeqCst);
        if in_flight >= self.capacity {
            self.refuse_busy(job);
            return;
        }
        let visit_ended = Arc::new(AtomicBool::new(false));
        lock(&self.shared.by_visit)
            .entry(job.visit_id.clone())
            .or_default()
            .push(Arc::clone(&visit_ended));
        c.waiting.fetch_add(1, Ordering::SeqCst);
        let queued = Queued { job, visit_ended };
        let sent = match lock(&self.sender).as_ref() {
            Some(sender) => sender.try_send(queued),
            None => Err(TrySendError::Disconnected(queued)),
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(queued)) => {
                c.waiting.fetch_sub(1, Ordering::SeqCst);
                forget(&self.shared, &queued);
                self.refuse_busy(queued.job);
            }
            Err(TrySendError::Disconnected(queued)) => {
                c.waiting.fetch_sub(1, Ordering::SeqCst);
                forget(&self.shared, &queued);
                let _ = queued.job.reply.send(Err(SHUTTING_DOWN.into()));
            }
        }
    }

    fn refuse_busy(&self, job: Job) {
        self.shared
            .counters
            .rejected_busy
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            camera = %job.camera,
            visit = %job.visit_id,
            capacity = self.capacity,
            "Model queue full; stage two uses the rules"
        );
        let _ = job.reply.send(Err(format!(
            "model busy ({} jobs queued or running)",
            self.capacity
        )));
    }

    /// The visit has ended: its jobs that have not reached the model yet
    /// are dropped when their turn comes.
    pub fn visit_ended(&self, visit_id: &str) {
        if let Some(flags) = lock(&self.shared.by_visit).get(visit_id) {
            for flag in flags {
                flag.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Shutting down: the call on the model is cut short, jobs still
    /// waiting are refused rather than run, and this returns once the
    /// worker has let go of the model. A model call left running past the
    /// process's end would race the model's teardown at exit.
    pub fn stop(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.stop.cancel();
        // Closing the channel ends the worker's loop once it is drained.
        lock(&self.sender).take();
        let worker = lock(&self.worker).take();
        if let Some(worker) = worker {
            if worker.join().is_err() {
                tracing::error!("The model queue's worker panicked");
            }
        }
    }

    pub fn stats(&self) -> ModelQueueStats {
        let c = &self.shared.counters;
        ModelQueueStats {
            capacity: self.capacity,
            waiting: c.waiting.load(Ordering::SeqCst),
            running: c.running.load(Ordering::SeqCst),
            started: c.started.load(Ordering::Relaxed),
            answered: c.answered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            visit_ended: c.visit_ended.load(Ordering::Relaxed),
            rejected_busy: c.rejected_busy.load(Ordering::Relaxed),
        }
    }
}

impl Drop for ModelQueue {
    fn drop(&mut self) {
        self.stop();
    }
}

const SHUTTING_DOWN: &str = "shutting down before the model got to it";
const SHUTTING_DOWN_DURING_CALL: &str = "shutting down during the model call";

/// Removes a job's cancel flag from the by-visit map.
fn forget(shared: &Shared, queued: &Queued) {
    let mut map = lock(&shared.by_visit);
    if let Some(flags) = map.get_mut(&queued.job.visit_id) {
        flags.retain(|f| !Arc::ptr_eq(f, &queued.visit_ended));
        if flags.is_empty() {
            map.remove(&queued.job.visit_id);
        }
    }
}

/// The worker: one job at a time, stale ones dropped before they cost a
/// model call. Ends when the queue is stopped and drained.
fn work(backend: &dyn ChatBackend, receiver: &Receiver<Queued>, shared: &Shared) {
    let c = &shared.counters;
    for queued in receiver {
        // Running first: a submitter never sees the job in neither count.
        c.running.fetch_add(1, Ordering::SeqCst);
        c.waiting.fetch_sub(1, Ordering::SeqCst);
        let result = run_one(backend, &queued, shared);
        forget(shared, &queued);
        c.running.fetch_sub(1, Ordering::SeqCst);
        let _ = queued.job.reply.send(result);
    }
}

fn run_one(backend: &dyn ChatBackend, queued: &Queued, shared: &Shared) -> Result<Judged, Refusal> {
    let c = &shared.counters;
    let job = &queued.job;
    let discard = |counter: &AtomicU64, reason: String| {
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            camera = %job.camera,
            visit = %job.visit_id,
            reason = %reason,
            "Stale model job dropped"
        );
        Err(reason)
    };
    if shared.closing.load(Ordering::SeqCst) {
        return Err(SHUTTING_DOWN.into());
    }
    if Instant::now() >= job.deadline {
        return discard(
            &c.expired,
            "deadline passed while waiting for the model".into(),
        );
    }
    if queued.visit_ended.load(Ordering::SeqCst) {
        return discard(
            &c.visit_ended,
            "visit ended before the model got to it".into(),
        );
    }
    c.started.fetch_add(1, Ordering::Relaxed);
    let description = match Describer::new(backend)
        .with_deadline(job.deadline)
        .with_cancel(shared.stop.clone())
        .describe(&job.scene)
    {
        Ok(d) => d,
        Err(ReasonError::DeadlineExpired) => {
            return discard(&c.expired, "deadline passed while describing".into());
        }
        Err(ReasonError::Cancelled) => return Err(SHUTTING_DOWN_DURING_CALL.into()),
        Err(e) => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            return Err(format!("model failed: {e}"));
        }
    };
    // Describing may have used up the time; triage would be wasted.
    if Instant::now() >= job.deadline {
        return discard(&c.expired, "deadline passed while describing".into());
    }
    let outcome = triage_until(
        backend,
        &TriageInput {
            camera: job.scene.camera.clone(),
            time: job.scene.time.clone(),
            camera_notes: job.camera_notes.clone(),
            description: description.text.clone(),
        },
        Some(job.deadline),
        Some(&shared.stop),
    );
    let outcome = match outcome {
        Ok(o) => o,
        Err(ReasonError::DeadlineExpired) => {
            return discard(&c.expired, "deadline passed while triaging".into());
        }
        Err(ReasonError::Cancelled) => return Err(SHUTTING_DOWN_DURING_CALL.into()),
        Err(e) => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            return Err(format!("model failed: {e}"));
        }
    };
    if Instant::now() >= job.deadline {
        return discard(&c.expired, "answered after the deadline".into());
    }
    c.answered.fetch_add(1, Ordering::Relaxed);
    let source = serde_json::to_value(description.source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(Judged {
        urgency: outcome.triage.urgency,
        message: outcome.triage.alert_message,
        should_notify: outcome.triage.should_notify,
        description: description.text,
        description_source: source,
        injection_suspected: outcome.injection_suspected,
    })
}
