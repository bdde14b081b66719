//! What the embedder's batch cap costs and saves: for each cap, the time per
//! person crop on a crowded vtest frame and the process's resident memory
//! once a full batch has run (ONNX Runtime's arena keeps the largest run's
//! buffers, so memory steps up with each larger batch and never comes down).
//!
//! Caps are tried smallest first on one session, so each row's memory is
//! what that batch size adds over the smaller ones.
//!
//! Run: `cargo bench --bench embedder` (needs `make models`). Under
//! `cargo test --all-targets` it embeds one batch as a smoke test.

use std::sync::Arc;
use std::time::Instant;

use streamer_core::{BBox, Frame};
use streamer_models::ModelCache;
use streamer_vision::{default_threads, Detector, Embedder, OrtRuntime, MAX_BATCH};

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let cache = ModelCache::from_env();
    let need = |name: &str| {
        cache
            .require(name)
            .unwrap_or_else(|e| panic!("{e}\n(run `make models` first)"))
    };
    let runtime = OrtRuntime::init(&need("onnxruntime")).expect("ONNX Runtime loads");
    let threads = default_threads();
    let detector_layout = cache.entry("centernet").unwrap().detector.clone().unwrap();
    let mut detector =
        Detector::load(runtime, &need("centernet"), detector_layout, threads).unwrap();
    let embedder_layout = cache
        .entry("mobilenetv2-embedder")
        .unwrap()
        .embedder
        .clone()
        .unwrap();
    let embedder_path = need("mobilenetv2-embedder");

    // The real people of a crowded frame, repeated to 32 crops.
    let fps = streamer_ingest::Fps::from_f64(1.0).unwrap();
    let mut source = streamer_ingest::open(&need("vtest"), Arc::from("vtest"), fps).unwrap();
    let frame: Frame = (0..10).fold(source.next_frame().unwrap(), |_, _| {
        source.next_frame().unwrap()
    });
    let people: Vec<BBox> = detector
        .detect(&frame)
        .unwrap()
        .into_iter()
        .filter(|d| d.is_person())
        .map(|d| d.bbox)
        .collect();
    assert!(!people.is_empty(), "the bench frame shows people");
    let crops: Vec<BBox> = people.iter().copied().cycle().take(32).collect();

    let full = std::env::args().any(|a| a == "--bench");
    let (caps, rounds): (&[usize], usize) = if full {
        (&[1, 2, 4, 8, 16, 32], 6)
    } else {
        (&[MAX_BATCH], 1)
    };
    let mut embedder = Embedder::load(runtime, &embedder_path, &embedder_layout, threads).unwrap();
    println!(
        "embedder on {} crops ({} people on the frame), {threads} threads; default cap {MAX_BATCH}",
        crops.len(),
        people.len()
    );
    println!("  cap  ms a crop  RSS after a full batch (MiB)");
    for &cap in caps {
        embedder = embedder.with_max_batch(cap);
        embedder.warm_up().unwrap();
        let rss = rss_mib();
        let started = Instant::now();
        for _ in 0..rounds {
            let out = embedder.embed(&frame, &crops).unwrap();
            assert_eq!(out.len(), crops.len());
        }
        let per_crop = started.elapsed().as_secs_f64() * 1000.0 / (rounds * crops.len()) as f64;
        println!("  {cap:>3}  {per_crop:>9.2}  {rss:>8.0}");
    }
}
