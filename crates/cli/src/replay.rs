//! `streamer replay`: footage through the runner's stage graph (detect ->
//! identity, and with `--mqtt` alerts), as JSON lines. The runner decides
//! the order and pacing (inputs interleaved by time, lossless); this parses
//! the arguments, writes the lines and prints the summary. `--split` cuts
//! one input into several virtual cameras.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use streamer_core::{Detection, Frame};
use streamer_identity::{IdentityConfig, VisitEvent};
use streamer_ingest::Fps;
use streamer_models::ModelCache;
use streamer_motion::{MotionConfig, MotionGate};
use streamer_runner::replay::{Cut, Decoded, ReplayObserver};
use streamer_runner::{Clock, FrameOutcome, IdentityStage, ReplayInput, ReplayRunner, StageGraph};
use streamer_vision::DetectorTimings;

use crate::split::SplitManifest;
use crate::{alerts, bench_cmd, config, runtime};

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
    /// 0.5, tuned for the calibrated MobileNetV2 embedder with colour).
    #[arg(long)]
    pub(crate) similarity: Option<f32>,
    /// Describe and triage every new visit and print each alert as one
    /// readable line (footage time, camera, visit, urgency, message, model or
    /// fallback). Alone, the terminal is the only channel; --mqtt also sends
    /// them to a broker.
    #[arg(long)]
    pub(crate) alerts: bool,
    /// Do not print the JSON lines (frames, visits) on stdout.
    #[arg(long)]
    pub(crate) no_json: bool,
    /// Put the motion gate in front of detection (default settings, as for
    /// a camera without a [cameras.<name>.motion] section): frames without
    /// motion skip detection; their JSON lines say `"motion": "still"` (or
    /// `"lighting"` for a frame whose whole picture changed at once).
    #[arg(long)]
    pub(crate) motion: bool,
    /// Send alerts to this MQTT broker (HOST or HOST:PORT) as visits open.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(crate) mqtt: Option<String>,
    /// Take models, identity and alert settings from the config file that
    /// `streamer run` uses (its `[cameras]` are not replayed; the inputs
    /// are). Alerts go to its `[mqtt]` broker if it has one.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "alerts_config", "similarity", "detector", "embedder", "llm", "llm_threads", "threads", "score",
    ])]
    pub(crate) config: Option<PathBuf>,
    /// Identity settings from `--config`.
    #[arg(skip)]
    pub(crate) file_identity: Option<IdentityConfig>,
    /// Alert settings from `--config` (when it has `[mqtt]`).
    #[arg(skip)]
    pub(crate) file_alerts: Option<streamer_alerts::AlertsConfig>,
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
    /// Run the offline benchmark instead: all 96 LLM, 35 image and 12 scene tests on
    /// the embedded model, report in streamer-bench-report.json and .html. See
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
    /// The motion gate's decision, with `--motion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    motion: Option<&'static str>,
    detections: &'a [Detection],
}

#[derive(Default)]
struct Totals {
    frames: u64,
    frames_gated_out: u64,
    frames_with_people: u64,
    people: u64,
    decode: Duration,
    stages: DetectorTimings,
    embed: Duration,
}

pub fn run(mut args: ReplayArgs) -> Result<ExitCode> {
    if args.bench {
        // All 143 tests on the embedded model. It has no vision projector,
        // so the image tests run through a generated one: they exercise the
        // image path, and their score means nothing (the report says so).
        eprintln!(
            "running all 143 benchmark tests on the embedded model; the 47 image tests use a \
             generated projector with random weights, so their answers are meaningless \
             (pass --projector to `streamer bench` for a real vision model)"
        );
        let mut bench = bench_cmd::BenchArgs::defaults(bench_cmd::Mode::Full);
        bench.synthetic_projector = true;
        bench.json = Some(PathBuf::from("streamer-bench-report.json"));
        bench.html = Some(PathBuf::from("streamer-bench-report.html"));
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
    if let Some(path) = &args.config {
        let loaded = config::load(path, &|name| std::env::var(name).ok())?;
        let m = &loaded.config.models;
        args.detector = m.detector.clone();
        args.embedder = m.embedder.clone();
        args.llm = m.llm.clone();
        args.llm_threads = m.llm_threads;
        args.threads = m.detector_threads;
        args.score = m.score;
        args.file_identity = Some(loaded.config.identity.clone());
        args.file_alerts = loaded.alerts_config();
    }
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
    let wants_alerts = args.alerts
        || args.mqtt.is_some()
        || args.alerts_config.is_some()
        || args.file_alerts.is_some();
    if args.no_identity && wants_alerts {
        bail!("alerts are sent per visit, and --no-identity turns visits off: drop one of them");
    }
    let cache = ModelCache::from_env();
    let mut detector = runtime::detector(&cache, &args.detector, args.threads)?;
    if let Some(s) = args.score {
        detector.set_score_threshold(s);
    }
    let identity = if args.no_identity {
        None
    } else {
        let mut config = args.file_identity.clone().unwrap_or_default();
        if let Some(s) = args.similarity {
            if !(0.0..=1.0).contains(&s) {
                bail!("--similarity must be between 0 and 1, got {s}");
            }
            config.similarity_threshold = s;
        }
        let (embedder, tracker) =
            runtime::identity_stage(&cache, &args.embedder, args.threads, config)?;
        Some(IdentityStage { embedder, tracker })
    };
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {pos} frames, {per_sec}").expect("valid template"),
    );
    let alerts = if wants_alerts {
        Some(alerts::Alerts::start(&cache, &args, bar.clone())?)
    } else {
        None
    };

    let mut inputs = Vec::new();
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
        inputs.push(ReplayInput {
            path: input.clone(),
            camera,
        });
    }
    let cut: Option<Cut> = split.map(|split| -> Cut {
        Box::new(move |frame: &Frame| split.cut(frame).map_err(|e| format!("{e:#}")))
    });
    let clock = alerts
        .as_ref()
        .map(|a| a.clock())
        .unwrap_or(Clock::Footage {
            start: chrono::Local::now().fixed_offset(),
        });
    let mut graph = StageGraph::new(
        detector,
        identity,
        alerts.as_ref().map(|a| a.pipeline()),
        clock,
    );
    if args.motion {
        graph = graph.with_motion_gate(MotionGate::new(MotionConfig::default(), BTreeMap::new()));
    }
    let started = Instant::now();
    let stdout = io::stdout();
    let mut output = Output {
        out: io::BufWriter::new(stdout.lock()),
        totals: Totals::default(),
        bar,
        json: !args.no_json,
        alerts,
    };
    ReplayRunner::new(inputs, fps, cut)
        .run(&mut graph, &mut output)
        .context("replaying")?;
    let Output {
        mut out,
        totals,
        bar,
        alerts,
        ..
    } = output;
    out.flush()?;
    bar.finish_and_clear();
    print_summary(&args, &totals, started.elapsed());
    if let Some(s) = graph.identity_summary() {
        eprintln!(
            "  identity            {} persons detected, {} visits opened, {} cross-camera joins, {} glimpses at the edge dropped ({:.1} ms embedding per frame with people)",
            s.persons_detected,
            s.visits_opened,
            s.cross_camera_joins,
            s.edge_glimpses_dropped,
            totals.embed.as_secs_f64() * 1000.0 / s.persons_detected.max(1) as f64
        );
    }
    drop(graph);
    if let Some(a) = alerts {
        a.finish()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the JSON lines, counts for the summary, and feeds the alert
/// report.
struct Output<W: Write> {
    out: W,
    totals: Totals,
    bar: ProgressBar,
    json: bool,
    alerts: Option<alerts::Alerts>,
}

impl<W: Write> ReplayObserver for Output<W> {
    fn frame(
        &mut self,
        frame: &Frame,
        decoded: &Decoded,
        outcome: &mut FrameOutcome,
    ) -> std::result::Result<(), String> {
        let t = &mut self.totals;
        let people = outcome.detections.iter().filter(|d| d.is_person()).count() as u64;
        t.frames += 1;
        t.frames_gated_out += u64::from(outcome.gate.is_some_and(|g| !g.passes()));
        t.people += people;
        t.frames_with_people += u64::from(people > 0);
        t.decode += decoded.decode_time;
        t.stages.preprocess += outcome.timings.preprocess;
        t.stages.inference += outcome.timings.inference;
        t.stages.postprocess += outcome.timings.postprocess;
        t.embed += outcome.embed_time;
        let json = self.json;
        let written = (|| -> Result<()> {
            if !json {
                return Ok(());
            }
            write_line(&mut self.out, frame, outcome)?;
            for event in &outcome.events {
                serde_json::to_writer(&mut self.out, event)?;
                self.out.write_all(b"\n")?;
            }
            if self.alerts.is_some() {
                self.out.flush()?;
            }
            Ok(())
        })();
        written.map_err(|e| format!("writing the output: {e:#}"))?;
        if let Some(a) = self.alerts.as_mut() {
            a.observe(
                frame.pts,
                &outcome.detections,
                std::mem::take(&mut outcome.alerts),
                decoded.decoded_at,
            );
        }
        self.bar.inc(1);
        Ok(())
    }

    fn visits(&mut self, events: &[VisitEvent]) -> std::result::Result<(), String> {
        if !self.json {
            return Ok(());
        }
        let written = (|| -> Result<()> {
            for event in events {
                serde_json::to_writer(&mut self.out, event)?;
                self.out.write_all(b"\n")?;
            }
            Ok(())
        })();
        written.map_err(|e| format!("writing the output: {e:#}"))
    }
}

fn write_line(out: &mut impl Write, frame: &Frame, outcome: &FrameOutcome) -> Result<()> {
    let rounded: Vec<Detection> = outcome
        .detections
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
        motion: outcome.gate.map(|g| g.as_str()),
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
    if args.motion {
        eprintln!(
            "  without motion      {} ({:.1}%, not detected)",
            t.frames_gated_out,
            100.0 * t.frames_gated_out as f64 / n
        );
    }
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
