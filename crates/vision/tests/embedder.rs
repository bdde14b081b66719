//! The embedder against the embedded MobileNetV2 model and real footage.

use std::path::PathBuf;
use std::sync::Arc;

use streamer_core::layout::EmbedderLayout;
use streamer_core::{BBox, Frame};
use streamer_models::ModelCache;
use streamer_vision::{Detector, Embedder, OrtRuntime};

/// The model file, or `None` (test skipped) when the cache lacks it outside
/// CI; in CI a missing model fails the test.
fn require(cache: &ModelCache, name: &str) -> Option<PathBuf> {
    match cache.require(name) {
        Ok(path) => Some(path),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: {e} (run `make models`)");
            None
        }
        Err(e) => panic!("{e}\n(the test suite needs the model cache: run `make models`)"),
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

struct Setup {
    embedder: Embedder,
    detector: Detector,
    frames: Vec<Frame>,
}

fn setup(frames: usize) -> Option<Setup> {
    let cache = ModelCache::from_env();
    let rt = OrtRuntime::init(&require(&cache, "onnxruntime")?).expect("ONNX Runtime loads");
    let layout: EmbedderLayout = cache
        .entry("mobilenetv2-embedder")
        .unwrap()
        .embedder
        .clone()
        .expect("the manifest describes the embedder");
    let embedder = Embedder::load(rt, &require(&cache, "mobilenetv2-embedder")?, &layout, 2)
        .expect("embedder loads");
    let detector = Detector::load(
        rt,
        &require(&cache, "centernet")?,
        cache.entry("centernet").unwrap().detector.clone().unwrap(),
        2,
    )
    .unwrap();
    let fps = streamer_ingest::Fps::from_f64(2.0).unwrap();
    let mut source =
        streamer_ingest::open(&require(&cache, "vtest")?, Arc::from("vtest"), fps).unwrap();
    let frames = (0..frames).map(|_| source.next_frame().unwrap()).collect();
    Some(Setup {
        embedder,
        detector,
        frames,
    })
}

fn people(detector: &mut Detector, frame: &Frame) -> Vec<BBox> {
    let mut boxes: Vec<BBox> = detector
        .detect(frame)
        .unwrap()
        .into_iter()
        .filter(|d| d.is_person())
        .map(|d| d.bbox)
        .collect();
    boxes.sort_by(|a, b| a.x1.total_cmp(&b.x1));
    boxes
}

#[test]
fn embeddings_are_unit_vectors_of_the_manifest_dimension_and_batching_changes_nothing() {
    let Some(mut s) = setup(1) else { return };
    // The model's 1280 features, then the clothing colour signature.
    let dim = 1280 + streamer_vision::COLOUR_DIM;
    assert_eq!(s.embedder.dim(), dim);
    assert_eq!(s.embedder.colour_weight(), 0.5);
    let frame = &s.frames[0];
    let boxes = people(&mut s.detector, frame);
    assert!(boxes.len() >= 2, "{boxes:?}");
    let batch = s.embedder.embed(frame, &boxes).unwrap();
    assert_eq!(batch.len(), boxes.len());
    for (b, v) in boxes.iter().zip(&batch) {
        assert_eq!(v.len(), dim);
        assert!((dot(v, v) - 1.0).abs() < 1e-4);
        let single = s.embedder.embed(frame, &[*b]).unwrap();
        assert!(dot(v, &single[0]) > 0.9999, "batch and single runs differ");
    }
    assert!(s.embedder.embed(frame, &[]).unwrap().is_empty());
    // A box hanging off the frame still gives a vector.
    let off = s
        .embedder
        .embed(frame, &[BBox::new(740.0, 500.0, 900.0, 700.0)])
        .unwrap();
    assert!((dot(&off[0], &off[0]) - 1.0).abs() < 1e-4);
}

#[test]
fn the_same_person_half_a_second_later_is_closer_than_other_people() {
    let Some(mut s) = setup(2) else { return };
    let (f0, f1) = (&s.frames[0], &s.frames[1]);
    let b0 = people(&mut s.detector, f0);
    let b1 = people(&mut s.detector, f1);
    let e0 = s.embedder.embed(f0, &b0).unwrap();
    let e1 = s.embedder.embed(f1, &b1).unwrap();
    // Pair each box of frame 0 with the most overlapping box of frame 1: at
    // 2 fps a walker moves a few pixels, so that is the same person.
    let mut checked = 0;
    for (i, a) in b0.iter().enumerate() {
        let (j, iou) = b1
            .iter()
            .enumerate()
            .map(|(j, b)| (j, a.iou(b)))
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .unwrap();
        if iou < 0.5 {
            continue;
        }
        let same = dot(&e0[i], &e1[j]);
        let best_other = e1
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != j)
            .map(|(_, v)| dot(&e0[i], v))
            .fold(f32::MIN, f32::max);
        assert!(
            same > best_other,
            "box {a:?}: same person {same:.3}, another person {best_other:.3}"
        );
        checked += 1;
    }
    assert!(checked >= 2, "too few tracked people: {b0:?} / {b1:?}");
}
