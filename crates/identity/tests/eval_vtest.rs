//! Identity on labelled two-camera replays made from real footage:
//! detect → embed → visit tracker, scored against hand-checked ground truth
//! (`fixtures/identity/`: the tuning set `vtest-two-cameras.json`, the
//! held-out set `vtest-held-out.json` and the validation set
//! `vtest-validation.json`).
//!
//! Pairwise scores: over every pair of labelled sightings, "same visit" is
//! the prediction and "same person" the truth.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use streamer_core::{BBox, Frame};
use streamer_identity::{EmbeddingPlan, IdentityConfig, Sighting, UpdateReason, VisitTracker};
use streamer_models::ModelCache;
use streamer_vision::{Detector, Embedder, OrtRuntime};

/// Measured at 2 fps with the default config (Kalman-filtered two-pass
/// tracking, track descriptors, clothing colour weighed equally with the
/// features, threshold 0.5, both centred on the means that `streamer models
/// calibrate` measures on vtest from 30 s on, new people at the edge held up
/// to 600 ms, a visit followed on another camera joined only by a newcomer
/// that looks like that track, the crowded check): precision 0.980, recall
/// 0.863, 8 visits for 7 people; before the motion model 0.835, 0.599 and
/// 18. The floors sit
/// below, so a regression fails; the generic ImageNet embedder is still the
/// weak part.
const MIN_PRECISION: f64 = 0.92;
const MIN_RECALL: f64 = 0.74;
const MAX_VISITS_PER_PERSON: usize = 2;
/// The held-out set's floors, at both rates and with both embedders that
/// are defaults (the targets: precision 0.9, recall 0.75, 1.5
/// visits per person). Replay's square crops measure 0.977 / 0.821 / 1.25
/// visits per person at 2 fps and 0.937 / 0.841 / 1.25 at 5 fps; live's
/// [`LIVE_EMBEDDER`] 0.909 / 0.811 / 1.12 and 0.915 / 0.809 / 1.25. The
/// upright crops' last layer alone
/// (`EVAL_EMBEDDER=mobilenetv2-embedder-128x256`) measures 0.905 / 0.766 /
/// 1.38 and 0.885 / 0.870 / 1.12.
const HELD_OUT_MIN_PRECISION: f64 = 0.86;
const HELD_OUT_MIN_RECALL: f64 = 0.72;
const HELD_OUT_MAX_VISITS_PER_PERSON: f64 = 1.6;
/// What `streamer run` embeds people with unless configured otherwise.
const LIVE_EMBEDDER: &str = "mobilenetv2-embedder-128x256-block16";

#[derive(Deserialize)]
struct Fixture {
    /// Where the labelled stretch starts in vtest (0 for the tuning set).
    #[serde(default)]
    from_ms: u64,
    duration_ms: u64,
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

fn fixture(name: &str) -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/identity")
        .join(name);
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

/// The detect rates the evaluation runs at: 2 fps (the replay default)
/// and 5 fps (the live default).
const RATES: [u64; 2] = [2, 5];

/// The labelled sightings of one sampled frame of one camera.
struct CameraFrame {
    time_ms: u64,
    sightings: Vec<Labelled>,
}

/// What detecting and embedding cost, over every frame evaluated.
#[derive(Default)]
struct Cost {
    frames: usize,
    boxes: usize,
    embed: Duration,
}

/// Detects and embeds, once, every frame that some rate in [`RATES`]
/// samples, on every camera, in time order (cameras alternating).
fn sightings(fx: &Fixture, embedder_name: &str) -> Option<(Vec<CameraFrame>, Cost)> {
    let cache = ModelCache::from_env();
    let rt = OrtRuntime::init(&require(&cache, "onnxruntime")?).expect("ONNX Runtime loads");
    // `EVAL_DETECTOR=centernet-416x320` scores another detector on the same
    // labels (they were drawn on the default one's boxes; the floors below
    // hold for the default).
    let detector_name = std::env::var("EVAL_DETECTOR").unwrap_or_else(|_| "centernet".into());
    let mut detector = Detector::load(
        rt,
        &require(&cache, &detector_name)?,
        cache
            .entry(&detector_name)
            .unwrap_or_else(|e| panic!("EVAL_DETECTOR: {e}"))
            .detector
            .clone()
            .unwrap(),
        2,
    )
    .unwrap();
    let layout = cache
        .entry(embedder_name)
        .unwrap_or_else(|e| panic!("EVAL_EMBEDDER: {e}"))
        .embedder
        .clone()
        .unwrap();
    let mut embedder = Embedder::load(rt, &require(&cache, embedder_name)?, &layout, 2).unwrap();
    // vtest's own rate: every frame a rate below could want is decoded.
    let fps = streamer_ingest::Fps::from_f64(10.0).unwrap();
    let mut source =
        streamer_ingest::open(&require(&cache, "vtest")?, Arc::from("vtest"), fps).unwrap();

    let mut frames = Vec::new();
    let mut cost = Cost::default();
    let end = Duration::from_millis(fx.from_ms + fx.duration_ms);
    while let Ok(full) = source.next_frame() {
        if full.pts >= end {
            break;
        }
        let t = full.pts_ms();
        if t < fx.from_ms || !RATES.iter().any(|r| t % (1000 / r) == 0) {
            continue;
        }
        for cam in &fx.cameras {
            let frame = cut(&full, cam);
            let detections: Vec<_> = detector
                .detect(&frame)
                .unwrap()
                .into_iter()
                .filter(|d| d.is_person())
                .collect();
            let boxes: Vec<BBox> = detections.iter().map(|d| d.bbox).collect();
            let started = Instant::now();
            let embeddings = embedder.embed(&frame, &boxes).unwrap();
            cost.embed += started.elapsed();
            cost.frames += 1;
            cost.boxes += boxes.len();
            let truth = label(fx, t, cam, &boxes);
            frames.push(CameraFrame {
                time_ms: t,
                sightings: detections
                    .iter()
                    .zip(embeddings)
                    .zip(truth)
                    .map(|((d, e), truth)| Labelled {
                        sighting: Sighting::from_frame(&frame, d.bbox, e).with_score(d.score),
                        truth,
                    })
                    .collect(),
            });
        }
    }
    Some((frames, cost))
}

/// The frames one detect rate samples.
fn at_rate(frames: &[CameraFrame], fps: u64) -> Vec<&[Labelled]> {
    frames
        .iter()
        .filter(|f| f.time_ms % (1000 / fps) == 0)
        .map(|f| f.sightings.as_slice())
        .collect()
}

/// A person's labelled box at `t`: the keyframe itself, or the straight
/// line between the two keyframes around it when they are one step apart
/// (labels are every 500 ms; 5 fps samples in between).
fn labelled_box(id: &Identity, t: u64) -> Option<BBox> {
    let after = id.boxes.iter().position(|k| k[0] as u64 >= t)?;
    let k1 = id.boxes[after];
    if k1[0] as u64 == t {
        return Some(BBox::new(k1[1], k1[2], k1[3], k1[4]));
    }
    let k0 = id.boxes[after.checked_sub(1)?];
    if k1[0] - k0[0] > 500.0 {
        return None;
    }
    let f = (t as f32 - k0[0]) / (k1[0] - k0[0]);
    let lerp = |i: usize| k0[i] + f * (k1[i] - k0[i]);
    Some(BBox::new(lerp(1), lerp(2), lerp(3), lerp(4)))
}

/// Ground-truth person of each box (full-frame IoU with the labelled box at
/// time `t`), one box per person, best overlap first.
fn label(fx: &Fixture, t: u64, cam: &Camera, boxes: &[BBox]) -> Vec<Option<usize>> {
    let dx = cam.x as f32;
    let mut pairs = Vec::new();
    for (i, b) in boxes.iter().enumerate() {
        let full = BBox::new(b.x1 + dx, b.y1, b.x2 + dx, b.y2);
        for (p, id) in fx.identities.iter().enumerate() {
            if let Some(truth) = labelled_box(id, t) {
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
fn print_similarities(frames: &[&[Labelled]]) {
    let labelled: Vec<&Labelled> = frames
        .iter()
        .flat_map(|f| f.iter())
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
    // AUC: the chance that a same-person pair is more alike than a
    // different-people pair (ties count half).
    let mut all: Vec<(f32, bool)> = same.iter().map(|s| (*s, true)).collect();
    all.extend(other.iter().map(|s| (*s, false)));
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut below, mut wins) = (0f64, 0f64);
    let mut i = 0;
    while i < all.len() {
        let j = (i..all.len())
            .find(|&j| all[j].0 != all[i].0)
            .unwrap_or(all.len());
        let tied_other = all[i..j].iter().filter(|x| !x.1).count() as f64;
        let tied_same = (j - i) as f64 - tied_other;
        wins += tied_same * (below + tied_other / 2.0);
        below += tied_other;
        i = j;
    }
    eprintln!(
        "similarity AUC, same person against different people: {:.3}",
        wins / (same.len().max(1) as f64 * other.len().max(1) as f64)
    );
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

/// The frame's sightings as the live graph feeds them (see
/// `VisitTracker::plan_embeddings`): a box that plainly continues a track
/// reuses the track's embedding, a doubtful box next to nothing followed is
/// left out (`None`), the rest keep their own.
fn as_live(tracker: &mut VisitTracker, frame: &[Labelled]) -> Vec<Option<Sighting>> {
    let Some(first) = frame.first() else {
        return Vec::new();
    };
    let boxes: Vec<BBox> = frame.iter().map(|l| l.sighting.bbox).collect();
    let scores: Vec<f32> = frame.iter().map(|l| l.sighting.score).collect();
    let (camera, time_ms) = (first.sighting.camera.clone(), first.sighting.time_ms);
    let plans = tracker.plan_embeddings(&camera, time_ms, &boxes, &scores);
    frame
        .iter()
        .zip(plans)
        .map(|(l, plan)| match plan {
            EmbeddingPlan::Reuse(embedding) => Some(
                Sighting {
                    embedding,
                    ..l.sighting.clone()
                }
                .with_reused_embedding(),
            ),
            EmbeddingPlan::Measure => Some(l.sighting.clone()),
            EmbeddingPlan::Drop => None,
        })
        .collect()
}

struct Scores {
    precision: f64,
    recall: f64,
    /// Labelled sightings given a visit.
    labelled: usize,
    /// Labelled sightings given none (scored as visits of their own).
    unattributed: usize,
    sightings: usize,
    /// Sightings that reused their track's embedding.
    reused: u64,
    /// Doubtful boxes next to nothing followed, dropped unembedded.
    dropped_unembedded: usize,
    /// Distinct visits among labelled sightings.
    visits: usize,
    visits_opened: u64,
    /// Visits joined on a second camera: the same labelled person, another
    /// one, or unlabelled on either side.
    cross_right: usize,
    cross_wrong: usize,
    cross_unknown: usize,
    /// Time in `observe` and `plan_embeddings` (this build's).
    tracking: Duration,
    /// Descriptors in the identity index at the end.
    indexed: usize,
}

/// The key a sighting is found again by, when the tracker hands it to a
/// visit frames later (see `Observed::settled`).
type Key = (String, u64, [u32; 4]);

fn key(camera: &str, time_ms: u64, b: &BBox) -> Key {
    let bits = [
        b.x1.to_bits(),
        b.y1.to_bits(),
        b.x2.to_bits(),
        b.y2.to_bits(),
    ];
    (camera.to_string(), time_ms, bits)
}

/// Which visit each labelled sighting ended up in.
#[derive(Default)]
struct Attribution {
    /// `(visit, person)` per attributed sighting.
    pairs: Vec<(u64, usize)>,
    /// Labelled people seen in each visit so far, with counts.
    seen: HashMap<u64, HashMap<usize, usize>>,
    /// Per visit: first and last time, cameras, first box (`EVAL_VISITS`).
    spans: HashMap<u64, (u64, u64, BTreeSet<String>, BBox)>,
    given: HashSet<Key>,
}

impl Attribution {
    fn add(&mut self, visit: u64, person: usize, camera: &str, t: u64, b: BBox) {
        self.given.insert(key(camera, t, &b));
        self.pairs.push((visit, person));
        *self
            .seen
            .entry(visit)
            .or_default()
            .entry(person)
            .or_default() += 1;
        let span = self
            .spans
            .entry(visit)
            .or_insert((u64::MAX, 0, BTreeSet::new(), b));
        span.0 = span.0.min(t);
        span.1 = span.1.max(t);
        span.2.insert(camera.to_string());
    }

    /// The person most of a visit's labelled sightings are.
    fn mostly(&self, visit: u64) -> Option<usize> {
        self.seen
            .get(&visit)
            .and_then(|m| m.iter().max_by_key(|(_, n)| **n).map(|(p, _)| *p))
    }
}

fn run(frames: &[&[Labelled]], config: IdentityConfig) -> Scores {
    let mut tracker = VisitTracker::new(config).unwrap();
    let truth_of: HashMap<Key, usize> = frames
        .iter()
        .flat_map(|f| f.iter())
        .filter_map(|l| {
            let s = &l.sighting;
            Some((key(&s.camera, s.time_ms, &s.bbox), l.truth?))
        })
        .collect();
    let mut got = Attribution::default();
    let (mut right, mut wrong, mut unknown) = (0, 0, 0);
    let mut sightings = 0;
    let mut dropped_unembedded = 0;
    let mut tracking = Duration::ZERO;
    for frame in frames {
        let started = Instant::now();
        let live = as_live(&mut tracker, frame);
        let batch: Vec<Sighting> = live.iter().flatten().cloned().collect();
        let mut observed = if batch.is_empty() {
            let now = frame.first().map_or(0, |l| l.sighting.time_ms);
            streamer_identity::Observed {
                events: tracker.tick(now),
                ..Default::default()
            }
        } else {
            tracker.observe(&batch).unwrap()
        };
        tracking += started.elapsed();
        sightings += frame.len();
        dropped_unembedded += live.iter().filter(|s| s.is_none()).count();
        // One assignment a box of the frame, `None` for those left out.
        let mut given = observed.assignments.into_iter();
        observed.assignments = live
            .iter()
            .map(|s| s.as_ref().and_then(|_| given.next().flatten()))
            .collect();
        for e in &observed.events {
            if e.reason != Some(UpdateReason::NewCamera) {
                continue;
            }
            let who = frame
                .iter()
                .zip(&observed.assignments)
                .find(|(_, a)| a.is_some_and(|a| a.visit_id == e.visit_id))
                .and_then(|(l, _)| l.truth);
            match (who, got.mostly(e.visit_id.0)) {
                (Some(a), Some(b)) if a == b => right += 1,
                (Some(_), Some(_)) => wrong += 1,
                _ => unknown += 1,
            }
        }
        for settled in &observed.settled {
            for (t, b) in &settled.sightings {
                if let Some(p) = truth_of.get(&key(&settled.camera, *t, b)) {
                    got.add(settled.visit_id.0, *p, &settled.camera, *t, *b);
                }
            }
        }
        for (l, a) in frame.iter().zip(&observed.assignments) {
            if let (Some(p), Some(a)) = (l.truth, a) {
                let s = &l.sighting;
                got.add(a.visit_id.0, p, &s.camera, s.time_ms, s.bbox);
            }
        }
    }
    if std::env::var_os("EVAL_VISITS").is_some() {
        let mut ids: Vec<_> = got.seen.iter().collect();
        ids.sort_by_key(|(v, _)| **v);
        for (v, people) in ids {
            let mut people: Vec<_> = people.iter().collect();
            people.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
            eprintln!("    visit {v}: {people:?} {:?}", got.spans[v]);
        }
        // Where a visit's labelled person changes, and how that sighting
        // joined it: a wrong join is either the tracker's (a box handed
        // from one person to another) or appearance's.
        for visit in tracker.open_visits() {
            let mut last: Option<usize> = None;
            for r in &visit.sightings {
                let Some(p) = truth_of.get(&key(&r.camera, r.time_ms, &r.bbox)) else {
                    continue;
                };
                if let Some(before) = last.filter(|l| l != p) {
                    eprintln!(
                        "    visit {}: person {before} -> {p} at {} ms on {}, joined by {:?} (similarity {:?})",
                        visit.id.0,
                        r.time_ms,
                        r.camera,
                        r.joined_by,
                        r.similarity
                    );
                }
                last = Some(*p);
            }
        }
    }
    let visits = got.pairs.iter().map(|p| p.0).collect::<BTreeSet<_>>().len();
    let labelled = got.pairs.len();
    // A labelled sighting given no visit (dropped, or held at an edge and
    // gone) is a visit of its own: it misses every pair of its person.
    let mut pairs = got.pairs;
    let mut unattributed = 0;
    for (k, p) in &truth_of {
        if !got.given.contains(k) {
            pairs.push((u64::MAX - unattributed as u64, *p));
            unattributed += 1;
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
        labelled,
        unattributed,
        sightings,
        reused: summary.embeddings_reused,
        dropped_unembedded,
        visits,
        visits_opened: summary.visits_opened,
        cross_right: right,
        cross_wrong: wrong,
        cross_unknown: unknown,
        tracking,
        indexed: tracker.index().len(),
    }
}

/// One labelled set scored at every rate in [`RATES`]: the per-rate scores
/// with the default config, printed as the README's table rows.
fn evaluate(name: &str, fx: &Fixture, embedder: &str) -> Option<Vec<(u64, Scores)>> {
    let (frames, cost) = sightings(fx, embedder)?;
    let people = fx.identities.len();
    let mut per_person: HashMap<usize, usize> = HashMap::new();
    for l in at_rate(&frames, RATES[0]).into_iter().flatten() {
        if let Some(p) = l.truth {
            *per_person.entry(p).or_default() += 1;
        }
    }
    for (p, id) in fx.identities.iter().enumerate() {
        let n = per_person.get(&p).unwrap_or(&0);
        eprintln!(
            "{:>20}: {n} labelled sightings at {} fps",
            id.name, RATES[0]
        );
    }
    eprintln!(
        "== {name}, {embedder}: vtest {}-{} s, {people} people; embedding {:.1} ms per box, {:.2} boxes per camera frame",
        fx.from_ms / 1000,
        (fx.from_ms + fx.duration_ms) / 1000,
        cost.embed.as_secs_f64() * 1000.0 / cost.boxes.max(1) as f64,
        cost.boxes as f64 / cost.frames.max(1) as f64,
    );
    let mut out = Vec::new();
    for fps in RATES {
        let frames = at_rate(&frames, fps);
        if fps == RATES[0] {
            print_similarities(&frames);
        }
        {
            eprintln!("threshold sweep at {fps} fps: threshold  precision  recall  visits(labelled)/truth  visits opened");
            for threshold in [0.35, 0.4, 0.45, 0.5, 0.55, 0.6] {
                let s = run(
                    &frames,
                    IdentityConfig {
                        similarity_threshold: threshold,
                        ..IdentityConfig::default()
                    },
                );
                eprintln!(
                    "  {threshold:>9.2}  {:>9.3}  {:>6.3}  {:>10}/{people}  {:>13}",
                    s.precision, s.recall, s.visits, s.visits_opened
                );
            }
        }
        let camera_frames = frames.len().max(1) as f64;
        let without_hold = run(
            &frames,
            IdentityConfig {
                edge_pending_ms: 0,
                ..IdentityConfig::default()
            },
        );
        print_row(
            name,
            fps,
            "no edge hold",
            &without_hold,
            people,
            camera_frames,
        );
        let s = run(&frames, IdentityConfig::default());
        print_row(name, fps, "default", &s, people, camera_frames);
        out.push((fps, s));
    }
    Some(out)
}

fn print_row(name: &str, fps: u64, variant: &str, s: &Scores, people: usize, camera_frames: f64) {
    eprintln!(
        "| {name} | {fps} | {variant} | {:.2} ({}/{people}) | {:.3} | {:.3} | {} right, {} wrong, {} unlabelled | {} | {} | {:.0}%, {:.0}% | {:.2} ms | {} |",
        s.visits as f64 / people as f64,
        s.visits,
        s.precision,
        s.recall,
        s.cross_right,
        s.cross_wrong,
        s.cross_unknown,
        s.visits_opened,
        s.unattributed,
        100.0 * s.reused as f64 / s.sightings.max(1) as f64,
        100.0 * s.dropped_unembedded as f64 / s.sightings.max(1) as f64,
        s.tracking.as_secs_f64() * 1000.0 / camera_frames,
        s.indexed,
    );
}

const HEADER: &str = "| set | fps | | visits per person | precision | recall | cross-camera joins | visits opened | labelled sightings without a visit | embeddings reused, boxes dropped unembedded | tracking per frame | index entries |";

#[test]
fn two_camera_replay_scores_against_hand_labelled_identities() {
    let fx = fixture("vtest-two-cameras.json");
    eprintln!("{HEADER}");
    let Some(scores) = evaluate("tuning", &fx, &embedder_under_test()) else {
        return;
    };
    let people = fx.identities.len();
    let (_, s) = &scores[0];
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
    assert!(s.cross_right >= 1);
    let (_, live) = &scores[1];
    assert!(live.labelled >= 200, "{} labelled at 5 fps", live.labelled);
}

#[test]
fn held_out_replay_scores_against_identities_labelled_before_tuning() {
    // vtest 45-75 s, labelled before the tracker was tuned and never used
    // to tune it: these numbers say how the defaults generalise.
    let fx = fixture("vtest-held-out.json");
    eprintln!("{HEADER}");
    let Some(scores) = evaluate("held-out", &fx, &embedder_under_test()) else {
        return;
    };
    check_held_out(&fx, &scores);
}

#[test]
fn held_out_replay_with_live_cameras_embedder() {
    // The same set, embedded as `streamer run` does by default
    // (`DEFAULT_EMBEDDER` in crates/cli/src/config.rs): live cameras run
    // at 5 fps, so that row is the one the targets are for.
    let fx = fixture("vtest-held-out.json");
    eprintln!("{HEADER}");
    let Some(scores) = evaluate("held-out", &fx, LIVE_EMBEDDER) else {
        return;
    };
    check_held_out(&fx, &scores);
}

fn check_held_out(fx: &Fixture, scores: &[(u64, Scores)]) {
    let people = fx.identities.len();
    for (fps, s) in scores {
        let floors = Floors {
            labelled: 150,
            precision: HELD_OUT_MIN_PRECISION,
            recall: HELD_OUT_MIN_RECALL,
            visits_per_person: HELD_OUT_MAX_VISITS_PER_PERSON,
        };
        floors.check(*fps, s, people);
    }
}

/// The embedder the tests score unless `EVAL_EMBEDDER` names another
/// (e.g. `EVAL_EMBEDDER=mobilenetv2-embedder-128x256`): replay's default,
/// the square crops.
fn embedder_under_test() -> String {
    std::env::var("EVAL_EMBEDDER").unwrap_or_else(|_| "mobilenetv2-embedder".into())
}

#[test]
fn validation_replay_scores_against_identities_labelled_to_choose_settings() {
    // vtest 30-45 s, labelled after the other two sets: settings are
    // chosen on it with the tuning set (on it alone where the tuning set
    // cannot tell them apart), so the held-out set stays out of every choice.
    let fx = fixture("vtest-validation.json");
    eprintln!("{HEADER}");
    let Some(scores) = evaluate("validation", &fx, &embedder_under_test()) else {
        return;
    };
    let people = fx.identities.len();
    for (fps, s) in &scores {
        // Measured (both embedders): 1.000 / 0.996 and 7 visits at 5 fps;
        // at 2 fps the crossing of four men in dark clothes behind the sign
        // defeats the tracker, 0.799 / 0.634 (square crops) and 0.688 /
        // 0.588 (upright).
        let (precision, recall) = if *fps == 5 { (0.9, 0.85) } else { (0.55, 0.45) };
        let floors = Floors {
            labelled: 80,
            precision,
            recall,
            visits_per_person: 2.0,
        };
        floors.check(*fps, s, people);
    }
}

/// The least one labelled set must score at one rate.
struct Floors {
    labelled: usize,
    precision: f64,
    recall: f64,
    visits_per_person: f64,
}

impl Floors {
    fn check(&self, fps: u64, s: &Scores, people: usize) {
        assert!(
            s.labelled >= self.labelled,
            "{} labelled at {fps} fps",
            s.labelled
        );
        assert!(
            s.precision >= self.precision,
            "{fps} fps: precision {:.3}",
            s.precision
        );
        assert!(s.recall >= self.recall, "{fps} fps: recall {:.3}", s.recall);
        assert!(
            s.visits as f64 <= self.visits_per_person * people as f64,
            "{fps} fps: {} visits for {people} people",
            s.visits
        );
    }
}
