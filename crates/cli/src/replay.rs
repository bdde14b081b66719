//! `streamer replay`: footage through decode -> detect, as JSON lines.

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
use streamer_ingest::{Fps, IngestError};
use streamer_models::ModelCache;
use streamer_vision::DetectorTimings;

use crate::runtime;

#[derive(Args)]
pub struct ReplayArgs {
    /// Video files or folders of images.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Frames per second to sample from each input.
    #[arg(long, default_value_t = 2.0)]
    fps: f64,
    /// Detector model, by name from `streamer models list`.
    #[arg(long, default_value = "centernet")]
    detector: String,
    /// Override the detector's score threshold (0-1).
    #[arg(long)]
    score: Option<f32>,
    /// Camera name for the output (single input; default: the file name).
    #[arg(long)]
    camera: Option<String>,
    /// ONNX Runtime intra-op threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
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
    if args.camera.is_some() && args.inputs.len() > 1 {
        bail!("--camera names a single input; with several inputs each is named after its file");
    }
    if let Some(s) = args.score {
        if !(0.0..=1.0).contains(&s) {
            bail!("--score must be between 0 and 1, got {s}");
        }
    }
    let fps = Fps::from_f64(args.fps).context("--fps")?;
    let cache = ModelCache::from_env();
    let mut detector = runtime::detector(&cache, &args.detector, args.threads)?;
    if let Some(s) = args.score {
        detector.set_score_threshold(s);
    }

    let started = Instant::now();
    let mut totals = Totals::default();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} frames, {per_sec}")
            .expect("valid template"),
    );
    for input in &args.inputs {
        let camera: Arc<str> = args
            .camera
            .clone()
            .unwrap_or_else(|| camera_name(input))
            .into();
        bar.set_message(camera.to_string());
        let frames = spawn_source(input, camera.clone(), fps)?;
        for item in frames {
            let (frame, decode) = item.with_context(|| format!("reading {}", input.display()))?;
            let (detections, timings) = detector.detect_timed(&frame)?;
            let people = detections.iter().filter(|d| d.is_person()).count() as u64;
            totals.frames += 1;
            totals.people += people;
            totals.frames_with_people += u64::from(people > 0);
            totals.decode += decode;
            totals.stages.preprocess += timings.preprocess;
            totals.stages.inference += timings.inference;
            totals.stages.postprocess += timings.postprocess;
            write_line(&mut out, &frame, &detections)?;
            bar.inc(1);
        }
    }
    out.flush()?;
    bar.finish_and_clear();
    print_summary(&args, &totals, started.elapsed());
    Ok(ExitCode::SUCCESS)
}

/// Decodes on its own thread so decoding overlaps detection; a small bound
/// keeps memory flat (replay wants every sampled frame, so it blocks rather
/// than drops).
fn spawn_source(
    input: &Path,
    camera: Arc<str>,
    fps: Fps,
) -> Result<impl Iterator<Item = Result<(Frame, Duration), IngestError>>> {
    let mut source = streamer_ingest::open(input, camera, fps)?;
    let (tx, rx) = crossbeam_channel::bounded(2);
    thread::Builder::new()
        .name("replay-source".into())
        .spawn(move || loop {
            let t = Instant::now();
            let item = source.next_frame().map(|f| (f, t.elapsed()));
            let end = item.is_err();
            if tx.send(item).is_err() || end {
                break;
            }
        })
        .context("spawning the source thread")?;
    Ok(rx.into_iter().map_while(|item| match item {
        Err(IngestError::EndOfStream) => None,
        other => Some(other),
    }))
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
