//! `streamer bench --mode cameras`: how many cameras this machine holds.
//!
//! A local RTSP server on 127.0.0.1 (in this process) serves N H.264
//! streams made from vtest: always-busy footage (people all the time) and
//! idle-stretch footage (mostly an empty scene, see `streamer footage`; 24
//! variants started at other points, so people do not arrive on every
//! camera at the same moment). The server only packetises: the files are
//! H.264 already, so its cost is small but counted in the CPU figures.
//! The real live pipeline (`streamer run`'s supervisors, freshest-frame
//! slots, motion gate, detector, identity, alerts without a broker) runs on
//! them for a fixed time per N, and the largest N it sustains is searched
//! for, with the gate off and on.
//!
//! Sustained: under 1 % of the frames the gate passes dropped, p95 from
//! frame arrival to the end of detection under 500 ms, every camera at 90 %
//! or more of its target fps, and stage one of every new visit's alert
//! stored under 1 s after the frame that first showed the person arrived.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use gstreamer_rtsp_server::prelude::*;
use serde::Serialize;
use streamer_alerts::{AlertPipeline, AlertsConfig};
use streamer_core::Frame;
use streamer_footage::Piece;
use streamer_identity::{EventKind, IdentityConfig};
use streamer_ingest::{Fps, LiveInput, LiveSettings};
use streamer_models::ModelCache;
use streamer_motion::MotionConfig;
use streamer_runner::{
    Backoff, CameraSpec, Clock, FrameOutcome, IdentityStage, LiveRunner, Observer, StageGraph,
    Stages, Zone,
};

use crate::bench_cmd::{heap_mib, BenchArgs, HeapMib};
use crate::runtime;

const DETECT_FPS: u32 = 5;
/// Idle footage comes in this many variants: the same 96 s plan started
/// 4 s further in each, so that up to this many cameras never show the
/// same frame at the same moment and people arrive on them at staggered
/// times, as on independent cameras. (With six variants 8 s apart, until
/// December 6, three or four cameras showed identical frames in step, and
/// their new visits, the costliest frames, arrived all at once.)
const IDLE_VARIANTS: usize = 24;

/// One run of N cameras.
#[derive(Clone, Debug, Serialize)]
struct Step {
    cameras: usize,
    sustained: bool,
    why_not: Vec<String>,
    cpu_per_camera_pct: f64,
    rss_start_mib: f64,
    rss_end_mib: f64,
    /// RSS at each whole minute of the step, from its start.
    rss_each_minute_mib: Vec<f64>,
    /// The C heap at the same moments: allocated, and held free by the
    /// allocator (empty off glibc).
    heap_each_minute_mib: Vec<HeapMib>,
    frames_processed: u64,
    frames_gated_out: u64,
    frames_dropped: u64,
    stalls: u64,
    reconnects: u64,
    dropped_of_passed_pct: f64,
    latency_p50_ms: f64,
    latency_p95_ms: f64,
    latency_max_ms: f64,
    /// Share of the step the inference workers spent in the stages (100:
    /// every worker busy all the time).
    inference_busy_pct: f64,
    /// Mean time in the stages of a frame the gate passed, and the part of
    /// it spent detecting and embedding.
    passed_frame_ms: f64,
    detect_ms: f64,
    /// Of `detect_ms`: scaling the frame to the model's input, and the
    /// model itself.
    detect_preprocess_ms: f64,
    detect_inference_ms: f64,
    embed_ms: f64,
    /// Person boxes a passed frame held, the share that reused their
    /// track's embedding instead of being embedded, and the share of
    /// doubtful boxes next to nothing followed, dropped unembedded.
    crops_per_passed_frame: f64,
    crops_reused_pct: f64,
    crops_dropped_pct: f64,
    min_camera_fps: f64,
    alerts: usize,
    alert_max_ms: Option<f64>,
    /// Bare detector inference (one session on every core) measured again
    /// right after the step, and the bound it sets: this machine's speed
    /// drifts by a quarter within minutes, so each step gets its own
    /// yardstick next to the run's first one.
    inference_ms_after: Option<f64>,
    inference_bound_after: Option<f64>,
}

#[derive(Serialize)]
struct Case {
    footage: &'static str,
    gate: bool,
    sustained_cameras: usize,
    /// The bound from bare inference averaged over the case: measured
    /// before its first step and after each step.
    mean_inference_bound: f64,
    steps: Vec<Step>,
}

#[derive(Serialize)]
struct Report {
    detect_fps: u32,
    seconds_per_step: u64,
    seconds_per_idle_step: u64,
    inference_ms: f64,
    inference_bound_cameras: f64,
    workers: usize,
    /// With several workers: the time between results of that many bare
    /// detector sessions side by side.
    workers_inference_ms: Option<f64>,
    cases: Vec<Case>,
    soak: Option<Step>,
}

pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    let cache = ModelCache::from_env();
    let vtest = cache
        .require("vtest")
        .context("the bench streams footage made from vtest")?;
    let temporary = tempfile::tempdir()?;
    let dir = match &args.footage_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--footage-dir {}", dir.display()))?;
            dir.as_path()
        }
        None => temporary.path(),
    };
    eprintln!("making footage from {} ...", vtest.display());
    let make = |plan: &[Piece], path: &Path| -> Result<()> {
        if path.exists() {
            eprintln!("  reusing {}", path.display());
            return Ok(());
        }
        // Made under another name first, so an interrupted run leaves no
        // half-written file to be reused.
        let partial = path.with_extension("partial.mp4");
        streamer_footage::make(&vtest, DETECT_FPS, plan, &partial)?;
        std::fs::rename(
            streamer_footage::labels_path(&partial),
            streamer_footage::labels_path(path),
        )?;
        std::fs::rename(&partial, path)?;
        Ok(())
    };
    let busy = dir.join("busy.mp4");
    make(
        &[Piece::Real {
            from_s: 0.0,
            seconds: 60.0,
        }],
        &busy,
    )?;
    // Idle cameras each at another moment of the same kind of day, so
    // people do not arrive on every camera at once: camera i streams
    // variant i mod IDLE_VARIANTS. The soak needs footage as long as itself
    // (a stream that ends would reconnect): the idle plan repeated.
    let mut mounts = vec![("busy".to_string(), busy.clone())];
    let cycle: f64 = streamer_footage::standard_plan()
        .iter()
        .map(Piece::seconds)
        .sum();
    let soak_repeats = (args.soak_minutes as f64 * 60.0 / cycle).ceil() as usize + 1;
    for k in 0..IDLE_VARIANTS {
        let offset = cycle * k as f64 / IDLE_VARIANTS as f64;
        let plan = streamer_footage::rotate(&streamer_footage::standard_plan(), offset);
        // Two cycles: a step of one whole cycle plus the warm-up. Files are
        // named by their offset, so footage made for other offsets is never
        // reused for these.
        let twice: Vec<Piece> = std::iter::repeat_n(plan.clone(), 2).flatten().collect();
        let path = dir.join(format!("idle-at-{offset:.0}s.mp4"));
        make(&twice, &path)?;
        mounts.push((format!("idle{k}"), path));
        if args.soak_minutes > 0 {
            let long: Vec<Piece> = std::iter::repeat_n(plan, soak_repeats).flatten().collect();
            let path = dir.join(format!("soak-at-{offset:.0}s-{soak_repeats}x.mp4"));
            make(&long, &path)?;
            mounts.push((format!("soak{k}"), path));
        }
    }
    let server = RtspServer::start(&mounts)?;

    let frame = sample_frame(&busy)?;
    let all_cores = streamer_vision::default_threads();
    let bare = bare_inference(&cache, args, &frame, 1, all_cores)?;
    let (inference_ms, bound) = (bare.ms, bare.bound());
    eprintln!(
        "bare detector inference: {inference_ms:.1} ms a frame ({}x{}, one session on {all_cores} thread(s); {}), so at most {bound:.1} cameras at {DETECT_FPS} fps",
        frame.width,
        frame.height,
        bare.spread()
    );
    let workers = args.workers as usize;
    let workers_inference_ms = if workers > 1 {
        let threads = runtime::worker_threads(workers);
        let side_by_side = bare_inference(&cache, args, &frame, workers, threads)?;
        eprintln!(
            "bare detector inference with {workers} sessions side by side ({threads} thread(s) each): a frame every {:.1} ms ({}), so at most {:.1} cameras",
            side_by_side.ms,
            side_by_side.spread(),
            side_by_side.bound()
        );
        Some(side_by_side.ms)
    } else {
        None
    };
    let seconds = args.seconds.clamp(5, 80);
    // An idle step lasts at least one whole cycle of the plan, so that every
    // camera shows the footage's own share of idle time. A shorter window
    // starting where each stream starts would catch a visit on most
    // cameras and overstate the load.
    let idle_seconds = seconds.max(cycle.ceil() as u64);
    if args.soak_cameras.is_some() && args.soak_minutes == 0 {
        bail!("--soak-cameras needs --soak-minutes");
    }
    let mut cases = Vec::new();
    let mut bare_before_case = inference_ms;
    for (footage, gate) in [
        ("busy", false),
        ("busy", true),
        ("idle", false),
        ("idle", true),
    ] {
        let name = format!("{footage}-{}", if gate { "on" } else { "off" });
        if args.soak_cameras.is_some() || !args.cases.is_empty() && !args.cases.contains(&name) {
            continue;
        }
        eprintln!(
            "\n{footage} footage, motion gate {}:",
            if gate { "on" } else { "off" }
        );
        let mut steps: Vec<Step> = Vec::new();
        let try_n = |n: usize, steps: &mut Vec<Step>| -> Result<bool> {
            let step_seconds = if footage == "idle" {
                idle_seconds
            } else {
                seconds
            };
            let mut step = run_step(&cache, args, &server, footage, gate, n, step_seconds)?;
            let after = bare_inference(&cache, args, &frame, 1, all_cores)?;
            step.inference_ms_after = Some(after.ms);
            step.inference_bound_after = Some(after.bound());
            print_step(&step);
            let ok = step.sustained;
            steps.push(step);
            Ok(ok)
        };
        // Double until it fails (the last try at the most allowed), then
        // bisect.
        let (mut good, mut bad) = (0usize, None);
        let mut n = (args.start_cameras as usize).min(args.max_cameras).max(1);
        loop {
            if try_n(n, &mut steps)? {
                good = n;
                if n >= args.max_cameras {
                    break;
                }
                n = (n * 2).min(args.max_cameras);
            } else {
                bad = Some(n);
                break;
            }
        }
        if let Some(mut bad) = bad {
            while bad - good > 1 {
                let mid = (good + bad) / 2;
                if try_n(mid, &mut steps)? {
                    good = mid;
                } else {
                    bad = mid;
                }
            }
        }
        // The case's yardstick: bare inference before its first step and
        // after each one, averaged, as the machine's speed over the case.
        let measured: Vec<f64> = std::iter::once(bare_before_case)
            .chain(steps.iter().filter_map(|s| s.inference_ms_after))
            .collect();
        bare_before_case = *measured.last().expect("one at least");
        let case_bound = bound_of(measured.iter().sum::<f64>() / measured.len() as f64);
        eprintln!(
            "  => sustained: {good} camera(s); {:.2} x the bound at the start ({bound:.1}), {:.2} x the case's mean bound ({case_bound:.1}, from {} bare runs)",
            good as f64 / bound,
            good as f64 / case_bound,
            measured.len()
        );
        steps.sort_by_key(|s| s.cameras);
        cases.push(Case {
            footage,
            gate,
            sustained_cameras: good,
            mean_inference_bound: case_bound,
            steps,
        });
    }
    let searched = cases
        .iter()
        .find(|c| c.footage == "idle" && c.gate)
        .map(|c| c.sustained_cameras);
    let soak_step = match args.soak_cameras.or(searched) {
        Some(n) if args.soak_minutes > 0 && n > 0 => {
            eprintln!(
                "\nsoak: {n} cameras, idle footage, gate on, {} min:",
                args.soak_minutes
            );
            let step = run_step(
                &cache,
                args,
                &server,
                "soak",
                true,
                n,
                args.soak_minutes * 60,
            )?;
            print_step(&step);
            // The first minute holds the first visits: the embedder's and
            // the alert stage's buffers are allocated then, once.
            let after_first = step.rss_each_minute_mib.get(1).map_or(String::new(), |m| {
                format!(
                    " ({:.1} % after the first minute)",
                    100.0 * (step.rss_end_mib - m) / m
                )
            });
            eprintln!(
                "  rss growth {:.1} %{after_first}; each minute: {}",
                100.0 * (step.rss_end_mib - step.rss_start_mib) / step.rss_start_mib,
                step.rss_each_minute_mib
                    .iter()
                    .map(|m| format!("{m:.0}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            if let (Some(first), Some(last)) = (
                step.heap_each_minute_mib.first(),
                step.heap_each_minute_mib.last(),
            ) {
                eprintln!(
                    "  glibc heap (C libraries) in use {:.0} -> {:.0} MiB, held free {:.0} -> {:.0} MiB; each minute (in use/free): {}",
                    first.in_use,
                    last.in_use,
                    first.free_held,
                    last.free_held,
                    step.heap_each_minute_mib
                        .iter()
                        .map(|h| format!("{:.0}/{:.0}", h.in_use, h.free_held))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            Some(step)
        }
        _ => None,
    };
    drop(server);
    eprintln!(
        "\nsummary ({DETECT_FPS} fps detect, {seconds} s a step, {idle_seconds} s on idle footage; inference bound {bound:.1}):"
    );
    eprintln!("  footage  gate  cameras sustained  case's mean bound");
    for case in &cases {
        eprintln!(
            "  {:<7}  {:<4}  {:<17}  {:.1} ({:.2} x)",
            case.footage,
            if case.gate { "on" } else { "off" },
            case.sustained_cameras,
            case.mean_inference_bound,
            case.sustained_cameras as f64 / case.mean_inference_bound
        );
    }
    let report = Report {
        detect_fps: DETECT_FPS,
        seconds_per_step: seconds,
        seconds_per_idle_step: idle_seconds,
        inference_ms,
        inference_bound_cameras: bound,
        workers,
        workers_inference_ms,
        cases,
        soak: soak_step,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_step(s: &Step) {
    eprintln!(
        "  {:>3} cameras: {} | cpu {:5.1} %/camera | rss {:.0} -> {:.0} MiB | processed {} (gated out {}) dropped {} ({:.2} % of passed) | latency p50 {:.0} p95 {:.0} max {:.0} ms | inference busy {:.0} %, {:.0} ms a passed frame (detect {:.0}: scale {:.0}, model {:.0}; embed {:.0}; {:.1} crops, {:.0} % reused, {:.0} % dropped unembedded) | min fps {:.2} | alerts {} (max {} ms){}",
        s.cameras,
        if s.sustained { "ok  " } else { "FAIL" },
        s.cpu_per_camera_pct,
        s.rss_start_mib,
        s.rss_end_mib,
        s.frames_processed,
        s.frames_gated_out,
        s.frames_dropped,
        s.dropped_of_passed_pct,
        s.latency_p50_ms,
        s.latency_p95_ms,
        s.latency_max_ms,
        s.inference_busy_pct,
        s.passed_frame_ms,
        s.detect_ms,
        s.detect_preprocess_ms,
        s.detect_inference_ms,
        s.embed_ms,
        s.crops_per_passed_frame,
        s.crops_reused_pct,
        s.crops_dropped_pct,
        s.min_camera_fps,
        s.alerts,
        s.alert_max_ms.map_or("-".into(), |v| format!("{v:.0}")),
        if s.why_not.is_empty() {
            String::new()
        } else {
            format!(" | {}", s.why_not.join("; "))
        }
    );
    if let (Some(ms), Some(bound)) = (s.inference_ms_after, s.inference_bound_after) {
        eprintln!(
            "                bare inference right after: {ms:.1} ms a frame, bound {bound:.1} ({:.2} x)",
            s.cameras as f64 / bound
        );
    }
}

/// A frame of `footage` for timing the detector alone.
fn sample_frame(footage: &Path) -> Result<Frame> {
    streamer_ingest::frames(streamer_ingest::open(
        footage,
        Arc::from("bench"),
        Fps {
            num: DETECT_FPS,
            den: 1,
        },
    )?)
    .nth(10)
    .context("the footage has frames")?
    .map_err(Into::into)
}

/// Time between detector results on `frame` with `sessions` detectors side
/// by side on `threads` threads each, ms: the median of `BARE_BURSTS`
/// bursts of `BARE_ROUNDS` frames a session, so that one slow moment of a
/// shared machine (a burst is about half a second) does not set the
/// yardstick for a whole run.
fn bare_inference(
    cache: &ModelCache,
    args: &BenchArgs,
    frame: &Frame,
    sessions: usize,
    threads: usize,
) -> Result<BareInference> {
    let mut detectors = (0..sessions)
        .map(|_| {
            let mut d = runtime::detector(cache, &args.detector, Some(threads))?;
            for _ in 0..3 {
                d.detect(frame)?;
            }
            Ok(d)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut bursts = Vec::with_capacity(BARE_BURSTS);
    for _ in 0..BARE_BURSTS {
        let started = Instant::now();
        std::thread::scope(|scope| {
            let runs: Vec<_> = detectors
                .iter_mut()
                .map(|d| {
                    scope.spawn(move || -> Result<()> {
                        for _ in 0..BARE_ROUNDS {
                            d.detect(frame)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            runs.into_iter()
                .try_for_each(|r| r.join().expect("a detector thread panicked"))
        })?;
        bursts.push(started.elapsed().as_secs_f64() * 1000.0 / (BARE_ROUNDS * sessions) as f64);
    }
    bursts.sort_by(f64::total_cmp);
    Ok(BareInference {
        ms: bursts[bursts.len() / 2],
        fastest_ms: bursts[0],
        slowest_ms: bursts[bursts.len() - 1],
    })
}

const BARE_BURSTS: usize = 5;
const BARE_ROUNDS: usize = 20;

/// Bare detector timing: the median burst and the spread around it.
#[derive(Clone, Copy, Serialize)]
struct BareInference {
    ms: f64,
    fastest_ms: f64,
    slowest_ms: f64,
}

impl BareInference {
    /// Cameras this speed allows at `DETECT_FPS`, inference and nothing else.
    fn bound(&self) -> f64 {
        bound_of(self.ms)
    }

    fn spread(&self) -> String {
        format!("bursts {:.1}-{:.1}", self.fastest_ms, self.slowest_ms)
    }
}

fn bound_of(ms: f64) -> f64 {
    1000.0 / (ms * f64::from(DETECT_FPS))
}

#[derive(Default)]
struct Measured {
    /// Arrival to end of detection, detected frames only, ms.
    latencies: Vec<f64>,
    /// First sighting of a new visit to its stage one stored, ms.
    alerts: Vec<f64>,
    /// Time in the stages, every frame.
    busy: Duration,
    /// Of frames the gate passed: how many, and their time in the stages,
    /// detecting and embedding.
    passed: u64,
    passed_busy: Duration,
    detect: Duration,
    detect_preprocess: Duration,
    detect_inference: Duration,
    embed: Duration,
    /// Person boxes embedded, reusing their track's embedding, and
    /// dropped unembedded.
    crops_embedded: u64,
    crops_reused: u64,
    crops_dropped: u64,
}

struct Recorder(Arc<Mutex<Measured>>);

impl Observer for Recorder {
    fn frame(&mut self, frame: &Frame, outcome: &FrameOutcome) {
        let since_arrival = wall_now().saturating_sub(frame.pts).as_secs_f64() * 1000.0;
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.busy += outcome.elapsed;
        if outcome.gate.is_none_or(|g| g.passes()) {
            m.latencies.push(since_arrival);
            m.passed += 1;
            m.passed_busy += outcome.elapsed;
            m.detect += outcome.timings.total();
            m.detect_preprocess += outcome.timings.preprocess;
            m.detect_inference += outcome.timings.inference;
            m.embed += outcome.embed_time;
            m.crops_embedded += outcome.embedded as u64;
            m.crops_reused += outcome.embeddings_reused as u64;
            m.crops_dropped += outcome.dropped_unembedded as u64;
        }
        // From the visit's first sighting, which may be frames earlier
        // (a person walking in at the frame's edge is held a moment).
        let now_ms = wall_now().as_secs_f64() * 1000.0;
        for event in outcome.events.iter().filter(|e| e.kind == EventKind::New) {
            if !outcome.alerts.is_empty() {
                m.alerts.push(now_ms - event.first_seen_ms as f64);
            }
        }
    }
}

fn wall_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn run_step(
    cache: &ModelCache,
    args: &BenchArgs,
    server: &RtspServer,
    footage: &str,
    gate: bool,
    n: usize,
    seconds: u64,
) -> Result<Step> {
    let workers = args.workers as usize;
    let threads = Some(runtime::worker_threads(workers));
    let detector = runtime::detector(cache, &args.detector, threads)?;
    let identity = if args.no_identity {
        None
    } else {
        let (embedder, tracker) =
            runtime::identity_stage(cache, &args.embedder, threads, IdentityConfig::default())?;
        Some(IdentityStage { embedder, tracker })
    };
    let outbox = tempfile::tempdir()?;
    let alerts = Arc::new(AlertPipeline::start_without_broker(
        &AlertsConfig {
            outbox_dir: outbox.path().to_path_buf(),
            ..AlertsConfig::default()
        },
        None,
    )?);
    let graph = StageGraph::new(
        detector,
        identity,
        Some(Arc::clone(&alerts)),
        Clock::Wall(Zone::System),
    );
    let mut more_workers = Vec::new();
    for _ in 1..workers {
        let embedder = (!args.no_identity)
            .then(|| runtime::embedder(cache, &args.embedder, threads))
            .transpose()?;
        more_workers
            .push(graph.worker(runtime::detector(cache, &args.detector, threads)?, embedder)?);
    }
    let measured = Arc::new(Mutex::new(Measured::default()));
    let cameras: Vec<CameraSpec> = (0..n)
        .map(|i| CameraSpec {
            name: format!("cam{i:02}"),
            input: LiveInput::Rtsp(server.url(&match footage {
                "busy" => footage.to_string(),
                varied => format!("{varied}{}", i % IDLE_VARIANTS),
            })),
            settings: LiveSettings {
                fps: Fps {
                    num: DETECT_FPS,
                    den: 1,
                },
                ..LiveSettings::default()
            },
            stall_timeout: Duration::from_secs(20),
            backoff: Backoff::default(),
            motion: gate.then(MotionConfig::default),
        })
        .collect();
    let runner = LiveRunner::start(
        cameras,
        Stages {
            graph,
            more_workers,
            observer: Box::new(Recorder(Arc::clone(&measured))),
        },
    )?;
    let telemetry = Arc::clone(runner.telemetry());
    // Warm up: every camera online and a few seconds of frames.
    let started = Instant::now();
    while telemetry
        .cameras()
        .any(|c| c.state() != streamer_runner::CameraState::Online)
    {
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let totals = || {
        telemetry
            .cameras()
            .fold((0u64, 0u64, 0u64, 0u64, 0u64), |(p, g, d, s, r), c| {
                let h = c.health();
                (
                    p + h.frames_processed,
                    g + h.frames_gated_out,
                    d + h.frames_dropped,
                    s + h.stalls,
                    r + h.reconnects,
                )
            })
    };
    let per_camera = || -> Vec<u64> {
        telemetry
            .cameras()
            .map(|c| c.health().frames_processed)
            .collect()
    };
    {
        // Alerts count from the step's start: the same vtest people walk
        // past camera after camera and join visits still open, so most new
        // visits (and their first alerts) come in the first seconds.
        let mut m = measured.lock().unwrap_or_else(|p| p.into_inner());
        let alerts = std::mem::take(&mut m.alerts);
        *m = Measured {
            alerts,
            ..Measured::default()
        };
    }
    let (p0, g0, d0, s0, r0) = totals();
    let cams0 = per_camera();
    let cpu0 = cpu_seconds();
    let rss_start = rss_mib();
    let window = Instant::now();
    let mut rss_each_minute = vec![rss_start];
    let mut heap_each_minute: Vec<HeapMib> = heap_mib().into_iter().collect();
    let end = window + Duration::from_secs(seconds);
    loop {
        let next_minute = window + Duration::from_secs(60 * rss_each_minute.len() as u64);
        let wake = next_minute.min(end);
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        if wake == end {
            break;
        }
        rss_each_minute.push(rss_mib());
        heap_each_minute.extend(heap_mib());
    }
    let elapsed = window.elapsed().as_secs_f64();
    let (p1, g1, d1, s1, r1) = totals();
    let cams1 = per_camera();
    let cpu = cpu_seconds() - cpu0;
    let rss_end = rss_mib();
    let m = std::mem::take(&mut *measured.lock().unwrap_or_else(|p| p.into_inner()));
    if let Some(pipeline) = runner.stop() {
        drop(pipeline);
    }
    if let Ok(pipeline) = Arc::try_unwrap(alerts) {
        pipeline.shutdown(Duration::ZERO);
    }

    let (processed, gated, dropped) = (p1 - p0, g1 - g0, d1 - d0);
    let passed = processed - gated;
    let dropped_pct = 100.0 * dropped as f64 / (passed + dropped).max(1) as f64;
    let min_fps = cams0
        .iter()
        .zip(&cams1)
        .map(|(a, b)| (b - a) as f64 / elapsed)
        .fold(f64::INFINITY, f64::min);
    let mut lat = m.latencies.clone();
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * q).round() as usize]
        }
    };
    let alert_max = m.alerts.iter().copied().reduce(f64::max);
    let per_passed = |d: Duration| d.as_secs_f64() * 1000.0 / m.passed.max(1) as f64;
    let crops = m.crops_embedded + m.crops_reused + m.crops_dropped;
    let mut why_not = Vec::new();
    if dropped_pct >= 1.0 {
        why_not.push(format!("{dropped_pct:.1} % of passed frames dropped"));
    }
    if pct(0.95) >= 500.0 {
        why_not.push(format!("p95 latency {:.0} ms", pct(0.95)));
    }
    if min_fps < 0.9 * f64::from(DETECT_FPS) {
        why_not.push(format!("a camera at {min_fps:.2} fps"));
    }
    if s1 > s0 {
        why_not.push(format!("{} stall(s)", s1 - s0));
    }
    if alert_max.is_some_and(|v| v >= 1000.0) {
        why_not.push(format!("an alert after {:.0} ms", alert_max.unwrap_or(0.0)));
    }
    Ok(Step {
        cameras: n,
        sustained: why_not.is_empty(),
        why_not,
        cpu_per_camera_pct: 100.0 * cpu / elapsed / n as f64,
        rss_start_mib: rss_start,
        rss_end_mib: rss_end,
        rss_each_minute_mib: rss_each_minute,
        heap_each_minute_mib: heap_each_minute,
        frames_processed: processed,
        frames_gated_out: gated,
        frames_dropped: dropped,
        stalls: s1 - s0,
        reconnects: r1 - r0,
        dropped_of_passed_pct: dropped_pct,
        latency_p50_ms: pct(0.5),
        latency_p95_ms: pct(0.95),
        latency_max_ms: lat.last().copied().unwrap_or(0.0),
        inference_busy_pct: 100.0 * m.busy.as_secs_f64() / elapsed / args.workers as f64,
        passed_frame_ms: per_passed(m.passed_busy),
        detect_ms: per_passed(m.detect),
        detect_preprocess_ms: per_passed(m.detect_preprocess),
        detect_inference_ms: per_passed(m.detect_inference),
        embed_ms: per_passed(m.embed),
        crops_per_passed_frame: crops as f64 / m.passed.max(1) as f64,
        crops_reused_pct: 100.0 * m.crops_reused as f64 / crops.max(1) as f64,
        crops_dropped_pct: 100.0 * m.crops_dropped as f64 / crops.max(1) as f64,
        min_camera_fps: min_fps,
        alerts: m.alerts.len(),
        alert_max_ms: alert_max,
        inference_ms_after: None,
        inference_bound_after: None,
    })
}

/// User + system CPU time of this process, seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (11 and 12 after the name).
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib() -> f64 {
    crate::bench_cmd::status_mib("VmRSS")
}

/// An RTSP server on 127.0.0.1 serving each file at `/<name>`, without
/// re-encoding (the files are H.264 already); every client gets its own
/// media from the start of the file.
struct RtspServer {
    port: u16,
    main_loop: gstreamer::glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RtspServer {
    fn start(files: &[(String, PathBuf)]) -> Result<Self> {
        gstreamer::init()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let context = gstreamer::glib::MainContext::new();
        let main_loop = gstreamer::glib::MainLoop::new(Some(&context), false);
        let server = gstreamer_rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        let mounts = server
            .mount_points()
            .context("the server has mount points")?;
        for (name, file) in files {
            let factory = gstreamer_rtsp_server::RTSPMediaFactory::new();
            factory.set_launch(&format!(
                "( filesrc location=\"{}\" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )",
                file.display()
            ));
            factory.set_shared(false);
            mounts.add_factory(&format!("/{name}"), factory);
        }
        let source = server.attach(Some(&context))?;
        let loop_ = main_loop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-rtsp".into())
            .spawn(move || {
                let _server = server;
                let _source = source;
                loop_.run();
            })?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("the bench's RTSP server did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            port,
            main_loop,
            thread: Some(thread),
        })
    }

    fn url(&self, name: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
