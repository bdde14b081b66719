//! `streamer models calibrate`: measures an embedder's mean person embedding
//! on footage, for embedders whose layout names a `centre` file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use streamer_core::layout::EmbedderLayout;
use streamer_models::ModelCache;
use streamer_vision::{calibration_path, Calibration};

use crate::runtime;

/// Where the default calibration footage starts: the identity evaluation
/// (`fixtures/identity/`) uses the first 30 s of vtest, so the mean is
/// measured on the rest.
const DEFAULT_SKIP_S: f64 = 30.0;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Footage to measure on: video files or image folders, ideally a few
    /// minutes from each of your own cameras with people in view (default:
    /// the cached vtest sample from 30 s on).
    pub footage: Vec<PathBuf>,
    /// Embedder to calibrate (default: the one live cameras use unless the
    /// config names another).
    #[arg(long, default_value = crate::config::DEFAULT_EMBEDDER)]
    pub embedder: String,
    /// Detector that finds the person crops.
    #[arg(long, default_value = "centernet")]
    pub detector: String,
    /// Seconds to skip at the start of each input (default: 30 for the
    /// vtest sample, 0 for your own footage).
    #[arg(long)]
    pub skip: Option<f64>,
    /// Frames per second to sample.
    #[arg(long, default_value_t = 2.0)]
    pub fps: f64,
    /// Measure again even if the calibration file exists.
    #[arg(long)]
    pub force: bool,
}

/// Fewer person crops than this make a noisy mean.
const MIN_CROPS: usize = 50;

pub fn run(cache: &ModelCache, args: CalibrateArgs) -> Result<()> {
    let entry = cache.entry(&args.embedder)?;
    let Some(layout) = entry.embedder.clone() else {
        bail!(
            "model {} is a {:?}, not an embedder",
            args.embedder,
            entry.kind
        );
    };
    let Some(file) = layout.centre.clone() else {
        bail!(
            "embedder {} needs no calibration (its manifest entry names no `centre` file)",
            args.embedder
        );
    };
    let model_path = cache.require(&args.embedder)?;
    let out = calibration_path(&model_path, &file);
    let model_sha256 = streamer_models::sha256_file(&model_path)?;
    if out.exists() && !args.force {
        match stale_because(&out, &layout, &model_sha256) {
            None => {
                eprintln!(
                    "{} is calibrated: {} (--force to measure again)",
                    args.embedder,
                    out.display()
                );
                return Ok(());
            }
            Some(why) => eprintln!("{}: {why}: measuring again", args.embedder),
        }
    }

    let (footage, skip) = if args.footage.is_empty() {
        (
            vec![cache.require("vtest")?],
            args.skip.unwrap_or(DEFAULT_SKIP_S),
        )
    } else {
        (args.footage.clone(), args.skip.unwrap_or(0.0))
    };
    let mut detector = runtime::detector(cache, &args.detector, None)?;
    // Raw (uncentred) embeddings: the mean is what centring will take off.
    let raw_layout = streamer_core::layout::EmbedderLayout {
        centre: None,
        ..layout.clone()
    };
    let mut embedder = streamer_vision::Embedder::load(
        runtime::onnx_runtime(cache)?,
        &model_path,
        &raw_layout,
        streamer_vision::default_threads(),
    )?;
    let fps = streamer_ingest::Fps::from_f64(args.fps)?;
    let skip = Duration::from_secs_f64(skip.max(0.0));

    let started = Instant::now();
    let mut sum = vec![0.0f64; layout.dim];
    let mut colour_sum = vec![0.0f64; streamer_vision::COLOUR_DIM];
    let (mut crops, mut frames) = (0usize, 0usize);
    for path in &footage {
        let source = streamer_ingest::open(path, Arc::from("calibration"), fps)
            .with_context(|| format!("cannot open {}", path.display()))?;
        for frame in streamer_ingest::frames(source) {
            let frame = frame.with_context(|| format!("reading {}", path.display()))?;
            if frame.pts < skip {
                continue;
            }
            frames += 1;
            let boxes: Vec<_> = detector
                .detect(&frame)?
                .into_iter()
                .filter(|d| d.is_person())
                .map(|d| d.bbox)
                .collect();
            for (e, bbox) in embedder.embed(&frame, &boxes)?.iter().zip(&boxes) {
                for (s, x) in sum.iter_mut().zip(e) {
                    *s += f64::from(*x);
                }
                let colour = streamer_vision::colour_signature(&frame, bbox);
                for (s, x) in colour_sum.iter_mut().zip(&colour) {
                    *s += f64::from(*x);
                }
                crops += 1;
            }
        }
    }
    if crops < MIN_CROPS {
        bail!(
            "only {crops} person crops in {frames} frames; calibration needs at least {MIN_CROPS}: give footage with people in view"
        );
    }
    let average =
        |sum: &[f64]| -> Vec<f32> { sum.iter().map(|s| (s / crops as f64) as f32).collect() };
    let calibration = Calibration {
        model_sha256: Some(model_sha256),
        model: model_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source: format!(
            "{} from {:.0} s at {} fps",
            footage
                .iter()
                .map(|p| p.file_name().unwrap_or(p.as_os_str()).to_string_lossy())
                .collect::<Vec<_>>()
                .join(", "),
            skip.as_secs_f64(),
            args.fps
        ),
        crops,
        mean: average(&sum),
        colour_mean: Some(average(&colour_sum)),
    };
    calibration
        .write(&out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "calibrated {}: mean of {crops} person crops from {frames} frames in {:.1} s (|mean| {:.3}) -> {}",
        args.embedder,
        started.elapsed().as_secs_f64(),
        streamer_identity::dot(&calibration.mean, &calibration.mean).sqrt(),
        out.display()
    );
    Ok(())
}

/// Why the calibration file at `out` no longer fits the embedder, if it
/// does not: another model file (a converter that changed), another vector
/// length, or no colour mean where the layout weighs colour.
fn stale_because(out: &Path, layout: &EmbedderLayout, model_sha256: &str) -> Option<String> {
    let current = match Calibration::read(out, layout.dim) {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    match current.model_sha256.as_deref() {
        None => return Some("it does not say which model file it was measured on".into()),
        Some(sha) if sha != model_sha256 => {
            return Some("it was measured on another version of the model file".into())
        }
        Some(_) => {}
    }
    if current.colour_mean.is_none() && layout.colour_weight > 0.0 {
        return Some("it was calibrated without the mean colour signature".into());
    }
    None
}
