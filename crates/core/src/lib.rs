//! Domain types that flow between streamer's stages.
//!
//! Data moves one way through the pipeline (source → detect → dedup →
//! describe → triage → alert); every stage speaks in the types defined here so
//! that no stage depends on another stage's crate.

mod detection;
mod frame;
pub mod labels;
pub mod layout;
mod redact;
mod urgency;

pub use detection::{BBox, Detection};
pub use frame::Frame;
pub use redact::redact_urls;
pub use urgency::Urgency;
