//! The runtime's two lanes with the real SmolLM2-135M: camera work goes
//! before served requests (and interrupts them between tokens without
//! changing their output), served requests are bounded and cancellable,
//! deadlines stop generation, and each lane keeps its own prompt cache.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use streamer_models::ModelCache;
use streamer_reason::{
    CancelToken, ChatMessage, Completion, GenerateRequest, Lane, LlmRuntime, ReasonError,
    RuntimeOptions, Sampling,
};

fn runtime(max_served: usize) -> Arc<LlmRuntime> {
    runtime_waiting(max_served, RuntimeOptions::default().max_served_wait)
}

fn runtime_waiting(max_served: usize, max_served_wait: Duration) -> Arc<LlmRuntime> {
    let path = ModelCache::from_env()
        .require("smollm2-135m")
        .unwrap_or_else(|e| panic!("{e}\n(run `make models` to fill the cache)"));
    Arc::new(
        LlmRuntime::load(
            &path,
            RuntimeOptions {
                context: 1024,
                threads: Some(2),
                batch: 256,
                camera_slots: 1,
                served_slots: 1,
                max_served,
                max_served_wait,
                ..RuntimeOptions::default()
            },
        )
        .unwrap(),
    )
}

fn request(lane: Lane, prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        messages: vec![ChatMessage::user(prompt)],
        sampling: Sampling::greedy(max_tokens),
        lane,
        ..GenerateRequest::default()
    }
}

const LONG: &str = "Write a long story about a cat who guards a house at night.";

/// What a background request's thread gives back: its result and when it
/// ended.
type Finished = thread::JoinHandle<(Result<Completion, ReasonError>, Instant)>;

/// Starts a served request on its own thread; `started` fires at its first
/// piece of text. The thread returns the completion and when it ended.
fn served_in_background(
    rt: &Arc<LlmRuntime>,
    req: GenerateRequest,
) -> (mpsc::Receiver<()>, Finished) {
    let (tx, started) = mpsc::channel();
    let rt = Arc::clone(rt);
    let handle = thread::spawn(move || {
        let mut sent = false;
        let result = rt.generate(req, |_| {
            if !sent {
                sent = true;
                let _ = tx.send(());
            }
        });
        (result, Instant::now())
    });
    (started, handle)
}

#[test]
fn camera_work_goes_between_the_tokens_of_a_served_request_without_changing_it() {
    let rt = runtime(4);
    let alone = rt
        .generate(request(Lane::Served, LONG, 120), |_| {})
        .unwrap();
    assert_eq!(alone.timing.completion_tokens, 120);

    let (started, served) = served_in_background(&rt, request(Lane::Served, LONG, 120));
    started.recv_timeout(Duration::from_secs(300)).unwrap();
    let camera = rt
        .generate(request(Lane::Camera, "Is a parcel at the door?", 8), |_| {})
        .unwrap();
    let camera_done = Instant::now();
    let (interrupted, served_done) = served.join().unwrap();
    let interrupted = interrupted.unwrap();
    assert!(camera.timing.completion_tokens >= 1);
    assert!(
        camera_done < served_done,
        "the camera request finished while the served one was still generating"
    );
    // The served sequence kept its own KV cache through the interruption.
    assert_eq!(interrupted.text, alone.text);
}

#[test]
fn served_requests_beyond_the_bound_are_refused_and_a_cancelled_one_stops() {
    let rt = runtime(1);
    let cancel = CancelToken::new();
    let (started, first) = served_in_background(
        &rt,
        GenerateRequest {
            cancel: Some(cancel.clone()),
            ..request(Lane::Served, LONG, 800)
        },
    );
    started.recv_timeout(Duration::from_secs(300)).unwrap();
    let refused = rt.generate(request(Lane::Served, "hello", 4), |_| {});
    assert!(
        matches!(refused, Err(ReasonError::Busy { waiting: 1 })),
        "{refused:?}"
    );
    // Camera work is never refused.
    rt.generate(request(Lane::Camera, "hello", 2), |_| {})
        .unwrap();
    cancel.cancel();
    let (result, _) = first.join().unwrap();
    assert!(matches!(result, Err(ReasonError::Cancelled)), "{result:?}");
    // The slot is free again.
    let (load, max) = rt.served_load();
    assert_eq!((load, max), (0, 1));
    rt.generate(request(Lane::Served, "hello", 2), |_| {})
        .unwrap();
}

#[test]
fn a_passed_deadline_stops_generation() {
    let rt = runtime(4);
    let result = rt.generate(
        GenerateRequest {
            deadline: Some(Instant::now()),
            ..request(Lane::Camera, LONG, 400)
        },
        |_| {},
    );
    assert!(
        matches!(result, Err(ReasonError::DeadlineExpired)),
        "{result:?}"
    );
    // A deadline in the middle: generation stops there, unless the model
    // ended its answer by itself before it.
    let deadline = Instant::now() + Duration::from_millis(300);
    let result = rt.generate(
        GenerateRequest {
            deadline: Some(deadline),
            ..request(Lane::Camera, LONG, 100_000)
        },
        |_| {},
    );
    match result {
        Err(ReasonError::DeadlineExpired) => {}
        Ok(c) => assert_eq!(
            c.finish,
            streamer_reason::FinishReason::EndOfGeneration,
            "a reply that reached the deadline must be cut there"
        ),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn chat_between_two_triage_calls_keeps_the_triage_prefix_warm() {
    let rt = runtime(4);
    let rules = "You triage home-security events. Answer with one word: normal, monitor, suspicious or critical. ".repeat(8);
    let triage = |event: &str| GenerateRequest {
        messages: vec![ChatMessage::system(rules.clone()), ChatMessage::user(event)],
        sampling: Sampling::greedy(4),
        lane: Lane::Camera,
        ..GenerateRequest::default()
    };
    let first = rt.generate(triage("A cat on the lawn."), |_| {}).unwrap();
    let chat = rt
        .generate(
            request(Lane::Served, "Tell me a joke about doors.", 8),
            |_| {},
        )
        .unwrap();
    let second = rt
        .generate(triage("A man at the gate at 3 am."), |_| {})
        .unwrap();
    assert_eq!(chat.timing.reused_tokens, 0);
    assert!(
        second.timing.reused_tokens + 20 >= first.timing.prompt_tokens,
        "the rules stayed cached: {} of {} prompt tokens reused",
        second.timing.reused_tokens,
        second.timing.prompt_tokens
    );
}

#[test]
fn a_served_request_behind_camera_work_that_never_ends_gives_up_and_the_next_one_is_answered() {
    let rt = runtime_waiting(4, Duration::from_secs(2));
    // Two threads keep camera work queued without a gap: while one's call
    // runs, the other's waits.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cameras: Vec<_> = (0..2)
        .map(|_| {
            let rt = Arc::clone(&rt);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut calls = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    rt.generate(request(Lane::Camera, LONG, 60), |_| {})
                        .unwrap();
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let waited = Instant::now();
    let refused = rt.generate(request(Lane::Served, LONG, 400), |_| {});
    let waited = waited.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let camera_calls: usize = cameras.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(
        matches!(refused, Err(ReasonError::CamerasBusy { waited_s }) if waited_s >= 2),
        "{refused:?}"
    );
    assert!(waited >= Duration::from_secs(2), "gave up after {waited:?}");
    assert!(camera_calls >= 1);
    // Its place is given back, and with the cameras quiet the next served
    // request is answered.
    assert_eq!(rt.served_load().0, 0);
    let answered = rt
        .generate(request(Lane::Served, "hello", 4), |_| {})
        .unwrap();
    assert!(answered.timing.completion_tokens >= 1);
}

#[test]
fn close_and_wait_returns_once_the_running_request_has_stopped() {
    let rt = runtime(4);
    let (started, running) = served_in_background(&rt, request(Lane::Served, LONG, 100_000));
    started.recv_timeout(Duration::from_secs(300)).unwrap();
    assert!(rt.close_and_wait(Duration::from_secs(120)));
    // The worker let go: the request ended with Closed, not by running on.
    let (result, _) = running.join().unwrap();
    assert!(matches!(result, Err(ReasonError::Closed)), "{result:?}");
    let after = rt.generate(request(Lane::Camera, "hello", 2), |_| {});
    assert!(matches!(after, Err(ReasonError::Closed)), "{after:?}");
}
