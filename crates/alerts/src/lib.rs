//! Alerts: the last step of the flow (`… → describe → triage → alert`).
//!
//! [`AlertPipeline`] turns opened visits into two-stage alerts: stage one
//! goes out at once with the detector's labels and a rule-based urgency;
//! stage two (describe the frame, triage the description with the LLM,
//! bounded by a deadline, falling back to the rules) follows as an update
//! under the same alert id. The routing [`policy`] (modes, quiet hours,
//! cooldowns, suspension, per-channel minimum urgency) picks the channels.
//! Every message passes through an on-disk [`outbox`] before it is sent and
//! is marked when the broker acknowledges it, so outages and restarts lose
//! nothing. Delivery is MQTT (rumqttc, QoS 1) with an availability topic,
//! a last will and Home Assistant device discovery.
//!
//! ```
//! use streamer_alerts::policy::{decide, AlertCandidate, Policy, RoutingState};
//! use streamer_alerts::config::RoutingConfig;
//! use streamer_core::Urgency;
//!
//! let policy = Policy::from_config(&RoutingConfig::default(), "streamer");
//! let state = RoutingState::new("away");
//! let now = chrono::DateTime::parse_from_rfc3339("2026-11-17T23:41:00+01:00").unwrap();
//! let alert = AlertCandidate { camera: "porch", urgency: Urgency::Monitor, update_of: None };
//! assert_eq!(decide(&policy, &state, &alert, now).deliver_to, ["phone"]);
//! ```

#![warn(missing_docs)]

pub mod alert;
pub mod config;
pub mod discovery;
mod model_queue;
pub mod mqtt;
pub mod outbox;
pub mod pipeline;
pub mod policy;
pub mod rules;

use std::path::PathBuf;

pub use alert::{Alert, Stage, Topics};
pub use config::AlertsConfig;
pub use model_queue::ModelQueueStats;
pub use pipeline::{
    encode_jpeg, AlertPipeline, AlertReceipt, CameraDiagnostics, LiveFigures, VisitOpened,
};

/// What can go wrong in the alerts stage.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// The config has problems, each prefixed with its key path.
    #[error("invalid alerts config:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    /// The outbox directory or journal cannot be used.
    #[error("cannot {action} the outbox journal {}: {source}", .path.display())]
    Outbox {
        /// What was being done.
        action: String,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A journal line in the middle of the file is damaged.
    #[error(
        "outbox journal {} line {line} is damaged ({message}); move the file away to start with an empty outbox",
        .path.display()
    )]
    Journal {
        /// The journal.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What the parser said.
        message: String,
    },
    /// A thread or the async runtime could not start.
    #[error("cannot start the alerts runtime: {0}")]
    Runtime(String),
    /// The snapshot could not be encoded.
    #[error("cannot encode the snapshot as JPEG: {0}")]
    Snapshot(String),
}
