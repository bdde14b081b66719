//! A live source never waits for detection and never piles frames up: with
//! detection held back entirely, a real GStreamer camera (a live test
//! pattern at 1280x720) keeps one frame waiting, counts every other as
//! dropped, and the process's memory stays flat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamer_ingest::{Fps, LiveInput, LiveSettings};
use streamer_runner::camera::spawn_camera;
use streamer_runner::handoff::FreshestSlots;
use streamer_runner::{Backoff, CameraSpec, CameraState, Telemetry};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_held_back_detector_costs_drops_not_memory() {
    let spec = CameraSpec {
        name: "pattern".into(),
        input: LiveInput::GstSource(
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width=1280,height=720,framerate=20/1"
                .into(),
        ),
        settings: LiveSettings {
            fps: Fps { num: 10, den: 1 },
            ..LiveSettings::default()
        },
        stall_timeout: Duration::from_secs(30),
        backoff: Backoff::default(),
        motion: None,
    };
    let telemetry = Arc::new(Telemetry::new([("pattern", spec.input.redacted())]));
    let slots = Arc::new(FreshestSlots::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let handle = spawn_camera(spec, 0, slots.clone(), telemetry.clone(), stop.clone()).unwrap();
    let stats = telemetry.camera("pattern").unwrap().clone();
    wait_for("the camera to come online", Duration::from_secs(60), || {
        stats.state() == CameraState::Online
    });
    // Nobody takes frames: detection is held back completely.
    wait_for("a few frames", Duration::from_secs(60), || {
        stats.health().frames_in >= 5
    });
    let rss_before = rss_kib();
    let in_before = stats.health().frames_in;
    // 40 more frames of 2.7 MB each would be over 100 MB if they piled up.
    wait_for("40 more frames", Duration::from_secs(120), || {
        stats.health().frames_in >= in_before + 40
    });
    let h = stats.health();
    let growth_mib = rss_kib().saturating_sub(rss_before) as f64 / 1024.0;
    eprintln!(
        "held back: {} frames in, {} dropped, {} waiting, RSS grew {growth_mib:.1} MiB",
        h.frames_in,
        h.frames_dropped,
        slots.waiting()
    );
    assert_eq!(slots.waiting(), 1, "one frame waits, never more");
    // (A frame may be between "in" and "dropped" while the figures are read.)
    assert!(
        h.frames_dropped < h.frames_in && h.frames_dropped + 2 >= h.frames_in,
        "every frame but the waiting one is counted as dropped: {h:?}"
    );
    assert!(
        growth_mib < 30.0,
        "memory grew {growth_mib:.1} MiB while frames were dropped"
    );
    let metrics = telemetry.encode_metrics();
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("streamer_camera_frames_dropped_total{camera=\"pattern\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no drop counter in\n{metrics}"));
    assert!(
        counted >= h.frames_dropped,
        "/metrics counts the drops: {counted}"
    );
    // Released: the freshest frame is the one detection gets.
    let frame = slots.take(Duration::from_secs(5)).expect("a frame waits");
    assert_eq!(frame.width, 1280);
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
}
