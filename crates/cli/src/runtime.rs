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
