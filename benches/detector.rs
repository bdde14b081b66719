//! Per-frame cost of the default detector stage on a real vtest.avi frame:
//! preprocessing, bare inference, postprocessing, and the whole stage.
//!
//! Besides criterion's per-part estimates, it prints the ratio of the whole
//! stage to bare inference (target: at most 1.15).
//!
//! Run: `cargo bench --bench detector` (needs `make models`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use streamer_core::Frame;
use streamer_models::ModelCache;
use streamer_vision::{default_threads, Detector, OrtRuntime};

fn setup() -> (Detector, Frame) {
    let cache = ModelCache::from_env();
    let need = |name: &str| {
        cache
            .require(name)
            .unwrap_or_else(|e| panic!("{e}\n(run `make models` first)"))
    };
    let runtime = OrtRuntime::init(&need("onnxruntime")).expect("ONNX Runtime loads");
    let layout = cache.entry("centernet").unwrap().detector.clone().unwrap();
    let detector = Detector::load(runtime, &need("centernet"), layout, default_threads()).unwrap();
    let fps = streamer_ingest::Fps::from_f64(1.0).unwrap();
    let mut source = streamer_ingest::open(&need("vtest"), Arc::from("vtest"), fps).unwrap();
    // A frame from the middle of the clip, with several people in it.
    let mut frame = source.next_frame().unwrap();
    for _ in 0..10 {
        frame = source.next_frame().unwrap();
    }
    (detector, frame)
}

fn detector_stage(c: &mut Criterion) {
    let (mut detector, frame) = setup();
    let transform = detector.prepare(&frame);
    let raw = detector.infer().unwrap();

    let mut group = c.benchmark_group("detector/centernet");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("preprocess", |b| {
        b.iter(|| black_box(detector.prepare(&frame)))
    });
    group.bench_function("inference", |b| {
        b.iter(|| black_box(detector.infer().unwrap()))
    });
    group.bench_function("postprocess", |b| {
        b.iter(|| {
            black_box(
                detector
                    .decode(&raw, &transform, frame.width, frame.height)
                    .unwrap(),
            )
        })
    });
    group.bench_function("stage", |b| {
        b.iter(|| black_box(detector.detect(&frame).unwrap()))
    });
    group.finish();

    // `cargo test --all-targets` runs benches once as a smoke test; the
    // ratio needs a real run (`cargo bench` passes --bench).
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // Interleave the two measurements so drift affects both equally.
    let rounds = 40;
    let (mut stage, mut bare) = (Duration::ZERO, Duration::ZERO);
    detector.prepare(&frame);
    for _ in 0..rounds {
        let t = Instant::now();
        black_box(detector.infer().unwrap());
        bare += t.elapsed();
        let t = Instant::now();
        black_box(detector.detect(&frame).unwrap());
        stage += t.elapsed();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0 / rounds as f64;
    println!(
        "\ndetector stage {:.2} ms vs bare inference {:.2} ms per frame: ratio {:.3} (target <= 1.15)",
        ms(stage),
        ms(bare),
        stage.as_secs_f64() / bare.as_secs_f64()
    );
}

criterion_group!(benches, detector_stage);
criterion_main!(benches);
