//! `streamer replay`: footage through decode -> detect -> identity (and,
//! with `--mqtt`, alerts), as JSON lines. Several inputs are interleaved by
//! time, as cameras running side by side; `--split` cuts one input into
//! several virtual cameras.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use streamer_core::{Detection, Frame};
use streamer_identity::{IdentityConfig, Sighting, VisitEvent, VisitTracker};
use streamer_ingest::{Fps, IngestError};
use streamer_models::ModelCache;
use streamer_vision::{DetectorTimings, Embedder};

use crate::split::SplitManifest;
use crate::{alerts, bench_cmd, runtime};

#[derive(Args)]
pub struct ReplayArgs {
    /// Video files or folders of images, one camera each.
    #[arg(required_unless_present = "bench")]
    pub(crate) inputs: Vec<PathBuf>,
    /// Frames per second to sample from each input.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) fps: f64,
    /// Detector model, by name from `streamer models list`.
    #[arg(long, default_value = "centernet")]
    pub(crate) detector: String,
    /// Override the detector's score threshold (0-1).
    #[arg(long)]
    pub(crate) score: Option<f32>,
    /// Cut the single input into the virtual cameras listed in this file
    /// (JSON or TOML: `cameras`, each { name, x, y, width, height } in
    /// pixels), e.g. fixtures/identity/vtest-two-cameras.json.
    #[arg(long, value_name = "FILE")]
    pub(crate) split: Option<PathBuf>,
    /// Camera name for the output (single input; default: the file name).
    #[arg(long)]
    pub(crate) camera: Option<String>,
    /// ONNX Runtime intra-op threads (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Skip person embeddings and visits (detections only).
    #[arg(long)]
    pub(crate) no_identity: bool,
    /// Person embedder, by name from `streamer models list`.
    #[arg(long, default_value = "mobilenetv2-embedder")]
    pub(crate) embedder: String,
    /// Cosine similarity at which a person joins an open visit (0-1; default
    /// 0.35, tuned for the calibrated MobileNetV2 embedder).
    #[arg(long)]
    pub(crate) similarity: Option<f32>,
    /// Send alerts to this MQTT broker (HOST or HOST:PORT) as visits open.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(crate) mqtt: Option<String>,
    /// Alerts configuration (TOML: mqtt, routing, triage, cameras).
    #[arg(long, value_name = "FILE")]
    pub(crate) alerts_config: Option<PathBuf>,
    /// Language model for describing and triaging alerts ("none": rule-based only).
    #[arg(long, default_value = "qwen2.5-coder-0.5b")]
    pub(crate) llm: String,
    /// Threads for that model (the detector uses the others).
    #[arg(long, default_value_t = 1)]
    pub(crate) llm_threads: usize,
    /// Local time the footage begins (RFC 3339, e.g.
    /// 2026-11-20T23:30:00+01:00; default: when the replay starts). Quiet
    /// hours and the night rule judge each frame at this time plus its
    /// timestamp, not at the time of the replay.
    #[arg(long, value_name = "TIME")]
    pub(crate) start: Option<String>,
    /// Run the offline benchmark instead: all 96 LLM and 35 image tests on
    /// the embedded model, report in streamer-bench-report.json. See
    /// `streamer bench --help` for models, endpoints and suites.
    #[arg(long)]
    pub(crate) bench: bool,
}

/// One stdout line per sampled frame.
#[derive(Serialize)]
struct FrameLine<'a> {
    camera: &'a str,
    seq: u64,
    pts_ms: u64,
    width: u32,
    height: u32,
    detections: &'a [Detection],
}

#[derive(Default)]
struct Totals {
    frames: u64,
    frames_with_people: u64,
    people: u64,
    decode: Duration,
    stages: DetectorTimings,
}

pub fn run(args: ReplayArgs) -> Result<ExitCode> {
    if args.bench {
        // All 131 tests on the embedded model. It has no vision projector,
        // so the image tests run through a generated one: they exercise the
        // image path, and their score means nothing (the report says so).
        eprintln!(
            "running all 131 benchmark tests on the embedded model; the 35 image tests use a \
             generated projector with random weights, so their answers are meaningless \
             (pass --projector to `streamer bench` for a real vision model)"
        );
        let mut bench = bench_cmd::BenchArgs::defaults(bench_cmd::Mode::Full);
        bench.synthetic_projector = true;
        bench.json = Some(PathBuf::from("streamer-bench-report.json"));
        return bench_cmd::run(bench);
    }
    if args.camera.is_some() && args.inputs.len() > 1 {
        bail!("--camera names a single input; with several inputs each is named after its file");
    }
    let split = match &args.split {
        Some(_) if args.inputs.len() != 1 || args.camera.is_some() => {
            bail!("--split cuts exactly one input into cameras (and names them, so no --camera)")
        }
        Some(path) => Some(SplitManifest::load(path)?),
        None => None,
    };
    if let Some(s) = args.score {
        if !(0.0..=1.0).contains(&s) {
            bail!("--score must be between 0 and 1, got {s}");
        }
    }
    let fps = Fps::from_f64(args.fps).context("--fps")?;
    if args.threads == Some(0) {
        bail!("--threads must be at least 1 (or leave it out for all cores)");
    }
    if args.llm_threads == 0 {
        bail!("--llm-threads must be at least 1");
    }
    if args.no_identity && (args.mqtt.is_some() || args.alerts_config.is_some()) {
        bail!("alerts are sent per visit, and --no-identity turns visits off: drop one of them");
    }
    let cache = ModelCache::from_env();
    let mut detector = runtime::detector(&cache, &args.detector, args.threads)?;
    if let Some(s) = args.score {
        detector.set_score_threshold(s);
    }
    let mut identity = if args.no_identity {
        None
    } else {
        Some(Identity::new(&cache, &args)?)
    };
    let alerts = match (&args.mqtt, &args.alerts_config) {
        (None, None) => None,
        _ => Some(alerts::Alerts::start(&cache, &args)?),
    };

    let started = Instant::now();
    let mut totals = Totals::default();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {pos} frames, {per_sec}").expect("valid template"),
    );
    let mut sources = Vec::new();
    for input in &args.inputs {
        let camera: Arc<str> = args
            .camera
            .clone()
            .unwrap_or_else(|| camera_name(input))
            .into();
        if let Some(a) = &alerts {
            match &split {
                Some(split) => split.names().for_each(|name| a.camera_connected(name)),
                None => a.camera_connected(&camera),
            }
        }
        sources.push(spawn_source(input, camera, fps)?);
    }
    for item in interleave(sources) {
        let (decoded, decode, decoded_at) = item?;
        totals.decode += decode;
        let frames = match &split {
            Some(split) => split.cut(&decoded)?,
            None => vec![decoded],
        };
        for frame in frames {
            let (detections, timings) = detector.detect_timed(&frame)?;
            let people = detections.iter().filter(|d| d.is_person()).count() as u64;
            totals.frames += 1;
            totals.people += people;
            totals.frames_with_people += u64::from(people > 0);
            totals.stages.preprocess += timings.preprocess;
            totals.stages.inference += timings.inference;
            totals.stages.postprocess += timings.postprocess;
            write_line(&mut out, &frame, &detections)?;
            if let Some(identity) = identity.as_mut() {
                let events = identity.observe(&frame, &detections)?;
                for event in &events {
                    serde_json::to_writer(&mut out, event)?;
                    out.write_all(b"\n")?;
                }
                if let Some(a) = &alerts {
                    out.flush()?;
                    a.on_frame(&frame, &detections, &events, decoded_at)?;
                }
            }
            bar.inc(1);
        }
    }
    if let Some(identity) = identity.as_mut() {
        for event in identity.finish() {
            serde_json::to_writer(&mut out, &event)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    bar.finish_and_clear();
    print_summary(&args, &totals, started.elapsed());
    if let Some(identity) = &identity {
        identity.print_summary();
    }
    if let Some(a) = alerts {
        a.finish()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Embeds person boxes and follows visits across cameras.
struct Identity {
    embedder: Embedder,
    tracker: VisitTracker,
    last_ms: u64,
    embed_time: Duration,
}

impl Identity {
    fn new(cache: &ModelCache, args: &ReplayArgs) -> Result<Self> {
        let mut config = IdentityConfig::default();
        if let Some(s) = args.similarity {
            if !(0.0..=1.0).contains(&s) {
                bail!("--similarity must be between 0 and 1, got {s}");
            }
            config.similarity_threshold = s;
        }
        let (embedder, tracker) =
            runtime::identity_stage(cache, &args.embedder, args.threads, config)?;
        Ok(Self {
            embedder,
            tracker,
            last_ms: 0,
            embed_time: Duration::ZERO,
        })
    }

    fn observe(&mut self, frame: &Frame, detections: &[Detection]) -> Result<Vec<VisitEvent>> {
        self.last_ms = self.last_ms.max(frame.pts_ms());
        let boxes: Vec<_> = detections
            .iter()
            .filter(|d| d.is_person())
            .map(|d| d.bbox)
            .collect();
        if boxes.is_empty() {
            return Ok(self.tracker.tick(frame.pts_ms()));
        }
        let t = Instant::now();
        let embeddings = self.embedder.embed(frame, &boxes)?;
        self.embed_time += t.elapsed();
        let sightings: Vec<Sighting> = boxes
            .into_iter()
            .zip(embeddings)
            .map(|(b, e)| Sighting::from_frame(frame, b, e))
            .collect();
        Ok(self.tracker.observe(&sightings)?.events)
    }

    fn finish(&mut self) -> Vec<VisitEvent> {
        self.tracker.finish(self.last_ms)
    }

    fn print_summary(&self) {
        let s = self.tracker.summary();
        eprintln!(
            "  identity            {} persons detected, {} visits opened, {} cross-camera joins ({:.1} ms embedding per frame with people)",
            s.persons_detected,
            s.visits_opened,
            s.cross_camera_joins,
            self.embed_time.as_secs_f64() * 1000.0 / s.persons_detected.max(1) as f64
        );
    }
}

/// Frames of one input: the frame, its decode time, and when it left the
/// decoder.
type Decoded = Result<(Frame, Duration, Instant), IngestError>;

/// Frames of several sources merged in timestamp order, as if the cameras
/// ran side by side.
fn interleave(
    sources: Vec<Box<dyn Iterator<Item = Decoded>>>,
) -> impl Iterator<Item = Result<(Frame, Duration, Instant)>> {
    let mut sources: Vec<_> = sources.into_iter().map(|s| s.peekable()).collect();
    std::iter::from_fn(move || {
        let next = sources
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| match s.peek() {
                Some(Ok((f, _, _))) => Some((f.pts, i)),
                // Errors come out first, so they are never hidden.
                Some(Err(_)) => Some((Duration::ZERO, i)),
                None => None,
            })
            .min()?;
        sources[next.1]
            .next()
            .map(|item| item.context("reading an input"))
    })
}

/// Decodes on its own thread so decoding overlaps detection; a small bound
/// keeps memory flat (replay wants every sampled frame, so it blocks rather
/// than drops).
fn spawn_source(
    input: &Path,
    camera: Arc<str>,
    fps: Fps,
) -> Result<Box<dyn Iterator<Item = Decoded>>> {
    let mut source = streamer_ingest::open(input, camera, fps)?;
    let (tx, rx) = crossbeam_channel::bounded(2);
    thread::Builder::new()
        .name("replay-source".into())
        .spawn(move || loop {
            let t = Instant::now();
            let item = source
                .next_frame()
                .map(|f| (f, t.elapsed(), Instant::now()));
            let end = item.is_err();
            if tx.send(item).is_err() || end {
                break;
            }
        })
        .context("spawning the source thread")?;
    Ok(Box::new(rx.into_iter().map_while(|item| match item {
        Err(IngestError::EndOfStream) => None,
        other => Some(other),
    })))
}

fn write_line(out: &mut impl Write, frame: &Frame, detections: &[Detection]) -> Result<()> {
    let rounded: Vec<Detection> = detections
        .iter()
        .map(|d| Detection {
            score: round(d.score, 1000.0),
            bbox: <[f32; 4]>::from(d.bbox).map(|v| round(v, 10.0)).into(),
            ..d.clone()
        })
        .collect();
    let line = FrameLine {
        camera: &frame.camera,
        seq: frame.seq,
        pts_ms: frame.pts_ms(),
        width: frame.width,
        height: frame.height,
        detections: &rounded,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")?;
    Ok(())
}

fn round(v: f32, scale: f32) -> f32 {
    (v * scale).round() / scale
}

fn camera_name(input: &Path) -> String {
    input
        .file_stem()
        .or_else(|| input.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "replay".into())
}

fn print_summary(args: &ReplayArgs, t: &Totals, wall: Duration) {
    let n = t.frames.max(1) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n;
    let pct = 100.0 * t.frames_with_people as f64 / n;
    eprintln!(
        "replay summary ({} input(s), {} fps sampling, detector {})",
        args.inputs.len(),
        args.fps,
        args.detector
    );
    eprintln!("  frames              {}", t.frames);
    eprintln!("  frames with people  {} ({pct:.1}%)", t.frames_with_people);
    eprintln!("  people detected     {}", t.people);
    eprintln!(
        "  per frame (ms)      decode {:.1} | preprocess {:.1} | inference {:.1} | postprocess {:.2} | detect stage {:.1}",
        ms(t.decode),
        ms(t.stages.preprocess),
        ms(t.stages.inference),
        ms(t.stages.postprocess),
        ms(t.stages.total())
    );
    eprintln!(
        "  throughput          {:.1} frames/s ({:.1} s wall)",
        t.frames as f64 / wall.as_secs_f64().max(1e-9),
        wall.as_secs_f64()
    );
}
