//! Identity: tells "the same person again, on any camera" from "a new
//! visitor".
//!
//! Sits after `vision` in the flow: the detector finds person boxes, the
//! embedder turns each into an L2-normalised vector, and this crate's
//! [`VisitTracker`] turns those [`Sighting`]s into visits with a lifecycle
//! (`new`, `update`, `end`) carried by [`VisitEvent`]s. Matching uses a
//! time-bucketed HNSW index ([`IdentityIndex`], over `hnsw_rs`, cosine) and,
//! within one camera, box overlap with the previous frame. The crate is pure
//! (no ONNX Runtime, no I/O, no clock): it takes vectors and timestamps.
//!
//! ```
//! use streamer_core::BBox;
//! use streamer_identity::{EventKind, IdentityConfig, Sighting, VisitTracker};
//!
//! let mut tracker = VisitTracker::new(IdentityConfig::default()).unwrap();
//! let mut embedding = vec![0.0; 128];
//! embedding[3] = 1.0; // any unit vector
//! let bbox = BBox::new(10.0, 20.0, 50.0, 120.0);
//! let front = tracker
//!     .observe(&[Sighting::new("front", 0, bbox, embedding.clone())])
//!     .unwrap();
//! assert_eq!(front.events[0].kind, EventKind::New);
//! let garden = tracker
//!     .observe(&[Sighting::new("garden", 4_000, bbox, embedding)])
//!     .unwrap();
//! assert_eq!(garden.events[0].kind, EventKind::Update);
//! assert_eq!(garden.events[0].cameras, ["front", "garden"]);
//! assert_eq!(tracker.summary().cross_camera_joins, 1);
//! let ended = tracker.finish(10_000);
//! assert_eq!(ended[0].kind, EventKind::End);
//! ```

mod codes;
mod config;
mod distance;
mod error;
mod graph;
mod index;
mod kalman;
mod quality;
#[cfg(test)]
mod testutil;
mod tracker;
mod visit;

pub use config::IdentityConfig;
pub use distance::{dot, CosineDistance};
pub use error::IdentityError;
pub use index::{HnswParams, IdentityIndex, IndexEntry, Neighbour};
pub use kalman::{BoxFilter, MotionNoise};
pub use quality::{snapshot_quality, touches_edge};
pub use tracker::{Assignment, EmbeddingPlan, Observed, Settled, Sighting, VisitTracker};
pub use visit::{
    EventKind, IdentitySummary, JoinedBy, SightingRecord, Snapshot, UpdateReason, Visit,
    VisitEvent, VisitId,
};
