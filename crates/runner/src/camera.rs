//! Supervision of one live camera: start its pipeline, watch it, and when it
//! fails, ends or stalls, tear it down and start again after a backoff
//! delay. A camera that never answers stays `offline` and costs the others
//! nothing: each camera has its own thread, and the only thing it shares is
//! its freshest-frame slot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use streamer_ingest::{IngestError, LiveInput, LiveSettings, LiveSource, Picture};
use streamer_motion::{CameraGate, GreyView, LumaPlane, MotionConfig};

use crate::backoff::{jitter_unit, Backoff};
use crate::handoff::FreshestSlots;
use crate::telemetry::{Event, Telemetry};

/// Everything needed to run one live camera.
#[derive(Clone, Debug)]
pub struct CameraSpec {
    /// Camera name (the key in `[cameras.<name>]`).
    pub name: String,
    /// Where the video comes from.
    pub input: LiveInput,
    /// Pipeline settings (fps, transport, latency, network timeout).
    pub settings: LiveSettings,
    /// No frame for this long counts as a stall.
    pub stall_timeout: Duration,
    /// Delays between restarts.
    pub backoff: Backoff,
    /// The motion gate, run on the camera's own thread so that a frame
    /// without motion never reaches the detector's queue. `None`: every
    /// frame goes on.
    pub motion: Option<MotionConfig>,
}

/// How often a waiting supervisor looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Starts `spec`'s supervisor on a thread of its own, putting frames into
/// slot `index` of `slots` until `stop` is set.
pub fn spawn_camera(
    spec: CameraSpec,
    index: usize,
    slots: Arc<FreshestSlots>,
    telemetry: Arc<Telemetry>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("camera-{}", spec.name))
        .spawn(move || supervise(spec, index, slots, telemetry, stop))
}

/// Runs `spec` until `stop` is set: the body of the camera's thread.
fn supervise(
    spec: CameraSpec,
    index: usize,
    slots: Arc<FreshestSlots>,
    telemetry: Arc<Telemetry>,
    stop: Arc<AtomicBool>,
) {
    let camera: Arc<str> = Arc::from(spec.name.as_str());
    // The background outlives reconnections: the scene is the same.
    let mut gate = spec.motion.clone().map(CameraGate::new);
    let mut failures = 0usize;
    let mut attempt = 0u64;
    let mut was_online = false;
    while !stop.load(Ordering::Relaxed) {
        attempt += 1;
        telemetry.emit(Event::SourceConnecting {
            camera: &camera,
            attempt,
        });
        let started = Instant::now();
        let outcome = run_once(
            &spec,
            &camera,
            index,
            &slots,
            &telemetry,
            &stop,
            started,
            &mut was_online,
            &mut gate,
        );
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // A connection that delivered frames starts the schedule over: a
        // camera that reboots is retried after the first, shortest delay.
        let (got_frames, event) = match &outcome {
            Outcome::Stopped => break,
            Outcome::Failed { got_frames, .. } | Outcome::Stalled { got_frames, .. } => {
                (*got_frames, &outcome)
            }
        };
        if got_frames {
            failures = 0;
        }
        let retry_in = spec.backoff.delay(failures, jitter_unit());
        failures += 1;
        match event {
            Outcome::Stopped => break,
            Outcome::Failed { error, .. } => {
                telemetry.emit(Event::SourceFailed {
                    camera: &camera,
                    error,
                    retry_in,
                });
            }
            Outcome::Stalled { silent_for, .. } => {
                telemetry.emit(Event::SourceStalled {
                    camera: &camera,
                    silent_for: *silent_for,
                    retry_in,
                });
            }
        }
        // The failed pipeline is being torn down on its own thread.
        sleep_unless_stopped(retry_in, &stop);
    }
}

/// How one connection attempt ended.
enum Outcome {
    /// The stop flag was set.
    Stopped,
    /// An error or end of stream (the error text is already redacted).
    Failed { error: String, got_frames: bool },
    Stalled {
        silent_for: Duration,
        got_frames: bool,
    },
}

#[allow(clippy::too_many_arguments)]
fn run_once(
    spec: &CameraSpec,
    camera: &Arc<str>,
    index: usize,
    slots: &FreshestSlots,
    telemetry: &Telemetry,
    stop: &AtomicBool,
    started: Instant,
    was_online: &mut bool,
    gate: &mut Option<CameraGate>,
) -> Outcome {
    let mut source = match LiveSource::open(&spec.input, camera.clone(), &spec.settings) {
        Ok(s) => s,
        Err(error) => {
            return Outcome::Failed {
                error: error.to_string(),
                got_frames: false,
            }
        }
    };
    let outcome = watch(
        spec,
        camera,
        index,
        slots,
        telemetry,
        stop,
        started,
        was_online,
        gate,
        &mut source,
    );
    release(source, camera);
    outcome
}

/// Tears a pipeline down off the supervisor's thread: rtspsrc's shutdown
/// can wait on a dead server's TCP connection for a long time, and the
/// camera must be reported and retried meanwhile.
fn release(source: LiveSource, camera: &str) {
    let spawned = thread::Builder::new()
        .name(format!("teardown-{camera}"))
        .spawn(move || drop(source));
    if let Err(e) = spawned {
        tracing::warn!(
            camera,
            "cannot start a teardown thread ({e}); the pipeline leaks"
        );
    }
}

/// Pulls frames from a running pipeline until it fails, stalls or `stop`.
#[allow(clippy::too_many_arguments)]
fn watch(
    spec: &CameraSpec,
    camera: &Arc<str>,
    index: usize,
    slots: &FreshestSlots,
    telemetry: &Telemetry,
    stop: &AtomicBool,
    started: Instant,
    was_online: &mut bool,
    gate: &mut Option<CameraGate>,
    source: &mut LiveSource,
) -> Outcome {
    let mut last = started;
    let mut got_frames = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Outcome::Stopped;
        }
        let silent = last.elapsed();
        if silent >= spec.stall_timeout {
            return Outcome::Stalled {
                silent_for: silent,
                got_frames,
            };
        }
        match source.next_picture_within((spec.stall_timeout - silent).min(POLL * 3)) {
            Ok(Some(picture)) => {
                last = Instant::now();
                if !got_frames {
                    got_frames = true;
                    telemetry.emit(Event::SourceOnline {
                        camera,
                        reconnect: *was_online,
                        waited: started.elapsed(),
                    });
                    *was_online = true;
                }
                telemetry.frame_in(camera);
                if let Some(gate) = gate.as_mut() {
                    let visit_open = telemetry.camera(camera).is_some_and(|c| c.visit_open());
                    // The gate reads the decoder's own grey plane: a frame it
                    // keeps from detection is never converted to RGB.
                    let Some(grey) = grey_view(&picture) else {
                        return Outcome::Failed {
                            error: "a decoded picture is smaller than its size says".into(),
                            got_frames,
                        };
                    };
                    if !gate.judge(grey, visit_open).passes() {
                        telemetry.emit(Event::FrameProcessed {
                            camera,
                            latency: Duration::ZERO,
                            detected: false,
                        });
                        continue;
                    }
                }
                let frame = match source.to_frame(&picture) {
                    Ok(frame) => frame,
                    Err(error) => {
                        return Outcome::Failed {
                            error: error.to_string(),
                            got_frames,
                        }
                    }
                };
                if slots.put(index, frame) {
                    telemetry.emit(Event::FrameDropped { camera });
                }
            }
            Ok(None) => {}
            Err(IngestError::EndOfStream) => {
                return Outcome::Failed {
                    error: "the stream ended".into(),
                    got_frames,
                }
            }
            Err(error) => {
                return Outcome::Failed {
                    error: error.to_string(),
                    got_frames,
                }
            }
        }
    }
}

/// What the motion gate reads of a live picture: its luma plane.
fn grey_view(picture: &Picture) -> Option<GreyView<'_>> {
    let (luma, stride) = picture.luma();
    LumaPlane::new(
        luma,
        stride,
        (picture.width(), picture.height()),
        picture.pts(),
        picture.limited_range(),
    )
    .map(GreyView::Luma)
}

fn sleep_unless_stopped(delay: Duration, stop: &AtomicBool) {
    let until = Instant::now() + delay;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        thread::sleep(left.min(POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamer_motion::{GateDecision, Motion};

    /// The gate's decisions on the first `n` pictures of a live GStreamer
    /// source, read as `watch` reads them.
    fn decisions(source: &str, n: usize) -> Vec<GateDecision> {
        let input = LiveInput::GstSource(source.into());
        let mut live =
            LiveSource::open(&input, Arc::from("test"), &LiveSettings::default()).unwrap();
        let mut gate = CameraGate::new(MotionConfig::default());
        (0..n)
            .map(|_| {
                let picture = live
                    .next_picture_within(Duration::from_secs(60))
                    .unwrap()
                    .expect("a picture within a minute");
                gate.judge(grey_view(&picture).expect("the plane fits"), false)
            })
            .collect()
    }

    #[test]
    fn the_gate_on_a_live_luma_plane_closes_on_a_still_scene_and_opens_on_motion() {
        let still = decisions(
            "videotestsrc is-live=true pattern=colors ! video/x-raw,width=320,height=240,framerate=10/1",
            8,
        );
        assert!(
            matches!(still[0], GateDecision::Motion(Motion::First)),
            "{still:?}"
        );
        assert!(still[1..].iter().all(|d| !d.passes()), "{still:?}");
        // A ball crossing a black picture: something moves in every frame.
        let moving = decisions(
            "videotestsrc is-live=true pattern=ball motion=sweep ! video/x-raw,width=320,height=240,framerate=10/1",
            8,
        );
        assert!(
            moving[1..]
                .iter()
                .all(|d| matches!(d, GateDecision::Motion(Motion::Moving { .. }))),
            "{moving:?}"
        );
    }
}
