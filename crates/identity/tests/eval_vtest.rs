//! Identity on a labelled two-camera replay made from real footage:
//! detect → embed → visit tracker, scored against hand-checked ground truth
//! (`fixtures/identity/vtest-two-cameras.json`).
//!
//! Pairwise scores: over every pair of labelled sightings, "same visit" is
//! the prediction and "same person" the truth.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use streamer_core::{BBox, Frame};
use streamer_identity::{IdentityConfig, Sighting, VisitTracker};
use streamer_models::ModelCache;
use streamer_vision::{Detector, Embedder, OrtRuntime};

/// Measured with the default config (threshold 0.35, embeddings centred on
/// the person mean that `streamer models calibrate` measures on vtest from
/// 30 s on, outside this fixture): precision 0.821, recall 0.625 over 210
/// labelled sightings; without centring the best was 0.563 / 0.408. The
/// assertions sit a little below, so a regression fails; the generic
/// ImageNet embedder is still the weak part.
const MIN_PRECISION: f64 = 0.75;
const MIN_RECALL: f64 = 0.55;
/// Visits among the labelled sightings, per true person: 17 for 7 measured.
const MAX_VISITS_PER_PERSON: usize = 3;

#[derive(Deserialize)]
struct Fixture {
    duration_ms: u64,
    fps: f64,
    cameras: Vec<Camera>,
    match_iou: f32,
    identities: Vec<Identity>,
}

#[derive(Deserialize)]
struct Camera {
    name: String,
    x: u32,
    width: u32,
}

#[derive(Deserialize)]
struct Identity {
    name: String,
    /// `[t_ms, x1, y1, x2, y2]` in full-frame pixels.
    boxes: Vec<[f32; 5]>,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/identity/vtest-two-cameras.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

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

/// The `camera`'s view of a full frame: a vertical strip.
fn cut(frame: &Frame, cam: &Camera) -> Frame {
    frame
        .region(
            Arc::from(cam.name.as_str()),
            cam.x,
            0,
            cam.width,
            frame.height,
        )
        .expect("the fixture's cameras fit the footage")
}

/// One sighting with its full-frame box and its ground-truth person.
struct Labelled {
    sighting: Sighting,
    truth: Option<usize>,
}

/// Detects and embeds every sampled frame of every camera once.
fn sightings(fx: &Fixture) -> Option<Vec<Vec<Labelled>>> {
    let cache = ModelCache::from_env();
    let rt = OrtRuntime::init(&require(&cache, "onnxruntime")?).expect("ONNX Runtime loads");
    let mut detector = Detector::load(
        rt,
        &require(&cache, "centernet")?,
        cache.entry("centernet").unwrap().detector.clone().unwrap(),
        2,
    )
    .unwrap();
    let layout = cache
        .entry("mobilenetv2-embedder")
        .unwrap()
        .embedder
        .clone()
        .unwrap();
    let mut embedder =
        Embedder::load(rt, &require(&cache, "mobilenetv2-embedder")?, &layout, 2).unwrap();
    let fps = streamer_ingest::Fps::from_f64(fx.fps).unwrap();
    let mut source =
        streamer_ingest::open(&require(&cache, "vtest")?, Arc::from("vtest"), fps).unwrap();

    let mut frames = Vec::new();
    while let Ok(full) = source.next_frame() {
        if full.pts >= Duration::from_millis(fx.duration_ms) {
            break;
        }
        let t = full.pts_ms();
        for cam in &fx.cameras {
            let frame = cut(&full, cam);
            let boxes: Vec<BBox> = detector
                .detect(&frame)
                .unwrap()
                .into_iter()
                .filter(|d| d.is_person())
                .map(|d| d.bbox)
                .collect();
            let embeddings = embedder.embed(&frame, &boxes).unwrap();
            let truth = label(fx, t, cam, &boxes);
            frames.push(
                boxes
                    .into_iter()
                    .zip(embeddings)
                    .zip(truth)
                    .map(|((b, e), truth)| Labelled {
                        sighting: Sighting::from_frame(&frame, b, e),
                        truth,
                    })
                    .collect(),
            );
        }
    }
    Some(frames)
}

/// Ground-truth person of each box (full-frame IoU with the labelled box at
/// time `t`), one box per person, best overlap first.
fn label(fx: &Fixture, t: u64, cam: &Camera, boxes: &[BBox]) -> Vec<Option<usize>> {
    let dx = cam.x as f32;
    let mut pairs = Vec::new();
    for (i, b) in boxes.iter().enumerate() {
        let full = BBox::new(b.x1 + dx, b.y1, b.x2 + dx, b.y2);
        for (p, id) in fx.identities.iter().enumerate() {
            if let Some(k) = id.boxes.iter().find(|k| k[0] as u64 == t) {
                let truth = BBox::new(k[1], k[2], k[3], k[4]);
                let iou = full.iou(&truth);
                if iou >= fx.match_iou {
                    pairs.push((iou, i, p));
                }
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = vec![None; boxes.len()];
    let mut used = BTreeSet::new();
    for (_, i, p) in pairs {
        if out[i].is_none() && used.insert(p) {
            out[i] = Some(p);
        }
    }
    out
}

/// Quantiles of the cosine similarity between labelled sightings of the
/// same person and of different people: how far apart the embedder keeps
/// them, whatever the tracker does.
fn print_similarities(frames: &[Vec<Labelled>]) {
    let labelled: Vec<&Labelled> = frames
        .iter()
        .flatten()
        .filter(|l| l.truth.is_some())
        .collect();
    let (mut same, mut other) = (Vec::new(), Vec::new());
    for (i, a) in labelled.iter().enumerate() {
        for b in &labelled[i + 1..] {
            let s = streamer_identity::dot(&a.sighting.embedding, &b.sighting.embedding);
            if a.truth == b.truth {
                same.push(s)
            } else {
                other.push(s)
            }
        }
    }
    for (name, v) in [("same person", &mut same), ("different people", &mut other)] {
        v.sort_by(f32::total_cmp);
        let q = |f: f64| v[((v.len() - 1) as f64 * f) as usize];
        eprintln!(
            "similarity, {name}: p10 {:.3}  p50 {:.3}  p90 {:.3}  ({} pairs)",
            q(0.1),
            q(0.5),
            q(0.9),
            v.len()
        );
    }
}

/// The frame's sightings as the live graph feeds them: a box that plainly
/// continues a track reuses the track's embedding (see
/// `VisitTracker::reusable_embeddings`); the rest keep their own.
fn as_live(tracker: &VisitTracker, frame: &[Labelled]) -> Vec<Sighting> {
    let Some(first) = frame.first() else {
        return Vec::new();
    };
    let boxes: Vec<BBox> = frame.iter().map(|l| l.sighting.bbox).collect();
    let reuse = tracker.reusable_embeddings(&first.sighting.camera, first.sighting.time_ms, &boxes);
    frame
        .iter()
        .zip(reuse)
        .map(|(l, r)| match r {
            Some(embedding) => Sighting {
                embedding,
                ..l.sighting.clone()
            }
            .with_reused_embedding(),
            None => l.sighting.clone(),
        })
        .collect()
}

struct Scores {
    precision: f64,
    recall: f64,
    labelled: usize,
    sightings: usize,
    /// Sightings that reused their track's embedding.
    reused: u64,
    /// Distinct visits among labelled sightings.
    visits: usize,
    visits_opened: u64,
    cross_camera_joins: u64,
}

fn run(frames: &[Vec<Labelled>], config: IdentityConfig) -> Scores {
    let mut tracker = VisitTracker::new(config).unwrap();
    let mut pairs: Vec<(u64, usize)> = Vec::new();
    let mut sightings = 0;
    for frame in frames {
        let batch = as_live(&tracker, frame);
        let observed = tracker.observe(&batch).unwrap();
        sightings += batch.len();
        for (l, a) in frame.iter().zip(&observed.assignments) {
            if let Some(p) = l.truth {
                pairs.push((a.visit_id.0, p));
            }
        }
    }
    let (mut tp, mut fp, mut fneg) = (0u64, 0u64, 0u64);
    for (i, a) in pairs.iter().enumerate() {
        for b in &pairs[i + 1..] {
            match (a.0 == b.0, a.1 == b.1) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fneg += 1,
                (false, false) => {}
            }
        }
    }
    let summary = tracker.summary();
    Scores {
        precision: tp as f64 / (tp + fp).max(1) as f64,
        recall: tp as f64 / (tp + fneg).max(1) as f64,
        labelled: pairs.len(),
        sightings,
        reused: summary.embeddings_reused,
        visits: pairs.iter().map(|p| p.0).collect::<BTreeSet<_>>().len(),
        visits_opened: summary.visits_opened,
        cross_camera_joins: summary.cross_camera_joins,
    }
}

#[test]
fn two_camera_replay_scores_against_hand_labelled_identities() {
    let fx = fixture();
    let Some(frames) = sightings(&fx) else { return };
    let people = fx.identities.len();
    let mut per_person: HashMap<usize, usize> = HashMap::new();
    for l in frames.iter().flatten() {
        if let Some(p) = l.truth {
            *per_person.entry(p).or_default() += 1;
        }
    }
    for (p, id) in fx.identities.iter().enumerate() {
        eprintln!(
            "{:>20}: {} labelled sightings",
            id.name,
            per_person.get(&p).unwrap_or(&0)
        );
    }
    print_similarities(&frames);
    eprintln!(
        "threshold  precision  recall  visits(labelled)/truth  visits opened  cross-camera joins"
    );
    for threshold in [0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7] {
        let s = run(
            &frames,
            IdentityConfig {
                similarity_threshold: threshold,
                ..IdentityConfig::default()
            },
        );
        eprintln!(
            "{threshold:>9.2}  {:>9.3}  {:>6.3}  {:>10}/{people}  {:>13}  {:>18}",
            s.precision, s.recall, s.visits, s.visits_opened, s.cross_camera_joins
        );
    }
    let every = run(
        &frames,
        IdentityConfig {
            reembed_after_ms: 0,
            ..IdentityConfig::default()
        },
    );
    let s = run(&frames, IdentityConfig::default());
    for (name, s) in [("every box embedded", &every), ("default", &s)] {
        eprintln!(
            "{name}: precision {:.3}, recall {:.3}, {} visits over {} labelled of {} sightings (truth {people}), {} opened, {} cross-camera joins, {} embeddings reused",
            s.precision, s.recall, s.visits, s.labelled, s.sightings, s.visits_opened, s.cross_camera_joins, s.reused
        );
    }
    assert!(
        s.labelled >= 100,
        "too few sightings matched the labels: {}",
        s.labelled
    );
    assert!(s.precision >= MIN_PRECISION, "precision {:.3}", s.precision);
    assert!(s.recall >= MIN_RECALL, "recall {:.3}", s.recall);
    assert!(
        s.visits <= MAX_VISITS_PER_PERSON * people,
        "{} visits for {people} people",
        s.visits
    );
    assert!(s.cross_camera_joins >= 1);
}
