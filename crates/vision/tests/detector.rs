//! The detector against real ONNX Runtime sessions: a generated raw-YOLO
//! graph, and the embedded CenterNet model from the model cache.

#[path = "support/onnx_builder.rs"]
mod onnx_builder;

use std::sync::Arc;
use std::time::Duration;

use streamer_core::layout::{DetectorLayout, DetectorOutput, ImageInput, Resize, TensorOrder};
use streamer_core::{BBox, Frame};
use streamer_models::ModelCache;
use streamer_vision::{Detector, OrtRuntime, VisionError};

fn runtime(cache: &ModelCache) -> &'static OrtRuntime {
    let lib = cache.require("onnxruntime").unwrap_or_else(|e| {
        panic!("{e}\n(the test suite needs the model cache: run `make models`)")
    });
    OrtRuntime::init(&lib).expect("ONNX Runtime loads")
}

fn frame(width: u32, height: u32, rgb: Vec<u8>) -> Frame {
    Frame::new(Arc::from("test"), 0, Duration::ZERO, width, height, rgb)
}

fn raw_yolo_layout() -> DetectorLayout {
    DetectorLayout {
        input: ImageInput {
            name: Some("images".into()),
            order: TensorOrder::Nchw,
            width: 320,
            height: 320,
            resize: Resize::Letterbox,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        },
        output: DetectorOutput::YoloRaw,
        output_name: None,
        labels: "person,car".into(),
        score_threshold: 0.3,
        nms_iou: 0.5,
    }
}

#[test]
fn raw_yolo_layout_decodes_suppresses_and_maps_to_frame_coordinates() {
    let cache = ModelCache::from_env();
    let rt = runtime(&cache);
    // Five anchors, channels-first [1, 4 + 2, 5]: cx, cy, w, h, person, car.
    #[rustfmt::skip]
    let anchors: [[f32; 6]; 5] = [
        [100.0, 140.0, 40.0, 80.0, 0.90, 0.05], // person
        [102.0, 142.0, 40.0, 80.0, 0.80, 0.05], // same person, weaker: NMS drops it
        [250.0, 200.0, 60.0, 40.0, 0.10, 0.70], // car
        [ 50.0,  50.0, 10.0, 10.0, 0.20, 0.10], // below threshold
        [310.0,  60.0, 40.0, 60.0, 0.60, 0.00], // person over the top-right edge
    ];
    let values: Vec<f32> = (0..6)
        .flat_map(|c| anchors.iter().map(move |a| a[c]))
        .collect();
    let model = onnx_builder::constant_output_model(&[1, 3, 320, 320], &[1, 6, 5], &values);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw_yolo.onnx");
    std::fs::write(&path, model).unwrap();

    let mut detector = Detector::load(rt, &path, raw_yolo_layout(), 1).unwrap();
    // 640x480 letterboxed into 320x320: scale 0.5, 40 px of padding on top.
    let detections = detector
        .detect(&frame(640, 480, vec![90; 640 * 480 * 3]))
        .unwrap();
    let summary: Vec<(&str, f32, BBox)> = detections
        .iter()
        .map(|d| (d.label.as_str(), d.score, d.bbox))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("person", 0.90, BBox::new(160.0, 120.0, 240.0, 280.0)),
            ("car", 0.70, BBox::new(440.0, 280.0, 560.0, 360.0)),
            ("person", 0.60, BBox::new(580.0, 0.0, 640.0, 100.0)),
        ]
    );
}

#[test]
fn a_layout_that_does_not_match_the_model_is_a_clear_error() {
    let cache = ModelCache::from_env();
    let rt = runtime(&cache);
    let model = onnx_builder::constant_output_model(&[1, 3, 320, 320], &[1, 6, 1], &[0.0; 6]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, model).unwrap();
    let mut layout = raw_yolo_layout();
    layout.input.width = 640;
    let err = Detector::load(rt, &path, layout, 1)
        .err()
        .expect("mismatch is rejected");
    assert!(matches!(err, VisionError::Layout { .. }), "{err}");
    assert!(err.to_string().contains("640"), "{err}");

    std::fs::write(&path, b"not an onnx file").unwrap();
    let err = Detector::load(rt, &path, raw_yolo_layout(), 1)
        .err()
        .expect("garbage is rejected");
    assert!(matches!(err, VisionError::Load { .. }), "{err}");
}

fn centernet(cache: &ModelCache) -> Detector {
    detector_named(cache, "centernet")
}

fn detector_named(cache: &ModelCache, name: &str) -> Detector {
    let rt = runtime(cache);
    let entry = cache.entry(name).unwrap();
    let path = cache
        .require(name)
        .unwrap_or_else(|e| panic!("{e}\n(run `make models`)"));
    Detector::load(rt, &path, entry.detector.clone().unwrap(), 2).unwrap()
}

/// The first frame of vtest.avi (real pedestrian footage), decoded by GStreamer.
fn vtest_frame(cache: &ModelCache) -> Frame {
    vtest_frames(cache, 1).remove(0)
}

/// The first `n` seconds of vtest.avi, one frame a second.
fn vtest_frames(cache: &ModelCache, n: usize) -> Vec<Frame> {
    let path = cache
        .require("vtest")
        .unwrap_or_else(|e| panic!("{e}\n(run `make models`)"));
    let fps = streamer_ingest::Fps::from_f64(1.0).unwrap();
    let mut source = streamer_ingest::open(&path, Arc::from("vtest"), fps).unwrap();
    (0..n).map(|_| source.next_frame().unwrap()).collect()
}

fn people(detections: Vec<streamer_core::Detection>) -> Vec<streamer_core::Detection> {
    detections.into_iter().filter(|d| d.is_person()).collect()
}

#[test]
fn the_resized_centernet_finds_the_same_pedestrians_as_the_full_one() {
    // `centernet-416x320` is the 512x512 export with its decoder re-sized
    // (models/convert/centernet_tfjs.py --input-size): if the re-sizing got
    // a row/column split or the gather wrong, its boxes would land
    // elsewhere, so they are matched against the full model's.
    let cache = ModelCache::from_env();
    let mut full = centernet(&cache);
    let mut small = detector_named(&cache, "centernet-416x320");
    let (mut confident, mut found) = (0, 0);
    for frame in vtest_frames(&cache, 12) {
        let reference = people(full.detect(&frame).unwrap());
        let resized = people(small.detect(&frame).unwrap());
        for p in &resized {
            let b = p.bbox;
            assert!(
                b.x1 >= 0.0 && b.y1 >= 0.0 && b.x2 <= 768.0 && b.y2 <= 576.0,
                "{b:?}"
            );
        }
        for r in reference.iter().filter(|r| r.score >= 0.5) {
            confident += 1;
            if resized.iter().any(|p| p.bbox.iou(&r.bbox) >= 0.5) {
                found += 1;
            }
        }
    }
    println!("of {confident} confident pedestrians of the 512x512 model, 416x320 found {found}");
    assert!(confident >= 20, "{confident}");
    assert!(
        found as f64 >= 0.9 * confident as f64,
        "416x320 found {found} of {confident}"
    );
}

#[test]
fn centernet_finds_people_in_real_footage_in_frame_coordinates() {
    let cache = ModelCache::from_env();
    let mut detector = centernet(&cache);
    let frame = vtest_frame(&cache);
    assert_eq!((frame.width, frame.height), (768, 576));
    let detections = detector.detect(&frame).unwrap();
    let people: Vec<_> = detections.iter().filter(|d| d.is_person()).collect();
    assert!(
        people.len() >= 2,
        "expected pedestrians, got {detections:?}"
    );
    for p in &people {
        assert!(p.score >= 0.3);
        let b = p.bbox;
        assert!(
            b.x1 >= 0.0 && b.y1 >= 0.0 && b.x2 <= 768.0 && b.y2 <= 576.0,
            "{b:?}"
        );
    }
    // Pedestrians are taller than wide (a partly hidden one may not be).
    let upright = people
        .iter()
        .filter(|p| p.bbox.height() > p.bbox.width())
        .count();
    assert!(upright >= 2, "{people:?}");
    // NMS left no two overlapping person boxes.
    for (i, a) in people.iter().enumerate() {
        for b in &people[i + 1..] {
            assert!(a.bbox.iou(&b.bbox) <= 0.5, "{a:?} overlaps {b:?}");
        }
    }
}

#[test]
fn centernet_sees_nobody_in_a_black_frame() {
    let cache = ModelCache::from_env();
    let mut detector = centernet(&cache);
    let detections = detector
        .detect(&frame(640, 480, vec![0; 640 * 480 * 3]))
        .unwrap();
    assert!(detections.iter().all(|d| !d.is_person()), "{detections:?}");
}
