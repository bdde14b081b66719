//! The visit tracker: sightings in, visit events out.
//!
//! Per frame of one camera, each person sighting first tries to continue a
//! track of that camera (box overlap with its previous frame, and a looser
//! appearance check); the rest are matched by embedding against every open
//! visit seen within the window, on any camera; what matches nothing starts a
//! new visit. Time is whatever the caller stamps sightings with: the tracker
//! has no clock of its own, so tests drive it with plain numbers.

use std::collections::{BTreeMap, HashMap, HashSet};

use streamer_core::{BBox, Frame};

use crate::distance::dot;
use crate::index::{HnswParams, IdentityIndex, IndexEntry};
use crate::kalman::{BoxFilter, MotionNoise};
use crate::visit::{
    EventKind, IdentitySummary, JoinedBy, SightingRecord, Snapshot, UpdateReason, Visit,
    VisitEvent, VisitId,
};
use crate::{snapshot_quality, touches_edge, IdentityConfig, IdentityError};

/// One person box of one frame, with its embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct Sighting {
    pub camera: String,
    pub time_ms: u64,
    pub bbox: BBox,
    /// L2-normalised, from the same embedder for every sighting.
    pub embedding: Vec<f32>,
    /// Snapshot quality (higher is better); see [`snapshot_quality`].
    pub quality: f32,
    /// The detector's confidence (1 when unknown). Boxes below
    /// `track_high_score` only continue tracks; they start nothing.
    pub score: f32,
    /// The embedding is the continued track's, handed out by
    /// [`VisitTracker::plan_embeddings`], not measured on this box: it
    /// is not stored in the index again.
    pub embedding_reused: bool,
    /// The box touches the frame's edge, which cuts the person (see
    /// `edge_pending_ms`).
    pub at_edge: bool,
}

impl Sighting {
    /// A sighting whose snapshot quality is just its box area.
    pub fn new(camera: impl Into<String>, time_ms: u64, bbox: BBox, embedding: Vec<f32>) -> Self {
        Self {
            camera: camera.into(),
            time_ms,
            quality: bbox.area(),
            bbox,
            embedding,
            score: 1.0,
            embedding_reused: false,
            at_edge: false,
        }
    }

    /// A sighting in `frame` (camera and time from the frame), its snapshot
    /// quality measured on the frame's pixels.
    pub fn from_frame(frame: &Frame, bbox: BBox, embedding: Vec<f32>) -> Self {
        Self {
            camera: frame.camera.to_string(),
            time_ms: frame.pts_ms(),
            quality: snapshot_quality(frame, &bbox),
            at_edge: touches_edge(frame, &bbox),
            bbox,
            embedding,
            score: 1.0,
            embedding_reused: false,
        }
    }

    /// The detector's confidence in the box.
    pub fn with_score(mut self, score: f32) -> Self {
        self.score = score;
        self
    }

    /// Marks the box as touching the frame's edge.
    pub fn at_edge(mut self, at_edge: bool) -> Self {
        self.at_edge = at_edge;
        self
    }

    /// Marks the embedding as the continued track's (see
    /// [`VisitTracker::plan_embeddings`]).
    pub fn with_reused_embedding(mut self) -> Self {
        self.embedding_reused = true;
        self
    }
}

/// A box continues a track without a new embedding only if it overlaps the
/// track at least this well (a person walking at 5 fps stays well above).
const REUSE_MIN_IOU: f32 = 0.5;

/// What a person box needs before [`VisitTracker::observe`] takes it; see
/// [`VisitTracker::plan_embeddings`].
#[derive(Clone, Debug, PartialEq)]
pub enum EmbeddingPlan {
    /// Embed its crop.
    Measure,
    /// Give it this embedding, its track's, and mark the sighting
    /// [`Sighting::with_reused_embedding`].
    Reuse(Vec<f32>),
    /// Leave it out of the frame's sightings: a doubtful box next to
    /// nothing followed, already counted as dropped.
    Drop,
}

/// In same-camera association, how much appearance similarity adds to box
/// overlap when ranking pairs: motion decides, appearance breaks near-ties.
const APPEARANCE_WEIGHT: f32 = 0.3;

/// Sightings on two cameras at most this far apart are the same instant.
const SIMULTANEOUS_MS: u64 = 50;

/// The visit one sighting was attached to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assignment {
    pub visit_id: VisitId,
    pub similarity: Option<f32>,
    pub joined_by: JoinedBy,
}

/// What one frame's sightings did: one assignment per sighting, in order,
/// and the events to publish (ends of stale visits first). A sighting's
/// assignment is `None` when it was dropped (a low-confidence box that
/// continued no track, as ByteTrack drops them) or held by a new person at
/// the frame's edge (see `edge_pending_ms`); held sightings are handed to a
/// visit later, in [`Observed::settled`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub assignments: Vec<Option<Assignment>>,
    pub events: Vec<VisitEvent>,
    pub settled: Vec<Settled>,
}

/// Sightings held at a frame's edge in earlier frames, now given a visit.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    pub visit_id: VisitId,
    pub camera: String,
    /// `(time_ms, box)` of each held sighting, oldest first.
    pub sightings: Vec<(u64, BBox)>,
}

/// One person followed on one camera: where their box is going, what
/// they looked like last, and what they look like over their best crops.
struct Track {
    visit: VisitId,
    time_ms: u64,
    motion: BoxFilter,
    /// The last measured embedding (for continuity and reuse).
    embedding: Vec<f32>,
    /// When `embedding` was measured (earlier than `time_ms` while it is
    /// being reused).
    embedded_ms: u64,
    appearance: Appearance,
}

impl Track {
    /// Whether the track may take a box at `now`: seen before, recently.
    fn alive_at(&self, now: u64, max_gap: u64) -> bool {
        self.time_ms < now && self.time_ms.saturating_add(max_gap) >= now
    }
}

/// A new person at the frame's edge, followed without a visit yet.
struct Pending {
    first_ms: u64,
    time_ms: u64,
    motion: BoxFilter,
    appearance: Appearance,
    /// Every sighting so far, oldest first: they go to the visit it joins
    /// or opens.
    held: Vec<Sighting>,
}

impl Pending {
    fn new(s: &Sighting) -> Self {
        Self {
            first_ms: s.time_ms,
            time_ms: s.time_ms,
            motion: BoxFilter::new(&s.bbox, s.time_ms, MotionNoise::default()),
            appearance: Appearance::default(),
            held: Vec::new(),
        }
    }

    /// Adds a sighting (its box to the motion model when it is not the
    /// first, its crop to the appearance).
    fn hold(&mut self, s: Sighting, keep: usize) {
        if !self.held.is_empty() {
            self.motion.update(&s.bbox, s.time_ms);
        }
        self.time_ms = s.time_ms;
        let _ = self.appearance.add(s.quality, &s.embedding, keep);
        self.held.push(s);
    }

    /// The descriptor it would have with `s` added.
    fn descriptor_with(&self, s: &Sighting, keep: usize) -> Vec<f32> {
        let mut appearance = self.appearance.clone();
        let _ = appearance.add(s.quality, &s.embedding, keep);
        appearance.descriptor()
    }
}

/// A track's appearance: its best crops' embeddings by snapshot quality,
/// averaged into one descriptor.
#[derive(Clone, Debug, Default)]
struct Appearance {
    /// `(quality, embedding)`, best first, at most `keep`.
    best: Vec<(f32, Vec<f32>)>,
}

impl Appearance {
    /// Takes a fresh embedding; with `keep == 1` it is the descriptor
    /// itself, else it joins the best `keep` by quality. Returns whether the
    /// descriptor changed (false: the crop was not among the best `keep`).
    fn add(&mut self, quality: f32, embedding: &[f32], keep: usize) -> bool {
        if keep <= 1 {
            self.best = vec![(quality, embedding.to_vec())];
            return true;
        }
        let at = self
            .best
            .iter()
            .position(|(q, _)| quality > *q)
            .unwrap_or(self.best.len());
        if at >= keep {
            return false;
        }
        self.best.insert(at, (quality, embedding.to_vec()));
        self.best.truncate(keep);
        true
    }

    /// The L2-normalised mean of the kept embeddings.
    fn descriptor(&self) -> Vec<f32> {
        let Some((_, first)) = self.best.first() else {
            return Vec::new();
        };
        let mut sum = vec![0.0f32; first.len()];
        for (_, e) in &self.best {
            for (s, v) in sum.iter_mut().zip(e) {
                *s += v;
            }
        }
        let norm = dot(&sum, &sum).sqrt();
        if norm > 0.0 {
            sum.iter_mut().for_each(|v| *v /= norm);
        }
        sum
    }
}

/// A descriptor put in the index for a visit, from one camera.
#[derive(Debug)]
struct StoredLook {
    camera: String,
    time_ms: u64,
    descriptor: Vec<f32>,
}

/// Turns person sightings from any number of cameras into visits.
pub struct VisitTracker {
    config: IdentityConfig,
    index: IdentityIndex,
    open: BTreeMap<VisitId, Visit>,
    tracks: HashMap<String, Vec<Track>>,
    /// New people at each camera's edge, not visits yet.
    pending: HashMap<String, Vec<Pending>>,
    next_id: u64,
    now_ms: u64,
    summary: IdentitySummary,
    /// Each open visit's descriptor last put in the index from each
    /// camera, and when.
    last_indexed: HashMap<VisitId, Vec<StoredLook>>,
}

impl VisitTracker {
    pub fn new(config: IdentityConfig) -> Result<Self, IdentityError> {
        config.validate()?;
        Ok(Self {
            index: IdentityIndex::new(HnswParams::from_config(&config)),
            config,
            open: BTreeMap::new(),
            tracks: HashMap::new(),
            pending: HashMap::new(),
            next_id: 1,
            now_ms: 0,
            summary: IdentitySummary::default(),
            last_indexed: HashMap::new(),
        })
    }

    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    pub fn index(&self) -> &IdentityIndex {
        &self.index
    }

    pub fn summary(&self) -> IdentitySummary {
        self.summary
    }

    /// Visits not ended yet, oldest first.
    pub fn open_visits(&self) -> impl Iterator<Item = &Visit> {
        self.open.values()
    }

    /// Takes the person sightings of one frame of one camera (all with the
    /// same camera and time; an empty slice is fine). Ends stale visits
    /// first, so it also does what [`VisitTracker::tick`] does.
    pub fn observe(&mut self, sightings: &[Sighting]) -> Result<Observed, IdentityError> {
        let Some(first) = sightings.first() else {
            return Ok(Observed::default());
        };
        for s in sightings {
            self.index.check(&s.embedding)?;
        }
        let (camera, now) = (first.camera.clone(), first.time_ms);
        let mut events = self.tick(now);

        let mut assigned: Vec<Option<Assignment>> = vec![None; sightings.len()];
        let mut taken: HashSet<VisitId> = HashSet::new();
        self.continue_tracks(&camera, now, sightings, &mut assigned, &mut taken);
        let pending = self.pending.remove(&camera).unwrap_or_default();
        let continues = self.continue_pending(&pending, now, sightings, &assigned);
        // A person held at the edge is matched on everything seen of them.
        let keep = self.config.track_descriptor_crops;
        let held_looks: Vec<Option<Vec<f32>>> = sightings
            .iter()
            .zip(&continues)
            .map(|(s, k)| k.map(|k| pending[k].descriptor_with(s, keep)))
            .collect();
        // Who may join a visit other than by their track: confident boxes,
        // and any box of a person held at the edge (who was confident when
        // first seen, and settles on this box whatever its score).
        let high = self.config.track_high_score;
        let may_join: Vec<bool> = sightings
            .iter()
            .zip(&continues)
            .map(|(s, k)| s.score >= high || k.is_some())
            .collect();
        self.join_simultaneous(
            &camera,
            now,
            sightings,
            &may_join,
            &mut assigned,
            &mut taken,
        );
        self.match_appearance(
            now,
            sightings,
            &held_looks,
            &may_join,
            &mut assigned,
            &mut taken,
        )?;

        let mut assignments = Vec::with_capacity(sightings.len());
        let mut tracks = Vec::with_capacity(sightings.len());
        let mut settled = Vec::new();
        let mut still_pending = Vec::new();
        let mut pending: Vec<Option<Pending>> = pending.into_iter().map(Some).collect();
        for ((s, a), k) in sightings.iter().zip(assigned).zip(continues) {
            let held = k.and_then(|k| pending[k].take());
            let (a, held) = match (a, held) {
                (Some(a), held) => {
                    if let Some(p) = &held {
                        for h in &p.held {
                            events.extend(self.join(h, a));
                        }
                    }
                    events.extend(self.join(s, a));
                    (a, held)
                }
                // Still at the edge, and not followed for long: wait.
                (None, Some(mut p))
                    if s.at_edge
                        && now.saturating_sub(p.first_ms) < self.config.edge_pending_ms =>
                {
                    p.hold(s.clone(), keep);
                    still_pending.push(p);
                    assignments.push(None);
                    continue;
                }
                (None, Some(p)) => {
                    let (a, event) = self.start_held(&p.held, s);
                    events.push(event);
                    (a, Some(p))
                }
                // A doubtful box that continued nothing is not followed.
                (None, None) if s.score < self.config.track_high_score => {
                    self.summary.low_score_dropped += 1;
                    assignments.push(None);
                    continue;
                }
                (None, None) if s.at_edge && self.config.edge_pending_ms > 0 => {
                    let mut p = Pending::new(s);
                    p.hold(s.clone(), keep);
                    still_pending.push(p);
                    assignments.push(None);
                    continue;
                }
                (None, None) => {
                    let (a, event) = self.start_held(&[], s);
                    events.push(event);
                    (a, None)
                }
            };
            let previous = self
                .tracks
                .get(&camera)
                .and_then(|ts| ts.iter().find(|t| t.visit == a.visit_id));
            if let Some(p) = &held {
                settled.push(Settled {
                    visit_id: a.visit_id,
                    camera: camera.clone(),
                    sightings: p.held.iter().map(|h| (h.time_ms, h.bbox)).collect(),
                });
            }
            // The motion model and appearance carry on from the visit's
            // track on this camera, else from the held person, else start.
            let (mut motion, mut appearance, embedded_ms) = match (previous, held) {
                (Some(t), _) => (
                    t.motion.clone(),
                    t.appearance.clone(),
                    if s.embedding_reused {
                        t.embedded_ms
                    } else {
                        s.time_ms
                    },
                ),
                (None, Some(p)) => (p.motion, p.appearance, s.time_ms),
                (None, None) => (
                    BoxFilter::new(&s.bbox, s.time_ms, MotionNoise::default()),
                    Appearance::default(),
                    s.time_ms,
                ),
            };
            if motion.time_ms() < s.time_ms {
                motion.update(&s.bbox, s.time_ms);
            }
            if s.embedding_reused {
                self.summary.embeddings_reused += 1;
            } else {
                let changed = appearance.add(s.quality, &s.embedding, keep);
                self.index_descriptor(a.visit_id, s, &appearance, changed)?;
            }
            tracks.push(Track {
                visit: a.visit_id,
                time_ms: s.time_ms,
                motion,
                embedding: s.embedding.clone(),
                embedded_ms,
                appearance,
            });
            assignments.push(Some(a));
        }
        // Tracks not continued this frame stay for `tracker_max_gap_ms`, so a
        // person missed by the detector for a frame is picked up again.
        let kept = self.tracks.remove(&camera).unwrap_or_default();
        tracks.extend(kept.into_iter().filter(|t| !taken.contains(&t.visit)));
        self.tracks.insert(camera.clone(), tracks);
        let max_gap = self.config.tracker_max_gap_ms;
        // Held people no box continued this frame.
        for p in pending.into_iter().flatten() {
            if p.time_ms.saturating_add(max_gap) >= now {
                still_pending.push(p);
            } else {
                self.summary.edge_glimpses_dropped += 1;
            }
        }
        if !still_pending.is_empty() {
            self.pending.insert(camera, still_pending);
        }
        self.summary.persons_detected += sightings.len() as u64;
        Ok(Observed {
            assignments,
            events,
            settled,
        })
    }

    /// Puts a visit's track descriptor in the index when it changed (a crop
    /// joined the track's best) by more than `reindex_below_similarity`
    /// allows, or when the visit's newest entry is a bucket's span old (so
    /// a person in view for long stays findable within the index's window).
    /// A change is measured against the look last stored from each camera
    /// the visit is tracked on, not only the last one stored: a person in
    /// view of two cameras has two tracks, and their descriptors taking
    /// turns would otherwise each be stored again and again. Not when the
    /// same look was stored at this instant already (one scene on two
    /// cameras would crowd other visits out of a query's nearest
    /// neighbours). So the index holds a few descriptors a track, not one a
    /// sighting.
    fn index_descriptor(
        &mut self,
        visit: VisitId,
        s: &Sighting,
        appearance: &Appearance,
        changed: bool,
    ) -> Result<(), IdentityError> {
        let stored = self
            .last_indexed
            .get(&visit)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let newest = stored.iter().map(|l| l.time_ms).max();
        let stale =
            newest.is_none_or(|t| s.time_ms.saturating_sub(t) >= self.config.bucket_span_ms);
        if !changed && !stale {
            self.summary.descriptors_unchanged += 1;
            return Ok(());
        }
        let descriptor = appearance.descriptor();
        let repeat = stored.iter().any(|l| {
            l.time_ms.abs_diff(s.time_ms) <= SIMULTANEOUS_MS
                && dot(&l.descriptor, &descriptor) >= self.config.identical_similarity
        });
        let threshold = self.config.reindex_below_similarity;
        let near_copy = !stale
            && threshold < 1.0
            && stored
                .iter()
                .any(|l| dot(&l.descriptor, &descriptor) >= threshold);
        if near_copy && !repeat {
            self.summary.descriptors_near_copies += 1;
        }
        if !repeat && !near_copy {
            self.index.insert(
                &descriptor,
                IndexEntry {
                    visit,
                    camera: s.camera.clone(),
                    time_ms: s.time_ms,
                },
            )?;
            let looks = self.last_indexed.entry(visit).or_default();
            let look = StoredLook {
                camera: s.camera.clone(),
                time_ms: s.time_ms,
                descriptor,
            };
            match looks.iter_mut().find(|l| l.camera == s.camera) {
                Some(slot) => *slot = look,
                None => looks.push(look),
            }
        }
        Ok(())
    }

    /// What each person box of a frame of `camera` at `now_ms` (with its
    /// detector score) needs before [`VisitTracker::observe`] takes it:
    ///
    /// - [`EmbeddingPlan::Reuse`] when the match is plain: exactly one
    ///   recent track of the camera overlaps it, no other box of the frame
    ///   overlaps that track, the overlap is good, and the track's embedding
    ///   is younger than `reembed_after_ms`. Crossing people, a person
    ///   appearing next to another and every new box are embedded afresh.
    /// - [`EmbeddingPlan::Drop`] for a doubtful box (score below
    ///   `track_high_score`) that overlaps no track and no person held at
    ///   this camera's edge as much as `tracker_iou`: it can continue
    ///   nothing and start nothing, so `observe` would drop it whatever it
    ///   looked like. It is counted as dropped here; leave it out of the
    ///   sightings, unembedded (nothing else changes: it would have taken
    ///   part in no association).
    /// - [`EmbeddingPlan::Measure`] otherwise.
    ///
    /// # Panics
    /// If `boxes` and `scores` differ in length.
    pub fn plan_embeddings(
        &mut self,
        camera: &str,
        now_ms: u64,
        boxes: &[BBox],
        scores: &[f32],
    ) -> Vec<EmbeddingPlan> {
        assert_eq!(boxes.len(), scores.len(), "one score a box");
        let tracks = self.tracks.get(camera).map_or(&[][..], Vec::as_slice);
        let pending = self.pending.get(camera).map_or(&[][..], Vec::as_slice);
        let near = self.config.tracker_iou;
        let predicted: Vec<BBox> = tracks.iter().map(|t| t.motion.predict(now_ms)).collect();
        let held_at: Vec<BBox> = pending.iter().map(|p| p.motion.predict(now_ms)).collect();
        let max_age = self.config.reembed_after_ms;
        let mut plans = Vec::with_capacity(boxes.len());
        for (i, (b, score)) in boxes.iter().zip(scores).enumerate() {
            let continues_something = predicted.iter().chain(&held_at).any(|p| b.iou(p) >= near);
            if *score < self.config.track_high_score && !continues_something {
                plans.push(EmbeddingPlan::Drop);
                continue;
            }
            let mut overlapping = (0..tracks.len()).filter(|&k| b.iou(&predicted[k]) >= near);
            let reusable = match (overlapping.next(), overlapping.next()) {
                (Some(k), None) if max_age > 0 => {
                    let t = &tracks[k];
                    let plain = t.time_ms < now_ms
                        && now_ms.saturating_sub(t.embedded_ms) < max_age
                        && self.open.contains_key(&t.visit)
                        && b.iou(&predicted[k]) >= REUSE_MIN_IOU;
                    let rivals = || {
                        boxes
                            .iter()
                            .enumerate()
                            .any(|(j, o)| j != i && o.iou(&predicted[k]) >= near)
                    };
                    (plain && !rivals()).then(|| t.embedding.clone())
                }
                _ => None,
            };
            plans.push(reusable.map_or(EmbeddingPlan::Measure, EmbeddingPlan::Reuse));
        }
        let dropped = plans.iter().filter(|p| **p == EmbeddingPlan::Drop).count() as u64;
        self.summary.low_score_dropped += dropped;
        self.summary.persons_detected += dropped;
        plans
    }

    /// Advances the clock to `now_ms`: ends visits not seen for
    /// `visit_end_after_ms`, forgets old tracks and ages the index.
    pub fn tick(&mut self, now_ms: u64) -> Vec<VisitEvent> {
        self.now_ms = self.now_ms.max(now_ms);
        let now = self.now_ms;
        let end_after = self.config.visit_end_after_ms;
        let stale: Vec<VisitId> = self
            .open
            .values()
            .filter(|v| v.last_seen_ms.saturating_add(end_after) <= now)
            .map(|v| v.id)
            .collect();
        let events: Vec<VisitEvent> = stale.into_iter().map(|id| self.end(id, now)).collect();
        let max_gap = self.config.tracker_max_gap_ms;
        for tracks in self.tracks.values_mut() {
            tracks.retain(|t| t.time_ms.saturating_add(max_gap) >= now);
        }
        self.tracks.retain(|_, t| !t.is_empty());
        for pending in self.pending.values_mut() {
            let before = pending.len();
            pending.retain(|p| p.time_ms.saturating_add(max_gap) >= now);
            self.summary.edge_glimpses_dropped += (before - pending.len()) as u64;
        }
        self.pending.retain(|_, p| !p.is_empty());
        self.index.expire(now.saturating_sub(self.config.window_ms));
        if !events.is_empty() {
            // Only open visits are ever matched, so a bucket holding ended
            // visits alone is memory and search time for nothing.
            let open = &self.open;
            self.index
                .drop_buckets_unless(|visit| open.contains_key(&visit));
        }
        events
    }

    /// Ends every open visit (end of a replay), at `now_ms` or the latest
    /// time seen, whichever is later.
    pub fn finish(&mut self, now_ms: u64) -> Vec<VisitEvent> {
        self.now_ms = self.now_ms.max(now_ms);
        let ids: Vec<VisitId> = self.open.keys().copied().collect();
        self.tracks.clear();
        let glimpses: usize = self.pending.drain().map(|(_, p)| p.len()).sum();
        self.summary.edge_glimpses_dropped += glimpses as u64;
        ids.into_iter()
            .map(|id| self.end(id, self.now_ms))
            .collect()
    }

    /// Same-camera continuity, in two passes as ByteTrack does: confident
    /// boxes first, matched to where each live track's motion model puts
    /// it now (box overlap, with appearance as a check: two people crossing
    /// swap boxes, not identities; where a box could continue more than one
    /// track or a track take more than one box, the check is the stricter
    /// `tracker_crowded_min_similarity`), then the doubtful boxes to the
    /// tracks left, by overlap alone. Each pass is greedy one-to-one, best
    /// overlap first.
    fn continue_tracks(
        &self,
        camera: &str,
        now: u64,
        sightings: &[Sighting],
        assigned: &mut [Option<Assignment>],
        taken: &mut HashSet<VisitId>,
    ) {
        let Some(tracks) = self.tracks.get(camera) else {
            return;
        };
        let max_gap = self.config.tracker_max_gap_ms;
        let live: Vec<(&Track, BBox)> = tracks
            .iter()
            .filter(|t| t.alive_at(now, max_gap) && self.open.contains_key(&t.visit))
            .map(|t| (t, t.motion.predict(now)))
            .collect();
        let high = self.config.track_high_score;
        let near = self.config.tracker_iou;
        // Where motion alone cannot say which box continues which track: a
        // predicted place more than one confident box overlaps (and, below,
        // a box overlapping more than one predicted place).
        let crowded_track: Vec<bool> = live
            .iter()
            .map(|(_, p)| {
                sightings
                    .iter()
                    .filter(|o| o.score >= high && o.bbox.iou(p) >= near)
                    .count()
                    > 1
            })
            .collect();
        let crowded_min_similarity = self
            .config
            .tracker_crowded_min_similarity
            .max(self.config.tracker_min_similarity);
        for confident in [true, false] {
            let mut pairs = Vec::new();
            for (i, s) in sightings.iter().enumerate() {
                if assigned[i].is_some() || (s.score >= high) != confident {
                    continue;
                }
                let crowded_box = live.iter().filter(|(_, p)| s.bbox.iou(p) >= near).count() > 1;
                for (j, (t, predicted)) in live.iter().enumerate() {
                    let iou = s.bbox.iou(predicted);
                    if iou < near {
                        continue;
                    }
                    let similarity = dot(&s.embedding, &t.embedding);
                    let min_similarity = if crowded_box || crowded_track[j] {
                        crowded_min_similarity
                    } else {
                        self.config.tracker_min_similarity
                    };
                    if !confident || similarity >= min_similarity {
                        pairs.push((iou + APPEARANCE_WEIGHT * similarity, i, j, similarity));
                    }
                }
            }
            pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
            let ranked = pairs
                .into_iter()
                .map(|(_, i, j, similarity)| (i, live[j].0.visit, similarity));
            assign_greedily(ranked, JoinedBy::Track, assigned, taken);
        }
    }

    /// Which person held at this camera's edge each sighting left over
    /// continues: box overlap with where their motion model puts them,
    /// greedy one-to-one, best overlap first.
    fn continue_pending(
        &self,
        pending: &[Pending],
        now: u64,
        sightings: &[Sighting],
        assigned: &[Option<Assignment>],
    ) -> Vec<Option<usize>> {
        let mut continues = vec![None; sightings.len()];
        let max_gap = self.config.tracker_max_gap_ms;
        let mut pairs = Vec::new();
        for (k, p) in pending.iter().enumerate() {
            if p.time_ms >= now || p.time_ms.saturating_add(max_gap) < now {
                continue;
            }
            let predicted = p.motion.predict(now);
            for (i, s) in sightings.iter().enumerate() {
                let iou = s.bbox.iou(&predicted);
                if assigned[i].is_none() && iou >= self.config.tracker_iou {
                    pairs.push((iou, i, k));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut used = vec![false; pending.len()];
        for (_, i, k) in pairs {
            if continues[i].is_none() && !used[k] {
                continues[i] = Some(k);
                used[k] = true;
            }
        }
        continues
    }

    /// A new sighting that `may_join` (confident, or of a person held at the
    /// edge) near-identical to a track seen at this moment on another camera
    /// (an embedding measured on the same instant) joins that track's visit:
    /// the same scene on two cameras, or one stream configured twice.
    fn join_simultaneous(
        &self,
        camera: &str,
        now: u64,
        sightings: &[Sighting],
        may_join: &[bool],
        assigned: &mut [Option<Assignment>],
        taken: &mut HashSet<VisitId>,
    ) {
        let mut pairs = Vec::new();
        for (i, s) in sightings.iter().enumerate() {
            if assigned[i].is_some() || !may_join[i] {
                continue;
            }
            for (other, tracks) in &self.tracks {
                if other == camera {
                    continue;
                }
                for t in tracks {
                    let same_instant =
                        t.embedded_ms == t.time_ms && t.time_ms.abs_diff(now) <= SIMULTANEOUS_MS;
                    if !same_instant || !self.open.contains_key(&t.visit) {
                        continue;
                    }
                    let similarity = dot(&s.embedding, &t.embedding);
                    if similarity >= self.config.identical_similarity {
                        pairs.push((similarity, i, t.visit));
                    }
                }
            }
        }
        assign_most_similar(pairs, assigned, taken);
    }

    /// Appearance matching of the sightings left that `may_join` (confident,
    /// or of a person held at the edge) against the track descriptors of
    /// open visits seen within the window, greedy one-to-one, most similar
    /// pair first. A visit already given a box of
    /// this frame is not a candidate, so two people seen at once on one
    /// camera are never one visit; a visit keeps one track per camera, and
    /// a sighting that joins it replaces the track it had there. A sighting
    /// of a person held at the edge is matched on `held_looks[i]`, the
    /// descriptor of everything seen of them. A visit followed right now
    /// on another camera is a candidate only if the sighting also looks
    /// like that track (see [`Self::agrees_with_tracks_elsewhere`]).
    fn match_appearance(
        &self,
        now: u64,
        sightings: &[Sighting],
        held_looks: &[Option<Vec<f32>>],
        may_join: &[bool],
        assigned: &mut [Option<Assignment>],
        taken: &mut HashSet<VisitId>,
    ) -> Result<(), IdentityError> {
        let since = now.saturating_sub(self.config.window_ms);
        let mut pairs = Vec::new();
        for (i, s) in sightings.iter().enumerate() {
            if assigned[i].is_some() || !may_join[i] {
                continue;
            }
            let query = held_looks[i].as_deref().unwrap_or(&s.embedding);
            let hits = self.index.query(query, self.config.neighbours, since)?;
            // Best similarity per visit.
            let mut best: HashMap<VisitId, f32> = HashMap::new();
            for h in hits {
                if h.similarity < self.config.similarity_threshold
                    || !self.open.contains_key(&h.entry.visit)
                {
                    continue;
                }
                let e = best.entry(h.entry.visit).or_insert(h.similarity);
                *e = e.max(h.similarity);
            }
            pairs.extend(
                best.into_iter()
                    .filter(|(v, _)| self.agrees_with_tracks_elsewhere(*v, &s.camera, now, query))
                    .map(|(v, sim)| (sim, i, v)),
            );
        }
        assign_most_similar(pairs, assigned, taken);
        Ok(())
    }

    /// Whether `look` agrees with what `visit` is being followed as on
    /// other cameras than `camera` right now (tracks still alive there). A
    /// person is in one place at a time: a visit followed elsewhere at this
    /// moment is either seen from a second, overlapping view, where it looks
    /// like that track, or is somebody else. So a newcomer joins such a visit
    /// only if it looks like the live track too, not merely like some earlier
    /// look stored for the visit (people dressed alike match old looks). A
    /// visit still followed on `camera` as well is being found again here,
    /// as it would be with this camera alone, so one stream on two cameras
    /// opens the visits of one.
    fn agrees_with_tracks_elsewhere(
        &self,
        visit: VisitId,
        camera: &str,
        now: u64,
        look: &[f32],
    ) -> bool {
        let max_gap = self.config.tracker_max_gap_ms;
        let alive = |t: &&Track| t.visit == visit && t.time_ms.saturating_add(max_gap) >= now;
        let on = |here: bool| {
            self.tracks
                .iter()
                .filter(move |(c, _)| (c.as_str() == camera) == here)
                .flat_map(|(_, tracks)| tracks)
                .filter(alive)
        };
        // Still followed here too (lost for a frame or two): found again on
        // this camera, as with one camera alone.
        on(true).next().is_some()
            || on(false)
                .all(|t| dot(look, &t.appearance.descriptor()) >= self.config.similarity_threshold)
    }

    /// Opens a visit for a new person: the sightings held while they were
    /// at the frame's edge (if any), oldest first, then `s`. The `new`
    /// event describes the visit with all of them.
    fn start_held(&mut self, held: &[Sighting], s: &Sighting) -> (Assignment, VisitEvent) {
        let first = held.first().unwrap_or(s);
        let id = VisitId(self.next_id);
        self.next_id += 1;
        let visit = Visit {
            id,
            cameras: vec![first.camera.clone()],
            first_seen_ms: first.time_ms,
            last_seen_ms: first.time_ms,
            last_camera: first.camera.clone(),
            best_snapshot: snapshot(first),
            sightings: vec![record(first, None, JoinedBy::New)],
        };
        tracing::debug!(visit = %id, camera = %s.camera, time_ms = s.time_ms, held = held.len(), "Visit started");
        self.open.insert(id, visit);
        self.summary.visits_opened += 1;
        if !held.is_empty() {
            let by_track = Assignment {
                visit_id: id,
                similarity: None,
                joined_by: JoinedBy::Track,
            };
            for h in held[1..].iter().chain([s]) {
                // Announced together by the `new` event below.
                let _ = self.join(h, by_track);
            }
        }
        let visit = &self.open[&id];
        let event = VisitEvent::of(visit, EventKind::New, &s.camera, s.time_ms, None, None);
        let a = Assignment {
            visit_id: id,
            similarity: None,
            joined_by: JoinedBy::New,
        };
        (a, event)
    }

    fn join(&mut self, s: &Sighting, a: Assignment) -> Option<VisitEvent> {
        let gain = self.config.snapshot_update_gain;
        let visit = self
            .open
            .get_mut(&a.visit_id)
            .expect("assignments only name open visits");
        match a.joined_by {
            JoinedBy::Track => self.summary.track_joins += 1,
            _ => self.summary.appearance_joins += 1,
        }
        visit.last_seen_ms = visit.last_seen_ms.max(s.time_ms);
        visit.last_camera = s.camera.clone();
        visit.sightings.push(record(s, a.similarity, a.joined_by));
        let mut reason = None;
        if !visit.cameras.contains(&s.camera) {
            visit.cameras.push(s.camera.clone());
            self.summary.cross_camera_joins += 1;
            reason = Some(UpdateReason::NewCamera);
            tracing::debug!(visit = %visit.id, camera = %s.camera, similarity = ?a.similarity, "Visit seen on another camera");
        }
        if s.quality > visit.best_snapshot.quality {
            if s.quality > visit.best_snapshot.quality * gain && reason.is_none() {
                reason = Some(UpdateReason::BetterSnapshot);
            }
            visit.best_snapshot = snapshot(s);
        }
        reason.map(|r| {
            VisitEvent::of(
                visit,
                EventKind::Update,
                &s.camera,
                s.time_ms,
                a.similarity,
                Some(r),
            )
        })
    }

    fn end(&mut self, id: VisitId, now: u64) -> VisitEvent {
        let visit = self.open.remove(&id).expect("ending an open visit");
        self.last_indexed.remove(&id);
        self.summary.visits_ended += 1;
        tracing::debug!(visit = %id, sightings = visit.sightings.len(), "Visit ended");
        VisitEvent::of(&visit, EventKind::End, &visit.last_camera, now, None, None)
    }
}

fn snapshot(s: &Sighting) -> Snapshot {
    Snapshot {
        camera: s.camera.clone(),
        time_ms: s.time_ms,
        bbox: s.bbox,
        quality: s.quality,
    }
}

fn record(s: &Sighting, similarity: Option<f32>, joined_by: JoinedBy) -> SightingRecord {
    SightingRecord {
        camera: s.camera.clone(),
        time_ms: s.time_ms,
        bbox: s.bbox,
        similarity,
        joined_by,
    }
}

/// Appearance joins from `(similarity, sighting, visit)` pairs: most
/// similar first, ties to the older visit.
fn assign_most_similar(
    mut pairs: Vec<(f32, usize, VisitId)>,
    assigned: &mut [Option<Assignment>],
    taken: &mut HashSet<VisitId>,
) {
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.2.cmp(&b.2)));
    let ranked = pairs.into_iter().map(|(sim, i, visit)| (i, visit, sim));
    assign_greedily(ranked, JoinedBy::Appearance, assigned, taken);
}

/// One-to-one assignment from `(sighting, visit, similarity)` pairs, best
/// first: each pair is taken unless its sighting or its visit already is.
fn assign_greedily(
    ranked: impl Iterator<Item = (usize, VisitId, f32)>,
    joined_by: JoinedBy,
    assigned: &mut [Option<Assignment>],
    taken: &mut HashSet<VisitId>,
) {
    for (i, visit, similarity) in ranked {
        if assigned[i].is_some() || taken.contains(&visit) {
            continue;
        }
        taken.insert(visit);
        assigned[i] = Some(Assignment {
            visit_id: visit,
            similarity: Some(similarity),
            joined_by,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{blend, unit};

    const DIM: usize = 64;

    fn config() -> IdentityConfig {
        IdentityConfig {
            similarity_threshold: 0.8,
            window_ms: 60_000,
            visit_end_after_ms: 30_000,
            bucket_span_ms: 10_000,
            ..IdentityConfig::default()
        }
    }

    fn at(camera: &str, time_ms: u64, x: f32, embedding: Vec<f32>) -> Sighting {
        Sighting::new(
            camera,
            time_ms,
            BBox::new(x, 100.0, x + 40.0, 200.0),
            embedding,
        )
    }

    fn kinds(events: &[VisitEvent]) -> Vec<(EventKind, String)> {
        events
            .iter()
            .map(|e| (e.kind, e.visit_id.to_string()))
            .collect()
    }

    /// Feeds one frame the way the live graph does: boxes first, reused
    /// embeddings where the tracker offers them, `fresh` for the rest.
    fn observe_reusing(
        t: &mut VisitTracker,
        camera: &str,
        time_ms: u64,
        boxes: &[(f32, Vec<f32>)],
    ) -> (Observed, usize) {
        let bboxes: Vec<BBox> = boxes
            .iter()
            .map(|(x, _)| BBox::new(*x, 100.0, x + 40.0, 200.0))
            .collect();
        let plans = t.plan_embeddings(camera, time_ms, &bboxes, &vec![1.0; bboxes.len()]);
        let reused = plans
            .iter()
            .filter(|p| matches!(p, EmbeddingPlan::Reuse(_)))
            .count();
        let sightings: Vec<Sighting> = boxes
            .iter()
            .zip(plans)
            .map(|((x, fresh), plan)| match plan {
                EmbeddingPlan::Reuse(e) => at(camera, time_ms, *x, e).with_reused_embedding(),
                EmbeddingPlan::Measure => at(camera, time_ms, *x, fresh.clone()),
                EmbeddingPlan::Drop => unreachable!("confident boxes are never dropped unseen"),
            })
            .collect();
        (t.observe(&sightings).unwrap(), reused)
    }

    #[test]
    fn a_person_walking_on_is_embedded_once_a_second_and_indexed_only_then() {
        let mut t = VisitTracker::new(IdentityConfig {
            reindex_below_similarity: 1.0,
            ..config()
        })
        .unwrap();
        let alice = unit(DIM, 1);
        let mut embedded_at = Vec::new();
        // 5 fps for 3 s, moving 2 px a frame (boxes overlap well).
        for frame in 0..15u64 {
            let time = frame * 200;
            let (observed, reused) = observe_reusing(
                &mut t,
                "front",
                time,
                &[(10.0 + 2.0 * frame as f32, alice.clone())],
            );
            assert_eq!(observed.assignments[0].unwrap().visit_id, VisitId(1));
            if reused == 0 {
                embedded_at.push(time);
            }
        }
        assert_eq!(embedded_at, [0, 1_000, 2_000]);
        assert_eq!(t.index().len(), 3, "reused embeddings are not stored again");
        assert_eq!(t.summary().embeddings_reused, 12);
    }

    #[test]
    fn a_descriptor_that_barely_moved_is_not_stored_again() {
        // The descriptor is the best crop alone, so each look below is it.
        let mut t = VisitTracker::new(IdentityConfig {
            track_descriptor_crops: 1,
            ..config()
        })
        .unwrap();
        let (alice, other) = (unit(DIM, 1), unit(DIM, 9));
        // Fresh embeddings a second apart, each a better crop (the box
        // grows), so each changes the track's descriptor; the first two
        // changes are slight, the third is not.
        let looks = [
            alice.clone(),
            blend(&alice, &other, 0.05),
            blend(&alice, &other, 0.1),
            blend(&alice, &other, 0.9),
        ];
        for (i, look) in looks.into_iter().enumerate() {
            let w = 40.0 + 4.0 * i as f32;
            let s = Sighting::new(
                "front",
                i as u64 * 1_000,
                BBox::new(10.0, 100.0, 10.0 + w, 100.0 + 2.5 * w),
                look,
            );
            t.observe(&[s]).unwrap();
        }
        assert_eq!(t.index().len(), 2, "the first look and the changed one");
        assert_eq!(t.summary().descriptors_near_copies, 2);
    }

    #[test]
    fn a_person_on_two_cameras_stores_each_camera_look_once() {
        // The descriptor is the best crop alone, and every crop is better
        // than the last (the box grows), so every sighting changes it.
        let mut t = VisitTracker::new(IdentityConfig {
            track_descriptor_crops: 1,
            ..config()
        })
        .unwrap();
        let hall = unit(DIM, 1);
        // The porch sees the same person from another side: 0.88 alike,
        // enough to join the visit (0.8), not a near copy (0.92).
        let porch = blend(&hall, &unit(DIM, 9), 0.35);
        for frame in 0..6u64 {
            let w = 40.0 + 4.0 * frame as f32;
            for (camera, look) in [("hall", &hall), ("porch", &porch)] {
                // Each camera's look drifts a little from frame to frame.
                let look = blend(look, &unit(DIM, 100 + frame), 0.02);
                let s = Sighting::new(
                    camera,
                    frame * 200,
                    BBox::new(10.0, 100.0, 10.0 + w, 100.0 + 2.5 * w),
                    look,
                );
                let o = t.observe(&[s]).unwrap();
                assert_eq!(visit_of(&o, 0), VisitId(1));
            }
        }
        // One look from each camera, not one every time the two took turns.
        assert_eq!(t.index().len(), 2);
        assert_eq!(t.summary().descriptors_near_copies, 10);
    }

    #[test]
    fn crowded_new_and_jumping_boxes_are_embedded_afresh() {
        let mut t = VisitTracker::new(config()).unwrap();
        let (alice, bob) = (unit(DIM, 1), unit(DIM, 2));
        observe_reusing(&mut t, "front", 0, &[(10.0, alice.clone())]);
        // Somebody steps in beside Alice: her box now has a rival over her
        // track, and the newcomer has no track.
        let (_, reused) = observe_reusing(
            &mut t,
            "front",
            200,
            &[(12.0, alice.clone()), (30.0, bob.clone())],
        );
        assert_eq!(reused, 0);
        // A box far from every track, and one that overlaps too little.
        let (_, reused) = observe_reusing(&mut t, "front", 400, &[(300.0, alice.clone())]);
        assert_eq!(reused, 0);
        // Another camera never borrows this camera's tracks.
        let (_, reused) = observe_reusing(&mut t, "garden", 600, &[(300.0, alice)]);
        assert_eq!(reused, 0);
        // Off: every box is embedded.
        let mut off = VisitTracker::new(IdentityConfig {
            reembed_after_ms: 0,
            ..config()
        })
        .unwrap();
        observe_reusing(&mut off, "front", 0, &[(10.0, bob.clone())]);
        assert_eq!(observe_reusing(&mut off, "front", 200, &[(11.0, bob)]).1, 0);
    }

    #[test]
    fn index_buckets_of_ended_visits_alone_are_dropped() {
        let mut t = VisitTracker::new(config()).unwrap(); // 10 s buckets
        t.observe(&[at("front", 0, 10.0, unit(DIM, 1))]).unwrap();
        t.observe(&[at("front", 15_000, 300.0, unit(DIM, 2))])
            .unwrap();
        assert_eq!(t.index().bucket_count(), 2);
        // The first visit ends at 30 s; its bucket holds nobody else.
        let ended = t.tick(31_000);
        assert_eq!(kinds(&ended), [(EventKind::End, "v-000001".into())]);
        assert_eq!(t.index().bucket_count(), 1);
        assert_eq!(t.index().len(), 1);
        // The second visit still matches.
        let again = t
            .observe(&[at("garden", 32_000, 10.0, unit(DIM, 2))])
            .unwrap();
        assert_eq!(again.assignments[0].unwrap().visit_id, VisitId(2));
    }

    #[test]
    fn the_same_embedding_on_two_cameras_is_one_visit() {
        let mut t = VisitTracker::new(config()).unwrap();
        let alice = unit(DIM, 1);
        let first = t.observe(&[at("front", 0, 10.0, alice.clone())]).unwrap();
        assert_eq!(kinds(&first.events), [(EventKind::New, "v-000001".into())]);
        let other = t.observe(&[at("garden", 5_000, 300.0, alice)]).unwrap();
        assert_eq!(other.assignments[0].unwrap().visit_id, VisitId(1));
        assert_eq!(
            other.assignments[0].unwrap().joined_by,
            JoinedBy::Appearance
        );
        let e = &other.events[0];
        assert_eq!(
            (e.kind, e.reason),
            (EventKind::Update, Some(UpdateReason::NewCamera))
        );
        assert_eq!(e.cameras, ["front", "garden"]);
        assert!(e.similarity.unwrap() > 0.99);
        let s = t.summary();
        assert_eq!((s.visits_opened, s.cross_camera_joins), (1, 1));
    }

    #[test]
    fn a_person_held_at_the_edge_of_two_identical_cameras_is_one_visit() {
        // One stream configured twice: a person walks in at the edge (a
        // confident box, held), then steps clear of it on a doubtful box,
        // as boxes often are half-way in. Each camera settles its held person
        // on that box; the second must join the first's visit.
        let mut t = VisitTracker::new(config()).unwrap();
        let bob = unit(DIM, 2);
        let walking_in = |camera: &str| at(camera, 0, 0.0, bob.clone()).at_edge(true);
        let clear = |camera: &str| at(camera, 200, 4.0, bob.clone()).with_score(0.3);
        assert!(t.config().track_high_score > 0.3);
        for camera in ["porch", "gate"] {
            let held = t.observe(&[walking_in(camera)]).unwrap();
            assert_eq!(held.assignments, [None], "{camera}");
        }
        let porch = t.observe(&[clear("porch")]).unwrap();
        let gate = t.observe(&[clear("gate")]).unwrap();
        assert_eq!(kinds(&porch.events), [(EventKind::New, "v-000001".into())]);
        assert_eq!(gate.assignments[0].unwrap().visit_id, VisitId(1));
        assert_eq!(t.summary().visits_opened, 1);
    }

    /// Alice seen from the front, then by the garden camera turned a little
    /// (0.92 alike), and a third look 0.92 like her front view but not like
    /// her garden one: `(front, garden, front_lookalike)`.
    fn front_garden_and_lookalike() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (front, turned) = (unit(DIM, 1), unit(DIM, 2));
        let garden = blend(&front, &turned, 0.3);
        let anti: Vec<f32> = turned.iter().map(|x| -x).collect();
        let lookalike = blend(&front, &anti, 0.3);
        assert!(dot(&lookalike, &front) >= 0.8 && dot(&lookalike, &garden) < 0.8);
        (front, garden, lookalike)
    }

    #[test]
    fn a_newcomer_like_an_old_look_of_a_person_followed_elsewhere_is_somebody_else() {
        let mut t = VisitTracker::new(config()).unwrap(); // threshold 0.8
        let (front_look, garden_look, bob) = front_garden_and_lookalike();
        let first = t.observe(&[at("front", 0, 10.0, front_look.clone())]);
        let alice = first.unwrap().assignments[0].unwrap().visit_id;
        // Alice walks on into the garden camera's view (her front track is
        // gone by then).
        let garden = t.observe(&[at("garden", 2_500, 300.0, garden_look)]);
        assert_eq!(garden.unwrap().assignments[0].unwrap().visit_id, alice);
        // Meanwhile somebody new at the front looks like Alice's first crop
        // but not like the Alice the garden is following now.
        let front = t.observe(&[at("front", 3_000, 400.0, bob)]).unwrap();
        assert_ne!(front.assignments[0].unwrap().visit_id, alice);
        assert_eq!(front.events[0].kind, EventKind::New);
        // Once Alice's garden track is gone, her stored looks match again.
        let later = t.observe(&[at("front", 7_000, 200.0, front_look)]).unwrap();
        assert_eq!(later.assignments[0].unwrap().visit_id, alice);
    }

    #[test]
    fn a_person_lost_for_a_moment_is_found_again_on_that_camera_whatever_another_one_sees() {
        let mut t = VisitTracker::new(config()).unwrap(); // threshold 0.8
        let (front_look, garden_look, again) = front_garden_and_lookalike();
        let first = t.observe(&[at("front", 0, 10.0, front_look)]);
        let alice = first.unwrap().assignments[0].unwrap().visit_id;
        // The garden camera sees her too, from another side.
        t.observe(&[at("garden", 500, 300.0, garden_look)]).unwrap();
        // The front camera loses her box and finds her further on, looking
        // like her front view but not like the garden's: her front track is
        // still alive, so this is the front camera finding her again, as it
        // would on its own.
        let front = t.observe(&[at("front", 1_000, 400.0, again)]).unwrap();
        assert_eq!(front.assignments[0].unwrap().visit_id, alice);
    }

    #[test]
    fn distant_embeddings_never_merge() {
        let mut t = VisitTracker::new(config()).unwrap();
        // Ten people, each seen on two cameras a few times; random unit
        // vectors in 64-d have |cos| well below the threshold.
        for round in 0..3u64 {
            for person in 0..10u64 {
                for cam in ["front", "garden"] {
                    let x = 1000.0 * person as f32; // boxes never overlap
                    let time = round * 1000 + person;
                    t.observe(&[at(cam, time, x, unit(DIM, person))]).unwrap();
                }
            }
        }
        let visits: Vec<_> = t.open_visits().collect();
        assert_eq!(visits.len(), 10);
        for v in visits {
            assert_eq!(v.sightings.len(), 6, "{v:?}");
        }
    }

    #[test]
    fn two_people_in_one_frame_never_share_a_visit() {
        let mut t = VisitTracker::new(config()).unwrap();
        let a = unit(DIM, 1);
        let twin = blend(&a, &unit(DIM, 2), 0.05); // very similar clothes
        let first = t
            .observe(&[
                at("front", 0, 0.0, a.clone()),
                at("front", 0, 500.0, twin.clone()),
            ])
            .unwrap();
        assert_ne!(
            first.assignments[0].unwrap().visit_id,
            first.assignments[1].unwrap().visit_id
        );
        let next = t
            .observe(&[at("garden", 1000, 0.0, twin), at("garden", 1000, 500.0, a)])
            .unwrap();
        assert_ne!(
            next.assignments[0].unwrap().visit_id,
            next.assignments[1].unwrap().visit_id
        );
        assert_eq!(
            next.assignments[1].unwrap().visit_id,
            first.assignments[0].unwrap().visit_id
        );
    }

    #[test]
    fn overlapping_boxes_continue_a_track_even_when_appearance_drifts() {
        let mut t = VisitTracker::new(config()).unwrap();
        let a = unit(DIM, 1);
        // Turning around: similar enough for the tracker, not for matching.
        let turned = blend(&a, &unit(DIM, 9), 0.45);
        let sim = dot(&a, &turned);
        assert!(sim < 0.8 && sim > 0.5, "{sim}");
        t.observe(&[at("front", 0, 10.0, a)]).unwrap();
        let next = t.observe(&[at("front", 500, 15.0, turned)]).unwrap();
        assert_eq!(next.assignments[0].unwrap().visit_id, VisitId(1));
        assert_eq!(next.assignments[0].unwrap().joined_by, JoinedBy::Track);
        assert!(next.events.is_empty(), "{:?}", next.events);
    }

    #[test]
    fn a_visit_ends_after_the_quiet_time_and_a_return_is_a_new_visit() {
        let mut t = VisitTracker::new(config()).unwrap();
        let a = unit(DIM, 1);
        t.observe(&[at("front", 0, 10.0, a.clone())]).unwrap();
        assert!(t.tick(29_999).is_empty());
        let ended = t.tick(30_000);
        assert_eq!(kinds(&ended), [(EventKind::End, "v-000001".into())]);
        let back = t.observe(&[at("front", 40_000, 10.0, a)]).unwrap();
        assert_eq!(kinds(&back.events), [(EventKind::New, "v-000002".into())]);
    }

    #[test]
    fn a_person_returning_after_the_window_is_a_new_visit_even_if_the_visit_is_open() {
        let mut t = VisitTracker::new(IdentityConfig {
            window_ms: 20_000,
            visit_end_after_ms: 120_000,
            ..config()
        })
        .unwrap();
        let a = unit(DIM, 1);
        t.observe(&[at("front", 0, 10.0, a.clone())]).unwrap();
        let back = t.observe(&[at("garden", 35_000, 10.0, a)]).unwrap();
        assert_eq!(back.assignments[0].unwrap().joined_by, JoinedBy::New);
        assert_eq!(back.assignments[0].unwrap().visit_id, VisitId(2));
    }

    #[test]
    fn ageing_drops_old_people_from_the_index() {
        let mut t = VisitTracker::new(config()).unwrap();
        for i in 0..20 {
            t.observe(&[at("front", i * 100, 1000.0 * i as f32, unit(DIM, i))])
                .unwrap();
        }
        assert_eq!(t.index().len(), 20);
        let ended = t.tick(200_000);
        assert_eq!(ended.len(), 20);
        assert!(t.index().is_empty());
        assert_eq!(t.open_visits().count(), 0);
    }

    #[test]
    fn a_much_better_snapshot_is_announced_once() {
        let mut t = VisitTracker::new(config()).unwrap();
        let a = unit(DIM, 1);
        let mut small = at("front", 0, 10.0, a.clone());
        small.quality = 100.0;
        t.observe(&[small]).unwrap();
        let mut slightly = at("front", 500, 10.0, a.clone());
        slightly.quality = 120.0;
        assert!(t.observe(&[slightly]).unwrap().events.is_empty());
        let mut big = at("front", 1000, 10.0, a);
        big.quality = 1000.0;
        let events = t.observe(&[big]).unwrap().events;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, Some(UpdateReason::BetterSnapshot));
        assert_eq!(events[0].best_snapshot.time_ms, 1000);
    }

    #[test]
    fn events_serialise_as_json_lines_with_a_type() {
        let mut t = VisitTracker::new(config()).unwrap();
        let e = t.observe(&[at("front", 1500, 10.0, unit(DIM, 1))]).unwrap();
        let json = serde_json::to_value(&e.events[0]).unwrap();
        assert_eq!(json["type"], "new");
        assert_eq!(json["visit_id"], "v-000001");
        assert_eq!(json["camera"], "front");
        assert_eq!(json["time_ms"], 1500);
        assert!(json["similarity"].is_null());
        assert_eq!(json["best_snapshot"]["box"][0], 10.0);
        let ended = t.finish(2000);
        let json = serde_json::to_value(&ended[0]).unwrap();
        assert_eq!(json["type"], "end");
    }

    #[test]
    fn embeddings_of_another_size_are_an_error() {
        let mut t = VisitTracker::new(config()).unwrap();
        t.observe(&[at("front", 0, 10.0, unit(DIM, 1))]).unwrap();
        let err = t
            .observe(&[at("front", 10, 10.0, unit(32, 1))])
            .unwrap_err();
        assert!(matches!(err, IdentityError::Dimension { .. }), "{err}");
    }

    /// A person's embedding in one frame: their own look with some noise
    /// (same person about 0.5 apart, like the real embedder's crops).
    fn look(person: u64, frame: u64) -> Vec<f32> {
        blend(
            &unit(DIM, person),
            &unit(DIM, 1000 + 97 * person + frame),
            0.5,
        )
    }

    fn walker(camera: &str, time_ms: u64, x: f32, person: u64, frame: u64) -> Sighting {
        at(camera, time_ms, x, look(person, frame))
    }

    fn visit_of(o: &Observed, i: usize) -> VisitId {
        o.assignments[i].expect("assigned").visit_id
    }

    #[test]
    fn a_walker_hidden_for_a_second_is_picked_up_where_the_motion_model_expects() {
        let mut t = VisitTracker::new(config()).unwrap();
        // 5 fps, 100 px/s to the right: the box (40 px wide) moves 20 px a
        // frame, so after a second hidden it overlaps its last box nowhere.
        for frame in 0..10u64 {
            let o = t
                .observe(&[walker("front", frame * 200, 20.0 * frame as f32, 1, frame)])
                .unwrap();
            assert_eq!(visit_of(&o, 0), VisitId(1));
        }
        // Frames 10..=14: behind a pillar, nothing detected.
        for frame in 10..15u64 {
            assert!(t.tick(frame * 200).is_empty());
        }
        // Back at frame 15, 100 px from where it was last seen, and looking
        // different (turned round): only its motion says who it is.
        let turned = blend(&unit(DIM, 1), &unit(DIM, 555), 0.75);
        assert!(dot(&turned, &unit(DIM, 1)) < config().similarity_threshold);
        let o = t.observe(&[at("front", 3_000, 300.0, turned)]).unwrap();
        assert_eq!(visit_of(&o, 0), VisitId(1));
        assert_eq!(o.assignments[0].unwrap().joined_by, JoinedBy::Track);
        assert_eq!(t.summary().visits_opened, 1);
    }

    #[test]
    fn two_people_crossing_keep_their_own_visits() {
        let mut t = VisitTracker::new(config()).unwrap();
        // A walks right from x=0, B walks left from x=400, 20 px a frame
        // each: they meet at frame 10, boxes on top of each other.
        let (mut a, mut b) = (None, None);
        for frame in 0..21u64 {
            let time = frame * 200;
            let xa = 20.0 * frame as f32;
            let xb = 400.0 - 20.0 * frame as f32;
            // The detector lists them in either order.
            let (first, second) = if frame % 2 == 0 {
                (
                    walker("front", time, xa, 1, frame),
                    walker("front", time, xb, 2, frame),
                )
            } else {
                (
                    walker("front", time, xb, 2, frame),
                    walker("front", time, xa, 1, frame),
                )
            };
            let o = t.observe(&[first, second]).unwrap();
            let (va, vb) = if frame % 2 == 0 {
                (visit_of(&o, 0), visit_of(&o, 1))
            } else {
                (visit_of(&o, 1), visit_of(&o, 0))
            };
            assert_eq!(*a.get_or_insert(va), va, "A changed visit at frame {frame}");
            assert_eq!(*b.get_or_insert(vb), vb, "B changed visit at frame {frame}");
        }
        assert_ne!(a, b);
        assert_eq!(t.summary().visits_opened, 2);
    }

    #[test]
    fn where_motion_cannot_tell_two_people_apart_appearance_decides() {
        let mut t = VisitTracker::new(config()).unwrap();
        let (ann, ben) = (unit(DIM, 1), unit(DIM, 2));
        // Side by side: both boxes overlap each other.
        let first = t
            .observe(&[
                at("front", 0, 100.0, ann),
                at("front", 0, 125.0, ben.clone()),
            ])
            .unwrap();
        let ben_visit = first.assignments[1].unwrap().visit_id;
        // Ann is hidden; the one box left sits where Ann was but looks like
        // Ben. By overlap alone it would continue Ann's track.
        let next = t.observe(&[at("front", 200, 100.0, ben)]).unwrap();
        let a = next.assignments[0].unwrap();
        assert_eq!((a.visit_id, a.joined_by), (ben_visit, JoinedBy::Track));
    }

    #[test]
    fn a_person_who_stops_and_stands_keeps_one_visit() {
        let mut t = VisitTracker::new(config()).unwrap();
        let mut frame = 0u64;
        // Walks for 2 s, then stands at the door for 6 s.
        for k in 0..10u64 {
            t.observe(&[walker("front", frame * 200, 20.0 * k as f32, 1, frame)])
                .unwrap();
            frame += 1;
        }
        for _ in 0..30 {
            let o = t
                .observe(&[walker("front", frame * 200, 180.0, 1, frame)])
                .unwrap();
            assert_eq!(visit_of(&o, 0), VisitId(1), "frame {frame}");
            frame += 1;
        }
        assert_eq!(t.summary().visits_opened, 1);
    }

    #[test]
    fn a_doubtful_box_continues_a_track_but_starts_nothing() {
        let mut t = VisitTracker::new(config()).unwrap();
        let high = config().track_high_score;
        // Alone, a low-score box is dropped.
        let o = t
            .observe(&[walker("front", 0, 500.0, 9, 0).with_score(high - 0.1)])
            .unwrap();
        assert_eq!(o.assignments, [None]);
        assert!(o.events.is_empty());
        // A person half hidden keeps their visit through low-score frames.
        t.observe(&[walker("front", 200, 10.0, 1, 1)]).unwrap();
        for frame in 2..6u64 {
            let o = t
                .observe(&[walker("front", frame * 200, 10.0, 1, frame).with_score(high - 0.2)])
                .unwrap();
            // The dropped box took no visit id: this is the first visit.
            assert_eq!(visit_of(&o, 0), VisitId(1), "frame {frame}");
        }
        let s = t.summary();
        assert_eq!((s.visits_opened, s.low_score_dropped), (1, 1));
    }

    #[test]
    fn a_doubtful_box_next_to_nothing_followed_is_dropped_before_embedding() {
        let mut t = VisitTracker::new(config()).unwrap();
        let doubtful = config().track_high_score - 0.1;
        t.observe(&[walker("front", 0, 10.0, 1, 0)]).unwrap();
        let boxes = [
            BBox::new(12.0, 100.0, 52.0, 200.0),   // on the walker's track
            BBox::new(400.0, 100.0, 440.0, 200.0), // next to nothing
            BBox::new(600.0, 100.0, 640.0, 200.0), // confident, new
        ];
        let plans = t.plan_embeddings("front", 200, &boxes, &[doubtful, doubtful, 0.9]);
        assert!(matches!(plans[0], EmbeddingPlan::Reuse(_)), "{plans:?}");
        assert_eq!(plans[1..], [EmbeddingPlan::Drop, EmbeddingPlan::Measure]);
        // On another camera nothing is followed: the doubtful box there
        // is dropped too.
        let plans = t.plan_embeddings("garden", 200, &boxes[..1], &[doubtful]);
        assert_eq!(plans, [EmbeddingPlan::Drop]);
        let s = t.summary();
        assert_eq!((s.low_score_dropped, s.persons_detected), (2, 3));
    }

    #[test]
    fn dropping_doubtful_boxes_before_embedding_changes_no_visit() {
        // Two walkers crossing (one half hidden for a while), and a
        // doubtful box each frame somewhere (sometimes on a walker). One tracker sees every box, as if all
        // were embedded; the other drops what `plan_embeddings` says to.
        let config = IdentityConfig {
            reembed_after_ms: 0,
            ..config()
        };
        let mut every_box = VisitTracker::new(config.clone()).unwrap();
        let mut planned = VisitTracker::new(config).unwrap();
        let doubtful = every_box.config.track_high_score - 0.2;
        let mut state = 7u64;
        let (mut dropped, mut kept_doubtful) = (0, 0);
        for frame in 0..40u64 {
            let time = frame * 200;
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let stray_x = (state >> 33) as f32 % 700.0;
            let mut sightings = vec![
                walker("front", time, 20.0 + 15.0 * frame as f32, 1, frame),
                walker("front", time, 620.0 - 15.0 * frame as f32, 2, frame),
                walker("front", time, stray_x, 9, frame).with_score(doubtful),
            ];
            if (10..25).contains(&frame) {
                // The second walker half hidden for three seconds.
                sightings[1].score = doubtful;
            }
            if frame % 7 == 3 {
                // The first walker missed for a frame.
                sightings.remove(0);
            }
            let want = every_box.observe(&sightings).unwrap();

            let boxes: Vec<BBox> = sightings.iter().map(|s| s.bbox).collect();
            let scores: Vec<f32> = sightings.iter().map(|s| s.score).collect();
            let plans = planned.plan_embeddings("front", time, &boxes, &scores);
            let kept: Vec<Sighting> = sightings
                .iter()
                .zip(&plans)
                .filter(|(_, p)| **p != EmbeddingPlan::Drop)
                .map(|(s, _)| s.clone())
                .collect();
            let got = planned.observe(&kept).unwrap();
            assert_eq!(got.events, want.events, "frame {frame}");
            let mut given = got.assignments.iter();
            for (plan, a) in plans.iter().zip(&want.assignments) {
                match plan {
                    EmbeddingPlan::Drop => {
                        dropped += 1;
                        assert_eq!(*a, None, "frame {frame}: a dropped box was assigned");
                    }
                    _ => assert_eq!(given.next(), Some(a), "frame {frame}"),
                }
            }
            kept_doubtful += kept.iter().filter(|s| s.score == doubtful).count();
        }
        assert_eq!(planned.summary(), every_box.summary());
        assert!(
            dropped >= 10 && kept_doubtful >= 1,
            "{dropped} dropped, {kept_doubtful} kept"
        );
    }

    #[test]
    fn one_stream_on_two_cameras_opens_exactly_the_visits_of_one() {
        // Three people walking, crossing and one leaving and coming back
        // changed, seen by one camera, then by two cameras showing the
        // same pixels (frames interleaved by time, as replay and the live
        // graph feed them).
        let scene = |frame: u64| -> Vec<(f32, u64)> {
            let f = frame as f32;
            let mut people = vec![(20.0 * f, 1), (600.0 - 15.0 * f, 2)];
            if !(20..30).contains(&frame) {
                people.push((300.0 + 5.0 * f, 3));
            }
            people
        };
        let feed = |cameras: &[&str]| {
            let mut t = VisitTracker::new(config()).unwrap();
            for frame in 0..40u64 {
                for cam in cameras {
                    let sightings: Vec<Sighting> = scene(frame)
                        .into_iter()
                        .map(|(x, p)| walker(cam, frame * 200, x, p, frame))
                        .collect();
                    t.observe(&sightings).unwrap();
                }
            }
            let visits: Vec<Vec<String>> = t.open_visits().map(|v| v.cameras.clone()).collect();
            (t.summary().visits_opened, visits)
        };
        let (one, _) = feed(&["front"]);
        let (two, visits) = feed(&["front", "mirror"]);
        assert_eq!(two, one);
        for cameras in visits {
            assert_eq!(cameras, ["front", "mirror"]);
        }
    }

    /// A sighting cut by the frame's edge: its crop looks like `cut` of
    /// the way to nobody in particular.
    fn entering(camera: &str, time_ms: u64, x: f32, person: u64, cut: f32) -> Sighting {
        let half_seen = blend(&unit(DIM, person), &unit(DIM, 5000 + time_ms), cut);
        at(camera, time_ms, x, half_seen).at_edge(true)
    }

    #[test]
    fn a_person_walking_in_from_the_edge_joins_the_visit_their_whole_view_matches() {
        let mut t = VisitTracker::new(config()).unwrap();
        // Seen whole on the hall camera first.
        let hall = t.observe(&[at("hall", 0, 200.0, unit(DIM, 1))]).unwrap();
        let visit = visit_of(&hall, 0);
        // Then walking into the porch camera from its edge: the first crops
        // are too cut to match, and are held rather than opening a visit.
        for (k, time) in [200u64, 400].into_iter().enumerate() {
            let o = t
                .observe(&[entering("porch", time, 5.0 * k as f32, 1, 0.7)])
                .unwrap();
            assert_eq!(o.assignments, [None]);
            assert!(o.events.is_empty(), "{:?}", kinds(&o.events));
        }
        // Fully in view: the held person joins the hall visit, with the
        // sightings held.
        let o = t.observe(&[at("porch", 600, 10.0, unit(DIM, 1))]).unwrap();
        assert_eq!(visit_of(&o, 0), visit);
        assert_eq!(o.settled.len(), 1);
        assert_eq!(o.settled[0].visit_id, visit);
        assert_eq!(
            o.settled[0]
                .sightings
                .iter()
                .map(|s| s.0)
                .collect::<Vec<_>>(),
            [200, 400]
        );
        assert_eq!(t.summary().visits_opened, 1);
        let v = t.open_visits().next().unwrap();
        assert_eq!(v.cameras, ["hall", "porch"]);
        assert_eq!(v.sightings.len(), 4);
    }

    #[test]
    fn a_new_person_leaving_the_edge_opens_one_visit_holding_all_their_sightings() {
        let mut t = VisitTracker::new(config()).unwrap();
        for (k, time) in [0u64, 200, 400].into_iter().enumerate() {
            let o = t
                .observe(&[entering("porch", time, 5.0 * k as f32, 7, 0.3)])
                .unwrap();
            assert!(o.events.is_empty());
        }
        let o = t.observe(&[at("porch", 600, 15.0, unit(DIM, 7))]).unwrap();
        assert_eq!(kinds(&o.events), [(EventKind::New, "v-000001".into())]);
        let new = &o.events[0];
        assert_eq!(
            (new.first_seen_ms, new.last_seen_ms, new.sightings),
            (0, 600, 4)
        );
        assert_eq!(o.settled[0].sightings.len(), 3);
        // And the track carries on as any other.
        let o = t.observe(&[at("porch", 800, 20.0, unit(DIM, 7))]).unwrap();
        assert_eq!(visit_of(&o, 0), VisitId(1));
        assert_eq!(t.summary().visits_opened, 1);
    }

    #[test]
    fn somebody_who_stays_at_the_edge_opens_a_visit_once_the_hold_runs_out() {
        let mut t = VisitTracker::new(config()).unwrap();
        let hold = config().edge_pending_ms;
        let mut opened_at = None;
        for frame in 0..20u64 {
            let time = frame * 200;
            let o = t
                .observe(&[at("porch", time, 0.0, unit(DIM, 3)).at_edge(true)])
                .unwrap();
            if o.events.iter().any(|e| e.kind == EventKind::New) {
                opened_at = Some(time);
                break;
            }
        }
        assert_eq!(opened_at, Some(hold));
    }

    #[test]
    fn a_glimpse_at_the_edge_that_is_gone_opens_nothing() {
        let mut t = VisitTracker::new(config()).unwrap();
        t.observe(&[entering("porch", 0, 0.0, 4, 0.5)]).unwrap();
        t.observe(&[entering("porch", 200, 2.0, 4, 0.5)]).unwrap();
        // Nobody after that: the held person ages out like a track.
        let events = t.tick(200 + config().tracker_max_gap_ms + 1);
        assert!(events.is_empty());
        let s = t.summary();
        assert_eq!((s.visits_opened, s.edge_glimpses_dropped), (0, 1));
    }

    #[test]
    fn with_no_edge_hold_a_person_at_the_edge_opens_a_visit_at_once() {
        let mut t = VisitTracker::new(IdentityConfig {
            edge_pending_ms: 0,
            ..config()
        })
        .unwrap();
        let o = t.observe(&[entering("porch", 0, 0.0, 4, 0.5)]).unwrap();
        assert_eq!(kinds(&o.events), [(EventKind::New, "v-000001".into())]);
    }
}
