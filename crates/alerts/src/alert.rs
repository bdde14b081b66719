//! The alert as consumers receive it, and the topic layout.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use streamer_core::Urgency;

use crate::config::camera_slug;

/// Which stage produced an alert message. Stage two publishes under the
/// same alert id as stage one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Sent the moment a visit opens: detector labels and rule-based urgency.
    Initial,
    /// The model described and triaged the best frame.
    Triaged,
    /// The model missed its deadline or failed; rule-based verdict.
    Fallback,
}

impl Stage {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Initial => "initial",
            Stage::Triaged => "triaged",
            Stage::Fallback => "fallback",
        }
    }
}

/// One alert message, as JSON on `<prefix>/alerts/<channel>` and as the
/// attributes of the camera's Home Assistant event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable across both stages; consumers key on it.
    pub id: String,
    /// The visit that opened the alert.
    pub visit_id: String,
    /// Camera name.
    pub camera: String,
    /// When the visit opened (local time with offset, RFC 3339).
    pub time: DateTime<FixedOffset>,
    /// Which stage this message is.
    pub stage: Stage,
    /// Urgency (rule-based for `initial` and `fallback`).
    pub urgency: Urgency,
    /// One sentence for the owner.
    pub message: String,
    /// Whether the verdict asks to tell the owner.
    pub should_notify: bool,
    /// Detector labels in the frame.
    pub labels: Vec<String>,
    /// What the model saw (stage two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `vision_model` or `detector_labels` (stage two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description_source: Option<String>,
    /// Why the rule-based verdict was used (`fallback` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// The description held text addressed to the AI.
    #[serde(default)]
    pub injection_suspected: bool,
    /// Describe + triage time (stage two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_latency_ms: Option<u64>,
    /// Channels this message went to.
    pub delivered_to: Vec<String>,
    /// Why it went to no (new) channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// Retained topic holding the latest snapshot of this camera (sent
    /// just before the initial alert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_topic: Option<String>,
}

impl Alert {
    /// The Home Assistant event payload: `event_type` is the urgency, the
    /// rest become event attributes.
    pub fn ha_event(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("alerts serialise to JSON");
        value["event_type"] = serde_json::Value::from(self.urgency.as_str());
        value
    }
}

/// Every topic streamer publishes or listens on.
#[derive(Clone, Debug)]
pub struct Topics {
    prefix: String,
    discovery_prefix: String,
}

/// Payload of the availability topic while connected.
pub const ONLINE: &str = "online";
/// Availability after an unexpected disconnect (the last will).
pub const OFFLINE: &str = "offline";
/// Availability after a clean shutdown.
pub const STOPPED: &str = "stopped";

impl Topics {
    /// Topics under `prefix`, discovery under `discovery_prefix`.
    pub fn new(prefix: &str, discovery_prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            discovery_prefix: discovery_prefix.to_string(),
        }
    }

    /// The topic prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>/availability`: `online`, `offline` (last will), `stopped`.
    pub fn availability(&self) -> String {
        format!("{}/availability", self.prefix)
    }

    fn camera(&self, camera: &str, leaf: &str) -> String {
        format!("{}/{}/{leaf}", self.prefix, camera_slug(camera))
    }

    /// `<prefix>/<camera>/event`: alert JSON with `event_type`, not retained.
    pub fn event(&self, camera: &str) -> String {
        self.camera(camera, "event")
    }

    /// `<prefix>/<camera>/snapshot`: latest alert JPEG, retained.
    pub fn snapshot(&self, camera: &str) -> String {
        self.camera(camera, "snapshot")
    }

    /// `<prefix>/<camera>/person`: `ON`/`OFF`, retained.
    pub fn person(&self, camera: &str) -> String {
        self.camera(camera, "person")
    }

    /// `<prefix>/<camera>/connected`: `ON`/`OFF`, retained.
    pub fn connected(&self, camera: &str) -> String {
        self.camera(camera, "connected")
    }

    /// `<prefix>/<camera>/diagnostics`: JSON, retained.
    pub fn diagnostics(&self, camera: &str) -> String {
        self.camera(camera, "diagnostics")
    }

    /// `<prefix>/hub/mode`: active mode, retained.
    pub fn mode(&self) -> String {
        format!("{}/hub/mode", self.prefix)
    }

    /// `<prefix>/hub/mode/set`: Home Assistant sets the mode here.
    pub fn mode_set(&self) -> String {
        format!("{}/hub/mode/set", self.prefix)
    }

    /// `<prefix>/hub/notifications`: `ON`/`OFF`, retained.
    pub fn notifications(&self) -> String {
        format!("{}/hub/notifications", self.prefix)
    }

    /// `<prefix>/hub/notifications/set`.
    pub fn notifications_set(&self) -> String {
        format!("{}/hub/notifications/set", self.prefix)
    }

    /// `<prefix>/hub/suspend`: minutes of the current suspension, retained.
    pub fn suspend(&self) -> String {
        format!("{}/hub/suspend", self.prefix)
    }

    /// `<prefix>/hub/suspend/set`: suspend non-critical alerts for N minutes
    /// (0 resumes).
    pub fn suspend_set(&self) -> String {
        format!("{}/hub/suspend/set", self.prefix)
    }

    /// `<discovery_prefix>/device/<id>/config`.
    pub fn discovery(&self, device_id: &str) -> String {
        format!("{}/device/{device_id}/config", self.discovery_prefix)
    }

    /// The device id of a discovery config topic (the inverse of
    /// [`discovery`](Self::discovery)).
    pub fn discovery_device<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let device = topic
            .strip_prefix(self.discovery_prefix.as_str())?
            .strip_prefix("/device/")?
            .strip_suffix("/config")?;
        (!device.is_empty() && !device.contains('/')).then_some(device)
    }

    /// `<prefix>/<camera>/availability`: `online` while the camera delivers
    /// frames, `offline` otherwise (combined with the process's own).
    pub fn camera_availability(&self, camera: &str) -> String {
        self.camera(camera, "availability")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_use_camera_slugs() {
        let t = Topics::new("streamer", "homeassistant");
        assert_eq!(t.event("Front Door"), "streamer/front_door/event");
        assert_eq!(
            t.discovery("streamer_front_door"),
            "homeassistant/device/streamer_front_door/config"
        );
        assert_eq!(t.mode_set(), "streamer/hub/mode/set");
    }
}
