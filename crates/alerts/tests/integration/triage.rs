//! Stage two with a real model: a deadline that expires falls back to the
//! rules; a generous one gets the model's verdict.

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use streamer_alerts::{AlertPipeline, Stage};
use streamer_reason::{
    ChatBackend, ChatReply, ChatRequest, LlmRuntime, ReasonError, RuntimeOptions,
};

use crate::support::{config, free_port, local, missing, visit};

/// A model answer in debug builds on two cores takes a few seconds.
// A bound, not a speed target: the test waits on stage two's event and
// ends as soon as it arrives, so a loaded 2-core machine running a debug
// build (seen taking over 120 s) still passes.
const GENEROUS: Duration = Duration::from_secs(20 * 60);
/// Far below any real model's answer time.
const TINY_DEADLINE_MS: u64 = 5;

fn qwen() -> Option<Arc<dyn ChatBackend>> {
    let path = match streamer_models::ModelCache::from_env().require("qwen2.5-coder-0.5b") {
        Ok(path) => path,
        Err(e) => {
            missing(&format!(
                "qwen2.5-coder-0.5b is not in the model cache ({e}): run `streamer models fetch qwen2.5-coder-0.5b`"
            ));
            return None;
        }
    };
    let runtime = LlmRuntime::load(
        &path,
        RuntimeOptions {
            context: 2048,
            threads: Some(2),
            batch: 256,
            projector: None,
            ..RuntimeOptions::default()
        },
    )
    .expect("qwen2.5-coder-0.5b loads");
    Some(Arc::new(runtime))
}

#[test]
fn a_real_model_past_its_deadline_falls_back_to_rules() {
    let Some(model) = qwen() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // No broker: alerts wait in the outbox, which is all this test needs.
    let mut config = config(free_port(), dir.path(), "streamer-deadline");

    // With time to answer, the model's verdict is the update.
    config.triage.deadline_ms = GENEROUS.as_millis() as u64;
    let pipeline = AlertPipeline::start(&config, Some(Arc::clone(&model))).unwrap();
    let called = Instant::now();
    let receipt = pipeline
        .visit_opened(visit("porch", "late-1", local(23, 41, 0), &["person"]))
        .unwrap();
    let returned = called.elapsed();
    let update = receipt.wait_stage_two(GENEROUS).expect("stage two answers");
    let answered_after = called.elapsed();
    eprintln!(
        "real model, generous deadline: visit_opened returned after {:.2} ms, triaged after {:.0} ms: {} {:?}",
        returned.as_secs_f64() * 1e3,
        answered_after.as_secs_f64() * 1e3,
        update.urgency,
        update.message
    );
    assert_eq!(update.id, receipt.id());
    assert_eq!(update.stage, Stage::Triaged, "{:?}", update.fallback_reason);
    assert!(update
        .description
        .as_deref()
        .is_some_and(|d| d.starts_with(streamer_reason::LABELS_NOTE)));
    assert_eq!(
        update.description_source.as_deref(),
        Some("detector_labels")
    );
    assert!(update.model_latency_ms.is_some());
    pipeline.shutdown(Duration::ZERO);

    // The same model with a deadline far below its answer time.
    config.triage.deadline_ms = TINY_DEADLINE_MS;
    config.outbox_dir = dir.path().join("outbox-2");
    let pipeline = AlertPipeline::start(&config, Some(model)).unwrap();
    let called = Instant::now();
    let receipt = pipeline
        .visit_opened(visit("porch", "late-2", local(23, 42, 0), &["person"]))
        .unwrap();
    let returned = called.elapsed();
    let update = receipt.wait_stage_two(GENEROUS).expect("stage two answers");
    let fallback_after = called.elapsed();
    eprintln!(
        "real model, {TINY_DEADLINE_MS} ms deadline: visit_opened returned after {:.2} ms, fallback after {:.1} ms",
        returned.as_secs_f64() * 1e3,
        fallback_after.as_secs_f64() * 1e3
    );
    assert_eq!(update.id, receipt.id());
    assert_eq!(update.stage, Stage::Fallback);
    assert_eq!(
        update.fallback_reason.as_deref(),
        Some(format!("deadline of {TINY_DEADLINE_MS} ms expired").as_str())
    );
    assert_eq!(
        update.urgency.as_str(),
        "monitor",
        "a person at night, by the rules"
    );
    assert_eq!(update.message, "Person at porch at night (23:42).");
    // The fallback comes at the deadline, not when the model would have
    // answered (measured above on this machine, so a slow machine slows
    // both sides); and stage one never waits for the model.
    assert!(
        fallback_after < answered_after / 2,
        "fallback after {fallback_after:?}, the model's answer took {answered_after:?}"
    );
    assert!(
        returned < answered_after / 10,
        "visit_opened returned after {returned:?}, the model's answer took {answered_after:?}"
    );
    // The abandoned model call finishes in the background.
    pipeline.shutdown(Duration::ZERO);
}

/// Polls the queue's counters until nothing waits or runs (the model's
/// calls end within `GENEROUS` even on a loaded machine).
fn wait_idle(pipeline: &AlertPipeline) -> streamer_alerts::ModelQueueStats {
    let started = Instant::now();
    loop {
        let stats = pipeline.model_queue().expect("a model is configured");
        if stats.waiting == 0 && stats.running == 0 {
            return stats;
        }
        assert!(
            started.elapsed() < GENEROUS,
            "model queue never drained: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_model_queue_is_bounded_and_drops_a_visit_that_ended_while_waiting() {
    let Some(model) = qwen() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(free_port(), dir.path(), "streamer-queue");
    config.triage.deadline_ms = GENEROUS.as_millis() as u64;
    config.triage.max_model_jobs = 2;
    let pipeline = AlertPipeline::start(&config, Some(model)).unwrap();

    // The model takes the first visit (a real call: hundreds of ms at
    // least), the second waits behind it, the third finds the queue full.
    let first = pipeline
        .visit_opened(visit("porch", "q-1", local(23, 41, 0), &["person"]))
        .unwrap();
    let second = pipeline
        .visit_opened(visit("garden", "q-2", local(23, 41, 1), &["person"]))
        .unwrap();
    let third = pipeline
        .visit_opened(visit("porch", "q-3", local(23, 41, 2), &["person"]))
        .unwrap();
    // The second visit's person leaves before the model is free.
    pipeline.visit_ended("q-2");

    let rejected = third.wait_stage_two(GENEROUS).expect("stage two answers");
    assert_eq!(rejected.stage, Stage::Fallback);
    assert_eq!(
        rejected.fallback_reason.as_deref(),
        Some("model busy (2 jobs queued or running)")
    );
    let answered = first.wait_stage_two(GENEROUS).expect("stage two answers");
    assert_eq!(
        answered.stage,
        Stage::Triaged,
        "{:?}",
        answered.fallback_reason
    );
    let dropped = second.wait_stage_two(GENEROUS).expect("stage two answers");
    assert_eq!(dropped.stage, Stage::Fallback);
    assert_eq!(
        dropped.fallback_reason.as_deref(),
        Some("visit ended before the model got to it")
    );
    // The rules' verdict still goes out for the dropped visit.
    assert_eq!(dropped.message, "Person at garden at night (23:41).");

    let stats = wait_idle(&pipeline);
    eprintln!("model queue after three visits: {stats:?}");
    assert_eq!(stats.capacity, 2);
    assert_eq!(stats.started, 1, "only the first visit cost a model call");
    assert_eq!(stats.answered, 1);
    assert_eq!(stats.visit_ended, 1);
    assert_eq!(stats.rejected_busy, 1);
    assert_eq!((stats.expired, stats.failed), (0, 0));
    pipeline.shutdown(Duration::ZERO);
}

/// The real model behind a door the test opens: the first call waits at
/// the door until the test lets it through, so the test knows the worker
/// is busy while later jobs wait. Every call goes to the real model.
struct HeldAtTheDoor {
    model: Arc<dyn ChatBackend>,
    /// Told once when the first call arrives at the door.
    arrived: Mutex<Option<mpsc::Sender<()>>>,
    /// Taken by the first call; it waits on it until the test opens.
    door: Mutex<Option<mpsc::Receiver<()>>>,
}

impl ChatBackend for HeldAtTheDoor {
    fn describe(&self) -> String {
        self.model.describe()
    }

    fn sees_images(&self) -> bool {
        self.model.sees_images()
    }

    fn chat(
        &self,
        request: &ChatRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<ChatReply, ReasonError> {
        let door = self.door.lock().unwrap().take();
        if let Some(door) = door {
            if let Some(arrived) = self.arrived.lock().unwrap().take() {
                let _ = arrived.send(());
            }
            let _ = door.recv();
        }
        self.model.chat(request, on_text)
    }
}

/// Waits until the job just submitted either reaches the door (true) or
/// leaves the queue without reaching it (false).
fn reached_the_door(pipeline: &AlertPipeline, arrived: &mpsc::Receiver<()>) -> bool {
    let started = Instant::now();
    loop {
        if arrived.try_recv().is_ok() {
            return true;
        }
        // Read after the door was checked: a job at the door keeps
        // `running` at 1 until the door opens.
        let stats = pipeline.model_queue().expect("a model is configured");
        if stats.waiting == 0 && stats.running == 0 {
            return arrived.try_recv().is_ok();
        }
        assert!(
            started.elapsed() < GENEROUS,
            "the job never left the queue: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn queued_model_work_past_its_deadline_is_dropped_not_run() {
    let Some(model) = qwen() else {
        return;
    };
    let (arrived_tx, arrived) = mpsc::channel();
    let (open_door, door) = mpsc::channel();
    let held = Arc::new(HeldAtTheDoor {
        model,
        arrived: Mutex::new(Some(arrived_tx)),
        door: Mutex::new(Some(door)),
    });
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(free_port(), dir.path(), "streamer-stale");
    // Long enough for the worker to take the first job within it even on a
    // loaded machine (if it does not, that job is dropped unrun and the
    // next one is tried).
    let deadline = Duration::from_secs(2);
    config.triage.deadline_ms = deadline.as_millis() as u64;
    config.triage.max_model_jobs = 3;
    let pipeline = AlertPipeline::start(&config, Some(held)).unwrap();

    // Occupy the worker: a job on the model, held at the door.
    let mut receipts = Vec::new();
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(
            tries <= 10,
            "the worker never took a job inside {deadline:?}"
        );
        let receipt = pipeline
            .visit_opened(visit(
                "porch",
                &format!("busy-{tries}"),
                local(12, 0, tries),
                &["person"],
            ))
            .unwrap();
        receipts.push(receipt);
        if reached_the_door(&pipeline, &arrived) {
            break;
        }
        // Dropped unrun (the machine was too slow to take it in time) and
        // counted as expired: try again.
    }
    // Two more wait behind it until their deadlines have passed.
    let queued_at = Instant::now();
    for i in 0..2 {
        receipts.push(
            pipeline
                .visit_opened(visit(
                    "porch",
                    &format!("stale-{i}"),
                    local(12, 1, i),
                    &["person"],
                ))
                .unwrap(),
        );
    }
    assert_eq!(pipeline.model_queue().unwrap().waiting, 2);
    std::thread::sleep(deadline.saturating_sub(queued_at.elapsed()) + Duration::from_millis(50));
    open_door.send(()).unwrap();

    for receipt in &receipts {
        let update = receipt.wait_stage_two(GENEROUS).expect("stage two answers");
        assert_eq!(update.stage, Stage::Fallback);
        assert_eq!(
            update.fallback_reason.as_deref(),
            Some(format!("deadline of {} ms expired", deadline.as_millis()).as_str())
        );
    }
    // The held job reached the model (and was cut off at its deadline);
    // the two that waited past theirs were dropped without a call.
    let stats = wait_idle(&pipeline);
    eprintln!("model queue after a held job and two stale ones ({tries} tries): {stats:?}");
    assert_eq!(stats.started, 1, "{stats:?}");
    assert_eq!(stats.expired, tries as u64 + 2, "{stats:?}");
    assert_eq!(stats.answered, 0);
    pipeline.shutdown(Duration::ZERO);
}

#[test]
fn shutting_down_cuts_the_model_call_short_and_lets_go_of_the_model() {
    let Some(model) = qwen() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(free_port(), dir.path(), "streamer-stop");
    config.triage.deadline_ms = GENEROUS.as_millis() as u64;
    let pipeline = AlertPipeline::start(&config, Some(Arc::clone(&model))).unwrap();
    let receipt = pipeline
        .visit_opened(visit("porch", "stop-1", local(23, 41, 0), &["person"]))
        .unwrap();
    // Wait until the model is working on the visit.
    let started = Instant::now();
    while pipeline
        .model_queue()
        .expect("a model is configured")
        .running
        == 0
    {
        assert!(started.elapsed() < GENEROUS, "the model never took the job");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopping = Instant::now();
    pipeline.shutdown(Duration::ZERO);
    let stopped_after = stopping.elapsed();
    // Nothing still holds the model: no call on it can outlive the
    // pipeline (one left running raced the model's teardown at exit).
    assert_eq!(Arc::strong_count(&model), 1, "the model is still in use");
    let update = receipt.wait_stage_two(GENEROUS).expect("stage two answers");
    eprintln!(
        "shutdown during a model call took {:.0} ms; stage two: {:?} {:?}",
        stopped_after.as_secs_f64() * 1e3,
        update.stage,
        update.fallback_reason
    );
    if update.stage == Stage::Fallback {
        assert_eq!(
            update.fallback_reason.as_deref(),
            Some("shutting down during the model call")
        );
    }
}
