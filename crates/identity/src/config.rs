//! What the user sets for identity matching, with defaults tuned on the
//! project's labelled two-camera replay (`fixtures/identity/`).

use serde::{Deserialize, Serialize};

use crate::IdentityError;

/// Settings of the [`VisitTracker`](crate::VisitTracker) and its
/// [`IdentityIndex`](crate::IdentityIndex). Times are in milliseconds on the
/// clock the caller stamps sightings with (e.g. stream time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Cosine similarity (dot product of unit vectors) at or above which a
    /// sighting joins an open visit. Tuned on the tuning set
    /// `fixtures/identity/vtest-two-cameras.json` (never on the held-out
    /// set) for the embedded MobileNetV2 embedder with its calibrated centring
    /// and clothing colour weighed equally (same person: median 0.54,
    /// different people: median 0.08); a re-ID model needs its own value.
    #[serde(default = "default_similarity_threshold")]
    pub similarity_threshold: f32,
    /// How far back the index looks for a match; older sightings are aged out
    /// (whole buckets at a time).
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
    /// A visit not seen for this long ends; a later sighting starts a new one.
    #[serde(default = "default_visit_end_after_ms")]
    pub visit_end_after_ms: u64,
    /// Time span of one index bucket. hnsw_rs cannot delete points, so the
    /// index is a queue of buckets and ageing drops whole buckets: smaller
    /// spans age out more precisely, larger ones search fewer graphs.
    #[serde(default = "default_bucket_span_ms")]
    pub bucket_span_ms: u64,
    /// Neighbours fetched per query (several sightings of one visit may
    /// crowd the nearest places).
    #[serde(default = "default_neighbours")]
    pub neighbours: usize,
    /// HNSW links per node (`M`).
    #[serde(default = "default_hnsw_m")]
    pub hnsw_m: usize,
    /// HNSW candidate list size while inserting.
    #[serde(default = "default_hnsw_ef_construction")]
    pub hnsw_ef_construction: usize,
    /// HNSW candidate list size while searching: larger finds the true
    /// nearest more often and costs proportionally more (32 gives recall@1
    /// 0.997 at 100 000 stored 1280-d vectors; see the index bench).
    #[serde(default = "default_hnsw_ef_search")]
    pub hnsw_ef_search: usize,
    /// Box overlap (IoU) with where a track's motion model (a Kalman
    /// filter) puts it now, at or above which a sighting may continue that
    /// track of the same camera.
    #[serde(default = "default_tracker_iou")]
    pub tracker_iou: f32,
    /// A track is continued only if its last sighting is at most this old:
    /// how long it survives missed detections and short occlusions (the
    /// `max_age` of SORT-family trackers, here in ms: 10 frames at 5 fps).
    #[serde(default = "default_tracker_max_gap_ms")]
    pub tracker_max_gap_ms: u64,
    /// Even with overlapping boxes, a confident sighting continues a track
    /// only if it looks at least this similar to the track's last sighting.
    /// Motion decides; appearance vetoes only clear mismatches (the
    /// embedder's same-person similarity is often low) and breaks near-ties
    /// between overlapping candidates.
    #[serde(default = "default_tracker_min_similarity")]
    pub tracker_min_similarity: f32,
    /// Where motion cannot tell people apart (a confident box overlaps the
    /// predicted place of more than one track, or a track's predicted
    /// place overlaps more than one confident box: people crossing or
    /// walking side by side), a box continues a track only if it looks at
    /// least this similar to the track's last sighting. Chosen on the
    /// tuning and validation sets, where 0.35 to 0.45 scored alike.
    #[serde(default = "default_tracker_crowded_min_similarity")]
    pub tracker_crowded_min_similarity: f32,
    /// A new best snapshot is announced (an `update` event) only when its
    /// quality beats the previous best by this factor.
    #[serde(default = "default_snapshot_update_gain")]
    pub snapshot_update_gain: f32,
    /// A person box that plainly continues a track of its camera (one
    /// track, one box, boxes overlapping well) reuses the track's embedding
    /// until that is this old, instead of being embedded again: embedding
    /// is the costliest part of a frame with people. Fresh embeddings alone
    /// go into the index. 0 embeds every box of every frame.
    #[serde(default = "default_reembed_after_ms")]
    pub reembed_after_ms: u64,
    /// Detector confidence at or above which a box is associated first and
    /// may start a visit. Boxes below it (a person half hidden, blurred)
    /// only continue an existing track, by box overlap, in a second pass;
    /// alone they start nothing, as in ByteTrack.
    #[serde(default = "default_track_high_score")]
    pub track_high_score: f32,
    /// A track's appearance is the mean of its best this many crops (by
    /// snapshot quality: large, sharp, not cut by the frame's edge), and
    /// that descriptor is what the index stores for cross-camera and return
    /// matching. 1 stores every fresh embedding on its own.
    #[serde(default = "default_track_descriptor_crops")]
    pub track_descriptor_crops: usize,
    /// A track's changed descriptor goes into the index only when its
    /// cosine similarity to each look stored last for the visit (one per
    /// camera it is tracked on) is below this, or when the visit's newest
    /// entry is a bucket's span old: a new best crop usually moves the mean
    /// of four a little, and a near-copy finds nobody the stored one would
    /// not. 1 stores every change.
    #[serde(default = "default_reindex_below_similarity")]
    pub reindex_below_similarity: f32,
    /// A new sighting this similar to a track seen at the same moment on
    /// another camera is that person (the same scene from two cameras, or
    /// one stream configured twice), whatever the index says.
    #[serde(default = "default_identical_similarity")]
    pub identical_similarity: f32,
    /// A new person at the frame's edge (cut by it: walking in, or only
    /// half in view) opens no visit yet: it is tracked, and its growing
    /// track descriptor is matched against open visits on every frame,
    /// until it leaves the edge or has been followed this long. Then it
    /// joins the visit it matches or opens a new one, with every sighting
    /// it held. One cut crop rarely matches anybody, so without this a
    /// person walking from one camera into the next opens a second visit.
    /// Somebody only ever glimpsed at an edge, for less than this, opens
    /// nothing. 0: every new person opens a visit at once.
    #[serde(default = "default_edge_pending_ms")]
    pub edge_pending_ms: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            similarity_threshold: default_similarity_threshold(),
            window_ms: default_window_ms(),
            visit_end_after_ms: default_visit_end_after_ms(),
            bucket_span_ms: default_bucket_span_ms(),
            neighbours: default_neighbours(),
            hnsw_m: default_hnsw_m(),
            hnsw_ef_construction: default_hnsw_ef_construction(),
            hnsw_ef_search: default_hnsw_ef_search(),
            tracker_iou: default_tracker_iou(),
            tracker_max_gap_ms: default_tracker_max_gap_ms(),
            tracker_min_similarity: default_tracker_min_similarity(),
            tracker_crowded_min_similarity: default_tracker_crowded_min_similarity(),
            snapshot_update_gain: default_snapshot_update_gain(),
            reembed_after_ms: default_reembed_after_ms(),
            track_high_score: default_track_high_score(),
            track_descriptor_crops: default_track_descriptor_crops(),
            reindex_below_similarity: default_reindex_below_similarity(),
            identical_similarity: default_identical_similarity(),
            edge_pending_ms: default_edge_pending_ms(),
        }
    }
}

impl IdentityConfig {
    /// Checks every field and reports all problems at once, each naming its
    /// key.
    pub fn validate(&self) -> Result<(), IdentityError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, what: &str| {
            if !ok {
                problems.push(format!("{key}: {what}"));
            }
        };
        let unit = |v: f32| (-1.0..=1.0).contains(&v);
        check(
            unit(self.similarity_threshold),
            "similarity_threshold",
            "must be a cosine similarity in [-1, 1]",
        );
        check(
            unit(self.tracker_min_similarity),
            "tracker_min_similarity",
            "must be a cosine similarity in [-1, 1]",
        );
        check(
            unit(self.tracker_crowded_min_similarity),
            "tracker_crowded_min_similarity",
            "must be a cosine similarity in [-1, 1]",
        );
        check(
            (0.0..=1.0).contains(&self.tracker_iou),
            "tracker_iou",
            "must be in [0, 1]",
        );
        check(self.window_ms > 0, "window_ms", "must be positive");
        check(
            self.visit_end_after_ms > 0,
            "visit_end_after_ms",
            "must be positive",
        );
        check(
            self.bucket_span_ms > 0,
            "bucket_span_ms",
            "must be positive",
        );
        check(self.neighbours > 0, "neighbours", "must be positive");
        check(
            (2..=256).contains(&self.hnsw_m),
            "hnsw_m",
            "must be between 2 and 256 (hnsw_rs's limit)",
        );
        check(
            self.hnsw_ef_construction > 0,
            "hnsw_ef_construction",
            "must be positive",
        );
        check(
            self.hnsw_ef_search > 0,
            "hnsw_ef_search",
            "must be positive",
        );
        check(
            (0.0..=1.0).contains(&self.track_high_score),
            "track_high_score",
            "must be a detector confidence in [0, 1]",
        );
        check(
            (1..=64).contains(&self.track_descriptor_crops),
            "track_descriptor_crops",
            "must be between 1 and 64",
        );
        check(
            unit(self.reindex_below_similarity),
            "reindex_below_similarity",
            "must be a cosine similarity in [-1, 1]",
        );
        check(
            unit(self.identical_similarity),
            "identical_similarity",
            "must be a cosine similarity in [-1, 1]",
        );
        check(
            self.edge_pending_ms <= 10_000,
            "edge_pending_ms",
            "must be at most 10000 ms (a new visit's alert may wait this long)",
        );
        check(
            self.snapshot_update_gain >= 1.0,
            "snapshot_update_gain",
            "must be at least 1",
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(IdentityError::Config(problems))
        }
    }
}

fn default_similarity_threshold() -> f32 {
    0.5
}
fn default_window_ms() -> u64 {
    10 * 60 * 1000
}
fn default_visit_end_after_ms() -> u64 {
    30 * 1000
}
fn default_bucket_span_ms() -> u64 {
    60 * 1000
}
fn default_neighbours() -> usize {
    10
}
fn default_hnsw_m() -> usize {
    16
}
fn default_hnsw_ef_construction() -> usize {
    200
}
fn default_hnsw_ef_search() -> usize {
    32
}
fn default_tracker_iou() -> f32 {
    0.2
}
fn default_tracker_max_gap_ms() -> u64 {
    2000
}
fn default_tracker_min_similarity() -> f32 {
    0.0
}
fn default_tracker_crowded_min_similarity() -> f32 {
    0.4
}
fn default_snapshot_update_gain() -> f32 {
    1.5
}
fn default_reembed_after_ms() -> u64 {
    1000
}
fn default_track_high_score() -> f32 {
    0.5
}
fn default_track_descriptor_crops() -> usize {
    4
}
fn default_reindex_below_similarity() -> f32 {
    0.92
}
fn default_identical_similarity() -> f32 {
    0.95
}
fn default_edge_pending_ms() -> u64 {
    600
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_an_empty_document_gives_the_defaults() {
        IdentityConfig::default().validate().unwrap();
        let parsed: IdentityConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, IdentityConfig::default());
    }

    #[test]
    fn validation_names_every_bad_key() {
        let config = IdentityConfig {
            similarity_threshold: 1.5,
            hnsw_m: 1000,
            window_ms: 0,
            edge_pending_ms: 60_000,
            ..IdentityConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        for key in [
            "similarity_threshold",
            "hnsw_m",
            "window_ms",
            "edge_pending_ms",
        ] {
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<IdentityConfig>(r#"{"treshold": 0.5}"#).unwrap_err();
        assert!(err.to_string().contains("treshold"), "{err}");
    }
}
