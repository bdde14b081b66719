//! Locating the models a command needs, with errors that say how to fix them.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use streamer_core::layout::DetectorLayout;
use streamer_models::{Kind, ModelCache};
use streamer_vision::{default_threads, Detector, OrtRuntime};

/// Loads ONNX Runtime: `ORT_DYLIB_PATH` if set, else the cached library.
pub fn onnx_runtime(cache: &ModelCache) -> Result<&'static OrtRuntime> {
    let library = match std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => cache.require("onnxruntime")?,
    };
    Ok(OrtRuntime::init(&library)?)
}

/// Loads the detector named in the manifest.
pub fn detector(cache: &ModelCache, name: &str, threads: Option<usize>) -> Result<Detector> {
    let entry = cache.entry(name)?;
    if entry.kind != Kind::Detector {
        bail!("model {name} is a {:?}, not a detector", entry.kind);
    }
    let layout: DetectorLayout = entry.detector.clone().context("detector without layout")?;
    let path = cache.require(name)?;
    let runtime = onnx_runtime(cache)?;
    Ok(Detector::load(
        runtime,
        &path,
        layout,
        threads.unwrap_or_else(default_threads),
    )?)
}

/// Loads the embedder named in the manifest.
pub fn embedder(
    cache: &ModelCache,
    name: &str,
    threads: Option<usize>,
) -> Result<streamer_vision::Embedder> {
    let entry = cache.entry(name)?;
    let layout = entry
        .embedder
        .clone()
        .with_context(|| format!("model {name} is not an embedder"))?;
    let path = cache.require(name)?;
    streamer_vision::Embedder::load(
        onnx_runtime(cache)?,
        &path,
        &layout,
        threads.unwrap_or_else(default_threads),
    )
    .map_err(|e| match e {
        streamer_vision::VisionError::Calibration { .. } => anyhow::Error::new(e).context(format!(
            "embedder {name} (`streamer models calibrate --embedder {name}` measures it)"
        )),
        e => e.into(),
    })
}

/// Loads the embedder named in the manifest with a visit tracker on
/// `config`: the identity stage.
pub fn identity_stage(
    cache: &ModelCache,
    embedder: &str,
    threads: Option<usize>,
    config: streamer_identity::IdentityConfig,
) -> Result<(streamer_vision::Embedder, streamer_identity::VisitTracker)> {
    Ok((
        self::embedder(cache, embedder, threads)?,
        streamer_identity::VisitTracker::new(config)?,
    ))
}

/// ONNX Runtime threads for each of `workers` inference workers: the cores
/// shared out, at least one each.
pub fn worker_threads(workers: usize) -> usize {
    (default_threads() / workers.max(1)).max(1)
}

/// Loads the LLM for stage two (`"none"`: no model, rules only) on
/// `threads` threads, with `served_slots` KV-cache slots kept for HTTP
/// clients (0 when the model endpoints are off).
pub fn llm(
    cache: &ModelCache,
    name: &str,
    threads: usize,
    served_slots: usize,
    max_served_wait: std::time::Duration,
) -> Result<Option<std::sync::Arc<streamer_reason::LlmRuntime>>> {
    if name == "none" {
        return Ok(None);
    }
    if threads == 0 {
        bail!("the LLM needs at least one thread");
    }
    let path = crate::bench_cmd::model_path(cache, name)?;
    // Few threads: the detector keeps the other cores busy, and llama.cpp's
    // thread barriers collapse when oversubscribed.
    Ok(Some(std::sync::Arc::new(
        streamer_reason::LlmRuntime::load(
            &path,
            streamer_reason::RuntimeOptions {
                context: 2048,
                threads: Some(threads),
                served_slots,
                max_served_wait,
                ..streamer_reason::RuntimeOptions::default()
            },
        )?,
    )))
}
