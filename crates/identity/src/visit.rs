//! Visits and the events that announce them.

use serde::{Deserialize, Serialize, Serializer};
use streamer_core::BBox;

/// A visit's id, monotonic per process: `v-000001`, `v-000002`, …
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VisitId(pub u64);

impl std::fmt::Display for VisitId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v-{:06}", self.0)
    }
}

impl Serialize for VisitId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What happened to a visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Somebody not matching any open visit appeared.
    New,
    /// An open visit was seen on another camera, or got a much better snapshot.
    Update,
    /// The visit was not seen for `visit_end_after_ms` (or the replay ended).
    End,
}

/// Why an `update` event was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateReason {
    NewCamera,
    BetterSnapshot,
}

/// How a sighting was attached to its visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinedBy {
    /// It started the visit.
    New,
    /// Its box overlaps the visit's box in the camera's previous frame.
    Track,
    /// Its embedding is close to one of the visit's earlier embeddings.
    Appearance,
}

/// The best view of a visit so far.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    pub camera: String,
    pub time_ms: u64,
    #[serde(rename = "box")]
    pub bbox: BBox,
    /// See [`snapshot_quality`](crate::snapshot_quality).
    pub quality: f32,
}

/// One sighting as the visit remembers it (no embedding).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SightingRecord {
    pub camera: String,
    pub time_ms: u64,
    #[serde(rename = "box")]
    pub bbox: BBox,
    /// Similarity that joined it to the visit (`None` for the first one).
    pub similarity: Option<f32>,
    pub joined_by: JoinedBy,
}

/// A person's stay, across cameras, from first to last sighting.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Visit {
    pub id: VisitId,
    /// Cameras in the order they saw the person.
    pub cameras: Vec<String>,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub last_camera: String,
    pub best_snapshot: Snapshot,
    pub sightings: Vec<SightingRecord>,
}

/// One line of the visit stream (`streamer replay` prints it as JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VisitEvent {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub visit_id: VisitId,
    /// Camera of the sighting that caused the event (for `end`: the last
    /// camera that saw the person).
    pub camera: String,
    /// When it happened: the sighting's time, or for `end` the time the visit
    /// was found stale.
    pub time_ms: u64,
    /// Similarity that joined the sighting (`None` for `new` and `end`).
    pub similarity: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<UpdateReason>,
    pub cameras: Vec<String>,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub sightings: usize,
    pub best_snapshot: Snapshot,
}

impl VisitEvent {
    pub(crate) fn of(
        visit: &Visit,
        kind: EventKind,
        camera: &str,
        time_ms: u64,
        similarity: Option<f32>,
        reason: Option<UpdateReason>,
    ) -> Self {
        Self {
            kind,
            visit_id: visit.id,
            camera: camera.to_string(),
            time_ms,
            similarity,
            reason,
            cameras: visit.cameras.clone(),
            first_seen_ms: visit.first_seen_ms,
            last_seen_ms: visit.last_seen_ms,
            sightings: visit.sightings.len(),
            best_snapshot: visit.best_snapshot.clone(),
        }
    }
}

/// Counts for the end-of-run summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IdentitySummary {
    /// Person sightings observed.
    pub persons_detected: u64,
    pub visits_opened: u64,
    pub visits_ended: u64,
    /// Times an open visit was seen on a camera it had not been seen on.
    pub cross_camera_joins: u64,
    /// Sightings attached by box overlap with the previous frame.
    pub track_joins: u64,
    /// Sightings attached by embedding similarity.
    pub appearance_joins: u64,
    /// Sightings that reused their track's embedding instead of a new one
    /// ([`VisitTracker::plan_embeddings`](crate::VisitTracker::plan_embeddings)).
    pub embeddings_reused: u64,
    /// Fresh embeddings that left their track's descriptor as it was (not
    /// among its best crops), so nothing new went into the index.
    pub descriptors_unchanged: u64,
    /// Changed descriptors still as similar as `reindex_below_similarity`
    /// to the one last stored for their visit, so not stored again.
    pub descriptors_near_copies: u64,
    /// Low-confidence boxes that continued no track and were dropped.
    pub low_score_dropped: u64,
    /// New people seen only at a frame's edge, and gone before
    /// `edge_pending_ms`: they opened no visit.
    pub edge_glimpses_dropped: u64,
}
